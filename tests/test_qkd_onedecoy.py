"""The one-decoy protocol (signal + one decoy, no vacuum): the finite-key bounds of
Rusca, Boaron, Grünenfelder, Martin, Zbinden, Appl. Phys. Lett. 112, 171104 (2018)
(arXiv:1801.03443, Appendix A) evaluated by hand here from the paper's equations,
against the true vacuum and single-photon terms of a channel model, against Lim et
al.'s two-decoy key on the same block (the paper's finding), and end to end.

The system is Lim et al.'s evaluation one (as in test_qkd_estimation): η_Bob = 10 %,
p_dc = 6e-7 per detector, e_mis = 0.5 %, 0.2 dB/km, f_EC = 1.16, key basis with
probability 0.8 at both ends.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.app.qkd import estimation as E
from qstack.app.qkd._common import QKDError
from qstack.app.qkd.postprocess import PostProcessConfig, run_block
from qstack.app.qkd.sifting import records_from_events
from qstack.core.errors import ErrorCode
from qstack.physical.pulses import PulseTrainParams, simulate_pulses
from tests.test_qkd_bb84 import _net
from tests.test_qkd_bb84 import _run as _run_block

P_DC, E_MIS, ETA_BOB, QX, F_EC = 6e-7, 5e-3, 0.1, 0.8, 1.16
Y0 = 2 * P_DC
ONE = E.DecoySettings((0.5, 0.15), (0.7, 0.3))


def _expected(sett, n_pulses, length_km):
    """Expected counts per intensity (key basis, test basis, their errors) of the
    model D_k = 1 − (1 − Y0) e^(−η μk), errors ½Y0 + e_mis (D_k − Y0), and the
    true vacuum / single-photon terms (yields Y0 and Y1 = 1 − (1 − Y0)(1 − η))."""
    eta = ETA_BOB * 10 ** (-0.2 * length_km / 10)
    d = [1 - (1 - Y0) * math.exp(-eta * m) for m in sett.mus]
    err = [0.5 * Y0 + E_MIS * (dk - Y0) for dk in d]
    kz, kx = n_pulses * QX ** 2, n_pulses * (1 - QX) ** 2
    n_key = [kz * p * dk for p, dk in zip(sett.probs, d)]
    n_test = [kx * p * dk for p, dk in zip(sett.probs, d)]
    m_key = [kz * p * ek for p, ek in zip(sett.probs, err)]
    m_test = [kx * p * ek for p, ek in zip(sett.probs, err)]
    tau = [sum(p * math.exp(-m) * m ** n / math.factorial(n) for m, p in zip(sett.mus, sett.probs))
           for n in (0, 1)]
    y1 = 1 - (1 - Y0) * (1 - eta)
    truth = {"s_key0": kz * tau[0] * Y0, "s_key1": kz * tau[1] * y1,
             "v_test1": kx * tau[1] * (0.5 * Y0 + E_MIS * (y1 - Y0))}
    return n_key, n_test, m_test, m_key, truth


def test_rusca_bounds_equal_the_papers_formulas_by_hand():
    n_key, n_test, m_test, m_key, _ = (
        [round(x) for x in c] if isinstance(c, list) else c for c in _expected(ONE, 1e9, 50.0))
    eps_sec, eps_cor = 1e-10, 1e-15
    (m1, m2), (p1, p2) = ONE.mus, ONE.probs
    t0 = p1 * math.exp(-m1) + p2 * math.exp(-m2)                                 # Eq. (A5)
    t1 = p1 * math.exp(-m1) * m1 + p2 * math.exp(-m2) * m2
    delta = lambda n: math.sqrt(n / 2 * math.log(19 / eps_sec))                 # noqa: E731

    def pm(c):                                                                   # Eq. (A18)
        d = delta(sum(c))
        return ([math.exp(m1) / p1 * (c[0] - d), math.exp(m2) / p2 * (c[1] - d)],
                [math.exp(m1) / p1 * (c[0] + d), math.exp(m2) / p2 * (c[1] + d)])

    def bounds(n, m):
        lo, hi = pm(n)
        s0u = 2 * (t0 * math.exp(m2) / p2 * (m[1] + delta(sum(m))) + delta(sum(n)))   # Eq. (A16)
        s1 = t1 * m1 / (m2 * (m1 - m2)) * (lo[1] - m2 ** 2 / m1 ** 2 * hi[0]
                                          - (m1 ** 2 - m2 ** 2) / m1 ** 2 * s0u / t0)  # Eq. (A17)
        s0 = t0 / (m1 - m2) * (m1 * lo[1] - m2 * hi[0])                          # Eq. (A19)
        return s0u, s0, s1

    sk0u, sk0, sk1 = bounds(n_key, m_key)
    _, _, st1 = bounds(n_test, m_test)
    mlo, mhi = pm(m_test)
    v1 = t1 / (m1 - m2) * (mhi[0] - mlo[1])                                      # Eq. (A22)
    b = v1 / st1
    gamma = math.sqrt((sk1 + st1) * (1 - b) * b / (sk1 * st1 * math.log(2))
                      * math.log2((sk1 + st1) / (sk1 * st1 * (1 - b) * b) * 21 ** 2 / eps_sec ** 2))
    phi = b + gamma                                                               # Eqs. (A20-21)
    est = E.rusca_estimate(n_key, n_test, m_test, m_key, ONE, eps_sec, eps_cor)
    assert est.method == E.ONE_DECOY
    for got, want in ((est.s_key0_upper, sk0u), (est.s_key0, max(sk0, 0.0)), (est.s_key1, sk1),
                      (est.s_test1, st1), (est.v_test1, v1), (est.gamma, gamma),
                      (est.phase_error, phi)):
        assert got == pytest.approx(want, rel=1e-9)       # the same arithmetic in another order
    assert sk1 > 0 and 0 < phi < 0.5
    leak = 54321.0
    h = -phi * math.log2(phi) - (1 - phi) * math.log2(1 - phi)
    ell = math.floor(max(sk0, 0.0) + sk1 * (1 - h) - leak - 6 * math.log2(19 / eps_sec)
                     - math.log2(2 / eps_cor))                                    # Eq. (A25)
    assert E.rusca_key_length(est, leak) == E.key_length(est, leak) == ell
    assert E.estimate(n_key, n_test, m_test, ONE, eps_sec, eps_cor, m_key=m_key) == est


@settings(max_examples=40, deadline=None)
@given(length=st.floats(0, 150), m1=st.floats(0.2, 0.9), ratio=st.floats(0.05, 0.8),
       p1=st.floats(0.1, 0.95))
def test_asymptotic_bounds_hold_against_the_true_vacuum_and_single_photon_terms(length, m1, ratio, p1):
    """Fed expected counts without fluctuations (finite=False), each bound is on
    its side of the model's true value: s_0^u ≥ s_0 ≥ s_0^l, s_1^l ≤ s_1, v_1^u ≥ v_1
    (the relative slack 1e-9 is float rounding of sums of ~1e12)."""
    sett = E.DecoySettings((m1, m1 * ratio), (p1, 1 - p1))
    n_key, n_test, m_test, m_key, truth = _expected(sett, 1e12, length)
    est = E.rusca_estimate(n_key, n_test, m_test, m_key, sett, finite=False)
    tol = 1e-9
    assert est.s_key0 <= truth["s_key0"] * (1 + tol) + 1e-6
    assert est.s_key0_upper >= truth["s_key0"] * (1 - tol)
    assert est.s_key1 <= truth["s_key1"] * (1 + tol)
    assert est.v_test1 >= truth["v_test1"] * (1 - tol)


def test_finite_key_rate_rises_toward_the_asymptotic_rate_as_the_block_grows():
    def rate(n_pulses, finite=True):
        n_key, n_test, m_test, m_key, _ = _expected(ONE, n_pulses, 50.0)
        est = E.rusca_estimate(n_key, n_test, m_test, m_key, ONE, finite=finite)
        return E.rusca_key_length(est, F_EC * sum(n_key) * E.binary_entropy(sum(m_key) / sum(n_key))) \
            / n_pulses

    rates = [rate(n) for n in (1e8, 1e9, 1e10, 1e11, 1e12, 1e13)]
    asym = rate(1e13, finite=False)
    assert all(a < b for a, b in zip(rates, rates[1:]))
    assert 0 < rates[-1] < asym and rates[-1] > 0.98 * asym    # 1e13 pulses: within 2 % of the limit


def _best_rate(decoys, n_z, length_km, finite=True):
    """Secret bits per pulse of a block of n_z key-basis detections, maximised over
    a grid of intensities and probabilities (each protocol at its best, as the
    paper compares them); vacuum class μ3 = 2e-4 (Lim et al.'s) for two decoys."""
    eta = ETA_BOB * 10 ** (-0.2 * length_km / 10)
    best = 0.0
    for m1 in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        for m2 in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3):
            for p1 in (0.5, 0.6, 0.7, 0.8, 0.9):
                if m2 >= m1:
                    continue
                if decoys == 1:
                    cands = [E.DecoySettings((m1, m2), (p1, 1 - p1))]
                else:
                    cands = [E.DecoySettings((m1, m2, 2e-4), (p1, (1 - p1) * (1 - q), (1 - p1) * q))
                             for q in (0.2, 0.4, 0.6) if m1 > m2 + 2e-4]
                for sett in cands:
                    gain = sum(p * (1 - (1 - Y0) * math.exp(-eta * m)) for m, p in zip(sett.mus, sett.probs))
                    n_pulses = n_z / (QX ** 2 * gain)
                    n_key, n_test, m_test, m_key, _ = _expected(sett, n_pulses, length_km)
                    est = E.estimate(n_key, n_test, m_test, sett, finite=finite, m_key=m_key)
                    leak = F_EC * sum(n_key) * E.binary_entropy(sum(m_key) / sum(n_key))
                    best = max(best, E.key_length(est, leak) / n_pulses)
    return best


