"""Issue 18 (part A): the midpoint SPDC source's multi-pair state, the
sender-receiver link's polarisation drift, the BSM's bunched false herald,
and entanglement-based QKD with an SPDC source against Ma, Fung & Lo.

Expected values are computed here from the physics, independently of the
models: the n-pair state in Fock space (its two-photon reduced state), the
rotation averaged by Gauss-Hermite quadrature, the two-photon bunching
probabilities counted from the polarisation triplet/singlet.

Tolerances: closed forms and exact sums to 1e-12 (algebra; round-off
~1e-15); the engine's stored pair to 1e-9 (the bound the engine tests use:
a few dozen float operations); the midpoint link against Ma-Fung-Lo
within a relative t*mu, the size of what differs between a memory keeping
one photon and a detector pair squashing a double click (only when three or
more photons reach one end; measured ~0.05 t*mu and below), plus 1e-6
absolute for the cancellation in Ma-Fung-Lo's E*Q at tiny gains.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from qstack.link.schemes import MidpointSourceModel, SenderReceiverModel
from qstack.physical.fibre import FibreChannel
from qstack.physical.optics import LinearOpticsBSM
from qstack.physical.sources import SPDCSource
from qstack.physical.states import BELL_BASIS
from tests.test_link_egp import build
from qstack.link.service import CreateRequest


# ----------------------------------------------------------------- the n-pair state
def kept_pair_state(n: int) -> np.ndarray:
    """The state of one photon from each end of n pairs in one mode.

    Two-mode-squeezed polarisation pairs, type II: the n-pair component is
    (a_H+ b_V+ - a_V+ b_H+)^n |0> = sum_m C(n,m) (-1)^m (n-m)! m! |n-m, m>_A |m, n-m>_B,
    amplitude n! (-1)^m: uniform in m once normalised. One photon from each
    side: rho[(i,k),(j,l)] =
    <a_j+ a_i b_l+ b_k> / n^2 (the normalised two-body reduced state),
    computed here on the Fock amplitudes."""
    amps = {(n - m, m, m, n - m): (-1) ** m for m in range(n + 1)}   # (AH, AV, BH, BV)
    norm = math.sqrt(sum(v * v for v in amps.values()))
    amps = {k: v / norm for k, v in amps.items()}

    def lower(state, mode):
        c = state[mode]
        if c == 0:
            return None, 0.0
        s = list(state)
        s[mode] -= 1
        return tuple(s), math.sqrt(c)

    def raise_(state, mode):
        s = list(state)
        s[mode] += 1
        return tuple(s), math.sqrt(s[mode])

    rho = np.zeros((4, 4))
    for i in range(2):              # A: 0 H, 1 V (modes 0, 1)
        for j in range(2):
            for k in range(2):      # B: 0 H, 1 V (modes 2, 3)
                for l in range(2):
                    tot = 0.0
                    for st, amp in amps.items():
                        s1, c1 = lower(st, 2 + k)
                        if s1 is None:
                            continue
                        s2, c2 = raise_(s1, 2 + l)
                        s3, c3 = lower(s2, i)
                        if s3 is None:
                            continue
                        s4, c4 = raise_(s3, j)
                        tot += amps.get(s4, 0.0) * amp * c1 * c2 * c3 * c4
                    # <psi| a_j+ a_i b_l+ b_k |psi> sits at row (j,l), column (i,k)
                    rho[2 * j + l, 2 * i + k] += tot / n**2
    return rho


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_single_mode_n_pair_kept_state_is_werner_with_fidelity_n_plus_1_over_2n(n):
    rho = kept_pair_state(n)
    assert np.trace(rho) == pytest.approx(1.0, abs=1e-12)
    psi_minus = BELL_BASIS[:, 3]
    f = float(np.real(psi_minus.conj() @ rho @ psi_minus))
    assert f == pytest.approx((n + 1) / (2 * n), abs=1e-12)
    # Werner: the other three Bell states equally weighted
    for b in range(3):
        v = BELL_BASIS[:, b]
        assert float(np.real(v.conj() @ rho @ v)) == pytest.approx((1 - f) / 3, abs=1e-12)
    if n == 2:
        assert f == pytest.approx(0.750)      # issue 18: not the labelled (n+3)/(4n) = 0.625


def _closed_form_midpoint(model, weight):
    """(P_succ, F) of the midpoint source summed here: given n pairs each end
    absorbs >= 1 of its n photons with 1 - (1-t)^n (false heralds off), and the
    kept pair is the source's with weight weight(n)."""
    src = model.source
    t = src.heralding_efficiency * 10 ** (-0.2 * model.length_km / 2 / 10) * model.absorption_efficiency
    k = np.arange(model.n_max + 1)
    if src.statistics == "poisson":
        pn = np.array([math.exp(-src.mean_pair_number) * src.mean_pair_number ** j / math.factorial(j)
                       for j in k])
    else:   # two thermal modes: (n+1) lam^n / (1+lam)^(n+2), lam = mu/2 (Ma, Fung & Lo, Eq. (1))
        lam = src.mean_pair_number / 2
        pn = (k + 1) * lam ** k / (1 + lam) ** (k + 2)
    both = (1 - (1 - t) ** k) ** 2
    ps = float(np.sum(pn * both))
    pg = float(sum(pn[j] * both[j] * weight(j) for j in k[1:]))
    w = pg / ps
    return ps, w + (1 - w) / 4


