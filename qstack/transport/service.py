"""The transport layer's service primitives: what a socket submits and receives.

Local events between the socket API (:mod:`qstack.transport.socket`) and the
transport protocol (:mod:`qstack.transport.protocol`) on one node, not wire
messages. Every request carries a ``token`` chosen by the caller; the protocol
answers each request with exactly one :class:`Done` or :class:`Failed` bearing
that token. Arrivals (:class:`Incoming`, :class:`QubitArrived`,
:class:`EprArrived`, :class:`DataArrived`, :class:`PeerClosed`, :class:`Lost`)
are delivered unasked.

A connection is named at each end by :class:`Conn` (local port, remote node,
remote port), like a TCP four-tuple without the local address. Times are
integer nanoseconds; ``timeout_ns`` ``None`` means no limit.

:func:`check_request` checks a request's arguments as the socket API does
(ports 0..65535, ``number`` 1..65535, fidelities in [0, 1], metadata and data
within their wire limits, timeouts integers in 0..2**63-1): the protocol
answers a bad request with ``Failed`` (``BAD_FIELD``, ``OUT_OF_RANGE``)
before anything changes, whoever submitted it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from qstack.core.args import bytes_arg, float_arg, int_arg, name_arg, show, timeout_arg
from qstack.core.errors import ErrorCode, QStackError
from qstack.core.protocol import fast_init
from qstack.network.service import MD_BASIS_SETS
from qstack.transport.messages import MAX_METADATA, Data

__all__ = [
    "Conn", "Listen", "Unlisten", "Accept", "Consumed", "Connect", "SendQubit", "CreateEpr",
    "SendBytes", "Close", "Abort", "MeasurePairs",
    "Done", "Failed", "Incoming", "QubitArrived", "EprArrived", "DataArrived", "PeerClosed",
    "PairMeasured",
    "Lost", "check_request", "MAX_METADATA", "MAX_DATA",
]

#: Largest ``data`` of one :class:`SendBytes`, bytes (the ``Data`` message's
#: ``payload`` limit); ``MAX_METADATA`` (1024) is the headers' ``metadata`` limit.
MAX_DATA = next(fc.max_len for fc in Data._FIELDS if fc.name == "payload")


@fast_init
@dataclass(frozen=True, slots=True, order=True)
class Conn:
    """One end of a connection: ``local_port`` here, ``remote_port`` on ``remote``."""

    local_port: int
    remote: str
    remote_port: int

    def __str__(self) -> str:
        return f":{self.local_port}<->{self.remote}:{self.remote_port}"


# ---------------------------------------------------------------- requests (down)

@fast_init
@dataclass(frozen=True, slots=True)
class Listen:
    """Accept connections on ``port``; at most ``backlog`` of them not yet
    accepted (a further ``Syn`` is refused, ``TRANSPORT_CONNECTION_REFUSED``)."""

    token: int
    port: int
    backlog: int = 16


@fast_init
@dataclass(frozen=True, slots=True)
class Accept:
    """The application took connection ``conn`` from its listening port: it
    may now receive (its receive window opens)."""

    token: int
    conn: "Conn"


@fast_init
@dataclass(frozen=True, slots=True)
class Consumed:
    """The application took ``count`` items of ``conn`` (qubits, pairs,
    bytes, losses) from the socket: the receive window moves on. No answer."""

    conn: "Conn"
    count: int = 1


@fast_init
@dataclass(frozen=True, slots=True)
class Unlisten:
    """Stop accepting on ``port`` (established connections stay)."""

    token: int
    port: int


@fast_init
@dataclass(frozen=True, slots=True)
class Connect:
    """Open a connection to ``port`` on ``remote``; ``Done.value`` is the :class:`Conn`.
    ``local_port`` None picks a free ephemeral port (49152 and up)."""

    token: int
    remote: str
    port: int
    local_port: int | None = None
    timeout_ns: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class SendQubit:
    """Teleport ``qubit`` (an opaque reference) over ``conn``.

    ``Done`` once the far end has the qubit (its acknowledgement); ``Failed``
    before the qubit was measured (``TRANSPORT_NO_PAIR`` when no pair could be
    had within ``timeout_ns``, the connection closed, ...) leaves it untouched
    with the caller (``Failed.qubit``); ``Failed`` after (the far end lost its
    half, restarted, closed) has ``qubit`` None: the qubit is lost and the code
    says why.
    """

    token: int
    conn: Conn
    qubit: Any
    metadata: bytes = b""
    min_fidelity: float = 0.0
    timeout_ns: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class CreateEpr:
    """Create ``number`` EPR pairs (Phi+) with the far end of ``conn``; each
    local half is delivered as :class:`EprArrived`, then ``Done`` (value: the
    number made) once the far end has all its halves. ``Failed`` says how
    many were made."""

    token: int
    conn: Conn
    number: int = 1
    min_fidelity: float = 0.0
    timeout_ns: int | None = None
    metadata: bytes = b""


@fast_init
@dataclass(frozen=True, slots=True)
class MeasurePairs:
    """Measure ``number`` end-to-end pairs with the far end of ``conn``
    directly: the network's measure-directly service (type D) in basis set
    ``bases`` (a name of :data:`qstack.network.service.MD_BASIS_SETS`; this
    end, which asks, draws from the set's first list, the far end from its
    second). No memory is held at either end: each end measures its half of
    each link pair as the link delivers it. Each pair is delivered at both
    ends as a :class:`PairMeasured` with the same ``seq`` and ``pair``, then
    ``Done`` (value: the number made) once the far end has them all."""

    token: int
    conn: Conn
    number: int = 1
    bases: str = "ZX"
    min_fidelity: float = 0.0
    timeout_ns: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class SendBytes:
    """Send classical ``data`` (at most 65536 bytes) in order with the other
    items; ``Done`` when sent (the receive window allowing)."""

    token: int
    conn: Conn
    data: bytes


@fast_init
@dataclass(frozen=True, slots=True)
class Close:
    """Close ``conn``: waiting sends fail with ``TRANSPORT_CLOSED`` (qubits
    returned), a teleportation already measured still has its header sent, then
    the far end is told which was the last item."""

    token: int
    conn: Conn


@fast_init
@dataclass(frozen=True, slots=True)
class Abort:
    """End ``conn`` at once, abnormally (its application ended without
    closing it): waiting sends fail with ``TRANSPORT_CLOSED`` (qubits
    returned), the far end gets ``Rst(code)``."""

    token: int
    conn: Conn
    code: ErrorCode = ErrorCode.TRANSPORT_ABORTED


# ---------------------------------------------------------------- indications (up)

@fast_init
@dataclass(frozen=True, slots=True)
class Done:
    """Request ``token`` succeeded; ``value`` is request-specific."""

    token: int
    value: Any = None


@fast_init
@dataclass(frozen=True, slots=True)
class Failed:
    """Request ``token`` failed with ``code``; ``qubit`` hands back a qubit that
    was not sent."""

    token: int
    code: ErrorCode
    detail: str = ""
    qubit: Any = None


@fast_init
@dataclass(frozen=True, slots=True)
class Incoming:
    """A connection ``conn`` was opened to the listening ``port``."""

    port: int
    conn: Conn


@fast_init
@dataclass(frozen=True, slots=True)
class QubitArrived:
    """Item ``seq`` of ``conn``: a teleported ``qubit`` (corrected) with the
    sender's ``metadata``. ``fidelity``: the network's estimate for the pair it
    used; ``latency_ns``: from the sender's request to delivery (clocks of two
    nodes: exact in simulation)."""

    conn: Conn
    seq: int
    qubit: Any
    metadata: bytes
    fidelity: float
    latency_ns: int


@fast_init
@dataclass(frozen=True, slots=True)
class EprArrived:
    """Item ``seq`` of ``conn``: this end's half of an EPR pair in Phi+.
    ``initiator`` is True at the end that asked for it (``token`` set there)."""

    conn: Conn
    seq: int
    qubit: Any
    fidelity: float
    pair: tuple
    initiator: bool
    token: int | None = None
    metadata: bytes = b""


@fast_init
@dataclass(frozen=True, slots=True)
class PairMeasured:
    """Item ``seq`` of ``conn``: this end's measurement of measure-directly
    pair ``pair``: ``setting`` (the index of its angle in this end's list of
    the basis set) and ``outcome`` (0/1), the Pauli frame folded in at the
    far end of the request (as if measured on Phi+). ``fidelity``: the
    network's estimate. ``initiator`` is True at the end that asked for it
    (``token`` set there)."""

    conn: Conn
    seq: int
    pair: tuple
    setting: int
    outcome: int
    fidelity: float
    initiator: bool
    token: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class DataArrived:
    """Item ``seq`` of ``conn``: classical bytes."""

    conn: Conn
    seq: int
    data: bytes


@fast_init
@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The far end closed ``conn`` (after its last item was delivered), or the
    connection died (``code`` set: peer reset, refused)."""

    conn: Conn
    code: ErrorCode | None = None
    detail: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class Lost:
    """Item ``seq`` of ``conn`` could not be delivered (its pair expired after
    the sender had measured): it is skipped so later items still flow.
    ``kind`` is what was lost: "qubit" or "epr"."""

    conn: Conn
    seq: int
    code: ErrorCode
    detail: str = ""
    kind: str = "qubit"


