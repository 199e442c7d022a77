"""Photon sources: single photons, weak coherent pulses with decoys, SPDC pairs.

Each source is a small frozen dataclass of parameters (units in the field
names) with the photon-number statistics it produces.  Sources do not own any
quantum state; the pulse kernels (:mod:`qstack.physical.pulses`) and the link
layer turn these statistics into clicks and heralds.

The module also holds the parameter checks shared by the physical-layer models
(``_check_*``): every model validates itself in ``__post_init__`` and raises
``ValueError`` naming the field and what was expected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "SinglePhotonSource",
    "WeakCoherentSource",
    "SPDCSource",
    "poisson_pmf",
    "thermal_pmf",
]


# --------------------------------------------------------------------------
# shared parameter checks (used by every physical model)
# --------------------------------------------------------------------------

def _fail(owner: str, name: str, expected: str, value: object) -> None:
    raise ValueError(f"{owner}.{name}: expected {expected}, got {value!r}")


def _check_prob(owner: str, name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        _fail(owner, name, "a probability in [0, 1]", value)


def _check_nonneg(owner: str, name: str, value: float, allow_inf: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0.0
    ok = ok and not math.isnan(value) and (allow_inf or math.isfinite(value))
    if not ok:
        _fail(owner, name, "a finite number >= 0" if not allow_inf else "a number >= 0 (inf allowed)", value)


def _check_pos(owner: str, name: str, value: float, allow_inf: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0.0
    ok = ok and not math.isnan(value) and (allow_inf or math.isfinite(value))
    if not ok:
        _fail(owner, name, "a finite number > 0" if not allow_inf else "a number > 0 (inf allowed)", value)


# --------------------------------------------------------------------------
# photon-number distributions
# --------------------------------------------------------------------------

def poisson_pmf(mean: float, n_max: int) -> np.ndarray:
    """P(n) = e^(−μ) μ^n / n! for n = 0 … n_max (phase-randomised coherent state)."""
    n = np.arange(n_max + 1)
    logp = -mean + n * (math.log(mean) if mean > 0 else 0.0) - np.array([math.lgamma(k + 1) for k in n])
    p = np.exp(logp)
    if mean == 0:
        p = np.zeros(n_max + 1)
        p[0] = 1.0
    return p


def thermal_pmf(mean: float, n_max: int, modes: int = 1) -> np.ndarray:
    """Photon(-pair) number distribution of ``modes`` independent thermal modes.

    Negative binomial with mean ``mean``: with x = mean/modes,
    P(n) = C(n+modes−1, n) xⁿ / (1+x)^(n+modes).  ``modes=1`` is Bose–Einstein
    (one spatio-temporal SPDC mode); ``modes=2`` is the polarisation-entangled
    type-II source of Ma, Fung & Lo, PRA 76, 012307 (2007), Eq. (1), with their
    λ = mean/2; ``modes → ∞`` tends to Poisson.
    """
    n = np.arange(n_max + 1)
    if mean == 0:
        p = np.zeros(n_max + 1)
        p[0] = 1.0
        return p
    x = mean / modes
    logc = np.array([math.lgamma(k + modes) - math.lgamma(k + 1) - math.lgamma(modes) for k in n])
    return np.exp(logc + n * math.log(x) - (n + modes) * math.log1p(x))


# --------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class SinglePhotonSource:
    """A triggered single-photon source (quantum dot, heralded SPDC, ion/NV emission).

    Per trigger it emits nothing with probability 1 − efficiency, one photon
    with probability efficiency·(1 − multi_photon_prob) and two photons with
    probability efficiency·multi_photon_prob.  ``multi_photon_prob`` is the
    g²(0)-like figure: for small values g²(0) ≈ 2·P(2)/P(1)².

    Fields:
        efficiency: probability per trigger that the source emits (dimensionless).
        multi_photon_prob: probability that an emission holds two photons.
        wavelength_nm: emission wavelength in nm.
    """

    # Defaults: bright quantum-dot sources reach ~0.6 end-to-end efficiency at
    # the first lens with g2(0) ~ 0.01 (Tomm et al., Nat. Nanotechnol. 16, 399 (2021)).
    efficiency: float = 0.6
    multi_photon_prob: float = 0.005
    wavelength_nm: float = 930.0

    def __post_init__(self) -> None:
        _check_prob("SinglePhotonSource", "efficiency", self.efficiency)
        _check_prob("SinglePhotonSource", "multi_photon_prob", self.multi_photon_prob)
        _check_pos("SinglePhotonSource", "wavelength_nm", self.wavelength_nm)

    def photon_number_pmf(self) -> np.ndarray:
        """[P(0), P(1), P(2)] per trigger."""
        e, m = self.efficiency, self.multi_photon_prob
        return np.array([1.0 - e, e * (1.0 - m), e * m])

    def g2(self) -> float:
        """Second-order correlation g²(0) = 2·P(2) / ⟨n⟩² of the emitted light."""
        p = self.photon_number_pmf()
        mean = p[1] + 2 * p[2]
        return 0.0 if mean == 0 else 2 * p[2] / mean**2

    def click_probability(self, transmissivity: float, dark_count_prob: float = 0.0) -> float:
        """Probability that a threshold detector clicks behind a channel of the given
        total transmissivity η (channel × detector): 1 − (1−pd)·Σ P(n)(1−η)ⁿ."""
        p = self.photon_number_pmf()
        no = float(np.sum(p * (1.0 - transmissivity) ** np.arange(3)))
        return 1.0 - (1.0 - dark_count_prob) * no


@dataclass(frozen=True)
class WeakCoherentSource:
    """Phase-randomised weak coherent pulses with several intensity classes (decoy BB84).

    Phase randomisation turns the coherent state |√μ e^{iθ}⟩ into a Poisson
    mixture of Fock states, P(n) = e^(−μ) μⁿ/n!, which is what the decoy method
    relies on (Lo, Ma & Chen, PRL 94, 230504 (2005)).

    Fields:
        mean_photon_numbers: μ per intensity class (photons per pulse), e.g.
            (signal, decoy, vacuum).
        class_probs: probability of sending each class (must sum to 1).
        pulse_rate_hz: repetition rate in Hz.
        wavelength_nm: wavelength in nm.
    """

    # Defaults: the vacuum + weak decoy protocol of Ma, Qi, Zhao & Lo,
    # PRA 72, 012326 (2005): signal μ ≈ 0.5, weak decoy ν ≈ 0.1, vacuum.
    mean_photon_numbers: tuple[float, ...] = (0.5, 0.1, 0.0)
    class_probs: tuple[float, ...] = (0.8, 0.15, 0.05)
    pulse_rate_hz: float = 1e9
    wavelength_nm: float = 1550.0

    def __post_init__(self) -> None:
        mus, ps = tuple(self.mean_photon_numbers), tuple(self.class_probs)
        object.__setattr__(self, "mean_photon_numbers", tuple(float(m) for m in mus))
        object.__setattr__(self, "class_probs", tuple(float(p) for p in ps))
        if not 1 <= len(mus) <= 8:
            _fail("WeakCoherentSource", "mean_photon_numbers", "1 to 8 intensity classes", mus)
        if len(ps) != len(mus):
            _fail("WeakCoherentSource", "class_probs", f"{len(mus)} probabilities (one per class)", ps)
        for i, m in enumerate(mus):
            _check_nonneg("WeakCoherentSource", f"mean_photon_numbers[{i}]", m)
        for i, p in enumerate(ps):
            _check_prob("WeakCoherentSource", f"class_probs[{i}]", p)
        if abs(sum(ps) - 1.0) > 1e-9:
            _fail("WeakCoherentSource", "class_probs", "probabilities summing to 1", ps)
        _check_pos("WeakCoherentSource", "pulse_rate_hz", self.pulse_rate_hz)
        _check_pos("WeakCoherentSource", "wavelength_nm", self.wavelength_nm)

    @property
    def n_classes(self) -> int:
        return len(self.mean_photon_numbers)

    def photon_number_pmf(self, cls: int, n_max: int = 20) -> np.ndarray:
        """Poisson P(n) for intensity class ``cls``, n = 0 … n_max."""
        return poisson_pmf(self.mean_photon_numbers[cls], n_max)

    def multi_photon_prob(self, cls: int) -> float:
        """P(n ≥ 2) = 1 − e^(−μ)(1 + μ) for class ``cls``."""
        mu = self.mean_photon_numbers[cls]
        return -math.expm1(-mu) - mu * math.exp(-mu)

    def sample_classes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Intensity class of each of n pulses (uint8)."""
        return rng.choice(self.n_classes, size=n, p=np.asarray(self.class_probs)).astype(np.uint8)

    def sample_photon_numbers(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Poisson photon number of each pulse given its class."""
        mus = np.asarray(self.mean_photon_numbers)[np.asarray(classes)]
        return rng.poisson(mus)


@dataclass(frozen=True)
class SPDCSource:
    """Spontaneous parametric down-conversion source of entangled photon pairs.

    The number of pairs per pulse is thermal (negative binomial over
    ``thermal_modes`` modes, see :func:`thermal_pmf`) or Poisson (many modes).
    Emission of two or more pairs is what gives an entanglement-based QKD link
    or a heralded link its intrinsic error floor: see
    :meth:`entangled_qkd_gain_qber`.

    Fields:
        mean_pair_number: mean number of pairs per pulse μ (dimensionless).
        statistics: "thermal" or "poisson".
        thermal_modes: number of thermal modes (2 for a polarisation-entangled
            type-II source, 1 for a single-mode heralding source).
        heralding_efficiency: probability that a generated photon is coupled
            into the output fibre (dimensionless, per arm).
        pulse_rate_hz: pump repetition rate in Hz.
        wavelength_nm: signal/idler wavelength in nm.
    """

    # Defaults: μ ≈ 0.01–0.1 per pulse is the usual operating point of pulsed
    # entangled sources; fibre-coupling (heralding) efficiency ~0.8 for
    # ppKTP sources (e.g. Weston et al., Opt. Express 24, 10869 (2016)).
    mean_pair_number: float = 0.05
    statistics: Literal["thermal", "poisson"] = "thermal"
    thermal_modes: int = 2
    heralding_efficiency: float = 0.8
    pulse_rate_hz: float = 1e8
    wavelength_nm: float = 1550.0

    def __post_init__(self) -> None:
        _check_nonneg("SPDCSource", "mean_pair_number", self.mean_pair_number)
        if self.statistics not in ("thermal", "poisson"):
            _fail("SPDCSource", "statistics", "'thermal' or 'poisson'", self.statistics)
        if not isinstance(self.thermal_modes, int) or self.thermal_modes < 1:
            _fail("SPDCSource", "thermal_modes", "an integer >= 1", self.thermal_modes)
        _check_prob("SPDCSource", "heralding_efficiency", self.heralding_efficiency)
        _check_pos("SPDCSource", "pulse_rate_hz", self.pulse_rate_hz)
        _check_pos("SPDCSource", "wavelength_nm", self.wavelength_nm)

    def pair_number_pmf(self, n_max: int = 30) -> np.ndarray:
        """P(n pairs) for n = 0 … n_max."""
        if self.statistics == "poisson":
            return poisson_pmf(self.mean_pair_number, n_max)
        return thermal_pmf(self.mean_pair_number, n_max, self.thermal_modes)

    def multi_pair_prob(self) -> float:
        """P(n ≥ 2): the probability of emitting more than one pair per pulse."""
        p = self.pair_number_pmf(2)
        return max(0.0, 1.0 - p[0] - p[1])

    def sample_pair_numbers(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Number of pairs in each of ``size`` pulses."""
        mu = self.mean_pair_number
        if self.statistics == "poisson":
            return rng.poisson(mu, size)
        if mu == 0:
            return np.zeros(size, dtype=np.int64)
        # negative binomial: failures before `modes` successes with p = 1/(1+x)
        return rng.negative_binomial(self.thermal_modes, 1.0 / (1.0 + mu / self.thermal_modes), size)

    def entangled_qkd_gain_qber(self, eta_a: float, eta_b: float, y0_a: float, y0_b: float,
                                misalignment_error: float = 0.0) -> tuple[float, float]:
        """Coincidence gain Q and QBER E of entanglement-based QKD (BBM92) with this source.

        Closed form for the polarisation-entangled thermal source with two modes
        (P(n) = (n+1)λⁿ/(1+λ)^(n+2), λ = μ/2), threshold detectors, double clicks
        squashed to a random bit — Ma, Fung & Lo, PRA 76, 012307 (2007), Eqs. (9)–(10):

            Q = 1 − (1−Y0A)/(1+ηAλ)² − (1−Y0B)/(1+ηBλ)²
                  + (1−Y0A)(1−Y0B)/(1+ηAλ+ηBλ−ηAηBλ)²
            E·Q = e0·Q − 2(e0−ed)·ηAηB λ(1+λ) / [(1+ηAλ)(1+ηBλ)(1+ηAλ+ηBλ−ηAηBλ)]

        with e0 = 1/2.  The first term of E·Q is what uncorrelated clicks (dark
        counts, and the extra photons of multi-pair emission) contribute; as
        λ → 0 the second term cancels all of it except the dark counts, so the
        QBER grows with μ: that growth is the multi-pair error contribution.

        Args:
            eta_a, eta_b: total transmittance source → detector click, per arm.
            y0_a, y0_b: probability that the arm's detector pair gives a click
                with no photon (≈ 2·dark-count probability per gate).
            misalignment_error: intrinsic error e_d of a detected pair.

        Returns:
            (Q, E): coincidence probability per pulse and its error rate.
        """
        if self.statistics != "thermal" or self.thermal_modes != 2:
            raise ValueError("SPDCSource.entangled_qkd_gain_qber: closed form needs statistics='thermal' "
                             f"and thermal_modes=2, got {self.statistics!r}, {self.thermal_modes}")
        lam = self.mean_pair_number / 2.0
        a, b = eta_a * lam, eta_b * lam
        ab = a + b - eta_a * eta_b * lam
        q = 1 - (1 - y0_a) / (1 + a) ** 2 - (1 - y0_b) / (1 + b) ** 2 + (1 - y0_a) * (1 - y0_b) / (1 + ab) ** 2
        e0 = 0.5
        eq = e0 * q - 2 * (e0 - misalignment_error) * eta_a * eta_b * lam * (1 + lam) / ((1 + a) * (1 + b) * (1 + ab))
        return q, (eq / q if q > 0 else e0)
