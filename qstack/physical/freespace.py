"""Free-space optical links and satellite downlinks.

Loss model (all factors are probabilities that a photon survives):

* **beam** — a Gaussian beam of waist w0 = D_tx/2 leaves the transmitter with
  a far-field half-angle divergence θ (1/e² intensity): the real divergence
  when ``divergence_urad`` (full angle) is given, else the diffraction limit
  θ = M² λ / (π w0). Its radius at distance L is w(L) = √(w0² + θ² L²)
  (= w0·√(1 + (L/z_R)²), z_R = w0/θ).
* **pointing and beam wander** — the beam centre lands displaced from the
  receiver by a 2-D Gaussian offset of per-axis standard deviation
  σ = √(σ_point² + σ_wander²)·L (``pointing_jitter_urad`` and the
  turbulence's ``beam_wander_urad``, per axis, in µrad). The mean intensity
  over the offset is a Gaussian of radius W² = w² + 4σ² (the convolution of
  two Gaussians), so the mean fraction caught by a receiver of radius
  r = D_rx/2 is exactly
      η_geo = 1 − exp(−2 r² / (w² + 4σ²)).
  (The centred capture times w²/(w²+4σ²) is its small-aperture limit only.)
* **scintillation** — turbulence makes the received power fluctuate around
  its mean: a log-normal factor of mean 1 and variance σ_I² (the
  aperture-averaged ``scintillation_index``); it changes no mean, only the
  distribution of the transmittance (:meth:`FreeSpaceChannel.sample_transmissivity`).
  For a horizontal path in weak turbulence σ_I² of a point receiver is the
  Rytov variance (:func:`rytov_variance`).
* **atmosphere** — Beer–Lambert: the zenith transmittance T_z raised to the
  air mass X(ζ), η_atm = T_z^X, ζ the zenith angle at the ground. X is the
  plane-parallel sec ζ (``airmass_model="plane"``) or the Kasten & Young
  formula (``"kasten-young"``, Appl. Opt. 28, 4735 (1989)):
  X = 1 / (cos ζ + 0.50572 (96.07995° − ζ)^−1.6364), which stays finite
  (≈ 38) at the horizon and agrees with sec ζ near the zenith.
* **extra** — lumped receiver loss in dB: telescope and receiver optics,
  coupling and detection efficiency (``transmissivity`` is the probability
  that a photon sent gives a click; use a detector model of efficiency 1 with
  it, or take the detector's own loss out of ``extra_loss_db``).

η = η_geo · η_atm · 10^(−extra_dB/10).

Background: counts at the receiver's detectors from stray light and the
night sky (``background_counts_per_s``) plus, in daylight, the sky's
spectral radiance H (W m⁻² sr⁻¹ nm⁻¹) seen through the field of view Ω,
aperture A and filter Δλ: N = H·Ω·A·Δλ / (h c/λ) photons per second at the
telescope, of which the receiver's efficiency 10^(−extra_dB/10) become counts
(the standard count, e.g. Miao et al., New J. Phys. 7, 215 (2005)).
A gate of t ns then holds a count with probability 1 − e^(−N·t).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qstack.physical.fibre import SPEED_OF_LIGHT_KM_PER_NS
from qstack.physical.sources import _check_nonneg, _check_pos, _check_prob, _fail

__all__ = ["FreeSpaceChannel", "SatelliteDownlink", "EARTH_RADIUS_KM",
           "gaussian_beam_radius_m", "slant_range_km", "elevation_for_slant_range_deg",
           "displaced_capture", "rytov_variance", "airmass", "pass_slant_ranges_km"]

#: Mean Earth radius in km (IUGG).
EARTH_RADIUS_KM = 6371.0
#: Earth's gravitational parameter GM in km³/s² (WGS 84).
EARTH_GM_KM3_S2 = 398_600.4418
#: Planck constant (J s) and speed of light (m/s), exact SI values.
_H_PLANCK = 6.62607015e-34
_C_M_PER_S = 299_792_458.0
_AIRMASS_MODELS = ("plane", "kasten-young")


def gaussian_beam_radius_m(distance_m: float, waist_m: float, wavelength_m: float, m2: float = 1.0) -> float:
    """1/e² intensity radius w(L) = w0·√(1 + (L/z_R)²), z_R = π w0² / (M² λ), in m."""
    z_r = math.pi * waist_m**2 / (m2 * wavelength_m)
    return waist_m * math.sqrt(1.0 + (distance_m / z_r) ** 2)


def slant_range_km(altitude_km: float, elevation_deg: float) -> float:
    """Distance ground station → satellite at the given elevation, spherical Earth:
    d = √((R+h)² − R² cos²ε) − R sin ε, in km."""
    r, eps = EARTH_RADIUS_KM, math.radians(elevation_deg)
    return math.sqrt((r + altitude_km) ** 2 - (r * math.cos(eps)) ** 2) - r * math.sin(eps)


def elevation_for_slant_range_deg(altitude_km: float, slant_km: float) -> float:
    """The elevation (degrees) at which a satellite at ``altitude_km`` is
    ``slant_km`` away (the inverse of :func:`slant_range_km`, law of cosines:
    sin ε = ((R+h)² − R² − d²) / (2 R d)). ``ValueError`` unless
    h ≤ d < √((R+h)² − R²) (zenith to horizon)."""
    r = EARTH_RADIUS_KM
    _check_pos("elevation_for_slant_range_deg", "altitude_km", altitude_km)
    horizon = math.sqrt((r + altitude_km) ** 2 - r * r)
    if not isinstance(slant_km, (int, float)) or not altitude_km <= slant_km < horizon:
        _fail("elevation_for_slant_range_deg", "slant_km",
              f"a distance in [{altitude_km:g}, {horizon:.1f}) km (zenith to horizon)", slant_km)
    s = ((r + altitude_km) ** 2 - r * r - slant_km**2) / (2.0 * r * slant_km)
    return math.degrees(math.asin(min(1.0, s)))


def pass_slant_ranges_km(altitude_km: float, closest_km: float, times_s) -> np.ndarray:
    """Slant range (km) at ``times_s`` (s from the closest approach) of a satellite
    on a circular orbit whose pass comes no nearer than ``closest_km``.

    Spherical Earth, the station's own rotation neglected (it moves < 0.5 km/s
    against the satellite's ~7.6 km/s): the satellite moves on its great circle
    at ω = √(GM/(R+h)³); with γ0 the central angle from the station to the
    track at closest approach, the central angle γ(t) obeys
    cos γ = cos γ0 · cos(ω t) (right spherical triangle), and
    d = √(R² + (R+h)² − 2R(R+h) cos γ)."""
    r, a = EARTH_RADIUS_KM, EARTH_RADIUS_KM + altitude_km
    _check_pos("pass_slant_ranges_km", "altitude_km", altitude_km)
    if not isinstance(closest_km, (int, float)) or not altitude_km <= closest_km < math.sqrt(a * a - r * r):
        _fail("pass_slant_ranges_km", "closest_km", "a slant range between the altitude and the horizon", closest_km)
    cos_g0 = (r * r + a * a - closest_km**2) / (2.0 * r * a)
    omega = math.sqrt(EARTH_GM_KM3_S2 / a**3)
    cos_g = cos_g0 * np.cos(omega * np.asarray(times_s, dtype=np.float64))
    return np.sqrt(r * r + a * a - 2.0 * r * a * cos_g)


def airmass(zenith_angle_deg: float, model: str = "kasten-young") -> float:
    """Relative air mass X at zenith angle ζ (degrees): "plane" sec ζ, or the
    Kasten & Young (1989) fit 1/(cos ζ + 0.50572·(96.07995 − ζ)^−1.6364)."""
    z = math.radians(zenith_angle_deg)
    if model == "plane":
        return 1.0 / math.cos(z)
    if model == "kasten-young":
        return 1.0 / (math.cos(z) + 0.50572 * (96.07995 - zenith_angle_deg) ** -1.6364)
    _fail("airmass", "model", f"one of {_AIRMASS_MODELS}", model)
    raise AssertionError  # unreachable: _fail raises


def displaced_capture(offset_m, beam_radius_m: float, aperture_radius_m: float):
    """Fraction of a Gaussian beam (1/e² radius w) caught by a disc of radius r
    whose centre is ``offset_m`` (scalar or array, m) from the beam's.

    The intensity is a 2-D Gaussian of per-axis variance s² = w²/4, so the
    fraction is P(|X| ≤ r) for X of that law centred at the offset: the CDF
    of a non-central χ² with 2 degrees of freedom and non-centrality
    λ = d²/s² at r²/s², summed here as its Poisson mixture of central χ²
    CDFs with 2+2j degrees of freedom,
        Σ_j e^(−λ/2) (λ/2)^j / j! · [1 − e^(−x/2) Σ_{i≤j} (x/2)^i / i!],  x = r²/s².
    Exact to ~1e-15 for offsets up to ~10 beam radii (terms past j = 400 dropped).
    ``offset_m`` may be an array (one value per offset, same shape).
    """
    d = np.atleast_1d(np.asarray(offset_m, dtype=np.float64))
    s2 = beam_radius_m**2 / 4.0
    half_x = aperture_radius_m**2 / (2.0 * s2)
    half_l = d * d / (2.0 * s2)
    # Poisson(λ/2) mass past j = λ/2 + 12√(λ/2) + 40 is < 1e-20: no more terms needed
    top = float(half_l.max()) if half_l.size else 0.0
    j = np.arange(int(min(400, top + 12.0 * math.sqrt(top) + 40)) + 1)
    log_fact = np.array([math.lgamma(k + 1) for k in j])
    # central chi-square CDF with 2+2j dof at x: 1 − e^(−x/2) Σ_{i≤j} (x/2)^i/i!
    if half_x > 0:
        central = np.clip(1.0 - np.cumsum(np.exp(j * math.log(half_x) - half_x - log_fact)), 0.0, 1.0)
    else:
        central = np.zeros(j.shape)
    out = np.empty(d.shape)
    for lo in range(0, d.size, 4096):        # rows in blocks: memory stays ~ 4096 × terms
        hl = half_l[lo:lo + 4096]
        with np.errstate(divide="ignore", invalid="ignore"):     # 0·log 0 rows are set below
            log_w = j[None, :] * np.log(hl)[:, None] - hl[:, None] - log_fact[None, :]
        log_w[hl == 0.0, :] = -np.inf
        log_w[hl == 0.0, 0] = 0.0
        out[lo:lo + 4096] = np.exp(log_w) @ central
    return out if np.ndim(offset_m) else float(out[0])


def rytov_variance(cn2_m_2_3: float, wavelength_nm: float, path_km: float) -> float:
    """Rytov variance σ_R² = 1.23 C_n² k^(7/6) L^(11/6) of a plane wave over a
    horizontal path of constant C_n² (m^(−2/3)), k = 2π/λ (Andrews & Phillips,
    *Laser Beam Propagation through Random Media*, 2nd ed. (2005)).
    In weak turbulence (σ_R² < 1) it is the scintillation index of a point receiver."""
    _check_nonneg("rytov_variance", "cn2_m_2_3", cn2_m_2_3)
    _check_pos("rytov_variance", "wavelength_nm", wavelength_nm)
    _check_nonneg("rytov_variance", "path_km", path_km)
    k = 2.0 * math.pi / (wavelength_nm * 1e-9)
    return 1.23 * cn2_m_2_3 * k ** (7.0 / 6.0) * (path_km * 1e3) ** (11.0 / 6.0)


@dataclass(frozen=True)
class FreeSpaceChannel:
    """A line-of-sight free-space link (terrestrial, or the optical part of a satellite link).

    Fields:
        distance_km: transmitter–receiver distance in km.
        wavelength_nm: optical wavelength in nm.
        tx_aperture_m: transmitter aperture diameter in m (beam waist = half of it).
        rx_aperture_m: receiver telescope aperture diameter in m.
        beam_quality_m2: beam-quality factor M² (1 = ideal Gaussian); used when
            ``divergence_urad`` is 0.
        divergence_urad: measured far-field full-angle divergence (1/e²) in µrad;
            0 = the diffraction limit of the transmitter aperture and M².
        pointing_jitter_urad: per-axis rms pointing error in µrad.
        beam_wander_urad: per-axis rms beam wander from turbulence, as an angle
            seen from the transmitter, in µrad (adds to the pointing jitter in quadrature).
        scintillation_index: aperture-averaged σ_I² of the received power (log-normal fading).
        zenith_transmittance: atmospheric transmittance straight up (0–1).
        zenith_angle_deg: zenith angle of the line of sight at the ground, in degrees
            (0 = straight up; a horizontal terrestrial link should instead set
            zenith_transmittance to the path transmittance and zenith_angle_deg=0).
        airmass_model: "kasten-young" or "plane" (sec ζ).
        extra_loss_db: lumped receiver loss (optics, coupling, detection) in dB.
        background_counts_per_s: background count rate at the receiver's detectors
            (stray light, night sky), in 1/s.
        sky_radiance_w_m2_sr_nm: daylight sky spectral radiance in the field of
            view, W m⁻² sr⁻¹ nm⁻¹ (0 at night).
        field_of_view_urad: receiver full-angle field of view in µrad.
        filter_bandwidth_nm: receiver spectral filter width in nm.
    """

    # Defaults: a generic diffraction-limited 850 nm link, 0.3 m transmitter,
    # 1 m receiver, 1 µrad pointing, clear-sky zenith transmittance ~0.8 in the
    # near infrared, a few dB of receiver optics. SatelliteDownlink carries a
    # measured Micius downlink's numbers instead.
    distance_km: float = 500.0
    wavelength_nm: float = 850.0
    tx_aperture_m: float = 0.3
    rx_aperture_m: float = 1.0
    beam_quality_m2: float = 1.0
    divergence_urad: float = 0.0
    pointing_jitter_urad: float = 1.0
    beam_wander_urad: float = 0.0
    scintillation_index: float = 0.0
    zenith_transmittance: float = 0.8
    zenith_angle_deg: float = 0.0
    airmass_model: str = "kasten-young"
    extra_loss_db: float = 3.0
    background_counts_per_s: float = 500.0
    sky_radiance_w_m2_sr_nm: float = 0.0
    field_of_view_urad: float = 100.0
    filter_bandwidth_nm: float = 1.0

    def __post_init__(self) -> None:
        o = "FreeSpaceChannel" if type(self) is FreeSpaceChannel else type(self).__name__
        _check_nonneg(o, "distance_km", self.distance_km)
        _check_pos(o, "wavelength_nm", self.wavelength_nm)
        _check_pos(o, "tx_aperture_m", self.tx_aperture_m)
        _check_pos(o, "rx_aperture_m", self.rx_aperture_m)
        if not isinstance(self.beam_quality_m2, (int, float)) or not 1.0 <= self.beam_quality_m2 < math.inf:
            _fail(o, "beam_quality_m2", "a finite number >= 1", self.beam_quality_m2)
        _check_nonneg(o, "divergence_urad", self.divergence_urad)
        _check_nonneg(o, "pointing_jitter_urad", self.pointing_jitter_urad)
        _check_nonneg(o, "beam_wander_urad", self.beam_wander_urad)
        _check_nonneg(o, "scintillation_index", self.scintillation_index)
        _check_prob(o, "zenith_transmittance", self.zenith_transmittance)
        if not isinstance(self.zenith_angle_deg, (int, float)) or not 0.0 <= self.zenith_angle_deg < 90.0:
            _fail(o, "zenith_angle_deg", "an angle in [0, 90) degrees", self.zenith_angle_deg)
        if self.airmass_model not in _AIRMASS_MODELS:
            _fail(o, "airmass_model", f"one of {_AIRMASS_MODELS}", self.airmass_model)
        _check_nonneg(o, "extra_loss_db", self.extra_loss_db)
        _check_nonneg(o, "background_counts_per_s", self.background_counts_per_s)
        _check_nonneg(o, "sky_radiance_w_m2_sr_nm", self.sky_radiance_w_m2_sr_nm)
        _check_pos(o, "field_of_view_urad", self.field_of_view_urad)
        _check_pos(o, "filter_bandwidth_nm", self.filter_bandwidth_nm)

    # -- loss factors --------------------------------------------------------
    def divergence_half_angle_rad(self) -> float:
        """Far-field half-angle divergence θ in rad: the given one, or M² λ/(π w0)."""
        if self.divergence_urad > 0:
            return self.divergence_urad * 1e-6 / 2.0
        return self.beam_quality_m2 * self.wavelength_nm * 1e-9 / (math.pi * self.tx_aperture_m / 2.0)

    def beam_radius_m(self) -> float:
        """1/e² beam radius w(L) = √(w0² + θ² L²) at the receiver, in m."""
        w0 = self.tx_aperture_m / 2.0
        return math.hypot(w0, self.divergence_half_angle_rad() * self.distance_km * 1e3)

    def offset_sigma_m(self) -> float:
        """Per-axis rms displacement of the beam centre at the receiver (pointing
        and beam wander), in m."""
        return math.hypot(self.pointing_jitter_urad, self.beam_wander_urad) * 1e-6 * self.distance_km * 1e3

    def diffraction_efficiency(self) -> float:
        """Fraction of a centred Gaussian beam inside the receiver aperture: 1 − exp(−2r²/w²)."""
        w = self.beam_radius_m()
        r = self.rx_aperture_m / 2.0
        return -math.expm1(-2.0 * r * r / (w * w))

    def geometric_efficiency(self) -> float:
        """Mean fraction caught over the Gaussian pointing/wander offset:
        1 − exp(−2r² / (w² + 4σ²)) (exact; module doc)."""
        w, s = self.beam_radius_m(), self.offset_sigma_m()
        r = self.rx_aperture_m / 2.0
        return -math.expm1(-2.0 * r * r / (w * w + 4.0 * s * s))

    def pointing_efficiency(self) -> float:
        """Mean pointing factor: geometric_efficiency / diffraction_efficiency (≤ 1)."""
        d = self.diffraction_efficiency()
        return self.geometric_efficiency() / d if d > 0 else 0.0

    def airmass(self) -> float:
        """Relative air mass along the line of sight (``airmass_model``)."""
        return airmass(self.zenith_angle_deg, self.airmass_model)

    def atmospheric_transmittance(self) -> float:
        """T_z ^ X(ζ)."""
        return self.zenith_transmittance ** self.airmass()

    def receiver_efficiency(self) -> float:
        """10^(−extra_loss_db/10): receiver optics, coupling and detection."""
        return 10.0 ** (-self.extra_loss_db / 10.0)

    def transmissivity(self) -> float:
        """Mean probability that a photon sent gives a count at the receiver."""
        return self.geometric_efficiency() * self.atmospheric_transmittance() * self.receiver_efficiency()

    def loss_db(self) -> float:
        """−10·log10(transmissivity)."""
        t = self.transmissivity()
        return math.inf if t <= 0 else -10.0 * math.log10(t)

    def sample_transmissivity(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws of the instantaneous transmissivity (the probability distribution
        of the transmittance): a Gaussian offset of the beam centre (pointing and
        wander; capture by :func:`displaced_capture`) times a log-normal
        scintillation factor exp(X), X ~ N(−s²/2, s²), s² = ln(1 + σ_I²) (mean 1,
        variance σ_I²), times the atmosphere and the receiver. Their mean is
        :meth:`transmissivity`."""
        sigma = self.offset_sigma_m()
        if sigma > 0:
            offsets = np.hypot(rng.normal(0.0, sigma, n), rng.normal(0.0, sigma, n))
            t = displaced_capture(offsets, self.beam_radius_m(), self.rx_aperture_m / 2.0)
        else:
            t = np.full(n, self.diffraction_efficiency())
        s2 = math.log1p(self.scintillation_index)
        if s2 > 0:
            t = t * np.exp(rng.normal(-s2 / 2.0, math.sqrt(s2), n))
        return np.asarray(t) * self.atmospheric_transmittance() * self.receiver_efficiency()

    def delay_ns(self) -> float:
        """Propagation delay L/c in ns (vacuum; the atmosphere adds < 1 ns)."""
        return self.distance_km / SPEED_OF_LIGHT_KM_PER_NS

    # -- background ----------------------------------------------------------
    def sky_background_counts_per_s(self) -> float:
        """Daylight counts per second at the receiver's detectors:
        H·Ω·A·Δλ·λ/(h c) × receiver efficiency, Ω = 2π(1 − cos(FOV/2)) the
        field of view's solid angle, A = π r² the aperture."""
        half = self.field_of_view_urad * 1e-6 / 2.0
        omega = 2.0 * math.pi * -math.expm1(math.log(math.cos(half))) if half > 0 else 0.0
        area = math.pi * (self.rx_aperture_m / 2.0) ** 2
        lam = self.wavelength_nm * 1e-9
        watts = self.sky_radiance_w_m2_sr_nm * omega * area * self.filter_bandwidth_nm
        return watts * lam / (_H_PLANCK * _C_M_PER_S) * self.receiver_efficiency()

    def background_rate_per_s(self) -> float:
        """All background counts per second at the receiver's detectors (night + daylight)."""
        return self.background_counts_per_s + self.sky_background_counts_per_s()

    def background_prob_per_gate(self, gate_ns: float) -> float:
        """Probability of at least one background count in a window of gate_ns
        (all the receiver's detectors together): 1 − e^(−R·t)."""
        return -math.expm1(-self.background_rate_per_s() * gate_ns * 1e-9)


