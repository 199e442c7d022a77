"""QuantumEngine: groups, measurement statistics, BSM, teleportation, swapping, memory decay.

Tolerances:
* 1e-12 for exact state comparisons (a few dozen matrix operations on
  O(1) entries; round-off ~1e-15 each).
* Statistical tests use a fixed seed, so they are deterministic; the chi-square
  significance level is 0.001 (a correct engine fails a given seed with
  probability 0.1%, and each seed here was checked once, so the test is
  stable; a wrong probability of even 2% absolute at these sample sizes gives
  p-values far below 0.001).
"""
import math

import numpy as np
import pytest
from scipy.stats import chisquare

from qstack.physical import gates as g
from qstack.physical import states as st
from qstack.physical.bell_diagonal import BellDiagonal, swap_bell_diagonal
from qstack.physical.engine import QuantumEngine, QubitError

ATOL = 1e-12
ALPHA = 1e-3


# -- groups -------------------------------------------------------------------

def test_group_merge_and_split_sizes():
    eng = QuantumEngine(np.random.default_rng(0))
    qs = [eng.qubit() for _ in range(4)]
    assert eng.num_groups == 4 and eng.num_live_qubits == 4
    qs[0].h()
    eng.cnot(qs[0], qs[1])
    assert eng.num_groups == 3 and len(eng.group_members(qs[1])) == 2
    eng.cnot(qs[1], qs[2])  # GHZ on 0,1,2
    assert eng.num_groups == 2 and len(eng.group_members(qs[0])) == 3
    assert len(eng.group_members(qs[3])) == 1
    m = eng.measure(qs[1])
    # The measured qubit leaves; the other two stay together in |mm>.
    assert eng.num_groups == 3 and len(eng.group_members(qs[0])) == 2
    assert eng.group_members(qs[1]) == (qs[1],)
    np.testing.assert_allclose(eng.density_matrix([qs[0], qs[2]]), st.dm(st.ket(f"{m}{m}")), atol=ATOL)
    eng.discard(qs[0])
    assert eng.num_live_qubits == 3 and eng.group_members(qs[2]) == (qs[2],)
    assert not qs[0].alive and qs[2].alive
    eng.reset(qs[2])
    np.testing.assert_allclose(eng.density_matrix(qs[2]), st.dm(st.ket("0")), atol=ATOL)


def test_density_matrix_order_and_reduction():
    rng = np.random.default_rng(1)
    rho = st.random_density_matrix(rng, 3)
    eng = QuantumEngine(rng)
    a, b, c = eng.from_density_matrix(rho)
    d = eng.from_ket(st.ket("1"))[0]
    np.testing.assert_allclose(eng.density_matrix([c, a]), st.partial_trace(rho, [2, 0]), atol=ATOL)
    # kron gives the order (b, a, d); the request is (b, d, a).
    np.testing.assert_allclose(eng.density_matrix([b, d, a]),
                               _reorder(np.kron(st.partial_trace(rho, [1, 0]), np.diag([0, 1])), [0, 2, 1]),
                               atol=ATOL)
    # The returned matrix is a copy: editing it leaves the engine alone.
    out = eng.density_matrix([a, b, c])
    out[:] = 0
    np.testing.assert_allclose(eng.density_matrix([a, b, c]), rho, atol=ATOL)


def _reorder(rho, perm):
    """State of qubits listed as ``perm`` (indices into rho's qubits), first = most significant."""
    n = len(perm)
    t = rho.reshape([2] * 2 * n).transpose(list(perm) + [n + p for p in perm])
    return t.reshape(1 << n, 1 << n)


def test_dead_qubits_raise():
    eng = QuantumEngine(0)
    q, r = eng.qubit(), eng.qubit()
    q.discard()
    for call in (lambda: eng.h(q), lambda: eng.measure(q), lambda: eng.cnot(q, r),
                 lambda: eng.discard(q), lambda: eng.density_matrix([q]), lambda: q.x()):
        with pytest.raises(QubitError):
            call()
    with pytest.raises(QubitError):
        eng.cnot(r, r)
    other = QuantumEngine(1)
    with pytest.raises(QubitError):
        other.h(r)
    err = pytest.raises(QubitError, eng.h, q).value
    assert err.code.name == "QUBIT_UNAVAILABLE" and isinstance(err, ValueError)


