"""The emulation's own messages: an application and its node daemon
(``emu.app``, 0x0620-0x063F), a node daemon and the physics server
(``emu.physics``, 0x0640-0x065F).

``specs/wire.md`` (§ "Emulation messages") is their normative description.
An application process speaks to its node's daemon with the transport
layer's service primitives (:mod:`qstack.transport.service`) carried as the
messages below, one per primitive and with the same field names, and with
the local quantum operations of :mod:`qstack.physical.ops` as ``Phys*``
messages, which the daemon forwards, in order, to the physics server.

Qubits are named by unsigned 63-bit integers: the physics server's handle
for qubits it made (heralds, a protocol's ``Allocate``), or a reference the
asker chose for its own ``PhysAllocate`` (``ref`` at or above
:data:`CHOSEN_REF_BASE`), so that an application has its qubit's reference
at once, without waiting for a round trip. Times are integer nanoseconds of
the network's clock (model time: real time divided by the run's time scale).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from qstack.core.errors import ErrorCode, QStackError, error_code
from qstack.core.messages import Message, limits, message
from qstack.network.service import PairId
from qstack.physical.ops import Allocate, BellMeasure, Discard, Gate, Measure
from qstack.transport import service as svc

__all__ = [
    "WConn", "WPair", "AppWelcome", "AppListen", "AppUnlisten", "AppAccept", "AppConsumed",
    "AppConnect", "AppSendQubit", "AppCreateEpr", "AppSendBytes", "AppClose", "AppAbort",
    "AppMeasurePairs", "AppPairMeasured",
    "AppDone", "AppFailed", "AppIncoming", "AppQubitArrived", "AppEprArrived", "AppDataArrived",
    "AppPeerClosed", "AppLost", "PhysAllocate", "PhysGate", "PhysMeasure", "PhysBellMeasure",
    "PhysDiscard", "PhysSettle", "PhysResult", "PhysQuery", "PhysReport", "PhysLinkState",
    "PhysCensusQuery", "PhysCensus", "PhysNodeState", "NodeLinkState",
    "request_to_wire", "request_from_wire", "event_to_wire", "event_from_wire",
    "op_to_wire", "op_from_wire", "CHOSEN_REF_BASE", "APP_REF_BITS", "as_code", "VECTOR_EXAMPLES",
    "FailuresQuery", "FailuresReport", "MAX_REPORTED_FAILURES",
]

_U63 = limits(0, (1 << 63) - 1)
_U16 = limits(0, 65535)
_NAME = limits(max_len=64)
_META = limits(max_len=svc.MAX_METADATA)
_DATA = limits(max_len=svc.MAX_DATA)
_DETAIL = limits(max_len=1024)
_FID = limits(0.0, 1.0)
_CODE = limits(0, 65535)
_TIMEOUT = limits(0, (1 << 63) - 1)

#: Qubit references at or above this were chosen by the one who allocated the
#: qubit (an application, so that ``ctx.qubit()`` answers at once); below it
#: they are the physics server's handles.
CHOSEN_REF_BASE = 1 << 48
#: An application's chosen references are CHOSEN_REF_BASE + (app id << APP_REF_BITS) + n,
#: 0 < n < 2**APP_REF_BITS (``specs/emulation.md`` §4).
APP_REF_BITS = 24


# ---------------------------------------------------------------- nested values

@message("emu.app", 0x0620)
@dataclass(frozen=True, slots=True)
class WConn(Message):
    """A :class:`~qstack.transport.service.Conn` (nested in other messages)."""

    local_port: int = field(metadata=_U16)
    remote: str = field(metadata=_NAME)
    remote_port: int = field(metadata=_U16)


@message("emu.app", 0x0621)
@dataclass(frozen=True, slots=True)
class WPair(Message):
    """A :class:`~qstack.network.service.PairId` (nested in other messages)."""

    head: str = field(metadata=_NAME)
    circuit_id: int = field(metadata=_U63)
    seq: int = field(metadata=_U63)


@message("emu.app", 0x0622)
@dataclass(frozen=True, slots=True)
class AppWelcome(Message):
    """Daemon -> application, first after the session is up: the node, the
    network's clock (``epoch_ns``: ``time.monotonic_ns()`` at model time 0;
    ``time_scale``: real seconds per model second) and the run's seed."""

    node: str = field(metadata=_NAME)
    epoch_ns: int = field(metadata=_U63)
    time_scale: float = field(metadata=limits(1e-6, 1e6))
    seed: int = field(metadata=_U63)
    app_id: int = field(metadata=limits(0, (1 << 24) - 1))


# ---------------------------------------------------------------- requests (app -> daemon)

@message("emu.app", 0x0623)
@dataclass(frozen=True, slots=True)
class AppListen(Message):
    token: int = field(metadata=_U63)
    port: int = field(metadata=_U16)
    backlog: int = field(metadata=limits(0, 65535))


@message("emu.app", 0x0624)
@dataclass(frozen=True, slots=True)
class AppUnlisten(Message):
    token: int = field(metadata=_U63)
    port: int = field(metadata=_U16)


@message("emu.app", 0x0625)
@dataclass(frozen=True, slots=True)
class AppAccept(Message):
    token: int = field(metadata=_U63)
    conn: WConn


@message("emu.app", 0x0626)
@dataclass(frozen=True, slots=True)
class AppConsumed(Message):
    conn: WConn
    count: int = field(metadata=limits(1, 1 << 31))


@message("emu.app", 0x0627)
@dataclass(frozen=True, slots=True)
class AppConnect(Message):
    token: int = field(metadata=_U63)
    remote: str = field(metadata=_NAME)
    port: int = field(metadata=_U16)
    local_port: Optional[int] = field(default=None, metadata=_U16)
    timeout_ns: Optional[int] = field(default=None, metadata=_TIMEOUT)


@message("emu.app", 0x0628)
@dataclass(frozen=True, slots=True)
class AppSendQubit(Message):
    token: int = field(metadata=_U63)
    conn: WConn
    qubit: int = field(metadata=_U63)
    metadata: bytes = field(default=b"", metadata=_META)
    min_fidelity: float = field(default=0.0, metadata=_FID)
    timeout_ns: Optional[int] = field(default=None, metadata=_TIMEOUT)


@message("emu.app", 0x0629)
@dataclass(frozen=True, slots=True)
class AppCreateEpr(Message):
    token: int = field(metadata=_U63)
    conn: WConn
    number: int = field(default=1, metadata=limits(1, 65535))
    min_fidelity: float = field(default=0.0, metadata=_FID)
    timeout_ns: Optional[int] = field(default=None, metadata=_TIMEOUT)
    metadata: bytes = field(default=b"", metadata=_META)


@message("emu.app", 0x062A)
@dataclass(frozen=True, slots=True)
class AppSendBytes(Message):
    token: int = field(metadata=_U63)
    conn: WConn
    data: bytes = field(metadata=_DATA)


