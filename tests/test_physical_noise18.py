"""Noise the physical classes know, wired into the links (issue 18, part B).

Every expected value is written out here from the physics, with its source,
not taken from the model's own methods: detection windows (Gaussian jitter,
exponential wave packet, Poissonian dark counts), dead time and afterpulsing
at the attempt rate, double excitation and the frequency-offset phase of
single-click heralding, multi-photon emission in double-click heralding,
frequency-converter and Raman noise photons, and the dephasing of stored
qubits by entangling attempts.

Tolerances: closed-form identities to 1e-9 relative (algebra, and scipy's
erf/quadrature, good to ~1e-12); Monte Carlo references within 5 binomial
standard deviations (fixed seeds, so deterministic; 5 sigma keeps a false
alarm negligible should a seed change).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from qstack.config import network_from_dict
from qstack.core.errors import ConfigError
from qstack.link.schemes import DoubleClickModel, SingleClickModel, bell_fidelity
from qstack.physical import window as win
from qstack.physical.detectors import ThresholdDetector
from qstack.physical.device import NodeHardware, QuantumDevice
from qstack.physical.engine import QuantumEngine
from qstack.physical.fibre import FibreChannel
from qstack.physical.heralding import HeraldingStation
from qstack.physical.memory import QuantumMemory, attempt_dephasing_from_reset
from qstack.physical.ops import Entangle
from qstack.physical.optics import FrequencyConverter
from qstack.physical.pair_model import SimplePairModel
from tests import closed_forms

REL = 1e-9
FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))          # FWHM / sigma of a Gaussian
H_J_S, C_M_S = 6.62607015e-34, 299_792_458.0          # SI exact


def det(**kw) -> ThresholdDetector:
    """An ideal detector unless told otherwise (no dead time, no jitter)."""
    base = dict(efficiency=1.0, dark_count_prob_per_gate=0.0, dead_time_ns=0.0, jitter_ps=0.0)
    base.update(kw)
    return ThresholdDetector(**base)


# ------------------------------------------------------------------ 1. the window

def test_gaussian_jitter_capture_is_erf():
    """A window W centred on a Gaussian of rms sigma holds erf(W / (2 sqrt2 sigma))."""
    for fwhm_ps, w_ns in ((500.0, 0.3), (50.0, 0.05), (2000.0, 5.0)):
        sigma_ns = fwhm_ps / FWHM * 1e-3
        m = SingleClickModel(detector=det(jitter_ps=fwhm_ps), detection_window_ns=w_ns,
                             window_offset_ns=-w_ns / 2)
        assert m.capture() == pytest.approx(math.erf(w_ns / (2 * math.sqrt(2) * sigma_ns)),
                                            rel=REL)


def test_exponential_wave_packet_capture():
    """A window opening at the arrival holds 1 - exp(-W/tau) of an exponential wave packet."""
    for tau, w in ((12.0, 25.0), (12.0, 5.0), (1.0, 0.1)):
        m = SingleClickModel(detector=det(), detection_window_ns=w, photon_lifetime_ns=tau)
        assert m.capture() == pytest.approx(-math.expm1(-w / tau), rel=REL)


def test_jittered_wave_packet_capture_against_sampling():
    """Exponential emission plus Gaussian jitter: the share of sampled
    detection times in the window (5 binomial sigma)."""
    rng = np.random.default_rng(11)
    n = 400_000
    tau, sigma, w, t0 = 2.0, 0.8, 3.0, -0.5
    t = rng.exponential(tau, n) + rng.normal(0.0, sigma, n)
    got = np.mean((t >= t0) & (t <= t0 + w))
    m = SingleClickModel(detector=det(jitter_ps=sigma * 1e3 * FWHM), detection_window_ns=w,
                         window_offset_ns=t0, photon_lifetime_ns=tau)
    c = m.capture()
    assert abs(got - c) < 5 * math.sqrt(c * (1 - c) / n)


def test_window_dark_counts_make_the_heralds_without_light():
    """No light at all: a herald is one detector's dark count and not the
    other's, 2 p (1-p) with p = 1 - exp(-R W) (Poissonian dark counts)."""
    for rate, w in ((100.0, 20.0), (1e5, 1000.0)):
        m = SingleClickModel(emission_efficiency=0.0, detector=det(), detection_window_ns=w,
                             dark_count_rate_hz=rate)
        p = -math.expm1(-rate * w * 1e-9)
        assert m.success_probability(0.1) == pytest.approx(2 * p * (1 - p), rel=REL)
        d = DoubleClickModel(emission_efficiency=0.0, detector=det(), detection_window_ns=w,
                             dark_count_rate_hz=rate)
        # two valid-pattern clicks among four detector-rounds, the rest silent:
        # 4 of the 6 pairs are valid (Psi+ same detector twice, Psi- across)
        assert d.success_probability() == pytest.approx(4 * p * p * (1 - p) ** 2, rel=REL)


