"""Wire messages of the teleportation transport, protocol ``transport.qtp``.

Type codes 0x0401-0x040A. ``specs/transport.md`` is the normative description
(fields, ranges, the state machine, which end sends what and when). Ports are
16-bit; sequence numbers count the items (qubits, EPR pairs, byte messages)
of one direction of one connection, from 0. Times are the sender's clock in
nanoseconds and only feed metrics.

A pair is named on the wire as the network layer names it,
``(head, circuit_id, seq)`` (:class:`qstack.network.service.PairId`): both ends
of an end-to-end pair receive the same id, which is what lets the receiver bind
a header to the qubit it describes whatever the order of arrival.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qstack.core.errors import ErrorCode
from qstack.core.messages import Message, limits, message

__all__ = [
    "Syn", "SynAck", "Rst", "Fin", "QubitHeader", "EprHeader", "Data", "PairRelease", "Ack",
    "MeasuredHeader",
    "Window", "VECTOR_EXAMPLES", "PROTOCOL", "MAX_METADATA",
]

#: The transport protocol's name on a node (messages are routed to it).
PROTOCOL = "transport.qtp"

_PORT = limits(0, 65535)
_SEQ = limits(0, 2**32 - 1)
_TIME = limits(0, 2**62)
#: (head node, circuit id, pair seq): the network layer's PairId.
_PAIR = limits(0, 2**63 - 1, max_len=64)
#: Application metadata carried with a qubit or EPR pair, bytes.
MAX_METADATA = 1024


@message(PROTOCOL, 0x0401, version=2)
@dataclass(frozen=True, slots=True)
class Syn(Message):
    """Open a connection from ``src_port`` on the sender to ``dst_port`` on the
    receiver; the receiver may send items ``0 .. limit-1`` (version 2: ``limit``)."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    limit: int = field(default=0, metadata=_SEQ)


@message(PROTOCOL, 0x0402, version=2)
@dataclass(frozen=True, slots=True)
class SynAck(Message):
    """The listener on ``src_port`` took the connection from ``dst_port``; the
    connecting end may send items ``0 .. limit-1`` (0 until the listening
    application accepts it; version 2: ``limit``)."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    limit: int = field(default=0, metadata=_SEQ)


@message(PROTOCOL, 0x0403)
@dataclass(frozen=True, slots=True)
class Rst(Message):
    """Refuse or abort the connection (``code`` in the transport block, 400-499)."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    code: int = field(metadata=limits(400, 499))
    detail: str = field(default="", metadata=limits(max_len=256))


@message(PROTOCOL, 0x0404)
@dataclass(frozen=True, slots=True)
class Fin(Message):
    """The sender closed its side after sending items ``0 .. seq-1``."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    seq: int = field(metadata=_SEQ)


@message(PROTOCOL, 0x0405)
@dataclass(frozen=True, slots=True)
class QubitHeader(Message):
    """Item ``seq``: a qubit teleported over pair ``pair``.

    ``m_x``, ``m_z``: the sender's Bell-measurement outcome (Bell index
    ``(m_x << 1) | m_z`` of (its qubit, its half)). The receiver applies
    ``X^x Z^z`` with ``(x, z)`` the bits of ``bsm ^ bell_index`` to its half.
    ``sent_ns``: when the application asked to send (sender's clock).
    """

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    seq: int = field(metadata=_SEQ)
    pair: tuple[str, int, int] = field(metadata=_PAIR)
    m_x: bool
    m_z: bool
    sent_ns: int = field(metadata=_TIME)
    metadata: bytes = field(default=b"", metadata=limits(max_len=MAX_METADATA))


@message(PROTOCOL, 0x0406)
@dataclass(frozen=True, slots=True)
class EprHeader(Message):
    """Item ``seq``: the receiver's half of pair ``pair`` is an EPR pair of this
    connection (the receiver corrects it to Phi+)."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    seq: int = field(metadata=_SEQ)
    pair: tuple[str, int, int] = field(metadata=_PAIR)
    sent_ns: int = field(metadata=_TIME)
    metadata: bytes = field(default=b"", metadata=limits(max_len=MAX_METADATA))


@message(PROTOCOL, 0x0407)
@dataclass(frozen=True, slots=True)
class Data(Message):
    """Item ``seq``: classical bytes."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    seq: int = field(metadata=_SEQ)
    payload: bytes = field(metadata=limits(max_len=65536))


@message(PROTOCOL, 0x0408)
@dataclass(frozen=True, slots=True)
class PairRelease(Message):
    """The sender will not use pair ``pair`` (its send ended first, or it had a
    surplus): the receiver frees its half."""

    pair: tuple[str, int, int] = field(metadata=_PAIR)


@message(PROTOCOL, 0x0409, version=2)
@dataclass(frozen=True, slots=True)
class Ack(Message):
    """Settled at the receiver: with ``code`` 0, every item up to ``seq`` not
    yet acknowledged was delivered (cumulative, version 2); with another code
    item ``seq`` alone was lost (a transport or network error code). The
    receiver sends them in the order of the items, so a loss is always
    acknowledged before an ``Ack`` that covers later items. The sender may
    now send items up to ``limit - 1``."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    seq: int = field(metadata=_SEQ)
    code: int = field(metadata=limits(0, 999))
    limit: int = field(metadata=_SEQ)


@message(PROTOCOL, 0x040A)
@dataclass(frozen=True, slots=True)
class Window(Message):
    """The sender of this message may now receive items up to ``limit - 1``
    (its application took items, or accepted the connection)."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    limit: int = field(metadata=_SEQ)


@message(PROTOCOL, 0x040B)
@dataclass(frozen=True, slots=True)
class MeasuredHeader(Message):
    """Item ``seq``: the receiver's measurement of its half of the
    measure-directly pair ``pair`` (network type D, basis set ``bases``) is
    an item of this connection; both ends deliver it as item ``seq``."""

    src_port: int = field(metadata=_PORT)
    dst_port: int = field(metadata=_PORT)
    seq: int = field(metadata=_SEQ)
    pair: tuple[str, int, int] = field(metadata=_PAIR)
    sent_ns: int = field(metadata=_TIME)
    bases: str = field(default="ZX", metadata=limits(max_len=8))


_P = ("alice", 3, 17)

#: One example of every message, written to ``specs/vectors/transport/``.
VECTOR_EXAMPLES = {
    "syn": Syn(49152, 7, 4),
    "synack": SynAck(7, 49152, 0),
    "rst_refused": Rst(7, 49152, int(ErrorCode.TRANSPORT_CONNECTION_REFUSED), "nobody listens on 7"),
    "fin": Fin(49152, 7, 12),
    "qubit_header": QubitHeader(49152, 7, 0, _P, True, False, 1_500_000, b"\x01"),
    "epr_header": EprHeader(49152, 7, 1, ("alice", 3, 18), 2_000_000, b""),
    "data": Data(49152, 7, 2, b"hello"),
    "pair_release": PairRelease(("alice", 3, 19)),
    "ack": Ack(7, 49152, 0, 0, 5),
    "ack_lost": Ack(7, 49152, 1, int(ErrorCode.NET_CIRCUIT_TORN_DOWN), 6),
    "window": Window(7, 49152, 8),
    "measured_header": MeasuredHeader(49152, 7, 3, ("alice", 3, 20), 2_500_000, "E91"),
}
