"""Unit tests of ECDH PSI and the Paillier hetero-LR arithmetic."""

from __future__ import annotations

import numpy as np

from orchard.federated.paillier_lr import (
    LRConfig,
    PrivateKey,
    decode_gradient,
    dequantise,
    encode_residuals,
    encrypted_column_sums,
    quantise,
    train_plaintext,
)
from orchard.federated.psi_ecdh import Blinder, match


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


def test_encrypted_gradient_equals_plaintext_gradient() -> None:
    # given residuals and signed quantised features (with zeros and dummies)
    rng = np.random.default_rng(0)
    d = rng.uniform(-1, 1, 300)
    z = np.column_stack([rng.normal(size=300), (rng.random(300) < 0.3).astype(float), np.zeros(300)])
    key = PrivateKey(512)
    q = quantise(z)
    # when the host sums under encryption and the guest decrypts
    sums = encrypted_column_sums(key.encrypt_ints(encode_residuals(d)), q, key.public)
    grad = np.array([decode_gradient(key.decrypt_int(s), int(key.public.n), 300) for s in sums])
    # then it matches the float gradient on the quantised features to fixed-point precision
    assert np.allclose(grad, dequantise(q).T @ d / 300, atol=1e-8), "homomorphic X^T d is exact"


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