# -- measurement ----------------------------------------------------------------

@pytest.mark.parametrize("basis", ["Z", "X", "Y", (1.1, 0.4)])
def test_measurement_statistics_chi_square(basis):
    # One fixed, non-trivial state, measured fresh N times; counts vs Born rule.
    psi = st.ket_from_angles(1.0, 2.0)
    if isinstance(basis, str):
        v0 = {"Z": st.KET_0, "X": st.KET_PLUS, "Y": st.KET_PLUS_I}[basis]
    else:
        v0 = st.ket_from_angles(*basis)
    p0 = abs(np.vdot(v0, psi)) ** 2
    eng = QuantumEngine(np.random.default_rng(2024))
    n = 4000
    ones = 0
    for _ in range(n):
        (q,) = eng.from_ket(psi)
        m = eng.measure(q, basis)
        # The qubit stays alive in the basis state of its outcome.
        assert eng.fidelity([q], v0) == pytest.approx(1.0 - m, abs=ATOL)
        ones += m
        q.discard()
    assert chisquare([n - ones, ones], [n * p0, n * (1 - p0)]).pvalue > ALPHA


def test_measurement_of_entangled_qubit_statistics_and_collapse():
    # Three-qubit random state: measure qubit 1; check the conditional state of
    # the rest exactly and the outcome frequencies with chi-square.
    rng = np.random.default_rng(5)
    psi = st.random_ket(rng, 3)
    rho = st.dm(psi)
    p1 = st.partial_trace(rho, [1])[1, 1].real
    eng = QuantumEngine(np.random.default_rng(6))
    n, ones = 3000, 0
    for _ in range(n):
        a, b, c = eng.from_ket(psi)
        m = eng.measure(b)
        ones += m
        proj = psi.reshape(2, 2, 2)[:, m, :].reshape(4)
        proj = proj / np.linalg.norm(proj)
        np.testing.assert_allclose(eng.density_matrix([a, c]), st.dm(proj), atol=1e-10)
        for q in (a, b, c):
            q.discard()
    assert eng.num_live_qubits == 0 and eng.num_groups == 0
    assert chisquare([n - ones, ones], [n * (1 - p1), n * p1]).pvalue > ALPHA


def test_bsm_outcome_distribution_general_state():
    rng = np.random.default_rng(7)
    rho = st.random_density_matrix(rng, 2)
    probs = [st.fidelity(rho, st.bell_state(b)) for b in range(4)]
    eng = QuantumEngine(np.random.default_rng(8))
    n = 4000
    counts = np.zeros(4)
    for _ in range(n):
        a, b = eng.from_density_matrix(rho)
        counts[eng.bsm(a, b)] += 1
        assert not a.alive and not b.alive
    assert chisquare(counts, np.array(probs) * n).pvalue > ALPHA


@pytest.mark.parametrize("formalism", ["dm", "bd"])
def test_bsm_outcomes_uniform_for_bell_diagonal_swap(formalism):
    eng = QuantumEngine(np.random.default_rng(9))
    n = 2000
    counts = np.zeros(4)
    for _ in range(n):
        a0, a1 = eng.bell_pair(0, 0.9, formalism)
        b0, b1 = eng.bell_pair(2, 0.7, formalism)
        counts[eng.bsm(a1, b0)] += 1
        a0.discard()
        b1.discard()
    assert chisquare(counts, [n / 4] * 4).pvalue > ALPHA


def test_bsm_on_one_bd_pair_samples_its_coefficients():
    eng = QuantumEngine(np.random.default_rng(10))
    bd = BellDiagonal([0.1, 0.2, 0.3, 0.4])
    n = 4000
    counts = np.zeros(4)
    for _ in range(n):
        a, b = eng.bell_pair_from(bd, "bd")
        counts[eng.bsm(b, a)] += 1
    assert chisquare(counts, bd.coeffs * n).pvalue > ALPHA


