"""The portfolio definition: a lender's sources, entities, features, labels and models, as typed data.

A portfolio is one folder with a `portfolio.yaml` (see docs/portfolio.md for every key). Everything downstream
(contracts, the Feast repository, training sets, registered model names, monitoring, the API's models) is
derived from it, so a lender's own data runs through exactly the code the demo runs.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchard.credit.binning import Trend
from orchard.errors import OrchardError
from orchard.federated.party_spec import PartyTable
from orchard.portfolio.expressions import check_expression

NAME = r"^[a-z][a-z0-9_]{0,62}$"
Name = Annotated[str, Field(pattern=NAME)]
ColumnType = Literal["string", "int", "float", "timestamp", "category"]
FeatureType = Literal["int", "float", "string"]
LabelStrategy = Literal[
    "loan_event", "first_payment_default", "charge_off", "response_approved", "account_event", "cure"
]


class Strict(BaseModel):
    """A portfolio block: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnDef(Strict):
    """One column of a source: its type, nullability and domain."""

    type: ColumnType
    description: str = ""
    nullable: bool = False
    min: int | float | None = None  # an int bound stays an int (an int column's requests are strict ints)
    max: int | float | None = None
    values: tuple[str, ...] | None = Field(default=None, description="the categories (type category)")

    @model_validator(mode="after")
    def _domain(self) -> ColumnDef:
        if self.values is not None and self.type not in ("category", "string"):
            raise ValueError(f"'values' applies to category or string columns, not {self.type}")
        if self.type == "category" and not self.values:
            raise ValueError("a category column needs its 'values'")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"'min'/'max' apply to int or float columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class FileLanding(Strict):
    """Files per period: a path pattern with `{period}` (YYYY-MM); CSV or Parquet by suffix unless given."""

    path: str = Field(description="relative to the portfolio folder; `{home}` is Orchard's state folder")
    format: Literal["csv", "parquet"] | None = None

    @field_validator("path")
    @classmethod
    def _period(cls, value: str) -> str:
        if "{period}" not in value:
            raise ValueError(f"landing path {value!r} must contain {{period}}")
        return value

    @property
    def file_format(self) -> Literal["csv", "parquet"]:
        """Return the declared format, else the one the path's suffix names."""
        if self.format is not None:
            return self.format
        return "csv" if self.path.lower().endswith(".csv") else "parquet"


class SqlLanding(Strict):
    """A SQL table or query read through SQLAlchemy; the URL is a secret of the settings (ORCHARD_SQL_URLS)."""

    connection: Name = Field(description="the name of the SQLAlchemy URL in the settings' sql_urls")
    table: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    query: str | None = Field(default=None, description="with :start and :end bind parameters (UTC)")

    @model_validator(mode="after")
    def _one(self) -> SqlLanding:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        if self.query is not None and (":start" not in self.query or ":end" not in self.query):
            raise ValueError("a query must select one period with the :start and :end parameters")
        return self


Check = Literal[
    "row_count", "completeness", "scale", "variety", "distribution", "key_reuse", "foreign_keys", "rules"
]
Severity = Literal["fail", "warn"]
DEFAULT_SEVERITY: dict[Check, Severity] = {
    "row_count": "fail",
    "completeness": "fail",
    "scale": "fail",
    "variety": "fail",
    "distribution": "warn",
    "key_reuse": "fail",
    "foreign_keys": "fail",
    "rules": "fail",
}
"""What a broken check does unless the contract says otherwise: `fail` quarantines, `warn` lets through."""


class ContractDef(Strict):
    """How a source's contract learns from its accepted history, and what each kind of check does."""

    history_window: int = Field(
        default=12, ge=1, le=120, description="accepted batches the profile learns from"
    )
    min_history: int = Field(
        default=3, ge=1, le=60, description="accepted batches before history checks apply"
    )
    tolerance: float = Field(
        default=5.0, gt=0.0, le=50.0, description="robust standard errors a metric may move"
    )
    max_orphan_share: float = Field(
        default=0.01, ge=0.0, le=1.0, description="foreign keys: share of values the lake may lack"
    )
    severity: dict[Check, Severity] = Field(default_factory=dict, description="check: fail or warn")
    ignore_columns: tuple[str, ...] = Field(default=(), description="columns the history checks leave out")

    def severity_of(self, check: Check) -> Severity:
        """Return the severity of a kind of check (the contract's, else the default)."""
        return self.severity.get(check, DEFAULT_SEVERITY[check])


