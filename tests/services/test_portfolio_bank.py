"""A lender's own layout end to end: `orchard run --portfolio` on data Orchard has never seen.

The simulator's data is re-exported as a bank would hold it: applications as monthly CSV files with other column
names and naive local times (Asia/Shanghai), customer snapshots as Parquet with zoned times, statements as a table
in the real PostgreSQL. Nothing of the demo's names is reused. The run must register a champion, monitor it,
quarantine a planted bad batch, and the decision API must decide for one of its customers.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from model_registry.registry import champion_version
from orchard.errors import OrchardError
from orchard.landing import read_landed
from orchard.lifecycle.ledger import load_month
from orchard.months import month_range
from orchard.portfolio.load import load_portfolio
from orchard.serving.app import create_app
from orchard.settings import Settings
from orchard.simulate import simulate
from orchard.sources import source_spec
from orchard.testing.services import PG_URL, drop_databases
from orchard.testing.small_lifecycle import run_orchard
from tests.services.conftest import require

pytestmark = [pytest.mark.services, pytest.mark.slow(seconds=50)]

MONTHS = month_range("2019-01", "2019-09")
BAD_MONTH = "2019-04"
ZONE = "Asia/Shanghai"

BANK_PORTFOLIO = """
name: eastbank
description: a lender's book in its own layout (re-exported simulator data)
timezone: Asia/Shanghai
start: 2019-01
sources:
  loan_applications:
    landing: {path: "exports/apps/{period}/applications.csv"}
    key: [app_ref]
    event_time: applied_local
    columns:
      app_ref: {type: string}
      cust_no: {type: string}
      applied_local: {type: timestamp}
      amount_requested: {type: float, min: 100, max: 100000}
      tenor: {type: int, min: 3, max: 60}
      job: {type: category, values: [salaried, self_employed, gig, unemployed, student]}
      outcome: {type: category, values: [approved, declined]}
    foreign_keys: {cust_no: customer_snapshots.cust_no}
  customer_snapshots:
    landing: {path: "exports/customers_{period}.parquet"}
    key: [cust_no]
    event_time: snapshot_time
    columns:
      cust_no: {type: string}
      snapshot_time: {type: timestamp}
      age_years: {type: int, min: 18, max: 80}
      monthly_income: {type: float, min: 0, max: 1000000}
      late_bills: {type: int, min: 0, max: 12}
  statements:
    sql: {connection: warehouse, table: bank_statements}
    key: [loan_ref, stmt_no]
    event_time: stmt_time
    columns:
      loan_ref: {type: string}
      cust_no: {type: string}
      stmt_no: {type: int, min: 1, max: 60}
      stmt_time: {type: timestamp}
      days_past_due: {type: int, min: 0, max: 720}
      due: {type: float, min: 0, max: 100000}
      paid: {type: float, min: 0, max: 100000}
      state: {type: category, values: [current, delinquent, charged_off, paid_off]}
entities:
  borrower: {join_key: cust_no, description: a customer of the bank}
views:
  borrower_profile:
    entity: borrower
    source: customer_snapshots
    ttl_days: 62
    snapshot:
      age_years: {type: int, description: age}
      monthly_income: {type: float, description: income}
      late_bills: {type: int, description: late bills in 12 months}
  borrower_history:
    entity: borrower
    source: statements
    ttl_days: 400
    aggregations:
      worst_dpd_3m: {how: max, column: days_past_due, window_months: 3, type: int}
      short_payments_3m: {how: count, where: paid < due, window_months: 3, type: int}
      mean_paid_2m: {how: mean, column: paid, window_months: 2}
labels:
  dpd30_2m:
    description: 30+ days past due or charged off within 2 months of booking
    performance:
      source: statements
      match: {loan_ref: app_ref}
      event: "days_past_due >= 30 or state == 'charged_off'"
      within_months: 2
models:
  eastbank_pd:
    purpose: probability that a booked application goes 30+ days past due within 2 months
    population: {source: loan_applications, key: app_ref, entity: cust_no, trainable: "outcome == 'approved'"}
    label: dpd30_2m
    views: [borrower_profile, borrower_history]
    features: [age_years, monthly_income, late_bills, worst_dpd_3m, short_payments_3m, mean_paid_2m]
    request_features: [amount_requested, tenor, job]
    categorical: [job]
    increasing: [late_bills, worst_dpd_3m, short_payments_3m]
    serve: true
decision: {pd_model: eastbank_pd}
policy:   # the small lifecycle's policy (orchard/testing/small_lifecycle.SMALL_POLICY), on the bank's data
  min_mature_vintages: 3
  oot_months: 1
  gates: {calibration_tolerance: 0.3}
  monitoring: {retrain_cooldown_months: 1}
