"""The session's serving home for the serving tests: a copy of the test run's small lifecycle home."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchard.settings import Settings
from orchard.testing.serving_home import copy_serving_home


@pytest.fixture(scope="session", name="serving_home")
def serving_home_fixture(
    tmp_path_factory: pytest.TempPathFactory,
    small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> tuple[Settings, dict[str, list[int]]]:
    """The session's serving home (copied once per worker from the run's small lifecycle, reused by every
    serving test module: they move application_pd's champion, so they work on their own copy)."""
    return copy_serving_home(small_lifecycle_run[0], tmp_path_factory.getbasetemp() / "serving_home")
