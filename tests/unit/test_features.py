"""Unit tests of the feature compiler and the feature registry on the demo's views (tiny frames built here)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from orchard.errors import OrchardError
from orchard.features import combined_features, feature_names, feature_specs, view_features
from orchard.portfolio.load import parse_portfolio
from orchard.testing.demo import demo_portfolio

PARTNER_ACTIVITY = "partner_activity"
CREDIT_HISTORY = "credit_history"


def partner_activity_features(frame: pd.DataFrame) -> pd.DataFrame:
    return view_features(demo_portfolio(), PARTNER_ACTIVITY, frame)


def credit_history_features(frame: pd.DataFrame) -> pd.DataFrame:
    return view_features(demo_portfolio(), CREDIT_HISTORY, frame)


def _ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def _partner(rows: list[dict[str, object]]) -> pd.DataFrame:
    base = {
        "batch_id": "partner_users-2020-01",
        "age": 30,
        "city_tier": "tier1",
        "device_os": "ios",
        "platform_tenure_months": 12,
        "active_days_30d": 20,
        "txn_count_30d": 10,
        "txn_amount_30d": 500.0,
        "income_est_monthly": 2000.0,
        "late_bill_payments_12m": 0,
    }
    return pd.DataFrame([base | row for row in rows])


def _statement(user: str, loan: str, day: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "application_id": loan,
        "user_id": user,
        "months_on_book": 1,
        "balance": 1000.0,
        "amount_due": 100.0,
        "amount_paid": 100.0,
        "dpd": 0,
        "status": "current",
        "event_ts": _ts(day),
        "batch_id": "repayments-x",
    }
    return row | values


def _history(rows: list[dict[str, object]]) -> pd.DataFrame:
    return credit_history_features(pd.DataFrame(rows))


def _at(frame: pd.DataFrame, user: str, month: str) -> pd.Series:
    rows = frame[(frame["user_id"] == user) & (frame["event_ts"].dt.strftime("%Y-%m") == month)]
    assert len(rows) == 1, f"expected one row for {user} in {month}, got {len(rows)}"
    return rows.iloc[0]


def test_registry_names_are_unique_and_cover_both_views() -> None:
    # Given the registry, when listing names, then every feature name is unique and both views are populated
    features = feature_specs(demo_portfolio())
    names = [f.name for f in features]
    assert len(names) == len(set(names)), "a feature name appears twice in the demo's views"
    assert "spend_to_income" in feature_names(demo_portfolio(), PARTNER_ACTIVITY), "derived feature missing"
    assert feature_names(demo_portfolio(), CREDIT_HISTORY) == [
        "open_loans_count",
        "max_dpd_3m",
        "missed_payments_3m",
        "open_balance",
    ], "credit history names drifted from the canonical list"
    assert all(f.description and f.tags for f in features), "every feature needs a description and tags"


def test_unknown_view_is_a_clear_error() -> None:
    # Given a view name that does not exist, when asking its features, then the error names it
    with pytest.raises(OrchardError, match="no_such_view"):
        feature_names(demo_portfolio(), "no_such_view")


def test_partner_features_columns_and_spend_to_income() -> None:
    # Given two users, one with zero estimated income
    frame = _partner(
        [
            {
                "user_id": "u1",
                "event_ts": _ts("2020-01-10"),
                "txn_amount_30d": 500.0,
                "income_est_monthly": 2000.0,
            },
            {
                "user_id": "u2",
                "event_ts": _ts("2020-01-11"),
                "txn_amount_30d": 300.0,
                "income_est_monthly": 0.0,
            },
        ]
    )
    # When computing the partner features
    out = partner_activity_features(frame)
    # Then the columns are the canonical ones and the ratio is guarded against a zero income
    assert list(out.columns) == ["user_id", "event_ts", *feature_names(demo_portfolio(), PARTNER_ACTIVITY)], (
        "unexpected columns"
    )
    by_user = out.set_index("user_id")
    assert by_user.loc["u1", "spend_to_income"] == pytest.approx(0.25), "500 / 2000 should be 0.25"
    ratio = by_user.loc["u2", "spend_to_income"]
    assert math.isfinite(ratio) and ratio == pytest.approx(300.0), "zero income must not give inf or NaN"
    assert "batch_id" not in out.columns, "lineage columns are not features"


def test_partner_features_missing_column_is_named() -> None:
    # Given a partner frame without income, when computing features, then the error names the column
    frame = _partner([{"user_id": "u1", "event_ts": _ts("2020-01-10")}]).drop(columns="income_est_monthly")
    with pytest.raises(OrchardError, match="income_est_monthly"):
        partner_activity_features(frame)


def test_more_missed_payments_give_larger_missed_payments_3m() -> None:
    # Given two users with the same loan, one paying in full and one missing two instalments
    rows = []
    for month, paid_bad in (("2020-01", 100.0), ("2020-02", 0.0), ("2020-03", 40.0)):
        rows.append(_statement("good", "L1", f"{month}-15"))
        rows.append(_statement("bad", "L2", f"{month}-15", amount_paid=paid_bad))
    # When computing credit history
    out = _history(rows)
    # Then the bad payer has more missed payments at the last month, and the good payer none
    assert _at(out, "bad", "2020-03")["missed_payments_3m"] == 2, "two short payments in the window"
    assert _at(out, "good", "2020-03")["missed_payments_3m"] == 0, "a full payer has no missed payments"


def test_history_only_uses_the_past() -> None:
    # Given a user who is clean in Jan-Feb and goes 60 days past due in March on a second loan
    rows = [
        _statement("u", "L1", "2020-01-15"),
        _statement("u", "L1", "2020-02-15"),
        _statement("u", "L1", "2020-03-15", dpd=60, amount_paid=0.0, status="delinquent"),
        _statement("u", "L2", "2020-03-20", balance=500.0),
    ]
    # When computing credit history
    out = _history(rows)
    # Then February's row knows nothing of March (no future delinquency, no future loan)
    feb = _at(out, "u", "2020-02")
    assert feb["max_dpd_3m"] == 0 and feb["missed_payments_3m"] == 0, "February must not see March's dpd"
    assert feb["open_loans_count"] == 1, "the second loan starts in March"
    # And March's row is dated at its last statement and sees both loans
    mar = _at(out, "u", "2020-03")
    assert mar["event_ts"] == _ts("2020-03-20"), "the month's row is known only at its last statement"
    assert mar["open_loans_count"] == 2 and mar["max_dpd_3m"] == 60, "March sees both loans and the dpd"
    assert mar["open_balance"] == pytest.approx(1500.0), "both open loans' balances"


def test_window_forgets_after_three_months_and_ignores_closed_loans() -> None:
    # Given a delinquency in 2019-10 and statements up to 3 months later, plus a charged-off loan
    rows = [
        _statement("u", "L1", "2019-10-15", dpd=90, amount_paid=0.0, status="delinquent"),
        _statement("u", "L1", "2019-12-15"),
        _statement("u", "L1", "2020-01-15"),
        _statement("u", "L2", "2020-01-16", balance=700.0, status="charged_off"),
    ]
    # When computing credit history
    out = _history(rows)
    # Then 2019-12 still sees the delinquency (2 months back) and 2020-01 does not (3 months back)
    assert _at(out, "u", "2019-12")["max_dpd_3m"] == 90, "2019-10 is inside 2019-12's 3-month window"
    jan = _at(out, "u", "2020-01")
    assert jan["max_dpd_3m"] == 0 and jan["missed_payments_3m"] == 0, "2019-10 left the window"
    assert jan["open_loans_count"] == 1, "a charged-off loan is not open"
    assert jan["open_balance"] == pytest.approx(1000.0), "a charged-off loan is not an open balance"


def test_users_do_not_leak_into_each_other() -> None:
    # Given a delinquent user and a clean user in the same months
    rows = [
        _statement("a", "L1", "2020-01-15", dpd=120),
        _statement("b", "L2", "2020-02-15"),
    ]
    # When computing credit history, then the clean user's window holds only their own statements
    out = _history(rows)
    assert _at(out, "b", "2020-02")["max_dpd_3m"] == 0, "user b must not inherit user a's dpd"


def test_rows_come_out_in_one_order_whatever_the_input_order_and_partitions() -> None:
    # Given snapshots and statements of several users at the same times, in two input orders
    snapshots = _partner(
        [{"user_id": f"u{i}", "event_ts": _ts(f"2020-0{1 + i % 2}-01")} for i in (3, 1, 4, 0, 2, 5)]
    )
    statements = pd.DataFrame(
        [_statement(f"u{i}", f"L{i}", f"2020-0{1 + i % 3}-15", dpd=10 * i) for i in (2, 5, 0, 4, 1, 3)]
    )
    portfolio = demo_portfolio()
    for view, rows in ((PARTNER_ACTIVITY, snapshots), (CREDIT_HISTORY, statements)):
        features = view_features(portfolio, view, rows)
        # When the rows are featurized reversed, or in two entity partitions combined afterwards
        reversed_rows = view_features(portfolio, view, rows.iloc[::-1].reset_index(drop=True))
        odd = rows["user_id"].str[-1].astype(int) % 2 == 1
        parts = [view_features(portfolio, view, rows[odd]), view_features(portfolio, view, rows[~odd])]
        # Then every way gives the same rows in the same order (event time, then entity) and the same types
        pd.testing.assert_frame_equal(reversed_rows, features)
        pd.testing.assert_frame_equal(combined_features(portfolio, view, parts), features)
        ordered = features.sort_values(["event_ts", "user_id"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(features, ordered)


def test_empty_repayments_give_typed_empty_frame() -> None:
    # Given no statements at all, when computing history, then the result is empty with canonical columns
    empty = pd.DataFrame([_statement("u", "L", "2020-01-15")]).iloc[0:0]
    out = credit_history_features(empty)
    assert out.empty and list(out.columns) == [
        "user_id",
        "event_ts",
        *feature_names(demo_portfolio(), CREDIT_HISTORY),
    ]


WINDOWS_PORTFOLIO = """
name: windows
sources:
  payments:
    landing: {path: "p/{period}.csv"}
    key: [payment_id]
    event_time: paid_at
    columns:
      payment_id: {type: string}
      customer: {type: string}
      paid_at: {type: timestamp}
      amount: {type: float, nullable: true}
      late: {type: int}
