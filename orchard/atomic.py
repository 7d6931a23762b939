"""Atomic file writes and content hashes, so a crash never leaves a half-written file."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to target; move it into place only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; state files are meant to be shared read-only
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder next to target; swap it into place only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on target's lock file (`.<name>.lock` beside it) for a read-modify-write that
    several processes of one home may do at once; the lock is released when the block ends or the process dies."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_parquet(df: pd.DataFrame, target: Path) -> Path:
    """Write a DataFrame to Parquet atomically."""
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(target)


def write_json(obj: Any, target: Path) -> Path:
    """Write JSON atomically (sorted keys, so equal content gives equal bytes)."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return Path(target)


def write_json_if_changed(obj: Any, target: Path) -> Path:
    """Write JSON atomically unless the file already holds exactly these bytes (re-runs leave it untouched)."""
    target = Path(target)
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    if not (target.is_file() and target.read_text() == text):
        write_json(obj, target)
    return target


def write_text(text: str, target: Path) -> Path:
    """Write text atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def file_sha256(path: Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frame_sha256(df: pd.DataFrame) -> str:
    """Return a content hash of a DataFrame that ignores row order and index."""
    ordered = df.sort_values(list(df.columns)).reset_index(drop=True) if len(df) else df
    row_hashes = pd.util.hash_pandas_object(ordered, index=False).to_numpy()
    digest = hashlib.sha256(row_hashes.tobytes())
    digest.update(",".join(f"{c}:{t}" for c, t in ordered.dtypes.astype(str).items()).encode())
    return digest.hexdigest()
