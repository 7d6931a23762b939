"""Attacks on the decision API: a forged champion alias, a decision log that cannot be written, kill -9 under load.

The kill test runs the very command the container runs (`uvicorn orchard.serving.asgi:app_from_environment
--factory`) against the shared serving home, so it also proves that command starts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from model_registry.alerts import read_alerts
from orchard.ports import free_port
from orchard.serving.app import create_app
from orchard.serving.decision_log import ParquetDecisionSink, first_broken_row
from orchard.settings import Settings
from orchard.testing.demo import demo_model
from orchard.testing.serving_home import (
    HEADERS,
    applications,
    container_command,
    promote,
    server_env,
    serving_config,
)
from tests.integration.serving_home import serving_home_fixture  # noqa: F401  (registers the fixture)

APPLICATION_PD = demo_model("application_pd")

pytestmark = pytest.mark.slow  # the shared lifecycle home takes ~1-2 minutes to build once per session

DECIDE = "/v1/decisions/application"
ANSWERED_BEFORE_KILL = 300
CLIENT_THREADS = 4


@pytest.fixture(scope="module")
def home(serving_home: tuple[Settings, dict[str, list[int]]]) -> tuple[Settings, list[int]]:
    settings, versions = serving_home
    promote(settings, APPLICATION_PD.name, versions[APPLICATION_PD.name][0], "2019-06")
    return settings, versions[APPLICATION_PD.name]


def test_a_forged_alias_is_not_served_and_raises_an_alert(home: tuple[Settings, list[int]]) -> None:
    settings, (v1, v2) = home
    body = applications(settings, n=1)[0]
    with TestClient(create_app(settings, config=serving_config())) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        # given the API serving the approved v1
        assert (
            client.post(DECIDE, json=body, headers=HEADERS).json()["model_versions"][APPLICATION_PD.name]
            == v1
        )
        # when someone with edit rights on the model points the alias at v2 without any approval
        MlflowClient(tracking_uri=settings.tracking_uri).set_registered_model_alias(
            APPLICATION_PD.name, "champion", str(v2)
        )
        try:
            runtime.champions.refresh()  # what the watcher does on its next poll
            answer = client.post(DECIDE, json=body, headers=HEADERS).json()
        finally:
            MlflowClient(tracking_uri=settings.tracking_uri).set_registered_model_alias(
                APPLICATION_PD.name, "champion", str(v1)
            )
    # then the approved v1 keeps serving, and an alert names the diverged alias
    assert answer["model_versions"][APPLICATION_PD.name] == v1, answer
    alerts = [a for a in read_alerts(settings) if a.get("model") == APPLICATION_PD.name]
    assert alerts and (alerts[-1]["alias_version"], alerts[-1]["recorded_version"]) == (v2, v1), alerts


@contextmanager
def unwritable_log(settings: Settings) -> Iterator[None]:
    """Make the embedded decision log unwritable for a block: its folder becomes a plain file."""
    folder = settings.decisions_dir
    aside = folder.with_name("decisions.aside")
    if folder.exists():
        folder.rename(aside)
    folder.write_text("not a folder")
    try:
        yield
    finally:
        folder.unlink()
        if aside.exists():
            aside.rename(folder)


def test_a_failing_decision_log_gives_503_not_200(home: tuple[Settings, list[int]]) -> None:
    settings, _ = home
    body = applications(settings, n=1)[0]
    with TestClient(create_app(settings, config=serving_config())) as client, unwritable_log(settings):
        # when the decision log cannot be written
        response = client.post(DECIDE, json=body, headers=HEADERS)
        # then the decision is not answered as made: 503 naming the log
        assert response.status_code == 503, (response.status_code, response.text[:300])
        assert "decision log" in response.json()["error"], response.json()
        # and health still answers: the process is alive, it only refuses to decide unlogged
        assert client.get("/health").status_code == 200


def wait_healthy(process: subprocess.Popen[bytes], base_url: str) -> None:
    """Wait until /ready answers 200 (the champions are loaded), failing fast if the process died."""
    with httpx.Client(base_url=base_url, timeout=2) as client:
        # starting the tools (MLflow, Feast) takes a minute on two shared cores: allow five
        for _ in range(3000):
            if process.poll() is not None:
                raise AssertionError(f"the API command exited with {process.returncode} before answering")
            try:
                if client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            threading.Event().wait(0.1)
    raise AssertionError("the API did not become ready within 300 s")


def test_kill_9_under_load_loses_no_answered_decision(
    home: tuple[Settings, list[int]], tmp_path: Path
) -> None:
    settings, _ = home
    bodies = applications(settings, n=16)
    folder = settings.decisions_dir
    before = {r["request_id"] for r in ParquetDecisionSink(folder).rows()}
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_file = (tmp_path / "api.log").open("wb")
    # given the container's command serving the home
    process = subprocess.Popen(
        container_command(port),
        env=server_env(settings),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    answered: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def hammer(offset: int) -> None:
        with httpx.Client(base_url=base_url, headers=HEADERS, timeout=10) as client:
            i = offset
            while True:
                try:
                    response = client.post(DECIDE, json=bodies[i % len(bodies)])
                except httpx.TransportError:
                    return  # the server is gone
                if response.status_code == 200:
                    with lock:
                        answered.append(response.json()["request_id"])
                        if len(answered) >= ANSWERED_BEFORE_KILL:
                            enough.set()
                i += CLIENT_THREADS

    try:
        wait_healthy(process, base_url)
        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        # when it is killed with SIGKILL in the middle of the load
        assert enough.wait(120), f"only {len(answered)} answers before the deadline"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log_file.close()
    # then every decision that was answered 200 is in the log (the file written before the answer)
    rows = ParquetDecisionSink(folder).rows()
    logged = {r["request_id"] for r in rows} - before
    lost = [rid for rid in answered if rid not in logged]
    assert not lost, (
        f"{len(lost)} of {len(answered)} answered decisions are missing from the log after kill -9"
    )
    # and the log's hash chain is intact after the crash
    assert first_broken_row(rows) is None, first_broken_row(rows)
    print(f"answered {len(answered)} decisions, logged {len(logged)}, lost 0 after kill -9")
    shutil.rmtree(tmp_path, ignore_errors=True)
