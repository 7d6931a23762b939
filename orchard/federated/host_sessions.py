"""The host party's state across handlers: its policy, its rows with their reveal ledger, each session's state."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchard.atomic import write_json
from orchard.errors import OrchardError
from orchard.federated.channel import Message
from orchard.federated.data import Scaler
from orchard.federated.paillier_lr import (
    Adam,
    Helper,
    LRConfig,
    Prefetched,
    PrivateKey,
    PublicKey,
)
from orchard.federated.psi_ecdh import Blinder
from orchard.federated.secureboost import HostModel, SecureBoostHost


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
    helper: Helper | None = None  # the session's worker process (a large LR session)
    lock: threading.Lock = field(default_factory=threading.Lock)
    algorithm: str = "hetero_lr"  # a training session's algorithm, fixed by its set-up message
    sb: SecureBoostHost | None = None  # a SecureBoost training session's core (its host side)
    sb_fill: np.ndarray | None = None  # the host's fill values of missing features (its training rows' means)
    route: RouteState | None = None  # a tree part's level-by-level answers in this session (evaluate, score)

    def close(self) -> None:
        """Stop the session's background work (its prefetched values, then its helper process)."""
        for stream in (self.noise, self.obfuscators):
            if stream is not None:
                stream.close()
        if self.helper is not None:
            self.helper.close()
        self.noise = self.obfuscators = self.helper = None

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


@dataclass(frozen=True)
class HostData:
    """The host's own table as its handlers read it: feature columns, row ids, vintages, and each row's budget."""

    table: pd.DataFrame  # checked against the host's table spec
    features: list[str]
    keys: list[str]  # the id of each table row, in table order
    vintages: np.ndarray | None  # each row's period (its vintage column), None without one
    ledger: RevealLedger
    max_reveals_per_row: int

    def period_rows(self, period: str) -> np.ndarray:
        """Return the host table rows of one period (its vintage column), or refuse if it has none."""
        if self.vintages is None:
            raise OrchardError(
                f"a session scoped to period {period!r} needs a vintage column in the host's table, "
                "and the host's table spec declares none (vintage_column)"
            )
        return np.flatnonzero(self.vintages == period)

    def allow(self, rows: np.ndarray) -> np.ndarray:
        """Return which host rows may be revealed once more, counting them in the reveal ledger."""
        return self.ledger.allow([self.keys[i] for i in rows.tolist()], self.max_reveals_per_row)


def not_set_up(message: Message) -> OrchardError:
    """Return the refusal of a message whose session lacks what its stage needs (reached without its set-up)."""
    return OrchardError(f"{message.kind}: the session is not set up for it")


def flag(message: Message, name: str, default: bool) -> bool:
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
