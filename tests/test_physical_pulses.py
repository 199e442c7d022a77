"""Pulse-train kernels: exact agreement of reference / numpy twin / Cython, skip-ahead in
distribution, and the decoy-BB84 gain and QBER formulas.

Statistical tolerances are 5 standard deviations of the quantity compared (binomial unless
stated), with fixed seeds: a correct implementation fails a check with probability ~6e-7
per check, and a wrong formula off by more than a few per mille is caught."""
from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from qstack.physical import pulses as P
from qstack.physical.detectors import ThresholdDetector
from qstack.physical.fibre import FibreChannel
from qstack.physical.sources import WeakCoherentSource

needs_cython = pytest.mark.skipif(not P.HAVE_CYTHON, reason="Cython kernel not built")

FIELDS = ("alice_basis", "alice_bit", "alice_class", "bob_basis", "clicks", "bob_bit")
EVENT_FIELDS = ("index",) + FIELDS + ("sent_per_class", "nonevent_by_state")

# parameter sets exercising every branch: no dead time, dead time, afterpulsing, biased bases,
# one class, high click probability (many double clicks)
PARAMS = {
    "plain": P.PulseTrainParams(dead_time_gates=0, transmissivity=0.3, dark_count_prob=1e-3),
    "dead": P.PulseTrainParams(dead_time_gates=7, transmissivity=0.5),
    "afterpulse": P.PulseTrainParams(dead_time_gates=3, afterpulse_prob=0.2, transmissivity=0.5,
                                     dark_count_prob=1e-2),
    "afterpulse_no_dead": P.PulseTrainParams(dead_time_gates=0, afterpulse_prob=0.3, transmissivity=0.5),
    "biased": P.PulseTrainParams(p_z_alice=0.9, p_z_bob=0.8, misalignment_error=0.1, dead_time_gates=2,
                                 transmissivity=0.4),
    "one_class": P.PulseTrainParams(mean_photon_numbers=(3.0,), class_probs=(1.0,), transmissivity=1.0,
                                    dead_time_gates=1, misalignment_error=0.3),
}


def _same(a, b, fields):
    for f in fields:
        x, y = getattr(a, f), getattr(b, f)
        assert np.array_equal(x, y), f


# --------------------------------------------------------------- exact agreement
@pytest.mark.parametrize("name", list(PARAMS))
def test_reference_numpy_and_cython_agree_exactly_on_same_uniforms(name):
    par = PARAMS[name]
    u = np.random.default_rng(list(PARAMS).index(name)).random((P.N_UNIFORMS_PER_PULSE, 30_000))
    ref = P.simulate_pulses_reference(par, uniforms=u)
    twin = P.simulate_pulses_numpy(par, uniforms=u)
    _same(ref, twin, FIELDS)
    assert ref.clicks.any()
    if P.HAVE_CYTHON:
        _same(ref, P.simulate_pulses_cython(par, uniforms=u), FIELDS)


@needs_cython
@pytest.mark.parametrize("name", list(PARAMS))
def test_skip_ahead_cython_equals_python_twin_on_same_uniforms(name):
    par = PARAMS[name]
    u = np.random.default_rng(1).random(400_000)
    a = P.simulate_skip_ahead_python(par, 50_000, np.random.default_rng(9), uniforms=u)
    b = P.simulate_skip_ahead_cython(par, 50_000, np.random.default_rng(9), uniforms=u)
    _same(a, b, EVENT_FIELDS)
    assert a.n_events > 0 and a.sent_per_class.sum() == 50_000


def test_skip_ahead_uniforms_running_out_is_an_error():
    par = PARAMS["plain"]
    with pytest.raises(ValueError, match="ran out"):
        P.simulate_skip_ahead_python(par, 10_000, np.random.default_rng(0), uniforms=np.full(5, 0.5))
    if P.HAVE_CYTHON:
        with pytest.raises(ValueError, match="ran out"):
            P.simulate_skip_ahead_cython(par, 10_000, np.random.default_rng(0), uniforms=np.full(5, 0.5))


def test_bad_uniform_shape_rejected():
    with pytest.raises(ValueError, match="uniforms"):
        P.simulate_pulses_numpy(PARAMS["plain"], uniforms=np.zeros((6, 10)))


