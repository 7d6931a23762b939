"""Tests of the seeded lifecycle simulator: determinism, schema, time, keys, corruption, shock, loans."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchard.atomic import file_sha256
from orchard.errors import OrchardError
from orchard.months import add_months, month_end, month_range, month_start, months_between
from orchard.settings import Settings
from orchard.simulate import SimulationSummary, landing_path, simulate
from orchard.simulate.corrupt import corrupt_frame, parse_corrupt_batches
from orchard.simulate.frames import to_spec_frame
from orchard.simulate.lifecycle import annuity_balance, annuity_instalment
from orchard.simulate.macro import macro_for, stress_level
from orchard.simulate.policy import legacy_score
from orchard.simulate.run import SIMULATED_SOURCES
from orchard.sources import batch_id
from orchard.testing.demo import demo_sources
from tests.conftest import make_settings

SOURCES = demo_sources()

SIMULATED = SIMULATED_SOURCES
PANDAS_DTYPE = {
    "string": "object",
    "category": "object",
    "int": "int64",
    "float": "float64",
    "timestamp": "datetime64[ns, UTC]",
}
CORRUPT = "applications:2019-09"


def _small(home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "n_users": 2_000,
        "start_month": "2019-07",
        "end_month": "2020-06",
        "shock_month": "2020-01",
        "corrupt_batches": [CORRUPT],
    }
    values.update(overrides)
    return make_settings(home, **values)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SimulationSummary]:
    """One small simulation (2000 users, 12 months, shock in the middle) shared by the read-only tests."""
    settings = _small(tmp_path_factory.mktemp("sim") / "orchard")
    return settings, simulate(settings)


def _read(settings: Settings, source: str, month: str) -> pd.DataFrame:
    return pd.read_parquet(landing_path(settings, source, month))


def _read_all(settings: Settings, source: str, exclude: str | None = None) -> pd.DataFrame:
    months = [m for m in month_range(settings.start_month, settings.end_month) if f"{source}:{m}" != exclude]
    return pd.concat([_read(settings, source, m) for m in months], ignore_index=True)


# --- end to end on the shared run ---------------------------------------------------------------


def test_writes_every_source_for_every_month(run: tuple[Settings, SimulationSummary]) -> None:
    # Given a 12-month simulation
    settings, summary = run
    # Then one file per source per month exists and the summary counts its rows
    assert summary.months == tuple(month_range("2019-07", "2020-06")), "summary lists the simulated months"
    for source in SIMULATED:
        for month in summary.months:
            path = landing_path(settings, source, month)
            assert path == settings.landing_dir / source / f"{month}.parquet", "landing layout"
            assert len(pd.read_parquet(path)) == summary.rows[source][month], f"row count of {path.name}"
    assert summary.total_rows("applications") > 0, "applications were written"


def test_schema_and_dtypes_match_the_specs(run: tuple[Settings, SimulationSummary]) -> None:
    # Given every batch of every source (the corrupted one included: only its values are broken)
    settings, summary = run
    for source in SIMULATED:
        spec = SOURCES[source]
        for month in summary.months:
            df = _read(settings, source, month)
            # Then the columns are exactly the spec's, in order, with the agreed dtypes
            assert list(df.columns) == spec.column_names, f"{source} {month} columns"
            for col in spec.columns:
                assert str(df[col.name].dtype) == PANDAS_DTYPE[col.dtype], f"{source}.{col.name} dtype"
            strings = [c.name for c in spec.columns if c.dtype in ("string", "category")]
            for name in strings:
                values = df[name].dropna()
                assert values.map(type).eq(str).all(), f"{source}.{name} holds plain str"
            assert (df["batch_id"] == batch_id(source, month)).all(), f"{source} {month} batch_id"


def test_clean_batches_respect_time_keys_and_domains(run: tuple[Settings, SimulationSummary]) -> None:
    # Given every clean batch
    settings, summary = run
    for source in SIMULATED:
        spec = SOURCES[source]
        for month in summary.months:
            if f"{source}:{month}" == CORRUPT:
                continue
            df = _read(settings, source, month)
            # Then every event time is inside the month, keys are unique and values in their domains
            ts = df["event_ts"]
            assert ((ts >= month_start(month)) & (ts < month_end(month))).all(), f"{source} {month} event_ts"
            assert not df.duplicated(list(spec.key)).any(), f"{source} {month} keys unique"
            for col in spec.columns:
                if not col.nullable:
                    assert df[col.name].notna().all(), f"{source}.{col.name} has no nulls"
                if col.categories:
                    assert set(df[col.name]) <= set(col.categories), f"{source}.{col.name} domain"
                if col.min_value is not None:
                    assert (df[col.name] >= col.min_value).all(), f"{source}.{col.name} >= min"
                if col.max_value is not None:
                    assert (df[col.name] <= col.max_value).all(), f"{source}.{col.name} <= max"


def test_corrupted_batch_has_the_listed_defects(run: tuple[Settings, SimulationSummary]) -> None:
    # Given the demo's corrupted batch applications:2019-09
    settings, summary = run
    df = _read(settings, "applications", "2019-09")
    (report,) = summary.corrupted_batches
    # Then it carries every documented defect, and the summary counts them
    ts = df["event_ts"]
    assert report.batch_id == "applications-2019-09", "report names the batch"
    assert df["application_id"].isna().sum() == report.null_ids >= 3, "null ids"
    assert (df["requested_amount"] < 0).sum() == report.negative_amounts >= 3, "negative requested_amount"
    assert (df["employment_type"] == "contractor").sum() == report.unknown_categories >= 3, "unknown category"
    outside = (ts < month_start("2019-09")) | (ts >= month_end("2019-09"))
    assert outside.sum() == report.event_ts_outside_month >= 3, "event_ts outside the month"
    ids = df["application_id"].dropna()
    assert ids.duplicated().sum() == report.duplicated_keys >= 3, "duplicated keys"


def test_application_ids_unique_across_months(run: tuple[Settings, SimulationSummary]) -> None:
    # Given all clean application batches
    settings, _ = run
    apps = _read_all(settings, "applications", exclude=CORRUPT)
    # Then an application id never repeats across months
    assert apps["application_id"].is_unique, "application_id is unique across months"
    approved = (apps["decision"] == "approved").mean()
    assert 0.25 < approved < 0.8, f"the legacy rule approves a plausible share, got {approved:.2f}"


def test_repayments_follow_approved_loans_from_the_month_after_booking(
    run: tuple[Settings, SimulationSummary],
) -> None:
    # Given the clean applications and the statements of loans booked inside the written window
    # (the book is seasoned: loans booked during the burn-in also have statements), not in the bad month
    settings, _ = run
    apps = _read_all(settings, "applications", exclude=CORRUPT)
    reps = _read_all(settings, "repayments")
    stated = reps["event_ts"].dt.strftime("%Y-%m")
    booked_in = [add_months(m, -int(k)) for m, k in zip(stated, reps["months_on_book"], strict=True)]
    booked_in = np.array(booked_in)
    assert (booked_in < settings.start_month).any(), "the book is seasoned: loans from before the start"
    reps = reps[(booked_in != "2019-09") & (booked_in >= settings.start_month)]
    assert len(reps) > 1000, "enough statements to check"
    # Then every statement belongs to an approved application of the same user
    merged = reps.merge(apps, on="application_id", how="left", suffixes=("", "_app"))
    assert merged["decision"].notna().all(), "every repayment has an application"
    assert (merged["decision"] == "approved").all(), "only approved applications have repayments"
    assert (merged["user_id"] == merged["user_id_app"]).all(), "borrower is the applicant"
    # And months_on_book counts months since booking, starting at 1 in the month after
    booked = merged["event_ts_app"].dt.strftime("%Y-%m")
    stated = merged["event_ts"].dt.strftime("%Y-%m")
    gap = [months_between(b, s) for b, s in zip(booked, stated, strict=True)]
    assert (merged["months_on_book"].to_numpy() == np.array(gap)).all(), "mob = months since booking"
    assert merged.groupby("application_id")["months_on_book"].min().eq(1).all(), "statements start at mob 1"
    assert (reps["dpd"] % 30 == 0).all(), "dpd moves in steps of 30"


def test_shock_lowers_income_and_raises_delinquency(run: tuple[Settings, SimulationSummary]) -> None:
    # Given the months before the shock (2019-10..12) and at its peak (2020-02..04)
    settings, _ = run
    users = _read_all(settings, "partner_users")
    reps = _read_all(settings, "repayments")
    users["month"] = users["event_ts"].dt.strftime("%Y-%m")
    reps["month"] = reps["event_ts"].dt.strftime("%Y-%m")
    before, peak = ["2019-10", "2019-11", "2019-12"], ["2020-03", "2020-04", "2020-05"]
    # Then the income estimates fall and the share of delinquent statements rises
    income_before = users[users["month"].isin(before)]["income_est_monthly"].median()
    income_peak = users[users["month"].isin(peak)]["income_est_monthly"].median()
    assert income_peak < 0.85 * income_before, f"income falls: {income_before:.0f} -> {income_peak:.0f}"
    late_before = (reps[reps["month"].isin(before)]["dpd"] >= 30).mean()
    late_peak = (reps[reps["month"].isin(peak)]["dpd"] >= 30).mean()
    assert late_peak > 1.3 * late_before, f"delinquency rises: {late_before:.3f} -> {late_peak:.3f}"
    days_before = users[users["month"].isin(before)]["active_days_30d"].mean()
    days_peak = users[users["month"].isin(peak)]["active_days_30d"].mean()
    assert days_peak < 0.8 * days_before, f"activity falls: {days_before:.1f} -> {days_peak:.1f}"


# --- determinism and re-runs ----------------------------------------------------------------------


def test_same_settings_give_identical_bytes_and_reruns_overwrite(tmp_path: Path) -> None:
    # Given two homes simulated with the same settings, and one of them simulated twice
    first, second = _small(tmp_path / "a", end_month="2019-10"), _small(tmp_path / "b", end_month="2019-10")
    simulate(first)
    simulate(second)
    hashes = {
        (s, m): file_sha256(landing_path(first, s, m))
        for s in SIMULATED
        for m in month_range("2019-07", "2019-10")
    }
    simulate(first)
    for (source, month), digest in hashes.items():
        # Then the files are byte-identical across homes and after the re-run
        assert file_sha256(landing_path(second, source, month)) == digest, f"{source} {month} same bytes"
        assert file_sha256(landing_path(first, source, month)) == digest, f"{source} {month} rerun identical"


def test_a_different_seed_gives_different_data(tmp_path: Path) -> None:
    # Given the same settings with another seed
    a = _small(tmp_path / "a", end_month="2019-07", corrupt_batches=[])
    b = _small(tmp_path / "b", end_month="2019-07", corrupt_batches=[], seed=8)
    simulate(a)
    simulate(b)
    # Then the data differ
    left, right = _read(a, "applications", "2019-07"), _read(b, "applications", "2019-07")
    assert not left.equals(right), "the seed drives the data"


def test_shorter_run_is_a_prefix_of_a_longer_one(
    tmp_path: Path, run: tuple[Settings, SimulationSummary]
) -> None:
    # Given a 3-month run with the same start, seed and population as the shared 12-month run
    long_settings, _ = run
    short = _small(tmp_path / "short", end_month="2019-09")
    simulate(short)
    # Then its months equal the first months of the longer run
    for source in SIMULATED:
        for month in month_range("2019-07", "2019-09"):
            pd.testing.assert_frame_equal(_read(short, source, month), _read(long_settings, source, month))


# --- corrupt batch settings -----------------------------------------------------------------------


def test_unknown_corrupt_source_is_an_orchard_error_before_writing(tmp_path: Path) -> None:
    # Given a corrupt batch naming a source the simulator does not produce
    settings = _small(tmp_path / "o", corrupt_batches=["loans:2019-08"])
    # When simulating, Then a clear error names the source and nothing is written
    with pytest.raises(OrchardError, match="loans"):
        simulate(settings)
    assert not settings.landing_dir.exists(), "nothing written before the error"


def test_corrupt_month_outside_the_range_is_skipped_and_reported(tmp_path: Path) -> None:
    # Given a corrupt batch in a month the run does not cover
    settings = _small(tmp_path / "o", end_month="2019-07", corrupt_batches=["applications:2021-01"])
    # When simulating
    summary = simulate(settings)
    # Then nothing is corrupted, the item is reported as skipped, and no file for that month exists
    assert summary.corrupted_batches == (), "no batch corrupted"
    assert summary.skipped_corruptions == ("applications:2021-01",), "skipped item reported"
    assert not landing_path(settings, "applications", "2021-01").exists(), "out-of-range month not written"


def test_parse_corrupt_batches_splits_inside_and_outside() -> None:
    # Given items inside and outside a window
    inside, outside = parse_corrupt_batches(
        ["repayments:2019-02", "partner_users:2020-01"], ["2019-01", "2019-02"], set(SOURCES)
    )
    # Then they are split by month
    assert inside == {("repayments", "2019-02")}, "inside the window"
    assert outside == ["partner_users:2020-01"], "outside the window"
    with pytest.raises(OrchardError, match="campaignz"):
        parse_corrupt_batches(["campaignz:2019-01"], ["2019-01"], set(SOURCES))


def test_corrupt_frame_on_tiny_frame_breaks_values_not_columns() -> None:
    # Given a clean 20-row repayments batch built here
    month = "2019-05"
    n = 20
    columns = {
        "application_id": np.array([f"A{i:08d}" for i in range(n)], dtype=object),
        "event_ts": np.full(n, month_start(month).value + 3_600_000_000_000, dtype=np.int64),
        "user_id": np.array([f"U{i:07d}" for i in range(n)], dtype=object),
        "months_on_book": np.ones(n, dtype=np.int64),
        "balance": np.full(n, 900.0),
        "amount_due": np.full(n, 100.0),
        "amount_paid": np.full(n, 100.0),
        "dpd": np.zeros(n, dtype=np.int64),
        "status": np.array(["current"] * n, dtype=object),
    }
    clean = to_spec_frame(columns, SOURCES["repayments"], month)
    # When corrupting it
    broken, report = corrupt_frame(
        clean, SOURCES["repayments"], month, "repayments-2019-05", np.random.default_rng(0)
    )
    # Then columns and dtypes are unchanged, and each defect appears on its own rows
    assert list(broken.columns) == list(clean.columns), "same columns"
    assert broken.dtypes.equals(clean.dtypes), "same dtypes"
    assert report.null_ids == 3 and broken["application_id"].isna().sum() == 3, "null ids"
    assert (broken["amount_paid"] < 0).sum() == 3, "negative amount_paid"
    assert (broken["status"] == "frozen").sum() == 3, "unknown status"
    assert len(broken) == n + 3, "three duplicated rows appended"
    assert (clean["amount_paid"] > 0).all(), "the input frame is not modified"


def test_to_spec_frame_rejects_missing_columns() -> None:
    # Given columns lacking most of the spec
    columns = {"user_id": np.array(["U0000001"], dtype=object)}
    # Then building the frame names the missing columns
    with pytest.raises(OrchardError, match="missing"):
        to_spec_frame(columns, SOURCES["partner_users"], "2019-01")


# --- pure pieces ------------------------------------------------------------------------------------


def test_stress_path_hits_peaks_and_recovers_gradually() -> None:
    # Given a shock in 2020-02
    path = {m: stress_level(m, "2020-02") for m in month_range("2019-12", "2021-12")}
    # Then there is no stress before, a peak after onset, and a slow partial recovery
    assert path["2019-12"] == 0.0 and path["2020-01"] == 0.0, "no stress before the shock"
    assert 0.0 < path["2020-02"] < path["2020-03"] == 1.0, "onset then peak"
    assert path["2020-06"] > path["2021-01"] > path["2021-12"] > 0.0, "gradual, incomplete recovery"
    peak = macro_for("2020-03", "2020-02")
    assert peak.income_factor == pytest.approx(0.70), "income -30% at peak"
    assert peak.activity_factor == pytest.approx(0.60), "activity -40% at peak"


def test_legacy_score_is_monotone_in_its_inputs() -> None:
    # Given applicants differing in one input at a time
    base = legacy_score(np.array([3000.0]), np.array([0]), np.array([40.0]), np.array([5000.0]))
    late = legacy_score(np.array([3000.0]), np.array([2]), np.array([40.0]), np.array([5000.0]))
    rich = legacy_score(np.array([6000.0]), np.array([0]), np.array([40.0]), np.array([5000.0]))
    big = legacy_score(np.array([3000.0]), np.array([0]), np.array([40.0]), np.array([15000.0]))
    # Then late bills and leverage lower the score and income raises it
    assert late[0] < base[0] < rich[0], "late bills lower, income raises the score"
    assert big[0] < base[0], "a larger amount-to-income lowers the score"


def test_annuity_repays_the_principal_exactly_at_term() -> None:
    # Given a 1000 loan over 12 months
    principal, term = np.array([1000.0]), np.array([12])
    instalment = annuity_instalment(principal, term)
    # Then the balance falls each month and is zero after the last instalment
    balances = [annuity_balance(principal, instalment, np.array([k]))[0] for k in range(13)]
    assert balances[0] == pytest.approx(1000.0), "nothing repaid before the first instalment"
    assert all(a > b for a, b in pairwise(balances)), "balance decreases"
    assert balances[12] == pytest.approx(0.0, abs=1e-6), "repaid at term"
