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
    last: dict[str, str] = {}
    for row in rows:
        expected_prev = last.get(row["model"], history.GENESIS_HASH)
        where = f"{table.name} #{row['id']} ({row['model']})"
        if row["prev_hash"] != expected_prev:
            return f"{where}: does not link to the model's previous record (a record was removed or inserted)"
        if history.row_hash(table, row) != row["row_hash"]:
            return f"{where}: its content does not match its hash (the record was edited)"
        last[row["model"]] = row["row_hash"]
    return None


def _chain_problems(conn: Connection) -> list[str]:
    problems = []
    for table in history.TABLES.values():
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]
        broken = first_broken_link(table, rows)
        if broken is not None:
            problems.append(f"hash chain broken at {broken}")
    return problems


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
        inspector = sa.inspect(conn)
        present = [t for t in history.APPEND_ONLY_TABLES if inspector.has_table(t)]
        if not present:
            return []
        problems = [
            f"tampering: table {t} is missing" for t in history.APPEND_ONLY_TABLES if t not in present
        ]
        if problems:
            return problems
        problems += [
            f"tampering: append-only trigger {t} is missing or disabled"
            for t in history.missing_triggers(conn)
        ]
        columns = history.missing_columns(conn)
        if columns:
            return [*problems, f"tampering or an old schema: columns {', '.join(columns)} are missing"]
        return [*problems, *_chain_problems(conn), *_alias_problems(settings, conn)]
