"""The host party (the platform): answers PSI, hetero-LR and scoring requests over its features only.

What the host answers is fixed by its own state, never by the guest's wish: training batches come from the
host's own schedule (each row once per epoch, batches of at least MIN_BATCH_ROWS); per-row partial scores
leave the host only encrypted under its own key during training; plaintext partial scores of the final
model leave it only for the session's matched rows (the out-of-time rows at the end of training, or the ids
of a logged, rate-limited scoring session matched by a fresh PSI), each row at most `max_reveals_per_row`
times over the host's whole history; a new model part retires the old ones, unless it is stored as the
candidate (`finish` with `activate: false`), which a later `part_decision` promotes or rejects.

Monitoring: a scoring session may be scoped to one period of the host's table (`period`, its vintage column)
and may ask for the CSI of the host's features (`monitor`): computed at the host over the rows it revealed in
that session against the part's reference bins (frozen at training), each bin count noised (Laplace) before
normalising, refused below a minimum number of rows, features named opaquely unless the host's policy shares
the names; the exact, named CSI stays at the host (`monitoring/`).

SecureBoost (a training session whose set-up is `sb_setup` instead of `train_setup`): after the same hello and
PSI, `sb_setup` (config, the guest's public key, train positions) gives the session its own core host
(orchard.federated.secureboost.SecureBoostHost, binned over the training rows only), and `sb_tree`,
`sb_histograms`, `sb_split`, `sb_end_tree` go to it; every sb_* kind is refused outside a set-up SecureBoost
training session, and the core refuses them out of order within a tree. After the last tree, `evaluate` is
asked level by level: each request names (position, tree, node) triples of host nodes at one `level` (levels
only increase, at most the trees' depth), for out-of-time positions only, each (position, tree) once per
level and on the path the host's earlier answers gave; the reply is `left` (uint8: 1 left, 0 right,
NO_ANSWER over budget). A row is counted once in the reveal ledger, when first asked in the session; the
request with `final: true` ends the evaluation (once). `finish` stores the split table (per tree, per host
node: feature, bin and threshold; the bin edges and fill values of missing features; `kind: "secureboost"`)
with the reference bins, as for the LR. A scoring session of a SecureBoost part answers `score` requests the
same way over the session's matched positions and closes on `final: true` (the CSI, when monitoring, is over
the rows whose routing was answered in the session).

The table: the host reads its table file again when the file was replaced (the platform's next month) and no
session is open, before it opens the next one, so one host process can serve a run month after month.

HostParty keeps the sessions and dispatches each message kind to the module of its concern: host_psi (PSI),
host_lr (hetero-LR), host_secureboost (SecureBoost and a tree part's routing), host_parts (stored model
parts), host_scoring (scoring sessions and their CSI); host_sessions holds the state they share.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from orchard.atomic import write_json
from orchard.credit.psi import ReferenceProfile
from orchard.errors import OrchardError
from orchard.federated.channel import Message
from orchard.federated.data import simulator_host_spec
from orchard.federated.host_lr import evaluate_lr, gradient, lr_part, partial, train_setup, update
from orchard.federated.host_parts import PartStore
from orchard.federated.host_psi import psi_blind, psi_result
from orchard.federated.host_scoring import ScoringSessions
from orchard.federated.host_secureboost import evaluate_trees, sb_setup, sb_step, tree_part
from orchard.federated.host_sessions import HostData, HostPolicy, HostSession, RevealLedger, flag, not_set_up
from orchard.federated.party_spec import PartyTable

log = logging.getLogger(__name__)


def _file_stamp(path: Path | None) -> tuple[int, int, int] | None:
    """Return what tells a replaced file from the one read (inode, size, modification time), None if absent."""
    if path is None:
        return None
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


def _read_table(path: Path) -> pd.DataFrame:
    """Read the host's table file, or raise naming the file and the problem."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise OrchardError(f"the host cannot read its table {path}: {exc}") from exc


