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
from orchard.months import month_index, timestamp_month_labels, timestamp_months, utc_timestamps

log = logging.getLogger(__name__)

LABEL_COLUMNS = ["application_id", "user_id", "event_ts", "vintage", "mature", "bad"]
APPLICATION_COLUMNS = ("application_id", "user_id", "event_ts", "decision")
_REPAYMENT_COLUMNS = ("application_id", "months_on_book", "dpd", "status")


def _require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise OrchardError(f"{what} is missing column(s) {', '.join(missing)}")


def event_within(
    observations: pd.DataFrame, statements: pd.DataFrame, as_of: int, window_months: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (label, mature) per observation: did an event statement follow it within the window?

    observations: one row per observed case with `application_id` (the loan) and `obs_index` (the month index
    of the observation). statements: the loans' *event* statements (already filtered to the event) with
    `application_id` and `stmt_index` (the month index they were issued in). An event counts when
    obs_index < stmt_index <= min(obs_index + window, as_of). A case is mature once obs_index + window <= as_of.
    The label is 1 as soon as an event is observable, 0 once mature without one, NaN before.
    """
    obs_index = observations["obs_index"].to_numpy(dtype="int64")
    mature = obs_index + window_months <= as_of
    cases = pd.DataFrame(
        {
            "application_id": observations["application_id"].to_numpy(),
            "obs_index": obs_index,
            "_row": np.arange(len(observations)),
        }
    )
    joined = cases.merge(statements[["application_id", "stmt_index"]], on="application_id", how="inner")
    limit = np.minimum(joined["obs_index"] + window_months, as_of)
    hit = (joined["stmt_index"] > joined["obs_index"]) & (joined["stmt_index"] <= limit)
    went = np.zeros(len(observations), dtype=bool)
    went[joined.loc[hit, "_row"].to_numpy(dtype="int64")] = True
    return np.where(went, 1.0, np.where(mature, 0.0, np.nan)), mature


def booked_loans(applications: pd.DataFrame) -> pd.DataFrame:
    """Return the approved applications (booked loans) with their vintage and booking month index."""
    _require(applications, APPLICATION_COLUMNS, "applications")
    booked = applications.loc[
        applications["decision"] == "approved", ["application_id", "user_id", "event_ts"]
    ]
    duplicated = booked["application_id"].duplicated()
    if duplicated.any():
        example = booked.loc[duplicated, "application_id"].iloc[0]
        raise OrchardError(f"applications has duplicate application_id {example!r} among approved rows")
    booked = booked.copy()
    booked["event_ts"] = utc_timestamps(booked["event_ts"])
    booked["vintage"] = timestamp_month_labels(booked["event_ts"])
    booked["obs_index"] = timestamp_months(booked["event_ts"])
    return booked


def _check_window(window_months: int) -> None:
    if window_months < 1:
        raise OrchardError(f"window_months must be at least 1, got {window_months}")


def loan_labels(
    applications: pd.DataFrame,
    repayments: pd.DataFrame,
    as_of_month: str,
    window_months: int,
    is_event: pd.Series,
) -> pd.DataFrame:
    """Return one label row per booked loan: did a statement with `is_event` come within the window?

    Statement k of a loan booked in month V is issued in month V + k, so at `as_of_month` only statements with
    V + k <= as_of_month are observable. `is_event` is a boolean Series over the rows of `repayments`.
    """
    as_of = month_index(as_of_month)
    _check_window(window_months)
    booked = booked_loans(applications)
    events = repayments.loc[is_event.to_numpy(dtype=bool), ["application_id", "months_on_book"]]
    events = events.merge(booked[["application_id", "obs_index"]], on="application_id", how="inner")
    events["stmt_index"] = events["obs_index"] + events["months_on_book"]
    booked["bad"], booked["mature"] = event_within(booked, events, as_of, window_months)
    with_statements = booked["application_id"].isin(set(repayments["application_id"]))
    silent = int((booked["mature"] & ~with_statements).sum())
    if silent:
        log.warning("%d mature booked loans have no repayment statement; labelled good", silent)
    out = booked.sort_values(["event_ts", "application_id"], kind="stable").reset_index(drop=True)
    return out[LABEL_COLUMNS]


def application_labels(
    applications: pd.DataFrame,
    repayments: pd.DataFrame,
    as_of_month: str,
    window_months: int,
    bad_dpd: int,
) -> pd.DataFrame:
    """Return one label row per approved application: bad = 90+ DPD (or charge-off) within the window."""
    if bad_dpd < 1:
        raise OrchardError(f"bad_dpd must be at least 1, got {bad_dpd}")
    _require(repayments, _REPAYMENT_COLUMNS, "repayments")
    is_bad = (repayments["dpd"].fillna(0) >= bad_dpd) | (repayments["status"] == "charged_off")
    return loan_labels(applications, repayments, as_of_month, window_months, is_bad)


def first_payment_default_labels(
    applications: pd.DataFrame, repayments: pd.DataFrame, as_of_month: str
) -> pd.DataFrame:
    """Return one label row per booked loan: bad = nothing paid on the first instalment (statement 1)."""
    _require(repayments, (*_REPAYMENT_COLUMNS, "amount_paid"), "repayments")
    is_fpd = (repayments["months_on_book"] == 1) & (repayments["amount_paid"].fillna(0) <= 0)
    return loan_labels(applications, repayments, as_of_month, 1, is_fpd)


def charge_off_labels(
    applications: pd.DataFrame, repayments: pd.DataFrame, as_of_month: str, window_months: int
) -> pd.DataFrame:
    """Return one label row per booked loan: bad = charged off within the window after booking."""
    _require(repayments, _REPAYMENT_COLUMNS, "repayments")
    return loan_labels(
        applications, repayments, as_of_month, window_months, repayments["status"] == "charged_off"
    )


def mature_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Return only the rows usable for training (mature), with bad as int."""
    _require(labels, ("mature", "bad"), "labels")
    mature = labels.loc[labels["mature"].astype(bool)].copy()
    mature["bad"] = mature["bad"].astype(int)
    return mature.reset_index(drop=True)
