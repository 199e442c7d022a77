"""Closed forms of the heralding schemes (qstack.link.schemes).

Tolerances: closed-form identities are checked to 1e-12 (they are algebra);
the photon-level Monte Carlo reference for single-click is compared within
5 binomial standard deviations (fixed seed, so the test is deterministic; 5
sigma keeps the false-alarm rate negligible should the seed change).
"""
import math

import numpy as np
import pytest

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


def test_single_click_ideal_closed_form():
    # ideal detectors and photons: F = (1-a)/(1 - a eta/2) and p = 2 a eta (1 - a eta/2)
    m = SingleClickModel(length_km=20, detector=IDEAL_DET, visibility=1.0)
    eta = m.emission_efficiency * 10 ** (-0.2 * 10 / 10)
    assert m.eta == pytest.approx(eta, rel=1e-12)
    for a in (0.01, 0.1, 0.3):
        assert m.fidelity(a) == pytest.approx((1 - a) / (1 - a * eta / 2), rel=1e-12)
        assert m.success_probability(a) == pytest.approx(2 * a * eta * (1 - a * eta / 2), rel=1e-12)
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
    # falls with mu because of multi-pair emission
    fs = []
    for mu in (0.001, 0.01, 0.1, 0.5):
        m = MidpointSourceModel(source=SPDCSource(mean_pair_number=mu, statistics="poisson"),
                                false_herald_prob=0.0, pair_fidelity=1.0)
        fs.append(m.fidelity())
        t = m.t
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
    # Psi+ with pure dephasing on both qubits for t: coherence e^(-2t/T2)
    rho = SingleClickModel(detector=IDEAL_DET, visibility=1.0).heralded_state(1e-6, 2)
    t, t2 = 3e5, 1e6
    f = decayed_bell_fidelity(rho, 2, (t, t), math.inf, t2)
    assert f == pytest.approx((1 + math.exp(-2 * t / t2)) / 2, abs=1e-5)


def test_bad_parameters_refused():
    with pytest.raises(ValueError):
        SingleClickModel(visibility=1.5)
    with pytest.raises(ValueError):
        SenderReceiverModel(bell_index=4)