def test_bsm_returns_projected_bell_index():
    for b in range(4):
        eng = QuantumEngine(0)
        q0, q1 = eng.from_ket(st.bell_state(b))
        assert eng.bsm(q0, q1) == b
        q0, q1 = eng.from_ket(st.bell_state(b))
        assert eng.bsm(q1, q0) == b  # exchange symmetric up to sign


# -- Bell pairs, teleportation, swapping ------------------------------------------

@pytest.mark.parametrize("formalism", ["dm", "bd"])
@pytest.mark.parametrize("bell_index", [0, 1, 2, 3])
def test_bell_pair_fidelity(formalism, bell_index):
    eng = QuantumEngine(0)
    a, b = eng.bell_pair(bell_index, 0.8, formalism)
    assert eng.formalism_of(a) == formalism
    assert eng.bell_fidelity(a, b, bell_index) == pytest.approx(0.8, abs=ATOL)
    assert eng.fidelity([a, b], st.bell_state(bell_index)) == pytest.approx(0.8, abs=ATOL)
    for other in set(range(4)) - {bell_index}:
        assert eng.bell_fidelity(b, a, other) == pytest.approx(0.2 / 3, abs=ATOL)
    np.testing.assert_allclose(eng.density_matrix([a]), np.eye(2) / 2, atol=ATOL)


def teleport(eng, q, pair):
    """Teleport q's state over ``pair`` = (sender half, receiver half); return the receiver half."""
    a, b = pair
    m = eng.bsm(q, a)
    if m >> 1:
        eng.x(b)
    if m & 1:
        eng.z(b)
    return b


@pytest.mark.parametrize("formalism", ["dm", "bd"])
def test_teleportation_perfect_pair(formalism):
    rng = np.random.default_rng(11)
    eng = QuantumEngine(np.random.default_rng(12))
    for _ in range(40):
        psi = st.random_ket(rng)
        (q,) = eng.from_ket(psi)
        pair = eng.bell_pair(0, 1.0, formalism)
        b = teleport(eng, q, pair)
        assert eng.fidelity([b], psi) == pytest.approx(1.0, abs=ATOL)
        b.discard()
    assert eng.num_live_qubits == 0


def test_teleportation_via_explicit_circuit():
    # The textbook circuit (CNOT, H, two Z measurements, classically
    # controlled X and Z) rather than the engine's bsm.
    rng = np.random.default_rng(13)
    eng = QuantumEngine(np.random.default_rng(14))
    for _ in range(30):
        psi = st.random_ket(rng)
        (q,) = eng.from_ket(psi)
        a, b = eng.qubit(), eng.qubit()
        a.h()
        a.cnot(b)
        q.cnot(a)
        q.h()
        mz, mx = q.measure(), a.measure()
        if mx:
            b.x()
        if mz:
            b.z()
        assert eng.fidelity(b, psi) == pytest.approx(1.0, abs=ATOL)
        for r in (q, a, b):
            r.discard()


@pytest.mark.parametrize("formalism", ["dm", "bd"])
@pytest.mark.parametrize("f", [1.0, 0.9, 0.7, 0.5])
def test_teleportation_werner_pair_average_fidelity(formalism, f):
    # With a Werner resource the corrected output is the depolarising channel
    # rho -> F rho + (1-F)/3 (X rho X + Y rho Y + Z rho Z) for *every* BSM
    # outcome, so each run's output fidelity is exactly (2F+1)/3 for a pure
    # input; no statistics are needed. The average over inputs is then also
    # (2F+1)/3 over any set of inputs; here 60 Haar-random ones.
    rng = np.random.default_rng(15)
    eng = QuantumEngine(np.random.default_rng(16))
    fids = []
    seen = set()
    for _ in range(60):
        psi = st.random_ket(rng)
        (q,) = eng.from_ket(psi)
        a, b = eng.bell_pair(0, f, formalism)
        m = eng.bsm(q, a)
        seen.add(m)
        if m >> 1:
            b.x()
        if m & 1:
            b.z()
        fid = eng.fidelity([b], psi)
        assert fid == pytest.approx((2 * f + 1) / 3, abs=ATOL)
        fids.append(fid)
        b.discard()
    assert seen == {0, 1, 2, 3}  # every correction branch was exercised
    assert np.mean(fids) == pytest.approx((2 * f + 1) / 3, abs=ATOL)


