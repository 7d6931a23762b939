"""Append-only governance history of alias decisions: who moved which alias, when, and why.

Two tables in the database at `settings.registry_db_url` (SQLite embedded, PostgreSQL in production):
- `alias_events`: every alias move that happened (the production history; MLflow keeps none, its issue #2169).
- `approvals`: every request to move `champion` (promotion or rollback), granted or refused, with the approver,
  the reason, the gate result and any override; a granted one links the alias event it produced.
Both are append-only: no function here updates or deletes, and database triggers refuse UPDATE, DELETE (and, on
PostgreSQL, TRUNCATE). Both are hash-chained per model: each row carries the hash of the model's previous row
(`prev_hash`) and its own (`row_hash`), so an edit made with the triggers dropped shows in `orchard audit verify`;
a database whose tables exist without their triggers is reported as tampered with, never silently repaired.
A history written before hash chains is refused too, until `orchard audit migrate` chains its rows and records a
seal (`chain_seals`: who sealed how many unprovable legacy records, when, and their hash). Writers that must be serialised (moving an alias and appending its event) run inside
`locked()`: SQLite `BEGIN IMMEDIATE` (one writer at a time), PostgreSQL a per-model transaction advisory lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine, make_url

from orchard.alias_actions import ACTIONS
from orchard.errors import OrchardError
from orchard.months import parse_month
from orchard.settings import Settings

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
Outcome = Literal["approved", "refused", "unchanged"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
Mode = Literal["person", "policy"]
MODES: tuple[str, ...] = get_args(Mode)
APPEND_ONLY_TABLES = ("alias_events", "approvals")
# Seconds a writer waits for the lock (SQLite busy timeout) before giving up with an error.
LOCK_TIMEOUT_SECONDS = 60

_metadata = sa.MetaData()
alias_events = sa.Table(
    "alias_events",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False, index=True),
    sa.Column("alias", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous_version", sa.Integer, nullable=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("gate_json", sa.Text, nullable=True),
    sa.Column("effective_month", sa.String(7), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("identity_source", sa.String(200), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
)
approvals = sa.Table(
    "approvals",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False, index=True),
    sa.Column("alias", sa.String(100), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("champion_before", sa.Integer, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("override_reason", sa.Text, nullable=True),
    sa.Column("refusal", sa.Text, nullable=True),
    sa.Column("gate_json", sa.Text, nullable=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("alias_events.id"), nullable=True),
    sa.Column("effective_month", sa.String(7), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("identity_source", sa.String(200), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
)
TABLES = {"alias_events": alias_events, "approvals": approvals}
# The first record of a model's chain links to this instead of a previous hash.
GENESIS_HASH = "0" * 64
# What a history written before hash chains lacks (and the value `orchard audit migrate` gives its old rows).
CHAIN_COLUMNS = frozenset({"prev_hash", "row_hash"})
LEGACY_FILL = {"identity_source": "unknown", "prev_hash": "", "row_hash": ""}
# `orchard audit migrate` records here who sealed which unchained legacy records (one chain, append-only too).
SEAL_TABLE = "chain_seals"
_seal_metadata = sa.MetaData()
chain_seals = sa.Table(
    SEAL_TABLE,
    _seal_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(32), nullable=False),
    sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("identity", sa.String(200), nullable=False),
    sa.Column("identity_source", sa.String(200), nullable=False),
    sa.Column("rows_sealed", sa.Integer, nullable=False),
    sa.Column("sealed_sha256", sa.String(64), nullable=False),
    sa.Column("detail_json", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
)
SchemaShape = Literal["absent", "ready", "pre-chain", "tampered"]


@dataclass(frozen=True)
class AliasEvent:
    """One recorded alias decision."""

    id: int
    model: str
    alias: str
    version: int
    previous_version: int | None
    action: str
    reason: str
    approver: str
    gate: dict[str, Any] | None
    effective_month: str
    recorded_at: datetime
    identity_source: str = "unknown"
    prev_hash: str = ""
    row_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict (recorded_at as ISO 8601 UTC)."""
        return {**asdict(self), "recorded_at": self.recorded_at.isoformat()}


