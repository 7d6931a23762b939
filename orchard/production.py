"""The production profile derived from Settings: service URLs, PostgreSQL databases, Feast on PostgreSQL + Redis."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from feast import RepoConfig
from sqlalchemy.engine import URL, make_url

from orchard.errors import OrchardError, ServiceUnreachable
from orchard.settings import ProductionConfig, Settings, mlflow_credentials

LOOPBACK = "127.0.0.1"
WORK_POOL = "orchard-process"
# one database per service on the shared PostgreSQL server (names are part of the infra/ interface)
DATABASES = {
    "mlflow": "orchard_mlflow",
    "mlflow_auth": "orchard_mlflow_auth",
    "prefect": "orchard_prefect",
    "feast": "orchard_feast",
    "governance": "orchard_governance",
}


def _server_url(config: ProductionConfig) -> URL:
    if config.postgres_url is None:
        raise OrchardError(
            "the production profile needs ORCHARD_POSTGRES_URL (e.g. postgresql://orchard@127.0.0.1:5432)"
        )
    try:
        url = make_url(config.postgres_url.get_secret_value())
    except Exception:  # sqlalchemy raises ArgumentError with the URL in it: do not echo a password
        raise OrchardError(
            "ORCHARD_POSTGRES_URL is not a database URL (postgresql://user@host:port)"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise OrchardError(f"ORCHARD_POSTGRES_URL must be a postgresql:// URL, not {url.get_backend_name()}")
    return url


def database_name(config: ProductionConfig, service: str) -> str:
    """Return the PostgreSQL database of a service (mlflow, mlflow_auth, prefect, feast, governance)."""
    return config.database_prefix + DATABASES[service]


def database_url(config: ProductionConfig, service: str, driver: str = "psycopg") -> str:
    """Return the SQLAlchemy URL (with password) of a service's database on the shared PostgreSQL."""
    url = _server_url(config)
    return url.set(
        drivername=f"postgresql+{driver}", database=database_name(config, service)
    ).render_as_string(hide_password=False)


def mlflow_tracking_uri(config: ProductionConfig) -> str:
    """Return the MLflow tracking server's URI (loopback, the configured port)."""
    return f"http://{LOOPBACK}:{config.mlflow_server_port}"


def prefect_api_url(config: ProductionConfig) -> str:
    """Return the Prefect server's API URL (loopback, the configured port)."""
    return f"http://{LOOPBACK}:{config.prefect_server_port}/api"


def governance_db_url(config: ProductionConfig) -> str:
    """Return the governance (alias history, approvals) database URL on PostgreSQL."""
    return database_url(config, "governance")


def artifact_root(settings: Settings) -> str:
    """Return where MLflow keeps artifacts: the S3-compatible URL when set, else a shared path under home."""
    configured = settings.production.artifact_root
    if configured:
        return configured
    return str((settings.shared_dir / "mlflow-artifacts").resolve())


def redis_connection_string(redis_url: str) -> str:
    """Convert redis://[:password@]host:port/db into Feast's 'host:port,db=N[,password=...,ssl=true]' form."""
    parts = urllib.parse.urlsplit(redis_url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise OrchardError(f"ORCHARD_REDIS_URL must look like redis://host:port/db, not {parts.scheme}://…")
    db = parts.path.lstrip("/") or "0"
    if not db.isdigit():
        raise OrchardError(f"ORCHARD_REDIS_URL database must be a number, not {db!r}")
    pieces = [f"{parts.hostname}:{parts.port or 6379}", f"db={db}"]
    if parts.password:
        pieces.append(f"password={urllib.parse.unquote(parts.password)}")
    if parts.scheme == "rediss":
        pieces.append("ssl=true")
    return ",".join(pieces)


def production_repo_config(settings: Settings) -> RepoConfig:
    """Return the Feast config of the production profile: SQL registry on PostgreSQL, Redis online store."""
    feast_dir = settings.feast_dir.resolve()
    config = settings.production
    return RepoConfig(
        project="orchard",
        provider="local",
        registry={
            "registry_type": "sql",
            "path": database_url(config, "feast"),
            "cache_ttl_seconds": 60,
            "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
        },
        offline_store={"type": "duckdb"},
        online_store={"type": "redis", "connection_string": redis_connection_string(config.redis_url)},
        entity_key_serialization_version=3,
        repo_path=feast_dir,
        coerce_tz_aware=False,  # orchard.feature_store._retrieve sends UTC timestamps
    )


def client_environment(config: ProductionConfig) -> dict[str, str]:
    """Environment of an Orchard process using the production services (flows, workers, the CLI)."""
    return {
        "ORCHARD_PROFILE": "production",
        "ORCHARD_MLFLOW_TRACKING_URI": mlflow_tracking_uri(config),
        "ORCHARD_PREFECT_API_URL": prefect_api_url(config),
        "ORCHARD_GOVERNANCE_DB_URL": governance_db_url(config),
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri(config),
        "PREFECT_API_URL": prefect_api_url(config),
        **mlflow_credentials(config),
    }


@contextmanager
def _server_connection(config: ProductionConfig) -> Iterator[Any]:
    """Yield an autocommit connection to the server's `postgres` database, or raise naming it unreachable."""
    import psycopg

    url = _server_url(config)
    params: dict[str, Any] = {
        "host": url.host or LOOPBACK,
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "dbname": "postgres",
        "connect_timeout": 5,
    }
    if url.password:
        params["password"] = url.password
    try:
        conn = psycopg.connect(**params, autocommit=True)
    except psycopg.OperationalError as exc:
        # psycopg: 'connection failed: connection to server at "h", port p failed: Connection refused\n\t...'
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnreachable(
            f"PostgreSQL at {params['host']}:{params['port']} is not reachable: {first.rsplit('failed: ', 1)[-1]}"
        ) from None
    with conn:
        yield conn


def check_postgres(config: ProductionConfig) -> None:
    """Raise ServiceUnreachable naming the PostgreSQL server of the production profile when it does not answer."""
    with _server_connection(config) as conn:
        conn.execute("select 1")


def ensure_databases(config: ProductionConfig) -> list[str]:
    """Create the services' databases that do not exist yet; return the names created."""
    from psycopg import sql

    created = []
    with _server_connection(config) as conn:
        existing = {row[0] for row in conn.execute("select datname from pg_database")}
        for service in DATABASES:
            name = database_name(config, service)
            if name not in existing:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                created.append(name)
    return created
