"""Integration tests of the Feast feature store on a real local repo in tmp_path (no mocks)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from feature_repo.views import offline_files, offline_table
from orchard.atomic import write_parquet
from orchard.errors import OrchardError
from orchard.feature_store import (
    apply_definitions,
    feature_table,
    materialize_month,
    online_features,
    open_store,
    training_frame,
    update_offline_tables,
)
from orchard.lake import silver_path
from orchard.settings import Settings
from orchard.testing.demo import demo_models

MODEL_SPECS = demo_models()

pytestmark = pytest.mark.filterwarnings("ignore")


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _partner_users() -> pd.DataFrame:
    def snap(user: str, day: str, spend: float) -> dict[str, object]:
        return {
            "user_id": user,
            "event_ts": _ts(day),
            "batch_id": f"partner_users-{day[:7]}",
            "age": 40,
            "city_tier": "tier2",
            "device_os": "android",
            "platform_tenure_months": 24,
            "active_days_30d": 15,
            "txn_count_30d": 8,
            "txn_amount_30d": spend,
            "income_est_monthly": 1000.0,
            "late_bill_payments_12m": 1,
        }

    return pd.DataFrame(
        [
            snap("u1", "2020-01-10", 100.0),
            snap("u2", "2020-01-12", 200.0),
            snap("u1", "2020-02-10", 110.0),
            # the planted future value: known only from 2020-03-10
            snap("u1", "2020-03-10", 9999.0),
        ]
    )


def _repayments() -> pd.DataFrame:
    def stmt(day: str, mob: int, dpd: int, paid: float) -> dict[str, object]:
        return {
            "application_id": "L1",
            "user_id": "u1",
            "months_on_book": mob,
            "balance": 900.0,
            "amount_due": 100.0,
            "amount_paid": paid,
            "dpd": dpd,
            "status": "current" if dpd == 0 else "delinquent",
            "event_ts": _ts(day),
            "batch_id": f"repayments-{day[:7]}",
        }

    return pd.DataFrame([stmt("2020-01-25", 1, 0, 100.0), stmt("2020-03-25", 3, 90, 0.0)])


def _offline_tables(settings: Settings, users: pd.DataFrame, repayments: pd.DataFrame) -> dict[str, int]:
    """Put the frames in silver (one file per batch month) and bring the offline tables up to date."""
    for source, frame in (("partner_users", users), ("repayments", repayments)):
        for month, rows in frame.groupby(frame["event_ts"].dt.strftime("%Y-%m")):
            write_parquet(rows.reset_index(drop=True), silver_path(settings, source, str(month)))
    return update_offline_tables(settings)


@pytest.fixture
def store_settings(settings: Settings) -> Settings:
    """A feature store with offline tables written and definitions applied."""
    _offline_tables(settings, _partner_users(), _repayments())
    apply_definitions(settings)
    return settings


def test_training_frame_is_point_in_time_correct(store_settings: Settings) -> None:
    # Given applications of u1 dated before and after the planted future snapshot and delinquency
    entity_df = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1"],
            "event_timestamp": [_ts("2020-03-28"), _ts("2020-02-01"), _ts("2020-02-15")],
            "requested_amount": [5000.0, 1000.0, 3000.0],
        }
    )
    # When building the training frame
    frame = training_frame(store_settings, entity_df, "application_pd_v1")
    # Then row order and the application columns are kept
    assert frame["requested_amount"].tolist() == [5000.0, 1000.0, 3000.0], "row order or extras lost"
    after, other, before = (frame.iloc[i] for i in range(3))
    # And the row dated before the future value sees only the past
    assert before["txn_amount_30d"] == 110.0, "future snapshot leaked into an earlier application"
    assert before["max_dpd_3m"] == 0, "a later delinquency leaked into an earlier application"
    assert after["txn_amount_30d"] == 9999.0 and after["max_dpd_3m"] == 90, "the later row sees the new facts"
    assert other["txn_amount_30d"] == 200.0, "u2's own snapshot"
    assert pd.isna(other["max_dpd_3m"]), "u2 has no credit history"


def test_rows_taken_from_a_larger_join_convert_as_their_own_join(store_settings: Settings) -> None:
    # Given one join of u1's rows and u2's (u2 has no credit history: its integer max_dpd_3m is missing)
    entity_df = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1"],
            "event_timestamp": [_ts("2020-03-28"), _ts("2020-02-01"), _ts("2020-02-15")],
        }
    )
    store = open_store(store_settings)
    joined = feature_table(store_settings, entity_df, "application_pd_v1", store=store)
    assert pd.isna(joined.to_pandas()["max_dpd_3m"]).any(), "the larger join holds a missing integer"
    # When u1's rows are taken from it, in another order
    taken = joined.take([2, 0]).to_pandas()
    # Then they equal u1's own join column for column, dtype for dtype (an integer column without a missing
    # value stays int64; float64 only where a missing value was taken)
    alone = training_frame(store_settings, entity_df.iloc[[2, 0]], "application_pd_v1", store=store)
    own = alone.drop(columns=list(entity_df.columns))
    assert own["max_dpd_3m"].dtype == "int64", own.dtypes
    pd.testing.assert_frame_equal(taken, own)
    with_u2 = joined.take([1]).to_pandas()
    assert with_u2["max_dpd_3m"].dtype == "float64" and with_u2["max_dpd_3m"].isna().all()


def test_training_frame_errors_name_the_problem(store_settings: Settings) -> None:
    # Given an entity frame without event_timestamp, then the error names the column
    with pytest.raises(OrchardError, match="event_timestamp"):
        training_frame(store_settings, pd.DataFrame({"user_id": ["u1"]}), "application_pd_v1")
    # Given an unknown feature service, then the error names it
    entity_df = pd.DataFrame({"user_id": ["u1"], "event_timestamp": [_ts("2020-02-01")]})
    with pytest.raises(OrchardError, match="application_pd_v9"):
        training_frame(store_settings, entity_df, service="application_pd_v9")


def test_materialize_serves_latest_values(store_settings: Settings) -> None:
    # Given the three months materialized in order
    for month in ("2020-01", "2020-02", "2020-03"):
        materialize_month(store_settings, month)
    # When reading online features
    online = online_features(store_settings, ["u1", "u2", "ghost"], "application_pd_v1").set_index("user_id")
    # Then each user gets their latest values, and unknown users get nulls
    assert online.loc["u1", "txn_amount_30d"] == 9999.0, "u1's latest snapshot is March"
    assert online.loc["u1", "max_dpd_3m"] == 90, "u1's latest credit history is March"
    assert online.loc["u2", "txn_amount_30d"] == 200.0, "u2 was only seen in January"
    assert pd.isna(online.loc["ghost", "txn_amount_30d"]), "an unknown user has no features"


def test_incremental_materialize_writes_only_that_month(store_settings: Settings) -> None:
    # Given January materialized: u1 and u2 snapshots plus u1's January statement
    first = materialize_month(store_settings, "2020-01")
    assert first.rows == 3, f"January holds 2 snapshots + 1 history row, wrote {first.rows}"
    # When materializing February, then only February's single snapshot is written
    second = materialize_month(store_settings, "2020-02")
    assert second.rows == 1, f"February holds one snapshot, wrote {second.rows}"
    # And re-running February writes nothing
    again = materialize_month(store_settings, "2020-02")
    assert again.rows == 0, "re-running a materialized month must not write again"
    online = online_features(store_settings, ["u1", "u2"], "application_pd_v1").set_index("user_id")
    assert online.loc["u1", "txn_amount_30d"] == 110.0 and online.loc["u2", "txn_amount_30d"] == 200.0


def test_older_event_never_overwrites_newer_online_value(store_settings: Settings) -> None:
    # Given March materialized for u1
    materialize_month(store_settings, "2020-03")
    store = open_store(store_settings)
    stale = _partner_users().iloc[[0]].drop(columns="batch_id").assign(spend_to_income=0.1)
    # When an older row is pushed through Feast's write_to_online_store
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.write_to_online_store("partner_activity", stale)
    # Then the newer value is still served
    online = online_features(store_settings, ["u1"], "application_pd_v1", store=store)
    assert online.loc[0, "txn_amount_30d"] == 9999.0, "an older event overwrote a newer one"


def test_stock_materialize_into_orchard_store_matches(store_settings: Settings) -> None:
    # Given Feast's own materialize (protobuf path) into the Orchard online store
    store = open_store(store_settings)
    store.materialize(_ts("2020-01-01").to_pydatetime(), _ts("2020-04-01").to_pydatetime())
    # When reading online, then it serves the same latest values as Orchard's bulk path
    online = online_features(store_settings, ["u1", "u2"], "application_pd_v1", store=store).set_index(
        "user_id"
    )
    assert online.loc["u1", "txn_amount_30d"] == 9999.0 and online.loc["u1", "max_dpd_3m"] == 90
    assert online.loc["u2", "city_tier"] == "tier2", "string features survive the protobuf path"


def test_apply_is_idempotent(store_settings: Settings) -> None:
    # Given definitions applied once and a month materialized
    materialize_month(store_settings, "2020-01")
    registry = store_settings.feast_dir / "registry.db"
    before = registry.read_bytes()
    # When applying again, then the registry is untouched
    apply_definitions(store_settings)
    assert registry.read_bytes() == before, "an unchanged apply rewrote the registry"
    # And a forced re-apply (marker lost) keeps the same objects and the online data
    (store_settings.feast_dir / "applied.sha256").unlink()
    apply_definitions(store_settings)
    store = open_store(store_settings)
    assert sorted(v.name for v in store.list_feature_views()) == ["credit_history", "partner_activity"]
    # one versioned feature service per registered model
    assert sorted(s.name for s in store.list_feature_services()) == sorted(
        spec.feature_service for spec in MODEL_SPECS.values()
    )
    assert [e.name for e in store.list_entities()] == ["customer"]
    online = online_features(store_settings, ["u2"], "application_pd_v1", store=store)
    assert online.loc[0, "txn_amount_30d"] == 200.0, "re-apply dropped online data"


def test_views_are_described_tagged_and_owned(store_settings: Settings) -> None:
    # Given the applied registry, then every view has an owner and every field a description and tags
    store = open_store(store_settings)
    for view in store.list_feature_views():
        assert view.owner, f"view {view.name} has no owner"
        for field in view.features:
            assert field.description and field.tags, f"{view.name}.{field.name} lacks description or tags"
    ttl_days = {v.name: v.ttl.days for v in store.list_feature_views()}
    assert ttl_days == {"partner_activity": 62, "credit_history": 400}, f"unexpected TTLs {ttl_days}"


def test_update_offline_tables_is_idempotent(settings: Settings) -> None:
    # Given the offline tables written once
    counts = _offline_tables(settings, _partner_users(), _repayments())
    files = {p: p.stat().st_mtime_ns for v in counts for p in offline_files(settings.features_dir, v)}
    assert len(files) >= 3, files  # a file per period of each view (partner_activity holds three months)
    # When writing the same silver again, then counts are equal and no file is rewritten
    assert _offline_tables(settings, _partner_users(), _repayments()) == counts
    again = {p: p.stat().st_mtime_ns for v in counts for p in offline_files(settings.features_dir, v)}
    assert again == files, "unchanged features rewrote the offline table"
    assert counts == {"partner_activity": 4, "credit_history": 2}, f"unexpected counts {counts}"


def test_new_partner_batches_are_appended_like_a_full_recompute(settings: Settings, tmp_path: Path) -> None:
    # Given January's batch featurized, then February and March arriving as new batches
    users = _partner_users()
    _offline_tables(settings, users[users["batch_id"] == "partner_users-2020-01"], _repayments())
    _offline_tables(settings, users, _repayments())
    appended = pd.read_parquet(offline_table(settings.features_dir, "partner_activity"))
    # When another state folder featurizes everything at once
    fresh = settings.model_copy(update={"home": tmp_path / "fresh"})
    _offline_tables(fresh, users, _repayments())
    full = pd.read_parquet(offline_table(fresh.features_dir, "partner_activity"))
    # Then the appended table holds the same rows as the full recompute
    key = ["user_id", "event_ts"]
    pd.testing.assert_frame_equal(
        appended.sort_values(key).reset_index(drop=True), full.sort_values(key).reset_index(drop=True)
    )
    assert len(appended) == 4, "every snapshot appears exactly once"


def test_a_view_without_rows_is_an_empty_table_the_store_reads(settings: Settings) -> None:
    # Given partner snapshots but no repayment statement yet (no loan booked): credit_history has no rows
    counts = _offline_tables(settings, _partner_users(), _repayments().iloc[:0])
    assert counts["credit_history"] == 0
    assert [p.name for p in offline_files(settings.features_dir, "credit_history")] == ["empty.parquet"]
    apply_definitions(settings)
    # When an application is joined point in time, then its credit history is missing, its snapshot found
    entity_df = pd.DataFrame({"user_id": ["u2"], "event_timestamp": [_ts("2020-02-01")]})
    frame = training_frame(settings, entity_df, "application_pd_v1")
    assert pd.isna(frame.loc[0, "max_dpd_3m"]) and frame.loc[0, "txn_amount_30d"] == 200.0
    # And once statements land, the table holds their periods and the empty file is gone
    counts = _offline_tables(settings, _partner_users(), _repayments())
    assert counts["credit_history"] == 2
    assert "empty.parquet" not in [p.name for p in offline_files(settings.features_dir, "credit_history")]
