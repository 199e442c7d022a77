"""Closed forms of qstack.network.theory against independent computations."""
import math

import numpy as np
import pytest

from qstack.network import theory as th
from qstack.physical.bell_diagonal import BellDiagonal, swap_average


@pytest.mark.parametrize("f1,f2", [(0.9, 0.8), (0.99, 0.7), (0.5, 0.5), (1.0, 0.6)])
def test_werner_swap_matches_bell_diagonal_swap(f1, f2):
    out = swap_average(BellDiagonal.werner(f1), BellDiagonal.werner(f2))
    assert abs(out.fidelity(0) - th.werner_swap(f1, f2)) < 1e-12


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
    f, p = th.bbpssw(0.8)
    assert f > 0.8 and 0 < p < 1


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


def test_purification_plan():
    assert th.purification_plan(0.95, 0.9)[0] == 0
    k, f, cost = th.purification_plan(0.8, 0.95)
    assert f >= 0.95 and cost >= 2 ** k
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
