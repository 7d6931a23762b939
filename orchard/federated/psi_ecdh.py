"""ECDH private set intersection on P-256 through the `cryptography` package (Diffie-Hellman PSI).

Each id is hashed to a curve point H(id) (SHA-256 try-and-increment on the x coordinate). The guest sends
x(a H(x)) of its ids in a random order; the host answers x(b a H(x)) in the same order, plus x(b H(y)) of its
own ids in a random order; the guest computes x(a b H(y)) and matches. `cryptography` exposes no scalar
multiplication of arbitrary points, but ECDH is exactly that, returning the x coordinate of the product;
since x(k P) = x(k (-P)), re-blinding a point known only by its x coordinate (decompressed with either
sign) gives the same x, so blinding commutes. Neither side sees a raw id; each learns the size of the
other's set; the host learns which of its ids matched only when the guest tells it the matched positions.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

CURVE = ec.SECP256R1()
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
POINT_BYTES = 32
_DOMAIN = b"orchard-psi-v1"


def _point_from_x(x: bytes) -> ec.EllipticCurvePublicKey | None:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, b"\x02" + x)
    except ValueError:
        return None


def hash_to_curve(identifier: str) -> ec.EllipticCurvePublicKey:
    """Return the curve point of an id (SHA-256 of domain, counter and id, first x that is on the curve)."""
    data = identifier.encode()
    for counter in range(256):
        digest = hashlib.sha256(_DOMAIN + counter.to_bytes(2, "big") + data).digest()
        point = _point_from_x(digest)
        if point is not None:
            return point
    raise ValueError("no curve point found for an id")  # probability 2^-256


class Blinder:
    """One party's secret scalar: blinds points (ECDH) and re-blinds x coordinates."""

    def __init__(self) -> None:
        scalar = secrets.randbelow(_P256_ORDER - 1) + 1
        self._key = ec.derive_private_key(scalar, CURVE)

    def blind_ids(self, identifiers: Iterable[str]) -> np.ndarray:
        """Return x(k H(id)) of each id as an (n, 32) uint8 array."""
        exchange = self._key.exchange
        raw = b"".join(exchange(ec.ECDH(), hash_to_curve(i)) for i in identifiers)
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, POINT_BYTES)

    def blind_points(self, xs: np.ndarray) -> np.ndarray:
        """Return x(k P) for points P given by their x coordinates ((n, 32) uint8); reject off-curve input."""
        if xs.ndim != 2 or xs.shape[1] != POINT_BYTES:
            raise ValueError(f"blinded points must be an (n, {POINT_BYTES}) byte array")
        exchange = self._key.exchange
        out = []
        data = np.ascontiguousarray(xs).tobytes()
        for i in range(0, len(data), POINT_BYTES):
            point = _point_from_x(data[i : i + POINT_BYTES])
            if point is None:
                raise ValueError("a blinded value is not the x coordinate of a curve point")
            out.append(exchange(ec.ECDH(), point))
        return np.frombuffer(b"".join(out), dtype=np.uint8).reshape(-1, POINT_BYTES)


def shuffled(n: int) -> np.ndarray:
    """Return a cryptographically random permutation of range(n)."""
    keys = np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64)
    return np.argsort(keys, kind="stable")


def match(guest_double: np.ndarray, host_double: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (guest positions, host positions) of equal doubly-blinded values, ordered by that value."""
    guest_keys = [bytes(row) for row in guest_double]
    index = {bytes(row): i for i, row in enumerate(host_double)}
    pairs = sorted((key, g, index[key]) for g, key in enumerate(guest_keys) if key in index)
    guest_pos = np.array([g for _, g, _ in pairs], dtype=np.int64)
    host_pos = np.array([h for _, _, h in pairs], dtype=np.int64)
    return guest_pos, host_pos
