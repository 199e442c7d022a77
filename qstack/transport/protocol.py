"""The teleportation transport protocol (sans-I/O), ``transport.qtp``.

One instance per node, on top of the network layer's end-to-end protocol.
It multiplexes connections by port and carries three kinds of items over
each direction of a connection, delivered in the order they were sent,
**exactly once or reported lost with a code**: teleported qubits, EPR pairs
and classical byte messages. ``specs/transport.md`` is the normative
description; in short:

* **Sending a qubit.** The request joins the connection's queue; the
  connection asks the network layer for the end-to-end pairs its queue needs
  within the receiver's window; when the item reaches the head, a pair is held
  and the window allows, the protocol Bell-measures (the qubit, its half) --
  only then is the qubit committed -- and sends a
  :class:`~qstack.transport.messages.QubitHeader`. The send is done when the
  receiver acknowledges the item (:class:`~qstack.transport.messages.Ack`);
  an item that cannot be had a pair in time fails with ``TRANSPORT_NO_PAIR``
  and the qubit is handed back untouched.
* **Receiving.** End-to-end pairs the far end asked for arrive as ``NetOk``
  and headers as messages, in either order; each waits under the pair id for
  its partner (``bind_timeout_ns`` at most). Bound, the receiver applies
  ``X^x Z^z`` to its half and delivers in sequence order; each item delivered
  (or found lost) is acknowledged with its code.
* **Flow control.** A receiver lets the sender send only as many items as its
  window (``window`` items per connection, counted until the application takes
  them): a connection not yet accepted by the application gets none, so
  nothing is asked of the network, and no memory held, for connections nobody
  serves (``listen``'s backlog bounds how many may wait).
* **Faults.** Sent items stay until acknowledged: when the session with the
  far end breaks (``PeerDown``) the connection waits, and when it is back
  (``PeerUp``) it sends them again (the receiver drops duplicates by sequence
  number and acknowledges them again). A far end that restarted
  (``PeerUp(restarted=True)``) or stays away longer than ``peer_timeout_ns``
  ends the connection with ``TRANSPORT_RESET``: items not acknowledged are
  reported lost with that code, items not yet measured are handed back.

States of a connection end (:class:`Phase`): ``SYN_SENT``, ``PENDING``
(opened by a peer, not yet accepted here), ``OPEN``, ``PEER_CLOSED`` (the far
end closed: nothing more can be sent), ``CLOSING`` (closed here: what was
sent is still acknowledged, then ``Fin``); the transitions are in
``TRANSITIONS``, one table.
"""
from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from qstack.core.errors import ErrorCode, QStackError, error_code
from qstack.core.protocol import (
    Action, CancelTimer, Deliver, Fail, OperationDone, PeerDown, PeerUp, Protocol, SendMessage,
    StartTimer, Submit, TimerFired, Undeliverable, on, on_message,
)
from qstack.core.states import State, Transitions
from qstack.network.service import (
    NetCancel, NetErr, NetExpire, NetOk, NetRequest, NetRequestType, NetTopUp,
)
from qstack.physical.ops import BellMeasure, Discard, Gate
from qstack.transport import service as svc
from qstack.transport.messages import (
    PROTOCOL, Ack, Data, EprHeader, Fin, MeasuredHeader, PairRelease, QubitHeader, Rst, Syn,
    SynAck, Window,
)

__all__ = ["TeleportTransport", "pair_key", "correction_gate", "EPHEMERAL_PORTS", "Phase",
           "TRANSITIONS"]

#: How long a connection keeps its standing network request open with no
#: pair wanted (ns): longer than the usual pause between an application's
#: sends, so a busy connection keeps one circuit; short enough that an idle
#: one soon stops holding a circuit (and a repeater's memory share).
STANDING_IDLE_NS = 10_000_000

#: The longest a receiver holds a cumulative acknowledgement (ns) while it
#: expects more items of the connection (specs/transport.md §5): a safety
#: bound, for an expected item that does not come (a pair released, a
#: header lost); a burst's last item is acknowledged at once.
ACK_DELAY_NS = 1_000_000

#: Ports a connecting socket is given when it names none (as in TCP/IP).
EPHEMERAL_PORTS = range(49152, 65536)

#: The gate that applies X^x Z^z for the mask (x << 1) | z, up to a global
#: phase (Z X = iY).
_CORRECTION = (None, "z", "x", "y")

#: Network errors after which asking again cannot help.
_PERMANENT = frozenset({ErrorCode.NET_NO_ROUTE, ErrorCode.NET_UNREACHABLE_FIDELITY,
                        ErrorCode.NET_REJECTED})


class Phase(State):
    """The state of one connection end."""

    SYN_SENT = "syn_sent"        # Syn sent, no SynAck yet
    PENDING = "pending"          # opened by the peer, not yet accepted by the application
    OPEN = "open"
    PEER_CLOSED = "peer_closed"  # the far end closed (Fin): it takes nothing more
    CLOSING = "closing"          # closed here: sent items still to be acknowledged


_SYN_SENT, _PENDING, _OPEN, _PEER_CLOSED, _CLOSING = (
    Phase.SYN_SENT, Phase.PENDING, Phase.OPEN, Phase.PEER_CLOSED, Phase.CLOSING)

#: Every allowed change of a connection's phase, by what causes it (a
#: connection ends, from any phase, by being forgotten: not listed). Any other
#: change is a bug and raises.
TRANSITIONS = Transitions("connection", {
    (_SYN_SENT, "SynAck"): _OPEN,
    (_PENDING, "Accept"): _OPEN,
    (_OPEN, "Fin"): _PEER_CLOSED,
    (_PENDING, "Fin"): _PEER_CLOSED,
    (_OPEN, "Close"): _CLOSING,
    (_PENDING, "Close"): _CLOSING,
    (_PEER_CLOSED, "Close"): _CLOSING,
    (_CLOSING, "Fin"): _CLOSING,
})



def pair_key(pair_id: Any) -> tuple:
    """The wire form ``(head, circuit_id, seq)`` of a network ``PairId``."""
    if isinstance(pair_id, tuple):
        return pair_id
    return (pair_id.head, int(pair_id.circuit_id), int(pair_id.seq))


def correction_gate(bsm_index: int, bell_index: int) -> str | None:
    """The receiver's correction after a teleportation: the Bell-measurement
    outcome ``bsm_index`` and the pair's ``bell_index`` (both ``(x << 1) | z``)
    combine by XOR into the Pauli the receiver's half carries."""
    return _CORRECTION[(bsm_index ^ bell_index) & 3]


class _Recent:
    """Pair ids remembered for a bounded time: an entry counts until the time
    given when it was added (after that it is as if it had never been added),
    or until :meth:`take` consumes it. :meth:`prune` forgets the entries whose
    time is up. The transport gives every entry the same lifetime
    (``bind_timeout_ns``), so entries sit in the order of their deadlines and
    the set holds at most the ids added within the last lifetime."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until: dict[tuple, int] = {}

    def add(self, pid: tuple, until_ns: int) -> None:
        self._until.pop(pid, None)          # re-adding restarts its time, at the end
        self._until[pid] = until_ns

    def take(self, pid: tuple, now_ns: int) -> bool:
        """Whether ``pid`` is remembered at ``now_ns``; it is forgotten either way."""
        until = self._until.pop(pid, None)
        return until is not None and now_ns < until

    def prune(self, now_ns: int) -> None:
        until = self._until
        while until:
            pid = next(iter(until))
            if until[pid] > now_ns:
                break
            del until[pid]

    def clear(self) -> None:
        self._until.clear()

    def __contains__(self, pid: object) -> bool:
        return pid in self._until

    def __len__(self) -> int:
        return len(self._until)

    def __iter__(self):
        return iter(self._until)


#: The kind of item each header announces.
_HEADER_KIND = {QubitHeader: "qubit", EprHeader: "epr", MeasuredHeader: "measured"}


@dataclass(slots=True)
class _Pair:
    """An end-to-end pair this node holds one half of."""

    pid: tuple
    qubit: Any
    bell_index: int
    fidelity: float
    remote: str
    expired: bool = False
    tag: int = 0               # the far end's port (NetOk.app_tag), for a pair it asked for
    # a measure-directly pair (no qubit): this end's setting and outcome, and
    # the basis set it was measured from
    setting: int = -1
    outcome: int | None = None
    bases: str = ""


@dataclass(slots=True)
class _Op:
    """A send request: waiting in a connection's queue, then (qubits and EPR
    pairs) waiting for the far end's acknowledgements."""

    kind: str                  # "qubit", "epr", "measured" or "data"
    token: int
    started_ns: int
    need: int = 0              # pairs still wanted
    deadline_ns: int | None = None
    min_fidelity: float = 0.0
    qubit: Any = None
    metadata: bytes = b""
    data: bytes = b""
    number: int = 0
    made: int = 0              # items of it sent
    acked: int = 0             # ... acknowledged as delivered
    value: Any = None          # what Done will carry
    ended: bool = False        # answered (Done or Failed)
    bases: str = ""            # "measured": the basis set


