"""Optical fibre channel: loss in dB/km, propagation delay, polarisation noise."""
from __future__ import annotations

import math
from dataclasses import dataclass

from qstack.physical.sources import _check_nonneg, _check_pos, _check_prob, _fail

__all__ = ["FibreChannel", "SPEED_OF_LIGHT_KM_PER_NS", "MAX_LENGTH_KM", "check_length"]

#: Speed of light in vacuum, km per ns (299 792.458 km/s, exact by SI definition).
SPEED_OF_LIGHT_KM_PER_NS = 299_792.458e-9

#: The longest span accepted, km: far beyond any fibre (the Earth's
#: circumference is 40 075 km), and short enough that every delay derived
#: from it (< 10**13 ns, well under 2**53) is an exact integer of simulated
#: time, far from its end (2**62 ns).
MAX_LENGTH_KM = 1e9


def check_length(owner: str, value: float) -> None:
    """``ValueError`` naming ``owner.length_km`` unless ``value`` is a length
    in [0, :data:`MAX_LENGTH_KM`] km."""
    _check_nonneg(owner, "length_km", value)
    if value > MAX_LENGTH_KM:
        _fail(owner, "length_km", f"a length in [0, {MAX_LENGTH_KM:g}] km", value)


@dataclass(frozen=True)
class FibreChannel:
    """A span of single-mode fibre between two nodes.

    Transmissivity  t = 10^(−(α·L + insertion + n_conn·connector)/10)
    Delay           L · n_g / c  (group index, since the pulse envelope is what arrives)

    Fields:
        length_km: fibre length in km.
        attenuation_db_per_km: α in dB/km.
        group_index: group refractive index n_g (dimensionless).
        insertion_loss_db: lumped loss of splices and components, in dB.
        connector_loss_db: loss per connector in dB.
        n_connectors: number of connectors on the span.
        depolarisation_prob_per_km: probability per km that the polarisation
            (or time-bin) qubit is replaced by a maximally mixed one.
        polarisation_drift_rad_per_sqrt_km: standard deviation of the random
            rotation angle accumulated per √km (random-walk drift, uncompensated).
    """

    # Defaults: ITU-T G.652 / Corning SMF-28: ≤ 0.2 dB/km at 1550 nm and
    # group index 1.4682 at 1550 nm (SMF-28 data sheet); ~0.3 dB per connector.
    length_km: float = 50.0
    attenuation_db_per_km: float = 0.2
    group_index: float = 1.468
    insertion_loss_db: float = 0.0
    connector_loss_db: float = 0.3
    n_connectors: int = 0
    depolarisation_prob_per_km: float = 0.0
    polarisation_drift_rad_per_sqrt_km: float = 0.0

    def __post_init__(self) -> None:
        check_length("FibreChannel", self.length_km)
        _check_nonneg("FibreChannel", "attenuation_db_per_km", self.attenuation_db_per_km)
        if not isinstance(self.group_index, (int, float)) or not self.group_index >= 1.0 or not math.isfinite(self.group_index):
            _fail("FibreChannel", "group_index", "a finite number >= 1", self.group_index)
        _check_nonneg("FibreChannel", "insertion_loss_db", self.insertion_loss_db)
        _check_nonneg("FibreChannel", "connector_loss_db", self.connector_loss_db)
        if not isinstance(self.n_connectors, int) or isinstance(self.n_connectors, bool) or self.n_connectors < 0:
            _fail("FibreChannel", "n_connectors", "an integer >= 0", self.n_connectors)
        _check_prob("FibreChannel", "depolarisation_prob_per_km", self.depolarisation_prob_per_km)
        _check_nonneg("FibreChannel", "polarisation_drift_rad_per_sqrt_km", self.polarisation_drift_rad_per_sqrt_km)

    def loss_db(self) -> float:
        """Total loss α·L + insertion + connectors, in dB."""
        return (self.attenuation_db_per_km * self.length_km + self.insertion_loss_db
                + self.n_connectors * self.connector_loss_db)

    def transmissivity(self) -> float:
        """Probability that a photon entering the fibre leaves it: 10^(−loss_dB/10)."""
        return 10.0 ** (-self.loss_db() / 10.0)

    def delay_ns(self) -> float:
        """One-way propagation delay L·n_g/c in ns."""
        return self.length_km * self.group_index / SPEED_OF_LIGHT_KM_PER_NS

    def qubit_error_prob(self) -> float:
        """Probability that a transmitted qubit is read in the wrong basis state.

        Depolarisation: the qubit survives untouched with probability
        (1−p)^L, otherwise it is maximally mixed (error 1/2).  Drift: a random
        rotation by θ ~ N(0, σ²), σ = drift·√L, flips with probability sin²θ,
        whose mean is (1 − e^(−2σ²))/2.  The two act independently, so the
        flip probabilities combine as e = e₁ + e₂ − 2·e₁·e₂.
        """
        e1 = 0.5 * (1.0 - (1.0 - self.depolarisation_prob_per_km) ** self.length_km)
        sigma2 = self.polarisation_drift_rad_per_sqrt_km ** 2 * self.length_km
        e2 = 0.5 * (-math.expm1(-2.0 * sigma2))
        return e1 + e2 - 2.0 * e1 * e2

    def with_length(self, length_km: float) -> "FibreChannel":
        """The same fibre type at another length."""
        from dataclasses import replace
        return replace(self, length_km=length_km)
