"""Heralded entanglement schemes between two neighbouring memories.

Each class here is a :class:`~qstack.physical.pair_model.HeraldedPairModel`
built from physical parameters (fibre, detectors, emitters, memories): the
simulator samples the number of attempts from :meth:`success_probability`
(geometric skip-ahead), places :meth:`heralded_state` in the engine and hands a
herald to each end after :meth:`herald_delay_ns`. The entanglement generation
protocol (:mod:`qstack.link.egp`) additionally uses :meth:`fidelity`,
:meth:`param_range` and :attr:`classical_delay_ns` to pick the scheme parameter
and to refuse requests the hardware cannot meet.

Geometry and timing (all schemes): the two nodes are ``length_km`` apart over
fibre; the classical one-way delay ``classical_delay_ns`` is the fibre delay of
the whole span. Attempts are **not pipelined**: a node with one communication
qubit has to learn an attempt's outcome before it may re-initialise that qubit
for the next one, so one attempt cycle is the emission time plus the round
trip the herald needs (documented per scheme). Side 0 and side 1 are the two
nodes in the order the link was added to the simulator.

Bell index convention (``qstack.physical.states``): ``b = (x << 1) | z`` names
``(I (x) X^x Z^z)|Phi+>``: 0 Phi+, 1 Phi-, 2 Psi+, 3 Psi-.

Physics, per scheme (derivations in ``specs/link.md``):

* :class:`SingleClickModel` -- each node entangles its spin with the presence
  of a photon, ``sqrt(1-a)|0>|vac> + sqrt(a)|1>|1 photon>``; one click at the
  midpoint beam splitter heralds Psi+ (detector +) or Psi- (detector -).
  Success ~ 2 a eta, fidelity ~ 1 - a (Cabrillo et al., PRA 59, 1025 (1999);
  Humphreys et al., Nature 558, 268 (2018)).
* :class:`DoubleClickModel` -- Barrett & Kok, PRA 71, 060310 (2005): two
  rounds with a spin flip in between, one click in each; success eta^2/2,
  fidelity (1+V)/2 with ideal detectors. The two-round time-bin measurement
  is a linear-optics Bell measurement on the two spin-photon states, so the
  formulas are those of :class:`qstack.physical.optics.LinearOpticsBSM`.
* :class:`MidpointSourceModel` -- an SPDC entangled-pair source in the middle,
  each memory absorbs one photon with a heralded absorption; multi-pair
  emission (a Werner state of fidelity (n+1)/(2n) for a single-mode source,
  (n+3)/(4n) for a many-mode one) and false absorption heralds (maximally
  mixed) lower the fidelity.
* :class:`SenderReceiverModel` -- node 0 emits a photon entangled with its
  memory, node 1's memory absorbs it and heralds; the fibre's depolarisation
  is a depolarising channel, its polarisation drift a random rotation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qstack.core.args import MAX_DURATION_NS
from qstack.physical.channels_kraus import t1t2_rates
from qstack.physical.detectors import ThresholdDetector
from qstack.physical.fibre import FibreChannel, check_length
from qstack.physical.optics import LinearOpticsBSM
from qstack.physical.sources import SPDCSource, _check_nonneg, _check_prob
from qstack.physical.states import BELL_BASIS
from qstack.physical import window as _win

__all__ = [
    "SingleClickModel", "DoubleClickModel", "MidpointSourceModel", "SenderReceiverModel",
    "bell_fidelity", "bell_dm_from_coeffs", "decayed_bell_fidelity",
]

_N_MAX_LIMIT = 1000             # largest MidpointSourceModel.n_max (see its check)
_PAULI_MASK = (0, 2, 3, 1)      # Bell-index XOR mask of Pauli I, X, Y, Z
_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Z = np.array([[1, 0], [0, -1]], dtype=np.complex128)
_I2 = np.eye(2, dtype=np.complex128)
_BELL_PROJ = [np.outer(BELL_BASIS[:, b], BELL_BASIS[:, b].conj()) for b in range(4)]


# ----------------------------------------------------------------- helpers

def bell_fidelity(rho: np.ndarray, bell_index: int) -> float:
    """<B_b| rho |B_b> for a 4x4 density matrix (side-0 qubit first)."""
    v = BELL_BASIS[:, bell_index]
    return float(np.real(v.conj() @ rho @ v))


def bell_dm_from_coeffs(coeffs) -> np.ndarray:
    """The Bell-diagonal density matrix sum_b coeffs[b] |B_b><B_b|."""
    return sum(float(c) * p for c, p in zip(coeffs, _BELL_PROJ))


def _bell_twirl(rho: np.ndarray) -> np.ndarray:
    return bell_dm_from_coeffs([bell_fidelity(rho, b) for b in range(4)])


def _relabel(rho_psi_plus: np.ndarray, bell_index: int) -> np.ndarray:
    """Move a state written for Psi+ (index 2) to Bell index ``bell_index`` by a
    local Pauli on side 1: U = X^x Z^z X maps Psi+ = (I(x)X)Phi+ to B_b."""
    if bell_index == 2:
        return rho_psi_plus
    x, z = bell_index >> 1, bell_index & 1
    u = np.linalg.matrix_power(_X, x) @ np.linalg.matrix_power(_Z, z) @ _X
    full = np.kron(_I2, u)
    return full @ rho_psi_plus @ full.conj().T


def _check_index(bell_index: int) -> None:
    if (not isinstance(bell_index, (int, np.integer)) or isinstance(bell_index, bool)
            or not 0 <= bell_index <= 3):
        raise ValueError(f"bell_index: expected an int in 0..3, got {bell_index!r}")


def decayed_bell_fidelity(rho: np.ndarray, bell_index: int, waits_ns: tuple[float, float],
                          t1_ns: float, t2_ns: float) -> float:
    """Fidelity with B_b after each qubit waited ``waits_ns[side]`` in memory.

    The exact T1/T2 channel on each qubit in turn, on the whole two-qubit
    state (amplitude damping gamma = 1 - e^(-t/T1), then pure dephasing so
    that coherences decay as e^(-t/T2): the map ``channels_kraus.t1t2_decay``'s
    Kraus operators make). Exact for any state and both halves waiting -- no
    Pauli twirl, which would miss the gamma_0 gamma_1 / 4 that relaxation of
    both halves contributes. Times in ns; ``T2 > 2 T1`` raises
    ``InvalidParameterError``.

    The channel is applied as the linear map it is on each 2x2 block of the
    waiting qubit's indices (|1><1| moves to |0><0| with weight gamma,
    coherences shrink by sqrt(1 - gamma) (1 - p)), not as a sum over Kraus
    operators of 4x4 products: the same state, in about a tenth of the time
    (the link layer computes it once per link, end, Bell index and wait, which
    on a chain of many links was a visible part of a run).
    """
    # [a, b, c, d]: row (a b), column (c d), side-0 qubit first
    out = np.array(rho, dtype=np.complex128).reshape(2, 2, 2, 2)
    for side, t in enumerate(waits_ns):
        if t <= 0:
            continue
        gamma, p_deph = t1t2_rates(t, t1_ns, t2_ns)
        coherence = math.sqrt(1.0 - gamma) * (1.0 - p_deph)
        if side == 0:
            out[0, :, 0, :] += gamma * out[1, :, 1, :]
            out[1, :, 1, :] *= 1.0 - gamma
            out[0, :, 1, :] *= coherence
            out[1, :, 0, :] *= coherence
        else:
            out[:, 0, :, 0] += gamma * out[:, 1, :, 1]
            out[:, 1, :, 1] *= 1.0 - gamma
            out[:, 0, :, 1] *= coherence
            out[:, 1, :, 0] *= coherence
    return bell_fidelity(out.reshape(4, 4), bell_index)


# ----------------------------------------------------------------- common geometry

@dataclass(frozen=True)
class _Span:
    """Fibre span between the two nodes (``length_km``) with a midpoint station."""

    length_km: float = 10.0
    fibre: FibreChannel = field(default_factory=lambda: FibreChannel(length_km=10.0))

    def _arm(self) -> FibreChannel:
        return self.fibre.with_length(self.length_km / 2.0)

    def _derived(self) -> dict:
        """Per-instance cache of derived numbers (the driver asks for them per
        pair; the model is frozen, so they never change)."""
        try:
            return object.__getattribute__(self, "_cache")
        except AttributeError:
            cache: dict = {}
            object.__setattr__(self, "_cache", cache)
            return cache

    @property
    def classical_delay_ns(self) -> int:
        """One-way node-to-node delay over the span, ns (the fibre's group delay)."""
        c = self._derived()
        v = c.get("delay")
        if v is None:
            v = c["delay"] = int(round(self.fibre.with_length(self.length_km).delay_ns()))
        return v

    def _half_delay_ns(self) -> int:
        return int(round(self._arm().delay_ns()))

    def _memo(self, key, fn):
        c = self._derived()
        v = c.get(key)
        if v is None:
            v = c[key] = fn()
        return v


def _check_span(owner: str, length_km: float, attempt_ns: int) -> None:
    check_length(owner, length_km)
    # an integer: the simulator's clock counts whole nanoseconds
    if not isinstance(attempt_ns, int) or isinstance(attempt_ns, bool) \
            or not 1 <= attempt_ns <= MAX_DURATION_NS:
        raise ValueError(f"{owner}.attempt_ns: expected an integer number of ns in "
                         f"1..{MAX_DURATION_NS}, got {attempt_ns!r}")


def _check_bool(owner: str, name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name}: expected true or false, got {value!r}")


# ----------------------------------------------------------------- detection window (issue 18)

@dataclass(frozen=True)
class _Detection:
    """What the midpoint detectors of a single- or double-click link see per
    attempt: a detection window, its dark counts and noise photons, and the
    detectors' dead time and afterpulsing at the attempt rate (formulas in
    :mod:`qstack.physical.window`). Every term is off by default.

    * ``detection_window_ns`` W (0: off, the detector's per-gate dark-count
      probability and every photon captured, as before): the window opens
      ``window_offset_ns`` after the photon's nominal arrival (the start of
      its wave packet; with jitter only, ``-W/2`` centres it); it captures the
      share ``F(t0+W) - F(t0)`` of a photon whose detection time is its
      emission (exponential wave packet of 1/e time ``photon_lifetime_ns``;
      12 ns for the NV zero-phonon line) plus the detector's Gaussian jitter
      (``detector.jitter_ps`` FWHM). Dark counts: ``1 - exp(-R W)`` with
      ``dark_count_rate_hz`` R, replacing the per-gate figure.
    * noise photons per window reaching each detector (Poissonian, added to
      the dark counts): a frequency converter at each node
      (``conversion_noise_photons`` per window at its output, carried by the
      arm's fibre; ``conversion_efficiency`` multiplies the photon's
      efficiency: :class:`~qstack.physical.optics.FrequencyConverter`) and
      Raman scattering of classical light in each arm
      (``fibre.classical_power_mw``, filter ``raman_filter_nm``,
      :meth:`~qstack.physical.fibre.FibreChannel.raman_noise_photons`; needs
      a window). Each arm's noise is split by the beam splitter, so each
      detector sees the noise of one arm on average.
    * ``detector.dead_time_ns`` / ``detector.afterpulse_prob`` (with a
      window: without one the detectors' timing is ideal, as before):
      stationary shares of attempts in which a detector is dead, armed or
      plain (:func:`~qstack.physical.window.detector_state_probs`); the
      heralding probabilities are averaged over the two detectors' states,
      taken as independent (a mean-field over the attempt history).
    """

    detection_window_ns: float = 0.0
    window_offset_ns: float = 0.0
    photon_lifetime_ns: float = 0.0
    dark_count_rate_hz: float = 0.0
    conversion_efficiency: float = 1.0
    conversion_noise_photons: float = 0.0
    raman_filter_nm: float = 0.8
    raman_counter_propagating: bool = False
    wavelength_nm: float = 1550.0

    def _check_detection(self, owner: str) -> None:
        _check_nonneg(owner, "detection_window_ns", self.detection_window_ns)
        if not isinstance(self.window_offset_ns, (int, float)) or isinstance(
                self.window_offset_ns, bool) or not math.isfinite(self.window_offset_ns):
            raise ValueError(f"{owner}.window_offset_ns: expected a finite number of ns, "
                             f"got {self.window_offset_ns!r}")
        _check_nonneg(owner, "photon_lifetime_ns", self.photon_lifetime_ns)
        _check_nonneg(owner, "dark_count_rate_hz", self.dark_count_rate_hz)
        _check_prob(owner, "conversion_efficiency", self.conversion_efficiency)
        _check_nonneg(owner, "conversion_noise_photons", self.conversion_noise_photons)
        _check_nonneg(owner, "raman_filter_nm", self.raman_filter_nm)
        _check_bool(owner, "raman_counter_propagating", self.raman_counter_propagating)
        if not (isinstance(self.wavelength_nm, (int, float)) and self.wavelength_nm > 0
                and math.isfinite(self.wavelength_nm)):
            raise ValueError(f"{owner}.wavelength_nm: expected a wavelength in nm > 0, "
                             f"got {self.wavelength_nm!r}")
        if self.fibre.classical_power_mw > 0 and self.detection_window_ns <= 0:
            raise ValueError(f"{owner}.classical_power_mw: expected 0 without a detection "
                             "window (Raman noise photons are counted per window: set "
                             f"detection_window_ns), got {self.fibre.classical_power_mw!r}")

    def window_trade_off(self, windows_ns, param: float = 0.0) -> list[tuple[float, float, float]]:
        """[(W in ns, success probability, fidelity)] of this link with each
        detection window W (all else unchanged): a longer window captures more
        of the photon and admits more dark counts and noise photons."""
        from dataclasses import replace
        out = []
        for w in windows_ns:
            m = replace(self, detection_window_ns=float(w))
            out.append((float(w), m.success_probability(param), m.fidelity(param)))
        return out

    def capture(self) -> float:
        """Share of a photon's detections that fall in the window (1 without one)."""
        if self.detection_window_ns <= 0:
            return 1.0
        return self._memo("capture", lambda: _win.capture_fraction(
            self.detection_window_ns, self.window_offset_ns, self.photon_lifetime_ns,
            self.detector.jitter_sigma_ps() * 1e-3))

    def phase_coherence(self, frequency_offset_hz: float) -> float:
        """|E exp(2 pi i df t)| over the detection times in the window."""
        if frequency_offset_hz == 0:
            return 1.0
        w = self.detection_window_ns
        if w <= 0:
            raise ValueError("a frequency offset needs a detection window "
                             "(detection_window_ns > 0): the phase depends on the detection time")
        return self._memo(("phase", frequency_offset_hz), lambda: _win.phase_coherence(
            frequency_offset_hz, w, self.window_offset_ns, self.photon_lifetime_ns,
            self.detector.jitter_sigma_ps() * 1e-3))

    def noise_photons_per_detector(self) -> float:
        """Mean noise photons per window that fire one detector (converter and
        Raman noise of both arms, split over two detectors, times efficiency)."""
        def compute() -> float:
            arm = self._arm()
            n = self.conversion_noise_photons * arm.transmissivity()
            if arm.classical_power_mw > 0:
                n += arm.raman_noise_photons(self.detection_window_ns, self.raman_filter_nm,
                                             self.wavelength_nm, self.raman_counter_propagating)
            return self.detector.efficiency * n      # 2 arms x 1/2 per detector
        return self._memo("noise", compute)

    def window_dark_prob(self) -> float:
        """Probability that a live detector clicks with no signal photon in one window."""
        def compute() -> float:
            if self.detection_window_ns > 0:
                dark = _win.window_dark_prob(self.dark_count_rate_hz, self.detection_window_ns)
            else:
                dark = self.detector.dark_count_prob_per_gate
            noise = self.noise_photons_per_detector()
            return dark if noise == 0 else 1.0 - (1.0 - dark) * math.exp(-noise)
        return self._memo("dark", compute)

    def detector_states(self, plain_click_prob: float, cycle_ns: float) -> list:
        """[(probability, live, dark-count probability)] of one detector in an
        attempt: plain, armed (afterpulse), dead (module doc of ``window``)."""
        p = self.window_dark_prob()
        det = self.detector
        if self.detection_window_ns <= 0:        # detector timing only with a window
            return [(1.0, 1.0, p)]
        dead = _win.dead_attempts(det.dead_time_ns, cycle_ns)
        if dead == 0 and det.afterpulse_prob == 0:
            return [(1.0, 1.0, p)]
        f_dead, f_arm, f_plain = _win.detector_state_probs(plain_click_prob, dead,
                                                            det.afterpulse_prob)
        p_arm = 1.0 - (1.0 - p) * (1.0 - det.afterpulse_prob)
        return [(f_plain, 1.0, p), (f_arm, 1.0, p_arm), (f_dead, 0.0, 0.0)]


# ----------------------------------------------------------------- single click

@dataclass(frozen=True)
class SingleClickModel(_Span, _Detection):
    """Single-click (single-photon) midpoint heralding; param = bright-state population alpha.

    Per-arm efficiency eta = emission_efficiency x fibre(L/2) x detector
    efficiency. Per detector window with dark-count probability p, the
    unnormalised state heralded by "detector + clicks, detector - does not":

    * |00> (no photon): (1-a)^2 p (1-p)
    * |01>, |10> each: a(1-a)(1-p)[eta/2 + (1-eta) p]; of this a(1-a)(1-p) eta/2
      comes from the detected photon and is coherent, the off-diagonal element
      being that times sqrt(V) e^(-s^2/2) (V the two-photon HOM visibility, so
      sqrt(V) is the photons' mode overlap; s the rms optical phase error, rad);
      the dark-count part is an incoherent mixture;
    * |11>: a^2 (1-p)[(1-eta)^2 p + eta(1-eta) + eta^2 (1+V)/4] (two photons
      bunch when indistinguishable, so both in one detector gives one click).

    The two detectors are symmetric: success probability is twice the trace,
    Psi+ (index 2) and Psi- (index 3) each half. With ideal detectors
    F = (1-a)/(1 - a eta/2) ~ 1 - a and p_succ ~ 2 a eta.

    Timing: cycle = attempt_ns + classical_delay_ns (photon to the midpoint and
    herald back); herald delay = classical_delay_ns at both sides.

    The exact state is not Bell-diagonal: |00> and |11> weigh differently,
    which is a local polarisation along Z, ``<Z(x)I> = <I(x)Z> = p00 - p11``
    (the normalised weights; a state relabelled to Phi+- by X on side 1 has
    ``<I(x)Z> = p11 - p00``). It is in the family the bd formalism holds
    exactly, though (Bell-diagonal plus local Z polarisation: its one
    coherence, between |01> and |10>, is real), so both formalisms hold it
    as it is.

    Issue-18 noise terms (all off by default): the detection window, its
    dark counts and noise photons, dead time and afterpulsing
    (:class:`_Detection`: the weights above are averaged over the states of
    the two detectors, a dead one neither clicking nor vetoing);
    ``double_excitation_prob`` p2: the bright branch of a node is excited
    twice with probability p2, the first photon (emitted during the optical
    pulse, before the window) carries away which node was bright, so the
    coherence of the heralded pair shrinks by (1 - p2): F ~ 1 - a - p2/2
    (Humphreys et al., Nature 558, 268 (2018), Methods: p2 ~ 4 %; Hermans et
    al., PRA 106, 022408 (2022)); ``frequency_offset_hz`` df between the two
    emitters: a photon detected at t carries the phase 2 pi df t, and the
    coherence shrinks by |E exp(2 pi i df t)| over the detection times in the
    window (needs a window).

    ``twirl=True`` (default False) returns its Bell twirl instead: every Bell
    fidelity kept, coherences between Bell states (the polarisation)
    dropped. An approximation for a user who asks for it by name: exact for
    the fidelity at the herald and under Pauli noise after it (T2 decay), not
    under T1 decay, which turns the dropped polarisation into Bell fidelity.
    """

    emission_efficiency: float = 0.2
    detector: ThresholdDetector = field(default_factory=ThresholdDetector)
    visibility: float = 0.9
    phase_noise_rad: float = 0.0
    attempt_ns: int = 5_000
    twirl: bool = False
    double_excitation_prob: float = 0.0
    frequency_offset_hz: float = 0.0

    def __post_init__(self) -> None:
        _check_span("SingleClickModel", self.length_km, self.attempt_ns)
        _check_prob("SingleClickModel", "emission_efficiency", self.emission_efficiency)
        _check_prob("SingleClickModel", "visibility", self.visibility)
        _check_nonneg("SingleClickModel", "phase_noise_rad", self.phase_noise_rad)
        _check_bool("SingleClickModel", "twirl", self.twirl)
        self._check_detection("SingleClickModel")
        _check_prob("SingleClickModel", "double_excitation_prob", self.double_excitation_prob)
        if not (isinstance(self.frequency_offset_hz, (int, float))
                and not isinstance(self.frequency_offset_hz, bool)
                and math.isfinite(self.frequency_offset_hz)):
            raise ValueError("SingleClickModel.frequency_offset_hz: expected a finite number of "
                             f"Hz, got {self.frequency_offset_hz!r}")
        if self.frequency_offset_hz != 0 and self.detection_window_ns <= 0:
            raise ValueError("SingleClickModel.frequency_offset_hz: expected 0 without a "
                             "detection window (the phase depends on the detection time: set "
                             f"detection_window_ns), got {self.frequency_offset_hz!r}")

    # param range: alpha above 1/2 gives F < 1/2, useless
    def param_range(self) -> tuple[float, float]:
        """Allowed bright-state populations alpha (dimensionless)."""
        return (1e-6, 0.5)

    @property
    def eta(self) -> float:
        """Per-arm probability that an emitted photon fires a detector."""
        return self._memo("eta", lambda: self.emission_efficiency * self.conversion_efficiency
                          * self._arm().transmissivity() * self.detector.efficiency
                          * self.capture())

    def _weights(self, a: float) -> tuple[float, float, float, float]:
        """(w00, coherent per 01/10, incoherent per 01/10, w11) for the + detector,
        averaged over the two detectors' dead/armed/plain states."""
        return self._memo(("w", a), lambda: self._compute_weights(a))

    def _compute_weights(self, a: float) -> tuple[float, float, float, float]:
        eta, v = self.eta, self.visibility
        p = self.window_dark_prob()
        # a plain live detector clicks unless no dark count and neither arm's
        # photon (a each, half to it) is detected: the renewal's click rate
        plain_click = 1.0 - (1.0 - p) * (1.0 - a * eta / 2.0) ** 2
        states = self.detector_states(plain_click, self.cycle_ns(a))
        w = [0.0, 0.0, 0.0, 0.0]
        for f_p, lp, pp in states:            # detector +: must click
            for f_m, lm, pm in states:        # detector -: must stay silent
                f = f_p * f_m
                if f == 0.0:
                    continue
                qm = 1.0 - lm * pm            # - silent with no photon sent to it
                dm = 1.0 - lm                 # - dead: a photon sent to it is lost
                w[0] += f * (1 - a) ** 2 * lp * pp * qm
                w[1] += f * a * (1 - a) * eta / 2.0 * lp * qm
                w[2] += f * a * (1 - a) * ((1 - eta) + eta / 2.0 * dm) * lp * pp * qm
                w[3] += f * a * a * ((1 - eta) ** 2 * lp * pp * qm
                                     + eta * (1 - eta) * (lp * qm + dm * lp * pp)
                                     + eta * eta * ((1 + v) / 4.0 * lp * qm
                                                    + (1 - v) / 2.0 * dm * lp
                                                    + (1 + v) / 4.0 * dm * lp * pp))
        return w[0], w[1], w[2], w[3]

    def success_probability(self, param: float) -> float:
        def compute() -> float:
            w00, coh, inc, w11 = self._weights(param)
            return 2.0 * (w00 + 2 * coh + 2 * inc + w11)
        return self._memo(("p", param), compute)

    def _overlap(self) -> float:
        """Factor on the coherent part's off-diagonal element: mode overlap,
        optical phase noise, double excitation, frequency-offset phase."""
        return (math.sqrt(self.visibility) * math.exp(-self.phase_noise_rad ** 2 / 2.0)
                * (1.0 - self.double_excitation_prob)
                * self.phase_coherence(self.frequency_offset_hz))

    def fidelity(self, param: float) -> float:
        """Fidelity of the heralded pair with the announced Psi+/Psi- (before memory decay)."""
        w00, coh, inc, w11 = self._weights(param)
        n = w00 + 2 * coh + 2 * inc + w11
        return (coh * (1 + self._overlap()) + inc) / n if n > 0 else 0.25

    def heralded_state(self, param: float, bell_index: int) -> np.ndarray:
        _check_index(bell_index)
        w00, coh, inc, w11 = self._weights(param)
        n = w00 + 2 * coh + 2 * inc + w11
        rho = np.zeros((4, 4), dtype=np.complex128)
        if n <= 0:
            return np.eye(4, dtype=np.complex128) / 4
        rho[0, 0] = w00 / n
        rho[1, 1] = rho[2, 2] = (coh + inc) / n
        rho[1, 2] = rho[2, 1] = coh * self._overlap() / n
        rho[3, 3] = w11 / n
        rho = _relabel(rho, bell_index)
        return _bell_twirl(rho) if self.twirl else rho

    def sample_bell_index(self, rng: np.random.Generator) -> int:
        return 2 + int(rng.random() < 0.5)

    def heralded_bell_indices(self) -> tuple[int, ...]:
        """Psi+ or Psi-, by which detector clicked."""
        return (2, 3)

    def cycle_ns(self, param: float) -> int:
        return int(self.attempt_ns) + self.classical_delay_ns

    def herald_delay_ns(self, side: int) -> int:
        return self.classical_delay_ns


# ----------------------------------------------------------------- double click

@dataclass(frozen=True)
class DoubleClickModel(_Span, _Detection):
    """Barrett-Kok double-click heralding (no tunable parameter).

    Each node's photon reaches the midpoint with probability
    emission_efficiency x fibre(L/2); the two-round time-bin detection is a
    linear-optics Bell measurement (:class:`LinearOpticsBSM`): success
    1/2 eta_a eta_b (1-p)^2 plus false heralds from dark counts; the heralded
    state is Bell-diagonal with Pauli errors (pI, pX, pY, pZ) =
    (w(1+V)/2 + (1-w)/4, (1-w)/4, (1-w)/4, w(1-V)/2 + (1-w)/4), w the share of
    genuine heralds. Psi+ and Psi- are heralded with probability 1/2 each.

    Timing: two rounds ``attempt_ns`` apart, then the herald: cycle =
    2 attempt_ns + classical_delay_ns, herald delay = attempt_ns + classical_delay_ns.

    Issue-18 noise terms (all off by default; :class:`_Detection`): each
    round's window captures a share of each photon (arrival x capture) and
    admits dark counts and noise photons; ``multi_photon_prob`` m (the
    emitter's :attr:`~qstack.physical.sources.SinglePhotonSource.multi_photon_prob`):
    an emission holds a second photon with probability m; each node emits once
    per attempt, in one of the two rounds, so per detector and round the
    extra photons fire it with mean m x arrival x efficiency / 2, counted as
    noise clicks (leading order in m: the extra photon taken as
    uncorrelated). With a window, dead time and afterpulsing at the attempt
    rate enter as a mean field: the detectors' efficiency times the share of live attempts,
    their dark-count probability averaged over armed and plain ones. A dead
    time of at least ``attempt_ns`` blinds the detector that clicked in the
    first round for the second: the same-detector pattern (Psi+) is lost,
    success halves and every herald is Psi- (afterpulses within one attempt
    are not modelled).
    """

    emission_efficiency: float = 0.2
    detector: ThresholdDetector = field(default_factory=ThresholdDetector)
    visibility: float = 0.9
    attempt_ns: int = 5_000
    multi_photon_prob: float = 0.0

    def __post_init__(self) -> None:
        _check_span("DoubleClickModel", self.length_km, self.attempt_ns)
        _check_prob("DoubleClickModel", "emission_efficiency", self.emission_efficiency)
        _check_prob("DoubleClickModel", "visibility", self.visibility)
        self._check_detection("DoubleClickModel")
        _check_prob("DoubleClickModel", "multi_photon_prob", self.multi_photon_prob)

    def param_range(self) -> tuple[float, float]:
        return (0.0, 0.0)

    @property
    def bsm(self) -> LinearOpticsBSM:
        """The Bell measurement the two rounds make, with the detectors'
        effective efficiency and dark-count probability per window."""
        return self._memo("bsm", self._make_bsm)

    def _make_bsm(self) -> LinearOpticsBSM:
        det = self.detector
        eff = det.efficiency
        dark = self.window_dark_prob()
        if self.multi_photon_prob > 0:
            extra = self.multi_photon_prob * self.arrival * eff / 2.0
            dark = 1.0 - (1.0 - dark) * math.exp(-extra)
        if self.detection_window_ns > 0 and (det.dead_time_ns > 0 or det.afterpulse_prob > 0):
            # each node's photon reaches one of the two detectors in one round
            plain_click = 1.0 - (1.0 - dark) * (1.0 - self.arrival * eff / 4.0) ** 2
            states = self.detector_states(plain_click, self.cycle_ns())
            eff = eff * sum(f * live for f, live, _ in states)
            dark = sum(f * pd for f, _, pd in states)
        return LinearOpticsBSM(eff, dark, self.visibility)

    @property
    def arrival(self) -> float:
        """Probability that one node's photon reaches the midpoint detectors
        inside the window."""
        return self._memo("arrival", lambda: self.emission_efficiency * self.conversion_efficiency
                          * self._arm().transmissivity() * self.capture())

    def _blind_second_round(self) -> bool:
        """True if a click in the first round leaves its detector dead for the
        second (detector timing counts only with a detection window)."""
        return self.detection_window_ns > 0 and self.detector.dead_time_ns >= self.attempt_ns

    def success_probability(self, param: float = 0.0) -> float:
        def compute() -> float:
            p = self.bsm.success_probability(self.arrival, self.arrival)
            return p / 2.0 if self._blind_second_round() else p
        return self._memo("p", compute)

    def _coeffs(self, bell_index: int) -> list[float]:
        probs = self.bsm.pauli_error_probs(self.arrival, self.arrival)
        c = [0.0] * 4
        for pauli, pr in enumerate(probs):
            c[bell_index ^ _PAULI_MASK[pauli]] += pr
        return c

    def fidelity(self, param: float = 0.0) -> float:
        return self._coeffs(0)[0]

    def heralded_state(self, param: float, bell_index: int) -> np.ndarray:
        _check_index(bell_index)
        return bell_dm_from_coeffs(self._coeffs(bell_index))

    def sample_bell_index(self, rng: np.random.Generator) -> int:
        if self._blind_second_round():
            return 3
        return 2 + int(rng.random() < 0.5)

    def heralded_bell_indices(self) -> tuple[int, ...]:
        """Psi+ or Psi-, by which detector clicked (Psi- only if the first
        round's detector is dead in the second)."""
        return (3,) if self._blind_second_round() else (2, 3)

    def cycle_ns(self, param: float = 0.0) -> int:
        return 2 * int(self.attempt_ns) + self.classical_delay_ns

    def herald_delay_ns(self, side: int) -> int:
        return int(self.attempt_ns) + self.classical_delay_ns


# ----------------------------------------------------------------- midpoint source

@dataclass(frozen=True)
class MidpointSourceModel(_Span):
    """An SPDC entangled-pair source at the midpoint; each memory absorbs a photon.

    Per pulse the source emits n pairs with the source's statistics (thermal
    over two modes by default, :class:`SPDCSource`). Each photon reaches and is
    absorbed by its memory with probability t = heralding_efficiency x
    fibre(L/2) x absorption_efficiency; a memory heralds when it absorbed at
    least one photon, or falsely (probability ``false_herald_prob``) when it
    absorbed none. A memory that receives several photons keeps one of them at
    random. What the two kept photons hold depends on the source's mode
    structure (``specs/link.md``):

    * **one spatio-temporal mode** (``statistics="thermal"``, two thermal
      modes, the polarisation pair of a type-II source; the default): the n
      pairs share one mode, the photons are indistinguishable and the n-pair
      state is the singlet-like sum_m (-1)^m |n-m, m>_A |m, n-m>_B. One photon
      from each end is then in the Werner state of fidelity
      F_n = (n+1)/(2n) (in any basis the two kept photons disagree with
      probability (n-1)/(3n)), i.e. the source's pair with weight
      p_n = (4 F_n - 1)/3 = (n+2)/(3n), maximally mixed otherwise.
      Whatever photons are lost, the kept ones are a random photon of each
      side of that state, so p_n does not depend on t.
    * **many modes** (``statistics="poisson"``): the n pairs are in different
      modes (labelled); the two kept photons are of the same pair with
      probability 1/n and otherwise uncorrelated: p_n = 1/n, F_n = (n+3)/(4n).

    With these

        P_succ = sum_n P(n) [1 - (1-f)(1-t)^n]^2
        P_good = sum_{n>=1} P(n) [1 - (1-t)^n]^2 p_n

    and the heralded state is the source's pair (Werner fidelity
    ``pair_fidelity`` on ``bell_index``) with weight P_good/P_succ and
    maximally mixed otherwise (a false herald leaves uncorrelated qubits).
    Its QBER 2(1-F)/3 is that of entanglement-based QKD with the same source
    (:meth:`SPDCSource.entangled_qkd_gain_qber`, Ma, Fung & Lo, PRA 76, 012307
    (2007)) up to what differs when three or more photons reach one end (a
    memory keeps a random one, a detector pair squashes a double click to a
    random bit). Other thermal mode numbers (several partly distinguishable
    modes) are refused.

    ``arms`` replaces the two fibre halves by any two channels (side 0's,
    side 1's; e.g. two :class:`~qstack.physical.freespace.SatelliteDownlink`
    for a satellite source sending to two ground stations, Yin et al.,
    Science 356, 1140 (2017)): each side then has its own t_s, the products
    above becoming P_succ = sum_n P(n) h_0 h_1 and P_good = sum_n P(n)
    [1 - (1-t_0)^n][1 - (1-t_1)^n] p_n, and a free-space arm's background
    counts (night sky, daylight) in ``background_window_ns`` add to that
    side's false heralds, f_s = 1 - (1-f)(1-p_bg). ``length_km`` is then the
    ground distance of the classical channel between the two ends.

    Timing: the source pulses every 1/pulse_rate; a memory learns its own
    absorption after its photon's flight (L/2, or its arm's delay) and the
    other's result one classical delay after the other photon arrived:
    herald delay = 1.5 x classical_delay_ns over fibre. A memory
    that absorbed while the other did not is blocked for one classical delay
    to learn so: the attempt cycle used for sampling is the *mean*
    pulse period + P(exactly one absorbs) x classical_delay_ns (a mean-field
    approximation of that blocking).
    """

    source: SPDCSource = field(default_factory=lambda: SPDCSource(mean_pair_number=0.02))
    absorption_efficiency: float = 0.5
    false_herald_prob: float = 1e-6
    pair_fidelity: float = 0.99
    bell_index: int = 0
    n_max: int = 30
    arms: tuple | None = None
    background_window_ns: float = 1.0

    def __post_init__(self) -> None:
        check_length("MidpointSourceModel", self.length_km)
        if self.arms is not None:
            if (not isinstance(self.arms, tuple) or len(self.arms) != 2
                    or not all(hasattr(a, "transmissivity") and hasattr(a, "delay_ns") for a in self.arms)):
                raise ValueError("MidpointSourceModel.arms: expected None or two channels (side 0, side 1) "
                                 f"with transmissivity() and delay_ns(), got {self.arms!r}")
        _check_nonneg("MidpointSourceModel", "background_window_ns", self.background_window_ns)
        _check_prob("MidpointSourceModel", "absorption_efficiency", self.absorption_efficiency)
        _check_prob("MidpointSourceModel", "false_herald_prob", self.false_herald_prob)
        _check_prob("MidpointSourceModel", "pair_fidelity", self.pair_fidelity)
        _check_index(self.bell_index)
        src = self.source
        if src.statistics == "thermal" and src.thermal_modes != 2:
            raise ValueError("MidpointSourceModel.source: expected a polarisation-entangled source, "
                             "statistics='thermal' with thermal_modes=2 (one spatio-temporal mode) "
                             f"or statistics='poisson' (many modes), got thermal_modes={src.thermal_modes!r}")
        # The pair-number distribution is summed over 0..n_max (a Python loop
        # per term, at load). With the source's mean of 0.02 pairs the terms
        # fall below 1e-16 by n = 10; 1000 is ample for any mean up to ~25.
        if (not isinstance(self.n_max, int) or isinstance(self.n_max, bool)
                or not 1 <= self.n_max <= _N_MAX_LIMIT):
            raise ValueError(f"MidpointSourceModel.n_max: expected an integer in "
                             f"[1, {_N_MAX_LIMIT}], got {self.n_max!r}")

    def param_range(self) -> tuple[float, float]:
        return (0.0, 0.0)

    def arm_t(self, side: int) -> float:
        """Per-photon probability that side ``side``'s photon is absorbed by its
        memory: coupling x its arm (fibre(L/2), or ``arms[side]``) x absorption."""
        arm = self._arm() if self.arms is None else self.arms[side]
        return self.source.heralding_efficiency * arm.transmissivity() * self.absorption_efficiency

    @property
    def t(self) -> float:
        """Per-photon probability of being absorbed by its memory (side 0's;
        both sides' unless ``arms`` differ)."""
        return self.arm_t(0)

    def arm_false_herald_prob(self, side: int) -> float:
        """A side's false-herald probability: ``false_herald_prob`` and, on a
        free-space arm, its background counts in ``background_window_ns``:
        1 - (1-f)(1-p_bg)."""
        f = self.false_herald_prob
        arm = None if self.arms is None else self.arms[side]
        if arm is not None and hasattr(arm, "background_prob_per_gate"):
            f = 1.0 - (1.0 - f) * (1.0 - arm.background_prob_per_gate(self.background_window_ns))
        return f

    def _probs(self) -> tuple[float, float, float]:
        """(P_succ, P_good, P_exactly_one_side) per pulse."""
        return self._memo("probs", self._compute_probs)

    def _compute_probs(self) -> tuple[float, float, float]:
        pn = self.source.pair_number_pmf(self.n_max)
        n = np.arange(len(pn))
        # per side: no photon of n absorbed, and a herald (absorbed or false)
        miss = [(1.0 - self.arm_t(side)) ** n for side in (0, 1)]
        h = [1.0 - (1.0 - self.arm_false_herald_prob(side)) * miss[side] for side in (0, 1)]
        p_succ = float(np.sum(pn * h[0] * h[1]))
        n1 = np.maximum(n, 1)
        # weight of the source's pair in the kept state given n pairs (class doc)
        p_n = (n1 + 2) / (3.0 * n1) if self.source.statistics == "thermal" else 1.0 / n1
        good = np.where(n > 0, (1.0 - miss[0]) * (1.0 - miss[1]) * p_n, 0.0)
        p_good = float(np.sum(pn * good))
        p_one = float(np.sum(pn * (h[0] * (1 - h[1]) + h[1] * (1 - h[0]))))
        return p_succ, p_good, p_one

    def success_probability(self, param: float = 0.0) -> float:
        return self._probs()[0]

    def fidelity(self, param: float = 0.0) -> float:
        p_succ, p_good, _ = self._probs()
        w = p_good / p_succ if p_succ > 0 else 0.0
        return w * self.pair_fidelity + (1 - w) / 4.0

    def heralded_state(self, param: float, bell_index: int) -> np.ndarray:
        _check_index(bell_index)
        f = self.fidelity()
        c = [(1 - f) / 3.0] * 4
        c[bell_index] = f
        return bell_dm_from_coeffs(c)

    def sample_bell_index(self, rng: np.random.Generator) -> int:
        return self.bell_index

    def heralded_bell_indices(self) -> tuple[int, ...]:
        return (self.bell_index,)

    def bell_index_thresholds(self) -> int:
        return self.bell_index          # (always this one, nothing drawn)

    def cycle_ns(self, param: float = 0.0) -> int:
        period = 1e9 / self.source.pulse_rate_hz
        return self._memo("cycle", lambda: max(1, int(round(
            period + self._probs()[2] * self.classical_delay_ns))))

    def _arm_delay_ns(self, side: int) -> int:
        if self.arms is None:
            return self._half_delay_ns()
        return int(round(self.arms[side].delay_ns()))

    def herald_delay_ns(self, side: int) -> int:
        """A side knows its own absorption after its photon's flight and the
        other's one classical delay after the other photon arrived."""
        return self._memo(("hd", side), lambda: max(
            self._arm_delay_ns(side), self._arm_delay_ns(1 - side) + self.classical_delay_ns))


# ----------------------------------------------------------------- sender-receiver

@dataclass(frozen=True)
class SenderReceiverModel(_Span):
    """Node 0 (sender) emits a photon entangled with its memory; node 1 (receiver) absorbs it.

    Success per attempt: p_true + (1 - p_true) f with
    p_true = emission_efficiency x fibre(L) x absorption_efficiency and f the
    receiver's false-herald probability. A genuine herald holds the
    spin-photon state (Werner fidelity ``pair_fidelity``) after the fibre's
    two qubit noises (``FibreChannel``), which act differently:

    * depolarisation, survival (1-p)^L: a depolarising channel with
      q = 1 - (1-p)^L (the qubit replaced by a maximally mixed one);
    * polarisation drift, a random rotation by theta ~ N(0, s^2),
      s = drift x sqrt(L), about the Y axis of the Bloch sphere (it flips Z
      and X alike, with probability sin^2 theta). A rotation of one half of a
      Bell pair keeps it with amplitude cos theta and moves it to its Y
      partner with sin theta; the cross terms average out (theta is
      symmetric), so the pair takes a Pauli Y error with probability
      e_r = <sin^2 theta> = (1 - e^(-2 s^2))/2: F = 1 - e_r, not the
      1 - 1.5 e_r of a depolarising channel with the same flip probability.

    F_true = (1-q)[(1-e_r) F_pair + e_r (1-F_pair)/3] + q/4, the state
    Bell-diagonal. A false herald leaves uncorrelated qubits (maximally
    mixed), so F = w F_true + (1-w)/4 with w the genuine share.

    Timing: the receiver knows on absorption (herald delay of side 1 =
    classical_delay_ns); the sender learns from the receiver's message (side 0:
    2 x classical_delay_ns); the sender can only re-emit once it knows:
    cycle = attempt_ns + 2 x classical_delay_ns.
    """

    emission_efficiency: float = 0.2
    absorption_efficiency: float = 0.5
    false_herald_prob: float = 1e-6
    pair_fidelity: float = 0.98
    bell_index: int = 0
    attempt_ns: int = 5_000

    def __post_init__(self) -> None:
        _check_span("SenderReceiverModel", self.length_km, self.attempt_ns)
        _check_prob("SenderReceiverModel", "emission_efficiency", self.emission_efficiency)
        _check_prob("SenderReceiverModel", "absorption_efficiency", self.absorption_efficiency)
        _check_prob("SenderReceiverModel", "false_herald_prob", self.false_herald_prob)
        _check_prob("SenderReceiverModel", "pair_fidelity", self.pair_fidelity)
        _check_index(self.bell_index)

    def param_range(self) -> tuple[float, float]:
        return (0.0, 0.0)

    @property
    def p_true(self) -> float:
        return self._memo("pt", lambda: self.emission_efficiency * self.fibre.with_length(
            self.length_km).transmissivity() * self.absorption_efficiency)

    def success_probability(self, param: float = 0.0) -> float:
        pt = self.p_true
        return pt + (1 - pt) * self.false_herald_prob

    def _fibre_noise(self) -> tuple[float, float]:
        """(q, e_r): depolarising parameter and rotation (Pauli Y) probability
        of the fibre over the whole span (class doc)."""
        fibre = self.fibre.with_length(self.length_km)
        q = 1.0 - (1.0 - fibre.depolarisation_prob_per_km) ** fibre.length_km
        s2 = fibre.polarisation_drift_rad_per_sqrt_km ** 2 * fibre.length_km
        return q, 0.5 * -math.expm1(-2.0 * s2)

    def _coeffs(self, bell_index: int) -> list[float]:
        """Bell-diagonal coefficients of the heralded state (class doc)."""
        def compute() -> list[float]:
            pt = self.p_true
            ps = self.success_probability()
            w = pt / ps if ps > 0 else 0.0
            q, e_r = self._fibre_noise()
            f = self.pair_fidelity
            pair = [(1 - f) / 3.0] * 4
            pair[bell_index] = f
            y = _PAULI_MASK[2]      # a Y on side 1 moves B_b to B_(b ^ y)
            rot = [(1 - e_r) * pair[b] + e_r * pair[b ^ y] for b in range(4)]
            return [w * ((1 - q) * c + q / 4.0) + (1 - w) / 4.0 for c in rot]
        return self._memo(("c", bell_index), compute)

    def fidelity(self, param: float = 0.0) -> float:
        return self._coeffs(self.bell_index)[self.bell_index]

    def heralded_state(self, param: float, bell_index: int) -> np.ndarray:
        _check_index(bell_index)
        return bell_dm_from_coeffs(self._coeffs(bell_index))

    def sample_bell_index(self, rng: np.random.Generator) -> int:
        return self.bell_index

    def heralded_bell_indices(self) -> tuple[int, ...]:
        return (self.bell_index,)

    def bell_index_thresholds(self) -> int:
        return self.bell_index          # (always this one, nothing drawn)

    def cycle_ns(self, param: float = 0.0) -> int:
        return int(self.attempt_ns) + 2 * self.classical_delay_ns

    def herald_delay_ns(self, side: int) -> int:
        return 2 * self.classical_delay_ns if side == 0 else self.classical_delay_ns