# ---------------------------------------------------------------- checking requests

def _port(name: str, value: Any) -> int:
    return int_arg(name, value, 0, 65535)


def _conn(value: Any) -> None:
    if not isinstance(value, Conn):
        raise QStackError(ErrorCode.BAD_FIELD, f"conn: expected a Conn, got {show(value)}")


def _fidelity(value: Any) -> float:
    return float_arg("min_fidelity", value, 0.0, 1.0)


def _check_listen(req: Listen | Unlisten, now_ns: int) -> Any:
    port = _port("port", req.port)
    if req.__class__ is Listen:
        backlog = int_arg("backlog", req.backlog, 1, 65535)
        if backlog is not req.backlog:
            return replace(req, port=port, backlog=backlog)
    return req if port is req.port else replace(req, port=port)


def _check_connect(req: Connect, now_ns: int) -> Connect:
    name_arg("remote", req.remote)
    port = _port("port", req.port)
    local = None if req.local_port is None else _port("local_port", req.local_port)
    timeout = timeout_arg("timeout_ns", req.timeout_ns, now_ns)
    if port is req.port and local is req.local_port and timeout is req.timeout_ns:
        return req
    return replace(req, port=port, local_port=local, timeout_ns=timeout)


def _check_send_qubit(req: SendQubit, now_ns: int) -> SendQubit:
    _conn(req.conn)
    metadata = bytes_arg("metadata", req.metadata, MAX_METADATA)
    fidelity = _fidelity(req.min_fidelity)
    timeout = timeout_arg("timeout_ns", req.timeout_ns, now_ns)
    if metadata is req.metadata and fidelity is req.min_fidelity and timeout is req.timeout_ns:
        return req
    return replace(req, metadata=metadata, min_fidelity=fidelity, timeout_ns=timeout)


