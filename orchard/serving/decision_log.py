"""The append-only, hash-chained decision log: Parquet files in the embedded profile, a SQL table in production.

A request's record is written before the request is answered (group commit): request threads queue their
records and wait; one writer thread takes everything queued (up to `decision_flush_rows`) and writes it as ONE
new Parquet file (0600, fsynced, atomically renamed, directory fsynced) or one INSERT transaction, then wakes
the waiting requests. A write that fails, a full queue or a wait past `decision_log_timeout_seconds` makes the
request fail (the API answers 503), so an answered decision is always on disk. Each row carries a sequence
number, the hash of the previous row and its own hash; `orchard audit verify` names the first broken row.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orchard.errors import OrchardError
from orchard.settings import ServingConfig, Settings

log = logging.getLogger(__name__)

TABLE = "decision_log"
_JSON_FIELDS = ("model_versions", "inputs", "request", "feature_freshness", "policy", "result")
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("logged_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("decision", pa.string()),
        pa.field("pd", pa.float64()),
        pa.field("score", pa.float64()),
        pa.field("band", pa.string()),
        *(pa.field(name, pa.string()) for name in _JSON_FIELDS),
        pa.field("seq", pa.int64()),
        pa.field("prev_hash", pa.string()),
        pa.field("row_hash", pa.string()),
    ]
)
GENESIS_HASH = "0" * 64
_REPLACES = (
    b"orchard.replaces"  # Parquet metadata of a migration's chained copy: the legacy files it replaces
)
_METADATA = sa.MetaData()
DECISION_TABLE = sa.Table(
    TABLE,
    _METADATA,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("decision", sa.String(16)),
    sa.Column("pd", sa.Float),
    sa.Column("score", sa.Float),
    sa.Column("band", sa.String(8)),
    *(sa.Column(name, sa.Text) for name in _JSON_FIELDS),
    sa.Column("seq", sa.BigInteger, unique=True),
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("row_hash", sa.String(64)),
)


class DecisionLogUnavailable(OrchardError):
    """The decision log cannot confirm a record: the request must not be answered as decided."""


def decision_row_hash(row: dict[str, Any]) -> str:
    """Return the hash of a stored decision row: every column but row_hash, canonically; pure."""
    content = {}
    for name in SCHEMA.names:
        if name == "row_hash":
            continue
        value = row.get(name)
        if isinstance(value, datetime):
            value = (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
        content[name] = value
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def link_decision_rows(rows: list[dict[str, Any]], seq: int, prev_hash: str) -> list[dict[str, Any]]:
    """Return flat rows appended after (seq, prev_hash): numbered and hash-linked, in the given order; pure."""
    linked = []
    for row in rows:
        seq += 1
        row = {**row, "seq": seq, "prev_hash": prev_hash}
        row["row_hash"] = prev_hash = decision_row_hash(row)
        linked.append(row)
    return linked


def chain_rows(records: list[DecisionRecord], seq: int, prev_hash: str) -> list[dict[str, Any]]:
    """Return the stored rows of records appended after (seq, prev_hash): numbered and hash-linked; pure."""
    return link_decision_rows([record.row() for record in records], seq, prev_hash)


def first_broken_row(rows: list[dict[str, Any]]) -> str | None:
    """Return the first stored row (in sequence order) that breaks the chain, or None; pure."""
    chained = [r for r in rows if r.get("seq") is not None]
    if len(chained) != len(rows):
        return (
            f"{len(rows) - len(chained)} record(s) carry no sequence number or hash (written before hash chains: "
            "see `orchard audit migrate`)"
        )
    prev, expected = GENESIS_HASH, 1
    for row in sorted(chained, key=lambda r: r["seq"]):
        where = f"decision log record seq {row['seq']} (request {row['request_id']})"
        if row["seq"] != expected:
            return f"{where}: expected seq {expected} (records are missing)"
        if row["prev_hash"] != prev:
            return f"{where}: does not link to the previous record (a record was removed or inserted)"
        if decision_row_hash(row) != row["row_hash"]:
            return f"{where}: its content does not match its hash (the record was edited)"
        prev, expected = row["row_hash"], expected + 1
    return None


@dataclass(frozen=True)
class DecisionRecord:
    """One logged request: what came in, what the models saw, which versions decided, and the result."""

    request_id: str
    kind: str  # "decision" (application) | "score" (one model)
    logged_at: datetime
    customer_id: str
    model: str  # "application" for decisions, else the scored model's name
    model_versions: dict[str, int | None]
    inputs: dict[str, Any] | None  # the feature values used; None = customer unknown to the store
    request: dict[str, Any]
    feature_freshness: dict[str, Any]
    policy: dict[str, Any]
    result: dict[str, Any]
    # read back from the log: whether the stored row still matches its hash (None: not read, or unchained)
    intact: bool | None = field(default=None, compare=False)

    def row(self) -> dict[str, Any]:
        """Return the flat row stored in Parquet or SQL (nested fields as canonical JSON)."""
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "logged_at": self.logged_at,
            "customer_id": self.customer_id,
            "model": self.model,
            "decision": self.result.get("decision"),
            "pd": self.result.get("pd"),
            "score": self.result.get("score"),
            "band": self.result.get("band"),
            **{name: json.dumps(getattr(self, name), sort_keys=True) for name in _JSON_FIELDS},
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DecisionRecord:
        """Rebuild a record from a stored row."""
        logged_at = pd.Timestamp(row["logged_at"])
        logged_at = logged_at.tz_localize(UTC) if logged_at.tzinfo is None else logged_at.tz_convert(UTC)
        return cls(
            request_id=row["request_id"],
            kind=row["kind"],
            logged_at=logged_at.to_pydatetime(),
            customer_id=row["customer_id"],
            model=row["model"],
            **{name: json.loads(row[name]) for name in _JSON_FIELDS},
            intact=None if not row.get("row_hash") else decision_row_hash(row) == row["row_hash"],
        )


def new_request_id() -> str:
    """Return a fresh request id (a UUID4 hex string)."""
    return uuid.uuid4().hex


class DecisionSink(Protocol):
    """Where records go: every write appends durably and hash-chained, nothing is ever updated."""

    def write(self, records: list[DecisionRecord]) -> None:
        """Append records durably (on disk or committed) before returning."""
        ...

    def find(self, request_id: str) -> DecisionRecord | None:
        """Return the record of a request id, or None."""
        ...

    def read(self) -> pd.DataFrame:
        """Return every record as flat rows."""
        ...

    def rows(self) -> list[dict[str, Any]]:
        """Return every stored row as it is stored (for verifying the chain)."""
        ...


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(target: Path, write: Any) -> None:
    """Write a file readable by its owner only, fsynced, renamed into place, with its directory fsynced."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)


