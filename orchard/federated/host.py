"""The host party (the platform): answers PSI, hetero-LR and scoring requests over its features only."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import pandas as pd

from orchard.atomic import write_json
from orchard.errors import OrchardError
from orchard.federated.channel import Message
from orchard.federated.data import HOST_FEATURES, KEY, Scaler
from orchard.federated.paillier_lr import (
    D_BITS,
    X_BITS,
    Adam,
    LRConfig,
    Prefetched,
    PublicKey,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    dequantise,
    encrypted_column_sums,
    quantise,
    regularised,
    signed,
)
from orchard.federated.psi_ecdh import Blinder, shuffled

log = logging.getLogger(__name__)

SCORE_KEY_LABEL = b"orchard-score-ids-v1"


def score_id_key(channel_key: bytes) -> bytes:
    """Return the key both parties use to hash customer ids in scoring requests."""
    return hmac.new(channel_key, SCORE_KEY_LABEL, hashlib.sha256).digest()


def hashed_ids(channel_key: bytes, ids: list[str]) -> np.ndarray:
    """Return HMAC-SHA256 of each id under the scoring key as an (n, 32) uint8 array."""
    key = score_id_key(channel_key)
    raw = b"".join(hmac.new(key, i.encode(), hashlib.sha256).digest() for i in ids)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32)


@dataclass
class HostSession:
    """What the host remembers of one joint job."""

    last_seen: float
    blinder: Blinder | None = None
    shuffle: np.ndarray | None = None
    aligned: np.ndarray | None = None  # host row of each intersection position
    public: PublicKey | None = None
    config: LRConfig | None = None
    scaler: Scaler | None = None
    quantised: np.ndarray | None = None
    weights: np.ndarray | None = None
    optimizer: Adam | None = None
    masks: list[Any] = field(default_factory=list)
    noise: Prefetched | None = None  # the masks' obfuscators, made while the guest works
    batch_rows: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """Stop the session's background work."""
        if self.noise is not None:
            self.noise.close()