@message("emu.app", 0x062B)
@dataclass(frozen=True, slots=True)
class AppClose(Message):
    token: int = field(metadata=_U63)
    conn: WConn


@message("emu.app", 0x062C)
@dataclass(frozen=True, slots=True)
class AppAbort(Message):
    token: int = field(metadata=_U63)
    conn: WConn
    code: int = field(default=int(ErrorCode.TRANSPORT_ABORTED), metadata=_CODE)


@message("emu.app", 0x062D)
@dataclass(frozen=True, slots=True)
class AppMeasurePairs(Message):
    """``MeasurePairs``: ``number`` measure-directly pairs in basis set ``bases``."""

    token: int = field(metadata=_U63)
    conn: WConn
    number: int = field(default=1, metadata=limits(1, 65535))
    bases: str = field(default="ZX", metadata=limits(max_len=8))
    min_fidelity: float = field(default=0.0, metadata=_FID)
    timeout_ns: Optional[int] = field(default=None, metadata=_TIMEOUT)


# ---------------------------------------------------------------- indications (daemon -> app)

@message("emu.app", 0x0630)
@dataclass(frozen=True, slots=True)
class AppDone(Message):
    """``Done(token, value)``: ``value`` is None, an integer (``number``), a
    connection (``conn``) or a pair (``pair``); at most one is set."""

    token: int = field(metadata=_U63)
    number: Optional[int] = field(default=None, metadata=_U63)
    conn: Optional[WConn] = None
    pair: Optional[WPair] = None


@message("emu.app", 0x0631)
@dataclass(frozen=True, slots=True)
class AppFailed(Message):
    token: int = field(metadata=_U63)
    code: int = field(metadata=_CODE)
    detail: str = field(default="", metadata=_DETAIL)
    qubit: Optional[int] = field(default=None, metadata=_U63)


@message("emu.app", 0x0632)
@dataclass(frozen=True, slots=True)
class AppIncoming(Message):
    port: int = field(metadata=_U16)
    conn: WConn


@message("emu.app", 0x0633)
@dataclass(frozen=True, slots=True)
class AppQubitArrived(Message):
    conn: WConn
    seq: int = field(metadata=_U63)
    qubit: int = field(metadata=_U63)
    metadata: bytes = field(metadata=_META)
    fidelity: float = field(metadata=_FID)
    latency_ns: int = field(metadata=limits(-(1 << 62), 1 << 62))


@message("emu.app", 0x0634)
@dataclass(frozen=True, slots=True)
class AppEprArrived(Message):
    conn: WConn
    seq: int = field(metadata=_U63)
    qubit: int = field(metadata=_U63)
    fidelity: float = field(metadata=_FID)
    pair: WPair
    initiator: bool
    token: Optional[int] = field(default=None, metadata=_U63)
    metadata: bytes = field(default=b"", metadata=_META)


@message("emu.app", 0x063B)
@dataclass(frozen=True, slots=True)
class AppPairMeasured(Message):
    """``PairMeasured``: this end's ``setting`` and ``outcome`` of
    measure-directly pair ``pair``, item ``seq`` of ``conn``."""

    conn: WConn
    seq: int = field(metadata=_U63)
    pair: WPair
    setting: int = field(metadata=limits(0, 255))
    outcome: int = field(metadata=limits(0, 1))
    fidelity: float = field(metadata=_FID)
    initiator: bool
    token: Optional[int] = field(default=None, metadata=_U63)


@message("emu.app", 0x0635)
@dataclass(frozen=True, slots=True)
class AppDataArrived(Message):
    conn: WConn
    seq: int = field(metadata=_U63)
    data: bytes = field(metadata=_DATA)


@message("emu.app", 0x0636)
@dataclass(frozen=True, slots=True)
class AppPeerClosed(Message):
    conn: WConn
    code: Optional[int] = field(default=None, metadata=_CODE)
    detail: str = field(default="", metadata=_DETAIL)


@message("emu.app", 0x0637)
@dataclass(frozen=True, slots=True)
class AppLost(Message):
    conn: WConn
    seq: int = field(metadata=_U63)
    code: int = field(metadata=_CODE)
    detail: str = field(default="", metadata=_DETAIL)
    kind: str = field(default="qubit", metadata=limits(max_len=8))


# ---------------------------------------------------------------- local operations (-> physics)

@message("emu.physics", 0x0640)
@dataclass(frozen=True, slots=True)
class PhysAllocate(Message):
    """A fresh ``|0>`` in a free memory slot; ``ref`` 0: the server names it
    (the answer's ``value``), else the asker's chosen reference (at or above
    :data:`CHOSEN_REF_BASE`). ``queued``: after the node's earlier queued
    operations (an application's), not at once (a protocol's)."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    ref: int = field(metadata=_U63)
    queued: bool = False


@message("emu.physics", 0x0641)
@dataclass(frozen=True, slots=True)
class PhysGate(Message):
    """Gate ``name`` on ``qubits``; ``params``: an angle (rx, ry, rz) or the
    eight reals (re, im, row-major) of a 2x2 unitary ("u")."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    name: str = field(metadata=limits(max_len=8))
    qubits: tuple[int, ...] = field(metadata=limits(0, (1 << 63) - 1, max_len=2))
    params: tuple[float, ...] = field(default=(), metadata=limits(max_len=8))
    queued: bool = False


@message("emu.physics", 0x0642)
@dataclass(frozen=True, slots=True)
class PhysMeasure(Message):
    """Measure ``qubit`` in ``basis`` ("Z", "X", "Y"; "" for the angles
    ``theta``, ``phi`` in radians)."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    qubit: int = field(metadata=_U63)
    basis: str = field(default="Z", metadata=limits(max_len=1))
    theta: float = 0.0
    phi: float = 0.0
    queued: bool = False


@message("emu.physics", 0x0643)
@dataclass(frozen=True, slots=True)
class PhysBellMeasure(Message):
    request: int = field(metadata=limits(1, (1 << 63) - 1))
    qubit_a: int = field(metadata=_U63)
    qubit_b: int = field(metadata=_U63)
    queued: bool = False


@message("emu.physics", 0x0644)
@dataclass(frozen=True, slots=True)
class PhysDiscard(Message):
    request: int = field(metadata=limits(1, (1 << 63) - 1))
    qubit: int = field(metadata=_U63)
    queued: bool = False


@message("emu.physics", 0x0645)
@dataclass(frozen=True, slots=True)
class PhysSettle(Message):
    """Answered once every queued operation before it has finished."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))


@message("emu.physics", 0x0646)
@dataclass(frozen=True, slots=True)
class PhysResult(Message):
    """The answer to operation ``request``: finished at ``done_ns`` (model
    time; the asker treats it as done then), ``ok`` with ``value`` (a qubit
    reference, an outcome bit, a Bell index, or None), or failed with
    ``code`` and ``detail``."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    ok: bool
    value: Optional[int] = field(default=None, metadata=_U63)
    code: int = field(default=0, metadata=_CODE)
    detail: str = field(default="", metadata=_DETAIL)
    done_ns: int = field(default=0, metadata=_U63)


@message("emu.physics", 0x0647)
@dataclass(frozen=True, slots=True)
class PhysQuery(Message):
    """Ask the physics server for a node's figures (:class:`PhysReport`)."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))