class ParquetDecisionSink:
    """One new Parquet file per group commit under decisions/date=YYYY-MM-DD/, named by its first seq.

    Files are 0600 in 0700 folders (they hold customer inputs). Writers in several processes take an exclusive
    lock on decisions/.lock, so the chain has one order; the head (last seq and hash) is re-derived from the
    newest file whenever a file newer than the head file exists (a writer that died between the two writes).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _head(self) -> tuple[int, str]:
        """Return (last seq, last hash) of the chain; call under the lock."""
        head_file = self.folder / "head.json"
        head: dict[str, Any] = (
            json.loads(head_file.read_text()) if head_file.exists() else {"seq": 0, "hash": GENESIS_HASH}
        )
        # only the next file name needs looking for: a listing of every file would grow with the log
        while newer := sorted(self.folder.glob(f"date=*/part-{head['seq'] + 1:012d}.parquet")):
            last = pq.read_table(newer[-1], columns=["seq", "row_hash"]).to_pylist()[-1]
            head = {"seq": last["seq"], "hash": last["row_hash"]}
        return int(head["seq"]), str(head["hash"])

    def write(self, records: list[DecisionRecord]) -> None:
        """Append records as one new file (fsynced) and move the head; return once both are on disk."""
        if not records:
            return
        with self._exclusive():
            seq, prev = self._head()
            rows = chain_rows(records, seq, prev)
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            day = records[0].logged_at.strftime("%Y-%m-%d")
            _write_private(
                self.folder / f"date={day}" / f"part-{seq + 1:012d}.parquet",
                lambda fh: pq.write_table(table, fh),
            )
            head = json.dumps({"seq": rows[-1]["seq"], "hash": rows[-1]["row_hash"]}).encode()
            _write_private(self.folder / "head.json", lambda fh: fh.write(head))

    def _files(self) -> list[str]:
        return sorted((str(p) for p in self.folder.glob("date=*/part-*.parquet")), key=_first_seq)

    def _table(self, files: list[str] | None = None, **kwargs: Any) -> pa.Table:
        files = self._files() if files is None else files
        if not files:
            return SCHEMA.empty_table()
        return ds.dataset(files, schema=SCHEMA, format="parquet").to_table(**kwargs)

    def legacy(self) -> LegacyLog:
        """Return what the log holds from before hash chains, in stored order, and what does not fit either shape.

        Legacy files are named by time (part-<timestamp>-<id>) and carry no chain columns; chained files are
        named by their first seq and carry them. A file of one name with the other's columns cannot be explained
        by an upgrade, nor can a chained part that does not verify.
        """
        chained: list[str] = []
        legacy: list[str] = []
        problems: list[str] = []
        copies: dict[str, list[str]] = {}
        for path in self._files():
            schema = pq.read_schema(path)
            has_chain = {"seq", "prev_hash", "row_hash"} <= set(schema.names)
            if has_chain != Path(path).stem.removeprefix("part-").isdigit():
                named = "an unchained file's name" if has_chain else "a chained part's name"
                problems.append(f"file {path} has {named} but {'' if has_chain else 'no '}hash-chain columns")
            (chained if has_chain else legacy).append(path)
            if has_chain and _REPLACES in (schema.metadata or {}):
                copies[path] = [str(self.folder / f) for f in json.loads(schema.metadata[_REPLACES])]
        broken = first_broken_row(self._table(chained).to_pylist())
        if broken is not None:
            problems.append(f"decision log hash chain broken at {broken}")
        interrupted = [(copy, olds) for copy, olds in copies.items() if set(olds) & set(legacy)]
        if interrupted:
            return self._interrupted(interrupted, legacy, problems)
        rows = [row for path in legacy for row in pq.read_table(path).to_pylist()]
        return LegacyLog(str(self.folder), tuple(legacy), rows, self._head(), tuple(problems))

    def _interrupted(
        self, copies: list[tuple[str, list[str]]], legacy: list[str], problems: list[str]
    ) -> LegacyLog:
        """Return the state an interrupted migration left: its chained copy (kept), and the old files it replaces.

        The copy is part of the chain (later group commits may link to it), so it is kept; it must hold exactly
        the old files' records, and they must be all the unchained files left.
        """
        (copy, olds), *more = copies
        rows = pq.read_table(copy).to_pylist()
        old_rows = [row for path in olds for row in pq.read_table(path).to_pylist()]
        unchained = [{k: v for k, v in r.items() if k not in _CHAIN_COLUMNS} for r in rows]
        if more or sorted(olds) != sorted(legacy) or unchained != old_rows:
            problems.append(
                f"file {copy}, the chained copy an interrupted migration left, does not match the unchained "
                f"files {', '.join(legacy)}"
            )
        return LegacyLog(str(self.folder), tuple(olds), rows, self._head(), tuple(problems), resumed=copy)

    def seal_legacy(self, record_seal: Callable[[LegacyLog, list[dict[str, Any]]], None]) -> LegacyLog:
        """Chain the legacy rows after the head as one new file, call record_seal(log, rows), remove the old files.

        record_seal is called even when there is nothing to chain (with no rows), still under the lock.

        Everything runs under the log's lock (no decision is appended meanwhile). The new file is written as every
        group commit is (0600, fsynced, renamed); if record_seal raises (the seal's transaction did not commit),
        the new file is removed and the log is as it was. The legacy files go only once the seal is recorded.
        The new file names the files it replaces (Parquet metadata): a run killed before they were removed leaves
        both, and the next run keeps that copy (it is in the chain), seals it unless sealed and removes them.
        """
        with self._exclusive():
            found = self.legacy()
            if found.problems:
                raise OrchardError(
                    f"the decision log at {self.folder} cannot be migrated: {'; '.join(found.problems)}"
                )
            rows = found.chained()
            if not rows or found.resumed:  # an interrupted migration's copy is in the chain already: keep it
                record_seal(found, rows)
                self._remove(found.files)
                return found
            day = rows[0]["logged_at"].strftime("%Y-%m-%d")
            target = self.folder / f"date={day}" / f"part-{rows[0]['seq']:012d}.parquet"
            replaces = json.dumps([str(Path(f).relative_to(self.folder)) for f in found.files])
            table = pa.Table.from_pylist(rows, schema=SCHEMA.with_metadata({_REPLACES: replaces}))
            _write_private(target, lambda fh: pq.write_table(table, fh))
            try:
                record_seal(found, rows)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            head = json.dumps({"seq": rows[-1]["seq"], "hash": rows[-1]["row_hash"]}).encode()
            _write_private(self.folder / "head.json", lambda fh: fh.write(head))
            self._remove(found.files)
            return found

    @staticmethod
    def _remove(files: tuple[str, ...]) -> None:
        """Remove the sealed legacy files, each removal made durable."""
        for path in files:
            Path(path).unlink()
            _fsync_dir(Path(path).parent)

    def find(self, request_id: str) -> DecisionRecord | None:
        """Return the record of a request id, scanning only the request_id column first."""
        rows = self._table(filter=ds.field("request_id") == request_id).to_pylist()
        return DecisionRecord.from_row(rows[0]) if rows else None

    def read(self) -> pd.DataFrame:
        """Return every record as flat rows, in append order."""
        return self._table().to_pandas()

    def rows(self) -> list[dict[str, Any]]:
        """Return every stored row as stored, in append order."""
        return self._table().to_pylist()


@dataclass(frozen=True)
class LegacyLog:
    """The records a Parquet decision log holds from before hash chains, and where its chain ends."""

    where: str
    files: tuple[str, ...]
    rows: list[dict[str, Any]]
    head: tuple[int, str]
    problems: tuple[str, ...] = ()
    table: str | None = None  # the SQL table (production profile); None: Parquet files
    missing_columns: tuple[str, ...] = ()  # chain columns the SQL table lacks
    resumed: str | None = None  # the chained copy of `files` an interrupted migration left (rows: its rows)

    def chained(self) -> list[dict[str, Any]]:
        """Return the legacy rows numbered and linked after the head, exactly as new writes are; pure."""
        return self.rows if self.resumed else link_decision_rows(self.rows, *self.head)

    def summary(self) -> str:
        """Return one line saying what was found; pure."""
        if not self.rows:
            return f"decision log at {self.where}: every record is hash-chained (head seq {self.head[0]})"
        if self.resumed:
            return (
                f"decision log at {self.where}: an interrupted migration left {len(self.files)} unchained file(s) "
                f"and their chained copy {self.resumed} ({len(self.rows)} record(s)): to be sealed, the old "
                "files removed"
            )
        lacks = f" (lacks columns {', '.join(self.missing_columns)})" if self.missing_columns else ""
        stored = f"in {len(self.files)} file(s)" if self.table is None else f"in table {self.table}{lacks}"
        return (
            f"decision log at {self.where}: {len(self.rows)} unchained record(s) {stored} "
            f"written before hash chains (to be chained after seq {self.head[0]})"
        )


def _first_seq(path: str) -> int:
    """Return the first sequence number a part file holds (older unchained files sort first as 0)."""
    stem = Path(path).stem.removeprefix("part-")
    return int(stem) if stem.isdigit() else 0


class SqlDecisionSink:
    """The decision_log table (created if absent); each write is one transaction under a chain lock."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._local_lock = threading.Lock()  # SQLite: one writer per process (production uses PostgreSQL)
        _METADATA.create_all(self.engine, tables=[DECISION_TABLE], checkfirst=True)

    def write(self, records: list[DecisionRecord]) -> None:
        """Append records in one transaction, linked to the table's last row; return once committed."""
        if not records:
            return
        with self._local_lock, self.engine.begin() as conn:
            hold_chain_lock(conn)
            conn.execute(DECISION_TABLE.insert(), chain_rows(records, *sql_head(conn)))

    def find(self, request_id: str) -> DecisionRecord | None:
        """Return the record of a request id, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(DECISION_TABLE).where(DECISION_TABLE.c.request_id == request_id)
            ).first()
        return DecisionRecord.from_row(dict(row._mapping)) if row else None

    def read(self) -> pd.DataFrame:
        """Return every record as flat rows, oldest first."""
        return pd.DataFrame(self.rows(), columns=SCHEMA.names)

    def rows(self) -> list[dict[str, Any]]:
        """Return every stored row as stored, in sequence order; raise if the table predates hash chains."""
        with self.engine.connect() as conn:
            if missing := missing_chain_columns(conn):
                raise OrchardError(
                    f"the decision table at {self.engine.url.render_as_string(hide_password=True)} predates hash "
                    f"chains (lacks columns {', '.join(missing)}): see `orchard audit migrate`"
                )
            query = sa.select(DECISION_TABLE).order_by(DECISION_TABLE.c.seq, DECISION_TABLE.c.logged_at)
            return [dict(r._mapping) for r in conn.execute(query)]

    def dispose(self) -> None:
        """Close the engine's connections."""
        self.engine.dispose()


_CHAIN_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"orchard.decision_log.chain").digest()[:8], "big", signed=True
)
_CHAIN_COLUMNS = ("seq", "prev_hash", "row_hash")


