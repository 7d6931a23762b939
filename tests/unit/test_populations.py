"""Unit tests of the model populations: cases, request fields and labels with maturity, on tiny silver tables."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchard.atomic import write_parquet
from orchard.errors import OrchardError
from orchard.lake import silver_path
from orchard.model_specs import model_spec
from orchard.populations import _sample, population
from orchard.settings import Settings
from orchard.sources import batch_id, source_spec
from orchard.testing.demo import demo_model, demo_model_with, demo_sources

BEHAVIOR_PD = demo_model_with("behavior_pd", label={"within_months": 2})
COLLECTION_CURE = demo_model("collection_cure")
PRECREDIT_RESPONSE = demo_model("precredit_response")
SOURCES = demo_sources()


def _write(settings: Settings, source: str, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    frame["event_ts"] = pd.to_datetime(frame["event_ts"], utc=True)
    for month, part in frame.groupby(frame["event_ts"].dt.strftime("%Y-%m")):
        part = part.assign(batch_id=batch_id(source, month))
        for column in SOURCES[source].column_names:
            if column not in part:
                part[column] = None
        write_parquet(part[SOURCES[source].column_names], silver_path(settings, source, month))


def _statement(app: str, mob: int, month: str, dpd: int, status: str) -> dict:
    return {
        "application_id": app,
        "user_id": f"u_{app}",
        "months_on_book": mob,
        "event_ts": f"{month}-05",
        "balance": 800.0,
        "amount_due": 100.0,
        "amount_paid": 0.0 if dpd else 100.0,
        "dpd": dpd,
        "status": status,
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # the lake starts 2018-11, so these 2019 cases are past the credit-history warm-up
    s = Settings(
        _env_file=None,
        home=tmp_path / "orchard",
        start_month="2018-11",
    )
    apps = [
        {
            "application_id": a,
            "user_id": f"u_{a}",
            "event_ts": "2019-01-10",
            "requested_amount": 1000.0,
            "term_months": 12,
            "income_declared": 2000.0,
            "employment_type": "salaried",
            "loan_purpose": "consumption",
            "channel": "web",
            "decision": "approved",
        }
        for a in ("good", "rolls", "cures", "late")
    ]
    apps.append({**apps[0], "application_id": "declined", "user_id": "u_declined", "decision": "declined"})
    _write(s, "applications", apps)
    _write(
        s,
        "repayments",
        [
            _statement("good", 1, "2019-02", 0, "current"),
            _statement("good", 2, "2019-03", 0, "current"),
            _statement("good", 3, "2019-04", 0, "current"),
            _statement("rolls", 1, "2019-02", 30, "delinquent"),
            _statement("rolls", 2, "2019-03", 60, "delinquent"),
            _statement("rolls", 3, "2019-04", 90, "delinquent"),
            _statement("cures", 1, "2019-02", 30, "delinquent"),
            _statement("cures", 2, "2019-03", 30, "delinquent"),
            _statement("cures", 3, "2019-04", 0, "current"),
            _statement("late", 1, "2019-02", 30, "delinquent"),
            _statement("late", 2, "2019-03", 60, "delinquent"),
            _statement("late", 3, "2019-04", 90, "delinquent"),
        ],
    )
    _write(
        s,
        "collections",
        [
            {
                "application_id": a,
                "user_id": f"u_{a}",
                "months_on_book": 1,
                "event_ts": "2019-02-09",
                "dpd": 30,
                "amount_overdue": 100.0,
                "action": "sms",
                "contact_result": r,
                "recovered_amount": 0.0,
            }
            for a, r in (("rolls", "no_contact"), ("cures", "promise_to_pay"))
        ],
    )
    _write(
        s,
        "campaigns",
        [
            {
                "offer_id": "O1",
                "user_id": "u_good",
                "event_ts": "2019-01-01 09:00",
                "campaign_id": "CMP-2019-01",
                "offer_channel": "push",
                "offer_amount": 1500.0,
                "responded": 1,
                "application_id": "good",
            },
            {
                "offer_id": "O2",
                "user_id": "u_declined",
                "event_ts": "2019-01-01 10:00",
                "campaign_id": "CMP-2019-01",
                "offer_channel": "sms",
                "offer_amount": 900.0,
                "responded": 1,
                "application_id": "declined",
            },
            {
                "offer_id": "O3",
                "user_id": "u_x",
                "event_ts": "2019-01-01 11:00",
                "campaign_id": "CMP-2019-01",
                "offer_channel": "in_app",
                "offer_amount": 700.0,
                "responded": 0,
                "application_id": None,
            },
        ],
    )
    return s


def test_offer_event_is_a_response_that_was_approved(settings: Settings) -> None:
    frame = population(settings, PRECREDIT_RESPONSE, ["2019-01"], "2019-01").set_index("offer_id")
    # an approved response is the event; a declined response and no response are not
    assert frame["bad"].to_dict() == {"O1": 1.0, "O2": 0.0, "O3": 0.0}
    assert frame["mature"].all() and frame["eligible"].all()
    assert {"offer_channel", "offer_amount"} <= set(frame.columns)


def test_account_snapshots_look_ahead_only_inside_the_window(settings: Settings) -> None:
    frame = population(settings, BEHAVIOR_PD, ["2019-02", "2019-03"], "2019-04").set_index("account_month_id")
    # a snapshot at 90+ dpd is already bad: it is not in the population
    assert "rolls-03" not in frame.index
    # rolls reaches 90 dpd two statements after its first snapshot: bad; good never does
    assert frame.loc["rolls-01", "bad"] == 1.0 and frame.loc["good-01", "bad"] == 0.0
    # a 2019-03 snapshot needs statements through 2019-05 to be mature: unknown at 2019-04 unless already bad
    assert not frame.loc["good-02", "mature"] and np.isnan(frame.loc["good-02", "bad"])
    assert frame.loc["rolls-02", "bad"] == 1.0
    # account fields come from the statement alone (loans booked before the lake began have no application)
    assert frame.loc["good-01", ["balance", "amount_due", "paid_ratio"]].tolist() == [800.0, 100.0, 1.0]
    assert frame.loc["rolls-01", "paid_ratio"] == 0.0


def test_delinquency_cure_is_a_current_statement_within_the_window(settings: Settings) -> None:
    frame = population(settings, COLLECTION_CURE, ["2019-02"], "2019-04").set_index("account_month_id")
    assert frame["bad"].to_dict() == {"cures-01": 1.0, "rolls-01": 0.0}
    assert frame.loc["cures-01", "contact_result"] == "promise_to_pay"
    # the case is scored at the collection action, after the statement it follows
    assert (frame["event_timestamp"] == pd.Timestamp("2019-02-09", tz="UTC")).all()


def test_account_sampling_keeps_the_same_rows_whatever_the_input_order() -> None:
    keys = [f"A{i:04d}-01" for i in range(50)]
    frame = pd.DataFrame({"account_month_id": keys, "event_ts": pd.Timestamp("2019-02-05", tz="UTC")})
    kept = _sample(frame, "account_month_id", 10)
    shuffled = _sample(frame.sample(frac=1.0, random_state=1), "account_month_id", 10)
    assert len(kept) == 10 and set(kept["account_month_id"]) == set(shuffled["account_month_id"])


def test_account_populations_skip_the_credit_history_warm_up(settings: Settings) -> None:
    early = settings.model_copy(update={"start_month": "2019-01"})
    # 2019-02 is the lake's second month: its 3-month credit-history windows are incomplete
    with pytest.raises(OrchardError, match="warm-up"):
        population(early, BEHAVIOR_PD, ["2019-02"], "2019-04")
    assert set(
        population(early, BEHAVIOR_PD, ["2019-02", "2019-03"], "2019-04")["account_month_id"]
    ).isdisjoint({"good-01", "rolls-01"})


def test_account_cap_read_month_by_month_is_the_cap_over_the_span(settings: Settings) -> None:
    # Given two months of open statements, the 2019-03 file also holding late statements of 2019-02 events
    def statements(n: int, month: str, day: str) -> pd.DataFrame:
        rows = pd.DataFrame([_statement(f"L{month[-2:]}{i:03d}", 1, month, 0, "current") for i in range(n)])
        return rows.assign(event_ts=pd.Timestamp(f"{month}-{day}", tz="UTC"))

    columns = SOURCES["repayments"].column_names
    february = statements(40, "2019-02", "05")
    march = pd.concat([statements(40, "2019-03", "05"), statements(30, "2019-02", "27")], ignore_index=True)
    for month, rows in (("2019-02", february), ("2019-03", march)):
        rows = rows.assign(batch_id=batch_id("repayments", month))
        write_parquet(rows[columns], silver_path(settings, "repayments", month))
    capped = replace(BEHAVIOR_PD, max_per_month=12)
    # When the population is read (one month's file at a time, each capped as it is read)
    frame = population(settings, capped, ["2019-02", "2019-03"], "2019-04", with_labels=False)
    # Then it holds the cases, in the order, that capping every statement of the span at once keeps
    every = pd.concat([february, march], ignore_index=True)
    every["account_month_id"] = every["application_id"] + "-01"
    expected = _sample(every, "account_month_id", 12)["account_month_id"].tolist()
    assert frame["account_month_id"].tolist() == expected
    assert len(expected) == 24 and sum(a.startswith("L02") for a in expected) == 12, "cap per event month"


LOANS_PORTFOLIO = """
name: lender
sources:
  loans:
    landing: {path: "drop/loans_{period}.csv"}
    key: [loan_id]
    event_time: issued
    timezone: America/New_York
    columns:
      loan_id: {type: string}
      client: {type: string}
      issued: {type: timestamp}
      amount: {type: float}
      status: {type: category, values: [current, late, charged_off]}
      defaulted_on: {type: timestamp, nullable: true}
