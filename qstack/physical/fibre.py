"""Optical fibre channel: loss in dB/km, propagation delay, polarisation noise."""
from __future__ import annotations

import math
from dataclasses import dataclass

from qstack.physical.sources import _check_nonneg, _check_pos, _check_prob, _fail

__all__ = ["FibreChannel", "SPEED_OF_LIGHT_KM_PER_NS", "MAX_LENGTH_KM", "check_length"]

#: Speed of light in vacuum, km per ns (299 792.458 km/s, exact by SI definition).
SPEED_OF_LIGHT_KM_PER_NS = 299_792.458e-9
#: Planck constant, J s (exact by SI definition since 2019).
_PLANCK_J_S = 6.626_070_15e-34

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
        classical_power_mw: launch power of classical light sharing the fibre,
            in mW (0: none); its spontaneous Raman scattering adds noise
            photons (:meth:`raman_noise_photons`).
        raman_coefficient_per_km_nm: effective Raman scattering coefficient
            ρ(λ) at the quantum channel's wavelength, per km and per nm of
            filter bandwidth (it depends on both wavelengths: measure or take
            it from Eraerds et al., NJP 12, 063027 (2010), Fig. 2); required
            (> 0) when ``classical_power_mw`` is set.
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
    classical_power_mw: float = 0.0
    raman_coefficient_per_km_nm: float = 0.0

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
        _check_nonneg("FibreChannel", "classical_power_mw", self.classical_power_mw)
        _check_nonneg("FibreChannel", "raman_coefficient_per_km_nm",
                      self.raman_coefficient_per_km_nm)
        if self.classical_power_mw > 0 and self.raman_coefficient_per_km_nm <= 0:
            _fail("FibreChannel", "classical_power_mw", "0 unless raman_coefficient_per_km_nm "
                  "is given too (the fibre's Raman coefficient > 0, per km per nm: it depends "
                  "on the wavelengths, so it has no default)", self.classical_power_mw)

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

    def raman_noise_power_w(self, filter_nm: float, counter_propagating: bool = False) -> float:
        """Spontaneous Raman noise power in a filter of ``filter_nm`` nm at the
        fibre's output end, in W (Eraerds et al., NJP 12, 063027 (2010), Eqs. 1-2):

        * co-propagating (classical light launched at the same end as the
          quantum signal): P_f = P · e^(−αL) · ρ · L · Δλ;
        * counter-propagating (launched at the far end, scattered back):
          P_b = P · ρ · Δλ · (1 − e^(−2αL)) / (2α);

        P the launch power, α the attenuation in 1/km (dB/km × ln10/10; the
        same at both wavelengths), ρ ``raman_coefficient_per_km_nm``.
        """
        p_w = self.classical_power_mw * 1e-3
        if p_w == 0:
            return 0.0
        alpha = self.attenuation_db_per_km * math.log(10.0) / 10.0
        length = self.length_km
        rho_dl = self.raman_coefficient_per_km_nm * filter_nm
        if counter_propagating:
            # (1 - e^{-2aL}) / (2a) -> L as a -> 0
            integral = length if alpha == 0 else -math.expm1(-2.0 * alpha * length) / (2.0 * alpha)
            return p_w * rho_dl * integral
        return p_w * math.exp(-alpha * length) * rho_dl * length

    def raman_noise_photons(self, window_ns: float, filter_nm: float, wavelength_nm: float,
                            counter_propagating: bool = False) -> float:
        """Mean Raman noise photons at the output in a window of ``window_ns``
        ns: P_Raman · W / (h c / λ) (λ in nm: the quantum channel's)."""
        # h c / λ, with c in m/s and λ in m
        photon_j = _PLANCK_J_S * (SPEED_OF_LIGHT_KM_PER_NS * 1e12) / (wavelength_nm * 1e-9)
        power_w = self.raman_noise_power_w(filter_nm, counter_propagating)
        return power_w * window_ns * 1e-9 / photon_j

    def with_length(self, length_km: float) -> "FibreChannel":
        """The same fibre type at another length."""
        from dataclasses import replace
        return replace(self, length_km=length_km)
