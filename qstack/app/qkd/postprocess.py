"""The post-processing of one block: sift → estimate → correct → verify → amplify.

Both ends' final keys are identical, or the block aborts and says why
(:attr:`BlockResult.reason`, with ``ErrorCode.APP_ABORTED``):

* ``"no sifted key"`` -- no key-basis event survived sifting;
* ``"QBER too high"`` -- the test basis' error rate exceeds ``qber_max``;
* ``"phase error too high"`` -- Lim et al.'s upper bound φ on the key's
  single-photon phase-error rate exceeds ``phase_error_max`` (their φ_tol);
  with one decoy (two classes, Rusca et al. 2018) checked after Cascade,
  whose corrected errors per class the bound needs;
* ``"verification failed"`` -- the keys still differ after Cascade;
* ``"no secret key"`` -- the estimate leaves ℓ ≤ 0 bits.

The key comes from the key basis (Z by default) of every intensity class; the
test basis' events are disclosed in full to count errors per class (Lim et al.
2014, Sec. II).  The messages, in order (plain data; a protocol carries them):
:class:`~.sifting.BobDetections`, :class:`~.sifting.AliceBases`,
:class:`TestBits` (Bob's test-basis bits), :class:`TestErrors` (Alice's count of
errors per class), Cascade's :class:`~.cascade.CascadeStart` and rounds of
:class:`~.cascade.ParityQuery` / :class:`~.cascade.ParityReply`,
:class:`~.verification.VerifyTag` / :class:`~.verification.VerifyResult`, and
:class:`~.amplification.AmplificationSeed`.  :func:`run_block` passes them
between the two ends in process and counts them.

Every leakage term is recorded in :class:`LeakRecord`: λ_EC (Cascade's parities,
counted), the verification tag (t bits), and the finite-size terms Lim et al.'s
Eq. (1) subtracts, 6 log2(21/ε_sec) + log2(2/ε_cor) (the latter covers the tag;
19 for 21 with one decoy, Rusca et al. Eq. (A25)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qstack.core.errors import ErrorCode

from ._common import check_prob, fail
from .amplification import amplify, toeplitz_seed
from .cascade import CascadeAlice, CascadeBob, efficiency
from .estimation import (
    ONE_DECOY, DecoySettings, FiniteKeyEstimate, estimate, finite_size_bits, key_length,
)
from .sifting import AliceRecord, BobRecord, bob_detections, sift_alice, sift_bob
from .verification import check_tag, make_tag

__all__ = ["PostProcessConfig", "TestBits", "TestErrors", "LeakRecord", "BlockResult", "run_block"]


@dataclass(frozen=True)
class PostProcessConfig:
    """Parameters of the post-processing of a block.

    settings: the intensity classes (class index k = position in ``settings.mus``): three
    for Lim et al.'s two-decoy analysis, two for Rusca et al.'s one-decoy one
    (``settings.method``);
    key_basis: 0 (Z) or 1 (X), the other is the test basis;
    eps_sec, eps_cor: the composable secrecy and correctness parameters;
    finite: Lim et al.'s finite-key bounds (False: their asymptotic limit);
    qber_max, phase_error_max: abort thresholds (test-basis QBER, φ bound);
    cascade_variant: see :func:`~.cascade.block_sizes`; cascade_passes: cut Cascade
    short after this many passes (0: the variant's own number).
    """

    settings: DecoySettings
    key_basis: int = 0
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    finite: bool = True
    qber_max: float = 0.11
    phase_error_max: float = 0.15
    cascade_variant: str = "yan14"
    cascade_passes: int = 0

    def __post_init__(self) -> None:
        if self.key_basis not in (0, 1):
            fail("PostProcessConfig.key_basis", "0 (Z) or 1 (X)", self.key_basis)
        check_prob("PostProcessConfig.eps_sec", self.eps_sec, open_low=True, open_high=True)
        check_prob("PostProcessConfig.eps_cor", self.eps_cor, open_low=True, open_high=True)
        check_prob("PostProcessConfig.qber_max", self.qber_max)
        check_prob("PostProcessConfig.phase_error_max", self.phase_error_max)


@dataclass(frozen=True)
class TestBits:
    """Bob → Alice: his bits of the test-basis sifted events (in sifted order)."""

    bits: np.ndarray


@dataclass(frozen=True)
class TestErrors:
    """Alice → Bob: errors among the test-basis events, per intensity class."""

    errors: tuple[int, ...]


@dataclass
class LeakRecord:
    """Bits of information about the key disclosed or discounted, by step.

    error_correction: λ_EC, parities Cascade disclosed; verification: the tag's t bits;
    finite_size: 6 log2(21/ε_sec) + log2(2/ε_cor) from Lim et al. Eq. (1) (0 asymptotically);
    test_bits: test-basis bits announced (not key bits: they are discarded).
    """

    error_correction: int = 0
    verification: int = 0
    finite_size: float = 0.0
    test_bits: int = 0


@dataclass
class BlockResult:
    """Outcome of one block; on abort the keys are empty and ``reason`` says why."""

    ok: bool
    reason: str | None
    code: ErrorCode | None
    alice_key: np.ndarray
    bob_key: np.ndarray
    key_length: int = 0
    n_key: tuple[int, ...] = ()
    n_test: tuple[int, ...] = ()
    m_test: tuple[int, ...] = ()
    qber_test: float = math.nan
    qber_test_per_class: tuple[float, ...] = ()
    qber_key: float = math.nan
    estimate: FiniteKeyEstimate | None = None
    leaks: LeakRecord = field(default_factory=LeakRecord)
    cascade_rounds: int = 0
    cascade_efficiency: float = math.nan
    messages: int = 0
    detail: str = ""


def _abort(res: BlockResult, reason: str, detail: str) -> BlockResult:
    res.ok, res.reason, res.code, res.detail = False, reason, ErrorCode.APP_ABORTED, detail
    res.alice_key = res.bob_key = np.zeros(0, dtype=np.uint8)
    return res


def run_block(alice: AliceRecord, bob: BobRecord, config: PostProcessConfig, seed: int = 0) -> BlockResult:
    """Post-process one block of records (both ends in process, messages passed by hand).

    seed: Alice's random choices (Cascade's permutation seed, the hash seeds).
    """
    rng = np.random.default_rng(seed)
    res = BlockResult(False, None, None, np.zeros(0, np.uint8), np.zeros(0, np.uint8))
    K = len(config.settings.mus)
    kb, tb = config.key_basis, 1 - config.key_basis

    # 1. sifting
    det = bob_detections(bob)
    reply, sa = sift_alice(alice, det)
    sb = sift_bob(bob, det, reply)
    res.messages += 2
    if sa.cls.size and int(sa.cls.max()) >= K:
        fail("run_block", f"intensity classes 0..{K - 1} (config.settings)", int(sa.cls.max()))
    res.n_key = tuple(int(c) for c in sa.counts(kb, K))
    res.n_test = tuple(int(c) for c in sa.counts(tb, K))

    # 2. error estimation on the test basis (all of it disclosed)
    tmask = sa.mask(tb)
    tbits = TestBits(sb.bits[tmask])
    wrong = sa.bits[tmask] != tbits.bits
    terr = TestErrors(tuple(int(c) for c in np.bincount(sa.cls[tmask][wrong], minlength=K)[:K]))
    res.messages += 2
    res.leaks.test_bits = int(tbits.bits.size)
    res.m_test = terr.errors
    res.qber_test = sum(terr.errors) / max(1, sum(res.n_test))
    res.qber_test_per_class = tuple(m / n if n else math.nan for m, n in zip(terr.errors, res.n_test))
    if sum(res.n_key) == 0:
        return _abort(res, "no sifted key", "no key-basis event survived sifting")
    if res.qber_test > config.qber_max:
        return _abort(res, "QBER too high", f"test-basis QBER {res.qber_test:.4f} > {config.qber_max}")

    # 3. parameter estimation (Lim et al. 2014); the one-decoy bound needs the
    # key basis' errors per class, known only after error correction (step 4b)
    one = config.settings.method == ONE_DECOY
    if not one:
        est = res.estimate = estimate(res.n_key, res.n_test, res.m_test, config.settings,
                                      config.eps_sec, config.eps_cor, config.finite)
        if est.phase_error > config.phase_error_max:
            return _abort(res, "phase error too high",
                          f"phase-error bound {est.phase_error:.4f} > {config.phase_error_max}")

    # 4. error correction: Cascade on the key-basis bits of every class
    kmask = sa.mask(kb)
    ka, kbits = sa.bits[kmask], sb.bits[kmask]
    alice_ec = CascadeAlice(ka)
    # block sizes from the test basis' QBER (the key basis' is unknown until corrected)
    bob_ec = CascadeBob(kbits, max(res.qber_test, 1e-3), int(rng.integers(0, 2**63)), config.cascade_variant,
                        max_passes=config.cascade_passes or None)
    alice_ec.on_start(bob_ec.start())
    res.messages += 1
    while (q := bob_ec.next_query()) is not None:
        bob_ec.on_reply(alice_ec.on_query(q))
        res.messages += 2
        res.cascade_rounds += 1
    corrected = bob_ec.key()
    n = int(ka.size)
    res.leaks.error_correction = int(alice_ec.disclosed)
    res.qber_key = int(bob_ec.core.flips) / n        # every flip corrected one error
    res.cascade_efficiency = efficiency(alice_ec.disclosed, n, res.qber_key)
    if one:     # 4b. Rusca et al. 2018: Bob's flips per class, told to Alice
        flips = (corrected != kbits).astype(bool)
        m_key = tuple(int(c) for c in np.bincount(sa.cls[kmask][flips], minlength=K)[:K])
        res.messages += 1
        est = res.estimate = estimate(res.n_key, res.n_test, res.m_test, config.settings,
                                      config.eps_sec, config.eps_cor, config.finite, m_key)
        if est.phase_error > config.phase_error_max:
            return _abort(res, "phase error too high",
                          f"phase-error bound {est.phase_error:.4f} > {config.phase_error_max}")

    # 5. error verification
    tag = make_tag(ka, config.eps_cor, rng)
    verdict = check_tag(corrected, tag)
    res.messages += 2
    res.leaks.verification = tag.tag_bits
    if not verdict.ok:
        return _abort(res, "verification failed", "the corrected keys' hashes differ")

    # 6. privacy amplification to Lim et al.'s (Rusca et al.'s) length
    if config.finite:
        res.leaks.finite_size = finite_size_bits(est.method, config.eps_sec, config.eps_cor)
    ell = key_length(est, res.leaks.error_correction)
    res.key_length = ell
    if ell <= 0:
        return _abort(res, "no secret key", "the estimate leaves a key length of 0 bits")
    seed_msg = toeplitz_seed(n, ell, rng)
    res.messages += 1
    res.alice_key = amplify(ka, seed_msg)
    res.bob_key = amplify(corrected, seed_msg)
    res.ok = True
    return res
