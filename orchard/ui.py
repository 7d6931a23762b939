"""`orchard ui`: the Prefect, MLflow and Evidently UIs on loopback over the demo's state."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from orchard.errors import OrchardError
from orchard.settings import Settings


@dataclass(frozen=True)
class UiService:
    """A UI server: how to start it and where it answers."""

    name: str
    command: list[str]
    url: str
    health_url: str
    env: dict[str, str] = field(default_factory=dict)


def ui_services(settings: Settings, host: str = "127.0.0.1", base_port: int = 4200) -> list[UiService]:
    """Return the three UIs, each reading the state under settings.home."""
    bin_dir = Path(sys.executable).parent
    prefect_port, mlflow_port, evidently_port = base_port, base_port + 1, base_port + 2
    return [
        UiService(
            "Prefect",
            [str(bin_dir / "prefect"), "server", "start", "--host", host, "--port", str(prefect_port)],
            f"http://{host}:{prefect_port}/runs",
            f"http://{host}:{prefect_port}/api/health",
            # the browser app must call this server's API, not the default port's
            {"PREFECT_SERVER_UI_API_URL": f"http://{host}:{prefect_port}/api"},
        ),
        UiService(
            "MLflow",
            [
                str(bin_dir / "mlflow"),
                "ui",
                "--backend-store-uri",
                settings.tracking_uri,
                "--host",
                host,
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            f"http://{host}:{mlflow_port}/#/models",
            f"http://{host}:{mlflow_port}/health",
            # no job runners: MLflow would start seven Huey consumers (about 3 s of CPU each) for its GenAI jobs,
            # which Orchard's models never use; the production server runs without them too (orchard.services)
            {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        ),
        UiService(
            "Evidently",
            [
                str(bin_dir / "evidently"),
                "ui",
                "--workspace",
                str(settings.evidently_dir.resolve()),
                "--host",
                host,
                "--port",
                str(evidently_port),
            ],
            f"http://{host}:{evidently_port}",
            f"http://{host}:{evidently_port}/",
        ),
    ]


def wait_healthy(url: str, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    """Poll url until it answers 2xx, the process dies, or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OrchardError(f"{url} did not start: the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (an http URL this module built)
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise OrchardError(f"{url} did not become healthy within {timeout_s:.0f} s")


def start_uis(settings: Settings, services: list[UiService], log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Start every UI (logs under home/logs) and wait until each answers; stop all if one fails."""
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for service in services:
            log = open(log_dir / f"{service.name.lower()}-ui.log", "ab")  # noqa: SIM115 (owned by the child)
            # each UI in its own session: stopping it stops its own children
            processes.append(
                subprocess.Popen(
                    service.command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, **service.env},
                )
            )
        for service, process in zip(services, processes, strict=True):
            wait_healthy(service.health_url, 90, process)
    except BaseException:
        stop_uis(processes)
        raise
    return processes


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)  # the group this command created for the UI (its pid is the group id)


def stop_uis(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the UI processes this command started, with their children (and only those)."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
