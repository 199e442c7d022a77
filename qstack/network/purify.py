"""Entanglement purification of link pairs: BBPSSW and DEJMPS, recurrence and pumping.

:class:`PurifyProtocol` (``network.purify``) sits between the link layer and
the protocol above it and offers the link service unchanged
(``CreateRequest`` in, ``LinkOk`` out), only better: a request whose
``min_fidelity`` is above what the link delivers raw (``raw_fidelity[peer]``)
is served by purifying raw pairs, ``rounds`` times, with the scheme given.

One round on two pairs (both ends, each on its own halves):

* DEJMPS (Deutsch et al., PRL 77, 2818, 1996): the creator rotates its qubits
  by Rx(pi/2), the receiver by Rx(-pi/2); CNOT kept -> sacrificed; measure
  the sacrificed qubit in Z; keep iff both outcomes agree.
* BBPSSW (Bennett et al., PRL 76, 722, 1996): CNOT, measure, keep iff equal,
  then the kept pair is twirled back to Werner form by a random bilateral
  operation (one of 24: a bilateral Pauli times one of the six permutations of
  Phi-, Psi+, Psi- that H(x)H and Rx(pi/2)(x)Rx(-pi/2) generate), which the
  creator draws and names in the message so both ends apply the same one.

Before purifying, the creator corrects each raw pair to Phi+ (Pauli on its
qubit), so the rounds see the states the closed forms
(:func:`~qstack.network.theory.dejmps`, :func:`~qstack.network.theory.bbpssw`)
assume. ``mode="recurrence"``: pairs of equal level are combined (2^k raw
pairs per output if all succeed); ``mode="pumping"``: one kept pair is
purified again and again against fresh raw pairs (k + 1 raw pairs).

The creator decides which pairs to combine and sends
:class:`~qstack.network.messages.PurifyMeasure` with its outcome; the
receiver does the same operations on its halves and answers
:class:`~qstack.network.messages.PurifyReply`; both keep or discard by the
same rule. Outputs are passed up as ``LinkOk`` with the kept pair's
``ent_id``, Bell index 0 and the closed-form fidelity as ``goodness``.
The creator announces a purified request with
:class:`~qstack.network.messages.PurifySetup` before asking the link layer for
raw pairs, so the receiver knows to hold them (the classical channel is FIFO
and the link layer needs at least one exchange before its first pair).

A session (one per peer and purpose, at each end) is OPEN until it has
delivered the pairs asked for, then CLOSED (:data:`TRANSITIONS`,
``specs/network.md``): late raw pairs are then discarded.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from qstack.core.errors import ErrorCode
from qstack.core.protocol import (
    Deliver, Fail, OperationDone, Protocol, QuantumOp, SendMessage, Submit, on, on_message,
)
from qstack.core.states import State, Transitions
from qstack.link.service import (
    CancelCreate, CreateRequest, LinkErr, LinkExpire, LinkOk, Release,
)
from qstack.physical.ops import Discard, Gate, Measure

from .messages import PurifyMeasure, PurifyReply, PurifySetup
from .theory import bbpssw, dejmps

__all__ = ["PurifyProtocol", "BBPSSW", "DEJMPS", "twirl_ops"]

BBPSSW, DEJMPS = 0, 1
_HALF_PI = math.pi / 2


def twirl_ops(twirl: int, creator: bool) -> list[tuple[str, tuple]]:
    """The gates (name, params) one end applies to its qubit for twirl element
    ``twirl`` (0..23): ``pauli = twirl // 6`` (I, X, Y, Z on both ends: a
    bilateral Pauli keeps every Bell state, up to sign), then permutation
    ``twirl % 6`` as a word in H(x)H (swaps Phi- and Psi+) and
    Rx(pi/2)(x)Rx(-pi/2) (swaps Phi- and Psi-)."""
    pauli = ("i", "x", "y", "z")[twirl // 6]
    words = ((), ("h",), ("r",), ("h", "r"), ("r", "h"), ("h", "r", "h"))[twirl % 6]
    ops: list[tuple[str, tuple]] = []
    if pauli != "i":
        ops.append((pauli, ()))
    for w in words:
        if w == "h":
            ops.append(("h", ()))
        else:
            ops.append(("rx", (_HALF_PI if creator else -_HALF_PI,)))
    return ops


class SessionPhase(State):
    """The state of a purification session at one end."""

    OPEN = "open"          # purifying: raw pairs asked for, rounds run
    CLOSED = "closed"      # every output delivered: late raw pairs are discarded


_OPEN, _CLOSED = SessionPhase.OPEN, SessionPhase.CLOSED

#: The allowed moves of a session (it starts OPEN: at the creator on the
#: CreateRequest, at the receiver on the PurifySetup).
TRANSITIONS = Transitions("purification", {
    (SessionPhase.OPEN, "done"): SessionPhase.CLOSED,
})


@dataclass(slots=True)
class _Held:
    seq: int
    ok: LinkOk
    level: int = 0
    coeffs: tuple = (1.0, 0.0, 0.0, 0.0)   # closed-form Bell-diagonal estimate


@dataclass(slots=True)
class _Session:
    """Purification of one (peer, purpose) at one end."""

    peer: str
    purpose: int
    creator: bool
    scheme: int
    rounds: int
    number: int
    mode: str = "recurrence"
    request: CreateRequest | None = None
    levels: dict = field(default_factory=dict)   # level -> list[_Held] (creator)
    pairs: dict = field(default_factory=dict)    # seq -> _Held (both ends)
    pending: dict = field(default_factory=dict)  # keep_seq -> _Round waiting for the reply
    early: list = field(default_factory=list)    # receiver: PurifyMeasure before its pairs
    delivered: int = 0
    outstanding: int = 0
    busy: int = 0            # rounds in progress (creator)
    phase: SessionPhase = SessionPhase.OPEN


class _Round:
    """Creator: a round measured here, waiting for the receiver's
    PurifyReply (``mine``: this end's outcome; ``twirl``: the twirl sent)."""

    __slots__ = ("keep", "sac", "mine", "twirl")

    def __init__(self, keep: _Held, sac: _Held, mine: int, twirl: int) -> None:
        self.keep = keep
        self.sac = sac
        self.mine = mine
        self.twirl = twirl


# ---------------------------------------------------------------- pending operations
# (the context Protocol.start_op keeps for an operation's answer)

class _Chain:
    """Operations run one after the other: ``rest`` still to run after this
    one, then ``then`` (one of the records below) says what comes next."""

    __slots__ = ("rest", "then")

    def __init__(self, rest: list, then: Any) -> None:
        self.rest = rest
        self.then = then


class _Ready:
    """Creator: raw pair ``pair`` is corrected to Phi+, ready to combine."""

    __slots__ = ("session", "pair")

    def __init__(self, session: _Session, pair: _Held) -> None:
        self.session = session
        self.pair = pair


class _Measured:
    """Creator: a round's measurement (its outcome goes to the receiver)."""

    __slots__ = ("session", "keep", "sac")

    def __init__(self, session: _Session, keep: _Held, sac: _Held) -> None:
        self.session = session
        self.keep = keep
        self.sac = sac


class _Answered:
    """Receiver: its measurement for the creator's PurifyMeasure ``msg``
    (reply with the outcome, then keep or discard)."""

    __slots__ = ("session", "keep", "sac", "msg")

    def __init__(self, session: _Session, keep: _Held, sac: _Held,
                 msg: PurifyMeasure) -> None:
        self.session = session
        self.keep = keep
        self.sac = sac
        self.msg = msg


class _Kept:
    """Both ends: ``pair`` survived a round (and is twirled back, BBPSSW)."""

    __slots__ = ("session", "pair")

    def __init__(self, session: _Session, pair: _Held) -> None:
        self.session = session
        self.pair = pair


class PurifyProtocol(Protocol):
    """Link-pair purification between neighbours (see module doc).

    ``raw_fidelity``: peer -> the Werner fidelity the link layer delivers
    raw. ``scheme``: BBPSSW (0) or DEJMPS (1). ``mode``: "recurrence" or
    "pumping". ``lower``: the link protocol's name. ``seed``: the twirl
    draws (creator side).
    """

    name = "network.purify"

    def __init__(self, node: str, raw_fidelity: dict[str, float] | None = None, *,
                 scheme: int = DEJMPS, mode: str = "recurrence", lower: str = "link.egp",
                 max_rounds: int = 8, seed: int = 0) -> None:
        super().__init__(node)
        self.raw_fidelity = dict(raw_fidelity or {})
        self.scheme = scheme
        self.mode = mode
        self.lower = lower
        self.max_rounds = max_rounds
        self.rng = random.Random(f"{seed}/{node}")
        self.sessions: dict[tuple[str, int], _Session] = {}
        #: rounds attempted / succeeded (for tests)
        self.stats = {"rounds": 0, "success": 0}

    # ---------------------------------------------------------------- helpers
    def _release(self, ok: LinkOk, out: list) -> None:
        """Tell the link layer a raw pair is used up (no cut-off or expiry for it)."""
        out.append(Submit(Release(ok.ent_id, ok.remote), to=self.lower))

    def _free(self, ok: LinkOk, out: list) -> None:
        """Release a raw pair and discard this end's qubit of it."""
        out.append(Submit(Release(ok.ent_id, ok.remote), to=self.lower))
        out.append(QuantumOp(None, Discard(ok.qubit)))

    @on(Release)
    def _on_release(self, ev: Release, now_ns: int) -> list:
        # a passed-through or purified pair: both carry the link layer's ent_id
        return [Submit(ev, to=self.lower)]

    @on(CancelCreate)
    def _on_cancel(self, ev: CancelCreate, now_ns: int) -> list:
        # a passed-through request, or the raw request a session has standing
        # (same create id): withdrawn below. A session itself runs on; its
        # late outputs are freed by the layer above as before.
        return [Submit(ev, to=self.lower)]

    def _chain(self, ops: list, then: Any, out: list) -> None:
        """Run ``ops`` one after the other; ``then`` is handled after the last."""
        if not ops:
            self._after(then, None, out)
        else:
            out.append(self.start_op(ops[0], _Chain(ops[1:], then)))

    def _estimate(self, f: float) -> tuple:
        e = (1.0 - f) / 3.0
        return (f, e, e, e)

    def rounds_for(self, f_raw: float, target: float) -> int | None:
        """Rounds of this protocol's scheme and mode reaching ``target`` from ``f_raw``."""
        c = self._estimate(f_raw)
        base = c
        for k in range(self.max_rounds + 1):
            if c[0] + 1e-12 >= target:
                return k
            c = self._combine(c, base if self.mode == "pumping" else c)[0]
        return None

    def _combine(self, keep: tuple, sac: tuple) -> tuple[tuple, float]:
        if self.scheme == DEJMPS:
            out, p = dejmps(keep, sac)
            return tuple(out), p
        f, p = bbpssw(keep[0], sac[0])
        return self._estimate(f), p

    # ---------------------------------------------------------------- requests from above
    @on(CreateRequest)
    def _create(self, req: CreateRequest, now_ns: int) -> list:
        f_raw = self.raw_fidelity.get(req.remote)
        if f_raw is None or req.min_fidelity <= f_raw:
            return [Submit(req, to=self.lower)]           # no purification needed
        rounds = self.rounds_for(f_raw, req.min_fidelity)
        if rounds is None:
            return [Deliver(LinkErr(req.create_id or 0, req.remote, ErrorCode.LINK_UNSUPPORTED,
                                    f"purification cannot lift {f_raw} to {req.min_fidelity}",
                                    req.purpose_id))]
        s = _Session(req.remote, req.purpose_id, True, self.scheme, rounds, req.number,
                     self.mode, request=req)
        self.sessions[(req.remote, req.purpose_id)] = s
        setup = PurifySetup(req.purpose_id, self.scheme, rounds, req.number, req.min_fidelity)
        out: list = [SendMessage(req.remote, setup)]
        self._request_raw(s, out)
        return out

    def _request_raw(self, s: _Session, out: list) -> None:
        # Ask for raw pairs only when nothing is on its way and no round is
        # running: then whatever waits in the buffers cannot progress alone.
        if s.outstanding > 0 or s.busy > 0 or s.phase is _CLOSED:
            return
        if s.mode == "pumping":
            need = 1 if s.levels.get(1) else 2
        else:
            need = 2 if not s.pairs else 1
        s.outstanding = need
        raw = replace(s.request, number=need, min_fidelity=0.0)
        out.append(Submit(raw, to=self.lower))

    # ---------------------------------------------------------------- link layer
    @on(LinkOk)
    def _link_ok(self, ok: LinkOk, now_ns: int) -> list:
        s = self.sessions.get((ok.remote, ok.purpose_id))
        if s is None:
            return [Deliver(ok)]                           # pass-through
        out: list = []
        if s.phase is _CLOSED:
            self._free(ok, out)
            return out
        f = ok.goodness
        h = _Held(ok.ent_id.seq, ok, 0, self._estimate(f))
        s.pairs[h.seq] = h
        if not s.creator:
            # PurifyMeasure messages that waited for their pairs: try them again
            early, s.early = s.early, []
            for m in early:
                out.extend(self._on_measure(ok.remote, m, now_ns))
            return out
        s.outstanding = max(0, s.outstanding - 1)
        ops = []
        b = ok.bell_index
        if b & 2:
            ops.append(Gate("x", (ok.qubit,)))
        if b & 1:
            ops.append(Gate("z", (ok.qubit,)))
        self._chain(ops, _Ready(s, h), out)
        return out

    @on(LinkErr)
    def _link_err(self, ev: LinkErr, now_ns: int) -> list:
        return [Deliver(ev)]

    @on(LinkExpire)
    def _link_expire(self, ev: LinkExpire, now_ns: int) -> list:
        # A raw pair this protocol holds (waiting in a level, or in a round)
        # is its own to forget: the layer above never saw it. The link layer
        # has freed the qubit; a round using it fails on its operations.
        s = self.sessions.get((ev.remote, ev.purpose_id))
        h = s.pairs.get(ev.ent_id.seq) if s is not None else None
        if h is None or h.ok.ent_id != ev.ent_id:
            return [Deliver(ev)]                 # a pair delivered upward (or passed through)
        del s.pairs[h.seq]
        for lvl in s.levels.values():
            if h in lvl:
                lvl.remove(h)
        out: list = []
        if s.creator:
            self._request_raw(s, out)
        return out

    def _ready(self, s: _Session, h: _Held, out: list) -> None:
        """Creator: a pair is at level ``h.level``; combine it if it has a partner."""
        if h.level >= s.rounds:
            self._output(s, h, out)
            return
        lvl = s.levels.setdefault(h.level if s.mode == "recurrence" else (0 if h.level == 0 else 1),
                                  [])
        lvl.append(h)
        if s.mode == "recurrence":
            if len(lvl) < 2:
                self._request_raw(s, out)
                return
            keep, sac = lvl.pop(0), lvl.pop(0)
        else:
            kept = s.levels.get(1, [])
            base = s.levels.get(0, [])
            if not base:
                self._request_raw(s, out)
                return
            if kept:
                keep, sac = kept.pop(0), base.pop(0)
            elif len(base) >= 2:
                keep, sac = base.pop(0), base.pop(0)
            else:
                self._request_raw(s, out)
                return
        self._purify(s, keep, sac, out)

    def _purify(self, s: _Session, keep: _Held, sac: _Held, out: list) -> None:
        self.stats["rounds"] += 1
        s.busy += 1
        qk, qs = keep.ok.qubit, sac.ok.qubit
        ops: list = []
        if s.scheme == DEJMPS:
            ops += [Gate("rx", (qk,), (_HALF_PI,)), Gate("rx", (qs,), (_HALF_PI,))]
        ops += [Gate("cnot", (qk, qs)), Measure(qs, "Z")]
        self._release(sac.ok, out)
        self._chain(ops, _Measured(s, keep, sac), out)

    def _output(self, s: _Session, h: _Held, out: list) -> None:
        s.pairs.pop(h.seq, None)
        s.delivered += 1
        ok = replace(h.ok, bell_index=0, goodness=float(h.coeffs[0]),
                     pair_index=s.delivered - 1, request_done=s.delivered >= s.number)
        out.append(Deliver(ok))
        if s.delivered >= s.number:
            # done: free what is left over (both ends hold the same leftovers)
            s.phase = TRANSITIONS.next(s.phase, "done")
            for h2 in list(s.pairs.values()):
                self._free(h2.ok, out)
            s.pairs.clear()
            s.levels.clear()
        elif s.creator:
            self._request_raw(s, out)

    # ---------------------------------------------------------------- messages
    def _session_of(self, src: str, m: Any) -> _Session | None:
        """The session a message from ``src`` names (by its purpose id), or None."""
        return self.sessions.get((src, m.purpose_id))

    @on_message(PurifySetup)
    def _on_setup(self, src: str, m: PurifySetup, now_ns: int) -> list:
        self.sessions[(src, m.purpose_id)] = _Session(
            src, m.purpose_id, False, m.scheme, m.rounds, m.number)
        return []

    @on_message(PurifyReply)
    def _on_reply(self, src: str, m: PurifyReply, now_ns: int) -> list:
        s = self._session_of(src, m)
        rd = s.pending.pop(m.keep_seq, None) if s else None
        if rd is None:
            return [Fail(ErrorCode.NET_UNKNOWN_CIRCUIT, f"reply for unknown pair {m.keep_seq}")]
        out: list = []
        self._decide(s, rd.keep, rd.sac, rd.mine, rd.twirl, m.outcome, out)
        return out

    @on_message(PurifyMeasure)
    def _on_measure(self, src: str, m: PurifyMeasure, now_ns: int) -> list:
        s = self._session_of(src, m)
        if s is None:
            return [Fail(ErrorCode.NET_UNKNOWN_CIRCUIT, f"purification {m.purpose_id} unknown")]
        keep, sac = s.pairs.get(m.keep_seq), s.pairs.get(m.sac_seq)
        if keep is None or sac is None:
            s.early.append(m)                       # our halves' OKs are still to come
            return []
        qk, qs = keep.ok.qubit, sac.ok.qubit
        ops: list = []
        if s.scheme == DEJMPS:
            ops += [Gate("rx", (qk,), (-_HALF_PI,)), Gate("rx", (qs,), (-_HALF_PI,))]
        ops += [Gate("cnot", (qk, qs)), Measure(qs, "Z")]
        out: list = []
        self._release(sac.ok, out)
        self._chain(ops, _Answered(s, keep, sac, m), out)
        return out

    def _decide(self, s: _Session, keep: _Held, sac: _Held, mine: int, twirl: int,
                other: int, out: list) -> None:
        """Both outcomes known: keep (and maybe twirl) or discard."""
        s.pairs.pop(sac.seq, None)
        if s.creator:
            s.busy -= 1
        if mine != other:
            s.pairs.pop(keep.seq, None)
            self._free(keep.ok, out)
            if s.creator:
                self._request_raw(s, out)
            return
        self.stats["success"] += 1
        keep.coeffs = self._combine(keep.coeffs, sac.coeffs)[0]
        keep.level += 1
        ops = [Gate(n, (keep.ok.qubit,), p) for n, p in
               (twirl_ops(twirl, s.creator) if s.scheme == BBPSSW else [])]
        self._chain(ops, _Kept(s, keep), out)

    # ---------------------------------------------------------------- operations
    @on(OperationDone)
    def _op_done(self, ev: OperationDone, now_ns: int) -> list:
        ctx = self.take_op(ev.op_id)
        if ctx is None:
            return []
        if isinstance(ev.outcome, BaseException):
            return [Fail(ErrorCode.QUBIT_UNAVAILABLE, f"purification op failed: {ev.outcome}")]
        out: list = []
        if ctx.rest:
            out.append(self.start_op(ctx.rest[0], _Chain(ctx.rest[1:], ctx.then)))
        else:
            self._after(ctx.then, ev.outcome, out)
        return out

    def _after(self, then: Any, outcome: Any, out: list) -> None:
        """The operations before ``then`` are done (the last one's ``outcome``)."""
        kind = then.__class__
        s = then.session
        if kind is _Ready:
            self._ready(s, then.pair, out)
        elif kind is _Measured:
            keep, sac = then.keep, then.sac
            twirl = self.rng.randrange(24) if s.scheme == BBPSSW else 0
            s.pending[keep.seq] = _Round(keep, sac, int(outcome), twirl)
            out.append(SendMessage(s.peer, PurifyMeasure(s.purpose, keep.seq, sac.seq, keep.level,
                                                         int(outcome), twirl)))
        elif kind is _Answered:
            keep, sac, m = then.keep, then.sac, then.msg
            out.append(SendMessage(s.peer, PurifyReply(s.purpose, keep.seq, int(outcome))))
            self._decide(s, keep, sac, m.outcome, m.twirl, int(outcome), out)
        elif kind is _Kept:
            keep = then.pair
            if s.creator:
                self._ready(s, keep, out)
            elif keep.level >= s.rounds:
                self._output(s, keep, out)
