"""Audit of the governance record: append-only triggers, the hash chains, and MLflow aliases against the record."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import Connection

from model_registry import history
from model_registry.registry import _alias_version
from model_registry.tracking import mlflow_client
from orchard.settings import Settings


def first_broken_link(table: sa.Table, rows: list[dict[str, Any]]) -> str | None:
    """Return the first row (in id order) whose hash or link to the model's previous row is wrong; pure."""
    last: dict[str | None, str] = {}
    for row in rows:
        key = history.chain_key(row)
        expected_prev = last.get(key, history.GENESIS_HASH)
        where = f"{table.name} #{row['id']}" + ("" if key is None else f" ({key})")
        if row["prev_hash"] != expected_prev:
            return f"{where}: does not link to the previous record of its chain (a record was removed or inserted)"
        if history.row_hash(table, row) != row["row_hash"]:
            return f"{where}: its content does not match its hash (the record was edited)"
        last[key] = row["row_hash"]
    return None


def _chained_tables(conn: Connection) -> list[sa.Table]:
    """Return the hash-chained tables of the history: alias events, approvals, and the seals once they exist."""
    seals = [history.chain_seals] if history.SEAL_TABLE in history.triggered_tables(conn) else []
    return [*history.TABLES.values(), *seals]


def table_rows(conn: Connection, table: sa.Table) -> list[dict[str, Any]]:
    """Return every row of a history table as stored, in id order."""
    return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]


def chain_problems(conn: Connection) -> list[str]:
    """Return the first broken record of each hash chain of the history (alias events, approvals, seals)."""
    problems = []
    for table in _chained_tables(conn):
        broken = first_broken_link(table, table_rows(conn, table))
        if broken is not None:
            problems.append(f"hash chain broken at {broken}")
    return problems


def governance_seal_digest(conn: Connection, detail: dict[str, Any]) -> str:
    """Return the digest of the governance rows a seal covers (each table's rows up to its last sealed id)."""
    hashes: list[str] = []
    for name, table in history.TABLES.items():
        last_id = detail["tables"].get(name, {}).get("last_id", 0)
        query = sa.select(table.c.row_hash).where(table.c.id <= last_id).order_by(table.c.id)
        hashes += conn.execute(query).scalars().all()
    return history.sealed_digest(hashes)


def seal_problems(conn: Connection) -> list[str]:
    """Return each governance seal whose sealed records no longer hash to what was sealed (removed at a tail)."""
    return [
        f"{history.seal_line(seal)}: the sealed records no longer match the seal (a sealed record was removed)"
        for seal in history.seals_in(conn)
        if seal["scope"] == "governance"
        and governance_seal_digest(conn, seal["detail"]) != seal["sealed_sha256"]
    ]


def _alias_problems(settings: Settings, conn: Connection) -> list[str]:
    """Return every model whose MLflow champion alias disagrees with the recorded champion."""
    client = mlflow_client(settings)
    recorded_models = set(conn.execute(sa.select(history.alias_events.c.model).distinct()).scalars())
    try:
        registered = {m.name for m in client.search_registered_models()}
    except MlflowException as exc:
        return [f"cannot list MLflow models to compare aliases: {exc.message}"]
    problems = []
    for model in sorted(recorded_models | registered):
        recorded = history.recorded_champion(history.events_in(conn, model, history.CHAMPION_ALIAS))
        alias = _alias_version(client, model, history.CHAMPION_ALIAS)
        if alias != recorded:
            problems.append(
                f"{model}: MLflow alias champion is {'unset' if alias is None else f'v{alias}'} but the "
                f"governance record says {'none' if recorded is None else f'v{recorded}'}"
            )
    return problems


def audit_governance(settings: Settings) -> list[str]:
    """Return every problem of the governance record (tampering first), or [] when it verifies."""
    with history.raw_engine(settings) as engine, engine.connect() as conn:
        shape, problems = history.schema_shape(conn)
        if shape == "absent":
            return []
        if shape == "pre-chain":
            return [f"the governance history {history.shape_advice(shape, problems)}"]
        tampering = [f"tampering: {p}" for p in problems]
        if any(p.startswith(("table", "column")) for p in problems):
            return tampering  # the chains cannot be read without their tables and columns
        return [*tampering, *chain_problems(conn), *seal_problems(conn), *_alias_problems(settings, conn)]