@pytest.mark.parametrize("formalism", ["dm", "bd"])
@pytest.mark.parametrize("f1,f2", [(1.0, 1.0), (0.95, 0.9), (0.8, 0.6), (0.5, 0.9)])
def test_swap_werner_pairs(formalism, f1, f2):
    expected = f1 * f2 + (1 - f1) * (1 - f2) / 3
    for seed in range(8):
        eng = QuantumEngine(np.random.default_rng(seed))
        a0, a1 = eng.bell_pair(0, f1, formalism)
        b0, b1 = eng.bell_pair(0, f2, formalism)
        m = eng.bsm(a1, b0)
        assert eng.formalism_of(a0) == formalism
        assert eng.group_members(a0) == (a0, b1)
        if m >> 1:
            eng.x(b1)
        if m & 1:
            eng.z(b1)
        assert eng.bell_fidelity(a0, b1) == pytest.approx(expected, abs=ATOL)
        assert eng.num_live_qubits == 2 and eng.num_groups == 1


def test_dm_swap_conditional_state_matches_bd_formula():
    # For each sampled outcome the dm engine's uncorrected outer state equals
    # swap_bell_diagonal exactly, including zero Bell-basis coherences.
    rng = np.random.default_rng(17)
    seen = set()
    for seed in range(20):
        A = BellDiagonal(rng.dirichlet(np.ones(4)))
        B = BellDiagonal(rng.dirichlet(np.ones(4)))
        eng = QuantumEngine(np.random.default_rng(seed))
        a0, a1 = eng.bell_pair_from(A, "dm")
        b0, b1 = eng.bell_pair_from(B, "dm")
        m = eng.bsm(a1, b0)
        seen.add(m)
        np.testing.assert_allclose(eng.density_matrix([a0, b1]),
                                   swap_bell_diagonal(A, B, m).to_density_matrix(), atol=ATOL)
    assert seen == {0, 1, 2, 3}


def test_same_seed_same_outcomes_in_both_formalisms():
    # The bd fast path draws the same single uniform per BSM as the dm path,
    # so a repeater chain gives the same outcome sequence in both.
    def chain(formalism):
        eng = QuantumEngine(np.random.default_rng(99))
        pairs = [eng.bell_pair(0, 0.97, formalism) for _ in range(6)]
        left = pairs[0][0]
        right = pairs[0][1]
        out = []
        for a, b in pairs[1:]:
            out.append(eng.bsm(right, a))
            right = b
        return out, eng.bell_fidelity(left, right, 0)

    (m_dm, f_dm), (m_bd, f_bd) = chain("dm"), chain("bd")
    assert m_dm == m_bd
    assert f_dm == pytest.approx(f_bd, abs=1e-10)


def test_bd_converts_transparently():
    eng = QuantumEngine(np.random.default_rng(18))
    a, b = eng.bell_pair(0, 0.9, "bd")
    eng.x(a)
    eng.depolarize(b, 0.1)
    assert eng.formalism_of(a) == "bd"
    # X turns Phi+ into Psi+; depolarising p gives (1-p)F + p/4.
    assert eng.bell_diagonal_of(a).fidelity(2) == pytest.approx(0.9 * 0.9 + 0.1 / 4, abs=ATOL)
    expected = eng.density_matrix([a, b])  # reading does not convert
    assert eng.formalism_of(a) == "bd"
    eng.h(a)
    assert eng.formalism_of(a) == "dm" and eng.formalism_of(b) == "dm"
    eng.h(a)
    np.testing.assert_allclose(eng.density_matrix([a, b]), expected, atol=ATOL)
    # discarding one half of a bd pair leaves I/2
    c, d = eng.bell_pair(1, 0.8, "bd")
    c.discard()
    np.testing.assert_allclose(eng.density_matrix(d), np.eye(2) / 2, atol=ATOL)


