"""Decoy-state estimation against the papers' formulas, evaluated by hand here, and
against the true single-photon quantities of a channel model where they are known.

Asymptotic: Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005), with the Gobby-Yuan-Shields
parameters they use (α = 0.21 dB/km, η_Bob = 4.5 %, Y0 = 1.7e-6, e_d = 3.3 %, f = 1.22).
Finite key: Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), with their
evaluation's system (η_Bob = 10 %, p_dc = 6e-7, e_mis = 0.5 %, 0.2 dB/km, μ3 = 2e-4,
f_EC = 1.16, ε_cor = 1e-15) and intensities μ1 = 0.5, μ2 = 0.1 chosen here.
"""
from __future__ import annotations

import math

import pytest

from qstack.app.qkd import estimation as E
from qstack.app.qkd._common import QKDError
from qstack.core.errors import ErrorCode

# ----------------------------------------------------------------- MQZL (asymptotic)

Y0_GYS, ED_GYS, ETA_BOB_GYS, ALPHA_GYS = 1.7e-6, 0.033, 0.045, 0.21


def _gys_eta(length_km: float) -> float:
    return ETA_BOB_GYS * 10 ** (-ALPHA_GYS * length_km / 10)


def _lmc(mu: float, eta: float) -> tuple[float, float]:
    """Lo-Ma-Chen gain and QBER: Q = Y0 + 1 - e^(-eta mu), EQ = Y0/2 + e_d (1 - e^(-eta mu))."""
    q = Y0_GYS + 1 - math.exp(-eta * mu)
    return q, (0.5 * Y0_GYS + ED_GYS * (1 - math.exp(-eta * mu))) / q


def test_mqzl_bounds_equal_the_papers_formulas_by_hand():
    """The asymptotic bounds are the physical layer's (re-exported): checked here
    against Eqs. (34) and (37) at the GYS parameters."""
    eta = _gys_eta(50.0)
    mu, nu = 0.48, 0.05
    (q_mu, _), (q_nu, e_nu) = _lmc(mu, eta), _lmc(nu, eta)
    # Eq. (34) and (37) written out
    y1 = mu / (mu * nu - nu ** 2) * (q_nu * math.exp(nu) - q_mu * math.exp(mu) * nu ** 2 / mu ** 2
                                     - (mu ** 2 - nu ** 2) / mu ** 2 * Y0_GYS)
    e1 = (e_nu * q_nu * math.exp(nu) - 0.5 * Y0_GYS) / (y1 * nu)
    b = E.decoy_bb84_key_rate(mu, nu, q_mu, 0.02, q_nu, e_nu, Y0_GYS)
    assert b["y1"] == pytest.approx(y1, rel=1e-12)
    assert b["e1"] == pytest.approx(e1, rel=1e-12)
    assert b["q1"] == pytest.approx(y1 * mu * math.exp(-mu), rel=1e-12)


@pytest.mark.parametrize("length_km", [0.0, 50.0, 100.0])
def test_mqzl_bounds_hold_and_tighten_as_the_weak_decoy_vanishes(length_km):
    """In the LMC model Y1 = Y0 + eta - Y0 eta and e1 = (Y0/2 + e_d eta)/Y1 exactly: the
    bounds must hold, and tighten as nu -> 0 (MQZL Sec. V: the nu -> 0 limit is tight)."""
    eta = _gys_eta(length_km)
    y1_true = Y0_GYS + eta - Y0_GYS * eta
    e1_true = (0.5 * Y0_GYS + ED_GYS * eta) / y1_true
    gaps = []
    for nu in (0.2, 0.1, 0.05, 0.01):
        (q_mu, e_mu), (q_nu, e_nu) = _lmc(0.48, eta), _lmc(nu, eta)
        b = E.decoy_bb84_key_rate(0.48, nu, q_mu, e_mu, q_nu, e_nu, Y0_GYS)
        assert b["y1"] <= y1_true
        assert b["e1"] >= e1_true
        gaps.append((1 - b["y1"] / y1_true, b["e1"] / e1_true - 1))
    assert all(g1[0] > g2[0] and g1[1] > g2[1] for g1, g2 in zip(gaps, gaps[1:]))
    # at nu = 0.01 the bounds are within 0.5 % (Y1) and 2 % (e1) of the truth: the
    # residue is O(nu) (the n >= 2 terms MQZL bound by nu^2/mu^2 Q_mu e^mu)
    assert gaps[-1][0] < 0.005 and gaps[-1][1] < 0.02