def hold_chain_lock(conn: Connection) -> None:
    """Take the decision table's write lock for the transaction that has just begun (PostgreSQL; SQLite locks)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})


def sql_head(conn: Connection) -> tuple[int, str]:
    """Return (last seq, last hash) of the decision table's chain; call under the chain lock."""
    last = conn.execute(
        sa.select(DECISION_TABLE.c.seq, DECISION_TABLE.c.row_hash)
        .where(DECISION_TABLE.c.seq.is_not(None))
        .order_by(DECISION_TABLE.c.seq.desc())
        .limit(1)
    ).first()
    return (0, GENESIS_HASH) if last is None else (int(last.seq), str(last.row_hash))


def decision_db_url(settings: Settings, config: ServingConfig) -> str:
    """Return the database of the production decision log: its own URL if configured, else the governance one."""
    return config.decision_db_url or settings.registry_db_url


def _stored_rows(conn: Connection, names: list[str]) -> list[dict[str, Any]]:
    """Return the decision table's rows (only the columns present), in the order they were logged."""
    columns = [DECISION_TABLE.c[n] for n in names]
    query = sa.select(*columns).order_by(DECISION_TABLE.c.logged_at, DECISION_TABLE.c.request_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def _present_columns(conn: Connection) -> set[str]:
    """Return the columns the decision table has (none if it is absent)."""
    inspector = sa.inspect(conn)
    return {c["name"] for c in inspector.get_columns(TABLE)} if inspector.has_table(TABLE) else set()


def missing_chain_columns(conn: Connection) -> tuple[str, ...]:
    """Return the chain columns an existing decision table lacks (written before hash chains, or tampered)."""
    present = _present_columns(conn)
    return tuple(c for c in _CHAIN_COLUMNS if present and c not in present)


def _sql_shape_problems(present: set[str], rows: list[dict[str, Any]]) -> list[str]:
    """Return what no table written before hash chains can hold: some chain columns, half-chained rows; pure."""
    found = [c for c in _CHAIN_COLUMNS if c in present]
    if found and len(found) != len(_CHAIN_COLUMNS):
        return [
            f"table {TABLE} has chain columns {', '.join(found)} but not all of {', '.join(_CHAIN_COLUMNS)}"
        ]
    half = [r["request_id"] for r in rows if {r.get(c) is None for c in _CHAIN_COLUMNS} == {True, False}]
    return [f"request {rid}: some chain columns are empty, others not" for rid in half[:3]]


def sql_legacy(conn: Connection) -> LegacyLog:
    """Return what the decision table holds from before hash chains, in logged order, and any tampering.

    A table an older Orchard wrote lacks the chain columns, or holds rows with all three empty; chained rows
    (if any) must verify. Any other shape (some chain columns only, half-chained rows) cannot be explained.
    """
    where = conn.engine.url.render_as_string(hide_password=True)
    present = _present_columns(conn)
    if not present:
        return LegacyLog(where, (), [], (0, GENESIS_HASH), table=TABLE)
    rows = _stored_rows(conn, [c.name for c in DECISION_TABLE.columns if c.name in present])
    problems = _sql_shape_problems(present, rows)
    missing = tuple(c for c in _CHAIN_COLUMNS if c not in present)
    if problems or missing:
        return LegacyLog(where, (), rows, (0, GENESIS_HASH), tuple(problems), TABLE, missing)
    chained = [r for r in rows if r["seq"] is not None]
    broken = first_broken_row(chained)
    problems = [f"decision log hash chain broken at {broken}"] if broken is not None else []
    legacy = [r for r in rows if r["seq"] is None]
    return LegacyLog(where, (), legacy, sql_head(conn), tuple(problems), TABLE)


def seal_sql_legacy(conn: Connection, found: LegacyLog) -> list[dict[str, Any]]:
    """Add the missing chain columns and chain the legacy rows after the head, in the caller's transaction.

    Call under the chain lock with what sql_legacy found in the same transaction; return the chained rows.
    """
    for name in found.missing_columns:
        kind = DECISION_TABLE.c[name].type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind}")
    if "seq" in found.missing_columns:  # as the current table's unique seq
        conn.exec_driver_sql(f"CREATE UNIQUE INDEX {TABLE}_seq_key ON {TABLE} (seq)")
    rows = found.chained()
    if rows:
        conn.execute(
            sa.update(DECISION_TABLE)
            .where(DECISION_TABLE.c.request_id == sa.bindparam("_id"))
            .values(
                seq=sa.bindparam("_seq"), prev_hash=sa.bindparam("_prev"), row_hash=sa.bindparam("_hash")
            ),
            [
                {"_id": r["request_id"], "_seq": r["seq"], "_prev": r["prev_hash"], "_hash": r["row_hash"]}
                for r in rows
            ],
        )
    return rows


