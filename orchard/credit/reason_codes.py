"""Reason codes: for every scored case, the features that cost the most points versus their best bin.

A feature's loss is (points of its best bin) - (points of the case's bin), where the best bin is the
highest-scoring bin seen in training. The top N losses (positive only, largest first, ties in scorecard
order) become stable codes "RC_<FEATURE>" with a readable text naming the case's bin, ready to store with
the decision (reason_records).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from orchard.credit.model import CreditModel
from orchard.credit.scorecard import Scorecard, scorecard_of
from orchard.errors import OrchardError

TOP_REASONS = 4
_LOSS_TOLERANCE = 1e-9

# Plain-language names of the lifecycle's features (a decline letter reads these).
REASON_TEXTS: dict[str, str] = {
    "age": "Age of the applicant",
    "city_tier": "City tier of residence",
    "device_os": "Device used on the platform",
    "platform_tenure_months": "Short time on the partner platform",
    "active_days_30d": "Low platform activity in the last 30 days",
    "txn_count_30d": "Few platform transactions in the last 30 days",
    "txn_amount_30d": "Platform spend in the last 30 days",
    "income_est_monthly": "Estimated monthly income",
    "late_bill_payments_12m": "Late bill payments in the last 12 months",
    "spend_to_income": "Spending high relative to income",
    "prev_loans_count": "Limited borrowing history",
    "max_dpd_12m": "Days past due on loans in the last 12 months",
    "missed_payments_12m": "Missed loan payments in the last 12 months",
    "open_balance": "Outstanding loan balance",
    "months_since_delinquency": "Recent delinquency",
    "requested_amount": "Requested loan amount",
    "term_months": "Requested loan term",
    "income_declared": "Declared income",
    "employment_type": "Type of employment",
    "loan_purpose": "Purpose of the loan",
    "channel": "Application channel",
}


def reason_code(feature: str) -> str:
    """Return the stable reason code of a feature, e.g. 'RC_LATE_BILL_PAYMENTS_12M'."""
    slug = re.sub(r"[^A-Z0-9]+", "_", feature.upper()).strip("_")
    if not slug:
        raise OrchardError(f"feature name {feature!r} gives an empty reason code")
    return f"RC_{slug}"


def reason_text(feature: str, texts: dict[str, str] | None = None) -> str:
    """Return the readable name of a feature's reason (given texts, the built-in ones, or the column name)."""
    known = {**REASON_TEXTS, **(texts or {})}
    return known.get(feature) or feature.replace("_", " ").strip().capitalize()


def reason_catalog(model: CreditModel | Scorecard, texts: dict[str, str] | None = None) -> pd.DataFrame:
    """Return code, feature and text of every reason a scorecard can give (to publish with the model)."""
    card = scorecard_of(model)
    return pd.DataFrame(
        {
            "code": [reason_code(f) for f in card.features],
            "feature": card.features,
            "text": [reason_text(f, texts) for f in card.features],
        }
    )


def points_lost(model: CreditModel | Scorecard, frame: pd.DataFrame) -> pd.DataFrame:
    """Return per row and feature the points lost versus the feature's best (seen) bin; 0 = best bin."""
    card = scorecard_of(model)
    table = card.points_table()
    seen = table[table["count"] > 0]
    best = seen.groupby("feature", sort=False)["points"].max()
    points = card.points(frame)
    return points.rsub(best.reindex(points.columns).to_numpy(), axis="columns").clip(lower=0.0)


def reason_codes(
    model: CreditModel | Scorecard,
    frame: pd.DataFrame,
    top_n: int = TOP_REASONS,
    texts: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Return, per row, the top_n reasons: reason_code_i, reason_text_i and points_lost_i (None if fewer).

    Vectorised over rows: one argsort of the points-lost matrix.
    """
    if top_n < 1:
        raise OrchardError(f"top_n must be at least 1, got {top_n}")
    card = scorecard_of(model)
    lost = points_lost(card, frame)
    features = list(lost.columns)
    n_rows, n_features = lost.shape
    k = min(top_n, n_features)
    values = lost.to_numpy(dtype=float)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    top_loss = np.take_along_axis(values, order, axis=1)
    real = top_loss > _LOSS_TOLERANCE

    labels = {b.feature: np.array(b.labels(), dtype=object) for b in card.binning.features}
    bin_label = np.column_stack(
        [labels[b.feature][b.bin_index(frame[b.feature])] for b in card.binning.features]
    )
    chosen_label = np.take_along_axis(bin_label, order, axis=1) if n_rows else np.empty((0, k), dtype=object)
    codes = np.array([reason_code(f) for f in features], dtype=object)
    names = np.array([reason_text(f, texts) for f in features], dtype=object)

    out: dict[str, Any] = {}
    for i in range(top_n):
        if i < k:
            idx = order[:, i]
            keep = real[:, i]
            # numpy's stubs take no None as a choice of where(); at run time it is an object scalar
            out[f"reason_code_{i + 1}"] = np.where(keep, codes[idx], None)  # type: ignore[call-overload]
            text = names[idx] + " (" + chosen_label[:, i].astype(str) + ")"
            out[f"reason_text_{i + 1}"] = np.where(keep, text, None)
            out[f"points_lost_{i + 1}"] = np.where(keep, np.round(top_loss[:, i], 2), np.nan)
        else:
            out[f"reason_code_{i + 1}"] = np.full(n_rows, None, dtype=object)
            out[f"reason_text_{i + 1}"] = np.full(n_rows, None, dtype=object)
            out[f"points_lost_{i + 1}"] = np.full(n_rows, np.nan)
    return pd.DataFrame(out, index=frame.index)


def reason_records(reasons: pd.DataFrame) -> list[list[dict[str, Any]]]:
    """Return the reasons of every row as a JSON-ready list of {code, text, points_lost} (to store)."""
    n = sum(1 for c in reasons.columns if c.startswith("reason_code_"))
    records: list[list[dict[str, Any]]] = []
    for values in reasons.to_dict("records"):
        items = [
            {
                "code": values[f"reason_code_{i}"],
                "text": values[f"reason_text_{i}"],
                "points_lost": float(values[f"points_lost_{i}"]),
            }
            for i in range(1, n + 1)
            if values[f"reason_code_{i}"] is not None
        ]
        records.append(items)
    return records
