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
from orchard.simulate.lifecycle import simulate_months
from orchard.sources import SourceSpec, batch_id, source_specs

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


def simulate(settings: Settings) -> SimulationSummary:
    """Simulate settings.start_month..end_month and write every source's monthly batch to landing."""
    started = time.perf_counter()
    specs = simulated_sources(settings)
    months = month_range(settings.start_month, settings.end_month)
    to_corrupt, skipped = parse_corrupt_batches(settings.simulation.corrupt_batches, months, set(specs))
    for item in skipped:
        logger.warning("corrupt batch %s is outside %s..%s: not written", item, months[0], months[-1])
    to_corrupt_silently, silent_skipped = parse_corrupt_batches(
        settings.simulation.silent_corrupt_batches, months, set(specs)
    )
    for item in silent_skipped:
        logger.info("silently corrupted batch %s is outside %s..%s: not written", item, months[0], months[-1])
    silent: list[SilentCorruptionReport] = []
    rows: dict[str, dict[str, int]] = {source: {} for source in SIMULATED_SOURCES}
    reports: list[CorruptionReport] = []
    batches = simulate_months(
        settings.simulation.n_users,
        settings.start_month,
        settings.end_month,
        settings.simulation.shock_month,
        settings.seed,
    )
    for month, columns in batches:
        for source in SIMULATED_SOURCES:
            df = to_spec_frame(columns[source], specs[source], month)
            if (source, month) in to_corrupt:
                rng = _corruption_rng(settings.seed, source, month)
                df, report = corrupt_frame(df, specs[source], month, batch_id(source, month), rng)
                reports.append(report)
                logger.info("wrote corrupted batch %s: %s", report.batch_id, report)
            if (source, month) in to_corrupt_silently:
                df, silent_report = corrupt_silently(df, source, batch_id(source, month))
                silent.append(silent_report)
                logger.info(
                    "wrote silently corrupted batch %s: %s", silent_report.batch_id, silent_report.kind
                )
            write_parquet(df, landing_path(settings, source, month))
            rows[source][month] = len(df)
    seconds = time.perf_counter() - started
    logger.info(
        "simulated %d months for %d users in %.1f s", len(months), settings.simulation.n_users, seconds
    )
    return SimulationSummary(
        months=tuple(months),
        rows=rows,
        corrupted_batches=tuple(reports),
        skipped_corruptions=tuple(skipped),
        seconds=seconds,
        landing_dir=settings.landing_dir,
        silent_corruptions=tuple(silent),
    )
