"""Noise channels as Kraus operators (single qubit unless stated).

Every function returns a list of ``complex128`` matrices ``K_i`` with
``sum K_i^dagger K_i = 1``; the channel is ``rho -> sum K_i rho K_i^dagger``.

Probability conventions (chosen so that ``p = 1`` is always "completely"):

* ``depolarizing(p)``: with probability p the qubit is replaced by the maximally
  mixed state, ``rho -> (1-p) rho + p I/2``. In Pauli form this is
  ``(1 - 3p/4) rho + (p/4)(X rho X + Y rho Y + Z rho Z)``. On one half of a
  Werner pair of fidelity F it gives ``(1-p) F + p/4``.
* ``dephasing(p)``: with probability p the qubit is replaced by its fully
  dephased version (coherences multiplied by ``1 - p``); in Pauli form it is a
  Z flip with probability ``p/2``.
* ``bit_flip(p)`` / ``phase_flip(p)``: X / Z applied with probability p (so
  ``phase_flip(p/2) == dephasing(p)``).
* ``amplitude_damping(gamma)``: |1> decays to |0> with probability gamma.

Times are in nanoseconds.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

from qstack.core.errors import ErrorCode, QStackError

from .gates import PAULIS

__all__ = [
    "InvalidParameterError", "depolarizing", "dephasing", "amplitude_damping",
    "bit_flip", "phase_flip", "pauli_channel", "t1t2_decay", "t1t2_rates",
    "pauli_twirl", "is_trace_preserving", "apply_kraus_dm",
]


class InvalidParameterError(QStackError, ValueError):
    """A physical parameter outside its physical range (code INVALID_PARAMETER)."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.INVALID_PARAMETER, detail)


