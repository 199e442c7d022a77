"""An ideal network layer, ``network.ideal``: end-to-end pairs on request, no repeaters.

For developing and testing what sits above the network layer (the transport,
applications) fast: a request for pairs with node ``D`` is served by a
*virtual link* between the two nodes, heralding Werner pairs of a given
fidelity (in a uniformly random Bell state, so that the Pauli-frame handling
above is exercised) after a random wait, as a repeater chain would, but
without its cost. It offers the network layer's service unchanged
(``NetRequest`` / ``NetCancel`` in; ``NetOk`` / ``NetErr`` / ``NetExpire``
out, ``specs/network.md`` §1) and is a sans-I/O protocol like every other,
built the way the link layer's EGP is:

* the requesting end (the **head**) tells the other end (the **tail**) of
  the request (:class:`~qstack.network.messages.IdealOpen`) and submits one
  ``Entangle`` per pair, keyed ``("ideal", head, request_id, index)``, to the
  virtual link (the driver's heralding station between the two nodes: a
  :class:`~qstack.physical.pair_model.SimplePairModel` whose herald comes
  one classical delay after the pair is made, at both ends);
* the tail keeps one following ``Entangle`` (key ``None``) outstanding per
  open request; its herald names the pair; both ends deliver ``NetOk`` with
  the pair id ``(head, request_id, index)`` and the pair's Bell index;
* a request with ``max_time_ns`` ends at its deadline (``NET_TIMEOUT``), a
  ``NetCancel`` at once; the other end is told (:class:`IdealClose`). A
  memory kept full is retried after a back-off;
* :class:`ExpirePair` (a request from above, or from a test) makes a held
  pair expire at both ends (``NetExpire``), each end after its ``NetOk``.

``refuse``, a callable ``(NetRequest) -> ErrorCode | None``, injects errors
(a test's way to have the network refuse a request with a chosen code).
Times in nanoseconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from qstack.core.errors import ErrorCode, error_code
from qstack.core.protocol import (
    CancelTimer, Deliver, LinkDown, OperationDone, PeerDown, PeerUp, Protocol, QuantumOp,
    SendMessage, StartTimer, TimerFired, Undeliverable, on, on_message,
)
from qstack.physical.ops import CancelEntangle, Discard, Entangle

from .messages import IdealClose, IdealExpire, IdealOpen
from .service import NetCancel, NetErr, NetExpire, NetOk, NetRequest, NetRequestType, PairId

__all__ = ["IdealNetProtocol", "ExpirePair", "NAME"]

NAME = "network.ideal"
_NEVER = 1 << 62


@dataclass(frozen=True, slots=True)
class ExpirePair:
    """A request to the ideal network layer: pair ``pair_id`` is lost (a test's
    fault): both ends free their half and deliver ``NetExpire``."""

    pair_id: PairId
    reason: str = "expired"


class _Open:
    """A request this node is an end of."""

    __slots__ = ("head", "tail", "rid", "number", "app_tag", "made", "req", "op_id", "retries",
                 "head_end", "deadline")

    def __init__(self, head: str, tail: str, rid: int, number: int, app_tag: int,
                 req: NetRequest | None, deadline: int) -> None:
        self.head, self.tail, self.rid = head, tail, rid
        self.number, self.app_tag, self.req = number, app_tag, req
        self.made = 0
        self.op_id: int | None = None
        self.retries = 0
        self.head_end = req is not None
        self.deadline = deadline

    @property
    def remote(self) -> str:
        return self.tail if self.head_end else self.head


class _Follow:
    """The tail's following Entangle towards ``head`` (an op context)."""

    __slots__ = ("head",)

    def __init__(self, head: str) -> None:
        self.head = head


