"""Closed forms of qstack.network.theory against independent computations
and the published formulas (tests/closed_forms.py, written out from the papers).

Tolerance 1e-12 where both sides are the same algebra in floats (round-off
~1e-16 per operation, a few dozen operations).
"""
import math

import numpy as np
import pytest

from qstack.network import theory as th
from qstack.physical.bell_diagonal import BellDiagonal, swap_average
from tests import closed_forms as cf


@pytest.mark.parametrize("f1,f2", [(0.9, 0.8), (0.99, 0.7), (0.5, 0.5), (1.0, 0.6)])
def test_werner_swap_matches_bell_diagonal_swap(f1, f2):
    out = swap_average(BellDiagonal.werner(f1), BellDiagonal.werner(f2))
    assert abs(out.fidelity(0) - th.werner_swap(f1, f2)) < 1e-12
    assert abs(th.werner_swap(f1, f2) - cf.werner_swap(f1, f2)) < 1e-12     # Duer et al. 1999


def test_chain_fidelity_and_its_inverse():
    for n in (1, 2, 5, 17):
        f_link = th.link_target_fidelity(0.8, n)
        assert abs(th.chain_fidelity([f_link] * n) - 0.8) < 1e-12
    f = 0.97
    acc = f
    for k in range(2, 8):
        acc = th.werner_swap(acc, f)
        assert abs(th.chain_fidelity([f] * k) - acc) < 1e-12


def test_bbpssw_closed_form_known_values():
    # F=1 is a fixed point; F=1/2 is the threshold (output stays 1/2)
    assert th.bbpssw(1.0) == (1.0, 1.0)
    f, p = th.bbpssw(0.5)
    assert abs(f - 0.5) < 1e-12
    # Bennett et al. 1996 on identical Werner inputs, and its value at F = 0.8
    # by hand: (0.64 + 1/225) / (0.64 + 0.32/3 + 5/225) = 145/173 = 0.83815...,
    # p = 173/225
    for f_in in (0.3, 0.5, 0.6, 0.8, 0.95, 0.999):
        f, p = th.bbpssw(f_in)
        f_ref, p_ref = cf.bbpssw(f_in)
        assert abs(f - f_ref) < 1e-12 and abs(p - p_ref) < 1e-12
        assert th.bbpssw(f_in, f_in) == (f, p)     # the second pair defaults to the first
    f, p = th.bbpssw(0.8)
    assert abs(f - 145 / 173) < 1e-12 and abs(p - 173 / 225) < 1e-12


def test_dejmps_matches_the_published_recurrence():
    rng = np.random.default_rng(8)
    for _ in range(20):
        a, b = rng.dirichlet(np.ones(4)).tolist(), rng.dirichlet(np.ones(4)).tolist()
        for args in ((a,), (a, b)):
            c, n = th.dejmps(*args)
            c_ref, n_ref = cf.dejmps(*args)
            assert np.allclose(c, c_ref, atol=1e-12, rtol=0) and abs(n - n_ref) < 1e-12


def test_dejmps_on_werner_matches_bbpssw_first_round():
    # On Werner inputs the first DEJMPS round has the BBPSSW fidelity and
    # success probability (the rotation only relabels equal coefficients).
    for f in (0.6, 0.75, 0.9):
        e = (1 - f) / 3
        c, p = th.dejmps([f, e, e, e])
        fb, pb = th.bbpssw(f)
        assert abs(c[0] - fb) < 1e-12 and abs(p - pb) < 1e-12
        assert abs(sum(c) - 1) < 1e-12


def test_dejmps_converges_faster_than_bbpssw():
    f_d, _ = th.dejmps_werner(0.7, rounds=4)
    f_b = 0.7
    for _ in range(4):
        f_b, _ = th.bbpssw(f_b)
    assert f_d > f_b


def _plan_by_hand(f_raw, target, step):
    """Rounds until the target, the fidelity then, and raw pairs per output
    (prod 2/p_k: each round takes two pairs and succeeds with p_k)."""
    c, cost = cf.werner(f_raw), 1.0
    for k in range(1, 9):
        c, p = step(c)
        cost = 2 * cost / p
        if c[0] >= target:
            return k, c[0], cost
    return None


def _bbpssw_step(c):
    """A BBPSSW round with its twirl: the output is Werner again."""
    f, p = cf.bbpssw(c[0])
    return cf.werner(f), p


def test_purification_plan():
    assert th.purification_plan(0.95, 0.9) == (0, 0.95, 1.0)
    for scheme, step in (("dejmps", cf.dejmps), ("bbpssw", _bbpssw_step)):
        k, f, cost = th.purification_plan(0.8, 0.95, scheme)
        k_ref, f_ref, cost_ref = _plan_by_hand(0.8, 0.95, step)
        assert k == k_ref and abs(f - f_ref) < 1e-12 and abs(cost - cost_ref) < 1e-9 * cost_ref
    assert th.purification_plan(0.8, 0.95)[0] == 3    # DEJMPS: 3 rounds, BBPSSW needs 5
    assert th.purification_plan(0.8, 0.95, "bbpssw")[0] == 5
    assert th.purification_plan(0.5, 0.9) is None     # at threshold nothing helps


@pytest.mark.parametrize("p,n", [(0.3, 4), (0.02, 10), (0.5, 1)])
def test_expected_max_geometric_vs_sampling(p, n):
    rng = np.random.default_rng(5)
    samples = rng.geometric(p, size=(40000, n)).max(axis=1)
    mean, sem = samples.mean(), samples.std() / math.sqrt(len(samples))
    assert abs(th.expected_max_geometric(p, n) - mean) < 5 * sem


def test_expected_max_geometric_small_p_asymptotic():
    # the two branches agree where they meet
    a = th.expected_max_geometric(1.0001e-4, 8)
    b = th.expected_max_geometric(0.9999e-4, 8)
    assert abs(a - b) / a < 1e-3


def test_plob_and_direct_transmission():
    for length in (1, 10, 50, 100, 300):
        eta = th.transmissivity(length)
        assert th.direct_rate_per_use(length) < th.plob_bound(eta)
    assert abs(th.plob_bound(0.5) - 1.0) < 1e-12


def test_plob_crossing_distances():
    # more links: the chain overtakes PLOB sooner
    d2, d4, d8 = (th.plob_crossing_distance(n) for n in (2, 4, 8))
    assert d2 > d4 > d8 > 0
    for n, d in ((2, d2), (4, d4)):
        below = th.repeater_rate_per_use(d * 0.9, n)
        above = th.repeater_rate_per_use(d * 1.1, n)
        assert below < th.plob_bound(th.transmissivity(d * 0.9))
        assert above > th.plob_bound(th.transmissivity(d * 1.1))