@dataclass(frozen=True)
class Approval:
    """One recorded request to move the champion: who asked, why, on what gate, and what came of it."""

    id: int
    model: str
    alias: str
    action: str
    version: int
    champion_before: int | None
    outcome: str
    mode: str
    approver: str
    reason: str
    override_reason: str | None
    refusal: str | None
    gate: dict[str, Any] | None
    event_id: int | None
    effective_month: str
    recorded_at: datetime
    identity_source: str = "unknown"
    prev_hash: str = ""
    row_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the approval as a JSON-ready dict (recorded_at as ISO 8601 UTC)."""
        return {**asdict(self), "recorded_at": self.recorded_at.isoformat()}


_SQLITE_APPEND_ONLY = """
CREATE TRIGGER IF NOT EXISTS {table}_append_only_{verb} BEFORE {verb} ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} is refused'); END
"""
_PG_APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION orchard_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only: % is refused', TG_TABLE_NAME, TG_OP; END $$
"""
_PG_APPEND_ONLY = """
CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION orchard_append_only()
"""
_PG_NO_TRUNCATE = """
CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION orchard_append_only()
"""
_SCHEMA_LOCK_KEY = "orchard.governance.schema"


def _lock_key(name: str) -> int:
    """Return a stable signed 64-bit key for a PostgreSQL advisory lock."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _begin_sqlite(conn: Connection) -> None:
    # A write-locked transaction takes SQLite's RESERVED lock at BEGIN, so two writers queue up here
    # instead of both reading the same state and one failing later on upgrade.
    immediate = conn.get_execution_options().get("orchard_write_lock", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_autocommit(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite otherwise defers it; SQLAlchemy's recipe).
    dbapi_connection.isolation_level = None


def _hold_lock(conn: Connection, key: str) -> None:
    """Take the write lock of a transaction that has just begun (PostgreSQL: advisory lock on key)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(key)})


def hold_schema_lock(conn: Connection) -> None:
    """Take the lock of schema changes in a write-locked transaction that has just begun."""
    _hold_lock(conn, _SCHEMA_LOCK_KEY)


def triggered_tables(conn: Connection) -> tuple[str, ...]:
    """Return the tables that must carry append-only triggers: the history's, and the seals' once they exist."""
    return APPEND_ONLY_TABLES + ((SEAL_TABLE,) if sa.inspect(conn).has_table(SEAL_TABLE) else ())


def trigger_names(dialect: str, tables: tuple[str, ...]) -> list[str]:
    """Return the names of the append-only triggers of tables on a dialect (none on others); pure."""
    if dialect == "sqlite":
        return [f"{t}_append_only_{v}" for t in tables for v in ("UPDATE", "DELETE")]
    if dialect == "postgresql":
        return [f"{t}_{k}" for t in tables for k in ("append_only", "no_truncate")]
    return []


