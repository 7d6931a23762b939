"""Performance by booking vintage: realised AUC/KS/bad rate once labels mature, and an early (CBPE-style) estimate.

Realised: a vintage is reported once, at the first check (`as_of`) where every scored loan of the vintage has a
mature label (labels.mature, see orchard/labels.py); AUC and KS come from orchard.credit.metrics.

Early estimate (in the spirit of NannyML's CBPE, confidence-based performance estimation): if the PDs are
calibrated, loan i is bad with probability p_i, independently. Then the expected bad rate is mean(p), and the
expected ROC curve at a cut-off t has E[TPR](t) = sum_{p_i >= t} p_i / sum p_i and
E[FPR](t) = sum_{p_i >= t} (1 - p_i) / sum (1 - p_i). The expected AUC is the area under that curve, i.e. the
expected number of correctly ordered (bad, good) pairs over the expected number of pairs:

    E[AUC] ~= sum_{i != j} p_i (1 - p_j) (1[p_i > p_j] + 1/2 1[p_i = p_j]) / sum_{i != j} p_i (1 - p_j)

(a ratio of expectations, as CBPE does; the i = j terms are excluded because a loan cannot be its own pair). The
expected KS is max_t |E[TPR](t) - E[FPR](t)|. Both are only as good as the calibration, and they assume the score
still ranks as in development: a shift that breaks the ranking shows up only when the realised value arrives,
which is why both are stored side by side per vintage (performance_by_vintage).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from orchard.credit import metrics
from orchard.errors import OrchardError
from orchard.months import parse_month

REALISED_COLUMNS = ["vintage", "n", "n_bad", "bad_rate", "mean_pd", "auc", "ks", "reported_at"]
ESTIMATE_COLUMNS = ["vintage", "n", "expected_bad_rate", "expected_auc", "expected_ks"]


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise OrchardError(f"{what} is missing column(s) {', '.join(absent)}")


def _pd_values(values: pd.Series, what: str) -> np.ndarray:
    p = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if np.isnan(p).any():
        raise OrchardError(f"{what}: the pd column has missing or non-numeric values")
    if ((p < 0.0) | (p > 1.0)).any():
        raise OrchardError(f"{what}: pd values must be probabilities in [0, 1]")
    return p


def _auc_ks(bad: np.ndarray, pd_values: np.ndarray) -> tuple[float, float]:
    """Return AUC and KS, or NaN for both when the vintage holds a single class (undefined, not an error)."""
    n_bad = int(bad.sum())
    if n_bad in (0, bad.size):
        return math.nan, math.nan
    return metrics.auc(bad, pd_values), metrics.ks(bad, pd_values)


def matured_performance(
    scores: pd.DataFrame, labels: pd.DataFrame, as_of: str, already_reported: set[str]
) -> pd.DataFrame:
    """Return n, bad rate, AUC and KS per booking vintage whose labels matured by as_of and was not reported yet.

    scores: application_id, vintage, pd (one row per scored application); labels: application_id, vintage,
    mature, bad. A vintage matures when every scored loan with a label is mature; rows without a label
    (declined applications) are not performance and are left out. AUC/KS are NaN for a one-class vintage.
    """
    as_of = parse_month(as_of)
    _require(scores, ("application_id", "vintage", "pd"), "scores")
    _require(labels, ("application_id", "vintage", "mature", "bad"), "labels")
    if scores["application_id"].duplicated().any():
        raise OrchardError("scores hold an application more than once")
    joined = scores[["application_id", "vintage", "pd"]].merge(
        labels[["application_id", "vintage", "mature", "bad"]],
        on="application_id",
        how="inner",
        suffixes=("", "_label"),
    )
    conflict = joined["vintage"].astype(str) != joined["vintage_label"].astype(str)
    if conflict.any():
        example = joined.loc[conflict, "application_id"].iloc[0]
        raise OrchardError(f"scores and labels disagree on the vintage of application {example}")
    joined = joined.loc[joined["vintage"].astype(str) <= as_of]
    rows: list[dict[str, object]] = []
    for vintage, group in joined.groupby(joined["vintage"].astype(str), sort=True):
        if vintage in already_reported or not group["mature"].astype(bool).all():
            continue
        bad = pd.to_numeric(group["bad"], errors="coerce").to_numpy(dtype=float)
        if np.isnan(bad).any() or not np.isin(bad, (0.0, 1.0)).all():
            raise OrchardError(f"vintage {vintage}: mature labels must be 0 or 1")
        p = _pd_values(group["pd"], f"vintage {vintage}")
        auc, ks = _auc_ks(bad, p)
        rows.append(
            {
                "vintage": vintage,
                "n": int(bad.size),
                "n_bad": int(bad.sum()),
                "bad_rate": float(bad.mean()),
                "mean_pd": float(p.mean()),
                "auc": auc,
                "ks": ks,
                "reported_at": as_of,
            }
        )
    return pd.DataFrame(rows, columns=REALISED_COLUMNS)


def expected_auc_ks(pd_values: np.ndarray) -> tuple[float, float]:
    """Return the CBPE-style expected AUC and KS of calibrated PDs (see the module docstring)."""
    p = np.asarray(pd_values, dtype=float)
    if p.size < 2:
        return math.nan, math.nan
    q = 1.0 - p
    sum_p, sum_q = float(p.sum()), float(q.sum())
    pairs = sum_p * sum_q - float((p * q).sum())  # sum over i != j of p_i (1 - p_j)
    if pairs <= 0.0:
        return math.nan, math.nan  # every PD is 0 or 1 on the same side: no (bad, good) pair is expected
    # group equal PDs: within a tie group pairs count half, minus each loan's pair with itself
    levels, inverse = np.unique(p, return_inverse=True)
    p_by_level = np.bincount(inverse, weights=p, minlength=levels.size)
    q_by_level = np.bincount(inverse, weights=q, minlength=levels.size)
    pq_by_level = np.bincount(inverse, weights=p * q, minlength=levels.size)
    q_below = np.cumsum(q_by_level) - q_by_level  # expected goods strictly below each level
    ordered = float(np.sum(p_by_level * q_below))
    tied = float(np.sum(p_by_level * q_by_level - pq_by_level))
    auc = (ordered + 0.5 * tied) / pairs
    # expected ROC from the riskiest level down: cumulative expected bads / goods at or above each cut-off
    tpr = np.cumsum(p_by_level[::-1]) / sum_p if sum_p > 0 else np.zeros(levels.size)
    fpr = np.cumsum(q_by_level[::-1]) / sum_q if sum_q > 0 else np.zeros(levels.size)
    ks = float(np.max(np.abs(tpr - fpr)))
    return float(auc), ks


def early_estimate(scores: pd.DataFrame, calibrated: bool = True) -> pd.DataFrame:
    """Return, per vintage, n, expected bad rate (mean PD) and the CBPE-style expected AUC and KS.

    The estimate is only meaningful on calibrated PDs; calibrated=False raises rather than return numbers that
    look like estimates but are not.
    """
    if not calibrated:
        raise OrchardError(
            "the early estimate needs calibrated PDs (expected bad rate = mean PD); calibrate the scores first"
        )
    _require(scores, ("vintage", "pd"), "scores")
    rows: list[dict[str, object]] = []
    for vintage, group in scores.groupby(scores["vintage"].astype(str), sort=True):
        p = _pd_values(group["pd"], f"vintage {vintage}")
        auc, ks = expected_auc_ks(p)
        rows.append(
            {
                "vintage": vintage,
                "n": int(p.size),
                "expected_bad_rate": float(p.mean()),
                "expected_auc": auc,
                "expected_ks": ks,
            }
        )
    return pd.DataFrame(rows, columns=ESTIMATE_COLUMNS)


def performance_by_vintage(
    realised: pd.DataFrame, estimated: pd.DataFrame, applicants: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Return the estimate beside the realised value per vintage; status 'matured' or 'estimate'.

    `estimated` must be the estimate on the population the realised value is measured on (the booked, labelled
    cases), so that `auc_error` and `bad_rate_error` (estimate minus realised, on matured vintages) compare like
    with like. `applicants`, when given, is the estimate over every scored applicant of the vintage: shown beside
    it with the suffix `_applicants`, never compared with a realised value it does not describe.
    """
    _require(realised, ("vintage", "n", "bad_rate", "auc", "ks"), "realised performance")
    _require(estimated, ("vintage", "expected_bad_rate", "expected_auc", "expected_ks"), "early estimate")
    left = estimated[["vintage", "n", "expected_bad_rate", "expected_auc", "expected_ks"]].rename(
        columns={"n": "n_scored"}
    )
    right = realised[["vintage", "n", "bad_rate", "auc", "ks"]]
    table = left.merge(right, on="vintage", how="outer")
    if applicants is not None:
        _require(applicants, ("vintage", "n", "expected_bad_rate", "expected_auc", "expected_ks"), "estimate")
        renamed = {c: f"{c}_applicants" for c in ("expected_bad_rate", "expected_auc", "expected_ks")}
        all_scored = applicants[["vintage", "n", *renamed]].rename(columns={"n": "n_applicants", **renamed})
        table = table.merge(all_scored, on="vintage", how="left")
    table = table.sort_values("vintage").reset_index(drop=True)
    table["auc_error"] = table["expected_auc"] - table["auc"]
    table["bad_rate_error"] = table["expected_bad_rate"] - table["bad_rate"]
    table["status"] = np.where(table["bad_rate"].notna(), "matured", "estimate")
    return table
