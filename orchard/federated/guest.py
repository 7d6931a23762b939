"""The guest party (the lender): drives PSI and hetero-LR or SecureBoost training, scores jointly.

A job's `algorithm` picks the joint model: "hetero_lr" (JointModel: the host returns partial scores) or
"secureboost" (JointTreeModel: the guest holds the trees' leaf weights and its own splits, the host its split
table; the guest walks each row level by level and asks the host only the directions at the host nodes its
rows reach, answered within the host's reveal budget; see orchard.federated.secureboost).
"""

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
from orchard.credit.psi import SCORE_COLUMN, ReferenceProfile
from orchard.errors import OrchardError
from orchard.federated.channel import ChannelError, Message, PeerClient
from orchard.federated.data import Scaler, simulator_guest_spec
from orchard.federated.paillier_lr import (
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
    initial_guest_weights,
    plain_from_bytes,
    plain_to_bytes,
    quantise,
    regularised,
    residual_terms,
    scaled_column_sums,
    sigmoid,
    with_intercept,
)
from orchard.federated.party_spec import PartyTable
from orchard.federated.psi_ecdh import POINT_BYTES, UnblindingBlinder, match, shuffled
from orchard.federated.secureboost import (
    NO_ANSWER,
    GuestModel,
    ProtocolError,
    SecureBoostGuest,
    TreeStats,
    fill_values,
    filled,
    train_in_process,
    walk_trees,
)
from orchard.federated.secureboost_tree import HOST, SBConfig

log = logging.getLogger(__name__)

HOST_SCORE = "host_partial_score"
ALGORITHMS = ("hetero_lr", "secureboost")
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
    id_column: str = "customer_key"
    features: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.features:
            self.features = [*self.guest_scaler.features, HOST_SCORE]

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


def route_column(tree: int, node: int) -> str:
    """Return the input column of a host node's direction for a row (1.0 left, 0.0 right, NaN not asked)."""
    return f"host_route_t{tree}_n{node}"


@dataclass(eq=False)
class JointTreeModel:
    """The guest's part of a joint SecureBoost model: its trees (own splits, leaf weights), the host part's id.

    The host's nodes carry no feature or threshold here (they stay at the host); predict_pd reads a row's
    direction at each host node on its path from the column route_column(tree, node), which a scoring session
    fills (tree_scores asks the host level by level). A row lacking a direction it needs scores NaN.
    """

    name: str
    guest_features: list[str]
    guest_fill: list[float]
    trees: GuestModel
    host_part_id: str
    host_part_sha256: str
    kind: str = "secureboost"
    id_column: str = "customer_key"
    features: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.features:
            self.features = [*self.guest_features, *(route_column(t, i) for t, i in self.host_nodes)]

    @property
    def host_nodes(self) -> list[tuple[int, int]]:
        """Return the (tree, node) of every host split, in tree then node order."""
        return [
            (t, int(i)) for t, tree in enumerate(self.trees.trees) for i in np.flatnonzero(tree.owner == HOST)
        ]

    def guest_matrix(self, df: pd.DataFrame) -> np.ndarray:
        """Return the guest's features of rows, missing values filled as at training."""
        missing = [f for f in self.guest_features if f not in df.columns]
        if missing:
            raise OrchardError(f"frame lacks feature column(s) {', '.join(missing)}")
        return filled(df.loc[:, self.guest_features].to_numpy(dtype=float), self.guest_fill)

    def predict_pd(self, df: pd.DataFrame) -> np.ndarray:
        """Return the probability of bad from the guest features and the host directions' columns."""
        missing = [route_column(t, i) for t, i in self.host_nodes if route_column(t, i) not in df.columns]
        if missing:
            raise OrchardError(
                f"joint model {self.name} needs the host's direction columns, lacks {', '.join(missing[:3])}"
            )

        def ask(level: int, rows: np.ndarray, trees: np.ndarray, nodes: np.ndarray) -> np.ndarray:
            out = np.full(len(rows), NO_ANSWER, dtype=np.uint8)
            for i, (r, t, node) in enumerate(zip(rows.tolist(), trees.tolist(), nodes.tolist(), strict=True)):
                value = pd.to_numeric(df[route_column(t, node)].iloc[r], errors="coerce")
                if value in (0, 1):
                    out[i] = int(value)
            return out

        score, _ = walk_trees(self.trees, self.guest_matrix(df), ask)
        return sigmoid(score)


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
    spec: PartyTable = field(default_factory=simulator_guest_spec)
    compare: bool = False
    """Also score the out-of-time rows with the host's active part (the champion's) for the gate."""
    activate: bool = True
    """The host makes the new part active at once; False: it stays a candidate until the gate's decision."""
    algorithm: str = "hetero_lr"
    """"hetero_lr" (config) or "secureboost" (sb_config)."""
    sb_config: SBConfig | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise OrchardError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.algorithm == "secureboost" and self.compare:
            raise OrchardError("a SecureBoost job cannot be compared with the host's active part (compare)")


