"""`orchard audit migrate`, governance side: chain and seal a history written before hash chains.

Only the shape an older Orchard wrote is migrated (alias_events, maybe approvals, without identity_source,
prev_hash, row_hash; with or without the append-only triggers). In one transaction holding the schema lock, the
missing columns are added, the old rows are chained in their stored order exactly as new writes are, the
append-only triggers are recreated, and a seal records who did it, when, how many rows it sealed and their hash.
A history that is chained but broken, or any shape an upgrade cannot explain, is refused as `audit verify` names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from model_registry import history
from model_registry.audit import chain_problems, governance_seal_digest, seal_problems, table_rows
from model_registry.identity import Identity
from orchard.settings import Settings


@dataclass(frozen=True)
class TableFinding:
    """One history table as found: how many rows, and what it lacks."""

    name: str
    rows: int
    absent: bool
    missing_columns: tuple[str, ...]
    missing_triggers: tuple[str, ...]

    def line(self) -> str:
        """Return one line saying what was found in the table; pure."""
        if self.absent:
            return f"  table {self.name}: absent (an Orchard before approvals); it will be created empty"
        lacks = [f"columns {', '.join(self.missing_columns)}"] if self.missing_columns else []
        lacks += [f"append-only triggers {', '.join(self.missing_triggers)}"] if self.missing_triggers else []
        return f"  table {self.name}: {self.rows} unchained row(s); lacks {' and '.join(lacks) or 'nothing'}"


@dataclass(frozen=True)
class GovernanceFindings:
    """What `orchard audit migrate` found in the governance history."""

    where: str
    shape: history.SchemaShape
    problems: tuple[str, ...]
    tables: tuple[TableFinding, ...] = ()

    @property
    def unchained(self) -> int:
        """Return how many rows predate hash chains (0 unless the history has the pre-chain shape)."""
        return sum(t.rows for t in self.tables)

    def lines(self) -> list[str]:
        """Return the report of the governance history, one line per table; pure."""
        if self.shape == "absent":
            return [f"governance history at {self.where}: none yet (nothing to migrate)"]
        if self.shape == "ready":
            return [
                f"governance history at {self.where}: hash-chained, triggers present (nothing to migrate)"
            ]
        if self.shape == "tampered":
            return [f"governance history at {self.where}: tampered with: {'; '.join(self.problems)}"]
        return [
            f"governance history at {self.where}: predates hash chains ({self.unchained} unchained row(s))",
            *(t.line() for t in self.tables),
        ]


def _row_count(conn: Connection, name: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one())


def find_governance(conn: Connection) -> GovernanceFindings:
    """Return what the history holds: its shape, what each table lacks, and any tampering a migration cannot explain."""
    where = conn.engine.url.render_as_string(hide_password=True)
    shape, problems = history.schema_shape(conn)
    if shape == "ready":
        broken = [*chain_problems(conn), *seal_problems(conn)]
        return GovernanceFindings(where, "tampered" if broken else "ready", tuple(broken))
    if shape != "pre-chain":
        return GovernanceFindings(where, shape, tuple(problems))
    columns = history.present_columns(conn)
    missing = history.missing_triggers(conn)
    tables = tuple(
        TableFinding(
            name=name,
            rows=_row_count(conn, name) if name in columns else 0,
            absent=name not in columns,
            missing_columns=tuple(
                c.name for c in table.columns if name in columns and c.name not in columns[name]
            ),
            missing_triggers=tuple(t for t in missing if t.startswith(f"{name}_")),
        )
        for name, table in history.TABLES.items()
    )
    return GovernanceFindings(where, shape, tuple(problems), tables)


@contextmanager
def schema_transaction(settings: Settings) -> Iterator[Connection]:
    """Yield a connection in a write-locked transaction holding the schema lock; commit on success."""
    with history.raw_engine(settings) as engine, engine.connect() as conn:
        conn.execution_options(orchard_write_lock=True)
        with conn.begin():
            history.hold_schema_lock(conn)
            yield conn


def _add_column(conn: Connection, table: sa.Table, name: str) -> None:
    """Add a column the pre-chain schema lacks, NOT NULL, its old rows given LEGACY_FILL (no default is kept)."""
    column = table.c[name]
    kind = column.type.compile(dialect=conn.dialect)
    fill = history.LEGACY_FILL[name].replace("'", "''")
    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind} NOT NULL DEFAULT '{fill}'")
    if conn.dialect.name == "postgresql":  # SQLite cannot drop a column default; every insert sets it anyway
        conn.exec_driver_sql(f"ALTER TABLE {table.name} ALTER COLUMN {name} DROP DEFAULT")


def _chain_table(conn: Connection, table: sa.Table) -> dict[str, int]:
    """Chain a table's rows in id order as new writes would; return how many and the last sealed id."""
    linked = history.link_rows(table, table_rows(conn, table))
    if linked:
        conn.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("_id"))
            .values(prev_hash=sa.bindparam("_prev"), row_hash=sa.bindparam("_hash")),
            [{"_id": r["id"], "_prev": r["prev_hash"], "_hash": r["row_hash"]} for r in linked],
        )
    return {"rows": len(linked), "last_id": max((r["id"] for r in linked), default=0)}


def ensure_seal_table(conn: Connection) -> None:
    """Create the seal table and its append-only triggers if absent."""
    history.chain_seals.create(conn, checkfirst=True)
    history.create_triggers(conn, (history.SEAL_TABLE,))


def record_seal(
    conn: Connection, identity: Identity, scope: str, rows: int, digest: str, detail: dict[str, Any]
) -> dict[str, Any]:
    """Append one seal (hash-chained like every governance record) and return it as stored."""
    ensure_seal_table(conn)
    values = {
        "scope": scope,
        "sealed_at": datetime.now(UTC),
        "identity": identity.name,
        "identity_source": identity.source,
        "rows_sealed": rows,
        "sealed_sha256": digest,
        "detail_json": json.dumps(detail, sort_keys=True),
    }
    stored = history.insert_chained(conn, history.chain_seals, values)
    return {**stored._mapping, "detail": detail}


def seal_governance(conn: Connection, identity: Identity, found: GovernanceFindings) -> dict[str, Any]:
    """Migrate a pre-chain history inside the caller's schema transaction; return the seal recorded."""
    history.drop_triggers(conn, history.APPEND_ONLY_TABLES)
    present = [t for t in found.tables if not t.absent]
    for finding in present:
        for name in finding.missing_columns:
            _add_column(conn, history.TABLES[finding.name], name)
    tables = {t.name: _chain_table(conn, history.TABLES[t.name]) for t in present}
    history.create_schema(conn)  # the absent approvals table, and every append-only trigger
    detail = {
        "tables": tables,
        "columns_added": [f"{t.name}.{c}" for t in present for c in t.missing_columns],
        "triggers_missing": [name for t in found.tables for name in t.missing_triggers],
        "tables_created": [t.name for t in found.tables if t.absent],
    }
    rows = sum(t["rows"] for t in tables.values())
    return record_seal(conn, identity, "governance", rows, governance_seal_digest(conn, detail), detail)
