"""Prepare-and-measure pulse trains (decoy-state BB84): model, reference, numpy twin, skip-ahead.

The model
---------
Pulse i (one gate of Bob's detectors, period 1/f):

* Alice picks a basis (Z with probability ``p_z_alice``), a bit (½/½) and an
  intensity class k (probabilities ``class_probs``) and sends a
  phase-randomised coherent pulse of mean μ_k: Poisson photon number.
* The channel and Bob's optics pass each photon with probability
  ``transmissivity``; the detectors have efficiency η_det.  With
  η = transmissivity·η_det, Poisson thinning makes the photons that would fire
  a detector Poisson with mean η·μ_k.
* Bob picks a basis (Z with probability ``p_z_bob``) and measures with two
  threshold detectors D0 (bit 0) and D1 (bit 1).  Same basis: each photon
  goes to the correct detector with probability 1 − e_d (misalignment e_d), so
  D_correct sees Poisson((1−e_d)ημ), D_wrong Poisson(e_d·ημ), independently
  (Poisson splitting).  Different bases: each sees Poisson(ημ/2).
* Detector j clicks with probability c = 1 − (1−p_dark)(1−p_ap·[armed])·e^(−m_j)
  unless it is dead; a click blinds it for the next D = ``dead_time_gates``
  gates; with afterpulsing it is *armed* (afterpulse probability p_ap) in the
  first gate after the dead time (conventions: :mod:`qstack.physical.detectors`).
* Double click → random bit (squashing).

Without dead time the per-class gain and error rate are (exact for this model):
    Q_k = 1 − (1−p_dark)² e^(−ημ_k)
    E_k·Q_k = b(1−a) + ab/2,  a = 1−(1−p_dark)e^(−(1−e_d)ημ_k),  b = 1−(1−p_dark)e^(−e_d ημ_k)
which to first order in p_dark are the formulas of Lo, Ma & Chen, PRL 94,
230504 (2005) and Ma, Qi, Zhao & Lo, PRA 72, 012326 (2005), Eqs. (3)-(4):
    Q_μ = Y0 + 1 − e^(−ημ),   E_μ Q_μ = e0·Y0 + e_d(1 − e^(−ημ)),  Y0 = 2 p_dark, e0 = ½.

Draw order (pulse by pulse)
---------------------------
``simulate_pulses_reference``, ``simulate_pulses_numpy`` and the Cython
``_pulses.simulate_pulses_uniforms`` consume a uniform array ``u[7, n]`` on
[0, 1); column i belongs to pulse i, rows:

    0  Alice's basis   Z (0) if u < p_z_alice else X (1)
    1  Alice's bit     1 if u < ½ else 0
    2  class           smallest k with u < cumsum(class_probs)[k]
    3  Bob's basis     Z (0) if u < p_z_bob else X (1)
    4  D0              clicks if alive and u < c_0
    5  D1              clicks if alive and u < c_1
    6  tie             on a double click, bit 1 if u < ½ else 0

Every row is consumed for every pulse (dead or not), so the draws do not
depend on the history and the three implementations agree bit for bit.

Skip-ahead (exact)
------------------
Given the detector states (alive / armed / dead for each detector) the
pulses are i.i.d., and the probability that a pulse gives any click is the
mixture P_s = Σ_config w(config)·(1 − (1−c0)(1−c1)) over configurations
(Alice basis, bit, class, Bob basis) with prior weights w.  So the gap to the
next click is geometric(P_s); the states only change at known gates (end of a
dead time, the single armed gate), and since the geometric law is memoryless
we draw a gap, and if it reaches past the next state change we move to that
change and draw again.  At a click we draw the configuration from its
posterior w·P(click | config)/P_s, then which detectors clicked given that at
least one did.  The classes of the pulses without a click are drawn at the
end: given the click history, each such pulse's class is independent with the
posterior P(k | no click, state), so per state the counts are multinomial.
Draws per step: one uniform for the gap (G = ⌊ln(1−u)/ln(1−P_s)⌋ failures),
one for the configuration, one for the detectors, one for a double-click tie.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from qstack.core.kernels import pure_python, require_cython
from qstack.physical.sources import _check_prob, _fail, _check_nonneg

try:  # the Cython kernel, built by setup.py
    if pure_python():
        raise ImportError("QSTACK_PURE_PYTHON=1")
    from qstack.physical import _pulses  # type: ignore[attr-defined]
    HAVE_CYTHON = True
except ImportError:  # pragma: no cover - exercised only without a build
    _pulses = None
    HAVE_CYTHON = False
    if require_cython():
        raise ImportError(
            "qstack.physical._pulses (Cython kernel) is not built but QSTACK_REQUIRE_CYTHON=1; "
            "build it with `python setup.py build_ext --inplace` (or `pip install -e .`)"
        ) from None

__all__ = [
    "HAVE_CYTHON",
    "PulseTrainParams",
    "PulseTrain",
    "PulseEvents",
    "ClassStatistics",
    "N_UNIFORMS_PER_PULSE",
    "simulate_pulses_reference",
    "simulate_pulses_numpy",
    "simulate_pulses_cython",
    "simulate_skip_ahead_python",
    "simulate_skip_ahead_cython",
    "simulate_pulses",
    "class_statistics",
    "expected_gain",
    "expected_qber",
    "lmc_gain",
    "lmc_error_gain",
]

#: Uniforms consumed per pulse by the pulse-by-pulse model (rows of ``u``).
N_UNIFORMS_PER_PULSE = 7


@dataclass(frozen=True)
class PulseTrainParams:
    """Everything the pulse kernels need, as plain numbers.

    Fields:
        mean_photon_numbers: μ per intensity class (photons per pulse).
        class_probs: probability of each class (sum 1).
        transmissivity: channel × Bob's optics, excluding detector efficiency (0–1).
        detector_efficiency: η_det of each of Bob's two detectors.
        dark_count_prob: dark-count probability per detector per gate.
        misalignment_error: e_d, probability that a detected photon hits the wrong detector.
        dead_time_gates: gates lost after each click, D = ceil(τ·f).
        afterpulse_prob: afterpulse probability in the first gate after the dead time.
        p_z_alice, p_z_bob: probability of choosing the Z basis.
    """

    # Defaults: Ma, Qi, Zhao & Lo (2005) decoy example over 50 km of 0.2 dB/km
    # fibre, SNSPD-class detectors at 1 GHz, e_d = 1.5 %.
    mean_photon_numbers: tuple[float, ...] = (0.5, 0.1, 0.0)
    class_probs: tuple[float, ...] = (0.8, 0.15, 0.05)
    transmissivity: float = 0.1
    detector_efficiency: float = 0.8
    dark_count_prob: float = 1e-7
    misalignment_error: float = 0.015
    dead_time_gates: int = 50
    afterpulse_prob: float = 0.0
    p_z_alice: float = 0.5
    p_z_bob: float = 0.5

    def __post_init__(self) -> None:
        o = "PulseTrainParams"
        mus = tuple(float(m) for m in self.mean_photon_numbers)
        ps = tuple(float(p) for p in self.class_probs)
        object.__setattr__(self, "mean_photon_numbers", mus)
        object.__setattr__(self, "class_probs", ps)
        if not 1 <= len(mus) <= 8:
            _fail(o, "mean_photon_numbers", "1 to 8 intensity classes", mus)
        if len(ps) != len(mus):
            _fail(o, "class_probs", f"{len(mus)} probabilities", ps)
        for i, m in enumerate(mus):
            _check_nonneg(o, f"mean_photon_numbers[{i}]", m)
        for i, p in enumerate(ps):
            _check_prob(o, f"class_probs[{i}]", p)
        if abs(sum(ps) - 1.0) > 1e-9:
            _fail(o, "class_probs", "probabilities summing to 1", ps)
        for name in ("transmissivity", "detector_efficiency", "dark_count_prob", "misalignment_error",
                     "afterpulse_prob", "p_z_alice", "p_z_bob"):
            _check_prob(o, name, getattr(self, name))
        if not isinstance(self.dead_time_gates, (int, np.integer)) or self.dead_time_gates < 0:
            _fail(o, "dead_time_gates", "an integer >= 0", self.dead_time_gates)
        object.__setattr__(self, "dead_time_gates", int(self.dead_time_gates))

    @classmethod
    def from_models(cls, source: Any, channel: Any, detector: Any, *, misalignment_error: float = 0.015,
                    bob_optics_transmissivity: float = 1.0, p_z_alice: float = 0.5,
                    p_z_bob: float = 0.5, gate_ns: float | None = None) -> "PulseTrainParams":
        """Build from a WeakCoherentSource, a channel (anything with ``transmissivity()``,
        e.g. FibreChannel, SatelliteDownlink) and a ThresholdDetector.  The channel's
        own qubit error (``qubit_error_prob()``, if any) is folded into e_d; its
        background (``background_rate_per_s()``, free space: night sky, stray
        light, daylight; counts/s over Bob's two detectors) into each detector's
        dark-count probability, half the rate each over a window of ``gate_ns``
        (ns; None: the whole pulse period): p = 1 − (1−p_dark)·e^(−R·t/2)."""
        e_d = misalignment_error
        if hasattr(channel, "qubit_error_prob"):
            e_c = channel.qubit_error_prob()
            e_d = e_d + e_c - 2 * e_d * e_c
        p_dark = detector.dark_count_prob_per_gate
        if hasattr(channel, "background_rate_per_s"):
            t_ns = 1e9 / source.pulse_rate_hz if gate_ns is None else gate_ns
            _check_nonneg("PulseTrainParams.from_models", "gate_ns", t_ns)
            p_dark = 1.0 - (1.0 - p_dark) * math.exp(-channel.background_rate_per_s() * t_ns * 1e-9 / 2.0)
        return cls(
            mean_photon_numbers=source.mean_photon_numbers,
            class_probs=source.class_probs,
            transmissivity=channel.transmissivity() * bob_optics_transmissivity,
            detector_efficiency=detector.efficiency,
            dark_count_prob=p_dark,
            misalignment_error=e_d,
            dead_time_gates=detector.dead_time_gates(source.pulse_rate_hz),
            afterpulse_prob=detector.afterpulse_prob,
            p_z_alice=p_z_alice,
            p_z_bob=p_z_bob,
        )

    @property
    def eta(self) -> float:
        """Overall detection efficiency η = transmissivity × η_det."""
        return self.transmissivity * self.detector_efficiency

    @property
    def n_classes(self) -> int:
        return len(self.mean_photon_numbers)


# --------------------------------------------------------------------------
# tables shared by every implementation (computed once, in Python, so that all
# implementations compare against bit-identical thresholds)
# --------------------------------------------------------------------------

def _cum_class(params: PulseTrainParams) -> np.ndarray:
    cum = np.cumsum(np.asarray(params.class_probs, dtype=np.float64))
    cum[-1] = 2.0  # sentinel: every u in [0,1) falls in some class despite round-off
    return cum


def _click_table(params: PulseTrainParams) -> np.ndarray:
    """c[s, k, r]: click probability of a live detector; s = 0 normal, 1 armed (afterpulse);
    r = 0 correct detector (same basis), 1 wrong detector (same basis), 2 different basis."""
    eta, ed = params.eta, params.misalignment_error
    q = 1.0 - params.dark_count_prob
    tab = np.empty((2, params.n_classes, 3), dtype=np.float64)
    for s, ap in enumerate((0.0, params.afterpulse_prob)):
        for k, mu in enumerate(params.mean_photon_numbers):
            m = eta * mu
            for r, mr in enumerate((m * (1.0 - ed), m * ed, m / 2.0)):
                tab[s, k, r] = 1.0 - q * (1.0 - ap) * math.exp(-mr)
    return tab


def _checked_click_table(params: PulseTrainParams, tab: np.ndarray) -> np.ndarray:
    """A caller's click table (an eavesdropped channel's, :mod:`qstack.physical.qkdlink`):
    shape (2, K, 3) of probabilities, as :func:`_click_table` gives."""
    tab = np.ascontiguousarray(tab, dtype=np.float64)
    if tab.shape != (2, params.n_classes, 3) or not np.all((tab >= 0.0) & (tab <= 1.0)):
        raise ValueError(f"click_table: expected shape (2, {params.n_classes}, 3) of "
                         f"probabilities, got shape {tab.shape}")
    return tab


@dataclass(frozen=True)
class _SkipTables:
    regime_p: np.ndarray        # (9,) P(any click) per detector-state pair s0*3+s1
    log1m_regime_p: np.ndarray  # (9,) ln(1 − P)
    cdf: np.ndarray             # (9, C) posterior cdf of the configuration given a click
    c0: np.ndarray              # (9, C) click probability of D0 (0 when dead)
    c1: np.ndarray              # (9, C)
    pevt: np.ndarray            # (9, C) 1 − (1−c0)(1−c1)
    fields: np.ndarray          # (C, 4) uint8: Alice basis, Alice bit, class, Bob basis
    post_nonevent: np.ndarray   # (9, K) P(class | no click, state)
    use_armed: int


def _skip_tables(params: PulseTrainParams, click_table: np.ndarray | None = None) -> _SkipTables:
    tab = _click_table(params) if click_table is None else _checked_click_table(params, click_table)
    K = params.n_classes
    fields, weights = [], []
    for a in (0, 1):
        pa = params.p_z_alice if a == 0 else 1.0 - params.p_z_alice
        for x in (0, 1):
            for k in range(K):
                for b in (0, 1):
                    pb = params.p_z_bob if b == 0 else 1.0 - params.p_z_bob
                    fields.append((a, x, k, b))
                    weights.append(pa * 0.5 * params.class_probs[k] * pb)
    C = len(fields)
    w = np.asarray(weights)
    regime_p = np.zeros(9)
    log1m = np.zeros(9)
    cdf = np.full((9, C), 2.0)
    c0 = np.zeros((9, C))
    c1 = np.zeros((9, C))
    pevt = np.zeros((9, C))
    post = np.zeros((9, K))
    for s0 in range(3):
        for s1 in range(3):
            st = s0 * 3 + s1
            for c, (a, x, k, b) in enumerate(fields):
                if a == b:
                    r0, r1 = (0, 1) if x == 0 else (1, 0)
                else:
                    r0 = r1 = 2
                c0[st, c] = 0.0 if s0 == 2 else tab[min(s0, 1), k, r0]
                c1[st, c] = 0.0 if s1 == 2 else tab[min(s1, 1), k, r1]
                pevt[st, c] = c0[st, c] + c1[st, c] - c0[st, c] * c1[st, c]
            we = w * pevt[st]
            total = float(we.sum())
            regime_p[st] = min(total, 1.0)
            log1m[st] = math.log1p(-regime_p[st]) if regime_p[st] < 1.0 else -math.inf
            if total > 0:
                cs = np.cumsum(we) / total
                pos = np.flatnonzero(we > 0)
                cs[pos[-1]:] = 2.0  # sentinel on the last possible configuration
                cdf[st] = cs
            wn = w * (1.0 - pevt[st])
            for c, (_, _, k, _) in enumerate(fields):
                post[st, k] += wn[c]
            if post[st].sum() > 0:
                post[st] /= post[st].sum()
    return _SkipTables(regime_p, log1m, np.ascontiguousarray(cdf), c0, c1, pevt,
                       np.asarray(fields, dtype=np.uint8), post, int(params.afterpulse_prob > 0))


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------

@dataclass
class PulseTrain:
    """Pulse-by-pulse outcome of n pulses (all arrays length n).

    alice_basis, alice_bit, alice_class, bob_basis: uint8.
    clicks: uint8 bit mask, 1 = D0 clicked, 2 = D1 clicked, 3 = double click, 0 = none.
    bob_bit: int8, −1 no click, else Bob's (squashed) bit.
    """

    alice_basis: np.ndarray
    alice_bit: np.ndarray
    alice_class: np.ndarray
    bob_basis: np.ndarray
    clicks: np.ndarray
    bob_bit: np.ndarray
    n_classes: int = 1

    @property
    def n_pulses(self) -> int:
        return int(self.clicks.shape[0])

    def events(self) -> "PulseEvents":
        """The detection events only (the sparse form the skip-ahead produces)."""
        idx = np.flatnonzero(self.clicks)
        return PulseEvents(
            n_pulses=self.n_pulses, index=idx.astype(np.int64), alice_basis=self.alice_basis[idx],
            alice_bit=self.alice_bit[idx], alice_class=self.alice_class[idx], bob_basis=self.bob_basis[idx],
            clicks=self.clicks[idx], bob_bit=self.bob_bit[idx],
            sent_per_class=np.bincount(self.alice_class, minlength=self.n_classes).astype(np.int64))


@dataclass
class PulseEvents:
    """Detection events of a pulse train (sparse form).

    index: int64 pulse index of each event; other arrays as in :class:`PulseTrain`,
    restricted to the events.  sent_per_class: pulses sent in each intensity class.
    nonevent_by_state: (skip-ahead only) pulses without a click per detector-state pair.
    """

    n_pulses: int
    index: np.ndarray
    alice_basis: np.ndarray
    alice_bit: np.ndarray
    alice_class: np.ndarray
    bob_basis: np.ndarray
    clicks: np.ndarray
    bob_bit: np.ndarray
    sent_per_class: np.ndarray
    nonevent_by_state: np.ndarray | None = field(default=None)

    @property
    def n_events(self) -> int:
        return int(self.index.shape[0])


@dataclass(frozen=True)
class ClassStatistics:
    """Per intensity class: pulses sent, clicks, gain Q = clicks/sent, sifted clicks, errors, QBER."""

    sent: int
    detected: int
    gain: float
    sifted: int
    errors: int
    qber: float


def class_statistics(result: PulseTrain | PulseEvents, n_classes: int | None = None) -> list[ClassStatistics]:
    """Gain and QBER per intensity class (QBER over the pulses where the bases agree)."""
    ev = result.events() if isinstance(result, PulseTrain) else result
    K = n_classes or len(ev.sent_per_class)
    out = []
    sifted_mask = ev.alice_basis == ev.bob_basis
    err_mask = sifted_mask & (ev.bob_bit.astype(np.int16) != ev.alice_bit.astype(np.int16))
    for k in range(K):
        m = ev.alice_class == k
        sent = int(ev.sent_per_class[k])
        det = int(m.sum())
        sif = int((m & sifted_mask).sum())
        err = int((m & err_mask).sum())
        out.append(ClassStatistics(sent, det, det / sent if sent else float("nan"), sif, err,
                                   err / sif if sif else float("nan")))
    return out


# --------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------

def _eta(params: PulseTrainParams, transmissivity):
    """η = transmissivity × η_det, from the params or from the given
    transmissivity (a number or an array of them: a fading channel's draws)."""
    if transmissivity is None:
        return params.eta
    return np.asarray(transmissivity, dtype=np.float64) * params.detector_efficiency


def expected_gain(params: PulseTrainParams, cls: int, transmissivity=None):
    """Exact gain of this model without dead time: 1 − (1−p_dark)² e^(−ημ).
    ``transmissivity`` (number or array) replaces ``params.transmissivity``."""
    q = 1.0 - params.dark_count_prob
    out = 1.0 - q * q * np.exp(-_eta(params, transmissivity) * params.mean_photon_numbers[cls])
    return float(out) if np.ndim(out) == 0 else out


def expected_qber(params: PulseTrainParams, cls: int, transmissivity=None):
    """Exact QBER of this model without dead time (module docstring).
    ``transmissivity`` (number or array) replaces ``params.transmissivity``."""
    m = _eta(params, transmissivity) * params.mean_photon_numbers[cls]
    q, ed = 1.0 - params.dark_count_prob, params.misalignment_error
    a = 1.0 - q * np.exp(-(1.0 - ed) * m)
    b = 1.0 - q * np.exp(-ed * m)
    qg = 1.0 - (1.0 - a) * (1.0 - b)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(qg > 0, (b * (1.0 - a) + 0.5 * a * b) / np.where(qg > 0, qg, 1.0), 0.5)
    return float(out) if np.ndim(out) == 0 else out


def lmc_gain(mu: float, eta: float, y0: float) -> float:
    """Lo–Ma–Chen gain Q_μ = Y0 + 1 − e^(−ημ)."""
    return y0 + 1.0 - math.exp(-eta * mu)


def lmc_error_gain(mu: float, eta: float, y0: float, e_d: float, e0: float = 0.5) -> float:
    """Lo–Ma–Chen E_μ·Q_μ = e0·Y0 + e_d·(1 − e^(−ημ))."""
    return e0 * y0 + e_d * (1.0 - math.exp(-eta * mu))


# --------------------------------------------------------------------------
# pulse by pulse: reference loop and numpy twin
# --------------------------------------------------------------------------

def _uniforms(n: int | None, rng: np.random.Generator | None, uniforms: np.ndarray | None) -> np.ndarray:
    if uniforms is not None:
        u = np.ascontiguousarray(uniforms, dtype=np.float64)
        if u.ndim != 2 or u.shape[0] != N_UNIFORMS_PER_PULSE:
            raise ValueError(f"uniforms: expected shape ({N_UNIFORMS_PER_PULSE}, n), got {u.shape}")
        if n is not None and u.shape[1] != n:
            raise ValueError(f"uniforms: expected {n} columns, got {u.shape[1]}")
        return u
    if rng is None or n is None:
        raise ValueError("pass either uniforms or both n and rng")
    if n < 0:
        raise ValueError(f"n: expected a pulse count >= 0, got {n}")
    return rng.random((N_UNIFORMS_PER_PULSE, n))


def simulate_pulses_reference(params: PulseTrainParams, n: int | None = None, rng: np.random.Generator | None = None,
                              uniforms: np.ndarray | None = None) -> PulseTrain:
    """Reference model: a plain Python loop, one pulse at a time (slow; small n)."""
    u = _uniforms(n, rng, uniforms)
    n = u.shape[1]
    cum = _cum_class(params).tolist()
    tab = _click_table(params).tolist()
    D = params.dead_time_gates
    cols = [u[r].tolist() for r in range(N_UNIFORMS_PER_PULSE)]
    out = [np.zeros(n, dtype=np.uint8) for _ in range(5)] + [np.full(n, -1, dtype=np.int8)]
    last = [-(D + 2), -(D + 2)]
    for i in range(n):
        a = 0 if cols[0][i] < params.p_z_alice else 1
        x = 1 if cols[1][i] < 0.5 else 0
        k = 0
        while cols[2][i] >= cum[k]:
            k += 1
        b = 0 if cols[3][i] < params.p_z_bob else 1
        click = [False, False]
        for j in (0, 1):
            if a == b:
                r = 0 if x == j else 1
            else:
                r = 2
            if i <= last[j] + D:
                continue  # dead
            s = 1 if i == last[j] + D + 1 else 0
            if cols[4 + j][i] < tab[s][k][r]:
                click[j] = True
                last[j] = i
        out[0][i], out[1][i], out[2][i], out[3][i] = a, x, k, b
        out[4][i] = int(click[0]) | (int(click[1]) << 1)
        if click[0] and click[1]:
            out[5][i] = 1 if cols[6][i] < 0.5 else 0
        elif click[0] or click[1]:
            out[5][i] = 0 if click[0] else 1
    return PulseTrain(*out, n_classes=params.n_classes)


def simulate_pulses_numpy(params: PulseTrainParams, n: int | None = None, rng: np.random.Generator | None = None,
                          uniforms: np.ndarray | None = None) -> PulseTrain:
    """numpy twin of the pulse-by-pulse model (same uniforms, same result as the reference).

    Everything is vectorised except the dead time, which is inherently
    sequential: each detector's history is independent of the other's (its
    own uniforms decide its clicks), so for each detector a short Python loop
    walks only the candidate gates where it *could* click.
    """
    u = _uniforms(n, rng, uniforms)
    n = u.shape[1]
    cum = _cum_class(params)
    tab = _click_table(params)
    D = params.dead_time_gates
    a = (u[0] >= params.p_z_alice).astype(np.uint8)
    x = (u[1] < 0.5).astype(np.uint8)
    k = np.searchsorted(cum, u[2], side="right").astype(np.uint8)
    b = (u[3] >= params.p_z_bob).astype(np.uint8)
    match = a == b
    flat_norm = tab[0].ravel()
    flat_arm = tab[1].ravel()
    base = k.astype(np.intp) * 3
    clicks = np.zeros(n, dtype=np.uint8)
    use_armed = params.afterpulse_prob > 0
    for j in (0, 1):
        r = np.where(match, (x != j).astype(np.intp), 2)  # 0 correct, 1 wrong, 2 other basis
        idx = base + r
        c_norm = flat_norm[idx]
        uj = u[4 + j]
        if D == 0 and not use_armed:
            cj = uj < c_norm
        else:
            c_arm = flat_arm[idx] if use_armed else c_norm
            cand = np.flatnonzero(uj < c_arm)  # every possible click is among these
            uc, cn, ca = uj[cand].tolist(), c_norm[cand].tolist(), c_arm[cand].tolist()
            hit = []
            last = -(D + 2)
            for m, i in enumerate(cand.tolist()):
                if i <= last + D:
                    continue
                if uc[m] < (ca[m] if i == last + D + 1 else cn[m]):
                    hit.append(i)
                    last = i
            cj = np.zeros(n, dtype=bool)
            cj[hit] = True
        clicks |= cj.astype(np.uint8) << j
    bob_bit = np.full(n, -1, dtype=np.int8)
    bob_bit[clicks == 1] = 0
    bob_bit[clicks == 2] = 1
    dbl = clicks == 3
    bob_bit[dbl] = (u[6][dbl] < 0.5).astype(np.int8)
    return PulseTrain(a, x, k, b, clicks, bob_bit, n_classes=params.n_classes)


def _require_cython() -> None:
    if not HAVE_CYTHON:
        raise RuntimeError("the Cython kernel qstack.physical._pulses is not built; "
                           "run `python setup.py build_ext --inplace`")


def _xoshiro_state(rng: np.random.Generator) -> np.ndarray:
    """A xoshiro256++ state seeded from the numpy generator (never all zero)."""
    s = rng.integers(0, np.iinfo(np.uint64).max, size=4, dtype=np.uint64, endpoint=True)
    if not s.any():
        s[0] = 1
    return s


def simulate_pulses_cython(params: PulseTrainParams, n: int | None = None, rng: np.random.Generator | None = None,
                           uniforms: np.ndarray | None = None) -> PulseTrain:
    """Cython pulse-by-pulse kernel.

    With ``uniforms`` it consumes them in the documented order (bit-for-bit equal
    to the numpy twin); otherwise it runs the fast path with a C-level
    xoshiro256++ generator seeded from ``rng`` (same distribution).
    """
    _require_cython()
    cum = _cum_class(params)
    tab = np.ascontiguousarray(_click_table(params))
    if uniforms is not None:
        u = _uniforms(n, None, uniforms)
        n = u.shape[1]
    elif rng is None or n is None:
        raise ValueError("pass either uniforms or both n and rng")
    outs = [np.empty(n, dtype=np.uint8) for _ in range(5)] + [np.empty(n, dtype=np.int8)]
    if uniforms is not None:
        _pulses.simulate_pulses_uniforms(u, cum, tab, params.p_z_alice, params.p_z_bob,
                                         params.dead_time_gates, *outs)
    else:
        _pulses.simulate_pulses_fast(_xoshiro_state(rng), cum, tab, params.p_z_alice, params.p_z_bob,
                                     params.dead_time_gates, *outs)
    return PulseTrain(*outs, n_classes=params.n_classes)


# --------------------------------------------------------------------------
# exact skip-ahead: Python twin and Cython kernel
# --------------------------------------------------------------------------

class _UniformStream:
    """Uniforms on [0,1) one at a time, from an array or drawn from a Generator in blocks."""

    def __init__(self, rng: np.random.Generator | None, uniforms: np.ndarray | None, block: int = 65536):
        self._rng = rng if uniforms is None else None
        self._buf = (np.asarray(uniforms, dtype=np.float64).ravel().tolist() if uniforms is not None else [])
        self._pos = 0
        self._block = block
        self.consumed = 0

    def __call__(self) -> float:
        if self._pos >= len(self._buf):
            if self._rng is None:
                raise ValueError("skip-ahead: the uniform array ran out; pass more uniforms")
            self._buf = self._rng.random(self._block).tolist()
            self._pos = 0
        self._pos += 1
        self.consumed += 1
        return self._buf[self._pos - 1]


def _sent_per_class(events_class: np.ndarray, nonevent: np.ndarray, tabs: _SkipTables, K: int,
                    rng: np.random.Generator) -> np.ndarray:
    sent = np.bincount(events_class, minlength=K).astype(np.int64)
    for st in range(9):
        if nonevent[st] > 0:
            sent += rng.multinomial(int(nonevent[st]), tabs.post_nonevent[st])
    return sent


def simulate_skip_ahead_python(params: PulseTrainParams, n: int, rng: np.random.Generator,
                               uniforms: np.ndarray | None = None,
                               click_table: np.ndarray | None = None) -> PulseEvents:
    """Python twin of the exact skip-ahead (algorithm in the module docstring).

    Uniforms come from ``uniforms`` (consumed in order; the Cython kernel given
    the same array returns the same events) or, if None, from ``rng``.  ``rng``
    also draws the classes of the pulses without a click.  ``click_table``
    (shape (2, K, 3), as ``_click_table`` gives) replaces the per-detector click
    probabilities of the Poisson channel: a channel with an eavesdropper
    (:mod:`qstack.physical.qkdlink`); the two detectors stay independent given
    the configuration.
    """
    if n < 0:
        raise ValueError(f"n: expected a pulse count >= 0, got {n}")
    tabs = _skip_tables(params, click_table)
    draw: Callable[[], float] = _UniformStream(rng, uniforms)
    D = params.dead_time_gates
    use_armed = tabs.use_armed
    rp = tabs.regime_p.tolist()
    l1m = tabs.log1m_regime_p.tolist()
    cdf, c0t, c1t, pev = (t.tolist() for t in (tabs.cdf, tabs.c0, tabs.c1, tabs.pevt))
    fields = tabs.fields.tolist()
    C = len(fields)
    last = [-(D + 2), -(D + 2)]
    nonevent = [0] * 9
    ev: list[tuple[int, int, int, int, int, int, int]] = []
    i = 0
    while i < n:
        st_e = []
        for j in (0, 1):
            if i <= last[j] + D:
                st_e.append((2, last[j] + D + 1))
            elif use_armed and i == last[j] + D + 1:
                st_e.append((1, i + 1))
            else:
                st_e.append((0, n))
        e = min(st_e[0][1], st_e[1][1], n)
        st = st_e[0][0] * 3 + st_e[1][0]
        p = rp[st]
        if p <= 0.0:
            nonevent[st] += e - i
            i = e
            continue
        u = draw()
        g = 0.0 if p >= 1.0 else math.floor(math.log1p(-u) / l1m[st])
        if g >= float(e - i):
            nonevent[st] += e - i
            i = e
            continue
        ie = i + int(g)
        nonevent[st] += ie - i
        u = draw()
        c = 0
        while c < C - 1 and u >= cdf[st][c]:
            c += 1
        u = draw()
        q0, q1 = c0t[st][c], c1t[st][c]
        w = u * pev[st][c]
        a, x, k, b = fields[c]
        if w < q0 * q1:
            clicks, bit = 3, (1 if draw() < 0.5 else 0)
            last[0] = last[1] = ie
        elif w < q0:
            clicks, bit = 1, 0
            last[0] = ie
        else:
            clicks, bit = 2, 1
            last[1] = ie
        ev.append((ie, a, x, k, b, clicks, bit))
        i = ie + 1
    arr = np.asarray(ev, dtype=np.int64).reshape(-1, 7)
    nonev = np.asarray(nonevent, dtype=np.int64)
    kcls = arr[:, 3].astype(np.uint8)
    return PulseEvents(n_pulses=n, index=arr[:, 0].copy(), alice_basis=arr[:, 1].astype(np.uint8),
                       alice_bit=arr[:, 2].astype(np.uint8), alice_class=kcls, bob_basis=arr[:, 4].astype(np.uint8),
                       clicks=arr[:, 5].astype(np.uint8), bob_bit=arr[:, 6].astype(np.int8),
                       sent_per_class=_sent_per_class(kcls, nonev, tabs, params.n_classes, rng),
                       nonevent_by_state=nonev)


def simulate_skip_ahead_cython(params: PulseTrainParams, n: int, rng: np.random.Generator,
                               uniforms: np.ndarray | None = None,
                               click_table: np.ndarray | None = None) -> PulseEvents:
    """Cython exact skip-ahead.  With ``uniforms`` it matches :func:`simulate_skip_ahead_python`
    bit for bit; otherwise it uses xoshiro256++ seeded from ``rng``.  ``click_table``:
    as for :func:`simulate_skip_ahead_python`."""
    _require_cython()
    if n < 0:
        raise ValueError(f"n: expected a pulse count >= 0, got {n}")
    tabs = _skip_tables(params, click_table)
    D = params.dead_time_gates
    state = None if uniforms is not None else _xoshiro_state(rng)
    uarr = np.ascontiguousarray(np.asarray(uniforms, dtype=np.float64).ravel()) if uniforms is not None else None
    upos = np.zeros(1, dtype=np.int64)
    last = np.array([-(D + 2), -(D + 2)], dtype=np.int64)
    nonev = np.zeros(9, dtype=np.int64)
    pmax = float(tabs.regime_p.max())
    chunks = []
    i = 0
    while True:
        remaining = n - i
        mean = remaining * pmax
        cap = int(min(remaining, mean + 6.0 * math.sqrt(mean + 1.0) + 64)) + 1
        bufs = [np.empty(cap, dtype=np.int64)] + [np.empty(cap, dtype=np.uint8) for _ in range(5)] + [
            np.empty(cap, dtype=np.int8)]
        m, i = _pulses.skip_ahead(n, i, last, D, tabs.use_armed, tabs.regime_p, tabs.log1m_regime_p, tabs.cdf,
                                  tabs.c0, tabs.c1, tabs.pevt, tabs.fields, state, uarr, upos, *bufs, nonev)
        chunks.append([b[:m] for b in bufs])
        if i >= n:
            break
    cat = [np.concatenate([c[f] for c in chunks]) for f in range(7)]
    return PulseEvents(n_pulses=n, index=cat[0], alice_basis=cat[1], alice_bit=cat[2], alice_class=cat[3],
                       bob_basis=cat[4], clicks=cat[5], bob_bit=cat[6],
                       sent_per_class=_sent_per_class(cat[3], nonev, tabs, params.n_classes, rng),
                       nonevent_by_state=nonev)


def simulate_pulses(params: PulseTrainParams, n: int, rng: np.random.Generator,
                    method: str = "skip_ahead", click_table: np.ndarray | None = None
                    ) -> PulseTrain | PulseEvents:
    """Simulate n pulses with the fastest available implementation.

    method: "skip_ahead" (exact, returns :class:`PulseEvents`) or
    "pulse_by_pulse" (returns :class:`PulseTrain`).  Uses Cython when built,
    the numpy/Python twin otherwise.  ``click_table`` (skip-ahead only): the
    click probabilities of a channel that is not the Poisson one
    (:func:`simulate_skip_ahead_python`).
    """
    if method == "skip_ahead":
        return (simulate_skip_ahead_cython if HAVE_CYTHON else simulate_skip_ahead_python)(
            params, n, rng, click_table=click_table)
    if click_table is not None:
        raise ValueError("click_table: only the skip-ahead method takes one")
    if method == "pulse_by_pulse":
        return (simulate_pulses_cython if HAVE_CYTHON else simulate_pulses_numpy)(params, n, rng)
    raise ValueError(f"method: expected 'skip_ahead' or 'pulse_by_pulse', got {method!r}")
