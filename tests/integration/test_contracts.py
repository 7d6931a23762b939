"""Integration tests of the data contracts with the real Great Expectations: silver, quarantine, Data Docs."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console

from flows.validate import validate_month
from orchard.contracts import build_suite, check_batch, validate_batch
from orchard.contracts.gx_project import GxProject
from orchard.contracts.history_store import profile_path
from orchard.contracts.report import broken_expectations, describe_failure, stable_result
from orchard.errors import ContractViolation, OrchardError
from orchard.lake import (
    ingest_batch,
    landing_path,
    quarantine_dir,
    quarantined_batches,
    read_silver,
    silver_months,
    silver_path,
)
from orchard.lifecycle.ledger import MonthRecord
from orchard.lifecycle.summary import render_summary
from orchard.months import month_end, month_start
from orchard.portfolio.expressions import row_mask
from orchard.settings import DEMO_PORTFOLIO, Settings
from orchard.simulate import simulate
from orchard.sources import SourceSpec, batch_id
from orchard.testing.demo import demo_source
from tests.conftest import make_settings

APPLICATIONS = demo_source("applications")
CAMPAIGNS = demo_source("campaigns")
PARTNER_USERS = demo_source("partner_users")
REPAYMENTS = demo_source("repayments")

MONTH = "2019-03"


def valid_frame(spec: SourceSpec, month: str, n_rows: int, seed: int = 0) -> pd.DataFrame:
    """Return n_rows rows that satisfy every rule of the spec for the month, in the landing dtypes.

    Values are drawn column by column; rows breaking a cross-field rule of the source are drawn again.
    """
    rng = np.random.default_rng(seed)
    start = month_start(month)
    span_s = int((month_end(month) - start).total_seconds())
    drawn = 4 * n_rows + 20
    columns: dict[str, object] = {}
    for col in spec.columns:
        if col.name == "event_ts":
            columns[col.name] = start + pd.to_timedelta(rng.integers(0, span_s, drawn), unit="s")
        elif col.categories is not None:
            columns[col.name] = pd.Series(
                [col.categories[i % len(col.categories)] for i in range(drawn)], dtype=object
            )
        elif col.dtype == "string":
            columns[col.name] = pd.Series([""] * drawn, dtype=object)  # numbered below
        elif col.dtype == "int":
            low, high = int(col.min_value or 0), int(col.max_value or 100)
            columns[col.name] = rng.integers(low, high + 1, drawn).astype("int64")
        else:
            low_f, high_f = float(col.min_value or 0.0), float(col.max_value or 1000.0)
            columns[col.name] = rng.uniform(low_f, high_f, drawn)
    df = pd.DataFrame(columns)[spec.column_names]
    keep = np.ones(len(df), dtype=bool)
    for rule in spec.rules:
        keep &= row_mask(df, rule, rule)
    df = df.loc[keep].head(n_rows).reset_index(drop=True)
    assert len(df) == n_rows, f"could not draw {n_rows} rows satisfying {spec.rules}"
    for col in spec.columns:
        if col.name == "batch_id":
            df[col.name] = pd.Series([batch_id(spec.name, month)] * n_rows, dtype=object)
        elif col.dtype == "string" and col.categories is None:
            df[col.name] = pd.Series([f"{col.name[:3]}-{month}-{i:06d}" for i in range(n_rows)], dtype=object)
    return df


@pytest.fixture
def land(settings: Settings) -> Callable[[str, pd.DataFrame], None]:
    """Write a landing file for (source, MONTH) and ingest it into bronze."""

    def _land(source: str, df: pd.DataFrame) -> None:
        target = landing_path(settings, source, MONTH)
        target.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(target, index=False)
        ingest_batch(settings, source, MONTH)

    return _land


def _violation(settings: Settings, source: str = "applications") -> ContractViolation:
    with pytest.raises(ContractViolation) as info:
        validate_batch(settings, source, MONTH)
    return info.value


def test_build_suite_covers_the_spec(settings: Settings) -> None:
    # Given the applications spec
    # When its contract is built
    suite = build_suite(APPLICATIONS, MONTH, settings.simulation.n_users)
    kinds = [(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations]
    # Then every column has a type and not-null check, categories an in-set check, and the table its rules
    for col in APPLICATIONS.columns:
        assert ("expect_column_values_to_be_of_type", col.name) in kinds, f"no type check for {col.name}"
        assert ("expect_column_values_to_not_be_null", col.name) in kinds, f"no not-null for {col.name}"
    assert ("expect_column_values_to_be_in_set", "employment_type") in kinds, "categories not enforced"
    assert ("expect_column_values_to_be_unique", "application_id") in kinds, "key uniqueness missing"
    row_count = next(
        e for e in suite.expectations if e.expectation_type == "expect_table_row_count_to_be_between"
    )
    assert (row_count.min_value, row_count.max_value) == APPLICATIONS.row_bounds(
        settings.simulation.n_users
    ), "row bounds"


def test_compound_key_uses_compound_uniqueness(settings: Settings) -> None:
    # Given a source keyed by two columns, when its contract is built
    suite = build_suite(REPAYMENTS, MONTH, settings.simulation.n_users)
    # Then the key is checked as a compound key
    compound = [e for e in suite.expectations if e.expectation_type == "expect_compound_columns_to_be_unique"]
    assert len(compound) == 1 and compound[0].column_list == ["application_id", "months_on_book"], (
        "compound key"
    )


def test_valid_batch_lands_in_silver(settings: Settings, land: Callable[[str, pd.DataFrame], None]) -> None:
    # Given a valid applications batch in bronze
    frame = valid_frame(APPLICATIONS, MONTH, 60)
    land("applications", frame)
    # When it is validated
    outcome = validate_batch(settings, "applications", MONTH)
    # Then it passes, lands in silver unchanged and nothing is quarantined
    assert outcome.success and outcome.broken == [], f"valid batch failed: {outcome.broken}"
    assert outcome.silver_path == silver_path(settings, "applications", MONTH), "wrong silver path"
    assert outcome.result_path.is_file(), "validation result not kept"
    pd.testing.assert_frame_equal(read_silver(settings, "applications"), frame, obj="silver content")
    assert silver_months(settings, "applications") == [MONTH], "silver months"
    assert quarantined_batches(settings) == [], "a valid batch was quarantined"


def test_revalidating_a_passed_batch_changes_nothing(
    settings: Settings, land: Callable[[str, pd.DataFrame], None]
) -> None:
    # Given a batch that passed
    land("partner_users", valid_frame(PARTNER_USERS, MONTH, 700))
    first = validate_batch(settings, "partner_users", MONTH)
    assert first.silver_path is not None
    before = {p: p.stat().st_mtime_ns for p in settings.home.rglob("*") if p.is_file()}
    # When it is validated again
    second = validate_batch(settings, "partner_users", MONTH)
    after = {p: p.stat().st_mtime_ns for p in settings.home.rglob("*") if p.is_file()}
    # Then the outcome is the same and no file was added or rewritten
    assert second == first, "outcome changed on re-validation"
    assert after == before, f"files changed: {set(after.items()) ^ set(before.items())}"


def _broken_applications() -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    def null_id(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[[0, 1, 2], "application_id"] = None
        return df

    def out_of_range(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[0, "term_months"] = 999
        return df

    def unknown_category(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[4, "employment_type"] = "astronaut"
        return df

    def duplicate_key(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[1, "application_id"] = df.loc[0, "application_id"]
        return df

    def outside_month(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[0, "event_ts"] = month_end(MONTH)  # the first instant of the next month is outside
        return df

    def missing_column(df: pd.DataFrame) -> pd.DataFrame:
        return df.drop(columns=["decision"])

    def too_few_rows(df: pd.DataFrame) -> pd.DataFrame:
        return df.head(3)

    return {
        "expect_column_values_to_not_be_null(application_id): 3 unexpected of 60": null_id,
        "expect_column_values_to_be_between(term_months): 1 unexpected of 60": out_of_range,
        "expect_column_values_to_be_in_set(employment_type): unexpected ['astronaut']": unknown_category,
        "expect_column_values_to_be_unique(application_id): 2 unexpected of 60": duplicate_key,
        "expect_column_values_to_be_between(event_ts): 1 unexpected of 60": outside_month,
        "expect_table_columns_to_match_ordered_list: missing ['decision']": missing_column,
        "expect_table_row_count_to_be_between: 3 rows, expected 10..1000": too_few_rows,
    }


@pytest.mark.parametrize("expected", list(_broken_applications()))
def test_each_broken_expectation_is_named(
    settings: Settings, land: Callable[[str, pd.DataFrame], None], expected: str
) -> None:
    # Given a batch broken in one way
    land("applications", _broken_applications()[expected](valid_frame(APPLICATIONS, MONTH, 60)))
    # When it is validated
    violation = _violation(settings)
    # Then the violation names the broken expectation and nothing reaches silver
    assert any(line.startswith(expected) for line in violation.broken), (
        f"{expected!r} not in {violation.broken}"
    )
    assert violation.batch_id == "applications-2019-03", "violation names the wrong batch"
    assert expected.split(":")[0] in str(violation), "the message does not name the expectation"
    assert not silver_path(settings, "applications", MONTH).exists(), "a failing batch reached silver"


def test_failing_batch_is_quarantined_with_docs(
    settings: Settings, land: Callable[[str, pd.DataFrame], None]
) -> None:
    # Given silver holding another month, and a broken batch for MONTH
    other = silver_path(settings, "applications", "2019-02")
    other.parent.mkdir(parents=True, exist_ok=True)
    valid_frame(APPLICATIONS, "2019-02", 20).to_parquet(other, index=False)
    silver_before = sorted(p.name for p in other.parent.iterdir())
    broken = valid_frame(APPLICATIONS, MONTH, 60)
    broken.loc[4, "employment_type"] = "astronaut"
    land("applications", broken)
    # When it is validated
    violation = _violation(settings)
    # Then silver is unchanged and the quarantine holds the data, the GE result and a pointer to Data Docs
    folder = Path(violation.quarantine_path)
    assert folder == quarantine_dir(settings, "applications", MONTH), "wrong quarantine folder"
    assert sorted(p.name for p in other.parent.iterdir()) == silver_before, "silver changed"
    assert len(pd.read_parquet(folder / "data.parquet")) == 60, "quarantined data incomplete"
    result = json.loads((folder / "validation.json").read_text())
    assert result["success"] is False and broken_expectations(result) == violation.broken, "GE result"
    docs = Path(json.loads((folder / "manifest.json").read_text())["data_docs"])
    assert docs.suffix == ".html" and docs.is_file(), f"no Data Docs page at {docs}"
    assert docs.is_relative_to(settings.gx_dir.resolve()), "Data Docs outside gx_dir"
    assert "astronaut" in docs.read_text(), "the docs page does not show the unexpected value"
    assert quarantined_batches(settings) == ["applications-2019-03"], "quarantine listing"


def test_revalidating_a_quarantined_batch_is_idempotent(
    settings: Settings, land: Callable[[str, pd.DataFrame], None]
) -> None:
    # Given a quarantined batch
    land("applications", valid_frame(APPLICATIONS, MONTH, 5))
    first = _violation(settings)
    files_before = {p: p.stat().st_mtime_ns for p in settings.home.rglob("*") if p.is_file()}
    # When it is validated again
    second = _violation(settings)
    files_after = {p: p.stat().st_mtime_ns for p in settings.home.rglob("*") if p.is_file()}
    # Then the same violation is raised and nothing is added or rewritten
    assert str(second) == str(first), "a different violation on re-validation"
    assert files_after == files_before, f"files changed: {set(files_after) ^ set(files_before)}"
    assert quarantined_batches(settings) == ["applications-2019-03"], "quarantine duplicated"


def test_check_batch_reports_without_raising(
    settings: Settings, land: Callable[[str, pd.DataFrame], None]
) -> None:
    # Given a broken batch, when it is checked
    land("applications", valid_frame(APPLICATIONS, MONTH, 3))
    outcome = check_batch(settings, "applications", MONTH)
    # Then the outcome says so and points at quarantine and docs
    assert not outcome.success and outcome.silver_path is None, "broken batch reported as passed"
    assert outcome.quarantine_path is not None and outcome.docs_path is not None, "paths missing"


def test_validate_unknown_batch_is_a_user_error(settings: Settings) -> None:
    # Given nothing ingested, when validating, then the error names the batch
    with pytest.raises(OrchardError, match="applications-2019-03 was not ingested"):
        validate_batch(settings, "applications", MONTH)


def test_naive_timestamps_are_read_in_the_sources_zone(
    settings: Settings, land: Callable[[str, pd.DataFrame], None]
) -> None:
    # Given event times without a time zone (the demo portfolio's sources are in UTC)
    frame = valid_frame(APPLICATIONS, MONTH, 60)
    expected = frame["event_ts"].copy()
    frame["event_ts"] = frame["event_ts"].dt.tz_localize(None)
    land("applications", frame)
    # When validated, then the batch passes: ingest read the naive times in the declared zone, as UTC
    outcome = validate_batch(settings, "applications", MONTH)
    assert outcome.success, outcome.broken
    silver = pd.read_parquet(outcome.silver_path)
    assert str(silver["event_ts"].dt.tz) == "UTC" and silver["event_ts"].tolist() == expected.tolist()


def test_describe_failure_of_an_errored_expectation() -> None:
    # Given a result whose expectation raised, when described, then the error is named on one line
    item = {
        "success": False,
        "expectation_config": {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
        "result": {},
        "exception_info": {"raised_exception": True, "exception_message": "column x missing\ntrace"},
    }
    assert describe_failure(item) == (
        "expect_column_values_to_not_be_null(x): could not be evaluated: column x missing"
    ), "errored expectation not described"


def test_batch_passing_a_relaxed_contract_leaves_quarantine(
    settings: Settings, land: Callable[[str, pd.DataFrame], None]
) -> None:
    # Given a batch of 5 rows quarantined under a population of 2000 users (at least 10 rows expected)
    land("applications", valid_frame(APPLICATIONS, MONTH, 5))
    _violation(settings)
    # When the contract is relaxed (a smaller population) and the batch is validated again
    relaxed = make_settings(settings.home, n_users=200)
    outcome = validate_batch(relaxed, "applications", MONTH)
    # Then it moves to silver and is no longer listed in quarantine
    assert outcome.success and silver_path(relaxed, "applications", MONTH).is_file(), "batch not in silver"
    assert quarantined_batches(relaxed) == [], "stale quarantine kept"


def test_an_empty_batch_passes_when_the_contract_allows_it(settings: Settings) -> None:
    # Given an empty repayments batch (no loans are open yet; the contract allows 0 rows)
    target = landing_path(settings, "repayments", MONTH)
    target.parent.mkdir(parents=True)
    valid_frame(REPAYMENTS, MONTH, 0).to_parquet(target, index=False)
    ingest_batch(settings, "repayments", MONTH)
    # When validated, then it passes and silver reads back as an empty frame with the spec's columns
    outcome = validate_batch(settings, "repayments", MONTH)
    assert outcome.success, f"empty batch failed: {outcome.broken}"
    silver = read_silver(settings, "repayments")
    assert silver.empty and list(silver.columns) == REPAYMENTS.column_names, list(silver.columns)


def test_a_new_process_reopens_an_existing_gx_project(tmp_path: Path) -> None:
    # Given a GE project created by one process (great_expectations.yml written)
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from orchard.settings import Settings\n"
        "from orchard.contracts.gx_project import GxProject\n"
        "GxProject(Settings(_env_file=None, home=sys.argv[1]).gx_dir).context()\n"
    )
    home = str(tmp_path / "orchard")
    first = subprocess.run([sys.executable, "-c", script, home], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-1500:]
    # When a second process (a resumed demo) opens the same project
    second = subprocess.run([sys.executable, "-c", script, home], capture_output=True, text=True)
    # Then it opens it (the saved settings read back as plain dicts must not break it)
    assert second.returncode == 0, second.stderr[-1500:]


def test_simulated_campaigns_and_collections_pass_and_their_bad_batches_are_named(settings: Settings) -> None:
    # Given two simulated months whose second campaigns and collections batches are corrupted
    simulated = make_settings(
        settings.home, end_month="2019-02", corrupt_batches=["campaigns:2019-02", "collections:2019-02"]
    )
    simulate(simulated)
    suite = build_suite(CAMPAIGNS, "2019-01", simulated.simulation.n_users)
    kinds = [(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations]
    assert ("expect_column_values_to_not_be_null", "application_id") not in kinds, "nullable column"
    assert ("expect_column_values_to_be_of_type", "application_id") in kinds, "nullable column still typed"
    for source in ("campaigns", "collections"):
        for month in ("2019-01", "2019-02"):
            ingest_batch(simulated, source, month)
        # When the clean month is validated, Then it reaches silver (null application ids included)
        outcome = validate_batch(simulated, source, "2019-01")
        assert outcome.success, f"{source} 2019-01 failed: {outcome.broken}"
    offers = read_silver(simulated, "campaigns")
    assert offers["application_id"].isna().any() and offers["application_id"].notna().any(), "both kinds"
    # When the corrupted month is validated, Then each defect is named
    expected = {
        "campaigns": [
            "expect_column_values_to_not_be_null(offer_id)",
            "expect_column_values_to_be_between(offer_amount)",
            "expect_column_values_to_be_in_set(offer_channel): unexpected ['fax']",
            "expect_column_values_to_be_between(event_ts)",
            "expect_column_values_to_be_unique(offer_id)",
        ],
        "collections": [
            "expect_column_values_to_not_be_null(application_id)",
            "expect_column_values_to_be_between(amount_overdue)",
            "expect_column_values_to_be_in_set(action): unexpected ['prison']",
            "expect_column_values_to_be_between(event_ts)",
            "expect_compound_columns_to_be_unique",
        ],
    }
    for source, names in expected.items():
        with pytest.raises(ContractViolation) as info:
            validate_batch(simulated, source, "2019-02")
        for name in names:
            assert any(b.startswith(name) for b in info.value.broken), f"{name} not in {info.value.broken}"
    assert quarantined_batches(simulated) == ["campaigns-2019-02", "collections-2019-02"], "quarantine"


def test_history_checks_start_after_min_history_and_stop_the_planted_silent_corruption(
    tmp_path: Path,
) -> None:
    # Given six simulated months whose last applications batch keeps its schema but declines every application
    simulated = make_settings(
        tmp_path / "orchard",
        end_month="2019-06",
        corrupt_batches=[],
        silent_corrupt_batches=["applications:2019-06"],
    )
    summary = simulate(simulated)
    assert [r.batch_id for r in summary.silent_corruptions] == ["applications-2019-06"]
    notes = {}
    for month in ("2019-01", "2019-02", "2019-03", "2019-04", "2019-05"):
        for source in ("partner_users", "applications"):
            ingest_batch(simulated, source, month)
            outcome = validate_batch(simulated, source, month)
            notes[(source, month)] = outcome.history_note
    # Then the first batches got the schema contract only, and said so; later ones were held to their history
    assert notes[("applications", "2019-01")].startswith("schema contract only: 0 accepted")
    assert notes[("applications", "2019-03")].startswith("schema contract only: 2 accepted")
    assert "history checks learnt from 3 batches 2019-01..2019-03" in notes[("applications", "2019-04")]
    assert profile_path(simulated, "applications", "2019-05").is_file(), "an accepted batch joins the history"
    # When the silently corrupted batch is validated
    for source in ("partner_users", "applications"):
        ingest_batch(simulated, source, "2019-06")
    validate_batch(simulated, "partner_users", "2019-06")
    with pytest.raises(ContractViolation) as info:
        validate_batch(simulated, "applications", "2019-06")
    # Then the variety check names the column, its bound, what it saw and the history behind it
    line = next(
        b for b in info.value.broken if b.startswith("expect_column_variety_to_match_history(decision)")
    )
    assert (
        "distinct(decision) 1 below 2" in line and "distinct values over 5 batches 2019-01..2019-05" in line
    )
    assert not profile_path(simulated, "applications", "2019-06").exists(), "a stopped batch is no history"
    assert not silver_path(simulated, "applications", "2019-06").exists()
    docs = quarantine_dir(simulated, "applications", "2019-06") / "manifest.json"
    page = Path(json.loads(docs.read_text())["data_docs"]).read_text()
    assert "expect_column_variety_to_match_history" in page or "ExpectColumnVarietyToMatchHistory" in page


def test_the_summary_shows_stopped_and_warned_batches() -> None:
    # Given a month record with a quarantined and a warned batch
    record = MonthRecord(
        month="2020-10",
        quarantined={
            "applications-2020-10": ["expect_column_variety_to_match_history(decision): distinct ..."]
        },
        warned={"campaigns-2020-10": ["expect_column_distribution_to_match_history(offer_amount): mean ..."]},
    )
    # When the summary is rendered
    console = Console(record=True, width=200)
    console.print(render_summary([record], "application_pd", [], None))
    text = console.export_text()
    # Then both batches are listed, the stopped one with the check that stopped it
    assert "applications-2020-10 (expect_column_variety_to_match_history(decision))" in text, text
    assert "batches passed with warnings" in text and "campaigns-2020-10" in text, text


@pytest.mark.slow(seconds=15)
def test_a_month_is_checked_parents_first_whatever_order_the_portfolio_lists_its_sources_in(
    tmp_path: Path,
) -> None:
    # Given the demo portfolio as it is, and the same portfolio listing its sources the other way round
    document = yaml.safe_load((DEMO_PORTFOLIO / "portfolio.yaml").read_text())
    homes = {}
    for name, sources in [
        ("listed", document["sources"]),
        ("reversed", dict(reversed(document["sources"].items()))),
    ]:
        folder = tmp_path / name / "portfolio"
        folder.mkdir(parents=True)
        (folder / "portfolio.yaml").write_text(
            yaml.safe_dump({**document, "sources": sources}, sort_keys=False)
        )
        settings = make_settings(
            tmp_path / name / "home", n_users=1_000, end_month="2019-01", portfolio=folder
        )
        assert list(settings.portfolio_def.sources) == list(sources), "the listing order is kept"
        simulate(settings)
        for source in settings.portfolio_def.sources:
            ingest_batch(settings, source, "2019-01")
        # When the month is validated
        outcomes = validate_month.fn(settings, "2019-01")
        assert all(o.success for o in outcomes), [o.broken for o in outcomes]
        homes[name] = settings
    # Then every batch's history record (its orphan shares included: an applicant's user id is found among the
    # same month's partner users, whichever source is listed first) is the same
    records = {
        name: {p.name: json.loads(p.read_text()) for p in sorted((s.gx_dir / "profiles").rglob("*.json"))}
        for name, s in homes.items()
    }
    assert len(records["listed"]) == 5, sorted(records["listed"])
    assert records["reversed"] == records["listed"]
    assert records["listed"]["applications-2019-01.json"]["orphan_share"] == {"user_id": 0.0}


def test_an_ephemeral_project_validates_as_the_homes_and_writes_nothing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch and its suite, and a temporary folder that must stay empty
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    frame = valid_frame(APPLICATIONS, MONTH, 200)
    suite = build_suite(APPLICATIONS, MONTH, settings.simulation.n_users)
    # When it is validated on an ephemeral project (a Dask worker's) and on the home's
    ephemeral = GxProject.ephemeral()
    results = [p.validate("applications", frame, suite) for p in (ephemeral, GxProject(settings.gx_dir))]
    # Then the results are the same, and the ephemeral project wrote no file and cannot publish
    assert results[0].success and stable_result(results[0].to_json_dict()) == stable_result(
        results[1].to_json_dict()
    )
    assert list(scratch.iterdir()) == []
    with pytest.raises(RuntimeError, match="cannot publish"):
        ephemeral.publish(suite, results[0], batch_id("applications", MONTH), dt.datetime(2019, 4, 1))
