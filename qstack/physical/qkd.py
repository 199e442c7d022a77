"""Asymptotic secret-key rates of decoy-state BB84 and of entanglement-based QKD.

Decoy-state BB84 with a signal μ, a weak decoy ν < μ and vacuum (Ma, Qi,
Zhao & Lo, PRA 72, 012326 (2005), "vacuum + weak decoy"),
from the measured gains Q and QBERs E of the classes:

    Y1 ≥ Y1ᴸ = μ/(μν − ν²) · (Q_ν e^ν − Q_μ e^μ ν²/μ² − (μ² − ν²)/μ² · Y0)
    Q1ᴸ = μ e^(−μ) Y1ᴸ
    e1 ≤ e1ᵁ = (E_ν Q_ν e^ν − e0 Y0) / (ν Y1ᴸ),        e0 = 1/2

and the GLLP rate per signal pulse (Gottesman, Lo, Lütkenhaus & Preskill,
Quantum Inf. Comput. 4, 325 (2004)), q the sifting factor (1/2 for
symmetric BB84), f the error-correction inefficiency:

    R = q · [Q1ᴸ (1 − h(e1ᵁ)) − f Q_μ h(E_μ)],   h the binary entropy.

Entanglement-based QKD (BBM92) is secure without a decoy (the source may be
untrusted): R = q · Q · [1 − f h(E) − h(E)] (Ma, Fung & Lo, PRA 76, 012307
(2007), with the phase error taken equal to the bit error).
Negative rates are reported as 0 (no key). All rates are per pulse; times
the pulse rate (Hz) gives bits per second. A fading channel (free space:
pointing, beam wander, scintillation) enters through the draws of its
transmissivity, over which the class gains are averaged before the decoy
analysis (:func:`decoy_key_rate_from_params`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from qstack.physical.sources import _check_prob, _fail

__all__ = ["binary_entropy", "decoy_bb84_key_rate", "decoy_key_rate_from_params", "bbm92_key_rate"]


def binary_entropy(x: float) -> float:
    """h(x) = −x log2 x − (1−x) log2(1−x), h(0) = h(1) = 0."""
    if x <= 0.0 or x >= 1.0:
        return 0.0
    return -x * math.log2(x) - (1.0 - x) * math.log2(1.0 - x)


def decoy_bb84_key_rate(mu: float, nu: float, q_mu: float, e_mu: float, q_nu: float, e_nu: float,
                        y0: float, f_ec: float = 1.16, sifting: float = 0.5) -> dict[str, float]:
    """Vacuum + weak decoy bounds and the GLLP key rate (module doc), per signal pulse.

    Args:
        mu, nu: signal and decoy mean photon numbers (0 < ν < μ).
        q_mu, e_mu, q_nu, e_nu: gains (per pulse) and QBERs of the two classes.
        y0: gain of the vacuum class (background and dark counts).
        f_ec: error-correction inefficiency (≥ 1; 1.16 is the usual figure).
        sifting: fraction of detections kept by basis reconciliation.

    Returns:
        {"y1": Y1ᴸ, "q1": Q1ᴸ, "e1": e1ᵁ, "rate": R ≥ 0} (rate per signal pulse).
    """
    if not (isinstance(mu, (int, float)) and isinstance(nu, (int, float)) and 0.0 < nu < mu):
        _fail("decoy_bb84_key_rate", "nu", f"a decoy intensity in (0, mu={mu!r})", nu)
    for name, v in (("q_mu", q_mu), ("e_mu", e_mu), ("q_nu", q_nu), ("e_nu", e_nu), ("y0", y0),
                    ("sifting", sifting)):
        _check_prob("decoy_bb84_key_rate", name, v)
    if not isinstance(f_ec, (int, float)) or not 1.0 <= f_ec < math.inf:
        _fail("decoy_bb84_key_rate", "f_ec", "a finite number >= 1", f_ec)
    y1 = mu / (mu * nu - nu * nu) * (q_nu * math.exp(nu) - q_mu * math.exp(mu) * nu * nu / (mu * mu)
                                     - (mu * mu - nu * nu) / (mu * mu) * y0)
    if y1 <= 0.0:
        return {"y1": max(y1, 0.0), "q1": 0.0, "e1": 0.5, "rate": 0.0}
    q1 = mu * math.exp(-mu) * y1
    e1 = min(0.5, max(0.0, (e_nu * q_nu * math.exp(nu) - 0.5 * y0) / (nu * y1)))
    rate = sifting * (q1 * (1.0 - binary_entropy(e1)) - f_ec * q_mu * binary_entropy(e_mu))
    return {"y1": y1, "q1": q1, "e1": e1, "rate": max(0.0, rate)}


def decoy_key_rate_from_params(params: Any, signal: int = 0, decoy: int = 1, vacuum: int = 2,
                               f_ec: float = 1.16, transmissivity_samples=None) -> dict[str, float]:
    """The decoy key rate of a pulse train (:class:`~qstack.physical.pulses.PulseTrainParams`)
    from its exact per-class gains and QBERs without dead time
    (:func:`~qstack.physical.pulses.expected_gain`, :func:`~qstack.physical.pulses.expected_qber`).

    ``transmissivity_samples``: draws of a fading channel's transmissivity
    (e.g. :meth:`~qstack.physical.freespace.FreeSpaceChannel.sample_transmissivity`
    times Bob's optics), each replacing ``params.transmissivity`` in turn. The
    gains and error gains are then their means over the draws, which is what
    a run through the fading channel accumulates and what the decoy analysis
    is fed; the gain is concave in the transmissivity, so fading lowers it
    (Jensen), noticeably only where η·μ is not small.

    Returns the dict of :func:`decoy_bb84_key_rate` plus "sifted" (sifted bits
    per pulse sent, every class: Σ_k p_k Q_k · P(same basis)) and "rate_per_pulse"
    (secret bits per pulse sent: the signal's rate times its class probability).
    """
    from qstack.physical.pulses import expected_gain, expected_qber

    mus = params.mean_photon_numbers
    if mus[vacuum] != 0.0:
        _fail("decoy_key_rate_from_params", "vacuum", "the index of a class of mean 0", vacuum)
    t = None
    if transmissivity_samples is not None:
        t = np.asarray(transmissivity_samples, dtype=np.float64).ravel()
        if t.size == 0 or not np.all((t >= 0.0) & (t <= 1.0)):
            _fail("decoy_key_rate_from_params", "transmissivity_samples",
                  "a non-empty array of probabilities in [0, 1]", transmissivity_samples)

    def gain_qber(k: int) -> tuple[float, float]:
        g = np.asarray(expected_gain(params, k, t))
        eg = float(np.mean(g * np.asarray(expected_qber(params, k, t))))
        g_mean = float(np.mean(g))
        return g_mean, (eg / g_mean if g_mean > 0 else 0.5)

    same_basis = params.p_z_alice * params.p_z_bob + (1 - params.p_z_alice) * (1 - params.p_z_bob)
    q_s, e_s = gain_qber(signal)
    q_d, e_d = gain_qber(decoy)
    out = decoy_bb84_key_rate(mus[signal], mus[decoy], q_s, e_s, q_d, e_d, gain_qber(vacuum)[0],
                              f_ec=f_ec, sifting=same_basis)
    out["sifted"] = same_basis * sum(p * gain_qber(k)[0] for k, p in enumerate(params.class_probs))
    out["rate_per_pulse"] = out["rate"] * params.class_probs[signal]
    return out


def bbm92_key_rate(gain: float, qber: float, f_ec: float = 1.16, sifting: float = 0.5) -> float:
    """Asymptotic BBM92 key per pulse, sifting·Q·[1 − f h(E) − h(E)] (≥ 0)."""
    _check_prob("bbm92_key_rate", "gain", gain)
    _check_prob("bbm92_key_rate", "qber", qber)
    h = binary_entropy(qber)
    return max(0.0, sifting * gain * (1.0 - f_ec * h - h))
