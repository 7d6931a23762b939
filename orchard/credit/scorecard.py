"""The scorecard engine: optimal (monotone) bins, WOE, feature selection, logistic regression, points and bands.

PD = sigmoid(intercept + sum(coef * WOE)), with WOE oriented safer-is-higher so every coefficient is negative;
a feature whose coefficient comes out positive (collinearity) is dropped and the regression refitted, which
keeps the points of a monotone feature monotone. Score = offset + factor * ln(good:bad odds), split into
points per feature bin (the points table): a row's score is exactly the sum of its points.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from orchard.credit.binning import (
    DEFAULT_MAX_BINS,
    DEFAULT_MIN_BIN_SHARE,
    DEFAULT_NUMERIC_TREND,
    Binning,
    fit_binning,
)
from orchard.credit.model import (
    BASE_ODDS,
    BASE_SCORE,
    POINTS_TO_DOUBLE_ODDS,
    CreditModel,
    check_training_frame,
)
from orchard.credit.selection import LOGISTIC_C, SOLVER, SelectionConfig, SelectionResult, select_features
from orchard.errors import OrchardError

log = logging.getLogger(__name__)

SCORECARD_SCHEMA_VERSION = 1
DEFAULT_BANDS = 5
BAND_NAMES = "ABCDEFGHIJ"  # A = safest band


@dataclass(frozen=True)
class ScoreScaling:
    """Points scaling: base_score points at good:bad odds base_odds, pdo points to double the odds."""

    base_score: float = BASE_SCORE
    base_odds: float = BASE_ODDS
    pdo: float = POINTS_TO_DOUBLE_ODDS

    def __post_init__(self) -> None:
        if self.base_odds <= 0 or self.pdo <= 0:
            raise OrchardError(f"base_odds and pdo must be positive, got {self.base_odds} and {self.pdo}")

    @property
    def factor(self) -> float:
        """Return the points per unit of ln(odds)."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Return the score at odds 1:1."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def score_of_logit(self, logit: np.ndarray) -> np.ndarray:
        """Return the score of a bad-vs-good logit (ln(bad odds))."""
        return self.offset - self.factor * np.asarray(logit, dtype=float)

    def pd_of_score(self, scores: np.ndarray) -> np.ndarray:
        """Return the probability of bad a score stands for."""
        return 1.0 / (1.0 + np.exp((np.asarray(scores, dtype=float) - self.offset) / self.factor))

    def to_dict(self) -> dict[str, float]:
        """Return a JSON-serialisable dict."""
        return {"base_score": self.base_score, "base_odds": self.base_odds, "pdo": self.pdo}


