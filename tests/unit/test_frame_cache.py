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
        self.calls: list[list[str]] = []

    def __call__(self, path: Path, columns: list[str]) -> pd.DataFrame:
        self.calls.append(columns)
        return pd.read_parquet(path, columns=columns)[columns]


def test_a_reread_is_served_from_memory_and_a_caller_cannot_change_it(tmp_path: Path) -> None:
    # Given a file's columns read once through the cache
    path = tmp_path / "a.parquet"
    _write(path, pd.DataFrame({"x": [1, 2, 3], "s": ["a", "b", "c"]}))
    cache, reads = FrameCache(), _Reads()
    first = cache.read(path, reads, ["s", "x"], 1 << 20)
    # When the caller changes what it got, and the same columns are read again
    first.loc[0, "x"] = 99
    first["extra"] = 1.0
    again = cache.read(path, reads, ["s", "x"], 1 << 20)
    # Then the second read is the file's content, from memory, and so is a subset of the columns kept
    assert reads.calls == [["s", "x"]], reads.calls
    assert again["x"].tolist() == [1, 2, 3] and list(again.columns) == ["s", "x"], again
    again.loc[1, "s"] = "changed"
    assert cache.read(path, reads, ["x", "s"], 1 << 20)["s"].tolist() == ["a", "b", "c"], "a hit is a copy"
    assert (cache.hits, cache.misses) == (2, 1), (cache.hits, cache.misses)


def test_columns_not_kept_are_read_alone_and_kept_beside_the_others(tmp_path: Path) -> None:
    # Given a file of which one column was read through the cache
    path = tmp_path / "a.parquet"
    _write(path, pd.DataFrame({"x": [1, 2], "y": [3.0, 4.0], "s": ["a", "b"]}))
    cache, reads = FrameCache(), _Reads()
    cache.read(path, reads, ["x"], 1 << 20)
    # When more columns are asked for, then only the missing one is read, and afterwards none
    both = cache.read(path, reads, ["s", "x"], 1 << 20)
    assert reads.calls == [["x"], ["s"]], reads.calls
    pd.testing.assert_frame_equal(both, pd.read_parquet(path, columns=["s", "x"]))
    cache.read(path, reads, ["x", "s"], 1 << 20)
    assert len(reads.calls) == 2, reads.calls


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
    # a frame larger than the cap is handed out, not kept; a cap of 0 keeps nothing
    assert cache.read(paths[1], reads, ["x"], size // 2)["x"].iloc[0] == 1000
    assert cache.size_bytes == 0 and len(reads.calls) == 5, (cache.size_bytes, reads.calls)
    cache.read(paths[1], reads, ["x"], 0)
    assert len(reads.calls) == 6 and cache.size_bytes == 0, (reads.calls, cache.size_bytes)


def test_silver_months_are_read_once_per_process(settings: Settings) -> None:
    # Given two silver months
    write_silver(_rows(2), silver_path(settings, "applications", "2019-01"), "sha-a")
    write_silver(_rows(3, offset=10), silver_path(settings, "applications", "2019-02"), "sha-b")
    silver_cache.clear()
    misses = silver_cache.misses
    # When the lake is read twice with the same columns
    whole = read_silver(settings, "applications")
    again = read_silver(settings, "applications")
    # Then each file was read once, and both reads are the same
    assert silver_cache.misses - misses == 2, silver_cache.misses - misses
    pd.testing.assert_frame_equal(again, whole)
    # and with the cache off, nothing is kept
    silver_cache.clear()
    off = settings.model_copy(update={"lake_cache_mb": 0})
    pd.testing.assert_frame_equal(read_silver(off, "applications"), whole)
    assert silver_cache.size_bytes == 0, silver_cache.size_bytes
