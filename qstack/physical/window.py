"""Detection windows of heralding detectors: what a window captures, admits and costs.

A heralding station (single or double click) looks at its detectors during a
window of ``W`` ns per attempt. What the window does, in closed form where
one exists:

* **capture**: the photon's detection time is its emission time (an
  exponential wave packet of 1/e time ``tau``: spontaneous emission of an
  emitter) plus the detector's Gaussian jitter (rms ``sigma``): an
  exponentially modified Gaussian (EMG) with CDF
  ``F(t) = Phi(t/s) - exp(-t/tau + s^2/(2 tau^2)) Phi(t/s - s/tau)``.
  A window ``[t0, t0 + W]`` (``t0`` relative to the nominal arrival) captures
  ``F(t0 + W) - F(t0)``: with jitter only and a centred window,
  ``erf(W / (2 sqrt(2) sigma))``; with the wave packet only and ``t0 = 0``,
  ``1 - exp(-W/tau)``;
* **dark counts**: a Poissonian dark rate ``R`` gives ``1 - exp(-R W)`` per
  window, and noise photons of mean ``m`` per window ``1 - exp(-eta m)``;
* **phase from a frequency offset**: two emitters ``df`` Hz apart give a
  photon detected at ``t`` a phase ``2 pi df t``; averaged over the detection
  times in the window the heralded coherence shrinks by
  ``|E[exp(2 pi i df t)]|`` (the mean phase is a known frame rotation, taken
  as corrected). For the exponential wave packet and a window from 0 to
  infinity, ``1 / sqrt(1 + (2 pi df tau)^2)``; for jitter only,
  ``exp(-(2 pi df sigma)^2 / 2)`` (Hermans et al., PRA 106, 022408 (2022)
  measure this time-dependent phase between two NV centres);
* **dead time and afterpulsing at the attempt rate**: a detector that
  clicked in one attempt is blind for the next ``D = floor(tau_d / T)``
  attempts (``T`` the attempt cycle; an attempt whose window opens before the
  detector recovers is lost, the convention of
  :class:`~qstack.physical.detectors.ThresholdDetector`), and in its first
  live attempt fires spuriously with the afterpulse probability. With click
  probability ``c`` per live attempt, the renewal cycle after a click lasts
  ``L = D + 1 + (1 - c_a)/c`` attempts (``c_a = 1 - (1-c)(1-p_ap)``): the
  detector is dead in ``D/L`` of the attempts, armed (first live) in ``1/L``,
  plain in the rest. Without afterpulsing the click rate per attempt is
  ``c / (1 + c D)``: the non-paralysable formula ``R/(1 + R tau)`` at the
  attempt rate.
"""
from __future__ import annotations

import math

__all__ = ["arrival_cdf", "capture_fraction", "window_dark_prob", "phase_coherence",
           "detector_state_probs", "dead_attempts"]


def arrival_cdf(t_ns: float, lifetime_ns: float, jitter_sigma_ns: float) -> float:
    """P(detection time <= t) for an exponential wave packet (1/e time
    ``lifetime_ns``, emission at 0) seen through Gaussian jitter of rms
    ``jitter_sigma_ns`` (all ns): the EMG distribution's CDF."""
    tau, s = float(lifetime_ns), float(jitter_sigma_ns)
    if tau <= 0 and s <= 0:
        return 1.0 if t_ns >= 0 else 0.0
    if s <= 0:
        return -math.expm1(-t_ns / tau) if t_ns > 0 else 0.0
    gauss = 0.5 * math.erfc(-t_ns / (s * math.sqrt(2.0)))
    if tau <= 0:
        return gauss
    # exp(-t/tau + s^2/2tau^2) Phi(t/s - s/tau), in a form that neither
    # overflows nor loses the tail: Phi(x) = erfc(-x/sqrt2)/2 and
    # exp(a) erfc(b) = exp(a - b^2) erfcx(b) for b > 0
    x = t_ns / s - s / tau
    a = -t_ns / tau + s * s / (2.0 * tau * tau)
    b = -x / math.sqrt(2.0)
    if b > 0:
        from scipy.special import erfcx
        second = 0.5 * math.exp(a - b * b) * float(erfcx(b))
    else:
        second = 0.5 * math.exp(a) * math.erfc(b)
    return min(1.0, max(0.0, gauss - second))


