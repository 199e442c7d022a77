"""A prepare-and-measure QKD link: its pulse physics, eavesdroppers, and the
station that carries out :class:`~qstack.physical.ops.PulseBlock` operations.

:class:`QkdLinkModel` holds what the pulse kernels (:mod:`.pulses`) need besides
the fibre: Alice's weak coherent source (intensity classes, pulse rate), Bob's
threshold detectors (efficiency including his optics, dark counts, dead time),
the misalignment error e_d, the Z-basis probability, and an optional
:class:`Eavesdropper` on the fibre. Its :meth:`QkdLinkModel.simulate` draws a
block of pulses with the exact skip-ahead kernel.

Eavesdroppers (what each one does to the pulses; all three keep the per-detector
click probabilities exact and the two detectors independent given the pulse's
configuration, as the kernels do):

* ``"intercept-resend"``: on a fraction ``fraction`` of the block's pulses
  (Eve is on the line for that share of the block's time: the first
  Binomial(n, fraction) pulses), Eve measures every photon in a random basis
  and resends it in the state she found. A photon she measured in the wrong
  basis (½) reaches Bob's matching basis with a random bit, so a photon lands
  in the wrong detector with probability ¼(1 − e_d) + ¾ e_d = ¼ + e_d/2 instead
  of e_d: the sifted QBER of the attacked pulses goes to ~25 %, and Bob's gains
  do not change (the attack is per photon: for a multi-photon pulse each
  photon is measured on its own, which differs from a per-pulse attack only in
  clicks from two photons, a share ~ημ/2 of the clicks).
* ``"pns"``, photon-number splitting: Eve counts the photons of every pulse
  (a QND measurement), blocks the single-photon ones, keeps one photon of each
  multi-photon pulse and forwards the other n − 1 to Bob over a lossless
  channel, forwarding only a share r of them so that the signal class's gain
  at Bob is the honest channel's (and, where even r = 1 falls short, letting
  a share s of single-photon pulses through intact). Without decoys the gain
  looks right; the weak decoy's (fewer multi-photon pulses) does not, and the
  decoy bound on Y1 falls to ~0. Per detector j (routing probability w:
  1 − e_d, e_d, or ½ across bases), P(click) = 1 − (1 − p_dark) Σ_n P_μ(n)
  [1 − f_n + f_n (1 − η_B w)^(m_n)], f_n the share forwarded, m_n the photons.
* ``"beam-splitting"``: Eve taps a share ``tap`` of every pulse's photons
  (a beam splitter; she keeps them): the transmissivity is multiplied by
  1 − tap, the pulses stay Poissonian, the gains fall and the key with them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

from .detectors import ThresholdDetector
from .ops import PulseBlock, PulseRecord
from .pulses import PulseEvents, PulseTrainParams, simulate_pulses
from .sources import WeakCoherentSource, _check_prob, _fail

__all__ = ["EAVESDROPPERS", "Eavesdropper", "QkdLinkModel", "PulseStation", "pns_click_table",
           "merge_events"]

#: Eavesdropper names a network file's ``eavesdropper`` key takes.
EAVESDROPPERS = ("none", "intercept-resend", "pns", "beam-splitting")

_N_MAX = 40     # photon numbers summed in the PNS table (P(n > 40) < 1e-40 for μ ≤ 2)


@dataclass(frozen=True)
class Eavesdropper:
    """An attack on the fibre of a QKD link (module doc).

    kind: one of :data:`EAVESDROPPERS`; fraction: share of the block's pulses
    intercept-resend attacks (0-1); tap: share of each pulse's photons the
    beam-splitting attack takes (0-1).
    """

    kind: str = "none"
    fraction: float = 1.0
    tap: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in EAVESDROPPERS:
            _fail("Eavesdropper", "kind", "one of " + ", ".join(EAVESDROPPERS), self.kind)
        _check_prob("Eavesdropper", "fraction", self.fraction)
        _check_prob("Eavesdropper", "tap", self.tap)


@dataclass(frozen=True)
class QkdLinkModel:
    """The pulse physics of a decoy-BB84 link, apart from its fibre.

    source: Alice's weak coherent pulses (μ per class, class probabilities,
    pulse rate in Hz); detector: Bob's two threshold detectors (efficiency
    including his optics, dark-count probability per gate, dead time in ns);
    misalignment_error: e_d; p_z: probability of the Z basis at both ends;
    eve: the eavesdropper (default none).

    Defaults: an SNSPD pair (:class:`ThresholdDetector`'s), e_d = 1.5 %, and
    three classes for Lim et al.'s finite-key bounds (their μ1 > μ2 + μ3,
    μ2 > μ3 ≥ 0): signal 0.6, weak decoy 0.2 and a near-vacuum 2e-4 (an
    intensity modulator's finite extinction) sent with probabilities 0.5,
    0.35, 0.15 at 1 GHz, Z chosen with probability 0.7 (the key basis more
    often: fewer sifting losses, and the test basis still gets ~10 % of the
    clicks).
    """

    source: WeakCoherentSource = field(default_factory=lambda: WeakCoherentSource(
        (0.6, 0.2, 2e-4), (0.5, 0.35, 0.15), 1e9))
    detector: ThresholdDetector = field(default_factory=ThresholdDetector)
    misalignment_error: float = 0.015
    p_z: float = 0.7
    eve: Eavesdropper = field(default_factory=Eavesdropper)

    def __post_init__(self) -> None:
        _check_prob("QkdLinkModel", "misalignment_error", self.misalignment_error)
        _check_prob("QkdLinkModel", "p_z", self.p_z)

    @property
    def period_ns(self) -> float:
        """The pulse period, ns."""
        return 1e9 / self.source.pulse_rate_hz

    def params(self, channel: Any) -> PulseTrainParams:
        """The honest channel's pulse parameters (``channel``: anything with
        ``transmissivity()``, e.g. a :class:`~.fibre.FibreChannel`)."""
        return PulseTrainParams.from_models(self.source, channel, self.detector,
                                            misalignment_error=self.misalignment_error,
                                            p_z_alice=self.p_z, p_z_bob=self.p_z)

    def simulate(self, channel: Any, n: int, rng: np.random.Generator) -> PulseEvents:
        """A block of ``n`` pulses over ``channel`` with this link's
        eavesdropper (module doc), by the exact skip-ahead kernel."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            _fail("QkdLinkModel.simulate", "n", "a pulse count >= 0", n)
        n = int(n)
        honest = self.params(channel)
        eve = self.eve
        if eve.kind == "beam-splitting":
            tapped = PulseTrainParams(**{**_fields(honest),
                                         "transmissivity": honest.transmissivity * (1 - eve.tap)})
            return simulate_pulses(tapped, n, rng)
        if eve.kind == "pns":
            return simulate_pulses(honest, n, rng, click_table=pns_click_table(honest))
        if eve.kind == "intercept-resend" and eve.fraction > 0:
            e_d = honest.misalignment_error
            attacked = PulseTrainParams(**{**_fields(honest), "misalignment_error": 0.25 + e_d / 2})
            n_att = int(rng.binomial(n, eve.fraction))
            first = simulate_pulses(attacked, n_att, rng)
            return merge_events(first, simulate_pulses(honest, n - n_att, rng))
        return simulate_pulses(honest, n, rng)


