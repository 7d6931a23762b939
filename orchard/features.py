"""Pure feature functions over silver sources, and the one registry of canonical feature names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from orchard.errors import OrchardError
from orchard.months import timestamp_months
from orchard.sources import EVENT_TIME

FeatureDtype = Literal["int", "float", "string"]

ENTITY_KEY = "user_id"
# Short windows on purpose: a 12-month or lifetime feature ramps up for a year after the lake starts,
# which monitoring would (rightly) flag as drift of the reference itself.
HISTORY_WINDOW_MONTHS = 3
OPEN_STATUSES = ("current", "delinquent")
MIN_INCOME = 1.0

PARTNER_ACTIVITY = "partner_activity"
CREDIT_HISTORY = "credit_history"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its canonical name, the view it belongs to, its type, meaning and tags."""

    name: str
    view: str
    dtype: FeatureDtype
    description: str
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def tag_dict(self) -> dict[str, str]:
        """Return the tags as a dict (the shape Feast expects)."""
        return dict(self.tags)


def _spec(name: str, view: str, dtype: FeatureDtype, description: str, **tags: str) -> FeatureSpec:
    return FeatureSpec(name, view, dtype, description, tuple(sorted(tags.items())))


FEATURES: tuple[FeatureSpec, ...] = (
    _spec("age", PARTNER_ACTIVITY, "int", "age in years", pii="quasi", time_window="snapshot"),
    _spec(
        "city_tier", PARTNER_ACTIVITY, "string", "city tier of residence", pii="quasi", time_window="snapshot"
    ),
    _spec(
        "device_os", PARTNER_ACTIVITY, "string", "operating system of the main device", time_window="snapshot"
    ),
    _spec(
        "platform_tenure_months",
        PARTNER_ACTIVITY,
        "int",
        "months since sign-up on the platform",
        time_window="snapshot",
    ),
    _spec(
        "active_days_30d",
        PARTNER_ACTIVITY,
        "int",
        "days with platform activity in the last 30 days",
        time_window="30d",
    ),
    _spec(
        "txn_count_30d",
        PARTNER_ACTIVITY,
        "int",
        "platform transactions in the last 30 days",
        time_window="30d",
    ),
    _spec(
        "txn_amount_30d", PARTNER_ACTIVITY, "float", "platform spend in the last 30 days", time_window="30d"
    ),
    _spec(
        "income_est_monthly",
        PARTNER_ACTIVITY,
        "float",
        "platform-estimated monthly income",
        pii="sensitive",
        time_window="snapshot",
    ),
    _spec(
        "late_bill_payments_12m",
        PARTNER_ACTIVITY,
        "int",
        "late utility/phone bill payments in the last 12 months",
        time_window="12m",
    ),
    _spec(
        "spend_to_income",
        PARTNER_ACTIVITY,
        "float",
        f"txn_amount_30d / income_est_monthly (income floored at {MIN_INCOME})",
        derived="true",
        time_window="30d",
    ),
    _spec(
        "open_loans_count",
        CREDIT_HISTORY,
        "int",
        "loans of the user open (current or delinquent) in this statement month",
        time_window="snapshot",
    ),
    _spec(
        "max_dpd_3m",
        CREDIT_HISTORY,
        "int",
        f"worst days past due over the last {HISTORY_WINDOW_MONTHS} statement months",
        time_window=f"{HISTORY_WINDOW_MONTHS}m",
    ),
    _spec(
        "missed_payments_3m",
        CREDIT_HISTORY,
        "int",
        f"statements in the last {HISTORY_WINDOW_MONTHS} months with amount_paid < amount_due",
        time_window=f"{HISTORY_WINDOW_MONTHS}m",
    ),
    _spec(
        "open_balance",
        CREDIT_HISTORY,
        "float",
        "outstanding balance over open loans in this statement month",
        time_window="snapshot",
    ),
)


def feature_names(view: str) -> list[str]:
    """Return the canonical feature names of one view, in registry order."""
    names = [f.name for f in FEATURES if f.view == view]
    if not names:
        views = sorted({f.view for f in FEATURES})
        raise OrchardError(f"unknown feature view {view!r}; known views: {', '.join(views)}")
    return names


_PANDAS_DTYPES: dict[FeatureDtype, str] = {"int": "int64", "float": "float64", "string": "object"}


