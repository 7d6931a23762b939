"""Unit tests of hetero SecureBoost: exactness against the plaintext reference, packing limits, protections."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import partial

import gmpy2
import lightgbm as lgb
import numpy as np
import pytest

from orchard.credit.metrics import auc
from orchard.federated.channel import Message
from orchard.federated.paillier_lr import PrivateKey, ciphertexts_to_bytes, signed
from orchard.federated.secureboost import (
    GuestModel,
    HostModel,
    ProtocolError,
    SecureBoostGuest,
    SecureBoostHost,
    depth_of,
    feature_groups,
    train_in_process,
)
from orchard.federated.secureboost_tree import (
    GH_BITS,
    GUEST,
    HOST,
    MIN_CHILD_ROWS,
    Packing,
    ReferenceModel,
    SBConfig,
    centralised_twin,
    offered_thresholds,
    train_reference,
)

CONFIG = SBConfig(trees=4, max_depth=3, key_bits=512, learning_rate=0.3)


def _synthetic(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_guest, x_host, y): the log-odds need both parties' features (the host's with a threshold)."""
    rng = np.random.default_rng(seed)
    xg = rng.normal(size=(rows, 3))
    xh = rng.normal(size=(rows, 3))
    xh[:, 2] = rng.random(rows) < 0.3  # a dummy
    z = (
        -1.0
        + 0.9 * xg[:, 0]
        - 0.6 * np.abs(xg[:, 1])
        + 1.1 * xh[:, 0]
        + 0.9 * (xh[:, 1] > 0.7)
        + 0.8 * xh[:, 2]
    )
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-z))).astype(float)
    return xg, xh, y


@dataclass
class Trained:
    """One federated run and its plaintext references on the same rows."""

    xg: np.ndarray
    xh: np.ndarray
    y: np.ndarray
    test: slice
    guest: GuestModel
    host: HostModel
    reference: ReferenceModel
    transcript: list[tuple[str, Message]]
    host_party: SecureBoostHost


def _train(rows: int, test_rows: int, config: SBConfig, seed: int) -> Trained:
    xg, xh, y = _synthetic(rows + test_rows, seed)
    train = slice(0, rows)
    guest = SecureBoostGuest(xg[train], y[train], config)
    host = SecureBoostHost(xh[train], config)
    transcript: list[tuple[str, Message]] = []
    train_in_process(guest, host, transcript)
    reference = train_reference(xg[train], xh[train], y[train], config)
    return Trained(xg, xh, y, slice(rows, None), guest.model(), host.model(), reference, transcript, host)


@pytest.fixture(scope="module")
def trained() -> Trained:
    return _train(3000, 2000, CONFIG, seed=1)


def _assert_same_trees(run: Trained) -> None:
    assert len(run.guest.trees) == len(run.reference.trees) == len(run.host.splits)
    for t, (ours, ref, host_splits) in enumerate(
        zip(run.guest.trees, run.reference.trees, run.host.splits, strict=True)
    ):
        assert ours.owner.tolist() == ref.owner.tolist(), f"tree {t}: split owners differ"
        assert ours.leaf.tolist() == ref.leaf.tolist(), f"tree {t}: leaves differ"
        assert ours.weight.tolist() == ref.weight.tolist(), f"tree {t}: leaf weights differ (exact floats)"
        guest_nodes = np.flatnonzero(ref.owner == GUEST)
        assert ours.feature[guest_nodes].tolist() == ref.feature[guest_nodes].tolist(), (
            f"tree {t}: guest features"
        )
        assert ours.bin[guest_nodes].tolist() == ref.bin[guest_nodes].tolist(), f"tree {t}: guest thresholds"
        host_nodes = np.flatnonzero(ref.owner == HOST).tolist()
        assert sorted(host_splits) == host_nodes, f"tree {t}: the host's split table names other nodes"
        assert {k: (int(f), int(b)) for k, (f, b) in host_splits.items()} == {
            i: (int(ref.feature[i]), int(ref.bin[i])) for i in host_nodes
        }, f"tree {t}: host features or thresholds differ"
        assert (ours.feature[host_nodes] == -1).all(), "the guest's tree holds no host feature"