def open_sink(settings: Settings, config: ServingConfig) -> DecisionSink:
    """Return the decision log of the profile: Parquet when embedded, the database in production."""
    if settings.profile == "production":
        return SqlDecisionSink(decision_db_url(settings, config))
    return ParquetDecisionSink(settings.decisions_dir)


@dataclass
class _Waiting:
    """A record waiting for its group commit, and what came of it."""

    record: DecisionRecord
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class DecisionLogWriter:
    """Group commit: request threads wait in `append` until the writer thread has their record on disk."""

    def __init__(self, sink: DecisionSink, max_batch: int, max_waiting: int, timeout_seconds: float) -> None:
        self.sink = sink
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._timeout_seconds = timeout_seconds
        self._queue: deque[_Waiting] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def append(self, record: DecisionRecord) -> None:
        """Return once the record is durably logged; raise DecisionLogUnavailable if it cannot be."""
        waiting = _Waiting(record)
        with self._cond:
            if self._closing or self._thread is None:
                raise DecisionLogUnavailable("the decision log is not running")
            if len(self._queue) >= self._max_waiting:
                raise DecisionLogUnavailable(f"the decision log queue is full ({self._max_waiting} waiting)")
            self._queue.append(waiting)
            self._cond.notify()
        if not waiting.done.wait(self._timeout_seconds):
            raise DecisionLogUnavailable(f"the decision log did not confirm within {self._timeout_seconds} s")
        if waiting.error is not None:
            raise DecisionLogUnavailable(f"the decision log cannot be written: {waiting.error}")

    def pending(self) -> int:
        """Return how many records wait for their group commit."""
        return len(self._queue)

    def _next_batch(self) -> list[_Waiting] | None:
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            return [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            error = None
            try:
                self.sink.write([w.record for w in batch])
            except Exception as exc:  # any sink failure: the waiting requests fail closed
                log.exception("decision log write failed; %d requests answered 503", len(batch))
                error = f"{type(exc).__name__}: {exc}"
            for waiting in batch:
                waiting.error = error
                waiting.done.set()

    def start(self) -> None:
        """Start the writer thread."""
        with self._cond:
            self._closing = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Refuse new records, write what is queued, and stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def find_decision(settings: Settings, request_id: str, config: ServingConfig | None = None) -> DecisionRecord:
    """Return the logged record of a request id, or raise naming the id and where it was looked for."""
    config = config or settings.serving
    sink = open_sink(settings, config)
    record = sink.find(request_id)
    if record is None:
        where = "the decision table" if settings.profile == "production" else str(settings.decisions_dir)
        raise OrchardError(f"request id {request_id!r} is not in the decision log ({where})")
    return record


def iter_inputs(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Yield the inputs of each logged row that had any (unknown customers are skipped)."""
    for text in frame["inputs"]:
        inputs = json.loads(text) if isinstance(text, str) else None
        if inputs:
            yield inputs


def decision_inputs(settings: Settings, config: ServingConfig | None = None) -> pd.DataFrame:
    """Return the logged decisions with their inputs as columns: live traffic for PSI/CSI monitoring."""
    frame = open_sink(settings, config or settings.serving).read()
    frame = frame[frame["kind"] == "decision"].reset_index(drop=True)
    known = frame["inputs"].map(lambda t: bool(json.loads(t)) if isinstance(t, str) else False)
    inputs = pd.DataFrame(list(iter_inputs(frame)), index=frame.index[known.to_numpy()])
    flat = frame.loc[known.to_numpy(), ["request_id", "logged_at", "customer_id", "decision", "pd", "score"]]
    return pd.concat([flat, inputs], axis=1).reset_index(drop=True)
