"""The Feast feature store of Orchard: factory, offline tables, apply, monthly materialization, retrieval."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast import FeatureService, FeatureStore, RepoConfig
from feast.errors import FeatureServiceNotFoundException

from feature_repo.definitions import definitions
from feature_repo.services import service_views
from feature_repo.views import offline_files, offline_period, offline_table
from orchard.atomic import atomic_folder, atomic_path, write_json, write_text
from orchard.errors import OrchardError
from orchard.features import combined_features, entity_key, view_features
from orchard.lake import read_silver, silver_months, silver_path
from orchard.months import (
    add_months,
    month_end,
    month_index,
    month_start,
    parse_month,
    timestamp_month_labels,
    timestamp_months,
    utc_timestamps,
)
from orchard.online_store import PROVIDER_CLASS, STORE_CLASS
from orchard.partitions import entity_partitions
from orchard.production import production_repo_config
from orchard.settings import Settings
from orchard.sources import EVENT_TIME

if TYPE_CHECKING:
    from orchard.partitions import Cluster

logger = logging.getLogger(__name__)

PROJECT = "orchard"
ENTITY_TIME = "event_timestamp"
_ROW = "__orchard_row"


@dataclass(frozen=True)
class MaterializeResult:
    """What one materialization wrote to the online store."""

    rows: int
    seconds: float


def _tables_state(settings: Settings) -> Path:
    return settings.features_dir / "tables.json"


def _materialized_state(settings: Settings) -> Path:
    return settings.feast_dir / "materialized.json"


def _applied_state(settings: Settings) -> Path:
    return settings.feast_dir / "applied.sha256"


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def repo_config(settings: Settings, *, stock_online_store: bool = False) -> RepoConfig:
    """Return the programmatic Feast config: file registry, duckdb offline store, SQLite online store.

    The production profile uses the SQL registry on PostgreSQL and the Redis online store instead.
    """
    if settings.profile == "production" and not stock_online_store:
        return production_repo_config(settings)
    feast_dir = settings.feast_dir.resolve()
    if stock_online_store:
        provider = "local"
        online: dict[str, Any] = {"type": "sqlite", "path": str(feast_dir / "online_stock.db")}
    else:
        provider = PROVIDER_CLASS
        online = {"type": STORE_CLASS, "path": str(feast_dir / "online.db")}
    return RepoConfig(
        project=PROJECT,
        provider=provider,
        registry={"registry_type": "file", "path": str(feast_dir / "registry.db"), "cache_ttl_seconds": 60},
        offline_store={"type": "duckdb"},
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=feast_dir,
        coerce_tz_aware=False,  # _retrieve sends UTC timestamps (see there)
    )


def open_store(settings: Settings, *, stock_online_store: bool = False) -> FeatureStore:
    """Return a FeatureStore over Orchard's state folder (Orchard's online store unless stock is asked).

    Its historical retrieval takes the entity frame's timestamps as they are (`coerce_tz_aware` off): send them
    as UTC, as Orchard's own retrieval does (training_frame, feature_table).
    """
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(settings, stock_online_store=stock_online_store))


EMPTY_TABLE = "empty.parquet"
"""The file a view's offline table holds when it has no rows at all (its schema, so the store can read it)."""


@dataclass(frozen=True)
class _Rows:
    """A view's featurized rows to write: every period's (`rebuild`, replacing the table) or new periods'."""

    frame: pd.DataFrame
    rebuild: bool


def _featurize_part(
    settings: Settings, view: str, months: list[str] | None, part: int, parts: int
) -> pd.DataFrame:
    """view_features of one entity partition of the view's source rows of `months` (all when None): a Dask
    task, which reads its own rows (a month at a time, its entities' rows kept)."""
    portfolio = settings.portfolio_def
    key = entity_key(portfolio, view)
    rows = read_silver(
        settings,
        portfolio.views[view].source,
        months,
        where=lambda frame: entity_partitions(frame[key], parts) == part,
    )
    return view_features(portfolio, view, rows)


def _featurize(
    settings: Settings, view: str, months: list[str] | None, cluster: Cluster | None
) -> pd.DataFrame:
    """Return view_features of the view's source rows of `months` (all when None).

    On a cluster, one task per entity partition reads and featurizes its entities' rows (a view's rows are each
    computed from one entity's rows), and the partitions' rows are combined as one run returns them: this
    process holds the features, never the source rows.
    """
    if cluster is None:
        source = settings.portfolio_def.views[view].source
        return view_features(settings.portfolio_def, view, read_silver(settings, source, months))
    parts = cluster.workers
    futures = [
        cluster.client.submit(_featurize_part, settings, view, months, part, parts, pure=False)
        for part in range(parts)
    ]
    return combined_features(settings.portfolio_def, view, cluster.client.gather(futures))


