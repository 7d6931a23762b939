"""Benchmark: hetero SecureBoost (both parties in one process) vs the same trees in plaintext and LightGBM.

Run: python -m benchmarks.secureboost [--rows N] [--test-rows T] [--guest-features G] [--host-features H]
[--depth D] [--bins B] [--trees K] [--key-bits BITS]. Prints, per tree, the seconds of the guest's encryption
(of which DJN obfuscators, which the guest makes ahead during the host's turn in a two-process run), the host's
encrypted histograms, the guest's decryption and gains, the rest (partitions, requests), the bytes each way,
decryptions and ciphertext multiplications; then the out-of-sample AUC of the federated model, the same
algorithm trained centrally in plaintext (and without the host's threshold spacing), LightGBM on the joined
features with the same depth, rounds, bins and minimum child size, and the guest alone.

The rows are synthetic, shaped like the simulator's vertical split (benchmarks/federated.py): about 40 % of
each party's columns are 0/1 dummies, the others continuous; the log-odds mix both parties' features with
interactions and thresholds, so both parties matter. Everything runs in one process (one core): the two
parties' work is serial here, as it is on the critical path of a two-process run except the obfuscators.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from orchard.credit.metrics import auc
from orchard.federated.channel import Message
from orchard.federated.secureboost import (
    HostModel,
    SecureBoostGuest,
    SecureBoostHost,
    TreeStats,
    train_in_process,
)
from orchard.federated.secureboost_tree import (
    GUEST,
    ReferenceModel,
    SBConfig,
    centralised_twin,
    train_reference,
)


def synthetic(
    rows: int, guest_features: int, host_features: int, seed: int, dummies: bool = True
) -> tuple[np.ndarray, ...]:
    """Return (x_guest, x_host, y): ~40 % dummies per party (or none), a log-odds over both parties' features."""
    rng = np.random.default_rng(seed)

    def party(k: int) -> np.ndarray:
        x = rng.normal(size=(rows, k))
        for j in range(k):
            if dummies and j % 5 in (2, 4):  # dummies with rates 5-40 %
                x[:, j] = rng.random(rows) < 0.05 + 0.35 * rng.random()
        return x

    xg, xh = party(guest_features), party(host_features)
    z = -2.0 + 0.8 * xg[:, 0] - 0.5 * np.abs(xg[:, 1]) + 0.6 * xg[:, 2]
    z += 0.9 * xh[:, 0] + 0.7 * (xh[:, 1] > 0.8) + 0.6 * xh[:, 2] + 0.4 * xg[:, 3] * (xh[:, 3] > 0)
    if guest_features > 5:
        z += 0.3 * xg[:, 5]
    if host_features > 5:
        z -= 0.3 * xh[:, 5]
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-z))).astype(float)
    return xg, xh, y


def lightgbm_auc(
    x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, config: SBConfig
) -> float:
    """Return the test AUC of LightGBM with the same depth, rounds, bins, lambda and minimum child size."""
    model = centralised_twin(config)
    model.fit(x_train, y)
    return auc(y_test, np.asarray(model.predict_proba(x_test))[:, 1])


def hidden_membership_rows(model: ReferenceModel, rows: int, config: SBConfig) -> tuple[int, int, int]:
    """Return, summed over trees, (rows the host sums now, rows it would sum if it never learnt the guest's
    partitions, extra values the guest would encrypt then).

    Now: the smaller child of each split whose children are histogrammed. Hidden: the host knows a node only
    up to K, the rows its own splits place (K of a guest split's child is K of its parent); a guest split costs
    a fresh encrypted GH vector over K(parent), zero outside the child, which the host sums over K(parent); a
    host split's smaller K-child is summed over that same vector.
    """
    now = hidden = encrypted = 0
    size = 2 * config.min_child_rows
    for tree in model.trees:
        actual = {0: np.arange(rows)}
        known = {0: np.arange(rows)}
        now += rows
        hidden += rows
        for node in range((1 << config.max_depth) - 1):
            if node not in actual or tree.owner[node] == 0:
                continue
            owner, f, b = int(tree.owner[node]), int(tree.feature[node]), int(tree.bin[node])
            binned = model.guest if owner == GUEST else model.host
            assert binned is not None
            left = binned.bins[actual[node], f] <= b
            kids = {2 * node + 1: actual[node][left], 2 * node + 2: actual[node][~left]}
            actual.update(kids)
            if owner == GUEST:
                known.update(dict.fromkeys(kids, known[node]))
            else:
                side = binned.bins[known[node], f] <= b
                known.update({2 * node + 1: known[node][side], 2 * node + 2: known[node][~side]})
            deeper = 2 * node + 1 < (1 << config.max_depth) - 1
            if not deeper or not any(len(v) >= size for v in kids.values()):
                continue  # no child is histogrammed
            now += min(len(v) for v in kids.values())
            if owner == GUEST:
                hidden += len(known[node])
                encrypted += len(known[node])
            else:
                hidden += min(len(known[k]) for k in kids)
    return now, hidden, encrypted