def test_encrypted_training_builds_exactly_the_reference_trees(trained: Trained) -> None:
    # given a federated run and the centralised plaintext run of the same algorithm on the same rows
    # then every tree has the same structure, split owners, features, thresholds and leaf weights
    _assert_same_trees(trained)
    owners = np.concatenate([t.owner for t in trained.reference.trees])
    assert (owners == HOST).any() and (owners == GUEST).any(), "both parties' features are used"
    # and scoring through the host's routing gives the reference's scores
    test = trained.test
    federated = trained.guest.predict_score(
        trained.xg[test], lambda message: trained.host.route(message, trained.xh[test])
    )
    central = trained.reference.predict_score(trained.xg[test], trained.xh[test])
    assert np.array_equal(federated, central), "federated scores equal the reference's"


def test_federated_auc_equals_central_is_close_to_lightgbm_and_beats_guest_only(trained: Trained) -> None:
    # given the federated model, the central reference, LightGBM on the joined rows and the guest alone
    test, train = trained.test, slice(0, trained.test.start)
    y_test = trained.y[test]
    federated = auc(
        y_test,
        trained.guest.predict_score(
            trained.xg[test], lambda message: trained.host.route(message, trained.xh[test])
        ),
    )
    central = auc(y_test, trained.reference.predict_score(trained.xg[test], trained.xh[test]))
    joined = np.hstack([trained.xg, trained.xh])
    booster = centralised_twin(CONFIG).fit(joined[train], trained.y[train])
    lightgbm = auc(y_test, np.asarray(booster.predict_proba(joined[test]))[:, 1])
    guest_only = train_reference(trained.xg[train], None, trained.y[train], CONFIG)
    alone = auc(y_test, guest_only.predict_score(trained.xg[test], None))
    # then federated == central exactly, close to LightGBM, and well above the guest alone
    assert federated == central, f"federated {federated} vs central {central}"
    assert abs(federated - lightgbm) < 0.02, f"federated {federated:.4f} vs LightGBM {lightgbm:.4f}"
    assert federated > alone + 0.05, f"federated {federated:.4f} vs guest only {alone:.4f}"


def test_default_key_size_run_matches_the_reference() -> None:
    # given the default 1024-bit key on a short run
    config = SBConfig(trees=1, max_depth=2)
    assert config.key_bits == 1024
    run = _train(1200, 0, config, seed=2)
    # then the tree equals the reference's
    _assert_same_trees(run)
    assert run.guest.trees[0].owner[0] != 0, "the root is split"


def test_packing_never_overflows_at_the_configured_limits() -> None:
    # given the largest row count a 512-bit key's packing is configured for (the widest fields)
    key = PrivateKey(512)
    n = int(key.public.n)
    rows = (1 << 24) - 1  # GH_BITS + bit length of rows = 44 <= 52 (exact float sums)
    packing = Packing(rows, n.bit_length())
    assert packing.slots * packing.slot_bits <= n.bit_length() - 2, "a full block stays below n / 2"
    # when every row of a node holds an extreme g and h and the host packs `slots` such sums into one ciphertext
    extremes = [
        (1 << GH_BITS, 1 << (GH_BITS - 2)),
        (-(1 << GH_BITS), 1 << (GH_BITS - 2)),
        (-(1 << GH_BITS), 0),
        (1 << GH_BITS, 0),
    ]
    n2 = key.public.n2
    wanted = [extremes[j % len(extremes)] for j in range(packing.slots)]
    sums = []
    for g, h in wanted:
        one = key.encrypt_ints(packing.pack(np.array([g]), np.array([h])))[0]
        sums.append(gmpy2.powmod(one, rows, n2))  # the sum over all rows: [[v]]^rows = [[rows v]]
    acc = sums[-1]
    for c in reversed(sums[:-1]):
        acc = gmpy2.powmod(acc, 1 << packing.slot_bits, n2) * c % n2
    # then the guest unpacks every node sum exactly: no field carries into the next or past n
    slot_sums = packing.split_slots(signed(key.decrypt_int(acc), n), packing.slots)
    g_sum, h_sum = packing.unpack(slot_sums)
    assert g_sum.tolist() == [rows * g for g, _ in wanted], "G exact at its extremes"
    assert h_sum.tolist() == [rows * h for _, h in wanted], "H exact at its extremes"
    # and values outside the configured range are refused
    with pytest.raises(ValueError, match="range"):
        packing.pack(np.array([(1 << GH_BITS) + 1]), np.array([0]))
    with pytest.raises(ValueError, match="range"):
        packing.pack(np.array([0]), np.array([(1 << (GH_BITS - 2)) + 1]))
    with pytest.raises(ValueError, match="exactly"):
        Packing(1 << 33, n.bit_length())


