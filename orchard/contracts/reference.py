"""Keys the lake holds, as hashes: what foreign keys and keys repeated across batches are checked against.

A reference key set is written beside the suites (gx/references/<source>/<batch>/<name>.parquet) so a result can
always be traced to the keys its batch was checked against; the Great Expectations metric reads it by path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from orchard.atomic import write_parquet
from orchard.lake import DATA, quarantine_dir, silver_months, silver_path
from orchard.settings import Settings
from orchard.sources import batch_id

HASH = "key_hash"


@dataclass(frozen=True)
class KeyShare:
    """How many non-null keys of a batch a reference holds, with a few of those it lacks."""

    rows: int
    found: int
    missing_examples: list[str]

    @property
    def found_share(self) -> float:
        return self.found / self.rows if self.rows else 0.0


def key_hashes(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Return the 64-bit hashes of the rows' keys (rows with a null key part left out) and those rows' keys."""
    keys = frame[columns].dropna()
    if keys.empty:
        return np.zeros(0, dtype=np.uint64), keys
    return pd.util.hash_pandas_object(keys, index=False).to_numpy(dtype=np.uint64), keys


def key_share(frame: pd.DataFrame, columns: list[str], reference: np.ndarray) -> KeyShare:
    """Return how many of a batch's keys are in a reference (sorted unique hashes)."""
    hashes, keys = key_hashes(frame, columns)
    found = np.isin(hashes, reference, assume_unique=False)
    missing = keys[~found].head(5)
    examples = ["|".join(str(v) for v in row) for row in missing.itertuples(index=False)]
    return KeyShare(rows=int(hashes.size), found=int(found.sum()), missing_examples=examples)


def read_reference(path: Path) -> np.ndarray:
    """Return the hashes of a reference key set."""
    return pq.read_table(path, columns=[HASH]).column(HASH).to_numpy()


def _file_keys(path: Path, columns: list[str]) -> np.ndarray:
    frame = pq.read_table(path, columns=columns).to_pandas()
    return key_hashes(frame, columns)[0]


def _batch_keys(path: Path, columns: list[str], cache: dict[tuple, np.ndarray]) -> np.ndarray:
    """Return the key hashes of a lake file, kept in cache by path, columns, mtime and size (files are immutable)."""
    if not path.is_file():
        return np.zeros(0, dtype=np.uint64)
    stat = path.stat()
    key = (str(path.resolve()), tuple(columns), stat.st_mtime_ns, stat.st_size)
    if key not in cache:
        cache[key] = _file_keys(path, columns)
    return cache[key]


def lake_keys(
    settings: Settings,
    source: str,
    columns: list[str],
    months: list[str],
    quarantined: bool,
    cache: dict[tuple, np.ndarray] | None = None,
) -> np.ndarray:
    """Return the unique key hashes of a source's batches of the given months in silver (and quarantine).

    `cache` keeps each file's hashes for the caller's run (a run validates every month against all earlier ones).
    """
    cache = {} if cache is None else cache
    parts = [_batch_keys(silver_path(settings, source, m), columns, cache) for m in months]
    if quarantined:
        parts += [_batch_keys(quarantine_dir(settings, source, m) / DATA, columns, cache) for m in months]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def lake_months(settings: Settings, source: str, until: str) -> list[str]:
    """Return the months up to `until` of which the lake holds a source's batch, in silver or quarantine."""
    quarantined = [
        p.parent.name[len(source) + 1 :] for p in settings.quarantine_dir.glob(f"{source}/*/{DATA}")
    ]
    return sorted(m for m in {*silver_months(settings, source), *quarantined} if m <= until)


def write_reference(settings: Settings, source: str, month: str, name: str, hashes: np.ndarray) -> Path:
    """Store a reference key set of a batch beside the suites; return its path."""
    target = settings.gx_dir / "references" / source / batch_id(source, month) / f"{name}.parquet"
    hashes = hashes.astype(np.uint64)
    if not (
        target.is_file() and np.array_equal(read_reference(target), hashes)
    ):  # re-runs leave it untouched
        write_parquet(pd.DataFrame({HASH: hashes}), target)
    return target.resolve()