def _serve_host(conn: Connection, x_host: np.ndarray, config: SBConfig) -> None:
    """Run the host in its own process: call its handlers for (name, args) requests until 'close'."""
    host = SecureBoostHost(x_host, config)
    while True:
        name, args = conn.recv()
        if name == "close":
            conn.send((True, None))
            return
        try:
            value = host.multiplications if name == "multiplications" else getattr(host, name)(*args)
            conn.send((True, value))
        except Exception as exc:  # the guest's side re-raises it
            conn.send((False, repr(exc)))


class RemoteHost:
    """The host in a child process behind a pipe (pickled messages): the guest overlaps its obfuscators."""

    def __init__(self, x_host: np.ndarray, config: SBConfig) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_host, args=(child, x_host, config), daemon=True)
        self._process.start()

    def _call(self, name: str, *args: Any) -> Any:
        self._conn.send((name, args))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"host {name}: {value}")
        return value

    @property
    def multiplications(self) -> int:
        return int(self._call("multiplications"))

    def setup(self, message: Message) -> Message:
        return self._call("setup", message)

    def start_tree(self, message: Message) -> Message:
        return self._call("start_tree", message)

    def histograms(self, message: Message) -> Message:
        return self._call("histograms", message)

    def split(self, message: Message) -> Message:
        return self._call("split", message)

    def end_tree(self, message: Message) -> Message:
        return self._call("end_tree", message)

    def model(self) -> HostModel:
        return self._call("model")

    def close(self) -> None:
        self._call("close")
        self._process.join(timeout=30)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=80_000)
    parser.add_argument("--test-rows", type=int, default=20_000)
    parser.add_argument("--guest-features", type=int, default=16)
    parser.add_argument("--host-features", type=int, default=12)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--trees", type=int, default=3)
    parser.add_argument("--key-bits", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--continuous-only", action="store_true", help="no 0/1 dummies: every feature continuous (32 bins)"
    )
    parser.add_argument(
        "--two-process",
        action="store_true",
        help="run the host in a child process (pipe) and let the guest make its obfuscators ahead (Prefetched)",
    )
    return parser


