"""Privacy amplification by Toeplitz hashing, computed exactly over GF(2) with an FFT.

A Toeplitz matrix T of m rows and n columns is fixed by a seed s of n + m − 1
bits: T[i, j] = s[i − j + n − 1].  The output is y = T x mod 2, i.e.

    y_i = Σ_j s[i − j + n − 1] x_j = (s * x)[i + n − 1]      (full linear convolution)

so y is the slice [n − 1, n − 1 + m) of the integer convolution of s and x,
reduced mod 2.  A circular convolution of length L ≥ n + m − 1 gives the same
slice (the wrapped-around terms land only below index n − 1), so L = n + m − 1 does.  With uniformly
random seeds the family is 2-universal: for x ≠ x', P[T x = T x'] = 2^(−m)
exactly (each row has a seed bit the earlier rows do not use), which is what the
leftover hash lemma needs (Lim et al. 2014, Eq. (B1); the family: Mansour,
Nisan, Tiwari, STOC 1990; Krawczyk, CRYPTO 1994).

Exactness of the float FFT: the convolution values are integers ≤ min(n, m);
the float64 FFT convolution error is below ‖s‖₂‖x‖₂·[(1+ε)^(3k)(1+ε√5)^(3k+1)(1+ε)^(3k) − 1]
with k = log2 L and ε = 2⁻⁵³ (C. Percival, Math. Comp. 72, 387 (2003), Thm. 5.1,
twiddle factors accurate to ε).  :func:`toeplitz_hash` computes that bound and,
if it is not below ¼, splits x into chunks whose bound is (then each chunk's
rounded convolution is exact and the chunks add mod 2).  For 0/1 inputs of 10⁶
bits the bound is ~10⁻⁷, so one FFT suffices far beyond any block size in use.
The rounded values are also checked to lie within ¼ of an integer.

The seed is public (Alice draws it after error verification and sends it); it
must be independent of the key, not secret.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qstack.core.errors import ErrorCode

from ._common import QKDError, as_bits, check_pos_int, fail

__all__ = ["AmplificationSeed", "toeplitz_seed", "toeplitz_hash", "toeplitz_hash_direct",
           "fft_error_bound", "amplify"]

_EPS = 2.0 ** -53


@dataclass(frozen=True)
class AmplificationSeed:
    """Alice → Bob: the Toeplitz seed (packed bits, ``np.packbits`` order) for an
    n_in-bit key hashed to n_out bits."""

    n_in: int
    n_out: int
    seed: bytes

    def bits(self) -> np.ndarray:
        need = self.n_in + self.n_out - 1
        got = np.unpackbits(np.frombuffer(self.seed, dtype=np.uint8), count=need)
        if got.size != need:
            fail("AmplificationSeed.seed", f"{need} bits", f"{len(self.seed) * 8} bits", ErrorCode.BAD_FIELD)
        return got


def toeplitz_seed(n_in: int, n_out: int, rng: np.random.Generator) -> AmplificationSeed:
    """A uniformly random seed of n_in + n_out − 1 bits for hashing n_in bits to n_out."""
    check_pos_int("toeplitz_seed.n_in", n_in)
    check_pos_int("toeplitz_seed.n_out", n_out)
    bits = rng.integers(0, 2, size=n_in + n_out - 1, dtype=np.uint8)
    return AmplificationSeed(n_in, n_out, np.packbits(bits).tobytes())


def fft_error_bound(norm_product: float, length: int) -> float:
    """Percival's bound on the max error of a float64 FFT convolution of length ``length``
    (rounded up to a power of two) of vectors whose 2-norms multiply to ``norm_product``."""
    k = max(1, math.ceil(math.log2(max(2, length))))
    factor = (1 + _EPS) ** (3 * k) * (1 + _EPS * math.sqrt(5)) ** (3 * k + 1) * (1 + _EPS) ** (3 * k) - 1
    return norm_product * factor


def _fft_len(need: int) -> int:
    """The smallest of 2^a and 3·2^a that is ≥ need (both fast for pocketfft)."""
    p2 = 1 << max(0, (need - 1).bit_length())
    p3 = 3 << max(0, (-(-need // 3) - 1).bit_length())
    return min(p2, p3)


def _conv_slice(seed: np.ndarray, x: np.ndarray, lo: int, m: int) -> np.ndarray:
    """Exact integer values of (seed * x)[lo : lo + m] by one real FFT (caller checked the bound)."""
    # lo = len(x) - 1 for every caller, so a circular length of len(seed) already
    # keeps the wrapped-around terms out of the slice (module docstring)
    length = _fft_len(len(seed))
    fs = np.fft.rfft(seed.astype(np.float64), length)
    fx = np.fft.rfft(x.astype(np.float64), length)
    z = np.fft.irfft(fs * fx, length)[lo:lo + m]
    r = np.rint(z)
    if m and float(np.max(np.abs(z - r))) >= 0.25:   # cannot happen under the bound; a guard, not a path
        raise QKDError(ErrorCode.INTERNAL_ERROR, "toeplitz_hash: FFT convolution not within 1/4 of integers")
    return r.astype(np.int64)


def toeplitz_hash(bits: np.ndarray, seed: np.ndarray, n_out: int, *, chunk_bits: int | None = None) -> np.ndarray:
    """T x mod 2 for the Toeplitz matrix of ``seed`` (n_in + n_out − 1 bits): n_out bits (uint8).

    chunk_bits: process x in chunks of this many bits (default: one chunk, or
    as many as Percival's bound requires).  Every chunking gives the same result.
    """
    x = as_bits("toeplitz_hash.bits", bits)
    s = as_bits("toeplitz_hash.seed", seed)
    n = x.size
    m = check_pos_int("toeplitz_hash.n_out", n_out)
    if n == 0:
        fail("toeplitz_hash.bits", "at least one bit", 0)
    if s.size != n + m - 1:
        fail("toeplitz_hash.seed", f"{n + m - 1} bits (n_in + n_out - 1)", f"{s.size} bits")
    if chunk_bits is None:
        # norm bound for a chunk of c bits: ||x_c|| <= sqrt(c), ||seed part|| <= sqrt(c + m - 1)
        chunk_bits = n
        while chunk_bits > 1 and fft_error_bound(math.sqrt(chunk_bits * (chunk_bits + m - 1)),
                                                 chunk_bits * 2 + m) >= 0.25:
            chunk_bits //= 2
    chunk_bits = check_pos_int("toeplitz_hash.chunk_bits", chunk_bits)
    acc = np.zeros(m, dtype=np.int64)
    for c0 in range(0, n, chunk_bits):
        c1 = min(n, c0 + chunk_bits)
        # y_i gets s[i - j + n - 1] x_j for j in [c0, c1): the seed indices run over
        # [n - c1, n - c0 + m - 1); relative to that slice, y_i is conv index i + c1 - c0 - 1
        sub = s[n - c1: n - c0 + m - 1]
        acc += _conv_slice(sub, x[c0:c1], c1 - c0 - 1, m)
    return (acc & 1).astype(np.uint8)


def toeplitz_hash_direct(bits: np.ndarray, seed: np.ndarray, n_out: int) -> np.ndarray:
    """The same product by building T row by row (O(n·m): the reference for tests)."""
    x = as_bits("toeplitz_hash_direct.bits", bits).astype(np.int64)
    s = as_bits("toeplitz_hash_direct.seed", seed).astype(np.int64)
    n, m = x.size, int(n_out)
    if s.size != n + m - 1:
        fail("toeplitz_hash_direct.seed", f"{n + m - 1} bits", f"{s.size} bits")
    j = np.arange(n)
    out = np.empty(m, dtype=np.uint8)
    for i in range(m):
        out[i] = int(s[i - j + n - 1] @ x) & 1      # T[i, j] = s[i - j + n - 1]
    return out


def amplify(key: np.ndarray, seed: AmplificationSeed) -> np.ndarray:
    """The final key: ``seed.n_out`` bits hashed from the ``seed.n_in``-bit corrected key."""
    k = as_bits("amplify.key", key)
    if k.size != seed.n_in:
        fail("amplify.key", f"{seed.n_in} bits (the seed's n_in)", f"{k.size} bits")
    return toeplitz_hash(k, seed.bits(), seed.n_out)
