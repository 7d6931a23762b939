"""Frames read from files that are never rewritten in place, kept for the next read (least recently used first
out, bounded in bytes).

The lake's silver files are written once, atomically (a new file replaces an old one by rename), and the
lifecycle reads the same months again and again: every model's population, labels and fit window each month.
An entry is the columns of a file read so far, keyed by the file's path and identity (inode, modification time,
size), so a file replaced since it was read is read again; the frames handed out are copies, so a caller's
changes never reach the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pandas as pd

Reader = Callable[[Path, list[str]], pd.DataFrame]
"""Reads the given columns of a file, in that order."""


class FrameCache:
    """The frames of recently read files, at most `max_bytes` of them in all (pandas' deep memory usage)."""

    def __init__(self) -> None:
        # path -> (the file's inode, modification time and size when read, its columns read so far, their bytes)
        self._frames: OrderedDict[str, tuple[tuple[int, int, int], pd.DataFrame, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def read(self, path: Path, read: Reader, columns: list[str], max_bytes: int) -> pd.DataFrame:
        """Return a copy of the file's `columns`: from memory when an earlier read kept them all, else the kept
        ones plus those read now (`read(path, missing columns)`), kept together if they fit. With max_bytes 0
        nothing is kept. A read the cache cannot serve reads no more than it would without the cache.
        """
        if max_bytes <= 0:
            return read(path, columns)
        try:
            stat = path.stat()
        except OSError:  # missing: `read` names the problem
            return read(path, columns)
        key, identity = str(path), (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            kept = self._frames.get(key)
            held = kept[1] if kept is not None and kept[0] == identity else None
            missing = columns if held is None else [c for c in columns if c not in held.columns]
            if held is not None:
                self._frames.move_to_end(key)
                if not missing:
                    self.hits += 1
        if held is not None and not missing:
            return held[columns]  # selecting a list of columns copies them
        new = read(path, missing)
        frame = new if held is None else pd.concat([held, new], axis=1)
        size = int(frame.memory_usage(deep=True).sum())
        with self._lock:
            self.misses += 1
            if key in self._frames:  # the columns kept before, or a replaced file's
                self._drop(key)
            if size <= max_bytes:
                self._frames[key] = (identity, frame, size)
                self._bytes += size
            while self._bytes > max_bytes:
                self._drop(next(iter(self._frames)))
        return frame[columns]

    def _drop(self, key: str) -> None:
        self._bytes -= self._frames.pop(key)[2]

    @property
    def size_bytes(self) -> int:
        """The bytes the kept frames take."""
        return self._bytes

    def clear(self) -> None:
        """Forget every kept frame."""
        with self._lock:
            self._frames.clear()
            self._bytes = 0
