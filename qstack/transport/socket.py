"""The socket API applications use: :class:`QSocket`, :class:`Qubit`, :class:`NodeContext`.

Written against :class:`~qstack.transport.runtime.TransportRuntime`, so the same
application runs in the simulator and in the emulator::

    async def alice(ctx):
        async with await ctx.connect("bob", 7) as sock:
            q = ctx.qubit()
            q.h()
            await sock.send_qubit(q)          # teleported; q is gone from alice

    async def bob(ctx):
        server = ctx.listen(7)
        sock = await server.accept()
        q = await sock.recv_qubit()
        return await q.measure("X")

Times are integer nanoseconds (``timeout_ns=None``: wait without limit).
Failures raise :class:`TransportError` (a ``QStackError``) with a defined code;
a timeout raises :class:`TransportTimeout`, which is also a ``TimeoutError``.

Arguments are checked at the call, before anything changes (no request is
made, no qubit is touched, the socket stays as it was): a bad one raises
``BAD_FIELD`` (wrong type: a ``bool`` or ``1.5`` is not an integer, a
``str`` is not bytes), ``OUT_OF_RANGE`` (a port outside 0..65535, a
``number`` outside 1..65535, a fidelity outside [0, 1] or NaN, metadata over
1024 bytes, data over 65536, a negative timeout) or ``INVALID_PARAMETER`` (a
NaN or infinite angle, a basis that is not "Z", "X", "Y" or a pair of finite
angles), with a detail that names the argument and the value. Timeouts are
integers in 0..2**63-1; one that would end after the end of simulated time
(2**62 ns, :data:`qstack.core.args.END_OF_TIME_NS`) is no limit. ``specs/transport.md``
§1 lists them.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable

from qstack.core.args import (
    bytes_arg, delay_arg, float_arg, int_arg, name_arg, show, timeout_arg,
)
from qstack.core.errors import ErrorCode, QStackError
from qstack.core.runtime import NodeDown, NodeUp
from qstack.network.service import MD_BASIS_SETS
from qstack.physical.ops import Discard, Gate, Measure, check_angle, check_basis
from qstack.transport import service as svc
from qstack.transport.runtime import TransportRuntime

__all__ = ["QSocket", "Qubit", "NodeContext", "TransportError", "TransportTimeout",
           "TransportClient", "NodeLog"]


class TransportError(QStackError):
    """A socket operation failed; ``code`` says why. ``qubits`` holds the
    qubits that stay with the caller (a send that failed, EPR halves already made)."""

    def __init__(self, code: ErrorCode, detail: str = "", qubits: list | None = None,
                 handed_back: bool = True) -> None:
        super().__init__(code, detail)
        self.qubits = qubits or []
        #: (a failed send) the qubit was not measured and is still the caller's
        self.handed_back = handed_back


class TransportTimeout(TransportError, TimeoutError):
    """A socket operation ran out of time (``TRANSPORT_TIMEOUT``)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(ErrorCode.TRANSPORT_TIMEOUT, detail)


_PORTS = (0, 65535)


def _port(name: str, value: Any) -> int:
    return int_arg(name, value, *_PORTS, error=TransportError)


def _number(value: Any) -> int:
    return int_arg("number", value, 1, 65535, error=TransportError)


def _fidelity(value: Any) -> float:
    return float_arg("min_fidelity", value, 0.0, 1.0, error=TransportError)


def _basis(value: Any) -> Any:
    return None if value is None else check_basis(value, TransportError, "measure basis")


# ---------------------------------------------------------------- qubits

