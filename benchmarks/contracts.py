"""Contracts over a simulated lake: seconds of validation per month, quarantined and warned batches.

Runs only the simulator, ingest and validation (no features, models or Prefect), so the false-alarm count of the
contracts over every clean month is cheap to reproduce:

    python -m benchmarks.contracts --home /tmp/contracts-demo --n-users 12000 --end 2021-12

With `--dask-workers N`, a second lake (HOME-dask, the same landing files) is validated month by month beside the
first on a Dask LocalCluster of N workers (the batches of a wave checked at the same time, flows.validate), each
month timed in one process and then on the cluster, and the two runs' findings compared.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

from flows.validate import MonthQuarantined, validate_month
from orchard.lake import ingest_batch
from orchard.lifecycle.tools import Tools
from orchard.months import month_range
from orchard.settings import Settings
from orchard.simulate import simulate


def _findings(
    settings: Settings, month: str, tools: Tools
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Validate a month as the lifecycle does; return its (stopped, warned) batches with their findings."""
    try:
        passed, stopped = validate_month.fn(settings, month, tools), []
    except MonthQuarantined as error:
        passed, stopped = error.passed, error.violations
    return (
        {v.batch_id: v.broken for v in stopped},
        {o.batch_id: list(o.warnings) for o in passed if o.warnings},
    )


def run(engines: dict[str, Settings]) -> dict[str, object]:
    """Ingest and validate every month with each engine in turn; return seconds per month and the findings."""
    first = next(iter(engines.values()))
    months = month_range(first.start_month, first.end_month)
    figures: dict[str, dict[str, object]] = {}
    tools = {name: Tools() for name in engines}
    seconds: dict[str, dict[str, float]] = {name: {} for name in engines}
    cpu_seconds: dict[str, dict[str, float]] = {name: {} for name in engines}
    failed: dict[str, dict[str, list[str]]] = {name: {} for name in engines}
    warned: dict[str, dict[str, list[str]]] = {name: {} for name in engines}
    try:
        for month in months:
            for name, settings in engines.items():
                for source in settings.portfolio_def.sources:
                    ingest_batch(settings, source, month)
                tools[name].cluster(settings)  # a LocalCluster's start is not a month's validation
                started, cpu_started = time.perf_counter(), time.process_time()
                stopped, warnings = _findings(settings, month, tools[name])
                failed[name].update(stopped)
                warned[name].update(warnings)
                seconds[name][month] = round(time.perf_counter() - started, 3)
                cpu_seconds[name][month] = round(time.process_time() - cpu_started, 3)
    finally:
        for held in tools.values():
            held.close()
    for name, settings in engines.items():
        references = settings.gx_dir / "references"
        figures[name] = {
            "reference_mb": round(
                sum(p.stat().st_size for p in references.rglob("*") if p.is_file()) / 1e6, 2
            ),
            "last_months_validation_s": {m: seconds[name][m] for m in months[-3:]},
            "median_validation_s_per_month": _median(seconds[name]),
            "median_validation_cpu_s_per_month": _median(cpu_seconds[name]),  # this process only
            "seconds": seconds[name],
            "cpu_seconds": cpu_seconds[name],
            "failed": failed[name],
            "warned": warned[name],
        }
    report: dict[str, object] = {
        "months": len(months),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **(figures if len(figures) > 1 else next(iter(figures.values()))),
    }
    if len(figures) > 1:
        one, dask = (figures[name] for name in engines)
        report["dask_over_one_process_wall"] = round(
            sum(seconds["dask"].values()) / sum(seconds["one process"].values()), 3
        )
        report["same_findings"] = (one["failed"], one["warned"]) == (dask["failed"], dask["warned"])
    return report


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
    parser.add_argument(
        "--dask-workers", type=int, default=0, help="also validate a copy on a LocalCluster of N workers"
    )
    args = parser.parse_args()
    overrides: dict[str, object] = {"home": args.home, "n_users": args.n_users, "end_month": args.end}
    if args.clean:
        overrides["corrupt_batches"] = []
        overrides["silent_corrupt_batches"] = []
    settings = Settings(_env_file=None, **overrides)  # type: ignore[arg-type]
    if not args.reuse_landing:
        simulate(settings)
    engines = {"one process": settings}
    if args.dask_workers:
        twin = Settings(
            _env_file=None,
            **{**overrides, "home": Path(f"{args.home}-dask"), "dask_workers": args.dask_workers},
        )
        shutil.copytree(settings.landing_dir, twin.landing_dir, dirs_exist_ok=True)
        engines["dask"] = twin
    print(json.dumps(run(engines), indent=1))


if __name__ == "__main__":
    main()