def main() -> None:
    """Run the comparison and print the figures."""
    args = _parser().parse_args()
    config = SBConfig(
        trees=args.trees,
        max_depth=args.depth,
        max_bins=args.bins,
        key_bits=args.key_bits,
        learning_rate=args.learning_rate,
    )
    xg_all, xh_all, y_all = synthetic(
        args.rows + args.test_rows,
        args.guest_features,
        args.host_features,
        args.seed,
        dummies=not args.continuous_only,
    )
    train, test = slice(0, args.rows), slice(args.rows, None)
    xg, xh, y = xg_all[train], xh_all[train], y_all[train]

    started = time.perf_counter()
    guest = SecureBoostGuest(xg, y, config, prefetch=args.two_process)
    host: SecureBoostHost | RemoteHost = (
        RemoteHost(xh, config) if args.two_process else SecureBoostHost(xh, config)
    )
    setup_s = time.perf_counter() - started
    wall = time.perf_counter()
    stats = train_in_process(guest, host)
    wall = time.perf_counter() - wall
    guest.close()
    load = os.getloadavg()[1]
    gm, hm = guest.model(), host.model()
    if isinstance(host, RemoteHost):
        host.close()
    fed = gm.predict_score(xg_all[test], lambda message: hm.route(message, xh_all[test]))

    central = train_reference(xg, xh, y, config)
    unspaced = train_reference(xg, xh, y, config, host_spacing=1)
    guest_only = train_reference(xg, None, y, config)
    same = all(
        np.array_equal(a.owner, b.owner) and np.array_equal(a.weight, b.weight)
        for a, b in zip(central.trees, gm.trees, strict=True)
    )
    y_test = y_all[test]
    aucs = {
        "federated": auc(y_test, fed),
        "centralised, same algorithm": auc(y_test, central.predict_score(xg_all[test], xh_all[test])),
        "centralised, no host threshold spacing": auc(
            y_test, unspaced.predict_score(xg_all[test], xh_all[test])
        ),
        "LightGBM on the joined features": lightgbm_auc(
            np.hstack([xg, xh]), y, np.hstack([xg_all[test], xh_all[test]]), y_test, config
        ),
        "guest only (same algorithm)": auc(y_test, guest_only.predict_score(xg_all[test], None)),
    }

    print(
        f"rows: train {args.rows}, test {args.test_rows}; features guest {args.guest_features}, host "
        f"{args.host_features}; depth {args.depth}, bins {args.bins}, trees {args.trees}, {args.key_bits}-bit "
        f"Paillier, {guest.packing.slots} sums per ciphertext ({guest.packing.slot_bits} bits each); "
        f"host split candidates {guest.candidates}; key + set-up {setup_s:.2f} s; "
        f"{'two processes, obfuscators made ahead' if args.two_process else 'one process, serial'}"
    )
    header = (
        f"{'tree':>4}{'total s':>9}{'encrypt':>9}{'(obfusc.)':>10}{'host hist':>10}{'dec+gain':>9}{'other':>7}"
        f"{'MB->host':>10}{'MB->guest':>10}{'decrypts':>9}{'mults':>10}"
    )
    print(header)
    for i, s in enumerate(stats):
        print(_tree_row(i, s))
    mean = TreeStats()
    for k in ("guest_encryption", "obfuscators", "host_histograms", "guest_gain", "other"):
        setattr(mean, k, float(np.mean([getattr(s, k) for s in stats])))
    print(
        f"mean s/tree {mean.total:.2f} (encryption {mean.guest_encryption:.2f}, of which obfuscators "
        f"{mean.obfuscators:.2f}; host histograms {mean.host_histograms:.2f}; decryption + gain "
        f"{mean.guest_gain:.2f}); without the obfuscators (made ahead in a two-process run): "
        f"{mean.total - mean.obfuscators:.2f} s/tree"
    )
    print(f"training wall time {wall:.2f} s for {len(stats)} trees: {wall / len(stats):.2f} s/tree")
    print(f"trees identical to the centralised reference (structure, owners, leaf weights): {same}")
    for name, value in aucs.items():
        print(f"  AUC {name:42}{value:.4f}")
    now, hidden, encrypted = hidden_membership_rows(central, args.rows, config)
    per_row_host = mean.host_histograms * len(stats) / now
    per_value = (mean.guest_encryption) / args.rows
    extra = (hidden - now) * per_row_host / len(stats) + encrypted * per_value / len(stats)
    print(
        f"estimate, hiding the guest's partitions from the host: the host would sum {hidden / now:.2f}x the rows "
        f"({hidden} vs {now} over {len(stats)} trees) and the guest encrypt {encrypted / len(stats):.0f} more "
        f"values per tree: about +{extra:.1f} s/tree (+{100 * extra / mean.total:.0f} %) at the measured costs"
    )
    print(f"5-min load average at the end of the federated run: {load:.1f} ({os.cpu_count()} cores)")


def _tree_row(i: int, s: TreeStats) -> str:
    return (
        f"{i:>4}{s.total:>9.2f}{s.guest_encryption:>9.2f}{s.obfuscators:>10.2f}{s.host_histograms:>10.2f}"
        f"{s.guest_gain:>9.2f}{s.other:>7.2f}{s.bytes_to_host / 1e6:>10.1f}{s.bytes_to_guest / 1e6:>10.3f}"
        f"{s.decryptions:>9}{s.multiplications:>10}"
    )


if __name__ == "__main__":
    main()
