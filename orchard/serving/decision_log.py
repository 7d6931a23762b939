"""The append-only decision log: Parquet files in the embedded profile, a SQL table in production.

Requests append records to an in-memory buffer; a writer thread flushes it every `decision_flush_seconds`
(or at `decision_flush_rows`) as ONE new Parquet file (written atomically, never rewritten) or one
multi-row INSERT, and on shutdown. A hard crash can lose at most the last flush interval.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import sqlalchemy as sa

from orchard.atomic import atomic_path
from orchard.errors import OrchardError
from orchard.serving.config import ServingConfig
from orchard.settings import Settings

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
    ]
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
)


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
        )


def new_request_id() -> str:
    """Return a fresh request id (a UUID4 hex string)."""
    return uuid.uuid4().hex


class DecisionSink(Protocol):
    """Where flushed records go: every write appends, nothing is ever updated."""

    def write(self, records: list[DecisionRecord]) -> None:
        """Append records."""
        ...

    def find(self, request_id: str) -> DecisionRecord | None:
        """Return the record of a request id, or None."""
        ...

    def read(self) -> pd.DataFrame:
        """Return every record as flat rows."""
        ...


def decisions_dir(settings: Settings) -> Path:
    """Return the folder of the Parquet decision log (embedded profile)."""
    return settings.home / "decisions"


class ParquetDecisionSink:
    """One new Parquet file per flush under decisions/date=YYYY-MM-DD/ (atomic, never rewritten)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, records: list[DecisionRecord]) -> None:
        """Append records as one new file."""
        if not records:
            return
        first = records[0].logged_at
        # named by write time: files sort in flush order, so the log reads back in append order
        name = f"part-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        target = self.folder / f"date={first.strftime('%Y-%m-%d')}" / name
        table = pa.Table.from_pylist([r.row() for r in records], schema=SCHEMA)
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)

    def _files(self) -> list[str]:
        return sorted(str(p) for p in self.folder.glob("date=*/part-*.parquet"))

    def find(self, request_id: str) -> DecisionRecord | None:
        """Return the record of a request id, scanning only the request_id column first."""
        files = self._files()
        if not files:
            return None
        table = ds.dataset(files, schema=SCHEMA, format="parquet").to_table(
            filter=ds.field("request_id") == request_id
        )
        rows = table.to_pylist()
        return DecisionRecord.from_row(rows[0]) if rows else None

    def read(self) -> pd.DataFrame:
        """Return every record as flat rows, in append order."""
        files = self._files()
        if not files:
            return SCHEMA.empty_table().to_pandas()
        return ds.dataset(files, schema=SCHEMA, format="parquet").to_table().to_pandas()


class SqlDecisionSink:
    """The decision_log table (created if absent); writes are multi-row INSERTs only."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        _METADATA.create_all(self.engine, tables=[DECISION_TABLE], checkfirst=True)

    def write(self, records: list[DecisionRecord]) -> None:
        """Append records in one transaction."""
        if records:
            with self.engine.begin() as conn:
                conn.execute(DECISION_TABLE.insert(), [r.row() for r in records])

    def find(self, request_id: str) -> DecisionRecord | None:
        """Return the record of a request id, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(DECISION_TABLE).where(DECISION_TABLE.c.request_id == request_id)
            ).first()
        return DecisionRecord.from_row(dict(row._mapping)) if row else None

    def read(self) -> pd.DataFrame:
        """Return every record as flat rows, oldest first."""
        with self.engine.connect() as conn:
            query = sa.select(DECISION_TABLE).order_by(DECISION_TABLE.c.logged_at)
            return pd.DataFrame([dict(r._mapping) for r in conn.execute(query)], columns=SCHEMA.names)

    def dispose(self) -> None:
        """Close the engine's connections."""
        self.engine.dispose()


def open_sink(settings: Settings, config: ServingConfig) -> DecisionSink:
    """Return the decision log of the profile: Parquet when embedded, the database in production."""
    if settings.profile == "production":
        return SqlDecisionSink(config.decision_db_url or settings.registry_db_url)
    return ParquetDecisionSink(decisions_dir(settings))


class DecisionLogWriter:
    """Buffers records from request threads and flushes them in the background (and on close)."""

    def __init__(self, sink: DecisionSink, flush_seconds: float, flush_rows: int) -> None:
        self.sink = sink
        self._flush_seconds = flush_seconds
        self._flush_rows = flush_rows
        self._buffer: deque[DecisionRecord] = deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def append(self, record: DecisionRecord) -> None:
        """Queue a record (thread-safe, no I/O on the caller's thread)."""
        self._buffer.append(record)
        if len(self._buffer) >= self._flush_rows:
            self._wake.set()

    def pending(self) -> int:
        """Return how many records wait for the next flush."""
        return len(self._buffer)

    def flush(self) -> int:
        """Write every queued record now; return how many were written."""
        with self._flush_lock:
            batch: list[DecisionRecord] = []
            while self._buffer:
                batch.append(self._buffer.popleft())
            if not batch:
                return 0
            try:
                self.sink.write(batch)
            except Exception:
                # keep them for the next flush, in order
                self._buffer.extendleft(reversed(batch))
                raise
            return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("decision log flush failed; %d records kept for the next try", self.pending())

    def start(self) -> None:
        """Start the background flusher."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the flusher and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()


def find_decision(settings: Settings, request_id: str, config: ServingConfig | None = None) -> DecisionRecord:
    """Return the logged record of a request id, or raise naming the id and where it was looked for."""
    from orchard.serving.config import serving_config

    config = config or serving_config(settings)
    sink = open_sink(settings, config)
    record = sink.find(request_id)
    if record is None:
        where = "the decision table" if settings.profile == "production" else str(decisions_dir(settings))
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
    from orchard.serving.config import serving_config

    frame = open_sink(settings, config or serving_config(settings)).read()
    frame = frame[frame["kind"] == "decision"].reset_index(drop=True)
    known = frame["inputs"].map(lambda t: bool(json.loads(t)) if isinstance(t, str) else False)
    inputs = pd.DataFrame(list(iter_inputs(frame)), index=frame.index[known.to_numpy()])
    flat = frame.loc[known.to_numpy(), ["request_id", "logged_at", "customer_id", "decision", "pd", "score"]]
    return pd.concat([flat, inputs], axis=1).reset_index(drop=True)
