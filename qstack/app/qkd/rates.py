"""Closed-form key rates of a decoy-BB84 link, beside what a run measures.

* :func:`expected_block_key` -- what Lim et al.'s estimator (finite-key or
  asymptotic, :mod:`.estimation`) gives for a block of N pulses fed the
  *expected* counts of the pulse model without dead time (gains and QBERs of
  :func:`qstack.physical.pulses.expected_gain` / ``expected_qber``), with the
  error correction leaking f·n·h(E_key) bits (f = ``f_ec``): the curve a
  block size traces against distance, computed without drawing a pulse.
* :func:`mqzl_rate` -- Ma-Qi-Zhao-Lo's vacuum + weak decoy GLLP rate per pulse
  sent (:func:`qstack.physical.qkd.decoy_key_rate_from_params`).
* :func:`asymptotic_rate` -- the asymptotic closed form of a link's protocol:
  MQZL for three classes, the asymptotic limit of Rusca et al.'s one-decoy
  estimator (expected counts, no fluctuation terms) for two.
* :func:`plob` -- the repeaterless bound −log2(1−η) per pulse (Pirandola et
  al. 2017) of the fibre's transmissivity η.

Rates are secret bits per pulse sent; × the pulse rate (Hz) gives bits/s.
"""
from __future__ import annotations

import math

from qstack.network.theory import plob_bound
from qstack.physical.pulses import PulseTrainParams, expected_gain, expected_qber
from qstack.physical.qkd import binary_entropy, decoy_key_rate_from_params

from .estimation import DecoySettings, estimate, key_length

__all__ = ["F_EC", "expected_block_key", "mqzl_rate", "asymptotic_rate", "plob"]

#: Error-correction inefficiency of the closed forms (the usual figure; the
#: Cascade of :mod:`.cascade` measures 1.05-1.09 on the blocks it corrects).
F_EC = 1.16


def expected_block_key(params: PulseTrainParams, n_pulses: float, finite: bool = True,
                       eps_sec: float = 1e-10, eps_cor: float = 1e-15, f_ec: float = F_EC,
                       key_basis: int = 0) -> float:
    """Secret bits per pulse of a block of ``n_pulses`` (Lim et al.'s ℓ / N,
    or Rusca et al.'s for two classes) from the expected counts (module doc);
    0 where ℓ ≤ 0."""
    K = params.n_classes
    settings = DecoySettings(params.mean_photon_numbers, params.class_probs)
    pz2 = params.p_z_alice * params.p_z_bob
    px2 = (1 - params.p_z_alice) * (1 - params.p_z_bob)
    pk, pt = (pz2, px2) if key_basis == 0 else (px2, pz2)
    q = [float(expected_gain(params, k)) for k in range(K)]
    e = [float(expected_qber(params, k)) for k in range(K)]
    n_key = [n_pulses * p * qk * pk for p, qk in zip(params.class_probs, q)]
    n_test = [n_pulses * p * qk * pt for p, qk in zip(params.class_probs, q)]
    m_test = [nt * ek for nt, ek in zip(n_test, e)]
    m_key = [nk * ek for nk, ek in zip(n_key, e)]
    if sum(n_key) <= 0:
        return 0.0
    est = estimate(n_key, n_test, m_test, settings, eps_sec, eps_cor, finite, m_key)
    leak = f_ec * sum(n_key) * binary_entropy(sum(m_key) / sum(n_key))
    return key_length(est, leak) / n_pulses


def asymptotic_rate(params: PulseTrainParams, f_ec: float = F_EC) -> float:
    """The asymptotic closed-form rate per pulse of the link's protocol: MQZL
    (:func:`mqzl_rate`) for three classes; for two, Rusca et al.'s estimator
    in its asymptotic limit on the expected counts (ℓ/N does not depend on N
    there; N = 1e15 keeps the floor of ℓ out of the figure)."""
    if params.n_classes == 3:
        return mqzl_rate(params, f_ec)
    return expected_block_key(params, 1e15, finite=False, f_ec=f_ec)


def mqzl_rate(params: PulseTrainParams, f_ec: float = F_EC) -> float:
    """MQZL's vacuum + weak decoy GLLP rate per pulse sent (class 0 signal,
    1 weak decoy, 2 vacuum; the vacuum's gain taken as Y0)."""
    p = params
    if p.mean_photon_numbers[2] != 0.0:     # a near-vacuum: MQZL's formula wants a true vacuum
        p = PulseTrainParams(**{**{f: getattr(params, f) for f in params.__dataclass_fields__},
                                "mean_photon_numbers": params.mean_photon_numbers[:2] + (0.0,)})
    return float(decoy_key_rate_from_params(p, f_ec=f_ec)["rate_per_pulse"])


def plob(transmissivity: float) -> float:
    """−log2(1 − η) secret bits per channel use (pulse)."""
    return float(plob_bound(transmissivity)) if transmissivity < 1 else math.inf
