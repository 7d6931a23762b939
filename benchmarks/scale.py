"""`make bench-scale`: the lifecycle at 1x, 4x and 10x the demo's users: wall time per month and peak memory.

Each scale point runs `orchard demo` from an empty state folder in a process of its own, over the same window
(default 2019-01..2019-12, before the shock), with ORCHARD_N_USERS = multiple x the demo's 12,000. Reported per
point: the simulator's time (it writes the landing files), the month stages' time (the ledger's stage_seconds,
summed: they overlap, since the lifecycle's lane runs beside its process), the wall time per month after the first
(the span of the month records' writes), the whole wall time, and the peak resident memory of the largest process
of the run (the lifecycle's own, its lane, or the Prefect server), read with getrusage after the run ended. The
"time x" column compares the wall time per month.

Each point runs twice: in one process, and with its joins and batch scoring split by entity over a Dask
LocalCluster of `--dask-workers` worker processes (ORCHARD_DASK_WORKERS; orchard.partitions): the feature
tables, the joins and the batch scoring split by entity. The peak memory is then the largest process of the run,
the lifecycle's own or a worker's.

A million simulated customers (1,008,000 users), both engines: `python -m benchmarks.scale --multiples 84 --end
2019-03 --dask-workers 2` (on the 2-core reference machine, session 19: 49.5 s per month after the first and
3.7 GB at the peak in one process, 63.2 s and 3.2 GB on the LocalCluster); `--end 2019-08 --dask-workers 0`
runs through the first fits in one process (session 17: 113 s per month, 6.0 GB). docs/performance.md has the
measured curves.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.demo import month_wall_seconds, run_demo, simulate_seconds, stage_totals
from orchard.months import month_range

DEMO_USERS = 12_000


def run_point(home: Path, users: int, start: str, end: str, dask_workers: int) -> dict[str, float]:
    """Run the lifecycle for `users` in a child process; return its figures (peak memory of that run only)."""
    overrides = {
        "ORCHARD_N_USERS": str(users),
        "ORCHARD_START_MONTH": start,
        "ORCHARD_END_MONTH": end,
        "ORCHARD_DASK_WORKERS": str(dask_workers),
    }
    wall = run_demo(home, overrides)
    months = len(month_range(start, end))
    stages = sum(stage_totals(home).values())
    return {
        "users": users,
        "dask_workers": dask_workers,
        "months": months,
        "wall_s": round(wall, 1),
        "simulate_s": round(simulate_seconds(home), 1),
        "month_stages_s": round(stages, 1),
        "per_month_s": round(month_wall_seconds(home), 2),
        # Linux reports kilobytes: the largest single process among the finished children of this process
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 0),
    }


def main() -> None:
    """Run each scale point in a fresh process and print the cost curve."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 4, 10])
    parser.add_argument("--start", default="2019-01")
    parser.add_argument("--end", default="2019-12")
    parser.add_argument(
        "--dask-workers", type=int, default=2, help="LocalCluster workers (0: one process only)"
    )
    parser.add_argument("--point", type=int, help=argparse.SUPPRESS)  # one point, in its own process
    parser.add_argument("--point-workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    if args.point is not None:
        with tempfile.TemporaryDirectory(prefix="orchard-scale-") as tmp:
            figures = run_point(
                Path(tmp) / "orchard", args.point * DEMO_USERS, args.start, args.end, args.point_workers
            )
        print(json.dumps(figures))
        return
    engines = [0, args.dask_workers] if args.dask_workers > 0 else [0]
    rows = []
    for multiple in args.multiples:
        for workers in engines:
            command = [
                sys.executable,
                "-m",
                "benchmarks.scale",
                "--point",
                str(multiple),
                "--point-workers",
                str(workers),
                "--start",
                args.start,
                "--end",
                args.end,
            ]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            rows.append({"multiple": multiple, **json.loads(result.stdout.strip().splitlines()[-1])})
            print(f"{multiple}x, {workers} Dask workers done: {rows[-1]}", file=sys.stderr, flush=True)
    print(f"lifecycle {args.start}..{args.end}")
    print(
        f"{'users':>9} {'engine':>14} {'wall s':>8} {'simulate s':>11} {'stages s':>9} {'wall s/month':>12} "
        f"{'peak MB':>8} {'time x':>7} {'memory x':>9}"
    )
    for row in rows:
        base = next(r for r in rows if r["dask_workers"] == row["dask_workers"])  # the smallest point
        engine = f"Dask, {row['dask_workers']} workers" if row["dask_workers"] else "one process"
        print(
            f"{row['users']:>9,} {engine:>14} {row['wall_s']:>8.1f} {row['simulate_s']:>11.1f} "
            f"{row['month_stages_s']:>9.1f} {row['per_month_s']:>12.2f} {row['peak_rss_mb']:>8.0f} "
            f"{row['per_month_s'] / base['per_month_s']:>7.2f} {row['peak_rss_mb'] / base['peak_rss_mb']:>9.2f}"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
