"""Shared fixtures: a Settings object whose state folder is a fresh tmp_path, telemetry off."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchard.settings import Settings, tool_environment

REPO_ROOT = Path(__file__).resolve().parents[1]
GERMAN_CREDIT = REPO_ROOT / "examples" / "data" / "german_credit.csv"


def make_settings(home: Path, **overrides: object) -> Settings:
    """Build small, fast settings rooted at home (explicit values, never the user's environment)."""
    values: dict[str, object] = {
        "home": home,
        "n_users": 2_000,
        "start_month": "2019-01",
        "end_month": "2019-12",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings rooted in this test's tmp_path, with the tools' environment pointed there."""
    s = make_settings(tmp_path / "orchard")
    for key, value in tool_environment(s).items():
        if key != "PREFECT_HOME":  # the Prefect test harness owns its own home
            monkeypatch.setenv(key, value)
    return s


@pytest.fixture(scope="session")
def small_lifecycle_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One uninterrupted small lifecycle (`orchard demo`, SMALL_LIFECYCLE), run once per session.

    The end-to-end tests assert on it and the services tier compares the production profile against it.
    """
    from tests.e2e.lifecycle_helpers import run_orchard

    home = tmp_path_factory.mktemp("lifecycle") / "orchard"
    result = run_orchard(home, "demo")
    assert result.returncode == 0, f"demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return home, result


@pytest.fixture(scope="session", autouse=True)
def _telemetry_off() -> None:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
