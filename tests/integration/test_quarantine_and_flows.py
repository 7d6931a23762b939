"""A quarantined batch changes nothing downstream; the validate flow run fails naming each broken expectation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from orchard.contracts import validate_batch
from orchard.errors import ContractViolation
from orchard.feature_store import apply_definitions, materialize_month, online_features, update_offline_tables
from orchard.features import feature_names
from orchard.lake import ingest_batch, read_silver
from orchard.settings import Settings
from orchard.simulate import simulate
from orchard.testing.demo import demo_sources
from tests.conftest import make_settings

SOURCES = demo_sources()


def _snapshot(settings: Settings, users: list[str]) -> dict[str, object]:
    silver = sorted(str(p.relative_to(settings.home)) for p in settings.silver_dir.rglob("*.parquet"))
    online = (
        online_features(settings, users, "application_pd_v1").sort_values("user_id").reset_index(drop=True)
    )
    # the partner features come only from the (quarantined) partner_users batches
    online = online[["user_id", *feature_names(settings.portfolio_def, "partner_activity")]]
    versions = (
        sorted(p.name for p in (settings.home / "mlflow").rglob("*") if p.is_dir())
        if (settings.home / "mlflow").exists()
        else []
    )
    return {"silver": silver, "online": online, "mlflow": versions}


def _run_month(settings: Settings, month: str) -> list[ContractViolation]:
    violations = []
    for source in SOURCES:
        ingest_batch(settings, source, month)
        try:
            validate_batch(settings, source, month)
        except ContractViolation as violation:
            violations.append(violation)
    update_offline_tables(settings)
    apply_definitions(settings)
    materialize_month(settings, month)
    return violations


def test_quarantined_partner_batch_leaves_silver_online_store_and_registry_unchanged(tmp_path: Path) -> None:
    # Given two months of simulated data whose second partner_users batch is corrupted
    settings = make_settings(
        tmp_path / "orchard", end_month="2019-02", corrupt_batches=["partner_users:2019-02"]
    )
    simulate(settings)
    assert _run_month(settings, "2019-01") == [], "the first month is clean"
    users = read_silver(settings, "partner_users")["user_id"].head(50).tolist()
    before = _snapshot(settings, users)
    # When the corrupted month goes through ingest, validate, features
    violations = _run_month(settings, "2019-02")
    # Then the bad batch is quarantined, named, and nothing of it reached silver or the online store
    assert [v.batch_id for v in violations] == ["partner_users-2019-02"]
    assert any("city_tier" in b for b in violations[0].broken), violations[0].broken
    after = _snapshot(settings, users)
    good_sources = {f"{s}/2019-02.parquet" for s in SOURCES if s != "partner_users"}
    added = set(after["silver"]) - set(before["silver"])
    assert {str(Path(p).relative_to("lake/silver")) for p in added} == good_sources, added
    pd.testing.assert_frame_equal(after["online"], before["online"], obj="online partner features")
    assert before["online"]["income_est_monthly"].notna().sum() > 10, "the comparison covers served values"
    assert after["mlflow"] == before["mlflow"], "the registry must not change"
    quarantine = settings.quarantine_dir / "partner_users" / "partner_users-2019-02"
    assert (quarantine / "validation.json").exists() and (quarantine / "data.parquet").exists()


def test_validate_flow_run_fails_naming_each_broken_expectation(
    tmp_path: Path, prefect_harness: None
) -> None:
    from flows.ingest import ingest_flow
    from flows.validate import validate_flow

    # Given a month whose applications batch is corrupted, ingested by the ingest flow
    settings = make_settings(
        tmp_path / "orchard", end_month="2019-01", corrupt_batches=["applications:2019-01"]
    )
    simulate(settings)
    ingest_flow(settings, "2019-01")
    # When the validate flow runs
    state = validate_flow(settings, "2019-01", return_state=True)
    # Then the flow run failed and its message names each broken expectation of the batch
    assert state.is_failed(), f"expected a failed flow run, got {state.type}"
    message = str(state.result(raise_on_failure=False))
    for expectation in (
        "expect_column_values_to_not_be_null(application_id)",
        "expect_column_values_to_be_between(requested_amount)",
        "expect_column_values_to_be_in_set(employment_type)",
        "expect_column_values_to_be_between(event_ts)",
        "expect_column_values_to_be_unique(application_id)",
    ):
        assert expectation in message, f"{expectation} missing from: {message[:500]}"
    # And the clean sources of the month did reach silver
    assert (settings.silver_dir / "partner_users" / "2019-01.parquet").exists()
    assert not (settings.silver_dir / "applications" / "2019-01.parquet").exists()


def test_ingest_flow_rerun_adds_no_bronze_file(tmp_path: Path, prefect_harness: None) -> None:
    from flows.ingest import ingest_flow

    # Given a month ingested once
    settings = make_settings(tmp_path / "orchard", end_month="2019-01", corrupt_batches=[])
    simulate(settings)
    first = ingest_flow(settings, "2019-01")
    files = sorted(settings.bronze_dir.rglob("*"))
    # When the same month is ingested again
    second = ingest_flow(settings, "2019-01")
    # Then nothing new is written and every batch reports it already existed
    assert all(r.created for r in first) and not any(r.created for r in second)
    assert sorted(settings.bronze_dir.rglob("*")) == files
