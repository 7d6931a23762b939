"""The host's side of hetero-LR: set-up, the batch loop (partial, gradient, update), evaluation, LR partial scores.

Batches come from the host's own schedule (each row once per epoch, batches of at least MIN_BATCH_ROWS); per-row
partial scores leave the host only encrypted under its own key during training, and in plaintext only through
the reveal budget (`reveal_lr`: the out-of-time rows at evaluation, a scoring session's matched rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orchard.errors import OrchardError
from orchard.federated.channel import Message
from orchard.federated.data import Scaler
from orchard.federated.host_parts import PartStore, is_tree_part
from orchard.federated.host_sessions import HostData, HostSession, not_set_up
from orchard.federated.paillier_lr import (
    MIN_BATCH_ROWS,
    X_BITS,
    Adam,
    Helper,
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
    plain_from_bytes,
    plain_to_bytes,
    quantise,
    regularised,
    scaled_column_sums,
)


def train_setup(session: HostSession, message: Message, data: HostData) -> Message:
    """Set up hetero-LR after the PSI: the config, the guest's key, the train rows; fit the host's scaler."""
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
    features = data.features
    rows = data.table.iloc[session.aligned]
    session.scaler = Scaler.fit(rows.iloc[train], features)
    session.quantised = quantise(session.scaler.transform(rows))
    session.train, session.config, session.guest_columns = train, config, guest_columns
    session.public = PublicKey.from_n(int(message.fields["n"], 16))
    if int(session.public.n).bit_length() < config.key_bits - 8:
        raise OrchardError("the guest's key is shorter than the agreed key size")
    session.key = PrivateKey(config.key_bits)
    session.weights = np.zeros(len(features))
    session.optimizer = Adam(len(features), config.learning_rate)
    session.schedule = [b for epoch in range(config.epochs) for b in batches(len(train), config, epoch)]
    session.close()
    session.helper = Helper.for_session(len(train), config)
    session.noise = Prefetched(session.public.noise, [len(features)] * len(session.schedule), session.helper)
    session.obfuscators = Prefetched(
        session.key.obfuscators, [len(b) for b in session.schedule], session.helper
    )
    session.stage = "partial"
    return Message(
        "train_setup",
        fields={"features": len(features), "n": format(int(session.key.public.n), "x")},
    )


def check_stage(session: HostSession, stage: str, message: Message) -> None:
    """Refuse a message that is not the session's next stage, or that names another batch than the next."""
    if session.stage != stage:
        raise OrchardError(f"{message.kind} out of order: the session expects {session.stage}")
    if stage != "trained" and int(message.fields.get("step", -1)) != session.step:
        raise OrchardError(f"{message.kind} names batch {message.fields.get('step')}, not {session.step}")


def partial(session: HostSession, message: Message) -> Message:
    """Return the next scheduled batch's partial scores, encrypted under the host's own key."""
    with session.lock:
        check_stage(session, "partial", message)
        if session.key is None or session.quantised is None or not session.obfuscators:
            raise not_set_up(message)
        batch = session.batch
        u = dequantise(session.quantised[batch]) @ session.weights
        session.batch_u = encode_scores(u)
        cts = session.key.encrypt_ints(session.batch_u, session.obfuscators.take(len(batch)))
        session.stage = "gradient"
        return Message(
            "partial", arrays={"ciphertexts": ciphertexts_to_bytes(cts, session.key.public.cipher_bytes)}
        )


def gradient(session: HostSession, message: Message) -> Message:
    """Decrypt the guest's padded aggregate; return it with the host's own aggregate padded under [[.]]_G."""
    with session.lock:
        check_stage(session, "gradient", message)
        public, key, batch = session.public, session.key, session.batch
        if public is None or key is None or session.batch_u is None or session.quantised is None:
            raise not_set_up(message)
        try:
            guest_sums = checked_ciphertexts(
                message.arrays["guest_sums"], key.public, session.guest_columns, "the guest's padded sums"
            )
            slopes = checked_ciphertexts(message.arrays["slopes"], public, len(batch), "the guest's slopes")
            offsets = checked_ciphertexts(
                message.arrays["ciphertexts"], public, len(batch), "the guest's residual offsets"
            )
        except (KeyError, ValueError) as exc:
            raise OrchardError(f"gradient request rejected: {exc}") from exc
        opened = plain_to_bytes([key.decrypt_int(c) for c in guest_sums], key.public)
        # [[X_h^T (slope u_h + offset)]]_G
        sums = scaled_column_sums(
            slopes, session.batch_u, offsets, session.quantised[batch], public, session.helper
        )
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


def update(session: HostSession, message: Message) -> Message:
    """Unmask the batch's gradient, take one optimiser step; after the last batch the session is trained."""
    with session.lock:
        check_stage(session, "update", message)
        public, config = session.public, session.config
        if public is None or config is None or session.optimizer is None or session.weights is None:
            raise not_set_up(message)
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


def lr_part(session: HostSession, features: list[str]) -> dict[str, Any]:
    """Return the host's LR part of a trained session: its features, scaler and weights."""
    if session.scaler is None or session.weights is None:
        raise OrchardError("the session has no fitted part yet: nothing to score with")
    return {
        "features": features,
        "scaler": {"mean": session.scaler.mean, "std": session.scaler.std},
        "weights": session.weights.tolist(),
        "quantisation_bits": X_BITS,
    }


def reveal_lr(rows: np.ndarray, part: dict[str, Any], data: HostData) -> tuple[np.ndarray, np.ndarray]:
    """Return (an LR part's partial scores of host rows, which rows were revealed): NaN over the reveal budget."""
    allowed = data.allow(rows)
    scaler = Scaler(features=part["features"], mean=part["scaler"]["mean"], std=part["scaler"]["std"])
    u = np.full(len(rows), np.nan)
    if allowed.any():
        frame = data.table.iloc[rows[allowed]]
        u[allowed] = dequantise(quantise(scaler.transform(frame))) @ np.asarray(part["weights"])
    return u, allowed


def evaluate_lr(
    session: HostSession, message: Message, compare: bool, data: HostData, parts: PartStore
) -> Message:
    """Return the final partial scores of the out-of-time rows only, once per session, within budget.

    With `compare` the reply also carries `u_active`: the active part's partial scores of the same rows
    (within the same per-row budget), so the guest can compare the new part with the one in use.
    """
    check_stage(session, "trained", message)
    if session.aligned is None or session.train is None:
        raise not_set_up(message)
    test = np.setdiff1d(np.arange(len(session.aligned)), session.train)
    u = reveal_lr(session.aligned[test], lr_part(session, data.features), data)[0]
    arrays = {"positions": test.astype("<i8"), "u": u.astype("<f8")}
    active = parts.active_or_none() if compare else None
    if active is not None:
        stored = parts.load(active)
        if is_tree_part(stored):
            raise OrchardError("the active part is a SecureBoost part: an LR part cannot be compared with it")
        arrays["u_active"] = reveal_lr(session.aligned[test], stored, data)[0].astype("<f8")
    session.stage = "evaluated"
    return Message("evaluate", arrays=arrays)
