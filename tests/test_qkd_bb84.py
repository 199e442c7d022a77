"""Decoy BB84 between neighbours (``app.qkd``) end to end under ``qstack.simulate``:
identical keys or an abort with its reason; the eavesdroppers against what the
literature says they do; the simulated asymptotic key rate of the Gobby-Yuan-
Shields link against Ma, Qi, Zhao and Lo's infinite-decoy formula.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qstack
from qstack.app.qkd import api as qkd
from qstack.app.qkd.bb84 import QkdProtocol, QkdRequest
from qstack.app.qkd.estimation import infinite_decoy_key_rate
from qstack.app.qkd.messages import SiftDetections
from qstack.core.errors import ConfigError, ErrorCode
from qstack.core.protocol import Fail, MessageReceived
from qstack.physical.detectors import ThresholdDetector
from qstack.physical.fibre import FibreChannel
from qstack.physical.pulses import class_statistics
from qstack.physical.qkd import binary_entropy, decoy_bb84_key_rate
from qstack.physical.qkdlink import QkdLinkModel
from qstack.physical.sources import WeakCoherentSource


def _net(**link):
    return {"nodes": ["alice", "bob"], "links": [dict({"nodes": ["alice", "bob"]}, **link)]}


def _run(net, pulses, seed=1, finite=True, decoys=0):
    async def alice(ctx):
        return await qkd.bb84(ctx, "bob", pulses=pulses, finite=finite, decoys=decoys)

    async def bob(ctx):
        return await qkd.bb84_receive(ctx, "alice")

    res = qstack.simulate(net, {"alice": alice, "bob": bob}, seed=seed, qkd=True, settle_s=0)
    res.raise_errors()
    return res.results["alice"], res.results["bob"]


def _agree_or_abort(a, b):
    if a.ok or b.ok:
        assert a.ok and b.ok, (a.reason, b.reason)
        assert a.key_length > 0 and np.array_equal(a.key, b.key)
    else:
        assert a.reason and b.reason and a.code is not None and b.code is not None
        # both ends name the same cause (the other end's says who aborted)
        assert a.reason.split(":")[0] == b.reason.split(":")[0]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.floats(0, 120), e_d=st.floats(0, 0.12), seed=st.integers(0, 2**31),
       pulses=st.integers(200_000, 20_000_000), finite=st.booleans())
def test_keys_agree_or_the_block_aborts_with_a_reason(length, e_d, seed, pulses, finite):
    a, b = _run(_net(length_km=length, qkd_misalignment=e_d), pulses, seed, finite)
    _agree_or_abort(a, b)


def test_a_block_gives_identical_keys_with_every_leak_counted():
    a, b = _run(_net(length_km=25), 30_000_000)
    assert a.ok and b.ok and np.array_equal(a.key, b.key) and a.key_length > 1000
    # both ends computed the same bounds from the same counts
    assert a.estimate == b.estimate and a.leaks.error_correction == b.leaks.error_correction
    assert a.leaks.verification == 50          # ceil(log2(1e15))
    # Lim et al. Eq. (1): the key length from the bounds and the counted leak
    e = a.estimate
    ell = math.floor(e.s_key0 + e.s_key1 * (1 - binary_entropy(e.phase_error))
                     - a.leaks.error_correction - 6 * math.log2(21 / 1e-10) - math.log2(2 / 1e-15))
    assert a.key_length == ell
    # the pulses take n periods of 1 ns; the post-processing's messages take round trips on top
    assert a.pulses_end_ns - a.start_ns >= 30_000_000
    assert b.end_ns > a.pulses_end_ns


def test_the_same_seed_gives_the_same_keys():
    k1 = _run(_net(length_km=10), 500_000, seed=7)[0].key
    k2 = _run(_net(length_km=10), 500_000, seed=7)[0].key
    assert np.array_equal(k1, k2)


# ----------------------------------------------------------------- eavesdroppers

@pytest.mark.parametrize("fraction", [1.0, 0.4])
def test_intercept_resend_drives_the_qber_to_a_quarter_times_the_fraction(fraction):
    e_d = 0.015
    a, b = _run(_net(length_km=10, eavesdropper="intercept-resend", eve_fraction=fraction,
                     qkd_misalignment=e_d), 600_000, finite=False)
    # Bennett-Brassard: a photon measured in the wrong basis (1/2) lands in the wrong
    # detector half the time: 1/4 + e_d/2 with misalignment (for any number of photons
    # of a Poisson pulse, each photon on its own); the pulses Eve leaves alone keep e_d
    want = fraction * (0.25 + e_d / 2) + (1 - fraction) * e_d
    n = sum(a.n_test)
    sigma = math.sqrt(want * (1 - want) / n)
    # 5 sigma of the test-basis counts, plus 1e-3 for the dark counts (p 1e-7 per gate)
    assert abs(a.qber_test - want) < 5 * sigma + 1e-3
    if fraction == 1.0:
        assert not a.ok and not b.ok
        assert a.reason.startswith("QBER too high") and a.code == ErrorCode.APP_ABORTED
        assert b.reason.startswith("QBER too high")


def test_pns_steals_the_key_a_non_decoy_estimate_grants_and_the_decoys_remove_it():
    honest_a, _ = _run(_net(length_km=50), 2_000_000, finite=False)
    pns_a, pns_b = _run(_net(length_km=50, eavesdropper="pns"), 2_000_000, finite=False)
    mu = 0.6
    q_h, e_h = _signal(honest_a), honest_a.qber_test_per_class[0]
    q_p, e_p = _signal(pns_a), pns_a.qber_test_per_class[0]
    # Eve matched the signal's gain: without decoys the channel looks honest
    assert abs(q_p / q_h - 1) < 0.1
    # a non-decoy estimate trusting the channel (GLLP with Y1 = eta inferred from
    # Q = 1 - e^(-eta mu), e1 = E) grants a key ...
    def naive(q, e):
        eta = -math.log(1 - q) / mu
        return 0.5 * (mu * math.exp(-mu) * eta * (1 - binary_entropy(e)) - 1.16 * q * binary_entropy(e))
    assert naive(q_p, e_p) > 0.5 * naive(q_h, e_h) > 0
    # ... yet every single-photon pulse was blocked: Eve holds a photon of every pulse
    # Bob detected, so that key is all hers. The decoy estimate sees it: the weak
    # decoy's gain fell (fewer multi-photon pulses), the single-photon bound collapses
    assert _gain(pns_a, 1) < 0.6 * _gain(honest_a, 1)
    assert pns_a.estimate is None or pns_a.estimate.s_key1 < 0.1 * honest_a.estimate.s_key1
    assert honest_a.ok and honest_a.key_length > 0
    assert not pns_a.ok or pns_a.key_length < 0.1 * honest_a.key_length
    _agree_or_abort(pns_a, pns_b)


def _signal(r):
    return _gain(r, 0)


def _gain(r, k):
    """Sifted detections per pulse of class k (both bases), scaled back to all clicks."""
    probs = (0.5, 0.35, 0.15)
    sift = 0.7 ** 2 + 0.3 ** 2
    return (r.n_key[k] + r.n_test[k]) / (r.n_pulses * probs[k] * sift)


def test_beam_splitting_shortens_the_key_as_the_tap_grows():
    lengths = [_run(_net(length_km=25, eavesdropper="beam-splitting", eve_tap=t), 1_000_000,
                    finite=False)[0].key_length for t in (0.0, 0.5, 0.9)]
    assert lengths[0] > lengths[1] > lengths[2] > 0


def test_eavesdropper_keys_are_checked_in_the_file():
    from qstack.config import network_from_dict

    with pytest.raises(ConfigError, match="eavesdropper"):
        network_from_dict(_net(eavesdropper="photon-cloning"))
    with pytest.raises(ConfigError, match="eve_tap"):
        network_from_dict(_net(eavesdropper="beam-splitting", eve_tap=1.5))
    with pytest.raises(ConfigError, match="qkd_class_probs"):
        network_from_dict(_net(qkd_class_probs=[0.5, 0.6, 0.1]))


# ----------------------------------------------------------------- the protocol alone

def test_a_message_for_no_block_is_refused_and_bad_requests_answered():
    p = QkdProtocol("alice")
    out = p.handle(MessageReceived("bob", SiftDetections(9, 0, True, 0, 0, b"", b"")), 0)
    assert [type(x) for x in out] == [Fail] and out[0].code == ErrorCode.UNEXPECTED_EVENT
    out = p.handle(QkdRequest("bob", 0), 0)
    assert len(out) == 1 and not out[0].event.ok and out[0].event.code == ErrorCode.BAD_FIELD


def test_a_link_down_aborts_the_block_at_both_ends():
    from qstack.core.faults import Fault

    async def alice(ctx):
        return await qkd.bb84(ctx, "bob", pulses=50_000_000)

    async def bob(ctx):
        return await qkd.bb84_receive(ctx, "alice")

    res = qstack.simulate(_net(length_km=10), {"alice": alice, "bob": bob}, qkd=True, settle_s=0,
                          faults=[Fault("link_down", 10_000_000, ("alice", "bob"))])
    a, b = res.results["alice"], res.results["bob"]
    assert not a.ok and not b.ok and "down" in a.reason and "down" in b.reason


# ----------------------------------------------------------------- MQZL with GYS

MU, NU = 0.48, 0.01                 # MQZL's optimal signal for GYS; a weak decoy near their nu -> 0
Y0_GYS, ED_GYS, ETA_BOB, ALPHA, F = 1.7e-6, 0.033, 0.045, 0.21, 1.22


def _gys_model():
    # Bob's detector carries eta_Bob; dark counts Y0/2 per detector (two detectors); MQZL's
    # model has no dead time
    return QkdLinkModel(WeakCoherentSource((MU, NU, 0.0), (0.3, 0.5, 0.2)),
                        ThresholdDetector(ETA_BOB, Y0_GYS / 2, 0.0, 0.0, 0.0), ED_GYS, 0.5)


def _lmc(mu, eta):
    q = Y0_GYS + 1 - math.exp(-eta * mu)
    return q, (0.5 * Y0_GYS + ED_GYS * (1 - math.exp(-eta * mu))) / q


def _rate(s):
    return decoy_bb84_key_rate(MU, NU, s[0][0], s[0][1], s[1][0], s[1][1], s[2][0], f_ec=F)["rate"]


@pytest.mark.parametrize("length_km", [0.0, 50.0, 100.0, 130.0, 140.0, 145.0, 150.0, 170.0])
def test_gys_simulated_asymptotic_rate_follows_mqzl_infinite_decoy(length_km):
    """The asymptotic (GLLP, vacuum + weak decoy) key rate per signal pulse from a
    simulated block of the GYS link agrees with MQZL's infinite-decoy formula where
    it is positive, and is 0 beyond their maximum distance (~142 km)."""
    eta = ETA_BOB * 10 ** (-ALPHA * length_km / 10)
    want = infinite_decoy_key_rate(MU, eta, Y0_GYS, ED_GYS, F)
    q_mu = _lmc(MU, eta)[0]
    n = int(min(2e11, 3e6 / (0.3 * q_mu)))        # ~3e6 signal clicks, at most 2e11 pulses
    ev = _gys_model().simulate(FibreChannel(length_km=length_km, attenuation_db_per_km=ALPHA),
                               n, np.random.default_rng(int(length_km) + 1))
    stats = class_statistics(ev)
    meas = [(c.gain, c.qber) for c in stats]
    got = _rate(meas)
    if want == 0.0:
        assert got == 0.0
        return
    # tolerance: (1) the weak decoy's O(nu) bias, |R_vw - R_inf| with the LMC closed-form
    # gains (MQZL Eqs. (3)-(4)); (2) 4 sigma of the counts: R's sensitivity to each
    # measured gain and QBER times its binomial standard deviation (delta method)
    exact = [_lmc(MU, eta), _lmc(NU, eta), (Y0_GYS, 0.5)]
    bias = abs(_rate(exact) - want)
    var = 0.0
    for k, c in enumerate(stats):
        for j, sd in ((0, math.sqrt(c.gain * (1 - c.gain) / c.sent)),
                      (1, math.sqrt(c.qber * (1 - c.qber) / max(1, c.sifted)) if k < 2 else 0.0)):
            if sd == 0.0:
                continue
            up = [list(m) for m in meas]
            up[k][j] += sd
            var += (_rate(up) - got) ** 2
    assert abs(got - want) <= bias + 4 * math.sqrt(var), (got, want, bias, math.sqrt(var))
    assert got > 0


# ----------------------------------------------------------------- the command line

def test_qkd_run_prints_the_block_and_writes_both_keys(tmp_path, capsys):
    from qstack.cli import main

    net = tmp_path / "n.toml"
    net.write_text('nodes = ["a", "b", "c"]\n[[links]]\nnodes = ["a", "b"]\nlength_km = 10\n'
                   '[[links]]\nnodes = ["b", "c"]\n')
    assert main(["qkd", "run", str(net), "--pulses", "2e7", "--between", "a", "b",
                 "--out", str(tmp_path / "k.bin")]) == 0
    text = capsys.readouterr().out
    assert "identical" in text and "QBER (test basis) per class: signal" in text
    ka, kb = (tmp_path / "k.a.bin").read_bytes(), (tmp_path / "k.b.bin").read_bytes()
    bits = int(text.split("key: ")[1].split()[0])
    assert ka == kb and len(ka) == (bits + 7) // 8
    # input in the user's words: exit 2 and one line naming what was wrong
    for argv, said in ((["--between", "a", "c"], "not neighbours"),
                       (["--pulses", "lots"], "--pulses"), (["--pulses", "1.5"], "--pulses")):
        assert main(["qkd", "run", str(net), *argv]) == 2
        assert said in capsys.readouterr().err
    # an attacked link aborts: exit 1 with the reason
    net.write_text('nodes = ["a", "b"]\n[[links]]\nnodes = ["a", "b"]\n'
                   'eavesdropper = "intercept-resend"\n')
    assert main(["qkd", "run", str(net), "--pulses", "1e6"]) == 1
    assert "aborted: QBER too high" in capsys.readouterr().out


def test_qkd_sweep_writes_the_table_and_the_plot(tmp_path, capsys):
    import csv

    from qstack.cli import main

    net = tmp_path / "n.toml"
    net.write_text('nodes = ["a", "b"]\n[[links]]\nnodes = ["a", "b"]\n')
    out_csv, out_png = tmp_path / "s.csv", tmp_path / "s.png"
    assert main(["qkd", "sweep", str(net), "--param", "length_km=0:100:50", "--pulses", "2e6",
                 "--block-sizes", "1e9", "--csv", str(out_csv), "--plot", str(out_png)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["length_km"] for r in rows] == ["0", "50", "100"]
    # the closed forms: the PLOB bound of the fibre's transmissivity, above every rate
    for r in rows[1:]:
        eta = float(r["transmissivity"])
        assert float(r["plob_per_pulse"]) == pytest.approx(-math.log2(1 - eta), rel=1e-6)
        assert float(r["mqzl_asymptotic_per_pulse"]) < float(r["plob_per_pulse"])
    # every rate falls with the distance
    for col in ("mqzl_asymptotic_per_pulse", "finite_1e+09_per_pulse", "plob_per_pulse"):
        vals = [float(r[col]) for r in rows]
        assert vals[0] > vals[1] > vals[2] >= 0, col
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for param in ("length_km=5:1:1", "length_km", "nosuchkey=1,2", "length_km=-5"):
        assert main(["qkd", "sweep", str(net), "--param", param, "--csv", str(out_csv)]) == 2
        assert "--param" in capsys.readouterr().err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_message_from_a_neighbour_makes_the_protocol_raise(data):
    """Whatever the peer sends, in whatever phase: a Fail, an abort or nothing, never an
    exception out of handle (specs/protocol.md, convention 6)."""
    from qstack.app.qkd import messages as M
    from qstack.physical.ops import PulseRecord
    from tests.strategies import message_strategy

    classes = [M.QkdStart, M.SiftDetections, M.SiftBases, M.TestBits, M.TestErrors,
               M.CascadeStart, M.ParityQuery, M.ParityReply, M.CascadeDone, M.VerifyTag,
               M.VerifyResult, M.AmplifySeed, M.QkdAbort]
    from qstack.core.protocol import OperationDone
    for role in ("send", "receive"):
        p = QkdProtocol("alice")
        if role == "send":
            (op, _start) = p.handle(QkdRequest("bob", 1000), 0)
        else:
            (op,) = p.handle(MessageReceived("bob", M.QkdStart(1, 1000, 0, True, 1e-10, 1e-15,
                                                                0.11, 0.15, "yan14")), 0)
        rec = PulseRecord(True, role, 1000, np.array([3, 9, 20]), np.array([0, 1, 0], np.uint8),
                          np.array([1, 0, 1], np.int8 if role == "receive" else np.uint8),
                          np.array([0, 1, 2], np.uint8), (500, 300, 200), 0, 1000, 1.0, "",
                          (0.6, 0.2, 2e-4), (0.5, 0.35, 0.15))
        p.handle(OperationDone(op.op_id, rec), 1000)
        for _ in range(data.draw(st.integers(1, 6))):
            cls = data.draw(st.sampled_from(classes))
            msg = data.draw(message_strategy(cls))
            if data.draw(st.booleans()):
                msg = type(msg)(**{**{f: getattr(msg, f) for f in msg.__dataclass_fields__},
                                   "block_id": 1})
            out = p.handle(MessageReceived("bob", msg), 2000)
            assert isinstance(out, list)
