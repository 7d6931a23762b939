"""Run the simulator and write one Parquet file per source per month into the landing folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchard.atomic import write_parquet
from orchard.errors import OrchardError
from orchard.months import month_range
from orchard.settings import Settings
from orchard.simulate.corrupt import (
    CorruptionReport,
    SilentCorruptionReport,
    corrupt_frame,
    corrupt_silently,
    parse_corrupt_batches,
)
from orchard.simulate.frames import to_spec_frame
from orchard.simulate.lender import Columns, Lender
from orchard.simulate.lifecycle import COUNTERFACTUAL, simulate_months
from orchard.sources import BATCH_ID, SourceSpec, batch_id, source_specs

logger = logging.getLogger(__name__)

SIMULATED_SOURCES = ("partner_users", "applications", "repayments", "campaigns", "collections")
"""Every source the simulator writes; a source's position seeds its corrupted batches (append only)."""


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote: months, rows per source and month, corrupted batches, wall time."""

    months: tuple[str, ...]
    rows: dict[str, dict[str, int]]
    corrupted_batches: tuple[CorruptionReport, ...]
    skipped_corruptions: tuple[str, ...]
    seconds: float
    landing_dir: Path = field(default_factory=Path)
    silent_corruptions: tuple[SilentCorruptionReport, ...] = ()

    def total_rows(self, source: str) -> int:
        """Return the rows written for a source over all months."""
        return sum(self.rows.get(source, {}).values())


def landing_path(settings: Settings, source: str, month: str) -> Path:
    """Return where the simulator writes a source's batch for a month."""
    return settings.landing_dir / source / f"{month}.parquet"


def _corruption_rng(seed: int, source: str, month: str) -> np.random.Generator:
    """Return a generator private to one corrupted batch, so corrupting it never changes other data."""
    year, mon = (int(p) for p in month.split("-"))
    return np.random.default_rng([seed, SIMULATED_SOURCES.index(source), year * 12 + mon])


def simulated_sources(settings: Settings) -> dict[str, SourceSpec]:
    """Return the specs of the sources the simulator writes, from the settings' (demo) portfolio."""
    specs = source_specs(settings.portfolio_def)
    missing = [s for s in SIMULATED_SOURCES if s not in specs]
    if missing:
        raise OrchardError(
            f"the simulator writes the demo portfolio's sources; portfolio {settings.portfolio_def.name} "
            f"has no {', '.join(missing)}"
        )
    return {s: specs[s] for s in SIMULATED_SOURCES}


def counterfactual_path(settings: Settings, month: str) -> Path:
    """Return where the simulator writes the statements a month's declined applications would have had."""
    return settings.simulator_dir / "counterfactual" / f"{month}.parquet"


class SimulationRun:
    """The simulated world, written month by month as the lifecycle reaches each month.

    The engine is one generator: writing a month draws it (and every month before it not yet written), with
    the lender deciding each month's applications as it comes. Each source's batch goes to landing (corrupted
    where the settings plant a corruption); the declined applications' counterfactual statements, the truth
    reject inference is measured against, go to `simulator/counterfactual/` (never a source).
    """

    def __init__(self, settings: Settings, lender: Lender | None = None) -> None:
        self.settings = settings
        self.started = time.perf_counter()
        self.specs = simulated_sources(settings)
        self.months = month_range(settings.start_month, settings.end_month)
        self.to_corrupt, self.skipped = parse_corrupt_batches(
            settings.simulation.corrupt_batches, self.months, set(self.specs)
        )
        for item in self.skipped:
            logger.warning(
                "corrupt batch %s is outside %s..%s: not written", item, self.months[0], self.months[-1]
            )
        self.to_corrupt_silently, silent_skipped = parse_corrupt_batches(
            settings.simulation.silent_corrupt_batches, self.months, set(self.specs)
        )
        for item in silent_skipped:
            logger.info(
                "silently corrupted batch %s is outside %s..%s: not written",
                item,
                self.months[0],
                self.months[-1],
            )
        self.rows: dict[str, dict[str, int]] = {source: {} for source in SIMULATED_SOURCES}
        self.reports: list[CorruptionReport] = []
        self.silent: list[SilentCorruptionReport] = []
        self.written: list[str] = []
        self._batches = simulate_months(
            settings.simulation.n_users,
            settings.start_month,
            settings.end_month,
            settings.simulation.shock_month,
            settings.seed,
            lender=lender,
        )

    def write_through(self, month: str) -> None:
        """Write every month up to `month` not written yet (a month outside the simulated range is an error)."""
        if month not in self.months:
            raise OrchardError(f"the simulator writes {self.months[0]}..{self.months[-1]}, not {month}")
        while not self.written or self.written[-1] < month:
            drawn, columns = next(self._batches)
            self._write(drawn, columns)
            self.written.append(drawn)

    def _write(self, month: str, columns: dict[str, Columns]) -> None:
        settings = self.settings
        for source in SIMULATED_SOURCES:
            df = to_spec_frame(columns[source], self.specs[source], month)
            if (source, month) in self.to_corrupt:
                rng = _corruption_rng(settings.seed, source, month)
                df, report = corrupt_frame(df, self.specs[source], month, batch_id(source, month), rng)
                self.reports.append(report)
                logger.info("wrote corrupted batch %s: %s", report.batch_id, report)
            if (source, month) in self.to_corrupt_silently:
                df, silent_report = corrupt_silently(df, source, batch_id(source, month))
                self.silent.append(silent_report)
                logger.info(
                    "wrote silently corrupted batch %s: %s", silent_report.batch_id, silent_report.kind
                )
            write_parquet(df, landing_path(settings, source, month))
            self.rows[source][month] = len(df)
        truth = to_spec_frame(columns[COUNTERFACTUAL], self.specs["repayments"], month).drop(columns=BATCH_ID)
        write_parquet(truth, counterfactual_path(settings, month))

    def summary(self) -> SimulationSummary:
        """Return what the run has written so far."""
        seconds = time.perf_counter() - self.started
        return SimulationSummary(
            months=tuple(self.written),
            rows=self.rows,
            corrupted_batches=tuple(self.reports),
            skipped_corruptions=tuple(self.skipped),
            seconds=seconds,
            landing_dir=self.settings.landing_dir,
            silent_corruptions=tuple(self.silent),
        )


def simulate(settings: Settings, lender: Lender | None = None) -> SimulationSummary:
    """Simulate settings.start_month..end_month and write every source's monthly batch to landing.

    Without a lender the legacy rule decides every month (the open loop); the lifecycle closes the loop by
    writing each month just before it runs it (SimulationRun).
    """
    run = SimulationRun(settings, lender)
    run.write_through(run.months[-1])
    summary = run.summary()
    logger.info(
        "simulated %d months for %d users in %.1f s",
        len(summary.months),
        settings.simulation.n_users,
        summary.seconds,
    )
    return summary