def _snapshot_rows(
    settings: Settings, view: str, counts: dict[str, int], state: dict[str, Any], cluster: Cluster | None
) -> _Rows | None:
    """Return a snapshot view's rows to write (None: nothing changed); only new silver months are featurized.

    A month's snapshot rows depend on that month alone: they are added while every month already featurized
    is still there with the same rows and the new months come after them; otherwise the whole history is
    featurized again.
    """
    seen: dict[str, int] = state.get(view, {}).get("months", {})
    target = offline_table(settings.features_dir, view)
    state[view] = {"months": counts}
    new = [m for m in counts if m not in seen]
    unchanged = bool(seen) and target.is_dir() and all(counts.get(m) == n for m, n in seen.items())
    if unchanged and (not new or new[0] > max(seen)):
        if not new:
            return None
        return _Rows(_featurize(settings, view, new, cluster), False)
    return _Rows(_featurize(settings, view, None, cluster), True)


def _event_months(rows: pd.DataFrame) -> tuple[int, int]:
    """Return the first and last month (timestamp_months numbering) of a month's events; (-1, -1) when empty."""
    if rows.empty:
        return -1, -1
    months = timestamp_months(rows[EVENT_TIME])
    return int(months.min()), int(months.max())


def _event_spans(settings: Settings, source: str, months: list[str]) -> dict[str, tuple[int, int]]:
    """Return the first and last event month of each silver month (read from its event times alone)."""
    return {m: _event_months(read_silver(settings, source, [m], columns=[EVENT_TIME])) for m in months}


def _aggregation_rows(
    settings: Settings, view: str, counts: dict[str, int], state: dict[str, Any], cluster: Cluster | None
) -> _Rows | None:
    """Return an aggregation view's rows to write (None: nothing changed); it reads what new months' windows need.

    A row's trailing windows reach back at most the view's longest window, so the rows of new silver months are
    computed from their own events and those of the months inside that window, and added: the table is the
    one the whole history gives, row for row. That holds while the months already featurized are unchanged,
    the new months come after them, the new months' events fall in them or later, and no earlier month holds
    events inside the window. Otherwise (a late batch accepted, a changed file, a late event) the whole history
    is featurized again.
    """
    definition = settings.portfolio_def.views[view]
    seen: dict[str, dict[str, int]] = state.get(view, {}).get("months", {})
    target = offline_table(settings.features_dir, view)
    new = [m for m in counts if m not in seen]
    unchanged = bool(seen) and target.is_dir() and all(counts.get(m) == v["rows"] for m, v in seen.items())
    if unchanged and not new:
        return None
    if unchanged and new[0] > max(seen):
        start = add_months(new[0], -(max(a.window_months for a in definition.aggregations.values()) - 1))
        first_new, window_start = month_index(new[0]), month_index(start)
        spans = _event_spans(settings, definition.source, new)
        appendable = all(v["last_event_month"] < window_start for m, v in seen.items() if m < start) and all(
            spans[m][0] >= first_new or spans[m][0] < 0 for m in new
        )
        if appendable:
            frame = _featurize(settings, view, [m for m in counts if m >= start], cluster)
            fresh = frame[(timestamp_months(frame[EVENT_TIME]) >= first_new).to_numpy()]
            added = {m: {"rows": counts[m], "last_event_month": spans[m][1]} for m in new}
            state[view] = {"months": {**seen, **added}}
            return _Rows(fresh, False)
    spans = _event_spans(settings, definition.source, list(counts))
    state[view] = {"months": {m: {"rows": counts[m], "last_event_month": spans[m][1]} for m in counts}}
    return _Rows(_featurize(settings, view, list(counts), cluster), True)


def _silver_counts(settings: Settings, source: str) -> dict[str, int]:
    """Return the rows of each silver month of a source, read from the files' Parquet footers."""
    return {
        m: pq.read_metadata(silver_path(settings, source, m)).num_rows
        for m in silver_months(settings, source)
    }


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Convert a feature frame to Arrow; an empty text column stays string (Parquet 'null' breaks joins)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _write_periods(folder: Path, frame: pd.DataFrame, schema: pa.Schema | None = None) -> None:
    """Write a view's rows into folder, one file per period of their event time (each file atomically), cast to
    `schema` (the table's, when rows are added to it) so that every file reads with the same types."""
    table = _to_arrow(frame)
    if schema is not None:
        table = table.cast(schema)
    if not len(frame):
        if not any(folder.glob("*.parquet")):  # the store reads every file of the folder: keep one
            with atomic_path(folder / EMPTY_TABLE) as tmp:
                pq.write_table(table, tmp)
        return
    periods = timestamp_month_labels(frame[EVENT_TIME]).to_numpy()
    if any(p is None for p in periods):
        raise OrchardError(f"feature rows without {EVENT_TIME} cannot be written to {folder}")
    for period in sorted(set(periods)):
        with atomic_path(folder / f"{period}.parquet") as tmp:
            pq.write_table(table.filter(pa.array(periods == period)), tmp)
    (folder / EMPTY_TABLE).unlink(missing_ok=True)