def test_window_trade_off_rate_against_dark_counts_and_jitter():
    """Longer windows: more of the wave packet (rate up), more dark counts
    (fidelity down); each point against the closed form with
    eta x capture and p = 1 - exp(-R W)."""
    tau, sigma_ps, rate, a = 12.0, 300.0, 2e4, 0.05
    rates, fids = [], []
    link = SingleClickModel(detector=det(jitter_ps=sigma_ps * FWHM), visibility=1.0,
                            photon_lifetime_ns=tau, dark_count_rate_hz=rate, length_km=0.0)
    for w, p_succ, fid in link.window_trade_off((2.0, 5.0, 10.0, 25.0, 50.0, 100.0), a):
        # jitter 300 ps against a 12 ns wave packet opening at the arrival
        sig = sigma_ps * 1e-3
        cap = (0.5 * math.erfc(-w / (sig * math.sqrt(2)))
               - math.exp(-w / tau + sig ** 2 / (2 * tau ** 2))
               * 0.5 * math.erfc(-(w / sig - sig / tau) / math.sqrt(2))
               - (0.5 - math.exp(sig ** 2 / (2 * tau ** 2)) * 0.5
                  * math.erfc((sig / tau) / math.sqrt(2))))
        eta = link.emission_efficiency * cap
        p = -math.expm1(-rate * w * 1e-9)
        ps, f = closed_forms.single_click(a, eta, p, 1.0, 1.0)
        assert p_succ == pytest.approx(ps, rel=1e-7)
        assert fid == pytest.approx(f, rel=1e-7)
        rates.append(ps)
        fids.append(f)
    assert all(np.diff(rates) > 0)
    assert all(np.diff(fids[2:]) < 0)      # past the wave packet, dark counts only cost


# ------------------------------------------------------------------ 2. single click

def test_double_excitation_costs_half_its_probability():
    """Ideal detectors, V = 1: F = (1-a)/(1 - a eta/2) x (1 - p2/2): the
    heralded coherence shrinks by (1 - p2) (Humphreys et al. 2018, Methods)."""
    for p2 in (0.0, 0.04, 0.2):
        m = SingleClickModel(detector=det(), visibility=1.0, double_excitation_prob=p2)
        for a in (0.05, 0.2):
            f0 = (1 - a) / (1 - a * m.eta / 2)
            assert m.fidelity(a) == pytest.approx(f0 * (1 - p2 / 2), rel=REL)
            rho = m.heralded_state(a, 2)           # the state, not only fidelity()
            assert rho[1, 2].real / rho[1, 1].real == pytest.approx(1 - p2, rel=REL)


@pytest.mark.parametrize("df_hz", [1e6, 5e6, 3e7])
def test_frequency_offset_phase_of_the_exponential_wave_packet(df_hz):
    """Detection at t gives the phase 2 pi df t; over an exponential wave
    packet (window 0..60 tau: truncation e^-60) the coherence shrinks by
    |1/(1 - 2 pi i df tau)| = 1/sqrt(1 + (2 pi df tau)^2)."""
    tau = 12.0
    m = SingleClickModel(detector=det(), visibility=1.0, detection_window_ns=60 * tau,
                         photon_lifetime_ns=tau, frequency_offset_hz=df_hz)
    expect = 1 / math.sqrt(1 + (2 * math.pi * df_hz * tau * 1e-9) ** 2)
    rho = m.heralded_state(0.1, 3)        # Psi-: the coherence is -overlap x weight
    assert -rho[1, 2].real / rho[1, 1].real == pytest.approx(expect, rel=1e-9)


def test_frequency_offset_phase_of_gaussian_jitter():
    """Jitter only, a wide centred window: exp(-(2 pi df sigma)^2 / 2)."""
    sigma_ns, df = 0.5, 2e8
    m = SingleClickModel(detector=det(jitter_ps=sigma_ns * 1e3 * FWHM), visibility=1.0,
                         detection_window_ns=20.0, window_offset_ns=-10.0,
                         frequency_offset_hz=df)
    rho = m.heralded_state(0.1, 2)
    expect = math.exp(-(2 * math.pi * df * sigma_ns * 1e-9) ** 2 / 2)
    assert rho[1, 2].real / rho[1, 1].real == pytest.approx(expect, rel=1e-8)


# ------------------------------------------------------------------ 3. dead time, afterpulses