@message("emu.physics", 0x0648)
@dataclass(frozen=True, slots=True)
class PhysReport(Message):
    request: int = field(metadata=limits(1, (1 << 63) - 1))
    qubits_in_memory: int = field(metadata=_U63)
    pairs_made: int = field(metadata=_U63)
    behind_ns: int = field(metadata=_U63)


@message("emu.physics", 0x0649)
@dataclass(frozen=True, slots=True)
class PhysLinkState(Message):
    """(Fault tool -> physics server) The quantum link ``a``-``b`` goes down or up."""

    a: str = field(metadata=_NAME)
    b: str = field(metadata=_NAME)
    up: bool


@message("emu.node", 0x0656)
@dataclass(frozen=True, slots=True)
class NodeLinkState(Message):
    """(control -> every daemon) The link ``a``-``b`` went down or came back
    (``specs/faults.md``): each daemon routes its classical messages round
    it; its two ends are told ``LinkDown`` (their session with each other
    reset) or ``LinkUp``."""

    a: str = field(metadata=_NAME)
    b: str = field(metadata=_NAME)
    up: bool


@message("emu.physics", 0x064D)
@dataclass(frozen=True, slots=True)
class PhysNodeState(Message):
    """(physics server -> daemons) Node ``node``'s daemon went away (a crash:
    ``up`` false) or came back. The simulator's classical channel joins two
    nodes while a path of live nodes and links does (``specs/faults.md``);
    daemons, connected to each other directly, learn which nodes are gone
    from the one process that sees every daemon come and go."""

    node: str = field(metadata=_NAME)
    up: bool


@message("emu.physics", 0x064A)
@dataclass(frozen=True, slots=True)
class PhysCensusQuery(Message):
    """(control -> physics server) Ask for the qubit census (:class:`PhysCensus`)."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))


@message("emu.physics", 0x064B)
@dataclass(frozen=True, slots=True)
class PhysCensus(Message):
    """(physics server -> control) Qubits alive in the state engine and qubits
    held in the nodes' memories: equal unless a qubit was lost (alive, held
    by no one) or duplicated; ``per_node``: the memories' counts, in the
    order of ``nodes``."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    engine: int = field(metadata=_U63)
    held: int = field(metadata=_U63)
    nodes: tuple[str, ...] = field(metadata=limits(max_len=4096))
    per_node: tuple[int, ...] = field(metadata=limits(0, (1 << 63) - 1, max_len=4096))


# ---------------------------------------------------------------- conversions

def as_code(value: int) -> ErrorCode:
    """A code from the wire as an :class:`ErrorCode` (an unknown one, a newer
    peer's, reads as ``INTERNAL_ERROR``)."""
    return error_code(value, ErrorCode.INTERNAL_ERROR)


def _conn(c: svc.Conn) -> WConn:
    return WConn(c.local_port, c.remote, c.remote_port)


def _unconn(w: WConn) -> svc.Conn:
    return svc.Conn(w.local_port, w.remote, w.remote_port)


def _ref(q: Any) -> int:
    if q.__class__ is not int or q < 0:
        raise QStackError(ErrorCode.BAD_FIELD, f"qubit reference {q!r} is not an emulated qubit")
    return q


def request_to_wire(req: Any) -> Message:
    """A transport service request as its ``App*`` message."""
    cls = req.__class__
    if cls is svc.Listen:
        return AppListen(req.token, req.port, req.backlog)
    if cls is svc.Unlisten:
        return AppUnlisten(req.token, req.port)
    if cls is svc.Accept:
        return AppAccept(req.token, _conn(req.conn))
    if cls is svc.Consumed:
        return AppConsumed(_conn(req.conn), req.count)
    if cls is svc.Connect:
        return AppConnect(req.token, req.remote, req.port, req.local_port, req.timeout_ns)
    if cls is svc.SendQubit:
        return AppSendQubit(req.token, _conn(req.conn), _ref(req.qubit), req.metadata,
                            req.min_fidelity, req.timeout_ns)
    if cls is svc.CreateEpr:
        return AppCreateEpr(req.token, _conn(req.conn), req.number, req.min_fidelity,
                            req.timeout_ns, req.metadata)
    if cls is svc.MeasurePairs:
        return AppMeasurePairs(req.token, _conn(req.conn), req.number, req.bases,
                               req.min_fidelity, req.timeout_ns)
    if cls is svc.SendBytes:
        return AppSendBytes(req.token, _conn(req.conn), req.data)
    if cls is svc.Close:
        return AppClose(req.token, _conn(req.conn))
    if cls is svc.Abort:
        return AppAbort(req.token, _conn(req.conn), int(req.code))
    raise QStackError(ErrorCode.UNKNOWN_TYPE, f"{cls.__name__} is not a transport request")


def request_from_wire(msg: Message) -> Any:
    """An ``App*`` request message as the transport's service request."""
    cls = msg.__class__
    if cls is AppListen:
        return svc.Listen(msg.token, msg.port, msg.backlog)
    if cls is AppUnlisten:
        return svc.Unlisten(msg.token, msg.port)
    if cls is AppAccept:
        return svc.Accept(msg.token, _unconn(msg.conn))
    if cls is AppConsumed:
        return svc.Consumed(_unconn(msg.conn), msg.count)
    if cls is AppConnect:
        return svc.Connect(msg.token, msg.remote, msg.port, msg.local_port, msg.timeout_ns)
    if cls is AppSendQubit:
        return svc.SendQubit(msg.token, _unconn(msg.conn), msg.qubit, msg.metadata,
                             msg.min_fidelity, msg.timeout_ns)
    if cls is AppCreateEpr:
        return svc.CreateEpr(msg.token, _unconn(msg.conn), msg.number, msg.min_fidelity,
                             msg.timeout_ns, msg.metadata)
    if cls is AppMeasurePairs:
        return svc.MeasurePairs(msg.token, _unconn(msg.conn), msg.number, msg.bases,
                                msg.min_fidelity, msg.timeout_ns)
    if cls is AppSendBytes:
        return svc.SendBytes(msg.token, _unconn(msg.conn), msg.data)
    if cls is AppClose:
        return svc.Close(msg.token, _unconn(msg.conn))
    if cls is AppAbort:
        return svc.Abort(msg.token, _unconn(msg.conn), as_code(msg.code))
    raise QStackError(ErrorCode.UNEXPECTED_EVENT, f"{cls.__name__} is not an application request")


REQUESTS = frozenset({AppListen, AppUnlisten, AppAccept, AppConsumed, AppConnect, AppSendQubit,
                      AppCreateEpr, AppSendBytes, AppClose, AppAbort, AppMeasurePairs})


def _opt_ref(q: Any) -> int | None:
    return None if q is None else _ref(q)