class SourceDef(Strict):
    """A source: where its batches arrive, its key, event time, columns and relations."""

    description: str = ""
    landing: FileLanding | None = None
    sql: SqlLanding | None = None
    key: tuple[str, ...] = Field(min_length=1)
    event_time: str = Field(description="the column that dates a row (stored as event_ts, UTC, in the lake)")
    timezone: str | None = Field(default=None, description="zone of naive times; default: the portfolio's")
    columns: dict[str, ColumnDef] = Field(min_length=1)
    foreign_keys: dict[str, str] = Field(default_factory=dict, description="column: other_source.column")
    rules: tuple[str, ...] = Field(default=(), description="cross-field rules, e.g. 'amount_paid >= 0'")
    contract: ContractDef = Field(default_factory=ContractDef, description="history checks and severities")
    rows: tuple[int, int] | None = Field(default=None, description="bounds of a batch's row count")
    rows_per_simulated_user: tuple[float, float] | None = Field(
        default=None, description="simulator only: row-count bounds per simulated user"
    )

    @field_validator("rules")
    @classmethod
    def _rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for rule in value:
            try:
                check_expression(rule)
            except OrchardError as exc:  # a ValueError lets pydantic name the key in the message
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SourceDef:
        if (self.landing is None) == (self.sql is None):
            raise ValueError("give exactly one of 'landing' (files) or 'sql'")
        names = set(self.columns)
        for column in (*self.key, self.event_time, *self.foreign_keys, *self.contract.ignore_columns):
            if column not in names:
                raise ValueError(f"column {column!r} is not among the source's columns")
        if self.columns[self.event_time].type != "timestamp":
            raise ValueError(f"event_time column {self.event_time!r} must have type timestamp")
        for column, target in self.foreign_keys.items():
            if target.count(".") != 1:
                raise ValueError(f"foreign key {column}: {target!r} must look like 'source.column'")
        if self.rows is not None and self.rows_per_simulated_user is not None:
            raise ValueError("give at most one of 'rows' or 'rows_per_simulated_user'")
        return self


class EntityDef(Strict):
    """A Feast entity: the key features are joined on."""

    join_key: str
    description: str = ""


class FeatureDef(Strict):
    """A feature taken as it is from a source column (a snapshot view)."""

    type: FeatureType
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class RatioDef(Strict):
    """A derived feature: numerator / max(denominator, min_denominator)."""

    numerator: str
    denominator: str
    min_denominator: float = Field(default=1e-9, gt=0.0)
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


Aggregate = Literal["count", "sum", "mean", "max", "min", "last", "days_since"]


class AggregationDef(Strict):
    """A windowed aggregation of a source per entity: `how` over `column` (or rows) where `where` holds."""

    how: Aggregate
    column: str | None = Field(default=None, description="the column aggregated (not for count/days_since)")
    where: str | None = Field(default=None, description="row filter, e.g. \"status in ['current']\"")
    window_months: int = Field(ge=1, le=60, description="trailing periods, the row's own included")
    type: FeatureType = "float"
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _column(self) -> AggregationDef:
        needs_column = self.how not in ("count", "days_since")
        if needs_column and self.column is None:
            raise ValueError(f"aggregation {self.how!r} needs a 'column'")
        if not needs_column and self.column is not None:
            raise ValueError(f"aggregation {self.how!r} takes no 'column' (use 'where' to filter rows)")
        return self


class ViewDef(Strict):
    """A feature view: one source's rows per entity, as a snapshot or as trailing-window aggregations."""

    entity: Name
    source: Name
    description: str = ""
    ttl_days: int = Field(ge=1, le=3660, description="how long a row stays valid for a point-in-time join")
    owner: str = "risk-data@orchard"
    snapshot: dict[str, FeatureDef] = Field(default_factory=dict, description="columns taken as they are")
    ratios: dict[str, RatioDef] = Field(default_factory=dict)
    aggregations: dict[str, AggregationDef] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> ViewDef:
        if not (self.snapshot or self.aggregations):
            raise ValueError("a view needs 'snapshot' columns or 'aggregations'")
        if self.snapshot and self.aggregations:
            raise ValueError("a view is either a snapshot or aggregations, not both (make two views)")
        if self.ratios and not self.snapshot:
            raise ValueError("'ratios' derive from snapshot columns")
        return self

    @property
    def feature_names(self) -> list[str]:
        """Return the view's features in declaration order."""
        return [*self.snapshot, *self.ratios, *self.aggregations]


