"""Replay a logged request: the recorded model versions on the recorded inputs and cut-offs, compared exactly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchard.errors import OrchardError
from orchard.serving.decision_log import DecisionRecord, find_decision
from orchard.serving.models import load_served
from orchard.serving.scoring import DecisionPolicy, ServedModel, decide, score_row
from orchard.settings import ServingConfig, Settings


@dataclass(frozen=True)
class ReplayResult:
    """A logged result next to the result recomputed from the log alone."""

    record: DecisionRecord
    replayed: dict[str, Any]

    @property
    def logged(self) -> dict[str, Any]:
        """Return the logged fields that replay recomputes."""
        return {k: self.record.result.get(k) for k in self.replayed}

    @property
    def differences(self) -> list[str]:
        """Return the fields whose replayed value differs from the logged one."""
        return [k for k, v in self.replayed.items() if self.record.result.get(k) != v]

    @property
    def identical(self) -> bool:
        """Return whether the replay reproduced every field exactly."""
        return not self.differences


def _served(settings: Settings, name: str, version: int | None) -> ServedModel | None:
    return load_served(settings, name, version) if version is not None else None


def replay_record(settings: Settings, record: DecisionRecord) -> ReplayResult:
    """Recompute a logged decision or score from its logged inputs with the versions it recorded.

    A record whose stored row no longer matches its hash was edited after it was written: replaying it would
    only prove that the edit is self-consistent, so it is refused.
    """
    if record.intact is False:
        raise OrchardError(
            f"the logged record of request {record.request_id} was altered after it was written (its hash does "
            "not match): run `orchard audit verify`"
        )
    if record.kind == "decision":
        decision = settings.portfolio_def.decision
        if decision is None:
            raise OrchardError(f"request {record.request_id} is a decision, but the portfolio declares none")
        pd_version = record.model_versions.get(decision.pd_model)
        if pd_version is None:
            raise OrchardError(f"request {record.request_id} recorded no {decision.pd_model} version")
        pd_model = load_served(settings, decision.pd_model, pd_version)
        fraud = decision.fraud_model
        fraud_model = _served(settings, fraud, record.model_versions.get(fraud)) if fraud else None
        policy = DecisionPolicy(**record.policy)
        outcome = decide(pd_model, fraud_model, record.inputs, policy)
        return ReplayResult(record=record, replayed={**outcome.result_dict(), "notes": outcome.notes})
    if record.kind == "score":
        version = record.model_versions.get(record.model)
        if version is None or record.inputs is None:
            raise OrchardError(f"request {record.request_id} recorded no version or inputs of {record.model}")
        served = load_served(settings, record.model, version)
        scored = score_row(served, record.inputs)
        replayed = {
            "model": record.model,
            "version": served.version,
            "pd": float(scored.pd[0]),
            "score": float(scored.score[0]),
            "band": str(scored.band[0]),
            "reasons": scored.reasons[0],
        }
        return ReplayResult(record=record, replayed=replayed)
    raise OrchardError(f"request {record.request_id} has an unknown kind {record.kind!r}")


def replay(settings: Settings, request_id: str, config: ServingConfig | None = None) -> ReplayResult:
    """Find a request in the decision log and replay it."""
    return replay_record(settings, find_decision(settings, request_id, config))


def replay_command(settings: Settings, request_id: str) -> str:
    """Replay a request (`orchard replay REQUEST_ID`): a summary if identical, OrchardError naming differences."""
    result = replay(settings, request_id)
    record = result.record
    if not result.identical:
        detail = "; ".join(
            f"{k}: logged {json.dumps(result.logged[k])} replayed {json.dumps(result.replayed[k])}"
            for k in result.differences
        )
        raise OrchardError(f"replay of {request_id} differs from the log: {detail}")
    versions = ", ".join(f"{k} v{v}" for k, v in record.model_versions.items() if v is not None)
    outcome = f"{record.result['decision']}, " if record.result.get("decision") else ""
    return (
        f"request {request_id} ({record.kind}, customer {record.customer_id}, logged "
        f"{record.logged_at.isoformat()}) replayed exactly with {versions}: {outcome}"
        f"pd {record.result.get('pd')}, score {record.result.get('score')}, band {record.result.get('band')}, "
        f"reasons {', '.join(r['code'] for r in record.result.get('reasons', []))}"
    )