@pytest.mark.parametrize("length_km", [25.0, 100.0])
def test_one_decoy_beats_two_decoy_on_small_blocks_and_loses_asymptotically(length_km):
    """Rusca et al.'s finding: for blocks up to ~1e8 bits the one-decoy protocol gives
    more key than the two-decoy one; asymptotically the two-decoy one is better (its
    vacuum class pins s_0 down). Here, at 25 and 100 km: one-decoy ahead by >5 % at
    n_Z = 1e6 and 1e8, two-decoy ahead at n_Z = 1e12 and in the limit (this grid
    puts the crossing near 1e10)."""
    for n_z in (1e6, 1e8):
        assert _best_rate(1, n_z, length_km) > 1.05 * _best_rate(2, n_z, length_km)
    assert _best_rate(2, 1e12, length_km) > _best_rate(1, 1e12, length_km)
    assert _best_rate(2, 1e12, length_km, finite=False) > _best_rate(1, 1e12, length_km, finite=False)


def test_bad_arguments_get_defined_codes():
    for mus in ((0.1, 0.2), (0.5, 0.0)):
        with pytest.raises(QKDError) as ei:
            E.DecoySettings(mus, (0.5, 0.5))
        assert ei.value.code == ErrorCode.OUT_OF_RANGE
    with pytest.raises(QKDError) as ei:
        E.DecoySettings((0.5,), (1.0,))
    assert ei.value.code == ErrorCode.BAD_FIELD
    with pytest.raises(QKDError):                     # one-decoy needs the key basis' errors
        E.estimate((10, 5), (10, 5), (1, 0), ONE)
    with pytest.raises(QKDError):
        E.rusca_estimate((10, 5), (10, 5), (1, 0), (11, 0), ONE)
    with pytest.raises(QKDError):
        E.lim_estimate((10, 5), (10, 5), (1, 0), ONE)
    with pytest.raises(QKDError):
        E.rusca_vacuum_upper((10, 5, 1), (1, 0, 0), E.DecoySettings((0.5, 0.1, 0.0), (0.8, 0.15, 0.05)),
                             1e-10)


