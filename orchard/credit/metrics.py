"""Metrics of a PD model: AUC, KS, Gini, deciles and lift, WOE/IV, PSI, and calibration by score band."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from orchard.credit.psi import ReferenceProfile, psi
from orchard.errors import OrchardError

N_DECILES = 10


def _validate(y_true: ArrayLike, pd_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return y as 0/1 ints and the predictions as floats, or raise naming what is wrong."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(pd_pred, dtype=float)
    if y.ndim != 1 or p.ndim != 1 or y.shape != p.shape:
        raise OrchardError(f"labels and predictions must be 1-d of equal length, got {y.shape} and {p.shape}")
    if y.size == 0:
        raise OrchardError("cannot evaluate an empty sample")
    if np.isnan(y).any():
        raise OrchardError("labels contain missing values (immature loans?); evaluate mature labels only")
    if np.isnan(p).any():
        raise OrchardError("predictions contain missing values")
    if not np.isin(y, (0.0, 1.0)).all():
        raise OrchardError("labels must be 0 (good) or 1 (bad)")
    n_bad = int(y.sum())
    if n_bad in (0, y.size):
        raise OrchardError(f"labels hold a single class ({n_bad} bad of {y.size}); AUC and KS are undefined")
    return y.astype(int), p


def auc(y_true: ArrayLike, pd_pred: ArrayLike) -> float:
    """Return the ROC AUC (Mann-Whitney: probability a bad is scored riskier than a good; ties count half)."""
    y, p = _validate(y_true, pd_pred)
    ranks = pd.Series(p).rank(method="average").to_numpy()  # average ranks, so ties count half
    n_bad = int(y.sum())
    n_good = y.size - n_bad
    return float((ranks[y == 1].sum() - n_bad * (n_bad + 1) / 2) / (n_bad * n_good))


def ks(y_true: ArrayLike, pd_pred: ArrayLike) -> float:
    """Return the Kolmogorov-Smirnov statistic: the largest gap between the bads' and goods' score CDFs."""
    y, p = _validate(y_true, pd_pred)
    thresholds = np.unique(p)
    bad_sorted = np.sort(p[y == 1])
    good_sorted = np.sort(p[y == 0])
    cdf_bad = np.searchsorted(bad_sorted, thresholds, side="right") / bad_sorted.size
    cdf_good = np.searchsorted(good_sorted, thresholds, side="right") / good_sorted.size
    return float(np.max(np.abs(cdf_bad - cdf_good)))


def gini(y_true: ArrayLike, pd_pred: ArrayLike) -> float:
    """Return the Gini coefficient (accuracy ratio), 2 * AUC - 1."""
    return 2.0 * auc(y_true, pd_pred) - 1.0


def decile_table(y: ArrayLike, pd_scores: ArrayLike) -> pd.DataFrame:
    """Return count, bads, bad rate and score range per PD decile; decile 1 holds the riskiest scores.

    Equal scores always share a decile, so heavily tied scores give fewer than ten rows.
    """
    y_arr, p = _validate(y, pd_scores)
    # rank by descending PD; qcut on the ranks keeps ties together via the 'min' method
    order = pd.Series(-p).rank(method="min").to_numpy()
    deciles = pd.qcut(order, N_DECILES, labels=False, duplicates="drop")
    frame = pd.DataFrame({"decile": np.asarray(deciles) + 1, "bad": y_arr, "score": p})
    table = (
        frame.groupby("decile", sort=True)
        .agg(
            count=("bad", "size"),
            n_bad=("bad", "sum"),
            min_score=("score", "min"),
            max_score=("score", "max"),
        )
        .reset_index()
    )
    table["decile"] = np.arange(1, len(table) + 1)
    table["bad_rate"] = table["n_bad"] / table["count"]
    table["cum_bad_share"] = table["n_bad"].cumsum() / table["n_bad"].sum()
    return table[["decile", "count", "n_bad", "bad_rate", "min_score", "max_score", "cum_bad_share"]]


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """The evaluation of a PD model on one labelled sample."""

    n: int
    n_bad: int
    bad_rate: float
    auc: float
    ks: float
    gini: float
    deciles: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (deciles as a list of records)."""
        records = [
            {key: (int(v) if key in ("decile", "count", "n_bad") else float(v)) for key, v in row.items()}
            for row in self.deciles.to_dict(orient="records")
        ]
        return {
            "n": self.n,
            "n_bad": self.n_bad,
            "bad_rate": self.bad_rate,
            "auc": self.auc,
            "ks": self.ks,
            "gini": self.gini,
            "deciles": records,
        }

    def metrics(self) -> dict[str, float]:
        """Return the scalar metrics (for MLflow log_metrics)."""
        return {
            "n": float(self.n),
            "bad_rate": self.bad_rate,
            "auc": self.auc,
            "ks": self.ks,
            "gini": self.gini,
        }