@dataclass
class GuestOutcome:
    """What a finished joint training produced on the guest side."""

    job_id: str
    model: JointModel | JointTreeModel
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
    window: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The out-of-time rows: key, vintage, label, the new model's PD and, when compared, the champion's."""
    reference: dict[str, Any] = field(default_factory=dict)
    """Frozen bins of the joint score (out-of-time rows) and of the guest's features (training rows)."""
    tree_stats: list[dict[str, float]] = field(default_factory=list)
    """SecureBoost: seconds by phase, bytes, decryptions of each tree (epoch_seconds then holds per-tree wall)."""

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready summary (no model object, no example or window rows, no profiles)."""
        skip = ("model", "example", "window", "reference")
        return {k: v for k, v in asdict(self).items() if k not in skip}


def _psi(client: PeerClient, keys: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Run ECDH PSI; return (guest rows in intersection order, positions, stats)."""
    started = time.perf_counter()
    order = shuffled(len(keys))
    with UnblindingBlinder() as blinder:
        blinded, curve = blinder.blind_ids_on_curve(keys[i] for i in order.tolist())
        reply = client.call(Message("psi_blind", arrays={"blinded": blinded}), "the intersection (PSI)")
        double = np.asarray(reply.arrays["double"])
        host_blinded = np.asarray(reply.arrays["host_blinded"])
        if double.shape != blinded.shape:
            raise OrchardError("the host answered the PSI with the wrong number of values")
        if host_blinded.ndim != 2 or host_blinded.shape[1] != POINT_BYTES:
            raise OrchardError(f"the host's PSI values are not an (n, {POINT_BYTES}) byte array")
        try:  # its own blinding taken off: X25519(b, H(id)), as the host's own ids came
            single = blinder.unblind(double, curve)
        except ValueError as exc:
            raise OrchardError(f"the host's PSI answer is invalid: {exc}") from exc
    guest_pos, host_pos = match(single, host_blinded)
    if len(set(host_pos.tolist())) != len(host_pos):
        raise OrchardError("the host's PSI values repeat: its answer is not a set")
    # Both parties know the matched ids, so ordering them by key reveals nothing new and makes the batch
    # schedule reproducible by a centralised reference trained on the same rows.
    by_key = np.argsort(np.array([keys[i] for i in order[guest_pos].tolist()], dtype=object), kind="stable")
    guest_pos, host_pos = guest_pos[by_key], host_pos[by_key]
    client.call(Message("psi_result", arrays={"host_positions": host_pos.astype("<i8")}), "the PSI result")
    rows = order[guest_pos]
    stats = {
        "guest_ids": len(keys),
        "host_ids": len(host_blinded),
        "matched": len(rows),
        "seconds": round(time.perf_counter() - started, 3),
        "protocol": "ECDH-PSI X25519",
    }
    return rows, guest_pos, stats