def update_offline_tables(settings: Settings, cluster: Cluster | None = None) -> dict[str, int]:
    """Bring every view's offline table up to date with the silver history; write only what changed.

    A view's table is a folder of one parquet file per period (orchard's feature_repo.views.offline_table).
    Each view reads the silver months it needs: a snapshot view the new months, an aggregation view the new
    months and those their trailing windows reach back to; their rows are written as new periods' files, and
    no earlier period's file is read or written again. A changed history featurizes everything again, written
    into a new folder that replaces the table whole. With a Dask cluster, each view's rows are featurized one
    entity partition per worker (the same rows, in the same order).
    """
    state = _read_json(_tables_state(settings))
    counts: dict[str, int] = {}
    changed_any = False
    for view, definition in settings.portfolio_def.views.items():
        landed = _silver_counts(settings, definition.source)
        build = _snapshot_rows if definition.snapshot else _aggregation_rows
        before = int(state.get(view, {}).get("rows", 0))
        rows = build(settings, view, landed, state, cluster)
        target = offline_table(settings.features_dir, view)
        if rows is None:
            state[view]["rows"] = counts[view] = before
            continue
        if rows.rebuild:
            with atomic_folder(target) as tmp:
                _write_periods(tmp, rows.frame)
            (settings.features_dir / f"{view}.parquet").unlink(missing_ok=True)  # a single-file table of old
            total = len(rows.frame)
        else:
            rows_files = [f for f in offline_files(settings.features_dir, view) if f.name != EMPTY_TABLE]
            _write_periods(target, rows.frame, pq.read_schema(rows_files[0]) if rows_files else None)
            total = before + len(rows.frame)
        logger.info("offline table %s: %d rows written, %d in all", view, len(rows.frame), total)
        state[view]["rows"] = counts[view] = total
        changed_any = True
    if changed_any:
        write_json(state, _tables_state(settings))
    return counts


def ordered_sha256(frame: pd.DataFrame) -> str:
    """Return a content hash of a frame in its row order (feature frames are deterministically sorted)."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    return digest.hexdigest()


def _strip_meta(message: Any) -> None:
    # nested data sources carry creation timestamps in `meta`; they are not part of a definition
    for field, value in message.ListFields():
        if field.name == "meta":
            message.ClearField(field.name)
        elif field.message_type is not None:
            is_repeated = field.is_repeated
            is_map = is_repeated and field.message_type.GetOptions().map_entry
            if is_map:
                continue
            for item in value if is_repeated else [value]:
                _strip_meta(item)


def _fingerprint(objects: list[Any]) -> str:
    digest = hashlib.sha256()
    for obj in sorted(objects, key=lambda o: (type(o).__name__, o.name)):
        spec = obj.to_proto().spec
        _strip_meta(spec)
        digest.update(type(obj).__name__.encode())
        digest.update(spec.SerializeToString(deterministic=True))
    return digest.hexdigest()


def apply_definitions(settings: Settings, *, store: FeatureStore | None = None) -> None:
    """Register Orchard's entity, views and services; a no-op when the definitions did not change."""
    objects = definitions(settings)
    fingerprint = _fingerprint(objects)
    marker = _applied_state(settings)
    registry = settings.feast_dir / "registry.db"
    if (
        (settings.profile == "production" or registry.exists())
        and marker.exists()
        and marker.read_text() == fingerprint
    ):
        logger.info("feast definitions unchanged; apply skipped")
        return
    store = store or open_store(settings)
    store.apply(objects)
    # changed views may have recreated their online tables empty: every month must be written again
    _materialized_state(settings).unlink(missing_ok=True)
    logger.info("feast definitions applied (%d objects)", len(objects))
    write_text(fingerprint, marker)


def month_rows(settings: Settings, view: str, month: str) -> pd.DataFrame:
    """Return the latest offline row per entity of a view whose event time falls in the month."""
    folder = offline_table(settings.features_dir, view)
    if not folder.is_dir():
        raise OrchardError(f"offline table {folder} is missing: run update_offline_tables first")
    path = offline_period(settings.features_dir, view, parse_month(month))
    if not path.exists():  # no row of the view's has its event time in the month
        return pd.DataFrame()
    frame = pq.read_table(path).to_pandas()
    key = entity_key(settings.portfolio_def, view)
    frame = frame.sort_values([key, EVENT_TIME], kind="stable")
    return frame.drop_duplicates(key, keep="last").reset_index(drop=True)


