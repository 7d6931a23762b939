"""Baseline scorecard: WOE of quantile bins / category levels (each with a missing bin) + logistic regression.

The bins are plain, JSON-serialisable objects (FeatureBins, Scorecard.to_dict) so a later version can swap in
optbinning's monotone binning, stepwise selection and reason codes without changing the CreditModel interface.
WOE here is ln(share of goods / share of bads): higher WOE = safer.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from orchard.credit.model import (
    SCORE_FACTOR,
    SCORE_OFFSET,
    CreditModel,
    as_levels,
    as_numeric,
    check_training_frame,
)
from orchard.errors import OrchardError

log = logging.getLogger(__name__)

DEFAULT_BINS = 10
WOE_SMOOTHING = 0.5  # added to good and bad counts of a non-empty bin so a pure bin has a finite WOE
MISSING_BIN = "missing"
UNSEEN_BIN = "unseen level"


@dataclass
class FeatureBins:
    """The bins of one feature and their WOE: value bins, then (categorical) an unseen bin, then missing."""

    feature: str
    kind: Literal["numeric", "categorical"]
    edges: list[float] = field(default_factory=list)  # numeric: interior edges of right-closed intervals
    levels: list[str] = field(default_factory=list)  # categorical: known levels
    woe: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    n_bad: list[int] = field(default_factory=list)

    @property
    def n_bins(self) -> int:
        """Return the number of bins including the unseen (categorical) and missing bins."""
        if self.kind == "numeric":
            return len(self.edges) + 2
        return len(self.levels) + 2

    def labels(self) -> list[str]:
        """Return a readable label per bin, in bin order."""
        if self.kind == "numeric":
            bounds = [-math.inf, *(float(e) for e in self.edges), math.inf]
            values = [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(bounds)]
            return [*values, MISSING_BIN]
        return [*self.levels, UNSEEN_BIN, MISSING_BIN]

    def bin_index(self, values: pd.Series) -> np.ndarray:
        """Return the bin of every value (vectorised); missing values go to the last bin."""
        if self.kind == "numeric":
            x = as_numeric(values, self.feature)
            index = np.searchsorted(np.asarray(self.edges, dtype=float), x, side="left")
            return np.where(np.isnan(x), self.n_bins - 1, index)
        text = as_levels(values)
        codes = pd.Categorical(text, categories=self.levels).codes.astype(np.int64)
        unseen = len(self.levels)
        return np.where(text.isna().to_numpy(), unseen + 1, np.where(codes < 0, unseen, codes))

    def transform(self, values: pd.Series) -> np.ndarray:
        """Return the WOE of every value."""
        return np.asarray(self.woe, dtype=float)[self.bin_index(values)]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "feature": self.feature,
            "kind": self.kind,
            "edges": [float(e) for e in self.edges],
            "levels": list(self.levels),
            "woe": [float(w) for w in self.woe],
            "count": [int(c) for c in self.count],
            "n_bad": [int(b) for b in self.n_bad],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureBins:
        """Rebuild bins from to_dict output."""
        return cls(**data)


def quantile_edges(values: np.ndarray, n_bins: int) -> list[float]:
    """Return the distinct interior quantile edges of the non-missing values (empty if none)."""
    x = values[~np.isnan(values)]
    if x.size == 0 or n_bins < 2:
        return []
    edges = np.unique(np.quantile(x, np.arange(1, n_bins) / n_bins))
    return [float(e) for e in edges]


def fit_bins(
    values: pd.Series, y: np.ndarray, feature: str, categorical: bool, n_bins: int = DEFAULT_BINS
) -> FeatureBins:
    """Fit the bins of one feature and the smoothed WOE of each bin (empty bins get WOE 0, i.e. neutral)."""
    if categorical:
        levels = sorted(as_levels(values).dropna().unique().tolist())
        bins = FeatureBins(feature=feature, kind="categorical", levels=levels)
    else:
        bins = FeatureBins(
            feature=feature, kind="numeric", edges=quantile_edges(as_numeric(values, feature), n_bins)
        )
    index = bins.bin_index(values)
    count = np.bincount(index, minlength=bins.n_bins)
    n_bad = np.bincount(index, weights=y, minlength=bins.n_bins).round().astype(int)
    n_good = count - n_bad
    total_bad, total_good = max(int(y.sum()), 1), max(int(y.size - y.sum()), 1)
    woe = np.log((n_good + WOE_SMOOTHING) / total_good) - np.log((n_bad + WOE_SMOOTHING) / total_bad)
    bins.woe = [float(w) for w in np.where(count > 0, woe, 0.0)]
    bins.count = [int(c) for c in count]
    bins.n_bad = [int(b) for b in n_bad]
    return bins


@dataclass(eq=False)
class Scorecard:
    """Bins + logistic regression on WOE: PD = sigmoid(intercept + sum(coef * WOE))."""

    bins: list[FeatureBins]
    intercept: float
    coefficients: dict[str, float]

    def woe_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the WOE of every feature (columns in bin order)."""
        return np.column_stack([b.transform(frame[b.feature]) for b in self.bins])

    def predict_pd(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the probability of bad per row."""
        if frame.empty:
            return np.empty(0, dtype=float)
        coef = np.array([self.coefficients[b.feature] for b in self.bins])
        logit = self.intercept + self.woe_matrix(frame) @ coef
        return 1.0 / (1.0 + np.exp(-logit))

    def points_table(self) -> pd.DataFrame:
        """Return feature, bin, count, bads, WOE and points per bin; a row's score is the sum of its points."""
        share = (SCORE_OFFSET - SCORE_FACTOR * self.intercept) / len(self.bins)
        rows = []
        for b in self.bins:
            coef = self.coefficients[b.feature]
            for i, label in enumerate(b.labels()):
                rows.append(
                    {
                        "feature": b.feature,
                        "bin": label,
                        "bin_index": i,
                        "count": b.count[i],
                        "n_bad": b.n_bad[i],
                        "woe": b.woe[i],
                        "points": share - SCORE_FACTOR * coef * b.woe[i],
                    }
                )
        return pd.DataFrame(rows)

    def points(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return the points each feature contributes to each row (columns = features)."""
        table = self.points_table()
        out = {}
        for b in self.bins:
            per_bin = table.loc[table["feature"] == b.feature, "points"].to_numpy()
            out[b.feature] = per_bin[b.bin_index(frame[b.feature])]
        return pd.DataFrame(out, index=frame.index)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of the whole scorecard."""
        return {
            "bins": [b.to_dict() for b in self.bins],
            "intercept": float(self.intercept),
            "coefficients": {k: float(v) for k, v in self.coefficients.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scorecard:
        """Rebuild a scorecard from to_dict output."""
        return cls(
            bins=[FeatureBins.from_dict(b) for b in data["bins"]],
            intercept=float(data["intercept"]),
            coefficients={k: float(v) for k, v in data["coefficients"].items()},
        )


def train_scorecard(
    train: pd.DataFrame,
    label: str,
    features: list[str],
    categorical: list[str],
    seed: int,
    name: str = "scorecard",
    n_bins: int = DEFAULT_BINS,
) -> CreditModel:
    """Fit the baseline WOE + logistic-regression scorecard and return it as a CreditModel."""
    from sklearn.linear_model import LogisticRegression

    y = check_training_frame(train, label, features, categorical)
    if n_bins < 2:
        raise OrchardError(f"n_bins must be at least 2, got {n_bins}")
    bins = [fit_bins(train[f], y, f, f in categorical, n_bins) for f in features]
    x = np.column_stack([b.transform(train[b.feature]) for b in bins])
    regression = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    regression.fit(x, y)
    coefficients = {f: float(c) for f, c in zip(features, regression.coef_[0], strict=True)}
    flipped = [f for f, c in coefficients.items() if c > 0]
    if flipped:
        # WOE is oriented safer-is-higher, so a positive coefficient means collinearity reversed the sign
        log.warning("scorecard %s: feature(s) %s have a reversed sign", name, ", ".join(flipped))
    scorecard = Scorecard(bins=bins, intercept=float(regression.intercept_[0]), coefficients=coefficients)
    log.info("trained scorecard %s on %d rows x %d features", name, len(y), len(features))
    return CreditModel(
        name=name,
        kind="scorecard",
        features=list(features),
        categorical=list(categorical),
        estimator=scorecard,
        params={"seed": seed, "n_bins": n_bins, "C": 1.0, "n_train": len(y), "bad_rate": float(y.mean())},
    )
