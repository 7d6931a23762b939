"""`orchard audit verify`: the governance record, the MLflow aliases and the decision log, checked together."""

from __future__ import annotations

from model_registry.audit import audit_governance
from orchard.errors import OrchardError
from orchard.serving.config import serving_config
from orchard.serving.decision_log import open_sink, verify_decision_log
from orchard.settings import Settings


def audit_problems(settings: Settings) -> list[str]:
    """Return every problem found, tampering and the first broken record of each chain first."""
    problems = audit_governance(settings)
    broken = verify_decision_log(open_sink(settings, serving_config(settings)))
    if broken is not None:
        problems.append(f"decision log hash chain broken at {broken}")
    return problems


def audit_command(settings: Settings) -> str:
    """Verify everything (`orchard audit verify`); raise OrchardError naming what is broken."""
    problems = audit_problems(settings)
    if problems:
        raise OrchardError(f"audit failed ({len(problems)} problem(s)): " + " | ".join(problems))
    return (
        "audit passed: governance triggers present, alias-event, approval and decision-log hash chains intact, "
        "MLflow champion aliases agree with the record"
    )
