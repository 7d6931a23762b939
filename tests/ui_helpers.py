"""Start the users' UIs (Prefect, MLflow, Evidently) over a state folder with `orchard ui`'s own functions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchard.ports import free_port
from orchard.settings import Settings
from orchard.ui import start_uis, stop_uis, ui_services


@contextmanager
def running_uis(home: Path, log_dir: Path) -> Iterator[tuple[str, str, str]]:
    """Start the UIs over the state folder; yield the Prefect, MLflow and Evidently base URLs; stop them after."""
    settings = Settings(_env_file=None, home=home)
    env_keys = {
        "PREFECT_HOME": str((home / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    with pytest.MonkeyPatch.context() as env:  # the UIs inherit these; this process gets its own back
        for key, value in env_keys.items():
            env.setenv(key, value)
        services = ui_services(settings, base_port=free_port(3))
        processes = start_uis(settings, services, log_dir)
    try:
        prefect, mlflow = (s.url.rsplit("/", 1)[0].replace("/#", "") for s in services[:2])
        yield prefect, mlflow, services[2].url.rstrip("/")
    finally:
        stop_uis(processes)
