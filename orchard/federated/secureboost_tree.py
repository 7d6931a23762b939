"""Hetero SecureBoost arithmetic: binning, fixed-point gradients, gain, threshold offers, trees, plaintext reference.

Both parties and the centralised reference share these pieces, so the reference is the same algorithm as the
encrypted protocol (orchard.federated.secureboost): same quantile bins, same fixed point, same gain, same
offered thresholds, same tie-breaking; only the histogram sums of the host's features travel encrypted there.

Algorithm (XGBoost's second-order boosting of the logistic loss, level-wise to max_depth):
  g = p - y and h = p (1 - p) per row, in multiples of 2^-GH_BITS (integers, so every party sums exactly);
  a split at threshold bin b sends bin <= b (x < edges[b]) left; its gain is
  1/2 [G_L^2 / (H_L + lambda) + G_R^2 / (H_R + lambda) - G^2 / (H + lambda)] - gamma,
  feasible only if both children hold >= min_child_rows rows and >= min_child_weight hessian; a node splits on
  its best feasible split if the gain is > 0; a leaf's weight is -learning_rate G / (H + lambda).
Ties: the lowest (feature, bin) of a party wins; between the parties the guest's split wins a tie.
Host thresholds offered at a node (offered_thresholds): both sides >= min_child_rows rows and, between two
offered thresholds of a feature, >= min_child_rows rows of the node too, so no sum the guest receives or
subtracts within one node concerns fewer rows (what each party learns: orchard.federated.secureboost).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from orchard.federated.paillier_lr import MIN_BATCH_ROWS, MIN_KEY_BITS, sigmoid

GH_BITS = 20  # g and h are carried in multiples of 2^-GH_BITS
MIN_CHILD_ROWS = MIN_BATCH_ROWS  # floor of min_child_rows: no node, partition or offered interval below it
MAX_BINS = 256  # bins are stored as uint8
GUEST, HOST = 1, 2  # node owners (0: a leaf or an absent node)


@dataclass(frozen=True)
class SBConfig:
    """Hyper-parameters of hetero SecureBoost (both parties and the central reference use the same)."""

    trees: int = 3
    max_depth: int = 3
    max_bins: int = 32
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 1.0
    min_child_rows: int = MIN_CHILD_ROWS
    key_bits: int = 1024

    def __post_init__(self) -> None:
        if self.min_child_rows < MIN_CHILD_ROWS:
            raise ValueError(
                f"min_child_rows {self.min_child_rows} is below the safe minimum of {MIN_CHILD_ROWS} rows"
            )
        if not 1 <= self.trees <= 1000:
            raise ValueError(f"trees must be between 1 and 1000, got {self.trees}")
        if not 1 <= self.max_depth <= 12:
            raise ValueError(f"max_depth must be between 1 and 12, got {self.max_depth}")
        if not 2 <= self.max_bins <= MAX_BINS:
            raise ValueError(f"max_bins must be between 2 and {MAX_BINS}, got {self.max_bins}")
        if self.key_bits < MIN_KEY_BITS:
            raise ValueError(f"key_bits must be at least {MIN_KEY_BITS}, got {self.key_bits}")
        if self.reg_lambda < 0 or self.min_child_weight < 0 or self.learning_rate <= 0:
            raise ValueError("reg_lambda and min_child_weight must be >= 0 and learning_rate > 0")

    def as_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-ready dict."""
        return asdict(self)


# --- binning ----------------------------------------------------------------------------------------


def quantile_edges(column: np.ndarray, max_bins: int) -> np.ndarray:
    """Return the increasing bin edges of a column: bin(x) = number of edges <= x, at most max_bins bins.

    A column with at most max_bins distinct values gets one bin per value; otherwise the edges are data values at
    equal-frequency ranks (duplicates merged), so no bin is empty on the fitted rows.
    """
    x = np.asarray(column, dtype=float)
    if np.isnan(x).any():
        raise ValueError("a feature holds NaN: impute before binning")
    values = np.unique(x)
    if len(values) <= max_bins:
        return values[1:]
    ranks = np.quantile(x, np.arange(1, max_bins) / max_bins, method="higher")
    edges = np.unique(ranks)
    return edges[edges > values[0]]