def event_to_wire(ev: Any) -> Message | None:
    """A transport indication as its ``App*`` message (None: not one an
    application is told of)."""
    cls = ev.__class__
    if cls is svc.Done:
        v = ev.value
        if v is None:
            return AppDone(ev.token)
        if isinstance(v, svc.Conn):
            return AppDone(ev.token, conn=_conn(v))
        if isinstance(v, PairId):
            return AppDone(ev.token, pair=WPair(v.head, v.circuit_id, v.seq))
        if isinstance(v, tuple):           # a pair's id as the transport keeps it
            return AppDone(ev.token, pair=WPair(str(v[0]), int(v[1]), int(v[2])))
        return AppDone(ev.token, number=int(v))
    if cls is svc.Failed:
        return AppFailed(ev.token, int(ev.code), ev.detail[:1024], _opt_ref(ev.qubit))
    if cls is svc.Incoming:
        return AppIncoming(ev.port, _conn(ev.conn))
    if cls is svc.QubitArrived:
        return AppQubitArrived(_conn(ev.conn), ev.seq, _ref(ev.qubit), ev.metadata,
                               min(1.0, max(0.0, float(ev.fidelity))), int(ev.latency_ns))
    if cls is svc.EprArrived:
        p = ev.pair
        return AppEprArrived(_conn(ev.conn), ev.seq, _ref(ev.qubit),
                             min(1.0, max(0.0, float(ev.fidelity))), WPair(p[0], p[1], p[2]),
                             bool(ev.initiator), ev.token, ev.metadata)
    if cls is svc.PairMeasured:
        p = ev.pair
        return AppPairMeasured(_conn(ev.conn), ev.seq, WPair(p[0], p[1], p[2]), int(ev.setting),
                               int(ev.outcome), min(1.0, max(0.0, float(ev.fidelity))),
                               bool(ev.initiator), ev.token)
    if cls is svc.DataArrived:
        return AppDataArrived(_conn(ev.conn), ev.seq, ev.data)
    if cls is svc.PeerClosed:
        return AppPeerClosed(_conn(ev.conn), None if ev.code is None else int(ev.code),
                             ev.detail[:1024])
    if cls is svc.Lost:
        return AppLost(_conn(ev.conn), ev.seq, int(ev.code), ev.detail[:1024], ev.kind)
    return None


def event_from_wire(msg: Message) -> Any:
    """An ``App*`` indication message as the transport's indication."""
    cls = msg.__class__
    if cls is AppDone:
        value: Any = msg.number
        if msg.conn is not None:
            value = _unconn(msg.conn)
        elif msg.pair is not None:
            value = (msg.pair.head, msg.pair.circuit_id, msg.pair.seq)
        return svc.Done(msg.token, value)
    if cls is AppFailed:
        return svc.Failed(msg.token, as_code(msg.code), msg.detail, msg.qubit)
    if cls is AppIncoming:
        return svc.Incoming(msg.port, _unconn(msg.conn))
    if cls is AppQubitArrived:
        return svc.QubitArrived(_unconn(msg.conn), msg.seq, msg.qubit, msg.metadata,
                                msg.fidelity, msg.latency_ns)
    if cls is AppEprArrived:
        return svc.EprArrived(_unconn(msg.conn), msg.seq, msg.qubit, msg.fidelity,
                              (msg.pair.head, msg.pair.circuit_id, msg.pair.seq),
                              msg.initiator, msg.token, msg.metadata)
    if cls is AppPairMeasured:
        return svc.PairMeasured(_unconn(msg.conn), msg.seq,
                                (msg.pair.head, msg.pair.circuit_id, msg.pair.seq), msg.setting,
                                msg.outcome, msg.fidelity, msg.initiator, msg.token)
    if cls is AppDataArrived:
        return svc.DataArrived(_unconn(msg.conn), msg.seq, msg.data)
    if cls is AppPeerClosed:
        return svc.PeerClosed(_unconn(msg.conn), None if msg.code is None else as_code(msg.code),
                              msg.detail)
    if cls is AppLost:
        return svc.Lost(_unconn(msg.conn), msg.seq, as_code(msg.code), msg.detail, msg.kind)
    raise QStackError(ErrorCode.UNEXPECTED_EVENT, f"{cls.__name__} is not a transport indication")


INDICATIONS = frozenset({AppDone, AppFailed, AppIncoming, AppQubitArrived, AppEprArrived,
                         AppDataArrived, AppPeerClosed, AppLost, AppPairMeasured})
OPS = frozenset({PhysAllocate, PhysGate, PhysMeasure, PhysBellMeasure, PhysDiscard, PhysSettle})
#: Operations that, ``queued`` (an application's), are answered only when
#: they fail: nobody waits for their outcome, and the physics server answers
#: a node in request order, so any later answer says they succeeded
#: (``specs/emulation.md`` §5).
QUIET = frozenset({PhysAllocate, PhysGate, PhysDiscard})
#: After this many QUIET operations not confirmed yet, the sender asks for an
#: answer that confirms them (a ``PhysSettle``): what it keeps for them stays bounded.
QUIET_CONFIRM_EVERY = 4096


def op_to_wire(op: Any, request: int, ref_of: Any = _ref, queued: bool = False,
               chosen_ref: int = 0) -> Message:
    """A local operation (:mod:`qstack.physical.ops`) as its ``Phys*``
    message; ``ref_of`` turns a qubit reference into its wire integer."""
    cls = op.__class__
    if cls is Gate:
        params: tuple = ()
        if op.params:
            if op.name == "u":
                m = np.asarray(op.params[0], dtype=complex).reshape(4)
                params = tuple(float(x) for z in m for x in (z.real, z.imag))
            else:
                params = tuple(float(p) for p in op.params)
        return PhysGate(request, op.name, tuple(ref_of(q) for q in op.qubits), params, queued)
    if cls is Measure:
        basis = op.basis
        if isinstance(basis, str):
            return PhysMeasure(request, ref_of(op.qubit), basis, 0.0, 0.0, queued)
        theta, phi = basis
        return PhysMeasure(request, ref_of(op.qubit), "", float(theta), float(phi), queued)
    if cls is Allocate:
        return PhysAllocate(request, chosen_ref, queued)
    if cls is BellMeasure:
        return PhysBellMeasure(request, ref_of(op.qubit_a), ref_of(op.qubit_b), queued)
    if cls is Discard:
        return PhysDiscard(request, ref_of(op.qubit), queued)
    raise QStackError(ErrorCode.INVALID_PARAMETER, f"{cls.__name__} is not a local operation")


