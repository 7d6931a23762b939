"""Governance alerts: an append-only JSON-lines file under the home, plus an ERROR log line, per alert."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchard.settings import Settings

log = logging.getLogger(__name__)


def alerts_path(settings: Settings) -> Path:
    """Return the alerts file of a home (readable by its owner only)."""
    return settings.alerts_dir / "governance.jsonl"


def raise_alert(settings: Settings, kind: str, *, detail: str, **fields: Any) -> dict[str, Any]:
    """Log an alert at ERROR and append it to the alerts file (0600, fsynced) unless it repeats the last one."""
    alert = {"kind": kind, "raised_at": datetime.now(UTC).isoformat(), "detail": detail, **fields}
    log.error("ALERT %s: %s", kind, detail)
    same = [a for a in read_alerts(settings) if a["kind"] == kind and a.get("model") == fields.get("model")]
    if same and all(same[-1].get(k) == v for k, v in fields.items()):
        return same[-1]  # a watcher polling the same divergence raises it once, not every poll
    path = alerts_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(alert, sort_keys=True, default=str) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return alert


def read_alerts(settings: Settings) -> list[dict[str, Any]]:
    """Return every alert raised under a home, oldest first."""
    path = alerts_path(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