def test_from_density_matrix_bd_holds_its_family_and_refuses_the_rest():
    """|00> is in the bd family (Bell coefficients (1/2, 1/2, 0, 0) plus
    polarisation (1, 1)): held exactly. |+0> has coherences between |00> and
    |10>, outside it: refused, and with twirl=True its Bell twirl, which is
    I/4 (|<B|+0>|^2 = 1/4 for each Bell state)."""
    eng = QuantumEngine(0)
    a, b = eng.from_density_matrix(st.dm(st.ket("00")), formalism="bd")
    assert eng.formalism_of(a) == "bd"
    np.testing.assert_allclose(eng.density_matrix([a, b]), st.dm(st.ket("00")), atol=ATOL)
    plus0 = st.dm(st.ket("+0"))
    with pytest.raises(ValueError, match="twirl=True"):
        eng.from_density_matrix(plus0, formalism="bd")
    a, b = eng.from_density_matrix(plus0, formalism="bd", twirl=True)
    assert eng.bell_diagonal_of(a).allclose(BellDiagonal([0.25] * 4))
    a, b = eng.from_density_matrix(st.dm(st.ket("00")), formalism="bd", twirl=True)
    assert eng.bell_diagonal_of(a).allclose(BellDiagonal([0.5, 0.5, 0, 0]))   # twirl asked: twirled
    with pytest.raises(ValueError):
        eng.from_density_matrix(st.dm(st.ket("000")), formalism="bd")
    with pytest.raises(ValueError):
        eng.from_density_matrix(np.diag([1.5, -0.5]))


def test_plus_theta_and_from_ket():
    eng = QuantumEngine(0)
    q = eng.plus_theta(0.6)
    assert eng.fidelity(q, st.plus_theta(0.6)) == pytest.approx(1.0, abs=ATOL)
    with pytest.raises(ValueError):
        eng.from_ket(np.array([1.0, 1.0]))


# -- noise ------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.0, 100.0, 1000.0, 5000.0])
def test_memory_decay_t1_t2(t):
    t1, t2 = 2000.0, 1500.0
    eng = QuantumEngine(0)
    plus = eng.from_ket(st.ket("+"))[0]
    eng.memory_decay(plus, t, t1, t2)
    assert abs(eng.density_matrix(plus)[0, 1]) == pytest.approx(0.5 * math.exp(-t / t2), abs=ATOL)
    one = eng.from_ket(st.ket("1"))[0]
    eng.memory_decay(one, t, t1, t2)
    assert eng.density_matrix(one)[1, 1].real == pytest.approx(math.exp(-t / t1), abs=ATOL)
    # In steps: decay composes (t/2 twice == t).
    half = eng.from_ket(st.ket("+"))[0]
    eng.memory_decay(half, t / 2, t1, t2)
    eng.memory_decay(half, t / 2, t1, t2)
    assert abs(eng.density_matrix(half)[0, 1]) == pytest.approx(0.5 * math.exp(-t / t2), abs=ATOL)


def test_memory_decay_refuses_t2_above_2t1():
    eng = QuantumEngine(0)
    q = eng.qubit()
    with pytest.raises(ValueError, match="T2"):
        eng.memory_decay(q, 10.0, 1000.0, 2500.0)
    eng.memory_decay(q, 10.0, math.inf, math.inf)
    eng.memory_decay(q, 10.0, math.inf, 500.0)


@pytest.mark.parametrize("t1", [math.inf, 3000.0])
def test_memory_decay_on_bd_pair(t1):
    # Both halves of a Phi+ pair wait (different times): the bd pair stays bd
    # and holds exactly the dm state, T1 finite or not; <XX> decays as
    # exp(-(t_a + t_b)/T2) (coherence factor exp(-t/T2) per half).
    ta, tb, t2 = 300.0, 800.0, 1200.0
    eng = QuantumEngine(0)
    a, b = eng.bell_pair(0, 1.0, "bd")
    eng.memory_decay(a, ta, t1, t2)
    eng.memory_decay(b, tb, t1, t2)
    assert eng.formalism_of(a) == "bd"
    c, d = eng.bell_pair(0, 1.0, "dm")
    eng.memory_decay(c, ta, t1, t2)
    eng.memory_decay(d, tb, t1, t2)
    np.testing.assert_allclose(eng.density_matrix([a, b]), eng.density_matrix([c, d]), atol=ATOL)
    xx = np.kron(g.X, g.X)
    assert np.trace(xx @ eng.density_matrix([a, b])).real == pytest.approx(
        math.exp(-(ta + tb) / t2), abs=ATOL)
    # Bell-diagonal only without T1 (relaxation polarises the halves along Z)
    assert (eng.bell_diagonal_of(a) is None) == math.isfinite(t1)


