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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qstack.core.errors import ErrorCode

__all__ = [
    "Conn", "Listen", "Unlisten", "Accept", "Consumed", "Connect", "SendQubit", "CreateEpr",
    "SendBytes", "Close", "Abort",
    "Done", "Failed", "Incoming", "QubitArrived", "EprArrived", "DataArrived", "PeerClosed",
    "Lost",
]


@dataclass(frozen=True, slots=True, order=True)
class Conn:
    """One end of a connection: ``local_port`` here, ``remote_port`` on ``remote``."""

    local_port: int
    remote: str
    remote_port: int

    def __str__(self) -> str:
        return f":{self.local_port}<->{self.remote}:{self.remote_port}"


# ---------------------------------------------------------------- requests (down)

@dataclass(frozen=True, slots=True)
class Listen:
    """Accept connections on ``port``; at most ``backlog`` of them not yet
    accepted (a further ``Syn`` is refused, ``TRANSPORT_CONNECTION_REFUSED``)."""

    token: int
    port: int
    backlog: int = 16


@dataclass(frozen=True, slots=True)
class Accept:
    """The application took connection ``conn`` from its listening port: it
    may now receive (its receive window opens)."""

    token: int
    conn: "Conn"


@dataclass(frozen=True, slots=True)
class Consumed:
    """The application took ``count`` items of ``conn`` (qubits, pairs,
    bytes, losses) from the socket: the receive window moves on. No answer."""

    conn: "Conn"
    count: int = 1


@dataclass(frozen=True, slots=True)
class Unlisten:
    """Stop accepting on ``port`` (established connections stay)."""

    token: int
    port: int


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a connection to ``port`` on ``remote``; ``Done.value`` is the :class:`Conn`.
    ``local_port`` None picks a free ephemeral port (49152 and up)."""

    token: int
    remote: str
    port: int
    local_port: int | None = None
    timeout_ns: int | None = None


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


@dataclass(frozen=True, slots=True)
class SendBytes:
    """Send classical ``data`` (at most 65536 bytes) in order with the other
    items; ``Done`` when sent (the receive window allowing)."""

    token: int
    conn: Conn
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``conn``: waiting sends fail with ``TRANSPORT_CLOSED`` (qubits
    returned), a teleportation already measured still has its header sent, then
    the far end is told which was the last item."""

    token: int
    conn: Conn


@dataclass(frozen=True, slots=True)
class Abort:
    """End ``conn`` at once, abnormally (its application ended without
    closing it): waiting sends fail with ``TRANSPORT_CLOSED`` (qubits
    returned), the far end gets ``Rst(code)``."""

    token: int
    conn: Conn
    code: ErrorCode = ErrorCode.TRANSPORT_ABORTED


# ---------------------------------------------------------------- indications (up)

@dataclass(frozen=True, slots=True)
class Done:
    """Request ``token`` succeeded; ``value`` is request-specific."""

    token: int
    value: Any = None


@dataclass(frozen=True, slots=True)
class Failed:
    """Request ``token`` failed with ``code``; ``qubit`` hands back a qubit that
    was not sent."""

    token: int
    code: ErrorCode
    detail: str = ""
    qubit: Any = None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A connection ``conn`` was opened to the listening ``port``."""

    port: int
    conn: Conn


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


@dataclass(frozen=True, slots=True)
class DataArrived:
    """Item ``seq`` of ``conn``: classical bytes."""

    conn: Conn
    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The far end closed ``conn`` (after its last item was delivered), or the
    connection died (``code`` set: peer reset, refused)."""

    conn: Conn
    code: ErrorCode | None = None
    detail: str = ""


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