class Qubit:
    """A qubit in this node's memory, as an application holds it.

    Gates and :meth:`discard` are queued, in the order called, and return at
    once; each costs its duration before the node's next network operation or
    measurement result, and an error of one is raised by this context's next
    call that waits for the local operations (``specs/transport.md``, "Local
    operations"). After the qubit is measured, discarded or
    sent, using it raises ``QUBIT_UNAVAILABLE``. ``metadata`` and
    ``fidelity`` are set on qubits that arrived over a socket.
    """

    __slots__ = ("_ctx", "_ref", "_gone", "metadata", "fidelity")

    def __init__(self, ctx: "NodeContext", ref: Any, metadata: bytes = b"",
                 fidelity: float | None = None) -> None:
        self._ctx = ctx
        self._ref = ref
        self._gone = ""
        self.metadata = metadata
        self.fidelity = fidelity
        ctx._qubits[id(self)] = self     # held by the application until consumed

    @property
    def ref(self) -> Any:
        """The driver's opaque reference (for a driver or a test, not for applications)."""
        self._check()
        return self._ref

    @property
    def alive(self) -> bool:
        return not self._gone

    def _check(self) -> None:
        if self._gone:
            raise QStackError(ErrorCode.QUBIT_UNAVAILABLE, f"this qubit was {self._gone}")

    def _consume(self, why: str) -> Any:
        self._check()
        self._gone = why
        self._ctx._qubits.pop(id(self), None)
        return self._ref

    def _gate(self, name: str, *params: float) -> None:
        self._check()
        ctx = self._ctx
        ctx.runtime.enqueue(Gate(name, (self._ref,), params), ctx._op_failed)

    def x(self) -> None: self._gate("x")
    def y(self) -> None: self._gate("y")
    def z(self) -> None: self._gate("z")
    def h(self) -> None: self._gate("h")
    def s(self) -> None: self._gate("s")
    def sdg(self) -> None: self._gate("sdg")
    def t(self) -> None: self._gate("t")

    def rx(self, theta: float) -> None:
        """Rotate about X by ``theta`` radians (a finite number)."""
        self._gate("rx", check_angle("theta", theta))

    def ry(self, theta: float) -> None:
        """Rotate about Y by ``theta`` radians (a finite number)."""
        self._gate("ry", check_angle("theta", theta))

    def rz(self, theta: float) -> None:
        """Rotate about Z by ``theta`` radians (a finite number)."""
        self._gate("rz", check_angle("theta", theta))

    def _two(self, name: str, other: "Qubit") -> None:
        self._check()
        if not isinstance(other, Qubit):
            raise QStackError(ErrorCode.BAD_FIELD, f"{name}: the other qubit: expected a Qubit, "
                                                   f"got {show(other)}")
        if other is self:
            raise QStackError(ErrorCode.INVALID_PARAMETER, f"{name} of a qubit with itself")
        if other._ctx.name != self._ctx.name:
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              f"{name}: {other!r} is on another node than {self!r}")
        other._check()
        ctx = self._ctx
        ctx.runtime.enqueue(Gate(name, (self._ref, other._ref)), ctx._op_failed)

    def cnot(self, target: "Qubit") -> None:
        """CNOT with this qubit as control."""
        self._two("cnot", target)

    def cz(self, other: "Qubit") -> None:
        self._two("cz", other)

    async def measure(self, basis: Any = "Z") -> int:
        """Measure in ``basis`` ("Z", "X", "Y" or (theta, phi), finite angles
        in radians); the qubit is consumed. Returns 0 or 1 once the readout
        has finished. A bad basis is refused first (``INVALID_PARAMETER``,
        ``BAD_FIELD``): the qubit is then untouched and still usable.

        The outcome reflects every operation called before on this node. If
        one of this context's queued operations failed, its error is raised
        instead (the measurement, queued after it, was still carried out)."""
        self._check()                    # (a consumed qubit is refused before its basis)
        return (await self._ctx.measure_all((self,), basis))[0]

    def _failed(self, err: QStackError) -> None:
        # gone from memory meanwhile; otherwise (node down, past the end of
        # time) not measured: still the caller's
        self._gone = "lost" if err.code == ErrorCode.QUBIT_UNAVAILABLE else ""

    def peek(self) -> Any:
        """This qubit's density matrix (2x2 numpy array) now, left undisturbed.

        An oracle for tests and demos: no physical operation, no time taken,
        only in runtimes that hold a simulated state (the simulator)."""
        self._check()
        return self._ctx.runtime.peek(self._ref)

    def fidelity_to(self, ket: Any) -> float:
        """Fidelity <psi|rho|psi> of this qubit's state (:meth:`peek`) with
        the pure state ``ket`` (a length-2 vector, normalised here)."""
        import numpy as np

        psi = np.asarray(ket, dtype=complex)
        psi = psi / np.linalg.norm(psi)
        return float(np.real(psi.conj() @ self.peek() @ psi))

    def discard(self) -> None:
        """Free the qubit's memory slot (queued, like a gate)."""
        ctx = self._ctx
        ctx.runtime.enqueue(Discard(self._consume("discarded")), ctx._op_failed)

    def __repr__(self) -> str:
        state = f" ({self._gone})" if self._gone else ""
        return f"<Qubit {self._ref!r} on {self._ctx.name}{state}>"


# ---------------------------------------------------------------- queues

class _Queue:
    """A FIFO that tasks await, fed by delivery callbacks. ``on_take`` (if
    set) is called for every item a task takes (the receive window moves on)."""

    __slots__ = ("items", "waiters", "closed", "on_take")

    def __init__(self, on_take: Callable[[], None] | None = None) -> None:
        self.items: deque = deque()
        self.waiters: deque = deque()
        self.closed: BaseException | None = None
        self.on_take = on_take

    def put(self, item: Any) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(item)
                return
        self.items.append(item)

    def close(self, exc: BaseException) -> None:
        self.closed = exc
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(exc)

    async def get(self, rt: TransportRuntime, timeout_ns: int | None, what: str) -> Any:
        if self.items:
            item = self.items.popleft()
        else:
            if self.closed is not None:
                raise self.closed
            fut = rt.future()
            self.waiters.append(fut)
            try:
                item = await rt.wait(fut, timeout_ns)
            except TimeoutError:
                raise TransportTimeout(f"no {what} within {timeout_ns} ns") from None
            finally:
                if fut in self.waiters:
                    self.waiters.remove(fut)
        if self.on_take is not None:
            self.on_take()
        return item


