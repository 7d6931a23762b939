"""Bad input at the CLI: one clear line naming the problem, no traceback, nothing half-written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchard.testing.demo import demo_variant


def _orchard(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHARD_", "PREFECT_", "MLFLOW_"))}
    clean.update({"ORCHARD_HOME": str(home), **env})
    return subprocess.run(
        [sys.executable, "-m", "orchard", *args],
        env=clean,
        cwd=next(
            p for p in home.parents if p.is_dir()
        ),  # not the checkout: a developer's .env is not the test's
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, "bad input must fail"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in: {lines[0]}"


def test_unknown_month(tmp_path: Path) -> None:
    # Given a month outside the simulated window / When the demo is asked to run to it
    result = _orchard(tmp_path / "orchard", "demo", "--until", "2023-05")
    # Then one line names the month and the window, and no state was created beyond the folder itself
    _one_clear_line(result, "2023-05", "2019-01..2021-12")
    assert not (tmp_path / "orchard" / "lake").exists()


def test_malformed_month_and_setting(tmp_path: Path) -> None:
    _one_clear_line(_orchard(tmp_path / "a", "demo", "--until", "2020-13"), "2020-13", "YYYY-MM")
    # Given a setting that is not a number / Then the variable is named
    _one_clear_line(_orchard(tmp_path / "b", "demo", ORCHARD_N_USERS="many"), "ORCHARD_N_USERS")
    _one_clear_line(_orchard(tmp_path / "c", "demo", ORCHARD_START_MONTH="2019-1"), "ORCHARD_START_MONTH")


def test_demo_refuses_a_lenders_portfolio(tmp_path: Path) -> None:
    # Given a lender's portfolio (its files are not simulated) / When `orchard demo` is pointed at it
    folder = demo_variant(tmp_path / "lender")
    document = yaml.safe_load((folder / "portfolio.yaml").read_text())
    document.pop("joint")  # the lifecycle's joint model needs a simulated platform
    (folder / "portfolio.yaml").write_text(yaml.safe_dump({**document, "simulated": False}, sort_keys=False))
    result = _orchard(tmp_path / "orchard", "demo", "--portfolio", str(folder))
    # Then one line says it is not simulated and names the command for a lender's data
    _one_clear_line(result, "is not simulated", "orchard run --portfolio")


def test_unwritable_state_folder(tmp_path: Path) -> None:
    # Given a state folder that cannot be created (its parent is a regular file; root ignores chmod)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = _orchard(blocker / "orchard", "demo")
    _one_clear_line(result, "not writable", str(blocker / "orchard"))


@pytest.mark.slow
def test_missing_landing_file_fails_the_month_clearly(
    tmp_path: Path, prefect_server_env: dict[str, str]
) -> None:
    # Given a landing zone with one source's file missing for the first month
    home = tmp_path / "orchard"
    small = {"ORCHARD_N_USERS": "500", "ORCHARD_END_MONTH": "2019-02"}
    assert _orchard(home, "simulate", **small).returncode == 0
    (home / "landing" / "repayments" / "2019-01.parquet").unlink()
    # When the lifecycle runs without the simulator (user-supplied landing)
    from orchard.testing.small_lifecycle import orchard_env

    env = orchard_env(home, **small, **prefect_server_env)
    code = (
        "from orchard.cli import app\n"
        "import sys\n"
        "sys.argv = ['orchard', 'ingest', '--month', '2019-01']\n"
        "app()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    # Then one line names the missing file, and the month is not recorded as done
    _one_clear_line(result, "repayments", "2019-01.parquet")
    assert not (home / "state" / "months" / "2019-01.json").exists()


def test_unreachable_postgres_in_production_is_named(tmp_path: Path) -> None:
    # Given the production profile pointed at a PostgreSQL that does not answer (a loopback port nobody serves)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = f"postgresql://postgres@127.0.0.1:{port}"
    # When a command needs the governance history on it
    result = _orchard(
        tmp_path / "orchard",
        "history",
        "application_pd",
        ORCHARD_PROFILE="production",
        ORCHARD_POSTGRES_URL=server,
        ORCHARD_GOVERNANCE_DB_URL=f"postgresql+psycopg://postgres@127.0.0.1:{port}/orchard_governance",
    )
    # Then one line names PostgreSQL, where, and what to do; not the driver's traceback
    _one_clear_line(result, f"PostgreSQL at 127.0.0.1:{port} is not reachable", "run the same command again")
