"""Linear optics: the two-photon Bell-state measurement and frequency conversion.

Linear-optics BSM (polarisation or time-bin encoding): the photons from A and
B meet on a 50:50 beam splitter; each output port a/b is split by polarisation
onto two threshold detectors (aH, aV, bH, bV).  Two clicks in orthogonal
modes herald Ψ⁻ (one in each port) or Ψ⁺ (both in one port); Φ± put both
photons in one detector and cannot be told apart, so with ideal detectors the
BSM succeeds with probability 1/2 (Lütkenhaus, Calsamiglia & Suominen,
PRA 59, 3295 (1999): 1/2 is the maximum without ancillas).

Imperfections and the formulas used (ηA, ηB: probability that A's / B's
photon reaches and fires its detector; p: dark-count probability per detector
per gate; V: two-photon (Hong–Ou–Mandel) interference visibility):

* genuine herald      P_true  = ½·ηA·ηB·(1−p)²
* false heralds (exactly two clicks in a valid pair of modes, others silent):
  - both photons in one detector + one dark count in one of the 2 modes that
    complete a valid pair: ((1+V)/4)·ηAηB·2p(1−p)² = ηAηB·p·(1+V)/2·(1−p)².
    Two photons of maximally mixed polarisation land in one detector with
    probability 1/4 when distinguishable (same port ½, same polarisation ½)
    and 1/2 when indistinguishable (they bunch whenever their polarisation
    state is in the triplet, 3/4, and two of its three states are in one
    detector); partial overlap interpolates: (1−V)/4 + V/2 = (1+V)/4;
  - one photon detected (ηA(1−ηB) + (1−ηA)ηB) + a dark count in one of the 2
    completing modes: (ηA(1−ηB)+(1−ηA)ηB)·2p(1−p)²;
  - no photon: two dark counts in one of the 4 valid mode pairs: (1−ηA)(1−ηB)·4p²(1−p)².
  (Terms with ≥3 clicks are rejected by the herald logic, hence the (1−p) factors.)
* visibility: for partially distinguishable photons the POVM element of the
  Ψ± herald is ((1+V)/2)·|Ψ±⟩⟨Ψ±| + ((1−V)/2)·|Ψ∓⟩⟨Ψ∓|: a genuine herald
  applies the wrong Ψ, i.e. a Pauli Z error, with probability (1−V)/2.
  The herald rate itself is unchanged for memory–photon entangled inputs
  (each photon's reduced state is maximally mixed).
* a false herald leaves the two memories in a state with no correlation to
  the target Bell state: modelled as the maximally mixed state (each Pauli
  error with probability 1/4, fidelity 1/4).

The heralded state relative to the announced Bell state is Bell-diagonal with
Pauli error probabilities (pI, pX, pY, pZ) =
(w·(1+V)/2 + (1−w)/4, (1−w)/4, (1−w)/4, w·(1−V)/2 + (1−w)/4), w = P_true/P_herald,
and fidelity F = pI (for perfect input pairs).
"""
from __future__ import annotations

from dataclasses import dataclass

from qstack.physical.sources import _check_nonneg, _check_pos, _check_prob

__all__ = ["LinearOpticsBSM", "FrequencyConverter"]


