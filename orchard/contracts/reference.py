"""Keys the lake holds, as hashes: what foreign keys and keys repeated across batches are checked against.

Each lake file's key hashes are stored once (gx/references/keys/<source>/, a sorted NumPy array), named by the
batch, the key columns and the bronze content the file holds, so a stored key set never changes. A batch's
reference is a small list of those files (gx/references/<source>/<batch>/<name>.json), the files of the months it
is checked against: a result can always be traced to the keys its batch was checked against, the Great
Expectations metric reads them by path one file at a time, and the disk grows with the lake (each file's keys
once), not with the lake times its months (a union of every earlier month's keys per batch, as before).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from orchard.atomic import atomic_path, write_json_if_changed
from orchard.lake import (
    DATA,
    MANIFEST,
    quarantine_dir,
    read_manifest,
    silver_lineage,
    silver_months,
    silver_path,
)
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


def key_share(frame: pd.DataFrame, columns: list[str], reference: Path) -> KeyShare:
    """Return how many of a batch's keys a stored reference holds (its sorted key sets read one by one)."""
    hashes, keys = key_hashes(frame, columns)
    found = np.zeros(hashes.size, dtype=bool)
    for part in reference_parts(reference):
        todo = np.flatnonzero(~found)
        if not todo.size:
            break
        known = read_hashes(part)
        if known.size:
            at = np.minimum(np.searchsorted(known, hashes[todo]), known.size - 1)
            found[todo] = known[at] == hashes[todo]
    missing = keys[~found].head(5)
    examples = ["|".join(str(v) for v in row) for row in missing.itertuples(index=False)]
    return KeyShare(rows=int(hashes.size), found=int(found.sum()), missing_examples=examples)


def read_hashes(path: Path) -> np.ndarray:
    """Return the hashes of a stored key set (a NumPy file; a Parquet one: a reference stored whole, before)."""
    if Path(path).suffix == ".parquet":
        return pq.read_table(path, columns=[HASH]).column(HASH).to_numpy()
    return np.load(path, allow_pickle=False)


def reference_parts(reference: Path) -> list[Path]:
    """Return the key set files of a batch's reference (one file: a reference stored whole, as before)."""
    reference = Path(reference)
    if reference.suffix == ".parquet":
        return [reference]
    try:
        listed = json.loads(reference.read_text())["key_sets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"reference key sets {reference} cannot be read: {exc}") from exc
    return [Path(os.path.normpath(reference.parent / name)) for name in listed]


def _identity(path: Path, quarantined: bool) -> str | None:
    """Return what a lake file holds, as the sha256 of the bronze batch it came from (None: no such file)."""
    if not path.is_file():
        return None
    if quarantined:
        manifest = read_manifest(path.parent / MANIFEST) or {}
        sha = manifest.get("bronze_sha256")
    else:
        sha = silver_lineage(path)
    if not sha:  # a file without its lineage: its own bytes name it
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return str(sha)


def _key_set(
    settings: Settings, source: str, month: str, columns: list[str], quarantined: bool
) -> Path | None:
    """Return the stored key set of a source's lake file of a month (written on first use; None: no file)."""
    path = (
        quarantine_dir(settings, source, month) / DATA
        if quarantined
        else silver_path(settings, source, month)
    )
    identity = _identity(path, quarantined)
    if identity is None:
        return None
    named = hashlib.sha256("\0".join(columns).encode()).hexdigest()[:8]
    kind = "quarantine" if quarantined else "silver"
    name = f"{batch_id(source, month)}.{kind}.{named}.{identity[:16]}.npy"
    target = settings.gx_dir / "references" / "keys" / source / name
    if not target.is_file():
        frame = pq.read_table(path, columns=columns).to_pandas()
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            np.save(out, np.unique(key_hashes(frame, columns)[0]))
    return target


def lake_key_sets(
    settings: Settings, source: str, columns: list[str], months: list[str], quarantined: bool
) -> list[Path]:
    """Return the stored key sets of a source's batches of the given months in silver (and quarantine)."""
    parts = [_key_set(settings, source, m, columns, quarantined=False) for m in months]
    if quarantined:
        parts += [_key_set(settings, source, m, columns, quarantined=True) for m in months]
    return [p for p in parts if p is not None]


def lake_months(settings: Settings, source: str, until: str) -> list[str]:
    """Return the months up to `until` of which the lake holds a source's batch, in silver or quarantine."""
    quarantined = [
        p.parent.name[len(source) + 1 :] for p in settings.quarantine_dir.glob(f"{source}/*/{DATA}")
    ]
    return sorted(m for m in {*silver_months(settings, source), *quarantined} if m <= until)


def write_reference(settings: Settings, source: str, month: str, name: str, key_sets: list[Path]) -> Path:
    """Store a batch's reference (the list of its key set files, relative to it); return its path."""
    target = settings.gx_dir / "references" / source / batch_id(source, month) / f"{name}.json"
    listed = [os.path.relpath(p, target.parent) for p in key_sets]
    return write_json_if_changed({"key_sets": listed}, target).resolve()