@dataclass(frozen=True)
class SatelliteDownlink(FreeSpaceChannel):
    """A low-Earth-orbit downlink to a ground station at a given elevation.

    The distance and zenith angle are derived from the orbit altitude and the
    elevation angle (spherical Earth, no refraction): distance = slant range,
    zenith angle = 90° − elevation.  Pass ``altitude_km`` and
    ``elevation_deg`` (or use :meth:`at_slant_range`); ``distance_km`` and
    ``zenith_angle_deg`` are filled in.

    Defaults follow the Micius downlink to the Delingha 1.2 m telescope (Yin
    et al., PRL 119, 200501 (2017); Yin et al., Science 356, 1140 (2017)):
    810 nm, a transmitter of far-field divergence ~10 µrad (Yin et al.,
    Nature 582, 501 (2020): "near-diffraction-limited far-field divergence of
    about 10 µrad"), µrad-class tracking. ``extra_loss_db`` (receiver optics
    and detection) is the one number fitted: it makes the loss 29 dB at a
    530 km slant range, the first figure of Yin et al. (PRL 2017); their
    36 dB at 1000 km and the 64–82 dB two-downlink sum (Science 2017) are then
    predictions the tests check.

    Fields (in addition to :class:`FreeSpaceChannel`):
        altitude_km: orbit altitude in km (LEO: 500–1 200 km).
        elevation_deg: elevation of the satellite above the horizon, in degrees (0, 90].
    """

    wavelength_nm: float = 810.0
    rx_aperture_m: float = 1.2
    divergence_urad: float = 10.0
    extra_loss_db: float = 17.2
    altitude_km: float = 500.0
    elevation_deg: float = 90.0

    def __post_init__(self) -> None:
        _check_pos("SatelliteDownlink", "altitude_km", self.altitude_km)
        if not isinstance(self.elevation_deg, (int, float)) or not 0.0 < self.elevation_deg <= 90.0:
            _fail("SatelliteDownlink", "elevation_deg", "an angle in (0, 90] degrees", self.elevation_deg)
        object.__setattr__(self, "distance_km", slant_range_km(self.altitude_km, self.elevation_deg))
        object.__setattr__(self, "zenith_angle_deg", 90.0 - self.elevation_deg)
        super().__post_init__()

    @classmethod
    def at_slant_range(cls, slant_km: float, altitude_km: float = 500.0, **fields) -> "SatelliteDownlink":
        """The downlink when the satellite is ``slant_km`` away (elevation from
        :func:`elevation_for_slant_range_deg`)."""
        return cls(altitude_km=altitude_km,
                   elevation_deg=elevation_for_slant_range_deg(altitude_km, slant_km), **fields)
