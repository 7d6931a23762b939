"""The decision log: append-only Parquet files and SQL rows, buffered writes, lookups and live inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchard.errors import OrchardError
from orchard.serving.decision_log import (
    DecisionLogUnavailable,
    DecisionLogWriter,
    DecisionRecord,
    ParquetDecisionSink,
    SqlDecisionSink,
    decision_inputs,
    find_decision,
    open_sink,
)
from orchard.settings import ServingConfig
from tests.conftest import make_settings
from tests.decision_records import decision_record


def _record(request_id: str, inputs: dict | None = None) -> DecisionRecord:
    return decision_record(
        request_id,
        logged_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        customer_id="U1",
        model_versions={"application_pd": 3, "application_fraud": None},
        inputs=inputs if inputs is not None else {"age": 30, "income_est_monthly": 1234.5678901234567},
        request={"term_months": 12},
        feature_freshness={"partner_activity": {"found": True}},
        policy={"approve_max_pd": 0.1, "decline_min_pd": 0.3, "fraud_refer_min": 0.2},
        result={
            "decision": "refer",
            "pd": 0.123456789012345678,
            "score": 555.5,
            "band": "D",
            "reasons": [{"code": "RC_AGE", "text": "Age (30)", "points_lost": 1.5}],
        },
    )


def test_records_round_trip_exactly_through_parquet_and_sql(tmp_path: Path) -> None:
    # Given the same record written to both sinks
    record = _record("r1")
    parquet = ParquetDecisionSink(tmp_path / "decisions")
    sql = SqlDecisionSink(f"sqlite:///{tmp_path / 'log.db'}")
    for sink in (parquet, sql):
        sink.write([record])
        # When it is looked up by request id
        found = sink.find("r1")
        # Then every field comes back equal (floats bit-for-bit), and an unknown id is None
        assert found == record, sink
        assert sink.find("nope") is None
    sql.dispose()


def test_sql_log_refuses_a_second_record_with_the_same_request_id(tmp_path: Path) -> None:
    sink = SqlDecisionSink(f"sqlite:///{tmp_path / 'log.db'}")
    sink.write([_record("r1")])
    # When the same request id is written again
    with pytest.raises(sa.exc.IntegrityError):
        sink.write([_record("r1")])
    # Then the first record is still the only one
    assert len(sink.read()) == 1
    sink.dispose()


def test_append_returns_only_once_the_record_is_on_disk(tmp_path: Path) -> None:
    # Given a running group-commit writer
    sink = ParquetDecisionSink(tmp_path / "decisions")
    writer = DecisionLogWriter(sink, max_batch=100, max_waiting=10, timeout_seconds=30)
    writer.start()
    # When two records are appended, then each is readable from disk as soon as append returns
    writer.append(_record("a"))
    assert sink.find("a") is not None and writer.pending() == 0
    writer.append(_record("b"))
    writer.close()
    assert sink.read()["request_id"].tolist() == ["a", "b"]
    # And a closed writer refuses records instead of accepting what it cannot log
    with pytest.raises(DecisionLogUnavailable, match="not running"):
        writer.append(_record("c"))


def test_a_failed_write_fails_the_request_closed_and_the_next_one_is_logged(tmp_path: Path) -> None:
    class Flaky(ParquetDecisionSink):
        fail = True

        def write(self, records):
            if self.fail:
                raise OSError("disk full")
            super().write(records)

    sink = Flaky(tmp_path / "decisions")
    writer = DecisionLogWriter(sink, max_batch=100, max_waiting=10, timeout_seconds=30)
    writer.start()
    # Given a sink that cannot write, when a record is appended, then the caller is told (503 at the API)
    with pytest.raises(DecisionLogUnavailable, match="disk full"):
        writer.append(_record("a"))
    assert sink.find("a") is None, "nothing half-written"
    # When the sink recovers, then the next record is logged
    sink.fail = False
    writer.append(_record("b"))
    writer.close()
    assert sink.find("b") is not None


def test_profile_selects_the_sink_and_live_inputs_come_back_as_columns(tmp_path: Path) -> None:
    embedded = make_settings(tmp_path / "e")
    production = make_settings(
        tmp_path / "p", profile="production", governance_db_url=f"sqlite:///{tmp_path / 'g.db'}"
    )
    config = ServingConfig()
    assert isinstance(open_sink(embedded, config), ParquetDecisionSink)
    sink = open_sink(production, config)
    assert isinstance(sink, SqlDecisionSink)
    # Given a known and an unknown customer logged in production
    sink.write([_record("k"), _record("u", inputs={})])
    # When monitoring reads the live inputs
    live = decision_inputs(production, config)
    # Then only the known customer's inputs are there, as columns
    assert live["request_id"].tolist() == ["k"] and live.loc[0, "age"] == 30
    assert find_decision(production, "k", config).request_id == "k"
    with pytest.raises(OrchardError, match="decision table"):
        find_decision(production, "zzz", config)
