"""Wire messages of the network layer (type codes 0x0300-0x03FF).

``specs/network.md`` is the normative description; ``VECTOR_EXAMPLES`` below
feed ``specs/vectors/network/``.

Three protocols:

* ``network.qnp`` (0x0301-0x030F): end-to-end circuits with swapping
  (:mod:`qstack.network.circuit`), and the link-state flooding its routing
  stands on (0x0309-0x030A, :mod:`qstack.network.linkstate`);
* ``network.purify`` (0x0310-0x031F): link-pair purification
  (:mod:`qstack.network.purify`);
* ``network.trusted`` (0x0320-0x032F): trusted-node key relay
  (:mod:`qstack.network.trusted`);
* ``network.ideal`` (0x0330-0x033F): the ideal network layer's end-to-end
  pairs on virtual links (:mod:`qstack.network.ideal`).

Pair references: a message about a link pair names it by the link layer's
sequence number ``link_seq`` (``EntanglementId.seq``, the same at both ends
of that link); a message travelling along a swapped segment is re-labelled at
every repeater with the sequence number of the pair on the next hop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qstack.core.messages import Message, limits, message

__all__ = [
    "CircuitSetup", "CircuitConfirm", "CircuitTeardown", "Track", "PairDone", "SegmentNotice",
    "SegmentExpire", "PairLost", "LinkEntry", "LinkStateAd", "IdealOpen", "IdealClose",
    "IdealExpire", "CircuitTopUp", "PurifySetup", "PurifyMeasure", "PurifyReply", "KeyRelay",
    "KeyRelayAck", "VECTOR_EXAMPLES",
]

_NAME = limits(max_len=64)
_PATH = limits(max_len=1024)
_U32 = limits(0, 0xFFFFFFFF)
_U64 = limits(0, (1 << 63) - 1)
_FID = limits(0.0, 1.0)
_BELL = limits(0, 3)
_CODE = limits(0, 999)


# ------------------------------------------------------------------ network.qnp

@message("network.qnp", 0x0301, version=2)
@dataclass(frozen=True, slots=True)
class CircuitSetup(Message):
    """Head -> tail, hop by hop: install circuit ``(head, circuit_id)`` on ``path``.

    ``link_fidelity[i]``: the fidelity target of link ``path[i]``-``path[i+1]``.
    ``link_labels``: the link-layer purpose id each creator chose for its
    downstream link, appended by every node as the setup passes (so a node
    finds its upstream link's label at its own index - 1).
    ``window`` (version 2): the head's flow-control window, the most pairs of
    the circuit the head holds unresolved (Track sent, PairDone not back) at
    once; the tail keeps its half of its last ``window`` delivered pairs, the
    ones a :class:`PairLost` may still name.
    """

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    path: tuple[str, ...] = field(metadata=_PATH)
    request_id: int = field(metadata=_U32)
    number: int = field(metadata=limits(1, 65535))
    min_fidelity: float = field(metadata=_FID)
    link_fidelity: tuple[float, ...] = field(metadata=limits(0.0, 1.0, max_len=1024))
    link_labels: tuple[int, ...] = field(metadata=limits(0, 65535, max_len=1024))
    strategy: int = field(metadata=limits(0, 1))
    cutoff_ns: int = field(metadata=_U64)
    type: int = field(metadata=limits(0, 2))
    measure_basis: str = field(metadata=limits(max_len=8))
    app_tag: int = field(metadata=_U32)
    correct: bool = False
    window: int = field(default=1, metadata=limits(1, 65535))

    def __post_init__(self) -> None:
        if len(self.path) < 2:
            raise ValueError("a circuit path has at least two nodes")
        if len(self.link_fidelity) != len(self.path) - 1:
            raise ValueError("link_fidelity needs one entry per link of the path")
        if len(self.link_labels) > len(self.path) - 1:
            raise ValueError("more link labels than links")


@message("network.qnp", 0x0302)
@dataclass(frozen=True, slots=True)
class CircuitConfirm(Message):
    """Tail -> head, hop by hop: the circuit is installed (``accepted``) or
    refused with ``code`` (an ErrorCode, e.g. NET_REJECTED = 304). Each
    repeater starts generating its downstream link pairs as this passes."""

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    accepted: bool
    code: int = field(metadata=_CODE)
    detail: str = field(metadata=limits(max_len=256))


@message("network.qnp", 0x0303)
@dataclass(frozen=True, slots=True)
class CircuitTeardown(Message):
    """Remove the circuit; forwarded along the path away from the sender.
    ``code`` 0 means the request is complete; otherwise an ErrorCode.
    ``failed_a``/``failed_b`` name a link that went down ("" if none), so the
    head can route around it."""

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    code: int = field(metadata=_CODE)
    detail: str = field(metadata=limits(max_len=256))
    failed_a: str = field(metadata=_NAME)
    failed_b: str = field(metadata=_NAME)


@message("network.qnp", 0x0304)
@dataclass(frozen=True, slots=True)
class Track(Message):
    """Head -> tail along a swapped segment: the pair that starts at the head
    with link pair ``link_seq`` is, up to here, in Bell state ``bell_index``
    (Pauli frame: XOR of the link indices and BSM outcomes passed), with
    estimated ``fidelity`` (Werner swap formula over the link goodness values)
    and its oldest link pair made at ``created_ns``. A repeater that has not
    swapped that pair yet holds the message until it has."""

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    link_seq: int = field(metadata=_U64)
    bell_index: int = field(metadata=_BELL)
    fidelity: float = field(metadata=_FID)
    created_ns: int = field(metadata=_U64)


@message("network.qnp", 0x0305)
@dataclass(frozen=True, slots=True)
class PairDone(Message):
    """Tail -> head along the segment: the tail ``accepted`` (delivered) the
    pair as number ``pair_seq`` in ``bell_index`` (0 if the tail corrected it)
    or discarded it (the head discards its half too)."""

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    link_seq: int = field(metadata=_U64)
    accepted: bool
    pair_seq: int = field(metadata=_U32)
    bell_index: int = field(metadata=_BELL)
    fidelity: float = field(metadata=_FID)
    created_ns: int = field(metadata=_U64)


@message("network.qnp", 0x0306)
@dataclass(frozen=True, slots=True)
class SegmentNotice(Message):
    """Nested strategy: after a swap, tells each end of the new segment the
    path position (0 = head) of the segment's other end."""

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    link_seq: int = field(metadata=_U64)
    far_end: int = field(metadata=limits(0, 1023))


@message("network.qnp", 0x0307)
@dataclass(frozen=True, slots=True)
class SegmentExpire(Message):
    """A pair of the segment was discarded (cut-off, link expiry, failed
    BSM): the other end of the segment discards its qubit too and answers
    with a SegmentExpire back (unless it broke the segment itself), which
    clears the state the nodes on the way keep for it."""

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    link_seq: int = field(metadata=_U64)
    reason: str = field(metadata=limits(max_len=64))


@message("network.qnp", 0x0308)
@dataclass(frozen=True, slots=True)
class PairLost(Message):
    """Head -> tail, hop by hop along the path: the tail delivered pair
    ``pair_seq`` (its PairDone said accepted) but the head's half was lost
    before the PairDone came back. Each repeater counts one more pair to make;
    the tail takes the pair back (NetExpire) and waits for another."""

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    pair_seq: int = field(metadata=_U32)
    reason: str = field(metadata=limits(max_len=64))


@message("network.qnp", 0x030B)
@dataclass(frozen=True, slots=True)
class CircuitTopUp(Message):
    """Head -> tail, hop by hop along the path: the circuit of a standing
    request may deliver ``number`` pairs more (``specs/network.md`` "Standing
    end-to-end requests"). Each node adds it to the circuit's ``number``; a
    repeater asks its link for its part."""

    circuit_id: int = field(metadata=_U32)
    head: str = field(metadata=_NAME)
    number: int = field(metadata=limits(1, 65535))


# ------------------------------------------------------------------ network.purify

@message("network.purify", 0x0310)
@dataclass(frozen=True, slots=True)
class PurifySetup(Message):
    """Creator -> receiver of a link: pairs of link-layer purpose ``purpose_id``
    are purified ``rounds`` times with ``scheme`` (0 BBPSSW, 1 DEJMPS) before
    being passed up, ``number`` outputs in all."""

    purpose_id: int = field(metadata=limits(0, 65535))
    scheme: int = field(metadata=limits(0, 1))
    rounds: int = field(metadata=limits(0, 16))
    number: int = field(metadata=limits(1, 65535))
    target_fidelity: float = field(metadata=_FID)


@message("network.purify", 0x0311)
@dataclass(frozen=True, slots=True)
class PurifyMeasure(Message):
    """Creator -> receiver: purify pair ``keep_seq`` with ``sac_seq`` at level
    ``level`` (both are ``level``-times purified); the creator's outcome is
    ``outcome``; ``twirl`` (0..23, BBPSSW) names the bilateral twirl applied
    to the kept pair after success."""

    purpose_id: int = field(metadata=limits(0, 65535))
    keep_seq: int = field(metadata=_U64)
    sac_seq: int = field(metadata=_U64)
    level: int = field(metadata=limits(0, 16))
    outcome: int = field(metadata=limits(0, 1))
    twirl: int = field(metadata=limits(0, 23))


@message("network.purify", 0x0312)
@dataclass(frozen=True, slots=True)
class PurifyReply(Message):
    """Receiver -> creator: the receiver's outcome for ``keep_seq``."""

    purpose_id: int = field(metadata=limits(0, 65535))
    keep_seq: int = field(metadata=_U64)
    outcome: int = field(metadata=limits(0, 1))


# ------------------------------------------------------------------ network.trusted

@message("network.trusted", 0x0320)
@dataclass(frozen=True, slots=True)
class KeyRelay(Message):
    """Origin -> destination, hop by hop along ``path``: the end-to-end key
    one-time-padded with the key of the hop it crosses (``hop_key_id`` names
    the hop-key block both ends of the hop hold)."""

    relay_id: int = field(metadata=_U32)
    origin: str = field(metadata=_NAME)
    path: tuple[str, ...] = field(metadata=_PATH)
    hop_key_id: int = field(metadata=_U64)
    masked: bytes = field(metadata=limits(max_len=65536))
    app_tag: int = field(metadata=_U32)


@message("network.trusted", 0x0321)
@dataclass(frozen=True, slots=True)
class KeyRelayAck(Message):
    """Destination -> origin, hop by hop: the relay arrived (``ok``) or failed
    with ``code`` (an ErrorCode)."""

    relay_id: int = field(metadata=_U32)
    origin: str = field(metadata=_NAME)
    path: tuple[str, ...] = field(metadata=_PATH)
    ok: bool
    code: int = field(metadata=_CODE)


@message("network.qnp", 0x030A)
@dataclass(frozen=True, slots=True)
class LinkEntry(Message):
    """One link of a :class:`LinkStateAd` (only ever nested): the link from
    the origin to ``neighbour``, whether the origin has it ``up``, and what
    it gives for routing (best ``fidelity``, ``rate_hz`` pairs per second)."""

    neighbour: str = field(metadata=_NAME)
    up: bool
    fidelity: float = field(metadata=_FID)
    rate_hz: float = field(metadata=limits(0.0, 1e18))


@message("network.qnp", 0x0309)
@dataclass(frozen=True, slots=True)
class LinkStateAd(Message):
    """The state of ``origin``'s links, as of its ``seq``-th change (a link
    state advertisement, flooded: ``specs/network.md`` §2 "Link state")."""

    origin: str = field(metadata=_NAME)
    seq: int = field(metadata=_U32)
    links: tuple[LinkEntry, ...] = field(metadata=limits(max_len=4096))


# ------------------------------------------------------------------ network.ideal

@message("network.ideal", 0x0330)
@dataclass(frozen=True, slots=True)
class IdealOpen(Message):
    """Head -> tail: request ``request_id`` wants ``number`` pairs with the
    receiver (it follows the head's attempts on their virtual link)."""

    request_id: int = field(metadata=_U32)
    number: int = field(metadata=limits(1, 65535))
    app_tag: int = field(metadata=_U32)


@message("network.ideal", 0x0331)
@dataclass(frozen=True, slots=True)
class IdealClose(Message):
    """Either way: request ``request_id`` of ``head`` ends (``code``: why)."""

    head: str = field(metadata=_NAME)
    request_id: int = field(metadata=_U32)
    code: int = field(metadata=_CODE)


@message("network.ideal", 0x0332)
@dataclass(frozen=True, slots=True)
class IdealExpire(Message):
    """Either way: pair ``(head, request_id, seq)`` is lost; the receiver frees its half."""

    head: str = field(metadata=_NAME)
    request_id: int = field(metadata=_U32)
    seq: int = field(metadata=_U32)
    reason: str = field(metadata=limits(max_len=64))


VECTOR_EXAMPLES = {
    "circuit_setup": CircuitSetup(
        circuit_id=0x00010002, head="a", path=("a", "r1", "b"), request_id=7, number=10,
        min_fidelity=0.8, link_fidelity=(0.9, 0.9), link_labels=(3,), strategy=0,
        cutoff_ns=5_000_000, type=0, measure_basis="Z", app_tag=42, correct=False, window=2),
    "circuit_confirm": CircuitConfirm(circuit_id=0x00010002, head="a", accepted=True, code=0,
                                      detail=""),
    "circuit_confirm_rejected": CircuitConfirm(circuit_id=3, head="a", accepted=False, code=304,
                                               detail="no memory"),
    "circuit_teardown": CircuitTeardown(circuit_id=0x00010002, head="a", code=303,
                                        detail="link down", failed_a="r1", failed_b="b"),
    "track": Track(circuit_id=0x00010002, head="a", link_seq=17, bell_index=2, fidelity=0.875,
                   created_ns=1_000_000),
    "pair_done": PairDone(circuit_id=0x00010002, head="a", link_seq=17, accepted=True, pair_seq=0,
                          bell_index=2, fidelity=0.875, created_ns=1_000_000),
    "segment_notice": SegmentNotice(circuit_id=5, head="a", link_seq=9, far_end=4),
    "segment_expire": SegmentExpire(circuit_id=5, head="a", link_seq=9, reason="cutoff"),
    "pair_lost": PairLost(circuit_id=0x00010002, head="a", pair_seq=3, reason="link expired"),
    "circuit_top_up": CircuitTopUp(circuit_id=0x00010002, head="a", number=5),
    "ideal_open": IdealOpen(request_id=5, number=3, app_tag=49152),
    "ideal_close": IdealClose(head="a", request_id=5, code=302),
    "ideal_expire": IdealExpire(head="a", request_id=5, seq=1, reason="test"),
    "link_entry": LinkEntry(neighbour="r1", up=False, fidelity=0.95, rate_hz=1200.0),
    "link_state_ad": LinkStateAd(origin="a", seq=3, links=(
        LinkEntry("r1", False, 0.95, 1200.0), LinkEntry("r2", True, 0.9, 800.0))),
    "purify_setup": PurifySetup(purpose_id=3, scheme=1, rounds=2, number=5, target_fidelity=0.95),
    "purify_measure": PurifyMeasure(purpose_id=3, keep_seq=10, sac_seq=11, level=0, outcome=1,
                                    twirl=0),
    "purify_reply": PurifyReply(purpose_id=3, keep_seq=10, outcome=1),
    "key_relay": KeyRelay(relay_id=1, origin="a", path=("a", "t1", "b"), hop_key_id=4,
                          masked=bytes.fromhex("00ff10aa"), app_tag=0),
    "key_relay_ack": KeyRelayAck(relay_id=1, origin="a", path=("a", "t1", "b"), ok=True, code=0),
}