def missing_triggers(conn: Connection) -> list[str]:
    """Return the append-only triggers that should exist on the history tables but do not."""
    wanted = trigger_names(conn.dialect.name, triggered_tables(conn))
    if conn.dialect.name == "sqlite":
        found = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars().all()
    elif conn.dialect.name == "postgresql":
        # a disabled trigger (ALTER TABLE ... DISABLE TRIGGER) is as good as a dropped one
        found = (
            conn.execute(sa.text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'"))
            .scalars()
            .all()
        )
    else:
        return []
    return [name for name in wanted if name not in found]


def present_columns(conn: Connection) -> dict[str, set[str]]:
    """Return the columns of each history table present in the database (absent tables left out)."""
    inspector = sa.inspect(conn)
    return {
        name: {c["name"] for c in inspector.get_columns(name)}
        for name in APPEND_ONLY_TABLES
        if inspector.has_table(name)
    }


def absent_columns(columns: dict[str, set[str]]) -> list[str]:
    """Return `table.column` for each column the present history tables lack; pure."""
    return [
        f"{n}.{c.name}" for n, present in columns.items() for c in TABLES[n].columns if c.name not in present
    ]


def missing_columns(conn: Connection) -> list[str]:
    """Return the columns of the history tables that an older (or edited) schema lacks."""
    return absent_columns(present_columns(conn))


def predates_chains(columns: dict[str, set[str]]) -> bool:
    """Return whether the present history tables have the shape an Orchard before hash chains wrote; pure.

    That is: alias_events present, no table carrying any hash column, and nothing missing but the columns the
    hash chains added (identity_source, prev_hash, row_hash). Anything else cannot be explained by an upgrade.
    """
    if "alias_events" not in columns:
        return False
    return all(
        not present & CHAIN_COLUMNS and {c.name for c in TABLES[name].columns} - present <= LEGACY_FILL.keys()
        for name, present in columns.items()
    )


def schema_shape(conn: Connection) -> tuple[SchemaShape, list[str]]:
    """Return the shape of the history schema (absent, ready, pre-chain, tampered) and what is wrong with it."""
    columns = present_columns(conn)
    if not columns:
        return "absent", []
    problems = [f"table {t} is missing" for t in APPEND_ONLY_TABLES if t not in columns]
    problems += [f"column {c} is missing" for c in absent_columns(columns)]
    problems += [f"append-only trigger {t} is missing or disabled" for t in missing_triggers(conn)]
    if not problems:
        return "ready", []
    return ("pre-chain" if predates_chains(columns) else "tampered"), problems


def shape_advice(shape: SchemaShape, problems: list[str]) -> str:
    """Return what is wrong with a history that is not ready and what the operator can do about it; pure."""
    if shape == "pre-chain":
        return (
            f"predates hash chains: {'; '.join(problems)}. Run `orchard audit migrate` to see what an upgrade "
            "finds, then `orchard audit migrate --accept-unchained-history` to chain and seal the old records"
        )
    return (
        f"has been tampered with: {'; '.join(problems)}. Run `orchard audit verify`, and restore the database "
        "from a trusted backup (a migration cannot explain this shape)"
    )


def _schema_state(conn: Connection) -> Literal["absent", "ready"]:
    """Return whether the history must be created; raise if it predates hash chains or was tampered with."""
    shape, problems = schema_shape(conn)
    if shape == "absent" or shape == "ready":
        return shape
    # Never recreate silently: whoever dropped a trigger could have edited rows meanwhile.
    raise OrchardError(
        f"the governance history at {conn.engine.url.render_as_string(hide_password=True)} "
        f"{shape_advice(shape, problems)}. Nothing was changed"
    )


def create_triggers(conn: Connection, tables: tuple[str, ...]) -> None:
    """Create the append-only triggers of tables (those that exist are kept)."""
    if conn.dialect.name == "sqlite":
        for table in tables:
            for verb in ("UPDATE", "DELETE"):
                conn.exec_driver_sql(_SQLITE_APPEND_ONLY.format(table=table, verb=verb))
    elif conn.dialect.name == "postgresql":
        # sa.text, not exec_driver_sql: the driver would read RAISE's '%' placeholders as its own.
        conn.execute(sa.text(_PG_APPEND_ONLY_FUNCTION))
        for table in tables:
            conn.execute(sa.text(_PG_APPEND_ONLY.format(table=table)))
            conn.execute(sa.text(_PG_NO_TRUNCATE.format(table=table)))


def drop_triggers(conn: Connection, tables: tuple[str, ...]) -> None:
    """Drop the append-only triggers of tables, if present (only `orchard audit migrate` does, in its transaction)."""
    on_table = " ON {table}" if conn.dialect.name == "postgresql" else ""
    for table in tables:
        for name in trigger_names(conn.dialect.name, (table,)):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on_table.format(table=table)}")


def create_schema(conn: Connection) -> None:
    """Create missing tables and the append-only triggers (additive: existing rows are untouched)."""
    _metadata.create_all(conn, checkfirst=True)
    if conn.dialect.name in ("sqlite", "postgresql"):
        create_triggers(conn, APPEND_ONLY_TABLES)
    else:
        log.warning(
            "no append-only triggers for %s: the history relies on having no update path", conn.dialect
        )