@dataclass(frozen=True)
class Binned:
    """One party's features, binned on its own rows: the edges stay with the party that owns the features."""

    edges: list[np.ndarray]
    bins: np.ndarray  # (rows, features) uint8

    @classmethod
    def fit(cls, x: np.ndarray, max_bins: int) -> Binned:
        """Return the quantile binning of x (rows, features) with at most max_bins bins per feature."""
        x = np.asarray(x, dtype=float).reshape(len(x), -1)
        edges = [quantile_edges(x[:, j], max_bins) for j in range(x.shape[1])]
        bins = np.empty(x.shape, dtype=np.uint8)
        for j, e in enumerate(edges):
            bins[:, j] = np.searchsorted(e, x[:, j], side="right")
        return cls(edges=edges, bins=bins)

    @property
    def features(self) -> int:
        return self.bins.shape[1]

    @property
    def width(self) -> int:
        """Return the largest number of bins of a feature (the stride of per-feature histograms)."""
        return max((len(e) + 1 for e in self.edges), default=1)

    def candidates(self) -> list[tuple[int, int]]:
        """Return every (feature, bin) split candidate: bin <= b goes left."""
        return [(j, b) for j, e in enumerate(self.edges) for b in range(len(e))]


# --- fixed-point gradients and their packing --------------------------------------------------------


