"""The host's scoring sessions: opening them (logged, rate-limited), their answers, and the noised CSI they may ask.

A scoring session scores the active part (or the candidate, whose gate measures its score stability on recent
rows) over the rows matched by its own PSI, and is logged in `<state>/sessions/score-<session hash>.json`.
A monitoring session's CSI is computed over the rows revealed in the session against the part's reference bins,
each bin count noised (Laplace) before normalising; the exact, named CSI stays at the host
(`<state>/monitoring/<session hash>.json`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchard.atomic import write_json
from orchard.credit.psi import ReferenceProfile, proportion_matrices, psi_values
from orchard.errors import OrchardError
from orchard.federated.channel import Message, write_secret
from orchard.federated.host_lr import reveal_lr
from orchard.federated.host_parts import PartStore, is_tree_part
from orchard.federated.host_secureboost import route_level, route_state
from orchard.federated.host_sessions import HostData, HostPolicy, HostSession, flag, session_rows


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ScoreRequest:
    """A guest's checked request to open a scoring session."""

    part_id: str
    ids: int  # how many ids the session's PSI may present
    purpose: str  # logged at the host
    period: str | None  # the session's PSI runs over the host rows of this vintage only
    monitor: bool  # the score reply also carries the noised CSI of the host's features


class ScoringSessions:
    """Scoring sessions at the host: what may be opened, what a score request is answered, the CSI."""

    def __init__(self, data: HostData, policy: HostPolicy, parts: PartStore, state_dir: Path) -> None:
        self.data = data
        self.policy = policy
        self.parts = parts
        self.state_dir = state_dir

    def request(self, message: Message) -> ScoreRequest:
        """Check a score_open request against the stored parts, the host's policy and its rate limit.

        It names the active part (or the candidate) and at most max_score_ids ids, and states its purpose.
        Optional fields: `period` (the session's PSI then runs over the host rows of that vintage only) and
        `monitor` (the score reply then carries the noised CSI of the host's features over the revealed rows).
        """
        part_id = str(message.fields.get("part_id", ""))
        active = self.parts.active()
        if part_id not in (active, self.parts.candidate()):
            raise OrchardError(f"model part {part_id!r} is retired or unknown; the active part is {active}")
        count = int(message.fields.get("ids", -1))
        purpose = str(message.fields.get("purpose", ""))[:200]
        raw_period = message.fields.get("period")
        period = None if raw_period is None else str(raw_period)
        monitor = flag(message, "monitor", False)
        if not 0 < count <= self.policy.max_score_ids:
            raise OrchardError(
                f"a scoring session may present 1..{self.policy.max_score_ids} ids, not {count}"
            )
        if not purpose:
            raise OrchardError("a scoring session must state its purpose (it is logged at the host)")
        if period is not None:
            if not 0 < len(period) <= 64:
                raise OrchardError("a scoring session's period must be 1..64 characters")
            self.data.period_rows(period)  # refuses a host table without a vintage column
        if self._recent_sessions() >= self.policy.score_sessions_per_hour:
            raise OrchardError(f"rate limit: {self.policy.score_sessions_per_hour} scoring sessions per hour")
        return ScoreRequest(part_id, count, purpose, period, monitor)

    def start(self, session: HostSession, session_id: str, request: ScoreRequest) -> Message:
        """Scope a newly opened scoring session to its request and log it."""
        session.max_ids, session.part_id = request.ids, request.part_id
        session.period, session.monitor = request.period, request.monitor
        session.record = {
            "session": session_id,
            "kind": "score",
            "status": "open",
            "purpose": request.purpose,
            "ids": request.ids,
            "part_id": request.part_id,
            "period": request.period,
            "monitor": request.monitor,
            "at": time.time(),
        }
        self.log(session_id, session.record)
        return Message("score_open", fields={"ids": request.ids})

    def log(self, session_id: str, record: dict[str, Any]) -> None:
        """Write a scoring session's log entry (its state so far)."""
        write_json(record, self.state_dir / "sessions" / f"score-{_session_hash(session_id)}.json")

    def _recent_sessions(self) -> int:
        hour_ago = time.time() - 3600
        count = 0
        for path in (self.state_dir / "sessions").glob("score-*.json"):
            record = json.loads(path.read_text())
            count += record.get("kind") == "score" and float(record.get("at", 0)) > hour_ago
        return count

    def score(self, message: Message, session: HostSession) -> tuple[Message, dict[str, Any] | None]:
        """Answer a score request; return the reply and, when it is the session's last, the session's log entry.

        An LR part's reply is its partial scores of the session's matched rows (the last reply); a SecureBoost
        part's is one level of routing (the last on `final`). In a monitoring session the last reply also
        carries `csi`, `csi_rows` (and `csi_refused` when refused).
        """
        if session.aligned is None:
            raise OrchardError("score before the scoring session's PSI")
        if session.part_id not in (self.parts.active(), self.parts.candidate()):
            raise OrchardError(f"model part {session.part_id} was retired during the session")
        part = self.parts.load(session.part_id)
        if is_tree_part(part):
            return self._score_trees(message, session, part)
        u, allowed = reveal_lr(session.aligned, part, self.data)
        fields: dict[str, Any] = {}
        if session.monitor:
            fields = self._csi(message.session, session, session.aligned[allowed], part)
        record = {
            **session.record,
            "status": "scored",
            "matched": len(session.aligned),
            "revealed": int(allowed.sum()),
            **({"csi_refused": fields["csi_refused"]} if "csi_refused" in fields else {}),
        }
        return Message("score", fields=fields, arrays={"u": u.astype("<f8")}), record

    def _score_trees(
        self, message: Message, session: HostSession, part: dict[str, Any]
    ) -> tuple[Message, dict[str, Any] | None]:
        """Answer one level of a SecureBoost part's routing of the session's matched rows; close on `final`.

        Each `score` carries the (position in the matched order, tree, node) triples of host nodes the guest's
        rows reach at `level`; the host answers within the reveal budget (a row is counted once per session,
        when first asked; over budget: NO_ANSWER at every level). The `final` request (its triples may be
        empty) closes the session and, in a monitoring session, carries the CSI over the answered rows.
        """
        final = flag(message, "final", False)
        if not final and "rows" not in message.arrays:
            raise OrchardError(
                f"model part {session.part_id} is a SecureBoost part: each score request names the (row, tree, "
                "node) triples of one level, and the last one says final: true (no partial scores)"
            )
        with session.lock:
            state = route_state(session, part, np.ones(len(session_rows(session)), dtype=bool))
            left = route_level(session, state, message, self.data)
            if not final:
                return Message("score", fields={"final": False}, arrays={"left": left}), None
            revealed = session_rows(session)[state.revealed]
            fields: dict[str, Any] = {"final": True}
            if session.monitor:
                fields.update(self._csi(message.session, session, revealed, part))
        record = {
            **session.record,
            "status": "scored",
            "matched": len(session_rows(session)),
            "revealed": len(revealed),
            "asked": len(state.charged),
            **({"csi_refused": fields["csi_refused"]} if "csi_refused" in fields else {}),
        }
        return Message("score", fields=fields, arrays={"left": left}), record

    def _noise_seed(self, part_id: str, period: str | None, rows: np.ndarray) -> int:
        """Return the seed of a CSI answer's noise: a keyed hash of the part, the period and the rows.

        The same question always gets the same noise, so asking it again cannot average the noise away; the
        key is the host's secret (a 0600 file made on first use), or the simulated platform's seed.
        """
        if self.policy.noise_seed is not None:
            key = hashlib.sha256(f"orchard-csi-noise:{self.policy.noise_seed}".encode()).digest()
        else:
            path = self.state_dir / "csi_noise.key"
            if not path.exists():
                write_secret(secrets.token_hex(32), path)
            key = bytes.fromhex(path.read_text().strip())
        keys = "\n".join(sorted(self.data.keys[i] for i in rows.tolist()))
        digest = hmac.new(key, f"{part_id}|{period}|{keys}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big")

    def _csi(
        self, session_id: str, session: HostSession, rows: np.ndarray, part: dict[str, Any]
    ) -> dict[str, Any]:
        """Return the reply fields of a monitoring session: the noised CSI of the host's features, or why not.

        The CSI is computed over the rows revealed in the session against the part's reference bins. Every
        bin count gets fresh Laplace noise (scale csi_noise_scale; one row moves one count per feature by 1)
        and is clipped at 0 before normalising; values are rounded to 4 decimals. The exact CSI, named, is
        kept at the host only (monitoring/<session hash>.json). Refused below min_csi_rows revealed rows or
        for a part without a reference profile; features are named opaquely unless the policy shares names.
        """
        n = len(rows)
        if part.get("reference") is None:
            reason = "the active model part has no reference profile (stored before monitoring existed)"
            return {"csi": {}, "csi_rows": n, "csi_refused": reason}
        if n < self.policy.min_csi_rows:
            reason = (
                f"{n} revealed rows are below the host's minimum of {self.policy.min_csi_rows} "
                "for a CSI answer"
            )
            return {"csi": {}, "csi_rows": n, "csi_refused": reason}
        profile = ReferenceProfile.from_dict(part["reference"])
        frame = self.data.table.iloc[rows]
        reference, exact_proportions = proportion_matrices(profile, frame)
        exact = psi_values(reference, exact_proportions)
        scale = float(self.policy.csi_noise_scale)
        rng = np.random.default_rng(self._noise_seed(session.part_id, session.period, rows))
        noised = np.zeros_like(reference)
        for i, column in enumerate(profile.columns):
            counts = column.counts_of(frame[column.column]).astype(float)
            if scale > 0:
                counts = np.clip(counts + rng.laplace(0.0, scale, counts.size), 0.0, None)
            total = counts.sum()
            if total > 0:
                noised[i, : column.n_bins] = counts / total
        answered = psi_values(reference, noised)
        names = profile.column_names
        labels = (
            names if self.policy.share_feature_names else [f"host_feature_{i + 1}" for i in range(len(names))]
        )
        csi = {label: round(float(v), 4) for label, v in zip(labels, answered, strict=True)}
        write_json(
            {
                "session": session_id,
                "part_id": session.part_id,
                "period": session.period,
                "rows": n,
                "csi": {name: float(v) for name, v in zip(names, exact, strict=True)},
                "labels": dict(zip(labels, names, strict=True)),
                "answered": csi,
                "noise_scale": scale,
                "at": time.time(),
            },
            self.state_dir / "monitoring" / f"{_session_hash(session_id)}.json",
        )
        return {"csi": csi, "csi_rows": n}