def _check_create_epr(req: CreateEpr, now_ns: int) -> CreateEpr:
    _conn(req.conn)
    number = int_arg("number", req.number, 1, 65535)
    fidelity = _fidelity(req.min_fidelity)
    timeout = timeout_arg("timeout_ns", req.timeout_ns, now_ns)
    metadata = bytes_arg("metadata", req.metadata, MAX_METADATA)
    if (number is req.number and fidelity is req.min_fidelity and timeout is req.timeout_ns
            and metadata is req.metadata):
        return req
    return replace(req, number=number, min_fidelity=fidelity, timeout_ns=timeout,
                   metadata=metadata)


def _check_measure_pairs(req: MeasurePairs, now_ns: int) -> MeasurePairs:
    _conn(req.conn)
    number = int_arg("number", req.number, 1, 65535)
    fidelity = _fidelity(req.min_fidelity)
    timeout = timeout_arg("timeout_ns", req.timeout_ns, now_ns)
    if not isinstance(req.bases, str) or req.bases not in MD_BASIS_SETS:
        raise QStackError(ErrorCode.INVALID_PARAMETER,
                          f"bases: expected one of {sorted(MD_BASIS_SETS)}, got {show(req.bases)}")
    if number is req.number and fidelity is req.min_fidelity and timeout is req.timeout_ns:
        return req
    return replace(req, number=number, min_fidelity=fidelity, timeout_ns=timeout)


def _check_send_bytes(req: SendBytes, now_ns: int) -> SendBytes:
    _conn(req.conn)
    data = bytes_arg("data", req.data, MAX_DATA)
    return req if data is req.data else replace(req, data=data)


def _check_close(req: Close, now_ns: int) -> Close:
    _conn(req.conn)
    return req


_CHECKS = {Listen: _check_listen, Unlisten: _check_listen, Connect: _check_connect,
           SendQubit: _check_send_qubit, CreateEpr: _check_create_epr,
           MeasurePairs: _check_measure_pairs,
           SendBytes: _check_send_bytes, Close: _check_close}


def check_request(req: Any, now_ns: int) -> Any:
    """``req`` with its arguments checked: the request itself, or a copy with
    values normalised (``bytes`` for a bytearray, ``float`` for an int
    fidelity, None for a timeout that would end after the end of simulated
    time, so that no timer is set past it). Raises :class:`QStackError`
    (``BAD_FIELD``, ``OUT_OF_RANGE``) naming the argument and the value.
    A request type without a check here passes unchanged (its handler checks
    what it needs)."""
    check = _CHECKS.get(type(req))
    return req if check is None else check(req, now_ns)
