"""Start the users' UIs (Prefect, MLflow, Evidently) over a state folder with `orchard ui`'s own functions."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchard.settings import Settings
from orchard.ui import start_uis, stop_uis, ui_services


def free_base_port() -> int:
    """Return a port p with p, p+1 and p+2 free on loopback."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base > 60000:
            continue
        ok = True
        for port in (base + 1, base + 2):
            with socket.socket() as probe:
                ok = ok and probe.connect_ex(("127.0.0.1", port)) != 0
        if ok:
            return base
    raise RuntimeError("no three consecutive free ports")


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
        services = ui_services(settings, base_port=free_base_port())
        processes = start_uis(settings, services, log_dir)
    try:
        prefect, mlflow = (s.url.rsplit("/", 1)[0].replace("/#", "") for s in services[:2])
        yield prefect, mlflow, services[2].url.rstrip("/")
    finally:
        stop_uis(processes)
