"""The local PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379) of the production profile's
tests and benchmarks: loopback ports, and databases created and dropped under a name prefix."""

from __future__ import annotations

import psycopg

PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379
PG_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}"


def drop_databases(prefix: str, port: int = PG_PORT) -> None:
    """Drop every database whose name starts with prefix (connections closed by force)."""
    with psycopg.connect(
        host=PG_HOST, port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        names = [
            r[0]
            for r in conn.execute("select datname from pg_database where datname like %s", (prefix + "%",))
        ]
        for name in names:
            conn.execute(f'drop database if exists "{name}" with (force)')


def create_database(name: str) -> str:
    """Create a database on the real PostgreSQL (name it under a test's prefix to have it dropped); return its URL."""
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
