"""The lake: landing files copied into immutable bronze batches, then validated into silver or quarantine."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from orchard.atomic import atomic_path, write_json
from orchard.errors import OrchardError
from orchard.frame_cache import FrameCache
from orchard.landing import landing_file, read_landed
from orchard.months import parse_month
from orchard.settings import Settings
from orchard.sources import SourceSpec, batch_id, source_spec

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DATA = "data.parquet"
# Key of the silver file's Parquet metadata that records which bronze bytes it was validated from.
SILVER_LINEAGE_KEY = b"orchard.bronze_sha256"

silver_cache = FrameCache()
"""The silver months this process read, kept for re-reads (settings.lake_cache_mb; orchard.frame_cache)."""


@dataclass(frozen=True)
class IngestResult:
    """What ingesting one landing file did: where the bronze batch is and whether it was new."""

    source: str
    month: str
    batch_id: str
    path: Path
    sha256: str
    rows: int
    created: bool


# --- locations ------------------------------------------------------------------------------------------


def get_source(settings: Settings, source: str) -> SourceSpec:
    """Return a source of the settings' portfolio as the lake holds it (raise naming the known ones)."""
    return source_spec(settings.portfolio_def, source)


def landing_path(settings: Settings, source: str, month: str) -> Path:
    """Return where the landing file of a file-landed source's month is expected."""
    return landing_file(
        get_source(settings, source),
        month,
        portfolio_folder=settings.portfolio_def.folder,
        home=settings.home,
    )


def bronze_dir(settings: Settings, source: str, month: str) -> Path:
    """Return the folder of a bronze batch."""
    return settings.bronze_dir / source / batch_id(source, month)


def silver_path(settings: Settings, source: str, month: str) -> Path:
    """Return the silver file of a source's month."""
    return settings.silver_dir / source / f"{month}.parquet"


def quarantine_dir(settings: Settings, source: str, month: str) -> Path:
    """Return the quarantine folder of a batch."""
    return settings.quarantine_dir / source / batch_id(source, month)


def _short(sha: str) -> str:
    return f"{sha[:12]}…"


def _check(settings: Settings, source: str, month: str) -> None:
    get_source(settings, source)
    parse_month(month)


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file (all columns, or those given), raising OrchardError naming the file if it is missing
    or corrupt."""
    if not path.is_file():
        raise OrchardError(f"file not found: {path}")
    try:
        return pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise OrchardError(f"cannot read Parquet file {path}: {exc}") from exc


# --- bronze -----------------------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any] | None:
    """Return a manifest's content, or None if it does not exist (the batch is not committed)."""
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, OSError) as exc:
        raise OrchardError(f"cannot read manifest {path}: {exc}") from exc


def ingest_batch(settings: Settings, source: str, month: str) -> IngestResult:
    """Land a source's batch into bronze atomically (lake layout); idempotent by batch id and content hash."""
    _check(settings, source, month)
    bid = batch_id(source, month)
    landed = read_landed(
        get_source(settings, source),
        month,
        portfolio_folder=settings.portfolio_def.folder,
        home=settings.home,
        sql_urls={k: v.get_secret_value() for k, v in settings.sql_urls.items()},
    )
    sha = landed.sha256
    folder = bronze_dir(settings, source, month)
    data = folder / DATA
    existing = read_manifest(folder / MANIFEST)
    if existing is not None:
        if existing["sha256"] != sha:
            raise OrchardError(
                f"batch {bid} was already ingested with different content "
                f"(sha256 {_short(existing['sha256'])} != {_short(sha)}); refusing to overwrite"
            )
        logger.info("batch %s already ingested with the same content; nothing to do", bid)
        return IngestResult(source, month, bid, data, sha, int(existing["rows"]), created=False)

    # The manifest is the commit marker: data first, manifest last, each atomically.
    with atomic_path(data) as tmp:
        pq.write_table(pa.Table.from_pandas(landed.frame, preserve_index=False), tmp)
    rows = len(landed.frame)
    manifest = {
        "source": source,
        "month": month,
        "batch_id": bid,
        "sha256": sha,
        "rows": rows,
        "landing_path": landed.origin,
        "ingested_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    write_json(manifest, folder / MANIFEST)
    logger.info("ingested %s: %d rows, sha256 %s", bid, rows, _short(sha))
    return IngestResult(source, month, bid, data, sha, rows, created=True)


def bronze_manifest(settings: Settings, source: str, month: str) -> dict[str, Any]:
    """Return the manifest of an ingested batch, or raise if the batch was never ingested."""
    _check(settings, source, month)
    manifest = read_manifest(bronze_dir(settings, source, month) / MANIFEST)
    if manifest is None:
        raise OrchardError(
            f"batch {batch_id(source, month)} was not ingested: no bronze manifest under "
            f"{bronze_dir(settings, source, month)}"
        )
    return manifest


def read_bronze(settings: Settings, source: str, month: str) -> pd.DataFrame:
    """Read an ingested bronze batch."""
    bronze_manifest(settings, source, month)
    return read_parquet(bronze_dir(settings, source, month) / DATA)


# --- silver -------------------------------------------------------------------------------------------


def silver_lineage(path: Path) -> str | None:
    """Return the bronze sha256 a silver file was validated from (None if the file is absent)."""
    if not path.is_file():
        return None
    metadata = pq.read_schema(path).metadata or {}
    value = metadata.get(SILVER_LINEAGE_KEY)
    return value.decode() if value is not None else None


def write_silver(df: pd.DataFrame, target: Path, bronze_sha256: str) -> bool:
    """Write a validated batch to silver atomically; return False if it is already there from the same bronze."""
    if silver_lineage(target) == bronze_sha256:
        return False
    table = pa.Table.from_pandas(df, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), SILVER_LINEAGE_KEY: bronze_sha256.encode()}
    with atomic_path(target) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
    return True


