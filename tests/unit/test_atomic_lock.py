"""A read-modify-write under `locked` loses nothing when several processes do it at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

WRITER = """
import json, sys, time
from contextlib import nullcontext
from pathlib import Path
from orchard.atomic import locked, write_json
path, who, lock = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "lock"
(path.parent / f"{who}.ready").touch()
while not (path.parent / "go").exists():  # every writer starts at once
    time.sleep(0.001)
for i in range(150):
    with locked(path) if lock else nullcontext():
        index = json.loads(path.read_text()) if path.exists() else {}
        index[f"{who}/{i}"] = i
        write_json(index, path)
"""


def _write_at_once(folder: Path, lock: bool, writers: int = 4) -> int:
    """Run the writers together; return how many entries the index holds at the end."""
    folder.mkdir(parents=True)
    index = folder / "index.json"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(index), f"p{n}", "lock" if lock else "none"],
            cwd=root,
            stderr=subprocess.PIPE,
        )
        for n in range(writers)
    ]
    deadline = time.monotonic() + 60
    while len(list(folder.glob("*.ready"))) < writers and time.monotonic() < deadline:
        time.sleep(0.01)
    (folder / "go").touch()
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    return len(json.loads(index.read_text()))


def test_concurrent_read_modify_writes_under_the_lock_keep_every_entry(tmp_path: Path) -> None:
    # Given four processes adding 150 entries each to one JSON index at the same time
    # When they do it without the lock, then some entries are lost (the race the lock is for)
    assert _write_at_once(tmp_path / "unlocked", lock=False) < 600, (
        "the writers did not overlap: no race shown"
    )
    # And when they hold the lock, then the index keeps all 600
    assert _write_at_once(tmp_path / "locked", lock=True) == 600
