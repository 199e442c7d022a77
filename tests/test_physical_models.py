"""Physical-layer models against their closed forms: fibre, free space, detectors, memory, optics, sources."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qstack.physical.detectors import ThresholdDetector, non_paralysable_rate, squash
from qstack.physical.fibre import FibreChannel
from qstack.physical.freespace import EARTH_RADIUS_KM, FreeSpaceChannel, SatelliteDownlink, slant_range_km
from qstack.physical.memory import QuantumMemory
from qstack.physical.optics import FrequencyConverter, LinearOpticsBSM
from qstack.physical.sources import SinglePhotonSource, SPDCSource, WeakCoherentSource, poisson_pmf, thermal_pmf

C_KM_PER_S = 299_792.458


# ----------------------------------------------------------------- fibre
@pytest.mark.parametrize("alpha, length", [(0.2, 0.0), (0.2, 50.0), (0.2, 100.0), (0.16, 300.0), (0.35, 25.0)])
def test_fibre_transmissivity_is_ten_to_minus_alpha_l_over_ten(alpha, length):
    ch = FibreChannel(length_km=length, attenuation_db_per_km=alpha)
    # pure floating-point identity: relative tolerance at round-off level
    assert ch.transmissivity() == pytest.approx(10 ** (-alpha * length / 10), rel=1e-12)


def test_fibre_extra_losses_add_in_db():
    ch = FibreChannel(length_km=50, attenuation_db_per_km=0.2, insertion_loss_db=1.0,
                      connector_loss_db=0.5, n_connectors=2)
    assert ch.loss_db() == pytest.approx(10.0 + 1.0 + 1.0)
    assert ch.transmissivity() == pytest.approx(10 ** (-1.2), rel=1e-12)


def test_fibre_delay_is_length_times_group_index_over_c():
    ch = FibreChannel(length_km=50.0, group_index=1.468)
    # 50 km · 1.468 / 299 792.458 km/s = 244.836 µs
    assert ch.delay_ns() == pytest.approx(50.0 * 1.468 / C_KM_PER_S * 1e9, rel=1e-12)
    assert ch.delay_ns() == pytest.approx(244_836.0, abs=1.0)


def test_fibre_qubit_error_limits():
    assert FibreChannel().qubit_error_prob() == 0.0
    # fully depolarising after a long span -> error 1/2
    assert FibreChannel(length_km=1e3, depolarisation_prob_per_km=0.5).qubit_error_prob() == pytest.approx(0.5)
    # drift only: (1 − e^(−2σ²))/2 with σ² = d²L
    ch = FibreChannel(length_km=4.0, polarisation_drift_rad_per_sqrt_km=0.1)
    assert ch.qubit_error_prob() == pytest.approx(0.5 * (1 - math.exp(-2 * 0.01 * 4)))


@pytest.mark.parametrize("kwargs, field", [
    ({"length_km": -1.0}, "length_km"),
    ({"attenuation_db_per_km": -0.2}, "attenuation_db_per_km"),
    ({"group_index": 0.5}, "group_index"),
    ({"n_connectors": -1}, "n_connectors"),
    ({"depolarisation_prob_per_km": 1.5}, "depolarisation_prob_per_km"),
    ({"length_km": float("nan")}, "length_km"),
])
def test_fibre_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FibreChannel(**kwargs)


@given(st.floats(0, 500), st.floats(0, 500), st.floats(0.0, 1.0))
def test_fibre_transmissivity_is_a_probability_and_monotone_in_length(l1, l2, alpha):
    a, b = FibreChannel(length_km=min(l1, l2), attenuation_db_per_km=alpha), FibreChannel(
        length_km=max(l1, l2), attenuation_db_per_km=alpha)
    assert 0.0 <= b.transmissivity() <= a.transmissivity() <= 1.0
    assert a.delay_ns() <= b.delay_ns()


# ----------------------------------------------------------------- free space / satellite
def _closed_form_downlink(distance_km, wavelength_nm, d_tx, d_rx, jitter_urad, t_zenith, zenith_deg, extra_db,
                          divergence_urad=0.0):
    """The documented closed form, written out independently of the model code:
    beam radius from the divergence (or the diffraction limit), the exact mean
    capture over Gaussian pointing 1 - exp(-2r^2/(w^2 + 4 sigma^2)), the
    Kasten-Young air mass."""
    lam = wavelength_nm * 1e-9
    w0 = d_tx / 2
    theta = divergence_urad * 1e-6 / 2 if divergence_urad else lam / (math.pi * w0)
    L = distance_km * 1e3
    w = math.sqrt(w0**2 + (theta * L) ** 2)
    sigma = jitter_urad * 1e-6 * L
    geo = 1 - math.exp(-2 * (d_rx / 2) ** 2 / (w**2 + 4 * sigma**2))
    z = math.radians(zenith_deg)
    air = 1 / (math.cos(z) + 0.50572 * (96.07995 - zenith_deg) ** -1.6364)
    return geo * t_zenith ** air * 10 ** (-extra_db / 10)


# SatelliteDownlink's defaults (the Micius downlink of Yin et al., PRL 119, 200501 (2017))
_MICIUS = dict(wavelength_nm=810.0, d_tx=0.3, d_rx=1.2, jitter_urad=1.0, t_zenith=0.8, extra_db=17.2,
               divergence_urad=10.0)


@pytest.mark.parametrize("altitude", [500.0, 1200.0])
def test_leo_downlink_loss_matches_closed_form_at_zenith(altitude):
    link = SatelliteDownlink(altitude_km=altitude, elevation_deg=90.0)
    assert link.distance_km == pytest.approx(altitude, rel=1e-12)
    expect = _closed_form_downlink(altitude, zenith_deg=0.0, **_MICIUS)
    # same formula evaluated twice: agreement at round-off level
    assert link.transmissivity() == pytest.approx(expect, rel=1e-12)
    # the measured Micius figures themselves are checked in tests/test_physical_freespace.py


@pytest.mark.parametrize("altitude, elevation", [(500.0, 30.0), (1200.0, 25.0), (500.0, 10.0)])
def test_leo_downlink_slant_geometry_and_airmass(altitude, elevation):
    link = SatelliteDownlink(altitude_km=altitude, elevation_deg=elevation)
    # law of cosines in the Earth-centre / station / satellite triangle
    r = EARTH_RADIUS_KM
    d = link.distance_km
    assert (r + altitude) ** 2 == pytest.approx(r**2 + d**2 + 2 * r * d * math.sin(math.radians(elevation)), rel=1e-12)
    assert link.zenith_angle_deg == pytest.approx(90 - elevation)
    expect = _closed_form_downlink(d, zenith_deg=90 - elevation, **_MICIUS)
    assert link.transmissivity() == pytest.approx(expect, rel=1e-12)
    assert link.loss_db() > SatelliteDownlink(altitude_km=altitude).loss_db()


def test_slant_range_at_horizon():
    assert slant_range_km(500.0, 1e-9) == pytest.approx(math.sqrt((EARTH_RADIUS_KM + 500) ** 2 - EARTH_RADIUS_KM**2),
                                                         rel=1e-6)


def test_freespace_background_and_delay():
    ch = FreeSpaceChannel(distance_km=600.0, background_counts_per_s=1e3)
    assert ch.background_prob_per_gate(1.0) == pytest.approx(1 - math.exp(-1e-6))
    assert ch.delay_ns() == pytest.approx(600.0 / C_KM_PER_S * 1e9)


def test_freespace_validation():
    with pytest.raises(ValueError, match="zenith_transmittance"):
        FreeSpaceChannel(zenith_transmittance=1.2)
    with pytest.raises(ValueError, match="elevation_deg"):
        SatelliteDownlink(elevation_deg=0.0)
    with pytest.raises(ValueError, match="rx_aperture_m"):
        FreeSpaceChannel(rx_aperture_m=0.0)


@given(st.floats(1.0, 5000.0), st.floats(1.0, 5000.0), st.floats(0.0, 10.0))
def test_freespace_transmissivity_probability_and_monotone(d1, d2, jitter):
    a = FreeSpaceChannel(distance_km=min(d1, d2), pointing_jitter_urad=jitter)
    b = FreeSpaceChannel(distance_km=max(d1, d2), pointing_jitter_urad=jitter)
    assert 0.0 <= b.transmissivity() <= a.transmissivity() <= 1.0


# ----------------------------------------------------------------- detectors
def test_click_probability_formula():
    det = ThresholdDetector(efficiency=0.25, dark_count_prob_per_gate=1e-5)
    for mu in (0.0, 0.1, 1.0, 5.0):
        assert det.click_probability(mu) == pytest.approx(1 - (1 - 1e-5) * math.exp(-0.25 * mu), rel=1e-14)


def test_dead_time_gates_and_rate_formula():
    det = ThresholdDetector(dead_time_ns=50.0)
    assert det.dead_time_gates(1e9) == 50  # exactly 50 ns at 1 ns gates, no round-off to 51
    assert det.dead_time_gates(1.25e9) == 63  # 62.5 -> 63
    assert ThresholdDetector(dead_time_ns=0).dead_time_gates(1e9) == 0
    assert non_paralysable_rate(1e7, 100.0) == pytest.approx(1e7 / 2)


@pytest.mark.parametrize("mu, dead_ns", [(0.5, 100.0), (2.0, 20.0), (0.05, 500.0)])
def test_detector_click_rate_saturates_as_non_paralysable(mu, dead_ns):
    """Simulated click rate vs R_out = R_in/(1 + R_in τ), R_in = p·f (module convention D = τ·f)."""
    f = 1e9
    det = ThresholdDetector(efficiency=0.5, dark_count_prob_per_gate=1e-4, dead_time_ns=dead_ns)
    n = 2_000_000
    clicks = det.simulate_gated_clicks(mu, n, f, np.random.default_rng(7))
    p = float(det.click_probability(mu))
    expect = det.saturated_click_rate(p * f)
    got = clicks.sum() / n * f
    # clicks form a renewal process with cycle D + Geom(p): count variance ≈ n·var/mean³
    D = det.dead_time_gates(f)
    mean_c, var_c = D + 1 / p, (1 - p) / p**2
    sigma = math.sqrt(n * var_c / mean_c**3) / n * f
    assert abs(got - expect) < 5 * sigma
    # the dead time really bites (well below the unsaturated rate)
    assert got < 0.9 * p * f


def test_afterpulsing_adds_clicks_right_after_dead_time():
    f = 1e9
    det = ThresholdDetector(efficiency=0.5, dark_count_prob_per_gate=0.0, dead_time_ns=10.0, afterpulse_prob=0.3)
    clicks = det.simulate_gated_clicks(0.02, 500_000, f, np.random.default_rng(3))
    gaps = np.diff(np.flatnonzero(clicks))
    assert gaps.min() >= 11  # never inside the dead time
    # fraction of gaps exactly D+1: afterpulse (0.3) or a genuine click there: 1 − 0.7·(1 − p)
    p = float(det.click_probability(0.02))
    frac = np.mean(gaps == 11)
    expect = 1 - 0.7 * (1 - p)
    assert abs(frac - expect) < 5 * math.sqrt(expect * (1 - expect) / len(gaps))


def test_squashing_assigns_random_bit_to_double_clicks():
    c0 = np.array([0, 1, 0, 1, 1], bool)
    c1 = np.array([0, 0, 1, 1, 1], bool)
    out = squash(c0, c1, np.array([0.9, 0.9, 0.9, 0.2, 0.7]))
    assert out.tolist() == [-1, 0, 1, 1, 0]


def test_jitter_window_capture():
    det = ThresholdDetector(jitter_ps=100.0)
    sigma = 100.0 / 2.3548200450309493
    assert det.jitter_sigma_ps() == pytest.approx(sigma)
    assert det.window_capture_prob(2 * sigma) == pytest.approx(math.erf(1 / math.sqrt(2)))  # ±1σ = 68.3 %
    j = det.sample_jitter_ps(200_000, np.random.default_rng(1))
    assert np.std(j) == pytest.approx(sigma, rel=0.01)  # 200k samples: sd of the sd ≈ 0.16 %


def test_detector_presets_and_validation():
    apd = ThresholdDetector.ingaas_apd()
    assert 0.1 <= apd.efficiency <= 0.25 and apd.dark_count_prob_per_gate == pytest.approx(1e-6)
    assert ThresholdDetector.snspd().efficiency == pytest.approx(0.9)
    with pytest.raises(ValueError, match="efficiency"):
        ThresholdDetector(efficiency=1.1)
    with pytest.raises(ValueError, match="dead_time_ns"):
        ThresholdDetector(dead_time_ns=-1)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 50), st.floats(0, 50))
def test_click_probability_in_unit_interval_and_monotone(eff, pd, m1, m2):
    det = ThresholdDetector(efficiency=eff, dark_count_prob_per_gate=pd)
    lo, hi = det.click_probability(min(m1, m2)), det.click_probability(max(m1, m2))
    assert 0.0 <= lo <= hi <= 1.0
    assert lo >= pd - 1e-15


# ----------------------------------------------------------------- memory
class _FakeEngine:
    def __init__(self):
        self.calls = []

    def memory_decay(self, qubit, wait_ns, t1_ns, t2_ns):
        self.calls.append((qubit, wait_ns, t1_ns, t2_ns))


def test_memory_decay_goes_through_engine():
    mem = QuantumMemory(t1_ns=1e6, t2_ns=5e5)
    eng = _FakeEngine()
    mem.decay(eng, "q7", 1234.5)
    assert eng.calls == [("q7", 1234.5, 1e6, 5e5)]
    with pytest.raises(ValueError, match="wait_ns"):
        mem.decay(eng, "q7", -1.0)


def test_memory_t2_bound_and_cutoff():
    with pytest.raises(ValueError, match="t2_ns"):
        QuantumMemory(t1_ns=1e3, t2_ns=2.5e3)
    QuantumMemory(t1_ns=1e3, t2_ns=2e3)  # T2 = 2·T1 is allowed (pure relaxation limit)
    QuantumMemory(t1_ns=math.inf, t2_ns=1e9)
    m = QuantumMemory(cutoff_ns=1000.0)
    assert not m.expired(0.0, 1000.0) and m.expired(0.0, 1000.5)
    assert not QuantumMemory().expired(0.0, 1e30)
    assert m.max_wait_attempts(300.0) == 3
    with pytest.raises(ValueError, match="num_modes"):
        QuantumMemory(num_modes=0)


def test_memory_multiplexing_and_factors():
    m = QuantumMemory(num_modes=10, t1_ns=100.0, t2_ns=50.0, write_efficiency=0.8, read_efficiency=0.5)
    assert m.multiplexed_success_prob(0.1) == pytest.approx(1 - 0.9**10)
    assert m.storage_efficiency() == pytest.approx(0.4)
    assert m.amplitude_damping_prob(100.0) == pytest.approx(1 - math.exp(-1))
    assert m.coherence_factor(50.0) == pytest.approx(math.exp(-1))


# ----------------------------------------------------------------- optics
def test_ideal_bsm_success_half():
    bsm = LinearOpticsBSM(detector_efficiency=1.0, dark_count_prob_per_gate=0.0, visibility=1.0)
    assert bsm.success_probability() == pytest.approx(0.5)
    assert bsm.heralded_fidelity() == pytest.approx(1.0)


def test_bsm_efficiency_visibility_and_dark_counts():
    bsm = LinearOpticsBSM(detector_efficiency=0.8, dark_count_prob_per_gate=0.0, visibility=0.9)
    assert bsm.success_probability(0.5, 0.25) == pytest.approx(0.5 * 0.4 * 0.2)
    assert bsm.heralded_fidelity() == pytest.approx((1 + 0.9) / 2)
    pi, px, py, pz = bsm.pauli_error_probs()
    assert (px, py, pz) == pytest.approx((0.0, 0.0, 0.05))
    noisy = LinearOpticsBSM(detector_efficiency=0.8, dark_count_prob_per_gate=1e-3, visibility=0.9)
    # with heavy loss the dark counts make up a sizeable share of heralds and the fidelity drops
    assert noisy.heralded_fidelity(1e-2, 1e-2) < noisy.heralded_fidelity(1.0, 1.0) < 0.95
    # all photons lost: only dark-count heralds, maximally mixed
    assert noisy.heralded_fidelity(0.0, 0.0) == pytest.approx(0.25)
    p = 1e-3
    assert noisy.false_herald_probability(0.0, 0.0) == pytest.approx(4 * p * p * (1 - p) ** 2)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.5), st.floats(0, 1))
def test_bsm_probabilities_in_range(ea, eb, eff, pd, v):
    bsm = LinearOpticsBSM(detector_efficiency=eff, dark_count_prob_per_gate=pd, visibility=v)
    p = bsm.success_probability(ea, eb)
    assert 0.0 <= p <= 1.0
    probs = bsm.pauli_error_probs(ea, eb)
    assert all(0.0 <= q <= 1.0 for q in probs) and sum(probs) == pytest.approx(1.0)


def test_frequency_converter():
    fc = FrequencyConverter(efficiency=0.3, noise_photons_per_gate=1e-4)
    assert fc.output_mean_photons(1.0) == pytest.approx(0.3001)
    assert fc.signal_to_noise(0.01) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="noise_photons_per_gate"):
        FrequencyConverter(noise_photons_per_gate=-1)


# ----------------------------------------------------------------- sources
def test_poisson_and_thermal_pmfs():
    p = poisson_pmf(0.5, 40)
    assert p.sum() == pytest.approx(1.0) and (p * np.arange(41)).sum() == pytest.approx(0.5)
    lam = 0.1
    t = thermal_pmf(2 * lam, 60, modes=2)
    n = np.arange(61)
    # Ma, Fung & Lo (2007) Eq. (1): (n+1) λⁿ / (1+λ)^(n+2)
    assert t == pytest.approx((n + 1) * lam**n / (1 + lam) ** (n + 2), rel=1e-12)
    t1 = thermal_pmf(0.3, 80, modes=1)
    assert t1 == pytest.approx(0.3 ** np.arange(81) / 1.3 ** (np.arange(81) + 1), rel=1e-12)
    assert t1.sum() == pytest.approx(1.0)


def test_weak_coherent_source():
    s = WeakCoherentSource()
    assert s.n_classes == 3
    assert s.multi_photon_prob(0) == pytest.approx(1 - math.exp(-0.5) * 1.5)
    k = s.sample_classes(100_000, np.random.default_rng(0))
    assert np.bincount(k, minlength=3) / 1e5 == pytest.approx([0.8, 0.15, 0.05], abs=0.01)
    with pytest.raises(ValueError, match="class_probs"):
        WeakCoherentSource(class_probs=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="class_probs"):
        WeakCoherentSource(mean_photon_numbers=(0.5, 0.1), class_probs=(1.0,))


def test_single_photon_source():
    s = SinglePhotonSource(efficiency=0.5, multi_photon_prob=0.02)
    assert s.photon_number_pmf().sum() == pytest.approx(1.0)
    assert s.g2() == pytest.approx(2 * 0.01 / (0.49 + 0.02) ** 2)
    assert s.click_probability(1.0) == pytest.approx(0.5)


def test_spdc_sampling_matches_pmf():
    rng = np.random.default_rng(11)
    for src in (SPDCSource(mean_pair_number=0.4), SPDCSource(mean_pair_number=0.4, statistics="poisson"),
                SPDCSource(mean_pair_number=0.4, thermal_modes=1)):
        x = src.sample_pair_numbers(400_000, rng)
        emp = np.bincount(x, minlength=4)[:4] / x.size
        # 400k samples: binomial sd ≤ 8e-4; tolerance 5 sd
        assert emp == pytest.approx(src.pair_number_pmf(3), abs=4e-3)
    assert SPDCSource(mean_pair_number=0.1).multi_pair_prob() > SPDCSource(
        mean_pair_number=0.1, statistics="poisson").multi_pair_prob()  # thermal bunching


@pytest.mark.parametrize("mu, eta_a, eta_b, pd", [(0.2, 0.3, 0.4, 1e-3), (1.0, 0.5, 0.2, 0.0), (0.05, 0.6, 0.6, 0.0)])
def test_spdc_multi_pair_qber_matches_closed_form(mu, eta_a, eta_b, pd):
    """Monte Carlo of the two-mode thermal entangled source with threshold detectors and
    squashing vs Ma, Fung & Lo (2007) Eqs. (9)–(10).

    Model: n pairs with P(n) = (n+1)λⁿ/(1+λ)^(n+2); in a matched basis the n-pair state
    Σ_m (−1)^m |n−m, m⟩_A |m, n−m⟩_B puts m uniform on 0..n; each photon is detected with
    η; each detector dark-clicks with pd.  With e_d = 0 every error comes from multi-pair
    emission and dark counts, so QBER > 0 grows with μ.
    """
    src = SPDCSource(mean_pair_number=mu)
    rng = np.random.default_rng(2024)
    N = 3_000_000
    n = src.sample_pair_numbers(N, rng)
    m = np.floor(rng.random(N) * (n + 1)).astype(np.int64)
    a0 = (rng.binomial(n - m, eta_a) > 0) | (rng.random(N) < pd)
    a1 = (rng.binomial(m, eta_a) > 0) | (rng.random(N) < pd)
    b1 = (rng.binomial(m, eta_b) > 0) | (rng.random(N) < pd)   # Bob's mode paired with Alice's 1
    b0 = (rng.binomial(n - m, eta_b) > 0) | (rng.random(N) < pd)
    abit = squash(a0, a1, rng.random(N))
    bbit = squash(b0, b1, rng.random(N))
    coinc = (abit >= 0) & (bbit >= 0)
    q_sim = coinc.mean()
    e_sim = np.mean(abit[coinc] != bbit[coinc])
    y0 = 1 - (1 - pd) ** 2
    q, e = src.entangled_qkd_gain_qber(eta_a, eta_b, y0, y0, 0.0)
    # binomial tolerances, 5 sd
    assert abs(q_sim - q) < 5 * math.sqrt(q * (1 - q) / N)
    assert abs(e_sim - e) < 5 * math.sqrt(e * (1 - e) / coinc.sum())
    assert e > 0.0
    # the multi-pair error grows with the pair number
    assert SPDCSource(mean_pair_number=2 * mu).entangled_qkd_gain_qber(eta_a, eta_b, y0, y0)[1] > e


def test_memory_decay_with_the_real_engine():
    """|1⟩ stored for T1 relaxes to population e^(−1) through the state engine."""
    from qstack.physical.engine import QuantumEngine
    eng = QuantumEngine(rng=0)
    q = eng.qubit()
    q.x()
    QuantumMemory(t1_ns=1000.0, t2_ns=1500.0).decay(eng, q, 1000.0)
    rho = q.density_matrix()
    assert rho[1, 1].real == pytest.approx(math.exp(-1.0), rel=1e-9)
