"""The host's stored model parts: one active part, at most one candidate awaiting a decision, the retired rest.

Parts live under `<state>/models` as `host-part-<sha256 prefix>.json` (their id names their content);
`active.json` and `candidate.json` name the active and the candidate part, and a retired part moves to
`models/retired` (never scored again). A part_decision is recorded in `<state>/sessions/decision-<part>.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from orchard.atomic import write_json
from orchard.errors import OrchardError
from orchard.federated.channel import Message

log = logging.getLogger(__name__)


def is_tree_part(part: dict[str, Any]) -> bool:
    """Return whether a stored model part is a SecureBoost part (split tables) rather than LR weights."""
    return part.get("kind") == "secureboost"


class PartStore:
    """The host's model parts under its state directory: storing, activating, gating and retiring them."""

    def __init__(self, state_dir: Path) -> None:
        self.models = state_dir / "models"
        self.decisions = state_dir / "sessions"
        self.lock = threading.Lock()  # storing, activating and retiring model parts

    def load(self, part_id: str) -> dict[str, Any]:
        """Return a stored part that is still scorable, or refuse a retired or unknown one."""
        path = self.models / f"{part_id}.json"
        if not path.exists():
            raise OrchardError(f"model part {part_id} is retired or unknown")
        part: dict[str, Any] = json.loads(path.read_text())
        return part

    def active(self) -> str:
        """Return the id of the part that scoring may use, or raise if none."""
        active = self.active_or_none()
        if active is None:
            raise OrchardError("the host has no active model part")
        return active

    def active_or_none(self) -> str | None:
        """Return the id of the active part, if any."""
        return self._named("active.json")

    def candidate(self) -> str | None:
        """Return the id of the part stored as the candidate (awaiting a part_decision), if any."""
        return self._named("candidate.json")

    def _named(self, name: str) -> str | None:
        path = self.models / name
        return str(json.loads(path.read_text())["part_id"]) if path.exists() else None

    def store(self, part: dict[str, Any], activate: bool) -> tuple[str, str, str]:
        """Store a part under the id its content hashes to; return (part id, sha256, what became of it).

        `activate` makes it the active part and retires every other; otherwise it is stored as the candidate
        (the active part stays in use, an older candidate is retired) until a decision promotes or rejects it.
        """
        text = json.dumps(part, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        part_id = f"host-part-{digest[:16]}"
        with self.lock:
            write_json(part, self.models / f"{part_id}.json")
            if activate:
                self._retire_all_but(part_id)
                detail = f"model part {part_id} stored; older parts retired"
            elif part_id == self.active_or_none():
                detail = f"model part {part_id} stored; it is the active part already"
            else:
                previous = self.candidate()
                detail = (
                    f"model part {part_id} stored as the candidate; the active part "
                    f"{self.active_or_none() or '(none)'} stays active"
                )
                if previous is not None and previous != part_id:
                    self._retire(previous)
                    detail += f"; the older candidate {previous} retired"
                write_json({"part_id": part_id}, self.models / "candidate.json")
        return part_id, digest, detail

    def decide(self, session_id: str, part_id: str, promote: bool) -> Message:
        """Promote the candidate part (it becomes active, every other part is retired) or reject it.

        The decision is recorded; the same decision on a part already decided is answered as it was (the
        guest's month is being redone after an interruption), another one is refused.
        """
        with self.lock:
            candidate = self.candidate()
            decided = self.decisions / f"decision-{part_id}.json"
            if candidate != part_id and decided.exists():
                record = json.loads(decided.read_text())
                if (record["status"] == "promoted") != promote:
                    raise OrchardError(f"model part {part_id} was already {record['status']}")
                return Message(
                    "part_decision",
                    fields={"part_id": part_id, "promoted": promote, "active": record["active"]},
                )
            if candidate is None:
                raise OrchardError("the host has no candidate model part to decide on")
            if part_id != candidate:
                raise OrchardError(f"model part {part_id!r} is not the host's candidate part")
            previous = self.active_or_none()
            if promote:
                self._retire_all_but(candidate)
                detail = f"candidate {candidate} promoted to active; every other part retired"
            else:
                self._retire(candidate)
                (self.models / "candidate.json").unlink(missing_ok=True)
                detail = f"candidate {candidate} rejected and retired; the active part is unchanged"
            active = self.active_or_none()
        write_json(
            {
                "session": session_id,
                "kind": "part_decision",
                "status": "promoted" if promote else "rejected",
                "detail": detail,
                "part_id": candidate,
                "previous_active": previous,
                "active": active,
                "at": time.time(),
            },
            self.decisions / f"decision-{candidate}.json",
        )
        log.info("part_decision in session %s: %s", session_id, detail)
        return Message("part_decision", fields={"part_id": candidate, "promoted": promote, "active": active})

    def _retire(self, part_id: str) -> None:
        """Move one stored part to models/retired (never scored again)."""
        retired = self.models / "retired"
        retired.mkdir(parents=True, exist_ok=True)
        path = self.models / f"{part_id}.json"
        if path.exists():
            path.replace(retired / path.name)

    def _retire_all_but(self, part_id: str) -> None:
        """Move every other stored part to models/retired (never scored again) and mark part_id active."""
        retired = self.models / "retired"
        retired.mkdir(parents=True, exist_ok=True)
        for path in self.models.glob("host-part-*.json"):
            if path.stem != part_id:
                path.replace(retired / path.name)
        write_json({"part_id": part_id}, self.models / "active.json")
        (self.models / "candidate.json").unlink(missing_ok=True)