def test_dead_time_respected_per_detector():
    par = PARAMS["dead"]
    tr = P.simulate_pulses_numpy(par, 200_000, np.random.default_rng(4))
    for bit in (1, 2):
        idx = np.flatnonzero(tr.clicks & bit)
        assert np.diff(idx).min() > par.dead_time_gates


# --------------------------------------------------------------- gain and QBER formulas
def _check_formulas(res, par, lmc: bool):
    for k, s in enumerate(P.class_statistics(res)):
        q = P.expected_gain(par, k)
        e = P.expected_qber(par, k)
        sq = math.sqrt(q * (1 - q) / s.sent)
        assert abs(s.gain - q) < 5 * sq, (k, s.gain, q)
        if s.sifted == 0:
            # a class with few detections (vacuum, rare dark counts) may sift none, and then
            # has no QBER: zero must be plausible, Poisson P(0) = exp(-expected) > 1e-6
            sift = par.p_z_alice * par.p_z_bob + (1 - par.p_z_alice) * (1 - par.p_z_bob)
            assert s.sent * q * sift < -math.log(1e-6), (k, s.sent * q * sift)
            continue
        se = math.sqrt(e * (1 - e) / s.sifted)
        assert abs(s.qber - e) < 5 * se, (k, s.qber, e)
        if lmc:
            # Lo–Ma–Chen: Q = Y0 + 1 − e^(−ημ), E·Q = e0·Y0 + e_d(1 − e^(−ημ)), Y0 = 2 p_dark.
            # They are first order in p_dark; the allowance is the exact-vs-LMC gap, O(p_dark·ημ).
            mu, eta, y0 = par.mean_photon_numbers[k], par.eta, 2 * par.dark_count_prob
            q_l = P.lmc_gain(mu, eta, y0)
            eq_l = P.lmc_error_gain(mu, eta, y0, par.misalignment_error)
            assert abs(s.gain - q_l) < 5 * sq + abs(q - q_l)
            assert abs(s.qber * s.gain - eq_l) < 5 * (se * q + sq) + abs(e * q - eq_l) + 1e-12
            assert abs(q - q_l) <= 3 * y0 * (eta * mu + y0) + 1e-15


FORMULA_PARAMS = P.PulseTrainParams(mean_photon_numbers=(0.6, 0.2, 0.0), class_probs=(0.6, 0.3, 0.1),
                                    transmissivity=0.1, detector_efficiency=0.8, dark_count_prob=2e-3,
                                    misalignment_error=0.03, dead_time_gates=0)


def test_gain_and_qber_formulas_numpy_twin():
    res = P.simulate_pulses_numpy(FORMULA_PARAMS, 2_000_000, np.random.default_rng(21))
    _check_formulas(res, FORMULA_PARAMS, lmc=True)


@needs_cython
@pytest.mark.parametrize("kind", ["pulse_by_pulse", "skip_ahead"])
def test_gain_and_qber_formulas_cython(kind):
    res = P.simulate_pulses(FORMULA_PARAMS, 20_000_000, np.random.default_rng(22), method=kind)
    _check_formulas(res, FORMULA_PARAMS, lmc=True)


def test_gain_and_qber_formulas_skip_ahead_python():
    res = P.simulate_skip_ahead_python(FORMULA_PARAMS, 3_000_000, np.random.default_rng(23))
    _check_formulas(res, FORMULA_PARAMS, lmc=True)


def test_fifty_km_decoy_link_gain_from_models():
    """Decoy BB84 over 50 km of standard fibre with InGaAs APD numbers (GYS-like) and no dead
    time: the simulated gains match Q_μ = Y0 + 1 − e^(−ημ)."""
    src = WeakCoherentSource(mean_photon_numbers=(0.48, 0.1, 0.0), class_probs=(0.8, 0.15, 0.05))
    det = replace(ThresholdDetector.ingaas_apd(), dead_time_ns=0.0, afterpulse_prob=0.0)
    par = P.PulseTrainParams.from_models(src, FibreChannel(length_km=50.0), det, misalignment_error=0.033)
    assert par.transmissivity == pytest.approx(0.1)
    res = P.simulate_pulses(par, 30_000_000, np.random.default_rng(5), method="skip_ahead")
    _check_formulas(res, par, lmc=True)


# --------------------------------------------------------------- skip-ahead vs pulse by pulse
def _two_sample_z(k1, n1, k2, n2):
    p1, p2 = k1 / n1, k2 / n2
    p = (k1 + k2) / (n1 + n2)
    sd = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return 0.0 if sd == 0 else abs(p1 - p2) / sd


