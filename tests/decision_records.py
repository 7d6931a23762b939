"""A small logged application decision for the decision-log, audit and role tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchard.serving.decision_log import DecisionRecord


def decision_record(request_id: str, **changes: Any) -> DecisionRecord:
    """Return a logged decision of the application model; `changes` replace any of its fields."""
    values: dict[str, Any] = {
        "request_id": request_id,
        "kind": "decision",
        "logged_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "customer_id": "c1",
        "model": "application",
        "model_versions": {"application_pd": 1},
        "inputs": {"age": 30},
        "request": {},
        "feature_freshness": {},
        "policy": {},
        "result": {"decision": "refer", "pd": 0.2},
    }
    return DecisionRecord(**{**values, **changes})