@dataclass(frozen=True)
class LinearOpticsBSM:
    """Beam-splitter Bell-state measurement with threshold detectors (formulas in the module docstring).

    Fields:
        detector_efficiency: efficiency of each of the four detectors (0–1).
        dark_count_prob_per_gate: dark-count probability of each detector per gate.
        visibility: Hong–Ou–Mandel visibility V of the two photons (0–1).
    """

    # Defaults: SNSPD-class detectors (see ThresholdDetector) and V ≈ 0.9, the
    # two-photon visibility typical of remote NV / ion experiments
    # (e.g. Hensen et al., Nature 526, 682 (2015)).
    detector_efficiency: float = 0.9
    dark_count_prob_per_gate: float = 1e-7
    visibility: float = 0.9

    def __post_init__(self) -> None:
        _check_prob("LinearOpticsBSM", "detector_efficiency", self.detector_efficiency)
        _check_prob("LinearOpticsBSM", "dark_count_prob_per_gate", self.dark_count_prob_per_gate)
        _check_prob("LinearOpticsBSM", "visibility", self.visibility)

    def _etas(self, arrival_a: float, arrival_b: float) -> tuple[float, float]:
        _check_prob("LinearOpticsBSM", "arrival_a", arrival_a)
        _check_prob("LinearOpticsBSM", "arrival_b", arrival_b)
        return arrival_a * self.detector_efficiency, arrival_b * self.detector_efficiency

    def true_herald_probability(self, arrival_a: float = 1.0, arrival_b: float = 1.0) -> float:
        """½·ηA·ηB·(1−p)²: both photons detected in a Ψ± pattern, no extra dark click.

        ``arrival_a``/``arrival_b``: probability that each photon reaches the BSM
        (source × channel), multiplied by the detector efficiency here."""
        ea, eb = self._etas(arrival_a, arrival_b)
        q = 1.0 - self.dark_count_prob_per_gate
        return 0.5 * ea * eb * q * q

    def false_herald_probability(self, arrival_a: float = 1.0, arrival_b: float = 1.0) -> float:
        """Probability of a valid two-click pattern caused partly or wholly by dark counts."""
        ea, eb = self._etas(arrival_a, arrival_b)
        p = self.dark_count_prob_per_gate
        q2 = (1.0 - p) ** 2
        bunched = 0.25 * (1.0 + self.visibility) * ea * eb * 2.0 * p * q2
        one = (ea * (1.0 - eb) + (1.0 - ea) * eb) * 2.0 * p * q2
        none = (1.0 - ea) * (1.0 - eb) * 4.0 * p * p * q2
        return bunched + one + none

    def success_probability(self, arrival_a: float = 1.0, arrival_b: float = 1.0) -> float:
        """Probability of a herald (true or false); 1/2 with ideal detectors and photons."""
        return self.true_herald_probability(arrival_a, arrival_b) + self.false_herald_probability(arrival_a, arrival_b)

    def pauli_error_probs(self, arrival_a: float = 1.0, arrival_b: float = 1.0) -> tuple[float, float, float, float]:
        """(pI, pX, pY, pZ) of the heralded state relative to the announced Bell state."""
        pt = self.true_herald_probability(arrival_a, arrival_b)
        ph = pt + self.false_herald_probability(arrival_a, arrival_b)
        if ph == 0:
            return (0.25, 0.25, 0.25, 0.25)
        w = pt / ph
        v = self.visibility
        f = (1.0 - w) / 4.0
        return (w * (1.0 + v) / 2.0 + f, f, f, w * (1.0 - v) / 2.0 + f)

    def heralded_fidelity(self, arrival_a: float = 1.0, arrival_b: float = 1.0) -> float:
        """Fidelity of the heralded pair with the announced Bell state (perfect inputs)."""
        return self.pauli_error_probs(arrival_a, arrival_b)[0]


@dataclass(frozen=True)
class FrequencyConverter:
    """Quantum frequency conversion (e.g. 637 nm or 780 nm → telecom band) by difference-frequency generation.

    Fields:
        efficiency: end-to-end conversion efficiency (photon in → photon out in the fibre).
        noise_photons_per_gate: mean number of added noise photons (Raman /
            spontaneous parametric fluorescence) per detection gate at the output.
        input_wavelength_nm, output_wavelength_nm: wavelengths in nm.
    """

    # Defaults: NV 637 nm → 1588 nm converters report ~0.3 external efficiency
    # with noise of order 1e2–1e3 photons/s, i.e. ~1e-6 per ns-scale window
    # (Dréau et al., PR Applied 9, 064031 (2018); Tchebotareva et al.,
    # PRL 123, 063601 (2019)).
    efficiency: float = 0.3
    noise_photons_per_gate: float = 1e-6
    input_wavelength_nm: float = 637.0
    output_wavelength_nm: float = 1588.0

    def __post_init__(self) -> None:
        _check_prob("FrequencyConverter", "efficiency", self.efficiency)
        _check_nonneg("FrequencyConverter", "noise_photons_per_gate", self.noise_photons_per_gate)
        _check_pos("FrequencyConverter", "input_wavelength_nm", self.input_wavelength_nm)
        _check_pos("FrequencyConverter", "output_wavelength_nm", self.output_wavelength_nm)

    def transmissivity(self) -> float:
        """Probability that an input photon leaves converted (acts like a lossy element)."""
        return self.efficiency

    def output_mean_photons(self, mean_photons_in: float) -> float:
        """Mean photons per gate at the output: η·μ + noise (signal and noise Poissonian, independent)."""
        return self.efficiency * mean_photons_in + self.noise_photons_per_gate

    def signal_to_noise(self, mean_photons_in: float) -> float:
        """Ratio of converted signal photons to noise photons per gate (inf without noise)."""
        n = self.noise_photons_per_gate
        return float("inf") if n == 0 else self.efficiency * mean_photons_in / n
