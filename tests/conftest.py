"""Shared fixtures: a Settings object whose state folder is a fresh tmp_path, telemetry off."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchard.feast_typecheck import skip_feast_typechecks
from orchard.settings import Settings, tool_environment

skip_feast_typechecks()  # as the CLI does: each test worker imports Feast (orchard.feast_typecheck)

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


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """Return a folder shared by every pytest-xdist worker of this run, filled by build(folder) only once.

    The first worker to ask builds under an exclusive file lock and leaves a marker; the others wait for the
    lock and find the marker. A build that raised leaves no marker, so the next worker to ask tries again.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's base folder, common to the workers
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            folder.mkdir(parents=True, exist_ok=True)
            build(folder)
            (folder / ".built").touch()
    return folder


def _small_lifecycle(folder: Path) -> None:
    from orchard.testing.small_lifecycle import run_demo

    result = run_demo(
        folder / "orchard", ORCHARD_LANE_PROCESS="true"
    )  # the demo's way: the lane in its process
    assert result.returncode == 0, f"demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    (folder / "result.json").write_text(json.dumps({"stdout": result.stdout, "stderr": result.stderr}))


@pytest.fixture(scope="session")
def small_lifecycle_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One uninterrupted small lifecycle (`orchard demo`, SMALL_LIFECYCLE), run once per test run.

    The end-to-end tests assert on it and the services tier compares the production profile against it.
    """
    folder = built_once(tmp_path_factory, "small_lifecycle", _small_lifecycle)
    output = json.loads((folder / "result.json").read_text())
    return folder / "orchard", subprocess.CompletedProcess(["orchard", "demo"], 0, **output)


# A temporary Prefect server starts in ~15 s on a quiet machine, but two workers each running a lifecycle beside
# it can stretch that past the harness's own 30 s default (a CI run failed so): wait as long as the Makefile lets
# any ephemeral server wait, and at least 180 s.
PREFECT_STARTUP_TIMEOUT = max(
    180, int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "0"))
)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real temporary Prefect server for the flow runs of this session (of each pytest-xdist worker)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=PREFECT_STARTUP_TIMEOUT):
        yield


@pytest.fixture(scope="session")
def prefect_server_env(prefect_harness: None) -> dict[str, str]:
    """The environment that points an `orchard` subprocess at this worker's Prefect server (prefect_harness).

    A CLI process left to itself starts a temporary Prefect server of its own (12-20 s on the reference machine,
    migrations included); the scenarios that never look at their home's Prefect database share this one. The
    session's small lifecycle and the killed run's first attempt keep their own temporary servers, the path
    `make demo` takes.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness set no API URL"
    return {"ORCHARD_PREFECT_API_URL": str(url)}


@pytest.fixture(scope="session", autouse=True)
def _no_developer_settings() -> Iterator[None]:
    """Keep the developer's ORCHARD_* variables away from every test: each test states the settings it uses.

    (Settings built in a test pass `_env_file=None`, and the CLI subprocesses run in a folder of their own, so a
    developer's `.env` is not read either.)
    """
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("ORCHARD_")}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def _telemetry_off() -> None:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


SLOW_DEFAULT_SECONDS = 30
"""What a slow scenario that does not say (pytest.mark.slow(seconds=N)) is taken to cost on the reference machine."""


def _run_order(item: pytest.Item) -> tuple[int, float]:
    """Longest first, so the two workers finish together: the slow scenarios by their declared cost
    (pytest.mark.slow(seconds=N), measured on the reference machine), then the rest in collection order.

    The session's small lifecycle is built by the first test to ask for it (built_once). The end-to-end lifecycle
    module asks at its start and goes out among the first; other scenarios that need it at their start go after
    the scenarios that run on their own, so that they rarely wait for a build in progress on the other worker.
    """
    slow = item.get_closest_marker("slow")
    if slow is None:
        return 2, 0.0
    seconds = float(slow.kwargs.get("seconds", SLOW_DEFAULT_SECONDS))
    waits = "small_lifecycle_run" in item.fixturenames and not item.nodeid.startswith(
        "tests/e2e/test_lifecycle.py"
    )
    return int(waits), -seconds


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the run: `make test` hands whole files to two pytest-xdist workers (--dist loadfile) in this order,
    so a module-scoped fixture is built once and the longest scenarios start first."""
    items.sort(key=_run_order)  # stable: the collection order holds within a rank