def capture_fraction(window_ns: float, offset_ns: float, lifetime_ns: float,
                     jitter_sigma_ns: float) -> float:
    """Share of the photons detected inside ``[offset, offset + window]`` (ns,
    relative to the nominal arrival): ``F(offset + W) - F(offset)``."""
    if lifetime_ns <= 0 and jitter_sigma_ns <= 0:       # all at 0: in or out
        return 1.0 if offset_ns <= 0.0 <= offset_ns + window_ns else 0.0
    return max(0.0, arrival_cdf(offset_ns + window_ns, lifetime_ns, jitter_sigma_ns)
               - arrival_cdf(offset_ns, lifetime_ns, jitter_sigma_ns))


def window_dark_prob(rate_hz: float, window_ns: float) -> float:
    """Probability of at least one dark count in a window: ``1 - exp(-R W)``
    (``R`` in Hz, ``W`` in ns; Poissonian dark counts)."""
    return -math.expm1(-rate_hz * window_ns * 1e-9)


def phase_coherence(freq_offset_hz: float, window_ns: float, offset_ns: float,
                    lifetime_ns: float, jitter_sigma_ns: float) -> float:
    """``|E[exp(2 pi i df t)]|`` over the detection times ``t`` that fall in
    the window (density: the EMG of :func:`arrival_cdf`, restricted to the
    window). 1 without an offset; 0 if the window captures nothing."""
    if freq_offset_hz == 0:
        return 1.0
    captured = capture_fraction(window_ns, offset_ns, lifetime_ns, jitter_sigma_ns)
    if captured <= 0:
        return 0.0
    omega = 2.0 * math.pi * freq_offset_hz * 1e-9          # rad per ns
    tau, s = float(lifetime_ns), float(jitter_sigma_ns)
    lo, hi = offset_ns, offset_ns + window_ns
    if tau <= 0 and s <= 0:
        return 1.0
    if s <= 0:
        # exponential: the integral of e^{-t/tau} e^{i w t} / tau over
        # [max(lo, 0), hi] in closed form
        a, b = max(lo, 0.0), hi
        if b <= a:
            return 0.0
        z = complex(-1.0 / tau, omega)
        val = (complex(math.exp(-b / tau)) * complex(math.cos(omega * b), math.sin(omega * b))
               - complex(math.exp(-a / tau)) * complex(math.cos(omega * a), math.sin(omega * a)))
        return abs(val / (z * tau)) / captured
    from scipy.integrate import quad
    from scipy.stats import exponnorm, norm

    if tau <= 0:
        pdf = norm(loc=0.0, scale=s).pdf
    else:
        pdf = exponnorm(tau / s, loc=0.0, scale=s).pdf
    # the density is negligible beyond 40 sigma before 0 and 60 lifetimes after
    lo_eff = max(lo, -40.0 * s)
    hi_eff = min(hi, 40.0 * s + 60.0 * max(tau, 0.0))
    if hi_eff <= lo_eff:
        return 0.0
    re = quad(pdf, lo_eff, hi_eff, weight="cos", wvar=omega, limit=200)[0]
    im = quad(pdf, lo_eff, hi_eff, weight="sin", wvar=omega, limit=200)[0]
    return min(1.0, math.hypot(re, im) / captured)


def dead_attempts(dead_time_ns: float, cycle_ns: float) -> int:
    """Attempts lost after a click: ``floor(tau_d / T)`` (an attempt whose
    window opens before the detector recovers, or exactly then, is lost)."""
    if dead_time_ns <= 0:
        return 0
    return int(math.floor(dead_time_ns / cycle_ns + 1e-12))


def detector_state_probs(click_prob: float, dead: int, afterpulse_prob: float
                         ) -> tuple[float, float, float]:
    """Stationary shares of attempts in which a detector is (dead, armed,
    plain): armed is the first live attempt after a click, where an
    afterpulse may fire. ``click_prob`` is the click probability of a plain
    live attempt; ``dead`` the attempts lost after a click (renewal cycle in
    the module doc)."""
    c = float(click_prob)
    if c <= 0:
        return 0.0, 0.0, 1.0
    c_arm = 1.0 - (1.0 - c) * (1.0 - afterpulse_prob)
    length = dead + 1.0 + (1.0 - c_arm) / c
    return dead / length, 1.0 / length, (1.0 - c_arm) / c / length