class HostParty:
    """The platform's side of the protocol, over its own table (key + HOST_FEATURES)."""

    def __init__(self, table: pd.DataFrame, state_dir: Path, channel_key: bytes,
                 idle_timeout_seconds: float = 120.0) -> None:  # fmt: skip
        missing = [c for c in [KEY, *HOST_FEATURES] if c not in table.columns]
        if missing:
            raise OrchardError(f"host table lacks column(s) {', '.join(missing)}")
        self.table = table.reset_index(drop=True)
        self.keys = self.table[KEY].astype(str).tolist()
        self.state_dir = Path(state_dir)
        self.channel_key = channel_key
        self.idle_timeout_seconds = idle_timeout_seconds
        self.sessions: dict[str, HostSession] = {}
        self._lock = threading.Lock()
        self._score_index: dict[bytes, int] | None = None
        self._stop = threading.Event()

    # --- session bookkeeping ---
    def _session(self, message: Message, create: bool = False) -> HostSession:
        with self._lock:
            session = self.sessions.get(message.session)
            if session is None:
                if not create:
                    raise OrchardError(f"session {message.session} is unknown or was aborted")
                session = self.sessions[message.session] = HostSession(last_seen=time.monotonic())
            session.last_seen = time.monotonic()
            return session

    def _drop(self, session_id: str) -> None:
        with self._lock:
            session = self.sessions.pop(session_id, None)
        if session is not None:
            session.close()

    def _record(self, session_id: str, status: str, detail: str) -> None:
        write_json({"session": session_id, "status": status, "detail": detail, "at": time.time()},
                   self.state_dir / "sessions" / f"{session_id}.json")  # fmt: skip

    def reap_idle(self) -> list[str]:
        """Abort sessions whose guest has been silent longer than the idle timeout; return their ids."""
        now = time.monotonic()
        with self._lock:
            idle = [s for s, v in self.sessions.items() if now - v.last_seen > self.idle_timeout_seconds]
            stale = [self.sessions.pop(session_id) for session_id in idle]
        for session in stale:
            session.close()
        for session_id in idle:
            detail = (f"the guest went silent for more than {self.idle_timeout_seconds:.0f} s; "
                      "session aborted, nothing of it kept")  # fmt: skip
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
        self._session(message, create=True)
        self._record(message.session, "started", "joint job started")
        return Message("hello", fields={"rows": len(self.keys)})

    def _on_psi_blind(self, message: Message) -> Message:
        session = self._session(message)
        guest = message.arrays["blinded"]
        session.blinder = Blinder()
        try:
            double = session.blinder.blind_points(guest)
        except ValueError as exc:
            raise OrchardError(f"PSI input rejected: {exc}") from exc
        session.shuffle = shuffled(len(self.keys))
        own = session.blinder.blind_ids(self.keys[i] for i in session.shuffle.tolist())
        return Message("psi_blind", arrays={"double": double, "host_blinded": own})

    def _on_psi_result(self, message: Message) -> Message:
        session = self._session(message)
        positions = np.asarray(message.arrays["host_positions"], dtype=np.int64)
        if session.shuffle is None or (
            positions.size and (positions.min() < 0 or positions.max() >= len(self.keys))
        ):
            raise OrchardError("PSI result refers to rows the host did not send")
        session.aligned = session.shuffle[positions]
        return Message("psi_result", fields={"rows": len(positions)})

    def _on_train_setup(self, message: Message) -> Message:
        session = self._session(message)
        if session.aligned is None:
            raise OrchardError("train_setup before the intersection")
        config = LRConfig(**message.fields["config"])
        train = np.asarray(message.arrays["train_positions"], dtype=np.int64)
        rows = self.table.iloc[session.aligned]
        session.scaler = Scaler.fit(rows.iloc[train], HOST_FEATURES)
        session.quantised = quantise(session.scaler.transform(rows))
        session.public = PublicKey.from_n(int(message.fields["n"], 16))
        session.config = config
        session.weights = np.zeros(len(HOST_FEATURES))
        session.optimizer = Adam(len(HOST_FEATURES), config.learning_rate)
        session.close()
        session.noise = Prefetched(session.public.noise, len(HOST_FEATURES))
        return Message("train_setup", fields={"features": len(HOST_FEATURES)})

    def _positions(self, session: HostSession, message: Message) -> np.ndarray:
        positions = np.asarray(message.arrays["positions"], dtype=np.int64)
        if session.quantised is None:
            raise OrchardError("training was not set up")
        if positions.size and (positions.min() < 0 or positions.max() >= len(session.quantised)):
            raise OrchardError("positions outside the intersection")
        return positions

    def _on_partial(self, message: Message) -> Message:
        session = self._session(message)
        positions = self._positions(session, message)
        u = dequantise(session.quantised[positions]) @ session.weights
        return Message("partial", arrays={"u": u.astype("<f8")})

    def _on_gradient(self, message: Message) -> Message:
        session = self._session(message)
        with session.lock:
            positions = self._positions(session, message)
            public = session.public
            try:
                cts = ciphertexts_from_bytes(message.arrays["ciphertexts"], public)
            except ValueError as exc:
                raise OrchardError(f"gradient request rejected: {exc}") from exc
            if len(cts) != len(positions):
                raise OrchardError("gradient request: one ciphertext per row expected")
            sums = encrypted_column_sums(cts, session.quantised[positions], public)
            session.masks = [public.random_mask() for _ in sums]
            noise = session.noise.take(len(sums)) if session.noise else public.noise(len(sums))
            masked = [
                c * public.encrypt(int(r), e) % public.n2
                for c, r, e in zip(sums, session.masks, noise, strict=True)
            ]
            session.batch_rows = len(positions)
            return Message("gradient", arrays={"masked": ciphertexts_to_bytes(masked, public.cipher_bytes)})

    def _on_update(self, message: Message) -> Message:
        session = self._session(message)
        with session.lock:
            public, config = session.public, session.config
            if not session.masks or public is None or config is None:
                raise OrchardError("update without a pending gradient")
            width = (int(public.n).bit_length() + 7) // 8
            raw = np.ascontiguousarray(message.arrays["plain"], dtype=np.uint8)
            if raw.shape != (len(session.masks), width):
                raise OrchardError("update carries the wrong number of values")
            n = int(public.n)
            totals = [int(gmpy2.mpz.from_bytes(bytes(row), "big")) for row in raw]
            grad = np.array(
                [signed(t - int(r), n) for t, r in zip(totals, session.masks, strict=True)], dtype=float
            )
            grad = grad / float(1 << (D_BITS + X_BITS)) / session.batch_rows
            session.masks = []
            session.weights = session.optimizer.update(
                session.weights, regularised(grad, session.weights, config.l2, False)
            )
            return Message("update", fields={})

    def _on_finish(self, message: Message) -> Message:
        session = self._session(message)
        if session.weights is None or session.scaler is None:
            raise OrchardError("finish before training")
        part = {
            "features": HOST_FEATURES, "scaler": {"mean": session.scaler.mean, "std": session.scaler.std},
            "weights": session.weights.tolist(), "quantisation_bits": X_BITS, "job": message.fields.get("job_id", ""),
        }  # fmt: skip
        text = json.dumps(part, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        part_id = f"host-part-{digest[:16]}"
        write_json(part, self.state_dir / "models" / f"{part_id}.json")
        self._drop(message.session)
        self._record(message.session, "finished", f"model part {part_id} stored")
        return Message(
            "finish", fields={"part_id": part_id, "sha256": digest, "features": len(HOST_FEATURES)}
        )

    def _on_abort(self, message: Message) -> Message:
        self._drop(message.session)
        self._record(message.session, "failed", str(message.fields.get("reason", "aborted by the guest")))
        return Message("abort")

    def _on_score(self, message: Message) -> Message:
        part_id = str(message.fields.get("part_id", ""))
        path = self.state_dir / "models" / f"{part_id}.json"
        if not part_id.startswith("host-part-") or "/" in part_id or not path.exists():
            raise OrchardError(f"the host has no model part {part_id!r}")
        part = json.loads(path.read_text())
        if self._score_index is None:
            hashed = hashed_ids(self.channel_key, self.keys)
            self._score_index = {bytes(row): i for i, row in enumerate(hashed)}
        rows = [self._score_index.get(bytes(row), -1) for row in message.arrays["ids"]]
        found = np.array([r >= 0 for r in rows])
        scaler = Scaler(features=part["features"], mean=part["scaler"]["mean"], std=part["scaler"]["std"])
        u = np.full(len(rows), np.nan)
        if found.any():
            frame = self.table.iloc[[r for r in rows if r >= 0]]
            u[found] = dequantise(quantise(scaler.transform(frame))) @ np.asarray(part["weights"])
        return Message("score", arrays={"u": u.astype("<f8")})
