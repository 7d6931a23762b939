"""`orchard up --profile production` / `orchard down`: the MLflow and Prefect servers and a worker on loopback.

Each service runs in its own session (process group) with a PID file under settings.home/run; `down` stops only
the process groups whose PID file it finds and whose command line still matches what `up` started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from orchard.atomic import write_json, write_text
from orchard.errors import OrchardError
from orchard.production import (
    LOOPBACK,
    WORK_POOL,
    artifact_root,
    client_environment,
    database_url,
    ensure_databases,
    mlflow_tracking_uri,
    prefect_api_url,
)
from orchard.runtime import environment
from orchard.settings import Settings

logger = logging.getLogger(__name__)

WORKER_NAME = "orchard-worker"
REPO_DIR = Path(__file__).resolve().parents[1]
AUTH_CACHE_TTL_SECONDS = 60


@dataclass(frozen=True)
class ServiceSpec:
    """A long-running service: its command, extra environment and how to know it is ready."""

    name: str
    command: list[str]
    env: dict[str, str] = field(repr=False)
    health: Callable[[], bool] = field(repr=False, compare=False)
    start_timeout_seconds: float = 180.0


@dataclass(frozen=True)
class PidRecord:
    """What a PID file holds: enough to recognise the process again."""

    name: str
    pid: int
    command: list[str]
    started_at: float


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _worker_online(settings: Settings) -> bool:
    url = f"{prefect_api_url(settings.production)}/work_pools/{WORK_POOL}/workers/filter"
    try:
        response = httpx.post(url, json={}, timeout=3)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and any(
        w.get("name", "").startswith(WORKER_NAME) and w.get("status") == "ONLINE" for w in response.json()
    )


def _write_auth_config(settings: Settings) -> Path:
    """Write the MLflow basic-auth config (owner-only file: it holds the auth database URL)."""
    config = settings.production
    path = settings.run_dir / "mlflow_basic_auth.ini"
    write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_url(settings.production, 'mlflow_auth')}\n"
        f"admin_username = {config.mlflow_admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # one server worker: a password change through the API invalidates its cache entry at once; without the
        # cache every request pays the password hash (~1 s per call on two shared cores)
        f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_SECONDS}\n",
        path,
    )
    path.chmod(0o600)
    return path


def mlflow_service(settings: Settings) -> ServiceSpec:
    """The MLflow tracking server on PostgreSQL with basic-auth (admin password from the settings only)."""
    config = settings.production
    if config.mlflow_admin_password is None:
        raise OrchardError(
            "the production MLflow server needs ORCHARD_MLFLOW_ADMIN_PASSWORD (no default password exists)"
        )
    secret_key = (
        config.mlflow_secret_key.get_secret_value() if config.mlflow_secret_key else secrets.token_hex(32)
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(_write_auth_config(settings).resolve()),
        "MLFLOW_AUTH_ADMIN_PASSWORD": config.mlflow_admin_password.get_secret_value(),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        # the database URL carries the password: an environment variable, never the command line (ps, PID file)
        "MLFLOW_BACKEND_STORE_URI": database_url(settings.production, "mlflow"),
    }
    port = config.mlflow_server_port
    command = [
        _bin("mlflow"),
        "server",
        "--app-name",
        "basic-auth",
        "--artifacts-destination",
        artifact_root(settings),
        "--serve-artifacts",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return ServiceSpec(
        "mlflow", command, env, lambda: _http_ok(f"{mlflow_tracking_uri(settings.production)}/health")
    )


def prefect_server_service(settings: Settings) -> ServiceSpec:
    """The Prefect server (API, UI, scheduler, automations) on PostgreSQL."""
    port = settings.production.prefect_server_port
    env = {
        "PREFECT_HOME": str(settings.service_prefect_home("server").resolve()),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url(settings.production, "prefect", driver="asyncpg"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_UI_API_URL": prefect_api_url(settings.production),
        "DO_NOT_TRACK": "1",
    }
    command = [_bin("prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)]
    return ServiceSpec(
        "prefect", command, env, lambda: _http_ok(f"{prefect_api_url(settings.production)}/health")
    )


def worker_service(settings: Settings) -> ServiceSpec:
    """A process worker of the Orchard work pool; its flow runs inherit the production client environment."""
    env = {
        "PREFECT_HOME": str(settings.service_prefect_home("worker").resolve()),
        "ORCHARD_HOME": str(settings.home.resolve()),
        "ORCHARD_REPO_DIR": str(REPO_DIR),
        **client_environment(settings.production),
    }
    command = [
        _bin("prefect"),
        "worker",
        "start",
        "--pool",
        WORK_POOL,
        "--type",
        "process",
        "--name",
        f"{WORKER_NAME}-{secrets.token_hex(3)}",
    ]
    return ServiceSpec("worker", command, env, lambda: _worker_online(settings), start_timeout_seconds=90)


def _pid_path(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _read_pid(settings: Settings, name: str) -> PidRecord | None:
    path = _pid_path(settings, name)
    if not path.exists():
        return None
    try:
        return PidRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def _is_ours(record: PidRecord) -> bool:
    """True when the PID still runs the command `up` started (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return record.command[1].encode() in cmdline and record.command[2].encode() in cmdline


def start_service(settings: Settings, spec: ServiceSpec) -> PidRecord:
    """Start a service in its own process group unless it already runs; wait until it is healthy."""
    existing = _read_pid(settings, spec.name)
    if existing is not None and _is_ours(existing) and spec.health():
        logger.info("%s already running (pid %d)", spec.name, existing.pid)
        return existing
    logs = settings.run_dir
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs.chmod(0o700)
    log_path = logs / f"{spec.name}.log"
    # children inherit this process's environment (PATH, locale), plus the service's own settings
    env = {**os.environ, **spec.env}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            spec.command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    record = PidRecord(spec.name, process.pid, spec.command, time.time())
    write_json(asdict(record), _pid_path(settings, spec.name))
    _pid_path(settings, spec.name).chmod(0o600)  # the run folder is private to the user who started it
    deadline = time.monotonic() + spec.start_timeout_seconds
    while not spec.health():
        if process.poll() is not None:
            _pid_path(settings, spec.name).unlink(missing_ok=True)
            tail = log_path.read_text(errors="replace")[-1500:]
            raise OrchardError(f"{spec.name} exited with code {process.returncode} while starting: {tail}")
        if time.monotonic() > deadline:
            stop_service(settings, spec.name)
            raise OrchardError(
                f"{spec.name} was not healthy within {spec.start_timeout_seconds:.0f} s (log: {log_path})"
            )
        time.sleep(0.5)
    logger.info("%s healthy (pid %d)", spec.name, process.pid)
    return record


def stop_service(settings: Settings, name: str, timeout_seconds: float = 20.0) -> bool:
    """Stop the process group `up` started for a service (TERM, then KILL); False when none was running."""
    record = _read_pid(settings, name)
    path = _pid_path(settings, name)
    if record is None or not _is_ours(record):
        path.unlink(missing_ok=True)
        return False
    # start_new_session made the service its own process group leader: pgid == pid
    for sig, wait in ((signal.SIGTERM, timeout_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(record.pid):
            _reap(record.pid)
            time.sleep(0.2)
        if not _group_alive(record.pid):
            break
    path.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader with no other members still "exists": check the group's live members
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def create_work_pool(settings: Settings) -> None:
    """Create (or update) the process work pool on the Prefect server."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api_url(settings.production),
        "PREFECT_HOME": str(settings.service_prefect_home("cli")),
    }
    result = subprocess.run(
        [_bin("prefect"), "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise OrchardError(f"could not create work pool {WORK_POOL}: {result.stderr.strip()[-500:]}")


def ensure_pipeline_user(settings: Settings) -> bool:
    """Create the MLflow user the flows run as (ORCHARD_MLFLOW_USERNAME/PASSWORD) if absent; True if created."""
    # deferred: MLflow takes seconds to import, only `orchard up` needs it
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    config = settings.production
    if not config.mlflow_username or config.mlflow_password is None or config.mlflow_admin_password is None:
        return False
    client = AuthServiceClient(mlflow_tracking_uri(settings.production))
    auth = httpx.BasicAuth(config.mlflow_admin_username, config.mlflow_admin_password.get_secret_value())
    known = httpx.get(
        f"{mlflow_tracking_uri(settings.production)}/api/2.0/mlflow/users/get",
        params={"username": config.mlflow_username},
        auth=auth,
        timeout=10,
    )
    if known.status_code == 200:
        return False
    with _as_mlflow_user(config.mlflow_admin_username, config.mlflow_admin_password.get_secret_value()):
        try:
            client.create_user(config.mlflow_username, config.mlflow_password.get_secret_value())
        except MlflowException as exc:
            raise OrchardError(
                f"could not create MLflow user {config.mlflow_username}: {exc.message}"
            ) from None
    return True


@contextlib.contextmanager
def _as_mlflow_user(username: str, password: str) -> Iterator[None]:
    """Temporarily authenticate the MLflow client as a user (MLflow reads its credentials from the environment)."""
    with environment({"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}):
        yield


def up(settings: Settings) -> list[PidRecord]:
    """Start the production services on loopback (databases created first); return what runs."""
    ensure_databases(settings.production)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    records = [start_service(settings, mlflow_service(settings))]
    ensure_pipeline_user(settings)
    records.append(start_service(settings, prefect_server_service(settings)))
    create_work_pool(settings)
    records.append(start_service(settings, worker_service(settings)))
    return records


def down(settings: Settings) -> list[str]:
    """Stop the services `up` started (worker first); return the names stopped."""
    return [name for name in ("worker", "prefect", "mlflow") if stop_service(settings, name)]


def up_command(settings: Settings, profile: str) -> str:
    """CLI body of `orchard up --profile production`: start, then say where each service answers."""
    if profile != "production":
        raise OrchardError(f"`orchard up` starts the production profile; got --profile {profile!r}")
    records = up(settings)
    lines = [f"{r.name:>8}: pid {r.pid}" for r in records]
    lines.append(f"  MLflow: {mlflow_tracking_uri(settings.production)}")
    lines.append(f" Prefect: {prefect_api_url(settings.production).removesuffix('/api')}")
    lines.append("stop them with `orchard down`")
    return "\n".join(lines)


def down_command(settings: Settings) -> str:
    """CLI body of `orchard down`."""
    stopped = down(settings)
    return f"stopped: {', '.join(stopped)}" if stopped else "nothing was running"