def _require(frame: pd.DataFrame, source: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise OrchardError(f"{source} is missing column(s) {', '.join(missing)} needed for features")


def _typed(frame: pd.DataFrame, view: str) -> pd.DataFrame:
    dtypes = {f.name: _PANDAS_DTYPES[f.dtype] for f in FEATURES if f.view == view}
    out = frame[[ENTITY_KEY, EVENT_TIME, *dtypes]].astype(dtypes, copy=False)
    # a stable sort on time alone keeps the (deterministic) input order among ties and is much cheaper
    return out.sort_values(EVENT_TIME, kind="stable").reset_index(drop=True)


def partner_activity_features(partner_users: pd.DataFrame) -> pd.DataFrame:
    """Return one row per user_id per activity snapshot with the partner features and spend_to_income."""
    raw = [n for n in feature_names(PARTNER_ACTIVITY) if n != "spend_to_income"]
    _require(partner_users, "partner_users", [ENTITY_KEY, EVENT_TIME, *raw])
    out = partner_users[[ENTITY_KEY, EVENT_TIME, *raw]].copy()
    income = out["income_est_monthly"].astype("float64").clip(lower=MIN_INCOME)
    out["spend_to_income"] = out["txn_amount_30d"].astype("float64") / income
    # a re-delivered snapshot must not yield two rows for the same user and time
    out = out.drop_duplicates([ENTITY_KEY, EVENT_TIME], keep="last")
    return _typed(out, PARTNER_ACTIVITY)


def _trailing_window(
    users: np.ndarray, months: np.ndarray, dpd: np.ndarray, missed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the trailing-window max of dpd and sum of missed, rows sorted by (user, month)."""
    # one row per user-month, so a window holds at most HISTORY_WINDOW_MONTHS rows: compare each row with
    # its predecessors (vectorised shifts) instead of a per-group rolling window
    max_dpd = dpd.astype("int64").copy()
    total = missed.astype("int64").copy()
    for lag in range(1, HISTORY_WINDOW_MONTHS):
        same = (users[lag:] == users[:-lag]) & (months[lag:] - months[:-lag] < HISTORY_WINDOW_MONTHS)
        np.maximum(max_dpd[lag:], np.where(same, dpd[:-lag], 0), out=max_dpd[lag:])
        total[lag:] += np.where(same, missed[:-lag], 0)
    return max_dpd, total


def credit_history_features(repayments: pd.DataFrame) -> pd.DataFrame:
    """Return one row per user_id per statement month describing the user's loans as known at that time."""
    needed = [
        "application_id",
        ENTITY_KEY,
        "balance",
        "amount_due",
        "amount_paid",
        "dpd",
        "status",
        EVENT_TIME,
    ]
    _require(repayments, "repayments", needed)
    if repayments.empty:
        return _typed(
            pd.DataFrame(
                {ENTITY_KEY: pd.Series(dtype="object"), EVENT_TIME: pd.Series(dtype="datetime64[ns, UTC]")}
                | {n: pd.Series(dtype="float64") for n in feature_names(CREDIT_HISTORY)}
            ),
            CREDIT_HISTORY,
        )
    rep = repayments[needed]
    month = timestamp_months(rep[EVENT_TIME])
    is_open = rep["status"].isin(OPEN_STATUSES)
    statements = pd.DataFrame(
        {
            ENTITY_KEY: rep[ENTITY_KEY].to_numpy(),
            "month": month.to_numpy(),
            EVENT_TIME: rep[EVENT_TIME].array,
            "dpd": rep["dpd"].to_numpy(),
            "missed": (rep["amount_paid"] < rep["amount_due"]).to_numpy().astype("int64"),
            "open_balance": np.where(is_open, rep["balance"].to_numpy(), 0.0),
            "is_open": is_open.to_numpy().astype("int64"),
        }
    )
    # one row per user-month; its time is the last statement of that month, so every statement it
    # aggregates is already known at that time (never a leak into an earlier application)
    monthly = (
        statements.groupby([ENTITY_KEY, "month"], sort=True)
        .agg(
            event_ts=(EVENT_TIME, "max"),
            dpd=("dpd", "max"),
            missed=("missed", "sum"),
            open_balance=("open_balance", "sum"),
            open_loans_count=("is_open", "sum"),
        )
        .reset_index()
    )
    max_dpd, missed = _trailing_window(
        monthly[ENTITY_KEY].to_numpy(),
        monthly["month"].to_numpy(),
        monthly["dpd"].to_numpy(),
        monthly["missed"].to_numpy(),
    )
    monthly["max_dpd_3m"] = max_dpd
    monthly["missed_payments_3m"] = missed

    return _typed(monthly, CREDIT_HISTORY)
