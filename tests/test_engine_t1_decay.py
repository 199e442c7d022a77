"""T1 decay of both halves of a pair: the bd formalism against the exact channel (issue 16, item 10).

The memory channel is written out here from its definition, not taken from
qstack: amplitude damping with gamma = 1 - exp(-t/T1) (Kraus operators
K0 = [[1, 0], [0, sqrt(1-gamma)]], K1 = [[0, sqrt(gamma)], [0, 0]]; Nielsen &
Chuang, sec. 8.3.5), then a Z flip with probability q chosen so that the
coherence decays as exp(-t/T2) in all: damping alone leaves sqrt(1-gamma) =
exp(-t/(2 T1)), so 1 - 2q = exp(-t/T2 + t/(2 T1)). The reference applies these
4x4 Kraus operators to the density matrix of the pair.

Tolerance 1e-9 on every Bell fidelity, the bound the issue sets: both the
reference and the engines are a handful of float operations per wait on O(1)
numbers (round-off ~1e-15 per step, at most ~20 steps here), so 1e-9 leaves a
wide margin for round-off and none for a model error -- the Pauli twirl the
bd formalism used before was off by gamma_A gamma_B / 4 (0.10 at t = T1).
"""
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from qstack.physical.bell_diagonal import BellDiagonal
from qstack.physical.engine import QuantumEngine

TOL = 1e-9
EXAMPLES = int(os.environ.get("QSTACK_ENGINE_EXAMPLES", "150"))

_R2 = 1 / math.sqrt(2)
# Bell states in Bell-index order (Phi+, Phi-, Psi+, Psi-), first qubit most significant
BELL = np.array([[_R2, 0, 0, _R2], [_R2, 0, 0, -_R2], [0, _R2, _R2, 0], [0, _R2, -_R2, 0]])
I2 = np.eye(2)
Z = np.diag([1.0, -1.0])


def memory_kraus(t, t1, t2):
    """Single-qubit Kraus operators of T1/T2 decay over t (see the module docstring)."""
    gamma = 1 - math.exp(-t / t1)
    k0 = np.array([[1, 0], [0, math.sqrt(1 - gamma)]])
    k1 = np.array([[0, math.sqrt(gamma)], [0, 0]])
    lam = math.exp(-t / t2 + t / (2 * t1))        # <= 1 because T2 <= 2 T1
    q = (1 - lam) / 2
    return [math.sqrt(1 - q) * k0, math.sqrt(1 - q) * k1, math.sqrt(q) * Z @ k0, math.sqrt(q) * Z @ k1]


def wait(rho, side, t, t1, t2):
    """The reference: ``rho`` after qubit ``side`` of the pair waited t."""
    out = np.zeros((4, 4))
    for k in memory_kraus(t, t1, t2):
        big = np.kron(k, I2) if side == 0 else np.kron(I2, k)
        out = out + big @ rho @ big.T
    return out


def bell_diagonal_dm(c):
    return sum(ci * np.outer(BELL[b], BELL[b]) for b, ci in enumerate(c))


def bell_fidelities(rho):
    return [float(BELL[b] @ rho @ BELL[b]) for b in range(4)]


# ------------------------------------------------------------ the issue's case

@pytest.mark.parametrize("frac", [1.0, 0.5])
@pytest.mark.parametrize("formalism", ["bd", "dm"])
def test_both_halves_waiting_match_the_exact_channel(frac, formalism):
    """Phi+ with both halves waiting t = T1 and t = T1/2 (T2 = 2 T1: pure
    relaxation). By hand: damping on both halves leaves (1/2)[(1 + g^2)|00><00|
    + (1-g)^2 |11><11| + g(1-g)(|01><01| + |10><10|) + (1-g)(|00><11| + h.c.)],
    so F = 1 - g + g^2/2 with g = 1 - exp(-t/T1) (0.5677 at t = T1; the Pauli
    twirl gave 0.4677, low by g^2/4 = 0.0999)."""
    t1 = 1e6
    t = frac * t1
    eng = QuantumEngine(0)
    a, b = eng.bell_pair(0, 1.0, formalism)
    eng.memory_decay(a, t, t1, 2 * t1)
    eng.memory_decay(b, t, t1, 2 * t1)
    assert eng.formalism_of(a) == formalism          # bd stays fast
    rho = bell_diagonal_dm([1, 0, 0, 0])
    rho = wait(wait(rho, 0, t, t1, 2 * t1), 1, t, t1, 2 * t1)
    gamma = 1 - math.exp(-frac)
    assert bell_fidelities(rho)[0] == pytest.approx(1 - gamma + gamma ** 2 / 2, abs=1e-12)
    for k in range(4):
        assert eng.bell_fidelity(a, b, k) == pytest.approx(bell_fidelities(rho)[k], abs=TOL)