class HostParty:
    """The platform's side of the protocol, over its own table described by its own spec."""

    def __init__(
        self,
        table: pd.DataFrame,
        state_dir: Path,
        channel_key: bytes,
        idle_timeout_seconds: float = 120.0,
        policy: HostPolicy | None = None,
        spec: PartyTable | None = None,
    ) -> None:
        self.spec = spec or simulator_host_spec()
        if self.spec.role != "host":
            raise OrchardError("the host party needs a host table spec")
        self.state_dir = Path(state_dir)
        self.channel_key = channel_key
        self.idle_timeout_seconds = idle_timeout_seconds
        self.policy = policy or HostPolicy()
        self.sessions: dict[str, HostSession] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ledger = RevealLedger(self.state_dir / "reveals.json")
        self.parts = PartStore(self.state_dir)
        self._source: Path | None = None  # the table's file, read again when replaced (from_file)
        self._stamp: tuple[int, int, int] | None = None
        self._load(table)

    @classmethod
    def from_file(cls, path: Path, state_dir: Path, channel_key: bytes, **options: Any) -> HostParty:
        """Return a host serving the table in a Parquet file, which it reads again when the file is replaced
        (`_refresh`); `options` as for the constructor."""
        # stamped before the read: a file replaced meanwhile is read again at the next session
        stamp = _file_stamp(path)
        party = cls(_read_table(path), state_dir, channel_key, **options)
        party._source, party._stamp = Path(path), stamp
        return party

    def _load(self, table: pd.DataFrame) -> None:
        """Serve this table from now on (checked against the host's spec first: a bad table changes nothing)."""
        checked = self.spec.check(table)
        vintage = self.spec.vintage_column
        self.data = HostData(
            table=checked,
            features=self.spec.feature_names,
            keys=checked[self.spec.id_column].tolist(),
            vintages=None if vintage is None else checked[vintage].to_numpy(dtype=str),
            ledger=self.ledger,
            max_reveals_per_row=self.policy.max_reveals_per_row,
        )
        self.scoring = ScoringSessions(self.data, self.policy, self.parts, self.state_dir)

    def _refresh(self) -> None:
        """Read the table file again if it was replaced since it was read (the platform's next month).

        Asked before a session opens, and done only while no session is open: a session's row positions always
        refer to the table it started with. The reveal ledger, the model parts and the session log are the
        host's state, not the table's, and carry over.
        """
        with self._lock:
            if not self.sessions:
                self._reload_if_replaced()

    def _reload_if_replaced(self) -> None:
        stamp = _file_stamp(self._source)
        if self._source is None or stamp == self._stamp:
            return
        self._load(_read_table(self._source))
        self._stamp = stamp
        log.info("host table %s read again: %d rows", self._source, len(self.data.keys))

    @property
    def keys(self) -> list[str]:
        """Return the id of each row of the host's table, in table order."""
        return self.data.keys

    # --- session bookkeeping ---
    def _session(self, message: Message, kind: str = "train") -> HostSession:
        with self._lock:
            session = self.sessions.get(message.session)
            if session is None:
                raise OrchardError(f"session {message.session} is unknown or was aborted")
            if session.kind != kind and kind != "any":
                raise OrchardError(
                    f"{message.kind} is not part of a {kind} session (this is a {session.kind} session)"
                )
            session.last_seen = time.monotonic()
            return session

    def _open(self, message: Message, kind: str) -> HostSession:
        with self._lock:
            if message.session in self.sessions:
                raise OrchardError(f"session {message.session} is already open")
            session = self.sessions[message.session] = HostSession(last_seen=time.monotonic(), kind=kind)
            return session

    def _drop(self, session_id: str) -> None:
        with self._lock:
            session = self.sessions.pop(session_id, None)
        if session is not None:
            session.close()

    def _record(self, session_id: str, status: str, detail: str, **extra: Any) -> None:
        write_json(
            {"session": session_id, "status": status, "detail": detail, "at": time.time(), **extra},
            self.state_dir / "sessions" / f"{session_id}.json",
        )

    def reap_idle(self) -> list[str]:
        """Abort sessions whose guest has been silent longer than the idle timeout; return their ids."""
        now = time.monotonic()
        with self._lock:
            idle = [s for s, v in self.sessions.items() if now - v.last_seen > self.idle_timeout_seconds]
            stale = [self.sessions.pop(session_id) for session_id in idle]
        for session in stale:
            session.close()
        for session_id in idle:
            detail = (
                f"the guest went silent for more than {self.idle_timeout_seconds:.0f} s; "
                "session aborted, nothing of it kept"
            )
            log.error("session %s: %s", session_id, detail)
            self._record(session_id, "failed", detail)
        return idle

    def start_reaper(self) -> None:
        """Check for silent guests every second in a background thread."""

        def loop() -> None:
            while not self._stop.wait(1.0):
                self.reap_idle()

        threading.Thread(target=loop, name="host-reaper", daemon=True).start()

    def stop(self) -> None:
        """Stop the reaper and the sessions' background work."""
        self._stop.set()
        with self._lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            session.close()

    # --- stored model parts ---
    def active_part(self) -> str:
        """Return the id of the part that scoring may use, or raise if none."""
        return self.parts.active()

    def candidate_part(self) -> str | None:
        """Return the id of the part stored as the candidate (awaiting a part_decision), if any."""
        return self.parts.candidate()

    # --- dispatch: one _on_<kind> per message kind ---
    def handle(self, message: Message) -> Message:
        """Answer one request of the guest."""
        handler = getattr(self, f"_on_{message.kind}", None)
        if handler is None:
            raise OrchardError(f"unknown message kind {message.kind!r}")
        reply = handler(message)
        with self._lock:  # the idle clock measures the guest's silence, not the host's own work
            if message.session in self.sessions:
                self.sessions[message.session].last_seen = time.monotonic()
        return reply

    def _on_hello(self, message: Message) -> Message:
        self._refresh()
        session = self._open(message, "train")
        session.max_ids = self.policy.max_psi_ids
        self._record(
            message.session, "started", "joint job started", job=str(message.fields.get("job_id", ""))
        )
        return Message("hello", fields={"rows": len(self.data.keys)})

    def _on_psi_blind(self, message: Message) -> Message:
        return psi_blind(self._session(message, "any"), message, self.data)

    def _on_psi_result(self, message: Message) -> Message:
        return psi_result(self._session(message, "any"), message)

    def _on_train_setup(self, message: Message) -> Message:
        return train_setup(self._session(message), message, self.data)

    def _on_partial(self, message: Message) -> Message:
        return partial(self._session(message), message)

    def _on_gradient(self, message: Message) -> Message:
        return gradient(self._session(message), message)

    def _on_update(self, message: Message) -> Message:
        return update(self._session(message), message)

    def _on_sb_setup(self, message: Message) -> Message:
        return sb_setup(self._session(message), message, self.data)

    def _sb_step(self, message: Message) -> Message:
        return sb_step(self._session(message), message)

    _on_sb_tree = _on_sb_histograms = _on_sb_split = _on_sb_end_tree = _sb_step

    def _on_evaluate(self, message: Message) -> Message:
        """Answer the out-of-time rows of a trained session: LR partial scores, or one level of tree routing."""
        session = self._session(message)
        compare = flag(message, "compare", False)
        with session.lock:
            if session.algorithm == "secureboost":
                return evaluate_trees(session, message, compare, self.data)
            return evaluate_lr(session, message, compare, self.data, self.parts)

    def _on_finish(self, message: Message) -> Message:
        """Store the session's part (with the reference bins of its own features); activate it or gate it.

        `activate` (default true) makes it the active part and retires every other; `activate: false` stores
        it as the candidate (the active part stays in use, an older candidate is retired) until a
        `part_decision` promotes or rejects it.
        """
        session = self._session(message)
        activate = flag(message, "activate", True)
        if session.stage not in ("trained", "evaluated"):
            raise OrchardError("finish before training")
        if session.aligned is None or session.train is None:
            raise not_set_up(message)
        features = self.data.features
        reference = ReferenceProfile.fit(
            self.data.table.iloc[session.aligned[session.train]], numeric=list(features), categorical=[]
        )
        trained = tree_part(session, features) if session.sb is not None else lr_part(session, features)
        part = {**trained, "job": str(message.fields.get("job_id", "")), "reference": reference.to_dict()}
        part_id, digest, detail = self.parts.store(part, activate)
        self._drop(message.session)
        self._record(message.session, "finished", detail, part_id=part_id, activated=activate)
        return Message(
            "finish",
            fields={
                "part_id": part_id,
                "sha256": digest,
                "features": len(features),
                "kind": str(part.get("kind", "hetero_lr")),
            },
        )

    def _on_part_decision(self, message: Message) -> Message:
        """Promote the candidate part (it becomes active, every other part is retired) or reject it."""
        with self._lock:
            if message.session in self.sessions:
                raise OrchardError(
                    f"part_decision runs in a session of its own, not inside open session {message.session}"
                )
        part_id = str(message.fields.get("part_id", ""))
        promote = message.fields.get("promote")
        if not isinstance(promote, bool):
            raise OrchardError("part_decision needs field promote: true or false")
        return self.parts.decide(message.session, part_id, promote)

    def _on_abort(self, message: Message) -> Message:
        self._drop(message.session)
        self._record(message.session, "failed", str(message.fields.get("reason", "aborted by the guest")))
        return Message("abort")

    def _on_score_open(self, message: Message) -> Message:
        """Open a logged, rate-limited scoring session for the active part or the candidate (see request)."""
        self._refresh()
        request = self.scoring.request(message)
        return self.scoring.start(self._open(message, "score"), message.session, request)

    def _on_score(self, message: Message) -> Message:
        """Answer a scoring session's request; after its last answer the session is closed and logged."""
        reply, record = self.scoring.score(message, self._session(message, "score"))
        if record is not None:
            self._drop(message.session)
            self.scoring.log(message.session, record)
        return reply
