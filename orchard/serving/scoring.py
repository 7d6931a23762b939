"""The one scoring implementation: PD, score, band and reason codes for one row (API) or a month (batch).

A LightGBM model is scored on a float matrix built column by column (categoricals as their training
level codes, exactly what LightGBM's own pandas path passes to the booster), single-threaded, with
reason codes from its SHAP contributions (pred_contrib): the features that raise the log-odds of bad
the most, converted to score points. Any other model (the WOE scorecard) goes through its own
predict_pd / score and orchard.credit.reason_codes. The API, the batch flow and replay all call
`score_columns`, so the same inputs give the same numbers everywhere.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from orchard.credit.model import SCORE_FACTOR, CreditModel, LightGBMEstimator, calibrated, pd_to_score
from orchard.credit.reason_codes import TOP_REASONS, reason_code, reason_codes, reason_records, reason_text
from orchard.errors import OrchardError

# Upper PD bound of each risk band (A safest); the last band takes everything above.
BANDS: tuple[tuple[str, float], ...] = (("A", 0.02), ("B", 0.05), ("C", 0.10), ("D", 0.20), ("E", 1.0))
_BAND_EDGES = np.array([upper for _, upper in BANDS[:-1]])
_BAND_NAMES = np.array([name for name, _ in BANDS], dtype=object)
_CONTRIB_TOLERANCE = 1e-12

UNKNOWN_CUSTOMER = "RC_UNKNOWN_CUSTOMER"
FRAUD_SUSPECTED = "RC_FRAUD_SUSPECTED"
APPROVE, DECLINE, REFER = "approve", "decline", "refer"


def pd_band(pd_values: np.ndarray) -> np.ndarray:
    """Return the risk band (A..E) of each probability of bad."""
    return _BAND_NAMES[np.searchsorted(_BAND_EDGES, np.asarray(pd_values, dtype=float), side="left")]


@dataclass(frozen=True)
class Scored:
    """Scores of n rows: PD, score points, band and the reasons of each row (JSON-ready dicts)."""

    pd: np.ndarray
    score: np.ndarray
    band: np.ndarray
    reasons: list[list[dict[str, Any]]]


def _floats(values: Any, column: str) -> np.ndarray:
    """Return a column as floats with missing values (None, NaN, pd.NA) as NaN, or raise naming it."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values), dtype=float)
    for i, value in enumerate(values):
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            out[i] = np.nan
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            raise OrchardError(f"column {column!r} must be numeric, got {value!r}") from None
    return out


def _codes(values: Any, levels: Mapping[str, int]) -> np.ndarray:
    """Return the training level code of each value as float (missing or unseen level -> NaN)."""
    out = np.empty(len(values), dtype=float)
    for i, value in enumerate(values):
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            out[i] = np.nan
        else:
            out[i] = levels.get(str(value), np.nan)
    return out


@dataclass(frozen=True, eq=False)
class TreeEncoder:
    """The float-matrix view of a LightGBM model's features and its booster (built once per version)."""

    features: tuple[str, ...]
    levels: Mapping[str, Mapping[str, int]]
    booster: Any
    calibration: tuple[float, float] = (1.0, 0.0)

    @classmethod
    def of(cls, model: CreditModel) -> TreeEncoder | None:
        """Return the encoder of a LightGBM model, or None for any other kind of model."""
        estimator = getattr(model, "estimator", None)
        if model.kind != "lightgbm" or not isinstance(estimator, LightGBMEstimator):
            return None
        booster = estimator.model.booster_
        levels = {c: {level: i for i, level in enumerate(estimator.levels[c])} for c in estimator.levels}
        calibration = tuple(getattr(estimator, "calibration", (1.0, 0.0)))
        return cls(features=tuple(model.features), levels=levels, booster=booster, calibration=calibration)

    def matrix(self, columns: Mapping[str, Any], n_rows: int) -> np.ndarray:
        """Return the (n_rows, n_features) float matrix the booster predicts on."""
        x = np.empty((n_rows, len(self.features)), dtype=float)
        for j, name in enumerate(self.features):
            levels = self.levels.get(name)
            x[:, j] = _codes(columns[name], levels) if levels is not None else _floats(columns[name], name)
        return x


def _value_text(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, float | np.floating):
        return f"{float(value):.2f}".rstrip("0").rstrip(".")
    return str(value)