def _first_histograms(rows: int = 3000) -> tuple[SecureBoostGuest, SecureBoostHost, Message, Message]:
    xg, xh, y = _synthetic(rows, seed=3)
    guest, host = SecureBoostGuest(xg, y, CONFIG), SecureBoostHost(xh, CONFIG)
    guest.accept_setup(host.setup(guest.setup()))
    host.start_tree(guest.begin_tree())
    request = guest.histogram_request()
    assert request is not None
    return guest, host, request, host.histograms(request)


def _tampered(reply: Message, **arrays: np.ndarray) -> Message:
    return Message(reply.kind, dict(reply.fields), {**reply.arrays, **arrays})


def test_a_short_long_or_ill_shaped_histogram_is_refused_before_any_decryption(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the host's first histogram reply
    guest, _, _, reply = _first_histograms()
    calls: list[int] = []
    decrypt = guest.key.decrypt_int

    def counted(ciphertext: object) -> int:
        calls.append(1)
        return decrypt(ciphertext)

    monkeypatch.setattr(guest.key, "decrypt_int", counted)
    sums, ids = reply.arrays["sums"], reply.arrays["ids"]
    bad = {
        "one block short": _tampered(reply, sums=sums[:-1]),
        "one block long": _tampered(reply, sums=np.vstack([sums, sums[:1]])),
        "per-row vector": _tampered(reply, sums=np.repeat(sums, 50, axis=0)),
        "flattened": _tampered(reply, sums=sums.ravel()),
        "wrong width": _tampered(reply, sums=sums[:, 1:]),
        "wrong dtype": _tampered(reply, sums=sums.astype(np.int32)),
        "ids short": _tampered(reply, ids=ids[:-1]),
        "ids as floats": _tampered(reply, ids=ids.astype(float)),
    }
    # when the guest reads each tampered reply, then it refuses before decrypting anything
    for name, message in bad.items():
        with pytest.raises(ValueError, match=r"expected|shape|ids"):
            guest.choose_splits(message)
        assert not calls, f"{name}: decrypted {len(calls)} values before refusing"
    # and the host refuses packed gradients of the wrong length or width, before reading them
    xg, xh, y = _synthetic(600, seed=4)
    g2, h2 = SecureBoostGuest(xg, y, CONFIG), SecureBoostHost(xh, CONFIG)
    g2.accept_setup(h2.setup(g2.setup()))
    start = g2.begin_tree()
    gh = start.arrays["gh"]
    for name, array in {"short": gh[:-1], "long": np.vstack([gh, gh[:1]]), "narrow": gh[:, :-1]}.items():
        with pytest.raises(ValueError, match="packed gradients"):
            h2.start_tree(Message("sb_tree", dict(start.fields), {"gh": array}))
        assert h2.tree is None, f"{name}: the host opened a tree"


def test_no_child_below_the_minimum_rows_is_ever_formed(trained: Trained) -> None:
    # given the trained trees, then every node reached by training rows holds at least min_child_rows rows
    train = slice(0, trained.test.start)
    for t, tree in enumerate(trained.reference.trees):
        sizes = _node_sizes(trained, t, train)
        assert min(sizes.values()) >= CONFIG.min_child_rows, f"tree {t}: node sizes {sizes}"
        assert set(sizes) <= set(np.flatnonzero(tree.leaf).tolist()), f"tree {t}: rows end in leaves"
    # and a config below the floor is refused
    with pytest.raises(ValueError, match="safe minimum"):
        SBConfig(min_child_rows=MIN_CHILD_ROWS - 1)
    # and a tiny outlier group that would be the best split is never split off
    rng = np.random.default_rng(5)
    xg, xh = rng.normal(size=(1500, 2)), rng.normal(size=(1500, 2))
    y = (rng.random(1500) < 0.1).astype(float)
    xh[:40, 0], y[:40] = 10.0, 1.0  # 40 rows, all bad, far out on a host feature
    config = SBConfig(trees=2, max_depth=3, key_bits=512)
    guest, host = SecureBoostGuest(xg, y, config), SecureBoostHost(xh, config)
    train_in_process(guest, host)
    model = guest.model()
    assert any((tree.owner == HOST).any() for tree in model.trees), "the host's feature is used"
    nodes = _leaves(model, host.model(), xg, xh)
    for t in range(len(model.trees)):
        counts = np.bincount(nodes[t])
        assert counts[counts > 0].min() >= config.min_child_rows, f"tree {t}: a leaf below the minimum"
    unconstrained = lgb.LGBMClassifier(n_estimators=1, max_depth=3, min_child_samples=5, verbose=-1).fit(
        xh, y
    )
    smallest = np.bincount(np.asarray(unconstrained.predict(xh, pred_leaf=True)).ravel()).min()
    assert smallest < config.min_child_rows, (
        f"without the minimum a small group is split off ({smallest} rows)"
    )
    # and the host refuses a guest split with a small child
    g3, h3, _, reply = _first_histograms()
    g3.choose_splits(reply)
    message = Message(
        "sb_split",
        {"tree": 0, "splits": [{"node": 0, "owner": "guest", "partition": True}]},
        {"left_0": np.arange(100, dtype=np.int32)},
    )
    with pytest.raises(ProtocolError, match="fewer than"):
        h3.split(message)


def _leaves(model: GuestModel, host: HostModel, xg: np.ndarray, xh: np.ndarray) -> list[np.ndarray]:
    """Return each training row's leaf per tree (by scoring one tree at a time through the host)."""
    out = []
    for t, tree in enumerate(model.trees):
        marked = copy.deepcopy(tree)
        marked.weight = np.arange(len(marked.weight), dtype=float)  # a row's score is then its leaf's number
        single = GuestModel(0.0, [marked], model.edges)
        one_tree = HostModel(host.edges, [host.splits[t]])
        out.append(single.predict_score(xg, partial(_route, one_tree, xh)).astype(int))
    return out


def _route(host: HostModel, x_host: np.ndarray, message: Message) -> Message:
    return host.route(message, x_host)


def _node_sizes(run: Trained, t: int, rows: slice) -> dict[int, int]:
    leaves = _leaves(run.guest, run.host, run.xg[rows], run.xh[rows])[t]
    values, counts = np.unique(leaves, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def test_the_host_refuses_out_of_order_or_repeated_nodes() -> None:
    # given a tree whose root histogram the host has answered
    guest, host, request, reply = _first_histograms()
    # then asking the root again, or a child before any split, is refused
    with pytest.raises(ProtocolError, match="not a child"):
        host.histograms(request)
    with pytest.raises(ProtocolError, match="not a child"):
        host.histograms(Message("sb_histograms", {"tree": 0, "nodes": [1]}))
    # when the guest splits the root
    split = guest.choose_splits(reply)
    assert split.fields["splits"], "the root is split"
    guest.apply_partitions(host.split(split))
    # then splitting the root again, a grandchild, or an unknown tree is refused
    with pytest.raises(ProtocolError, match="not offered"):
        host.split(split)
    with pytest.raises(ProtocolError, match="not a child"):
        host.histograms(Message("sb_histograms", {"tree": 0, "nodes": [3]}))
    with pytest.raises(ProtocolError, match="no such open tree"):
        host.histograms(Message("sb_histograms", {"tree": 1, "nodes": [1]}))
    # and a node twice in one request is refused, a child once is answered, and again is refused
    with pytest.raises(ProtocolError, match="twice"):
        host.histograms(Message("sb_histograms", {"tree": 0, "nodes": [1, 1]}))
    children = guest.histogram_request()
    assert children is not None
    host.histograms(children)
    with pytest.raises(ProtocolError, match="not a child"):
        host.histograms(children)
    # and a host split naming ids the host did not offer at that node is refused
    bad = Message(
        "sb_split",
        {"tree": 0, "splits": [{"node": children.fields["nodes"][0], "owner": "host", "ids": [10**6]}]},
    )
    with pytest.raises(ProtocolError, match="did not offer"):
        host.split(bad)
    # and a tree out of order is refused
    with pytest.raises(ProtocolError, match="tree is still open"):
        host.start_tree(Message("sb_tree", {"tree": 1}))


def test_the_guest_never_receives_host_thresholds_or_feature_names(trained: Trained) -> None:
    # given every message of the federated run
    to_guest = [m for direction, m in trained.transcript if direction == "to_guest"]
    host_values = {float(v) for edges in trained.host.edges for v in edges}
    for message in to_guest:
        # then the host's replies hold only integers (ids, counts, rows) and ciphertext bytes
        for name, array in message.arrays.items():
            assert array.dtype in (np.uint8, np.int32), f"{message.kind}.{name}: dtype {array.dtype}"
        text = json.dumps(message.fields)
        assert "." not in text.replace('"', ""), f"{message.kind}: a non-integer in {text[:200]}"
        leaves = _json_leaves(message.fields)
        assert all(isinstance(v, int) or v in ("host", "guest") for v in leaves), (
            f"{message.kind}: {leaves[:5]}"
        )
        assert not host_values & {float(v) for v in leaves if isinstance(v, int)} - {0.0, 1.0}, (
            f"{message.kind}: a host bin edge value appears"
        )
    # and the only split ids the guest sees are per-tree positions below the candidate count
    ids = np.concatenate([m.arrays["ids"] for m in to_guest if "ids" in m.arrays])
    assert ids.max() < len(trained.host_party.candidates)
    # while the host's own model keeps the thresholds
    assert trained.host.splits and any(trained.host.splits), "the host holds its split table"


def _json_leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _json_leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _json_leaves(v)]
    return [value]


def test_the_guest_refuses_a_partition_that_is_not_a_split_of_the_node() -> None:
    # given a host split chosen by the guest
    xg, xh, y = _synthetic(3000, seed=6)
    xg[:] = 0.0  # the guest's own features cannot split: the root goes to the host
    guest, host = SecureBoostGuest(xg, y, CONFIG), SecureBoostHost(xh, CONFIG)
    guest.accept_setup(host.setup(guest.setup()))
    host.start_tree(guest.begin_tree())
    request = guest.histogram_request()
    assert request is not None
    split = guest.choose_splits(host.histograms(request))
    assert split.fields["splits"][0]["owner"] == "host"
    reply = host.split(split)
    # when the host answers a partition with too few rows, repeated rows or rows outside the node
    left = reply.arrays["left_0"]
    for bad in (left[:10], np.repeat(left, 2), np.append(left, 10**6).astype(np.int32)):
        with pytest.raises(ProtocolError):
            guest.apply_partitions(Message("sb_split", dict(reply.fields), {"left_0": bad}))
    # then the true partition is accepted
    guest.apply_partitions(reply)
    assert guest.histogram_request() is not None


def test_the_host_routes_only_its_own_nodes(trained: Trained) -> None:
    # given a tree node that is not a host node
    tree = next(t for t, s in enumerate(trained.host.splits) if s)
    not_host = next(i for i in range(7) if i not in trained.host.splits[tree])
    message = Message(
        "sb_route",
        {},
        {
            "rows": np.array([0], dtype=np.int32),
            "trees": np.array([tree], dtype=np.int32),
            "nodes": np.array([not_host], dtype=np.int32),
        },
    )
    # then the host refuses to answer a direction for it, and rows outside the scoring set
    with pytest.raises(ProtocolError, match="not a host node"):
        trained.host.route(message, trained.xh)
    host_node = next(iter(trained.host.splits[tree]))
    outside = Message(
        "sb_route",
        {},
        {
            "rows": np.array([len(trained.xh)], dtype=np.int32),
            "trees": np.array([tree], dtype=np.int32),
            "nodes": np.array([host_node], dtype=np.int32),
        },
    )
    with pytest.raises(ProtocolError, match="outside"):
        trained.host.route(outside, trained.xh)


def test_offered_thresholds_keep_the_minimum_rows_on_each_side_and_between() -> None:
    # given rows per bin of one feature at a node
    counts = np.array([100, 100, 100, 300, 50, 50, 400, 10, 300])
    # when offering thresholds with 256 rows on each side and between consecutive offers
    offers = offered_thresholds(counts, 256, 256)
    # then each side and each gap holds >= 256 rows (hand-computed: left counts 300, 650, 1100)
    assert offers == [2, 3, 6], offers
    left = np.cumsum(counts)[offers]
    assert (np.diff(np.concatenate([[0], left, [counts.sum()]])) >= 256).all(), left


def test_host_sums_are_rerandomised() -> None:
    # given the same root histogram computed twice by the host
    guest, host, _, reply = _first_histograms()
    tree = host.tree
    assert tree is not None
    again = host._offer(tree, 0, tree.sums[0])
    first = reply.arrays["sums"]
    second = ciphertexts_to_bytes(again[1], host.public.cipher_bytes if host.public else 0)
    # then no returned ciphertext repeats (fresh encryptions of zero), while the plaintexts are equal
    assert not any((a == b).all() for a in first for b in second), "ciphertexts differ"
    n = int(guest.key.public.n)
    assert [signed(guest.key.decrypt_int(c), n) for c in again[1]] == [
        signed(guest.key.decrypt_int(int.from_bytes(bytes(row), "big")), n) for row in first
    ]


def test_grouped_encrypted_bin_sums_equal_the_plaintext_sums() -> None:
    # given dummy-heavy host features (modal bins skipped, joint buckets folded) and a node of the rows
    rng = np.random.default_rng(8)
    rows = 2000
    xh = np.column_stack(
        [
            rng.normal(size=rows),
            rng.normal(size=rows),
            *(rng.random((4, rows)) < [[0.05], [0.2], [0.4], [0.9]]),
        ]
    )
    xg, y = rng.normal(size=(rows, 1)), (rng.random(rows) < 0.2).astype(float)
    guest, host = SecureBoostGuest(xg, y, CONFIG), SecureBoostHost(xh, CONFIG)
    guest.accept_setup(host.setup(guest.setup()))
    host.start_tree(guest.begin_tree())
    tree = host.tree
    assert tree is not None
    node = np.sort(rng.choice(rows, 1500, replace=False))
    counts = [np.bincount(host.binned.bins[node, f], minlength=k) for f, k in enumerate(host.n_bins)]
    assert any(len(g) > 1 for g in feature_groups(counts, len(node))), "some features share a pass"
    # when the host sums the packed gradients per feature and bin under encryption
    before = host.multiplications
    sums = host._bin_products(tree, node)
    # then each decrypted bin sum equals the plaintext sum of the packed values, in fewer products than rows x features
    n = int(guest.key.public.n)
    packed = guest.packing.pack(guest._g, guest._h)
    for f, k in enumerate(host.n_bins):
        for b in range(k):
            expected = sum(packed[node[host.binned.bins[node, f] == b]].tolist())
            assert signed(guest.key.decrypt_int(sums[f][b]), n) == expected, f"feature {f} bin {b}"
    assert host.multiplications - before < len(node) * len(host.n_bins) / 2, host.multiplications - before


def test_the_host_gets_no_partition_of_a_guest_split_whose_children_it_never_sums(trained: Trained) -> None:
    # given every sb_split the guest sent
    withheld = shared = 0
    for direction, message in trained.transcript:
        if direction != "to_host" or message.kind != "sb_split":
            continue
        for item in message.fields["splits"]:
            if item["owner"] != "guest":
                continue
            node = int(item["node"])
            # then a guest split above the last level carries its left rows, one at the last level does not
            if depth_of(node) + 1 == CONFIG.max_depth:
                assert item["partition"] is False and f"left_{node}" not in message.arrays, f"node {node}"
                withheld += 1
            elif item["partition"]:
                assert f"left_{node}" in message.arrays, f"node {node}"
                shared += 1
    assert withheld and shared, f"both cases occur (withheld {withheld}, shared {shared})"
