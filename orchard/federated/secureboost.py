"""Hetero SecureBoost parties: the guest (labels, Paillier key) and the host (features only), as message handlers.

Each party's side is a class whose methods take and return `channel.Message` payloads (small JSON fields plus
numpy arrays of whitelisted dtypes: ciphertext bytes, row positions, split ids), never the other party's objects,
so wiring them into the two-process channel is one handler per kind. `train_in_process` runs both in one process.

Per tree (rows are the session's matched rows in the agreed order, positions 0..N-1):
  guest -> host  sb_tree: [[g 2^h_bits + h]]_G of every row (one ciphertext per row, Packing)
  per level L:
  guest -> host  sb_histograms: the nodes of level L the guest may split (the root, then children of splits
                 the host saw at L - 1, each with >= 2 min_child_rows rows)
  host -> guest  per node: the offered split ids (a per-tree shuffled numbering of (feature, bin)) and their
                 encrypted left sums, `slots` sums per ciphertext, re-randomised; the smaller child of each split
                 is summed row by row (one multiplication per row and group of features, feature_groups), its
                 sibling is the parent's bin sums divided by it (one inversion per bin)
  guest          decrypts exactly the expected number of blocks, unpacks G_L, H_L, computes the gain of its own
                 splits (plaintext) and of the offered ids, keeps the best per node
  guest -> host  sb_split: per split node either ("guest", its left rows if the host will sum a child: not at
                 the last level, nor when no child can be split) or ("host", the ids tied at the best gain, so
                 the host applies the reference's lowest-(feature, bin) rule)
  host -> guest  the left rows of each host split (the host keeps feature and threshold)
  guest -> host  sb_end_tree; the guest keeps the leaf weights
Scoring: the guest walks its trees level by level and asks sb_route only for (row, tree, node) triples of host
nodes its rows reach; HostModel.route answers left or right (walk_trees: the same walk over any `ask`).

Two processes (orchard.federated.host/guest/job): the same handlers run inside a training session after PSI
(`sb_setup` also carries the train positions: rows 0..N-1 here are those positions, in the guest's order);
the out-of-time rows' routing (`evaluate`) and a scoring session's (`score`) are asked level by level through
HostModel.route, for the session's rows only, each row counted once per session in the host's reveal ledger
(at most max_reveals_per_row sessions ever answer a row; beyond it NO_ANSWER and the guest scores NaN). The
host checks each triple is a host node at that level, asked once per (row, tree) and level, below the child
its earlier answer gave; levels only increase. What this adds to the exposure below: per scored row and
answered session, the directions at the host nodes on its path (<= depth bits per tree, each a comparison
with a threshold the host keeps); since the host cannot check the guest's own branches, a curious guest can
learn at most one host direction per tree and level per row and session, possibly off the row's true path,
and the ledger caps the sessions. The host learns, per scoring session, which matched rows reached which of
its nodes (after guest splits it does not see), as the guest's level-by-level requests show.

Protections (as the hetero LR's, docs/federated.md): no node, partition or offered threshold interval below
min_child_rows (>= 256, SBConfig); the host offers a node only thresholds with >= min_child_rows rows on each
side and between consecutive offers of a feature (offered_thresholds), so a split id never stands for a
handful of rows; the guest checks count and width of every array before decrypting a byte (checked_ciphertexts),
decrypts exactly ceil(offers / slots) blocks per node, and refuses sums outside its node's own (H_L > H, |G_L|
> sum |g|) and partitions that are not a split of the node; the host refuses a histogram request for a node
that is not a child of a split it saw at the previous level, a node twice, a split of a node not offered, split
ids it did not offer there, a guest split with a child below the minimum, and trees out of order.

What an honest-but-curious party learns:
  guest: the host's candidate count; per histogrammed node, for each offered split id (a per-tree shuffle of
    (feature, bin), so ids link within a tree, not across trees), G_L and H_L over the node's rows on its left,
    never the feature, threshold, bin edges or row counts (only that each offered side and interval holds
    >= min_child_rows rows). Since it knows every row's g and h, a sum is a subset-sum clue about which rows are
    in the set: the offer rule keeps each set and each within-node difference of two offers of a feature at
    >= min_child_rows rows, but differences across levels (a parent's offer minus a sibling's at the same id
    is the other child's part, which can be small) or across features are not controlled. It learns the
    left/right routing of every training row at every host split (needed for its own histograms and leaf
    weights), and at scoring the direction of the host nodes on each scored row's path.
  host: N, per tree the rows of every node the guest asks histograms for, so the partition of each guest split
    with a child to sum (not of the guest's splits at the last level or with only leaves below: about half of
    them at depth 5), which nodes split and who split them, which of its own thresholds were chosen;
    never g, h, labels, gains or leaf weights (all encrypted under the guest's key, and every ciphertext it
    returns is re-randomised, so the key holder cannot read the product of its own per-row randomness out of
    a sum). Node membership with the guest's labels shaping the nodes is label information at the level of
    groups of >= min_child_rows rows.
This is the exposure of SecretFlow's SecureBoost as its docs describe it (the host learns which rows fall in
which node, the label holder the per-row routing of the host's splits; SecretFlow warns that SecureBoost is not
provably secure and recommends its secret-shared XGB when that matters); the offer rule, the floor on node
size, the host's request checks and the re-randomisation are what this implementation adds on top.
Not built, with their measured or estimated cost (benchmarks/secureboost.py prints the estimate): hiding the
guest's splits from the host (the guest sends, per split, an encrypted GH vector zeroed outside the child
over the rows the host can still place, and the host sums over those), and hiding host routing from the guest
(the guest's own histograms would have to run under encryption too, on the host's encrypted indicators).
A malicious guest can encrypt chosen values instead of g, h (e.g. one row per bit field) and read every row's
bin of every host feature from the root's sums; a malicious host can return chosen ciphertexts as sums and
learn from the guest's choice, or return wrong partitions. Neither is detected (no zero-knowledge proofs), as
in the LR.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gmpy2
import numpy as np

from orchard.federated.channel import Message
from orchard.federated.paillier_lr import (
    MIN_KEY_BITS,
    Prefetched,
    PrivateKey,
    PublicKey,
    checked_ciphertexts,
    ciphertexts_to_bytes,
    djn_base,
    signed,
    windowed_powers,
)
from orchard.federated.secureboost_tree import (
    GUEST,
    HOST,
    Binned,
    Packing,
    SBConfig,
    Tree,
    base_score,
    best_own_split,
    bin_sums,
    fixed_gradients,
    leaf_weight,
    offered_thresholds,
    split_gains,
)

NOISE_WINDOW_BITS = 8
MODE_SKIP_ROWS = 64  # a modal bin this full is cheaper as total / other bins (one inversion ~ 10 products)
ONE = gmpy2.mpz(1)


class ProtocolError(ValueError):
    """A party refused a message (wrong stage, node, shape or range)."""


def depth_of(node: int) -> int:
    """Return the depth of a heap-ordered node (root 0)."""
    return (node + 1).bit_length() - 1


def _rows(array: Any, what: str) -> np.ndarray:
    """Return a 1-D array of strictly increasing row positions, or raise naming what."""
    raw = np.asarray(array)
    if raw.ndim != 1 or raw.dtype not in (np.int32, np.int64):
        raise ProtocolError(f"{what}: expected a 1-D int32/int64 array, got {raw.dtype} {raw.shape}")
    if len(raw) > 1 and not (np.diff(raw) > 0).all():
        raise ProtocolError(f"{what}: rows must be strictly increasing")
    return raw.astype(np.int64)


class Rerandomiser:
    """Fresh encryptions of zero under the other party's key, h_s^alpha from a fixed-base table (DJN, as PrivateKey).

    The host multiplies every ciphertext it returns by one, so the decrypting guest cannot read the product of
    its own per-row randomness out of a sum (which would tell which rows were summed).
    """

    def __init__(self, public: PublicKey) -> None:
        self._n2 = int(public.n2)
        self._base = int(djn_base(public.n, public.n2))

    def zeros(self, count: int) -> list[Any]:
        """Return count fresh encryptions of zero."""
        return windowed_powers(self._n2, self._base, NOISE_WINDOW_BITS, count)


# --- host ------------------------------------------------------------------------------------------


def feature_groups(counts: list[np.ndarray], rows: int) -> list[list[int]]:
    """Return groups of features whose joint bins the host sums in one pass over a node's rows (greedy).

    A feature alone costs about one multiplication per row outside its most populous bin; joining a group
    whose estimated non-empty joint buckets are J, with k non-empty bins of its own, costs about the extra
    buckets to fold into each member's bins: (members + 1) min(rows, J k) - members J. Each feature takes the
    cheaper choice (two 32-bin features share a pass at 80,000 rows; dummies join a pass almost for free).
    """
    groups: list[list[int]] = []
    joint: list[int] = []
    for f in sorted(range(len(counts)), key=lambda f: (-int((counts[f] > 0).sum()), f)):
        k = int((counts[f] > 0).sum())
        best, best_cost = -1, rows - int(counts[f].max()) + k
        for i, group in enumerate(groups):
            cost = (len(group) + 1) * min(rows, joint[i] * k) - len(group) * joint[i]
            if cost < best_cost:
                best, best_cost = i, cost
        if best < 0:
            groups.append([f])
            joint.append(k)
        else:
            groups[best].append(f)
            joint[best] = min(rows, joint[best] * k)
    return groups


@dataclass
class _HostTree:
    """What the host remembers of the tree being grown."""

    index: int
    cts: list[Any]
    id_of: np.ndarray  # (features, width) split id of (feature, bin), -1 where no candidate
    candidate: np.ndarray  # (ids, 2) (feature, bin) of each split id
    rows: dict[int, np.ndarray] = field(default_factory=dict)  # nodes the host knows the rows of
    allowed: set[int] = field(default_factory=lambda: {0})  # nodes the guest may ask histograms of
    asked: set[int] = field(default_factory=set)  # nodes of the current level that got histograms
    offered: dict[int, set[int]] = field(default_factory=dict)
    sums: dict[int, list[list[Any]]] = field(default_factory=dict)  # encrypted bin sums of asked nodes
    split_done: set[int] = field(default_factory=set)
    host_splits: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass
class HostModel:
    """The host's part of the trained model: the edges of its bins and its splits (node -> feature, bin)."""

    edges: list[np.ndarray]
    splits: list[dict[int, tuple[int, int]]]

    def route(self, message: Message, x_host: np.ndarray) -> Message:
        """Answer sb_route: for each (row, tree, node) of a host node, 1 if the row goes left, else 0."""
        rows, trees, nodes = (np.asarray(message.arrays.get(k)) for k in ("rows", "trees", "nodes"))
        shapes_ok = rows.ndim == trees.ndim == nodes.ndim == 1 and len(rows) == len(trees) == len(nodes)
        if not shapes_ok or any(a.dtype not in (np.int32, np.int64) for a in (rows, trees, nodes)):
            raise ProtocolError("sb_route: rows, trees and nodes must be 1-D integer arrays of one length")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(x_host)):
            raise ProtocolError("sb_route: a row is outside the scoring rows")
        x = np.asarray(x_host, dtype=float)
        left = np.zeros(len(rows), dtype=np.uint8)
        for i, (r, t, node) in enumerate(zip(rows.tolist(), trees.tolist(), nodes.tolist(), strict=True)):
            if not 0 <= t < len(self.splits) or node not in self.splits[t]:
                raise ProtocolError(f"sb_route: tree {t} node {node} is not a host node")
            f, b = self.splits[t][node]
            left[i] = x[r, f] < self.edges[f][b]
        return Message("sb_route", {"count": len(rows)}, {"left": left})