def op_from_wire(msg: Message, qubit_of: Any) -> Any:
    """A ``Phys*`` message as the local operation, qubits looked up with
    ``qubit_of(ref)`` (raising ``QStackError`` for an unknown one)."""
    cls = msg.__class__
    if cls is PhysGate:
        params: tuple = msg.params
        if msg.name == "u":
            if len(params) != 8:
                raise QStackError(ErrorCode.INVALID_PARAMETER,
                                  "gate 'u' needs the 8 reals of a 2x2 matrix")
            z = [complex(params[i], params[i + 1]) for i in range(0, 8, 2)]
            params = (np.array(z).reshape(2, 2),)
        return Gate(msg.name, tuple(qubit_of(q) for q in msg.qubits), params)
    if cls is PhysMeasure:
        basis: Any = msg.basis if msg.basis else (msg.theta, msg.phi)
        return Measure(qubit_of(msg.qubit), basis)
    if cls is PhysAllocate:
        return Allocate()
    if cls is PhysBellMeasure:
        return BellMeasure(qubit_of(msg.qubit_a), qubit_of(msg.qubit_b))
    if cls is PhysDiscard:
        return Discard(qubit_of(msg.qubit))
    raise QStackError(ErrorCode.UNEXPECTED_EVENT, f"{cls.__name__} is not a local operation")


# ---------------------------------------------------------------- daemon to daemon, and control

@message("emu.node", 0x0650)
@dataclass(frozen=True, slots=True)
class NodeBoot(Message):
    """First message each way on a connection between two node daemons: the
    sender's boot number (random per process start), so that a peer that
    comes back is known to have restarted (it remembers nothing) or not."""

    boot: int = field(metadata=_U63)


@message("emu.node", 0x0651)
@dataclass(frozen=True, slots=True)
class StatusQuery(Message):
    """(control -> daemon) Ask for the node's :class:`NodeStatus`."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))


@message("emu.node", 0x0652)
@dataclass(frozen=True, slots=True)
class NodeStatus(Message):
    """(daemon -> control) The node's figures: its peers up, qubits in
    memory, link pairs heralded at it, applications attached, failures
    recorded, how late its timers fired at most (model ns), and the links
    it believes down."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    node: str = field(metadata=_NAME)
    peers_up: tuple[str, ...] = field(metadata=limits(max_len=4096))
    qubits_in_memory: int = field(metadata=_U63)
    pairs_made: int = field(metadata=_U63)
    apps: int = field(metadata=_U63)
    failures: int = field(metadata=_U63)
    late_ns_max: int = field(metadata=_U63)
    #: the links this daemon believes down, each (a, b) in name order
    links_down: tuple[tuple[str, str], ...] = field(default=(), metadata=limits(max_len=4096))


@message("emu.node", 0x0653)
@dataclass(frozen=True, slots=True)
class NodeFault(Message):
    """(control -> daemon) A fault of ``specs/faults.md`` applied to this
    node's classical side: ``kind`` "reset" (the classical session with
    ``peer`` breaks: connections dropped, both ends told, then reconnected)."""

    kind: str = field(metadata=limits(max_len=16))
    peer: str = field(default="", metadata=_NAME)


_C = WConn(7, "bob", 49152)
VECTOR_EXAMPLES = {
    "app_connect": AppConnect(token=1, remote="bob", port=7, local_port=None, timeout_ns=None),
    "app_send_qubit": AppSendQubit(token=2, conn=_C, qubit=(1 << 48) + 3, metadata=b"hdr",
                                   min_fidelity=0.5, timeout_ns=10**9),
    "app_done_conn": AppDone(token=1, conn=_C),
    "app_failed": AppFailed(token=2, code=int(ErrorCode.TRANSPORT_CLOSED), detail="closed",
                            qubit=(1 << 48) + 3),
    "app_epr_arrived": AppEprArrived(conn=_C, seq=0, qubit=12, fidelity=0.93,
                                     pair=WPair("alice", 1, 0), initiator=True, token=4),
    "phys_gate_h": PhysGate(request=9, name="h", qubits=(12,), params=(), queued=True),
    "phys_measure_x": PhysMeasure(request=10, qubit=12, basis="X"),
    "phys_result": PhysResult(request=10, ok=True, value=1, done_ns=1_250_000),
    "wconn": _C,
    "wpair": WPair("alice", 1, 0),
    "app_welcome": AppWelcome(node="bob", epoch_ns=5_000_000_000, time_scale=1.0, seed=1,
                              app_id=1),
    "app_listen": AppListen(token=1, port=7, backlog=16),
    "app_unlisten": AppUnlisten(token=2, port=7),
    "app_accept": AppAccept(token=3, conn=_C),
    "app_consumed": AppConsumed(conn=_C, count=1),
    "app_create_epr": AppCreateEpr(token=4, conn=_C, number=2, min_fidelity=0.8,
                                   timeout_ns=None, metadata=b""),
    "app_send_bytes": AppSendBytes(token=5, conn=_C, data=b"hello"),
    "app_measure_pairs": AppMeasurePairs(token=8, conn=_C, number=1000, bases="E91",
                                         min_fidelity=0.0, timeout_ns=None),
    "app_pair_measured": AppPairMeasured(conn=_C, seq=3, pair=WPair("alice", 1, 3), setting=2,
                                         outcome=1, fidelity=0.91, initiator=False, token=None),
    "app_close": AppClose(token=6, conn=_C),
    "app_abort": AppAbort(token=7, conn=_C, code=int(ErrorCode.TRANSPORT_ABORTED)),
    "app_incoming": AppIncoming(port=7, conn=_C),
    "app_qubit_arrived": AppQubitArrived(conn=_C, seq=0, qubit=12, metadata=b"hdr",
                                         fidelity=0.95, latency_ns=420_000),
    "app_data_arrived": AppDataArrived(conn=_C, seq=1, data=b"hello"),
    "app_peer_closed": AppPeerClosed(conn=_C, code=int(ErrorCode.TRANSPORT_ABORTED),
                                     detail="the far end's application ended"),
    "app_lost": AppLost(conn=_C, seq=2, code=int(ErrorCode.LINK_EXPIRED), detail="cut-off",
                        kind="qubit"),
    "phys_allocate": PhysAllocate(request=8, ref=(1 << 48) + (1 << 24) + 1, queued=True),
    "phys_bell_measure": PhysBellMeasure(request=12, qubit_a=12, qubit_b=13),
    "phys_discard": PhysDiscard(request=13, qubit=12),
    "phys_settle": PhysSettle(request=14),
    "phys_query": PhysQuery(request=15),
    "phys_report": PhysReport(request=15, qubits_in_memory=3, pairs_made=40, behind_ns=90_000),
    "phys_link_state": PhysLinkState(a="alice", b="bob", up=False),
    "node_boot": NodeBoot(boot=0x1234_5678_9ABC),
    "status_query": StatusQuery(request=1),
    "node_status": NodeStatus(request=1, node="bob", peers_up=("alice", "carol"),
                              qubits_in_memory=2, pairs_made=40, apps=1, failures=0,
                              late_ns_max=180_000, links_down=(("bob", "carol"),)),
    "node_fault_reset": NodeFault(kind="reset", peer="alice"),
    "phys_result_failed": PhysResult(request=11, ok=False, code=int(ErrorCode.MEMORY_FULL),
                                     detail="alice: no free memory slot", done_ns=1_250_000),
    "phys_census_query": PhysCensusQuery(request=2),
    "phys_census": PhysCensus(request=2, engine=5, held=5, nodes=("alice", "bob"),
                              per_node=(2, 3)),
    "phys_node_state": PhysNodeState(node="repeater", up=False),
    "node_link_state": NodeLinkState(a="alice", b="repeater", up=False),
}