def _check_prob(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise InvalidParameterError(f"{name} must be a probability in [0, 1], got {p!r}")
    return p


_I, _X, _Y, _Z = PAULIS


def pauli_channel(px: float, py: float, pz: float) -> list[np.ndarray]:
    """Apply X, Y, Z with probabilities px, py, pz (identity otherwise)."""
    for name, v in (("px", px), ("py", py), ("pz", pz)):
        _check_prob(name, v)
    pi = 1.0 - px - py - pz
    if pi < -1e-12:
        raise InvalidParameterError(f"px + py + pz must be <= 1, got {px + py + pz!r}")
    pi = max(pi, 0.0)
    ops = []
    for p, m in ((pi, _I), (px, _X), (py, _Y), (pz, _Z)):
        if p > 0.0:
            ops.append(math.sqrt(p) * m)
    return ops or [_I.copy()]


def depolarizing(p: float) -> list[np.ndarray]:
    """``rho -> (1-p) rho + p I/2`` (replaced by the maximally mixed state with probability p)."""
    p = _check_prob("depolarizing probability", p)
    q = p / 4.0
    return pauli_channel(q, q, q)


def dephasing(p: float) -> list[np.ndarray]:
    """``rho -> (1-p) rho + p diag(rho)``: coherences scaled by ``1-p`` (Z flip with probability p/2)."""
    p = _check_prob("dephasing probability", p)
    return pauli_channel(0.0, 0.0, p / 2.0)


def bit_flip(p: float) -> list[np.ndarray]:
    """X with probability p."""
    return pauli_channel(_check_prob("bit-flip probability", p), 0.0, 0.0)


def phase_flip(p: float) -> list[np.ndarray]:
    """Z with probability p."""
    return pauli_channel(0.0, 0.0, _check_prob("phase-flip probability", p))


def amplitude_damping(gamma: float) -> list[np.ndarray]:
    """Energy relaxation: |1> -> |0> with probability gamma; coherences scaled by sqrt(1-gamma)."""
    gamma = _check_prob("amplitude-damping gamma", gamma)
    k0 = np.array([[1.0, 0.0], [0.0, math.sqrt(1.0 - gamma)]], dtype=np.complex128)
    k1 = np.array([[0.0, math.sqrt(gamma)], [0.0, 0.0]], dtype=np.complex128)
    return [k0, k1] if gamma > 0.0 else [k0]


def t1t2_rates(t_ns: float, t1_ns: float, t2_ns: float) -> tuple[float, float]:
    """``(gamma, p_dephase)`` of the memory-decay channel after waiting ``t_ns``.

    ``gamma = 1 - exp(-t/T1)`` is the amplitude-damping probability; amplitude
    damping alone already shrinks coherences by ``exp(-t/(2 T1))``, so the
    extra pure dephasing (in :func:`dephasing`'s convention) is
    ``p = 1 - exp(-t/T_phi)`` with ``1/T_phi = 1/T2 - 1/(2 T1)``, which makes
    the total coherence decay ``exp(-t/T2)``. That needs ``T2 <= 2 T1``.
    ``inf`` means "no decay" for either time. All times in nanoseconds.
    """
    t = float(t_ns)
    if not t >= 0.0 or math.isinf(t):
        raise InvalidParameterError(f"wait time must be a finite number of ns >= 0, got {t_ns!r}")
    # (called on every operation on a stored qubit: the rates of a memory are
    # checked and computed once, _decay_rates)
    inv_t1, inv_tphi = _decay_rates(t1_ns, t2_ns)
    gamma = -math.expm1(-t * inv_t1)
    p_deph = -math.expm1(-t * inv_tphi)
    return gamma, p_deph


@functools.lru_cache(maxsize=256)
def _decay_rates(t1_ns: float, t2_ns: float) -> tuple[float, float]:
    """``(1/T1, 1/T_phi)`` (per ns) of a memory, checked (see :func:`t1t2_rates`)."""
    t1, t2 = float(t1_ns), float(t2_ns)
    if not t1 > 0.0:
        raise InvalidParameterError(f"T1 must be > 0 ns (inf for no relaxation), got {t1_ns!r}")
    if not t2 > 0.0:
        raise InvalidParameterError(f"T2 must be > 0 ns (inf for no dephasing), got {t2_ns!r}")
    # Compare rates, not times, so that T1 = inf and T2 = inf need no special case.
    inv_t1 = 0.0 if math.isinf(t1) else 1.0 / t1
    inv_t2 = 0.0 if math.isinf(t2) else 1.0 / t2
    inv_tphi = inv_t2 - 0.5 * inv_t1
    if inv_tphi < -1e-12 * max(inv_t2, 0.5 * inv_t1):
        raise InvalidParameterError(
            f"T2 = {t2_ns} ns exceeds 2*T1 = {2 * t1} ns: no physical memory has T2 > 2*T1 "
            "(relaxation alone already dephases at rate 1/(2*T1))"
        )
    return inv_t1, max(inv_tphi, 0.0)


def t1t2_decay(t_ns: float, t1_ns: float, t2_ns: float) -> list[np.ndarray]:
    """Memory decay over a wait of ``t_ns``: populations relax as exp(-t/T1), coherences as exp(-t/T2).

    Amplitude damping (gamma = 1 - exp(-t/T1)) followed by pure dephasing
    (see :func:`t1t2_rates`). Raises :class:`InvalidParameterError` (a
    ``ValueError``) when ``T2 > 2*T1``. T1 and/or T2 may be ``math.inf``.
    All times in nanoseconds.
    """
    gamma, p = t1t2_rates(t_ns, t1_ns, t2_ns)
    ad = amplitude_damping(gamma)
    if p == 0.0:
        return ad
    ph = dephasing(p)
    return [d @ a for d in ph for a in ad]


def pauli_twirl(kraus: Sequence[np.ndarray]) -> tuple[float, float, float, float]:
    """Probabilities (pI, pX, pY, pZ) of the Pauli twirl of a single-qubit channel.

    ``p_P = sum_i |tr(P K_i) / 2|^2``. For a Pauli channel this returns its own
    probabilities; for amplitude damping(gamma) it gives pX = pY = gamma/4,
    pZ = (1 - sqrt(1-gamma))^2 / 4, which keeps coherence decay exact but drops
    the drift of population towards |0>.
    """
    out = []
    for p in PAULIS:
        out.append(float(sum(abs(np.trace(p.conj().T @ k) / 2.0) ** 2 for k in kraus)))
    s = sum(out)
    return tuple(v / s for v in out)  # type: ignore[return-value]


def is_trace_preserving(kraus: Sequence[np.ndarray], atol: float = 1e-9) -> bool:
    """True if ``sum K^dagger K = 1`` within ``atol``."""
    if not kraus:
        return False
    d = np.asarray(kraus[0]).shape[0]
    acc = np.zeros((d, d), dtype=np.complex128)
    for k in kraus:
        k = np.asarray(k)
        if k.shape != (d, d):
            return False
        acc += k.conj().T @ k
    return bool(np.allclose(acc, np.eye(d), atol=atol))


def apply_kraus_dm(rho: np.ndarray, kraus: Sequence[np.ndarray]) -> np.ndarray:
    """``sum K rho K^dagger`` for Kraus operators acting on the whole of rho."""
    out = np.zeros_like(rho, dtype=np.complex128)
    for k in kraus:
        out += k @ rho @ k.conj().T
    return out
