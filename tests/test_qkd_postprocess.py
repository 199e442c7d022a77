"""Sifting and the whole post-processing of a block: keys identical or an abort with its
reason, every leakage term recorded, on pulse trains from the physical layer's kernels."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.app.qkd import estimation as E
from qstack.app.qkd import postprocess as PP
from qstack.app.qkd import sifting as S
from qstack.app.qkd._common import QKDError
from qstack.core.errors import ErrorCode
from qstack.physical import pulses as P

MUS, PROBS, PZ = (0.6, 0.2, 2e-4), (0.5, 0.35, 0.15), 0.7
CONFIG = PP.PostProcessConfig(E.DecoySettings(MUS, PROBS))
REASONS = {"no sifted key", "QBER too high", "phase error too high", "verification failed", "no secret key"}


def _params(length_km: float) -> P.PulseTrainParams:
    return P.PulseTrainParams(mean_photon_numbers=MUS, class_probs=PROBS,
                              transmissivity=10 ** (-0.2 * length_km / 10) * 0.8, p_z_alice=PZ, p_z_bob=PZ)


def _records(length_km: float, n_pulses: int, seed: int):
    ev = P.simulate_pulses(_params(length_km), n_pulses, np.random.default_rng(seed))
    return ev, *S.records_from_events(ev)


def test_sifting_by_hand_and_per_class_counts():
    alice = S.AliceRecord(index=[0, 1, 2, 3, 4, 5], basis=[0, 1, 0, 1, 0, 0], bit=[1, 0, 1, 1, 0, 1],
                          cls=[0, 1, 2, 0, 1, 0])
    bob = S.BobRecord(index=[0, 1, 2, 3, 4, 5], basis=[0, 0, 0, 1, 1, 0], bit=[1, -1, 0, 1, 0, -1])
    det = S.bob_detections(bob)
    assert det.index.tolist() == [0, 2, 3, 4]          # no click at 1 and 5
    reply, sa = S.sift_alice(alice, det)
    sb = S.sift_bob(bob, det, reply)
    assert sa.index.tolist() == sb.index.tolist() == [0, 2, 3]   # bases differ at 4
    assert sa.bits.tolist() == [1, 1, 1] and sb.bits.tolist() == [1, 0, 1]
    assert sa.counts(0, 3).tolist() == [1, 0, 1] and sa.counts(1, 3).tolist() == [1, 0, 0]
    with pytest.raises(QKDError) as ei:
        S.sift_alice(S.AliceRecord([0], [0], [0], [0]), S.BobDetections(np.array([7]), np.array([0], np.uint8)))
    assert ei.value.code == ErrorCode.APP_ABORTED
    with pytest.raises(QKDError):
        S.BobRecord(index=[0, 0], basis=[0, 1], bit=[0, 1])


def test_sifted_counts_match_the_physical_layers_class_statistics():
    ev, alice, bob = _records(25.0, 2_000_000, 3)
    det = S.bob_detections(bob)
    reply, sa = S.sift_alice(alice, det)
    sb = S.sift_bob(bob, det, reply)
    stats = P.class_statistics(ev)
    both = sa.counts(0, 3) + sa.counts(1, 3)
    assert both.tolist() == [s.sifted for s in stats]
    errs = np.bincount(sa.cls[sa.bits != sb.bits], minlength=3)
    assert errs.tolist() == [s.errors for s in stats]


@pytest.mark.parametrize("length_km,seed", [(0.0, 1), (25.0, 2), (50.0, 3), (100.0, 4)])
def test_block_ends_with_identical_keys_or_an_abort_with_its_reason(length_km, seed):
    _, alice, bob = _records(length_km, 20_000_000, seed)
    r = PP.run_block(alice, bob, CONFIG, seed=seed)
    if not r.ok:
        assert r.reason in REASONS and r.code == ErrorCode.APP_ABORTED
        assert r.alice_key.size == r.bob_key.size == 0
        return
    assert np.array_equal(r.alice_key, r.bob_key)
    assert r.alice_key.size == r.key_length > 0
    # the length is Lim et al.'s Eq. (1) with the leak Cascade really had
    est = r.estimate
    h = -est.phase_error * math.log2(est.phase_error) - (1 - est.phase_error) * math.log2(1 - est.phase_error)
    want = math.floor(est.s_key0 + est.s_key1 * (1 - h) - r.leaks.error_correction
                      - 6 * math.log2(21 / CONFIG.eps_sec) - math.log2(2 / CONFIG.eps_cor))
    assert r.key_length == want
    assert r.leaks.verification == 50                          # ceil(log2 1e15)
    assert r.leaks.finite_size == pytest.approx(6 * math.log2(21e10) + math.log2(2e15))
    assert r.leaks.test_bits == sum(r.n_test)
    assert r.cascade_efficiency < 1.2


def test_pipeline_over_distance_keys_shrink_and_far_links_abort():
    """25 km gives a key; at 100 km (20 dB) 2e7 pulses are too few for the finite-key
    bounds and the block aborts rather than hand out an unproven key."""
    near = PP.run_block(*_records(25.0, 20_000_000, 5)[1:], CONFIG, seed=5)
    far = PP.run_block(*_records(100.0, 20_000_000, 5)[1:], CONFIG, seed=5)
    assert near.ok and near.key_length > 10_000
    assert not far.ok and far.reason in ("phase error too high", "no secret key")


def test_intercept_resend_level_errors_abort_on_the_qber():
    """Intercept-resend on every pulse gives a QBER of 25 %: flip Bob's bits at that rate."""
    _, alice, bob = _records(25.0, 5_000_000, 6)
    rng = np.random.default_rng(6)
    flip = (rng.random(bob.bit.size) < 0.25) & (bob.bit >= 0)
    bob = S.BobRecord(bob.index, bob.basis, np.where(flip, 1 - bob.bit, bob.bit))
    r = PP.run_block(alice, bob, CONFIG, seed=6)
    assert not r.ok and r.reason == "QBER too high"
    assert r.qber_test == pytest.approx(0.25 + 0.5 * 0.015, abs=0.02)