@dataclass(slots=True)
class _Rx:
    """An item received (by header or data message), waiting for its turn."""

    kind: str                  # "qubit", "epr", "measured", "data"
    msg: Any
    ready: bool = False
    qubit: Any = None
    measured: tuple | None = None   # "measured": (setting, outcome)
    fidelity: float = 0.0
    code: ErrorCode | None = None
    detail: str = ""


@dataclass(slots=True)
class _ConnState:
    conn: svc.Conn
    phase: Phase
    connect_token: int | None = None
    # sending
    tx_seq: int = 0            # the next item's sequence number
    tx_limit: int = 0          # the far end takes items below this
    queue: deque = field(default_factory=deque)   # _Op not (fully) sent
    pool: deque = field(default_factory=deque)    # pairs held for the queue
    expected: int = 0          # pairs still to come from requests in flight
    busy: bool = False         # a Bell measurement of the head item is in flight
    md_pool: deque = field(default_factory=deque)  # measure-directly pairs held for the queue
    md_expected: dict = field(default_factory=dict)  # basis set -> such pairs still to come
    retry_pending: bool = False
    standing: int | None = None    # the id of its standing network request, if one is open
    standing_fidelity: float = 0.0  # ... and the fidelity it asks for
    idle_since: int | None = None   # since when the standing request has had nothing to do
    idle_timer: bool = False        # an ("idle", conn) timer is pending
    unacked: dict = field(default_factory=dict)   # seq -> (message, _Op | None)
    # receiving
    rx_next: int = 0           # every item below is delivered (or lost)
    rx_seen: int = 0           # one more than the highest item received
    rx_items: dict = field(default_factory=dict)
    rx_lost: dict = field(default_factory=dict)   # seq -> code of delivered losses (re-acks)
    rx_fin: int | None = None
    rx_consumed: int = 0       # items the application took
    rx_window: int = 0         # items it may hold (0 until accepted)
    rx_advertised: int = 0     # the last limit told to the far end
    ack_seq: int = -1          # the highest item delivered and not yet acknowledged ...
    ack_count: int = 0         # ... and how many such items (one cumulative Ack settles them)
    ack_timer: bool = False    # an ("ack", conn) timer is pending
    peer_closed: bool = False  # PeerClosed delivered
    suspended: bool = False    # the session with the far end is down


# ---------------------------------------------------------------- pending operations
# (what the answer of each QuantumOp the transport asks for is to do)

class _Discarding:
    """A ``Discard``: its answer changes nothing."""

    __slots__ = ()


_DISCARD = _Discarding()


class _Measuring:
    """The Bell measurement of a connection's head item (``op``, a qubit) with
    its pair's half: the answer sends its header."""

    __slots__ = ("conn", "op", "pair")

    def __init__(self, conn: svc.Conn, op: _Op, pair: _Pair) -> None:
        self.conn, self.op, self.pair = conn, op, pair


class _Correcting:
    """The Pauli correction of a received item (``seq`` of ``conn``): the
    answer makes it ready for delivery."""

    __slots__ = ("conn", "seq")

    def __init__(self, conn: svc.Conn, seq: int) -> None:
        self.conn, self.seq = conn, seq