class PerformanceLabel(Strict):
    """Bad when a row of a performance source matching the case satisfies `event` within N periods after it."""

    source: Name
    match: dict[str, str] = Field(min_length=1, description="performance column: case column")
    event: str = Field(description="expression over the performance source's columns")
    within_months: int = Field(ge=1, le=60)


class OutcomeDateLabel(Strict):
    """Bad when the case's outcome date (a column of the case source) falls within N periods after the case."""

    column: str
    within_months: int = Field(ge=1, le=60)


class ObservedLabel(Strict):
    """Bad when a column of the case, as extracted, holds one of `bad_values` (an outcome observed at extraction).

    For files that carry their outcome as a status at the extraction date (e.g. a loan status column): every
    labelled case is taken as mature at once, so a case's observation window is however long it has been on
    book at extraction (the model card says so). Rows whose column is empty are unlabelled.
    """

    column: str
    bad_values: tuple[str | int | float | bool, ...] = Field(min_length=1)


STRATEGY_WINDOWS: dict[str, str] = {
    "loan_event": "90+ dpd (bad_dpd) or charge-off within `within_months` of booking",
    "account_event": "90+ dpd (bad_dpd) or charge-off within `within_months` statements after the snapshot",
    "charge_off": "charge-off within `within_months` of booking",
    "cure": "a current or paid-off statement within `within_months` statements after the action",
}
"""The named label strategies that need a window (the others have a fixed one), and what it means."""


class LabelDef(Strict):
    """A label: a performance event, an outcome date, an observed outcome, or a named strategy of the lifecycle."""

    description: str = ""
    performance: PerformanceLabel | None = None
    outcome_date: OutcomeDateLabel | None = None
    observed: ObservedLabel | None = None
    strategy: LabelStrategy | None = Field(
        default=None, description="a named label of the simulator's lender (orchard.labels)"
    )
    within_months: int | None = Field(
        default=None, ge=1, le=60, description="a strategy's outcome window (see STRATEGY_WINDOWS)"
    )
    bad_dpd: int = Field(default=90, ge=1, le=720, description="days past due that make a loan bad")

    @model_validator(mode="after")
    def _one(self) -> LabelDef:
        kinds = ("performance", "outcome_date", "observed", "strategy")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a label needs exactly one of 'performance', 'outcome_date', 'observed' or 'strategy'"
            )
        window = STRATEGY_WINDOWS.get(self.strategy) if self.strategy is not None else None
        if window is not None and self.within_months is None:
            raise ValueError(f"strategy {self.strategy} needs within_months: {window}")
        if window is None and self.within_months is not None:
            raise ValueError(
                "within_months belongs to the event or outcome_date block, or to a strategy with a window "
                f"({', '.join(STRATEGY_WINDOWS)})"
            )
        return self

    @property
    def window_months(self) -> int:
        """Return the strategy's outcome window, or raise if the label has none (a programming error)."""
        if self.within_months is None:
            raise OrchardError(f"label strategy {self.strategy} has no within_months")
        return self.within_months


class GatesDef(Strict):
    """The challenger gate's thresholds, on the champion's out-of-time window (model_registry.gates)."""

    max_auc_drop: float = Field(default=0.01, ge=0.0, description="discrimination: AUC may drop this much")
    max_ks_drop: float = Field(default=0.02, ge=0.0, description="discrimination: KS may drop this much")
    max_score_psi: float = Field(
        default=0.25, gt=0.0, description="stability: development vs recent score PSI"
    )
    calibration_bands: int = Field(default=5, ge=2, le=20, description="PD quantile bands checked")
    calibration_tolerance: float = Field(default=0.02, ge=0.0, description="|observed - expected| per band")
    calibration_z: float = Field(default=1.96, ge=0.0, description="plus this many binomial std errors")
    fairness_enforced: bool = Field(default=False, description="fairness figures always; the check optional")
    fairness_approval_rate: float = Field(
        default=0.7, gt=0.0, lt=1.0, description="share approved to compare"
    )
    max_approval_rate_gap: float = Field(
        default=0.10, ge=0.0, description="largest minus smallest group rate"
    )
    max_group_auc_gap: float = Field(default=0.05, ge=0.0, description="largest minus smallest group AUC")
    min_group_size: int = Field(default=30, ge=1, description="smaller groups are left out of the gaps")


