"""Validate flow: each bronze batch against its Great Expectations contract; failures are quarantined."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.contracts import ContractTools, ValidationOutcome
from orchard.contracts.validate import Assessment, check_batch, check_batch_apart, route_batch
from orchard.contracts.waves import validation_waves
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


def _routed(
    settings: Settings, done: ValidationOutcome | Assessment, contracts: ContractTools
) -> ValidationOutcome:
    """Return the outcome of a batch checked in another process, routing here one that may publish Data Docs."""
    return done if isinstance(done, ValidationOutcome) else route_batch(settings, done, contracts.project)


@task(name="validate-month", cache_policy=NONE)
def validate_month(settings: Settings, month: str, tools: Tools | None = None) -> list[ValidationOutcome]:
    """Validate every source of the month; raise naming each broken expectation if any batch failed.

    The batches are checked in waves, each after the batches its foreign keys point to (orchard.contracts.waves);
    with a Dask cluster configured, the batches of a wave are checked at the same time on its workers, and in a
    run whose lane process is idle, all but the first batch of a wave there beside this process (the Data Docs of a
    failed batch, or of one passed with warnings, are built here: one process writes the GE project).
    A batch that passed with warnings (checks of severity warn) is in silver; its warnings are in its outcome.
    `tools` are the run's (a month validated alone opens the GE project, and the cluster, for itself).
    """
    if tools is None:
        with Tools() as own:
            return validate_month.fn(settings, month, own)
    portfolio = settings.portfolio_def
    targets = {
        name: [target.split(".")[0] for target in source.foreign_keys.values()]
        for name, source in portfolio.sources.items()
    }
    contracts, cluster = tools.contracts(settings), tools.cluster(settings)
    outcomes: list[ValidationOutcome] = []
    for wave in validation_waves(targets):
        if cluster is not None:
            futures = [
                cluster.client.submit(check_batch_apart, settings, source, month, pure=False)
                for source in wave
            ]
            checked = [_routed(settings, done, contracts) for done in cluster.client.gather(futures)]
        elif len(wave) > 1 and (lane := tools.idle_lane()) is not None:
            # the run's lane has nothing to do (its month's work is done): it checks all but the wave's first
            # batch while this process checks that one
            apart = [lane.submit(check_batch_apart, settings, source, month) for source in wave[1:]]
            checked = [check_batch(settings, wave[0], month, contracts)]
            checked += [_routed(settings, future.result(), contracts) for future in apart]
        else:
            checked = [check_batch(settings, source, month, contracts) for source in wave]
        outcomes.extend(checked)
    violations = [o.violation() for o in outcomes if not o.success]
    if violations:
        raise MonthQuarantined(violations, [o for o in outcomes if o.success])
    return [o for o in outcomes if o.success]


@flow(name="validate", flow_run_name="validate {month}", validate_parameters=False)
def validate_flow(settings: Settings, month: str) -> list[ValidationOutcome]:
    """Validate one month; the run fails (naming the broken expectations) if a batch is quarantined."""
    with Tools() as tools:
        return validate_month(settings, month, tools)