class SecureBoostHost:
    """The host's side: bins its features, sums encrypted gradients per bin, keeps its split table."""

    def __init__(self, x_host: np.ndarray, config: SBConfig) -> None:
        self.config = config
        self.binned = Binned.fit(x_host, config.max_bins)
        self.n_bins = [len(e) + 1 for e in self.binned.edges]
        self.candidates = np.array(self.binned.candidates(), dtype=np.int64).reshape(-1, 2)
        self.public: PublicKey | None = None
        self.packing: Packing | None = None
        self.noise: Rerandomiser | None = None
        self.tree: _HostTree | None = None
        self.splits: list[dict[int, tuple[int, int]]] = []
        self.multiplications = 0  # ciphertext multiplications of row sums (the benchmark reports them)

    @property
    def rows(self) -> int:
        return self.binned.bins.shape[0]

    def setup(self, message: Message) -> Message:
        """Accept the guest's public key and config (which must equal the host's); answer the candidate count."""
        if self.public is not None:
            raise ProtocolError("sb_setup: the session is already set up")
        if SBConfig(**message.fields["config"]) != self.config:
            raise ProtocolError("sb_setup: the guest's config differs from the agreed one")
        n = int(message.fields["n"], 16)
        if (
            n.bit_length() < max(MIN_KEY_BITS, self.config.key_bits - 8)
            or int(message.fields["rows"]) != self.rows
        ):
            raise ProtocolError("sb_setup: the key is too short or the row count differs")
        self.public = PublicKey.from_n(n)
        self.packing = Packing(self.rows, n.bit_length())
        self.noise = Rerandomiser(self.public)
        return Message("sb_setup", {"candidates": len(self.candidates)})

    def start_tree(self, message: Message) -> Message:
        """Accept the packed gradients of the next tree (exactly one ciphertext per row)."""
        if self.public is None or self.tree is not None:
            raise ProtocolError("sb_tree: not set up, or a tree is still open")
        index = int(message.fields["tree"])
        if index != len(self.splits) or index >= self.config.trees:
            raise ProtocolError(f"sb_tree: tree {index} is out of order")
        cts = checked_ciphertexts(message.arrays.get("gh"), self.public, self.rows, "packed gradients")
        order = np.random.default_rng(secrets.randbits(128)).permutation(len(self.candidates))
        id_of = np.full((self.binned.features, self.binned.width), -1, dtype=np.int64)
        id_of[self.candidates[:, 0], self.candidates[:, 1]] = np.argsort(order)
        self.tree = _HostTree(index=index, cts=cts, id_of=id_of, candidate=self.candidates[order])
        self.tree.rows[0] = np.arange(self.rows)
        return Message("sb_tree", {"tree": index})

    def _session(self) -> tuple[PublicKey, Packing, Rerandomiser]:
        if self.public is None or self.packing is None or self.noise is None:
            raise ProtocolError("the session is not set up")
        return self.public, self.packing, self.noise

    def _open(self, message: Message) -> _HostTree:
        tree = self.tree
        if tree is None or int(message.fields.get("tree", -1)) != tree.index:
            raise ProtocolError(f"{message.kind}: no such open tree")
        return tree

    def _bin_products(self, tree: _HostTree, rows: np.ndarray) -> list[list[Any]]:
        """Return [[sum over rows in bin b of packed gh]] per feature and bin, in fewer multiplications than rows.

        Features are summed in groups (feature_groups): one pass multiplies each row into the bucket of its
        joint bins, and each feature's bins are products of those buckets. The least concentrated group is
        summed over every row, which gives the node's total; every other group skips the rows of its most
        populous bucket (the all-zero dummies, say) and gets it as the total divided by its other buckets.
        """
        n2, cts = self._session()[0].n2, tree.cts
        bins = self.binned.bins[rows]
        counts = [np.bincount(bins[:, f], minlength=k) for f, k in enumerate(self.n_bins)]
        groups = feature_groups(counts, len(rows))
        coded = []
        for group in groups:
            codes = np.zeros(len(rows), dtype=np.int64)
            stride = 1
            for f in group:
                codes += bins[:, f].astype(np.int64) * stride
                stride *= self.n_bins[f]
            uniq, inverse, sizes = np.unique(codes, return_inverse=True, return_counts=True)
            coded.append((group, uniq, inverse, sizes))
        full = int(np.argmin([sizes.max() for _, _, _, sizes in coded]))
        out: list[list[Any]] = [[] for _ in self.n_bins]
        total = ONE
        for index in [full, *(i for i in range(len(coded)) if i != full)]:
            group, uniq, inverse, sizes = coded[index]
            mode = int(np.argmax(sizes))
            skip = index != full and int(sizes[mode]) >= MODE_SKIP_ROWS
            sorted_rows = rows[np.argsort(inverse, kind="stable")].tolist()
            joint: list[Any] = []
            pos = 0
            for j, count in enumerate(sizes.tolist()):
                acc = ONE
                if not (skip and j == mode):
                    acc = cts[sorted_rows[pos]]
                    for r in sorted_rows[pos + 1 : pos + count]:
                        acc = acc * cts[r] % n2
                joint.append(acc)
                pos += count
            self.multiplications += len(rows) - (int(sizes[mode]) if skip else 0)
            rest = ONE
            for c in joint:
                rest = rest * c % n2
            if index == full:
                total = rest
            elif skip:
                joint[mode] = total * gmpy2.invert(rest, n2) % n2
            stride = 1
            for f in group:
                digits = ((uniq // stride) % self.n_bins[f]).tolist()
                stride *= self.n_bins[f]
                marginal: list[Any] = [None] * self.n_bins[f]
                for d, c in zip(digits, joint, strict=True):
                    marginal[d] = c if marginal[d] is None else marginal[d] * c % n2
                self.multiplications += len(joint) if len(group) > 1 else 0
                out[f] = [ONE if c is None else c for c in marginal]
        return out

    def _derived(self, parent: list[list[Any]], child: list[list[Any]]) -> list[list[Any]]:
        """Return the sibling's bin sums: the parent's divided by the child's (homomorphic subtraction)."""
        n2 = self._session()[0].n2
        return [
            [p if c == ONE else p * gmpy2.invert(c, n2) % n2 for p, c in zip(ps, cs, strict=True)]
            for ps, cs in zip(parent, child, strict=True)
        ]

    def _offer(self, tree: _HostTree, node: int, sums: list[list[Any]]) -> tuple[list[int], list[Any]]:
        """Return the node's offered split ids (ascending) and their encrypted left sums, packed and re-randomised."""
        public, packing, noise = self._session()
        n2, m = public.n2, self.config.min_child_rows
        counts = np.stack(
            [
                np.bincount(self.binned.bins[tree.rows[node], f], minlength=self.binned.width)
                for f in range(len(self.n_bins))
            ]
        )
        pairs = []
        for f, k in enumerate(self.n_bins):
            offers = offered_thresholds(counts[f, :k], m, m)
            wanted = set(offers)
            running = ONE
            for b in range(offers[-1] + 1 if offers else 0):
                running = running * sums[f][b] % n2
                if b in wanted:
                    pairs.append((int(tree.id_of[f, b]), running))
        pairs.sort(key=lambda pair: pair[0])
        ids = [i for i, _ in pairs]
        shift = gmpy2.mpz(1) << packing.slot_bits
        blocks = []
        for start in range(0, len(pairs), packing.slots):
            chunk = [c for _, c in pairs[start : start + packing.slots]]
            acc = chunk[-1]
            for c in reversed(chunk[:-1]):
                acc = gmpy2.powmod(acc, shift, n2) * c % n2
            blocks.append(acc)
        blocks = [b * z % n2 for b, z in zip(blocks, noise.zeros(len(blocks)), strict=True)]
        tree.offered[node] = set(ids)
        return ids, blocks

    def histograms(self, message: Message) -> Message:
        """Answer sb_histograms for nodes of the current level the host saw formed (each once)."""
        tree = self._open(message)
        public = self._session()[0]
        nodes = [int(v) for v in message.fields["nodes"]]
        if not nodes or len(set(nodes)) != len(nodes):
            raise ProtocolError("sb_histograms: no nodes, or a node twice")
        for node in nodes:
            if node not in tree.allowed:
                raise ProtocolError(f"sb_histograms: node {node} is not a child of a split at this level")
            if (
                depth_of(node) >= self.config.max_depth
                or len(tree.rows[node]) < 2 * self.config.min_child_rows
            ):
                raise ProtocolError(f"sb_histograms: node {node} cannot be split")
        tree.allowed = set()  # one request per level: asking a node again, or out of order, is refused
        tree.asked = set(nodes)
        sums: dict[int, list[list[Any]]] = {}
        for node in nodes:
            if node in sums:
                continue
            if node == 0:
                sums[0] = self._bin_products(tree, tree.rows[0])
                continue
            sibling = node + 1 if node % 2 else node - 1
            parent = (node - 1) // 2
            small, large = sorted((node, sibling), key=lambda v: (len(tree.rows[v]), v))
            sums[small] = self._bin_products(tree, tree.rows[small])
            if large in tree.asked:
                sums[large] = self._derived(tree.sums[parent], sums[small])
        tree.sums = {v: s for v, s in sums.items() if v in tree.asked}
        all_ids, all_blocks, described = [], [], []
        for node in nodes:
            ids, blocks = self._offer(tree, node, tree.sums[node])
            all_ids.extend(ids)
            all_blocks.extend(blocks)
            described.append({"node": node, "offered": len(ids)})
        width = public.cipher_bytes
        return Message(
            "sb_histograms",
            {"tree": tree.index, "nodes": described},
            {"ids": np.array(all_ids, dtype=np.int32), "sums": ciphertexts_to_bytes(all_blocks, width)},
        )

    def split(self, message: Message) -> Message:
        """Record the guest's splits of the current level and answer the left rows of host splits."""
        tree = self._open(message)
        m = self.config.min_child_rows
        out: dict[str, np.ndarray] = {}
        answered = []
        children: dict[int, np.ndarray] = {}
        for item in message.fields["splits"]:
            node = int(item["node"])
            if node not in tree.asked or node in tree.split_done:
                raise ProtocolError(
                    f"sb_split: node {node} was not offered at this level, or is split already"
                )
            rows = tree.rows[node]
            if item["owner"] == "host":
                ids = [int(i) for i in item["ids"]]
                if not ids or not set(ids) <= tree.offered[node]:
                    raise ProtocolError(f"sb_split: node {node} names split ids the host did not offer there")
                f, b = min(tuple(tree.candidate[i].tolist()) for i in ids)
                left = rows[self.binned.bins[rows, f] <= b]
                tree.host_splits[node] = (f, b)
                out[f"left_{node}"] = left.astype(np.int32)
                answered.append(node)
            elif item["owner"] == "guest" and item["partition"] is False:
                tree.split_done.add(node)  # its children are never summed: the guest keeps the partition
                continue
            elif item["owner"] == "guest":
                left = _rows(message.arrays.get(f"left_{node}"), f"sb_split node {node}")
                if not np.isin(left, rows, assume_unique=True).all():
                    raise ProtocolError(f"sb_split: node {node}'s left rows are not all in the node")
            else:
                raise ProtocolError(f"sb_split: unknown owner {item['owner']!r}")
            if not m <= len(left) <= len(rows) - m:
                raise ProtocolError(f"sb_split: a child of node {node} would hold fewer than {m} rows")
            tree.split_done.add(node)
            children[2 * node + 1] = left
            children[2 * node + 2] = np.setdiff1d(rows, left, assume_unique=True)
        # the next level: only children of the splits seen now may be asked for
        tree.rows = children
        tree.sums = {v: s for v, s in tree.sums.items() if v in tree.split_done}
        tree.allowed, tree.asked, tree.offered, tree.split_done = set(children), set(), {}, set()
        return Message("sb_split", {"tree": tree.index, "nodes": answered}, out)

    def end_tree(self, message: Message) -> Message:
        """Close the tree: keep its host splits, forget its ciphertexts and rows."""
        tree = self._open(message)
        self.splits.append(dict(tree.host_splits))
        self.tree = None
        return Message("sb_end_tree", {"tree": tree.index})

    def model(self) -> HostModel:
        """Return the host's part of the trained model."""
        return HostModel(edges=self.binned.edges, splits=list(self.splits))


# --- guest -----------------------------------------------------------------------------------------


@dataclass
class GuestModel:
    """The guest's part: base score, trees (own splits, host node markers, leaf weights), own bin edges."""

    base_score: float
    trees: list[Tree]
    edges: list[np.ndarray]

    def predict_score(self, x_guest: np.ndarray, ask_host: Callable[[Message], Message]) -> np.ndarray:
        """Return raw scores, asking the host (one sb_route per level) only for rows at host nodes on their path."""
        x = np.asarray(x_guest, dtype=float)
        score = np.full(len(x), self.base_score)
        nodes = np.zeros((len(self.trees), len(x)), dtype=np.int64)
        depth = max((t.depth for t in self.trees), default=0)
        for _ in range(depth):
            ask: list[tuple[int, np.ndarray]] = []
            for t, tree in enumerate(self.trees):
                node = nodes[t]
                for i in np.unique(node[~tree.leaf[node]]).tolist():
                    at = np.flatnonzero(node == i)
                    if tree.owner[i] == GUEST:
                        left = x[at, tree.feature[i]] < self.edges[tree.feature[i]][tree.bin[i]]
                        node[at] = np.where(left, 2 * i + 1, 2 * i + 2)
                    else:
                        ask.append((t, at))
            if not ask:
                continue
            rows = np.concatenate([at for _, at in ask])
            trees = np.concatenate([np.full(len(at), t) for t, at in ask])
            current = nodes[trees, rows]
            reply = ask_host(
                Message(
                    "sb_route",
                    {"count": len(rows)},
                    {
                        "rows": rows.astype(np.int32),
                        "trees": trees.astype(np.int32),
                        "nodes": current.astype(np.int32),
                    },
                )
            )
            left = np.asarray(reply.arrays.get("left"))
            if left.dtype != np.uint8 or left.shape != rows.shape or (left > 1).any():
                raise ProtocolError(f"sb_route reply: expected {len(rows)} directions (0/1 uint8)")
            nodes[trees, rows] = np.where(left == 1, 2 * current + 1, 2 * current + 2)
        for t, tree in enumerate(self.trees):
            score += tree.weight[nodes[t]]
        return score


class SecureBoostGuest:
    """The guest's side: gradients, its own splits, the choice among all splits, the leaf weights."""

    def __init__(
        self,
        x_guest: np.ndarray,
        y: np.ndarray,
        config: SBConfig,
        key: PrivateKey | None = None,
        prefetch: bool = False,
    ) -> None:
        self.config = config
        self.y = np.asarray(y, dtype=float)
        self.binned = Binned.fit(x_guest, config.max_bins)
        self.key = key or PrivateKey(config.key_bits)
        self.packing = Packing(len(self.y), int(self.key.public.n).bit_length())
        self.base = base_score(self.y)
        self.score = np.full(len(self.y), self.base)
        self.trees: list[Tree] = []
        self.candidates = 0
        self._obfuscators = (
            Prefetched(self.key.obfuscators, [len(self.y)] * config.trees) if prefetch else None
        )
        self.obfuscator_seconds = 0.0
        self.decrypted = 0
        self._tree: Tree | None = None
        self._level: dict[int, np.ndarray] = {}
        self._asked: list[int] = []
        self._pending: dict[int, np.ndarray] = {}  # host splits awaiting their partition
        self._g = self._h = np.zeros(0, dtype=np.int64)

    def close(self) -> None:
        """Stop background encryption."""
        if self._obfuscators is not None:
            self._obfuscators.close()

    def setup(self) -> Message:
        """Return sb_setup: the public key, the row count, the config."""
        return Message(
            "sb_setup",
            {"n": format(int(self.key.public.n), "x"), "rows": len(self.y), "config": self.config.as_dict()},
        )

    def accept_setup(self, reply: Message) -> None:
        """Take the host's candidate count (the largest number of split ids it may offer a node)."""
        count = int(reply.fields["candidates"])
        if not 0 <= count <= 1_000_000:
            raise ProtocolError("sb_setup reply: implausible candidate count")
        self.candidates = count

    def begin_tree(self) -> Message:
        """Return sb_tree: this tree's packed gradients, one ciphertext per row."""
        if self._tree is not None or len(self.trees) >= self.config.trees:
            raise ProtocolError("begin_tree: a tree is open, or all trees are grown")
        self._g, self._h = fixed_gradients(self.y, self.score)
        started = time.perf_counter()
        if self._obfuscators is not None:
            obfuscators = self._obfuscators.take(len(self.y))
        else:
            obfuscators = self.key.obfuscators(len(self.y))
        self.obfuscator_seconds += time.perf_counter() - started
        cts = self.key.encrypt_ints(self.packing.pack(self._g, self._h), obfuscators)
        self._tree = Tree(self.config.max_depth)
        self._level = {0: np.arange(len(self.y))}
        width = self.key.public.cipher_bytes
        return Message("sb_tree", {"tree": len(self.trees)}, {"gh": ciphertexts_to_bytes(cts, width)})

    def _open(self) -> Tree:
        if self._tree is None:
            raise ProtocolError("no tree is open")
        return self._tree

    def _leaf(self, node: int, rows: np.ndarray) -> None:
        tree = self._open()
        tree.leaf[node] = True
        tree.weight[node] = leaf_weight(int(self._g[rows].sum()), int(self._h[rows].sum()), self.config)
        self.score[rows] += tree.weight[node]

    def histogram_request(self) -> Message | None:
        """Return sb_histograms for this level's splittable nodes (the others become leaves), or None: tree done."""
        self._open()
        self._asked = []
        for node, rows in sorted(self._level.items()):
            if depth_of(node) >= self.config.max_depth or len(rows) < 2 * self.config.min_child_rows:
                self._leaf(node, rows)
            else:
                self._asked.append(node)
        self._level = {node: self._level[node] for node in self._asked}
        if not self._asked:
            return None
        return Message("sb_histograms", {"tree": len(self.trees), "nodes": self._asked})

    def _host_sums(self, reply: Message) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Return node -> (ids, G_L, H_L) of the host's offers, checking every count before decrypting."""
        described = reply.fields.get("nodes", [])
        if [int(d["node"]) for d in described] != self._asked:
            raise ProtocolError("sb_histograms reply: not the nodes asked for")
        offered = [int(d["offered"]) for d in described]
        if any(not 0 <= k <= self.candidates for k in offered):
            raise ProtocolError("sb_histograms reply: more offers than the host has candidates")
        ids = np.asarray(reply.arrays.get("ids"))
        if ids.dtype != np.int32 or ids.shape != (sum(offered),):
            raise ProtocolError(f"sb_histograms reply: expected {sum(offered)} int32 split ids")
        slots = self.packing.slots
        blocks = [-(-k // slots) for k in offered]
        cts = checked_ciphertexts(reply.arrays.get("sums"), self.key.public, sum(blocks), "host histograms")
        n = int(self.key.public.n)
        out, at_id, at_block = {}, 0, 0
        for node, k, nb in zip(self._asked, offered, blocks, strict=True):
            node_ids = ids[at_id : at_id + k].astype(np.int64)
            if len(np.unique(node_ids)) != k or (
                k and (node_ids.min() < 0 or node_ids.max() >= self.candidates)
            ):
                raise ProtocolError(
                    f"sb_histograms reply: node {node}'s split ids repeat or are out of range"
                )
            sums: list[int] = []
            for j in range(nb):
                value = signed(self.key.decrypt_int(cts[at_block + j]), n)
                sums.extend(self.packing.split_slots(value, min(slots, k - j * slots)))
            self.decrypted += nb
            gl, hl = self.packing.unpack(sums)
            rows = self._level[node]
            if k and (
                hl.min() < 0
                or hl.max() > self._h[rows].sum()
                or np.abs(gl).max() > np.abs(self._g[rows]).sum()
            ):
                raise ProtocolError(f"sb_histograms reply: node {node}'s sums exceed the node's own")
            out[node] = (node_ids, gl, hl)
            at_id, at_block = at_id + k, at_block + nb
        return out

    def choose_splits(self, reply: Message) -> Message:
        """Decrypt the host's offers, pick each node's best split (or make it a leaf); return sb_split."""
        tree = self._open()
        host = self._host_sums(reply)
        splits: list[dict[str, Any]] = []
        arrays: dict[str, np.ndarray] = {}
        self._pending = {}
        nxt: dict[int, np.ndarray] = {}
        for node in self._asked:
            rows = self._level[node]
            gs, hs = int(self._g[rows].sum()), int(self._h[rows].sum())
            own = best_own_split(
                bin_sums(self.binned.bins, rows, self._g, self._h, self.binned.width), gs, hs, self.config, 1
            )
            ids, gl, hl = host[node]
            gains = split_gains(gl, hl, gs, hs, self.config)
            host_best = float(gains.max()) if len(gains) else -np.inf
            if host_best > own[0] and host_best > 0:
                tied = ids[gains == host_best]
                splits.append({"node": node, "owner": "host", "ids": sorted(int(i) for i in tied)})
                tree.owner[node] = HOST
                self._pending[node] = rows
            elif own[0] > 0:
                _, f, b = own
                left = self.binned.bins[rows, f] <= b
                tree.owner[node], tree.feature[node], tree.bin[node] = GUEST, f, b
                # the host needs the partition only if it will sum a child (not below the last level)
                shared = (
                    depth_of(node) + 1 < self.config.max_depth
                    and max(int(left.sum()), int((~left).sum())) >= 2 * self.config.min_child_rows
                )
                splits.append({"node": node, "owner": "guest", "partition": shared})
                if shared:
                    arrays[f"left_{node}"] = rows[left].astype(np.int32)
                nxt[2 * node + 1], nxt[2 * node + 2] = rows[left], rows[~left]
            else:
                self._leaf(node, rows)
        self._level = nxt
        return Message("sb_split", {"tree": len(self.trees), "splits": splits}, arrays)

    def apply_partitions(self, reply: Message) -> None:
        """Take the host's left rows of each host split (checked: inside the node, both children large enough)."""
        if sorted(int(v) for v in reply.fields.get("nodes", [])) != sorted(self._pending):
            raise ProtocolError("sb_split reply: not the host splits asked for")
        m = self.config.min_child_rows
        for node, rows in self._pending.items():
            left = _rows(reply.arrays.get(f"left_{node}"), f"sb_split reply node {node}")
            if not (m <= len(left) <= len(rows) - m and np.isin(left, rows, assume_unique=True).all()):
                raise ProtocolError(f"sb_split reply: node {node}'s partition is not a split of the node")
            self._level[2 * node + 1] = left
            self._level[2 * node + 2] = np.setdiff1d(rows, left, assume_unique=True)
        self._pending = {}

    def end_tree(self) -> Message:
        """Close the tree (its remaining nodes are leaves); return sb_end_tree."""
        tree = self._open()
        for node, rows in sorted(self._level.items()):
            self._leaf(node, rows)
        self.trees.append(tree)
        self._tree, self._level = None, {}
        return Message("sb_end_tree", {"tree": len(self.trees) - 1})

    def model(self) -> GuestModel:
        """Return the guest's part of the trained model."""
        return GuestModel(base_score=self.base, trees=list(self.trees), edges=self.binned.edges)


def fill_values(x: np.ndarray) -> np.ndarray:
    """Return each column's mean over the given (training) rows, ignoring NaN (0 for an all-missing column).

    Binning refuses NaN, so each party fills its own missing values with these, fitted on its training rows
    and kept in its own part of the model (the two-process job; the plaintext reference fills the same way).
    """
    values = np.asarray(x, dtype=float).reshape(len(x), -1)
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(values)).sum(axis=0)
        sums = np.nansum(values, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def filled(x: np.ndarray, fill: np.ndarray | list[float]) -> np.ndarray:
    """Return x (rows, features) as floats with each column's NaN replaced by its fill value."""
    values = np.array(x, dtype=float).reshape(len(x), -1)
    return np.where(np.isnan(values), np.asarray(fill, dtype=float), values)


NO_ANSWER = 2  # a direction the host did not give (the row is over its reveal budget): the row gets no score


def in_subtree(node: int, top: int) -> bool:
    """Return whether heap-ordered node lies in the subtree rooted at top (top itself included)."""
    while node > top:
        node = (node - 1) // 2
    return node == top


def walk_trees(
    model: GuestModel,
    x_guest: np.ndarray,
    ask: Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
    """Return (raw scores, host directions) of rows, asking `ask(level, rows, trees, nodes)` once per level.

    At each level the guest routes its own nodes and asks only the (row, tree, node) triples of host nodes its
    rows reach at that depth; `ask` returns per triple 1 (left), 0 (right) or NO_ANSWER, after which that row
    is no longer asked about and scores NaN. The directions come back as (tree, node) -> per row 1.0 / 0.0 /
    NaN (not asked), the columns JointTreeModel reads.
    """
    x = np.asarray(x_guest, dtype=float).reshape(len(x_guest), -1)
    n = len(x)
    nodes = np.zeros((len(model.trees), n), dtype=np.int64)
    dead = np.zeros(n, dtype=bool)
    routes: dict[tuple[int, int], np.ndarray] = {}
    depth = max((t.depth for t in model.trees), default=0)
    for level in range(depth):
        ask_rows: list[np.ndarray] = []
        ask_trees: list[np.ndarray] = []
        for t, tree in enumerate(model.trees):
            node = nodes[t]
            live = ~tree.leaf[node] & ~dead & (tree.owner[node] != 0)
            for i in np.unique(node[live]).tolist():
                at = np.flatnonzero((node == i) & ~dead)
                if tree.owner[i] == GUEST:
                    left = x[at, tree.feature[i]] < model.edges[tree.feature[i]][tree.bin[i]]
                    node[at] = np.where(left, 2 * i + 1, 2 * i + 2)
                else:
                    ask_rows.append(at)
                    ask_trees.append(np.full(len(at), t))
        if not ask_rows:
            continue
        rows, trees = np.concatenate(ask_rows), np.concatenate(ask_trees)
        current = nodes[trees, rows]
        left = np.asarray(ask(level, rows, trees, current))
        if left.shape != rows.shape or left.dtype != np.uint8 or (left > NO_ANSWER).any():
            raise ProtocolError(f"route reply: expected {len(rows)} directions (uint8 0, 1 or {NO_ANSWER})")
        answered = left != NO_ANSWER
        dead[rows[~answered]] = True
        for t, node_id in set(zip(trees.tolist(), current.tolist(), strict=True)):
            routes.setdefault((t, node_id), np.full(n, np.nan))
        for r, t, node_id, d in zip(
            rows.tolist(), trees.tolist(), current.tolist(), left.tolist(), strict=True
        ):
            if d != NO_ANSWER:
                routes[(t, node_id)][r] = float(d)
        rows, trees, current, left = rows[answered], trees[answered], current[answered], left[answered]
        nodes[trees, rows] = np.where(left == 1, 2 * current + 1, 2 * current + 2)
    score = np.full(n, model.base_score)
    for t, tree in enumerate(model.trees):
        score += tree.weight[nodes[t]]
    score[dead] = np.nan
    return score, routes


# --- in-process driver -----------------------------------------------------------------------------


def message_bytes(message: Message) -> int:
    """Return the payload size of a message: its JSON fields plus its arrays' bytes."""
    return len(json.dumps(message.fields).encode()) + sum(a.nbytes for a in message.arrays.values())


@dataclass
class TreeStats:
    """Seconds and bytes of one tree, by phase."""

    guest_encryption: float = 0.0  # packing and encrypting (obfuscators included, see obfuscators)
    obfuscators: float = 0.0  # of which making the DJN obfuscators (can run ahead, Prefetched)
    host_histograms: float = 0.0
    guest_gain: float = 0.0  # decryption, unpacking, gains, the guest's own histograms
    other: float = 0.0  # partitions, requests
    bytes_to_host: int = 0
    bytes_to_guest: int = 0
    decryptions: int = 0
    multiplications: int = 0

    @property
    def total(self) -> float:
        return self.guest_encryption + self.host_histograms + self.guest_gain + self.other


class HostEndpoint(Protocol):
    """What the guest's driver needs of the host: its message handlers (in process, or a proxy to another)."""

    @property
    def multiplications(self) -> int: ...

    def setup(self, message: Message) -> Message: ...

    def start_tree(self, message: Message) -> Message: ...

    def histograms(self, message: Message) -> Message: ...

    def split(self, message: Message) -> Message: ...

    def end_tree(self, message: Message) -> Message: ...


def train_in_process(
    guest: SecureBoostGuest, host: HostEndpoint, transcript: list[tuple[str, Message]] | None = None
) -> list[TreeStats]:
    """Run the protocol from the guest's side against host handlers; return per-tree stats (transcript: every
    message). With a SecureBoostHost both parties run in this process, serially."""
    stats: list[TreeStats] = []
    current = TreeStats()

    def send(handler: Callable[[Message], Message], message: Message, phase: str) -> Message:
        current.bytes_to_host += message_bytes(message)
        started = time.perf_counter()
        reply = handler(message)
        setattr(current, phase, getattr(current, phase) + time.perf_counter() - started)
        current.bytes_to_guest += message_bytes(reply)
        if transcript is not None:
            transcript.extend([("to_host", message), ("to_guest", reply)])
        return reply

    guest.accept_setup(send(host.setup, guest.setup(), "other"))
    for _ in range(guest.config.trees):
        current = TreeStats()
        obf, dec, mul = guest.obfuscator_seconds, guest.decrypted, host.multiplications
        started = time.perf_counter()
        start = guest.begin_tree()
        current.guest_encryption = time.perf_counter() - started
        current.obfuscators = guest.obfuscator_seconds - obf
        send(host.start_tree, start, "other")
        while (request := guest.histogram_request()) is not None:
            reply = send(host.histograms, request, "host_histograms")
            started = time.perf_counter()
            split = guest.choose_splits(reply)
            current.guest_gain += time.perf_counter() - started
            guest.apply_partitions(send(host.split, split, "other"))
        send(host.end_tree, guest.end_tree(), "other")
        current.decryptions, current.multiplications = guest.decrypted - dec, host.multiplications - mul
        stats.append(current)
    return stats