#: Most failure records one :class:`FailuresReport` carries.
MAX_REPORTED_FAILURES = 256


@message("emu.node", 0x0654)
@dataclass(frozen=True, slots=True)
class FailuresQuery(Message):
    """(control -> daemon) Ask for the failures the node's protocols recorded
    (their ``Fail`` actions, ``specs/protocol.md``), from record number
    ``since`` (0: the first) on: how a black-box tester sees a refusal that
    the spec says is recorded rather than answered."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    since: int = field(default=0, metadata=_U63)


@message("emu.node", 0x0655)
@dataclass(frozen=True, slots=True)
class FailuresReport(Message):
    """(daemon -> control) ``total`` failures recorded so far; the codes,
    protocols and details (each cut to 256 characters) of records ``since``
    .. ``since + len(codes) - 1`` (at most :data:`MAX_REPORTED_FAILURES`, the
    oldest first)."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    total: int = field(metadata=_U63)
    since: int = field(metadata=_U63)
    codes: tuple[int, ...] = field(metadata=limits(0, 65535, max_len=MAX_REPORTED_FAILURES))
    protocols: tuple[str, ...] = field(metadata=limits(max_len=MAX_REPORTED_FAILURES))
    details: tuple[str, ...] = field(metadata=limits(max_len=MAX_REPORTED_FAILURES))

    def __post_init__(self) -> None:
        if not len(self.codes) == len(self.protocols) == len(self.details):
            raise ValueError("codes, protocols and details must have one entry per record")


VECTOR_EXAMPLES.update({
    "failures_query": FailuresQuery(request=3, since=2),
    "failures_report": FailuresReport(request=3, total=3, since=2, codes=(305,),
                                      protocols=("network.qnp",),
                                      details=("Track for unknown circuit tester/7",)),
})


# ---------------------------------------------------------------- QKD pulse blocks (-> physics)

#: Detection events one :class:`PhysPulseRecord` frame carries at most: the
#: record of a block is cut into frames of this many events (11 bytes each at
#: most: an 8-byte index and three 1-byte values), 704 KiB, within the wire's
#: 1 MiB frame (``specs/wire.md``).
PULSE_RECORD_EVENTS = 1 << 16
_PR_INDEX = limits(max_len=8 * PULSE_RECORD_EVENTS)
_PR_BYTES = limits(max_len=PULSE_RECORD_EVENTS)
_PR_CLASSES = 8


@message("emu.physics", 0x064E)
@dataclass(frozen=True, slots=True)
class PhysPulseBlock(Message):
    """(daemon -> physics) A :class:`~qstack.physical.ops.PulseBlock`: send
    (``role`` "send") or receive ("receive") a block of ``n`` decoy-BB84
    pulses over the link with ``peer``; ``key`` (``key_to_wire``) pairs it
    with the other end's. Answered by one or more :class:`PhysPulseRecord`
    frames with the same ``request`` when the block ends."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    peer: str = field(metadata=_NAME)
    key: bytes = field(metadata=limits(max_len=256))
    n: int = field(metadata=_U63)
    role: str = field(default="send", metadata=limits(max_len=16))


@message("emu.physics", 0x064F)
@dataclass(frozen=True, slots=True)
class PhysPulseRecord(Message):
    """(physics -> daemon) Part ``part`` (0, 1, ...; ``last`` on the final one)
    of this end's :class:`~qstack.physical.ops.PulseRecord` of block
    ``request``: its detection events ``part * PULSE_RECORD_EVENTS`` onward
    as packed arrays (``index``: little-endian int64 pulse indices; ``basis``,
    ``bit``, ``cls``: one byte per event, ``cls`` empty at the receiver), and
    in every part the block's scalars."""

    request: int = field(metadata=limits(1, (1 << 63) - 1))
    part: int = field(metadata=limits(0, 0xFFFFFFFF))
    last: bool
    ok: bool
    role: str = field(default="", metadata=limits(max_len=16))
    n_pulses: int = field(default=0, metadata=_U63)
    index: bytes = field(default=b"", metadata=_PR_INDEX)
    basis: bytes = field(default=b"", metadata=_PR_BYTES)
    bit: bytes = field(default=b"", metadata=_PR_BYTES)
    cls: bytes = field(default=b"", metadata=_PR_BYTES)
    sent_per_class: tuple[int, ...] = field(default=(), metadata=limits(
        0, (1 << 63) - 1, max_len=_PR_CLASSES))
    start_ns: int = field(default=0, metadata=_U63)
    end_ns: int = field(default=0, metadata=_U63)
    period_ns: float = field(default=0.0, metadata=limits(0.0, 1e18))
    reason: str = field(default="", metadata=_DETAIL)
    intensities: tuple[float, ...] = field(default=(), metadata=limits(max_len=_PR_CLASSES))
    class_probs: tuple[float, ...] = field(default=(), metadata=limits(max_len=_PR_CLASSES))


def _u8(values: Any) -> bytes:
    return np.ascontiguousarray(values, dtype=np.uint8).tobytes()


def pulse_record_to_wire(request: int, rec: Any) -> list[PhysPulseRecord]:
    """A :class:`~qstack.physical.ops.PulseRecord` as its frames (one per
    :data:`PULSE_RECORD_EVENTS` detection events; one frame for none)."""
    if not rec.ok:
        return [PhysPulseRecord(request, 0, True, False, reason=str(rec.reason)[:1024])]
    index = np.ascontiguousarray(rec.index, dtype="<i8")
    events = int(index.size)
    cls = np.zeros(0, np.uint8) if rec.cls is None else np.asarray(rec.cls)
    frames = []
    starts = range(0, max(events, 1), PULSE_RECORD_EVENTS)
    for part, lo in enumerate(starts):
        hi = min(events, lo + PULSE_RECORD_EVENTS)
        frames.append(PhysPulseRecord(
            request, part, hi >= events, True, rec.role, int(rec.n_pulses),
            index[lo:hi].tobytes(), _u8(rec.basis[lo:hi]), _u8(rec.bit[lo:hi]),
            _u8(cls[lo:hi]) if cls.size else b"",
            tuple(int(c) for c in rec.sent_per_class), int(rec.start_ns), int(rec.end_ns),
            float(rec.period_ns), "", tuple(float(m) for m in rec.intensities),
            tuple(float(p) for p in rec.class_probs)))
    return frames