def test_issue_case_with_dephasing_and_werner_input():
    """The same with T2 < 2 T1 and a Werner pair: both formalisms agree with
    the reference on all four Bell fidelities and on the whole state."""
    t1, t2 = 1e6, 0.7e6
    for t in (t1, t1 / 2):
        ref = wait(wait(bell_diagonal_dm(BellDiagonal.werner(0.9).as_tuple()), 0, t, t1, t2),
                   1, t, t1, t2)
        for formalism in ("bd", "dm"):
            eng = QuantumEngine(0)
            a, b = eng.bell_pair(0, 0.9, formalism)
            eng.memory_decay(a, t, t1, t2)
            eng.memory_decay(b, t, t1, t2)
            for k in range(4):
                assert eng.bell_fidelity(a, b, k) == pytest.approx(bell_fidelities(ref)[k], abs=TOL)
            np.testing.assert_allclose(eng.density_matrix([a, b]), ref, atol=TOL)


# ------------------------------------------------------------ property tests

def _coeffs(raw):
    """Bell-diagonal coefficients from four non-negative weights (not all zero)."""
    s = sum(raw)
    return [x / s for x in raw]


weights = hs.lists(hs.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda w: sum(w) > 1e-3)
t1s = hs.floats(1e3, 1e7)
t2_fracs = hs.floats(0.01, 1.0)                       # T2 = 2 T1 * frac <= 2 T1
waits = hs.lists(hs.tuples(hs.integers(0, 1), hs.floats(0.0, 3.0)), min_size=1, max_size=8)


@settings(max_examples=EXAMPLES, deadline=None)
@given(weights, t1s, t2_fracs, waits)
def test_random_waits_on_both_halves_match_the_exact_channel(w, t1, frac, steps):
    """Any Bell-diagonal pair, any T1 and T2 <= 2 T1, any sequence of waits on
    either half (in units of T1, up to 3 T1 each): every Bell fidelity of the bd
    engine equals the dm engine's and the reference channel's within 1e-9."""
    t2 = 2 * t1 * frac
    c = _coeffs(w)
    eng = QuantumEngine(0)
    pairs = {f: eng.bell_pair_from(BellDiagonal(c), f) for f in ("bd", "dm")}
    ref = bell_diagonal_dm(c)
    for side, units in steps:
        t = units * t1
        ref = wait(ref, side, t, t1, t2)
        for a, b in pairs.values():
            eng.memory_decay((a, b)[side], t, t1, t2)
    expect = bell_fidelities(ref)
    (a, b), (c_, d) = pairs["bd"], pairs["dm"]
    assert eng.formalism_of(a) == "bd"
    for k in range(4):
        assert eng.bell_fidelity(a, b, k) == pytest.approx(expect[k], abs=TOL)
        assert eng.bell_fidelity(c_, d, k) == pytest.approx(expect[k], abs=TOL)
        assert eng.bell_fidelity(b, a, k) == pytest.approx(expect[k], abs=TOL)   # either order
    np.testing.assert_allclose(eng.density_matrix([a, b]), ref, atol=TOL)


N_PAIRS = 3
pair = hs.integers(0, N_PAIRS - 1)
side = hs.integers(0, 1)
step = hs.one_of(
    hs.tuples(hs.just("wait"), pair, side, hs.floats(0.0, 2.0)),             # t in units of T1
    hs.tuples(hs.just("damp"), pair, side, hs.floats(0.0, 1.0)),             # amplitude_damp(gamma)
    hs.tuples(hs.just("pauli"), hs.sampled_from(["x", "y", "z"]), pair, side),
    hs.tuples(hs.just("chan"), hs.sampled_from(["depolarize", "dephase", "bit_flip", "phase_flip"]),
              pair, side, hs.floats(0.0, 1.0)),
    hs.tuples(hs.just("swap"), pair, pair, hs.booleans(), hs.booleans(), weights),
    hs.tuples(hs.just("drop"), pair, side),
)


