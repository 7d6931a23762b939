"""The guest party (the lender): drives PSI and hetero-LR training, registers the joint model, scores jointly."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchard.credit.metrics import auc
from orchard.credit.model import pd_to_score
from orchard.errors import OrchardError
from orchard.federated.channel import ChannelError, Message, PeerClient
from orchard.federated.data import GUEST_FEATURES, KEY, LABEL, VINTAGE, Scaler
from orchard.federated.host import hashed_ids
from orchard.federated.paillier_lr import (
    Adam,
    LRConfig,
    Prefetched,
    PrivateKey,
    batches,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    encode_residuals,
    regularised,
    sigmoid,
    with_intercept,
)
from orchard.federated.psi_ecdh import Blinder, match, shuffled

log = logging.getLogger(__name__)

HOST_SCORE = "host_partial_score"
TIER_CUTOFFS = (("A", 640.0), ("B", 600.0), ("C", 560.0))


@dataclass(eq=False)
class JointModel:
    """The guest's part of the joint LR: PD from its own features plus the host's partial score."""

    name: str
    guest_scaler: Scaler
    guest_weights: list[float]
    host_part_id: str
    host_part_sha256: str
    kind: str = "hetero_lr"
    features: list[str] = field(default_factory=lambda: [*GUEST_FEATURES, HOST_SCORE])

    def predict_pd(self, df: pd.DataFrame) -> np.ndarray:
        """Return the probability of bad from the guest features and the host's partial score column."""
        if HOST_SCORE not in df.columns:
            raise OrchardError(
                f"joint model {self.name} needs the host's partial score column {HOST_SCORE!r}"
            )
        host = pd.to_numeric(df[HOST_SCORE], errors="coerce").to_numpy(dtype=float)
        if np.isnan(host).any():
            raise OrchardError("the host returned no partial score for some customers (not platform users?)")
        linear = with_intercept(self.guest_scaler.transform(df)) @ np.asarray(self.guest_weights)
        return sigmoid(linear + host)


def risk_tier(scores: np.ndarray) -> np.ndarray:
    """Return the pre-credit risk tier (A best .. D) of score points."""
    out = np.full(len(scores), "D", dtype=object)
    for tier, cutoff in reversed(TIER_CUTOFFS):
        out[np.asarray(scores) >= cutoff] = tier
    return out


@dataclass(frozen=True)
class GuestJob:
    """What the guest needs to run one joint job."""

    job_id: str
    model_name: str
    config: LRConfig
    holdout_vintages: int = 3


@dataclass
class GuestOutcome:
    """What a finished joint training produced on the guest side."""

    job_id: str
    model: JointModel
    metrics: dict[str, float]
    psi: dict[str, Any]
    epoch_seconds: list[float]
    bytes_sent: int
    bytes_received: int
    messages: int
    train_rows: int
    test_rows: int
    intersection_sha256: str
    example: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready summary (no model object, no example rows)."""
        return {k: v for k, v in asdict(self).items() if k not in ("model", "example")}


def _psi(client: PeerClient, keys: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Run ECDH PSI; return (guest rows in intersection order, positions, stats)."""
    started = time.perf_counter()
    blinder = Blinder()
    order = shuffled(len(keys))
    blinded = blinder.blind_ids(keys[i] for i in order.tolist())
    reply = client.call(Message("psi_blind", arrays={"blinded": blinded}), "the intersection (PSI)")
    double = np.asarray(reply.arrays["double"])
    host_blinded = np.asarray(reply.arrays["host_blinded"])
    if double.shape != blinded.shape:
        raise OrchardError("the host answered the PSI with the wrong number of values")
    try:
        host_double = blinder.blind_points(host_blinded)
    except ValueError as exc:
        raise OrchardError(f"the host's PSI values are invalid: {exc}") from exc
    guest_pos, host_pos = match(double, host_double)
    # Both parties know the matched ids, so ordering them by key reveals nothing new and makes the batch
    # schedule reproducible by a centralised reference trained on the same rows.
    by_key = np.argsort(np.array([keys[i] for i in order[guest_pos].tolist()], dtype=object), kind="stable")
    guest_pos, host_pos = guest_pos[by_key], host_pos[by_key]
    client.call(Message("psi_result", arrays={"host_positions": host_pos.astype("<i8")}), "the PSI result")
    rows = order[guest_pos]
    stats = {"guest_ids": len(keys), "host_ids": len(host_blinded), "matched": len(rows),
             "seconds": round(time.perf_counter() - started, 3), "protocol": "ECDH-PSI P-256"}  # fmt: skip
    return rows, guest_pos, stats


