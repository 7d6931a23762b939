"""The accepted history of each source: one observation record per passed batch, stored beside the suites.

gx/profiles/<source>/<batch id>.json holds the batch's profile, the share of its keys seen in earlier batches and
the orphan share of each foreign key. A record is written when a batch passes (warned or not) and removed when a
batch fails, so the history is exactly the accepted batches; `version` changes when the record's layout does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchard.atomic import write_json_if_changed
from orchard.contracts.bounds import History
from orchard.settings import Settings
from orchard.sources import batch_id

RECORD_VERSION = 1


def profile_path(settings: Settings, source: str, month: str) -> Path:
    """Return where the observation record of an accepted batch is kept."""
    return settings.gx_dir / "profiles" / source / f"{batch_id(source, month)}.json"


def accepted_history(settings: Settings, source: str, month: str, window: int) -> History:
    """Return the last `window` accepted batches of a source before `month` (oldest first)."""
    folder = settings.gx_dir / "profiles" / source
    prefix = f"{source}-"
    found = (
        sorted(
            p
            for p in folder.glob(f"{prefix}*.json")
            if not p.name.startswith(".") and p.stem[len(prefix) :] < month
        )[-window:]
        if folder.is_dir()
        else []
    )
    records = [json.loads(p.read_text()) for p in found]
    records = [r for r in records if r.get("version") == RECORD_VERSION]
    return History(batches=tuple(r["batch_id"] for r in records), records=tuple(records))


def record_accepted(settings: Settings, source: str, month: str, record: dict[str, Any]) -> None:
    """Store the observation record of an accepted batch (unchanged bytes are not rewritten)."""
    target = profile_path(settings, source, month)
    write_json_if_changed({"version": RECORD_VERSION, "batch_id": batch_id(source, month), **record}, target)


def forget_rejected(settings: Settings, source: str, month: str) -> None:
    """Remove the record of a batch that no longer passes (it leaves the accepted history)."""
    profile_path(settings, source, month).unlink(missing_ok=True)
