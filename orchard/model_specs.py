"""The registered models of a portfolio: name, population, feature service, request fields, label, kind.

Each model is built from its portfolio entry (orchard.portfolio.spec.ModelDef). Its cases come from one
validated source through a population strategy (orchard.populations):
- cases: rows of a source (optionally filtered), learnt from where `trainable` holds; the generic strategy;
- offers, accounts, delinquencies: the simulator's lender's marketing offers, open-account snapshots and
  collection cases, which need joins beyond one source (named, documented strategies).
The label of a row is the modelled event (column `bad`), known once its window has passed (maturity). A model's
`kind` says what it is beyond label + features: a PD, campaign tiers (response x risk) or expected loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from orchard.errors import OrchardError
from orchard.portfolio.spec import LabelDef, ModelDef, PolicyDef, Portfolio, RejectInferenceDef, SelectionDef

Unit = Literal["cases", "offers", "accounts", "delinquencies"]
Kind = Literal["pd", "tiers", "expected_loss"]
LabelKind = Literal[
    "dpd90",
    "first_payment_default",
    "charge_off",
    "response_approved",
    "cure",
    "performance",
    "outcome_date",
    "observed",
]
_STRATEGY_LABELS: dict[str, LabelKind] = {
    "loan_event": "dpd90",
    "account_event": "dpd90",
    "first_payment_default": "first_payment_default",
    "charge_off": "charge_off",
    "response_approved": "response_approved",
    "cure": "cure",
}


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is built from and what it predicts."""

    name: str
    purpose: str
    population: str
    label: str
    feature_service: str
    feast_features: tuple[str, ...]
    request_features: tuple[str, ...]
    categorical: tuple[str, ...]
    source: str = "applications"
    unit: Unit = "cases"
    label_kind: LabelKind = "dpd90"
    key: str = "application_id"
    entity: str = "user_id"
    increasing: tuple[str, ...] = ()
    """Features whose larger values may never lower the predicted probability (monotone constraints)."""
    trends: dict[str, str | None] = field(default_factory=dict)
    """The scorecard's WOE trend per numeric feature (others: auto_asc_desc)."""
    selection: SelectionDef | None = None
    """The scorecard's feature selection; None keeps every feature."""
    kind: Kind = "pd"
    algorithm: Literal["lightgbm", "scorecard", "best"] = "lightgbm"
    risk_model: str | None = None
    views: tuple[str, ...] = ()
    where: str | None = None
    trainable: str | None = None
    max_per_month: int | None = None
    """At most this many cases per month (a stable sample by a hash of the key); None keeps every case."""
    label_rule: LabelDef | None = None
    early_label_rule: LabelDef | None = None
    """The early-performance label a shock recalibration learns from (None: the model is never recalibrated)."""
    dashboard_features: tuple[str, ...] = ()
    reject_inference: RejectInferenceDef | None = None
    """Declined cases in training with inferred labels (None: booked cases only)."""
    serve: bool = False
    policy: PolicyDef = field(default_factory=PolicyDef)
    """Training, promotion and monitoring thresholds: the portfolio's policy with the model's overrides."""

    @property
    def features(self) -> list[str]:
        return [*self.feast_features, *self.request_features]

    def with_early_label(self) -> ModelSpec:
        """Return this model with its early-performance label as its label (the cases and features unchanged)."""
        if self.early_label_rule is None:
            raise OrchardError(f"model {self.name} declares no early_label")
        early = self.early_label_rule
        return replace(self, label=early.description, label_kind=_label_kind(early), label_rule=early)


def _label_kind(label: LabelDef) -> LabelKind:
    if label.performance is not None:
        return "performance"
    if label.outcome_date is not None:
        return "outcome_date"
    if label.observed is not None:
        return "observed"
    return _STRATEGY_LABELS[str(label.strategy)]


def model_spec(portfolio: Portfolio, name: str) -> ModelSpec:
    """Return a model of the portfolio, or raise naming the known models."""
    if name not in portfolio.models:
        raise OrchardError(f"unknown model {name!r}; known: {', '.join(sorted(portfolio.models)) or 'none'}")
    model = portfolio.models[name]
    early = portfolio.labels[model.early_label] if model.early_label is not None else None
    return spec_of(name, model, portfolio.labels[model.label], early)


def spec_of(name: str, model: ModelDef, label: LabelDef, early_label: LabelDef | None = None) -> ModelSpec:
    """Return the ModelSpec of one model entry and its labels (a portfolio's, or a BYOD file's one model)."""
    population = model.population
    return ModelSpec(
        name=name,
        purpose=model.purpose,
        population=population.description or f"rows of {population.source}",
        label=label.description or model.label,
        feature_service=f"{name}_v{model.feature_service_version}",
        feast_features=model.features,
        request_features=model.request_features,
        categorical=model.categorical,
        source=population.source,
        unit=population.strategy,
        label_kind=_label_kind(label),
        key=population.key,
        entity=population.entity,
        increasing=model.increasing,
        trends=dict(model.trends),
        selection=model.selection,
        kind=model.kind,
        algorithm=model.algorithm,
        risk_model=model.risk_model,
        views=model.views,
        where=population.where,
        trainable=population.trainable,
        max_per_month=population.max_per_month,
        label_rule=label,
        early_label_rule=early_label,
        serve=model.serve,
        reject_inference=model.reject_inference,
        policy=model.policy,
        dashboard_features=model.dashboard_features or (*model.features, *model.request_features)[:5],
    )


def model_specs(portfolio: Portfolio) -> dict[str, ModelSpec]:
    """Return every model of the portfolio, in declaration order (the order of a customer's life)."""
    return {name: model_spec(portfolio, name) for name in portfolio.models}


def served_specs(portfolio: Portfolio) -> dict[str, ModelSpec]:
    """Return the models the real-time decision API loads (`serve: true`)."""
    return {name: model_spec(portfolio, name) for name in portfolio.served_models}


def primary_model(portfolio: Portfolio) -> str:
    """Return the model with the month record's headline fields and the risk managers' dashboard."""
    if portfolio.primary_model is not None:
        return portfolio.primary_model
    if not portfolio.models:
        raise OrchardError(f"portfolio {portfolio.name} declares no models")
    return (portfolio.served_models or list(portfolio.models))[0]