def _out_of_time(vintages: pd.Series, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    months = sorted(vintages.unique())
    if len(months) <= holdout:
        raise OrchardError(f"need more than {holdout} vintages in the intersection, have {len(months)}")
    test = vintages.isin(months[-holdout:]).to_numpy()
    return np.flatnonzero(~test), np.flatnonzero(test)


def _unpad(plain: list[int], masks: list[Any], n: int, rows: int) -> np.ndarray:
    """Return the mean gradient from one-time padded integer sums of X^T 4d."""
    return np.array([decode_gradient(t - int(r), n, rows) for t, r in zip(plain, masks, strict=True)])


def _padded(sums: list[Any], public: PublicKey, noise: Prefetched) -> tuple[list[Any], list[Any]]:
    """Return (one-time pads, [[sum + pad]]) for encrypted sums under another party's key."""
    masks = [public.random_mask() for _ in sums]
    obfuscators = noise.take(len(sums))
    return masks, [
        c * public.encrypt(int(r), e) % public.n2 for c, r, e in zip(sums, masks, obfuscators, strict=True)
    ]


@dataclass
class _Intersection:
    """The labelled rows both parties hold, in the agreed order, split out of time."""

    joined: pd.DataFrame
    psi: dict[str, Any]
    sha256: str
    train_pos: np.ndarray
    test_pos: np.ndarray
    y: np.ndarray
    timings: dict[str, float]


def _intersect(client: PeerClient, table: pd.DataFrame, job: GuestJob) -> _Intersection:
    """Open the training session (hello), run PSI over the labelled rows, split the matched rows out of time."""
    spec = job.spec
    table = spec.check(table)
    table = table[table[spec.label_column].notna()].reset_index(
        drop=True
    )  # unlabelled rows are not trained on
    timings: dict[str, float] = {}
    client.call(Message("hello", fields={"job_id": job.job_id}), "the handshake")
    rows, _, psi_stats = _psi(client, table[spec.id_column].tolist())
    timings["psi"] = psi_stats["seconds"]
    if len(rows) < 50:
        raise OrchardError(f"the intersection holds only {len(rows)} customers; too few to train")
    joined = table.iloc[rows].reset_index(drop=True)
    intersection_sha = hashlib.sha256("\n".join(sorted(joined[spec.id_column])).encode()).hexdigest()
    train_pos, test_pos = _out_of_time(joined[spec.vintage_column], job.holdout_vintages)
    y = joined[spec.label_column].to_numpy(dtype=float)
    return _Intersection(joined, psi_stats, intersection_sha, train_pos, test_pos, y, timings)


def _evaluation(
    spec: PartyTable,
    joined: pd.DataFrame,
    y: np.ndarray,
    train_pos: np.ndarray,
    scored: np.ndarray,
    pd_test: np.ndarray,
) -> tuple[dict[str, float], pd.DataFrame, dict[str, Any]]:
    """Return a job's metrics, its out-of-time window (key, vintage, label, PD) and its frozen reference bins.

    `scored`: the out-of-time rows the host's evaluation answered, `pd_test` their joint PD.
    """
    metrics = {
        "auc_test": auc(y[scored], pd_test),
        "n_train": float(len(train_pos)),
        "n_test": float(len(scored)),
        "bad_rate_train": float(y[train_pos].mean()),
    }
    window = joined.iloc[scored][[spec.id_column, spec.vintage_column]].assign(
        bad=y[scored].astype(int), pd=pd_test
    )
    reference = {
        "score": ReferenceProfile.fit(
            pd.DataFrame({SCORE_COLUMN: pd_to_score(pd_test)}), [SCORE_COLUMN], []
        ).to_dict(),
        "features": ReferenceProfile.fit(joined.iloc[train_pos], spec.feature_names, []).to_dict(),
    }
    return metrics, window, reference


def train_guest(client: PeerClient, table: pd.DataFrame, job: GuestJob) -> GuestOutcome:
    """Run PSI and the job's joint training against the host; return the joint model (nothing registered)."""
    matched = _intersect(client, table, job)
    if job.algorithm == "secureboost":
        return _train_trees(client, job, matched)
    spec, config, timings = job.spec, job.config, matched.timings
    joined, psi_stats, intersection_sha = matched.joined, matched.psi, matched.sha256
    train_pos, test_pos, y = matched.train_pos, matched.test_pos, matched.y

    started = time.perf_counter()
    key = PrivateKey(config.key_bits)
    timings["keygen"] = round(time.perf_counter() - started, 3)
    scaler = Scaler.fit(joined.iloc[train_pos], spec.feature_names)
    xq = with_intercept(dequantise(quantise(scaler.transform(joined))))
    qg = np.rint(xq * (1 << X_BITS)).astype(np.int64)
    setup = client.call(
        Message(
            "train_setup",
            fields={
                "config": config.as_dict(),
                "n": format(int(key.public.n), "x"),
                "guest_columns": xq.shape[1],
            },
            arrays={"train_positions": train_pos.astype("<i8")},
        ),
        "the training set-up",
    )
    host_public = PublicKey.from_n(int(setup.fields["n"], 16))
    host_columns = int(setup.fields["features"])
    if int(host_public.n).bit_length() < config.key_bits - 8 or not 1 <= host_columns <= 1000:
        raise OrchardError("the host's training set-up is malformed (key size or feature count)")
    schedule = [(epoch, b) for epoch in range(config.epochs) for b in batches(len(train_pos), config, epoch)]
    wg = initial_guest_weights(xq.shape[1], y[train_pos])
    opt = Adam(len(wg), config.learning_rate)
    epoch_seconds: list[float] = []
    epoch_started = time.perf_counter()
    helper = Helper.for_session(len(train_pos), config)
    with (
        helper or contextlib.nullcontext(),
        # two encryptions a row (its slope and offset), k_g + 1 mask encryptions, per batch
        Prefetched(key.obfuscators, [2 * len(b) for _, b in schedule], helper) as obfuscators,
        Prefetched(host_public.noise, [xq.shape[1]] * len(schedule), helper) as host_noise,
    ):
        for step, (epoch, batch) in enumerate(schedule):
            positions = train_pos[batch]
            what = f"training epoch {epoch + 1}"
            reply = client.call(Message("partial", fields={"step": step}), what)
            try:
                u_h = checked_ciphertexts(
                    reply.arrays.get("ciphertexts"),
                    host_public,
                    len(positions),
                    "the host's encrypted partial scores",
                )
            except ValueError as exc:
                raise OrchardError(str(exc)) from exc
            slope, offset = residual_terms(xq[positions] @ wg, y[positions])  # 4d = slope u_h + offset
            sums = scaled_column_sums(u_h, slope, offset, qg[positions], host_public, helper)
            masks, padded = _padded(sums, host_public, host_noise)
            fresh = obfuscators.take(2 * len(positions))
            slopes = key.encrypt_ints(slope, fresh[: len(positions)])
            offsets = key.encrypt_ints(offset, fresh[len(positions) :])
            reply = client.call(
                Message(
                    "gradient",
                    fields={"step": step},
                    arrays={
                        "guest_sums": ciphertexts_to_bytes(padded, host_public.cipher_bytes),
                        "slopes": ciphertexts_to_bytes(slopes, key.public.cipher_bytes),
                        "ciphertexts": ciphertexts_to_bytes(offsets, key.public.cipher_bytes),
                    },
                ),
                what,
            )
            try:
                opened = plain_from_bytes(
                    reply.arrays.get("guest_plain"), host_public, len(masks), "the guest's sums"
                )
                masked = checked_ciphertexts(
                    reply.arrays.get("masked"), key.public, host_columns, "the host's padded sums"
                )
            except ValueError as exc:
                raise OrchardError(f"rejected the host's reply in {what}: {exc}") from exc
            plain = [key.decrypt_int(c) for c in masked]
            client.call(
                Message("update", fields={"step": step}, arrays={"plain": plain_to_bytes(plain, key.public)}),
                what,
            )
            grad = _unpad(opened, masks, int(host_public.n), len(positions))
            wg = opt.update(wg, regularised(grad, wg, config.l2, True))
            if step + 1 == len(schedule) or schedule[step + 1][0] != epoch:
                epoch_seconds.append(round(time.perf_counter() - epoch_started, 3))
                log.info("joint job %s: epoch %d took %.2f s", job.job_id, epoch + 1, epoch_seconds[-1])
                epoch_started = time.perf_counter()

    reply = client.call(Message("evaluate", fields={"compare": job.compare}), "the evaluation")
    scored = np.asarray(reply.arrays.get("positions", []), dtype=np.int64)
    u_test = np.asarray(reply.arrays.get("u", []), dtype=float)
    if not np.array_equal(scored, test_pos) or u_test.shape != scored.shape:
        raise OrchardError("the host's evaluation does not cover exactly the out-of-time rows")
    u_active = np.asarray(reply.arrays["u_active"], dtype=float) if "u_active" in reply.arrays else None
    if u_active is not None and u_active.shape != scored.shape:
        raise OrchardError("the host's champion scores do not cover exactly the out-of-time rows")
    within = np.isfinite(u_test)
    if within.sum() < 2 or len(np.unique(y[test_pos][within])) < 2:
        raise OrchardError("the host's reveal budget leaves too few out-of-time rows to evaluate the model")
    xg = with_intercept(scaler.transform(joined))
    pd_test = sigmoid(xg[test_pos][within] @ wg + u_test[within])
    metrics, window, reference = _evaluation(spec, joined, y, train_pos, test_pos[within], pd_test)
    if u_active is not None:
        window["champion_u"] = u_active[within]
    finish = client.call(
        Message("finish", fields={"job_id": job.job_id, "activate": job.activate}),
        "storing the host's model part",
    )
    model = JointModel(
        name=job.model_name,
        guest_scaler=scaler,
        guest_weights=wg.tolist(),
        id_column=spec.id_column,
        host_part_id=str(finish.fields["part_id"]),
        host_part_sha256=str(finish.fields["sha256"]),
    )
    example_rows = test_pos[within][:5]
    return GuestOutcome(
        job_id=job.job_id,
        model=model,
        metrics=metrics,
        psi=psi_stats,
        epoch_seconds=epoch_seconds,
        bytes_sent=client.bytes_sent,
        bytes_received=client.bytes_received,
        messages=client.messages,
        train_rows=len(train_pos),
        test_rows=len(test_pos),
        intersection_sha256=intersection_sha,
        example=example_frame(joined.iloc[example_rows], model, u_test[within][:5]),
        seconds=timings,
        window=window.reset_index(drop=True),
        reference=reference,
    )


class _RemoteHost:
    """The host's SecureBoost handlers as the core's driver sees them, over the channel (HostEndpoint)."""

    multiplications = 0  # counted at the host

    def __init__(self, client: PeerClient, train_pos: np.ndarray) -> None:
        self.client = client
        self.train_pos = train_pos
        self.tree = 0

    def setup(self, message: Message) -> Message:
        arrays = {"train_positions": self.train_pos.astype("<i8")}
        return self.client.call(Message("sb_setup", message.fields, arrays), "the SecureBoost set-up")

    def start_tree(self, message: Message) -> Message:
        self.tree = int(message.fields["tree"])
        return self.client.call(message, f"growing tree {self.tree + 1}")

    def histograms(self, message: Message) -> Message:
        return self.client.call(message, f"growing tree {self.tree + 1}")

    def split(self, message: Message) -> Message:
        return self.client.call(message, f"growing tree {self.tree + 1}")

    def end_tree(self, message: Message) -> Message:
        return self.client.call(message, f"growing tree {self.tree + 1}")


def _routing(client: PeerClient, kind: str, positions: np.ndarray, step: str) -> Any:
    """Return the `ask` of walk_trees over one session: each level is one `kind` request (rows as positions)."""

    def ask(level: int, rows: np.ndarray, trees: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        reply = client.call(
            Message(
                kind,
                fields={"level": level, "final": False},
                arrays={
                    "rows": positions[rows].astype("<i4"),
                    "trees": trees.astype("<i4"),
                    "nodes": nodes.astype("<i4"),
                },
            ),
            step,
        )
        left = np.asarray(reply.arrays.get("left", np.zeros(0)))
        if left.dtype != np.uint8 or left.shape != rows.shape:
            raise OrchardError(f"the host answered {left.shape} directions for {len(rows)} asked")
        return left

    return ask


def _train_trees(client: PeerClient, job: GuestJob, matched: _Intersection) -> GuestOutcome:
    """Grow the SecureBoost trees with the host, evaluate them on the out-of-time rows, store the host part."""
    spec, timings, config = job.spec, matched.timings, job.sb_config or SBConfig()
    joined, train_pos, test_pos, y = matched.joined, matched.train_pos, matched.test_pos, matched.y
    if len(train_pos) < 2 * config.min_child_rows:
        raise OrchardError(
            f"{len(train_pos)} training rows cannot be split into two nodes of {config.min_child_rows} rows"
        )
    raw = joined.loc[:, spec.feature_names].to_numpy(dtype=float)
    fill = fill_values(raw[train_pos])
    xg = filled(raw, fill)
    started = time.perf_counter()
    key = PrivateKey(config.key_bits)
    timings["keygen"] = round(time.perf_counter() - started, 3)
    core = SecureBoostGuest(xg[train_pos], y[train_pos], config, key=key, prefetch=True)
    started = time.perf_counter()
    try:
        stats: list[TreeStats] = train_in_process(core, _RemoteHost(client, train_pos))
        trees = core.model()
        timings["training"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        ask = _routing(client, "evaluate", test_pos, "the evaluation")
        score_test, routes = walk_trees(trees, xg[test_pos], ask)
    except ProtocolError as exc:
        raise OrchardError(f"the host's SecureBoost reply was refused: {exc}") from exc
    finally:
        core.close()
    client.call(Message("evaluate", fields={"final": True}), "the evaluation")
    timings["evaluation"] = round(time.perf_counter() - started, 3)
    for t, tree_stats in enumerate(stats, start=1):
        log.info("joint job %s: tree %d took %.2f s", job.job_id, t, tree_stats.total)
    within = np.isfinite(score_test)
    if within.sum() < 2 or len(np.unique(y[test_pos][within])) < 2:
        raise OrchardError("the host's reveal budget leaves too few out-of-time rows to evaluate the model")
    pd_test = sigmoid(score_test[within])
    metrics, window, reference = _evaluation(spec, joined, y, train_pos, test_pos[within], pd_test)
    finish = client.call(
        Message("finish", fields={"job_id": job.job_id, "activate": job.activate}),
        "storing the host's model part",
    )
    if finish.fields.get("kind") != "secureboost":
        raise OrchardError("the host stored its part as another kind of model than SecureBoost")
    model = JointTreeModel(
        name=job.model_name,
        guest_features=list(spec.feature_names),
        guest_fill=fill.tolist(),
        trees=trees,
        host_part_id=str(finish.fields["part_id"]),
        host_part_sha256=str(finish.fields["sha256"]),
        id_column=spec.id_column,
    )
    example_at = np.flatnonzero(within)[:5]
    example = joined.iloc[test_pos[example_at]].loc[:, model.guest_features].reset_index(drop=True)
    for t, node in model.host_nodes:
        column = routes.get((t, node), np.full(len(test_pos), np.nan))
        example[route_column(t, node)] = column[example_at]
    return GuestOutcome(
        job_id=job.job_id,
        model=model,
        metrics=metrics,
        psi=matched.psi,
        epoch_seconds=[round(s.total, 3) for s in stats],
        bytes_sent=client.bytes_sent,
        bytes_received=client.bytes_received,
        messages=client.messages,
        train_rows=len(train_pos),
        test_rows=len(test_pos),
        intersection_sha256=matched.sha256,
        example=example,
        seconds=timings,
        window=window.reset_index(drop=True),
        reference=reference,
        tree_stats=[{k: float(v) for k, v in asdict(s).items()} for s in stats],
    )


def abort_quietly(client: PeerClient, reason: str) -> None:
    """Tell the host to drop the session, ignoring a host that is already gone."""
    with contextlib.suppress(ChannelError):
        client.call(Message("abort", fields={"reason": reason[:500]}), "the abort")


def scoring_session(
    client: PeerClient, part_id: str, keys: list[str], purpose: str, **scope: Any
) -> tuple[np.ndarray, Message]:
    """Return the host's partial scores of customers (NaN: not matched) and the host's whole reply.

    The session states its purpose and size (logged and rate-limited at the host); the ids travel only
    through a fresh ECDH PSI, so the host learns only the matched ones and the guest only which of its own
    ids matched. `scope` adds the session's `period` (the host matches only its rows of that period) and
    `monitor` (the reply also carries the host's CSI of its own features over the matched rows).
    """
    client.call(
        Message("score_open", fields={"part_id": part_id, "ids": len(keys), "purpose": purpose, **scope}),
        "opening a scoring session",
    )
    rows, _, _ = _psi(client, keys)
    reply = client.call(Message("score"), "joint scoring")
    u = np.asarray(reply.arrays.get("u", []), dtype=float)
    if u.shape != rows.shape:
        raise OrchardError(f"the host answered {u.shape} scores for {len(rows)} matched customers")
    out = np.full(len(keys), np.nan)
    out[rows] = u
    return out, reply


def partial_scores(client: PeerClient, part_id: str, keys: list[str], purpose: str) -> np.ndarray:
    """Return the host's partial scores of customers through a logged scoring session (NaN: not matched)."""
    return scoring_session(client, part_id, keys, purpose)[0]


def tree_scoring_session(
    client: PeerClient, model: JointTreeModel, frame: pd.DataFrame, purpose: str, **scope: Any
) -> tuple[np.ndarray, Message]:
    """Return the joint PD of each row of frame (NaN: not matched, or over the host's reveal budget) through
    one logged scoring session of the model's host part, and the host's closing reply (CSI when monitoring).

    After the session's PSI the guest walks the matched rows' trees level by level; each level is one `score`
    request with the (position in the matched order, tree, node) triples of host nodes its rows reach there;
    a last `score` with `final: true` closes the session.
    """
    keys = frame[model.id_column].astype(str).tolist()
    client.call(
        Message(
            "score_open",
            fields={"part_id": model.host_part_id, "ids": len(keys), "purpose": purpose, **scope},
        ),
        "opening a scoring session",
    )
    rows, _, _ = _psi(client, keys)
    x = model.guest_matrix(frame.iloc[rows])
    try:
        score, _ = walk_trees(
            model.trees, x, _routing(client, "score", np.arange(len(rows)), "joint scoring")
        )
    except ProtocolError as exc:
        raise OrchardError(f"the host's directions were refused: {exc}") from exc
    reply = client.call(Message("score", fields={"final": True}), "joint scoring")
    out = np.full(len(keys), np.nan)
    out[rows] = sigmoid(score)
    return out, reply


def tree_scores(
    client: PeerClient, model: JointTreeModel, frame: pd.DataFrame, purpose: str, **scope: Any
) -> np.ndarray:
    """Return the joint PD of customers scored by a SecureBoost model (NaN: not matched or over budget)."""
    return tree_scoring_session(client, model, frame, purpose, **scope)[0]


def pd_frame(id_column: str, keys: np.ndarray, pd_values: np.ndarray) -> pd.DataFrame:
    """Return key, PD, score points and pre-credit risk tier (NaN PD: no score, no tier)."""
    known = np.isfinite(pd_values)
    points = np.full(len(pd_values), np.nan)
    points[known] = pd_to_score(pd_values[known])
    tiers = np.full(len(pd_values), None, dtype=object)
    tiers[known] = risk_tier(points[known])
    return pd.DataFrame({id_column: keys, "pd": pd_values, "score": points, "tier": tiers})


def joint_score_frame(model: JointModel, frame: pd.DataFrame, host_scores: np.ndarray) -> pd.DataFrame:
    """Return key, PD, score points and pre-credit risk tier of each customer."""
    scored = frame.assign(**{HOST_SCORE: host_scores})
    pd_values = model.predict_pd(scored)
    points = pd_to_score(pd_values)
    return pd.DataFrame(
        {
            model.id_column: frame[model.id_column].to_numpy(),
            "pd": pd_values,
            "score": points,
            "tier": risk_tier(points),
        }
    )


def example_frame(table: pd.DataFrame, model: JointModel, host_scores: np.ndarray) -> pd.DataFrame:
    """Return an input example of the joint model: guest features plus host partial scores."""
    return (
        table.loc[:, model.guest_scaler.features].assign(**{HOST_SCORE: host_scores}).reset_index(drop=True)
    )


def guest_data(path: Path) -> pd.DataFrame:
    """Read the guest's table."""
    if not Path(path).exists():
        raise OrchardError(f"guest data {path} does not exist")
    return pd.read_parquet(path)
