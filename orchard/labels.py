"""Application-risk labels with maturity: a booked loan is bad when it goes bad inside its performance window.

Point in time: a statement with months_on_book k of a loan booked in vintage V is issued in month V + k, so at
`as_of_month` only statements with V + k <= as_of_month are observable. A loan is mature when its whole window
is observable (V + window_months <= as_of_month). The label is 1 as soon as an observable statement inside the
window is bad (even before maturity: the outcome is already known), 0 once mature and never bad, and NaN while
immature and not yet bad. Only mature labels may be used for training.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from orchard.errors import OrchardError
from orchard.months import parse_month

log = logging.getLogger(__name__)

LABEL_COLUMNS = ["application_id", "user_id", "event_ts", "vintage", "mature", "bad"]
_APPLICATION_COLUMNS = ("application_id", "user_id", "event_ts", "decision")
_REPAYMENT_COLUMNS = ("application_id", "months_on_book", "dpd", "status")


def _require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise OrchardError(f"{what} is missing column(s) {', '.join(missing)}")


def month_index(month: str) -> int:
    """Return a month as a running integer (year * 12 + month - 1), so month arithmetic is integer arithmetic."""
    year, mon = (int(p) for p in parse_month(month).split("-"))
    return year * 12 + mon - 1


def vintage_of(event_ts: pd.Series) -> pd.Series:
    """Return the 'YYYY-MM' month of each timestamp (naive timestamps are taken as UTC)."""
    ts = pd.to_datetime(event_ts, utc=True)
    return ts.dt.strftime("%Y-%m")


def application_labels(
    applications: pd.DataFrame,
    repayments: pd.DataFrame,
    as_of_month: str,
    window_months: int,
    bad_dpd: int,
) -> pd.DataFrame:
    """Return one label row per approved application: vintage, maturity at as_of_month and the bad flag."""
    as_of = month_index(as_of_month)
    if window_months < 1:
        raise OrchardError(f"window_months must be at least 1, got {window_months}")
    if bad_dpd < 1:
        raise OrchardError(f"bad_dpd must be at least 1, got {bad_dpd}")
    _require(applications, _APPLICATION_COLUMNS, "applications")
    _require(repayments, _REPAYMENT_COLUMNS, "repayments")

    booked = applications.loc[
        applications["decision"] == "approved", ["application_id", "user_id", "event_ts"]
    ]
    duplicated = booked["application_id"].duplicated()
    if duplicated.any():
        example = booked.loc[duplicated, "application_id"].iloc[0]
        raise OrchardError(f"applications has duplicate application_id {example!r} among approved rows")
    booked = booked.copy()
    booked["event_ts"] = pd.to_datetime(booked["event_ts"], utc=True)
    booked["vintage"] = vintage_of(booked["event_ts"])
    vintage_index = booked["event_ts"].dt.year * 12 + booked["event_ts"].dt.month - 1
    booked["mature"] = (vintage_index + window_months <= as_of).to_numpy(dtype=bool)
    observable_mob = np.minimum(window_months, as_of - vintage_index)

    stmts = repayments.loc[:, list(_REPAYMENT_COLUMNS)].merge(
        pd.DataFrame({"application_id": booked["application_id"], "_limit": observable_mob.to_numpy()}),
        on="application_id",
        how="inner",
    )
    in_window = (stmts["months_on_book"] >= 1) & (stmts["months_on_book"] <= stmts["_limit"])
    is_bad = (stmts["dpd"].fillna(0) >= bad_dpd) | (stmts["status"] == "charged_off")
    bad_ids = set(stmts.loc[in_window & is_bad, "application_id"])

    went_bad = booked["application_id"].isin(bad_ids).to_numpy()
    mature = booked["mature"].to_numpy()
    booked["bad"] = np.where(went_bad, 1.0, np.where(mature, 0.0, np.nan))

    with_statements = booked["application_id"].isin(set(stmts["application_id"]))
    silent = int((mature & ~with_statements.to_numpy()).sum())
    if silent:
        log.warning("%d mature booked loans have no repayment statement; labelled good", silent)
    out = booked.sort_values(["event_ts", "application_id"], kind="stable").reset_index(drop=True)
    return out[LABEL_COLUMNS]


def mature_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Return only the rows usable for training (mature), with bad as int."""
    _require(labels, ("mature", "bad"), "labels")
    mature = labels.loc[labels["mature"].astype(bool)].copy()
    mature["bad"] = mature["bad"].astype(int)
    return mature.reset_index(drop=True)