def test_pipeline_keys_agree_and_the_length_is_ruscas_eq_a25_with_the_counted_leak():
    """run_block on a pulse train of the physical kernels: identical keys, ℓ from
    Eq. (A25) with the λ_EC Cascade had and the key basis' errors it corrected."""
    sett = E.DecoySettings((0.5, 0.15), (0.7, 0.3))
    params = PulseTrainParams(mean_photon_numbers=sett.mus, class_probs=sett.probs,
                              transmissivity=10 ** (-0.2 * 25 / 10) * 0.8, p_z_alice=0.7, p_z_bob=0.7)
    ev = simulate_pulses(params, 20_000_000, np.random.default_rng(7))
    alice, bob = records_from_events(ev)
    cfg = PostProcessConfig(sett)
    r = run_block(alice, bob, cfg, seed=7)
    assert r.ok, r.detail
    assert np.array_equal(r.alice_key, r.bob_key) and r.key_length > 0
    est = r.estimate
    assert est.method == E.ONE_DECOY and len(est.m_key) == 2
    assert sum(est.m_key) == round(r.qber_key * sum(r.n_key))       # Cascade's flips, per class
    h = E.binary_entropy(est.phase_error)
    want = math.floor(est.s_key0 + est.s_key1 * (1 - h) - r.leaks.error_correction
                      - 6 * math.log2(19 / cfg.eps_sec) - math.log2(2 / cfg.eps_cor))
    assert r.key_length == want
    assert r.leaks.finite_size == pytest.approx(6 * math.log2(19e10) + math.log2(2e15))