class _ConnQueues:
    __slots__ = ("qubits", "eprs", "data", "measured", "closed", "ended")

    def __init__(self, on_take: Callable[[], None] | None = None) -> None:
        self.qubits = _Queue(on_take)
        self.eprs = _Queue(on_take)
        self.data = _Queue(on_take)
        self.measured = _Queue(on_take)
        self.closed = False
        #: how the far end ended the connection (its PeerClosed), if it did
        self.ended: TransportError | None = None


class TransportClient:
    """The socket side of one node's transport: turns requests into futures
    and routes what the protocol delivers to the sockets. One per node,
    shared by every application running there."""

    def __init__(self, runtime: TransportRuntime) -> None:
        self.runtime = runtime
        self._next_token = 0
        self._pending: dict[int, Any] = {}
        self._epr_made: dict[int, list] = {}
        self._accept: dict[int, _Queue] = {}
        self._conns: dict[svc.Conn, _ConnQueues] = {}
        self.down: QStackError | None = None     # set while the node is down (crashed)
        runtime.subscribe(self._on_event)

    # -------------------------------------------------------- requests
    def token(self) -> int:
        self._next_token += 1
        return self._next_token

    def request(self, make: Callable[[int], Any]) -> tuple[int, Any]:
        """Submit ``make(token)``; return the token and the future of its Done/Failed.

        The protocol answers every request with a Done or a Failed; should it
        raise instead (a bug: the socket checks the arguments before), the
        caller gets a ``TransportError`` (``INTERNAL_ERROR``, the exception
        chained) rather than the protocol's exception, and nothing waits."""
        token = self.token()
        fut = self.runtime.future()
        if self.down is not None:
            fut.set_exception(self.down)   # the node crashed: nothing is there to answer
            return token, fut
        self._pending[token] = fut
        try:
            self.runtime.submit(make(token))
        except Exception as exc:
            self._pending.pop(token, None)
            self._epr_made.pop(token, None)
            if isinstance(exc, QStackError):
                raise
            raise TransportError(ErrorCode.INTERNAL_ERROR,
                                 f"the transport raised {type(exc).__name__} instead of "
                                 f"answering: {exc}") from exc
        return token, fut

    def tell(self, request: Any) -> None:
        """Submit ``request``, which has no answer (``Consumed``), or whose
        answer nobody waits for."""
        if self.down is None:
            self.runtime.submit(request)

    async def call(self, make: Callable[[int], Any], timeout_ns: int | None = None) -> Any:
        _, fut = self.request(make)
        try:
            return await self.runtime.wait(fut, timeout_ns)
        except TimeoutError:
            raise TransportTimeout(f"no answer within {timeout_ns} ns") from None

    def conn_queues(self, conn: svc.Conn) -> _ConnQueues:
        q = self._conns.get(conn)
        if q is None:
            q = self._conns[conn] = _ConnQueues(lambda: self.tell(svc.Consumed(conn, 1)))
            if self.down is not None:
                for queue in (q.qubits, q.eprs, q.data, q.measured):
                    queue.close(self.down)
        return q

    # -------------------------------------------------------- deliveries
    def _on_event(self, ev: Any) -> None:
        kind = type(ev)
        if kind is NodeDown:
            self._node_down(ev)
            return
        if kind is NodeUp:
            self.node_up()
            return
        if kind is svc.Done:
            fut = self._pending.pop(ev.token, None)
            if fut is not None and not fut.done():
                fut.set_result(ev.value)
        elif kind is svc.Failed:
            fut = self._pending.pop(ev.token, None)
            made = self._epr_made.pop(ev.token, [])
            if fut is not None and not fut.done():
                fut.set_exception(TransportError(ev.code, ev.detail, made,
                                                 handed_back=ev.qubit is not None))
        elif kind is svc.Incoming:
            q = self._accept.get(ev.port)
            if q is None:
                self.runtime.submit(svc.Close(self.token(), ev.conn))
            else:
                self.conn_queues(ev.conn)
                q.put(ev.conn)
        elif kind is svc.QubitArrived:
            self.conn_queues(ev.conn).qubits.put(ev)
        elif kind is svc.EprArrived:
            if ev.initiator and ev.token is not None:
                self._epr_made.setdefault(ev.token, []).append(ev)
            else:
                self.conn_queues(ev.conn).eprs.put(ev)
        elif kind is svc.PairMeasured:
            if ev.initiator and ev.token is not None:
                self._epr_made.setdefault(ev.token, []).append(ev)
            else:
                self.conn_queues(ev.conn).measured.put(ev)
        elif kind is svc.DataArrived:
            self.conn_queues(ev.conn).data.put(ev.data)
        elif kind is svc.Lost:
            queues = self.conn_queues(ev.conn)
            # The loss surfaces where the lost item would have: recv_epr, recv_qubit
            # or recv_measured.
            queue = (queues.eprs if ev.kind == "epr" else
                     queues.measured if ev.kind == "measured" else queues.qubits)
            queue.put(TransportError(ev.code, f"{ev.kind} {ev.seq} of {ev.conn} was lost: "
                                              f"{ev.detail}"))
        elif kind is svc.PeerClosed:
            q = self.conn_queues(ev.conn)
            q.closed = True
            code = ev.code if ev.code is not None else ErrorCode.TRANSPORT_CLOSED
            detail = ev.detail or f"{ev.conn.remote} closed the connection"
            q.ended = TransportError(code, detail)
            for queue in (q.qubits, q.eprs, q.data, q.measured):
                queue.close(TransportError(code, detail))

    def take_epr(self, token: int) -> list:
        return self._epr_made.pop(token, [])

    def _node_down(self, ev: NodeDown) -> None:
        """The node crashed: every connection, listening port and pending call
        is gone; everything waiting fails with ``TRANSPORT_NODE_DOWN``, and
        calls fail so until the node is back (:meth:`node_up`)."""
        # (nothing is handed back: the node's memory is gone with it)
        self.down = TransportError(ErrorCode.TRANSPORT_NODE_DOWN,
                                   f"{ev.node} crashed: its connections and qubits are gone",
                                   handed_back=False)
        pending, self._pending = self._pending, {}
        self._epr_made.clear()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(self.down)
        for q in list(self._accept.values()):
            q.close(self.down)
        for q in list(self._conns.values()):
            q.closed = True
            for queue in (q.qubits, q.eprs, q.data, q.measured):
                queue.close(self.down)

    def node_up(self) -> None:
        """The node restarted: new calls go to its fresh stack (sockets of
        before stay dead)."""
        self.down = None
        self._accept.clear()


