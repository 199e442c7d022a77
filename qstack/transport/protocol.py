"""The teleportation transport protocol (sans-I/O), ``transport.qtp``.

One instance per node, on top of the network layer's end-to-end protocol.
It multiplexes connections by port and carries three kinds of items over
each direction of a connection, delivered in the order they were sent:
teleported qubits, EPR pairs and classical byte messages.

Sending a qubit (the send queue of a connection is served head first, so
items leave in order):

1. the request joins the connection's queue; the connection asks the network
   layer for as many end-to-end pairs as its queue needs and has not yet
   asked for (``NetRequest``, ``max_time_ns`` = the latest deadline);
2. when the item reaches the head and a pair is held, the protocol Bell-measures
   (the qubit, its half) -- only then is the qubit committed;
3. it sends :class:`~qstack.transport.messages.QubitHeader` (ports, seq, pair
   id, the two outcome bits, metadata) and answers ``Done``.

A pair that expires before step 2 is replaced (another ``NetRequest``); if no
pair comes before the item's deadline, the item fails with
``TRANSPORT_NO_PAIR`` and the qubit is handed back untouched.

Receiving: end-to-end pairs that the far end asked for arrive as ``NetOk``
(``initiator=False``) and headers as messages, in either order; each is kept
under the pair id until its partner arrives (``bind_timeout_ns`` at most).
Bound, the receiver applies ``X^x Z^z`` -- ``(x, z)`` the bits of
``bsm ^ bell_index`` -- to its half (one gate: Z, X or Y = XZ up to a phase),
and delivers in sequence order.

``specs/transport.md`` is the normative description.
"""
from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.protocol import (
    Action, CancelTimer, Deliver, Fail, MessageReceived, OperationDone, PeerDown, Protocol,
    QuantumOp, SendMessage, StartTimer, Submit, TimerFired, on,
)
from qstack.network.service import NetErr, NetExpire, NetOk, NetRequest, NetRequestType
from qstack.physical.ops import BellMeasure, Discard, Gate
from qstack.transport import service as svc
from qstack.transport.messages import (
    PROTOCOL, Data, EprHeader, Fin, PairRelease, QubitHeader, Rst, Syn, SynAck,
)

__all__ = ["TeleportTransport", "pair_key", "correction_gate", "EPHEMERAL_PORTS"]

#: Ports a connecting socket is given when it names none (as in TCP/IP).
EPHEMERAL_PORTS = range(49152, 65536)

#: The gate that applies X^x Z^z for the mask (x << 1) | z, up to a global
#: phase (Z X = iY).
_CORRECTION = (None, "z", "x", "y")

#: Network errors after which asking again cannot help.
_PERMANENT = frozenset({ErrorCode.NET_NO_ROUTE, ErrorCode.NET_UNREACHABLE_FIDELITY,
                        ErrorCode.NET_REJECTED})


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


@dataclass(slots=True)
class _Pair:
    """An end-to-end pair this node holds one half of."""

    pid: tuple
    qubit: Any
    bell_index: int
    fidelity: float
    remote: str
    expired: bool = False


@dataclass(slots=True)
class _Op:
    """An item waiting in a connection's send queue."""

    kind: str                  # "qubit", "epr" or "data"
    token: int
    started_ns: int
    need: int = 0              # pairs still wanted
    deadline_ns: int | None = None
    min_fidelity: float = 0.0
    qubit: Any = None
    metadata: bytes = b""
    data: bytes = b""
    number: int = 0
    made: int = 0


@dataclass(slots=True)
class _Rx:
    """An item received (by header or data message), waiting for its turn."""

    kind: str                  # "qubit", "epr", "data"
    msg: Any
    ready: bool = False
    qubit: Any = None
    fidelity: float = 0.0
    code: ErrorCode | None = None
    detail: str = ""


@dataclass(slots=True)
class _ConnState:
    conn: svc.Conn
    state: str                 # "syn_sent", "open", "closing"
    connect_token: int | None = None
    tx_seq: int = 0
    queue: deque = field(default_factory=deque)
    pool: deque = field(default_factory=deque)
    expected: int = 0          # pairs still to come from requests in flight
    busy: bool = False         # a Bell measurement of the head item is in flight
    retry_pending: bool = False
    rx_next: int = 0
    rx_items: dict = field(default_factory=dict)
    rx_fin: int | None = None
    peer_closed: bool = False


