"""`orchard audit verify`: the governance record, the MLflow aliases and the decision log, checked together."""

from __future__ import annotations

from typing import Any

from model_registry import history
from model_registry.audit import audit_governance
from orchard.errors import OrchardError
from orchard.serving.decision_log import first_broken_row, open_sink
from orchard.settings import Settings


def recorded_seals(settings: Settings) -> list[dict[str, Any]]:
    """Return the seals `orchard audit migrate` recorded in the governance database ([] if none)."""
    with history.raw_engine(settings) as engine, engine.connect() as conn:
        return history.seals_in(conn)


def decision_seal_problems(seals: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """Return each decision-log seal whose sealed records no longer hash to what was sealed; pure."""
    hashes = {row["seq"]: row["row_hash"] for row in rows}
    problems = []
    for seal in (s for s in seals if s["scope"] == "decision_log"):
        sealed = range(seal["detail"]["first_seq"], seal["detail"]["last_seq"] + 1)
        if history.sealed_digest([hashes.get(seq, "") for seq in sealed]) != seal["sealed_sha256"]:
            problems.append(
                f"{history.seal_line(seal)}: the sealed decision records no longer match the seal"
            )
    return problems


def audit_problems(settings: Settings, seals: list[dict[str, Any]]) -> list[str]:
    """Return every problem found, tampering and the first broken record of each chain first."""
    problems = audit_governance(settings)
    rows = open_sink(settings, settings.serving).rows()
    broken = first_broken_row(rows)
    if broken is not None:
        problems.append(f"decision log hash chain broken at {broken}")
    return [*problems, *decision_seal_problems(seals, rows)]


def audit_command(settings: Settings) -> str:
    """Verify everything (`orchard audit verify`); raise OrchardError naming what is broken."""
    seals = recorded_seals(settings)
    problems = audit_problems(settings, seals)
    if problems:
        raise OrchardError(f"audit failed ({len(problems)} problem(s)): " + " | ".join(problems))
    return "\n".join(
        [
            "audit passed: governance triggers present, alias-event, approval and decision-log hash chains intact, "
            "MLflow champion aliases agree with the record",
            *(f"{history.seal_line(seal)} (orchard audit migrate); intact" for seal in seals),
        ]
    )
