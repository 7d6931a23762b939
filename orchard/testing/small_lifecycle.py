"""The small lifecycle: the demo portfolio on a small, fast window, run through `orchard demo` in a subprocess.

The end-to-end tests run it once per test run (tests/conftest.py `small_lifecycle_run`) and assert on it; the
serving tests work on a copy of its home; the decision-latency benchmark builds one to serve from.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from orchard.testing.demo import SHORT_LABELS, demo_variant

SMALL: dict[str, Any] = {
    "n_users": 3000,
    "start_month": "2019-01",
    "end_month": "2019-09",
    "shock_month": "2019-07",
    "corrupt_batches": ["applications:2019-03"],
}
"""The small lifecycle's settings by their flat names."""
SMALL_POLICY = {
    "min_mature_vintages": 3,
    "oot_months": 1,
    # a few hundred loans a month: band-level calibration is mostly noise at this size
    "gates": {"calibration_tolerance": 0.3},
    "monitoring": {"retrain_cooldown_months": 1},
}
SMALL_LABELS = {**SHORT_LABELS, "charge_off_12m": {"within_months": 2}}
SMALL_JOINT = {
    "min_rows": 80,
    "epochs": 2,
    "train_vintages": 4,
    "host_policy": {"score_sessions_per_hour": 200, "min_csi_rows": 80},
}
"""A few hundred booked loans a month: the joint model is monitored from 80 rows (the host's CSI too); a job fits
on the latest 4 labelled vintages, so the retrains of the run leave the first vintages out."""


def flat_environment(values: dict[str, Any]) -> dict[str, str]:
    """Return settings given by their flat names as the ORCHARD_* variables that set them (lists as JSON)."""
    return {
        f"ORCHARD_{k.upper()}": json.dumps(v) if isinstance(v, list) else str(v) for k, v in values.items()
    }


SMALL_LIFECYCLE = flat_environment(SMALL)
"""The small lifecycle's settings as the environment of an `orchard` process."""


def small_portfolio(home: Path) -> Path:
    """Write the small lifecycle's portfolio beside home (the demo's, short labels, small policy); return it."""
    return demo_variant(
        home.parent / f"{home.name}-portfolio", policy=SMALL_POLICY, labels=SMALL_LABELS, joint=SMALL_JOINT
    )


def orchard_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment of a subprocess: the small lifecycle rooted at home, no inherited ORCHARD_ values.

    The lifecycle's lane runs in place (ORCHARD_LANE_PROCESS=false) unless `extra` says otherwise: the test suite
    runs two workers on the reference machine's two cores, so a second process per run would only add its imports
    (about 12 s of CPU per small lifecycle). The shared reference run (tests/conftest.py) keeps the demo's lane
    process, and the scenarios compared with it check both ways end in the same state.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHARD_", "PREFECT_", "MLFLOW_"))}
    env.update(SMALL_LIFECYCLE)
    env.update(
        {
            "ORCHARD_HOME": str(home),
            "ORCHARD_PORTFOLIO": str(small_portfolio(home)),
            "ORCHARD_LANE_PROCESS": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        }
    )
    env.update(extra)
    return env


def orchard_cmd(*args: str) -> list[str]:
    """Return the command line running the orchard CLI of this interpreter."""
    return [sys.executable, "-m", "orchard", *args]


def demo_cmd(home: Path, *args: str) -> list[str]:
    """Return the command line of `orchard demo` on the small lifecycle's portfolio (written beside home)."""
    return orchard_cmd("demo", "--portfolio", str(small_portfolio(home)), *args)


def run_demo(home: Path, *args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the small lifecycle's `orchard demo` to completion and return its result (output captured)."""
    return subprocess.run(
        demo_cmd(home, *args),
        env=orchard_env(home, **extra),
        cwd=home.parent,  # not the checkout: a developer's .env there is not the test's
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_orchard(
    home: Path, *args: str, timeout: float = 600, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion and return its result (output captured)."""
    return subprocess.run(
        orchard_cmd(*args),
        env=orchard_env(home, **extra),
        cwd=home.parent,  # not the checkout: a developer's .env there is not the test's
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def final_state(home: Path) -> dict[str, object]:
    """Return what must be identical after an interrupted-then-resumed run and an uninterrupted one."""
    db = sqlite3.connect(home / "mlflow" / "mlflow.db")
    versions = sorted(
        db.execute(
            "select v.name, v.version, t.value from model_versions v left join model_version_tags t "
            "on t.name = v.name and t.version = v.version and t.key = 'orchard.train_key'"
        ).fetchall()
    )
    aliases = sorted(db.execute("select name, alias, version from registered_model_aliases").fetchall())
    db.close()
    history = sqlite3.connect(home / "registry" / "history.db")
    # each model's events in the order they happened; the models' interleaving is not part of the state (the
    # joint model lives its months in the lifecycle's lane, beside the others)
    events = history.execute(
        "select model, alias, version, previous_version, action, reason, approver, effective_month "
        "from alias_events order by model, id"
    ).fetchall()
    history.close()
    months = {}
    for path in sorted((home / "state" / "months").glob("*.json")):
        record = json.loads(path.read_text())
        record.pop("stage_seconds", None)
        months[path.stem] = record
    bronze = sorted(str(p.relative_to(home)) for p in (home / "lake" / "bronze").rglob("*.parquet"))
    # the simulated lender's decisions: a resumed run must have rebuilt the same world
    decisions = {
        p.stem: pd.read_parquet(p)[["application_id", "approved", "policy"]].to_dict("list")
        for p in sorted((home / "simulator" / "decisions").glob("*.parquet"))
    }
    silver = sorted(str(p.relative_to(home)) for p in (home / "lake" / "silver").rglob("*.parquet"))
    return {
        "versions": versions,
        "aliases": aliases,
        "events": events,
        "months": months,
        "bronze": bronze,
        "silver": silver,
        "decisions": decisions,
    }


def copy_home(source: Path, target: Path) -> Path:
    """Copy a state folder that another test may be using: each SQLite database (found by its header) through
    SQLite's backup (a consistent copy even while a writer is at work), every other file as it is. Return target.

    Artifacts the databases refer to by absolute path stay where they are: the copy is for reading.
    """

    def copy(src: str, dst: str) -> None:
        with open(src, "rb") as file:
            is_sqlite = file.read(16) == b"SQLite format 3\x00"
        if is_sqlite:
            with sqlite3.connect(src) as origin, sqlite3.connect(dst) as copied:
                origin.backup(copied)
            origin.close()
            copied.close()
        else:
            shutil.copy2(src, dst)

    # a database's journal files are in its backup (and may vanish while the tree is copied)
    journals = shutil.ignore_patterns("*-wal", "*-shm", "*-journal")
    shutil.copytree(source, target, copy_function=copy, ignore=journals, ignore_dangling_symlinks=True)
    return target