def _fields(params: PulseTrainParams) -> dict:
    import dataclasses

    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def merge_events(first: PulseEvents, second: PulseEvents) -> PulseEvents:
    """The events of two consecutive stretches of pulses as one block
    (``second``'s pulse indices shifted by ``first.n_pulses``)."""
    cat = np.concatenate
    return PulseEvents(
        n_pulses=first.n_pulses + second.n_pulses,
        index=cat([first.index, second.index + first.n_pulses]),
        alice_basis=cat([first.alice_basis, second.alice_basis]),
        alice_bit=cat([first.alice_bit, second.alice_bit]),
        alice_class=cat([first.alice_class, second.alice_class]),
        bob_basis=cat([first.bob_basis, second.bob_basis]),
        clicks=cat([first.clicks, second.clicks]), bob_bit=cat([first.bob_bit, second.bob_bit]),
        sent_per_class=first.sent_per_class + second.sent_per_class)


def _poisson(mu: float) -> np.ndarray:
    """P(n) = e^(−μ) μ^n / n! for n = 0 … _N_MAX (the vacuum: 1 at n = 0)."""
    from .sources import poisson_pmf

    return poisson_pmf(mu, _N_MAX)


def _pns_no_click(mus: tuple, eta_b: float, w: float, r: float, s: float) -> np.ndarray:
    """Σ_n P_μ(n) [1 − f_n + f_n (1 − η_B w)^(m_n)] per class: the probability
    that no forwarded photon fires a detector of routing probability w."""
    n = np.arange(_N_MAX + 1)
    m = np.where(n >= 2, n - 1, n)                 # photons forwarded: n − 1, or the single one
    f = np.where(n >= 2, r, np.where(n == 1, s, 0.0))
    keep = 1.0 - f + f * (1.0 - eta_b * w) ** m
    return np.array([float(_poisson(mu) @ keep) for mu in mus])