class TeleportTransport(Protocol):
    """The transport protocol of one node.

    ``network`` names the protocol below that serves ``NetRequest`` (default:
    the one under this in the stack). ``bind_timeout_ns``: how long a pair or
    a header waits for its partner before it is dropped. ``retry_ns``: pause
    before asking the network again after it failed a request.
    """

    name = PROTOCOL

    def __init__(self, node: str, network: str | None = None,
                 bind_timeout_ns: int = 10_000_000_000, retry_ns: int = 100_000) -> None:
        super().__init__(node)
        self.network = network
        self.bind_timeout_ns = int(bind_timeout_ns)
        self.retry_ns = int(retry_ns)
        self.conns: dict[svc.Conn, _ConnState] = {}
        self.listening: set[int] = set()
        self.requests: dict[int, tuple[svc.Conn, int]] = {}   # request id -> (conn, remaining)
        self.remote_pairs: dict[tuple, _Pair] = {}             # unbound, far-end initiated
        self.headers: dict[tuple, tuple[svc.Conn, int]] = {}   # unbound headers -> (conn, seq)
        # Pair ids remembered for bind_timeout_ns at most (specs/transport.md §5):
        self.released = _Recent()   # told to drop before arrival
        self.expired = _Recent()    # expired before bound to a header
        self._ops: dict[int, tuple] = {}
        self._next_op = 0
        # Request ids are tagged with a hash of the node name: the far end of a
        # circuit reports NetErr with the initiator's id, which must not be
        # taken for one of ours.
        self._req_base = (zlib.crc32(node.encode()) & 0x7FFF) << 16
        self._next_req = 0
        self._out: list[Action] = []
        self.stats = {
            "qubits_sent": 0, "qubits_received": 0, "epr_created": 0, "epr_received": 0,
            "bytes_sent": 0, "bytes_received": 0, "pairs_requested": 0, "pairs_used": 0,
            "pairs_released": 0, "pairs_expired": 0, "send_failures": 0, "lost": 0,
            "net_errors": 0,
        }
        #: (kind, latency_ns, fidelity estimate) of every item delivered here.
        self.deliveries: list[tuple[str, int, float]] = []

    # ------------------------------------------------------------ plumbing
    def _emit(self, *actions: Action) -> None:
        self._out.extend(actions)

    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _op(self, op: Any, *context: Any) -> None:
        self._next_op += 1
        self._ops[self._next_op] = context
        self._emit(QuantumOp(self._next_op, op))

    def _up(self, event: Any) -> None:
        self._emit(Deliver(event))

    def _send(self, dst: str, msg: Any) -> None:
        self._emit(SendMessage(dst, msg))

    def _fail_token(self, token: int, code: ErrorCode, detail: str, qubit: Any = None) -> None:
        self._up(svc.Failed(token, code, detail, qubit))

    def _checked(self, req: Any, now_ns: int) -> Any:
        """``req`` with its arguments checked (:func:`svc.check_request`), or
        None after answering a bad one with ``Failed``: a request that
        bypassed the socket API's checks changes nothing and raises nothing."""
        try:
            return svc.check_request(req, now_ns)
        except QStackError as err:
            self._fail_token(req.token, err.code, err.detail)
            return None

    # ------------------------------------------------------------ requests from above
    @on(svc.Listen)
    def _listen(self, req: svc.Listen, now_ns: int) -> list[Action]:
        req = self._checked(req, now_ns)
        if req is None:
            return self._flush()
        if req.port in self.listening:
            self._fail_token(req.token, ErrorCode.TRANSPORT_PORT_IN_USE,
                             f"{self.node} already listens on {req.port}")
        else:
            self.listening.add(req.port)
            self._up(svc.Done(req.token, req.port))
        return self._flush()

    @on(svc.Unlisten)
    def _unlisten(self, req: svc.Unlisten, now_ns: int) -> list[Action]:
        req = self._checked(req, now_ns)
        if req is None:
            return self._flush()
        self.listening.discard(req.port)
        self._up(svc.Done(req.token))
        return self._flush()

    def _port_free(self, port: int) -> bool:
        return port not in self.listening and all(c.local_port != port for c in self.conns)

    @on(svc.Connect)
    def _connect(self, req: svc.Connect, now_ns: int) -> list[Action]:
        req = self._checked(req, now_ns)
        if req is None:
            return self._flush()
        port = req.local_port
        if port is None:
            port = next((p for p in EPHEMERAL_PORTS if self._port_free(p)), None)
            if port is None:
                self._fail_token(req.token, ErrorCode.TRANSPORT_PORT_IN_USE, "no free port")
                return self._flush()
        elif not self._port_free(port):
            self._fail_token(req.token, ErrorCode.TRANSPORT_PORT_IN_USE, f"port {port} is in use")
            return self._flush()
        conn = svc.Conn(port, req.remote, req.port)
        self.conns[conn] = _ConnState(conn, "syn_sent", connect_token=req.token)
        self._send(req.remote, Syn(port, req.port))
        if req.timeout_ns is not None:
            self._emit(StartTimer(("connect", conn), max(0, int(req.timeout_ns))))
        return self._flush()

    def _open_state(self, conn: svc.Conn, token: int) -> _ConnState | None:
        st = self.conns.get(conn)
        if st is None or st.state != "open":
            why = "is closing" if st is not None and st.state == "closing" else "is not open"
            closing = st is not None and st.state == "closing"
            code = ErrorCode.TRANSPORT_CLOSED if closing else ErrorCode.TRANSPORT_NOT_CONNECTED
            self._fail_token(token, code, f"connection {conn} {why}")
            return None
        return st

    @on(svc.SendQubit)
    def _send_qubit(self, req: svc.SendQubit, now_ns: int) -> list[Action]:
        req = self._checked(req, now_ns)
        if req is None:
            return self._flush()
        st = self._open_state(req.conn, req.token)
        if st is None:
            # The qubit stays with the caller.
            return self._flush()
        op = _Op("qubit", req.token, now_ns, need=1, qubit=req.qubit, metadata=req.metadata,
                 min_fidelity=req.min_fidelity)
        self._enqueue(st, op, req.timeout_ns, now_ns)
        return self._flush()

    @on(svc.CreateEpr)
    def _create_epr(self, req: svc.CreateEpr, now_ns: int) -> list[Action]:
        req = self._checked(req, now_ns)
        if req is None:
            return self._flush()
        st = self._open_state(req.conn, req.token)
        if st is None:
            return self._flush()
        op = _Op("epr", req.token, now_ns, need=req.number, number=req.number,
                 min_fidelity=req.min_fidelity, metadata=req.metadata)
        self._enqueue(st, op, req.timeout_ns, now_ns)
        return self._flush()

    @on(svc.SendBytes)
    def _send_bytes(self, req: svc.SendBytes, now_ns: int) -> list[Action]:
        req = self._checked(req, now_ns)
        if req is None:
            return self._flush()
        st = self._open_state(req.conn, req.token)
        if st is None:
            return self._flush()
        self._enqueue(st, _Op("data", req.token, now_ns, data=req.data), None, now_ns)
        return self._flush()

    @on(svc.Close)
    def _close(self, req: svc.Close, now_ns: int) -> list[Action]:
        req = self._checked(req, now_ns)
        if req is None:
            return self._flush()
        st = self.conns.get(req.conn)
        if st is None or st.state == "closing":
            self._fail_token(req.token, ErrorCode.TRANSPORT_NOT_CONNECTED,
                             f"connection {req.conn} is not open")
            return self._flush()
        if st.state == "syn_sent":
            # The Syn may have opened the connection at the far end already:
            # reset it there, so that no half-open connection is left behind.
            self._fail_token(st.connect_token, ErrorCode.TRANSPORT_CLOSED, "closed while connecting")
            self._emit(CancelTimer(("connect", st.conn)))
            self._reset_connect(st, f"{self.node} closed the connection while connecting")
            self._up(svc.Done(req.token))
            return self._flush()
        st.state = "closing"
        keep = deque()
        for op in st.queue:
            if st.busy and op is st.queue[0]:
                keep.append(op)   # already measured: its header must still go out
            elif op.kind == "data":
                keep.append(op)   # classical bytes are never lost: they go before FIN
            else:
                self._fail_op(op, ErrorCode.TRANSPORT_CLOSED, "the connection was closed")
        st.queue = keep
        self._pump(st, now_ns)
        self._up(svc.Done(req.token))
        return self._flush()

    # ------------------------------------------------------------ the send queue
    def _enqueue(self, st: _ConnState, op: _Op, timeout_ns: int | None, now_ns: int) -> None:
        if timeout_ns is not None and op.need:
            op.deadline_ns = now_ns + max(0, int(timeout_ns))
            self._emit(StartTimer(("op", op.token), max(0, int(timeout_ns))))
        st.queue.append(op)
        self._pump(st, now_ns)

    def _fail_op(self, op: _Op, code: ErrorCode, detail: str) -> None:
        self.stats["send_failures"] += 1
        if op.deadline_ns is not None:
            self._emit(CancelTimer(("op", op.token)))
        if op.kind == "qubit":
            self._fail_token(op.token, code, detail, op.qubit)
        elif op.kind == "epr":
            self._fail_token(op.token, code, f"{detail} ({op.made} of {op.number} pairs made)")
        else:
            self._fail_token(op.token, code, detail)

    def _finish_op(self, st: _ConnState, op: _Op, value: Any) -> None:
        st.queue.popleft()
        if op.deadline_ns is not None:
            self._emit(CancelTimer(("op", op.token)))
        self._up(svc.Done(op.token, value))

    def _pump(self, st: _ConnState, now_ns: int) -> None:
        """Serve the head of the queue as far as the pairs held allow."""
        conn = st.conn
        while st.queue and not st.busy:
            op = st.queue[0]
            if op.kind == "data":
                self._send(conn.remote, Data(conn.local_port, conn.remote_port, st.tx_seq, op.data))
                st.tx_seq += 1
                self.stats["bytes_sent"] += len(op.data)
                self._finish_op(st, op, len(op.data))
            elif op.kind == "qubit":
                if not st.pool:
                    break
                pair = st.pool.popleft()
                st.busy = True
                self._op(BellMeasure(op.qubit, pair.qubit), "bsm", conn, op, pair)
            else:  # epr
                while st.pool and op.need:
                    pair = st.pool.popleft()
                    self._send(conn.remote, EprHeader(conn.local_port, conn.remote_port, st.tx_seq,
                                                      pair.pid, op.started_ns, op.metadata))
                    self._up(svc.EprArrived(conn, st.tx_seq, pair.qubit, pair.fidelity, pair.pid,
                                            True, op.token, op.metadata))
                    st.tx_seq += 1
                    op.need -= 1
                    op.made += 1
                    self.stats["epr_created"] += 1
                    self.stats["pairs_used"] += 1
                    # The local half is Phi+ only if the far end corrects; this
                    # end never touches its half, so the pair is usable at once.
                if op.need:
                    break
                self._finish_op(st, op, op.made)
        if st.state == "closing" and not st.queue and not st.busy:
            self._send(conn.remote, Fin(conn.local_port, conn.remote_port, st.tx_seq))
            self._drop(st)
            return
        self._release_surplus(st)
        self._top_up(st, now_ns)

    def _needed(self, st: _ConnState) -> int:
        return sum(op.need for i, op in enumerate(st.queue)
                   if op.kind != "data" and not (i == 0 and st.busy))

    def _release_surplus(self, st: _ConnState) -> None:
        extra = len(st.pool) - self._needed(st)
        for _ in range(max(0, extra)):
            self._release(st.pool.pop())

    def _release(self, pair: _Pair) -> None:
        """Give up a pair we initiated: free our half, tell the far end."""
        self.stats["pairs_released"] += 1
        if not pair.expired:
            self._op(Discard(pair.qubit), "discard")
        self._send(pair.remote, PairRelease(pair.pid))

    def _top_up(self, st: _ConnState, now_ns: int) -> None:
        """Ask the network for the pairs the queue needs and nobody asked for."""
        if st.retry_pending:
            return
        deficit = self._needed(st) - len(st.pool) - st.expected
        if deficit <= 0:
            return
        wanting = [op for op in st.queue if op.need]
        if any(op.deadline_ns is None for op in wanting):
            max_time = 0
        else:
            max_time = max(op.deadline_ns for op in wanting) - now_ns
            if max_time <= 0:
                return   # the deadlines fire now and fail the items
        self._next_req = (self._next_req + 1) & 0xFFFF
        rid = self._req_base | self._next_req
        self.requests[rid] = (st.conn, deficit)
        st.expected += deficit
        self.stats["pairs_requested"] += deficit
        req = NetRequest(st.conn.remote, number=min(deficit, 65535),
                         min_fidelity=max(op.min_fidelity for op in wanting),
                         max_time_ns=max_time, type=NetRequestType.KEEP, request_id=rid,
                         app_tag=st.conn.local_port)
        self._emit(Submit(req, to=self.network))

    # ------------------------------------------------------------ the network layer
    @on(NetOk)
    def _net_ok(self, ok: NetOk, now_ns: int) -> list[Action]:
        pid = pair_key(ok.pair_id)
        pair = _Pair(pid, ok.qubit, int(ok.bell_index), float(ok.fidelity), ok.remote)
        if ok.qubit is None:
            # A measure-directly pair is of no use to the transport (it asks for K only).
            self._emit(Fail(ErrorCode.TRANSPORT_HEADER_MISMATCH,
                            f"pair {pid} came without a qubit", context=ok))
            return self._flush()
        if ok.initiator:
            entry = self.requests.get(ok.request_id)
            st = None
            if entry is not None:
                conn, remaining = entry
                remaining -= 1
                if remaining <= 0 or ok.request_done:
                    del self.requests[ok.request_id]
                else:
                    self.requests[ok.request_id] = (conn, remaining)
                st = self.conns.get(conn)
                if st is not None:
                    st.expected = max(0, st.expected - 1)
            if st is None or st.state == "syn_sent":
                self._release(pair)
            else:
                st.pool.append(pair)
                self._pump(st, now_ns)
            return self._flush()
        # A pair the far end asked for: bind it to its header, or wait for it.
        if self.released.take(pid, now_ns):
            self._op(Discard(ok.qubit), "discard")
            return self._flush()
        waiting = self.headers.pop(pid, None)
        if waiting is not None:
            self._emit(CancelTimer(("header", pid)))
            conn, seq = waiting
            st = self.conns.get(conn)
            item = st.rx_items.get(seq) if st is not None else None
            if item is None:
                self._op(Discard(ok.qubit), "discard")
            else:
                self._bind(st, seq, item, pair)
        else:
            self.remote_pairs[pid] = pair
            self._emit(StartTimer(("pair", pid), self.bind_timeout_ns))
        return self._flush()

    @on(NetErr)
    def _net_err(self, err: NetErr, now_ns: int) -> list[Action]:
        entry = self.requests.pop(err.request_id, None)
        if entry is None or entry[0].remote != err.remote:
            if entry is not None:
                self.requests[err.request_id] = entry
            return []
        self.stats["net_errors"] += 1
        conn, remaining = entry
        st = self.conns.get(conn)
        if st is None:
            return []
        st.expected = max(0, st.expected - remaining)
        code = ErrorCode(err.code)
        if code in _PERMANENT:
            for op in [op for i, op in enumerate(st.queue)
                       if op.need and not (i == 0 and st.busy)]:
                st.queue.remove(op)
                self._fail_op(op, ErrorCode.TRANSPORT_NO_PAIR,
                              f"the network cannot serve {conn.remote}: {code.name} {err.detail}")
            self._pump(st, now_ns)
        else:
            # Transient (timeout, torn-down circuit): ask again after a pause, so
            # a network that fails at once does not spin the node.
            st.retry_pending = True
            self._emit(StartTimer(("retry", conn), self.retry_ns))
        return self._flush()

    @on(NetExpire)
    def _net_expire(self, exp: NetExpire, now_ns: int) -> list[Action]:
        pid = pair_key(exp.pair_id)
        self.stats["pairs_expired"] += 1
        if pid in self.remote_pairs:
            del self.remote_pairs[pid]
            self._emit(CancelTimer(("pair", pid)))
            self.expired.add(pid, now_ns + self.bind_timeout_ns)
            return self._flush()
        if pid in self.headers:
            conn, seq = self.headers.pop(pid)
            self._emit(CancelTimer(("header", pid)))
            self._lose(conn, seq, ErrorCode.NET_CIRCUIT_TORN_DOWN, f"pair {pid} expired: {exp.reason}")
            return self._flush()
        for st in self.conns.values():
            for pair in st.pool:
                if pair.pid == pid:
                    st.pool.remove(pair)
                    self._top_up(st, now_ns)
                    return self._flush()
        for ctx in self._ops.values():
            if ctx and ctx[0] == "bsm" and ctx[3].pid == pid:
                ctx[3].expired = True   # the measurement will fail; the qubit stays
                return self._flush()
        if pid[0] != self.node:
            # Not held (bound already, discarded, released, or not arrived yet):
            # remembered in case its header is still to come. A pair this node
            # heads is never looked up (a header naming it is refused, §5).
            self.expired.add(pid, now_ns + self.bind_timeout_ns)
        return self._flush()

    # ------------------------------------------------------------ operations
    @on(OperationDone)
    def _op_done(self, ev: OperationDone, now_ns: int) -> list[Action]:
        ctx = self._ops.pop(ev.op_id, None)
        if ctx is None or ctx[0] == "discard":
            return []
        if ctx[0] == "bsm":
            self._bsm_done(ctx[1], ctx[2], ctx[3], ev.outcome, now_ns)
        elif ctx[0] == "fix":
            conn, seq = ctx[1], ctx[2]
            st = self.conns.get(conn)
            item = st.rx_items.get(seq) if st is not None else None
            if item is not None:
                if isinstance(ev.outcome, BaseException):
                    self._lose(conn, seq, getattr(ev.outcome, "code", ErrorCode.QUBIT_UNAVAILABLE),
                               f"correction failed: {ev.outcome}")
                else:
                    item.ready = True
                    self._deliver_ready(st)
        return self._flush()

    def _bsm_done(self, conn: svc.Conn, op: _Op, pair: _Pair, outcome: Any, now_ns: int) -> None:
        st = self.conns.get(conn)
        if st is None:
            return
        st.busy = False
        if isinstance(outcome, BaseException):
            if pair.expired:
                # The pair vanished under the measurement, which therefore did not
                # happen: the qubit is intact, the head item waits for another pair.
                self._pump(st, now_ns)
                return
            st.queue.popleft()
            st.pool.appendleft(pair)
            code = getattr(outcome, "code", ErrorCode.QUBIT_UNAVAILABLE)
            self._fail_op(op, code, f"Bell measurement failed: {outcome}")
            self._pump(st, now_ns)
            return
        bsm = int(outcome)
        self._send(conn.remote, QubitHeader(conn.local_port, conn.remote_port, st.tx_seq, pair.pid,
                                            bool(bsm >> 1), bool(bsm & 1), op.started_ns,
                                            op.metadata))
        st.tx_seq += 1
        self.stats["qubits_sent"] += 1
        self.stats["pairs_used"] += 1
        self._finish_op(st, op, pair.pid)
        self._pump(st, now_ns)

    # ------------------------------------------------------------ timers
    @on(TimerFired)
    def _timer(self, ev: TimerFired, now_ns: int) -> list[Action]:
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
                                      f"no end-to-end pair with {st.conn.remote} in time")
                        self._pump(st, now_ns)
                        return self._flush()
        elif kind == "connect":
            st = self.conns.get(arg)
            if st is not None and st.state == "syn_sent":
                self._fail_token(st.connect_token, ErrorCode.TRANSPORT_TIMEOUT,
                                 f"no answer from {arg.remote}:{arg.remote_port}")
                self._reset_connect(st, f"{self.node} gave up connecting (no SynAck in time)")
        elif kind == "retry":
            st = self.conns.get(arg)
            if st is not None:
                st.retry_pending = False
                self._top_up(st, now_ns)
        elif kind == "pair":
            pair = self.remote_pairs.pop(arg, None)
            if pair is not None:
                self._op(Discard(pair.qubit), "discard")
                self._emit(Fail(ErrorCode.TRANSPORT_HEADER_MISMATCH,
                                f"pair {arg} from {pair.remote}: no header within "
                                f"{self.bind_timeout_ns} ns, discarded"))
        elif kind == "header":
            waiting = self.headers.pop(arg, None)
            if waiting is not None:
                self._lose(waiting[0], waiting[1], ErrorCode.TRANSPORT_HEADER_MISMATCH,
                           f"header names pair {arg}, which did not arrive")
        return self._flush()

    # ------------------------------------------------------------ messages
    @on(MessageReceived)
    def _message(self, ev: MessageReceived, now_ns: int) -> list[Action]:
        handler = _MESSAGE_HANDLERS.get(type(ev.msg))
        if handler is None:
            return [Fail(ErrorCode.UNKNOWN_TYPE, f"transport got {type(ev.msg).__name__}")]
        handler(self, ev.src, ev.msg, now_ns)
        return self._flush()

    def _on_syn(self, src: str, msg: Syn, now_ns: int) -> None:
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        if conn in self.conns:          # a repeated SYN: answer again
            self._send(src, SynAck(msg.dst_port, msg.src_port))
        elif msg.dst_port in self.listening:
            self.conns[conn] = _ConnState(conn, "open")
            self._send(src, SynAck(msg.dst_port, msg.src_port))
            self._up(svc.Incoming(msg.dst_port, conn))
        else:
            self._send(src, Rst(msg.dst_port, msg.src_port,
                                int(ErrorCode.TRANSPORT_CONNECTION_REFUSED),
                                f"{self.node} does not listen on {msg.dst_port}"))

    def _on_synack(self, src: str, msg: SynAck, now_ns: int) -> None:
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        st = self.conns.get(conn)
        if st is None:
            # A connect this node gave up (closed, timed out, forgotten in a
            # restart) that the far end accepted: reset the far end's half-open
            # connection. An Rst is never answered, so this cannot loop.
            self._send(src, Rst(msg.dst_port, msg.src_port, int(ErrorCode.TRANSPORT_NOT_CONNECTED),
                                f"no connection {conn} on {self.node}"))
        elif st.state == "syn_sent":
            st.state = "open"
            self._emit(CancelTimer(("connect", conn)))
            self._up(svc.Done(st.connect_token, conn))

    def _on_rst(self, src: str, msg: Rst, now_ns: int) -> None:
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        st = self.conns.get(conn)
        if st is None:
            return      # never answer an Rst (with an Rst or anything else)
        try:
            code = ErrorCode(msg.code)
        except ValueError:
            code = ErrorCode.TRANSPORT_CLOSED
        if st.state == "syn_sent":
            self._emit(CancelTimer(("connect", conn)))
            self._fail_token(st.connect_token, code, msg.detail)
        else:
            self._abort(st, code, msg.detail)
            return
        self._drop(st)

    def _on_fin(self, src: str, msg: Fin, now_ns: int) -> None:
        st = self.conns.get(svc.Conn(msg.dst_port, src, msg.src_port))
        if st is not None:
            st.rx_fin = msg.seq
            self._deliver_ready(st)

    def _on_header(self, src: str, msg: QubitHeader | EprHeader, now_ns: int) -> None:
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        st = self.conns.get(conn)
        pid = tuple(msg.pair)
        if st is None or st.state == "syn_sent":
            # Nobody will take this item: free the pair now or when it comes.
            self._drop_remote_pair(pid)
            self._send(src, Rst(msg.dst_port, msg.src_port, int(ErrorCode.TRANSPORT_NOT_CONNECTED),
                                f"no connection {conn} on {self.node}"))
            return
        if pid[0] != src:
            # The sender of an item asks for its pairs, so it heads them: a
            # header naming another node's pair is refused (the pair is not
            # touched, so its real owner still gets it).
            self._emit(Fail(ErrorCode.TRANSPORT_HEADER_MISMATCH,
                            f"{src} sent a header for pair {pid}, which {pid[0]} heads"))
            self._send(src, Rst(msg.dst_port, msg.src_port,
                                int(ErrorCode.TRANSPORT_HEADER_MISMATCH),
                                f"pair {pid} is not {src}'s"))
            return
        if msg.seq < st.rx_next or msg.seq in st.rx_items:
            self._drop_remote_pair(pid)   # a duplicate: the first copy stands
            return
        kind = "qubit" if isinstance(msg, QubitHeader) else "epr"
        item = _Rx(kind, msg)
        st.rx_items[msg.seq] = item
        if self.expired.take(pid, now_ns):
            self._lose(conn, msg.seq, ErrorCode.NET_CIRCUIT_TORN_DOWN, f"pair {pid} expired")
            return
        pair = self.remote_pairs.pop(pid, None)
        if pair is not None:
            self._emit(CancelTimer(("pair", pid)))
            self._bind(st, msg.seq, item, pair)
        else:
            self.headers[pid] = (conn, msg.seq)
            self._emit(StartTimer(("header", pid), self.bind_timeout_ns))

    def _on_data(self, src: str, msg: Data, now_ns: int) -> None:
        conn = svc.Conn(msg.dst_port, src, msg.src_port)
        st = self.conns.get(conn)
        if st is None or st.state == "syn_sent":
            self._send(src, Rst(msg.dst_port, msg.src_port, int(ErrorCode.TRANSPORT_NOT_CONNECTED),
                                f"no connection {conn} on {self.node}"))
            return
        if msg.seq < st.rx_next or msg.seq in st.rx_items:
            return
        st.rx_items[msg.seq] = _Rx("data", msg, ready=True)
        self._deliver_ready(st)

    def _on_release(self, src: str, msg: PairRelease, now_ns: int) -> None:
        pid = tuple(msg.pair)
        if pid[0] != src:      # only the pair's head may release it
            self._emit(Fail(ErrorCode.TRANSPORT_HEADER_MISMATCH,
                            f"{src} released pair {pid}, which {pid[0]} heads"))
            return
        self._drop_remote_pair(pid)

    # ------------------------------------------------------------ receiving
    def _drop_remote_pair(self, pid: tuple) -> None:
        pair = self.remote_pairs.pop(pid, None)
        if pair is not None:
            self._emit(CancelTimer(("pair", pid)))
            self._op(Discard(pair.qubit), "discard")
        elif not self.expired.take(pid, self._now):
            self.released.add(pid, self._now + self.bind_timeout_ns)

    def _bind(self, st: _ConnState, seq: int, item: _Rx, pair: _Pair) -> None:
        item.qubit = pair.qubit
        item.fidelity = pair.fidelity
        if item.kind == "qubit":
            bsm = (int(item.msg.m_x) << 1) | int(item.msg.m_z)
            gate = correction_gate(bsm, pair.bell_index)
        else:
            gate = _CORRECTION[pair.bell_index & 3]   # bring the pair to Phi+
        if gate is None:
            item.ready = True
            self._deliver_ready(st)
        else:
            self._op(Gate(gate, (pair.qubit,)), "fix", st.conn, seq)

    def _lose(self, conn: svc.Conn, seq: int, code: ErrorCode, detail: str) -> None:
        st = self.conns.get(conn)
        if st is None:
            return
        item = st.rx_items.get(seq)
        if item is None:
            return
        item.ready, item.code, item.detail = True, ErrorCode(code), detail
        self._deliver_ready(st)

    def _deliver_ready(self, st: _ConnState) -> None:
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
                self._up(svc.Lost(conn, seq, item.code, item.detail, item.kind))
            elif item.kind == "data":
                self.stats["bytes_received"] += len(msg.payload)
                self._up(svc.DataArrived(conn, seq, msg.payload))
            elif item.kind == "qubit":
                self.stats["qubits_received"] += 1
                latency = max(0, self._now - msg.sent_ns)
                self.deliveries.append(("qubit", latency, item.fidelity))
                self._up(svc.QubitArrived(conn, seq, item.qubit, msg.metadata, item.fidelity,
                                          latency))
            elif item.kind == "epr":
                self.stats["epr_received"] += 1
                latency = max(0, self._now - msg.sent_ns)
                self.deliveries.append(("epr", latency, item.fidelity))
                self._up(svc.EprArrived(conn, seq, item.qubit, item.fidelity, tuple(msg.pair),
                                        False, None, msg.metadata))
        if st.rx_fin is not None and st.rx_next >= st.rx_fin and not st.peer_closed:
            st.peer_closed = True
            self._up(svc.PeerClosed(conn))

    # ------------------------------------------------------------ teardown
    def _abort(self, st: _ConnState, code: ErrorCode, detail: str) -> None:
        """The connection died: fail what waits, tell the application."""
        for i, op in enumerate(list(st.queue)):
            if not (i == 0 and st.busy):
                self._fail_op(op, code, detail)
        st.queue.clear()
        if not st.peer_closed:
            st.peer_closed = True
            self._up(svc.PeerClosed(st.conn, code, detail))
        self._drop(st)

    def _reset_connect(self, st: _ConnState, detail: str) -> None:
        """Give up a connect (SYN_SENT): the Syn may have opened the connection
        at the far end, so reset it there (an Rst for a connection the far end
        does not have is ignored), then forget it."""
        conn = st.conn
        self._send(conn.remote, Rst(conn.local_port, conn.remote_port,
                                    int(ErrorCode.TRANSPORT_CLOSED), detail))
        self._drop(st)

    def _drop(self, st: _ConnState) -> None:
        """Forget a connection, giving up the pairs it holds."""
        self.conns.pop(st.conn, None)
        while st.pool:
            self._release(st.pool.popleft())
        for seq, item in st.rx_items.items():
            if item.qubit is not None:
                self._op(Discard(item.qubit), "discard")
            elif item.kind in ("qubit", "epr"):
                pid = tuple(item.msg.pair)
                if self.headers.pop(pid, None) is not None:
                    self._emit(CancelTimer(("header", pid)))
                    self.released.add(pid, self._now + self.bind_timeout_ns)
        st.rx_items.clear()

    @on(PeerDown)
    def _peer_down(self, ev: PeerDown, now_ns: int) -> list[Action]:
        if ev.peer == self.node:
            # This node restarted: its qubits and connections are gone.
            self.conns.clear()
            self.requests.clear()
            self.remote_pairs.clear()
            self.headers.clear()
            self.released.clear()
            self.expired.clear()
            self._ops.clear()
            return []
        for st in [s for s in self.conns.values() if s.conn.remote == ev.peer]:
            if st.state == "syn_sent":
                self._fail_token(st.connect_token, ErrorCode.TRANSPORT_CLOSED, f"{ev.peer} went down")
                self._drop(st)
            else:
                self._abort(st, ErrorCode.TRANSPORT_CLOSED, f"{ev.peer} went down")
        return self._flush()

    # ------------------------------------------------------------ time
    _now = 0

    def handle(self, event: Any, now_ns: int) -> list[Action]:
        self._now = now_ns
        if self.expired:
            self.expired.prune(now_ns)
        if self.released:
            self.released.prune(now_ns)
        return super().handle(event, now_ns)


_MESSAGE_HANDLERS = {
    Syn: TeleportTransport._on_syn,
    SynAck: TeleportTransport._on_synack,
    Rst: TeleportTransport._on_rst,
    Fin: TeleportTransport._on_fin,
    QubitHeader: TeleportTransport._on_header,
    EprHeader: TeleportTransport._on_header,
    Data: TeleportTransport._on_data,
    PairRelease: TeleportTransport._on_release,
}