def _run(formalism, initial, program, t1, t2, seed):
    """Run ``program`` on ``N_PAIRS`` pairs; return (Bell fidelities of each pair,
    density matrices, BSM outcomes, states of lone halves)."""
    eng = QuantumEngine(np.random.default_rng(seed))
    pairs = [list(eng.bell_pair_from(BellDiagonal(_coeffs(w)), formalism)) for w in initial]
    outcomes, lone = [], []
    for st in program:
        kind = st[0]
        if kind == "wait":
            _, i, s, units = st
            eng.memory_decay(pairs[i][s], units * t1, t1, t2)
        elif kind == "damp":
            _, i, s, gamma = st
            eng.amplitude_damp(pairs[i][s], gamma)
        elif kind == "pauli":
            getattr(eng, st[1])(pairs[st[2]][st[3]])
        elif kind == "chan":
            getattr(eng, st[1])(pairs[st[2]][st[3]], st[4])
        elif kind == "swap":
            # BSM on one half of pair i and one of pair j (either half, so both
            # orders of each group's members are exercised), correct, refill j
            _, i, j, si, sj, w = st
            if i == j:
                continue
            inner_i, outer_i = pairs[i][si], pairs[i][1 - si]
            inner_j, outer_j = pairs[j][sj], pairs[j][1 - sj]
            m = eng.bsm(inner_i, inner_j)
            outcomes.append(m)
            if m >> 1:
                eng.x(outer_j)
            if m & 1:
                eng.z(outer_j)
            pairs[i] = [outer_i, outer_j]
            pairs[j] = list(eng.bell_pair_from(BellDiagonal(_coeffs(w)), formalism))
        elif kind == "drop":
            # discard one half: the other's state is the pair's marginal
            _, i, s = st
            eng.discard(pairs[i][s])
            lone.append(eng.density_matrix(pairs[i][1 - s]))
            eng.discard(pairs[i][1 - s])
            pairs[i] = list(eng.bell_pair(0, 1.0, formalism))
    for a, _b in pairs:
        assert eng.formalism_of(a) == formalism       # nothing here leaves the fast formalism
    fids = [[eng.bell_fidelity(a, b, k) for k in range(4)] for a, b in pairs]
    return fids, [eng.density_matrix(p) for p in pairs], outcomes, lone


@settings(max_examples=EXAMPLES, deadline=None)
@given(hs.lists(weights, min_size=N_PAIRS, max_size=N_PAIRS), hs.lists(step, max_size=30),
       t1s, t2_fracs, hs.integers(0, 2**32 - 1))
def test_bd_equals_dm_with_t1_decay_swaps_and_pauli_noise(initial, program, t1, frac, seed):
    """Random programs of T1/T2 waits, amplitude damping, Pauli gates and
    channels, swaps (which, after T1 decay, have non-uniform outcomes) and
    discards: the bd formalism gives the dm formalism's Bell fidelities (1e-9),
    states, and -- from the same seed -- the same BSM outcomes."""
    t2 = 2 * t1 * frac
    f_dm, rho_dm, m_dm, lone_dm = _run("dm", initial, program, t1, t2, seed)
    f_bd, rho_bd, m_bd, lone_bd = _run("bd", initial, program, t1, t2, seed)
    assert m_bd == m_dm
    for x, y in zip(f_bd, f_dm):
        np.testing.assert_allclose(x, y, atol=TOL, rtol=0)
    for x, y in zip(rho_bd + lone_bd, rho_dm + lone_dm):
        np.testing.assert_allclose(x, y, atol=TOL, rtol=0)


def test_swap_after_t1_decay_has_the_exact_outcome_statistics():
    """Two |Phi+> pairs whose inner halves fully relaxed (gamma = 1: both in
    |0>): a BSM on |00> gives Phi+ or Phi- with probability 1/2 each, never
    Psi (P(m) = |<B_m|00>|^2). The bd formalism used to draw outcomes
    uniformly; 200 draws would show a Psi outcome with probability
    1 - 2^-200 if it still did."""
    eng = QuantumEngine(np.random.default_rng(4))
    seen = set()
    for _ in range(200):
        a0, a1 = eng.bell_pair(0, 1.0, "bd")
        b0, b1 = eng.bell_pair(0, 1.0, "bd")
        eng.amplitude_damp(a1, 1.0)
        eng.amplitude_damp(b0, 1.0)
        assert eng.formalism_of(a1) == eng.formalism_of(b0) == "bd"
        seen.add(eng.bsm(a1, b0))
        # each pair was (I/2) (x) |0><0| after the damping, a product: the
        # outer halves are left uncorrelated and maximally mixed, F = 1/4
        assert eng.bell_fidelity(a0, b1, 0) == pytest.approx(0.25, abs=TOL)
        eng.discard(a0)
        eng.discard(b1)
    assert seen == {0, 1}
