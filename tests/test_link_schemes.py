"""Closed forms of the heralding schemes (qstack.link.schemes).

Every expected value is written out here from the physics (with its source),
not taken from the model's own methods.

Tolerances: closed-form identities are checked to 1e-12 (they are algebra);
the photon-level Monte Carlo reference for single-click is compared within
5 binomial standard deviations (fixed seed, so the test is deterministic; 5
sigma keeps the false-alarm rate negligible should the seed change); memory
decay against the Kraus channel written out here to 1e-12 (4x4 products,
round-off ~1e-15).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from qstack.link.schemes import (
    DoubleClickModel, MidpointSourceModel, SenderReceiverModel, SingleClickModel, bell_fidelity,
    decayed_bell_fidelity,
)
from qstack.physical.detectors import ThresholdDetector
from qstack.physical.fibre import FibreChannel
from qstack.physical.sources import SPDCSource
from qstack.physical.states import is_valid_density_matrix

IDEAL_DET = ThresholdDetector(efficiency=1.0, dark_count_prob_per_gate=0.0)
ALL = [SingleClickModel(), DoubleClickModel(), MidpointSourceModel(), SenderReceiverModel()]


@pytest.mark.parametrize("model", ALL, ids=lambda m: type(m).__name__)
def test_states_valid_and_fidelity_consistent(model):
    for b in range(4):
        rho = model.heralded_state(0.05, b)
        assert is_valid_density_matrix(rho)
        assert bell_fidelity(rho, b) == pytest.approx(model.fidelity(0.05), abs=1e-12)
    assert 0 < model.success_probability(0.05) < 1
    if not isinstance(model, MidpointSourceModel):   # the midpoint source pulses pipelined
        assert model.cycle_ns(0.05) >= max(model.herald_delay_ns(0), model.herald_delay_ns(1))
    assert model.classical_delay_ns == round(FibreChannel(length_km=model.length_km).delay_ns())


def single_click_ideal(a, eta):
    """(F, p) of single-click heralding (Cabrillo et al., PRA 59, 1025 (1999)) with
    ideal detectors and indistinguishable photons, bright-state population a,
    per-arm efficiency eta. One click heralds: exactly one spin bright and its
    photon detected, 2 a (1-a) eta, which gives Psi+-; or both bright (a^2) and
    at least one of the two photons detected (1 - (1-eta)^2: they bunch into one
    detector, so it is still one click), which gives |11>. So
    p = 2 a eta - a^2 eta^2 = 2 a eta (1 - a eta/2) and F = 2 a (1-a) eta / p
    = (1-a) / (1 - a eta/2)."""
    p = 2 * a * eta * (1 - a * eta / 2)
    return 2 * a * (1 - a) * eta / p, p


def test_single_click_ideal_closed_form():
    m = SingleClickModel(length_km=20, detector=IDEAL_DET, visibility=1.0)
    eta = m.emission_efficiency * 10 ** (-0.2 * 10 / 10)
    assert m.eta == pytest.approx(eta, rel=1e-12)
    for a in (0.01, 0.1, 0.3):
        f, p = single_click_ideal(a, eta)
        assert m.fidelity(a) == pytest.approx(f, rel=1e-12)
        assert m.success_probability(a) == pytest.approx(p, rel=1e-12)
        assert m.fidelity(a) == pytest.approx(1 - a, abs=a * eta)   # "F ~ 1 - alpha"


def test_single_click_tradeoff_follows_alpha():
    m = SingleClickModel()
    alphas = np.linspace(0.02, 0.5, 25)
    f = [m.fidelity(a) for a in alphas]
    p = [m.success_probability(a) for a in alphas]
    assert all(np.diff(f) < 0) and all(np.diff(p) > 0)


def test_single_click_visibility_and_phase_reduce_coherence():
    a = 0.05
    for v, s in ((0.8, 0.0), (1.0, 0.3), (0.7, 0.2)):
        m = SingleClickModel(detector=IDEAL_DET, visibility=v, phase_noise_rad=s)
        rho = m.heralded_state(a, 2)
        coh = math.sqrt(v) * math.exp(-s * s / 2)
        # no dark counts: the |01>,|10> block is all photon-heralded, so
        # off-diagonal / diagonal is the mode overlap sqrt(V) e^(-s^2/2)
        assert rho[1, 2].real / rho[1, 1].real == pytest.approx(coh, rel=1e-9)


def test_single_click_matches_photon_level_monte_carlo():
    # reference: sample spins, photon loss, beam splitter (HOM bunching with
    # probability (1+V)/2) and dark counts per detector, attempt by attempt
    det = ThresholdDetector(efficiency=0.9, dark_count_prob_per_gate=0.02)
    m = SingleClickModel(length_km=2, emission_efficiency=0.6, detector=det, visibility=0.8)
    a, eta, pd, v = 0.2, m.eta, 0.02, 0.8
    rng = np.random.default_rng(7)
    n = 2_000_000
    sa, sb = rng.random(n) < a, rng.random(n) < a
    la, lb = sa & (rng.random(n) < eta), sb & (rng.random(n) < eta)
    plus = np.zeros(n, int)
    minus = np.zeros(n, int)
    one = la ^ lb
    to_plus = rng.random(n) < 0.5
    plus += one & to_plus
    minus += one & ~to_plus
    two = la & lb
    bunch = rng.random(n) < (1 + v) / 2
    plus += two & bunch & to_plus
    minus += two & bunch & ~to_plus
    plus += two & ~bunch
    minus += two & ~bunch
    cp = (plus > 0) | (rng.random(n) < pd)
    cm = (minus > 0) | (rng.random(n) < pd)
    herald = cp ^ cm
    p_mc = herald.mean()
    p = m.success_probability(a)
    assert abs(p_mc - p) < 5 * math.sqrt(p * (1 - p) / n)
    h = herald & cp                     # heralds of detector + (Psi+)
    rho = m.heralded_state(a, 2).real
    k = h.sum()
    for mask, expect in (((~sa) & (~sb), rho[0, 0]), (sa & sb, rho[3, 3]),
                         (sa ^ sb, rho[1, 1] + rho[2, 2])):
        got = (h & mask).sum() / k
        assert abs(got - expect) < 5 * math.sqrt(expect * (1 - expect) / k) + 1e-9


def test_double_click_ideal_is_eta_squared_over_two():
    # Barrett & Kok, PRA 71, 060310 (2005): one click in each of the two
    # rounds, p = eta^2 / 2 with eta the per-photon arrival probability (here
    # emission x fibre over half the span); photons of mode overlap V leave
    # F = (1 + V) / 2 (the distinguishable part carries no phase)
    m = DoubleClickModel(length_km=30, detector=IDEAL_DET, visibility=0.85)
    arr = m.emission_efficiency * 10 ** (-0.2 * 15 / 10)
    assert m.success_probability() == pytest.approx(arr * arr / 2, rel=1e-12)
    assert m.fidelity() == pytest.approx((1 + 0.85) / 2, rel=1e-12)


def test_double_click_dark_counts_lower_fidelity():
    clean = DoubleClickModel(length_km=100, visibility=1.0,
                             detector=ThresholdDetector(dark_count_prob_per_gate=0.0))
    dark = DoubleClickModel(length_km=100, visibility=1.0,
                            detector=ThresholdDetector(dark_count_prob_per_gate=1e-5))
    assert clean.fidelity() == pytest.approx(1.0)
    assert dark.fidelity() < 0.999 and dark.success_probability() > clean.success_probability()


def test_midpoint_source_multi_pair_closed_form():
    # Poisson source, no false heralds: P_good/P_succ -> 1 - O(mu); fidelity
    # falls with mu because of multi-pair emission. Given n pairs, each memory
    # absorbs at least one of its n photons with 1 - (1-t)^n, and the two kept
    # photons come from the same pair with 1/n (each end keeps one at random);
    # a pair from different emissions is uncorrelated, F = 1/4 (derived here;
    # multi-pair emission as the error of SPDC-based links: Sangouard et al.,
    # Rev. Mod. Phys. 83, 33 (2011)).
    fs = []
    for mu in (0.001, 0.01, 0.1, 0.5):
        src = SPDCSource(mean_pair_number=mu, statistics="poisson")
        m = MidpointSourceModel(source=src, false_herald_prob=0.0, pair_fidelity=1.0)
        fs.append(m.fidelity())
        # per photon: coupled, through half the span (0.2 dB/km), absorbed
        t = src.heralding_efficiency * 10 ** (-0.2 * m.length_km / 2 / 10) * m.absorption_efficiency
        pn = np.array([math.exp(-mu) * mu ** k / math.factorial(k) for k in range(31)])
        k = np.arange(31)
        ps = float(np.sum(pn * (1 - (1 - t) ** k) ** 2))
        pg = float(np.sum(pn[1:] * (1 - (1 - t) ** k[1:]) ** 2 / k[1:]))
        assert m.success_probability() == pytest.approx(ps, rel=1e-9)
        assert m.fidelity() == pytest.approx(pg / ps + (1 - pg / ps) / 4, rel=1e-9)
    assert fs == sorted(fs, reverse=True) and fs[0] > 0.999


def test_sender_receiver_rate_and_timing():
    m = SenderReceiverModel(length_km=25, false_herald_prob=0.0, pair_fidelity=1.0)
    pt = m.emission_efficiency * 10 ** (-0.2 * 25 / 10) * m.absorption_efficiency
    assert m.success_probability() == pytest.approx(pt, rel=1e-12)
    assert m.fidelity() == pytest.approx(1.0)
    d = m.classical_delay_ns
    assert (m.herald_delay_ns(0), m.herald_delay_ns(1)) == (2 * d, d)
    assert m.cycle_ns() == m.attempt_ns + 2 * d


def test_decay_matches_t2_dephasing():
    # An ideal single-click herald (F0 on Psi+, the rest |11>) with pure
    # dephasing on both qubits for t: the Psi+ coherence decays as e^(-2t/T2)
    # and |11> stays outside Psi+-, so F = F0 (1 + e^(-2t/T2)) / 2
    m = SingleClickModel(detector=IDEAL_DET, visibility=1.0)
    a = 0.05
    f0, _ = single_click_ideal(a, m.emission_efficiency * 10 ** (-0.2 * m.length_km / 2 / 10))
    t, t2 = 3e5, 1e6
    f = decayed_bell_fidelity(m.heralded_state(a, 2), 2, (t, t), math.inf, t2)
    assert f == pytest.approx(f0 * (1 + math.exp(-2 * t / t2)) / 2, abs=1e-12)


# ---------------------------------------------------------------- memory decay of both halves

_ZM = np.diag([1.0, -1.0])


def memory_kraus(t, t1, t2):
    """T1/T2 decay over t written out: amplitude damping gamma = 1 - exp(-t/T1)
    (Kraus [[1, 0], [0, sqrt(1-gamma)]], [[0, sqrt(gamma)], [0, 0]]; Nielsen &
    Chuang sec. 8.3.5), then a Z flip with probability q, 1 - 2q = exp(-t/T2 +
    t/(2 T1)), so that coherences decay as exp(-t/T2) in all."""
    g = -math.expm1(-t / t1)
    ks = [np.array([[1, 0], [0, math.sqrt(1 - g)]]), np.array([[0, math.sqrt(g)], [0, 0]])]
    q = (1 - math.exp(-t / t2 + t / (2 * t1))) / 2
    return [math.sqrt(1 - q) * k for k in ks] + [math.sqrt(q) * _ZM @ k for k in ks]


def reference_decay(rho, waits, t1, t2):
    for side, t in enumerate(waits):
        out = np.zeros((4, 4), dtype=complex)
        for k in memory_kraus(t, t1, t2):
            big = np.kron(k, np.eye(2)) if side == 0 else np.kron(np.eye(2), k)
            out += big @ rho @ big.conj().T
        rho = out
    return rho


def test_decay_of_both_halves_closed_forms():
    """Amplitude damping of both halves, from the Kraus operators above, with
    gamma_i = 1 - exp(-t_i/T1) and coherence factor exp(-(t_0 + t_1)/T2):

    * Phi+: |00> keeps (1 + g0 g1)/2, |11> (1-g0)(1-g1)/2, so
      F = (2 - g0 - g1 + 2 g0 g1)/4 + exp(-(t0+t1)/T2)/2 (the g0 g1 term is
      what a Pauli twirl of the damping misses);
    * the double-click state (1+V)/2 Psi+ + (1-V)/2 Psi-: |01> and |10> decay
      with the other half's gamma, F = ((1-g1) + (1-g0))/4 + V exp(-(t0+t1)/T2)/2.
    """
    t1, t2, v = 1e6, 1.5e6, 0.85
    psi = DoubleClickModel(detector=IDEAL_DET, visibility=v).heralded_state(0.0, 2)
    phi = np.zeros((4, 4))
    phi[0, 0] = phi[0, 3] = phi[3, 0] = phi[3, 3] = 0.5
    for waits in ((t1, t1), (t1 / 2, t1 / 2), (2e5, 7e5), (0.0, 3e6)):
        g0, g1 = (-math.expm1(-t / t1) for t in waits)
        coh = math.exp(-sum(waits) / t2)
        f_phi = (2 - g0 - g1 + 2 * g0 * g1) / 4 + coh / 2
        f_psi = ((1 - g1) + (1 - g0)) / 4 + v * coh / 2
        assert decayed_bell_fidelity(phi, 0, waits, t1, t2) == pytest.approx(f_phi, abs=1e-12)
        assert decayed_bell_fidelity(psi, 2, waits, t1, t2) == pytest.approx(f_psi, abs=1e-12)
        assert bell_fidelity(reference_decay(phi, waits, t1, t2), 0) == pytest.approx(f_phi, abs=1e-12)


def _random_state(seed):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
    rho = m @ m.conj().T
    return rho / np.trace(rho)


@settings(max_examples=60, deadline=None)
@given(hs.integers(0, 2**32 - 1), hs.floats(1e3, 1e7), hs.floats(0.01, 1.0),
       hs.tuples(hs.floats(0.0, 3.0), hs.floats(0.0, 3.0)), hs.integers(0, 3))
def test_decayed_bell_fidelity_is_the_exact_channel(seed, t1, frac, waits, bell):
    """Any two-qubit state (random, or a single-click herald: neither is
    Bell-diagonal), any T1, T2 <= 2 T1, both halves waiting (in units of T1):
    the link layer's fidelity is the Kraus channel's, to 1e-12."""
    t2 = 2 * t1 * frac
    waits = (waits[0] * t1, waits[1] * t1)
    for rho in (_random_state(seed), SingleClickModel(visibility=0.8).heralded_state(0.1, 2)):
        expect = bell_fidelity(reference_decay(rho, waits, t1, t2), bell)
        assert decayed_bell_fidelity(rho, bell, waits, t1, t2) == pytest.approx(expect, abs=1e-12)


def test_bad_parameters_refused():
    with pytest.raises(ValueError):
        SingleClickModel(visibility=1.5)
    with pytest.raises(ValueError):
        SenderReceiverModel(bell_index=4)