def test_infinite_decoy_key_rate_is_gllp_of_the_true_single_photon_terms_and_vanishes_far_away():
    eta = _gys_eta(50.0)
    mu = 0.48
    q_mu, e_mu = _lmc(mu, eta)
    y1 = Y0_GYS + eta - Y0_GYS * eta
    e1 = (0.5 * Y0_GYS + ED_GYS * eta) / y1

    def h(x):
        return -x * math.log2(x) - (1 - x) * math.log2(1 - x)

    by_hand = 0.5 * (-q_mu * 1.22 * h(e_mu) + y1 * mu * math.exp(-mu) * (1 - h(e1)))
    assert E.infinite_decoy_key_rate(mu, eta, Y0_GYS, ED_GYS) == pytest.approx(by_hand, rel=1e-12)
    # with these parameters the key vanishes near 145 km (MQZL's infinite-decoy curve ends
    # there too): positive at 130 km, zero at 170 km; a vacuum + weak decoy estimate
    # never beats the perfectly known single-photon terms
    assert E.infinite_decoy_key_rate(mu, _gys_eta(130.0), Y0_GYS, ED_GYS) > 0
    assert E.infinite_decoy_key_rate(mu, _gys_eta(170.0), Y0_GYS, ED_GYS) == 0
    (q_nu, e_nu) = _lmc(0.05, eta)
    assert E.decoy_bb84_key_rate(mu, 0.05, q_mu, e_mu, q_nu, e_nu, Y0_GYS, f_ec=1.22)["rate"] < by_hand


def test_plob_bound_and_binary_entropy():
    assert E.plob_bound(0.5) == pytest.approx(1.0)
    assert E.plob_bound(1e-10) == pytest.approx(1e-10 / math.log(2), rel=1e-9)
    assert E.binary_entropy(0.11) == pytest.approx(-0.11 * math.log2(0.11) - 0.89 * math.log2(0.89))
    assert E.binary_entropy(0.0) == 0.0 and E.binary_entropy(0.5) == 1.0


# ----------------------------------------------------------------- Lim et al. (finite key)

SETTINGS = E.DecoySettings((0.5, 0.1, 2e-4), (0.7, 0.2, 0.1))
P_DC, E_MIS, ETA_BOB, QX = 6e-7, 5e-3, 0.1, 0.8     # QX: probability of the key basis
Y0 = 2 * P_DC                                         # two detectors


def _counts(n_pulses: float, length_km: float, rounded: bool = True):
    """Expected counts per intensity: detections D_k = 1 - (1-Y0) e^(-eta k) and errors
    e0 Y0 + e_mis (D_k - Y0), i.e. yields Y_n = 1 - (1-Y0)(1-eta)^n with errors
    e0 Y0 + e_mis (Y_n - Y0) per n-photon pulse (Poisson-averaged)."""
    eta = ETA_BOB * 10 ** (-0.2 * length_km / 10)
    d = [1 - (1 - Y0) * math.exp(-eta * m) for m in SETTINGS.mus]
    err = [0.5 * Y0 + E_MIS * (dk - Y0) for dk in d]
    rnd = (lambda x: int(round(x))) if rounded else (lambda x: x)
    n_key = [rnd(n_pulses * QX ** 2 * p * dk) for p, dk in zip(SETTINGS.probs, d)]
    n_test = [rnd(n_pulses * (1 - QX) ** 2 * p * dk) for p, dk in zip(SETTINGS.probs, d)]
    m_test = [rnd(n_pulses * (1 - QX) ** 2 * p * ek) for p, ek in zip(SETTINGS.probs, err)]
    m_key = [n_pulses * QX ** 2 * p * ek for p, ek in zip(SETTINGS.probs, err)]
    y1 = 1 - (1 - Y0) * (1 - eta)
    tau = [sum(p * math.exp(-m) * m ** n / math.factorial(n) for m, p in zip(SETTINGS.mus, SETTINGS.probs))
           for n in (0, 1)]
    truth = {"s_key0": n_pulses * QX ** 2 * tau[0] * Y0, "s_key1": n_pulses * QX ** 2 * tau[1] * y1,
             "v_test1": n_pulses * (1 - QX) ** 2 * tau[1] * (0.5 * Y0 + E_MIS * (y1 - Y0))}
    return n_key, n_test, m_test, sum(m_key) / sum(n_key), truth


