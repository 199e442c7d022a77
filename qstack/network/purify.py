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
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from qstack.core.errors import ErrorCode
from qstack.core.protocol import (
    Deliver, Fail, MessageReceived, OperationDone, Protocol, QuantumOp, SendMessage, Submit, on,
)
from qstack.link.service import CreateRequest, LinkErr, LinkExpire, LinkOk, Release
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
    pending: dict = field(default_factory=dict)  # keep_seq -> context waiting for the other end
    early: list = field(default_factory=list)    # receiver: PurifyMeasure before its pairs
    delivered: int = 0
    outstanding: int = 0
    busy: int = 0            # rounds in progress (creator)
    closed: bool = False     # all outputs delivered: late pairs are discarded


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
        self._ops: dict[int, tuple] = {}
        self._next_op = 1
        #: rounds attempted / succeeded (for tests)
        self.stats = {"rounds": 0, "success": 0}

    # ---------------------------------------------------------------- helpers
    def _op(self, op: Any, ctx: tuple) -> QuantumOp:
        i = self._next_op
        self._next_op += 1
        self._ops[i] = ctx
        return QuantumOp(i, op)

    def _release(self, ok: LinkOk) -> Submit:
        """Tell the link layer a raw pair is used up (no cut-off or expiry for it)."""
        return Submit(Release(ok.ent_id, ok.remote), to=self.lower)

    @on(Release)
    def _on_release(self, ev: Release, now_ns: int) -> list:
        # a passed-through or purified pair: both carry the link layer's ent_id
        return [Submit(ev, to=self.lower)]

    def _chain(self, ops: list, ctx: tuple) -> list:
        """Run ``ops`` one after the other; ``ctx`` is handled after the last."""
        if not ops:
            return self._after(ctx, None)
        return [self._op(ops[0], ("chain", ops[1:], ctx))]

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
        return [SendMessage(req.remote, setup)] + self._request_raw(s)

    def _request_raw(self, s: _Session) -> list:
        # Ask for raw pairs only when nothing is on its way and no round is
        # running: then whatever waits in the buffers cannot progress alone.
        if s.outstanding > 0 or s.busy > 0 or s.closed:
            return []
        if s.mode == "pumping":
            need = 1 if s.levels.get(1) else 2
        else:
            need = 2 if not s.pairs else 1
        s.outstanding = need
        raw = replace(s.request, number=need, min_fidelity=0.0)
        return [Submit(raw, to=self.lower)]

    # ---------------------------------------------------------------- link layer
    @on(LinkOk)
    def _link_ok(self, ok: LinkOk, now_ns: int) -> list:
        s = self.sessions.get((ok.remote, ok.purpose_id))
        if s is None:
            return [Deliver(ok)]                           # pass-through
        if s.closed:
            return [self._release(ok), QuantumOp(None, Discard(ok.qubit))]
        f = ok.goodness
        h = _Held(ok.ent_id.seq, ok, 0, self._estimate(f))
        s.pairs[h.seq] = h
        if not s.creator:
            acts: list = []
            early, s.early = s.early, []
            for m in early:
                acts += self._on_measure(ok.remote, m, now_ns)
            return acts
        s.outstanding = max(0, s.outstanding - 1)
        ops = []
        b = ok.bell_index
        if b & 2:
            ops.append(Gate("x", (ok.qubit,)))
        if b & 1:
            ops.append(Gate("z", (ok.qubit,)))
        return self._chain(ops, ("ready", s, h))

    @on(LinkErr, LinkExpire)
    def _link_other(self, ev: Any, now_ns: int) -> list:
        return [Deliver(ev)]

    def _ready(self, s: _Session, h: _Held) -> list:
        """Creator: a pair is at level ``h.level``; combine it if it has a partner."""
        if h.level >= s.rounds:
            return self._output(s, h)
        lvl = s.levels.setdefault(h.level if s.mode == "recurrence" else (0 if h.level == 0 else 1),
                                  [])
        lvl.append(h)
        if s.mode == "recurrence":
            if len(lvl) < 2:
                return self._request_raw(s)
            keep, sac = lvl.pop(0), lvl.pop(0)
        else:
            kept = s.levels.get(1, [])
            base = s.levels.get(0, [])
            if not base:
                return self._request_raw(s)
            if kept:
                keep, sac = kept.pop(0), base.pop(0)
            elif len(base) >= 2:
                keep, sac = base.pop(0), base.pop(0)
            else:
                return self._request_raw(s)
        return self._purify(s, keep, sac)

    def _purify(self, s: _Session, keep: _Held, sac: _Held) -> list:
        self.stats["rounds"] += 1
        s.busy += 1
        qk, qs = keep.ok.qubit, sac.ok.qubit
        ops: list = []
        if s.scheme == DEJMPS:
            ops += [Gate("rx", (qk,), (_HALF_PI,)), Gate("rx", (qs,), (_HALF_PI,))]
        ops += [Gate("cnot", (qk, qs)), Measure(qs, "Z")]
        return [self._release(sac.ok)] + self._chain(ops, ("measured", s, keep, sac))

    def _output(self, s: _Session, h: _Held) -> list:
        s.pairs.pop(h.seq, None)
        s.delivered += 1
        ok = replace(h.ok, bell_index=0, goodness=float(h.coeffs[0]),
                     pair_index=s.delivered - 1, request_done=s.delivered >= s.number)
        acts: list = [Deliver(ok)]
        if s.delivered >= s.number:
            # done: free what is left over (both ends hold the same leftovers)
            s.closed = True
            for h2 in list(s.pairs.values()):
                acts.append(self._release(h2.ok))
                acts.append(QuantumOp(None, Discard(h2.ok.qubit)))
            s.pairs.clear()
            s.levels.clear()
        elif s.creator:
            acts += self._request_raw(s)
        return acts

    # ---------------------------------------------------------------- messages
    @on(MessageReceived)
    def _message(self, ev: MessageReceived, now_ns: int) -> list:
        m = ev.msg
        if isinstance(m, PurifySetup):
            self.sessions[(ev.src, m.purpose_id)] = _Session(
                ev.src, m.purpose_id, False, m.scheme, m.rounds, m.number)
            return []
        if isinstance(m, PurifyMeasure):
            return self._on_measure(ev.src, m, now_ns)
        if isinstance(m, PurifyReply):
            s = self.sessions.get((ev.src, m.purpose_id))
            ctx = s.pending.pop(m.keep_seq, None) if s else None
            if ctx is None:
                return [Fail(ErrorCode.NET_UNKNOWN_CIRCUIT, f"reply for unknown pair {m.keep_seq}")]
            return self._decide(s, *ctx, other=m.outcome)
        return [Fail(ErrorCode.UNKNOWN_TYPE, f"network.purify got {type(m).__name__}")]

    def _on_measure(self, src: str, m: PurifyMeasure, now_ns: int) -> list:
        s = self.sessions.get((src, m.purpose_id))
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
        return [self._release(sac.ok)] + self._chain(ops, ("r_measured", s, keep, sac, m))

    def _decide(self, s: _Session, keep: _Held, sac: _Held, mine: int, twirl: int,
                other: int) -> list:
        """Both outcomes known: keep (and maybe twirl) or discard."""
        s.pairs.pop(sac.seq, None)
        if s.creator:
            s.busy -= 1
        if mine != other:
            s.pairs.pop(keep.seq, None)
            acts = [self._release(keep.ok), QuantumOp(None, Discard(keep.ok.qubit))]
            if s.creator:
                acts += self._request_raw(s)
            return acts
        self.stats["success"] += 1
        keep.coeffs = self._combine(keep.coeffs, sac.coeffs)[0]
        keep.level += 1
        ops = [Gate(n, (keep.ok.qubit,), p) for n, p in
               (twirl_ops(twirl, s.creator) if s.scheme == BBPSSW else [])]
        return self._chain(ops, ("kept", s, keep))

    # ---------------------------------------------------------------- operations
    @on(OperationDone)
    def _op_done(self, ev: OperationDone, now_ns: int) -> list:
        ctx = self._ops.pop(ev.op_id, None)
        if ctx is None:
            return []
        if isinstance(ev.outcome, BaseException):
            return [Fail(ErrorCode.QUBIT_UNAVAILABLE, f"purification op failed: {ev.outcome}")]
        if ctx[0] == "chain":
            _, rest, after = ctx
            if rest:
                return [self._op(rest[0], ("chain", rest[1:], after))]
            return self._after(after, ev.outcome)
        return []

    def _after(self, ctx: tuple, outcome: Any) -> list:
        kind = ctx[0]
        if kind == "ready":
            return self._ready(ctx[1], ctx[2])
        if kind == "measured":
            _, s, keep, sac = ctx
            twirl = self.rng.randrange(24) if s.scheme == BBPSSW else 0
            s.pending[keep.seq] = (keep, sac, int(outcome), twirl)
            return [SendMessage(s.peer, PurifyMeasure(s.purpose, keep.seq, sac.seq, keep.level,
                                                      int(outcome), twirl))]
        if kind == "r_measured":
            _, s, keep, sac, m = ctx
            reply = SendMessage(s.peer, PurifyReply(s.purpose, keep.seq, int(outcome)))
            return [reply] + self._decide(s, keep, sac, m.outcome, m.twirl, other=int(outcome))
        if kind == "kept":
            _, s, keep = ctx
            if s.creator:
                return self._ready(s, keep)
            if keep.level >= s.rounds:
                return self._output(s, keep)
            return []
        return []
