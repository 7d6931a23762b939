"""Fixtures of the services tier: the real PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379).

Every test gets its own databases (a random name prefix, dropped afterwards) and its own Redis database number.
A service that is not reachable skips the test, unless ORCHARD_REQUIRE_SERVICES=1 (CI), which fails it.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchard.ports import free_port
from orchard.settings import Settings
from orchard.testing.services import PG_HOST, PG_PORT, PG_URL, REDIS_PORT, drop_databases

ProductionSettings = Settings  # the production fields live on the one Settings object


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((PG_HOST, port)) == 0


def require(port: int, what: str) -> None:
    """Skip (or fail under ORCHARD_REQUIRE_SERVICES=1) when a service does not answer."""
    if _reachable(port):
        return
    message = f"{what} is not reachable on {PG_HOST}:{port}"
    if os.environ.get("ORCHARD_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and ORCHARD_REQUIRE_SERVICES=1")
    pytest.skip(message)


@pytest.fixture
def postgres() -> Iterator[str]:
    """Yield a fresh database name prefix on the real PostgreSQL; drop its databases afterwards."""
    require(PG_PORT, "PostgreSQL")
    prefix = f"orchard_test_{secrets.token_hex(4)}_"
    try:
        yield prefix
    finally:
        drop_databases(prefix)


@pytest.fixture
def redis_db() -> Iterator[int]:
    """Yield a Redis database number for this test (flushed before and after), one per pytest-xdist worker.

    Tests of one worker run one after the other, so each worker's own number is never flushed under a test.
    """
    require(REDIS_PORT, "Redis")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = 8 + int(worker.removeprefix("gw")) % 8
    client = redis.Redis(host=PG_HOST, port=REDIS_PORT, db=number)
    client.flushdb()
    try:
        yield number
    finally:
        client.flushdb()
        client.close()


def production_settings(
    home: Path, prefix: str, redis_number: int = 0, **overrides: object
) -> ProductionSettings:
    """Small production settings rooted at home, on this test's databases and free loopback ports."""
    values: dict[str, object] = {
        "home": home,
        "profile": "production",
        "n_users": 2_000,
        "start_month": "2019-01",
        "end_month": "2019-12",
        "postgres_url": PG_URL,
        "database_prefix": prefix,
        "redis_url": f"redis://127.0.0.1:{REDIS_PORT}/{redis_number}",
        "mlflow_admin_password": secrets.token_urlsafe(16),
        "prefect_server_port": free_port(),
        "mlflow_server_port": free_port(),
    }
    values.update(overrides)
    return ProductionSettings(_env_file=None, **values)  # type: ignore[arg-type]