@given(c=hs.floats(1e-4, 0.9), dead=hs.integers(0, 50))
@settings(max_examples=60, deadline=None)
def test_dead_time_at_the_attempt_rate_is_non_paralysable(c, dead):
    """Clicks per attempt c/(1 + c D): R/(1 + R tau) with R = c/T, tau = D T."""
    f_dead, f_arm, f_plain = win.detector_state_probs(c, dead, 0.0)
    assert f_dead + f_arm + f_plain == pytest.approx(1.0, rel=1e-12)
    # every click starts a renewal cycle, so clicks per attempt = armed share
    assert f_arm == pytest.approx(c / (1 + c * dead), rel=1e-9)


@pytest.mark.parametrize("c,dead,ap", [(0.05, 3, 0.0), (0.2, 1, 0.1), (0.02, 0, 0.3)])
def test_detector_states_match_the_gate_by_gate_detector(c, dead, ap):
    """ThresholdDetector.simulate_gated_clicks (gate = attempt) against the
    renewal shares: clicks per gate 1/L, L = D + 1 + (1 - c_a)/c (5 sigma,
    the clicks of a renewal process have variance below binomial)."""
    gate_hz = 1e5
    d = ThresholdDetector(efficiency=1.0, dark_count_prob_per_gate=0.0,
                          dead_time_ns=dead / gate_hz * 1e9, afterpulse_prob=ap)
    assert d.dead_time_gates(gate_hz) == win.dead_attempts(d.dead_time_ns, 1e9 / gate_hz)
    mu = -math.log(1 - c)                   # Poisson light giving click probability c
    n = 300_000
    clicks = d.simulate_gated_clicks(mu, n, gate_hz, np.random.default_rng(5)).mean()
    c_a = 1 - (1 - c) * (1 - ap)
    rate = 1 / (dead + 1 + (1 - c_a) / c)
    assert abs(clicks - rate) < 5 * math.sqrt(rate * (1 - rate) / n)


def test_single_click_dead_detectors_lose_heralds():
    """No dark counts, V = 1: a dead detector neither clicks nor vetoes.
    P = 2 l [2 coh + a^2 (eta(1-eta) + eta^2/2)], l the live share
    1 - D/L, L = D + 1/c, c = 1 - (1 - a eta/2)^2 (a live detector's clicks)."""
    a, dead_ns, attempt = 0.3, 25_000.0, 5_000
    m = SingleClickModel(detector=det(dead_time_ns=dead_ns), visibility=1.0,
                         emission_efficiency=0.5, attempt_ns=attempt, length_km=0.0,
                         detection_window_ns=1.0)      # detector timing needs a window
    eta = m.emission_efficiency
    d = math.floor(dead_ns / m.cycle_ns(a))
    assert d == 5
    c = 1 - (1 - a * eta / 2) ** 2
    live = 1 - d / (d + 1 / c)
    coh = a * (1 - a) * eta / 2
    # |11>: one photon detected at + (- may be live or dead: it gets none) or
    # two photons: both at + (1/2), or split with - dead (0: V = 1 never splits)
    w11 = a * a * (eta * (1 - eta) + eta * eta / 2)
    expect = 2 * live * (2 * coh + w11)
    assert m.success_probability(a) == pytest.approx(expect, rel=1e-9)
    assert m.fidelity(a) == pytest.approx(2 * coh / (2 * coh + w11), rel=1e-9)


def test_afterpulses_act_as_dark_counts_in_the_first_live_attempt():
    """No light, dark p, afterpulse q, no dead attempts: a detector's click
    probability averaged over attempts is f_arm (1 - (1-p)(1-q)) + f_plain p
    with f_arm = c/(...) from the renewal; a herald is one detector clicking,
    the other not (independent)."""
    q = 0.2
    p = -math.expm1(-1e6 * 10e-9)              # 1 MHz of dark counts in 10 ns
    m = SingleClickModel(emission_efficiency=0.0, detector=det(afterpulse_prob=q),
                         detection_window_ns=10.0, dark_count_rate_hz=1e6)
    c_a = 1 - (1 - p) * (1 - q)
    length = 1 + (1 - c_a) / p
    click = (1 / length) * c_a + ((1 - c_a) / p / length) * p
    assert m.success_probability(0.1) == pytest.approx(2 * click * (1 - click), rel=1e-9)