@contextmanager
def raw_engine(settings: Settings) -> Iterator[Engine]:
    """Yield an engine on the history database as it is (no schema check: for the audit); dispose afterwards."""
    url = make_url(settings.registry_db_url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = LOCK_TIMEOUT_SECONDS
    engine = sa.create_engine(url, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        sa_event.listen(engine, "connect", _sqlite_autocommit)
        sa_event.listen(engine, "begin", _begin_sqlite)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    """Yield an engine on the history database with its tables and triggers present (created if absent).

    A database whose tables exist but lack a trigger or column is reported as tampered with, never repaired.
    """
    with raw_engine(settings) as engine:
        with engine.connect() as conn:
            state = _schema_state(conn)
        if state == "absent":
            with engine.connect() as conn:
                conn.execution_options(orchard_write_lock=True)
                with conn.begin():
                    hold_schema_lock(conn)
                    if _schema_state(conn) == "absent":
                        create_schema(conn)
        yield engine


@contextmanager
def locked(settings: Settings, model: str) -> Iterator[Connection]:
    """Yield a connection in a transaction holding the model's governance write lock; commit on success.

    SQLite: BEGIN IMMEDIATE (the whole database, one writer at a time; others wait up to LOCK_TIMEOUT_SECONDS).
    PostgreSQL: pg_advisory_xact_lock on the model name, released at commit or rollback.
    """
    with _engine(settings) as engine, engine.connect() as conn:
        conn.execution_options(orchard_write_lock=True)
        with conn.begin():
            _hold_lock(conn, f"orchard.governance.model:{model}")
            yield conn


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def row_hash(table: sa.Table, values: dict[str, Any]) -> str:
    """Return the hash of one history row: its content (every column but id and row_hash) and prev_hash; pure."""
    content = {}
    for column in table.columns:
        if column.name in ("id", "row_hash"):
            continue
        value = values.get(column.name)
        content[column.name] = _utc(value).isoformat() if isinstance(value, datetime) else value
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def chain_key(row: dict[str, Any]) -> str | None:
    """Return which chain a history row belongs to: its model's (the seals form one chain of their own); pure."""
    return row.get("model")


def link_rows(table: sa.Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return rows (in stored order) with prev_hash and row_hash set as new writes would have set them; pure."""
    last: dict[str | None, str] = {}
    linked = []
    for row in rows:
        values = {**row, "prev_hash": last.get(chain_key(row), GENESIS_HASH)}
        values["row_hash"] = last[chain_key(row)] = row_hash(table, values)
        linked.append(values)
    return linked


def sealed_digest(row_hashes: list[str]) -> str:
    """Return the hash of sealed records: of their row hashes in stored order (each covers its content); pure."""
    return hashlib.sha256("\n".join(row_hashes).encode()).hexdigest()


def insert_chained(conn: Connection, table: sa.Table, values: dict[str, Any]) -> sa.Row[Any]:
    """Insert a row linked to the previous row of its chain in the table; return the stored row."""
    query = sa.select(table.c.row_hash).order_by(table.c.id.desc()).limit(1)
    if "model" in table.c:
        query = query.where(table.c.model == values["model"])
    last = conn.execute(query).scalar()
    values = {**values, "prev_hash": last or GENESIS_HASH}
    values["row_hash"] = row_hash(table, values)
    key = conn.execute(sa.insert(table).values(**values)).inserted_primary_key
    if key is None:  # a single-row insert always has one
        raise RuntimeError(f"the insert into {table.name} returned no primary key")
    new_id = key[0]
    return conn.execute(sa.select(table).where(table.c.id == new_id)).one()


def _event(row: sa.Row[Any]) -> AliasEvent:
    recorded_at = _utc(row.recorded_at)  # sqlite drops the zone; we always store UTC
    return AliasEvent(
        id=row.id,
        model=row.model,
        alias=row.alias,
        version=row.version,
        previous_version=row.previous_version,
        action=row.action,
        reason=row.reason,
        approver=row.approver,
        gate=json.loads(row.gate_json) if row.gate_json else None,
        effective_month=row.effective_month,
        recorded_at=recorded_at,
        identity_source=row.identity_source,
        prev_hash=row.prev_hash,
        row_hash=row.row_hash,
    )


def check_event(*, action: str, reason: str, approver: str, effective_month: str) -> None:
    """Raise a clear error if an alias event would be incomplete (checked before anything moves)."""
    if action not in ACTIONS:
        raise OrchardError(f"unknown alias action {action!r}: expected one of {', '.join(ACTIONS)}")
    if not isinstance(reason, str) or not reason.strip():
        raise OrchardError(f"alias event {action!r} needs a reason")
    if not isinstance(approver, str) or not approver.strip():
        raise OrchardError(f"alias event {action!r} needs an approver")
    parse_month(effective_month)


def append_event(
    conn: Connection,
    *,
    model: str,
    alias: str,
    version: int,
    previous_version: int | None,
    action: str,
    reason: str,
    approver: str,
    gate: dict[str, Any] | None,
    effective_month: str,
    identity_source: str,
) -> AliasEvent:
    """Append one alias event on a connection inside `locked()` and return it (never updates or deletes)."""
    check_event(action=action, reason=reason, approver=approver, effective_month=effective_month)
    values = {
        "model": model,
        "alias": alias,
        "version": int(version),
        "previous_version": None if previous_version is None else int(previous_version),
        "action": action,
        "reason": reason,
        "approver": approver,
        "gate_json": None if gate is None else json.dumps(gate, sort_keys=True, default=str),
        "effective_month": effective_month,
        "recorded_at": datetime.now(UTC),
        "identity_source": identity_source,
    }
    return _event(insert_chained(conn, alias_events, values))


def _approval(row: sa.Row[Any]) -> Approval:
    return Approval(
        id=row.id,
        model=row.model,
        alias=row.alias,
        action=row.action,
        version=row.version,
        champion_before=row.champion_before,
        outcome=row.outcome,
        mode=row.mode,
        approver=row.approver,
        reason=row.reason,
        override_reason=row.override_reason,
        refusal=row.refusal,
        gate=json.loads(row.gate_json) if row.gate_json else None,
        event_id=row.event_id,
        effective_month=row.effective_month,
        recorded_at=_utc(row.recorded_at),
        identity_source=row.identity_source,
        prev_hash=row.prev_hash,
        row_hash=row.row_hash,
    )


def append_approval(
    conn: Connection,
    *,
    model: str,
    action: str,
    version: int,
    champion_before: int | None,
    outcome: str,
    mode: str,
    approver: str,
    reason: str,
    override_reason: str | None,
    refusal: str | None,
    gate: dict[str, Any] | None,
    event_id: int | None,
    effective_month: str,
    identity_source: str,
) -> Approval:
    """Append one champion request (granted or refused) on a connection inside `locked()` and return it."""
    check_event(action=action, reason=reason, approver=approver, effective_month=effective_month)
    if action not in ("promote", "rollback"):
        raise OrchardError(f"approvals record promotions and rollbacks of the champion, not {action!r}")
    if outcome not in OUTCOMES:
        raise OrchardError(f"unknown approval outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}")
    if mode not in MODES:
        raise OrchardError(f"unknown approval mode {mode!r}: expected one of {', '.join(MODES)}")
    if (outcome == "approved") != (event_id is not None):
        raise OrchardError("an approved request links exactly the alias event it produced; others link none")
    values = {
        "model": model,
        "alias": CHAMPION_ALIAS,
        "action": action,
        "version": int(version),
        "champion_before": None if champion_before is None else int(champion_before),
        "outcome": outcome,
        "mode": mode,
        "approver": approver,
        "reason": reason,
        "override_reason": override_reason,
        "refusal": refusal,
        "gate_json": None if gate is None else json.dumps(gate, sort_keys=True, default=str),
        "event_id": event_id,
        "effective_month": effective_month,
        "recorded_at": datetime.now(UTC),
        "identity_source": identity_source,
    }
    return _approval(insert_chained(conn, approvals, values))


def events_in(conn: Connection, model: str, alias: str | None = None) -> list[AliasEvent]:
    """Return the model's events in recorded order, read on a given connection (e.g. inside `locked()`)."""
    query = sa.select(alias_events).where(alias_events.c.model == model)
    if alias is not None:
        query = query.where(alias_events.c.alias == alias)
    return [_event(row) for row in conn.execute(query.order_by(alias_events.c.id)).all()]


def approvals_in(conn: Connection, model: str) -> list[Approval]:
    """Return the model's champion requests in recorded order, read on a given connection."""
    query = sa.select(approvals).where(approvals.c.model == model).order_by(approvals.c.id)
    return [_approval(row) for row in conn.execute(query).all()]


def approvals_of(settings: Settings, model: str) -> list[Approval]:
    """Return every recorded champion request of the model (granted or refused) in recorded order."""
    with _engine(settings) as engine, engine.connect() as conn:
        return approvals_in(conn, model)


def events(settings: Settings, model: str, alias: str | None = None) -> list[AliasEvent]:
    """Return the model's events in the order they were recorded (optionally of one alias)."""
    with _engine(settings) as engine, engine.connect() as conn:
        return events_in(conn, model, alias)


def last_event(settings: Settings, model: str, alias: str) -> AliasEvent | None:
    """Return the most recently recorded event of one alias of a model, if any."""
    found = events(settings, model, alias)
    return found[-1] if found else None


def event_in_force_by_month(recorded: list[AliasEvent], month: str) -> AliasEvent | None:
    """Return the event that set the alias in force at the end of a business month (pure, over one alias)."""
    parse_month(month)
    latest: AliasEvent | None = None
    for event in recorded:
        # Decisions are ordered by business month first, then by when they were recorded.
        if event.effective_month <= month and (
            latest is None or (event.effective_month, event.id) >= (latest.effective_month, latest.id)
        ):
            latest = event
    return latest


def event_in_force_at(recorded: list[AliasEvent], when: datetime) -> AliasEvent | None:
    """Return the event that set the alias in force at an instant, by recorded time (pure, over one alias)."""
    moment = _utc(when)
    before = [e for e in recorded if e.recorded_at <= moment]
    return max(before, key=lambda e: (e.recorded_at, e.id)) if before else None


def alias_at(settings: Settings, model: str, alias: str, month: str) -> int | None:
    """Return the version the alias pointed at by the end of a business month, from the history."""
    latest = event_in_force_by_month(events(settings, model, alias), month)
    return latest.version if latest else None


def recorded_champion(recorded: list[AliasEvent]) -> int | None:
    """Return the champion the record says is in force now: the last recorded champion event's version; pure."""
    champions = [e for e in recorded if e.alias == CHAMPION_ALIAS]
    return champions[-1].version if champions else None


def recorded_champion_now(settings: Settings, model: str, *, wait_for_writers: bool = False) -> int | None:
    """Return the recorded champion; with wait_for_writers, read it after any governance write in progress."""
    if not wait_for_writers:
        return recorded_champion(events(settings, model, CHAMPION_ALIAS))
    with locked(settings, model) as conn:
        return recorded_champion(events_in(conn, model, CHAMPION_ALIAS))


def champion_at(settings: Settings, model: str, month: str) -> int | None:
    """Return the champion version in force at the end of a business month (None before the first)."""
    return alias_at(settings, model, CHAMPION_ALIAS, month)


def seals_in(conn: Connection) -> list[dict[str, Any]]:
    """Return the recorded seals of legacy records in order, their detail parsed ([] before any migration)."""
    if not sa.inspect(conn).has_table(SEAL_TABLE):
        return []
    rows = conn.execute(sa.select(chain_seals).order_by(chain_seals.c.id)).all()
    return [{**r._mapping, "detail": json.loads(r.detail_json)} for r in rows]


def seal_line(seal: dict[str, Any]) -> str:
    """Return one line saying what a seal covers and who made it; pure."""
    return (
        f"seal #{seal['id']}: {seal['rows_sealed']} {seal['scope']} record(s) written before hash chains, sealed "
        f"by {seal['identity']} ({seal['identity_source']}) at {_utc(seal['sealed_at']).isoformat()} "
        f"(sha256 {seal['sealed_sha256'][:16]}…)"
    )