"""


def _local_month(ts: pd.Series) -> pd.Series:
    return ts.dt.tz_convert(ZONE).dt.strftime("%Y-%m")


def _export(landing: Path, folder: Path, pg_url: str) -> None:
    """Write the simulator's lake as the bank holds it: files by local month, statements in PostgreSQL."""

    def read(source: str) -> pd.DataFrame:
        return pd.concat(
            [pd.read_parquet(landing / source / f"{m}.parquet") for m in MONTHS], ignore_index=True
        )

    apps = read("applications").rename(
        columns={
            "application_id": "app_ref",
            "user_id": "cust_no",
            "requested_amount": "amount_requested",
            "term_months": "tenor",
            "employment_type": "job",
            "decision": "outcome",
        }
    )
    apps["applied_local"] = apps["event_ts"].dt.tz_convert(ZONE).dt.tz_localize(None)  # naive local wall time
    apps["period"] = _local_month(apps["event_ts"])
    columns = ["app_ref", "cust_no", "applied_local", "amount_requested", "tenor", "job", "outcome"]
    for month, rows in apps.groupby("period"):
        if month not in MONTHS:
            continue
        rows = rows[columns].copy()
        if month == BAD_MONTH:  # the planted bad batch: negative amounts
            rows.loc[rows.index[:5], "amount_requested"] = -1.0
        target = folder / "exports" / "apps" / str(month) / "applications.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(target, index=False)
    users = read("partner_users").rename(
        columns={
            "user_id": "cust_no",
            "event_ts": "snapshot_time",
            "age": "age_years",
            "income_est_monthly": "monthly_income",
            "late_bill_payments_12m": "late_bills",
        }
    )
    users["period"] = _local_month(users["snapshot_time"])
    for month, rows in users.groupby("period"):
        if month in MONTHS:
            rows[["cust_no", "snapshot_time", "age_years", "monthly_income", "late_bills"]].to_parquet(
                folder / "exports" / f"customers_{month}.parquet"
            )
    statements = read("repayments").rename(
        columns={
            "application_id": "loan_ref",
            "user_id": "cust_no",
            "months_on_book": "stmt_no",
            "event_ts": "stmt_time",
            "dpd": "days_past_due",
            "amount_due": "due",
            "amount_paid": "paid",
            "status": "state",
        }
    )
    engine = sa.create_engine(pg_url)
    statements[
        ["loan_ref", "cust_no", "stmt_no", "stmt_time", "days_past_due", "due", "paid", "state"]
    ].to_sql("bank_statements", engine, index=False, if_exists="replace")
    engine.dispose()


@pytest.fixture
def warehouse() -> str:
    """A database of its own on the real PostgreSQL, holding the bank's statements table."""
    require(5432, "PostgreSQL")
    name = f"orchard_bank_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL + "/postgres", autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    drop_databases(name)