@dataclass(eq=False)
class Scorecard:
    """Bins + logistic regression on WOE + points scaling + score bands; one JSON artifact (to_dict)."""

    binning: Binning
    intercept: float
    coefficients: dict[str, float]
    scaling: ScoreScaling = field(default_factory=ScoreScaling)
    band_edges: list[float] = field(default_factory=list)  # ascending score cut points; band A is safest
    selection: dict[str, Any] = field(default_factory=dict)  # SelectionResult.to_dict() + candidate IVs

    @property
    def features(self) -> list[str]:
        """Return the scorecard's features in order."""
        return self.binning.names

    def _coef(self) -> np.ndarray:
        return np.array([self.coefficients[f] for f in self.features], dtype=float)

    def logit(self, frame: pd.DataFrame) -> np.ndarray:
        """Return ln(bad odds) per row."""
        return self.intercept + self.binning.woe_frame(frame).to_numpy() @ self._coef()

    def predict_pd(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the probability of bad per row."""
        if frame.empty:
            return np.empty(0, dtype=float)
        return 1.0 / (1.0 + np.exp(-self.logit(frame)))

    def score_points(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the score per row (exactly the sum of its points)."""
        if frame.empty:
            return np.empty(0, dtype=float)
        return self.scaling.score_of_logit(self.logit(frame))

    def points_table(self) -> pd.DataFrame:
        """Return feature, bin, count, bads, bad rate, WOE, IV and points per bin (the scorecard itself)."""
        share = (self.scaling.offset - self.scaling.factor * self.intercept) / len(self.features)
        table = self.binning.table()
        coef = table["feature"].map(self.coefficients).to_numpy(dtype=float)
        table["coefficient"] = coef
        table["points"] = share - self.scaling.factor * coef * table["woe"].to_numpy(dtype=float)
        table["points_rounded"] = table["points"].round().astype(int)
        return table

    def _points_by_feature(self) -> dict[str, np.ndarray]:
        table = self.points_table()
        return {f: table.loc[table["feature"] == f, "points"].to_numpy() for f in self.features}

    def points(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return the points each feature contributes to each row (columns = features)."""
        per_feature = self._points_by_feature()
        return pd.DataFrame(
            {b.feature: per_feature[b.feature][b.bin_index(frame[b.feature])] for b in self.binning.features},
            index=frame.index,
        )

    def band_of(self, scores: np.ndarray) -> np.ndarray:
        """Return the band name of every score ('A' = highest scores = safest)."""
        index = np.searchsorted(np.asarray(self.band_edges, dtype=float), np.asarray(scores), side="right")
        names = np.array(list(BAND_NAMES[: len(self.band_edges) + 1]))[::-1]
        return names[index]

    def bands_table(self) -> pd.DataFrame:
        """Return each band with its score range and the PD range it stands for."""
        bounds = [-math.inf, *self.band_edges, math.inf]
        names = list(BAND_NAMES[: len(self.band_edges) + 1])[::-1]
        rows = [
            {
                "band": name,
                "min_score": lo,
                "max_score": hi,
                "max_pd": float(self.scaling.pd_of_score(np.array([lo]))[0]),
                "min_pd": float(self.scaling.pd_of_score(np.array([hi]))[0]),
            }
            for name, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True)
        ]
        return pd.DataFrame(rows[::-1])

    def to_dict(self) -> dict[str, Any]:
        """Return the versioned JSON-serialisable scorecard (its binning included)."""
        return {
            "schema_version": SCORECARD_SCHEMA_VERSION,
            "binning": self.binning.to_dict(),
            "intercept": float(self.intercept),
            "coefficients": {k: float(v) for k, v in self.coefficients.items()},
            "scaling": self.scaling.to_dict(),
            "band_edges": [float(e) for e in self.band_edges],
            "selection": self.selection,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scorecard:
        """Rebuild a scorecard from to_dict output, refusing another schema version."""
        if data.get("schema_version") != SCORECARD_SCHEMA_VERSION:
            raise OrchardError(
                f"scorecard schema version {data.get('schema_version')!r} is not {SCORECARD_SCHEMA_VERSION}"
            )
        return cls(
            binning=Binning.from_dict(data["binning"]),
            intercept=float(data["intercept"]),
            coefficients={k: float(v) for k, v in data["coefficients"].items()},
            scaling=ScoreScaling(**data["scaling"]),
            band_edges=[float(e) for e in data["band_edges"]],
            selection=dict(data.get("selection") or {}),
        )


def band_edges(scores: np.ndarray, n_bands: int) -> list[float]:
    """Return ascending whole-point score cut points splitting the scores into about equal bands."""
    if not 1 <= n_bands <= len(BAND_NAMES):
        raise OrchardError(f"n_bands must be between 1 and {len(BAND_NAMES)}, got {n_bands}")
    cuts = np.quantile(np.asarray(scores, dtype=float), np.arange(1, n_bands) / n_bands)
    return [float(c) for c in np.unique(np.round(cuts))]


def fit_logistic(woe: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[float, dict[str, float], list[str]]:
    """Fit the WOE regression, dropping wrong-signed features one by one; return intercept, coefs, dropped."""
    from sklearn.linear_model import LogisticRegression  # deferred: heavy to import, only a fit needs it

    features = list(woe.columns)
    dropped: list[str] = []
    while True:
        regression = LogisticRegression(C=LOGISTIC_C, solver=SOLVER, max_iter=1000, random_state=seed)
        regression.fit(woe[features].to_numpy(dtype=float), y)
        coefficients = {f: float(c) for f, c in zip(features, regression.coef_[0], strict=True)}
        # WOE is safer-is-higher, so a positive coefficient means collinearity reversed the feature's sign
        wrong = [f for f, c in coefficients.items() if c > 0]
        if not wrong or len(features) == 1:
            return float(regression.intercept_[0]), coefficients, dropped
        worst = max(wrong, key=lambda f: coefficients[f])
        log.warning("dropping %s: its WOE coefficient %.3f has the wrong sign", worst, coefficients[worst])
        features.remove(worst)
        dropped.append(worst)


def train_scorecard(
    train: pd.DataFrame,
    label: str,
    features: list[str],
    categorical: list[str],
    seed: int,
    name: str = "scorecard",
    *,
    monotone: dict[str, str | None] | None = None,
    default_trend: str | None = DEFAULT_NUMERIC_TREND,
    selection: SelectionConfig | None = None,
    holdout: pd.DataFrame | None = None,
    scaling: ScoreScaling | None = None,
    n_bands: int = DEFAULT_BANDS,
    max_bins: int = DEFAULT_MAX_BINS,
    min_bin_share: float = DEFAULT_MIN_BIN_SHARE,
) -> CreditModel:
    """Fit a scorecard and return it as a CreditModel (features = the selected ones).

    Numeric features get monotone bins (monotone[feature], else default_trend); without `selection` every
    feature is kept (the lifecycle's feature services choose them); with it, the IV floor and correlation
    pruning run, then, in `parsimonious` mode, forward stepwise on the labelled `holdout` (an out-of-time
    sample) if one is given, else by k-fold CV.
    """
    y = check_training_frame(train, label, features, categorical)
    binning = fit_binning(train, y, features, categorical, monotone, default_trend, max_bins, min_bin_share)
    woe = binning.woe_frame(train)
    iv = binning.iv()
    if selection is None:
        result = SelectionResult(selected=list(features))
    else:
        holdout_woe = y_holdout = None
        if holdout is not None:
            y_holdout = check_training_frame(holdout, label, features, categorical)
            holdout_woe = binning.woe_frame(holdout)
        result = select_features(iv, woe, y, selection, seed, holdout_woe, y_holdout)
    intercept, coefficients, wrong_sign = fit_logistic(woe[result.selected], y, seed)
    selected = [f for f in result.selected if f not in wrong_sign]
    dropped = {**result.dropped, **{f: "wrong-signed WOE coefficient" for f in wrong_sign}}
    scorecard = Scorecard(
        binning=binning.subset(selected),
        intercept=intercept,
        coefficients=coefficients,
        scaling=scaling or ScoreScaling(),
        selection={
            "candidate_iv": {f: float(v) for f, v in iv.items()},
            "dropped": dropped,
            "steps": result.steps,
            "config": None if selection is None else asdict(selection),
        },
    )
    scorecard.band_edges = band_edges(scorecard.score_points(train), n_bands)
    log.info("trained scorecard %s on %d rows: %d of %d features", name, len(y), len(selected), len(features))
    return CreditModel(
        name=name,
        kind="scorecard",
        features=selected,
        categorical=[c for c in categorical if c in selected],
        estimator=scorecard,
        params={
            "seed": seed,
            "C": LOGISTIC_C,
            "max_bins": max_bins,
            "min_bin_share": min_bin_share,
            "default_trend": str(default_trend),
            "n_train": len(y),
            "bad_rate": float(y.mean()),
            **scorecard.scaling.to_dict(),
        },
    )


def scorecard_of(model: CreditModel | Scorecard) -> Scorecard:
    """Return the Scorecard inside a CreditModel (or the scorecard itself), or raise naming the model."""
    if isinstance(model, Scorecard):
        return model
    if isinstance(model, CreditModel) and isinstance(model.estimator, Scorecard):
        return model.estimator
    raise OrchardError(f"model {getattr(model, 'name', model)!r} is not a scorecard")
