"""Frames read from files that are never rewritten in place, kept for the next read (least recently used first
out, bounded in bytes).

The lake's silver files are written once, atomically (a new file replaces an old one by rename), and the
lifecycle reads the same months again and again: every model's population, labels and fit window each month.
An entry is keyed by the file's path and identity (inode, modification time, size), so a file replaced since it
was read is read again; the frames handed out are copies, so a caller's changes never reach the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pandas as pd

_Key = tuple[str, int, int, int]
Reader = Callable[[Path, list[str] | None], pd.DataFrame]
"""Reads a file's frame: every column (None) or those given."""


class FrameCache:
    """The frames of recently read files, at most `max_bytes` of them in all (pandas' deep memory usage)."""

    def __init__(self) -> None:
        self._frames: OrderedDict[_Key, tuple[pd.DataFrame, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def read(self, path: Path, read: Reader, columns: list[str], max_bytes: int) -> pd.DataFrame:
        """Return a copy of `columns` of the file's frame: kept, or read whole (`read(path, None)`) and kept if it
        fits. With max_bytes 0 nothing is kept: only the columns are read (`read(path, columns)`).
        """
        if max_bytes <= 0:
            return read(path, columns)[columns]
        try:
            stat = path.stat()
        except OSError:  # missing: `read` names the problem
            return read(path, columns)[columns]
        key = (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            kept = self._frames.get(key)
            if kept is not None:
                self._frames.move_to_end(key)
                self.hits += 1
        if kept is not None:
            return kept[0][columns]
        frame = read(path, None)
        size = int(frame.memory_usage(deep=True).sum())
        with self._lock:
            self.misses += 1
            for stale in [k for k in self._frames if k[0] == key[0] and k != key]:
                self._drop(stale)
            if size <= max_bytes and key not in self._frames:
                self._frames[key] = (frame, size)
                self._bytes += size
            while self._bytes > max_bytes:
                self._drop(next(iter(self._frames)))
        return frame[columns]

    def _drop(self, key: _Key) -> None:
        _, size = self._frames.pop(key)
        self._bytes -= size

    @property
    def size_bytes(self) -> int:
        """The bytes the kept frames take."""
        return self._bytes

    def clear(self) -> None:
        """Forget every kept frame."""
        with self._lock:
            self._frames.clear()
            self._bytes = 0