class MonitoringDef(Strict):
    """When a champion's drift is a breach, and how soon after a retrain another may start (monitoring.policy)."""

    score_psi_breach: float = Field(default=0.25, gt=0.0, description="breach when the score PSI exceeds it")
    feature_psi_breach: float = Field(default=0.25, gt=0.0, description="a feature drifts above this PSI")
    max_feature_breaches: int = Field(default=3, ge=1, description="breach when more features drift")
    retrain_cooldown_months: int = Field(default=3, ge=0, description="minimum months between retrains")


TRAIN_LOOKBACK_MONTHS = 12
"""With `train_vintages`, a fit's cases are read for the window and the months its label takes to mature (this
many, a year, for a label without a window), then over twice the span until it holds enough mature vintages
(orchard.lifecycle.datasets)."""


class PolicyDef(Strict):
    """A model's training, promotion and monitoring policy (the portfolio's `policy`, overridden per model)."""

    min_mature_vintages: int = Field(default=6, ge=2, description="mature vintages before the first fit")
    oot_months: int = Field(
        default=2, ge=1, description="latest mature vintages held out (the gate's window)"
    )
    promotion_margin_auc: float = Field(
        default=0.005, ge=0.0, le=0.2, description="AUC a challenger must add to be approved by the policy"
    )
    recalibration_vintages: int = Field(
        default=2,
        ge=1,
        description="a model with an early_label: vintages since a breach a recalibration is fitted on "
        "(one more is held out for its gate)",
    )
    train_vintages: int | None = Field(
        default=None,
        ge=2,
        description="a fit develops and tests on the latest this many mature vintages (the out-of-time ones "
        "included) and reads only their months; none: every mature vintage since the first period, so a fit's "
        "time and memory grow with the whole history",
    )
    gates: GatesDef = Field(default_factory=GatesDef)
    monitoring: MonitoringDef = Field(default_factory=MonitoringDef)

    @model_validator(mode="after")
    def _window_holds_a_fit(self) -> PolicyDef:
        needed = max(self.min_mature_vintages, self.oot_months + 1)
        if self.train_vintages is not None and self.train_vintages < needed:
            raise ValueError(
                f"train_vintages {self.train_vintages} is below the {needed} mature vintages a fit needs "
                "(min_mature_vintages, and oot_months plus one to develop on)"
            )
        return self


class PopulationDef(Strict):
    """The cases a model scores: rows of a source, or a named population strategy."""

    source: Name
    key: str
    entity: str = Field(description="the column holding the feature entity's key")
    where: str | None = Field(default=None, description="which rows are cases")
    trainable: str | None = Field(default=None, description="which cases have an outcome (e.g. booked)")
    strategy: Literal["cases", "offers", "accounts", "delinquencies"] = "cases"
    max_per_month: int | None = Field(
        default=None,
        ge=1,
        description="at most this many cases per month, chosen by a hash of the key (the same every run)",
    )
    description: str = ""


class SelectionDef(Strict):
    """The scorecard's feature selection (orchard.credit.selection.SelectionConfig): `mode` sets features vs AUC."""

    mode: Literal["max_auc", "parsimonious"] = Field(
        default="max_auc",
        description="max_auc: keep every feature past the IV floor and near-duplicate pruning; "
        "parsimonious: forward stepwise while a feature adds min_gain",
    )
    min_iv: float = Field(default=0.02, ge=0.0)
    max_correlation: float = Field(default=0.9, gt=0.0, le=1.0)
    metric: Literal["auc", "ks"] = "auc"
    min_gain: float = Field(default=0.002, ge=0.0)
    max_features: int | None = Field(default=None, ge=1, description="cap on the features; none = no cap")
    cv_folds: int = Field(default=5, ge=0)


class RejectInferenceDef(Strict):
    """Reject inference (orchard.credit.reject_inference): the declined cases enter training with inferred labels."""

    method: Literal["parcelling"] = Field(
        default="parcelling",
        description="parcelling: each declined case of the development vintages is labelled bad with probability "
        "min(1, factor x PD of the booked-only fit), drawn with the run's seed",
    )
    factor: float = Field(
        default=1.5,
        ge=1.0,
        le=5.0,
        description="how much riskier than the booked-only fit believes a declined case is",
    )