class TeleportTransport(Protocol):
    """The transport protocol of one node.

    ``network`` names the protocol below that serves ``NetRequest`` (default:
    the one under this in the stack). ``bind_timeout_ns``: how long a pair or
    a header waits for its partner before it is dropped. ``retry_ns``: pause
    before asking the network again after it failed a request. ``window``:
    items the application of a connection may have received and not yet taken
    (the receive window). ``peer_timeout_ns``: how long a connection waits
    for a broken session with its far end to come back before it ends with
    ``TRANSPORT_RESET``. ``standing_idle_ns``: if not None, a connection asks
    for its pairs in one standing network request (``NetRequest(standing=True)``,
    topped up with ``NetTopUp``; the network layer below must serve them), which
    it cancels once it has wanted no pair for this long; None: one request per
    top-up (specs/transport.md §4). ``ack_delay_ns``: if not None, EPR
    items delivered while more of the connection are expected are acknowledged
    together, by one cumulative ``Ack``, at most this long after the first
    (specs/transport.md §5); None: each at once. Times in nanoseconds.
    """

    name = PROTOCOL

    def __init__(self, node: str, network: str | None = None,
                 bind_timeout_ns: int = 10_000_000_000, retry_ns: int = 100_000,
                 window: int = 4, peer_timeout_ns: int = 1_000_000_000,
                 standing_idle_ns: int | None = None, ack_delay_ns: int | None = None) -> None:
        super().__init__(node)
        self.network = network
        self.bind_timeout_ns = int(bind_timeout_ns)
        self.retry_ns = int(retry_ns)
        self.window = max(1, int(window))
        self.peer_timeout_ns = int(peer_timeout_ns)
        self.standing_idle_ns = None if standing_idle_ns is None else int(standing_idle_ns)
        self.ack_delay_ns = None if ack_delay_ns is None else int(ack_delay_ns)
        #: held acknowledgements go out once this many items wait for one
        self.ack_every = max(1, self.window // 2)
        self.conns: dict[svc.Conn, _ConnState] = {}
        self.listening: dict[int, int] = {}         # port -> backlog
        self.requests: dict[int, tuple[svc.Conn, int]] = {}   # request id -> (conn, remaining)
        self._md_requests: dict[int, str] = {}   # measure-directly request id -> basis set
        self.remote_pairs: dict[tuple, _Pair] = {}             # unbound, far-end initiated
        self._coming: dict[tuple, int] = {}   # (remote, its port) -> such pairs (items to come)
        self.headers: dict[tuple, tuple[svc.Conn, int]] = {}   # unbound headers -> (conn, seq)
        # Pair ids remembered for bind_timeout_ns at most (specs/transport.md §5):
        self.released = _Recent()   # told to drop before arrival
        self.expired = _Recent()    # expired before bound to a header
        self.peers_down: set[str] = set()
        self._next_port = EPHEMERAL_PORTS.start
        # Request ids are tagged with a hash of the node name: the far end of a
        # circuit reports NetErr with the initiator's id, which must not be
        # taken for one of ours.
        self._req_base = (zlib.crc32(node.encode()) & 0x7FFF) << 16
        self._next_req = 0
        self.stats = {
            "qubits_sent": 0, "qubits_received": 0, "epr_created": 0, "epr_received": 0,
            "bytes_sent": 0, "bytes_received": 0, "pairs_requested": 0, "pairs_used": 0,
            "pairs_released": 0, "pairs_expired": 0, "send_failures": 0, "lost": 0,
            "net_errors": 0, "qubits_lost": 0, "retransmitted": 0,
        }
        #: (kind, latency_ns, fidelity estimate) of every item delivered here.
        self.deliveries: list[tuple[str, int, float]] = []

    # ------------------------------------------------------------ plumbing
    @staticmethod
    def _fail_token(token: int, code: ErrorCode, detail: str, qubit: Any, out: list) -> None:
        """Answer the request ``token`` with ``Failed`` (handing ``qubit`` back)."""
        out.append(Deliver(svc.Failed(token, code, detail, qubit)))

    @staticmethod
    def _move(st: _ConnState, cause: str) -> None:
        st.phase = TRANSITIONS.next(st.phase, cause)

    def handle(self, event: Any, now_ns: int) -> list[Action]:
        if self.expired._until:            # (dict truthiness: no Python call per event)
            self.expired.prune(now_ns)
        if self.released._until:
            self.released.prune(now_ns)
        return super().handle(event, now_ns)

    def _checked(self, req: Any, now_ns: int, out: list) -> Any:
        """``req`` with its arguments checked (:func:`svc.check_request`), or
        None after answering a bad one with ``Failed``: a request that
        bypassed the socket API's checks changes nothing and raises nothing."""
        try:
            return svc.check_request(req, now_ns)
        except QStackError as err:     # (a qubit sent is handed back)
            self._fail_token(req.token, err.code, err.detail, getattr(req, "qubit", None), out)
            return None

    # ------------------------------------------------------------ requests from above
    @on(svc.Listen)
    def _listen(self, req: svc.Listen, now_ns: int) -> list[Action]:
        out: list = []
        req = self._checked(req, now_ns, out)
        if req is None:
            return out
        if req.port in self.listening:
            self._fail_token(req.token, ErrorCode.TRANSPORT_PORT_IN_USE,
                             f"{self.node} already listens on {req.port}", None, out)
        else:
            self.listening[req.port] = req.backlog
            out.append(Deliver(svc.Done(req.token, req.port)))
        return out

    @on(svc.Unlisten)
    def _unlisten(self, req: svc.Unlisten, now_ns: int) -> list[Action]:
        out: list = []
        req = self._checked(req, now_ns, out)
        if req is None:
            return out
        self.listening.pop(req.port, None)
        # connections nobody accepted end with it
        for st in [s for s in self.conns.values()
                   if s.phase is _PENDING and s.conn.local_port == req.port]:
            self._reset(st, ErrorCode.TRANSPORT_CLOSED,
                        f"{self.node} stopped listening on {req.port} before accepting", True,
                        now_ns, out)
        out.append(Deliver(svc.Done(req.token)))
        return out

    @on(svc.Accept)
    def _accept(self, req: svc.Accept, now_ns: int) -> list[Action]:
        out: list = []
        st = self.conns.get(req.conn)
        if st is None or st.phase is not _PENDING:
            # (gone meanwhile: the application learns it from PeerClosed)
            out.append(Deliver(svc.Done(req.token)))
            return out
        self._move(st, "Accept")
        st.rx_window = self.window
        self._advertise(st, out)
        out.append(Deliver(svc.Done(req.token)))
        return out

    @on(svc.Consumed)
    def _consumed(self, req: svc.Consumed, now_ns: int) -> list[Action]:
        out: list = []
        st = self.conns.get(req.conn)
        if st is not None and req.count > 0:
            st.rx_consumed += req.count
            if st.ack_count:
                # the held acknowledgement carries the new limit now: the
                # sender may be waiting for it (its window used up)
                self._flush_ack(st, out)
            elif st.rx_seen >= st.rx_advertised:
                # the far end used all its credit: tell it at once (otherwise
                # the next Ack carries the new limit)
                self._advertise(st, out)
        return out

    def _limit(self, st: _ConnState) -> int:
        return st.rx_consumed + st.rx_window

    def _advertise(self, st: _ConnState, out: list) -> None:
        limit = self._limit(st)
        if limit > st.rx_advertised and not st.suspended and st.phase is not _CLOSING:
            st.rx_advertised = limit
            conn = st.conn
            out.append(SendMessage(conn.remote, Window(conn.local_port, conn.remote_port, limit)))

    def _port_free(self, port: int) -> bool:
        return port not in self.listening and all(c.local_port != port for c in self.conns)

    @on(svc.Connect)
    def _connect(self, req: svc.Connect, now_ns: int) -> list[Action]:
        out: list = []
        req = self._checked(req, now_ns, out)
        if req is None:
            return out
        port = req.local_port
        if port is None:
            # ephemeral ports are taken in turn (as TCP stacks do), so a port
            # comes back only after the rest of the range: the far end has long
            # forgotten the connection that used it last
            lo, n = EPHEMERAL_PORTS.start, len(EPHEMERAL_PORTS)
            start = self._next_port
            port = next((lo + (start - lo + i) % n for i in range(n)
                         if self._port_free(lo + (start - lo + i) % n)), None)
            if port is None:
                self._fail_token(req.token, ErrorCode.TRANSPORT_PORT_IN_USE, "no free port", None,
                                 out)
                return out
            self._next_port = lo + (port - lo + 1) % n
        elif not self._port_free(port):
            self._fail_token(req.token, ErrorCode.TRANSPORT_PORT_IN_USE, f"port {port} is in use",
                             None, out)
            return out
        if req.remote == self.node:
            self._fail_token(req.token, ErrorCode.NET_NO_ROUTE,
                             "a connection needs another node (no network path to itself)", None,
                             out)
            return out
        conn = svc.Conn(port, req.remote, req.port)
        # the connecting application is there: its window is open from the start
        self.conns[conn] = _ConnState(conn, _SYN_SENT, connect_token=req.token,
                                      rx_window=self.window, rx_advertised=self.window)
        # (to a node that cannot be reached the driver answers Undeliverable)
        out.append(SendMessage(req.remote, Syn(port, req.port, self.window)))
        if req.timeout_ns is not None:
            out.append(StartTimer(("connect", conn), max(0, int(req.timeout_ns))))
        return out

    def _open_state(self, conn: svc.Conn, token: int, qubit: Any, out: list) -> _ConnState | None:
        st = self.conns.get(conn)
        if st is None or (st.phase is not _OPEN and st.phase is not _PENDING):
            if st is None:
                code, why = ErrorCode.TRANSPORT_NOT_CONNECTED, "is not open"
            elif st.phase is _SYN_SENT:
                code, why = ErrorCode.TRANSPORT_NOT_CONNECTED, "is still connecting"
            elif st.phase is _PEER_CLOSED:
                code, why = ErrorCode.TRANSPORT_CLOSED, "was closed by the far end"
            else:
                code, why = ErrorCode.TRANSPORT_CLOSED, "is closing"
            self._fail_token(token, code, f"connection {conn} {why}", qubit, out)
            return None
        return st

    @on(svc.SendQubit)
    def _send_qubit(self, req: svc.SendQubit, now_ns: int) -> list[Action]:
        out: list = []
        req = self._checked(req, now_ns, out)
        if req is None:
            return out
        st = self._open_state(req.conn, req.token, req.qubit, out)
        if st is None:
            # The qubit stays with the caller.
            return out
        op = _Op("qubit", req.token, now_ns, need=1, qubit=req.qubit, metadata=req.metadata,
                 min_fidelity=req.min_fidelity, number=1)
        self._enqueue(st, op, req.timeout_ns, now_ns, out)
        return out

    @on(svc.CreateEpr, svc.MeasurePairs)
    def _create_pairs(self, req: svc.CreateEpr | svc.MeasurePairs, now_ns: int) -> list[Action]:
        """EPR pairs (``CreateEpr``) or measure-directly pairs (``MeasurePairs``)."""
        out: list = []
        req = self._checked(req, now_ns, out)
        if req is None:
            return out
        st = self._open_state(req.conn, req.token, None, out)
        if st is None:
            return out
        if req.__class__ is svc.CreateEpr:
            op = _Op("epr", req.token, now_ns, need=req.number, number=req.number,
                     min_fidelity=req.min_fidelity, metadata=req.metadata)
        else:
            op = _Op("measured", req.token, now_ns, need=req.number, number=req.number,
                     min_fidelity=req.min_fidelity, bases=req.bases)
        self._enqueue(st, op, req.timeout_ns, now_ns, out)
        return out

    @on(svc.SendBytes)
    def _send_bytes(self, req: svc.SendBytes, now_ns: int) -> list[Action]:
        out: list = []
        req = self._checked(req, now_ns, out)
        if req is None:
            return out
        st = self._open_state(req.conn, req.token, None, out)
        if st is None:
            return out
        if len(req.data) > 65536:
            self._fail_token(req.token, ErrorCode.OUT_OF_RANGE,
                             f"{len(req.data)} bytes > 65536 in one message", None, out)
            return out
        self._enqueue(st, _Op("data", req.token, now_ns, data=bytes(req.data), number=1), None,
                      now_ns, out)
        return out

    @on(svc.Close)
    def _close(self, req: svc.Close, now_ns: int) -> list[Action]:
        out: list = []
        req = self._checked(req, now_ns, out)
        if req is None:
            return out
        st = self.conns.get(req.conn)
        if st is None or st.phase is _CLOSING:
            self._fail_token(req.token, ErrorCode.TRANSPORT_NOT_CONNECTED,
                             f"connection {req.conn} is not open", None, out)
            return out
        if st.phase is _SYN_SENT:
            # The Syn may have opened the connection at the far end already:
            # reset it there, so that no half-open connection is left behind.
            self._fail_token(st.connect_token, ErrorCode.TRANSPORT_CLOSED,
                             "closed while connecting", None, out)
            out.append(CancelTimer(("connect", st.conn)))
            self._reset_connect(st, f"{self.node} closed the connection while connecting", now_ns,
                                out)
            out.append(Deliver(svc.Done(req.token)))
            return out
        peer_gone = st.phase is _PEER_CLOSED
        self._move(st, "Close")
        keep = deque()
        for op in st.queue:
            if st.busy and op is st.queue[0]:
                keep.append(op)   # already measured: its header must still go out
            elif op.kind == "data" and not peer_gone:
                keep.append(op)   # classical bytes are never dropped by a close
            elif op.kind in ("epr", "measured") and op.made:
                # partly sent: the rest cannot go; it ends once the sent ones are acknowledged
                op.need = 0
                op.number = op.made
                self._fail_op(op, ErrorCode.TRANSPORT_CLOSED, "the connection was closed", False,
                              out)
            else:
                self._fail_op(op, ErrorCode.TRANSPORT_CLOSED, "the connection was closed", False,
                              out)
        st.queue = keep
        # what was received and not delivered is discarded: the application closed
        self._flush_ack(st, out)
        self._discard_rx(st, True, now_ns, out)
        self._pump(st, now_ns, out)
        out.append(Deliver(svc.Done(req.token)))
        return out

    @on(svc.Abort)
    def _abort_request(self, req: svc.Abort, now_ns: int) -> list[Action]:
        out: list = []
        st = self.conns.get(req.conn)
        if st is not None:
            self._reset(st, ErrorCode(req.code), f"{self.node}'s application ended without "
                                                 "closing the connection", False, now_ns, out)
        out.append(Deliver(svc.Done(req.token)))
        return out

    # ------------------------------------------------------------ the send queue
    def _enqueue(self, st: _ConnState, op: _Op, timeout_ns: int | None, now_ns: int,
                 out: list) -> None:
        if timeout_ns is not None and op.need:
            op.deadline_ns = now_ns + max(0, int(timeout_ns))
            out.append(StartTimer(("op", op.token), max(0, int(timeout_ns))))
        st.queue.append(op)
        self._pump(st, now_ns, out)

    def _fail_op(self, op: _Op, code: ErrorCode, detail: str, lost: bool, out: list) -> None:
        """Answer ``op`` with Failed (once). ``lost``: it was measured and is
        gone, so no qubit is handed back."""
        if op.ended:
            return
        op.ended = True
        self.stats["send_failures"] += 1
        if op.deadline_ns is not None:
            out.append(CancelTimer(("op", op.token)))
        if op.kind == "qubit":
            if lost:
                self.stats["qubits_lost"] += 1
            self._fail_token(op.token, code, detail, None if lost else op.qubit, out)
        elif op.kind == "epr":
            self._fail_token(op.token, code, f"{detail} ({op.made} of {op.number} pairs made)",
                             None, out)
        else:
            self._fail_token(op.token, code, detail, None, out)

    def _finish_op(self, op: _Op, out: list) -> None:
        if op.ended:
            return
        op.ended = True
        if op.deadline_ns is not None:
            out.append(CancelTimer(("op", op.token)))
        out.append(Deliver(svc.Done(op.token, op.value)))

    def _pump(self, st: _ConnState, now_ns: int, out: list) -> None:
        """Serve the head of the queue as far as the pairs held and the far
        end's window allow."""
        conn = st.conn
        queue = st.queue
        while queue and not st.busy and not st.suspended and st.tx_seq < st.tx_limit:
            op = queue[0]
            if op.kind == "data":
                msg = Data(conn.local_port, conn.remote_port, st.tx_seq, op.data)
                out.append(SendMessage(conn.remote, msg))
                st.unacked[st.tx_seq] = (msg, None)
                st.tx_seq += 1
                self.stats["bytes_sent"] += len(op.data)
                queue.popleft()
                op.value = len(op.data)
                self._finish_op(op, out)
            elif op.kind == "qubit":
                if not st.pool:
                    break
                pair = st.pool.popleft()
                st.busy = True
                out.append(self.start_op(BellMeasure(op.qubit, pair.qubit),
                                         _Measuring(conn, op, pair)))
            else:  # epr, or measured (measure-directly pairs: no qubit, an outcome)
                measured = op.kind == "measured"
                pool = st.md_pool if measured else st.pool
                while pool and op.need and st.tx_seq < st.tx_limit:
                    pair = pool.popleft()
                    if measured:
                        if pair.bases != op.bases:
                            self._release(pair, out)     # (of an earlier request's set)
                            continue
                        msg = MeasuredHeader(conn.local_port, conn.remote_port, st.tx_seq,
                                             pair.pid, op.started_ns, op.bases)
                        arrived = svc.PairMeasured(conn, st.tx_seq, pair.pid, pair.setting,
                                                   pair.outcome, pair.fidelity, True, op.token)
                    else:
                        msg = EprHeader(conn.local_port, conn.remote_port, st.tx_seq, pair.pid,
                                        op.started_ns, op.metadata)
                        arrived = svc.EprArrived(conn, st.tx_seq, pair.qubit, pair.fidelity,
                                                 pair.pid, True, op.token, op.metadata)
                    out.append(SendMessage(conn.remote, msg))
                    st.unacked[st.tx_seq] = (msg, op)
                    out.append(Deliver(arrived))
                    st.tx_seq += 1
                    op.need -= 1
                    op.made += 1
                    self.stats["epr_created"] += 1
                    self.stats["pairs_used"] += 1
                    # The local half is Phi+ only if the far end corrects; this
                    # end never touches its half, so the pair is usable at once.
                if op.need:
                    break
                queue.popleft()          # all sent: done when all are acknowledged
                op.value = op.made
                if op.deadline_ns is not None:
                    out.append(CancelTimer(("op", op.token)))
                    op.deadline_ns = None
        if st.phase is _CLOSING and not queue and not st.busy and not st.unacked \
                and not st.suspended:
            out.append(SendMessage(conn.remote, Fin(conn.local_port, conn.remote_port, st.tx_seq)))
            self._drop(st, now_ns, out)
            return
        need = self._needed(st)
        self._release_surplus(st, need, out)
        self._top_up(st, now_ns, need, out)
        self._md_top_up(st, now_ns, out)

    @staticmethod
    def _admitted(st: _ConnState):
        """(op, pairs it needs now) for each pair-needing item of the queue,
        in order, as far as the far end's window admits (the head excluded
        while it is being measured: its pair is taken)."""
        room = st.tx_limit - st.tx_seq
        for i, op in enumerate(st.queue):
            if room <= 0:
                break
            if (i == 0 and st.busy) or op.kind == "data":
                room -= 1
                continue
            n = min(op.need, room)
            room -= n
            yield op, n

    def _needed(self, st: _ConnState) -> int:
        """Kept pairs the queue needs for the items the far end's window
        admits (measure-directly pairs: :meth:`_md_wanted`)."""
        return sum(n for op, n in self._admitted(st) if op.kind != "measured")

    def _md_wanted(self, st: _ConnState) -> tuple[str, int, int]:
        """The basis set of the first measure-directly item the far end's
        window admits, how many of its pairs the queue needs now (items of
        that set in a row from it) and the latest deadline of those items
        (0: one has no limit)."""
        bases, need, max_time = "", 0, -1
        for op, n in self._admitted(st):
            if op.kind != "measured" or not n:
                continue
            if bases and op.bases != bases:
                break
            bases = op.bases
            need += n
            if op.deadline_ns is None:
                max_time = 0
            elif max_time != 0:
                max_time = max(max_time, op.deadline_ns)
        return bases, need, max_time

    def _md_top_up(self, st: _ConnState, now_ns: int, out: list) -> None:
        """Hold just the measure-directly pairs the queue needs (a surplus,
        or pairs of another basis set, go back to the far end with a
        PairRelease) and ask the network for the rest: one type-D request,
        the far end folding the Pauli frame into its outcomes (``correct``)."""
        if not st.md_pool and not any(op.kind == "measured" for op in st.queue):
            return
        bases, need, deadline = self._md_wanted(st)
        pool = st.md_pool
        if any(p.bases != bases for p in pool):
            keep = deque(p for p in pool if p.bases == bases)
            for p in pool:
                if p.bases != bases:
                    self._release(p, out)
            st.md_pool = pool = keep
        while len(pool) > need:
            self._release(pool.pop(), out)
        deficit = need - len(pool) - st.md_expected.get(bases, 0)
        if deficit <= 0 or st.retry_pending:
            return
        max_time = 0 if deadline == 0 else deadline - now_ns
        if deadline != 0 and max_time <= 0:
            return   # the deadlines fire now and fail the items
        wanting = [op for op in st.queue if op.kind == "measured" and op.need]
        deficit = min(deficit, 65535)
        rid = self._new_request(st, deficit, bases)
        out.append(Submit(NetRequest(
            st.conn.remote, number=deficit,
            min_fidelity=max(op.min_fidelity for op in wanting), max_time_ns=max_time,
            type=NetRequestType.MEASURE_DIRECTLY, measure_basis=bases, request_id=rid,
            app_tag=st.conn.local_port, correct=True), to=self.network))

    def _release_surplus(self, st: _ConnState, need: int | None, out: list) -> None:
        extra = len(st.pool) - (self._needed(st) if need is None else need)
        for _ in range(max(0, extra)):
            self._release(st.pool.pop(), out)

    def _release(self, pair: _Pair, out: list) -> None:
        """Give up a pair we initiated: free our half, tell the far end."""
        self.stats["pairs_released"] += 1
        if not pair.expired:
            self._discard(pair.qubit, out)
        if pair.remote not in self.peers_down:
            out.append(SendMessage(pair.remote, PairRelease(pair.pid)))

    def _top_up(self, st: _ConnState, now_ns: int, need: int | None, out: list) -> None:
        """Ask the network for the pairs the queue needs and nobody asked for
        (``need``: :meth:`_needed`, if the caller has it)."""
        if need is None:
            need = self._needed(st)
        if st.standing is not None:
            if need:
                st.idle_since = None
            elif st.idle_since is None:
                self._idle(st, now_ns, out)
        if st.retry_pending:
            return
        deficit = need - len(st.pool) - st.expected
        if deficit <= 0:
            return
        wanting = [op for op in st.queue if op.need]
        if any(op.deadline_ns is None for op in wanting):
            max_time = 0
        else:
            max_time = max(op.deadline_ns for op in wanting) - now_ns
            if max_time <= 0:
                return   # the deadlines fire now and fail the items
        deficit = min(deficit, 65535)
        min_fidelity = max(op.min_fidelity for op in wanting)
        standing = self.standing_idle_ns is not None
        if st.standing is not None:
            if min_fidelity <= st.standing_fidelity:
                # the standing request's circuit serves these too
                rid = st.standing
                conn, remaining = self.requests[rid]
                self.requests[rid] = (conn, remaining + deficit)
                st.expected += deficit
                self.stats["pairs_requested"] += deficit
                out.append(Submit(NetTopUp(rid, deficit), to=self.network))
                return
            self._end_standing(st, out)      # its pairs are too poor for these items
        rid = self._new_request(st, deficit, None)
        if standing:
            # items have their own deadlines: the standing request has none
            st.standing, st.standing_fidelity, st.idle_since = rid, min_fidelity, None
            max_time = 0
        req = NetRequest(st.conn.remote, number=deficit, min_fidelity=min_fidelity,
                         max_time_ns=max_time, type=NetRequestType.KEEP, request_id=rid,
                         app_tag=st.conn.local_port, standing=standing)
        out.append(Submit(req, to=self.network))

    def _new_request(self, st: _ConnState, number: int, bases: str | None) -> int:
        """A fresh network request id for ``number`` pairs of ``st``, recorded
        and counted as expected: kept pairs (``bases`` None) or
        measure-directly pairs of the basis set ``bases``."""
        self._next_req = (self._next_req + 1) & 0xFFFF
        rid = self._req_base | self._next_req
        self.requests[rid] = (st.conn, number)
        if bases is None:
            st.expected += number
        else:
            self._md_requests[rid] = bases
            st.md_expected[bases] = st.md_expected.get(bases, 0) + number
        self.stats["pairs_requested"] += number
        return rid

    def _discard(self, qubit: Any, out: list) -> None:
        """Free a half this node holds (nothing for a measure-directly pair,
        which holds no qubit)."""
        if qubit is not None:
            out.append(self.start_op(Discard(qubit), _DISCARD))

    def _idle(self, st: _ConnState, now_ns: int, out: list) -> None:
        """The standing request of ``st`` has nothing to do from ``now_ns``: it
        is cancelled if that lasts ``standing_idle_ns`` (one timer at a time)."""
        st.idle_since = now_ns
        if not st.idle_timer:
            st.idle_timer = True
            out.append(StartTimer(("idle", st.conn), self.standing_idle_ns))

    def _end_standing(self, st: _ConnState, out: list) -> None:
        """Cancel the standing request of ``st``: pairs it still brings are
        not expected any more (they arrive for no request and are released)."""
        entry = self.requests.pop(st.standing, None)
        if entry is not None:
            st.expected = max(0, st.expected - entry[1])
        out.append(Submit(NetCancel(st.standing), to=self.network))
        st.standing = st.idle_since = None

    # ------------------------------------------------------------ the network layer
    @on(NetOk)
    def _net_ok(self, ok: NetOk, now_ns: int) -> list[Action]:
        out: list = []
        pid = pair_key(ok.pair_id)
        measured = ok.qubit is None and ok.outcome is not None and ok.setting >= 0
        if ok.qubit is None and not measured:
            # A type-M pair is of no use to the transport (it asks for K and D only).
            out.append(Fail(ErrorCode.TRANSPORT_HEADER_MISMATCH,
                            f"pair {pid} came without a qubit", context=ok))
            return out
        pair = _Pair(pid, ok.qubit, int(ok.bell_index), float(ok.fidelity), ok.remote,
                     tag=ok.app_tag)
        if measured:
            # (a measure-directly pair: its outcome, with the frame folded in at the tail)
            pair.setting, pair.outcome = int(ok.setting), int(ok.outcome)
        if ok.initiator:
            entry = self.requests.get(ok.request_id)
            st = None
            if entry is not None:
                conn, remaining = entry
                remaining -= 1
                bases = self._md_requests.get(ok.request_id)
                st = self.conns.get(conn)
                if ok.request_done or (remaining <= 0 and (
                        st is None or st.standing != ok.request_id)):
                    del self.requests[ok.request_id]
                    self._md_requests.pop(ok.request_id, None)
                else:
                    self.requests[ok.request_id] = (conn, remaining)
                if st is not None:
                    if bases is None:
                        st.expected = max(0, st.expected - 1)
                    else:
                        pair.bases = bases
                        st.md_expected[bases] = max(0, st.md_expected.get(bases, 0) - 1)
            # (the far end takes new items while OPEN, PENDING or CLOSING)
            if st is None or st.phase is _SYN_SENT or st.phase is _PEER_CLOSED \
                    or measured != bool(pair.bases):
                self._release(pair, out)
            else:
                (st.md_pool if measured else st.pool).append(pair)
                self._pump(st, now_ns, out)
            return out
        # A pair the far end asked for: bind it to its header, or wait for it.
        if self.released.take(pid, now_ns):
            self._discard(ok.qubit, out)
            return out
        waiting = self.headers.pop(pid, None)
        if waiting is not None:
            out.append(CancelTimer(("header", pid)))
            conn, seq = waiting
            st = self.conns.get(conn)
            item = st.rx_items.get(seq) if st is not None else None
            if item is None:
                self._discard(ok.qubit, out)
            else:
                self._bind(st, seq, item, pair, now_ns, out)
        else:
            self.remote_pairs[pid] = pair
            key = (pair.remote, pair.tag)
            self._coming[key] = self._coming.get(key, 0) + 1
            out.append(StartTimer(("pair", pid), self.bind_timeout_ns))
        return out

    def _take_remote(self, pid: tuple, now_ns: int, out: list | None) -> _Pair | None:
        """Take the unbound pair ``pid`` (None if not held). ``out``: the pair
        is not bound to an item (dropped): an acknowledgement held for its
        item is reconsidered; None: it is being bound (the delivery decides)."""
        pair = self.remote_pairs.pop(pid, None)
        if pair is not None:
            key = (pair.remote, pair.tag)
            left = self._coming[key] - 1
            if left:
                self._coming[key] = left
            else:
                del self._coming[key]
                if out is not None:
                    for st in self.conns.values():
                        if st.ack_count and st.conn.remote == pair.remote \
                                and st.conn.remote_port == pair.tag:
                            self._ack_due(st, out)
        return pair

    @on(NetErr)
    def _net_err(self, err: NetErr, now_ns: int) -> list[Action]:
        out: list = []
        if not err.initiator:
            # the tail of the far end's request: its pairs come with its own
            # headers, and the far end, which asked, retries or tells us
            return out
        entry = self.requests.pop(err.request_id, None)
        if entry is None or entry[0].remote != err.remote:
            if entry is not None:
                self.requests[err.request_id] = entry
            return out
        self.stats["net_errors"] += 1
        conn, remaining = entry
        bases = self._md_requests.pop(err.request_id, None)
        st = self.conns.get(conn)
        if st is None:
            return out
        if bases is None:
            st.expected = max(0, st.expected - remaining)
        else:
            st.md_expected[bases] = max(0, st.md_expected.get(bases, 0) - remaining)
        if st.standing == err.request_id:
            st.standing = st.idle_since = None
        code = ErrorCode(err.code)
        if code in _PERMANENT:
            for op in [op for i, op in enumerate(st.queue)
                       if op.need and not (i == 0 and st.busy)]:
                st.queue.remove(op)
                self._fail_op(op, ErrorCode.TRANSPORT_NO_PAIR,
                              f"the network cannot serve {conn.remote}: {code.name} {err.detail}",
                              False, out)
            self._pump(st, now_ns, out)
        else:
            # Transient (timeout, torn-down circuit): ask again after a pause, so
            # a network that fails at once does not spin the node.
            st.retry_pending = True
            out.append(StartTimer(("retry", conn), self.retry_ns))
        return out

    @on(NetExpire)
    def _net_expire(self, exp: NetExpire, now_ns: int) -> list[Action]:
        out: list = []
        pid = pair_key(exp.pair_id)
        self.stats["pairs_expired"] += 1
        if pid in self.remote_pairs:
            self._take_remote(pid, now_ns, out)
            out.append(CancelTimer(("pair", pid)))
            self.expired.add(pid, now_ns + self.bind_timeout_ns)
            return out
        if pid in self.headers:
            conn, seq = self.headers.pop(pid)
            out.append(CancelTimer(("header", pid)))
            self._lose(conn, seq, ErrorCode.NET_CIRCUIT_TORN_DOWN,
                       f"pair {pid} expired: {exp.reason}", now_ns, out)
            return out
        for st in self.conns.values():
            for pool in (st.pool, st.md_pool):
                for pair in pool:
                    if pair.pid == pid:
                        pool.remove(pair)
                        self._top_up(st, now_ns, None, out)
                        self._md_top_up(st, now_ns, out)
                        return out
        for ctx in self._ops.values():     # (the pending operations' contexts)
            if ctx.__class__ is _Measuring and ctx.pair.pid == pid:
                ctx.pair.expired = True   # the measurement will fail; the qubit stays
                return out
        if pid[0] != self.node:
            # Not held (bound already, discarded, released, or not arrived yet):
            # remembered in case its header is still to come. A pair this node
            # heads is never looked up (a header naming it is refused, §5).
            self.expired.add(pid, now_ns + self.bind_timeout_ns)
        return out

    # ------------------------------------------------------------ operations
    @on(OperationDone)
    def _op_done(self, ev: OperationDone, now_ns: int) -> list[Action]:
        ctx = self.take_op(ev.op_id)
        if ctx is None or ctx is _DISCARD:
            return []
        out: list = []
        if ctx.__class__ is _Measuring:
            self._bsm_done(ctx.conn, ctx.op, ctx.pair, ev.outcome, now_ns, out)
        else:   # _Correcting
            conn, seq = ctx.conn, ctx.seq
            st = self.conns.get(conn)
            item = st.rx_items.get(seq) if st is not None else None
            if item is not None:
                if isinstance(ev.outcome, BaseException):
                    self._lose(conn, seq, getattr(ev.outcome, "code", ErrorCode.QUBIT_UNAVAILABLE),
                               f"correction failed: {ev.outcome}", now_ns, out)
                else:
                    item.ready = True
                    self._deliver_ready(st, now_ns, out)
        return out

    def _bsm_done(self, conn: svc.Conn, op: _Op, pair: _Pair, outcome: Any, now_ns: int,
                  out: list) -> None:
        st = self.conns.get(conn)
        if st is None:
            return
        st.busy = False
        if isinstance(outcome, BaseException):
            if pair.expired:
                # The pair vanished under the measurement, which therefore did not
                # happen: the qubit is intact, the head item waits for another pair.
                self._pump(st, now_ns, out)
                return
            st.queue.popleft()
            st.pool.appendleft(pair)
            code = getattr(outcome, "code", ErrorCode.QUBIT_UNAVAILABLE)
            self._fail_op(op, code, f"Bell measurement failed: {outcome}", False, out)
            self._pump(st, now_ns, out)
            return
        bsm = int(outcome)
        msg = QubitHeader(conn.local_port, conn.remote_port, st.tx_seq, pair.pid,
                          bool(bsm >> 1), bool(bsm & 1), op.started_ns, op.metadata)
        st.queue.popleft()
        st.unacked[st.tx_seq] = (msg, op)
        if not st.suspended:
            out.append(SendMessage(conn.remote, msg))
        st.tx_seq += 1
        op.made = 1
        op.need = 0
        op.value = pair.pid
        self.stats["pairs_used"] += 1
        # measured: it cannot fail for want of a pair any more
        if op.deadline_ns is not None:
            out.append(CancelTimer(("op", op.token)))
            op.deadline_ns = None
        self._pump(st, now_ns, out)

    # ------------------------------------------------------------ timers
    @on(TimerFired)
    def _timer(self, ev: TimerFired, now_ns: int) -> list[Action]:
        out: list = []
        kind, arg = ev.key
        if kind == "op":
            for st in list(self.conns.values()):
                for i, op in enumerate(st.queue):
                    if op.token == arg:
                        if i == 0 and st.busy:
                            break   # measured already: it can no longer fail for want of a pair
                        del st.queue[i]
                        op.deadline_ns = None
                        self._fail_op(op, ErrorCode.TRANSPORT_NO_PAIR,
                                      f"no end-to-end pair with {st.conn.remote} in time", False,
                                      out)
                        self._pump(st, now_ns, out)
                        return out
        elif kind == "connect":
            st = self.conns.get(arg)
            if st is not None and st.phase is _SYN_SENT:
                self._fail_token(st.connect_token, ErrorCode.TRANSPORT_TIMEOUT,
                                 f"no answer from {arg.remote}:{arg.remote_port}", None, out)
                self._reset_connect(st, f"{self.node} gave up connecting (no SynAck in time)",
                                    now_ns, out)
        elif kind == "ack":
            st = self.conns.get(arg)
            if st is not None:
                st.ack_timer = False
                self._flush_ack(st, out)
        elif kind == "idle":
            st = self.conns.get(arg)
            if st is not None:
                st.idle_timer = False
                if st.standing is not None and st.idle_since is not None:
                    left = st.idle_since + self.standing_idle_ns - now_ns
                    if left <= 0:
                        self._end_standing(st, out)
                    else:      # busy meanwhile, idle again since: wait the rest
                        st.idle_timer = True
                        out.append(StartTimer(("idle", arg), left))
        elif kind == "retry":
            st = self.conns.get(arg)
            if st is not None:
                st.retry_pending = False
                self._top_up(st, now_ns, None, out)
                self._md_top_up(st, now_ns, out)
        elif kind == "pair":
            pair = self._take_remote(arg, now_ns, out)
            if pair is not None:
                self._discard(pair.qubit, out)
                out.append(Fail(ErrorCode.TRANSPORT_HEADER_MISMATCH,
                                f"pair {arg} from {pair.remote}: no header within "
                                f"{self.bind_timeout_ns} ns, discarded"))
        elif kind == "header":
            waiting = self.headers.pop(arg, None)
            if waiting is not None:
                self._lose(waiting[0], waiting[1], ErrorCode.TRANSPORT_HEADER_MISMATCH,
                           f"header names pair {arg}, which did not arrive", now_ns, out)
        elif kind == "peer":
            if arg in self.peers_down:
                for st in [s for s in self.conns.values() if s.conn.remote == arg]:
                    self._reset(st, ErrorCode.TRANSPORT_RESET,
                                f"{arg} stayed unreachable for {self.peer_timeout_ns} ns", True,
                                now_ns, out)
        return out

    # ------------------------------------------------------------ messages
    @on_message(Syn)
    def _on_syn(self, src: str, msg: Syn, now_ns: int) -> list[Action]:
        out: list = []
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        st = self.conns.get(conn)
        if st is not None and st.phase is _PEER_CLOSED and st.peer_closed:
            # the far end closed that connection and opens a new one from the
            # same port: the old one is over here too (its application was told)
            self._drop(st, now_ns, out)
            st = None
        if st is not None:              # a repeated SYN: answer again
            if st.phase is not _SYN_SENT:
                out.append(SendMessage(src, SynAck(msg.dst_port, msg.src_port, st.rx_advertised)))
            return out
        backlog = self.listening.get(msg.dst_port)
        if backlog is None:
            out.append(SendMessage(src, Rst(msg.dst_port, msg.src_port,
                                            int(ErrorCode.TRANSPORT_CONNECTION_REFUSED),
                                            f"{self.node} does not listen on {msg.dst_port}")))
            return out
        waiting = sum(1 for s in self.conns.values()
                      if s.phase is _PENDING and s.conn.local_port == msg.dst_port)
        if waiting >= backlog:
            out.append(SendMessage(src, Rst(
                msg.dst_port, msg.src_port, int(ErrorCode.TRANSPORT_CONNECTION_REFUSED),
                f"{self.node}:{msg.dst_port} has {waiting} connections not yet accepted "
                f"(backlog {backlog})")))
            return out
        st = self.conns[conn] = _ConnState(conn, _PENDING, tx_limit=msg.limit)
        out.append(SendMessage(src, SynAck(msg.dst_port, msg.src_port, 0)))
        out.append(Deliver(svc.Incoming(msg.dst_port, conn)))
        return out

    @on_message(SynAck)
    def _on_synack(self, src: str, msg: SynAck, now_ns: int) -> list[Action]:
        out: list = []
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        st = self.conns.get(conn)
        if st is None:
            # A connect this node gave up (closed, timed out, forgotten in a
            # restart) that the far end accepted: reset the far end's half-open
            # connection. An Rst is never answered, so this cannot loop.
            out.append(SendMessage(src, Rst(msg.dst_port, msg.src_port,
                                            int(ErrorCode.TRANSPORT_NOT_CONNECTED),
                                            f"no connection {conn} on {self.node}")))
        elif st.phase is _SYN_SENT:
            self._move(st, "SynAck")
            st.tx_limit = max(st.tx_limit, msg.limit)
            out.append(CancelTimer(("connect", conn)))
            out.append(Deliver(svc.Done(st.connect_token, conn)))
        return out

    @on_message(Rst)
    def _on_rst(self, src: str, msg: Rst, now_ns: int) -> list[Action]:
        out: list = []
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        st = self.conns.get(conn)
        if st is None:
            return out      # never answer an Rst (with an Rst or anything else)
        code = error_code(msg.code, ErrorCode.TRANSPORT_CLOSED)
        if st.phase is _SYN_SENT:
            out.append(CancelTimer(("connect", conn)))
            self._fail_token(st.connect_token, code, msg.detail, None, out)
            self._drop(st, now_ns, out)
            return out
        if st.phase is _PEER_CLOSED and code is ErrorCode.TRANSPORT_NOT_CONNECTED:
            code = ErrorCode.TRANSPORT_CLOSED      # it closed, then forgot the connection
        self._abort(st, code, msg.detail, now_ns, out)
        return out

    @on_message(Window)
    def _on_window(self, src: str, msg: Window, now_ns: int) -> list[Action]:
        out: list = []
        st = self.conns.get(svc.Conn(msg.dst_port, src, msg.src_port))
        if st is None:
            # the far end holds a connection this node does not have (it
            # restarted): reset it there. (An Ack may come late after a close
            # and is ignored; a Window comes only from a live connection.)
            out.append(SendMessage(src, Rst(
                msg.dst_port, msg.src_port, int(ErrorCode.TRANSPORT_NOT_CONNECTED),
                f"no connection {svc.Conn(msg.dst_port, src, msg.src_port)} on {self.node}")))
            return out
        if msg.limit > st.tx_limit:
            st.tx_limit = msg.limit
            self._pump(st, now_ns, out)
        return out

    @on_message(Ack)
    def _on_ack(self, src: str, msg: Ack, now_ns: int) -> list[Action]:
        out: list = []
        st = self.conns.get(svc.Conn(msg.dst_port, src, msg.src_port))
        if st is None:
            return out
        if msg.limit > st.tx_limit:
            st.tx_limit = msg.limit
        unacked = st.unacked
        if msg.code:
            # one item lost (its acknowledgement came before any that covers later items)
            entry = unacked.pop(msg.seq, None)
            if entry is not None and entry[1] is not None:
                code = error_code(msg.code, ErrorCode.TRANSPORT_CLOSED)
                self._fail_op(entry[1], code, f"item {msg.seq} was lost at {src} after it was "
                                              "sent", True, out)
        else:
            # cumulative: every item up to seq not yet settled was delivered
            # (unacked holds the items in the order of their numbers)
            while unacked:
                seq = next(iter(unacked))
                if seq > msg.seq:
                    break
                op = unacked.pop(seq)[1]
                if op is not None:
                    op.acked += 1
                    if op.kind == "qubit":
                        self.stats["qubits_sent"] += 1
                    if op.acked >= op.number and not op.need:
                        self._finish_op(op, out)
        self._pump(st, now_ns, out)
        return out

    @on_message(Fin)
    def _on_fin(self, src: str, msg: Fin, now_ns: int) -> list[Action]:
        out: list = []
        st = self.conns.get(svc.Conn(msg.dst_port, src, msg.src_port))
        if st is None or st.phase is _SYN_SENT:
            return out
        st.rx_fin = msg.seq
        if st.phase is not _PEER_CLOSED:
            self._move(st, "Fin")
        # the far end takes nothing more: what waits to be sent cannot go
        keep = deque()
        for i, op in enumerate(st.queue):
            if i == 0 and st.busy:
                keep.append(op)
            else:
                self._fail_op(op, ErrorCode.TRANSPORT_CLOSED,
                              f"{src} closed the connection", False, out)
        st.queue = keep
        self._deliver_ready(st, now_ns, out)
        self._pump(st, now_ns, out)
        return out

    def _header_conn(self, src: str, msg: Any, out: list) -> _ConnState | None:
        """The connection an item (header or data) arrived for, acknowledging
        what cannot be delivered: a duplicate (again, with its outcome), an
        item for a connection closed here (lost: ``TRANSPORT_CLOSED``); an
        item for no connection is answered with ``Rst``."""
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        st = self.conns.get(conn)
        if st is None or st.phase is _SYN_SENT:
            out.append(SendMessage(src, Rst(msg.dst_port, msg.src_port,
                                            int(ErrorCode.TRANSPORT_NOT_CONNECTED),
                                            f"no connection {conn} on {self.node}")))
            return None
        seq = msg.seq
        if seq < st.rx_next:
            self._ack(st, seq, st.rx_lost.get(seq, 0), out)     # a duplicate: its outcome again
            return None
        if seq in st.rx_items:
            return None          # a duplicate of one still waiting: acknowledged when settled
        if st.phase is _CLOSING:
            self._ack(st, seq, int(ErrorCode.TRANSPORT_CLOSED), out)
            return None
        if seq + 1 > st.rx_seen:
            st.rx_seen = seq + 1
        return st

    @on_message(QubitHeader, EprHeader, MeasuredHeader)
    def _on_header(self, src: str, msg: QubitHeader | EprHeader | MeasuredHeader,
                   now_ns: int) -> list[Action]:
        out: list = []
        pid = tuple(msg.pair)
        if pid[0] != src:
            # The sender of an item asks for its pairs, so it heads them: a
            # header naming another node's pair is refused (the pair is not
            # touched, so its real owner still gets it).
            out.append(Fail(ErrorCode.TRANSPORT_HEADER_MISMATCH,
                            f"{src} sent a header for pair {pid}, which {pid[0]} heads"))
            out.append(SendMessage(src, Rst(msg.dst_port, msg.src_port,
                                            int(ErrorCode.TRANSPORT_HEADER_MISMATCH),
                                            f"pair {pid} is not {src}'s")))
            return out
        st = self._header_conn(src, msg, out)
        if st is None:
            # Nobody will take this item: free the pair now or when it comes.
            self._drop_remote_pair(pid, now_ns, out)
            return out
        kind = _HEADER_KIND[msg.__class__]
        item = _Rx(kind, msg)
        st.rx_items[msg.seq] = item
        if self.expired.take(pid, now_ns):
            self._lose(st.conn, msg.seq, ErrorCode.NET_CIRCUIT_TORN_DOWN, f"pair {pid} expired",
                       now_ns, out)
            return out
        pair = self._take_remote(pid, now_ns, None)
        if pair is not None:
            out.append(CancelTimer(("pair", pid)))
            self._bind(st, msg.seq, item, pair, now_ns, out)
        else:
            self.headers[pid] = (st.conn, msg.seq)
            out.append(StartTimer(("header", pid), self.bind_timeout_ns))
        return out

    @on_message(Data)
    def _on_data(self, src: str, msg: Data, now_ns: int) -> list[Action]:
        out: list = []
        st = self._header_conn(src, msg, out)
        if st is None:
            return out
        st.rx_items[msg.seq] = _Rx("data", msg, ready=True)
        self._deliver_ready(st, now_ns, out)
        return out

    @on_message(PairRelease)
    def _on_release(self, src: str, msg: PairRelease, now_ns: int) -> list[Action]:
        out: list = []
        pid = tuple(msg.pair)
        if pid[0] != src:      # only the pair's head may release it
            out.append(Fail(ErrorCode.TRANSPORT_HEADER_MISMATCH,
                            f"{src} released pair {pid}, which {pid[0]} heads"))
            return out
        self._drop_remote_pair(pid, now_ns, out)
        return out

    # ------------------------------------------------------------ receiving
    def _ack(self, st: _ConnState, seq: int, code: int, out: list) -> None:
        if st.ack_count and seq != st.ack_seq:
            self._flush_ack(st, out)    # (acknowledgements leave in the order of the items)
        conn = st.conn
        limit = self._limit(st)
        if limit > st.rx_advertised:
            st.rx_advertised = limit
        if not st.suspended:
            out.append(SendMessage(conn.remote, Ack(conn.local_port, conn.remote_port, seq, code,
                                                    st.rx_advertised)))

    def _drop_remote_pair(self, pid: tuple, now_ns: int, out: list) -> None:
        pair = self._take_remote(pid, now_ns, out)
        if pair is not None:
            out.append(CancelTimer(("pair", pid)))
            self._discard(pair.qubit, out)
        elif not self.expired.take(pid, now_ns):
            self.released.add(pid, now_ns + self.bind_timeout_ns)

    def _bind(self, st: _ConnState, seq: int, item: _Rx, pair: _Pair, now_ns: int,
              out: list) -> None:
        if (item.kind == "measured") != (pair.outcome is not None):
            # a measured pair named by a qubit's or EPR pair's header, or the
            # reverse: the two ends disagree on what the pair is for
            self._discard(pair.qubit, out)
            self._lose(st.conn, seq, ErrorCode.TRANSPORT_HEADER_MISMATCH,
                       f"pair {pair.pid} does not match its {item.kind} header", now_ns, out)
            return
        item.qubit = pair.qubit
        item.fidelity = pair.fidelity
        if item.kind == "measured":
            item.measured = (pair.setting, pair.outcome)
            item.ready = True
            self._deliver_ready(st, now_ns, out)
            return
        if item.kind == "qubit":
            bsm = (int(item.msg.m_x) << 1) | int(item.msg.m_z)
            gate = correction_gate(bsm, pair.bell_index)
        else:
            gate = _CORRECTION[pair.bell_index & 3]   # bring the pair to Phi+
        if gate is None:
            item.ready = True
            self._deliver_ready(st, now_ns, out)
        else:
            out.append(self.start_op(Gate(gate, (pair.qubit,)), _Correcting(st.conn, seq)))

    def _lose(self, conn: svc.Conn, seq: int, code: ErrorCode, detail: str, now_ns: int,
              out: list) -> None:
        st = self.conns.get(conn)
        if st is None:
            return
        item = st.rx_items.get(seq)
        if item is None:
            return
        item.ready, item.code, item.detail = True, ErrorCode(code), detail
        self._deliver_ready(st, now_ns, out)

    def _deliver_ready(self, st: _ConnState, now_ns: int, out: list) -> None:
        conn = st.conn
        while True:
            item = st.rx_items.get(st.rx_next)
            if item is None or not item.ready:
                break
            del st.rx_items[st.rx_next]
            seq = st.rx_next
            st.rx_next += 1
            msg = item.msg
            if item.code is not None:
                self.stats["lost"] += 1
                st.rx_lost[seq] = int(item.code)
                if len(st.rx_lost) > 4 * self.window:     # (old ones are acknowledged)
                    del st.rx_lost[next(iter(st.rx_lost))]
                self._ack(st, seq, int(item.code), out)
                out.append(Deliver(svc.Lost(conn, seq, item.code, item.detail, item.kind)))
                continue
            if self.ack_delay_ns is None or item.kind != "epr":
                # (a qubit's or bytes' own send is answered by its Ack: at once,
                # covering any held before it; an EPR request's by its last)
                self._ack(st, seq, 0, out)
            else:
                st.ack_seq = seq
                st.ack_count += 1
            if item.kind == "data":
                self.stats["bytes_received"] += len(msg.payload)
                out.append(Deliver(svc.DataArrived(conn, seq, msg.payload)))
            elif item.kind == "qubit":
                self.stats["qubits_received"] += 1
                latency = max(0, now_ns - msg.sent_ns)
                self.deliveries.append(("qubit", latency, item.fidelity))
                out.append(Deliver(svc.QubitArrived(conn, seq, item.qubit, msg.metadata,
                                                    item.fidelity, latency)))
            elif item.kind == "measured":
                self.stats["epr_received"] += 1
                latency = max(0, now_ns - msg.sent_ns)
                self.deliveries.append(("measured", latency, item.fidelity))
                setting, outcome = item.measured
                out.append(Deliver(svc.PairMeasured(conn, seq, tuple(msg.pair), setting, outcome,
                                                    item.fidelity, False, None)))
            elif item.kind == "epr":
                self.stats["epr_received"] += 1
                latency = max(0, now_ns - msg.sent_ns)
                self.deliveries.append(("epr", latency, item.fidelity))
                out.append(Deliver(svc.EprArrived(conn, seq, item.qubit, item.fidelity,
                                                  tuple(msg.pair), False, None, msg.metadata)))
        if st.ack_count:
            self._ack_due(st, out)
        if st.rx_fin is not None and st.rx_next >= st.rx_fin and not st.peer_closed:
            st.peer_closed = True
            out.append(Deliver(svc.PeerClosed(conn)))

    def _ack_due(self, st: _ConnState, out: list) -> None:
        """Items of ``st`` were delivered and not yet acknowledged: one
        cumulative ``Ack`` now, unless more of its items are expected (held
        unbound here: headers waiting for pairs, corrections under way, or
        pairs its far end asked for waiting for their headers) and fewer than
        ``ack_every`` wait; then at the latest after ``ack_delay_ns``."""
        conn = st.conn
        if st.ack_count < self.ack_every and (
                st.rx_items or (conn.remote, conn.remote_port) in self._coming):
            if not st.ack_timer:
                st.ack_timer = True
                out.append(StartTimer(("ack", conn), self.ack_delay_ns))
            return
        self._flush_ack(st, out)

    def _flush_ack(self, st: _ConnState, out: list) -> None:
        """Send the cumulative ``Ack`` of the items delivered and not yet acknowledged."""
        if st.ack_count:
            st.ack_count = 0
            self._ack(st, st.ack_seq, 0, out)

    def _discard_rx(self, st: _ConnState, ack: bool, now_ns: int, out: list) -> None:
        """Items received and not delivered are dropped (the application
        closed: with ``ack`` the far end learns each was lost, ``TRANSPORT_CLOSED``)."""
        for seq, item in st.rx_items.items():
            if item.qubit is not None:
                self._discard(item.qubit, out)
            elif item.kind in ("qubit", "epr", "measured"):
                pid = tuple(item.msg.pair)
                if self.headers.pop(pid, None) is not None:
                    out.append(CancelTimer(("header", pid)))
                    self.released.add(pid, now_ns + self.bind_timeout_ns)
            if ack and not item.code:
                self._ack(st, seq, int(ErrorCode.TRANSPORT_CLOSED), out)
        st.rx_items.clear()

    # ------------------------------------------------------------ teardown
    def _abort(self, st: _ConnState, code: ErrorCode, detail: str, now_ns: int,
               out: list) -> None:
        """The connection died (the far end reset it, or a local reason): fail
        what waits (qubits not measured handed back, sent ones reported lost),
        tell the application, forget it."""
        for i, op in enumerate(list(st.queue)):
            if not (i == 0 and st.busy):
                self._fail_op(op, code, detail, False, out)
        st.queue.clear()
        for _seq, (_msg, op) in st.unacked.items():
            if op is not None:
                self._fail_op(op, code, f"{detail}; sent, not acknowledged: lost", True, out)
        st.unacked.clear()
        if not st.peer_closed and st.phase is not _CLOSING:
            st.peer_closed = True
            out.append(Deliver(svc.PeerClosed(st.conn, code, detail)))
        self._drop(st, now_ns, out)

    def _reset(self, st: _ConnState, code: ErrorCode, detail: str, tell_app: bool, now_ns: int,
               out: list) -> None:
        """End ``st`` from this side: the far end is reset (``Rst(code)``)."""
        conn = st.conn
        if conn.remote not in self.peers_down:
            out.append(SendMessage(conn.remote, Rst(conn.local_port, conn.remote_port, int(code),
                                                    detail[:256])))
        if not tell_app:
            st.peer_closed = True
        self._abort(st, code, detail, now_ns, out)

    def _reset_connect(self, st: _ConnState, detail: str, now_ns: int, out: list) -> None:
        """Give up a connect (SYN_SENT): the Syn may have opened the connection
        at the far end, so reset it there (an Rst for a connection the far end
        does not have is ignored), then forget it."""
        conn = st.conn
        if conn.remote not in self.peers_down:
            out.append(SendMessage(conn.remote, Rst(conn.local_port, conn.remote_port,
                                                    int(ErrorCode.TRANSPORT_CLOSED), detail)))
        self._drop(st, now_ns, out)

    def _drop(self, st: _ConnState, now_ns: int, out: list) -> None:
        """Forget a connection, giving up the pairs it holds."""
        self.conns.pop(st.conn, None)
        if st.standing is not None:
            self._end_standing(st, out)
        while st.pool:
            self._release(st.pool.popleft(), out)
        while st.md_pool:
            self._release(st.md_pool.popleft(), out)
        self._discard_rx(st, False, now_ns, out)

    # ------------------------------------------------------------ the far end's session
    @on(PeerDown)
    def _peer_down(self, ev: PeerDown, now_ns: int) -> list[Action]:
        out: list = []
        if ev.peer == self.node:
            # This node restarted in place: its qubits and connections are gone.
            self.conns.clear()
            self.requests.clear()
            self.remote_pairs.clear()
            self._coming.clear()
            self.headers.clear()
            self.released.clear()
            self.expired.clear()
            self.peers_down.clear()
            self._ops.clear()
            return out
        if ev.peer in self.peers_down:
            return out
        self.peers_down.add(ev.peer)
        affected = [s for s in self.conns.values() if s.conn.remote == ev.peer]
        for st in affected:
            st.suspended = True      # sent items wait for the session (or the timeout)
        if affected:
            out.append(StartTimer(("peer", ev.peer), self.peer_timeout_ns))
        return out

    @on(PeerUp)
    def _peer_up(self, ev: PeerUp, now_ns: int) -> list[Action]:
        out: list = []
        was_down = ev.peer in self.peers_down
        self.peers_down.discard(ev.peer)
        out.append(CancelTimer(("peer", ev.peer)))
        for st in [s for s in self.conns.values() if s.conn.remote == ev.peer]:
            st.suspended = False
            if ev.restarted:
                # it remembers nothing: what it was sent and had not acknowledged is lost
                self._reset(st, ErrorCode.TRANSPORT_RESET, f"{ev.peer} restarted", True, now_ns,
                            out)
                continue
            if not was_down:
                continue
            conn = st.conn
            if st.phase is _SYN_SENT:
                out.append(SendMessage(conn.remote, Syn(conn.local_port, conn.remote_port,
                                                        st.rx_advertised)))
                continue
            # what was sent may have been lost with the session: send it again,
            # in order (the far end drops duplicates and acknowledges them again)
            for seq in sorted(st.unacked):
                self.stats["retransmitted"] += 1
                out.append(SendMessage(conn.remote, st.unacked[seq][0]))
            if st.phase is not _CLOSING:
                st.rx_advertised = self._limit(st)
                out.append(SendMessage(conn.remote, Window(conn.local_port, conn.remote_port,
                                                           st.rx_advertised)))
            self._pump(st, now_ns, out)
        return out

    @on(Undeliverable)
    def _undeliverable(self, ev: Undeliverable, now_ns: int) -> list[Action]:
        out: list = []
        msg = ev.msg
        if isinstance(msg, Syn):
            conn = svc.Conn(msg.src_port, ev.dst, msg.dst_port)
            st = self.conns.get(conn)
            if st is not None and st.phase is _SYN_SENT:
                out.append(CancelTimer(("connect", conn)))
                self._fail_token(st.connect_token, ev.code, f"cannot reach {ev.dst}: {ev.detail}",
                                 None, out)
                self._drop(st, now_ns, out)
        # anything else: the session is down; PeerDown / PeerUp settle it
        return out