def evaluate(y_true: ArrayLike, pd_pred: ArrayLike) -> EvaluationResult:
    """Return n, bads, bad rate, AUC, KS, Gini and the decile table of PD predictions against 0/1 labels."""
    y, p = _validate(y_true, pd_pred)
    area = auc(y, p)
    return EvaluationResult(
        n=int(y.size),
        n_bad=int(y.sum()),
        bad_rate=float(y.mean()),
        auc=area,
        ks=ks(y, p),
        gini=2.0 * area - 1.0,
        deciles=decile_table(y, p),
    )


def woe_iv(n_good: ArrayLike, n_bad: ArrayLike, smoothing: float = 0.0) -> tuple[np.ndarray, float]:
    """Return WOE = ln(good share / bad share) per bin and the information value sum((g - b) * WOE).

    Shares are of the raw totals; `smoothing` is added to both counts of a non-empty bin so a pure bin stays
    finite. Empty bins get WOE 0 and add nothing. With smoothing 0 a pure bin raises (its IV is infinite).
    """
    goods = np.asarray(n_good, dtype=float)
    bads = np.asarray(n_bad, dtype=float)
    if goods.shape != bads.shape or goods.ndim != 1:
        raise OrchardError("good and bad counts must be 1-d of equal length")
    if (goods < 0).any() or (bads < 0).any():
        raise OrchardError("bin counts cannot be negative")
    total_good, total_bad = goods.sum(), bads.sum()
    if total_good == 0 or total_bad == 0:
        raise OrchardError("WOE needs both goods and bads in the sample")
    filled = (goods + bads) > 0
    if smoothing == 0.0 and ((goods[filled] == 0) | (bads[filled] == 0)).any():
        raise OrchardError("a bin holds only goods or only bads: its WOE is infinite (use smoothing)")
    with np.errstate(divide="ignore", invalid="ignore"):
        woe = np.log((goods + smoothing) / total_good) - np.log((bads + smoothing) / total_bad)
    woe = np.where(filled, woe, 0.0)
    iv = float(np.sum((goods / total_good - bads / total_bad) * woe))
    return woe, iv


def information_value(bin_index: ArrayLike, y_true: ArrayLike, smoothing: float = 0.0) -> float:
    """Return the information value of a binned feature (one bin id per row) against 0/1 labels."""
    index = np.asarray(bin_index)
    y = np.asarray(y_true, dtype=float)
    if index.shape != y.shape:
        raise OrchardError(f"bins and labels must be of equal length, got {index.shape} and {y.shape}")
    _, codes = np.unique(index, return_inverse=True)
    n_bad = np.bincount(codes, weights=y)
    n_good = np.bincount(codes) - n_bad
    return woe_iv(n_good, n_bad, smoothing)[1]


def score_psi(reference_scores: ArrayLike, current_scores: ArrayLike, n_bins: int = N_DECILES) -> float:
    """Return the population stability index of scores on the reference deciles (orchard.credit.psi rules)."""
    reference = pd.DataFrame({"score": np.asarray(reference_scores, dtype=float)})
    current = pd.DataFrame({"score": np.asarray(current_scores, dtype=float)})
    profile = ReferenceProfile.fit(reference, numeric=["score"], categorical=[], n_bins=n_bins)
    return psi(profile, current)["score"]
