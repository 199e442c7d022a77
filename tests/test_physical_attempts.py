"""Heralded attempts: geometric shortcut vs attempt-by-attempt reference (in distribution)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from qstack.physical.attempts import (
    attempts_until_herald_reference,
    sample_attempts_many,
    sample_attempts_until_herald,
    sample_herald,
    sample_herald_reference,
)
from qstack.physical.memory import QuantumMemory


def _chi2_two_sample(a, b, edges):
    table = np.vstack([np.histogram(a, bins=edges)[0], np.histogram(b, bins=edges)[0]])
    table = table[:, table.sum(axis=0) > 0]
    return stats.chi2_contingency(table)[1]


@pytest.mark.parametrize("p", [0.5, 0.1, 0.01])
def test_geometric_shortcut_matches_reference_distribution(p):
    """Chi-square homogeneity on attempt counts binned by quantiles; p-value > 1e-4."""
    rng = np.random.default_rng(1)
    ref = np.array([attempts_until_herald_reference(p, rng) for _ in range(20_000)])
    fast = sample_attempts_many(p, 200_000, np.random.default_rng(2))
    edges = np.unique(np.quantile(fast, np.linspace(0, 1, 21))).astype(float)
    edges[-1] = np.inf
    assert _chi2_two_sample(ref, fast, np.concatenate([[0.5], edges[1:]])) > 1e-4
    # and against the exact law: mean 1/p, sd sqrt(1−p)/p; 5 sd of the sample mean
    assert abs(fast.mean() - 1 / p) < 5 * math.sqrt(1 - p) / p / math.sqrt(fast.size)
    assert fast.min() >= 1


def test_single_sample_and_zero_probability():
    assert sample_attempts_until_herald(1.0, np.random.default_rng(0)) == 1
    with pytest.raises(ValueError, match="p_success"):
        sample_attempts_until_herald(0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="p_success"):
        sample_attempts_until_herald(1.5, np.random.default_rng(0))


def test_herald_elapsed_time_and_memory_cutoff():
    mem = QuantumMemory(cutoff_ns=10_000.0, num_modes=1)
    rng = np.random.default_rng(3)
    outs = [sample_herald(0.01, 1000.0, rng, memory=mem) for _ in range(5000)]
    for o in outs:
        assert o.elapsed_ns == o.attempts * 1000.0
        assert o.attempts <= 10
    # P(no herald within 10 attempts) = 0.99^10
    fails = sum(not o.success for o in outs)
    q = 0.99**10
    assert abs(fails / 5000 - q) < 5 * math.sqrt(q * (1 - q) / 5000)
    assert all(o.attempts == 10 for o in outs if not o.success)


@pytest.mark.parametrize("modes, limit", [(1, None), (5, None), (4, 30)])
def test_herald_shortcut_matches_reference(modes, limit):
    p, cyc = 0.02, 500.0
    mem = QuantumMemory(num_modes=modes, cutoff_ns=math.inf if limit is None else limit * cyc + 1.0)
    a = [sample_herald(p, cyc, np.random.default_rng(10 + i), memory=mem) for i in range(1)]  # smoke
    rng_f, rng_r = np.random.default_rng(4), np.random.default_rng(5)
    fast = [sample_herald(p, cyc, rng_f, memory=mem) for _ in range(20_000)]
    ref = [sample_herald_reference(p, cyc, rng_r, memory=mem) for _ in range(4_000)]
    fa = np.array([o.attempts + (0 if o.success else 10**6) for o in fast])
    ra = np.array([o.attempts + (0 if o.success else 10**6) for o in ref])
    edges = np.array([0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5, 64.5, 128.5, 10**5, np.inf])
    assert _chi2_two_sample(ra, fa, edges) > 1e-4
    p_eff = 1 - (1 - p) ** modes
    mean_fast = np.mean([o.attempts for o in fast if o.success])
    if limit is None:
        assert abs(mean_fast - 1 / p_eff) < 5 * math.sqrt(1 - p_eff) / p_eff / math.sqrt(len(fast))
    assert a[0].elapsed_ns == a[0].attempts * cyc


def test_herald_validation():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="cycle_time_ns"):
        sample_herald(0.1, 0.0, rng)
    with pytest.raises(ValueError, match="max_attempts"):
        sample_herald(0.1, 1.0, rng, max_attempts=0)
    with pytest.raises(ValueError, match="p_success"):
        sample_herald(0.0, 1.0, rng)
    o = sample_herald(0.0, 1.0, rng, max_attempts=7)
    assert (o.attempts, o.success, o.elapsed_ns) == (7, False, 7.0)


@given(st.floats(1e-6, 1.0), st.integers(1, 16), st.integers(0, 2**32 - 1))
def test_herald_outcome_properties(p, modes, seed):
    o = sample_herald(p, 100.0, np.random.default_rng(seed), modes=modes, max_attempts=1000)
    assert 1 <= o.attempts <= 1000
    assert o.elapsed_ns == pytest.approx(o.attempts * 100.0)
    assert o.success or o.attempts == 1000
