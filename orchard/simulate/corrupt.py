"""Deliberate defects for the demo's bad batch: values a data contract must reject, columns intact."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchard.errors import OrchardError
from orchard.months import parse_month
from orchard.sources import EVENT_TIME, SourceSpec

NEGATIVE_COLUMN = {
    "applications": "requested_amount",
    "partner_users": "income_est_monthly",
    "repayments": "amount_paid",
    "campaigns": "offer_amount",
    "collections": "amount_overdue",
}
"""The amount made negative in each source's corrupted batch."""

UNKNOWN_CATEGORY = {
    "applications": ("employment_type", "contractor"),
    "partner_users": ("city_tier", "tier9"),
    "repayments": ("status", "frozen"),
    "campaigns": ("offer_channel", "fax"),
    "collections": ("action", "prison"),
}
"""The category column and the value outside its domain written into each source's corrupted batch."""

DEFECT_SHARE = 0.01
MIN_DEFECT_ROWS = 3
OUTSIDE_MONTH = pd.Timedelta(days=40)


@dataclass(frozen=True)
class CorruptionReport:
    """How many rows of a corrupted batch carry each defect (disjoint rows, except duplicates are copies)."""

    batch_id: str
    null_ids: int
    negative_amounts: int
    unknown_categories: int
    event_ts_outside_month: int
    duplicated_keys: int


SILENT_CORRUPTION = {
    "applications": "every application declined",
    "partner_users": "income_est_monthly and txn_amount_30d swapped",
    "repayments": "delinquent statements marked current (days past due kept)",
    "campaigns": "user ids re-keyed ('U' prefix replaced by 'V')",
    "collections": "every action recorded as sms",
}
"""The schema-keeping corruption planted in each source's silently corrupted batch (settings.simulation.silent_corrupt_batches):
every column, type, domain and key stays valid, so only the history, foreign keys and rules of a contract see it."""


@dataclass(frozen=True)
class SilentCorruptionReport:
    """Which batch got a schema-keeping corruption, what it was and how many rows it touched."""

    batch_id: str
    kind: str
    rows: int


def corrupt_silently(
    df: pd.DataFrame, source: str, batch: str
) -> tuple[pd.DataFrame, SilentCorruptionReport]:
    """Return a copy of a clean batch with its source's SILENT_CORRUPTION (deterministic) and a report."""
    out = df.copy()
    if source == "applications":
        touched = out["decision"] != "declined"
        out["decision"] = "declined"
    elif source == "partner_users":
        touched = out["income_est_monthly"] != out["txn_amount_30d"]
        out[["income_est_monthly", "txn_amount_30d"]] = out[
            ["txn_amount_30d", "income_est_monthly"]
        ].to_numpy()
    elif source == "repayments":
        touched = out["status"] == "delinquent"
        out.loc[touched, "status"] = "current"
    elif source == "campaigns":
        touched = out["user_id"].str.startswith("U")
        out["user_id"] = out["user_id"].str.replace(r"^U", "V", regex=True)
    elif source == "collections":
        touched = out["action"] != "sms"
        out["action"] = "sms"
    else:
        raise OrchardError(f"no silent corruption is defined for source {source!r}")
    return out, SilentCorruptionReport(batch, SILENT_CORRUPTION[source], int(touched.sum()))


def parse_corrupt_batches(
    items: list[str], months: list[str], sources: set[str]
) -> tuple[set[tuple[str, str]], list[str]]:
    """Return the (source, month) pairs to corrupt inside months and the requested items outside them."""
    inside: set[tuple[str, str]] = set()
    outside: list[str] = []
    window = set(months)
    for item in items:
        source, sep, month = item.partition(":")
        if not sep:
            raise OrchardError(f"corrupt batch {item!r} must look like 'source:YYYY-MM'")
        if source not in sources:
            raise OrchardError(f"unknown source {source!r}; known sources: {', '.join(sorted(sources))}")
        parse_month(month)
        if month in window:
            inside.add((source, month))
        else:
            outside.append(item)
    return inside, outside


def corrupt_frame(
    df: pd.DataFrame, spec: SourceSpec, month: str, batch: str, rng: np.random.Generator
) -> tuple[pd.DataFrame, CorruptionReport]:
    """Return a copy of a clean batch with null ids, negative amounts, an unknown category, out-of-month
    event times and duplicated keys on disjoint random rows, and a report of how many rows got each."""
    source = spec.name
    n = len(df)
    per_defect = min(max(MIN_DEFECT_ROWS, round(DEFECT_SHARE * n)), n // 5)
    if per_defect == 0:
        return df.copy(), CorruptionReport(batch, 0, 0, 0, 0, 0)
    rows = rng.permutation(n)[: 5 * per_defect].reshape(5, per_defect)
    out = df.copy()
    id_column = spec.key[0]
    out.loc[rows[0], id_column] = None
    amount = NEGATIVE_COLUMN[source]
    out.loc[rows[1], amount] = -out.loc[rows[1], amount].abs() - 1.0
    category_column, unknown = UNKNOWN_CATEGORY[source]
    out.loc[rows[2], category_column] = unknown
    # numpy's stubs take no pandas Timedelta as a choice of where(); at run time it is an object scalar
    shift = np.where(rng.random(per_defect) < 0.5, -OUTSIDE_MONTH, OUTSIDE_MONTH)  # type: ignore[call-overload]
    out.loc[rows[3], EVENT_TIME] = out.loc[rows[3], EVENT_TIME] + pd.to_timedelta(shift)
    # duplicates are exact copies placed right after their original row
    positions = np.concatenate([np.arange(n, dtype=float), rows[4] + 0.5])
    out = pd.concat([out, out.iloc[rows[4]]], ignore_index=True)
    out = out.iloc[np.argsort(positions, kind="stable")].reset_index(drop=True)
    report = CorruptionReport(batch, per_defect, per_defect, per_defect, per_defect, per_defect)
    return out, report
