"""End to end: a lifecycle killed twice (SIGKILL, no clean-up) and restarted ends where an uninterrupted one does."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchard.testing.small_lifecycle import demo_cmd, final_state, orchard_env, run_demo

pytestmark = pytest.mark.slow(seconds=100)


def _start_demo(home: Path, **extra: str) -> subprocess.Popen[bytes]:
    """Start the demo on home in a session of its own (it and its own Prefect server, if it starts one)."""
    return subprocess.Popen(
        demo_cmd(home),
        env=orchard_env(home, **extra),
        cwd=home.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_after(process: subprocess.Popen[bytes], home: Path, months_done: int) -> None:
    """SIGKILL the demo (and its own Prefect server, if it started one) inside the month after `months_done`."""
    months_dir = home / "state" / "months"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and process.poll() is None:
        if months_dir.exists() and len(list(months_dir.glob("*.json"))) >= months_done:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the demo ended before {months_done} months were recorded"
    time.sleep(0.7)  # land the kill inside the next month's stages
    os.killpg(process.pid, signal.SIGKILL)  # the demo and its Prefect server, as a killed terminal would
    process.wait()


def test_killed_run_resumes_to_the_same_state(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Given a demo killed (SIGKILL, no clean-up) with its own temporary Prefect server while working on its third
    # month, restarted, and killed again while working on its sixth (one run, two kills: a resumed run is itself
    # resumable). The restarts use the worker's Prefect server: the first kill covers a server killed with the
    # demo, and the resumption reads only the home's own records, so two more server start-ups would add
    # nothing but time.
    home = tmp_path / "orchard"
    first = _start_demo(home)
    try:  # the worker's Prefect server, for the restarts, is asked for only now: it starts while the first run works
        prefect_server_env: dict[str, str] = request.getfixturevalue("prefect_server_env")
    except BaseException:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        raise
    _kill_after(first, home, 2)
    _kill_after(_start_demo(home, **prefect_server_env), home, 5)
    # When it runs again to the end
    resumed = run_demo(home, **prefect_server_env)
    # Then the end state equals the uninterrupted run's: same versions, aliases, records, no duplicates
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # (the reference is asked for only now, so this scenario runs beside the one that builds it)
    reference_home, _ = request.getfixturevalue("small_lifecycle_run")
    assert final_state(home) == final_state(reference_home)