entities:
  client: {join_key: customer}
views:
  payment_history:
    entity: client
    source: payments
    ttl_days: 90
    aggregations:
      mean_amount_2m: {how: mean, column: amount, window_months: 2}
      min_amount_2m: {how: min, column: amount, window_months: 2}
      last_amount_3m: {how: last, column: amount, window_months: 3}
      days_since_late_3m: {how: days_since, where: late == 1, window_months: 3}
      late_count_2m: {how: count, where: late == 1, window_months: 2, type: int}
"""


def _payments() -> pd.DataFrame:
    rows = [  # customer c: Jan late (100), Feb two payments (40, then 60), Apr on time (nan amount)
        ("p1", "c", "2020-01-05", 100.0, 1),
        ("p2", "c", "2020-02-03", 40.0, 0),
        ("p3", "c", "2020-02-20", 60.0, 0),
        ("p4", "c", "2020-04-10", None, 0),
        ("p5", "d", "2020-02-01", 10.0, 1),
    ]
    frame = pd.DataFrame(rows, columns=["payment_id", "customer", "event_ts", "amount", "late"])
    frame["event_ts"] = pd.to_datetime(frame["event_ts"], utc=True)
    return frame


def test_windowed_mean_min_last_days_since_and_count_by_hand() -> None:
    # Given a portfolio whose view aggregates payments over trailing windows (names other than the demo's)
    portfolio = parse_portfolio(WINDOWS_PORTFOLIO, folder=Path("."))
    # When computing the view
    out = view_features(portfolio, "payment_history", _payments())
    c = out[out["customer"] == "c"].set_index(out[out["customer"] == "c"]["event_ts"].dt.strftime("%Y-%m"))
    # Then each month's row holds the hand-computed aggregates of its window (the row's month included)
    assert list(c.index) == ["2020-01", "2020-02", "2020-04"], "one row per month with events"
    assert c.loc["2020-02", "mean_amount_2m"] == pytest.approx((100 + 40 + 60) / 3), "Jan + Feb"
    assert c.loc["2020-04", "mean_amount_2m"] != c.loc["2020-04", "mean_amount_2m"], (
        "Apr: Mar-Apr hold no amount"
    )
    assert c.loc["2020-02", "min_amount_2m"] == 40.0 and c.loc["2020-01", "min_amount_2m"] == 100.0
    assert c.loc["2020-02", "last_amount_3m"] == 60.0, "the month's latest payment"
    assert c.loc["2020-04", "last_amount_3m"] == 60.0, "Apr has no amount: Feb's last is inside 3 months"
    assert c.loc["2020-02", "days_since_late_3m"] == pytest.approx(46.0), "Feb 20 (row time) - Jan 5 (late)"
    assert c.loc["2020-02", "late_count_2m"] == 1 and c.loc["2020-04", "late_count_2m"] == 0
    assert c.loc["2020-04", "days_since_late_3m"] != c.loc["2020-04", "days_since_late_3m"], (
        "Jan's late payment left the 3-month window of April (Feb-Apr)"
    )
    d = out[out["customer"] == "d"].iloc[0]
    assert d["late_count_2m"] == 1 and d["days_since_late_3m"] == 0.0, "customers do not mix"
