"""Decoy-state parameter estimation: asymptotic (Ma-Qi-Zhao-Lo 2005) and finite-key (Lim et al. 2014).

Counts are numbers of detection events (dimensionless); intensities μ are mean
photon numbers per pulse; rates are per pulse sent.  Nothing here draws random
numbers: these are the closed-form bounds, each with its source.

Asymptotic, vacuum + weak decoy
-------------------------------
X. Ma, B. Qi, Y. Zhao, H.-K. Lo, "Practical decoy state for quantum key
distribution", PRA 72, 012326 (2005) (MQZL): Y1 ≥ Y1^L (their Eq. (34)),
e1 ≤ e1^U (Eq. (37)) and the GLLP key rate q{Q1^L [1 − h(e1^U)] − f Q_μ h(E_μ)}
are the physical layer's :func:`qstack.physical.qkd.decoy_bb84_key_rate`,
re-exported here with its :func:`~qstack.physical.qkd.binary_entropy`.  This
module adds the infinite-decoy limit (Y1 and e1 known exactly) of MQZL's
channel model, :func:`infinite_decoy_key_rate`.

Finite key, two decoys
----------------------
C. C. W. Lim, M. Curty, N. Walenta, F. Xu, H. Zbinden, "Concise security
bounds for practical decoy-state quantum key distribution", PRA 89, 022307
(2014).  Three intensities μ1 > μ2 + μ3, μ2 > μ3 ≥ 0 sent with probabilities
p_k, all of them used for the key.  The paper extracts the key from the basis
it calls X and estimates phase errors from the basis it calls Z; here they are
the *key basis* and the *test basis* (in qstack's pipeline: Z and X).  With
ε = ε_sec/21 for every estimation step (the paper's ε_sec = 21ε, Eq. (B4)):

* τ_n = Σ_k p_k e^(−μk) μk^n / n!   (probability that Alice sends n photons)
* n±_k = (e^(μk)/p_k) [n_k ± √(n/2 · ln(21/ε_sec))]   (Hoeffding; n = Σ_k n_k)
* Eq. (2): s_0 ≥ τ0 (μ2 n−_μ3 − μ3 n+_μ2)/(μ2 − μ3)
* Eq. (3): s_1 ≥ τ1 μ1 [n−_μ2 − n+_μ3 − (μ2²−μ3²)/μ1² (n+_μ1 − s_0/τ0)] / [μ1(μ2−μ3) − μ2² + μ3²]
* Eq. (4): v_1 ≤ τ1 (m+_μ2 − m−_μ3)/(μ2 − μ3)  (single-photon errors of the test basis,
  m±_k as n±_k with the error counts m_k and m = Σ_k m_k)
* Eq. (5): φ ≤ v_1/s_1^test + γ(ε_sec, v_1/s_1^test, s_1^test, s_1^key),
  γ(a,b,c,d) = √[(c+d)(1−b)b/(c d ln 2) · log2((c+d)/(c d (1−b) b) · 21²/a²)]
* Eq. (1): ℓ = ⌊s_0 + s_1 − s_1 h(φ) − λ_EC − 6 log2(21/ε_sec) − log2(2/ε_cor)⌋

The key is ε_cor-correct (ε_cor = the verification hash's collision
probability, which discloses ⌈log2(1/ε_cor)⌉ bits, covered by the log2(2/ε_cor)
term) and ε_sec-secret.  ``finite=False`` gives the asymptotic limit of the same
estimator: no Hoeffding or γ terms, no ε terms in ℓ (what ℓ/N tends to as the
block grows).

Finite key, one decoy
---------------------
D. Rusca, A. Boaron, F. Grünenfelder, A. Martin, H. Zbinden, "Finite-key
analysis for the 1-decoy state QKD protocol", Appl. Phys. Lett. 112, 171104
(2018) (arXiv:1801.03443).  Two intensities μ1 > μ2 > 0 (signal, decoy; no
vacuum), both used for the key, the analysis of Lim et al. with
ε = ε_sec/19 for every estimation step (their ε_sec = 19ε, Eq. (A24)):

* n±_k = (e^(μk)/p_k) [n_k ± δ(n, ε)], m±_k likewise with δ(m, ε), where
  δ(n, ε) = √(n/2 · ln(19/ε_sec)) (Eq. (A18), with the e^(μk)/p_k factor of
  Lim's Eq. (2) that Eq. (A10) needs)
* Eq. (A16): s_0 ≤ s_0^u = 2 [τ0 (e^(μ2)/p_μ2)(m_μ2 + δ(m, ε)) + δ(n, ε)]
  (vacuum detections give errors with probability ½, counted on the decoy)
* Eq. (A17): s_1 ≥ τ1 μ1/(μ2(μ1 − μ2)) [n−_μ2 − (μ2/μ1)² n+_μ1 − (μ1² − μ2²)/μ1² · s_0^u/τ0]
* Eq. (A19): s_0 ≥ τ0 (μ1 n−_μ2 − μ2 n+_μ1)/(μ1 − μ2)
* Eq. (A22): v_1 ≤ τ1 (m+_μ1 − m−_μ2)/(μ1 − μ2)  (test basis)
* Eq. (A20)/(A21): φ ≤ v_1/s_1^test + γ(ε_sec, ...), γ exactly as Lim's (the
  paper prints it with Lim's 21²/a²; a larger constant than 19², so γ is
  no smaller than with 19)
* Eq. (A25): ℓ = ⌊s_0 + s_1 (1 − h(φ)) − λ_EC − 6 log2(19/ε_sec) − log2(2/ε_cor)⌋

The upper bound s_0^u on the key basis needs the key basis' bit errors per
intensity, m_key: they are known once error correction has run (Bob's flips;
the verification hash then vouches for them), so the one-decoy estimate of the
key basis comes after Cascade.  ``finite=False`` is the asymptotic limit of
the same estimator (δ = 0, no γ, no ε terms).

:func:`estimate` and :func:`key_length` choose the analysis from the
settings: three intensities are Lim et al.'s vacuum + weak decoy
("two-decoy"), two are Rusca et al.'s "one-decoy".

The repeaterless bound −log2(1−η) (Pirandola, Laurenza, Ottaviani, Banchi 2017)
is :func:`qstack.network.theory.plob_bound`, re-exported here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from qstack.core.errors import ErrorCode
from qstack.network.theory import plob_bound
from qstack.physical.pulses import lmc_error_gain, lmc_gain
from qstack.physical.qkd import binary_entropy, decoy_bb84_key_rate

from ._common import check_prob, fail

__all__ = [
    "binary_entropy", "plob_bound", "decoy_bb84_key_rate", "infinite_decoy_key_rate",
    "photon_number_prob", "hoeffding_delta", "hoeffding_counts", "lim_vacuum_lower",
    "lim_single_lower", "lim_single_errors_upper", "lim_gamma", "lim_phase_error_upper",
    "DecoySettings", "FiniteKeyEstimate", "lim_estimate", "lim_key_length",
    "rusca_vacuum_upper", "rusca_vacuum_lower", "rusca_single_lower", "rusca_single_errors_upper",
    "rusca_estimate", "rusca_key_length", "estimate", "key_length", "finite_size_bits",
    "ONE_DECOY", "TWO_DECOY",
]

ONE_DECOY = "one-decoy"      # signal + one decoy (Rusca et al. 2018)
TWO_DECOY = "two-decoy"      # signal + weak decoy + vacuum (Lim et al. 2014)

E0 = 0.5     # error rate of background (vacuum) detections: random bits


# --------------------------------------------------------------------------
# asymptotic: Ma, Qi, Zhao, Lo (2005)
# --------------------------------------------------------------------------

def infinite_decoy_key_rate(mu: float, eta: float, y0: float, e_d: float, f: float = 1.22,
                            q: float = 0.5) -> float:
    """GLLP key per pulse with Y1, e1 known exactly (infinitely many decoys), MQZL's channel model.

    Q_μ = Y0 + 1 − e^(−ημ), E_μ Q_μ = e0 Y0 + e_d (1 − e^(−ημ)) (Lo-Ma-Chen; the
    physical layer's :func:`~qstack.physical.pulses.lmc_gain`), Y1 = Y0 + η − Y0η,
    e1 = (e0 Y0 + e_d η)/Y1, Q1 = Y1 μ e^(−μ).  eta: overall transmittance
    (channel × Bob × detector).
    """
    check_prob("infinite_decoy_key_rate.eta", eta)
    check_prob("infinite_decoy_key_rate.q", q)
    if not (isinstance(f, (int, float)) and f >= 1.0):
        fail("infinite_decoy_key_rate.f", "a number >= 1", f)
    q_mu = lmc_gain(mu, eta, y0)
    e_mu = lmc_error_gain(mu, eta, y0, e_d) / q_mu
    y1 = y0 + eta - y0 * eta
    e1 = (E0 * y0 + e_d * eta) / y1
    q1 = y1 * mu * math.exp(-mu)
    return max(0.0, q * (q1 * (1.0 - binary_entropy(e1)) - f * q_mu * binary_entropy(e_mu)))


# --------------------------------------------------------------------------
# finite key: Lim, Curty, Walenta, Xu, Zbinden (2014)
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class DecoySettings:
    """Intensity classes (mean photons per pulse) and their probabilities.

    Three: μ1 > μ2 + μ3, μ2 > μ3 ≥ 0, Lim et al.'s two-decoy protocol; two:
    μ1 > μ2 > 0, Rusca et al.'s one-decoy protocol (:attr:`method`).
    """

    mus: tuple[float, ...]
    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mus) not in (2, 3) or len(self.probs) != len(self.mus):
            fail("DecoySettings", "two or three intensities (one-decoy or two-decoy) and as many "
                 "probabilities", (self.mus, self.probs), ErrorCode.BAD_FIELD)
        if len(self.mus) == 2:
            m1, m2 = (float(m) for m in self.mus)
            if not (m2 > 0.0 and m1 > m2):
                fail("DecoySettings.mus", "mu1 > mu2 > 0 (one-decoy, Rusca et al.)", self.mus)
        else:
            m1, m2, m3 = (float(m) for m in self.mus)
            if not (m3 >= 0.0 and m2 > m3 and m1 > m2 + m3):
                fail("DecoySettings.mus", "mu1 > mu2 + mu3 and mu2 > mu3 >= 0 (Lim et al.)",
                     self.mus)
        for p in self.probs:
            check_prob("DecoySettings.probs", p, open_low=True)
        if abs(sum(self.probs) - 1.0) > 1e-9:
            fail("DecoySettings.probs", "probabilities summing to 1", self.probs)

    def tau(self, n: int) -> float:
        """τ_n, the probability that Alice sends an n-photon pulse."""
        return photon_number_prob(n, self.mus, self.probs)

    @property
    def method(self) -> str:
        """:data:`ONE_DECOY` (two intensities) or :data:`TWO_DECOY` (three)."""
        return ONE_DECOY if len(self.mus) == 2 else TWO_DECOY

    @property
    def eps_split(self) -> int:
        """How many equal parts ε_sec is split into: 19 (Rusca Eq. (A24)) or 21 (Lim Eq. (B4))."""
        return 19 if len(self.mus) == 2 else 21


def photon_number_prob(n: int, mus: Sequence[float], probs: Sequence[float]) -> float:
    """τ_n = Σ_k p_k e^(−μk) μk^n / n!  (Lim et al., below Eq. (2))."""
    return sum(p * math.exp(-m) * m ** n / math.factorial(n) for m, p in zip(mus, probs))


def hoeffding_delta(n_total: float, eps: float) -> float:
    """δ(n, ε) = √(n/2 · ln(1/ε)), the Hoeffding deviation of a count out of n (Lim et al. Eq. (A1))."""
    if n_total <= 0:
        return 0.0
    return math.sqrt(n_total / 2.0 * math.log(1.0 / eps))


def hoeffding_counts(counts: Sequence[float], settings: DecoySettings, eps_sec: float,
                     finite: bool = True) -> tuple[list[float], list[float]]:
    """(n−_k, n+_k) = (e^(μk)/p_k)(n_k ∓ δ(Σn, ε_sec/K)) for each intensity (Lim et al. Eq. (2);
    Rusca et al. Eq. (A18)), K = ``settings.eps_split`` (21 or 19).

    With ``finite=False``, δ = 0: the expected counts themselves.
    """
    d = hoeffding_delta(float(sum(counts)), eps_sec / settings.eps_split) if finite else 0.0
    lo = [math.exp(m) / p * (c - d) for c, m, p in zip(counts, settings.mus, settings.probs)]
    hi = [math.exp(m) / p * (c + d) for c, m, p in zip(counts, settings.mus, settings.probs)]
    return lo, hi


def lim_vacuum_lower(counts: Sequence[float], settings: DecoySettings, eps_sec: float,
                     finite: bool = True) -> float:
    """s_0 ≥ τ0 (μ2 n−_μ3 − μ3 n+_μ2)/(μ2 − μ3): vacuum detections in a basis (Lim Eq. (2)), ≥ 0."""
    (_, m2, m3) = settings.mus
    lo, hi = hoeffding_counts(counts, settings, eps_sec, finite)
    return max(0.0, settings.tau(0) * (m2 * lo[2] - m3 * hi[1]) / (m2 - m3))


def lim_single_lower(counts: Sequence[float], settings: DecoySettings, eps_sec: float, s0: float,
                     finite: bool = True) -> float:
    """s_1, single-photon detections in a basis (Lim Eq. (3)), ≥ 0; s0 from :func:`lim_vacuum_lower`."""
    (m1, m2, m3) = settings.mus
    lo, hi = hoeffding_counts(counts, settings, eps_sec, finite)
    t0, t1 = settings.tau(0), settings.tau(1)
    num = lo[1] - hi[2] - (m2 * m2 - m3 * m3) / (m1 * m1) * (hi[0] - s0 / t0)
    return max(0.0, t1 * m1 * num / (m1 * (m2 - m3) - m2 * m2 + m3 * m3))


def lim_single_errors_upper(errors: Sequence[float], settings: DecoySettings, eps_sec: float,
                            finite: bool = True) -> float:
    """v_1 ≤ τ1 (m+_μ2 − m−_μ3)/(μ2 − μ3): bit errors among single-photon detections (Lim Eq. (4)), ≥ 0."""
    (_, m2, m3) = settings.mus
    lo, hi = hoeffding_counts(errors, settings, eps_sec, finite)
    return max(0.0, settings.tau(1) * (hi[1] - lo[2]) / (m2 - m3))


def lim_gamma(a: float, b: float, c: float, d: float) -> float:
    """γ(a,b,c,d) = √[(c+d)(1−b)b/(c d ln 2) · log2((c+d)/(c d (1−b) b) · 21²/a²)] (Lim Eq. (5)).

    The random-sampling correction (without replacement) between the phase-error
    rate of the key basis and the bit-error rate b of the test basis, from c test
    and d key single-photon events with failure probability a/21.  b ≤ 0 or b ≥ 1:
    0 (the limit of the formula).
    """
    if c <= 0 or d <= 0:
        return math.inf
    if b <= 0.0 or b >= 1.0:
        return 0.0
    arg = (c + d) / (c * d * (1.0 - b) * b) * 21.0 ** 2 / a ** 2
    inner = (c + d) * (1.0 - b) * b / (c * d * math.log(2.0)) * math.log2(arg)
    return math.sqrt(max(0.0, inner))


def lim_phase_error_upper(v_test1: float, s_test1: float, s_key1: float, eps_sec: float,
                          finite: bool = True) -> float:
    """φ ≤ v_1/s_1^test + γ(ε_sec, v_1/s_1^test, s_1^test, s_1^key) (Lim Eq. (5)), capped at ½.

    With no single-photon test events nothing is known: ½.
    """
    if s_test1 <= 0.0 or s_key1 <= 0.0:
        return 0.5
    b = v_test1 / s_test1
    g = lim_gamma(eps_sec, b, s_test1, s_key1) if finite else 0.0
    return min(0.5, b + g)


@dataclass(frozen=True)
class FiniteKeyEstimate:
    """The bounds of Lim et al. (or Rusca et al., ``method`` one-decoy) for one block.

    s_key0, s_key1: vacuum and single-photon detections in the key basis (lower bounds);
    s_test0, s_test1: the same in the test basis; v_test1: single-photon bit errors in
    the test basis (upper bound); phase_error: φ, upper bound on the key basis'
    single-photon phase-error rate; gamma: its sampling term; finite: False for the
    asymptotic limit; eps_sec, eps_cor: the composable security parameters;
    method: "two-decoy" or "one-decoy"; m_key: the key basis' bit errors per
    intensity (one-decoy only); s_key0_upper: s_0^u of Rusca Eq. (A16) (one-decoy).
    """

    n_key: tuple[int, ...]
    n_test: tuple[int, ...]
    m_test: tuple[int, ...]
    s_key0: float
    s_key1: float
    s_test0: float
    s_test1: float
    v_test1: float
    phase_error: float
    gamma: float
    eps_sec: float
    eps_cor: float
    finite: bool
    method: str = TWO_DECOY
    m_key: tuple[int, ...] = ()
    s_key0_upper: float = math.nan


def _check_eps(name: str, eps: float) -> float:
    return check_prob(name, eps, open_low=True, open_high=True)


def lim_estimate(n_key: Sequence[int], n_test: Sequence[int], m_test: Sequence[int],
                 settings: DecoySettings, eps_sec: float = 1e-10, eps_cor: float = 1e-15,
                 finite: bool = True) -> FiniteKeyEstimate:
    """All of Lim et al.'s bounds from the per-intensity counts of one block.

    n_key[k], n_test[k]: sifted detections with intensity k in the key and test
    bases; m_test[k]: bit errors among the test-basis ones (all disclosed).
    """
    if settings.method != TWO_DECOY:
        fail("lim_estimate.settings", "two-decoy settings (three intensities)", settings.mus)
    _check_inputs("lim_estimate", 3, eps_sec, eps_cor, n_key=n_key, n_test=n_test, m_test=m_test)
    sk0 = lim_vacuum_lower(n_key, settings, eps_sec, finite)
    sk1 = lim_single_lower(n_key, settings, eps_sec, sk0, finite)
    st0 = lim_vacuum_lower(n_test, settings, eps_sec, finite)
    st1 = lim_single_lower(n_test, settings, eps_sec, st0, finite)
    v1 = lim_single_errors_upper(m_test, settings, eps_sec, finite)
    return _estimate_of(n_key, n_test, m_test, (sk0, sk1, st0, st1, v1), eps_sec, eps_cor, finite)


def _check_inputs(name: str, k: int, eps_sec: float, eps_cor: float,
                  **seqs: Sequence[float]) -> None:
    """ε in (0, 1); k non-negative counts per sequence; errors m_x ≤ detections n_x."""
    _check_eps(f"{name}.eps_sec", eps_sec)
    _check_eps(f"{name}.eps_cor", eps_cor)
    for what, seq in seqs.items():
        if len(seq) != k or any(c < 0 for c in seq):
            fail(f"{name}.{what}", f"{k} non-negative counts (one per intensity)", seq)
    for what, errs in seqs.items():
        dets = seqs.get("n_" + what[2:]) if what.startswith("m_") else None
        if dets is not None and any(m > n for m, n in zip(errs, dets)):
            fail(f"{name}.{what}", "errors <= detections for each intensity", (errs, dets))


def _estimate_of(n_key: Sequence[int], n_test: Sequence[int], m_test: Sequence[int],
                 bounds: tuple[float, float, float, float, float], eps_sec: float, eps_cor: float,
                 finite: bool, **extra: object) -> FiniteKeyEstimate:
    """The estimate from (s_key0, s_key1, s_test0, s_test1, v_test1): φ and γ of Eq. (5) (A20)."""
    sk0, sk1, st0, st1, v1 = bounds
    phi = lim_phase_error_upper(v1, st1, sk1, eps_sec, finite)
    gamma = phi - (v1 / st1 if st1 > 0 else 0.0)
    return FiniteKeyEstimate(tuple(int(c) for c in n_key), tuple(int(c) for c in n_test),
                             tuple(int(c) for c in m_test), sk0, sk1, st0, st1, v1, phi, gamma,
                             eps_sec, eps_cor, finite, **extra)


def lim_key_length(est: FiniteKeyEstimate, leak_ec: float) -> int:
    """ℓ = ⌊s_0 + s_1 (1 − h(φ)) − λ_EC − 6 log2(21/ε_sec) − log2(2/ε_cor)⌋ (Lim Eq. (1)), ≥ 0.

    leak_ec: λ_EC, the bits the error correction disclosed (counted, not modelled).
    In the asymptotic limit (``est.finite`` False) the ε terms are left out.
    """
    if leak_ec < 0:
        fail("lim_key_length.leak_ec", "bits >= 0", leak_ec)
    val = est.s_key0 + est.s_key1 * (1.0 - binary_entropy(est.phase_error)) - leak_ec
    if est.finite:
        val -= finite_size_bits(TWO_DECOY, est.eps_sec, est.eps_cor)
    return max(0, int(math.floor(val)))



# --------------------------------------------------------------------------
# finite key, one decoy: Rusca, Boaron, Grünenfelder, Martin, Zbinden (2018)
# --------------------------------------------------------------------------

def _one_decoy(settings: DecoySettings, name: str) -> tuple[float, float]:
    if settings.method != ONE_DECOY:
        fail(name, "one-decoy settings (two intensities)", settings.mus)
    return float(settings.mus[0]), float(settings.mus[1])


def rusca_vacuum_upper(counts: Sequence[float], errors: Sequence[float], settings: DecoySettings,
                       eps_sec: float, finite: bool = True) -> float:
    """s_0^u = 2 [τ0 (e^(μ2)/p_μ2)(m_μ2 + δ(m, ε)) + δ(n, ε)] (Rusca Eq. (A16)), ε = ε_sec/19.

    counts, errors: detections n_k and bit errors m_k of one basis per
    intensity (signal, decoy); n, m their sums. Vacuum detections err with
    probability ½, so twice the decoy's (Hoeffding-raised) errors, rescaled to
    all pulses, bound them from above.
    """
    _, m2 = _one_decoy(settings, "rusca_vacuum_upper")
    eps = eps_sec / 19.0
    dn = hoeffding_delta(float(sum(counts)), eps) if finite else 0.0
    dm = hoeffding_delta(float(sum(errors)), eps) if finite else 0.0
    p2 = settings.probs[1]
    return 2.0 * (settings.tau(0) * math.exp(m2) / p2 * (errors[1] + dm) + dn)


def rusca_vacuum_lower(counts: Sequence[float], settings: DecoySettings, eps_sec: float,
                       finite: bool = True) -> float:
    """s_0 ≥ τ0 (μ1 n−_μ2 − μ2 n+_μ1)/(μ1 − μ2) (Rusca Eq. (A19)), ≥ 0."""
    m1, m2 = _one_decoy(settings, "rusca_vacuum_lower")
    lo, hi = hoeffding_counts(counts, settings, eps_sec, finite)
    return max(0.0, settings.tau(0) * (m1 * lo[1] - m2 * hi[0]) / (m1 - m2))


def rusca_single_lower(counts: Sequence[float], settings: DecoySettings, eps_sec: float,
                       s0_upper: float, finite: bool = True) -> float:
    """s_1 ≥ τ1 μ1/(μ2(μ1−μ2)) [n−_μ2 − (μ2/μ1)² n+_μ1 − (μ1²−μ2²)/μ1² s_0^u/τ0]
    (Rusca Eq. (A17)), ≥ 0; s0_upper from :func:`rusca_vacuum_upper`."""
    m1, m2 = _one_decoy(settings, "rusca_single_lower")
    lo, hi = hoeffding_counts(counts, settings, eps_sec, finite)
    t0, t1 = settings.tau(0), settings.tau(1)
    br = lo[1] - (m2 / m1) ** 2 * hi[0] - (m1 * m1 - m2 * m2) / (m1 * m1) * s0_upper / t0
    return max(0.0, t1 * m1 / (m2 * (m1 - m2)) * br)


def rusca_single_errors_upper(errors: Sequence[float], settings: DecoySettings, eps_sec: float,
                              finite: bool = True) -> float:
    """v_1 ≤ τ1 (m+_μ1 − m−_μ2)/(μ1 − μ2): single-photon bit errors (Rusca Eq. (A22)), ≥ 0."""
    m1, m2 = _one_decoy(settings, "rusca_single_errors_upper")
    lo, hi = hoeffding_counts(errors, settings, eps_sec, finite)
    return max(0.0, settings.tau(1) * (hi[0] - lo[1]) / (m1 - m2))


def rusca_estimate(n_key: Sequence[int], n_test: Sequence[int], m_test: Sequence[int],
                   m_key: Sequence[int], settings: DecoySettings, eps_sec: float = 1e-10,
                   eps_cor: float = 1e-15, finite: bool = True) -> FiniteKeyEstimate:
    """All of Rusca et al.'s bounds from the per-intensity counts of one block.

    n_key, n_test: sifted detections per intensity (signal, decoy) in the key
    and test bases; m_test, m_key: bit errors among them (m_key as error
    correction found them). The phase-error bound is Eq. (A20) with γ of
    :func:`lim_gamma`.
    """
    _one_decoy(settings, "rusca_estimate.settings")
    _check_inputs("rusca_estimate", 2, eps_sec, eps_cor, n_key=n_key, n_test=n_test,
                  m_test=m_test, m_key=m_key)
    sk0u = rusca_vacuum_upper(n_key, m_key, settings, eps_sec, finite)
    # a lower bound above the upper one is a statistical fluke: take the smaller (conservative)
    sk0 = min(rusca_vacuum_lower(n_key, settings, eps_sec, finite), sk0u)
    sk1 = rusca_single_lower(n_key, settings, eps_sec, sk0u, finite)
    st0u = rusca_vacuum_upper(n_test, m_test, settings, eps_sec, finite)
    st0 = min(rusca_vacuum_lower(n_test, settings, eps_sec, finite), st0u)
    st1 = rusca_single_lower(n_test, settings, eps_sec, st0u, finite)
    v1 = rusca_single_errors_upper(m_test, settings, eps_sec, finite)
    return _estimate_of(n_key, n_test, m_test, (sk0, sk1, st0, st1, v1), eps_sec, eps_cor, finite,
                        method=ONE_DECOY, m_key=tuple(int(c) for c in m_key), s_key0_upper=sk0u)


def finite_size_bits(method: str, eps_sec: float, eps_cor: float) -> float:
    """The ε terms ℓ loses: 6 log2(K/ε_sec) + log2(2/ε_cor), K = 21 (Lim) or 19 (Rusca)."""
    k = 19.0 if method == ONE_DECOY else 21.0
    return 6.0 * math.log2(k / eps_sec) + math.log2(2.0 / eps_cor)


def rusca_key_length(est: FiniteKeyEstimate, leak_ec: float) -> int:
    """ℓ = ⌊s_0 + s_1 (1 − h(φ)) − λ_EC − 6 log2(19/ε_sec) − log2(2/ε_cor)⌋ (Rusca Eq. (A25)), ≥ 0.

    Asymptotically (``est.finite`` False) without the ε terms.
    """
    if leak_ec < 0:
        fail("rusca_key_length.leak_ec", "bits >= 0", leak_ec)
    val = est.s_key0 + est.s_key1 * (1.0 - binary_entropy(est.phase_error)) - leak_ec
    if est.finite:
        val -= finite_size_bits(ONE_DECOY, est.eps_sec, est.eps_cor)
    return max(0, int(math.floor(val)))


def estimate(n_key: Sequence[int], n_test: Sequence[int], m_test: Sequence[int],
             settings: DecoySettings, eps_sec: float = 1e-10, eps_cor: float = 1e-15,
             finite: bool = True, m_key: Sequence[int] | None = None) -> FiniteKeyEstimate:
    """The decoy bounds the settings call for: :func:`lim_estimate` (three
    intensities) or :func:`rusca_estimate` (two; needs ``m_key``)."""
    if settings.method == ONE_DECOY:
        if m_key is None:
            fail("estimate.m_key", "the key basis' errors per intensity (one-decoy)", m_key)
        return rusca_estimate(n_key, n_test, m_test, m_key, settings, eps_sec, eps_cor, finite)
    return lim_estimate(n_key, n_test, m_test, settings, eps_sec, eps_cor, finite)


def key_length(est: FiniteKeyEstimate, leak_ec: float) -> int:
    """ℓ of the estimate's analysis: :func:`rusca_key_length` or :func:`lim_key_length`."""
    return rusca_key_length(est, leak_ec) if est.method == ONE_DECOY else lim_key_length(est, leak_ec)