def _out_of_time(vintages: pd.Series, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    months = sorted(vintages.unique())
    if len(months) <= holdout:
        raise OrchardError(f"need more than {holdout} vintages in the intersection, have {len(months)}")
    test = vintages.isin(months[-holdout:]).to_numpy()
    return np.flatnonzero(~test), np.flatnonzero(test)


def train_guest(client: PeerClient, table: pd.DataFrame, job: GuestJob) -> GuestOutcome:
    """Run PSI and hetero-LR training against the host; return the joint model (nothing registered)."""
    missing = [c for c in [KEY, VINTAGE, LABEL, *GUEST_FEATURES] if c not in table.columns]
    if missing:
        raise OrchardError(f"guest table lacks column(s) {', '.join(missing)}")
    config = job.config
    timings: dict[str, float] = {}
    client.call(Message("hello", fields={"job_id": job.job_id}), "the handshake")
    rows, _, psi_stats = _psi(client, table[KEY].astype(str).tolist())
    timings["psi"] = psi_stats["seconds"]
    if len(rows) < 50:
        raise OrchardError(f"the intersection holds only {len(rows)} customers; too few to train")
    joined = table.iloc[rows].reset_index(drop=True)
    matched_keys = sorted(joined[KEY].astype(str))
    intersection_sha = hashlib.sha256("\n".join(matched_keys).encode()).hexdigest()
    train_pos, test_pos = _out_of_time(joined[VINTAGE], job.holdout_vintages)
    y = joined[LABEL].to_numpy(dtype=float)

    started = time.perf_counter()
    key = PrivateKey(config.key_bits)
    width = key.public.cipher_bytes
    timings["keygen"] = round(time.perf_counter() - started, 3)
    scaler = Scaler.fit(joined.iloc[train_pos], GUEST_FEATURES)
    xg = with_intercept(scaler.transform(joined))
    client.call(
        Message("train_setup", fields={"config": config.as_dict(), "n": format(int(key.public.n), "x")},
                arrays={"train_positions": train_pos.astype("<i8")}),
        "the training set-up",
    )  # fmt: skip
    wg = np.zeros(xg.shape[1])
    opt = Adam(len(wg), config.learning_rate)
    epoch_seconds = []
    with Prefetched(key.obfuscators, min(config.batch_size, len(train_pos))) as obfuscators:
        for epoch in range(config.epochs):
            epoch_started = time.perf_counter()
            for batch in batches(len(train_pos), config, epoch):
                positions = train_pos[batch].astype("<i8")
                step = f"training epoch {epoch + 1}"
                u = client.call(Message("partial", arrays={"positions": positions}), step).arrays["u"]
                d = sigmoid(xg[positions] @ wg + u) - y[positions]
                cts = key.encrypt_ints(encode_residuals(d), obfuscators.take(len(positions)))
                reply = client.call(
                    Message("gradient", arrays={"positions": positions,
                                                "ciphertexts": ciphertexts_to_bytes(cts, width)}), step)  # fmt: skip
                masked = ciphertexts_from_bytes(reply.arrays["masked"], key.public)
                plain = [key.decrypt_int(c) for c in masked]
                pwidth = (int(key.public.n).bit_length() + 7) // 8
                raw = b"".join(v.to_bytes(pwidth, "big") for v in plain)
                client.call(Message("update", arrays={"plain": np.frombuffer(raw, dtype=np.uint8)
                                                      .reshape(len(plain), pwidth)}), step)  # fmt: skip
                grad = xg[positions].T @ d / len(positions)
                wg = opt.update(wg, regularised(grad, wg, config.l2, True))
            epoch_seconds.append(round(time.perf_counter() - epoch_started, 3))
            log.info("joint job %s: epoch %d took %.2f s", job.job_id, epoch + 1, epoch_seconds[-1])

    u_all = client.call(Message("partial", arrays={"positions": np.arange(len(joined), dtype="<i8")}),
                        "the evaluation").arrays["u"]  # fmt: skip
    pd_all = sigmoid(xg @ wg + u_all)
    metrics = {"auc_train": auc(y[train_pos], pd_all[train_pos]), "auc_test": auc(y[test_pos], pd_all[test_pos]),
               "n_train": float(len(train_pos)), "n_test": float(len(test_pos)),
               "bad_rate_train": float(y[train_pos].mean())}  # fmt: skip
    finish = client.call(Message("finish", fields={"job_id": job.job_id}), "storing the host's model part")
    model = JointModel(
        name=job.model_name, guest_scaler=scaler, guest_weights=wg.tolist(),
        host_part_id=str(finish.fields["part_id"]), host_part_sha256=str(finish.fields["sha256"]),
    )  # fmt: skip
    return GuestOutcome(
        job_id=job.job_id, model=model, metrics=metrics, psi=psi_stats, epoch_seconds=epoch_seconds,
        bytes_sent=client.bytes_sent, bytes_received=client.bytes_received, messages=client.messages,
        train_rows=len(train_pos), test_rows=len(test_pos), intersection_sha256=intersection_sha,
        example=example_frame(joined.head(5), model, u_all[:5]), seconds=timings,
    )  # fmt: skip


def abort_quietly(client: PeerClient, reason: str) -> None:
    """Tell the host to drop the session, ignoring a host that is already gone."""
    with contextlib.suppress(ChannelError):
        client.call(Message("abort", fields={"reason": reason[:500]}), "the abort")


def partial_scores(client: PeerClient, channel_key: bytes, part_id: str, keys: list[str]) -> np.ndarray:
    """Return the host's partial scores of customers (ids travel only as keyed hashes)."""
    reply = client.call(
        Message("score", fields={"part_id": part_id}, arrays={"ids": hashed_ids(channel_key, keys)}),
        "joint scoring",
    )
    return np.asarray(reply.arrays["u"], dtype=float)


def joint_score_frame(model: JointModel, frame: pd.DataFrame, host_scores: np.ndarray) -> pd.DataFrame:
    """Return key, PD, score points and pre-credit risk tier of each customer."""
    scored = frame.assign(**{HOST_SCORE: host_scores})
    pd_values = model.predict_pd(scored)
    points = pd_to_score(pd_values)
    return pd.DataFrame({KEY: frame[KEY].to_numpy(), "pd": pd_values, "score": points,
                         "tier": risk_tier(points)})  # fmt: skip


def example_frame(table: pd.DataFrame, model: JointModel, host_scores: np.ndarray) -> pd.DataFrame:
    """Return an input example of the joint model: guest features plus host partial scores."""
    return table.loc[:, GUEST_FEATURES].assign(**{HOST_SCORE: host_scores}).reset_index(drop=True)


def guest_data(path: Path) -> pd.DataFrame:
    """Read the guest's table."""
    if not Path(path).exists():
        raise OrchardError(f"guest data {path} does not exist")
    return pd.read_parquet(path)