def test_lim_bounds_equal_the_papers_formulas_by_hand():
    n_key, n_test, m_test, _, _ = _counts(1e10, 50.0)
    eps_sec, eps_cor = 1e-10, 1e-15
    (m1, m2, m3), (p1, p2, p3) = SETTINGS.mus, SETTINGS.probs
    t0 = p1 * math.exp(-m1) + p2 * math.exp(-m2) + p3 * math.exp(-m3)
    t1 = p1 * math.exp(-m1) * m1 + p2 * math.exp(-m2) * m2 + p3 * math.exp(-m3) * m3

    def pm(c, total):
        d = math.sqrt(total / 2 * math.log(21 / eps_sec))
        return ([math.exp(m) / p * (x - d) for x, m, p in zip(c, SETTINGS.mus, SETTINGS.probs)],
                [math.exp(m) / p * (x + d) for x, m, p in zip(c, SETTINGS.mus, SETTINGS.probs)])

    def s0s1(c):
        lo, hi = pm(c, sum(c))
        s0 = t0 * (m2 * lo[2] - m3 * hi[1]) / (m2 - m3)                                  # Eq. (2)
        s1 = t1 * m1 * (lo[1] - hi[2] - (m2 ** 2 - m3 ** 2) / m1 ** 2 * (hi[0] - max(s0, 0) / t0)) \
            / (m1 * (m2 - m3) - m2 ** 2 + m3 ** 2)                                        # Eq. (3)
        return max(s0, 0), s1

    sk0, sk1 = s0s1(n_key)
    st0, st1 = s0s1(n_test)
    mlo, mhi = pm(m_test, sum(m_test))
    v1 = t1 * (mhi[1] - mlo[2]) / (m2 - m3)                                                # Eq. (4)
    b = v1 / st1
    gamma = math.sqrt((st1 + sk1) * (1 - b) * b / (st1 * sk1 * math.log(2))
                      * math.log2((st1 + sk1) / (st1 * sk1 * (1 - b) * b) * 21 ** 2 / eps_sec ** 2))  # Eq. (5)
    phi = b + gamma
    est = E.lim_estimate(n_key, n_test, m_test, SETTINGS, eps_sec, eps_cor)
    for got, want in ((est.s_key0, sk0), (est.s_key1, sk1), (est.s_test1, st1), (est.v_test1, v1),
                      (est.gamma, gamma), (est.phase_error, phi)):
        assert got == pytest.approx(want, rel=1e-9)
    assert sk1 > 0 and 0 < phi < 0.5
    leak = 12345.0
    h = -phi * math.log2(phi) - (1 - phi) * math.log2(1 - phi)
    ell = math.floor(sk0 + sk1 - sk1 * h - leak - 6 * math.log2(21 / eps_sec) - math.log2(2 / eps_cor))  # Eq. (1)
    assert E.lim_key_length(est, leak) == ell


def test_lim_asymptotic_bounds_hold_against_the_true_single_photon_terms():
    """Without fluctuations (expected counts, finite=False) the decoy bounds must hold
    against the model's true vacuum/single-photon counts, and be close: s_1 within
    5 % (the gap is the multi-photon term bounded via mu2^2 - mu3^2 over mu1^2)."""
    n_key, n_test, m_test, _, truth = _counts(1e12, 50.0, rounded=False)
    est = E.lim_estimate(n_key, n_test, m_test, SETTINGS, finite=False)
    assert est.s_key0 <= truth["s_key0"]
    assert 0.95 * truth["s_key1"] <= est.s_key1 <= truth["s_key1"]
    assert est.v_test1 >= truth["v_test1"]


def test_finite_key_rate_rises_toward_the_asymptotic_rate_as_the_block_grows():
    rates = []
    for n_pulses in (1e9, 1e10, 1e11, 1e12, 1e13):
        n_key, n_test, m_test, e_key, _ = _counts(n_pulses, 50.0)
        est = E.lim_estimate(n_key, n_test, m_test, SETTINGS)
        rates.append(E.lim_key_length(est, 1.16 * sum(n_key) * E.binary_entropy(e_key)) / n_pulses)
    n_key, n_test, m_test, e_key, _ = _counts(1e13, 50.0, rounded=False)
    est = E.lim_estimate(n_key, n_test, m_test, SETTINGS, finite=False)
    asym = E.lim_key_length(est, 1.16 * sum(n_key) * E.binary_entropy(e_key)) / 1e13
    assert all(a < b for a, b in zip(rates, rates[1:]))
    assert rates[-1] < asym
    assert rates[-1] > 0.98 * asym      # 1e13 pulses: within 2 % of the limit


def test_bad_arguments_get_defined_codes():
    with pytest.raises(QKDError) as ei:
        E.DecoySettings((0.1, 0.2, 0.0), (0.5, 0.3, 0.2))
    assert ei.value.code == ErrorCode.OUT_OF_RANGE
    with pytest.raises(QKDError):
        E.lim_estimate((1, 2), (1, 2, 3), (0, 0, 0), SETTINGS)
    with pytest.raises(QKDError):
        E.lim_estimate((1, 2, 3), (1, 2, 3), (2, 0, 0), SETTINGS)
    with pytest.raises(QKDError):
        E.infinite_decoy_key_rate(0.5, 1.5, 1e-6, 0.01)
    with pytest.raises(QKDError):
        E.infinite_decoy_key_rate(0.5, 0.1, 1e-6, 0.01, f=0.9)