def silver_months(settings: Settings, source: str) -> list[str]:
    """Return the months of a source that are in silver, sorted."""
    get_source(settings, source)
    folder = settings.silver_dir / source
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.parquet") if not p.name.startswith("."))


def silver_frames(
    settings: Settings, source: str, months: list[str] | None = None, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Yield the silver file of each month of a source (all, or the given months that exist), one at a time,
    with the source's columns or only those given (in the source's order): a caller that filters or reduces
    each month holds one month's rows at a time, not the whole span (besides the months the process keeps,
    settings.lake_cache_mb of them at most: `silver_cache`)."""
    spec = get_source(settings, source)
    names = _columns(spec, columns)
    available = silver_months(settings, source)
    wanted = available if months is None else [m for m in (parse_month(m) for m in months) if m in available]
    cap = settings.lake_cache_mb << 20
    for month in wanted:
        yield silver_cache.read(silver_path(settings, source, month), _read_columns, names, cap)


def _read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    return read_parquet(path, columns)[columns]


def read_silver(
    settings: Settings,
    source: str,
    months: list[str] | None = None,
    columns: list[str] | None = None,
    where: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> pd.DataFrame:
    """Concatenate the silver files of a source (all, or the given months that exist; every column or those
    given). `where` selects rows of each month's frame as it is read: the memory is then one month's rows and
    the rows kept, not the whole span's. With no row, the source's empty frame with the columns asked for."""
    frames = silver_frames(settings, source, months, columns)
    kept = [f for f in (frames if where is None else (f.loc[where(f)] for f in frames)) if len(f)]
    if kept:
        return pd.concat(kept, ignore_index=True)
    spec = get_source(settings, source)
    return _empty_frame(spec)[_columns(spec, columns)]


def _columns(spec: SourceSpec, columns: list[str] | None) -> list[str]:
    """Return the columns to read, in the source's order; refuse a column the source does not have."""
    if columns is None:
        return list(spec.column_names)
    unknown = sorted(set(columns) - set(spec.column_names))
    if unknown:
        raise OrchardError(f"source {spec.name} has no column(s) {', '.join(unknown)}")
    return [c for c in spec.column_names if c in set(columns)]


def _empty_frame(spec: SourceSpec) -> pd.DataFrame:
    """Return an empty frame with the source's columns in their landing dtypes."""
    dtypes = {
        "string": "object",
        "category": "object",
        "int": "int64",
        "float": "float64",
        "timestamp": "datetime64[ns, UTC]",
    }
    return pd.DataFrame({c.name: pd.Series(dtype=dtypes[c.dtype]) for c in spec.columns})


# --- quarantine -------------------------------------------------------------------------------------------


def quarantined_batches(settings: Settings) -> list[str]:
    """Return the batch ids that sit in quarantine, sorted."""
    root = settings.quarantine_dir
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/*/{MANIFEST}"))
