"""Benchmark the demo: wall time per stage and the share of orchestration (Prefect) overhead."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from orchard.lifecycle.ledger import LANE_STAGES


def run_demo(home: Path, env_overrides: dict[str, str] | None = None) -> float:
    """Run `orchard demo` from an empty state folder; return its wall time in seconds."""
    import os

    env = {**os.environ, "ORCHARD_HOME": str(home), **(env_overrides or {})}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchard", "demo"], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def stage_totals(home: Path) -> dict[str, float]:
    """Sum each stage's seconds over the months recorded in the ledger."""
    totals: dict[str, float] = defaultdict(float)
    for path in sorted((home / "state" / "months").glob("*.json")):
        for stage, seconds in json.loads(path.read_text())["stage_seconds"].items():
            totals[stage] += seconds
    return dict(totals)


def month_wall_seconds(home: Path) -> float:
    """Return the wall time per month after the first: the span between the first and the last month record
    written, over the months between (the records are written in order as the months finish). The stages'
    seconds overlap since the lifecycle's lane runs beside its process, so their sum is not the wall time."""
    written = sorted(p.stat().st_mtime for p in (home / "state" / "months").glob("*.json"))
    return (written[-1] - written[0]) / (len(written) - 1) if len(written) > 1 else float("nan")


def _interval_seconds(value: object) -> float:
    """Return seconds from Prefect's stored run time (a number, or an interval stored as '1970-01-01 hh:mm:ss')."""
    if value is None:
        return float("nan")
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    moment = datetime.fromisoformat(str(value))
    return (moment - datetime(1970, 1, 1)).total_seconds()


def flow_wall_seconds(home: Path) -> float:
    """Return the lifecycle flow run's own duration as recorded by the Prefect server."""
    import sqlite3

    db = sqlite3.connect(home / "prefect" / "prefect.db")
    row = db.execute(
        "select total_run_time from flow_run where name like 'lifecycle%' order by start_time desc limit 1"
    ).fetchone()
    db.close()
    return _interval_seconds(row[0]) if row else float("nan")


def simulate_seconds(home: Path) -> float:
    """Return the simulate task's run time (it runs inside the lifecycle flow)."""
    import sqlite3

    db = sqlite3.connect(home / "prefect" / "prefect.db")
    rows = db.execute("select total_run_time from task_run where name like 'simulate%'").fetchall()
    db.close()
    return sum(_interval_seconds(r[0]) for r in rows)


def main() -> None:
    """Print the demo's figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="state folder (default: a fresh temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orchard-bench-") as tmp:
        home = args.home or Path(tmp) / "orchard"
        wall = run_demo(home)
        stages = stage_totals(home)
        flow_s = flow_wall_seconds(home)
        stages["simulate"] = simulate_seconds(home)
    lane = {k: v for k, v in stages.items() if k.split()[0] in LANE_STAGES}
    inside = sum(v for k, v in stages.items() if k not in lane)
    print(f"demo wall time (process, incl. imports and Prefect start): {wall:8.1f} s")
    print(f"lifecycle flow run time (Prefect):                        {flow_s:8.1f} s")
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        where = "in the lane, beside the flow" if stage in lane else "of the flow"
        print(f"  {stage:<10} {seconds:8.1f} s  {seconds / flow_s:6.1%} {where}")
    overhead = flow_s - inside
    print(
        f"  {'overhead':<10} {overhead:8.1f} s  {overhead / flow_s:6.1%} of the flow (orchestration: Prefect; waits for the lane)"
    )


if __name__ == "__main__":
    main()
