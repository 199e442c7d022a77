"""Toeplitz hashing (privacy amplification) and error verification."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qstack.app.qkd import amplification as A
from qstack.app.qkd import verification as V
from qstack.app.qkd._common import QKDError


@given(n=st.integers(1, 300), m=st.integers(1, 300), chunk=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_fft_path_equals_the_direct_matrix_product(n, m, chunk, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n)
    s = rng.integers(0, 2, n + m - 1)
    direct = A.toeplitz_hash_direct(x, s, m)
    assert np.array_equal(A.toeplitz_hash(x, s, m), direct)
    assert np.array_equal(A.toeplitz_hash(x, s, m, chunk_bits=chunk), direct)


def test_fft_path_is_exact_on_a_million_bits():
    """10^6 input bits to 5·10^5: rows checked against T[i, j] = s[i - j + n - 1] directly."""
    rng = np.random.default_rng(7)
    n, m = 10**6, 5 * 10**5
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    y = A.toeplitz_hash(x, s, m)
    assert y.shape == (m,) and y.dtype == np.uint8
    j = np.arange(n)
    for i in list(rng.integers(0, m, 40)) + [0, m - 1]:
        assert y[i] == int(s[i - j + n - 1].astype(np.int64) @ x) & 1
    # Percival's bound at this size is far below the 1/4 that rounding needs
    assert A.fft_error_bound(math.sqrt(n * (n + m)), n + m) < 1e-6


def test_amplify_gives_the_stated_length_and_both_ends_agree():
    rng = np.random.default_rng(3)
    key = rng.integers(0, 2, 5000, dtype=np.uint8)
    seed = A.toeplitz_seed(5000, 1234, rng)
    out = A.amplify(key, seed)
    assert out.shape == (1234,)
    assert np.array_equal(out, A.amplify(key.copy(), A.AmplificationSeed(5000, 1234, seed.seed)))
    with pytest.raises(QKDError):
        A.amplify(key[:-1], seed)
    with pytest.raises(QKDError):
        A.toeplitz_hash(key, np.zeros(10, np.uint8), 5)


def test_toeplitz_family_collides_with_probability_two_to_minus_m():
    """2-universality: for fixed x != x', P_seed[T x = T x'] = 2^-m. With m = 3 over 4000
    seeds the count is binomial(4000, 1/8): mean 500, sd 20.9; tolerance 5 sd."""
    rng = np.random.default_rng(11)
    n, m, trials = 64, 3, 4000
    x = rng.integers(0, 2, n)
    x2 = x.copy()
    x2[[5, 17, 40]] ^= 1
    hits = 0
    for _ in range(trials):
        s = rng.integers(0, 2, n + m - 1)
        hits += np.array_equal(A.toeplitz_hash(x, s, m), A.toeplitz_hash(x2, s, m))
    assert abs(hits - trials / 8) < 5 * math.sqrt(trials * (1 / 8) * (7 / 8))


def test_verification_passes_equal_keys_and_catches_one_flipped_bit():
    rng = np.random.default_rng(5)
    key = rng.integers(0, 2, 10_000, dtype=np.uint8)
    assert V.tag_bits(1e-15) == 50 and V.collision_probability(50) <= 1e-15
    msg = V.make_tag(key, 1e-15, rng)
    assert msg.tag_bits == 50
    assert V.check_tag(key.copy(), msg).ok
    for pos in (0, 4321, 9999):
        bad = key.copy()
        bad[pos] ^= 1
        assert not V.check_tag(bad, msg).ok
    assert not V.check_tag(key[:-1], msg).ok
    with pytest.raises(QKDError):
        V.tag_bits(0.0)
