"""Unit tests of ECDH PSI and the Paillier hetero-LR arithmetic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from orchard.federated.paillier_lr import (
    HELPER_MIN_ROW_PASSES,
    RESIDUAL_BITS,
    Helper,
    LRConfig,
    Prefetched,
    PrivateKey,
    decode_gradient,
    dequantise,
    encode_scores,
    encrypted_column_sums,
    protocol_residual,
    quantise,
    residual_terms,
    scaled_column_sums,
    scaled_plus,
    sigmoid,
    train_plaintext,
)
from orchard.federated.psi_ecdh import (
    CURVE_ORDER,
    TWIST_ORDER,
    Blinder,
    UnblindingBlinder,
    clamp,
    clamped_inverse,
    match,
    on_curve,
)


def test_psi_finds_exactly_the_common_ids() -> None:
    # given two id sets overlapping in 3 ids
    guest_ids = ["u1", "u2", "u3", "u4", "g-only"]
    host_ids = ["h-only", "u3", "u1", "u4", "x"]
    guest, host = Blinder(), Blinder()
    # when both blind, re-blind and match
    guest_double = host.blind_points(guest.blind_ids(guest_ids))
    host_double = guest.blind_points(host.blind_ids(host_ids))
    g, h = match(guest_double, host_double)
    # then the matched pairs are the common ids, aligned
    assert sorted(guest_ids[i] for i in g) == ["u1", "u3", "u4"], "intersection found"
    assert [guest_ids[i] for i in g] == [host_ids[i] for i in h], "rows aligned pairwise"
    # and a single blinding differs between parties (no party sees the other's raw or singly-blinded ids)
    assert not set(map(bytes, guest.blind_ids(["u1"]))) & set(map(bytes, host.blind_ids(["u1"]))), (
        "keys differ"
    )


def test_the_guest_unblinds_its_ids_to_the_hosts_single_blinding_on_the_curve_and_the_twist() -> None:
    # given 400 ids (about half hash onto the curve, half onto its twist) and a host holding every other one
    ids = [f"customer-{i}" for i in range(400)]
    host_ids = ids[::2] + [f"host-only-{i}" for i in range(300)]
    guest, host = UnblindingBlinder(), Blinder()
    blinded, curve = guest.blind_ids_on_curve(ids)
    assert 150 < curve.sum() < 250, "both groups are present"
    # when the host blinds the guest's values again and the guest takes its own blinding off
    single = guest.unblind(host.blind_points(blinded), curve)
    # then each value is the host's own single blinding of that id, whichever group its hash is in
    assert (single == host.blind_ids(ids)).all()
    # and matching them against the host's values finds the intersection the double-blinded match finds
    g, h = match(single, host.blind_ids(host_ids))
    g2, h2 = match(host.blind_points(blinded), guest.blind_points(host.blind_ids(host_ids)))
    assert sorted(ids[i] for i in g) == sorted(ids[::2]) == sorted(ids[i] for i in g2)
    assert [ids[i] for i in g] == [host_ids[i] for i in h]
    assert sorted(zip(g2.tolist(), h2.tolist(), strict=True)) == sorted(
        zip(g.tolist(), h.tolist(), strict=True)
    )


def test_a_clamped_inverse_is_clamped_and_inverts_modulo_the_order() -> None:
    import secrets

    found = 0
    for _ in range(200):
        c = clamp(secrets.token_bytes(32))
        assert c % 8 == 0 and 1 << 254 <= c < 1 << 255
        for order in (CURVE_ORDER, TWIST_ORDER):
            inverse = clamped_inverse(c, order)
            if inverse is not None:
                found += 1
                s = int.from_bytes(inverse, "little")
                assert clamp(inverse) == s and s * c % order == 1
    assert 100 < found < 300, "about three in eight (curve: one in two, twist: one in four) have one"
    # the base point u = 9 is on the curve; u = 2 lies on the twist (2^3 + A 2^2 + 2 is not a square mod p)
    assert on_curve((9).to_bytes(32, "little")) and not on_curve((2).to_bytes(32, "little"))


def test_unblinding_refuses_misshapen_values() -> None:
    guest = UnblindingBlinder()
    blinded, curve = guest.blind_ids_on_curve(["a", "b"])
    with pytest.raises(ValueError, match="one per id"):
        guest.unblind(blinded[:1], curve)
    with pytest.raises(ValueError, match="low-order"):
        guest.unblind(np.zeros((2, 32), dtype=np.uint8), curve)


def _encoded(d: np.ndarray) -> np.ndarray:
    """Return residuals d as the protocol carries them: 4d in multiples of 2^-RESIDUAL_BITS."""
    return np.rint(4.0 * d * (1 << RESIDUAL_BITS)).astype(np.int64)


def test_encrypted_gradient_equals_plaintext_gradient() -> None:
    # given residuals and signed quantised features (with zeros and dummies)
    rng = np.random.default_rng(0)
    d = rng.uniform(-1, 1, 300)
    z = np.column_stack([rng.normal(size=300), (rng.random(300) < 0.3).astype(float), np.zeros(300)])
    key = PrivateKey(512)
    q = quantise(z)
    # when the host sums under encryption and the guest decrypts
    sums = encrypted_column_sums(key.encrypt_ints(_encoded(d)), q, key.public)
    grad = np.array([decode_gradient(key.decrypt_int(s), int(key.public.n), 300) for s in sums])
    # then it matches the float gradient on the quantised features to fixed-point precision
    assert np.allclose(grad, dequantise(q).T @ d / 300, atol=1e-8), "homomorphic X^T d is exact"


def test_columns_with_a_nonzero_modal_level_sum_exactly() -> None:
    # given a standardised dummy and a mostly-constant column: their most common level is not zero
    rng = np.random.default_rng(2)
    d = rng.uniform(-1, 1, 400)
    dummy = (rng.random(400) < 0.2).astype(float)
    z = np.column_stack(
        [
            (dummy - dummy.mean()) / dummy.std(),
            np.where(rng.random(400) < 0.9, -0.7, 2.5),
            rng.normal(size=400),
        ]
    )
    q = quantise(z)
    for j in (0, 1):
        levels, counts = np.unique(q[:, j], return_counts=True)
        assert levels[np.argmax(counts)] != 0 and 2 * counts.max() > 400, "column sums by its modal shift"
    key = PrivateKey(512)
    # when the host sums under encryption (modal rows skipped, sum of d added back once)
    sums = encrypted_column_sums(key.encrypt_ints(_encoded(d)), q, key.public)
    grad = np.array([decode_gradient(key.decrypt_int(s), int(key.public.n), 400) for s in sums])
    # then the gradient is still the exact one on the quantised features
    assert np.allclose(grad, dequantise(q).T @ d / 400, atol=1e-8), "modal shift keeps X^T d exact"


def test_prefetched_values_follow_the_schedule_and_are_handed_out_once() -> None:
    # given a stream that makes each take's values one take ahead, on a schedule of 4, 2 and 6 values
    made: list[int] = []
    counter = itertools.count()

    def make(k: int) -> list[int]:
        made.append(k)
        return [next(counter) for _ in range(k)]

    with Prefetched(make, [4, 2, 6]) as stream:
        # when the scheduled takes are taken, then one beyond the schedule
        taken = [stream.take(4), stream.take(2), stream.take(6), stream.take(3)]
    # then each take has its size and no value is handed out twice
    assert [len(t) for t in taken] == [4, 2, 6, 3], f"take sizes kept, got {taken}"
    flat = [v for t in taken for v in t]
    assert len(set(flat)) == len(flat), f"no value reused, got {taken}"
    # and nothing was made in vain: the schedule, then the unscheduled take made on the spot
    assert made == [4, 2, 6, 3], f"made per the schedule, got {made}"


def test_a_helper_process_gives_the_same_column_sums_and_valid_obfuscators() -> None:
    # given a batch of 600 encrypted partial scores, the guest's slopes and offsets and quantised columns
    rng = np.random.default_rng(3)
    host, guest = PrivateKey(512), PrivateKey(512)
    u_h = encode_scores(rng.normal(size=600))
    slope, offset = residual_terms(rng.normal(size=600) - 2.0, (rng.random(600) < 0.2).astype(float))
    q = quantise(np.column_stack([np.ones(600), rng.normal(size=600), (rng.random(600) < 0.3) - 0.3]))
    cts = host.encrypt_ints(u_h)
    alone = scaled_column_sums(cts, slope, offset, q, host.public)
    with Helper() as helper:
        # when half the rows are summed in the helper process
        split = scaled_column_sums(cts, slope, offset, q, host.public, helper)
        # and the guest's obfuscators are made there, on a schedule
        with Prefetched(guest.obfuscators, [600], helper) as stream:
            fresh = stream.take(600)
    # then the sums are the very same ciphertexts, and decrypt to the plaintext sums
    assert [int(c) for c in split] == [int(c) for c in alone], "two halves multiply to the whole"
    residuals = slope * u_h + offset
    n = int(host.public.n)
    expected = [int(v) % n for v in (q.astype(object).T @ residuals.astype(object))]
    assert [host.decrypt_int(c) for c in split] == expected, "the sums are X^T (slope u_h + offset)"
    # and the helper's obfuscators encrypt correctly, each one different
    assert len({int(o) for o in fresh}) == 600, "600 distinct obfuscators"
    values = rng.integers(-1000, 1000, 600)
    decrypted = [guest.decrypt_int(c) for c in guest.encrypt_ints(values, fresh)]
    assert decrypted == [int(v) % int(guest.public.n) for v in values], "encryptions with them decrypt"


def test_a_session_gets_a_helper_only_when_large_enough() -> None:
    # given the rows x epochs a helper process must repay, then a smaller session has none
    config = LRConfig(epochs=5)
    assert config.helper_from == HELPER_MIN_ROW_PASSES, "the default threshold"
    assert Helper.for_session(HELPER_MIN_ROW_PASSES // 5 - 1, config) is None, "small session: no process"
    helper = Helper.for_session(HELPER_MIN_ROW_PASSES // 5, config)
    assert helper is not None, "large session: a helper"
    helper.close()
    # and a negative threshold is refused
    with pytest.raises(ValueError, match="helper_from"):
        LRConfig(helper_from=-1)


def test_negative_values_decrypt_to_themselves() -> None:
    # given a negative integer, when encrypted and decrypted, then it comes back mod n
    key = PrivateKey(512)
    n = int(key.public.n)
    assert key.decrypt_int(key.encrypt_ints(np.array([-7]))[0]) == n - 7, "negative encodes as n - 7"


def test_plaintext_reference_learns_a_signal() -> None:
    # given labels driven by one host feature
    rng = np.random.default_rng(1)
    xg, xh = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 1))
    y = (rng.random(2000) < 1 / (1 + np.exp(-2 * xh[:, 0]))).astype(float)
    # when fitted, then the host weight carries the signal and the guest's noise weights stay small
    wg, wh = train_plaintext(xg, xh, y, LRConfig(epochs=5, batch_size=256))
    assert wh[0] > 1.0, f"host weight should learn the signal, got {wh}"
    assert np.all(np.abs(wg[1:]) < 0.3), f"noise features stay small, got {wg}"


def test_psi_rejects_low_order_points() -> None:
    # given a peer that sends u = 0 or u = 1 (points of small order: their multiples reveal nothing of ids)
    blinder = Blinder()
    for u in (0, 1):
        bad = np.zeros((2, 32), dtype=np.uint8)
        bad[1, 0] = u
        # when re-blinded, then the input is refused instead of answered with a constant
        with pytest.raises(ValueError, match="low-order"):
            blinder.blind_points(bad)


def test_both_parties_compute_the_linearised_residual_under_encryption() -> None:
    # given the guest's scores, labels and the host's partial scores
    rng = np.random.default_rng(5)
    u_g, u_h = rng.normal(-2.0, 1.0, 200), rng.normal(0.0, 0.6, 200)
    y = (rng.random(200) < 0.15).astype(float)
    slope, offset = residual_terms(u_g, y)
    expected = slope * encode_scores(u_h) + offset  # 4d scaled by 2^RESIDUAL_BITS
    guest, host = PrivateKey(512), PrivateKey(512)
    # when the guest scales the host's [[u_h]]_H by its slopes and adds its offsets
    under_host = scaled_plus(host.encrypt_ints(encode_scores(u_h)), slope, offset, host.public)
    # and the host raises the guest's [[slope]]_G to its u_h and multiplies by [[offset]]_G
    under_guest = scaled_plus(
        guest.encrypt_ints(slope), encode_scores(u_h), guest.encrypt_ints(offset), guest.public
    )
    # then both decrypt to the same residuals, negative ones included
    n_h, n_g = int(host.public.n), int(guest.public.n)
    got_h = [host.decrypt_int(c) for c in under_host]
    got_g = [guest.decrypt_int(c) for c in under_guest]
    assert [(v - n_h if v > n_h // 2 else v) for v in got_h] == expected.tolist()
    assert [(v - n_g if v > n_g // 2 else v) for v in got_g] == expected.tolist()
    assert (expected < 0).any() and (expected > 0).any()
    # and the residual is the linearisation of the exact one: close where u_h is small, far better than
    # the expansion at zero (z/4 + 1/2 - y) on scores of a 10-20 % bad rate
    d = protocol_residual(u_g, u_h, y)
    exact = sigmoid(u_g + u_h) - y
    at_zero = 0.25 * (u_g + u_h) + 0.5 - y
    assert np.abs(d - exact).max() < 0.1 * np.abs(u_h).max() ** 2 + 1e-4
    assert np.abs(d - exact).mean() < 0.1 * np.abs(at_zero - exact).mean()


def test_a_pass_split_with_a_worker_process_gives_the_same_values() -> None:
    # given one secret scalar used alone and with a worker process from 10 values up
    ids = [f"user-{i}" for i in range(60)]
    with Blinder(parallel_from=10) as split:
        alone = Blinder(parallel_from=10**9)
        alone._scalar = split._scalar  # the same party's scalar, blinding in one process
        # when both blind the same ids and re-blind the same points
        ids_split, ids_alone = split.blind_ids(ids), alone.blind_ids(ids)
        points_split, points_alone = split.blind_points(ids_alone), alone.blind_points(ids_alone)
        # then the values are identical (the two halves come back in order), and a worker was used
        assert split._worker is not None, "the split pass started a worker process"
        assert np.array_equal(ids_split, ids_alone), "blinded ids equal"
        assert np.array_equal(points_split, points_alone), "re-blinded points equal"
        # and a low-order point in the worker's half is still refused
        bad = np.array(points_alone)
        bad[0] = 0
        with pytest.raises(ValueError, match="low-order"):
            split.blind_points(bad)
    assert split._worker is None, "the worker stops with the blinder"
