"""Cascade: the compiled kernel and its Python twin agree step for step; keys end equal
or verification says they differ; leakage is counted exactly; efficiency f <= 1.10."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qstack.app.qkd import cascade as C
from qstack.app.qkd import verification as V
from qstack.app.qkd._common import QKDError
from qstack.physical.qkd import binary_entropy
from qstack.core.errors import ErrorCode

needs_cython = pytest.mark.skipif(not C.HAVE_CYTHON, reason="Cython kernel not built")


def _bsc(n, p, rng):
    a = rng.integers(0, 2, n, dtype=np.uint8)
    err = (rng.random(n) < p).astype(np.uint8)
    return a, a ^ err, int(err.sum())


def _transcript(core_cls, alice_bits, bob_bits, sizes, seed):
    """Drive one Bob core against Alice; return every query and the final state."""
    n = alice_bits.size
    perms = C.pass_permutations(n, len(sizes), seed)
    alice = C.CascadeAlice(alice_bits)
    alice.on_start(C.CascadeStart(n, tuple(sizes), seed))
    core = core_cls(bob_bits, perms, np.asarray(sizes, dtype=np.int64))
    log, r = [], 0
    while True:
        ps, s, e = core.queries()
        if ps.size == 0:
            break
        r += 1
        log.append((ps.tolist(), s.tolist(), e.tolist()))
        core.receive(alice.on_query(C.ParityQuery(r, ps, s, e)).parities)
    return log, core.key(), core.leaked, core.flips, alice.disclosed


@needs_cython
@given(n=st.integers(1, 400), p=st.floats(0.0, 0.3), variant=st.sampled_from(C.VARIANTS),
       seed=st.integers(0, 2**63 - 1), data_seed=st.integers(0, 2**32 - 1))
def test_kernel_and_python_twin_ask_the_same_queries_and_end_equal(n, p, variant, seed, data_seed):
    a, b, _ = _bsc(n, p, np.random.default_rng(data_seed))
    sizes = C.block_sizes(n, max(p, 0.001), variant)
    py = _transcript(C.BobCorePy, a, b, sizes, seed)
    cy = _transcript(C._cascade.BobCore, a, b, sizes, seed)
    assert py[0] == cy[0]
    assert np.array_equal(py[1], cy[1])
    assert py[2:] == cy[2:]


@needs_cython
@given(n=st.integers(1, 3000), passes=st.integers(1, 4), seed=st.integers(0, 2**64 - 1))
def test_permutation_kernel_equals_its_twin(n, passes, seed):
    got = C.pass_permutations(n, passes, seed, use_cython=True)
    assert np.array_equal(got, C.pass_permutations(n, passes, seed, use_cython=False))
    assert np.array_equal(np.sort(got, axis=1), np.tile(np.arange(n), (passes, 1)))


@given(n=st.integers(1, 2000), p=st.floats(0.0, 0.25), seed=st.integers(0, 2**32 - 1))
def test_after_cascade_keys_are_equal_or_verification_reports_failure(n, p, seed):
    rng = np.random.default_rng(seed)
    a, b, errors = _bsc(n, p, rng)
    res = C.reconcile(a, b, max(p, 0.001), seed=seed)
    left = int(np.count_nonzero(res.key != a))
    # every flip is a correction (a single bit's parity is Alice's bit): never a new error
    assert left == errors - res.flips
    assert res.leaked >= 0
    ok = V.check_tag(res.key, V.make_tag(a, 1e-12, rng)).ok
    assert ok == (left == 0)       # a 40-bit tag: a false pass has probability 2^-40


def test_efficiency_at_most_1_10_on_ten_thousand_bit_blocks():
    """Binary symmetric channel, QBER 1-5 %, 10^4-bit blocks, 40 seeds each. The bound is
    the issue's (best published variants: 1.07-1.10), asserted on the mean over the seeds:
    per-run f varies by up to 0.04 at 1 % (few errors per block), so the mean's standard
    error is <= 0.007 against a measured mean of 1.074-1.087 (100 seeds); f uses the QBER
    each block really had. Every block verification passes is compared with Alice's key."""
    n, seeds = 10_000, 40
    rng = np.random.default_rng(2024)
    for p in (0.01, 0.02, 0.03, 0.04, 0.05):
        fs, residual = [], 0
        for s in range(seeds):
            a, b, errors = _bsc(n, p, rng)
            res = C.reconcile(a, b, p, seed=s)
            fs.append(C.efficiency(res.leaked, n, errors / n))
            if V.check_tag(res.key, V.make_tag(a, 1e-15, rng)).ok:
                assert np.array_equal(res.key, a)
            else:
                residual += 1
        assert np.mean(fs) <= 1.10, (p, np.mean(fs))
        assert residual <= 2, (p, residual)      # 14 passes leave errors in ~0.5 % of blocks (measured)


