"""Hetero logistic regression arithmetic: fast Paillier (gmpy2) and the plaintext reference of the same fit.

Protocol (two parties, each holds its own Paillier key; [[.]]_G under the guest's, [[.]]_H under the host's):
the residual d = sigmoid(u_g + u_h) - y is linearised per row around the guest's own score u_g,
4 d ~ a u_h + b with a = 4 sigmoid'(u_g) and b = 4 sigmoid(u_g) - 4 y, so it is linear in the host's partial
score with coefficients only the guest knows, and never needs a plaintext u_h at the guest. (The host's
standardised features have mean zero, so u_h does too, and u_g is the best guess of z the guest holds; the
old expansion at z = 0, 4 d ~ z + 2 - 4 y, cost 0.006 AUC on the simulator's 85k rows: docs/federated.md.)
  per mini-batch  host -> guest  [[u_h]]_H of the batch rows (the host picks the batch from its own schedule)
                  guest          [[4d]]_H = [[u_h]]_H ^ a + b;  [[X_g^T 4d + R_g]]_H (R_g uniform)
                  guest -> host  [[X_g^T 4d + R_g]]_H  and  [[a]]_G, [[b]]_G per row
                  host           decrypts X_g^T 4d + R_g (a one-time pad of the guest's aggregate);
                                 [[4d]]_G = [[a]]_G ^ u_h * [[b]]_G;  [[X_h^T 4d + R_h]]_G
                  host -> guest  X_g^T 4d + R_g  and  [[X_h^T 4d + R_h]]_G
                  guest          its gradient; decrypts and returns X_h^T 4d + R_h;  host its gradient
Neither party sees a per-row value of the other (only ciphertexts under the other's key and one-time padded
aggregates), and each learns only its own aggregate gradient per batch (see docs/federated.md).
Fixed point: u_h in multiples of 2^-U_BITS, a of 2^-A_BITS, so 4d in multiples of 2^-RESIDUAL_BITS.

Speed: encryption uses the Damgård-Jurik-Nielsen obfuscator h_s^alpha (alpha 192 random bits) from a
fixed-base window table (16 modular multiplications instead of a 1024-bit exponentiation), made one batch
ahead while the party waits for the other (Prefetched), in a helper process when the session is large enough
to repay one (Helper, which also sums half of each batch's rows); the host quantises its standardised features
to multiples of 2^-8 and computes each X_h^T [[d]] column with signed buckets (one multiplication per nonzero,
non-modal entry, Pippenger style), never one exponentiation per entry. The per-row scalings [[u_h]]^a and
[[a]]^u_h are short exponentiations (12- and about 15-bit exponents).
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import gmpy2
import numpy as np
from phe import paillier

from orchard.worker import Worker

U_BITS = 12  # fixed-point bits of the host's partial scores u_h
A_BITS = 12  # fixed-point bits of the residual's slope a = 4 sigmoid'(u_g), in (0, 1]
RESIDUAL_BITS = U_BITS + A_BITS  # fixed-point bits of the residuals 4d = a u_h + b
X_BITS = 8  # host features are quantised to multiples of 2^-X_BITS standard deviations
X_CLIP = 6.0  # ... after clipping to +-X_CLIP standard deviations
WINDOW_BITS = 12
MIN_BATCH_ROWS = 256  # a batch's aggregate gradient must never determine the rows' residuals (see batches)
MIN_KEY_BITS = 512
ALPHA_BITS = 192  # DJN short exponent: >= 2 x the ~80-bit security of a 1024-bit modulus, plus margin
HELPER_MIN_ROW_PASSES = 40_960  # rows x epochs below which a party keeps its Paillier work in one process


@dataclass(frozen=True)
class LRConfig:
    """Hyper-parameters of the hetero LR fit (both parties and the central reference use the same)."""

    epochs: int = 5
    batch_size: int = 4096
    learning_rate: float = 0.05
    l2: float = 1e-3
    seed: int = 7
    key_bits: int = 1024
    helper_from: int = HELPER_MIN_ROW_PASSES  # rows x epochs from which each party uses a Helper (0: always)

    def __post_init__(self) -> None:
        if self.batch_size < MIN_BATCH_ROWS:
            raise ValueError(
                f"batch_size {self.batch_size} is below the safe minimum of {MIN_BATCH_ROWS} rows"
            )
        if not 1 <= self.epochs <= 1000:
            raise ValueError(f"epochs must be between 1 and 1000, got {self.epochs}")
        if self.key_bits < MIN_KEY_BITS:
            raise ValueError(f"key_bits must be at least {MIN_KEY_BITS}, got {self.key_bits}")
        if self.helper_from < 0:
            raise ValueError(f"helper_from must be 0 or more rows x epochs, got {self.helper_from}")

    def as_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-ready dict."""
        return asdict(self)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Return the logistic function of x (stable for large |x|)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def batches(n_rows: int, config: LRConfig, epoch: int) -> list[np.ndarray]:
    """Return the row positions of each mini-batch of an epoch (a seeded shuffle, same for every party).

    A short tail is merged into the batch before it, so every batch holds at least batch_size rows (or all
    rows): a small batch would let the host solve its aggregate gradient for each row's residual.
    """
    order = np.random.default_rng([config.seed, epoch]).permutation(n_rows)
    starts = list(range(0, n_rows, config.batch_size))
    if len(starts) > 1 and n_rows - starts[-1] < config.batch_size:
        starts.pop()
    ends = [*starts[1:], n_rows]
    return [order[a:b] for a, b in zip(starts, ends, strict=True)]