def test_double_click_dead_through_the_second_round():
    """A dead time of at least the round spacing: only Psi- (different
    detectors), eta^2/4 with ideal detectors."""
    m = DoubleClickModel(detector=det(dead_time_ns=6_000.0), attempt_ns=5_000, length_km=0.0,
                         emission_efficiency=0.4, detection_window_ns=1.0)
    assert m.success_probability() == pytest.approx(0.4 ** 2 / 4, rel=REL)
    assert m.heralded_bell_indices() == (3,)
    assert m.sample_bell_index(np.random.default_rng(0)) == 3
    live = DoubleClickModel(detector=det(dead_time_ns=4_000.0), attempt_ns=5_000, length_km=0.0,
                            emission_efficiency=0.4, detection_window_ns=1.0)
    assert live.success_probability() == pytest.approx(0.4 ** 2 / 2, rel=REL)
    # without a window the detectors' timing is ideal, as before issue 18
    off = DoubleClickModel(detector=det(dead_time_ns=6_000.0), attempt_ns=5_000, length_km=0.0,
                           emission_efficiency=0.4)
    assert off.success_probability() == pytest.approx(0.4 ** 2 / 2, rel=REL)


def test_double_click_window_capture():
    """Each round's photon is captured with the window's share: (eta c)^2 / 2."""
    tau, w = 12.0, 25.0
    m = DoubleClickModel(detector=det(), detection_window_ns=w, photon_lifetime_ns=tau,
                         length_km=0.0, emission_efficiency=0.3)
    c = -math.expm1(-w / tau)
    assert m.success_probability() == pytest.approx((0.3 * c) ** 2 / 2, rel=REL)


# ------------------------------------------------------------------ 4. g2 and converter noise

def test_double_click_multi_photon_emission_is_a_noise_click():
    """V = 1, no dark counts: each detector-round sees the second photons of
    both nodes (each emits once per attempt, in one of two rounds: m a / 2
    photons per detector and round), Poissonian. Herald: two clicks in a
    valid pattern, the other two silent; the genuine share w gives
    F = w + (1-w)/4 (Lutkenhaus et al., PRA 59, 3295 (1999) patterns,
    optics.LinearOpticsBSM docstring)."""
    a, mp = 0.5, 0.1
    m = DoubleClickModel(detector=det(), visibility=1.0, multi_photon_prob=mp, length_km=0.0,
                         emission_efficiency=a)
    p = -math.expm1(-mp * a / 2)
    q2 = (1 - p) ** 2
    true = 0.5 * a * a * q2
    false = (0.5 * a * a * 2 * p * q2 + (a * (1 - a) * 2) * 2 * p * q2
             + (1 - a) ** 2 * 4 * p * p * q2)
    w = true / (true + false)
    assert m.success_probability() == pytest.approx(true + false, rel=REL)
    assert m.fidelity() == pytest.approx(w + (1 - w) / 4, rel=REL)
    rho = m.heralded_state(0.0, 2)
    assert bell_fidelity(rho, 2) == pytest.approx(w + (1 - w) / 4, rel=REL)


def test_converter_noise_photons_reach_the_detectors():
    """FrequencyConverter noise per window at each node, through the arm's
    fibre, split over two detectors: mu = eta_d t_arm n per detector; with no
    signal a herald is 2 p (1-p), p = 1 - exp(-mu)."""
    conv = FrequencyConverter(efficiency=0.3, noise_photons_per_gate=2e-3)
    for scheme in (SingleClickModel, DoubleClickModel):
        m = scheme(emission_efficiency=0.0, detector=det(efficiency=0.8), length_km=20.0,
                   conversion_efficiency=conv.efficiency,
                   conversion_noise_photons=conv.output_mean_photons(0.0))
        mu = 0.8 * 10 ** (-0.2 * 10 / 10) * 2e-3
        p = -math.expm1(-mu)
        expect = 2 * p * (1 - p) if scheme is SingleClickModel else 4 * p * p * (1 - p) ** 2
        assert m.success_probability(0.1) == pytest.approx(expect, rel=REL)
    # and the converter's efficiency is the photon's: eta scales with it
    m1 = SingleClickModel(detector=det())
    m2 = SingleClickModel(detector=det(), conversion_efficiency=conv.efficiency)
    assert m2.eta == pytest.approx(m1.eta * 0.3, rel=REL)


# ------------------------------------------------------------------ 5. Raman

