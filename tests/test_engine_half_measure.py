"""The engine's fast paths for measure-directly pairs, against the general
density-matrix path (their twin): measuring one half of a Bell-diagonal pair
(the partner left in sum_k lam_k P_k |v*><v*| P_k^dagger) and a Bell-state
measurement of that lone partner with a half of another Bell-diagonal pair
(a teleportation through a Bell-diagonal channel). The same seed must give
the same outcomes (both paths use one uniform draw and the same threshold)
and the same final state of the far qubit to 1e-12 (float round-off of
2x2 and 8x8 products), for random Bell-diagonal coefficients, random
measurement directions, either half measured and either order in the BSM."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from qstack.physical.bell_diagonal import BellDiagonal
from qstack.physical.engine import QuantumEngine


def _run(formalism: str, lam1, lam2, theta, phi, seed, swap_half, swap_bsm):
    e = QuantumEngine(seed)
    a, r1 = e.bell_pair_from(BellDiagonal(lam1), formalism=formalism)
    r2, d = e.bell_pair_from(BellDiagonal(lam2), formalism=formalism)
    if swap_half:
        a, r1 = r1, a
    o = e.measure(a, (theta, phi))
    m = e.bsm(r2, r1) if swap_bsm else e.bsm(r1, r2)
    return o, m, e.density_matrix([d])


_lam = st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda v: sum(v) > 1e-3)


@settings(max_examples=200, deadline=None)
@given(lam1=_lam, lam2=_lam, theta=st.floats(0, math.pi), phi=st.floats(0, 2 * math.pi),
       seed=st.integers(0, 2 ** 31), swap_half=st.booleans(), swap_bsm=st.booleans())
def test_half_measured_then_teleported_equals_the_density_matrix_path(lam1, lam2, theta, phi,
                                                                      seed, swap_half, swap_bsm):
    lam1 = [v / sum(lam1) for v in lam1]
    lam2 = [v / sum(lam2) for v in lam2]
    fast = _run("bd", lam1, lam2, theta, phi, seed, swap_half, swap_bsm)
    slow = _run("dm", lam1, lam2, theta, phi, seed, swap_half, swap_bsm)
    assert fast[:2] == slow[:2]
    assert np.abs(fast[2] - slow[2]).max() < 1e-12


def test_the_ends_correlations_follow_the_werner_closed_form():
    """Werner links of fidelity 0.9: measuring both ends first, then swapping,
    gives E(Z, Z) = (4F - 1)/3 on the frame-corrected outcomes, F the swapped
    fidelity 0.9^2 + 0.1^2/3; 20000 runs: 4 sigma of a +-1 mean is 0.028."""
    f = 0.9 * 0.9 + 0.01 / 3
    w = [0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]
    e = QuantumEngine(7)
    total = 0
    n = 20_000
    for _ in range(n):
        a, r1 = e.bell_pair_from(BellDiagonal(w))
        r2, d = e.bell_pair_from(BellDiagonal(w))
        x = e.measure(a, "Z")
        y = e.measure(d, "Z")
        m = e.bsm(r1, r2)
        y ^= m >> 1          # an X in the frame flips a Z outcome
        total += 1 if x == y else -1
        e.discard(a)
        e.discard(d)
    assert abs(total / n - (4 * f - 1) / 3) <= 4 * math.sqrt(1 / n)