def test_a_tiny_block_aborts_on_the_phase_error_bound():
    _, alice, bob = _records(25.0, 200_000, 7)
    r = PP.run_block(alice, bob, CONFIG, seed=7)
    assert not r.ok and r.reason == "phase error too high"


def test_residual_errors_are_caught_by_verification():
    """Cascade cut to one pass corrects at most one error per odd block and leaves the
    rest (no cascade effect without a second pass): verification refuses the block."""
    _, alice, bob = _records(25.0, 3_000_000, 8)
    cfg = PP.PostProcessConfig(E.DecoySettings(MUS, PROBS), cascade_passes=1, finite=False)
    r = PP.run_block(alice, bob, cfg, seed=8)
    assert not r.ok and r.reason == "verification failed"
    assert r.leaks.error_correction > 0 and r.leaks.verification == 50


def test_asymptotic_limit_gives_a_longer_key_than_the_finite_bounds():
    _, alice, bob = _records(25.0, 20_000_000, 9)
    fin = PP.run_block(alice, bob, CONFIG, seed=9)
    asym = PP.run_block(alice, bob, PP.PostProcessConfig(E.DecoySettings(MUS, PROBS), finite=False), seed=9)
    assert fin.ok and asym.ok
    assert asym.key_length > fin.key_length
    assert asym.leaks.finite_size == 0.0
    with pytest.raises(QKDError):
        PP.PostProcessConfig(E.DecoySettings(MUS, PROBS), key_basis=2)


@settings(max_examples=40)
@given(n=st.integers(0, 30_000), e_key=st.floats(0.0, 0.15), e_test=st.floats(0.0, 0.15),
       finite=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_any_block_ends_with_identical_keys_or_a_stated_reason(n, e_key, e_test, finite, seed):
    """Synthetic records with independent error rates in the two bases (so Cascade's
    block sizes can be wrong), every class, both estimators."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    basis = rng.integers(0, 2, n)
    cls = rng.choice(3, n, p=PROBS)
    bits = rng.integers(0, 2, n)
    flip = rng.random(n) < np.where(basis == 0, e_key, e_test)
    bob_bits = np.where(rng.random(n) < 0.9, bits ^ flip, -1)      # 10 % of pulses without a click
    alice = S.AliceRecord(idx, basis, bits, cls)
    bob = S.BobRecord(idx, basis, bob_bits)
    r = PP.run_block(alice, bob, PP.PostProcessConfig(E.DecoySettings(MUS, PROBS), finite=finite), seed=seed)
    if r.ok:
        assert np.array_equal(r.alice_key, r.bob_key) and r.alice_key.size == r.key_length > 0
    else:
        assert r.reason in REASONS and r.code == ErrorCode.APP_ABORTED and r.alice_key.size == 0