class ModelDef(Strict):
    """A registered model: population, label, features, constraints, algorithms and serving."""

    purpose: str
    population: PopulationDef
    label: Name
    early_label: Name | None = Field(
        default=None,
        description="an early-performance label of the same cases (e.g. 30+ days past due within 3 months): "
        "after a breach, the champion is recalibrated on it before the label's own vintages mature",
    )
    views: tuple[Name, ...] = Field(description="feature views served by the model's feature service")
    features: tuple[str, ...] = Field(description="the views' features the model uses")
    request_features: tuple[str, ...] = Field(default=(), description="fields that come with the case")
    categorical: tuple[str, ...] = ()
    increasing: tuple[str, ...] = Field(default=(), description="features that may never lower the risk")
    trends: dict[str, Trend | None] = Field(
        default_factory=dict,
        description="scorecard: the WOE trend of a numeric feature's bins (default auto_asc_desc; null = "
        "unconstrained); `increasing` constrains LightGBM only",
    )
    selection: SelectionDef | None = Field(
        default=None, description="scorecard: feature selection; none keeps every listed feature"
    )
    kind: Literal["pd", "tiers", "expected_loss"] = Field(
        default="pd", description="what the model is beyond label + features (a named strategy)"
    )
    algorithm: Literal["lightgbm", "scorecard", "best"] = Field(
        default="lightgbm",
        description="the registered learner: LightGBM, the WOE scorecard, or the better of both on the "
        "development test sample (never the out-of-time window, which the gate judges); the other is the baseline",
    )
    risk_model: Name | None = Field(default=None, description="kind tiers: the model giving the risk axis")
    serve: bool = Field(default=False, description="the decision API scores it")
    dashboard_features: tuple[str, ...] = Field(
        default=(), description="features whose CSI the model's dashboard plots (default: its first five)"
    )
    feature_service_version: int = Field(default=1, ge=1)
    policy: PolicyDef = Field(
        default_factory=PolicyDef, description="the portfolio's policy with this model's overrides merged in"
    )
    reject_inference: RejectInferenceDef | None = Field(
        default=None,
        description="kind pd with a `trainable` population: train on the booked cases and the declined ones with "
        "inferred labels (none: booked cases only)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelDef:
        names = set(self.features) | set(self.request_features)
        for column in (*self.categorical, *self.increasing, *self.trends, *self.dashboard_features):
            if column not in names:
                raise ValueError(f"{column!r} is not among the model's features")
        on_categorical = sorted(f for f, t in self.trends.items() if f in self.categorical and t is not None)
        if on_categorical:
            raise ValueError(f"trends apply to numeric features, not {on_categorical}")
        if self.kind == "tiers" and self.risk_model is None:
            raise ValueError("kind tiers needs a 'risk_model'")
        if self.early_label is not None and self.kind != "pd":
            raise ValueError(f"early_label recalibrates a PD model; a model of kind {self.kind} has none")
        if self.early_label is not None and self.early_label == self.label:
            raise ValueError("early_label must be another label than the model's own")
        if self.reject_inference is not None and (self.kind != "pd" or self.population.trainable is None):
            raise ValueError(
                "reject_inference infers the outcome of declined cases: it needs kind pd and a population "
                "'trainable' rule (which cases have an outcome)"
            )
        return self


class FairnessDef(Strict):
    """The protected attribute the gates report fairness on: a feature, banded when numeric."""

    column: str = Field(description="a feature every model's frame carries (e.g. age)")
    name: str = Field(default="group", description="how the attribute is called in gate results")
    bins: tuple[float, ...] | None = Field(default=None, description="band edges (left-closed) of a number")
    labels: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _bands(self) -> FairnessDef:
        if self.labels is not None and (self.bins is None or len(self.labels) != len(self.bins) - 1):
            raise ValueError("fairness labels need bins, one label fewer than bin edges")
        return self


class JointDef(Strict):
    """The vertical federated joint model the lifecycle trains, monitors and retrains with the partner platform.

    The lender is the guest (labels: the decision PD model's label); the platform is the host. Only a simulated
    portfolio runs the host inside the lifecycle (the simulator plays the platform); a real partner runs its own
    host (`orchard party --role host`).
    """

    model: Name = "precredit_response_joint"
    epochs: int = Field(default=5, ge=1, le=100, description="passes over the training rows per job")
    min_rows: int = Field(
        default=200, ge=50, description="a month with fewer matched rows is not monitored (too few for PSI)"
    )
    train_vintages: int | None = Field(
        default=None,
        ge=2,
        description="a job fits and tests on the latest this many labelled vintages (the out-of-time ones "
        "included), and the platform matches only its snapshots of those months and the job's month; none: "
        "every labelled vintage, so the job's PSI grows with the whole history",
    )
    host_policy: dict[str, int | float | bool] = Field(
        default_factory=dict,
        description="the simulated platform's limits (orchard.federated.host_sessions.HostPolicy); a real partner sets its own",
    )


class DecisionDef(Strict):
    """The decision API's application decision: the PD model that decides and an optional fraud model."""

    pd_model: Name
    fraud_model: Name | None = None


class Portfolio(Strict):
    """A lender's portfolio: the one declarative definition every stage of the lifecycle is derived from."""

    name: Name
    description: str = ""
    period: Literal["month"] = "month"
    simulated: bool = Field(default=False, description="its landing files are written by orchard.simulate")
    start: str | None = Field(default=None, description="first period of the lake (YYYY-MM)")
    timezone: str = Field(
        default="UTC", description="zone of naive timestamps unless a source says otherwise"
    )
    sources: dict[Name, SourceDef] = Field(min_length=1)
    entities: dict[Name, EntityDef] = Field(default_factory=dict)
    views: dict[Name, ViewDef] = Field(default_factory=dict)
    labels: dict[Name, LabelDef] = Field(default_factory=dict)
    models: dict[Name, ModelDef] = Field(default_factory=dict)
    decision: DecisionDef | None = Field(
        default=None, description="what the decision route decides with (served models)"
    )
    fairness: FairnessDef | None = Field(
        default=None,
        description="the protected attribute of the gates' fairness figures (none: not reported)",
    )
    federated: PartyTable | None = Field(
        default=None, description="this party's own table in a vertical federated job (guest or host)"
    )
    joint: JointDef | None = Field(
        default=None,
        description="the joint model with the partner platform, monitored monthly (simulated only)",
    )
    primary_model: Name | None = Field(
        default=None, description="the model with the month record's headline fields and the dashboard"
    )
    policy: PolicyDef = Field(
        default_factory=PolicyDef, description="every model's policy unless the model overrides a key"
    )
    folder: Path = Field(default=Path("."), exclude=True, description="set by the loader")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _known_zone(value)

    @model_validator(mode="before")
    @classmethod
    def _model_policies(cls, data: Any) -> Any:
        """Give each model the portfolio's policy with the model's own keys merged over it."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            return data
        shared = data.get("policy") or {}
        if not isinstance(shared, dict):
            return data  # the field's own validation names the problem
        models = {}
        for name, model in data["models"].items():
            if isinstance(model, dict) and isinstance(model.get("policy", {}), dict):
                model = {**model, "policy": _merged(shared, model.get("policy") or {})}
            models[name] = model
        return {**data, "models": models}

    @field_validator("start")
    @classmethod
    def _start(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise ValueError(f"start {value!r} must be a month YYYY-MM")
        return value

    @model_validator(mode="after")
    def _references(self) -> Portfolio:
        for name, source in self.sources.items():
            if source.timezone is not None:
                _known_zone(source.timezone)
            for column, target in source.foreign_keys.items():
                other, other_column = target.split(".")
                if other not in self.sources:
                    raise ValueError(f"sources.{name}.foreign_keys.{column}: no source {other!r}")
                if other_column not in self.sources[other].columns:
                    raise ValueError(
                        f"sources.{name}.foreign_keys.{column}: {other} has no column {other_column!r}"
                    )
        for name, view in self.views.items():
            self._check_view(name, view)
        for name, label in self.labels.items():
            rule = label.performance
            if rule is not None and rule.source not in self.sources:
                raise ValueError(f"labels.{name}: performance source {rule.source!r} is not a source")
            if rule is not None:
                unknown = [c for c in rule.match if c not in self.sources[rule.source].columns]
                if unknown:
                    raise ValueError(f"labels.{name}.match: {rule.source} has no column {unknown[0]!r}")
        for name, model in self.models.items():
            self._check_model(name, model)
        if self.decision is not None:
            for role, served in (
                ("pd_model", self.decision.pd_model),
                ("fraud_model", self.decision.fraud_model),
            ):
                if served is not None and not (served in self.models and self.models[served].serve):
                    raise ValueError(f"decision.{role}: {served!r} is not a model with serve: true")
        if self.primary_model is not None and self.primary_model not in self.models:
            raise ValueError(f"primary_model {self.primary_model!r} is not a model")
        if self.joint is not None:
            if not self.simulated:
                raise ValueError(
                    "joint: the lifecycle runs the joint model's host only for a simulated portfolio; with a real "
                    "partner, run the job between `orchard party` processes"
                )
            if self.decision is None:
                raise ValueError("joint: the guest's label is the decision PD model's: set `decision`")
            if self.joint.model in self.models:
                raise ValueError(f"joint.model {self.joint.model!r} is also a model of the portfolio")
            needed = max(self.policy.min_mature_vintages, self.policy.oot_months + 1)
            if self.joint.train_vintages is not None and self.joint.train_vintages < needed:
                raise ValueError(
                    f"joint.train_vintages {self.joint.train_vintages} is below the {needed} labelled vintages "
                    "a job needs (policy min_mature_vintages, and oot_months plus one to fit on)"
                )
        return self

    def _check_view(self, name: str, view: ViewDef) -> None:
        where = f"views.{name}"
        if view.entity not in self.entities:
            raise ValueError(f"{where}: entity {view.entity!r} is not declared under entities")
        if view.source not in self.sources:
            raise ValueError(f"{where}: source {view.source!r} is not a source")
        columns = self.sources[view.source].columns
        join_key = self.entities[view.entity].join_key
        if join_key not in columns:
            raise ValueError(f"{where}: source {view.source} has no column {join_key!r} (the entity's key)")
        used = [*view.snapshot, *(c for r in view.ratios.values() for c in (r.numerator, r.denominator))]
        used += [a.column for a in view.aggregations.values() if a.column is not None]
        for column in used:
            if column not in columns and column not in view.snapshot:
                raise ValueError(f"{where}: source {view.source} has no column {column!r}")

    def _check_model(self, name: str, model: ModelDef) -> None:
        where = f"models.{name}"
        population = model.population
        if population.source not in self.sources:
            raise ValueError(f"{where}.population: source {population.source!r} is not a source")
        columns = self.sources[population.source].columns
        for column in (population.key, population.entity):
            if population.strategy == "cases" and column not in columns:
                raise ValueError(f"{where}.population: {population.source} has no column {column!r}")
        if model.label not in self.labels:
            raise ValueError(f"{where}: label {model.label!r} is not declared under labels")
        self._check_outcome_column(where, model, self.labels[model.label])
        if model.early_label is not None:
            if model.early_label not in self.labels:
                raise ValueError(f"{where}: early_label {model.early_label!r} is not declared under labels")
            self._check_outcome_column(where, model, self.labels[model.early_label])
        for view in model.views:
            if view not in self.views:
                raise ValueError(f"{where}: view {view!r} is not declared under views")
        offered = {f for v in model.views for f in self.views[v].feature_names}
        missing = [f for f in model.features if f not in offered]
        if missing:
            raise ValueError(f"{where}: feature {missing[0]!r} is in none of its views {list(model.views)}")
        if model.risk_model is not None and model.risk_model not in self.models:
            raise ValueError(f"{where}: risk_model {model.risk_model!r} is not a model")

    def _check_outcome_column(self, where: str, model: ModelDef, label: LabelDef) -> None:
        """An outcome-date or observed label reads a column of the model's cases, which is never a feature."""
        rule = label.outcome_date or label.observed
        if rule is None:
            return
        source = model.population.source
        column = self.sources[source].columns.get(rule.column)
        if column is None:
            raise ValueError(f"{where}: label {model.label} reads {rule.column!r}, not a column of {source}")
        if label.outcome_date is not None and column.type != "timestamp":
            raise ValueError(f"{where}: outcome date {source}.{rule.column} must be of type timestamp")
        if rule.column in (*model.features, *model.request_features):
            raise ValueError(f"{where}: {rule.column!r} is the label's outcome; it cannot be a feature")

    def source_timezone(self, name: str) -> str:
        """Return the zone a source's naive timestamps are read in."""
        return self.sources[name].timezone or self.timezone

    @property
    def served_models(self) -> list[str]:
        """Return the models the decision API scores."""
        return [name for name, model in self.models.items() if model.serve]


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return base with override's keys over it, nested mappings merged key by key; pure."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _known_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as UTC or Asia/Shanghai)"
        ) from None
    return value