def pns_click_table(params: PulseTrainParams, signal: int = 0) -> np.ndarray:
    """The click table (shape (2, K, 3), as the kernels take) of the PNS
    attack (module doc) that keeps class ``signal``'s gain at the honest value.

    Eve's shares r (multi-photon pulses forwarded) and s (single-photon ones)
    solve gain(r, s) = the honest gain 1 − (1 − p_dark)² e^(−η μ): the no-click
    probability of both detectors, (1 − p_dark)² Σ_n P(n)[1 − f_n + f_n (1 − η_B)^(m_n)],
    is linear in f_n, so r (then s) is found exactly.
    """
    mus = params.mean_photon_numbers
    eta_b = params.detector_efficiency          # Bob's side: Eve's channel to him is lossless
    q = 1.0 - params.dark_count_prob
    mu_s = mus[signal]
    target = q * q * math.exp(-params.eta * mu_s)      # honest P(no click) of the signal

    def no_click(r: float, s: float) -> float:
        return q * q * float(_pns_no_click((mu_s,), eta_b, 1.0, r, s)[0])

    full = no_click(1.0, 0.0)
    base = no_click(0.0, 0.0)
    if full <= target:          # forwarding every multi-photon pulse gives too much: r < 1
        r, s = (base - target) / (base - full) if base > full else 0.0, 0.0
    else:                       # not enough: every multi-photon pulse, some single ones intact
        r = 1.0
        full_s = no_click(1.0, 1.0)
        s = min(1.0, (full - target) / (full - full_s)) if full > full_s else 0.0
    ed = params.misalignment_error
    tab = np.empty((2, params.n_classes, 3))
    for ridx, w in enumerate((1.0 - ed, ed, 0.5)):
        nc = _pns_no_click(mus, eta_b, w, r, s)
        for st, ap in enumerate((0.0, params.afterpulse_prob)):
            tab[st, :, ridx] = 1.0 - q * (1.0 - ap) * nc
    return np.clip(tab, 0.0, 1.0)


# ------------------------------------------------------------------ the station

class _Pending:
    __slots__ = ("node", "ref", "op", "now_ns")

    def __init__(self, node: str, ref: Any, op: PulseBlock, now_ns: int) -> None:
        self.node, self.ref, self.op, self.now_ns = node, ref, op, now_ns


class PulseStation:
    """Carries out the :class:`~.ops.PulseBlock` operations of one link (sans-I/O).

    ``ends``: the two node names; ``model``: the link's :class:`QkdLinkModel`;
    ``channel``: its fibre; ``rng``: the link's random stream. :meth:`submit`
    takes one end's operation and returns the answers now due, as
    ``(ref, at_ns, PulseRecord)``: none until both ends have submitted a block
    with the same key, then both ends' records at the block's end (start +
    n × the pulse period), or failures at once when the two disagree.
    """

    def __init__(self, ends: tuple[str, str], model: QkdLinkModel, channel: Any,
                 rng: np.random.Generator) -> None:
        self.ends = ends
        self.model = model
        self.channel = channel
        self.rng = rng
        self._pending: dict[Hashable, _Pending] = {}
        self.blocks = 0
        self.pulses = 0

    def submit(self, node: str, ref: Any, op: PulseBlock, now_ns: int) -> list[tuple[Any, int, PulseRecord]]:
        if op.role not in ("send", "receive"):
            return [(ref, now_ns, PulseRecord(False, reason=f"role {op.role!r}: expected "
                                                            "'send' or 'receive'"))]
        if isinstance(op.n, bool) or not isinstance(op.n, int) or op.n < 1:
            return [(ref, now_ns, PulseRecord(False, reason=f"n={op.n!r}: expected a pulse "
                                                            "count >= 1"))]
        other = self._pending.pop(op.key, None)
        if other is None:
            self._pending[op.key] = _Pending(node, ref, op, now_ns)
            return []
        if other.node == node or other.op.role == op.role or other.op.n != op.n:
            why = (f"the two ends' blocks {op.key!r} disagree (roles {other.op.role}/{op.role}, "
                   f"{other.op.n}/{op.n} pulses)")
            return [(other.ref, now_ns, PulseRecord(False, reason=why)),
                    (ref, now_ns, PulseRecord(False, reason=why))]
        ev = self.model.simulate(self.channel, op.n, self.rng)
        self.blocks += 1
        self.pulses += op.n
        period = self.model.period_ns
        end = now_ns + math.ceil(op.n * period)
        sent = tuple(int(c) for c in ev.sent_per_class)
        mus, probs = self.model.source.mean_photon_numbers, self.model.source.class_probs
        alice = PulseRecord(True, "send", op.n, ev.index, ev.alice_basis, ev.alice_bit,
                            ev.alice_class, sent, now_ns, end, period, "", mus, probs)
        bob = PulseRecord(True, "receive", op.n, ev.index, ev.bob_basis, ev.bob_bit,
                          np.zeros(0, np.uint8), (), now_ns, end, period, "", mus, probs)
        out = []
        for p in (other, _Pending(node, ref, op, now_ns)):
            out.append((p.ref, end, alice if p.op.role == "send" else bob))
        return out

    def drop(self, node: str) -> None:
        """``node`` crashed: its pending block is forgotten."""
        for key in [k for k, p in self._pending.items() if p.node == node]:
            del self._pending[key]
