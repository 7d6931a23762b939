"""Contracts over a simulated lake: seconds of validation per month, quarantined and warned batches.

Runs only the simulator, ingest and validation (no features, models or Prefect), so the false-alarm count of the
contracts over every clean month is cheap to reproduce:

    python -m benchmarks.contracts --home /tmp/contracts-demo --n-users 12000 --end 2021-12
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from orchard.contracts import check_batch
from orchard.contracts.validate import ContractTools
from orchard.lake import ingest_batch
from orchard.months import month_range
from orchard.settings import Settings
from orchard.simulate import simulate


def run(settings: Settings, simulated: bool) -> dict[str, object]:
    """Ingest and validate every month; return seconds per month and the batches failed or warned."""
    if not simulated:
        simulate(settings)
    months = month_range(settings.start_month, settings.end_month)
    tools = ContractTools.of(settings)  # the run's, as the lifecycle holds them
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    failed: dict[str, list[str]] = {}
    warned: dict[str, list[str]] = {}
    for month in months:
        for source in settings.portfolio_def.sources:
            ingest_batch(settings, source, month)
        started, cpu_started = time.perf_counter(), time.process_time()
        for source in settings.portfolio_def.sources:
            outcome = check_batch(settings, source, month, tools)
            if not outcome.success:
                failed[outcome.batch_id] = outcome.broken
            elif getattr(outcome, "warnings", None):
                warned[outcome.batch_id] = list(outcome.warnings)
        seconds[month] = round(time.perf_counter() - started, 3)
        cpu_seconds[month] = round(time.process_time() - cpu_started, 3)
    references = settings.gx_dir / "references"
    return {
        "months": len(months),
        "reference_mb": round(sum(p.stat().st_size for p in references.rglob("*") if p.is_file()) / 1e6, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "last_months_validation_s": {m: seconds[m] for m in months[-3:]},
        "median_validation_s_per_month": _median(seconds),
        "median_validation_cpu_s_per_month": _median(cpu_seconds),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "failed": failed,
        "warned": warned,
    }


def _median(values: dict[str, float]) -> float:
    ordered = sorted(values.values())
    return ordered[len(ordered) // 2] if ordered else 0.0


def main() -> None:
    """Parse the arguments, run, print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--n-users", type=int, default=12_000)
    parser.add_argument("--end", default="2021-12")
    parser.add_argument("--clean", action="store_true", help="no planted corruption")
    parser.add_argument("--reuse-landing", action="store_true", help="the landing files are already there")
    args = parser.parse_args()
    overrides: dict[str, object] = {"home": args.home, "n_users": args.n_users, "end_month": args.end}
    if args.clean:
        overrides["corrupt_batches"] = []
        overrides["silent_corrupt_batches"] = []
    settings = Settings(_env_file=None, **overrides)  # type: ignore[arg-type]
    print(json.dumps(run(settings, args.reuse_landing), indent=1))


if __name__ == "__main__":
    main()