def test_raman_noise_power_closed_forms():
    """Eraerds et al., NJP 12, 063027 (2010): forward P e^(-aL) rho L dl,
    backward P rho dl (1 - e^(-2aL)) / (2a); a in 1/km."""
    f = FibreChannel(length_km=25.0, classical_power_mw=2.0, raman_coefficient_per_km_nm=3e-9)
    a = 0.2 * math.log(10) / 10
    fwd = 2e-3 * math.exp(-a * 25) * 3e-9 * 25 * 0.6
    bwd = 2e-3 * 3e-9 * 0.6 * (1 - math.exp(-2 * a * 25)) / (2 * a)
    assert f.raman_noise_power_w(0.6) == pytest.approx(fwd, rel=REL)
    assert f.raman_noise_power_w(0.6, counter_propagating=True) == pytest.approx(bwd, rel=REL)
    # lossless limit: both tend to P rho L dl
    f0 = FibreChannel(length_km=25.0, attenuation_db_per_km=0.0, classical_power_mw=2.0,
                      raman_coefficient_per_km_nm=3e-9)
    assert f0.raman_noise_power_w(0.6, True) == pytest.approx(2e-3 * 3e-9 * 25 * 0.6, rel=REL)
    # photons per window: P W / (h c / lambda)
    photons = fwd * 10e-9 / (H_J_S * C_M_S / 1550e-9)
    assert f.raman_noise_photons(10.0, 0.6, 1550.0) == pytest.approx(photons, rel=REL)


def test_raman_noise_reaches_the_link():
    """Single click with no signal: the Raman photons of both arms (each arm
    L/2, launch power P, forward), split over two detectors."""
    w, filt, lam = 10.0, 0.6, 1550.0
    fib = FibreChannel(classical_power_mw=0.1, raman_coefficient_per_km_nm=3e-9)
    m = SingleClickModel(emission_efficiency=0.0, detector=det(efficiency=0.7), fibre=fib,
                         length_km=20.0, detection_window_ns=w, raman_filter_nm=filt,
                         wavelength_nm=lam)
    a = 0.2 * math.log(10) / 10
    power = 1e-4 * math.exp(-a * 10) * 3e-9 * 10 * filt
    mu = 0.7 * power * w * 1e-9 / (H_J_S * C_M_S / (lam * 1e-9))
    p = -math.expm1(-mu)
    assert m.success_probability(0.1) == pytest.approx(2 * p * (1 - p), rel=REL)
    with pytest.raises(ValueError, match="without a detection window"):
        SingleClickModel(fibre=fib)                       # Raman needs a window to count in
    with pytest.raises(ValueError, match="raman_coefficient_per_km_nm is given too"):
        FibreChannel(classical_power_mw=1.0)              # no default coefficient


# ------------------------------------------------------------------ 6. attempts dephase memories

class _Clock:
    """Records what the station schedules (nothing fires on its own)."""

    def __init__(self):
        self.now = 0
        self.calls = []

    def schedule_at(self, t, fn, *args):
        self.calls.append((t, fn, args))
        return len(self.calls)

    def cancel(self, handle):
        pass


def _heralds(clock):
    # (one event may carry both ends' heralds when they fall at the same time)
    return [a for _, _, args in clock.calls for a in args if hasattr(a, "ok")]