def test_a_bank_layout_runs_end_to_end(
    tmp_path: Path, warehouse: str, prefect_server_env: dict[str, str]
) -> None:
    # Given the simulator's data exported in a bank's own layout, and a portfolio describing it
    sim = Settings(
        _env_file=None,
        home=tmp_path / "sim",
        n_users=3000,
        start_month=MONTHS[0],  # type: ignore[call-arg]
        end_month=MONTHS[-1],
        shock_month="2019-07",
        corrupt_batches=[],
    )
    simulate(sim)
    folder = tmp_path / "eastbank"
    folder.mkdir()
    (folder / "portfolio.yaml").write_text(BANK_PORTFOLIO)
    _export(sim.landing_dir, folder, warehouse)
    home = tmp_path / "state"
    env = {"ORCHARD_SQL_URLS": json.dumps({"warehouse": warehouse}), **prefect_server_env}
    # When `orchard run` processes every landed period
    result = run_orchard(home, "run", "--portfolio", str(folder), timeout=1200, **env)
    # Then it finishes, having quarantined the planted batch and kept it out of silver
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    state = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    bad = load_month(state, BAD_MONTH)
    assert bad is not None and f"loan_applications-{BAD_MONTH}" in bad.quarantined, bad
    assert any("amount_requested" in b for b in bad.quarantined[f"loan_applications-{BAD_MONTH}"])
    assert not (home / "lake" / "silver" / "loan_applications" / f"{BAD_MONTH}.parquet").exists()
    # And its contracts learnt from the bank's own accepted history, with no code written for this layout
    last = json.loads(
        (home / "gx" / "results" / "loan_applications" / f"loan_applications-{MONTHS[-1]}.json").read_text()
    )
    kinds = {item["expectation_config"]["type"] for item in last["results"]}
    assert {
        "expect_table_row_count_to_match_history",
        "expect_column_scale_to_match_history",
        "expect_column_distribution_to_match_history",
        "expect_column_variety_to_match_history",
        "expect_table_keys_reused_to_match_history",
        "expect_column_values_to_exist_in_source",
    } <= kinds, kinds
    stopped = [b for m in MONTHS if (r := load_month(state, m)) for b in r.quarantined]
    assert stopped == [f"loan_applications-{BAD_MONTH}"], f"a clean batch of the bank was stopped: {stopped}"
    # And a champion of the bank's model is registered and monitored in the months after it
    settings = Settings(_env_file=None, home=home, portfolio=folder)  # type: ignore[call-arg]
    assert champion_version(settings, "eastbank_pd") is not None, result.stdout[-3000:]
    records = [load_month(settings, m) for m in MONTHS]
    monitored = [r.month for r in records if r and r.model("eastbank_pd").score_psi is not None]
    assert monitored, "the champion was never monitored"
    assert "eastbank_pd" in result.stdout and "Alias history (eastbank_pd)" in result.stdout
    # And the decision API decides for one of the bank's customers with the portfolio's own request fields
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"api_key": SecretStr("bank-key")})}
    )
    customer = pd.read_parquet(folder / "exports" / f"customers_{MONTHS[-1]}.parquet")["cust_no"].iloc[0]
    body = {"customer_id": customer, "amount_requested": 2500.0, "tenor": 12, "job": "salaried"}
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/decisions/application", json=body, headers={"X-API-Key": "bank-key"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["decision"] in {"approve", "decline", "refer"} and 0 <= answer.json()["pd"] <= 1
        refused = client.post(
            "/v1/decisions/application", json={**body, "job": "astronaut"}, headers={"X-API-Key": "bank-key"}
        )
        assert refused.status_code == 422 and "job" in refused.text


def test_a_sql_source_is_read_one_period_at_a_time(tmp_path: Path, warehouse: str) -> None:
    # Given statements in PostgreSQL with zoned times, declared as a table source and as a query source
    rows = pd.DataFrame(
        {
            "loan_ref": ["L1", "L2", "L3"],
            "cust_no": ["C1", "C2", "C3"],
            "stmt_no": [1, 1, 2],
            "stmt_time": pd.to_datetime(
                ["2019-02-28 17:00", "2019-02-28 15:59", "2019-03-31 15:30"], utc=True
            ),
            "days_past_due": [0, 30, 0],
            "due": [10.0, 10.0, 10.0],
            "paid": [10.0, 0.0, 10.0],
            "state": ["current", "delinquent", "current"],
        }
    )
    engine = sa.create_engine(warehouse)
    rows.to_sql("bank_statements", engine, index=False)
    engine.dispose()
    folder = tmp_path / "eastbank"
    folder.mkdir()
    query = "select * from bank_statements where stmt_time >= :start and stmt_time < :end"
    (folder / "portfolio.yaml").write_text(BANK_PORTFOLIO)
    table_spec = source_spec(load_portfolio(folder), "statements")
    (folder / "portfolio.yaml").write_text(
        BANK_PORTFOLIO.replace(
            "sql: {connection: warehouse, table: bank_statements}",
            f'sql: {{connection: warehouse, query: "{query}"}}',
        )
    )
    query_spec = source_spec(load_portfolio(folder), "statements")
    urls = {"warehouse": warehouse}
    # When reading March 2019 of a Shanghai portfolio (UTC+8: March starts 2019-02-28 16:00 UTC)
    for spec in (table_spec, query_spec):
        landed = read_landed(spec, "2019-03", portfolio_folder=folder, home=tmp_path, sql_urls=urls)
        # Then exactly the rows of the local month come back, in the lake's layout
        assert sorted(landed.frame["loan_ref"]) == ["L1", "L3"], landed.frame
        assert list(landed.frame.columns) == spec.column_names and landed.origin == "sql:warehouse"
    # And the content hash is stable (the ingest's idempotency key), a missing connection is named
    again = read_landed(table_spec, "2019-03", portfolio_folder=folder, home=tmp_path, sql_urls=urls)
    assert again.sha256 == landed.sha256
    with pytest.raises(OrchardError, match="connection 'warehouse', which is not configured"):
        read_landed(table_spec, "2019-03", portfolio_folder=folder, home=tmp_path, sql_urls={})
