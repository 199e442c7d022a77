"""Wire messages of the entanglement generation protocol (EGP), protocol ``link.egp``.

Type codes 0x0200-0x0207 (0x0200 is only ever nested); ``specs/link.md`` is the normative description
(fields, ranges, which end sends what, and when). Of a link's two ends the
one whose name sorts first is the **leader** (it keeps the queue and decides
which item each pair serves), the other the **follower**. All times are
absolute nanoseconds of the nodes' common clock; fidelities are dimensionless.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qstack.core.messages import Message, limits, message
from qstack.link.service import RequestType

__all__ = ["QueueSpec", "QueueAdd", "QueueReject", "QueueRequest", "Abort",
           "Expire", "QueueTopUp", "VECTOR_EXAMPLES", "BASES"]

#: Values of ``measure_basis`` on the wire.
BASES = ("Z", "X", "Y", "random")

_NAME = limits(max_len=64)
_INT32 = limits(0, 2**31 - 1)
_TIME = limits(0, 2**62)


@message("link.egp", 0x0200, version=2)
@dataclass(frozen=True, slots=True)
class QueueSpec(Message):
    """What a queue item asks for (nested in :class:`QueueAdd` / :class:`QueueRequest`).

    ``param`` is the scheme parameter the originating end chose (alpha for
    single-click); ``deadline_ns`` 0 means none. ``standing`` (version 2):
    the item stays open after ``number`` pairs, its requester adds more
    (:class:`QueueTopUp`); it has no deadline and is not consecutive.
    """

    create_id: int = field(metadata=_INT32)
    number: int = field(metadata=limits(1, 65535))
    min_fidelity: float = field(metadata=limits(0.0, 1.0))
    deadline_ns: int = field(metadata=_TIME)
    purpose_id: int = field(metadata=limits(0, 65535))
    type: RequestType
    measure_basis: str = field(metadata=limits(max_len=8))
    priority: int = field(metadata=limits(0, 255))
    atomic: bool
    consecutive: bool
    param: float = field(metadata=limits(0.0, 1.0))
    standing: bool = False

    def __post_init__(self) -> None:
        if self.measure_basis not in BASES:
            raise ValueError(f"measure_basis must be one of {BASES}, got {self.measure_basis!r}")


@message("link.egp", 0x0201, version=3)
@dataclass(frozen=True, slots=True)
class QueueAdd(Message):
    """Leader -> follower: item ``qid`` joins the queue.

    ``origin`` is the node that submitted the CREATE (creator of the pairs'
    entanglement ids). The follower answers only to refuse
    (:class:`QueueReject`). Version 2: no start time (the leader decides
    which item each pair serves and the heralds name it, so no end waits for
    a time at which both would know the item). Version 3: the spec's
    ``standing``.
    """

    qid: int = field(metadata=_INT32)
    origin: str = field(metadata=_NAME)
    spec: QueueSpec


@message("link.egp", 0x0203)
@dataclass(frozen=True, slots=True)
class QueueReject(Message):
    """Either way: the item is refused. From the follower ``qid`` names a
    :class:`QueueAdd`; from the leader (answering a :class:`QueueRequest`)
    ``qid`` is -1 and ``create_id`` names the slave's request. ``code`` is a
    link error code (200-299)."""

    qid: int = field(metadata=limits(-1, 2**31 - 1))
    create_id: int = field(metadata=_INT32)
    code: int = field(metadata=limits(200, 299))
    detail: str = field(metadata=limits(max_len=256))


@message("link.egp", 0x0204, version=2)
@dataclass(frozen=True, slots=True)
class QueueRequest(Message):
    """Follower -> leader: please add this request (the follower's own CREATE)
    to the queue. Version 2: the spec's ``standing``."""

    spec: QueueSpec


@message("link.egp", 0x0205, version=3)
@dataclass(frozen=True, slots=True)
class Abort(Message):
    """Leader -> follower: item ``qid`` ends with ``code`` after ``done`` pairs
    (the follower still delivers those it has not had the herald of yet).
    Follower -> leader with ``qid`` = -1: the follower's memory stayed full
    through its retries; the leader aborts the item it is attempting.
    Version 2: ``done`` replaces a time; version 3: ``done`` up to 2**31 - 1
    (a standing item may make more than 65535 pairs)."""

    qid: int = field(metadata=limits(-1, 2**31 - 1))
    code: int = field(metadata=limits(200, 299))
    done: int = field(metadata=_INT32)


@message("link.egp", 0x0206)
@dataclass(frozen=True, slots=True)
class Expire(Message):
    """Either way: the pair with link sequence number ``seq`` is gone at the
    sender (memory cut-off, loss); the receiver discards its half."""

    seq: int = field(metadata=limits(0, 2**62))
    reason: str = field(metadata=limits(max_len=64))


@message("link.egp", 0x0207)
@dataclass(frozen=True, slots=True)
class QueueTopUp(Message):
    """The standing item ``qid`` may have ``number`` pairs more: from its
    requesting follower to the leader (the follower's ``CreateTopUp``); from
    the leader to the follower when the leader requested it and the link
    runs more than one generation process (the follower then keeps as many
    Entangles out as pairs may come; with one it keeps one out while the
    item is open, and is not told)."""

    qid: int = field(metadata=_INT32)
    number: int = field(metadata=limits(1, 65535))


_SPEC = QueueSpec(create_id=7, number=3, min_fidelity=0.8, deadline_ns=2_000_000, purpose_id=4,
                  type=RequestType.KEEP, measure_basis="Z", priority=1, atomic=False,
                  consecutive=True, param=0.1)
_SPEC_M = QueueSpec(create_id=8, number=1000, min_fidelity=0.0, deadline_ns=0, purpose_id=9,
                    type=RequestType.MEASURE, measure_basis="random", priority=0, atomic=False,
                    consecutive=False, param=0.05)
_SPEC_STANDING = QueueSpec(create_id=2**30 + 5, number=4, min_fidelity=0.9, deadline_ns=0,
                           purpose_id=32768, type=RequestType.KEEP, measure_basis="Z",
                           priority=1, atomic=False, consecutive=False, param=0.0,
                           standing=True)

#: One example per message class; ``python -m qstack.core.vectors write`` turns
#: them into ``specs/vectors/link/*.json``.
VECTOR_EXAMPLES = {
    "queue_spec": _SPEC,
    "queue_add_keep": QueueAdd(qid=12, origin="alice", spec=_SPEC),
    "queue_add_measure": QueueAdd(qid=13, origin="bob", spec=_SPEC_M),
    "queue_reject": QueueReject(qid=12, create_id=7, code=208, detail="queue full"),
    "queue_request": QueueRequest(spec=_SPEC_M),
    "queue_request_standing": QueueRequest(spec=_SPEC_STANDING),
    "queue_top_up": QueueTopUp(qid=12, number=4),
    "abort": Abort(qid=12, code=205, done=2),
    "abort_standing": Abort(qid=12, code=210, done=100_000),
    "expire": Expire(seq=42, reason="cutoff"),
}