def _gap_hist(ev, D):
    gaps = np.diff(ev.index)
    edges = np.array([D + 1, D + 2, D + 4, D + 8, D + 16, D + 32, D + 64, D + 128, np.iinfo(np.int64).max])
    return np.histogram(gaps, bins=edges)[0]


@pytest.mark.parametrize("name", ["dead", "afterpulse", "biased"])
def test_skip_ahead_and_pulse_by_pulse_agree_in_distribution(name):
    """Per-class gain and QBER (two-sample z, 5 sd), double-click fraction, and the
    distribution of gaps between detection events (chi-square homogeneity, p > 1e-4) —
    the gaps are where dead time and afterpulsing show."""
    par = replace(PARAMS[name], transmissivity=0.05)
    n_pp, n_sa = 2_000_000, 6_000_000
    pp = P.simulate_pulses_numpy(par, n_pp, np.random.default_rng(31)).events()
    sa_fn = P.simulate_skip_ahead_cython if P.HAVE_CYTHON else P.simulate_skip_ahead_python
    sa = sa_fn(par, n_sa, np.random.default_rng(32))
    for a, b in zip(P.class_statistics(pp), P.class_statistics(sa)):
        assert _two_sample_z(a.detected, a.sent, b.detected, b.sent) < 5
        if a.sifted and b.sifted:
            assert _two_sample_z(a.errors, a.sifted, b.errors, b.sifted) < 5
    assert _two_sample_z(int((pp.clicks == 3).sum()), pp.n_events, int((sa.clicks == 3).sum()), sa.n_events) < 5
    h1, h2 = _gap_hist(pp, par.dead_time_gates), _gap_hist(sa, par.dead_time_gates)
    table = np.vstack([h1, h2])
    table = table[:, table.sum(axis=0) > 0]
    assert stats.chi2_contingency(table)[1] > 1e-4
    assert abs(sa.sent_per_class.sum() - n_sa) == 0


@needs_cython
def test_cython_fast_path_agrees_with_numpy_twin_in_distribution():
    par = replace(PARAMS["afterpulse"], transmissivity=0.05)
    a = P.simulate_pulses_numpy(par, 2_000_000, np.random.default_rng(41))
    b = P.simulate_pulses_cython(par, 4_000_000, np.random.default_rng(42))
    for f in ("alice_basis", "alice_bit", "bob_basis"):
        assert _two_sample_z(int(getattr(a, f).sum()), a.n_pulses, int(getattr(b, f).sum()), b.n_pulses) < 5
    for x, y in zip(P.class_statistics(a), P.class_statistics(b)):
        assert _two_sample_z(x.sent, a.n_pulses, y.sent, b.n_pulses) < 5
        assert _two_sample_z(x.detected, x.sent, y.detected, y.sent) < 5
        if x.sifted and y.sifted:
            assert _two_sample_z(x.errors, x.sifted, y.errors, y.sifted) < 5
    ea, eb = a.events(), b.events()
    table = np.vstack([_gap_hist(ea, par.dead_time_gates), _gap_hist(eb, par.dead_time_gates)])
    table = table[:, table.sum(axis=0) > 0]
    assert stats.chi2_contingency(table)[1] > 1e-4


# --------------------------------------------------------------- dead-time saturation
@pytest.mark.parametrize("method", ["numpy", "skip_ahead"])
def test_pulse_train_click_rate_saturates(method):
    """Dark counts only (vacuum pulses), p = 0.01 per gate, τ = 100 gates at 1 GHz:
    each detector clicks at R_in/(1 + R_in τ) with R_in = p·f."""
    f, D, pd = 1e9, 100, 0.01
    par = P.PulseTrainParams(mean_photon_numbers=(0.0,), class_probs=(1.0,), dark_count_prob=pd,
                             dead_time_gates=D, misalignment_error=0.0)
    n = 4_000_000
    if method == "numpy":
        ev = P.simulate_pulses_numpy(par, n, np.random.default_rng(51)).events()
    else:
        fn = P.simulate_skip_ahead_cython if P.HAVE_CYTHON else P.simulate_skip_ahead_python
        ev = fn(par, n, np.random.default_rng(52))
    expect = ThresholdDetector(dead_time_ns=D / f * 1e9).saturated_click_rate(pd * f)
    assert expect == pytest.approx(pd * f / 2)
    # renewal-process sd of the count: sqrt(n·var/mean³) with cycle D + Geom(p)
    mean_c, var_c = D + 1 / pd, (1 - pd) / pd**2
    sd = math.sqrt(n * var_c / mean_c**3) / n * f
    for bit in (1, 2):
        rate = np.count_nonzero(ev.clicks & bit) / n * f
        assert abs(rate - expect) < 5 * sd