def _run(link, pulses, decoys, seed=1):
    return _run_block(_net(**link), pulses, seed, decoys=decoys)


ONE_LINK = {"length_km": 25, "qkd_intensities": [0.5, 0.15], "qkd_class_probs": [0.7, 0.3]}


def test_protocol_runs_one_decoy_between_neighbours_and_both_ends_agree():
    a, b = _run(ONE_LINK, 20_000_000, decoys=1, seed=3)
    assert a.ok and b.ok, (a.reason, b.reason)
    assert np.array_equal(a.key, b.key) and a.key_length > 0
    assert a.estimate == b.estimate and a.estimate.method == E.ONE_DECOY
    assert a.estimate.m_key == b.estimate.m_key
    # a phase-error threshold below the bound: both ends abort after Cascade, same reason
    net_link = dict(ONE_LINK, qkd_misalignment=0.06)
    a, b = _run(net_link, 20_000_000, decoys=1, seed=3)
    assert not a.ok and not b.ok
    assert a.reason.split(":")[0] == b.reason.split(":")[0] == "phase error too high"


def test_asking_for_a_protocol_the_links_classes_do_not_give_aborts_with_bad_settings():
    a, b = _run(ONE_LINK, 100_000, decoys=2)
    assert not a.ok and a.code == ErrorCode.BAD_FIELD and a.reason.startswith("bad settings")
    assert not b.ok
    a, _ = _run({"length_km": 25}, 100_000, decoys=1)
    assert not a.ok and a.code == ErrorCode.BAD_FIELD and "2: signal, decoy" in a.reason


def test_qkd_run_and_sweep_with_the_one_decoy_protocol(tmp_path, capsys):
    import csv

    from qstack.cli import main
    from qstack.qkdtool import ONE_DECOY_DEFAULTS

    net = tmp_path / "n.toml"
    net.write_text('nodes = ["a", "b"]\n[[links]]\nnodes = ["a", "b"]\nlength_km = 10\n')
    # no intensities in the file: the one-decoy defaults, two classes
    assert main(["qkd", "run", str(net), "--protocol", "decoy-bb84-1", "--pulses", "2e7",
                 "--out", str(tmp_path / "k.bin")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("decoy-bb84-1 a -> b") and "identical" in text
    assert "bounds (Rusca et al. 2018)" in text and "vacuum" not in text
    assert (tmp_path / "k.a.bin").read_bytes() == (tmp_path / "k.b.bin").read_bytes()
    assert ONE_DECOY_DEFAULTS["qkd_intensities"][0] > ONE_DECOY_DEFAULTS["qkd_intensities"][1]
    # a three-class link asked for one decoy (and a two-class one for two): exit 2, one line
    net.write_text('nodes = ["a", "b"]\n[[links]]\nnodes = ["a", "b"]\n'
                   'qkd_intensities = [0.5, 0.1, 0.0]\nqkd_class_probs = [0.8, 0.15, 0.05]\n')
    assert main(["qkd", "run", str(net), "--protocol", "decoy-bb84-1"]) == 2
    assert "has 3 intensity classes; decoy-bb84-1 needs 2" in capsys.readouterr().err
    net.write_text('nodes = ["a", "b"]\n[[links]]\nnodes = ["a", "b"]\n'
                   'qkd_intensities = [0.5, 0.15]\nqkd_class_probs = [0.7, 0.3]\n')
    assert main(["qkd", "run", str(net)]) == 2
    assert "--protocol decoy-bb84-1" in capsys.readouterr().err
    out_csv = tmp_path / "s.csv"
    assert main(["qkd", "sweep", str(net), "--protocol", "decoy-bb84-1", "--param",
                 "length_km=0:100:50", "--pulses", "2e6", "--block-sizes", "1e9",
                 "--csv", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    for r in rows[1:]:          # the one-decoy limit below PLOB, the finite block below the limit
        assert 0 < float(r["finite_1e+09_per_pulse"]) < float(r["one_decoy_asymptotic_per_pulse"]) \
            < float(r["plob_per_pulse"])
    vals = [float(r["one_decoy_asymptotic_per_pulse"]) for r in rows]
    assert vals[0] > vals[1] > vals[2] > 0