def tree_reasons(
    contrib: np.ndarray, features: Sequence[str], columns: Mapping[str, Any], top_n: int = TOP_REASONS
) -> list[list[dict[str, Any]]]:
    """Return per row the top_n features that raise the risk most (SHAP log-odds > 0), as points lost."""
    values = contrib[:, : len(features)]
    k = min(top_n, len(features))
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(values, order, axis=1)
    codes = [reason_code(f) for f in features]
    texts = [reason_text(f) for f in features]
    out: list[list[dict[str, Any]]] = []
    for row in range(values.shape[0]):
        items = []
        for rank in range(k):
            if top[row, rank] <= _CONTRIB_TOLERANCE:
                break
            j = int(order[row, rank])
            value = columns[features[j]][row]
            items.append(
                {
                    "code": codes[j],
                    "text": f"{texts[j]} ({_value_text(value)})",
                    # score = offset - factor * logit(pd): a log-odds rise of c costs factor * c points
                    "points_lost": round(float(top[row, rank]) * SCORE_FACTOR, 2),
                }
            )
        out.append(items)
    return out


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One loaded model version ready to score (the model plus its prepared fast path)."""

    name: str
    version: int
    model: CreditModel
    encoder: TreeEncoder | None = None

    @classmethod
    def build(cls, name: str, version: int, model: CreditModel) -> ServedModel:
        """Prepare a loaded model for scoring."""
        missing = [a for a in ("features", "predict_pd", "score") if not hasattr(model, a)]
        if missing:
            raise OrchardError(f"model {name} v{version} cannot be served: it lacks {', '.join(missing)}")
        return cls(name=name, version=int(version), model=model, encoder=TreeEncoder.of(model))

    @property
    def features(self) -> list[str]:
        """Return the model's input features."""
        return list(self.model.features)


def score_columns(
    served: ServedModel, columns: Mapping[str, Any], n_rows: int, *, with_reasons: bool = True
) -> Scored:
    """Score n_rows given as feature columns (sequences of equal length): the one scoring implementation.

    Without reasons (monitoring a model whose cases are not decisions) the per-feature contributions are skipped.
    """
    absent = [f for f in served.features if f not in columns]
    if absent:
        raise OrchardError(f"model {served.name} needs column(s) {', '.join(absent)}")
    if n_rows == 0:
        empty = np.empty(0, dtype=float)
        return Scored(pd=empty, score=empty, band=np.empty(0, dtype=object), reasons=[])
    encoder = served.encoder
    if encoder is not None:
        x = encoder.matrix(columns, n_rows)
        raw = encoder.booster.predict(x, raw_score=True, num_threads=1)
        pd_values = calibrated(raw, encoder.calibration)
        scores = pd_to_score(pd_values)
        if not with_reasons:
            return Scored(
                pd=pd_values, score=scores, band=pd_band(pd_values), reasons=[[] for _ in range(n_rows)]
            )
        contrib = np.asarray(encoder.booster.predict(x, pred_contrib=True, num_threads=1), dtype=float)
        reasons = tree_reasons(contrib, encoder.features, columns)
    else:
        frame = pd.DataFrame({f: list(columns[f]) for f in served.features})
        pd_values = np.asarray(served.model.predict_pd(frame), dtype=float)
        scores = np.asarray(served.model.score(frame), dtype=float)
        reasons = [[] for _ in range(n_rows)]  # a model without a scorecard gives no reasons
        if with_reasons:
            with contextlib.suppress(OrchardError):
                reasons = reason_records(reason_codes(served.model, frame))
    return Scored(pd=pd_values, score=scores, band=pd_band(pd_values), reasons=reasons)


def score_frame(served: ServedModel, frame: pd.DataFrame, *, with_reasons: bool = True) -> Scored:
    """Score every row of a frame holding the model's features (the batch path)."""
    columns = {f: frame[f].to_numpy() for f in served.features if f in frame.columns}
    return score_columns(served, columns, len(frame), with_reasons=with_reasons)


def score_row(served: ServedModel, inputs: Mapping[str, Any]) -> Scored:
    """Score one row given as a feature -> value mapping (the online path); absent features are missing."""
    return score_columns(served, {f: [inputs.get(f)] for f in served.features}, 1)