class IdealNetProtocol(Protocol):
    """The ideal network layer on ``node`` (see the module doc).

    ``fidelity``: the Werner fidelity the virtual links give (what ``NetOk``
    reports; the driver's virtual link makes the state). ``refuse``: error
    injection, see the module doc. ``retry_ns``: the wait after a full memory.
    """

    name = NAME

    def __init__(self, node: str, fidelity: float = 1.0,
                 refuse: Callable[[NetRequest], Any] | None = None,
                 retry_ns: int = 100_000) -> None:
        super().__init__(node)
        self.fidelity = float(fidelity)
        self.refuse = refuse
        self.retry_ns = int(retry_ns)
        self.opens: dict[tuple[str, int], _Open] = {}       # (head, rid) -> request
        self.held: dict[tuple, tuple] = {}   # pair key -> (this end's qubit, the other end)
        self._orphans: dict[tuple[str, int], list] = {}       # tail: heralds before IdealOpen
        self._doomed: set = set()                            # expired before their herald
        self._following: dict[str, int] = {}     # tail: head -> its following Entangle op
        self._next_rid = 1

    # ------------------------------------------------------------ requests
    @on(NetRequest)
    def _request(self, req: NetRequest, now_ns: int) -> list:
        rid = req.request_id if req.request_id is not None else self._next_rid
        self._next_rid = max(self._next_rid, rid) + 1
        code = self.refuse(req) if self.refuse is not None else None
        if code is None and req.destination == self.node:
            code, detail = ErrorCode.NET_NO_ROUTE, "destination is this node"
        else:
            detail = "refused (injected)"
        if code is None and (self.node, rid) in self.opens:
            code, detail = ErrorCode.NET_REJECTED, f"request id {rid} in use"
        if code is None and req.type == NetRequestType.MEASURE_DIRECTLY:
            # (its virtual link delivers kept pairs: the transport would get a
            # qubit where it asked for an outcome)
            code, detail = (ErrorCode.NET_REJECTED,
                            "the ideal network layer has no measure-directly service")
        if code is not None:
            return [Deliver(NetErr(rid, req.destination, ErrorCode(code), detail, req.app_tag))]
        deadline = now_ns + req.max_time_ns if req.max_time_ns else _NEVER
        o = self.opens[(self.node, rid)] = _Open(self.node, req.destination, rid, req.number,
                                                 req.app_tag, req, deadline)
        out: list = [SendMessage(req.destination, IdealOpen(rid, req.number, req.app_tag))]
        self._attempt(o, out)
        return out

    @on(NetCancel)
    def _cancel(self, ev: NetCancel, now_ns: int) -> list:
        o = self.opens.get((self.node, ev.request_id))
        if o is None:
            return []
        out: list = []
        self._end(o, ErrorCode.NET_CIRCUIT_TORN_DOWN, "cancelled", out, tell=True)
        return out

    @on(ExpirePair)
    def _expire_request(self, ev: ExpirePair, now_ns: int) -> list:
        key = (ev.pair_id.head, ev.pair_id.circuit_id, ev.pair_id.seq)
        out: list = []
        other = self._expire(key, ev.reason, out)
        if other is None:         # not heralded here yet: the request names the other end
            o = self.opens.get(key[:2])
            other = o.remote if o is not None else None
        if other is not None:
            out.append(SendMessage(other, IdealExpire(ev.pair_id.head, ev.pair_id.circuit_id,
                                                      ev.pair_id.seq, ev.reason[:64])))
        return out

    # ------------------------------------------------------------ pairs
    def _attempt(self, o: _Open, out: list) -> None:
        """The head: submit the Entangle for ``o``'s next pair, keyed."""
        qop = self.start_op(Entangle(o.tail, ("ideal", o.head, o.rid, o.made), o.deadline, 0.0,
                                     virtual=True), o)
        o.op_id = qop.op_id
        out.append(qop)

    def _follow(self, head: str, out: list) -> None:
        """The tail: keep one following Entangle towards ``head`` while any of
        its requests to this node wants pairs (or pairs came before their
        IdealOpen), none otherwise (as the link layer's follower does)."""
        wanted = any(o.head == head and not o.head_end for o in self.opens.values()) or \
            any(h == head for h, _ in self._orphans)
        op_id = self._following.get(head)
        if wanted and op_id is None:
            qop = self.start_op(Entangle(head, None, _NEVER, 0.0, virtual=True), _Follow(head))
            self._following[head] = qop.op_id
            out.append(qop)
        elif not wanted and op_id is not None:
            self.take_op(op_id)
            del self._following[head]
            out.append(QuantumOp(None, CancelEntangle(head, None, virtual=True)))

    @on(OperationDone)
    def _done(self, ev: OperationDone, now_ns: int) -> list | None:
        ctx = self.take_op(ev.op_id)
        if ctx is None:
            return None
        h = ev.outcome
        ok = h is not None and getattr(h, "ok", False)
        reason = getattr(h, "reason", "no outcome")
        out: list = []
        if ctx.__class__ is _Follow:
            head = ctx.head
            self._following.pop(head, None)
            if ok:
                _, hd, rid, seq = h.key
                target = self.opens.get((hd, rid))
                if target is None:
                    # the head's IdealOpen for it is still on its way: the pair waits
                    self._orphans.setdefault((hd, rid), []).append((seq, h, now_ns))
                else:
                    self._deliver(target, seq, h, now_ns, out)
            elif reason == "memory full":
                out.append(StartTimer(("ideal.follow", head), self.retry_ns))
                self._following[head] = -1        # (a retry is pending)
                return out
            self._follow(head, out)
            return out
        o = ctx
        o.op_id = None
        if ok:
            self._deliver(o, o.made, h, now_ns, out)
            if (o.head, o.rid) in self.opens:
                self._attempt(o, out)
            return out
        if reason == "memory full":
            o.retries += 1
            out.append(StartTimer(("ideal.retry", o.head, o.rid),
                                  min(self.retry_ns << min(o.retries - 1, 10), 10**9)))
        elif reason != "cancelled" and (o.head, o.rid) in self.opens:
            code = ErrorCode.NET_TIMEOUT if reason in ("deadline", "peer absent") \
                else ErrorCode.NET_CIRCUIT_TORN_DOWN
            self._end(o, code, f"{o.made} of {o.number} pairs ({reason})", out, tell=True)
        return out

    def _deliver(self, o: _Open, seq: int, h: Any, now_ns: int, out: list) -> None:
        o.retries = 0
        o.made += 1
        done = o.made >= o.number
        pkey = (o.head, o.rid, seq)
        if pkey in self._doomed:      # it expired before its herald came here
            self._doomed.discard(pkey)
            out.append(QuantumOp(None, Discard(h.qubit)))
        else:
            self.held[pkey] = (h.qubit, o.remote)
            out.append(Deliver(NetOk(o.rid, PairId(o.head, o.rid, seq), o.remote, h.bell_index,
                                     self.fidelity, h.emitted_ns, qubit=h.qubit,
                                     app_tag=o.app_tag, pair_index=seq, request_done=done,
                                     initiator=o.head_end, path=(o.head, o.tail))))
        if done:
            self.opens.pop((o.head, o.rid), None)
            if not o.head_end:
                self._follow(o.head, out)

    def _end(self, o: _Open, code: ErrorCode, detail: str, out: list, tell: bool) -> None:
        """End request ``o`` here (an error at the head), tell the other end."""
        if self.opens.pop((o.head, o.rid), None) is None:
            return
        if self._doomed:          # no herald of this request is coming any more
            self._doomed = {k for k in self._doomed if k[:2] != (o.head, o.rid)}
        if o.head_end:
            if o.op_id is not None:
                self.take_op(o.op_id)
                out.append(QuantumOp(None, CancelEntangle(o.tail, ("ideal", o.head, o.rid, o.made),
                                                          virtual=True)))
                o.op_id = None
            out.append(CancelTimer(("ideal.retry", o.head, o.rid)))
            out.append(Deliver(NetErr(o.rid, o.tail, code, detail, o.app_tag)))
        else:
            self._follow(o.head, out)
        if tell:
            out.append(SendMessage(o.remote, IdealClose(o.head, o.rid, int(code))))

    def _expire(self, key: tuple, reason: str, out: list) -> str | None:
        """Free this end's half of pair ``key`` and say so (``NetExpire``); the
        other end's name, or None if this end does not hold it (yet: then its
        herald, when it comes, is discarded at once)."""
        held = self.held.pop(key, None)
        if held is None:
            if key[:2] in self.opens:         # (a pair of no open request never comes)
                self._doomed.add(key)
            return None
        qubit, remote = held
        out.append(QuantumOp(None, Discard(qubit)))
        out.append(Deliver(NetExpire(PairId(*key), remote, reason)))
        return remote

    # ------------------------------------------------------------ messages
    @on_message(IdealOpen)
    def _on_open(self, src: str, m: IdealOpen, now_ns: int) -> list:
        out: list = []
        if (src, m.request_id) in self.opens:
            return out
        o = self.opens[(src, m.request_id)] = _Open(src, self.node, m.request_id, m.number,
                                                    m.app_tag, None, _NEVER)
        for seq, h, t in sorted(self._orphans.pop((src, m.request_id), ()),
                                key=lambda e: e[0]):
            self._deliver(o, seq, h, now_ns, out)
        self._follow(src, out)
        return out

    @on_message(IdealClose)
    def _on_close(self, src: str, m: IdealClose, now_ns: int) -> list:
        out: list = []
        o = self.opens.get((m.head, m.request_id))
        if o is not None and o.remote == src:
            self._end(o, error_code(m.code, ErrorCode.NET_CIRCUIT_TORN_DOWN), f"ended by {src}", out, tell=False)
        for _seq, h, _t in self._orphans.pop((m.head, m.request_id), ()):
            out.append(QuantumOp(None, Discard(h.qubit)))
        return out

    @on_message(IdealExpire)
    def _on_expire(self, src: str, m: IdealExpire, now_ns: int) -> list:
        out: list = []
        self._expire((m.head, m.request_id, m.seq), m.reason, out)
        return out

    # ------------------------------------------------------------ timers, faults
    @on(TimerFired)
    def _timer(self, ev: TimerFired, now_ns: int) -> list:
        out: list = []
        if ev.key[0] == "ideal.follow":
            head = ev.key[1]
            if self._following.get(head) == -1:
                del self._following[head]
                self._follow(head, out)
            return out
        _, head, rid = ev.key
        o = self.opens.get((head, rid))
        if o is not None and o.op_id is None:
            self._attempt(o, out)
        return out

    @on(PeerDown)
    def _peer_down(self, ev: PeerDown, now_ns: int) -> list:
        out: list = []
        if ev.peer == self.node:
            self.opens.clear()
            self.held.clear()
            self._orphans.clear()
            self._doomed.clear()
            self._following.clear()
            self._ops.clear()
            return out
        for o in [o for o in self.opens.values() if o.remote == ev.peer]:
            self._end(o, ErrorCode.NET_CIRCUIT_TORN_DOWN, f"the session with {ev.peer} broke",
                      out, tell=False)
        return out

    @on(Undeliverable)
    def _undeliverable(self, ev: Undeliverable, now_ns: int) -> list:
        out: list = []
        m = ev.msg
        if isinstance(m, IdealOpen):
            o = self.opens.get((self.node, m.request_id))
            if o is not None:
                self._end(o, ErrorCode.NET_NO_ROUTE, f"cannot reach {ev.dst}: {ev.detail}", out,
                          tell=False)
        return out