# ---------------------------------------------------------------- sockets

class QSocket:
    """A quantum socket: a connection to one port of one remote node, or a
    listening socket that accepts them.

    Use ``await sock.connect(node, port)`` or ``sock.listen(port)`` then
    ``await sock.accept()`` (or the shortcuts :meth:`NodeContext.connect` and
    :meth:`NodeContext.listen`). A socket is an async context manager that
    closes itself.
    """

    def __init__(self, ctx: "NodeContext", conn: svc.Conn | None = None) -> None:
        self._ctx = ctx
        self._client = ctx.client
        self.conn = conn
        self.listening_port: int | None = None
        self._closed = False
        ctx._sockets.append(self)     # closed for the application when it ends

    # -------------------------------------------------------- names
    @property
    def local_port(self) -> int | None:
        return self.conn.local_port if self.conn else self.listening_port

    @property
    def remote(self) -> str | None:
        return self.conn.remote if self.conn else None

    @property
    def remote_port(self) -> int | None:
        return self.conn.remote_port if self.conn else None

    def __repr__(self) -> str:
        if self.conn:
            return f"<QSocket {self._ctx.name}{self.conn}>"
        if self.listening_port is not None:
            return f"<QSocket {self._ctx.name} listening on {self.listening_port}>"
        return f"<QSocket {self._ctx.name} unconnected>"

    def _need_conn(self, sending: bool = False, qubit: Any = None) -> svc.Conn:
        """The connection, for an operation on it; a send on a connection the
        far end ended raises the code it ended with (``qubit`` handed back)."""
        if self._closed:
            raise TransportError(ErrorCode.TRANSPORT_CLOSED, f"{self!r} is closed",
                                 [qubit] if qubit is not None else None)
        if self.conn is None:
            raise TransportError(ErrorCode.TRANSPORT_NOT_CONNECTED, f"{self!r} is not connected",
                                 [qubit] if qubit is not None else None)
        if sending:
            ended = self._client.conn_queues(self.conn).ended
            if ended is not None:
                raise TransportError(ended.code, ended.detail,
                                     [qubit] if qubit is not None else None)
        return self.conn

    # -------------------------------------------------------- set-up
    async def connect(self, node: str, port: int, timeout_ns: int | None = None,
                      local_port: int | None = None) -> "QSocket":
        """Connect to ``port`` (0..65535) on ``node`` (a node name); raises
        ``TRANSPORT_CONNECTION_REFUSED`` if nobody listens there,
        ``TRANSPORT_TIMEOUT`` without an answer within ``timeout_ns``.
        ``local_port``: the port to use here (None: a free one of
        49152..65535). Returns the socket itself."""
        node = name_arg("node", node, error=TransportError)
        port = _port("port", port)
        if local_port is not None:
            local_port = _port("local_port", local_port)
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, self._ctx.now_ns, error=TransportError)
        if self._closed:
            raise TransportError(ErrorCode.TRANSPORT_CLOSED, f"{self!r} is closed")
        if self.conn is not None or self.listening_port is not None:
            raise TransportError(ErrorCode.TRANSPORT_PORT_IN_USE, f"{self!r} is already in use")
        await self._ctx._settle()
        conn = await self._client.call(
            lambda t: svc.Connect(t, node, port, local_port, timeout_ns))
        if self._closed:
            # close() was called while the connect was under way: close the
            # connection the far end has just accepted (it sees an orderly
            # close) rather than leave it open, and say so.
            self._client.runtime.submit(svc.Close(self._client.token(), conn))
            raise TransportError(ErrorCode.TRANSPORT_CLOSED,
                                 f"<QSocket {self._ctx.name}{conn}> was closed while connecting")
        self.conn = conn
        self._client.conn_queues(self.conn)
        return self

    def listen(self, port: int, backlog: int = 16) -> "QSocket":
        """Accept connections on ``port`` (0..65535; several applications on
        a node use different ports). Returns the socket itself."""
        port = _port("port", port)
        backlog = int_arg("backlog", backlog, 1, 65535, error=TransportError)
        if self.conn is not None or self.listening_port is not None:
            raise TransportError(ErrorCode.TRANSPORT_PORT_IN_USE, f"{self!r} is already in use")
        if port in self._client._accept:
            raise TransportError(ErrorCode.TRANSPORT_PORT_IN_USE,
                                 f"{self._ctx.name} already listens on {port}")
        _, fut = self._client.request(lambda t: svc.Listen(t, port, backlog))
        if fut.done():   # the simulator answers at once; surface a refusal now
            fut.result()
        self._client._accept[port] = _Queue()
        self.listening_port = port
        return self

    async def accept(self, timeout_ns: int | None = None) -> "QSocket":
        """The next connection to the listening port, as a new socket."""
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, self._ctx.now_ns, error=TransportError)
        if self.listening_port is None:
            raise TransportError(ErrorCode.TRANSPORT_NOT_CONNECTED, f"{self!r} is not listening")
        queue = self._client._accept[self.listening_port]
        conn = await queue.get(self._ctx.runtime, timeout_ns, "connection")
        # taken: the connection may now receive (its window opens)
        self._client.request(lambda t: svc.Accept(t, conn))
        return QSocket(self._ctx, conn)

    # -------------------------------------------------------- qubits
    async def send_qubit(self, qubit: Qubit, metadata: bytes = b"", *,
                         timeout_ns: int | None = None, min_fidelity: float = 0.0) -> None:
        """Teleport ``qubit`` to the far end (in order with the other items).

        Returns once the far end has the qubit (it acknowledged the item); the
        qubit is then gone from this node. If no end-to-end pair can be had
        within ``timeout_ns`` it raises ``TRANSPORT_NO_PAIR`` and ``qubit`` is
        untouched and still usable (``err.qubits == [qubit]``); so for any
        failure before the qubit was measured. A failure after (the far end
        lost its half, restarted, closed) raises with the code that says why
        and ``err.qubits == []``: the qubit is lost. ``metadata``: bytes (at
        most 1024) the receiver gets with the qubit; ``min_fidelity`` in
        [0, 1]: of the pair used.
        """
        if not isinstance(qubit, Qubit):
            raise TransportError(ErrorCode.BAD_FIELD, f"qubit: expected a Qubit, got {show(qubit)}")
        metadata = bytes_arg("metadata", metadata, svc.MAX_METADATA, error=TransportError)
        min_fidelity = _fidelity(min_fidelity)
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, self._ctx.now_ns, error=TransportError)
        conn = self._need_conn(sending=True, qubit=qubit)
        ref = qubit.ref
        if qubit._ctx.name != self._ctx.name:
            raise TransportError(ErrorCode.QUBIT_UNAVAILABLE,
                                 f"{qubit!r} is not in {self._ctx.name}'s memory")
        await self._ctx._settle()
        try:
            await self._client.call(lambda t: svc.SendQubit(t, conn, ref, metadata,
                                                            min_fidelity, timeout_ns))
        except TransportError as err:
            if err.handed_back:
                err.qubits = [qubit]
            else:
                qubit._consume(f"lost on the way to {conn.remote} ({err.code.name})")
                err.qubits = []
            raise
        qubit._consume(f"sent to {conn.remote}")

    async def recv_qubit(self, timeout_ns: int | None = None) -> Qubit:
        """The next teleported qubit (``.metadata`` holds the sender's bytes)."""
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, self._ctx.now_ns, error=TransportError)
        conn = self._need_conn()
        ev = await self._client.conn_queues(conn).qubits.get(self._ctx.runtime, timeout_ns, "qubit")
        if isinstance(ev, BaseException):
            raise ev
        return Qubit(self._ctx, ev.qubit, ev.metadata, ev.fidelity)

    # -------------------------------------------------------- EPR pairs
    async def create_epr(self, number: int = 1, *, min_fidelity: float = 0.0,
                         measure: Any = None, timeout_ns: int | None = None) -> list:
        """Create ``number`` (1..65535) EPR pairs (Phi+) with the far end, each
        of fidelity at least ``min_fidelity`` (in [0, 1]); returns this end's
        halves as qubits, or with ``measure`` (a basis, as for
        :meth:`Qubit.measure`) the outcomes of measuring each at once. On
        ``TRANSPORT_NO_PAIR`` the halves already made are in the error's
        ``qubits``."""
        number = _number(number)
        min_fidelity = _fidelity(min_fidelity)
        measure = _basis(measure)       # now, not after the pairs are made
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, self._ctx.now_ns, error=TransportError)
        conn = self._need_conn(sending=True)
        await self._ctx._settle()
        token, fut = self._client.request(lambda t: svc.CreateEpr(t, conn, number, min_fidelity,
                                                                  timeout_ns))
        try:
            await self._ctx.runtime.wait(fut, None)
        except TransportError as err:
            err.qubits = [Qubit(self._ctx, ev.qubit, ev.metadata, ev.fidelity) for ev in err.qubits]
            raise
        halves = [Qubit(self._ctx, ev.qubit, ev.metadata, ev.fidelity)
                  for ev in self._client.take_epr(token)]
        if measure is None:
            return halves
        return await self._ctx.measure_all(halves, measure)

    async def recv_epr(self, number: int = 1, *, measure: Any = None,
                       timeout_ns: int | None = None) -> list:
        """This end's halves of the next ``number`` (1..65535) EPR pairs the
        far end creates (Phi+), or their outcomes measured in ``measure``."""
        number = _number(number)
        measure = _basis(measure)
        rt = self._ctx.runtime
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, rt.now_ns(), error=TransportError)
        conn = self._need_conn()
        queue = self._client.conn_queues(conn).eprs
        deadline = None if timeout_ns is None else rt.now_ns() + timeout_ns
        out: list = []
        held: list = []         # halves taken, to be measured together
        for _ in range(number):
            if held and not queue.items:     # nothing more at hand: measure what is
                out += await self._ctx.measure_all(held, measure)
                held = []
            left = None if deadline is None else max(0, deadline - rt.now_ns())
            ev = await queue.get(rt, left, "EPR pair")
            if isinstance(ev, BaseException):
                raise ev
            q = Qubit(self._ctx, ev.qubit, ev.metadata, ev.fidelity)
            (out if measure is None else held).append(q)
        if held:
            out += await self._ctx.measure_all(held, measure)
        return out

    async def _arrivals(self, queue_name: str, number: int, timeout_ns: int | None, what: str):
        """The next ``number`` items of this connection's ``queue_name``
        queue, one at a time, all within ``timeout_ns`` (a loss in their
        place raised)."""
        rt = self._ctx.runtime
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, rt.now_ns(), error=TransportError)
        conn = self._need_conn()
        queue = getattr(self._client.conn_queues(conn), queue_name)
        deadline = None if timeout_ns is None else rt.now_ns() + timeout_ns
        for _ in range(number):
            left = None if deadline is None else max(0, deadline - rt.now_ns())
            ev = await queue.get(rt, left, what)
            if isinstance(ev, BaseException):
                raise ev
            yield ev

    # -------------------------------------------------------- measure-directly pairs
    async def measure_pairs(self, number: int = 1, *, bases: str = "ZX",
                            min_fidelity: float = 0.0, timeout_ns: int | None = None) -> list:
        """Measure ``number`` (1..65535) end-to-end pairs with the far end
        directly (the network's measure-directly service): each end measures
        its half of every link pair as the link delivers it, in an angle
        drawn per pair from its list of the basis set ``bases`` ("ZX": Z, X
        at both ends; "E91": 0, pi/4, pi/2 here, pi/4, pi/2, 3pi/4 at the
        far end; "Z"; "X"), so no qubit is held at either end while the pair
        is swapped through the repeaters. Returns this end's
        :class:`~qstack.transport.service.PairMeasured` records (``pair``,
        ``setting``, ``outcome``, ``fidelity``) in item order; the far end
        gets its own, the same pairs in the same order, from
        :meth:`recv_measured` (its outcomes with the Pauli frame folded in,
        as if the pairs were Phi+). On ``TRANSPORT_NO_PAIR`` the records
        made are in the error's ``qubits``."""
        number = _number(number)
        min_fidelity = _fidelity(min_fidelity)
        if not isinstance(bases, str) or bases not in MD_BASIS_SETS:
            raise TransportError(ErrorCode.INVALID_PARAMETER,
                                 f"bases: expected one of {sorted(MD_BASIS_SETS)}, "
                                 f"got {show(bases)}")
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, self._ctx.now_ns, error=TransportError)
        conn = self._need_conn(sending=True)
        await self._ctx._settle()
        token, fut = self._client.request(lambda t: svc.MeasurePairs(t, conn, number, bases,
                                                                     min_fidelity, timeout_ns))
        await self._ctx.runtime.wait(fut, None)
        return self._client.take_epr(token)

    async def recv_measured(self, number: int = 1, *, timeout_ns: int | None = None) -> list:
        """This end's records of the next ``number`` (1..65535) pairs the far
        end measures directly (:meth:`measure_pairs`), in item order."""
        number = _number(number)
        return [ev async for ev in self._arrivals("measured", number, timeout_ns, "measured pair")]

    # -------------------------------------------------------- classical bytes
    async def send(self, data: bytes) -> None:
        """Send classical bytes (at most 65536), in order with qubits and pairs."""
        data = bytes_arg("data", data, svc.MAX_DATA, error=TransportError)
        conn = self._need_conn(sending=True)
        await self._ctx._settle()
        await self._client.call(lambda t: svc.SendBytes(t, conn, data))

    async def recv(self, timeout_ns: int | None = None) -> bytes:
        """The next classical message."""
        timeout_ns = timeout_arg("timeout_ns", timeout_ns, self._ctx.now_ns, error=TransportError)
        conn = self._need_conn()
        return await self._client.conn_queues(conn).data.get(self._ctx.runtime, timeout_ns,
                                                             "message")

    # -------------------------------------------------------- teardown
    async def close(self) -> None:
        """Close the socket (a listening socket stops accepting; a connect
        still under way fails with ``TRANSPORT_CLOSED``)."""
        if self._closed:
            return
        self._closed = True
        if self.listening_port is not None:
            self._client._accept.pop(self.listening_port, None)
            port = self.listening_port
            await self._client.call(lambda t: svc.Unlisten(t, port))
        elif self.conn is not None:
            conn = self.conn
            self._drop_unread()
            await self._ctx.runtime.settle()
            try:
                await self._client.call(lambda t: svc.Close(t, conn))
            except TransportError as err:
                if err.code not in (ErrorCode.TRANSPORT_NOT_CONNECTED,   # already gone: fine
                                    ErrorCode.TRANSPORT_NODE_DOWN):
                    raise

    def _drop_unread(self) -> None:
        """Free the qubits that arrived and were never taken (closing discards them)."""
        queues = self._client._conns.get(self.conn)
        if queues is None:
            return
        for queue in (queues.qubits, queues.eprs):
            while queue.items:
                ev = queue.items.popleft()
                ref = getattr(ev, "qubit", None)
                if ref is not None and self._client.down is None:
                    # (no one to tell if it fails: gone already, its pair
                    # expired or the node restarted)
                    self._ctx.runtime.enqueue(Discard(ref))

    def abort(self, code: ErrorCode = ErrorCode.TRANSPORT_ABORTED) -> None:
        """End the socket at once, abnormally (what an application leaves open
        when it ends): a connection's far end gets ``code``, waiting sends
        fail; a listening socket stops."""
        if self._closed:
            return
        self._closed = True
        if self.listening_port is not None:
            port = self.listening_port
            self._client._accept.pop(port, None)
            self._client.request(lambda t: svc.Unlisten(t, port))
        elif self.conn is not None:
            conn = self.conn
            self._drop_unread()
            self._client.request(lambda t: svc.Abort(t, conn, code))

    async def __aenter__(self) -> "QSocket":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