def pulse_record_from_wire(parts: list[PhysPulseRecord]) -> Any:
    """The :class:`~qstack.physical.ops.PulseRecord` of a block's frames (in
    order; a gap or a frame of another block raises ``QStackError``
    ``MALFORMED``)."""
    from qstack.physical.ops import PulseRecord

    first = parts[0]
    if [p.part for p in parts] != list(range(len(parts))) or \
            any(p.request != first.request for p in parts) or not parts[-1].last:
        raise QStackError(ErrorCode.MALFORMED,
                          f"pulse record {first.request}: frames out of order or missing")
    if not first.ok:
        return PulseRecord(False, reason=first.reason)

    def cat(name: str, dtype: str) -> np.ndarray:
        return np.frombuffer(b"".join(getattr(p, name) for p in parts), dtype=dtype).copy()

    index = cat("index", "<i8").astype(np.int64)
    basis, bit, cls = cat("basis", "u1"), cat("bit", "u1"), cat("cls", "u1")
    if not basis.size == bit.size == index.size or cls.size not in (0, index.size):
        raise QStackError(ErrorCode.MALFORMED,
                          f"pulse record {first.request}: arrays of different lengths")
    return PulseRecord(True, first.role, first.n_pulses, index, basis, bit, cls,
                       first.sent_per_class, first.start_ns, first.end_ns, first.period_ns, "",
                       first.intensities, first.class_probs)


__all__ += ["PhysPulseBlock", "PhysPulseRecord", "PULSE_RECORD_EVENTS", "pulse_record_to_wire",
            "pulse_record_from_wire"]

VECTOR_EXAMPLES.update({
    "phys_pulse_block": PhysPulseBlock(request=21, peer="bob", key=b"\x93\xa3qkd\xa5alice\x01",
                                       n=100_000, role="send"),
    "phys_pulse_record": PhysPulseRecord(
        request=21, part=0, last=True, ok=True, role="send", n_pulses=100_000,
        index=np.array([17, 4242], "<i8").tobytes(), basis=b"\x00\x01", bit=b"\x01\x00",
        cls=b"\x00\x02", sent_per_class=(50_000, 35_000, 15_000), start_ns=1_000,
        end_ns=101_000, period_ns=1.0, intensities=(0.6, 0.2, 0.0002),
        class_probs=(0.5, 0.35, 0.15)),
    "phys_pulse_record_failed": PhysPulseRecord(
        request=22, part=0, last=True, ok=False, reason="the link to 'bob' is down"),
})


# ---------------------------------------------------------------- QKD blocks (app <-> daemon)

#: Bytes of packed key one :class:`AppQkdResult` frame carries at most (a
#: longer key goes in several frames, each with the block's figures).
QKD_KEY_PART_BYTES = 1 << 19
_COUNTS = limits(0, (1 << 63) - 1, max_len=_PR_CLASSES)
_PROB01 = limits(0.0, 1.0)


@message("emu.app", 0x0638)
@dataclass(frozen=True, slots=True)
class AppQkdRequest(Message):
    """(app -> daemon) A :class:`~qstack.app.qkd.bb84.QkdRequest` for the
    node's ``app.qkd``: one decoy-BB84 block with neighbour ``peer``, the
    same fields (``request_id``: the application's tag, echoed in its result)."""

    peer: str = field(metadata=_NAME)
    pulses: int = field(metadata=limits(0, 1 << 62))
    request_id: int = field(metadata=_U63)
    finite: bool = True
    eps_sec: float = field(default=1e-10, metadata=_PROB01)
    eps_cor: float = field(default=1e-15, metadata=_PROB01)
    qber_max: float = field(default=0.11, metadata=_PROB01)
    phase_error_max: float = field(default=0.15, metadata=_PROB01)
    key_basis: int = field(default=0, metadata=limits(0, 1))
    cascade_variant: str = field(default="yan14", metadata=limits(max_len=16))
    decoys: int = field(default=0, metadata=limits(0, 255))


@message("emu.app", 0x0639)
@dataclass(frozen=True, slots=True)
class WQkdEstimate(Message):
    """A :class:`~qstack.app.qkd.estimation.FiniteKeyEstimate` (nested), its
    fields. Here and in :class:`AppQkdResult` a real that is NaN (not
    defined: no test bits, no Cascade run, ...) goes as nil (the wire
    carries no NaN)."""

    n_key: tuple[int, ...] = field(metadata=_COUNTS)
    n_test: tuple[int, ...] = field(metadata=_COUNTS)
    m_test: tuple[int, ...] = field(metadata=_COUNTS)
    s_key0: Optional[float]
    s_key1: Optional[float]
    s_test0: Optional[float]
    s_test1: Optional[float]
    v_test1: Optional[float]
    phase_error: Optional[float]
    gamma: Optional[float]
    eps_sec: Optional[float]
    eps_cor: Optional[float]
    finite: bool
    method: str = field(metadata=limits(max_len=16))
    m_key: tuple[int, ...] = field(metadata=_COUNTS)
    s_key0_upper: Optional[float]


@message("emu.app", 0x063A)
@dataclass(frozen=True, slots=True)
class AppQkdResult(Message):
    """(daemon -> app) Part ``part`` (``last`` on the final one) of a
    :class:`~qstack.app.qkd.bb84.QkdResult`: ``key`` the packed final key
    bits (most significant first) from byte ``part * QKD_KEY_PART_BYTES`` on,
    ``key_bits`` the key's length; every part carries the block's figures
    (same names as ``QkdResult``; ``code`` 0: none; the leaks by step)."""

    part: int = field(metadata=limits(0, 0xFFFFFFFF))
    last: bool
    ok: bool
    role: str = field(metadata=limits(max_len=16))
    peer: str = field(metadata=_NAME)
    block_id: int = field(metadata=_U63)
    request_id: int = field(metadata=_U63)
    reason: str = field(metadata=_DETAIL)
    code: int = field(metadata=_CODE)
    key_bits: int = field(metadata=_U63)
    key: bytes = field(metadata=limits(max_len=QKD_KEY_PART_BYTES))
    n_pulses: int = field(metadata=_U63)
    sent_per_class: tuple[int, ...] = field(metadata=_COUNTS)
    sifted: int = field(metadata=_U63)
    n_key: tuple[int, ...] = field(metadata=_COUNTS)
    n_test: tuple[int, ...] = field(metadata=_COUNTS)
    m_test: tuple[int, ...] = field(metadata=_COUNTS)
    qber_test_per_class: tuple[Optional[float], ...] = field(metadata=limits(max_len=_PR_CLASSES))
    qber_test: Optional[float]
    qber_key: Optional[float]
    estimate: Optional[WQkdEstimate]
    leak_error_correction: int = field(metadata=_U63)
    leak_verification: int = field(metadata=_U63)
    leak_finite_size: Optional[float]
    leak_test_bits: int = field(metadata=_U63)
    cascade_rounds: int = field(metadata=_U63)
    cascade_efficiency: Optional[float]
    start_ns: int = field(metadata=_U63)
    pulses_end_ns: int = field(metadata=_U63)
    end_ns: int = field(metadata=_U63)
    messages: int = field(metadata=_U63)
    message_bytes: int = field(metadata=_U63)