@dataclass
class Adam:
    """Coordinate-wise Adam: each party updates its own weights with its own gradient coordinates."""

    size: int
    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    step: int = 0
    m: np.ndarray = field(init=False)
    v: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.m = np.zeros(self.size)
        self.v = np.zeros(self.size)

    def update(self, weights: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Return the weights after one Adam step on grad."""
        self.step += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1**self.step)
        v_hat = self.v / (1 - self.beta2**self.step)
        return weights - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)


def regularised(grad: np.ndarray, weights: np.ndarray, l2: float, intercept: bool) -> np.ndarray:
    """Return grad plus the L2 term (never on an intercept in position 0)."""
    penalty = l2 * weights
    if intercept:
        penalty[0] = 0.0
    return grad + penalty


def initial_guest_weights(columns: int, y: np.ndarray) -> np.ndarray:
    """Return the guest's starting weights: zero, but the intercept at the training rows' log-odds of bad.

    Starting from PD 0.5 a few epochs of Adam leave the intercept short of a credit portfolio's bad rate, and the
    PDs miscalibrated (the gate's calibration check refused every joint model of the demo so); the guest holds
    the labels, so it starts where the base rate is.
    """
    weights = np.zeros(columns)
    rate = float(np.clip(np.mean(y), 1e-4, 1 - 1e-4))
    weights[0] = np.log(rate / (1 - rate))
    return weights


def with_intercept(x: np.ndarray) -> np.ndarray:
    """Return x with a leading column of ones (the guest holds the intercept)."""
    return np.hstack([np.ones((x.shape[0], 1)), x])


def quantise(z: np.ndarray) -> np.ndarray:
    """Return standardised values clipped and rounded to integer multiples of 2^-X_BITS (int64)."""
    return np.rint(np.clip(z, -X_CLIP, X_CLIP) * (1 << X_BITS)).astype(np.int64)


def dequantise(q: np.ndarray) -> np.ndarray:
    """Return the float values of quantised features."""
    return np.asarray(q, dtype=float) / (1 << X_BITS)


def residual_terms(u_guest: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (a, b) as integers: 4d ~ a u_h + b linearised around the guest's score, scaled by 2^RESIDUAL_BITS.

    a = 4 sigmoid'(u_g) in multiples of 2^-A_BITS (so a * encode_scores(u_h) carries 2^RESIDUAL_BITS), and
    b = 4 sigmoid(u_g) - 4 y in multiples of 2^-RESIDUAL_BITS.
    """
    s = sigmoid(u_guest)
    slope = np.rint(4.0 * s * (1.0 - s) * (1 << A_BITS)).astype(np.int64)
    offset = np.rint((4.0 * s - 4.0 * np.asarray(y, dtype=float)) * (1 << RESIDUAL_BITS)).astype(np.int64)
    return slope, offset


def protocol_residual(u_guest: np.ndarray, u_host: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the residual d the protocol computes under encryption (residual_terms), in floats."""
    slope, offset = residual_terms(u_guest, y)
    scores = encode_scores(u_host).astype(float)
    return (slope * scores + offset) / float(1 << RESIDUAL_BITS) / 4.0


def train_plaintext(
    x_guest: np.ndarray, x_host: np.ndarray | None, y: np.ndarray, config: LRConfig, protocol: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the same LR centrally in floats: same batches, same Adam; return (guest weights, host weights).

    protocol=True uses the federated protocol's linearised residual (protocol_residual) instead of the exact
    sigmoid.
    """
    xg = with_intercept(x_guest)
    xh = np.zeros((len(y), 0)) if x_host is None else x_host
    wg, wh = initial_guest_weights(xg.shape[1], y), np.zeros(xh.shape[1])
    opt_g, opt_h = Adam(len(wg), config.learning_rate), Adam(len(wh), config.learning_rate)
    for epoch in range(config.epochs):
        for rows in batches(len(y), config, epoch):
            u_g, u_h = xg[rows] @ wg, xh[rows] @ wh
            d = protocol_residual(u_g, u_h, y[rows]) if protocol else sigmoid(u_g + u_h) - y[rows]
            wg = opt_g.update(wg, regularised(xg[rows].T @ d / len(rows), wg, config.l2, True))
            if wh.size:
                wh = opt_h.update(wh, regularised(xh[rows].T @ d / len(rows), wh, config.l2, False))
    return wg, wh


# --- Paillier -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """The Paillier public key (g = n + 1) as gmpy2 integers."""

    n: Any
    n2: Any

    @classmethod
    def from_n(cls, n: int) -> PublicKey:
        """Return the public key of modulus n."""
        big = gmpy2.mpz(n)
        return cls(n=big, n2=big * big)

    @property
    def cipher_bytes(self) -> int:
        """Return the fixed byte width of a ciphertext."""
        return (int(self.n2).bit_length() + 7) // 8

    def noise(self, count: int) -> list[Any]:
        """Return count fresh full-size obfuscators r^n mod n^2, r uniform (the host's mask randomness)."""
        return [
            gmpy2.powmod(gmpy2.mpz(secrets.randbelow(int(self.n) - 2) + 2), self.n, self.n2)
            for _ in range(count)
        ]

    def encrypt(self, value: int, noise: Any | None = None) -> Any:
        """Encrypt one integer with a fresh (or given unused) full-size obfuscator r^n (the host's masks)."""
        obfuscator = self.noise(1)[0] if noise is None else noise
        return (1 + (gmpy2.mpz(value) % self.n) * self.n) * obfuscator % self.n2

    def random_mask(self) -> Any:
        """Return a uniform random integer mod n (a one-time pad for a plaintext)."""
        return gmpy2.mpz(secrets.randbelow(int(self.n)))


class Helper(Worker):
    """A party's second core for one training session: a worker process for its CPU-only Paillier work.

    gmpy2 holds the GIL, so a thread making the next batch's obfuscators slowed the party's own critical work
    2.3x (0.29 -> 0.67 s for a 4,096-row batch's guest sums: docs/federated.md); a process does not. The
    helper makes the prefetched values and sums half of every batch's rows (`scaled_column_sums`). Its tasks
    run one at a time in the order submitted. Starting one is a Python process, so a party uses one only when
    the session's rows x epochs reach the config's `helper_from` (HELPER_MIN_ROW_PASSES by default;
    `Helper.for_session`).
    """

    @classmethod
    def for_session(cls, rows: int, config: LRConfig) -> Helper | None:
        """Return a helper for a session of rows training rows, or None when it is too small to repay one."""
        return cls() if rows * config.epochs >= config.helper_from else None


class Prefetched:
    """Values that cost only CPU (obfuscators, mask noise), made one batch ahead in the background.

    A party computes the next batch's values while it waits for the other party's reply: in a background thread
    (the socket wait releases the GIL), or in its `Helper` process when it has one (make must then pickle, as
    `Obfuscators` and a `PublicKey`'s bound `noise` do). `sizes` is how many values each take asks for, in
    order (the session's batch schedule), so nothing is made in vain; a take asking for more than was made gets
    the rest made on the spot. Each value is handed out once, never reused.
    """

    def __init__(
        self, make: Callable[[int], list[Any]], sizes: Iterable[int], helper: Helper | None = None
    ) -> None:
        self._make = make
        self._sizes = iter(sizes)
        self._threads = None if helper else ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._executor: Executor = helper if helper else self._threads  # type: ignore[assignment]
        self._next: Future[list[Any]] | None = None
        self._submit()

    def _submit(self) -> None:
        size = next(self._sizes, None)
        self._next = None if size is None else self._executor.submit(self._make, size)

    def take(self, count: int) -> list[Any]:
        """Return count fresh values and start making the next take's."""
        ready = [] if self._next is None else self._next.result()
        if len(ready) < count:
            ready = ready + self._make(count - len(ready))
        self._submit()
        return ready[:count]

    def close(self) -> None:
        """Stop making values (a value being made is finished and dropped)."""
        if self._next is not None:
            self._next.cancel()
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetched:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@functools.lru_cache(maxsize=2)
def window_table(n2: int, base: int, window_bits: int) -> tuple[tuple[Any, ...], ...]:
    """Return table[k][b] = base^(b * 2^(window_bits k)) mod n2 for the windows of an ALPHA_BITS exponent.

    Cached per process (the last two keys: a party's own, and a re-randomiser's), so a pickled `Obfuscators`
    builds its table once in a helper process.
    """
    modulus = gmpy2.mpz(n2)
    step = gmpy2.mpz(base)
    table = []
    for _ in range(ALPHA_BITS // window_bits):
        row = [gmpy2.mpz(1)]
        for _ in range((1 << window_bits) - 1):
            row.append(row[-1] * step % modulus)
        table.append(tuple(row))
        step = row[-1] * step % modulus
    return tuple(table)


def windowed_powers(n2: int, base: int, window_bits: int, count: int) -> list[Any]:
    """Return count fresh base^alpha mod n2, alpha uniform over ALPHA_BITS bits (a product per window)."""
    table = window_table(n2, base, window_bits)
    windows = len(table)
    raw = np.frombuffer(os.urandom(count * windows * 2), dtype=np.uint16).reshape(count, windows)
    alphas = (raw & ((1 << window_bits) - 1)).tolist()
    modulus = gmpy2.mpz(n2)
    first = table[0]
    out = []
    for alpha in alphas:
        acc = first[alpha[0]]
        for k in range(1, windows):
            acc = acc * table[k][alpha[k]] % modulus
        out.append(acc)
    return out


def djn_base(n: Any, n2: Any) -> Any:
    """Return a fresh DJN base h_s = (-h^2)^n mod n^2 (h uniform): its powers are encryptions of zero."""
    h = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
    return gmpy2.powmod(-(h * h) % n, n, n2)


@dataclass(frozen=True)
class Obfuscators:
    """The picklable maker of a key's obfuscators h_s^alpha (DJN), from a per-process window table."""

    n2: int
    base: int

    def __call__(self, count: int) -> list[Any]:
        """Return count fresh obfuscators."""
        return windowed_powers(self.n2, self.base, WINDOW_BITS, count)


class PrivateKey:
    """The guest's Paillier key pair with a fast DJN encryptor."""

    def __init__(self, bits: int = 1024) -> None:
        public, private = paillier.generate_paillier_keypair(n_length=bits)
        self._private = private
        self.public = PublicKey.from_n(public.n)
        n, n2 = self.public.n, self.public.n2
        self.obfuscators = Obfuscators(int(n2), int(djn_base(n, n2)))  # obfuscators(count): fresh h_s^alpha

    def encrypt_ints(self, values: np.ndarray, obfuscators: list[Any] | None = None) -> list[Any]:
        """Encrypt signed integers (|v| < n/2), one ciphertext each (with fresh or given unused obfuscators)."""
        n = self.public.n
        obf = self.obfuscators(len(values)) if obfuscators is None else obfuscators
        # (1 + m n) o = o + n (m o mod n)  (mod n^2): one 1024-bit product instead of a 2048-bit one.
        n2 = self.public.n2
        return [(o + n * (v * o % n)) % n2 for v, o in zip(values.tolist(), obf, strict=True)]

    def decrypt_int(self, ciphertext: Any) -> int:
        """Decrypt one ciphertext to an integer in [0, n)."""
        return int(self._private.raw_decrypt(int(ciphertext)))


def encode_scores(u: np.ndarray) -> np.ndarray:
    """Return partial scores as signed fixed-point integers (scale 2^U_BITS)."""
    return np.rint(np.asarray(u, dtype=float) * (1 << U_BITS)).astype(np.int64)


def signed(value: int, n: int) -> int:
    """Return a plaintext mod n as a signed integer in (-n/2, n/2]."""
    value %= n
    return value - n if value > n // 2 else value


def decode_gradient(total: int, n: int, rows: int) -> float:
    """Return the mean gradient coordinate X^T d / rows from the integer sum X^T 4d (scale 2^(RESIDUAL_BITS+X_BITS))."""
    return signed(total, n) / float(1 << (RESIDUAL_BITS + X_BITS)) / (4.0 * rows)


def _power_product(buckets: dict[int, Any], n2: Any) -> Any:
    """Return prod_v buckets[v]^v for positive levels v (running products over descending levels)."""
    levels = sorted(buckets, reverse=True)
    running = gmpy2.mpz(1)
    acc = gmpy2.mpz(1)
    for i, level in enumerate(levels):
        running = running * buckets[level] % n2
        gap = level - (levels[i + 1] if i + 1 < len(levels) else 0)
        acc = acc * (running if gap == 1 else gmpy2.powmod(running, gap, n2)) % n2
    return acc


def _signed_bucket_sum(ciphertexts: list[Any], column: np.ndarray, n2: Any) -> Any:
    """Return [[sum_i column_i d_i]] by signed buckets (zero entries cost nothing)."""
    sums = []
    for sign in (1, -1):
        rows = np.flatnonzero(column * sign > 0)
        levels = (column[rows] * sign).tolist()
        buckets: dict[int, Any] = {}
        for row, level in zip(rows.tolist(), levels, strict=True):
            found = buckets.get(level)
            buckets[level] = ciphertexts[row] if found is None else found * ciphertexts[row] % n2
        sums.append(_power_product(buckets, n2) if buckets else gmpy2.mpz(1))
    return sums[0] * gmpy2.invert(sums[1], n2) % n2


def encrypted_column_sums(ciphertexts: list[Any], quantised: np.ndarray, public: PublicKey) -> list[Any]:
    """Return [[sum_i q_ij d_i]] for every column j of the quantised matrix, by signed buckets.

    A column whose most common level m holds most rows (a dummy, a mostly-zero count) is summed as
    sum_i (q_ij - m) d_i + m sum_i d_i: its modal rows then cost nothing, and [[sum_i d_i]] is made once
    for all such columns.
    """
    n2 = public.n2
    total = None
    out = []
    for j in range(quantised.shape[1]):
        column = quantised[:, j]
        levels, counts = np.unique(column, return_counts=True)
        mode = int(levels[np.argmax(counts)]) if len(levels) else 0
        if mode == 0 or 2 * int(counts.max()) <= len(column):
            out.append(_signed_bucket_sum(ciphertexts, column, n2))
            continue
        if total is None:
            total = gmpy2.mpz(1)
            for c in ciphertexts:
                total = total * c % n2
        shifted = _signed_bucket_sum(ciphertexts, column - mode, n2)
        out.append(shifted * gmpy2.powmod(total, mode, n2) % n2)
    return out


def scaled_plus(
    ciphertexts: list[Any], scales: np.ndarray, offsets: np.ndarray | list[Any], public: PublicKey
) -> list[Any]:
    """Return [[s c + o]] per row: each ciphertext raised to its signed integer scale, times an offset.

    An offset is a signed integer (added as a plaintext: g = n + 1, multiply by 1 + o n mod n^2) or a
    ciphertext under the same key. A negative scale inverts the ciphertext (gmpy2.powmod).
    """
    n, n2 = public.n, public.n2
    if isinstance(offsets, np.ndarray):  # a plaintext o is the factor 1 + o n, as a ciphertext is one
        offsets = [1 + (gmpy2.mpz(o) % n) * n for o in offsets.tolist()]
    return [
        gmpy2.powmod(c, scale, n2) * offset % n2
        for c, scale, offset in zip(ciphertexts, scales.tolist(), offsets, strict=True)
    ]


def _scaled_sums(
    ciphertexts: list[Any],
    scales: np.ndarray,
    offsets: np.ndarray | list[Any],
    quantised: np.ndarray,
    public: PublicKey,
) -> list[Any]:
    return encrypted_column_sums(scaled_plus(ciphertexts, scales, offsets, public), quantised, public)


def scaled_column_sums(
    ciphertexts: list[Any],
    scales: np.ndarray,
    offsets: np.ndarray | list[Any],
    quantised: np.ndarray,
    public: PublicKey,
    helper: Helper | None = None,
) -> list[Any]:
    """Return [[sum_i q_ij (s_i c_i + o_i)]] per column j (scaled_plus, then encrypted_column_sums).

    With a helper, it sums the first half of the rows while this process sums the second: a column's sum is a
    product over its rows, so the two halves multiply to the very ciphertext of the whole.
    """
    if helper is None or len(ciphertexts) < 2 * MIN_BATCH_ROWS:
        return _scaled_sums(ciphertexts, scales, offsets, quantised, public)
    half = len(ciphertexts) // 2
    far = helper.submit(
        _scaled_sums, ciphertexts[:half], scales[:half], offsets[:half], quantised[:half], public
    )
    near = _scaled_sums(ciphertexts[half:], scales[half:], offsets[half:], quantised[half:], public)
    return [a * b % public.n2 for a, b in zip(far.result(), near, strict=True)]


def checked_ciphertexts(array: Any, public: PublicKey, count: int, what: str) -> list[Any]:
    """Return exactly count ciphertexts of the key's width from a (count, width) array, or raise naming what."""
    raw = np.asarray(array)
    expected = (count, public.cipher_bytes)
    if raw.dtype != np.uint8 or raw.shape != expected:
        raise ValueError(f"{what}: got an array of shape {raw.shape}, expected {expected} bytes")
    return ciphertexts_from_bytes(raw, public)


def plain_to_bytes(values: list[int], public: PublicKey) -> np.ndarray:
    """Return plaintexts mod n as a (k, width of n) uint8 array."""
    width = (int(public.n).bit_length() + 7) // 8
    raw = b"".join(int(v).to_bytes(width, "big") for v in values)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(values), width)


def plain_from_bytes(array: Any, public: PublicKey, count: int, what: str) -> list[int]:
    """Return exactly count plaintexts below n from a (count, width of n) uint8 array, or raise naming what."""
    width = (int(public.n).bit_length() + 7) // 8
    raw = np.asarray(array)
    if raw.dtype != np.uint8 or raw.shape != (count, width):
        raise ValueError(f"{what}: got an array of shape {raw.shape}, expected {(count, width)} bytes")
    values = [int.from_bytes(bytes(row), "big") for row in raw]
    if any(v >= int(public.n) for v in values):
        raise ValueError(f"{what}: a value is not below the modulus")
    return values


def ciphertexts_to_bytes(ciphertexts: list[Any], width: int) -> np.ndarray:
    """Return ciphertexts as a (k, width) uint8 array of big-endian integers."""
    raw = b"".join(gmpy2.mpz(c).to_bytes(width, "big") for c in ciphertexts)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(ciphertexts), width)


def ciphertexts_from_bytes(array: np.ndarray, public: PublicKey) -> list[Any]:
    """Return ciphertexts from a (k, width) uint8 array, rejecting values outside [1, n^2)."""
    raw = np.ascontiguousarray(array, dtype=np.uint8)
    width = raw.shape[1] if raw.ndim == 2 else 0
    data = raw.tobytes()
    out = [gmpy2.mpz.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]
    for value in out:
        if not 0 < value < public.n2:
            raise ValueError("a ciphertext is outside [1, n^2)")
    return out