@dataclass(frozen=True)
class DecisionPolicy:
    """Cut-offs of the application decision (recorded with every decision, so replay uses the same)."""

    approve_max_pd: float
    decline_min_pd: float
    fraud_refer_min: float

    def to_dict(self) -> dict[str, float]:
        """Return the cut-offs as a JSON-ready dict."""
        return {
            "approve_max_pd": self.approve_max_pd,
            "decline_min_pd": self.decline_min_pd,
            "fraud_refer_min": self.fraud_refer_min,
        }


@dataclass(frozen=True)
class DecisionOutcome:
    """An application decision and everything it was based on (except the raw inputs)."""

    decision: str
    rule: str
    pd: float | None
    score: float | None
    band: str | None
    fraud_pd: float | None
    reasons: list[dict[str, Any]]
    model_versions: dict[str, int | None]
    notes: list[str] = field(default_factory=list)

    def result_dict(self) -> dict[str, Any]:
        """Return the fields replay must reproduce exactly."""
        return {
            "decision": self.decision,
            "rule": self.rule,
            "pd": self.pd,
            "score": self.score,
            "band": self.band,
            "fraud_pd": self.fraud_pd,
            "reasons": self.reasons,
            "model_versions": self.model_versions,
        }


FRAUD_RULE = "fraud_pd >= fraud_refer_min"


def decision_rules(
    pd_values: np.ndarray, fraud_pd: np.ndarray | None, policy: DecisionPolicy
) -> tuple[np.ndarray, np.ndarray]:
    """Return (decision, rule) per application from its PD (and fraud PD, None without a fraud model).

    The one decision rule, for the API's single rows and for a batch alike: decline from decline_min_pd, refer
    a suspected fraud, approve up to approve_max_pd, refer the band in between.
    """
    fraud = np.zeros(len(pd_values), dtype=bool) if fraud_pd is None else fraud_pd >= policy.fraud_refer_min
    conditions = [pd_values >= policy.decline_min_pd, fraud, pd_values <= policy.approve_max_pd]
    decisions = np.select(conditions, [DECLINE, REFER, APPROVE], default=REFER).astype(object)
    rules = np.select(
        conditions,
        ["pd >= decline_min_pd", FRAUD_RULE, "pd <= approve_max_pd"],
        default="approve_max_pd < pd < decline_min_pd",
    ).astype(object)
    return decisions, rules


def decide(
    pd_model: ServedModel,
    fraud_model: ServedModel | None,
    inputs: Mapping[str, Any] | None,
    policy: DecisionPolicy,
    fraud_name: str = "application_fraud",
) -> DecisionOutcome:
    """Decide an application from its inputs (None = unknown customer): approve, decline or refer."""
    versions = {pd_model.name: pd_model.version, fraud_name: fraud_model.version if fraud_model else None}
    notes = [] if fraud_model else [f"no champion for {fraud_name}: decided on {pd_model.name} only"]
    if inputs is None:
        reason = {
            "code": UNKNOWN_CUSTOMER,
            "text": "Customer not known to the feature store",
            "points_lost": None,
        }
        return DecisionOutcome(
            decision=REFER,
            rule="unknown customer",
            pd=None,
            score=None,
            band=None,
            fraud_pd=None,
            reasons=[reason],
            model_versions=versions,
            notes=notes,
        )
    scored = score_row(pd_model, inputs)
    pd_value, score, band = float(scored.pd[0]), float(scored.score[0]), str(scored.band[0])
    fraud_pd = float(score_row(fraud_model, inputs).pd[0]) if fraud_model else None
    reasons = list(scored.reasons[0])
    decisions, rules = decision_rules(
        np.array([pd_value]), None if fraud_pd is None else np.array([fraud_pd]), policy
    )
    decision, rule = str(decisions[0]), str(rules[0])
    if rule == FRAUD_RULE:
        fraud = {
            "code": FRAUD_SUSPECTED,
            "text": "Application resembles first-payment defaults",
            "points_lost": None,
        }
        reasons = [fraud, *reasons[: TOP_REASONS - 1]]
    return DecisionOutcome(
        decision=decision,
        rule=rule,
        pd=pd_value,
        score=score,
        band=band,
        fraud_pd=fraud_pd,
        reasons=reasons,
        model_versions=versions,
        notes=notes,
    )
