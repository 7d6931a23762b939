"""An edited decision-log entry (inputs and result changed together) is named by `orchard audit verify`, and replay
refuses it instead of calling the edit "identical"."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchard.errors import OrchardError
from orchard.serving.decision_log import DecisionRecord, ParquetDecisionSink, find_decision
from orchard.serving.replay import replay_record
from tests.cli import run_cli
from tests.conftest import make_settings
from tests.decision_records import decision_record


def record(i: int) -> DecisionRecord:
    """Return a small logged decision, the i-th of a log."""
    return decision_record(
        f"req{i}",
        logged_at=datetime(2026, 1, 2, 3, 4, 5, i, tzinfo=UTC),
        customer_id=f"c{i}",
        inputs={"age": 30 + i, "income": 2000.0},
        result={"decision": "decline", "pd": 0.4, "score": 500.0},
    )


def audit(home: Path) -> subprocess.CompletedProcess[str]:
    """Run `orchard audit verify` on a home as a user does (in this process: tests/cli.py)."""
    return run_cli({"ORCHARD_HOME": str(home)}, "audit", "verify")


def test_an_edited_decision_is_named_by_audit_and_refused_by_replay(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "orchard")
    sink = ParquetDecisionSink(settings.decisions_dir)
    # given three group commits of the decision log
    for batch in ([record(1), record(2)], [record(3)], [record(4)]):
        sink.write(batch)
    assert audit(settings.home).returncode == 0
    # when someone rewrites req3's inputs and result together (so a plain replay would agree with itself)
    (target,) = [
        p for p in settings.decisions_dir.rglob("*.parquet") if "req3" in str(pq.read_table(p).to_pylist())
    ]
    rows = pq.read_table(target).to_pylist()
    rows[0]["inputs"] = json.dumps({"age": 45, "income": 9000.0}, sort_keys=True)
    rows[0]["result"] = json.dumps({"decision": "approve", "pd": 0.05, "score": 700.0}, sort_keys=True)
    rows[0]["decision"], rows[0]["pd"], rows[0]["score"] = "approve", 0.05, 700.0
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(target)), target)
    # then the audit fails naming that record as the first broken one
    result = audit(settings.home)
    assert result.returncode != 0, result.stdout
    assert "decision log record seq 3 (request req3): its content does not match its hash" in result.stderr, (
        result.stderr
    )
    # and replay refuses the altered record
    with pytest.raises(OrchardError, match="req3 was altered after it was written"):
        replay_record(settings, find_decision(settings, "req3"))
