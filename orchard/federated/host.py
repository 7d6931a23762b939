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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchard.atomic import write_json
from orchard.credit.psi import ReferenceProfile, proportion_matrices, psi_values
from orchard.errors import OrchardError
from orchard.federated.channel import Message, write_secret
from orchard.federated.data import Scaler, simulator_host_spec
from orchard.federated.paillier_lr import (
    MIN_BATCH_ROWS,
    X_BITS,
    Adam,
    LRConfig,
    Prefetched,
    PrivateKey,
    PublicKey,
    batches,
    checked_ciphertexts,
    ciphertexts_to_bytes,
    decode_gradient,
    dequantise,
    encode_scores,
    encrypted_column_sums,
    plain_from_bytes,
    plain_to_bytes,
    quantise,
    regularised,
    scaled_plus,
)
from orchard.federated.party_spec import PartyTable
from orchard.federated.psi_ecdh import Blinder, shuffled
from orchard.federated.secureboost import (
    NO_ANSWER,
    HostModel,
    ProtocolError,
    SecureBoostHost,
    depth_of,
    fill_values,
    filled,
    in_subtree,
)
from orchard.federated.secureboost_tree import SBConfig

log = logging.getLogger(__name__)


def _not_set_up(message: Message) -> OrchardError:
    """Return the refusal of a message whose session lacks what its stage needs (reached without its set-up)."""
    return OrchardError(f"{message.kind}: the session is not set up for it")


def _flag(message: Message, name: str, default: bool) -> bool:
    """Return a boolean field of a message (its default when absent), or refuse any other value."""
    value = message.fields.get(name, default)
    if not isinstance(value, bool):
        raise OrchardError(f"{message.kind}: field {name!r} must be true or false, not {value!r}")
    return value


def session_rows(session: HostSession) -> np.ndarray:
    """Return the host row of each position of the session's intersection, or refuse before its PSI."""
    if session.aligned is None:
        raise OrchardError("the session has no intersection yet (no PSI)")
    return session.aligned


def is_tree_part(part: dict[str, Any]) -> bool:
    """Return whether a stored model part is a SecureBoost part (split tables) rather than LR weights."""
    return part.get("kind") == "secureboost"


def _tree_model(part: dict[str, Any]) -> HostModel:
    """Return the core's HostModel of a stored SecureBoost part (bin edges and per-tree host splits)."""
    return HostModel(
        edges=[np.asarray(e, dtype=float) for e in part["edges"]],
        splits=[
            {int(k): (int(v["feature"]), int(v["bin"])) for k, v in tree.items()} for tree in part["trees"]
        ],
    )


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class HostPolicy:
    """The host's limits on what a guest may ask (its security team's settings)."""

    max_psi_ids: int = 2_000_000  # ids one PSI may present
    max_score_ids: int = 10_000  # ids one scoring session may present
    score_sessions_per_hour: int = 12
    max_reveals_per_row: int = 3  # plaintext partial scores of one row, ever (< features: no reconstruction)
    min_csi_rows: int = 200  # a monitoring session's CSI needs at least this many revealed rows
    csi_noise_scale: float = 2.0  # Laplace scale added to every CSI bin count (one row moves a count by 1)
    share_feature_names: bool = False  # CSI labels: the host's feature names, or host_feature_1..k
    noise_seed: int | None = None  # CSI noise key from a seed (a simulated platform); None: a secret key file


@dataclass
class HostSession:
    """What the host remembers of one joint job or scoring session."""

    last_seen: float
    kind: str = "train"
    blinder: Blinder | None = None
    shuffle: np.ndarray | None = None
    aligned: np.ndarray | None = None  # host row of each intersection position
    max_ids: int = 0
    part_id: str = ""
    period: str | None = None  # a scoring session's period: its PSI runs over the host rows of that vintage
    monitor: bool = False  # a scoring session that also asks for the CSI of the host's features
    record: dict[str, Any] = field(default_factory=dict)  # a scoring session's log entry
    public: PublicKey | None = None  # the guest's key
    key: PrivateKey | None = None  # the host's own key for this session
    config: LRConfig | None = None
    guest_columns: int = 0
    scaler: Scaler | None = None
    quantised: np.ndarray | None = None
    train: np.ndarray | None = None
    weights: np.ndarray | None = None
    optimizer: Adam | None = None
    schedule: list[np.ndarray] = field(default_factory=list)
    step: int = 0  # index of the next batch in the schedule
    stage: str = "setup"  # setup -> partial -> gradient -> update -> partial ... -> trained -> evaluated
    batch_u: np.ndarray | None = None
    masks: list[Any] = field(default_factory=list)
    noise: Prefetched | None = None
    obfuscators: Prefetched | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    algorithm: str = "hetero_lr"  # a training session's algorithm, fixed by its set-up message
    sb: SecureBoostHost | None = None  # a SecureBoost training session's core (its host side)
    sb_fill: np.ndarray | None = None  # the host's fill values of missing features (its training rows' means)
    route: RouteState | None = None  # a tree part's level-by-level answers in this session (evaluate, score)

    def close(self) -> None:
        """Stop the session's background work."""
        for stream in (self.noise, self.obfuscators):
            if stream is not None:
                stream.close()

    @property
    def batch(self) -> np.ndarray:
        """Return the train positions of the current batch."""
        if self.train is None:
            raise OrchardError("the session has no training rows yet (no intersection)")
        return self.train[self.schedule[self.step]]


