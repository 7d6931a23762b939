"""Unit tests of the frame cache: re-reads served from memory, replaced files read again, bytes bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from orchard.frame_cache import FrameCache
from orchard.lake import read_silver, silver_cache, silver_path, write_silver
from orchard.settings import Settings
from tests.unit.test_lake import _rows


def _write(path: Path, frame: pd.DataFrame) -> None:
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)  # as the lake writes: a new file renamed into place


class _Reads:
    """A reader that counts the reads and the columns asked for."""

    def __init__(self) -> None:
        self.calls: list[list[str] | None] = []

    def __call__(self, path: Path, columns: list[str] | None) -> pd.DataFrame:
        self.calls.append(columns)
        return pd.read_parquet(path, columns=columns)


def test_a_reread_is_served_from_memory_and_a_caller_cannot_change_it(tmp_path: Path) -> None:
    # Given a file read once through the cache
    path = tmp_path / "a.parquet"
    _write(path, pd.DataFrame({"x": [1, 2, 3], "s": ["a", "b", "c"]}))
    cache, reads = FrameCache(), _Reads()
    first = cache.read(path, reads, ["s", "x"], 1 << 20)
    # When the caller changes what it got, and the file is read again
    first.loc[0, "x"] = 99
    first["extra"] = 1.0
    again = cache.read(path, reads, ["x"], 1 << 20)
    # Then the second read is the file's content, from memory (one read of every column)
    assert reads.calls == [None], reads.calls
    assert again["x"].tolist() == [1, 2, 3] and list(again.columns) == ["x"], again
    assert list(first.columns) == ["s", "x", "extra"], "columns come in the order asked for"
    assert (cache.hits, cache.misses) == (1, 1), (cache.hits, cache.misses)


def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    # Given a file read through the cache, then replaced by another (renamed into place)
    path = tmp_path / "a.parquet"
    _write(path, pd.DataFrame({"x": [1, 2, 3]}))
    cache, reads = FrameCache(), _Reads()
    cache.read(path, reads, ["x"], 1 << 20)
    _write(path, pd.DataFrame({"x": [4, 5, 6]}))
    # When read again, then the new content comes back and the old entry is gone
    assert cache.read(path, reads, ["x"], 1 << 20)["x"].tolist() == [4, 5, 6]
    assert len(reads.calls) == 2, reads.calls
    assert cache.size_bytes == pd.read_parquet(path).memory_usage(deep=True).sum(), "only the new entry kept"


def test_the_kept_bytes_stay_under_the_cap_oldest_out_first(tmp_path: Path) -> None:
    # Given three files of about the same size, and a cap that holds two of them
    paths = [tmp_path / f"{i}.parquet" for i in range(3)]
    for i, path in enumerate(paths):
        _write(path, pd.DataFrame({"x": range(i * 1000, i * 1000 + 1000)}))
    size = int(pd.read_parquet(paths[0]).memory_usage(deep=True).sum())
    cache, reads = FrameCache(), _Reads()
    cap = 2 * size + size // 2
    # When the three are read, then the first read again
    for path in paths:
        cache.read(path, reads, ["x"], cap)
    cache.read(paths[0], reads, ["x"], cap)
    # Then the first was let go for the third (read twice), and the kept bytes never pass the cap
    assert len(reads.calls) == 4 and cache.size_bytes <= cap, (reads.calls, cache.size_bytes)
    cache.read(paths[2], reads, ["x"], cap)  # kept: no read
    assert len(reads.calls) == 4, reads.calls
    # a frame larger than the cap is handed out, not kept; a cap of 0 reads only the columns asked for
    cache.read(paths[1], reads, ["x"], size // 2)
    assert cache.size_bytes == 0 and len(reads.calls) == 5, (cache.size_bytes, reads.calls)
    assert cache.read(paths[1], reads, ["x"], 0)["x"].iloc[0] == 1000
    assert reads.calls[-1] == ["x"] and cache.size_bytes == 0, reads.calls


def test_silver_months_are_read_once_per_process(settings: Settings) -> None:
    # Given two silver months
    write_silver(_rows(2), silver_path(settings, "applications", "2019-01"), "sha-a")
    write_silver(_rows(3, offset=10), silver_path(settings, "applications", "2019-02"), "sha-b")
    silver_cache.clear()
    misses = silver_cache.misses
    # When the lake is read twice, with other columns the second time
    whole = read_silver(settings, "applications")
    ids = read_silver(settings, "applications", columns=["application_id"])
    # Then each file was read once, and the second read is the first's column
    assert silver_cache.misses - misses == 2, silver_cache.misses - misses
    pd.testing.assert_frame_equal(ids, whole[["application_id"]])
    # and with the cache off, nothing is kept
    silver_cache.clear()
    off = settings.model_copy(update={"lake_cache_mb": 0})
    pd.testing.assert_frame_equal(read_silver(off, "applications"), whole)
    assert silver_cache.size_bytes == 0, silver_cache.size_bytes