def test_pair_bell_fidelity_and_discard_of_a_half_match_the_general_formulas():
    # A random two-qubit state (a pair that is its whole group): bell_fidelity
    # in either order equals <B|rho|B>, and discarding either half leaves the
    # partial trace of rho
    rng = np.random.default_rng(7)
    m = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
    rho = m @ m.conj().T
    rho /= np.trace(rho).real
    eng = QuantumEngine(0)
    for k in range(4):
        a, b = eng.from_density_matrix(rho)
        v = st.bell_state(k)
        want = float(np.real(np.vdot(v, rho @ v)))
        assert eng.bell_fidelity(a, b, k) == pytest.approx(want, abs=ATOL)
        assert eng.bell_fidelity(b, a, k) == pytest.approx(want, abs=ATOL)
    for gone, kept in ((0, [1]), (1, [0])):
        pair = eng.from_density_matrix(rho)
        eng.discard(pair[gone])
        np.testing.assert_allclose(eng.density_matrix(pair[1 - gone]),
                                   st._ptrace(rho, 2, kept), atol=ATOL)


@pytest.mark.parametrize("formalism", ["bd", "dm"])
@pytest.mark.parametrize("t1", [math.inf, 3000.0])
def test_decayed_bell_fidelity_reads_without_decaying(formalism, t1):
    # decayed_bell_fidelity equals memory_decay on both halves then
    # bell_fidelity (every Bell index, unequal waits, a Werner pair), and the
    # state it read is unchanged. Without T1 also the closed form: a Werner
    # pair of fidelity F dephased with total coherence factor
    # c = exp(-(ta + tb)/T2) has F' = F - (1 - c)/2 (F - (1-F)/3).
    ta, tb, t2, f0 = 300.0, 800.0, 1200.0, 0.9
    eng = QuantumEngine(0)
    for bell in range(4):
        a, b = eng.bell_pair(bell, f0, formalism)
        before = eng.density_matrix([a, b])
        got = [eng.decayed_bell_fidelity(a, b, k, ta, tb, t1, t2) for k in range(4)]
        np.testing.assert_allclose(eng.density_matrix([a, b]), before, atol=0.0)
        eng.memory_decay(a, ta, t1, t2)
        eng.memory_decay(b, tb, t1, t2)
        want = [eng.bell_fidelity(a, b, k) for k in range(4)]
        np.testing.assert_allclose(got, want, atol=ATOL)
        if math.isinf(t1):
            c = math.exp(-(ta + tb) / t2)
            assert got[bell] == pytest.approx(f0 - (1 - c) / 2 * (f0 - (1 - f0) / 3), abs=ATOL)
    # the other memory's own T1/T2, and the order of the halves
    a, b = eng.bell_pair(2, f0, formalism)
    got = eng.decayed_bell_fidelity(b, a, 2, tb, ta, 5000.0, 4000.0, t1, t2)
    eng.memory_decay(b, tb, 5000.0, 4000.0)
    eng.memory_decay(a, ta, t1, t2)
    assert got == pytest.approx(eng.bell_fidelity(b, a, 2), abs=ATOL)
    with pytest.raises(ValueError):
        eng.decayed_bell_fidelity(a, b, 4, ta, tb, t1, t2)


