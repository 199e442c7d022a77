"""The link layer's service primitives: what the layer above submits and receives.

After Dahlberg et al., "A link layer protocol for quantum networks",
SIGCOMM 2019: CREATE in, OK / ERR / EXPIRE out. These are local events
(between layers on one node), not wire messages; ``specs/link.md`` defines them
together with the wire messages of the entanglement generation protocol.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from qstack.core.errors import ErrorCode
from qstack.core.protocol import fast_init


class RequestType(IntEnum):
    """K: create and keep the pair in memory; M: measure directly (QKD-like)."""

    KEEP = 0
    MEASURE = 1


@fast_init
@dataclass(frozen=True, slots=True)
class EntanglementId:
    """Names one delivered pair identically at both ends: (creator, receiver, sequence)."""

    creator: str
    receiver: str
    seq: int


@fast_init
@dataclass(frozen=True, slots=True)
class CreateRequest:
    """CREATE(remote, number, min fidelity, max time, purpose, type, ...).

    ``max_time_ns`` 0 means no limit. ``measure_basis`` (type M only) is "Z",
    "X", "Y" or "random" (each pair measured in a uniformly random one of Z/X,
    as BB84-like protocols want). ``priority``: 0 is highest. ``atomic``: all
    ``number`` pairs must be in memory at the same time. ``consecutive``: the
    OKs for this request are not interleaved with other requests'.
    ``standing``: the request stays open once its ``number`` pairs are made,
    and :class:`CreateTopUp` lets it make more (``specs/link.md`` §4,
    "Standing requests"); it has no ``max_time_ns`` and is neither atomic
    nor consecutive.
    """

    remote: str
    number: int = 1
    min_fidelity: float = 0.0
    max_time_ns: int = 0
    purpose_id: int = 0
    type: RequestType = RequestType.KEEP
    measure_basis: str = "Z"
    priority: int = 1
    atomic: bool = False
    consecutive: bool = False
    create_id: int | None = None   # set by the caller to correlate, or chosen by the EGP
    standing: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class CreateTopUp:
    """Submitted from above by the end that made the standing request
    ``create_id`` (with neighbour ``remote``): it may make ``number``
    (1..65535) pairs more. A top-up of an unknown, ended or cancelled
    request does nothing (its ``LinkErr``, if any, returns every pair not
    made; a cancelled request gets none)."""

    create_id: int
    remote: str
    number: int = 1


@fast_init
@dataclass(frozen=True, slots=True)
class LinkOk:
    """OK: one pair of request ``create_id`` was delivered.

    ``bell_index`` is the Bell state both ends hold (0 = Phi+); ``goodness``
    the fidelity estimate; ``created_ns`` when the herald arrived. For type K
    ``qubit`` is this end's qubit reference; for type M ``outcome`` and
    ``basis`` are this end's measurement.
    """

    create_id: int
    ent_id: EntanglementId
    remote: str
    bell_index: int
    goodness: float
    created_ns: int
    purpose_id: int = 0
    qubit: Any = None
    outcome: int | None = None
    basis: str | None = None
    pair_index: int = 0           # which of the request's pairs (0-based)
    request_done: bool = False    # True on the last OK of the request


@fast_init
@dataclass(frozen=True, slots=True)
class LinkErr:
    """ERR: request ``create_id`` failed with ``code`` (an ``ErrorCode`` in 200-299)."""

    create_id: int
    remote: str
    code: ErrorCode
    detail: str = ""
    purpose_id: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class LinkExpire:
    """EXPIRE: a delivered pair ``ent_id`` is gone (memory cut-off, peer reset)."""

    ent_id: EntanglementId
    remote: str
    reason: str = ""
    purpose_id: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class Release:
    """Submitted from above: the pair ``ent_id`` (with neighbour ``remote``) was
    consumed or freed by the layer above; the link layer stops tracking it (no
    cut-off EXPIRE, no expiry on peer reset). Every user of kept pairs sends it
    once per pair, when the pair leaves its care."""

    ent_id: EntanglementId
    remote: str


@fast_init
@dataclass(frozen=True, slots=True)
class CancelCreate:
    """Submitted from above by the end that made request ``create_id`` (with
    neighbour ``remote``): withdraw it. No more pairs are started for it; the
    pairs already being made (at most the link's m) may still come up as
    ``LinkOk`` at both ends, and the request ends without a ``LinkErr``
    (``specs/link.md`` §3, "Cancelling"). Cancelling an unknown, finished or
    already cancelled request does nothing."""

    create_id: int
    remote: str