def materialize_month(
    settings: Settings, month: str, *, store: FeatureStore | None = None
) -> MaterializeResult:
    """Write the month's rows of every view to the online store; rows already written are skipped."""
    started = time.perf_counter()
    month = parse_month(month)
    state = _read_json(_materialized_state(settings))
    pending = {}
    for view in settings.portfolio_def.views:
        frame = month_rows(settings, view, month)
        digest = ordered_sha256(frame)
        if state.get(view, {}).get(month) != digest:
            pending[view] = (frame, digest)
    rows = 0
    if pending:
        store = store or open_store(settings)
        for view, (frame, digest) in pending.items():
            if len(frame):
                store.write_to_online_store(view, frame)
                feature_view = store.get_feature_view(view)
                store.registry.apply_materialization(
                    feature_view,
                    store.project,
                    month_start(month).to_pydatetime(),
                    month_end(month).to_pydatetime(),
                )
            rows += len(frame)
            state.setdefault(view, {})[month] = digest
        write_json(state, _materialized_state(settings))
    seconds = time.perf_counter() - started
    logger.info("materialized %s: %d rows in %.3fs", month, rows, seconds)
    return MaterializeResult(rows=rows, seconds=seconds)


def _service(settings: Settings, store: FeatureStore, service: str) -> FeatureService:
    try:
        return store.get_feature_service(service)
    except FeatureServiceNotFoundException:
        known = ", ".join(sorted(service_views(settings.portfolio_def)))
        raise OrchardError(
            f"unknown feature service {service!r}; known: {known} (run apply_definitions first)"
        ) from None


def service_join_keys(settings: Settings, service: str) -> list[str]:
    """Return the entity join keys a feature service's views are keyed on."""
    portfolio = settings.portfolio_def
    views = service_views(portfolio).get(service, ())
    return list(dict.fromkeys(entity_key(portfolio, view) for view in views))


def _retrieve(
    settings: Settings, entity_df: pd.DataFrame, service: str, store: FeatureStore | None
) -> tuple[pd.DataFrame, pa.Table]:
    """Return the entity rows as sent to Feast and its point-in-time join of them (Arrow), in their order."""
    missing = [c for c in (*service_join_keys(settings, service), ENTITY_TIME) if c not in entity_df.columns]
    if missing:
        raise OrchardError(f"entity_df is missing column(s) {', '.join(missing)} for the point-in-time join")
    store = store or open_store(settings)
    feature_service = _service(settings, store, service)
    entities = entity_df.copy()
    # every timestamp column as UTC, what Feast's coerce_tz_aware would make of it with pd.to_datetime, which
    # builds a Timestamp object per value first (4.3 s of the demo's 26 s of joins): the configs turn it off
    for column in entities.columns:
        if column == ENTITY_TIME or pd.api.types.is_datetime64_any_dtype(entities[column]):
            entities[column] = utc_timestamps(entities[column])
    entities[_ROW] = range(len(entities))
    table = store.get_historical_features(entity_df=entities, features=feature_service).to_arrow()
    return entities, table.take(pc.sort_indices(table[_ROW]))


def training_frame(
    settings: Settings,
    entity_df: pd.DataFrame,
    service: str,
    *,
    store: FeatureStore | None = None,
) -> pd.DataFrame:
    """Return entity_df (row order and extra columns kept) joined point-in-time with the service's features."""
    entities, table = _retrieve(settings, entity_df, service, store)
    frame = table.to_pandas()
    extra = [c for c in frame.columns if c not in entities.columns]
    return frame[[*(c for c in entity_df.columns), *extra]]


def feature_table(
    settings: Settings,
    entity_df: pd.DataFrame,
    service: str,
    *,
    store: FeatureStore | None = None,
) -> pa.Table:
    """Return the service's features of each entity_df row, as Feast gives them (Arrow), in the rows' order.

    Its rows converted with `to_pandas()` are training_frame's feature columns: a subset of its rows taken
    (`take`) converts as the join of those rows alone would (an integer column with a missing value becomes
    float64 only where one of the rows taken lacks it).
    """
    entities, table = _retrieve(settings, entity_df, service, store)
    return table.select([c for c in table.column_names if c not in entities.columns])


def online_features(
    settings: Settings,
    entity_ids: list[str],
    service: str,
    *,
    store: FeatureStore | None = None,
) -> pd.DataFrame:
    """Return the latest online feature values of each entity (one row per id, in the given order)."""
    store = store or open_store(settings)
    feature_service = _service(settings, store, service)
    (key,) = service_join_keys(settings, service)
    response = store.get_online_features(
        features=feature_service, entity_rows=[{key: entity_id} for entity_id in entity_ids]
    )
    return response.to_df()
