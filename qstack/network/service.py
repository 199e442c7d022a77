"""The network layer's service primitives: what the layer above submits and receives.

These are local events between layers on one node (not wire messages), in the
shape of the link layer's CREATE / OK / ERR / EXPIRE
(:mod:`qstack.link.service`), lifted to end-to-end pairs across repeaters
(after Kozlowski et al., "Designing a quantum network protocol", CoNEXT 2020):

* the transport layer or an application submits a :class:`NetRequest` to the
  end-to-end protocol (``Submit(NetRequest(...), to="network.qnp")``);
* both ends receive a :class:`NetOk` per pair, carrying the **same**
  :class:`PairId` and the **same** ``bell_index``;
* a request that cannot be served ends with one :class:`NetErr` (an
  ``ErrorCode`` in 300-399), at the end that submitted it and, once a circuit
  exists, at the far end too;
* a delivered pair that is lost later is reported with :class:`NetExpire`
  (e.g. the tail delivered it but the head's half expired before the pair
  was settled: the head never delivers it, the tail takes it back).

The far end does not submit anything: it learns of the request when the
circuit is set up and delivers its ``NetOk`` events unasked, tagged with the
initiator's ``request_id`` and ``app_tag`` so that the upper layer there can
match them (e.g. a transport-layer socket listening on a port).

Units: times are integer nanoseconds; fidelities are the squared (Jozsa)
fidelity to the Bell state named by ``bell_index``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from qstack.core.errors import ErrorCode
from qstack.core.protocol import fast_init

__all__ = [
    "NetRequestType", "SwapStrategy", "PairId", "NetRequest", "NetOk", "NetErr", "NetExpire",
    "NetCancel", "NetTopUp", "MD_BASIS_SETS", "fold_frame",
]


class NetRequestType(IntEnum):
    """K: keep the end-to-end pair in memory; M: measure it at both ends on
    arrival; D: measure directly (the ends measure their half of each link
    pair as soon as the link delivers it, in a basis drawn per pair from the
    request's basis set, :data:`MD_BASIS_SETS`; no memory is held at the ends
    while the pair is swapped through; ``specs/network.md`` "Measure directly")."""

    KEEP = 0
    MEASURE = 1
    MEASURE_DIRECTLY = 2


#: Basis sets of measure-directly (D) requests, by the name a request gives
#: in ``measure_basis``: (the head's angles, the tail's angles), each angle
#: theta (rad) from +Z towards +X in the X-Z plane (phi = 0). The tail folds
#: the pair's Pauli frame into its outcome (:func:`fold_frame`): an X maps
#: theta to pi - theta, a Z to -theta, so every tail set is closed under
#: theta -> pi - theta (mod pi): the frame maps it onto itself. "ZX" is
#: BBM92's (Bennett, Brassard, Mermin 1992); "E91" Ekert's (1991) in its
#: CHSH form: the head 0, pi/4, pi/2, the tail pi/4, pi/2, 3pi/4.
MD_BASIS_SETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "Z": ((0.0,), (0.0,)),
    "X": ((math.pi / 2,), (math.pi / 2,)),
    "ZX": ((0.0, math.pi / 2), (0.0, math.pi / 2)),
    "E91": ((0.0, math.pi / 4, math.pi / 2), (math.pi / 4, math.pi / 2, 3 * math.pi / 4)),
}


def fold_frame(angles: tuple[float, ...], setting: int, outcome: int,
               bell_index: int) -> tuple[int, int]:
    """The setting and outcome a measurement of angle ``angles[setting]``
    on one half of a pair in Bell state ``bell_index`` = (x << 1) | z (the
    state (I (x) X^x Z^z)|Phi+>) would have given on Phi+: measuring
    O(theta) = cos(theta) Z + sin(theta) X on P|Phi+> is measuring
    P O(theta) P on Phi+, and X O(theta) X = O(pi - theta), Z O(theta) Z =
    O(-theta), with O(theta + pi) = -O(theta) (a flipped outcome). Returns
    (the index in ``angles`` of the effective angle, the outcome); raises
    ``ValueError`` if ``angles`` is not closed under the frame."""
    theta = angles[setting]
    if bell_index & 2:
        theta = math.pi - theta
    if bell_index & 1:
        theta = -theta
    theta %= 2 * math.pi
    if theta >= math.pi - 1e-9:
        theta -= math.pi
        outcome ^= 1
    for i, a in enumerate(angles):
        if abs(a - theta) < 1e-9:
            return i, outcome
    raise ValueError(f"basis set {angles} is not closed under the Pauli frame (angle {theta})")


class SwapStrategy(IntEnum):
    """When a repeater swaps the two pairs it holds for a circuit.

    ASAP: as soon as it holds one pair on each side. NESTED: in the doubling
    order of the Briegel-Duer-Cirac-Zoller repeater, a repeater swaps only
    segments of the lengths its position in the binary split of the path
    assigns to it (the middle node swaps last).
    """

    ASAP = 0
    NESTED = 1


@fast_init
@dataclass(frozen=True, slots=True, order=True)
class PairId:
    """Names one end-to-end pair identically at both ends.

    ``head`` is the node that set up the circuit, ``circuit_id`` the circuit's
    id (unique per head), ``seq`` the pair's number on that circuit (0, 1, ...
    in the order the pairs were completed at the tail end).
    """

    head: str
    circuit_id: int
    seq: int


@fast_init
@dataclass(frozen=True, slots=True)
class NetRequest:
    """REQUEST(destination, number, min fidelity, max time, type).

    ``destination``: the far end node. ``number`` (1..65535) end-to-end pairs.
    ``min_fidelity`` in [0, 1]: each delivered pair's estimated fidelity is at
    least this (the circuit derives per-link targets from it; ``NetErr``
    ``NET_UNREACHABLE_FIDELITY`` if no path can). ``max_time_ns``: the request
    fails with ``NET_TIMEOUT`` if not done within this many nanoseconds (0: no
    limit). ``type``: keep (K), measure (M) or measure directly (D).
    ``measure_basis`` (type M): "Z", "X", "Y" or "random" (uniform over Z/X
    per pair and end); (type D) the name of a basis set in
    :data:`MD_BASIS_SETS`.
    ``request_id``: the caller's tag, chosen by the protocol when None.
    ``app_tag``: opaque to the network layer, delivered with every pair at both
    ends (the transport layer puts its port there). ``strategy``: swap
    schedule. ``cutoff_ns``: a repeater discards a pair it has held this long
    without swapping (0: the protocol's default). ``correct``: deliver Phi+
    (bell_index 0) by a Pauli correction at the far end instead of reporting
    the Pauli frame. ``window`` (0..65535): the circuit's flow-control
    window, the most end-to-end pairs in flight at once (``specs/network.md``
    "Flow control"); 0: the head's configured one (``QnpProtocol(window=...)``).
    ``standing``: a standing request (``specs/network.md`` "Standing end-to-end
    requests"): ``number`` is only the first allowance, :class:`NetTopUp`
    raises it, and the request (one circuit) stays open until ``NetCancel``
    or an error, however many pairs it delivered.
    """

    destination: str
    number: int = 1
    min_fidelity: float = 0.0
    max_time_ns: int = 0
    type: NetRequestType = NetRequestType.KEEP
    measure_basis: str = "Z"
    request_id: int | None = None
    app_tag: int = 0
    strategy: SwapStrategy = SwapStrategy.ASAP
    cutoff_ns: int = 0
    correct: bool = False
    window: int = 0
    standing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or not 0 <= self.window <= 65535:
            raise ValueError(f"window must be in 0..65535, got {self.window!r}")
        if not isinstance(self.destination, str) or not self.destination:
            raise ValueError("destination must be a non-empty node name")
        if not 1 <= self.number <= 65535:
            raise ValueError(f"number must be in 1..65535, got {self.number}")
        if not 0.0 <= self.min_fidelity <= 1.0:
            raise ValueError(f"min_fidelity must be in [0, 1], got {self.min_fidelity}")
        if self.max_time_ns < 0 or self.cutoff_ns < 0:
            raise ValueError("max_time_ns and cutoff_ns must be >= 0")
        if self.type == NetRequestType.MEASURE_DIRECTLY:
            if self.measure_basis not in MD_BASIS_SETS:
                raise ValueError(f"measure_basis of a measure-directly request must be one of "
                                 f"{sorted(MD_BASIS_SETS)}, got {self.measure_basis!r}")
        elif self.measure_basis not in ("Z", "X", "Y", "random"):
            raise ValueError(f"measure_basis must be Z, X, Y or random, got {self.measure_basis!r}")


@fast_init
@dataclass(frozen=True, slots=True)
class NetOk:
    """OK: one end-to-end pair of request ``request_id`` is here.

    Both ends get the same ``pair_id`` and ``bell_index`` (0 Phi+, 1 Phi-,
    2 Psi+, 3 Psi-: the state the pair is in, Pauli frame included).
    ``fidelity`` is the protocol's estimate from the link goodness values and
    the Werner swap formula (memory decay during the wait not included).
    ``created_ns``: when the oldest link pair in it was made. ``path``: the
    nodes from head to tail. For type K ``qubit`` is this end's qubit
    reference; for type M ``outcome`` (0/1) and ``basis`` are this end's
    measurement; for type D ``outcome``, ``basis`` (the angle pair (theta,
    0.0)) and ``setting`` (its index in this end's set of
    :data:`MD_BASIS_SETS`): at the tail of a ``correct`` request the frame
    folded in (:func:`fold_frame`; both ends then report ``bell_index`` 0).
    ``initiator``: True at the end that submitted the request.
    """

    request_id: int
    pair_id: PairId
    remote: str
    bell_index: int
    fidelity: float
    created_ns: int
    qubit: Any = None
    outcome: int | None = None
    basis: str | None = None
    app_tag: int = 0
    pair_index: int = 0
    request_done: bool = False
    initiator: bool = True
    path: tuple[str, ...] = ()
    setting: int = -1


@fast_init
@dataclass(frozen=True, slots=True)
class NetErr:
    """ERR: request ``request_id`` failed with ``code`` (an ``ErrorCode`` in 300-399).

    ``initiator``: True at the end that submitted the request (its head);
    False at the tail, told that the pairs it was receiving for the head's
    request ``request_id`` stop coming (request ids are the head's: at the
    tail one may equal a request of its own)."""

    request_id: int
    remote: str
    code: ErrorCode
    detail: str = ""
    app_tag: int = 0
    initiator: bool = True


@fast_init
@dataclass(frozen=True, slots=True)
class NetExpire:
    """EXPIRE: the delivered pair ``pair_id`` is gone (its other half was lost
    before the pair was settled, circuit torn down, peer reset). The network
    layer frees this end's qubit; the pair does not count as delivered."""

    pair_id: PairId
    remote: str
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class NetCancel:
    """Submitted by the upper layer: stop request ``request_id`` (pairs already
    delivered stay delivered). The protocol answers with ``NetErr``
    (``NET_CIRCUIT_TORN_DOWN``, detail "cancelled")."""

    request_id: int
    extra: dict = field(default_factory=dict, compare=False)


@fast_init
@dataclass(frozen=True, slots=True)
class NetTopUp:
    """Submitted by the upper layer: the standing request ``request_id``
    (``NetRequest(standing=True)``) may deliver ``number`` (1..65535) pairs
    more, over the circuit that already serves it. Ignored for a request that
    is not open here (it ended: its ``NetErr`` is on the way) or not standing."""

    request_id: int
    number: int

    def __post_init__(self) -> None:
        if not 1 <= self.number <= 65535:
            raise ValueError(f"number must be in 1..65535, got {self.number}")
