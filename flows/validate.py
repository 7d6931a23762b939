"""Validate flow: each bronze batch against its Great Expectations contract; failures are quarantined."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.contracts import ValidationOutcome, validate_batch
from orchard.errors import ContractViolation, OrchardError
from orchard.lifecycle.tools import Tools
from orchard.settings import Settings


class MonthQuarantined(OrchardError):
    """One or more batches of a month broke their contracts (the others were validated)."""

    def __init__(
        self, violations: list[ContractViolation], passed: list[ValidationOutcome] | None = None
    ) -> None:
        self.violations = violations
        self.passed = list(passed or [])
        super().__init__(" | ".join(str(v) for v in violations))


@task(name="validate-month", cache_policy=NONE)
def validate_month(settings: Settings, month: str, tools: Tools | None = None) -> list[ValidationOutcome]:
    """Validate every source of the month; raise naming each broken expectation if any batch failed.

    A batch that passed with warnings (checks of severity warn) is in silver; its warnings are in its outcome.
    `tools` are the run's (a month validated alone opens the GE project for itself).
    """
    contracts = (tools or Tools()).contracts(settings)
    outcomes, violations = [], []
    for source in settings.portfolio_def.sources:
        try:
            outcomes.append(validate_batch(settings, source, month, contracts))
        except ContractViolation as violation:
            violations.append(violation)
    if violations:
        raise MonthQuarantined(violations, outcomes)
    return outcomes


@flow(name="validate", flow_run_name="validate {month}", validate_parameters=False)
def validate_flow(settings: Settings, month: str) -> list[ValidationOutcome]:
    """Validate one month; the run fails (naming the broken expectations) if a batch is quarantined."""
    return validate_month(settings, month)
