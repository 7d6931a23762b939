"""ECDH private set intersection on Curve25519 (X25519) through the `cryptography` package (DH-PSI).

Each id is hashed to a Montgomery u coordinate (SHA-256 of a domain tag and the id). The guest sends
X25519(a, H(x)) of its ids in a random order; the host answers X25519(b, X25519(a, H(x))) in the same order,
plus X25519(b, H(y)) of its own ids in a random order. The x-only Montgomery ladder with clamped scalars commutes
(clamp(a) clamp(b) H = clamp(b) clamp(a) H), on the curve and on its twist alike; clamping (a multiple of the
cofactor 8) removes small-subgroup components, and an input whose product is the point at infinity (a low-order
input) is rejected. Neither side sees a raw id; each learns the size of the other's set; the host learns which of
its ids matched only when the guest tells it the matched positions. (Before this module used P-256 through ECDH
`exchange`: 4.4x slower per blinding on this machine, see docs/federated.md.)

The guest matches without blinding the host's set again (`UnblindingBlinder`): its scalar a is drawn so that
clamp(a) has an inverse modulo the prime order of the curve's main subgroup, and one modulo that of the twist's,
each itself a clamped scalar; X25519 with the inverse of its id's group turns X25519(b, X25519(a, H(x))) into
X25519(b, H(x)), which it compares with the host's values as they came. The messages are the same; the guest's
view is the same (X25519(b, H(y)) of every host id, as before, and values it could compute from them before);
its work is two passes over its own ids instead of one over its ids and one over the host's, which are usually
many more (docs/federated.md).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from typing import Self

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from orchard.worker import Worker

POINT_BYTES = 32
_DOMAIN = b"orchard-psi-x25519-v1"
PARALLEL_FROM = 20_000  # a pass over this many values is split with a worker process (its start costs ~0.3 s)
FIELD = 2**255 - 19
CURVE_ORDER = 2**252 + 27742317777372353535851937790883648493
"""The prime order of Curve25519's main subgroup (the curve has 8 times as many points)."""
TWIST_ORDER = 2**253 - 55484635554744707071703875581767296995
"""The prime order of the twist's main subgroup (the twist has 4 times as many points)."""
_MONTGOMERY_A = 486662


def hash_to_u(identifier: str) -> bytes:
    """Return the Montgomery u coordinate of an id (SHA-256 of domain and id; bit 255 is ignored by X25519)."""
    return hashlib.sha256(_DOMAIN + identifier.encode()).digest()


def blind_raw(scalar: bytes, data: bytes) -> bytes:
    """Return X25519(scalar, u) of concatenated 32-byte u coordinates (run in a worker process too)."""
    exchange = X25519PrivateKey.from_private_bytes(scalar).exchange
    load = X25519PublicKey.from_public_bytes
    try:
        return b"".join([exchange(load(data[i : i + POINT_BYTES])) for i in range(0, len(data), POINT_BYTES)])
    except ValueError as exc:  # a low-order input gives the all-zero shared value
        raise ValueError("a blinded value is a low-order point") from exc