def test_leakage_is_every_disclosed_parity_and_efficiency_formula():
    rng = np.random.default_rng(9)
    a, b, errors = _bsc(5000, 0.03, rng)
    alice = C.CascadeAlice(a)
    bob = C.CascadeBob(b, 0.03, seed=4)
    alice.on_start(bob.start())
    asked = 0
    while (q := bob.next_query()) is not None:
        asked += q.passes.size
        bob.on_reply(alice.on_query(q))
    assert asked == alice.disclosed == bob.leaked
    assert np.array_equal(bob.key(), a)
    assert C.efficiency(bob.leaked, 5000, errors / 5000) == pytest.approx(
        bob.leaked / (5000 * binary_entropy(errors / 5000)))


def test_block_sizes_follow_the_variants():
    assert C.block_sizes(10_000, 0.01)[:3] == [80, 400, 5000]
    assert len(C.block_sizes(10_000, 0.01, "yan")) == 10
    assert C.block_sizes(10_000, 0.01, "opt7")[:3] == [128, 512, 5000]
    assert C.block_sizes(10_000, 0.01, "opt8")[:4] == [128, 1024, 4096, 5000]     # alpha = 6.14
    assert C.block_sizes(10_000, 0.01, "original") == [73, 146, 292, 584]
    assert len(C.block_sizes(10_000, 0.02)) == 14
    assert C.block_sizes(10, 0.01) == [5] * 14       # clamped to n/2


def test_bad_inputs_and_out_of_order_messages():
    rng = np.random.default_rng(1)
    a, b, _ = _bsc(100, 0.05, rng)
    with pytest.raises(QKDError) as ei:
        C.CascadeAlice(a[:50]).on_start(C.CascadeBob(b, 0.05, 1).start())
    assert ei.value.code == ErrorCode.APP_ABORTED
    with pytest.raises(QKDError) as ei:
        C.CascadeAlice(a).on_query(C.ParityQuery(1, np.array([0]), np.array([0]), np.array([5])))
    assert ei.value.code == ErrorCode.UNEXPECTED_EVENT
    alice = C.CascadeAlice(a)
    alice.on_start(C.CascadeBob(b, 0.05, 1).start())
    with pytest.raises(QKDError) as ei:
        alice.on_query(C.ParityQuery(1, np.array([0]), np.array([5]), np.array([500])))
    assert ei.value.code == ErrorCode.OUT_OF_RANGE
    with pytest.raises(QKDError):
        C.block_sizes(100, 0.05, "nonsense")
    with pytest.raises(QKDError):
        C.CascadeBob(np.array([0, 2, 1]), 0.05, 1)
    with pytest.raises(QKDError):
        alice.on_start(C.CascadeStart(100, (1,) * 100, 0))
    bob = C.CascadeBob(b, 0.05, 1)
    q = bob.next_query()
    with pytest.raises(QKDError):
        bob.next_query()                                   # round 1 not answered yet
    with pytest.raises(QKDError):
        bob.on_reply(C.ParityReply(7, np.zeros(1, np.uint8)))
    with pytest.raises(QKDError) as ei:
        bob.on_reply(C.ParityReply(q.round, np.zeros(q.passes.size + 1, np.uint8)))
    assert ei.value.code == ErrorCode.BAD_FIELD


def test_a_missing_kernel_is_none_unless_cython_is_required(monkeypatch):
    from qstack.core.kernels import load_kernel
    monkeypatch.delenv("QSTACK_REQUIRE_CYTHON", raising=False)
    monkeypatch.delenv("QSTACK_PURE_PYTHON", raising=False)    # (that one asks for the twins)
    assert load_kernel("qstack.app.qkd._no_such_kernel") is None
    monkeypatch.setenv("QSTACK_REQUIRE_CYTHON", "1")
    with pytest.raises(ImportError, match="QSTACK_REQUIRE_CYTHON"):
        load_kernel("qstack.app.qkd._no_such_kernel")
    # the twin serves when asked for, with the same result as the kernel would give
    rng = np.random.default_rng(4)
    a, b, _ = _bsc(300, 0.05, rng)
    assert np.array_equal(C.reconcile(a, b, 0.05, seed=2, use_cython=False).key, a)