@pytest.mark.parametrize("formalism", ["bd", "dm"])
def test_attempts_dephase_the_other_stored_qubits(formalism):
    """A pair a-b is stored; link b-c then makes N attempts. b's half of a-b
    picks up Z with probability (1 - (1-2p)^N)/2 (N independent flips), so a
    Phi+ pair keeps F = (1 + (1-2p)^N)/2; c's node (p = 0) and the new pair
    do not dephase. Read from the engine's state."""
    p = 0.01
    eng = QuantumEngine(1)
    hw = NodeHardware(t2_ns=math.inf, attempt_dephasing_prob=p)
    devs = {n: QuantumDevice(n, eng, hw if n == "b" else NodeHardware(t2_ns=math.inf),
                             np.random.default_rng(0)) for n in "abc"}
    clock = _Clock()
    ab = HeraldingStation(("a", "b"), SimplePairModel(1.0, 1.0, cycle_ns=1_000), eng,
                          (devs["a"], devs["b"]), clock, lambda *a: None,
                          np.random.default_rng(1), np.random.default_rng(2), formalism)
    ab.submit(0, "x", Entangle("b", 1, 1 << 62, 0.0))
    ab.submit(1, "y", Entangle("a", 1, 1 << 62, 0.0))
    qa, qb = (h.qubit for h in _heralds(clock))
    clock.now = 500
    bc = HeraldingStation(("b", "c"), SimplePairModel(0.003, 1.0, cycle_ns=1_000), eng,
                          (devs["b"], devs["c"]), clock, lambda *a: None,
                          np.random.default_rng(3), np.random.default_rng(4), formalism)
    bc.submit(0, "x", Entangle("c", 1, 1 << 62, 0.0))
    bc.submit(1, "y", Entangle("b", 1, 1 << 62, 0.0))
    herald = _heralds(clock)[-1]
    n = herald.attempts
    assert n > 10
    emitted = herald.emitted_ns
    # halfway: only the attempts made so far (first at 500, one per 1000 ns)
    half = 500 + (n // 2) * 1_000
    devs["b"].update(qb, half)
    k = n // 2 + 1
    assert eng.bell_fidelity(qa, qb, 0) == pytest.approx((1 + (1 - 2 * p) ** k) / 2, rel=1e-9)
    devs["b"].update(qb, emitted + 10_000)
    assert eng.bell_fidelity(qa, qb, 0) == pytest.approx((1 + (1 - 2 * p) ** n) / 2, rel=1e-9)
    assert QuantumMemory(attempt_dephasing_prob=p).attempt_coherence_factor(n) == \
        pytest.approx((1 - 2 * p) ** n, rel=1e-12)
    qb2, qc = _heralds(clock)[-2].qubit, herald.qubit
    devs["b"].update(qb2, emitted + 10_000)
    assert eng.bell_fidelity(qb2, qc, 0) == pytest.approx(1.0, abs=1e-12)


def test_cancelled_attempts_stop_dephasing():
    """Attempts cancelled at t: only those made by t count."""
    p = 0.02
    eng = QuantumEngine(1)
    hw = NodeHardware(t2_ns=math.inf, attempt_dephasing_prob=p)
    devs = [QuantumDevice(n, eng, hw, np.random.default_rng(0)) for n in "ab"]
    q = eng.bell_pair(0, formalism="dm")
    devs[0].store(q[0], 0)
    devs[1].store(q[1], 0)
    clock = _Clock()
    st = HeraldingStation(("a", "b"), SimplePairModel(1e-9, 1.0, cycle_ns=1_000), eng,
                          tuple(devs), clock, lambda *a: None, np.random.default_rng(1),
                          np.random.default_rng(2), "dm")
    clock.now = 100
    st.submit(0, "x", Entangle("b", 1, 1 << 62, 0.0))
    st.submit(1, "y", Entangle("a", 1, 1 << 62, 0.0))
    clock.now = 100 + 7 * 1_000 + 10          # attempts at 100, 1100, ..., 7100: 8 of them
    st.cancel(0, 1)
    for d, qq in zip(devs, q):
        d.update(qq, 10 ** 9)
    # both ends dephase (both nodes p): (1-2p)^8 on each side
    assert eng.bell_fidelity(q[0], q[1], 0) == pytest.approx((1 + (1 - 2 * p) ** 16) / 2,
                                                             rel=1e-9)


def test_nuclear_dephasing_per_attempt_from_the_reset_time():
    """Kalb et al., PRA 97, 062330 (2018): phase dw t over an exponential
    reset time: coherence 1/sqrt(1 + (dw tau)^2); carbon C2 of their Table I
    (dw = 2 pi 77 kHz) and tau = 163 ns give p ~ 1.5e-3 per attempt."""
    x = 2 * math.pi * 77e3 * 163e-9
    p = attempt_dephasing_from_reset(77e3, 163.0)
    assert 1 - 2 * p == pytest.approx(1 / math.sqrt(1 + x * x), rel=1e-12)
    assert 1.4e-3 < p < 1.6e-3


# ------------------------------------------------------------------ 7. the network file

def test_noise_keys_from_the_network_file():
    spec = network_from_dict({
        "nodes": {"a": {"attempt_dephasing_prob": 0.001}, "b": {}},
        "links": [{"nodes": ["a", "b"], "scheme": "single-click", "detection_window_ns": 25,
                   "photon_lifetime_ns": 12, "dark_count_rate_hz": 20,
                   "double_excitation_prob": 0.04, "frequency_offset_hz": 1e6,
                   "detector_jitter_ps": 300, "detector_dead_time_ns": 100,
                   "detector_afterpulse_prob": 0.01, "classical_power_mw": 0.01,
                   "raman_coefficient_per_km_nm": 3e-9, "conversion_noise_photons": 1e-6}]})
    m = spec.links[0].model
    assert spec.nodes["a"].hardware.attempt_dephasing_prob == 0.001
    assert (m.detection_window_ns, m.double_excitation_prob, m.detector.jitter_ps,
            m.fibre.classical_power_mw) == (25.0, 0.04, 300.0, 0.01)
    # off by default: a plain link's figures are what they were
    plain = network_from_dict({"nodes": ["a", "b"], "links": [
        {"nodes": ["a", "b"], "scheme": "single-click"}]}).links[0].model
    assert plain.success_probability(0.1) == SingleClickModel().success_probability(0.1)


@pytest.mark.parametrize("where,key,value,says", [
    ("node", "attempt_dephasing_prob", 0.7, "expected a probability in [0, 0.5] per attempt"),
    ("link", "detection_window_ns", -1, "expected a finite number >= 0, got -1"),
    ("link", "double_excitation_prob", 1.5, "expected a probability in [0, 1], got 1.5"),
    ("link", "detector_dead_time_ns", -5, "expected a dead time in ns >= 0, got -5"),
    ("link", "frequency_offset_hz", 1e6, "expected 0 without a detection window"),
])
def test_noise_keys_refused_in_the_users_words(where, key, value, says):
    nodes = {"a": {key: value} if where == "node" else {}, "b": {}}
    link = {"nodes": ["a", "b"], "scheme": "single-click"}
    if where == "link":
        link[key] = value
    with pytest.raises(ConfigError) as err:
        network_from_dict({"nodes": nodes, "links": [link]})
    assert key in str(err.value) and says in str(err.value)


@pytest.mark.parametrize("extra,says", [
    ({}, "expected 0 unless raman_coefficient_per_km_nm is given too"),
    ({"raman_coefficient_per_km_nm": 3e-9}, "expected 0 without a detection window"),
])
def test_raman_power_refused_without_what_it_needs(extra, says):
    with pytest.raises(ConfigError) as err:
        network_from_dict({"nodes": ["a", "b"], "links": [
            {"nodes": ["a", "b"], "scheme": "double-click", "classical_power_mw": 1.0, **extra}]})
    assert "links[0].classical_power_mw" in str(err.value) and says in str(err.value)


def test_raman_keys_refused_where_no_detector_counts_them():
    with pytest.raises(ConfigError, match="no midpoint detectors"):
        network_from_dict({"nodes": ["a", "b"], "links": [
            {"nodes": ["a", "b"], "scheme": "sender-receiver", "classical_power_mw": 1.0,
             "raman_coefficient_per_km_nm": 3e-9}]})


NOISY = dict(detector=ThresholdDetector(efficiency=0.8, dead_time_ns=12_000.0, jitter_ps=400.0,
                                        afterpulse_prob=0.05),
             detection_window_ns=30.0, window_offset_ns=-1.0, photon_lifetime_ns=12.0,
             dark_count_rate_hz=3e4, conversion_efficiency=0.4, conversion_noise_photons=1e-3,
             fibre=FibreChannel(classical_power_mw=0.01, raman_coefficient_per_km_nm=3e-9),
             length_km=5.0)


@pytest.mark.parametrize("model", [
    SingleClickModel(double_excitation_prob=0.04, frequency_offset_hz=3e6, **NOISY),
    DoubleClickModel(multi_photon_prob=0.02, **NOISY)], ids=["single", "double"])
@pytest.mark.parametrize("formalism", ["bd", "dm"])
def test_noisy_links_make_the_state_they_describe(model, formalism):
    """Every term on at once: the heralded state is a state, its Bell
    fidelity is fidelity(), and the pair the station makes holds it (read
    back from the engine, 1e-12)."""
    a = 0.1
    for b in model.heralded_bell_indices():
        rho = model.heralded_state(a, b)
        assert np.all(np.linalg.eigvalsh(rho) > -1e-12) and np.trace(rho).real == \
            pytest.approx(1.0, abs=1e-12)
        assert bell_fidelity(rho, b) == pytest.approx(model.fidelity(a), abs=1e-12)
    eng = QuantumEngine(0)
    devs = tuple(QuantumDevice(n, eng, NodeHardware(t2_ns=math.inf), np.random.default_rng(0))
                 for n in "ab")
    clock = _Clock()
    st = HeraldingStation(("a", "b"), model, eng, devs, clock, lambda *x: None,
                          np.random.default_rng(1), np.random.default_rng(2), formalism)
    st.submit(0, "x", Entangle("b", 1, 1 << 62, a))
    st.submit(1, "y", Entangle("a", 1, 1 << 62, a))
    h0, h1 = _heralds(clock)
    np.testing.assert_allclose(eng.density_matrix([h0.qubit, h1.qubit]),
                               model.heralded_state(a, h0.bell_index), atol=1e-12, rtol=0)


@given(w=hs.floats(0.5, 200.0), rate=hs.floats(0.0, 1e6), p2=hs.floats(0.0, 1.0),
       df=hs.floats(0.0, 1e8), dead=hs.floats(0.0, 3e4), ap=hs.floats(0.0, 0.5),
       noise=hs.floats(0.0, 0.05), a=hs.floats(1e-4, 0.5))
@settings(max_examples=40, deadline=None)
def test_single_click_noise_gives_a_state_and_costs_fidelity(w, rate, p2, df, dead, ap, noise,
                                                             a):
    """Whatever the noise: a density matrix whose Bell fidelity is
    fidelity(), a probability of success, and no more fidelity than the same
    link without double excitation and frequency offset (they only shrink
    the coherence)."""
    base = dict(detector=ThresholdDetector(dead_time_ns=dead, afterpulse_prob=ap),
                detection_window_ns=w, photon_lifetime_ns=12.0, dark_count_rate_hz=rate,
                conversion_noise_photons=noise)
    m = SingleClickModel(double_excitation_prob=p2, frequency_offset_hz=df, **base)
    rho = m.heralded_state(a, 2)
    assert np.all(np.linalg.eigvalsh(rho) > -1e-12)
    assert np.trace(rho).real == pytest.approx(1.0, abs=1e-12)
    assert bell_fidelity(rho, 2) == pytest.approx(m.fidelity(a), abs=1e-12)
    assert 0.0 <= m.success_probability(a) <= 1.0
    assert m.fidelity(a) <= SingleClickModel(**base).fidelity(a) + 1e-12


def _single_click_attempts(a, eta, v, p, q, dead, chains, steps, seed):
    """Photon-level reference: single-click attempts run back to back, each
    detector remembering its history (dead for ``dead`` attempts after a
    click, then armed: afterpulse with probability q in its first live
    attempt). Returns (heralds per attempt, (p00, p01+p10, p11) of the +
    heralds, attempts counted)."""
    rng = np.random.default_rng(seed)
    dead_left = np.zeros((2, chains), int)
    armed = np.zeros((2, chains), bool)
    heralds, counted, pops = 0, 0, np.zeros(3)
    for t in range(steps):
        sa, sb = rng.random(chains) < a, rng.random(chains) < a
        la, lb = sa & (rng.random(chains) < eta), sb & (rng.random(chains) < eta)
        photons = np.zeros((2, chains), int)
        one, two = la ^ lb, la & lb
        to0, bunch = rng.random(chains) < 0.5, rng.random(chains) < (1 + v) / 2
        photons[0] += (one | (two & bunch)) & to0
        photons[1] += (one | (two & bunch)) & ~to0
        photons += two & ~bunch                     # split: one at each detector
        live = dead_left == 0
        click = live & ((photons > 0) | (rng.random((2, chains)) < p)
                        | (armed & (rng.random((2, chains)) < q)))
        herald = click[0] ^ click[1]
        if t >= steps // 5:                         # past the start-up transient
            heralds += herald.sum()
            counted += chains
            hp = herald & click[0]
            pops += [(hp & ~sa & ~sb).sum(), (hp & (sa ^ sb)).sum(), (hp & sa & sb).sum()]
        dead_left = np.where(click, dead, np.where(live, 0, dead_left - 1))
        armed = click | (armed & ~live)
    return heralds / counted, pops / pops.sum(), counted


@pytest.mark.parametrize("a,eta,v,p,q,dead", [
    (0.3, 0.5, 0.9, 0.01, 0.0, 2), (0.3, 0.5, 0.9, 0.01, 0.2, 0), (0.2, 0.6, 0.8, 0.02, 0.1, 3)])
def test_single_click_dead_time_and_afterpulses_against_attempt_sequences(a, eta, v, p, q, dead):
    """The mean field (each detector's dead/armed/plain shares, the two taken
    as independent) against attempts run back to back with each detector's
    history. Tolerance: 5 binomial sigma plus c^2, c the plain click
    probability per attempt (0.13-0.15 here, far above any real link's): the
    mean field drops the correlation of the two detectors' histories, a
    second-order effect in c."""
    cycle = 5_000
    m = SingleClickModel(detector=det(dead_time_ns=dead * cycle + 0.5, afterpulse_prob=q),
                         emission_efficiency=eta, visibility=v, length_km=0.0, attempt_ns=cycle,
                         detection_window_ns=10.0, dark_count_rate_hz=-math.log(1 - p) / 10e-9)
    got, pops, n = _single_click_attempts(a, eta, v, p, q, dead, 2_000, 400, seed=1)
    c = 1 - (1 - p) * (1 - a * eta / 2) ** 2
    ps = m.success_probability(a)
    assert abs(got / ps - 1) < 5 * math.sqrt((1 - ps) / (ps * n)) + c * c
    rho = m.heralded_state(a, 2).real
    for got_w, want in zip(pops, (rho[0, 0], rho[1, 1] + rho[2, 2], rho[3, 3])):
        k = got * n / 2
        assert abs(got_w - want) < 5 * math.sqrt(want * (1 - want) / k) + c * c
