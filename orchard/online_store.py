"""A Feast online store on SQLite with one wide row per entity, and a provider that writes frames in bulk.

Feast's stock SQLite store keeps one row per (entity, feature) holding a serialized ValueProto, and its
write path converts every value of a DataFrame to a protobuf in Python before a per-row INSERT. This
store keeps one typed row per entity (one column per feature) and, through `OrchardProvider.ingest_df`
(the path of `FeatureStore.write_to_online_store`), writes a DataFrame with one `executemany` in one
transaction, no protobufs. Reads go through Feast as usual (`get_online_features` -> `online_read`).
Both are plugged in the supported way: by class path in the RepoConfig (`provider`, `online_store.type`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd
from feast import Entity, FeatureView
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.passthrough_provider import PassthroughProvider
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from pydantic import StrictStr

from orchard.errors import OrchardError
from orchard.months import utc_timestamps

logger = logging.getLogger(__name__)

STORE_CLASS: Final = "orchard.online_store.OrchardSqliteOnlineStore"
PROVIDER_CLASS = "orchard.online_store.OrchardProvider"
_READ_CHUNK = 900
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# value type -> (SQLite column type, ValueProto field)
_COLUMN_TYPES: dict[ValueType, tuple[str, str]] = {
    ValueType.DOUBLE: ("REAL", "double_val"),
    ValueType.FLOAT: ("REAL", "float_val"),
    ValueType.INT64: ("INTEGER", "int64_val"),
    ValueType.INT32: ("INTEGER", "int32_val"),
    ValueType.BOOL: ("INTEGER", "bool_val"),
    ValueType.STRING: ("TEXT", "string_val"),
    ValueType.BYTES: ("BLOB", "bytes_val"),
}


class OrchardSqliteOnlineStoreConfig(FeastConfigBaseModel):
    """Online store config: the SQLite file (relative paths resolve against the repo path)."""

    type: Literal["orchard.online_store.OrchardSqliteOnlineStore"] = STORE_CLASS
    path: StrictStr = "online.db"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_name(config: RepoConfig, table: FeatureView) -> str:
    return f"{config.project}_{table.name}"


def _value_type(table: FeatureView, name: str, dtype: Any) -> ValueType:
    value_type = dtype.to_value_type()
    if value_type not in _COLUMN_TYPES:
        raise OrchardError(
            f"feature view {table.name}: field {name!r} has type {dtype}, which the Orchard online store "
            f"does not support (supported: {', '.join(t.name for t in _COLUMN_TYPES)})"
        )
    return value_type


class _Layout:
    """The wide-table layout of one feature view: key columns, feature columns and their types."""

    def __init__(self, config: RepoConfig, table: FeatureView) -> None:
        self.name = _table_name(config, table)
        self.keys = [(c.name, _value_type(table, c.name, c.dtype)) for c in table.entity_columns]
        if not self.keys:
            raise OrchardError(f"feature view {table.name} has no entity: the online store needs a key")
        self.features = [(f.name, _value_type(table, f.name, f.dtype)) for f in table.features]
        self.key_names = [k for k, _ in self.keys]
        self.feature_names = [f for f, _ in self.features]
        self.columns = [*self.key_names, "event_ts", "created_ts", *self.feature_names]

    def create_sql(self) -> str:
        cols = [f"{_quote(n)} {_COLUMN_TYPES[t][0]} NOT NULL" for n, t in self.keys]
        cols += ["event_ts INTEGER NOT NULL", "created_ts INTEGER"]
        cols += [f"{_quote(n)} {_COLUMN_TYPES[t][0]}" for n, t in self.features]
        pk = ", ".join(_quote(k) for k in self.key_names)
        return f"CREATE TABLE IF NOT EXISTS {_quote(self.name)} ({', '.join(cols)}, PRIMARY KEY ({pk}))"

    def upsert_sql(self) -> str:
        # an older event never overwrites a newer one, so re-materializing old months is harmless
        cols = ", ".join(_quote(c) for c in self.columns)
        marks = ", ".join("?" for _ in self.columns)
        updates = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in self.columns[len(self.keys) :])
        pk = ", ".join(_quote(k) for k in self.key_names)
        return (
            f"INSERT INTO {_quote(self.name)} ({cols}) VALUES ({marks}) ON CONFLICT ({pk}) DO UPDATE SET "  # noqa: S608 (identifiers quoted, values bound)
            f"{updates} WHERE excluded.event_ts >= {_quote(self.name)}.event_ts"
        )


def _micros(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _series_micros(values: pd.Series) -> list[Any]:
    ts = utc_timestamps(values)
    micros = ts.astype("int64") // 1000
    # pandas-stubs take no None as where()'s other; at run time it stands for the missing value
    return micros.where(ts.notna(), None).tolist()  # type: ignore[call-overload]


def _column_values(values: pd.Series) -> list[Any]:
    # tolist() yields Python scalars; NaN becomes NULL in SQLite
    return values.tolist()


class OrchardSqliteOnlineStore(OnlineStore):
    """SQLite online store with one row per entity (typed columns), bulk frame writes and WAL."""

    def __init__(self) -> None:
        super().__init__()
        self._conn: sqlite3.Connection | None = None

    @staticmethod
    def db_path(config: RepoConfig) -> Path:
        """Return the SQLite file of this store (relative paths resolve against the repo path)."""
        path = Path(config.online_store.path)
        if not path.is_absolute() and config.repo_path is not None:
            path = Path(config.repo_path) / path
        return path

    def _connect(self, config: RepoConfig) -> sqlite3.Connection:
        if self._conn is None:
            path = self.db_path(config)
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        """Close the connection (reopened lazily on the next call)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        """Close the connection: Feast's FeatureStore.close() awaits this (a coroutine, as in OnlineStore)."""
        self._disconnect()

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Create one table per kept view (recreated if its columns changed); drop deleted views' tables."""
        conn = self._connect(config)
        with conn:
            for table in tables_to_keep:
                layout = _Layout(config, table)
                existing = [r[1] for r in conn.execute(f"PRAGMA table_info({_quote(layout.name)})")]
                if existing and existing != layout.columns:
                    logger.warning("online table %s changed columns; recreating it empty", layout.name)
                    conn.execute(f"DROP TABLE {_quote(layout.name)}")
                conn.execute(layout.create_sql())
            for table in tables_to_delete:
                conn.execute(f"DROP TABLE IF EXISTS {_quote(_table_name(config, table))}")

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        """Delete the SQLite file."""
        self._disconnect()
        path = self.db_path(config)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def write_frame(self, config: RepoConfig, table: FeatureView, df: pd.DataFrame) -> int:
        """Upsert a DataFrame (join keys, event timestamp, features) in one transaction; return rows sent."""
        layout = _Layout(config, table)
        source = table.batch_source
        ts_field = source.timestamp_field if source is not None else ""
        created_field = source.created_timestamp_column if source is not None else ""
        missing = [
            c for c in [*layout.key_names, ts_field, *layout.feature_names] if c and c not in df.columns
        ]
        if missing or not ts_field:
            raise OrchardError(
                f"cannot write to online view {table.name}: frame lacks column(s) "
                f"{', '.join(missing) or 'event timestamp'}"
            )
        columns = [_column_values(df[k]) for k in layout.key_names]
        columns.append(_series_micros(df[ts_field]))
        has_created = bool(created_field) and created_field in df.columns
        columns.append(_series_micros(df[created_field]) if has_created else [None] * len(df))
        columns += [_column_values(df[f]) for f in layout.feature_names]
        conn = self._connect(config)
        with conn:
            conn.executemany(layout.upsert_sql(), zip(*columns, strict=True))
        return len(df)

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Write protobuf rows (the path of stock materialize and push) in one transaction."""
        layout = _Layout(config, table)
        rows = []
        for entity_key, values, event_ts, created_ts in data:
            keys = dict(zip(entity_key.join_keys, entity_key.entity_values, strict=True))
            row: list[Any] = [feast_value_type_to_python_type(keys[k]) for k in layout.key_names]
            row += [_micros(event_ts), _micros(created_ts)]
            row += [
                feast_value_type_to_python_type(values[f]) if f in values else None
                for f in layout.feature_names
            ]
            rows.append(row)
        conn = self._connect(config)
        with conn:
            conn.executemany(layout.upsert_sql(), rows)
        if progress:
            progress(len(rows))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Read the latest row of each entity key, as Feast value protos."""
        layout = _Layout(config, table)
        wanted = [(n, t) for n, t in layout.features if requested_features is None or n in requested_features]
        keys = []
        for entity_key in entity_keys:
            given = dict(zip(entity_key.join_keys, entity_key.entity_values, strict=True))
            keys.append(tuple(feast_value_type_to_python_type(given[k]) for k in layout.key_names))
        select = ", ".join(_quote(c) for c in [*layout.key_names, "event_ts", *(n for n, _ in wanted)])
        n_keys = len(layout.key_names)
        key_sql = (
            _quote(layout.key_names[0])
            if n_keys == 1
            else "(" + ", ".join(_quote(k) for k in layout.key_names) + ")"
        )
        found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        conn = self._connect(config)
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _READ_CHUNK):
            chunk = unique[start : start + _READ_CHUNK]
            if n_keys == 1:
                marks = ", ".join("?" for _ in chunk)
                params: list[Any] = [k[0] for k in chunk]
            else:
                marks = "VALUES " + ", ".join("(" + ", ".join("?" * n_keys) + ")" for _ in chunk)
                params = [v for k in chunk for v in k]
            sql = f"SELECT {select} FROM {_quote(layout.name)} WHERE {key_sql} IN ({marks})"  # noqa: S608 (identifiers quoted, values bound)
            for row in conn.execute(sql, params):
                found[tuple(row[:n_keys])] = row[n_keys:]
        result: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for key in keys:
            row = found.get(key)
            if row is None:
                result.append((None, None))
                continue
            event_ts = _EPOCH + timedelta(microseconds=row[0])
            values = {}
            for (name, value_type), value in zip(wanted, row[1:], strict=True):
                proto = ValueProto()
                if value is not None:
                    setattr(
                        proto,
                        _COLUMN_TYPES[value_type][1],
                        bool(value) if value_type is ValueType.BOOL else value,
                    )
                values[name] = proto
            result.append((event_ts, values))
        return result


class OrchardProvider(PassthroughProvider):
    """The local provider, with DataFrame writes to the Orchard online store done in bulk."""

    def ingest_df(
        self, feature_view: Any, df: pd.DataFrame, field_mapping: dict[str, str] | None = None
    ) -> None:
        """Write a DataFrame to the online store: bulk when the store and view allow it, else Feast's way."""
        store = self.online_store
        source = getattr(feature_view, "batch_source", None)
        mapped = bool(field_mapping) or bool(source is not None and source.field_mapping)
        if (
            isinstance(store, OrchardSqliteOnlineStore)
            and isinstance(feature_view, FeatureView)
            and not mapped
        ):
            store.write_frame(self.repo_config, feature_view, df)
            return
        super().ingest_df(feature_view, df, field_mapping)