@pytest.mark.parametrize("t1_s", [math.inf, 2.0])
def test_device_bell_fidelity_now_equals_update_then_read(t1_s):
    # QuantumDevice.bell_fidelity_now: the fidelity update() on both halves
    # (stored at different times, on two devices with their own T2) and
    # bell_fidelity would read, the devices' bookkeeping left as it was
    from qstack.physical.device import NodeHardware, QuantumDevice
    eng = QuantumEngine(0)
    hw_a = NodeHardware(num_qubits=2, t1_ns=t1_s * 1e9, t2_ns=1e9)
    hw_b = NodeHardware(num_qubits=2, t1_ns=math.inf, t2_ns=0.5e9)
    dev_a = QuantumDevice("a", eng, hw_a, np.random.default_rng(1))
    dev_b = QuantumDevice("b", eng, hw_b, np.random.default_rng(2))
    a, b = eng.bell_pair(3, 0.93, "bd")
    dev_a.store(a, 1_000)
    dev_b.store(b, 50_000_000)
    now = 300_000_000
    got = dev_a.bell_fidelity_now(a, dev_b, b, 3, now)
    assert got == pytest.approx(dev_b.bell_fidelity_now(b, dev_a, a, 3, now), abs=ATOL)
    dev_a.update(a, now)
    dev_b.update(b, now)
    assert got == pytest.approx(eng.bell_fidelity(a, b, 3), abs=ATOL)
    # update() is memory_decay with the device's T1/T2 over the wait
    c, d = eng.bell_pair(3, 0.93, "bd")
    eng.memory_decay(c, now - 1_000, hw_a.t1_ns, hw_a.t2_ns)
    eng.memory_decay(d, now - 50_000_000, hw_b.t1_ns, hw_b.t2_ns)
    np.testing.assert_allclose(eng.density_matrix([a, b]), eng.density_matrix([c, d]),
                               atol=ATOL)
    # once up to date there is nothing pending: the same value again
    assert dev_a.bell_fidelity_now(a, dev_b, b, 3, now) == pytest.approx(got, abs=ATOL)
    c = eng.qubit()
    with pytest.raises(Exception, match="not in this node's memory"):
        dev_a.bell_fidelity_now(c, dev_b, b, 3, now)


def test_apply_kraus_checks_and_acts():
    eng = QuantumEngine(0)
    a, b = eng.qubit(), eng.qubit()
    with pytest.raises(ValueError):
        eng.apply_kraus([np.eye(2) * 0.5], [a])
    eng.x(a)
    eng.amplitude_damp(a, 0.3)
    np.testing.assert_allclose(eng.density_matrix(a), np.diag([0.3, 0.7]), atol=ATOL)
    # a two-qubit channel: depolarise the pair jointly with probability p
    p = 0.4
    paulis2 = [np.kron(P, Q) for P in g.PAULIS for Q in g.PAULIS]
    kraus = [math.sqrt(1 - p + p / 16) * paulis2[0]] + [math.sqrt(p / 16) * m for m in paulis2[1:]]
    eng.apply_kraus(kraus, [a, b])
    expected = (1 - p) * np.kron(np.diag([0.3, 0.7]), np.diag([1, 0])) + p * np.eye(4) / 4
    np.testing.assert_allclose(eng.density_matrix([a, b]), expected, atol=ATOL)


def test_the_engine_draws_the_uniforms_one_call_each_would_give():
    # The engine draws its uniforms in blocks (numpy's random(n) yields the
    # doubles n calls of random() give): every draw, across block edges,
    # equals a per-call draw from a generator with the same seed, and a
    # generator assigned later starts its own stream from its start.
    from qstack.physical.engine import UNIFORM_BLOCK

    eng = QuantumEngine(np.random.default_rng(5))
    ref = np.random.default_rng(5)
    for _ in range(UNIFORM_BLOCK + 10):
        assert eng._uniform() == ref.random()
    eng.rng = np.random.default_rng(6)
    ref = np.random.default_rng(6)
    assert [eng._uniform() for _ in range(3)] == [ref.random() for _ in range(3)]
    # a swap of two Bell-diagonal pairs takes one draw: outcome int(4 u)
    eng = QuantumEngine(np.random.default_rng(7))
    ref = np.random.default_rng(7)
    pairs = [eng.bell_pair(0, 0.9, "bd") for _ in range(40)]
    right = pairs[0][1]
    for a, b in pairs[1:]:
        assert eng.bsm(right, a) == int(ref.random() * 4.0)
        right = b