@dataclass
class RouteState:
    """What a session answered of a tree part's routing: the budget decision per row, the path so far."""

    model: HostModel
    features: list[str]
    fill: np.ndarray
    depth: int
    eligible: np.ndarray  # positions of the session's matched rows that may be asked about
    level: int = -1  # the last level answered (levels only increase)
    charged: dict[int, bool] = field(default_factory=dict)  # position -> within budget (counted once)
    below: dict[tuple[int, int], int] = field(default_factory=dict)  # (position, tree) -> child last answered

    @property
    def revealed(self) -> np.ndarray:
        """Return the positions whose routing was answered (within budget) in this session."""
        return np.array(sorted(p for p, ok in self.charged.items() if ok), dtype=np.int64)


class RevealLedger:
    """How often each host row's plaintext partial score has left the host (persisted, never reset)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}

    def allow(self, keys: list[str], limit: int) -> np.ndarray:
        """Return which keys may be revealed once more, count them, and persist."""
        allowed = np.array([self.counts.get(k, 0) < limit for k in keys], dtype=bool)
        for k, ok in zip(keys, allowed.tolist(), strict=True):
            if ok:
                self.counts[k] = self.counts.get(k, 0) + 1
        write_json(self.counts, self.path)
        return allowed


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
        self.table = self.spec.check(table)
        self.features = self.spec.feature_names
        self.keys = self.table[self.spec.id_column].tolist()
        vintage = self.spec.vintage_column
        self.vintages: np.ndarray | None = (
            None if vintage is None else self.table[vintage].to_numpy(dtype=str)
        )
        self.state_dir = Path(state_dir)
        self.channel_key = channel_key
        self.idle_timeout_seconds = idle_timeout_seconds
        self.policy = policy or HostPolicy()
        self.sessions: dict[str, HostSession] = {}
        self._lock = threading.Lock()
        self._models_lock = threading.Lock()  # storing, activating and retiring model parts
        self._stop = threading.Event()
        self.ledger = RevealLedger(self.state_dir / "reveals.json")

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

    # --- dispatch ---
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
        session = self._open(message, "train")
        session.max_ids = self.policy.max_psi_ids
        self._record(
            message.session, "started", "joint job started", job=str(message.fields.get("job_id", ""))
        )
        return Message("hello", fields={"rows": len(self.keys)})

    # --- PSI (training and scoring sessions) ---
    def _on_psi_blind(self, message: Message) -> Message:
        session = self._session(message, "any")
        if session.blinder is not None:
            raise OrchardError("one PSI per session")
        guest = np.asarray(message.arrays["blinded"])
        if len(guest) > session.max_ids:
            raise OrchardError(f"PSI of {len(guest)} ids is over this session's limit of {session.max_ids}")
        rows = np.arange(len(self.keys)) if session.period is None else self._period_rows(session.period)
        session.blinder = Blinder()
        try:
            double = session.blinder.blind_points(guest)
        except ValueError as exc:
            raise OrchardError(f"PSI input rejected: {exc}") from exc
        session.shuffle = rows[shuffled(len(rows))]  # host table rows, in the order they are sent
        own = session.blinder.blind_ids(self.keys[i] for i in session.shuffle.tolist())
        session.max_ids = len(guest)  # the matched rows can never outnumber the ids presented
        return Message("psi_blind", arrays={"double": double, "host_blinded": own})

    def _on_psi_result(self, message: Message) -> Message:
        session = self._session(message, "any")
        positions = np.asarray(message.arrays["host_positions"], dtype=np.int64)
        if session.shuffle is None or session.aligned is not None:
            raise OrchardError("PSI result without a PSI, or a second one")
        if (
            positions.ndim != 1
            or len(positions) > session.max_ids
            or len(np.unique(positions)) != len(positions)
        ):
            raise OrchardError("PSI result must list distinct rows, no more than the ids presented")
        if positions.size and (positions.min() < 0 or positions.max() >= len(session.shuffle)):
            raise OrchardError("PSI result refers to rows the host did not send")
        session.aligned = session.shuffle[positions]
        return Message("psi_result", fields={"rows": len(positions)})

    def _period_rows(self, period: str) -> np.ndarray:
        """Return the host table rows of one period (its vintage column), or refuse if it has none."""
        if self.vintages is None:
            raise OrchardError(
                f"a session scoped to period {period!r} needs a vintage column in the host's table, "
                "and the host's table spec declares none (vintage_column)"
            )
        return np.flatnonzero(self.vintages == period)

    # --- training ---
    def _on_train_setup(self, message: Message) -> Message:
        session = self._session(message)
        if session.aligned is None or session.config is not None or session.sb is not None:
            raise OrchardError("train_setup before the intersection, twice, or in a SecureBoost session")
        try:
            config = LRConfig(**message.fields["config"])
        except (TypeError, ValueError) as exc:
            raise OrchardError(f"training config rejected: {exc}") from exc
        train = np.asarray(message.arrays["train_positions"], dtype=np.int64)
        if len(np.unique(train)) != len(train) or (
            train.size and (train.min() < 0 or train.max() >= len(session.aligned))
        ):
            raise OrchardError("train positions must be distinct rows of the intersection")
        if len(train) < MIN_BATCH_ROWS:
            raise OrchardError(f"{len(train)} training rows are below the minimum batch of {MIN_BATCH_ROWS}")
        guest_columns = int(message.fields["guest_columns"])
        if not 1 <= guest_columns <= 1000:
            raise OrchardError("guest_columns out of range")
        rows = self.table.iloc[session.aligned]
        session.scaler = Scaler.fit(rows.iloc[train], self.features)
        session.quantised = quantise(session.scaler.transform(rows))
        session.train, session.config, session.guest_columns = train, config, guest_columns
        session.public = PublicKey.from_n(int(message.fields["n"], 16))
        if int(session.public.n).bit_length() < config.key_bits - 8:
            raise OrchardError("the guest's key is shorter than the agreed key size")
        session.key = PrivateKey(config.key_bits)
        session.weights = np.zeros(len(self.features))
        session.optimizer = Adam(len(self.features), config.learning_rate)
        session.schedule = [b for epoch in range(config.epochs) for b in batches(len(train), config, epoch)]
        session.close()
        session.noise = Prefetched(session.public.noise, len(self.features))
        session.obfuscators = Prefetched(session.key.obfuscators, min(2 * config.batch_size, len(train)))
        session.stage = "partial"
        return Message(
            "train_setup",
            fields={"features": len(self.features), "n": format(int(session.key.public.n), "x")},
        )

    def _expect(self, session: HostSession, stage: str, message: Message) -> None:
        if session.stage != stage:
            raise OrchardError(f"{message.kind} out of order: the session expects {session.stage}")
        if stage != "trained" and int(message.fields.get("step", -1)) != session.step:
            raise OrchardError(f"{message.kind} names batch {message.fields.get('step')}, not {session.step}")

    def _on_partial(self, message: Message) -> Message:
        """Return the next scheduled batch's partial scores, encrypted under the host's own key."""
        session = self._session(message)
        with session.lock:
            self._expect(session, "partial", message)
            if session.key is None or session.quantised is None or not session.obfuscators:
                raise _not_set_up(message)
            batch = session.batch
            u = dequantise(session.quantised[batch]) @ session.weights
            session.batch_u = encode_scores(u)
            cts = session.key.encrypt_ints(session.batch_u, session.obfuscators.take(len(batch)))
            session.stage = "gradient"
            return Message(
                "partial", arrays={"ciphertexts": ciphertexts_to_bytes(cts, session.key.public.cipher_bytes)}
            )

    def _on_gradient(self, message: Message) -> Message:
        """Decrypt the guest's padded aggregate; return it with the host's own aggregate padded under [[.]]_G."""
        session = self._session(message)
        with session.lock:
            self._expect(session, "gradient", message)
            public, key, batch = session.public, session.key, session.batch
            if public is None or key is None or session.batch_u is None or session.quantised is None:
                raise _not_set_up(message)
            try:
                guest_sums = checked_ciphertexts(
                    message.arrays["guest_sums"], key.public, session.guest_columns, "the guest's padded sums"
                )
                slopes = checked_ciphertexts(
                    message.arrays["slopes"], public, len(batch), "the guest's slopes"
                )
                offsets = checked_ciphertexts(
                    message.arrays["ciphertexts"], public, len(batch), "the guest's residual offsets"
                )
            except (KeyError, ValueError) as exc:
                raise OrchardError(f"gradient request rejected: {exc}") from exc
            opened = plain_to_bytes([key.decrypt_int(c) for c in guest_sums], key.public)
            residuals = scaled_plus(slopes, session.batch_u, offsets, public)  # [[slope u_h + offset]]_G
            sums = encrypted_column_sums(residuals, session.quantised[batch], public)
            session.masks = [public.random_mask() for _ in sums]
            noise = session.noise.take(len(sums)) if session.noise else public.noise(len(sums))
            masked = [
                c * public.encrypt(int(r), e) % public.n2
                for c, r, e in zip(sums, session.masks, noise, strict=True)
            ]
            session.stage = "update"
            return Message(
                "gradient",
                arrays={"guest_plain": opened, "masked": ciphertexts_to_bytes(masked, public.cipher_bytes)},
            )

    def _on_update(self, message: Message) -> Message:
        session = self._session(message)
        with session.lock:
            self._expect(session, "update", message)
            public, config = session.public, session.config
            if public is None or config is None or session.optimizer is None or session.weights is None:
                raise _not_set_up(message)
            try:
                totals = plain_from_bytes(message.arrays["plain"], public, len(session.masks), "the update")
            except (KeyError, ValueError) as exc:
                raise OrchardError(f"update rejected: {exc}") from exc
            n, rows = int(public.n), len(session.batch)
            grad = np.array(
                [decode_gradient(t - int(r), n, rows) for t, r in zip(totals, session.masks, strict=True)]
            )
            session.masks, session.batch_u = [], None
            session.weights = session.optimizer.update(
                session.weights, regularised(grad, session.weights, config.l2, False)
            )
            session.step += 1
            session.stage = "partial" if session.step < len(session.schedule) else "trained"
            return Message("update", fields={"step": session.step})

    # --- SecureBoost training (the core's host side, one per session) ---
    def _on_sb_setup(self, message: Message) -> Message:
        """Set up SecureBoost in a training session after its PSI: the config, the guest's key, the train rows.

        The host bins its features over the training rows only (missing values filled with their mean there)
        and answers the core's candidate count; every later sb_* message goes to this session's core.
        """
        session = self._session(message)
        with session.lock:
            if session.aligned is None or session.config is not None or session.sb is not None:
                raise OrchardError("sb_setup before the intersection, twice, or in a hetero-LR session")
            try:
                config = SBConfig(**message.fields["config"])
            except (KeyError, TypeError, ValueError) as exc:
                raise OrchardError(f"SecureBoost config rejected: {exc}") from exc
            train = np.asarray(
                message.arrays.get("train_positions", np.zeros(0, dtype="<i8")), dtype=np.int64
            )
            if (
                train.ndim != 1
                or len(np.unique(train)) != len(train)
                or (train.size and (train.min() < 0 or train.max() >= len(session.aligned)))
            ):
                raise OrchardError("train positions must be distinct rows of the intersection")
            if len(train) < 2 * config.min_child_rows:
                raise OrchardError(
                    f"{len(train)} training rows cannot be split into two nodes of {config.min_child_rows} rows"
                )
            values = self.table.iloc[session.aligned[train]][self.features].to_numpy(dtype=float)
            session.sb_fill = fill_values(values)
            core = SecureBoostHost(filled(values, session.sb_fill), config)
            reply = self._core(core.setup, Message("sb_setup", {**message.fields, "rows": len(train)}))
            session.sb, session.train, session.algorithm = core, train, "secureboost"
            session.stage = "sb_training"
            return Message("sb_setup", fields={**reply.fields, "features": len(self.features)})

    @staticmethod
    def _core(handler: Any, message: Message) -> Message:
        """Run a core handler, turning its refusal into the channel's (the guest learns why)."""
        try:
            reply: Message = handler(message)
        except ProtocolError as exc:
            raise OrchardError(str(exc)) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise OrchardError(f"{message.kind}: malformed request ({exc})") from exc
        return reply

    def _sb(self, message: Message) -> tuple[HostSession, SecureBoostHost]:
        session = self._session(message)
        if session.sb is None or session.stage != "sb_training":
            raise OrchardError(
                f"{message.kind} outside a SecureBoost training session (stage {session.stage})"
            )
        return session, session.sb

    def _on_sb_tree(self, message: Message) -> Message:
        session, core = self._sb(message)
        with session.lock:
            return self._core(core.start_tree, message)

    def _on_sb_histograms(self, message: Message) -> Message:
        session, core = self._sb(message)
        with session.lock:
            return self._core(core.histograms, message)

    def _on_sb_split(self, message: Message) -> Message:
        session, core = self._sb(message)
        with session.lock:
            return self._core(core.split, message)

    def _on_sb_end_tree(self, message: Message) -> Message:
        """Close a tree; after the last one the session is trained (evaluate, then finish)."""
        session, core = self._sb(message)
        with session.lock:
            reply = self._core(core.end_tree, message)
            if len(core.splits) == core.config.trees:
                session.stage = "trained"
            return reply

    # --- a tree part's routing (SecureBoost evaluate and score) ---
    def _route_state(self, session: HostSession, part: dict[str, Any], eligible: np.ndarray) -> RouteState:
        if session.route is None:
            session.route = RouteState(
                model=_tree_model(part),
                features=[str(f) for f in part["features"]],
                fill=np.asarray(part["fill"], dtype=float),
                depth=int(part["depth"]),
                eligible=eligible,
            )
        return session.route

    def _route(self, session: HostSession, state: RouteState, message: Message) -> np.ndarray:
        """Answer one level of routing: per (position, tree, node) 1 left, 0 right, NO_ANSWER over budget.

        Refused: a position outside the eligible rows, a node that is not a host node at exactly this level,
        a level not above the last answered one, a (position, tree) twice, a node off the path the host's
        earlier answers gave. A position is counted in the reveal ledger once per session, when first asked;
        a position over budget gets no answer at any level.
        """
        arrays = [
            np.asarray(message.arrays.get(k, np.zeros(0, dtype="<i4"))) for k in ("rows", "trees", "nodes")
        ]
        rows, trees, nodes = arrays
        if any(a.ndim != 1 or a.dtype not in (np.int32, np.int64) for a in arrays) or not (
            len(rows) == len(trees) == len(nodes)
        ):
            raise OrchardError(
                f"{message.kind}: rows, trees and nodes must be 1-D integer arrays of one length"
            )
        if not len(rows):
            return np.zeros(0, dtype=np.uint8)
        level = message.fields.get("level")
        if not isinstance(level, int) or isinstance(level, bool) or not state.level < level < state.depth:
            raise OrchardError(
                f"{message.kind}: level {level!r} is not after level {state.level} of the part"
            )
        if rows.min() < 0 or rows.max() >= len(state.eligible) or not state.eligible[rows].all():
            raise OrchardError(f"{message.kind}: a row is not one of the session's rows it may ask about")
        splits = state.model.splits
        seen: set[tuple[int, int]] = set()
        for r, t, node in zip(rows.tolist(), trees.tolist(), nodes.tolist(), strict=True):
            if not 0 <= t < len(splits) or node not in splits[t] or depth_of(node) != level:
                raise OrchardError(
                    f"{message.kind}: tree {t} node {node} is not a host node at level {level}"
                )
            if (r, t) in seen:
                raise OrchardError(f"{message.kind}: row {r} of tree {t} asked twice at level {level}")
            seen.add((r, t))
            top = state.below.get((r, t))
            if top is not None and not in_subtree(node, top):
                raise OrchardError(
                    f"{message.kind}: node {node} is off the path the host answered for row {r}"
                )
        state.level = level
        fresh = sorted(set(rows.tolist()) - set(state.charged))
        if fresh:
            keys = [self.keys[i] for i in session_rows(session)[fresh].tolist()]
            allowed = self.ledger.allow(keys, self.policy.max_reveals_per_row)
            state.charged.update(zip(fresh, allowed.tolist(), strict=True))
        ok = np.array([state.charged[r] for r in rows.tolist()], dtype=bool)
        left = np.full(len(rows), NO_ANSWER, dtype=np.uint8)
        if ok.any():
            asked = rows[ok]
            x = filled(
                self.table.iloc[session_rows(session)[asked]][state.features].to_numpy(dtype=float),
                state.fill,
            )
            reply = state.model.route(
                Message(
                    "sb_route",
                    {"count": len(asked)},
                    {"rows": np.arange(len(asked)), "trees": trees[ok], "nodes": nodes[ok]},
                ),
                x,
            )
            left[ok] = reply.arrays["left"]
        for r, t, node, d in zip(rows.tolist(), trees.tolist(), nodes.tolist(), left.tolist(), strict=True):
            if d != NO_ANSWER:
                state.below[(r, t)] = 2 * node + 1 if d == 1 else 2 * node + 2
        return left

    def _reveal(self, session_rows: np.ndarray, part: dict[str, Any]) -> np.ndarray:
        """Return the final model's partial scores of host rows; NaN for rows over their reveal budget."""
        return self._reveal_rows(session_rows, part)[0]

    def _reveal_rows(self, session_rows: np.ndarray, part: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Return (partial scores, which rows were revealed): NaN for rows over their reveal budget."""
        keys = [self.keys[i] for i in session_rows.tolist()]
        allowed = self.ledger.allow(keys, self.policy.max_reveals_per_row)
        scaler = Scaler(features=part["features"], mean=part["scaler"]["mean"], std=part["scaler"]["std"])
        u = np.full(len(keys), np.nan)
        if allowed.any():
            frame = self.table.iloc[session_rows[allowed]]
            u[allowed] = dequantise(quantise(scaler.transform(frame))) @ np.asarray(part["weights"])
        return u, allowed

    def _part(self, session: HostSession) -> dict[str, Any]:
        if session.sb is not None:
            return self._tree_part(session)
        if session.scaler is None or session.weights is None:
            raise OrchardError("the session has no fitted part yet: nothing to score with")
        return {
            "features": self.features,
            "scaler": {"mean": session.scaler.mean, "std": session.scaler.std},
            "weights": session.weights.tolist(),
            "quantisation_bits": X_BITS,
        }

    def _tree_part(self, session: HostSession) -> dict[str, Any]:
        """Return the host's SecureBoost part: per tree, per host node, its feature and bin edge (threshold)."""
        core, fill = session.sb, session.sb_fill
        if core is None or fill is None or len(core.splits) != core.config.trees:
            raise OrchardError("the session has no trained trees yet: nothing to score with")
        model = core.model()
        return {
            "kind": "secureboost",
            "features": self.features,
            "fill": fill.tolist(),
            "depth": core.config.max_depth,
            "config": core.config.as_dict(),
            "edges": [e.tolist() for e in model.edges],
            "trees": [
                {
                    str(node): {
                        "feature": f,
                        "name": self.features[f],
                        "bin": b,
                        "threshold": float(model.edges[f][b]),
                    }
                    for node, (f, b) in sorted(tree.items())
                }
                for tree in model.splits
            ],
        }

    def _stored_part(self, part_id: str) -> dict[str, Any]:
        path = self.state_dir / "models" / f"{part_id}.json"
        if not path.exists():
            raise OrchardError(f"model part {part_id} is retired or unknown")
        part: dict[str, Any] = json.loads(path.read_text())
        return part

    def _on_evaluate(self, message: Message) -> Message:
        """Return the final partial scores of the out-of-time rows only, once per session, within budget.

        With `compare: true` the reply also carries `u_active`: the active part's partial scores of the same
        rows (within the same per-row budget), so the guest can compare the new part with the one in use.
        """
        session = self._session(message)
        compare = _flag(message, "compare", False)
        with session.lock:
            if session.algorithm == "secureboost":
                return self._evaluate_trees(session, message, compare)
            self._expect(session, "trained", message)
            if session.aligned is None or session.train is None:
                raise _not_set_up(message)
            test = np.setdiff1d(np.arange(len(session.aligned)), session.train)
            u = self._reveal(session.aligned[test], self._part(session))
            arrays = {"positions": test.astype("<i8"), "u": u.astype("<f8")}
            active = self._active_or_none() if compare else None
            if active is not None and is_tree_part(self._stored_part(active)):
                raise OrchardError(
                    "the active part is a SecureBoost part: an LR part cannot be compared with it"
                )
            if active is not None:
                u_active = self._reveal(session.aligned[test], self._stored_part(active))
                arrays["u_active"] = u_active.astype("<f8")
            session.stage = "evaluated"
            return Message("evaluate", arrays=arrays)

    def _evaluate_trees(self, session: HostSession, message: Message, compare: bool) -> Message:
        """Answer one level of the out-of-time rows' routing at the new trees' host nodes (`final`: the last).

        Only the session's out-of-time rows may be asked about, each counted once in the reveal ledger; the
        evaluation runs once: after the `final` request the session accepts only `finish`.
        """
        if compare:
            raise OrchardError("evaluate: comparing with the active part is not supported for SecureBoost")
        if session.stage not in ("trained", "evaluating"):
            raise OrchardError(f"{message.kind} out of order: the session expects {session.stage}")
        if session.train is None:
            raise _not_set_up(message)
        eligible = np.ones(len(session_rows(session)), dtype=bool)
        eligible[session.train] = False
        state = self._route_state(session, self._part(session), eligible)
        left = self._route(session, state, message)
        final = _flag(message, "final", False)
        session.stage = "evaluated" if final else "evaluating"
        return Message(
            "evaluate",
            fields={"final": final, "test_rows": int(eligible.sum()), "revealed": len(state.revealed)},
            arrays={"left": left},
        )

    def _on_finish(self, message: Message) -> Message:
        """Store the session's part (with the reference bins of its own features); activate it or gate it.

        `activate` (default true) makes it the active part and retires every other; `activate: false` stores
        it as the candidate (the active part stays in use, an older candidate is retired) until a
        `part_decision` promotes or rejects it.
        """
        session = self._session(message)
        activate = _flag(message, "activate", True)
        if session.stage not in ("trained", "evaluated"):
            raise OrchardError("finish before training")
        if session.aligned is None or session.train is None:
            raise _not_set_up(message)
        reference = ReferenceProfile.fit(
            self.table.iloc[session.aligned[session.train]], numeric=list(self.features), categorical=[]
        )
        part = {
            **self._part(session),
            "job": str(message.fields.get("job_id", "")),
            "reference": reference.to_dict(),
        }
        text = json.dumps(part, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        part_id = f"host-part-{digest[:16]}"
        models = self.state_dir / "models"
        with self._models_lock:
            write_json(part, models / f"{part_id}.json")
            if activate:
                self._retire_all_but(part_id)
                detail = f"model part {part_id} stored; older parts retired"
            elif part_id == self._active_or_none():
                detail = f"model part {part_id} stored; it is the active part already"
            else:
                previous = self._candidate_or_none()
                detail = (
                    f"model part {part_id} stored as the candidate; the active part "
                    f"{self._active_or_none() or '(none)'} stays active"
                )
                if previous is not None and previous != part_id:
                    self._retire(previous)
                    detail += f"; the older candidate {previous} retired"
                write_json({"part_id": part_id}, models / "candidate.json")
        self._drop(message.session)
        self._record(message.session, "finished", detail, part_id=part_id, activated=activate)
        return Message(
            "finish",
            fields={
                "part_id": part_id,
                "sha256": digest,
                "features": len(self.features),
                "kind": str(part.get("kind", "hetero_lr")),
            },
        )

    def _retire(self, part_id: str) -> None:
        """Move one stored part to models/retired (never scored again)."""
        models = self.state_dir / "models"
        retired = models / "retired"
        retired.mkdir(parents=True, exist_ok=True)
        path = models / f"{part_id}.json"
        if path.exists():
            path.replace(retired / path.name)

    def _retire_all_but(self, part_id: str) -> None:
        """Move every other stored part to models/retired (never scored again) and mark part_id active."""
        models = self.state_dir / "models"
        retired = models / "retired"
        retired.mkdir(parents=True, exist_ok=True)
        for path in models.glob("host-part-*.json"):
            if path.stem != part_id:
                path.replace(retired / path.name)
        write_json({"part_id": part_id}, models / "active.json")
        (models / "candidate.json").unlink(missing_ok=True)

    def active_part(self) -> str:
        """Return the id of the part that scoring may use, or raise if none."""
        path = self.state_dir / "models" / "active.json"
        if not path.exists():
            raise OrchardError("the host has no active model part")
        return str(json.loads(path.read_text())["part_id"])

    def _active_or_none(self) -> str | None:
        path = self.state_dir / "models" / "active.json"
        return str(json.loads(path.read_text())["part_id"]) if path.exists() else None

    def _candidate_or_none(self) -> str | None:
        path = self.state_dir / "models" / "candidate.json"
        return str(json.loads(path.read_text())["part_id"]) if path.exists() else None

    def candidate_part(self) -> str | None:
        """Return the id of the part stored as the candidate (awaiting a part_decision), if any."""
        return self._candidate_or_none()

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
        with self._models_lock:
            candidate = self._candidate_or_none()
            decided = self.state_dir / "sessions" / f"decision-{part_id}.json"
            if candidate != part_id and decided.exists():
                # the guest's month is being redone after an interruption: the same decision again is answered
                # as it was, another one is refused
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
            previous = self._active_or_none()
            if promote:
                self._retire_all_but(candidate)
                detail = f"candidate {candidate} promoted to active; every other part retired"
            else:
                self._retire(candidate)
                (self.state_dir / "models" / "candidate.json").unlink(missing_ok=True)
                detail = f"candidate {candidate} rejected and retired; the active part is unchanged"
            active = self._active_or_none()
        write_json(
            {
                "session": message.session,
                "kind": "part_decision",
                "status": "promoted" if promote else "rejected",
                "detail": detail,
                "part_id": candidate,
                "previous_active": previous,
                "active": active,
                "at": time.time(),
            },
            self.state_dir / "sessions" / f"decision-{candidate}.json",
        )
        log.info("part_decision in session %s: %s", message.session, detail)
        return Message("part_decision", fields={"part_id": candidate, "promoted": promote, "active": active})

    def _on_abort(self, message: Message) -> Message:
        self._drop(message.session)
        self._record(message.session, "failed", str(message.fields.get("reason", "aborted by the guest")))
        return Message("abort")

    # --- scoring ---
    def _recent_score_sessions(self) -> int:
        hour_ago = time.time() - 3600
        count = 0
        for path in (self.state_dir / "sessions").glob("score-*.json"):
            record = json.loads(path.read_text())
            count += record.get("kind") == "score" and float(record.get("at", 0)) > hour_ago
        return count

    def _on_score_open(self, message: Message) -> Message:
        """Open a logged, rate-limited scoring session for the active part (or the candidate, whose gate
        measures its score stability on recent rows) and at most max_score_ids ids.

        Optional fields: `period` (the session's PSI then runs over the host rows of that vintage only) and
        `monitor` (the score reply then carries the noised CSI of the host's features over the revealed rows).
        """
        part_id = str(message.fields.get("part_id", ""))
        active = self.active_part()
        if part_id not in (active, self._candidate_or_none()):
            raise OrchardError(f"model part {part_id!r} is retired or unknown; the active part is {active}")
        count = int(message.fields.get("ids", -1))
        purpose = str(message.fields.get("purpose", ""))[:200]
        raw_period = message.fields.get("period")
        period = None if raw_period is None else str(raw_period)
        monitor = _flag(message, "monitor", False)
        if not 0 < count <= self.policy.max_score_ids:
            raise OrchardError(
                f"a scoring session may present 1..{self.policy.max_score_ids} ids, not {count}"
            )
        if not purpose:
            raise OrchardError("a scoring session must state its purpose (it is logged at the host)")
        if period is not None:
            if not 0 < len(period) <= 64:
                raise OrchardError("a scoring session's period must be 1..64 characters")
            self._period_rows(period)  # refuses a host table without a vintage column
        if self._recent_score_sessions() >= self.policy.score_sessions_per_hour:
            raise OrchardError(f"rate limit: {self.policy.score_sessions_per_hour} scoring sessions per hour")
        session = self._open(message, "score")
        session.max_ids, session.part_id = count, part_id
        session.period, session.monitor = period, monitor
        session.record = {
            "session": message.session,
            "kind": "score",
            "status": "open",
            "purpose": purpose,
            "ids": count,
            "part_id": part_id,
            "period": period,
            "monitor": monitor,
            "at": time.time(),
        }
        write_json(session.record, self._score_log(message.session))
        return Message("score_open", fields={"ids": count})

    def _score_log(self, session_id: str) -> Path:
        return self.state_dir / "sessions" / f"score-{_session_hash(session_id)}.json"

    def _on_score(self, message: Message) -> Message:
        """Return the active part's partial scores of the scoring session's matched rows, then close it.

        In a monitoring session the reply also carries `csi`, `csi_rows` (and `csi_refused` when refused).
        """
        session = self._session(message, "score")
        if session.aligned is None:
            raise OrchardError("score before the scoring session's PSI")
        if session.part_id not in (self.active_part(), self._candidate_or_none()):
            raise OrchardError(f"model part {session.part_id} was retired during the session")
        part = self._stored_part(session.part_id)
        if is_tree_part(part):
            return self._score_trees(message, session, part)
        u, allowed = self._reveal_rows(session.aligned, part)
        fields: dict[str, Any] = {}
        if session.monitor:
            fields = self._csi(message.session, session, session.aligned[allowed], part)
        self._drop(message.session)
        record = {
            **session.record,
            "status": "scored",
            "matched": len(session.aligned),
            "revealed": int(allowed.sum()),
            **({"csi_refused": fields["csi_refused"]} if "csi_refused" in fields else {}),
        }
        write_json(record, self._score_log(message.session))
        return Message("score", fields=fields, arrays={"u": u.astype("<f8")})

    def _score_trees(self, message: Message, session: HostSession, part: dict[str, Any]) -> Message:
        """Answer one level of a SecureBoost part's routing of the session's matched rows; close on `final`.

        Each `score` carries the (position in the matched order, tree, node) triples of host nodes the guest's
        rows reach at `level`; the host answers within the reveal budget (a row is counted once per session,
        when first asked; over budget: NO_ANSWER at every level). The `final` request (its triples may be
        empty) closes the session and, in a monitoring session, carries the CSI over the answered rows.
        """
        final = _flag(message, "final", False)
        if not final and "rows" not in message.arrays:
            raise OrchardError(
                f"model part {session.part_id} is a SecureBoost part: each score request names the (row, tree, "
                "node) triples of one level, and the last one says final: true (no partial scores)"
            )
        with session.lock:
            state = self._route_state(session, part, np.ones(len(session_rows(session)), dtype=bool))
            left = self._route(session, state, message)
            if not final:
                return Message("score", fields={"final": False}, arrays={"left": left})
            revealed = session_rows(session)[state.revealed]
            fields: dict[str, Any] = {"final": True}
            if session.monitor:
                fields.update(self._csi(message.session, session, revealed, part))
        self._drop(message.session)
        record = {
            **session.record,
            "status": "scored",
            "matched": len(session_rows(session)),
            "revealed": len(revealed),
            "asked": len(state.charged),
            **({"csi_refused": fields["csi_refused"]} if "csi_refused" in fields else {}),
        }
        write_json(record, self._score_log(message.session))
        return Message("score", fields=fields, arrays={"left": left})

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
        keys = "\n".join(sorted(self.keys[i] for i in rows.tolist()))
        digest = hmac.new(key, f"{part_id}|{period}|{keys}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big")

    def _csi(
        self, session_id: str, session: HostSession, rows: np.ndarray, part: dict[str, Any]
    ) -> dict[str, Any]:
        """Return the reply fields of a monitoring session: the noised CSI of the host's features, or why not.

        The CSI is computed over the rows revealed in the session against the part's reference bins. Every
        bin count gets fresh Laplace noise (scale csi_noise_scale; one row moves one count per feature by 1)
        and is clipped at 0 before normalising; values are rounded to 4 decimals. The exact CSI, named, is
        kept at the host only (monitoring/<session hash>.json).
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
        frame = self.table.iloc[rows]
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