# --------------------------------------------------------------- plumbing
def test_from_models_and_params_validation():
    src = WeakCoherentSource(pulse_rate_hz=2.5e9)
    det = ThresholdDetector(dead_time_ns=40.0)
    ch = FibreChannel(length_km=10.0, depolarisation_prob_per_km=0.001)
    par = P.PulseTrainParams.from_models(src, ch, det, misalignment_error=0.01, bob_optics_transmissivity=0.5)
    assert par.dead_time_gates == 100
    assert par.transmissivity == pytest.approx(0.5 * 10 ** (-0.2))
    e_c = ch.qubit_error_prob()
    assert par.misalignment_error == pytest.approx(0.01 + e_c - 2 * 0.01 * e_c)
    with pytest.raises(ValueError, match="dead_time_gates"):
        P.PulseTrainParams(dead_time_gates=-1)
    with pytest.raises(ValueError, match="class_probs"):
        P.PulseTrainParams(class_probs=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="method"):
        P.simulate_pulses(par, 10, np.random.default_rng(0), method="magic")


def test_require_cython_flag():
    if os.environ.get("QSTACK_REQUIRE_CYTHON") == "1":
        assert P.HAVE_CYTHON


def test_zero_pulses():
    par = PARAMS["plain"]
    assert P.simulate_pulses_numpy(par, 0, np.random.default_rng(0)).n_pulses == 0
    ev = P.simulate_skip_ahead_python(par, 0, np.random.default_rng(0))
    assert ev.n_events == 0 and ev.sent_per_class.sum() == 0
    if P.HAVE_CYTHON:
        assert P.simulate_skip_ahead_cython(par, 0, np.random.default_rng(0)).n_events == 0


_BLOCK_KERNEL = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "qstack.physical._pulses":
            raise ImportError("blocked for the test")
        return None
sys.meta_path.insert(0, _Block())
"""


@pytest.mark.parametrize("require", ["1", "0"])
def test_missing_kernel_fallback_and_require_flag(require):
    """Without the compiled kernel: QSTACK_REQUIRE_CYTHON=1 -> clear ImportError; otherwise
    HAVE_CYTHON is False and the numpy twins serve simulate_pulses."""
    import subprocess
    import sys
    code = _BLOCK_KERNEL + (
        "import numpy as np\n"
        "from qstack.physical import pulses as P\n"
        "assert not P.HAVE_CYTHON\n"
        "r = P.simulate_pulses(P.PulseTrainParams(), 1000, np.random.default_rng(0))\n"
        "print('ok', r.n_pulses)\n")
    env = dict(os.environ, QSTACK_REQUIRE_CYTHON=require)
    env.pop("QSTACK_PURE_PYTHON", None)     # (it asks for the twins, which is not this test)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if require == "1":
        assert proc.returncode != 0 and "QSTACK_REQUIRE_CYTHON" in proc.stderr
        assert "build_ext" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "ok 1000"


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.floats(0, 300), st.floats(0, 300), st.floats(0, 0.1), st.floats(0, 0.5), st.floats(0, 5))
def test_gain_and_qber_are_probabilities_and_gain_falls_with_length(l1, l2, pd, ed, mu):
    src = WeakCoherentSource(mean_photon_numbers=(mu,), class_probs=(1.0,))
    det = ThresholdDetector(dark_count_prob_per_gate=pd)
    near, far = (P.PulseTrainParams.from_models(src, FibreChannel(length_km=L), det, misalignment_error=ed)
                 for L in (min(l1, l2), max(l1, l2)))
    for par in (near, far):
        assert 0.0 <= P.expected_gain(par, 0) <= 1.0
        assert 0.0 <= P.expected_qber(par, 0) <= 0.5 + 1e-12
        tab = P._click_table(par)
        assert ((tab >= 0) & (tab <= 1)).all()
    assert P.expected_gain(far, 0) <= P.expected_gain(near, 0)