@pytest.mark.parametrize("mu", [0.01, 0.1, 0.5])
def test_midpoint_source_follows_the_mode_structure(mu):
    thermal = MidpointSourceModel(source=SPDCSource(mean_pair_number=mu), false_herald_prob=0.0,
                                  pair_fidelity=1.0)
    poisson = MidpointSourceModel(source=SPDCSource(mean_pair_number=mu, statistics="poisson"),
                                  false_herald_prob=0.0, pair_fidelity=1.0)
    # weight of the pair: (4 F_n - 1)/3 with F_n from the Fock calculation above
    ps, f = _closed_form_midpoint(thermal, lambda n: (4 * (n + 1) / (2 * n) - 1) / 3)
    assert thermal.success_probability() == pytest.approx(ps, rel=1e-12)
    assert thermal.fidelity() == pytest.approx(f, rel=1e-12)
    ps, f = _closed_form_midpoint(poisson, lambda n: 1 / n)
    assert poisson.fidelity() == pytest.approx(f, rel=1e-12)


def test_midpoint_source_refuses_a_mode_structure_it_does_not_model():
    with pytest.raises(ValueError, match="thermal_modes"):
        MidpointSourceModel(source=SPDCSource(thermal_modes=1))


@pytest.mark.parametrize("mu", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("absorption", [0.001, 0.05, 0.5])
def test_midpoint_link_qber_agrees_with_ma_fung_lo(mu, absorption):
    """The link's implied QBER 2(1-F)/3 (Werner) against the entanglement-based
    QKD QBER of the same source from Ma, Fung & Lo, PRA 76, 012307 (2007),
    Eqs. (9)-(10), with eta = t per side, no dark counts, e_d = 0."""
    src = SPDCSource(mean_pair_number=mu)
    m = MidpointSourceModel(source=src, false_herald_prob=0.0, pair_fidelity=1.0,
                            absorption_efficiency=absorption)
    t = src.heralding_efficiency * 10 ** (-0.2 * m.length_km / 2 / 10) * absorption
    lam = mu / 2
    a = t * lam
    ab = 2 * a - t * t * lam
    q = 1 - 2 / (1 + a) ** 2 + 1 / (1 + ab) ** 2
    e_mfl = (0.5 * q - t * t * lam * (1 + lam) / ((1 + a) ** 2 * (1 + ab))) / q
    e_link = 2 * (1 - m.fidelity()) / 3
    assert e_link == pytest.approx(e_mfl, rel=t * mu, abs=1e-6)


def test_midpoint_issue_numbers_mu_0_1():
    """mu = 0.1, low efficiency: QBER lam/(1+3 lam) = 4.35 % (the eta -> 0 limit of
    Ma-Fung-Lo: E Q -> 2 lam^2 eta^2, Q -> (2 lam + 6 lam^2) eta^2), not the
    6.5 % of labelled pairs."""
    m = MidpointSourceModel(source=SPDCSource(mean_pair_number=0.1), false_herald_prob=0.0,
                            pair_fidelity=1.0, absorption_efficiency=1e-3)
    lam = 0.05
    e = 2 * (1 - m.fidelity()) / 3
    assert e == pytest.approx(lam / (1 + 3 * lam), rel=1e-3)    # t ~ 8e-4: O(t) off the limit
    assert round(100 * e, 1) == 4.3
    # labelled pairs on the same thermal source (the old model): error (n-1)/(2n)
    # per n, 1.5 times the (n-1)/(3n) of indistinguishable ones -> 6.5 %
    _, f_lab = _closed_form_midpoint(m, lambda n: 1 / n)
    assert round(100 * 2 * (1 - f_lab) / 3, 1) == 6.5


@settings(max_examples=40, deadline=None)
@given(hs.floats(1e-4, 1.0), hs.floats(1e-3, 1.0), hs.sampled_from(["thermal", "poisson"]))
def test_midpoint_fidelity_bounds_and_monotone_in_mu(mu, absorption, stats):
    """F in [1/4, 1] and falls as the pair number grows (more multi-pair
    emission), for both mode structures; indistinguishable pairs never do
    worse than labelled ones at the same pair-number distribution."""
    def f(m, s=stats):
        return MidpointSourceModel(source=SPDCSource(mean_pair_number=m, statistics=s),
                                   false_herald_prob=0.0, pair_fidelity=1.0,
                                   absorption_efficiency=absorption).fidelity()
    lo, hi = f(mu), f(mu / 2)
    assert 0.25 <= lo <= hi <= 1.0 + 1e-12
    if stats == "thermal":     # (n+1)/(2n) >= (n+3)/(4n) for every n >= 1
        m = MidpointSourceModel(source=SPDCSource(mean_pair_number=mu), false_herald_prob=0.0,
                                pair_fidelity=1.0, absorption_efficiency=absorption)
        assert lo >= _closed_form_midpoint(m, lambda n: 1 / n)[1] - 1e-12


# ----------------------------------------------------------------- sender-receiver drift
def rotated_pair_state(sigma: float) -> np.ndarray:
    """Phi+ with side 1 rotated by theta ~ N(0, sigma^2), R = [[c, -s], [s, c]]
    (flips Z and X with sin^2 theta, the fibre's drift), averaged by 80-point
    Gauss-Hermite quadrature (exact to round-off for these smooth integrands)."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    phi = BELL_BASIS[:, 0]
    rho = np.zeros((4, 4), dtype=complex)
    for xi, wi in zip(x, w):
        th = sigma * xi
        r = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        v = np.kron(np.eye(2), r) @ phi
        rho += wi * np.outer(v, v.conj())
    return rho


def test_sender_receiver_drift_is_a_rotation():
    """0.05 rad/sqrt(km) over 20 km: sigma^2 = 0.05, F = <cos^2 theta> =
    (1 + e^(-2 sigma^2))/2 = 0.9524 (the depolarising count gave 0.9286)."""
    fib = FibreChannel(length_km=20.0, polarisation_drift_rad_per_sqrt_km=0.05)
    m = SenderReceiverModel(length_km=20.0, fibre=fib, false_herald_prob=0.0, pair_fidelity=1.0)
    assert m.fidelity() == pytest.approx((1 + math.exp(-0.1)) / 2, abs=1e-12)
    assert round(m.fidelity(), 4) == 0.9524
    assert m.heralded_state(0.0, 0) == pytest.approx(rotated_pair_state(math.sqrt(0.05)), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(hs.floats(0.0, 0.3), hs.floats(1.0, 80.0), hs.floats(0.0, 0.01), hs.floats(0.5, 1.0))
def test_sender_receiver_rotation_then_depolarisation_general(drift, length, dep, f_pair):
    """Werner(F_pair) on Phi+, side 1 rotated (quadrature) then depolarised
    with q = 1 - (1-p)^L: every Bell coefficient."""
    fib = FibreChannel(length_km=length, polarisation_drift_rad_per_sqrt_km=drift,
                       depolarisation_prob_per_km=dep)
    m = SenderReceiverModel(length_km=length, fibre=fib, false_herald_prob=0.0, pair_fidelity=f_pair)
    rot = rotated_pair_state(drift * math.sqrt(length))
    q = 1 - (1 - dep) ** length
    c_rot = [float(np.real(BELL_BASIS[:, b].conj() @ rot @ BELL_BASIS[:, b])) for b in range(4)]
    # Werner(F) = F' Phi+ + (1-F')/4 I with F' = (4F-1)/3; the rotation keeps I/4
    fp = (4 * f_pair - 1) / 3
    expect = [(1 - q) * (fp * c + (1 - fp) / 4) + q / 4 for c in c_rot]
    got = m.heralded_state(0.0, 0)
    for b in range(4):
        v = BELL_BASIS[:, b]
        assert float(np.real(v.conj() @ got @ v)) == pytest.approx(expect[b], abs=1e-12)


@pytest.mark.parametrize("formalism", ["bd", "dm"])
def test_sender_receiver_link_stores_the_rotated_pair(formalism):
    """What the simulator stores (engine fidelity at delivery, infinite T1/T2)
    is the closed form, not only what fidelity() says."""
    fib = FibreChannel(length_km=20.0, polarisation_drift_rad_per_sqrt_km=0.05)
    m = SenderReceiverModel(length_km=20.0, fibre=fib, false_herald_prob=0.0, pair_fidelity=1.0)
    net, recs = build(m, formalism, probe=True)
    net.submit("a", CreateRequest("b", number=4, min_fidelity=0.5), to="link.egp")
    net.run()
    fids = recs["a"].fids + recs["b"].fids
    assert len(fids) == 4
    assert fids == pytest.approx([(1 + math.exp(-0.1)) / 2] * 4, abs=1e-9)


# ----------------------------------------------------------------- BSM bunched false herald
def test_bsm_bunched_photon_plus_dark_count():
    """Both photons in one detector (then one dark count in one of the two
    completing modes): 1/4 for distinguishable photons (same port 1/2, same
    polarisation 1/2), 1/2 for indistinguishable ones (the triplet, 3/4, always
    bunches and 2 of its 3 states are in one detector), (1+V)/4 between. So the
    term is eta_A eta_B p (1+V)/2 (1-p)^2, not eta_A eta_B p (1-p)^2."""
    p, ea, eb = 1e-3, 0.7, 0.4
    for v in (0.0, 0.5, 0.9, 1.0):
        bsm = LinearOpticsBSM(detector_efficiency=1.0, dark_count_prob_per_gate=p, visibility=v)
        q2 = (1 - p) ** 2
        bunched = ea * eb * p * (1 + v) / 2 * q2
        one = (ea * (1 - eb) + (1 - ea) * eb) * 2 * p * q2
        none = (1 - ea) * (1 - eb) * 4 * p * p * q2
        assert bsm.false_herald_probability(ea, eb) == pytest.approx(bunched + one + none, rel=1e-12)
    # V = 0.9: the issue's case, bunched term 0.95 of the old one
    old = ea * eb * p * (1 - p) ** 2
    bsm = LinearOpticsBSM(detector_efficiency=1.0, dark_count_prob_per_gate=p, visibility=0.9)
    one = (ea * (1 - eb) + (1 - ea) * eb) * 2 * p * (1 - p) ** 2
    none = (1 - ea) * (1 - eb) * 4 * p * p * (1 - p) ** 2
    assert bsm.false_herald_probability(ea, eb) - one - none == pytest.approx(0.95 * old, rel=1e-12)


# ----------------------------------------------------------------- a satellite midpoint source
def test_midpoint_arms_default_to_the_fibre_halves():
    fib = FibreChannel(length_km=5.0)
    a = MidpointSourceModel(false_herald_prob=1e-4)
    b = MidpointSourceModel(false_herald_prob=1e-4, arms=(fib, fib))
    assert b.success_probability() == pytest.approx(a.success_probability(), rel=1e-12)
    assert b.fidelity() == pytest.approx(a.fidelity(), rel=1e-12)
    assert (b.herald_delay_ns(0), b.herald_delay_ns(1)) == (a.herald_delay_ns(0), a.herald_delay_ns(1))


def test_two_downlink_source_with_daylight_background():
    """A satellite source sending to two ground stations (two SatelliteDownlink
    arms, 800 and 1200 km; a memory-less station: absorption 1, the downlink's
    loss includes detection). Per side t_s = coupling x T_s, background
    p_s = 1 - exp(-R_s w) in the window w, f_s = 1 - (1-f)(1-p_s);
    P_succ = sum P(n) h_0 h_1, h_s = 1 - (1-f_s)(1-t_s)^n; the good share uses
    [1-(1-t_0)^n][1-(1-t_1)^n](n+2)/(3n). Herald delay of a side: the later
    of its own photon and the other's plus the ground delay."""
    from qstack.physical.freespace import SatelliteDownlink

    src = SPDCSource(mean_pair_number=0.05)
    arms = (SatelliteDownlink.at_slant_range(800.0, sky_radiance_w_m2_sr_nm=2e-3),
            SatelliteDownlink.at_slant_range(1200.0, sky_radiance_w_m2_sr_nm=2e-3))
    m = MidpointSourceModel(source=src, length_km=1200.0, absorption_efficiency=1.0, false_herald_prob=1e-6,
                            pair_fidelity=0.97, arms=arms, background_window_ns=2.0)
    t = [0.8 * a.transmissivity() for a in arms]
    p_bg = [1 - math.exp(-a.background_rate_per_s() * 2e-9) for a in arms]
    f = [1 - (1 - 1e-6) * (1 - p) for p in p_bg]
    lam = 0.025
    k = np.arange(m.n_max + 1)
    pn = (k + 1) * lam ** k / (1 + lam) ** (k + 2)
    h = [1 - (1 - f[s]) * (1 - t[s]) ** k for s in (0, 1)]
    ps = float(np.sum(pn * h[0] * h[1]))
    k1 = np.maximum(k, 1)
    pg = float(np.sum(pn[1:] * ((1 - (1 - t[0]) ** k) * (1 - (1 - t[1]) ** k) * (k1 + 2) / (3 * k1))[1:]))
    w = pg / ps
    assert m.success_probability() == pytest.approx(ps, rel=1e-12)
    assert m.fidelity() == pytest.approx(w * 0.97 + (1 - w) / 4, rel=1e-12)
    # the daylight costs fidelity: the same link at night
    night = MidpointSourceModel(source=src, length_km=1200.0, absorption_efficiency=1.0,
                                false_herald_prob=1e-6, pair_fidelity=0.97,
                                arms=tuple(SatelliteDownlink.at_slant_range(d) for d in (800.0, 1200.0)),
                                background_window_ns=2.0)
    assert night.fidelity() > m.fidelity()
    d0, d1 = (round(a.delay_ns()) for a in arms)
    c = m.classical_delay_ns
    assert (m.herald_delay_ns(0), m.herald_delay_ns(1)) == (max(d0, d1 + c), max(d1, d0 + c))
    with pytest.raises(ValueError, match="arms"):
        MidpointSourceModel(arms=(arms[0],))