def fixed_gradients(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the logistic loss's g = p - y and h = p (1 - p) in multiples of 2^-GH_BITS (int64)."""
    p = sigmoid(score)
    scale = float(1 << GH_BITS)
    g = np.rint((p - np.asarray(y, dtype=float)) * scale).astype(np.int64)
    h = np.rint(p * (1.0 - p) * scale).astype(np.int64)
    return g, h


@dataclass(frozen=True)
class Packing:
    """Layout of g and h in one plaintext, and of several histogram sums in one ciphertext.

    A row's plaintext is g 2^h_bits + h (signed): h in [0, 2^(GH_BITS-2)] (p (1 - p) <= 1/4) in the low
    h_bits, g in [-2^GH_BITS, 2^GH_BITS] in the high bits. h_bits holds the sum of h over all `rows` rows and
    |G| < 2^(g_bits - 1), so the sum of any subset of rows is a value S = G 2^h_bits + H with 0 <= H < 2^h_bits
    and |S| < 2^(slot_bits - 1): H never carries into G and the signed G needs no offset (an offset would make
    the guest need each split's row count to remove it). The host puts `slots` sums in one ciphertext,
    sum_j S_j 2^(slot_bits j), whose absolute value stays below 2^(modulus_bits - 3) < n / 2.
    """

    rows: int
    modulus_bits: int

    def __post_init__(self) -> None:
        if self.rows < 1 or GH_BITS + self.rows.bit_length() > 52:
            raise ValueError(f"cannot pack sums over {self.rows} rows exactly")
        if self.slots < 1:
            raise ValueError(f"a {self.modulus_bits}-bit modulus cannot hold one {self.slot_bits}-bit sum")

    @property
    def h_bits(self) -> int:
        return GH_BITS - 2 + self.rows.bit_length()

    @property
    def g_bits(self) -> int:
        return GH_BITS + 1 + self.rows.bit_length()

    @property
    def slot_bits(self) -> int:
        return self.g_bits + self.h_bits

    @property
    def slots(self) -> int:
        return (self.modulus_bits - 2) // self.slot_bits

    def pack(self, g: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Return each row's plaintext g 2^h_bits + h as Python integers (an object array), checking the ranges."""
        g, h = np.asarray(g, dtype=np.int64), np.asarray(h, dtype=np.int64)
        if len(g) > self.rows or len(h) != len(g):
            raise ValueError(f"{len(g)} rows for a packing of {self.rows}")
        if (np.abs(g) > 1 << GH_BITS).any() or (h < 0).any() or (h > 1 << (GH_BITS - 2)).any():
            raise ValueError("g or h outside the packing's range")
        shift = self.h_bits
        return np.array(
            [(gi << shift) + hi for gi, hi in zip(g.tolist(), h.tolist(), strict=True)], dtype=object
        )

    def split_slots(self, value: int, count: int) -> list[int]:
        """Return the count signed slot sums of a decrypted (signed) block, or raise if anything is left over."""
        if not 1 <= count <= self.slots:
            raise ValueError(f"a block holds 1 to {self.slots} sums, not {count}")
        width, half = 1 << self.slot_bits, 1 << (self.slot_bits - 1)
        out = []
        for _ in range(count):
            s = value & (width - 1)
            if s >= half:
                s -= width
            out.append(s)
            value = (value - s) >> self.slot_bits
        if value != 0:
            raise ValueError("a histogram block holds more than its sums")
        return out

    def unpack(self, sums: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Return (G, H) int64 arrays of slot sums G 2^h_bits + H."""
        mask = (1 << self.h_bits) - 1
        return (
            np.array([s >> self.h_bits for s in sums], dtype=np.int64),
            np.array([s & mask for s in sums], dtype=np.int64),
        )


# --- histograms, offers, gain -----------------------------------------------------------------------


def bin_sums(bins: np.ndarray, rows: np.ndarray, g: np.ndarray, h: np.ndarray, width: int) -> np.ndarray:
    """Return the (3, features, width) int64 sums of g, h and the row count per feature and bin over rows."""
    features = bins.shape[1]
    flat = (bins[rows].astype(np.int64) + np.arange(features) * width).ravel()
    size = features * width
    # float64 sums are exact here: |sum| <= rows 2^GH_BITS < 2^52 (Packing refuses more rows)
    out = [
        np.rint(np.bincount(flat, weights=np.repeat(v[rows].astype(float), features), minlength=size))
        for v in (g, h)
    ]
    out.append(np.bincount(flat, minlength=size).astype(float))
    return np.stack(out).astype(np.int64).reshape(3, features, width)


def offered_thresholds(counts: np.ndarray, min_rows: int, spacing: int) -> list[int]:
    """Return the thresholds b (bin <= b left) of one feature a node may split on, from its rows per bin.

    Both sides hold >= min_rows rows; with spacing s, consecutive offered thresholds also hold >= s rows
    between them (greedy from the left), so no difference of two offered sums isolates fewer rows.
    """
    cumulative = np.cumsum(counts[:-1]).tolist()
    total = int(counts.sum())
    out: list[int] = []
    last = 0
    for b, left in enumerate(cumulative):
        if left >= min_rows and total - left >= min_rows and left - last >= max(spacing, 1):
            out.append(b)
            last = left
    return out


def split_gains(
    gl: np.ndarray, hl: np.ndarray, g: int, h: int, config: SBConfig, feasible: np.ndarray | None = None
) -> np.ndarray:
    """Return the XGBoost gain of each split from exact integer sums (-inf where a child's hessian is too small)."""
    scale = float(1 << GH_BITS)
    gl_f, hl_f = np.asarray(gl, dtype=np.int64) / scale, np.asarray(hl, dtype=np.int64) / scale
    gr_f = (g - np.asarray(gl, dtype=np.int64)) / scale
    hr_f = (h - np.asarray(hl, dtype=np.int64)) / scale
    g_f, h_f, lam = g / scale, h / scale, config.reg_lambda
    gain = (
        0.5 * (gl_f * gl_f / (hl_f + lam) + gr_f * gr_f / (hr_f + lam) - g_f * g_f / (h_f + lam))
        - config.gamma
    )
    ok = (hl_f >= config.min_child_weight) & (hr_f >= config.min_child_weight)
    if feasible is not None:
        ok &= feasible
    return np.where(ok, gain, -np.inf)


def leaf_weight(g: int, h: int, config: SBConfig) -> float:
    """Return a leaf's weight -learning_rate G / (H + lambda) from exact integer sums."""
    scale = float(1 << GH_BITS)
    return -config.learning_rate * (g / scale) / (h / scale + config.reg_lambda)


def best_own_split(
    sums: np.ndarray, g: int, h: int, config: SBConfig, spacing: int
) -> tuple[float, int, int]:
    """Return (gain, feature, bin) of a party's best offered split at a node from its bin sums (gain -inf: none).

    Candidates run in (feature, bin) order and np.argmax keeps the first maximum: the lowest wins a tie.
    """
    pairs = [
        (j, b)
        for j in range(sums.shape[1])
        for b in offered_thresholds(sums[2, j], config.min_child_rows, spacing)
    ]
    if not pairs:
        return -np.inf, -1, -1
    features, bins_ = np.array(pairs).T
    left = np.cumsum(sums[:2], axis=2)[:, features, bins_]
    gains = split_gains(left[0], left[1], g, h, config)
    i = int(np.argmax(gains))
    return float(gains[i]), int(features[i]), int(bins_[i])


# --- trees --------------------------------------------------------------------------------------------


@dataclass
class Tree:
    """A level-wise tree in heap order (children of node i: 2i + 1 left, 2i + 2 right).

    owner: 0 leaf or absent, GUEST or HOST; feature and bin of the owner's split (-1 where the holder of the tree
    does not know them: the guest's copy of a host node); weight of each leaf.
    """

    depth: int
    owner: np.ndarray = field(init=False)
    feature: np.ndarray = field(init=False)
    bin: np.ndarray = field(init=False)
    weight: np.ndarray = field(init=False)
    leaf: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        size = (1 << (self.depth + 1)) - 1
        self.owner = np.zeros(size, dtype=np.int8)
        self.feature = np.full(size, -1, dtype=np.int64)
        self.bin = np.full(size, -1, dtype=np.int64)
        self.weight = np.zeros(size)
        self.leaf = np.zeros(size, dtype=bool)

    def as_dict(self) -> dict[str, Any]:
        """Return the tree as a JSON-ready dict."""
        return {
            "depth": self.depth,
            "owner": self.owner.tolist(),
            "feature": self.feature.tolist(),
            "bin": self.bin.tolist(),
            "weight": self.weight.tolist(),
            "leaf": self.leaf.tolist(),
        }


@dataclass
class ReferenceModel:
    """The centrally trained model: trees over both parties' binned features."""

    base_score: float
    trees: list[Tree]
    guest: Binned
    host: Binned | None

    def predict_score(self, x_guest: np.ndarray, x_host: np.ndarray | None) -> np.ndarray:
        """Return the raw scores (log-odds) of rows given both parties' raw features."""
        xs = {GUEST: np.asarray(x_guest, dtype=float), HOST: np.asarray(x_host, dtype=float)}
        edges = {GUEST: self.guest.edges, HOST: self.host.edges if self.host else []}
        score = np.full(len(x_guest), self.base_score)
        for tree in self.trees:
            node = np.zeros(len(x_guest), dtype=np.int64)
            for _ in range(tree.depth):
                for i in np.unique(node[~tree.leaf[node]]).tolist():
                    at = np.flatnonzero(node == i)
                    owner = int(tree.owner[i])
                    threshold = edges[owner][tree.feature[i]][tree.bin[i]]
                    left = xs[owner][at, tree.feature[i]] < threshold
                    node[at] = np.where(left, 2 * i + 1, 2 * i + 2)
            score += tree.weight[node]
        return score


def base_score(y: np.ndarray) -> float:
    """Return the initial log-odds of the labels."""
    rate = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6))
    return float(np.log(rate / (1.0 - rate)))


def train_reference(
    x_guest: np.ndarray,
    x_host: np.ndarray | None,
    y: np.ndarray,
    config: SBConfig,
    host_spacing: int | None = None,
) -> ReferenceModel:
    """Train the same boosted trees centrally in plaintext (x_host None: the guest-only model).

    host_spacing overrides the rows required between two offered host thresholds (default min_child_rows, as
    the protocol): 1 measures what that protection costs.
    """
    y = np.asarray(y, dtype=float)
    guest = Binned.fit(x_guest, config.max_bins)
    host = None if x_host is None else Binned.fit(x_host, config.max_bins)
    spacing = config.min_child_rows if host_spacing is None else host_spacing
    base = base_score(y)
    score = np.full(len(y), base)
    trees = []
    for _ in range(config.trees):
        g, h = fixed_gradients(y, score)
        tree = Tree(config.max_depth)
        level = {0: np.arange(len(y))}
        for depth in range(config.max_depth + 1):
            nxt = {}
            for node, rows in level.items():
                gs, hs = int(g[rows].sum()), int(h[rows].sum())
                if depth == config.max_depth or len(rows) < 2 * config.min_child_rows:
                    tree.leaf[node], tree.weight[node] = True, leaf_weight(gs, hs, config)
                    continue
                best = best_own_split(bin_sums(guest.bins, rows, g, h, guest.width), gs, hs, config, 1)
                owner, binned = GUEST, guest
                if host is not None:
                    other = best_own_split(
                        bin_sums(host.bins, rows, g, h, host.width), gs, hs, config, spacing
                    )
                    if other[0] > best[0]:
                        best, owner, binned = other, HOST, host
                gain, f, b = best
                if not gain > 0:
                    tree.leaf[node], tree.weight[node] = True, leaf_weight(gs, hs, config)
                    continue
                tree.owner[node], tree.feature[node], tree.bin[node] = owner, f, b
                left = binned.bins[rows, f] <= b
                nxt[2 * node + 1], nxt[2 * node + 2] = rows[left], rows[~left]
            for node, rows in level.items():
                if tree.leaf[node]:
                    score[rows] += tree.weight[node]
            level = nxt
        trees.append(tree)
    return ReferenceModel(base_score=base, trees=trees, guest=guest, host=host)


def centralised_twin(config: SBConfig) -> Any:
    """Return LightGBM set like the federated boosting (depth, rounds, bins, lambda, gamma, minimum child size).

    The centralised comparison of the benchmark and the tests: the same booster trained on the joined features.
    """
    import lightgbm as lgb  # only the comparison needs it

    return lgb.LGBMClassifier(
        n_estimators=config.trees,
        max_depth=config.max_depth,
        num_leaves=2**config.max_depth,
        learning_rate=config.learning_rate,
        reg_lambda=config.reg_lambda,
        min_split_gain=config.gamma,
        min_child_samples=config.min_child_rows,
        min_child_weight=config.min_child_weight,
        max_bin=config.max_bins,
        verbose=-1,
        n_jobs=1,
    )