class Blinder:
    """One party's secret scalar: blinds ids and re-blinds u coordinates (X25519).

    `cryptography` holds the GIL while it multiplies, so on a machine with a second core a pass over at least
    `parallel_from` values is split with a worker process (orchard.worker, started on the first such
    pass, stopped by `close`): the party's own pass then takes half the time while the other party waits. The values are the
    same either way (X25519 is a function of the scalar and the input).
    """

    def __init__(self, parallel_from: int = PARALLEL_FROM) -> None:
        self._scalar = secrets.token_bytes(32)
        self._parallel_from = parallel_from
        self._worker: Worker | None = None

    def _blind(self, data: bytes, scalar: bytes | None = None) -> np.ndarray:
        scalar = self._scalar if scalar is None else scalar
        count = len(data) // POINT_BYTES
        if count < max(2, self._parallel_from) or (os.cpu_count() or 1) < 2:
            raw = blind_raw(scalar, data)
        else:
            if self._worker is None:
                self._worker = Worker()
            half = count // 2 * POINT_BYTES
            far = self._worker.submit(blind_raw, scalar, data[:half])
            near = blind_raw(scalar, data[half:])
            raw = far.result() + near
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, POINT_BYTES)

    def blind_ids(self, identifiers: Iterable[str]) -> np.ndarray:
        """Return X25519(k, H(id)) of each id as an (n, 32) uint8 array."""
        return self._blind(b"".join(hash_to_u(i) for i in identifiers))

    def blind_points(self, us: np.ndarray) -> np.ndarray:
        """Return X25519(k, u) for u coordinates given as an (n, 32) uint8 array; reject malformed input."""
        if us.ndim != 2 or us.shape[1] != POINT_BYTES:
            raise ValueError(f"blinded points must be an (n, {POINT_BYTES}) byte array")
        return self._blind(np.ascontiguousarray(us, dtype=np.uint8).tobytes())

    def close(self) -> None:
        """Stop the worker process, if a pass started one."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def clamp(scalar: bytes) -> int:
    """Return an X25519 scalar as the ladder uses it (RFC 7748): low 3 bits and bit 255 cleared, bit 254 set."""
    return (int.from_bytes(scalar, "little") & ~7 & ((1 << 255) - 1)) | (1 << 254)


def clamped_inverse(clamped: int, order: int) -> bytes | None:
    """Return the scalar s, itself clamped, with s * clamped = 1 modulo the prime `order`, or None if none is.

    The multiples of 8 congruent to the inverse are 8 * order apart, so at most one lies in [2^254, 2^255).
    """
    s = 8 * (pow(clamped, -1, order) * pow(8, -1, order) % order)
    return s.to_bytes(POINT_BYTES, "little") if 1 << 254 <= s < 1 << 255 else None


def on_curve(u: bytes) -> bool:
    """Whether a u coordinate is a point of Curve25519 (True) or of its twist (False), as X25519 reads it."""
    x = int.from_bytes(u, "little") & ((1 << 255) - 1)
    return int(gmpy2.legendre((x * x * x + _MONTGOMERY_A * x * x + x) % FIELD, FIELD)) >= 0


class UnblindingBlinder(Blinder):
    """The guest's blinder: its scalar's clamped inverses on the curve and on the twist exist (about one scalar
    in eight has both), so it can take its own blinding off a value the host blinded again (`unblind`)."""

    def __init__(self, parallel_from: int = PARALLEL_FROM) -> None:
        super().__init__(parallel_from)
        while True:
            clamped = clamp(self._scalar)
            curve, twist = clamped_inverse(clamped, CURVE_ORDER), clamped_inverse(clamped, TWIST_ORDER)
            if curve is not None and twist is not None:
                self._inverses = (curve, twist)
                return
            self._scalar = secrets.token_bytes(32)

    def blind_ids_on_curve(self, identifiers: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return X25519(k, H(id)) of each id, and whether each H(id) is on the curve (else on the twist)."""
        hashes = [hash_to_u(i) for i in identifiers]
        curve = np.fromiter((on_curve(h) for h in hashes), dtype=bool, count=len(hashes))
        return self._blind(b"".join(hashes)), curve

    def unblind(self, double: np.ndarray, curve: np.ndarray) -> np.ndarray:
        """Return X25519(b, H(id)) from X25519(b, X25519(k, H(id))), each row by its id's group (`curve`)."""
        if double.ndim != 2 or double.shape[1] != POINT_BYTES or len(double) != len(curve):
            raise ValueError(f"the values to unblind must be an (n, {POINT_BYTES}) byte array, one per id")
        single = np.empty_like(double, dtype=np.uint8)
        for rows, inverse in ((curve, self._inverses[0]), (~curve, self._inverses[1])):
            if rows.any():
                data = np.ascontiguousarray(double[rows], dtype=np.uint8).tobytes()
                single[rows] = self._blind(data, inverse)
        return single


def shuffled(n: int) -> np.ndarray:
    """Return a cryptographically random permutation of range(n)."""
    keys = np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64)
    return np.argsort(keys, kind="stable")


def match(guest_double: np.ndarray, host_double: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (guest positions, host positions) of equal blinded values, ordered by that value."""
    guest_keys = [bytes(row) for row in guest_double]
    index = {bytes(row): i for i, row in enumerate(host_double)}
    pairs = sorted((key, g, index[key]) for g, key in enumerate(guest_keys) if key in index)
    guest_pos = np.array([g for _, g, _ in pairs], dtype=np.int64)
    host_pos = np.array([h for _, _, h in pairs], dtype=np.int64)
    return guest_pos, host_pos