# ---------------------------------------------------------------- node context

def _leaves(value: Any, depth: int = 0) -> list:
    """The objects in ``value``, through nested lists, tuples, sets and dict
    values (a few levels)."""
    if depth > 4:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return [leaf for v in value for leaf in _leaves(v, depth + 1)]
    return [value]


class NodeLog:
    """``ctx.log("text")`` or ``ctx.log.info(...)``: records with the node's
    clock, kept in ``records`` and passed to the ``logging`` module."""

    def __init__(self, ctx: "NodeContext") -> None:
        self._ctx = ctx
        self._logger = ctx.runtime.logger()
        self.records: list[tuple[int, str, str, str]] = []

    def _log(self, level: int, msg: str, *args: Any) -> None:
        text = msg % args if args else str(msg)
        self.records.append((self._ctx.now_ns, self._ctx.name, logging.getLevelName(level), text))
        self._logger.log(level, "[t=%d ns %s] %s", self._ctx.now_ns, self._ctx.name, text)

    def __call__(self, msg: str, *args: Any) -> None:
        self._log(logging.INFO, msg, *args)

    def debug(self, msg: str, *args: Any) -> None: self._log(logging.DEBUG, msg, *args)
    def info(self, msg: str, *args: Any) -> None: self._log(logging.INFO, msg, *args)
    def warning(self, msg: str, *args: Any) -> None: self._log(logging.WARNING, msg, *args)
    def error(self, msg: str, *args: Any) -> None: self._log(logging.ERROR, msg, *args)


