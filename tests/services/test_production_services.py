"""Services tier: `orchard up` on the real PostgreSQL, MLflow basic-auth permissions, deployments, the worker."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient
from pydantic import SecretStr

from model_registry.identity import Identity, current_identity
from orchard.errors import OrchardError
from orchard.production import WORK_POOL, mlflow_tracking_uri, prefect_api_url
from orchard.services import REPO_DIR, _read_pid, down, start_service, stop_service, up, worker_service
from orchard.testing.demo import demo_models
from tests.services.conftest import ProductionSettings, production_settings

MODEL_SPECS = demo_models()

pytestmark = [pytest.mark.services, pytest.mark.slow(seconds=50)]

EXPECTED_DEPLOYMENTS = {
    "ingest-deployed/ingest",
    "validate-deployed/validate",
    "features-deployed/features",
    *(f"train-deployed/train-{model}" for model in MODEL_SPECS),
    *(f"score-deployed/score-{model}" for model, spec in MODEL_SPECS.items() if spec.serve),
    *(f"monitor-deployed/monitor-{model}" for model in MODEL_SPECS),
    "federated-deployed/federated",
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionSettings]:
    """Start the production services once for this module (own databases); stop and drop them afterwards."""
    from orchard.testing.services import PG_PORT, drop_databases
    from tests.services.conftest import require

    require(PG_PORT, "PostgreSQL")
    prefix = f"orchard_test_{secrets.token_hex(4)}_"
    # a password in the server URL (trust auth ignores it): the test below looks for it where it must not be
    settings = production_settings(
        tmp_path_factory.mktemp("services") / "orchard",
        prefix,
        postgres_url=f"postgresql://postgres:pw-{secrets.token_hex(6)}@127.0.0.1:5432",
    )
    try:
        up(settings)
        yield settings
    finally:
        down(settings)
        drop_databases(prefix)


def _cli_env(settings: ProductionSettings) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": prefect_api_url(settings.production),
        "PREFECT_HOME": str(settings.home / "prefect-cli"),
        "ORCHARD_REPO_DIR": str(REPO_DIR),
    }


def test_up_starts_healthy_services_and_is_idempotent(running: ProductionSettings) -> None:
    # Given the services `up` started
    pids = {name: _read_pid(running, name) for name in ("mlflow", "prefect", "worker")}
    assert all(pids.values()), f"every service has a PID file under {running.run_dir}: {pids}"
    # Then each answers on loopback
    assert httpx.get(f"{mlflow_tracking_uri(running.production)}/health", timeout=5).status_code == 200
    assert httpx.get(f"{prefect_api_url(running.production)}/health", timeout=5).status_code == 200
    # And MLflow refuses anonymous API calls (basic-auth app)
    anonymous = httpx.get(
        f"{mlflow_tracking_uri(running.production)}/api/2.0/mlflow/registered-models/search", timeout=5
    )
    assert anonymous.status_code == 401, "MLflow must require credentials"
    # When `up` runs again, Then nothing new is started
    again = {r.name: r.pid for r in up(running)}
    assert again == {n: r.pid for n, r in pids.items() if r}, "a second `up` must reuse the running services"


def test_no_password_on_a_command_line_or_in_a_readable_file(running: ProductionSettings) -> None:
    # Given the services `up` started, with a database password and an MLflow admin password
    config = running.production
    assert config.postgres_url is not None and config.mlflow_admin_password is not None
    passwords = [
        config.postgres_url.get_secret_value().split(":")[2].split("@")[0],
        config.mlflow_admin_password.get_secret_value(),
    ]
    # Then no process of theirs (nor its children) carries a password on its command line
    for name in ("mlflow", "prefect", "worker"):
        record = _read_pid(running, name)
        assert record is not None
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != record.pid:
                    continue
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            assert not [p for p in passwords if p in cmdline], (
                f"{name} pid {proc.name} has a password in argv"
            )
    # And the run folder (PID files, configs, logs) is private: no file others may read holds a password
    assert running.run_dir.stat().st_mode & 0o077 == 0, oct(running.run_dir.stat().st_mode)
    for path in running.run_dir.iterdir():
        if path.suffix == ".pid":
            assert path.stat().st_mode & 0o777 == 0o600, (path, oct(path.stat().st_mode))
        if path.is_file() and path.stat().st_mode & 0o044:
            text = path.read_text(errors="replace")
            assert not [p for p in passwords if p in text], (
                f"{path} is readable by others and holds a password"
            )


def test_identity_is_the_mlflow_user_the_server_authenticates(
    running: ProductionSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = running.production
    assert config.mlflow_admin_password is not None
    # Given a user the MLflow admin created
    _as(config.mlflow_admin_username, config.mlflow_admin_password.get_secret_value(), monkeypatch)
    password = secrets.token_urlsafe(12)
    AuthServiceClient(mlflow_tracking_uri(running.production)).create_user("approver-ann", password)
    # When Orchard asks who is acting with her credentials, Then MLflow vouches for her
    ann = running.model_copy(
        update={
            "production": running.production.model_copy(
                update={"mlflow_username": "approver-ann", "mlflow_password": SecretStr(password)}
            ),
            "mlflow_tracking_uri": mlflow_tracking_uri(running.production),
        }
    )
    assert current_identity(ann) == Identity("approver-ann", "mlflow-basic-auth")
    # And a wrong password gives no identity at all (nothing could be recorded under it)
    mallory = ann.model_copy(
        update={"production": ann.production.model_copy(update={"mlflow_password": SecretStr("guess")})}
    )
    with pytest.raises(OrchardError, match="MLflow refused the credentials of 'approver-ann'"):
        current_identity(mallory)


def _as(username: str, password: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def test_reader_cannot_move_champion_owner_can_admin_can_grant(
    running: ProductionSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = mlflow_tracking_uri(running.production)
    config = running.production
    assert config.mlflow_admin_password is not None
    admin = (config.mlflow_admin_username, config.mlflow_admin_password.get_secret_value())
    owner, reader = ("owner", secrets.token_urlsafe(12)), ("reader", secrets.token_urlsafe(12))
    # Given an owner and a reader created by the admin
    _as(*admin, monkeypatch)
    auth = AuthServiceClient(uri)
    auth.create_user(*owner)
    auth.create_user(*reader)
    # And a model the owner registered (its creator manages it)
    _as(*owner, monkeypatch)
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("application_pd")
    run = client.create_run(client.create_experiment("application_pd"))
    v1 = client.create_model_version("application_pd", f"runs:/{run.info.run_id}/model", run.info.run_id)
    v2 = client.create_model_version("application_pd", f"runs:/{run.info.run_id}/model", run.info.run_id)
    # When the owner makes v1 champion, Then it moves
    client.set_registered_model_alias("application_pd", "champion", v1.version)
    # When the reader tries to move champion to v2, Then it is refused and champion stays on v1
    _as(*reader, monkeypatch)
    assert client.get_registered_model("application_pd").aliases["champion"] == v1.version, "reader can read"
    with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|403"):
        client.set_registered_model_alias("application_pd", "champion", v2.version)
    assert client.get_registered_model("application_pd").aliases["champion"] == v1.version
    # When the reader tries to grant itself, Then it is refused too
    with pytest.raises(MlflowException):
        AuthServiceClient(uri).grant_user_permission("reader", "registered_model", "application_pd", "MANAGE")
    # When the admin grants the reader MANAGE on the model, Then the reader can move champion
    _as(*admin, monkeypatch)
    auth.grant_user_permission("reader", "registered_model", "application_pd", "MANAGE")
    _as(*reader, monkeypatch)
    client.set_registered_model_alias("application_pd", "champion", v2.version)
    assert client.get_registered_model("application_pd").aliases["champion"] == v2.version


def test_prefect_deploy_all_creates_every_deployment_schedule_and_trigger(
    running: ProductionSettings,
) -> None:
    # When every deployment of prefect.yaml is deployed against the server
    result = subprocess.run(
        [str(REPO_DIR / ".venv" / "bin" / "prefect"), "--no-prompt", "deploy", "--all"],
        cwd=REPO_DIR,
        env=_cli_env(running),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"prefect deploy --all failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    # Then each flow has its deployment on the Orchard work pool
    api = prefect_api_url(running.production)
    deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    flows = {f["id"]: f["name"] for f in httpx.post(f"{api}/flows/filter", json={}, timeout=10).json()}
    names = {f"{flows[d['flow_id']]}/{d['name']}" for d in deployments}
    assert names >= EXPECTED_DEPLOYMENTS, f"missing deployments: {EXPECTED_DEPLOYMENTS - names}"
    assert all(d["work_pool_name"] == WORK_POOL for d in deployments)
    scheduled = {d["name"] for d in deployments if d.get("schedules")}
    assert {"ingest", "validate", "features", "score-application_pd", "monitor-application_pd"} <= scheduled
    # And the retraining automation listens for orchard.monitor.breach
    automations = httpx.post(f"{api}/automations/filter", json={}, timeout=10).json()
    breach = [a for a in automations if "orchard.monitor.breach" in a["trigger"].get("expect", [])]
    assert breach and any(a["actions"][0]["type"] == "run-deployment" for a in breach), automations


def test_breach_event_runs_the_retraining_deployment(running: ProductionSettings) -> None:
    # Given the project's deployments (with the breach trigger) on the real Prefect server
    api = prefect_api_url(running.production)
    found = httpx.get(f"{api}/deployments/name/train-deployed/train-application_pd", timeout=10)
    if found.status_code == 404:
        deploy = subprocess.run(
            [str(REPO_DIR / ".venv" / "bin" / "prefect"), "--no-prompt", "deploy", "--all"],
            cwd=REPO_DIR,
            env=_cli_env(running),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert deploy.returncode == 0, deploy.stderr[-2000:]
        found = httpx.get(f"{api}/deployments/name/train-deployed/train-application_pd", timeout=10)
    deployment_id = found.json()["id"]
    # When monitoring emits orchard.monitor.breach for application_pd (from another process, as a flow would)
    emit = (
        "from flows.automations import emit_breach\n"
        "from prefect.events.worker import EventsWorker\n"
        "emit_breach('application_pd', '2020-03', 1, ['score PSI 0.31 > 0.25'])\n"
        "EventsWorker.drain_all()\n"
    )
    sent = subprocess.run(
        [sys.executable, "-c", emit],
        cwd=REPO_DIR,
        env=_cli_env(running),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr[-2000:]
    # Then the automation creates a run of the retraining deployment with the event's model and month
    deadline = time.monotonic() + 90
    runs: list[dict[str, object]] = []
    while time.monotonic() < deadline and not runs:
        runs = httpx.post(
            f"{api}/flow_runs/filter",
            json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}},
            timeout=10,
        ).json()
        runs = [r for r in runs if r["parameters"].get("month") == "2020-03"]
        time.sleep(1)
    assert runs, "no retraining run was created by the breach automation within 90 s"
    assert runs[0]["parameters"]["model"] == "application_pd"


def _run_deployment(settings: ProductionSettings, name: str, parameters: dict[str, object]) -> str:
    api = prefect_api_url(settings.production)
    deployment = httpx.get(f"{api}/deployments/name/{name}", timeout=10).json()
    run = httpx.post(
        f"{api}/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters}, timeout=10
    ).json()
    return str(run["id"])


def _wait_final(settings: ProductionSettings, run_id: str, timeout: float = 180) -> str:
    api = prefect_api_url(settings.production)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]["type"]
        if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return state
        time.sleep(1)
    return "TIMEOUT"


def test_restarted_worker_picks_up_new_runs(running: ProductionSettings) -> None:
    # Given deployments on the server and landing files for 2019-01 (the deployed ingest copies them)
    from orchard.simulate import simulate

    simulate(running)
    # When the worker is stopped while a run is queued, then a new worker starts
    assert stop_service(running, "worker"), "the worker `up` started is stopped by its PID"
    queued = _run_deployment(running, "ingest-deployed/ingest", {"month": "2019-01"})
    time.sleep(2)
    state = httpx.get(f"{prefect_api_url(running.production)}/flow_runs/{queued}", timeout=10).json()[
        "state"
    ]["type"]
    assert state == "SCHEDULED", f"no worker: the run waits ({state})"
    start_service(running, worker_service(running))
    # Then the queued run and a new one are picked up and complete
    fresh = _run_deployment(running, "ingest-deployed/ingest", {"month": "2019-02"})
    assert _wait_final(running, queued) == "COMPLETED", "the run queued while the worker was down"
    assert _wait_final(running, fresh) == "COMPLETED", "a run submitted after the restart"
    assert (Path(running.home) / "lake" / "bronze").exists(), "the deployed ingest wrote bronze under home"


def test_down_stops_only_what_up_started(running: ProductionSettings) -> None:
    # Given the running services (and an unrelated process we start ourselves)
    bystander = subprocess.Popen(["sleep", "60"])
    pids = [r.pid for r in (_read_pid(running, n) for n in ("mlflow", "prefect", "worker")) if r]
    try:
        # When `down` runs
        stopped = down(running)
        # Then every service is stopped, its PID file removed, and the bystander still runs
        assert set(stopped) == {"worker", "prefect", "mlflow"}
        assert not list(running.run_dir.glob("*.pid")), "PID files removed"
        for pid in pids:
            assert (
                not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
        assert bystander.poll() is None, "down must not touch processes it did not start"
        assert down(running) == [], "a second down finds nothing to stop"
    finally:
        bystander.kill()
        bystander.wait()