labels:
  late_at_extraction:
    observed: {column: status, bad_values: [late, charged_off]}
  default_3m:
    outcome_date: {column: defaulted_on, within_months: 3}
models:
  observed_pd:
    purpose: status at extraction
    population: {source: loans, key: loan_id, entity: client}
    label: late_at_extraction
    views: []
    features: []
    request_features: [amount]
  dated_pd:
    purpose: default date within 3 months
    population: {source: loans, key: loan_id, entity: client}
    label: default_3m
    views: []
    features: []
    request_features: [amount]
"""


@pytest.fixture
def lender(tmp_path: Path) -> Settings:
    """A lender whose outcome is a status column and an outcome date on the case row (no performance source)."""
    folder = tmp_path / "lender"
    folder.mkdir()
    (folder / "portfolio.yaml").write_text(LOANS_PORTFOLIO)
    s = Settings(_env_file=None, home=tmp_path / "orchard", portfolio=folder, start_month="2019-01")
    spec = source_spec(s.portfolio_def, "loans")
    rows = pd.DataFrame(
        {
            "loan_id": ["a", "b", "c", "d"],
            "client": ["p", "q", "r", "s"],
            "event_ts": pd.to_datetime(["2019-01-10"] * 3 + ["2019-02-10"], utc=True),
            "amount": [100.0, 200.0, 300.0, 400.0],
            "status": ["late", "current", None, "charged_off"],
            # naive dates, read in the source's zone: a's is 2019-05-01 02:00 UTC, 4 months on (outside the window)
            "defaulted_on": pd.to_datetime(
                ["2019-04-30 22:00", "2019-02-15 00:00", None, "2019-02-20 00:00"]
            ),
        }
    )
    for month, part in rows.groupby(rows["event_ts"].dt.strftime("%Y-%m")):
        write_parquet(
            part.assign(batch_id=batch_id("loans", month))[spec.column_names], silver_path(s, "loans", month)
        )
    return s


def test_an_observed_label_is_mature_wherever_the_status_is_set(lender: Settings) -> None:
    spec = model_spec(lender.portfolio_def, "observed_pd")
    frame = population(lender, spec, ["2019-01", "2019-02"], "2019-02").set_index("loan_id")
    assert frame["bad"].to_dict() == pytest.approx({"a": 1.0, "b": 0.0, "c": np.nan, "d": 1.0}, nan_ok=True)
    assert frame["mature"].to_dict() == {"a": True, "b": True, "c": False, "d": True}
    assert "status" not in frame.columns, "the outcome column never reaches the model's features"


def test_an_outcome_date_label_counts_inside_its_window_once_known(lender: Settings) -> None:
    spec = model_spec(lender.portfolio_def, "dated_pd")
    # Given labels known at 2019-04: January's loans are mature (Jan + 3), February's not yet
    frame = population(lender, spec, ["2019-01", "2019-02"], "2019-04").set_index("loan_id")
    assert frame["mature"].to_dict() == {"a": True, "b": True, "c": True, "d": False}
    # a: 2019-04-30 22:00 in New York is May in UTC (months are UTC, as every label's): outside Jan + 3 months
    # b: defaulted in its window; c: never; d: defaulted in its own window, known before maturity
    assert frame["bad"].to_dict() == pytest.approx({"a": 0.0, "b": 1.0, "c": 0.0, "d": 1.0}, nan_ok=True)