class NodeContext:
    """What an application gets: its node's name, clock, qubits and sockets.

    ``ctx.name``; ``ctx.now_ns``; ``await ctx.sleep(ns)``; ``ctx.qubit()`` (a
    fresh ``|0>``); ``ctx.rng`` (a seeded numpy Generator); ``ctx.log``;
    ``await ctx.connect(node, port)``; ``ctx.listen(port)``; ``ctx.socket()``.
    """

    def __init__(self, runtime: TransportRuntime, client: TransportClient | None = None,
                 app: str | None = None) -> None:
        self.runtime = runtime
        self.client = client if client is not None else TransportClient(runtime)
        self.name = runtime.node
        self.app = app or runtime.node
        self.log = NodeLog(self)
        self.rng = runtime.rng()
        self._sockets: list[QSocket] = []        # every socket this application made
        self._qubits: dict[int, Qubit] = {}      # qubits it holds, until consumed
        #: every failure of a local operation this application queued (a gate,
        #: a discard), in order; raised by the next call that waits for the
        #: local operations (``specs/transport.md``, "Local operations")
        self.op_failures: list[QStackError] = []
        self._op_failures_seen = 0               # how many of them were raised or logged
        self._op_failed = self.op_failures.append

    def _raise_op_failure(self) -> None:
        """Raise the first failure of a queued local operation not raised
        yet (those after it, usually its consequences, stay in ``op_failures``)."""
        seen = self._op_failures_seen
        if seen != len(self.op_failures):
            self._op_failures_seen = len(self.op_failures)
            raise self.op_failures[seen]

    async def _settle(self) -> None:
        """Before a network operation: wait for the local operations called
        before it, and raise the failure of one of them (nothing requested)."""
        await self.runtime.settle()
        if self._op_failures_seen != len(self.op_failures):
            self._raise_op_failure()

    async def measure_all(self, qubits: Any, basis: Any = "Z") -> list[int]:
        """Measure every qubit of ``qubits`` (this node's, each once) in
        ``basis``, in that order, as :meth:`Qubit.measure` would one after
        the other; their outcomes (0 or 1) once the last readout has
        finished. The measurements are queued together, so a driver whose
        qubits live elsewhere (the emulation's physics server) waits one
        round trip for all of them rather than one each. A bad basis or
        qubit is refused before anything is measured; if a measurement
        fails, the others are still carried out and the first failure is
        raised (its qubit as :meth:`Qubit.measure` leaves it)."""
        basis = check_basis(basis)
        qubits = list(qubits)
        seen: set = set()
        for q in qubits:
            if not isinstance(q, Qubit):
                raise QStackError(ErrorCode.BAD_FIELD,
                                  f"measure_all: expected Qubits, got {show(q)}")
            q._check()
            if q._ctx is not self:
                raise QStackError(ErrorCode.INVALID_PARAMETER,
                                  f"measure_all: {q!r} is not this application's")
            if id(q) in seen:
                raise QStackError(ErrorCode.INVALID_PARAMETER, f"measure_all: {q!r} twice")
            seen.add(id(q))
        for q in qubits:
            q._gone = "measured"         # at once: later calls see it consumed
        try:
            results = await self.runtime.outcomes([Measure(q._ref, basis) for q in qubits])
        except QStackError as err:       # (the node is down: nothing was measured)
            for q in qubits:
                q._failed(err)
            self._raise_op_failure()     # an earlier failure comes first
            raise
        failure = None
        for q, res in zip(qubits, results):
            if isinstance(res, QStackError):
                q._failed(res)
                failure = failure or res
        if failure is not None:
            self._raise_op_failure()
            raise failure
        if self._op_failures_seen != len(self.op_failures):
            self._raise_op_failure()
        return [int(res) for res in results]

    @property
    def now_ns(self) -> int:
        """The node's clock, nanoseconds."""
        return self.runtime.now_ns()

    async def sleep(self, delay_ns: int) -> None:
        """Let ``delay_ns`` nanoseconds pass (an integer >= 0; a sleep that
        would end after the end of simulated time, 2**62 ns, is refused with
        ``OUT_OF_RANGE``)."""
        await self.runtime.sleep(delay_arg("delay_ns", delay_ns, self.now_ns))

    def qubit(self) -> Qubit:
        """A fresh qubit in ``|0>`` in this node's memory (``MEMORY_FULL`` if none is free)."""
        return Qubit(self, self.runtime.allocate())

    def socket(self) -> QSocket:
        """An unconnected socket (then ``connect`` or ``listen``)."""
        return QSocket(self)

    async def connect(self, node: str, port: int, timeout_ns: int | None = None) -> QSocket:
        """A socket connected to ``port`` on ``node``."""
        return await QSocket(self).connect(node, port, timeout_ns)

    def listen(self, port: int, backlog: int = 16) -> QSocket:
        """A socket listening on ``port``."""
        return QSocket(self).listen(port, backlog)

    def release_all(self, keep: Any = None) -> tuple[int, int]:
        """What a driver does when the application has ended (returned or
        raised): sockets it left open are aborted (their far ends get
        ``TRANSPORT_ABORTED``) and qubits it still holds are freed, except the
        qubits in ``keep`` (what the application returned, searched through
        lists, tuples, sets and dict values, as qubits or as their ``ref``:
        the caller asked for those).
        Returns (sockets aborted, qubits freed)."""
        kept = {id(v) for v in _leaves(keep)}      # Qubits, or their refs (oracle tests)
        sockets = qubits = 0
        for sock in self._sockets:
            if not sock._closed and (sock.conn is not None or sock.listening_port is not None):
                sock.abort()
                sockets += 1
            sock._closed = True
        self._sockets.clear()
        for q in list(self._qubits.values()):
            if q.alive and id(q) not in kept and id(q._ref) not in kept:
                # (a qubit already gone with its node is no concern any more)
                self.runtime.enqueue(Discard(q._consume("released")))
                qubits += 1
        self._qubits.clear()
        # Failures of queued operations no later call raised: logged, not lost.
        for err in self.op_failures[self._op_failures_seen:]:
            self.log.warning("a queued local operation failed and no later call "
                             "reported it: %s", err)
        self._op_failures_seen = len(self.op_failures)
        return sockets, qubits

    def __repr__(self) -> str:
        return f"<NodeContext {self.name}>"
