"""Free-space optical links and satellite downlinks.

Loss model (all factors are probabilities that a photon survives):

* **diffraction** — a Gaussian beam of waist w0 = D_tx/2 at the transmitter
  (beam quality M²) spreads as w(L) = w0·√(1 + (L/z_R)²), z_R = π w0²/(M² λ).
  A receiver aperture of radius r = D_rx/2 centred on the beam collects
  η_diff = 1 − exp(−2 r²/w(L)²)  (integral of the Gaussian intensity over a disc).
* **pointing** — random pointing error with per-axis standard deviation σ_θ
  displaces the beam centre at the receiver by a Rayleigh-distributed offset
  (σ = σ_θ·L).  In the small-aperture limit (r ≪ w) the collected fraction
  scales as exp(−2 ρ²/w²) and its mean over the offset is
  η_point = w² / (w² + 4 σ_θ² L²).
* **atmosphere** — Beer–Lambert with a plane-parallel atmosphere: the zenith
  transmittance T_z raised to the air mass sec(ζ), η_atm = T_z^(1/cos ζ), ζ the
  zenith angle at the ground station.
* **extra** — lumped receiver/telescope optics loss in dB.

η = η_diff · η_point · η_atm · 10^(−extra_dB/10).  Background light (sky,
moon, stray) adds Poissonian counts at background_counts_per_s in the
detection window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from qstack.physical.fibre import SPEED_OF_LIGHT_KM_PER_NS
from qstack.physical.sources import _check_nonneg, _check_pos, _check_prob, _fail

__all__ = ["FreeSpaceChannel", "SatelliteDownlink", "EARTH_RADIUS_KM",
           "gaussian_beam_radius_m", "slant_range_km"]

#: Mean Earth radius in km (IUGG).
EARTH_RADIUS_KM = 6371.0


def gaussian_beam_radius_m(distance_m: float, waist_m: float, wavelength_m: float, m2: float = 1.0) -> float:
    """1/e² intensity radius w(L) = w0·√(1 + (L/z_R)²), z_R = π w0² / (M² λ), in m."""
    z_r = math.pi * waist_m**2 / (m2 * wavelength_m)
    return waist_m * math.sqrt(1.0 + (distance_m / z_r) ** 2)


def slant_range_km(altitude_km: float, elevation_deg: float) -> float:
    """Distance ground station → satellite at the given elevation, spherical Earth:
    d = √((R+h)² − R² cos²ε) − R sin ε."""
    r, eps = EARTH_RADIUS_KM, math.radians(elevation_deg)
    return math.sqrt((r + altitude_km) ** 2 - (r * math.cos(eps)) ** 2) - r * math.sin(eps)


@dataclass(frozen=True)
class FreeSpaceChannel:
    """A line-of-sight free-space link (terrestrial, or the optical part of a satellite link).

    Fields:
        distance_km: transmitter–receiver distance in km.
        wavelength_nm: optical wavelength in nm.
        tx_aperture_m: transmitter aperture diameter in m (beam waist = half of it).
        rx_aperture_m: receiver telescope aperture diameter in m.
        beam_quality_m2: beam-quality factor M² (1 = ideal Gaussian).
        pointing_jitter_urad: per-axis rms pointing error in µrad.
        zenith_transmittance: atmospheric transmittance straight up (0–1).
        zenith_angle_deg: zenith angle of the line of sight at the ground, in degrees
            (0 = straight up; a horizontal terrestrial link should instead set
            zenith_transmittance to the path transmittance and zenith_angle_deg=0).
        extra_loss_db: lumped optics / coupling loss in dB.
        background_counts_per_s: background photon count rate at the detector, in 1/s.
    """

    # Defaults: a Micius-class downlink at 850 nm (Yin et al., Science 356, 1140
    # (2017); Liao et al., Nature 549, 43 (2017)): ~0.3 m transmitter, 1 m
    # ground telescope, ~1 µrad tracking, clear-sky zenith transmittance ~0.8
    # in the near infrared, a few dB of receiver optics loss.
    distance_km: float = 500.0
    wavelength_nm: float = 850.0
    tx_aperture_m: float = 0.3
    rx_aperture_m: float = 1.0
    beam_quality_m2: float = 1.0
    pointing_jitter_urad: float = 1.0
    zenith_transmittance: float = 0.8
    zenith_angle_deg: float = 0.0
    extra_loss_db: float = 3.0
    background_counts_per_s: float = 500.0

    def __post_init__(self) -> None:
        o = "FreeSpaceChannel" if type(self) is FreeSpaceChannel else type(self).__name__
        _check_nonneg(o, "distance_km", self.distance_km)
        _check_pos(o, "wavelength_nm", self.wavelength_nm)
        _check_pos(o, "tx_aperture_m", self.tx_aperture_m)
        _check_pos(o, "rx_aperture_m", self.rx_aperture_m)
        if not isinstance(self.beam_quality_m2, (int, float)) or not 1.0 <= self.beam_quality_m2 < math.inf:
            _fail(o, "beam_quality_m2", "a finite number >= 1", self.beam_quality_m2)
        _check_nonneg(o, "pointing_jitter_urad", self.pointing_jitter_urad)
        _check_prob(o, "zenith_transmittance", self.zenith_transmittance)
        if not isinstance(self.zenith_angle_deg, (int, float)) or not 0.0 <= self.zenith_angle_deg < 90.0:
            _fail(o, "zenith_angle_deg", "an angle in [0, 90) degrees", self.zenith_angle_deg)
        _check_nonneg(o, "extra_loss_db", self.extra_loss_db)
        _check_nonneg(o, "background_counts_per_s", self.background_counts_per_s)

    # -- loss factors --------------------------------------------------------
    def beam_radius_m(self) -> float:
        """1/e² beam radius w(L) at the receiver, in m."""
        return gaussian_beam_radius_m(self.distance_km * 1e3, self.tx_aperture_m / 2.0,
                                      self.wavelength_nm * 1e-9, self.beam_quality_m2)

    def diffraction_efficiency(self) -> float:
        """Fraction of a centred Gaussian beam inside the receiver aperture: 1 − exp(−2r²/w²)."""
        w = self.beam_radius_m()
        r = self.rx_aperture_m / 2.0
        return -math.expm1(-2.0 * r * r / (w * w))

    def pointing_efficiency(self) -> float:
        """Mean pointing factor w² / (w² + 4σ²), σ = jitter·L (small-aperture limit)."""
        w = self.beam_radius_m()
        sigma = self.pointing_jitter_urad * 1e-6 * self.distance_km * 1e3
        return w * w / (w * w + 4.0 * sigma * sigma)

    def airmass(self) -> float:
        """sec(ζ) for a plane-parallel atmosphere."""
        return 1.0 / math.cos(math.radians(self.zenith_angle_deg))

    def atmospheric_transmittance(self) -> float:
        """T_z ^ sec(ζ)."""
        return self.zenith_transmittance ** self.airmass()

    def transmissivity(self) -> float:
        """Total probability that a photon sent is delivered to the detector."""
        return (self.diffraction_efficiency() * self.pointing_efficiency()
                * self.atmospheric_transmittance() * 10.0 ** (-self.extra_loss_db / 10.0))

    def loss_db(self) -> float:
        """−10·log10(transmissivity)."""
        t = self.transmissivity()
        return math.inf if t <= 0 else -10.0 * math.log10(t)

    def delay_ns(self) -> float:
        """Propagation delay L/c in ns (vacuum; the atmosphere adds < 1 ns)."""
        return self.distance_km / SPEED_OF_LIGHT_KM_PER_NS

    def background_prob_per_gate(self, gate_ns: float) -> float:
        """Probability of at least one background count in a window of gate_ns: 1 − e^(−R·t)."""
        return -math.expm1(-self.background_counts_per_s * gate_ns * 1e-9)


@dataclass(frozen=True)
class SatelliteDownlink(FreeSpaceChannel):
    """A low-Earth-orbit downlink to a ground station at a given elevation.

    The distance and zenith angle are derived from the orbit altitude and the
    elevation angle (spherical Earth, no refraction): distance = slant range,
    zenith angle = 90° − elevation.  Pass ``altitude_km`` and
    ``elevation_deg``; ``distance_km`` and ``zenith_angle_deg`` are filled in.

    Fields (in addition to :class:`FreeSpaceChannel`):
        altitude_km: orbit altitude in km (LEO: 500–1 200 km).
        elevation_deg: elevation of the satellite above the horizon, in degrees (0, 90].
    """

    altitude_km: float = 500.0
    elevation_deg: float = 90.0

    def __post_init__(self) -> None:
        _check_pos("SatelliteDownlink", "altitude_km", self.altitude_km)
        if not isinstance(self.elevation_deg, (int, float)) or not 0.0 < self.elevation_deg <= 90.0:
            _fail("SatelliteDownlink", "elevation_deg", "an angle in (0, 90] degrees", self.elevation_deg)
        object.__setattr__(self, "distance_km", slant_range_km(self.altitude_km, self.elevation_deg))
        object.__setattr__(self, "zenith_angle_deg", 90.0 - self.elevation_deg)
        super().__post_init__()
