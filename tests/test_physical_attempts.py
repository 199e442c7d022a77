"""Heralded attempts: geometric shortcut vs attempt-by-attempt reference (in distribution)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from qstack.physical.attempts import HAVE_CYTHON as _HAVE_ATTEMPTS_KERNEL
from qstack.physical.attempts import simulate_attempt_runs
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


# ---------------------------------------------------------------- attempt-by-attempt kernel and twin


needs_kernel = pytest.mark.skipif(not _HAVE_ATTEMPTS_KERNEL, reason="Cython kernel not built")


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(p=st.one_of(st.just(0.0), st.floats(0.02, 1.0)), modes=st.integers(1, 4),
       limit=st.one_of(st.none(), st.integers(1, 30)), runs=st.integers(0, 40),
       seed=st.integers(0, 2**32 - 1), block=st.integers(1, 64))
def test_attempt_kernel_and_python_twin_agree_exactly(p, modes, limit, runs, seed, block):
    if p == 0 and limit is None:
        p = 0.5     # no herald would ever come
    a = simulate_attempt_runs(p, runs, np.random.default_rng(seed), modes=modes,
                              max_attempts=limit, backend="cython", block=block)
    b = simulate_attempt_runs(p, runs, np.random.default_rng(seed), modes=modes,
                              max_attempts=limit, backend="python", block=block)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_attempt_runs_follow_the_geometric_law():
    """Attempt by attempt with M modes: P(herald within L attempts) =
    1 - (1-p)^(M L); heralded runs have mean attempts given by the truncated
    geometric law. Tolerance: 5 standard errors of the 200k-run estimates."""
    p, modes, limit, runs = 0.01, 3, 40, 200_000
    att, ok = simulate_attempt_runs(p, runs, np.random.default_rng(11), modes=modes,
                                    max_attempts=limit)
    q = (1 - p) ** modes                      # one attempt fails
    p_ok = 1 - q ** limit
    assert ok.mean() == pytest.approx(p_ok, abs=5 * math.sqrt(p_ok * (1 - p_ok) / runs))
    assert np.all(att[~ok] == limit) and np.all((att[ok] >= 1) & (att[ok] <= limit))
    k = np.arange(1, limit + 1)
    pk = q ** (k - 1) * (1 - q) / p_ok        # attempts of a heralded run
    mean, var = float((k * pk).sum()), float((k * k * pk).sum() - (k * pk).sum() ** 2)
    n_ok = int(ok.sum())
    assert att[ok].mean() == pytest.approx(mean, abs=5 * math.sqrt(var / n_ok))


def test_attempt_runs_agree_with_the_skip_ahead_sampler_in_distribution():
    """The one-draw geometric sampler and the attempt-by-attempt runs have the
    same mean attempts (5 standard errors of the difference)."""
    p, runs = 0.05, 50_000
    att, ok = simulate_attempt_runs(p, runs, np.random.default_rng(3))
    fast = sample_attempts_many(p, runs, np.random.default_rng(4))
    sd = math.sqrt((1 - p) / p**2)
    assert ok.all()
    assert att.mean() - fast.mean() == pytest.approx(0, abs=5 * sd * math.sqrt(2 / runs))


def test_attempt_runs_from_given_uniforms_and_errors():
    u = np.array([0.9, 0.2, 0.95, 0.97, 0.1])
    att, ok = simulate_attempt_runs(0.5, 2, uniforms=u, backend="python")
    assert att.tolist() == [2, 3] and ok.tolist() == [True, True]
    with pytest.raises(ValueError, match="not enough"):
        simulate_attempt_runs(0.5, 3, uniforms=u)
    with pytest.raises(ValueError):
        simulate_attempt_runs(0.0, 1, np.random.default_rng(1))
    with pytest.raises(ValueError):
        simulate_attempt_runs(0.5, 1, np.random.default_rng(1), backend="fortran")