def qkd_request_to_wire(req: Any) -> AppQkdRequest:
    """A :class:`~qstack.app.qkd.bb84.QkdRequest` as :class:`AppQkdRequest`
    (a value the wire cannot carry raises ``EncodeError``)."""
    return AppQkdRequest(req.peer, req.pulses, req.request_id, req.finite, req.eps_sec,
                         req.eps_cor, req.qber_max, req.phase_error_max, req.key_basis,
                         req.cascade_variant, req.decoys)


def qkd_request_from_wire(msg: AppQkdRequest) -> Any:
    from qstack.app.qkd.bb84 import QkdRequest

    return QkdRequest(msg.peer, msg.pulses, msg.request_id, msg.finite, msg.eps_sec, msg.eps_cor,
                      msg.qber_max, msg.phase_error_max, msg.key_basis, msg.cascade_variant,
                      msg.decoys)


def _real(x: Any) -> float | None:
    """A real for the wire: NaN as None."""
    x = float(x)
    return None if math.isnan(x) else x


def _unreal(x: float | None) -> float:
    return math.nan if x is None else x


def qkd_result_to_wire(res: Any) -> list[AppQkdResult]:
    """A :class:`~qstack.app.qkd.bb84.QkdResult` as its frames (the packed key
    cut into :data:`QKD_KEY_PART_BYTES`-byte parts; one frame for a short key)."""
    est = res.estimate
    west = None if est is None else WQkdEstimate(
        tuple(int(x) for x in est.n_key), tuple(int(x) for x in est.n_test),
        tuple(int(x) for x in est.m_test), _real(est.s_key0), _real(est.s_key1),
        _real(est.s_test0), _real(est.s_test1), _real(est.v_test1), _real(est.phase_error),
        _real(est.gamma), _real(est.eps_sec), _real(est.eps_cor), bool(est.finite),
        str(est.method), tuple(int(x) for x in est.m_key), _real(est.s_key0_upper))
    packed = np.packbits(np.asarray(res.key, dtype=np.uint8)).tobytes()
    leaks = res.leaks
    starts = range(0, max(len(packed), 1), QKD_KEY_PART_BYTES)
    ints = lambda xs: tuple(int(x) for x in xs)     # noqa: E731 (numpy ints to ints)
    return [AppQkdResult(
        part, lo + QKD_KEY_PART_BYTES >= len(packed), bool(res.ok), res.role, res.peer,
        int(res.block_id), int(res.request_id), str(res.reason or "")[:1024],
        0 if res.code is None else int(res.code), int(res.key.size),
        packed[lo:lo + QKD_KEY_PART_BYTES], int(res.n_pulses), ints(res.sent_per_class),
        int(res.sifted), ints(res.n_key), ints(res.n_test), ints(res.m_test),
        tuple(_real(q) for q in res.qber_test_per_class), _real(res.qber_test),
        _real(res.qber_key), west, int(leaks.error_correction), int(leaks.verification),
        _real(leaks.finite_size), int(leaks.test_bits), int(res.cascade_rounds),
        _real(res.cascade_efficiency), int(res.start_ns), int(res.pulses_end_ns),
        int(res.end_ns), int(res.messages), int(res.message_bytes))
        for part, lo in enumerate(starts)]


def qkd_result_from_wire(parts: list[AppQkdResult]) -> Any:
    """The :class:`~qstack.app.qkd.bb84.QkdResult` of a result's frames, in order."""
    import dataclasses as dc

    from qstack.app.qkd.bb84 import QkdResult
    from qstack.app.qkd.estimation import FiniteKeyEstimate
    from qstack.app.qkd.postprocess import LeakRecord

    m = parts[0]
    if [p.part for p in parts] != list(range(len(parts))) or not parts[-1].last:
        raise QStackError(ErrorCode.MALFORMED, f"QKD result of block {m.block_id}: frames out "
                                               "of order or missing")
    packed = np.frombuffer(b"".join(p.key for p in parts), np.uint8)
    if m.key_bits > 8 * packed.size:
        raise QStackError(ErrorCode.MALFORMED, f"QKD result of block {m.block_id}: "
                                               f"{m.key_bits} key bits in {packed.size} bytes")
    key = np.unpackbits(packed)[:m.key_bits].astype(np.uint8)
    est = None if m.estimate is None else FiniteKeyEstimate(**{
        f.name: _unreal(v) if f.type in (float, "float") else v
        for f in dc.fields(FiniteKeyEstimate) for v in (getattr(m.estimate, f.name),)})
    return QkdResult(
        m.ok, m.role, m.peer, m.block_id, m.request_id, m.reason,
        as_code(m.code) if m.code else None, key, m.n_pulses, m.sent_per_class, m.sifted,
        m.n_key, m.n_test, m.m_test, tuple(_unreal(q) for q in m.qber_test_per_class),
        _unreal(m.qber_test), _unreal(m.qber_key), est,
        LeakRecord(m.leak_error_correction, m.leak_verification, _unreal(m.leak_finite_size),
                   m.leak_test_bits),
        m.cascade_rounds, _unreal(m.cascade_efficiency), m.start_ns, m.pulses_end_ns, m.end_ns,
        m.messages, m.message_bytes)


__all__ += ["AppQkdRequest", "AppQkdResult", "WQkdEstimate", "QKD_KEY_PART_BYTES",
            "qkd_request_to_wire", "qkd_request_from_wire", "qkd_result_to_wire",
            "qkd_result_from_wire"]

VECTOR_EXAMPLES.update({
    "app_qkd_request": AppQkdRequest(peer="bob", pulses=200_000, request_id=1, finite=False),
    "app_qkd_result": AppQkdResult(
        part=0, last=True, ok=True, role="send", peer="bob", block_id=1, request_id=1,
        reason="", code=0, key_bits=12, key=b"\xa5\x30", n_pulses=200_000,
        sent_per_class=(100_000, 70_000, 30_000), sifted=9000, n_key=(4000, 2000, 20),
        n_test=(400, 200, 3), m_test=(8, 6, 1), qber_test_per_class=(0.02, 0.03, 0.33),
        qber_test=0.025, qber_key=0.021,
        estimate=WQkdEstimate((4000, 2000, 20), (400, 200, 3), (8, 6, 1), 1.5, 1800.0, 0.2,
                              190.0, 4.0, 0.05, 0.0, 1e-10, 1e-15, False, "two-decoy", (),
                              0.0),
        leak_error_correction=900, leak_verification=50, leak_finite_size=0.0,
        leak_test_bits=603, cascade_rounds=4, cascade_efficiency=1.08, start_ns=10_000,
        pulses_end_ns=210_000, end_ns=5_000_000, messages=40, message_bytes=30_000),
    "wqkd_estimate": WQkdEstimate((4000, 2000, 20), (400, 200, 3), (8, 6, 1), 1.5, 1800.0, 0.2,
                                  190.0, 4.0, 0.05, None, 1e-10, 1e-15, True, "two-decoy", (),
                                  None),
})
