# cython: nonecheck=True
# (compiled: a typed record read through a name that is None raises the
# AttributeError plain Python raises, instead of reading memory that is not one)
"""End-to-end entanglement over a chain of repeaters: circuits with swapping.

After Kozlowski, Dahlberg, Lago-Rivera, de Riedmatten, Wehner, "Designing a
quantum network protocol", CoNEXT 2020 (the QNP): a request at the **head**
node sets up a **circuit** (an id, a path, per-link fidelity targets) hop by
hop to the **tail**; every node except the tail then asks its link layer for
pairs on its downstream link; a **repeater** swaps (Bell-state measurement)
a pair from each side, as soon as possible or in nested (doubling) order;
cut-off timers discard pairs held too long unswapped. Flow control
(``specs/network.md``): a repeater's downstream pair holds credit until the
Track of the end-to-end pair it joined passes the repeater, the head's until
its PairDone; no node asks for more pairs than the circuit still needs. Each
link thus makes one pair per delivered pair. A circuit keeps up to its
window of end-to-end pairs in flight (by default what the memory allows:
each link's share of both ends' slots, divided among the circuits crossing
it), and a node asks its link for the free credit in one standing request,
topped up in batches, rather than one request per pair; with a window of
w the circuit delivers up to ``min(link rate, w / (pair time + round
trip))`` pairs per second (:func:`qstack.network.theory.pipelined_rate_bound`;
on one link the one-way delay instead of the round trip: see below).

Pauli-frame tracking, no corrections on the way: the state of a swapped
segment is ``B_(b1 ^ b2 ^ m)`` for link pairs in ``B_b1``, ``B_b2`` and BSM
outcome ``m`` (``qstack.physical.bell_diagonal.swap_bell_diagonal``), so the
ends only need the XOR of every link index and every outcome on the path. The
head starts a :class:`~qstack.network.messages.Track` message per pair it
gets; it travels towards the tail and each repeater, once it has swapped
that pair, XORs in its contribution (outgoing link index ^ outcome), folds the
outgoing link's fidelity into the estimate with the Werner swap formula and
relabels it with the outgoing link pair's sequence number. The tail thus
learns the pair's Bell state and estimated fidelity, decides (fidelity at
least the request's minimum, fewer pairs delivered than asked), optionally
corrects its qubit to Phi+, delivers its :class:`~qstack.network.service.NetOk`
and sends :class:`~qstack.network.messages.PairDone` back along the same
segment so the head delivers the same pair id and Bell state. Physical
correction is thus needed only at delivery, and only if asked
(``NetRequest.correct``). On a circuit of one link (types K and M) there is
no Track: the tail's own link-layer OK carries what it would (the Bell
state both ends hold, a goodness and time of its herald), so the tail
decides on it at once and the PairDone gives the head the pair's values
(a round trip less per pair; ``specs/network.md``, "One link").

Messages about a segment (Track forward; PairDone, SegmentExpire,
SegmentNotice either way) are forwarded through the repeaters by their swap
records; at a node that holds the pair unswapped they stop (the segment's
end). Messages that arrive before the link layer's OK for the pair they name
wait for it; messages that arrive while the pair is in a BSM wait for the
outcome.

Losing a pair (``specs/network.md``): a node that loses a held pair (cut-off,
link expiry, failed BSM) sends SegmentExpire along its segment and keeps a
tombstone; repeaters on the way keep one too; the far end answers with a
SegmentExpire back, which clears them. Messages meeting a tombstone are
dropped, so none waits for a link-layer OK that will never come. The head
never breaks a segment: if its half expires while the pair's Track is out,
it keeps the pair (and its credit) until the PairDone; if the tail accepted
it, the head sends :class:`~qstack.network.messages.PairLost` to the tail,
which takes the pair back (:class:`~qstack.network.service.NetExpire`), and
asks for another pair.

Stacking (bottom first): ``link.egp`` (or ``network.purify`` in between,
see :mod:`qstack.network.purify`), then this protocol, named
``network.qnp``. Upper layers ``Submit(NetRequest(...), to="network.qnp")``
at the head and receive :class:`NetOk` / :class:`NetErr` at both ends.

State machine of a circuit at one node (``specs/network.md``)::

    (head) IDLE --request/route--> SETUP --Confirm(accepted)--> ACTIVE --N delivered--> CLOSED
                                        \\--Confirm(refused)--> CLOSED (NetErr)
    (other) Setup --> INSTALLED --Confirm passes--> ACTIVE --Teardown--> CLOSED

Times in integer nanoseconds.
"""
from __future__ import annotations

import bisect
import random
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

try:
    import cython
except ImportError:              # (Cython is a build tool, not a dependency)
    from qstack._cython_shadow import cython

from qstack.core.errors import ErrorCode, QStackError, error_code
from qstack.core.protocol import (
    CancelTimer, Deliver, Fail, LinkDown, LinkUp, OperationDone, PeerDown, PeerUp, Protocol,
    QuantumOp, SendMessage, StartTimer, Submit, TimerFired, Undeliverable, on,
    message_handlers_of, on_message,
)
from qstack.core.states import State, Transitions
from qstack.link.service import (
    CancelCreate, CreateRequest, CreateTopUp, LinkErr, LinkExpire, LinkOk, Release, RequestType,
)
from qstack.physical.ops import BellMeasure, Discard, Gate, Measure

from .messages import (
    CircuitConfirm, CircuitSetup, CircuitTeardown, CircuitTopUp, LinkStateAd, PairDone,
    PairLost, SegmentExpire, SegmentNotice, Track,
)
from .linkstate import LinkStateDB
from .routing import RoutingError, Topology
from .service import (
    MD_BASIS_SETS, NetCancel, NetErr, NetExpire, NetOk, NetRequest, NetRequestType, NetTopUp,
    PairId, SwapStrategy, fold_frame,
)
from .theory import werner_swap

__all__ = ["QnpProtocol", "nested_spans", "MAX_AUTO_WINDOW"]

# a circuit's two sides at a node (compiled: C constants, so that c.held[_LEFT]
# is a C index into the tuple, not a look-up by a Python int)
_LEFT = cython.declare(cython.Py_ssize_t, 0)
_RIGHT = cython.declare(cython.Py_ssize_t, 1)
_NESTED = int(SwapStrategy.NESTED)     # (compared once per swap: a plain int)
_MISSING = object()
# (module constants: an Enum class's attribute read goes through EnumType's
# __getattr__ hook, several hundred instructions, on every pair)
_MD = NetRequestType.MEASURE_DIRECTLY
_KEEP_TYPE = NetRequestType.KEEP
_MEASURE_TYPE = NetRequestType.MEASURE


#: Times a request's circuit is re-opened after sessions broke on the way.
MAX_REOPENS = 16

#: The window ``window="auto"`` gives when the memory is known: the memory
#: share of each link (``QnpProtocol.link_share``) then decides, up to this.
MAX_AUTO_WINDOW = 64

#: Link-layer create ids the QNP chooses (to name its standing requests) are
#: taken from the upper half of the EGP's range, ``2**30 .. 2**31 - 1``; the
#: EGP numbers the requests whose caller leaves the id to it from 0 up.
_CREATE_ID_BASE = 1 << 30


def nested_spans(n_links: int) -> dict[int, tuple[int, int]]:
    """For a path with nodes 0..n_links: the segment ``(lo, hi)`` each
    repeater joins in the nested (doubling) strategy. The path is split at
    its middle node recursively, so with ``2**k`` links the repeaters swap in
    ``k`` rounds of doubling segments; other lengths split as evenly as they can."""
    spans: dict[int, tuple[int, int]] = {}
    stack = [(0, n_links)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        spans[mid] = (lo, hi)
        stack.append((lo, mid))
        stack.append((mid, hi))
    return spans


class CircuitPhase(State):
    """The state of a circuit at one node (closed: no longer held)."""

    SETUP = "setup"          # head: CircuitSetup sent, no Confirm yet
    INSTALLED = "installed"  # repeater: Setup passed on, no Confirm yet
    ACTIVE = "active"        # pairs are made, swapped, delivered
    CLOSED = "closed"        # torn down or finished (a reference kept by late events)


_ACTIVE, _CLOSED = CircuitPhase.ACTIVE, CircuitPhase.CLOSED

#: The allowed moves of a circuit at a node (the node's role decides its
#: first state). Torn down (CircuitTeardown, a refused Confirm, a link or
#: session failure, its request's end) it is forgotten from any state.
TRANSITIONS = Transitions("circuit", {
    (CircuitPhase.SETUP, "Confirm"): CircuitPhase.ACTIVE,
    (CircuitPhase.INSTALLED, "Confirm"): CircuitPhase.ACTIVE,
    (CircuitPhase.INSTALLED, "tail"): CircuitPhase.ACTIVE,
})


# The records a circuit keeps (_Pair, _Circuit, _Request, _Swap) are extension
# types where this module is compiled (circuit.pxd declares their fields), and
# the hot methods below name their types (@cython.locals), so that their
# fields are read as C struct members. (Hence no slots=True, which Cython
# refuses on an extension dataclass: it has no __dict__ anyway.)
@dataclass
class _Pair:
    """A link pair this node holds for a circuit (one qubit of it). At the
    head, ``qubit`` is None once the half was lost while its Track is on the
    way: the pair is kept (it holds credit) until its PairDone or a
    SegmentExpire settles it."""

    seq: int
    qubit: Any
    bell: int
    fidelity: float
    created_ns: int
    far: int                 # path position of the segment's other end
    held_since: int
    ent_id: Any = None       # the link layer's id, to Release the pair when it leaves
    # type D at an end: (setting, outcome) of this end's measurement, taken as
    # soon as the link delivered the pair (qubit None: its slot is free)
    meas: tuple | None = None


@cython.cfunc
@cython.locals(p=_Pair)
def _new_pair(seq: Any, qubit: Any, bell: Any, fidelity: Any, created_ns: Any, far: Any,
              held_since: Any, ent_id: Any) -> _Pair:
    """``_Pair(seq, qubit, bell, fidelity, created_ns, far, held_since, ent_id)``
    (made once per link pair and end: compiled, a C call that sets the
    fields, not a type call that parses nine arguments)."""
    p = _Pair.__new__(_Pair)
    p.seq = seq
    p.qubit = qubit
    p.bell = bell
    p.fidelity = fidelity
    p.created_ns = created_ns
    p.far = far
    p.held_since = held_since
    p.ent_id = ent_id
    p.meas = None
    return p


@dataclass
class _Circuit:
    cid: int
    head: str
    path: tuple[str, ...]
    index: int                       # this node's position in path
    request_id: int
    number: int
    min_fidelity: float
    link_fidelity: tuple[float, ...]
    strategy: int
    cutoff_ns: int
    type: int
    basis: str
    app_tag: int
    correct: bool
    labels: tuple[int, ...] = ()     # purpose ids: labels[i] for link i
    phase: "CircuitPhase" = None     # set on install (TRANSITIONS below)
    # pairs held unswapped, per side, oldest first (dict keeps insertion order)
    held: tuple[dict, dict] = field(default_factory=lambda: ({}, {}))
    # swapped pairs, per side: seq -> (other side, other seq, bell xor, other
    # fidelity, other created)
    swaps: tuple[dict, dict] = field(default_factory=lambda: ({}, {}))
    # pairs in a BSM (or a type-D measurement) right now, per side: seq ->
    # messages waiting for the outcome
    busy: tuple[dict, dict] = field(default_factory=lambda: ({}, {}))
    # (side, seq) -> messages that arrived before the link layer's OK
    early: dict = field(default_factory=dict)
    # broken segments: (side, seq) -> (other side, other seq) or None, until
    # the one SegmentExpire still to come from that side about seq has come
    # (specs/network.md, "Losing a pair"); messages meeting one are dropped
    gone: dict = field(default_factory=dict)
    # tail: pair_seq -> this end's qubit (None for type M) of the last
    # `window` delivered pairs, the ones a PairLost may still name
    recent: dict = field(default_factory=dict)
    # no key of `recent` is below it (its keys are pair seqs given in turn,
    # some taken out since: its oldest is found from here, not by an iterator)
    recent_low: int = 0
    window: int = 1                  # the head's flow-control window (CircuitSetup)
    # link-layer requests on the downstream link: create id -> pairs still
    # to come (their sum is `outstanding`)
    creates: dict = field(default_factory=dict)
    # the create id of its standing link request (topped up as credit frees;
    # kept in `creates`, at 0 when all its pairs came, until the circuit ends)
    standing: int | None = None
    credit: int = 1                  # this node's window on the downstream link (_recredit)
    waiting_track: dict = field(default_factory=dict)   # left seq -> Track held at a repeater
    # repeater flow control (specs/network.md, "Flow control"): downstream
    # pairs swapped here whose Track has not passed yet (they still hold credit)
    untracked: int = 0
    requested: int = 0               # downstream pairs asked for on this circuit
    lost: int = 0                    # ... of which known not to become a delivered pair
    delivered: int = 0               # pairs accepted (tail) / delivered (head)
    done_seq: int = 0                # tail: next pair_seq
    lo: int = -1                     # nested: the segment this repeater joins
    hi: int = -1
    n_links: int = 0                 # len(path) - 1, set on install

    def __post_init__(self) -> None:
        self.n_links = len(self.path) - 1

    @property
    def outstanding(self) -> int:
        """Link-layer pairs asked for on the downstream link and not yet served."""
        return sum(self.creates.values())

    def neighbour(self, side: int) -> str | None:
        i = self.index - 1 if side == _LEFT else self.index + 1
        return self.path[i] if 0 <= i < len(self.path) else None


@cython.locals(idx=cython.Py_ssize_t)
def _side_of(c: _Circuit, src: str) -> int | None:
    """Which side of circuit ``c`` at this node neighbour ``src`` is on
    (``_LEFT``: towards the head), or None if it is not next to this node on it.
    (A module function: called per message and link pair, it costs less
    than a method.)"""
    idx = c.index
    if idx > 0 and c.path[idx - 1] == src:
        return _LEFT
    if idx < c.n_links and c.path[idx + 1] == src:
        return _RIGHT
    return None


@cython.locals(p=_Pair)
def _held_towards(held: dict, far: int) -> _Pair | None:
    """The oldest pair in ``held`` whose far end is node index ``far``, or None
    (a nested swap joins only pairs that span its two sub-segments)."""
    for p in held.values():
        if p.far == far:
            return p
    return None


@dataclass
class _Request:
    """A request at its head, across the circuits that serve it (re-routing)."""

    req: NetRequest
    request_id: int
    delivered: int = 0
    circuit: int | None = None
    started_ns: int = 0
    failed_links: set = field(default_factory=set)
    reopens: int = 0                 # circuits re-opened after a session broke on the way
    allowed: int = 0                 # pairs it may deliver in all (standing: raised by NetTopUp)


# ---------------------------------------------------------------- pending operations
# (the context Protocol.start_op keeps for an operation's answer)

class _Swap:
    """A repeater's BSM of held pairs ``left`` and ``right`` of circuit
    ``(head, cid)``: its outcome joins the two segments."""

    __slots__ = ("head", "cid", "left", "right")

    def __init__(self, head: str, cid: int, left: _Pair, right: _Pair) -> None:
        self.head = head
        self.cid = cid
        self.left = left
        self.right = right


class _Finish:
    """An end's last steps before it delivers ``ok``: the operations on its
    qubit (Pauli corrections, a type-M measurement) still to run after this
    one (``rest``)."""

    __slots__ = ("ok", "rest")

    def __init__(self, ok: NetOk, rest: tuple) -> None:
        self.ok = ok
        self.rest = rest


class _MdMeasure:
    """An end's measurement of a type-D link pair ``pair`` (held on ``side``
    of circuit ``(head, cid)``) at ``setting`` of its basis set."""

    __slots__ = ("head", "cid", "side", "pair", "setting")

    def __init__(self, head: str, cid: int, side: int, pair: _Pair, setting: int) -> None:
        self.head = head
        self.cid = cid
        self.side = side
        self.pair = pair
        self.setting = setting


class _Ignored:
    """An operation whose answer is expected and ignored (a Discard of a
    qubit the application may have used already)."""

    __slots__ = ()


_IGNORED = _Ignored()

#: Messages that may still arrive for a circuit this node has already
#: forgotten (torn down or finished); any other message naming an unknown
#: circuit is answered with ``Fail(NET_UNKNOWN_CIRCUIT)``.
_LATE = frozenset({CircuitTeardown, SegmentExpire, PairDone, Track, SegmentNotice, PairLost,
                   CircuitTopUp})


class QnpProtocol(Protocol):
    """The end-to-end circuit protocol (one instance per node).

    ``topology``: the configured :class:`~qstack.network.routing.Topology`
    (every link, all up); this node keeps its own view from it by link-state
    flooding (:mod:`qstack.network.linkstate`; the same object may be given
    to every node: each copies it before changing it). ``link_service``:
    the protocol below to submit link requests to ("link.egp", or
    "network.purify" for purified links). ``default_cutoff_ns``: repeaters
    discard pairs held longer unswapped (0: never) unless a request names its
    own. ``window``: link-layer pairs a creator keeps requested or held
    unswapped per circuit on its downstream link (memory the circuit may use
    per link side): an integer >= 1, or ``"auto"`` (the default): as many
    as the memory allows (:data:`MAX_AUTO_WINDOW` at most; 1 if
    ``num_qubits``, this node's memory slots, is not given). Either way a
    window never exceeds the circuit's share of the link's memory
    (:meth:`link_share`, shared by the circuits crossing the link).
    ``purify``: let routing plan
    purification where a link cannot reach its target (needs
    ``network.purify`` below).

    ``window`` is the flow-control credit: a downstream pair counts against it
    from its request until the Track of its end-to-end pair passes (repeater)
    or its PairDone returns (head), or until it is lost. The head's window
    (``NetRequest.window`` if the request names one, else its own) goes to
    the tail in the CircuitSetup: the tail keeps its half of that many of its
    last delivered pairs, in case the head reports one lost; a repeater uses
    the smaller of it and its own.

    Standing link requests: a node asks its downstream link for all the
    credit it has free in one ``CreateRequest(number=k, standing=True)``
    and later adds the credit that frees to that same request
    (``CreateTopUp``: a two-number ``QueueTopUp`` between the link's ends
    instead of a new queue item each time), until the circuit ends here.
    While pairs of it are still to come it is topped up only with a batch
    of at least half the credit, so the link layer gets about two top-ups
    per window of pairs instead of one per pair. Through ``network.purify``
    (whose sessions are one per label), or with ``link_max_time_ns`` (per
    pair: a request for ``k`` pairs gets ``k`` times it), requests are
    plain: one for the free credit and, while it is served, another only
    for such a batch (through purify: not until it is served).

    ``link_retry_ns``: after the link layer refuses a request at once (queue
    full, no resources, out of memory), the wait before asking again (ns).
    ``seed``: of this node's stream of measure-directly basis choices.
    """

    name = "network.qnp"

    def __init__(self, node: str, topology: Topology | None = None, *,
                 link_service: str = "link.egp", default_cutoff_ns: int = 0,
                 window: int | str = "auto", purify: bool = False, link_max_time_ns: int = 0,
                 link_retry_ns: int = 1_000_000, num_qubits: int | None = None,
                 seed: int | str = 1) -> None:
        super().__init__(node)
        # the ends' basis draws of measure-directly circuits (one stream per node)
        self._basis_rng = random.Random(f"{seed}:{node}:qnp.md")
        #: this node's link-state database: its own view of the topology
        self.linkstate = LinkStateDB(node, topology) if topology is not None else None
        self.link_service = link_service
        self.default_cutoff_ns = int(default_cutoff_ns)
        if window == "auto":
            window = MAX_AUTO_WINDOW if num_qubits else 1
        elif isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 65535:
            raise ValueError(f"window: expected 'auto' or an integer in 1..65535, got {window!r}")
        #: the flow-control window (pairs per circuit and downstream link)
        self.window = window
        #: this node's memory slots (None: not known; then nothing caps the window)
        self.num_qubits = num_qubits
        # neighbour -> keys of the circuits held here that cross the link to
        # it, sorted (both ends of the link rank them alike)
        self._crossing: dict[str, list] = {}
        # standing requests may be topped up while served (not through purify)
        self._top_up = link_service != "network.purify"
        # one link request per circuit and link, topped up pair by pair
        # (CreateTopUp), where the link layer offers it: not through purify,
        # not with a time limit per pair
        self._link_standing = self._top_up and not link_max_time_ns
        self._next_create_id = 0
        self.purify = purify
        self.link_max_time_ns = int(link_max_time_ns)
        self.link_retry_ns = int(link_retry_ns)
        self.circuits: dict[tuple[str, int], _Circuit] = {}
        # the same circuits by head, then circuit id: a message names its
        # circuit by both, and two look-ups by a str and an int cost a third
        # of one by a tuple built, hashed and compared (several per link pair)
        self._by_head: dict[str, dict[int, _Circuit]] = {}
        self.requests: dict[int, _Request] = {}
        # neighbour -> purpose label -> the circuit held here that uses it on
        # the link to that neighbour, for LinkOk from either side (a string
        # and an int looked up, not a tuple built and hashed per link pair)
        self._by_label: dict[str, dict[int, _Circuit]] = {}
        self._labels_used: dict[str, set[int]] = {}
        self._next_label: dict[str, int] = {}
        self._next_cid = 1
        self._next_rid = 1
        self._cid_base = (zlib.crc32(node.encode()) & 0xFFFF) << 16
        #: counters for tests and benchmarks
        self.stats = {"swaps": 0, "cutoffs": 0, "rejected": 0, "delivered": 0, "link_pairs": 0,
                      "lost": 0}

    @property
    def topology(self) -> Topology | None:
        """This node's view of the network (from its link-state database)."""
        return self.linkstate.topology if self.linkstate is not None else None

    # ================================================================ helpers
    def _err(self, req: _Request | NetRequest, rid: int, code: ErrorCode, detail: str,
             out: list) -> None:
        """Tell the layer above that request ``rid`` failed."""
        r = req.req if isinstance(req, _Request) else req
        out.append(Deliver(NetErr(rid, r.destination, code, detail, r.app_tag)))

    _side_of = staticmethod(_side_of)

    @cython.locals(labels=dict)
    def _circuit_of(self, ev: Any) -> _Circuit | None:
        """The circuit a link-layer event (LinkOk, LinkErr, LinkExpire) belongs
        to, by its neighbour and purpose label; None if gone or not ours."""
        labels = self._by_label.get(ev.remote)
        return None if labels is None else labels.get(ev.purpose_id)

    def _free_label(self, peer: str) -> int:
        """A label for a new circuit's pairs on the link to ``peer``, chosen by
        this node (the link's upstream end on the circuit). The two ends of a
        link choose from halves of the label space (the end whose name sorts
        first 1..32767, the other 32768..65535), so circuits set up from both
        ends at once never share a label; within its half a node takes the
        labels in turn, so a label comes back only after the rest of the half,
        long after late link-layer answers for its last circuit are gone."""
        used = self._labels_used.setdefault(peer, set())
        lo, hi = (1, 32767) if self.node < peer else (32768, 65535)
        span = hi - lo + 1
        start = self._next_label.get(peer, lo)
        for i in range(span):
            label = lo + (start - lo + i) % span
            if label not in used:
                used.add(label)
                self._next_label[peer] = lo + (label - lo + 1) % span
                return label
        raise QStackError(ErrorCode.NET_REJECTED, f"no free link label towards {peer}")

    # ================================================================ requests from above
    @on(NetRequest)
    def _request(self, req: NetRequest, now_ns: int) -> list:
        rid = req.request_id if req.request_id is not None else self._next_rid
        self._next_rid = max(self._next_rid, rid) + 1
        out: list = []
        if rid in self.requests:
            self._err(req, rid, ErrorCode.NET_REJECTED, f"request id {rid} in use", out)
            return out
        r = _Request(req=req, request_id=rid, started_ns=now_ns, allowed=req.number)
        if req.destination == self.node:
            self._err(req, rid, ErrorCode.NET_NO_ROUTE, "destination is this node", out)
            return out
        self.requests[rid] = r
        if req.max_time_ns:
            out.append(StartTimer(("qnp.req", rid), req.max_time_ns))
        self._open_circuit(r, now_ns, out)
        return out

    @on(NetCancel)
    def CancelTimer(self, ev: NetCancel, now_ns: int) -> list:
        out: list = []
        r = self.requests.get(ev.request_id)
        if r is not None:
            self._finish_request(r, ErrorCode.NET_CIRCUIT_TORN_DOWN, "cancelled", out)
        return out

    @on(NetTopUp)
    @cython.locals(c=_Circuit, r=_Request)
    def _net_top_up(self, ev: NetTopUp, now_ns: int) -> list:
        """A standing request may deliver ``ev.number`` pairs more: its circuit
        (if one is up) asks its link for them at once."""
        out: list = []
        r = self.requests.get(ev.request_id)
        if r is None or not r.req.standing:
            return out
        r.allowed += ev.number
        c = self._circuit(self.node, r.circuit) if r.circuit is not None else None
        if c is None:
            # (none: its allowance was used up when it had to be re-opened)
            self._open_circuit(r, now_ns, out)
            return out
        # the circuit's nodes learn it before any Track of the pairs it allows
        # (FIFO links; a CircuitTopUp never waits on the way, a Track may)
        c.number += ev.number
        out.append(SendMessage(c.path[1], CircuitTopUp(c.cid, c.head, ev.number)))
        self._refill(c, now_ns, out)
        return out

    def _open_circuit(self, r: _Request, now_ns: int, out: list) -> None:
        req = r.req
        if r.allowed <= r.delivered:
            return     # a standing request with nothing allowed: opened at its next top-up
        if self.topology is None:
            self._finish_request(r, ErrorCode.NET_NO_ROUTE, "no topology", out)
            return
        try:
            route = self.topology.route(self.node, req.destination, req.min_fidelity,
                                        purify=self.purify, exclude=r.failed_links)
        except RoutingError as exc:
            self._finish_request(r, exc.code, exc.detail, out)
            return
        cid = self._cid_base | (self._next_cid & 0xFFFF)
        self._next_cid += 1
        label = self._free_label(route.path[1])
        setup = CircuitSetup(
            circuit_id=cid, head=self.node, path=route.path, request_id=r.request_id,
            number=r.allowed - r.delivered, min_fidelity=req.min_fidelity,
            link_fidelity=route.link_fidelity, link_labels=(label,), strategy=int(req.strategy),
            cutoff_ns=req.cutoff_ns or self.default_cutoff_ns, type=int(req.type),
            measure_basis=req.measure_basis, app_tag=req.app_tag, correct=req.correct,
            window=req.window or self.window)
        self._install(setup)
        r.circuit = cid
        out.append(SendMessage(route.path[1], setup))

    def _install(self, s: CircuitSetup) -> _Circuit:
        idx = s.path.index(self.node)
        c = _Circuit(cid=s.circuit_id, head=s.head, path=s.path, index=idx,
                     request_id=s.request_id, number=s.number, min_fidelity=s.min_fidelity,
                     link_fidelity=s.link_fidelity, strategy=s.strategy, cutoff_ns=s.cutoff_ns,
                     type=s.type, basis=s.measure_basis, app_tag=s.app_tag, correct=s.correct,
                     labels=s.link_labels, window=s.window)
        if s.strategy == SwapStrategy.NESTED and 0 < idx < c.n_links:
            c.lo, c.hi = nested_spans(c.n_links)[idx]
        c.phase = CircuitPhase.SETUP if idx == 0 else CircuitPhase.INSTALLED
        key = (s.head, s.circuit_id)
        self.circuits[key] = c
        self._by_head.setdefault(s.head, {})[s.circuit_id] = c
        if idx > 0:
            self._by_label.setdefault(s.path[idx - 1], {})[s.link_labels[idx - 1]] = c
            bisect.insort(self._crossing.setdefault(s.path[idx - 1], []), key)
            self._recredit(s.path[idx - 1])
        if idx < c.n_links:
            self._by_label.setdefault(s.path[idx + 1], {})[s.link_labels[idx]] = c
            bisect.insort(self._crossing.setdefault(s.path[idx + 1], []), key)
            self._recredit(s.path[idx + 1])
        return c

    # ================================================================ messages
    @cython.locals(by_cid=dict)
    def _circuit(self, head: str, cid: int) -> _Circuit | None:
        """The circuit ``(head, cid)`` held here, or None."""
        by_cid = self._by_head.get(head)
        return None if by_cid is None else by_cid.get(cid)

    def _named(self, m: Any, out: list) -> _Circuit | None:
        """The circuit message ``m`` names (every message but CircuitSetup and
        LinkStateAd names one), or None if this node does not hold it: late
        traffic of a circuit already gone is dropped silently, anything else
        is answered with ``Fail(NET_UNKNOWN_CIRCUIT)`` in ``out``."""
        c = self._circuit(m.head, m.circuit_id)
        if c is None and m.__class__ not in _LATE:
            out.append(Fail(ErrorCode.NET_UNKNOWN_CIRCUIT,
                            f"{type(m).__name__} for unknown circuit {m.head}/{m.circuit_id}"))
        return c

    def _replay(self, parked: list, now_ns: int, out: list) -> None:
        """Handle now the messages that waited (for the link layer's OK of
        the pair they name, or for its BSM's outcome), in their order."""
        handlers = message_handlers_of(self.__class__)
        for src, msg in parked:
            acts = getattr(self, handlers[msg.__class__])(src, msg, now_ns)
            if acts:
                out.extend(acts)

    @on_message(CircuitSetup)
    def _on_setup(self, src: str, s: CircuitSetup, now_ns: int) -> list:
        key = (s.head, s.circuit_id)
        if self.node not in s.path or key in self.circuits:
            return [SendMessage(src, CircuitConfirm(s.circuit_id, s.head, False,
                                                    int(ErrorCode.NET_REJECTED),
                                                    f"{self.node} cannot join the circuit"))]
        idx = s.path.index(self.node)
        # a setup travels head -> tail hop by hop, each hop adding its label:
        # one that did not come that way is refused (a forgery, or a bug)
        why = None
        if idx == 0 or s.path[idx - 1] != src:
            why = f"{src} is not the node before {self.node} on the path"
        elif len(s.link_labels) != idx:
            why = f"{len(s.link_labels)} link labels for the {idx} links passed"
        elif s.type == _MD and s.measure_basis not in MD_BASIS_SETS:
            why = f"no measure-directly basis set {s.measure_basis!r}"
        if why is not None:
            return [SendMessage(src, CircuitConfirm(s.circuit_id, s.head, False,
                                                    int(ErrorCode.NET_REJECTED),
                                                    f"{self.node} refuses the setup: {why}"))]
        if idx < len(s.path) - 1:
            nxt = s.path[idx + 1]
            try:
                label = self._free_label(nxt)
            except QStackError as exc:
                return [SendMessage(src, CircuitConfirm(s.circuit_id, s.head, False,
                                                        int(exc.code), exc.detail))]
            s = replace(s, link_labels=s.link_labels + (label,))
            self._install(s)
            return [SendMessage(nxt, s)]
        # tail: installed and active at once (it creates no link pairs)
        c = self._install(s)
        c.phase = TRANSITIONS.next(c.phase, "tail")
        return [SendMessage(src, CircuitConfirm(s.circuit_id, s.head, True, 0, ""))]

    @on_message(CircuitConfirm)
    def _on_confirm(self, src: str, m: CircuitConfirm, now_ns: int) -> list:
        out: list = []
        c = self._named(m, out)
        if c is None:
            return out
        if not TRANSITIONS.allows(c.phase, "Confirm") or _side_of(c, src) != _RIGHT:
            # (a second Confirm, or one from a node that is not the next hop)
            return [Fail(ErrorCode.UNEXPECTED_EVENT,
                         f"CircuitConfirm of {c.head}/{c.cid} from {src} in phase "
                         f"{c.phase.name}: ignored")]
        if c.index > 0:
            out.append(SendMessage(c.path[c.index - 1], m))
        if not m.accepted:
            self._drop(c, out)      # (not active yet: it holds no pairs)
            if c.index == 0:
                r = self.requests.get(c.request_id)
                if r is not None:
                    self._finish_request(r, error_code(m.code, ErrorCode.NET_REJECTED), m.detail,
                                         out)
            return out
        c.phase = TRANSITIONS.next(c.phase, "Confirm")
        self._refill(c, now_ns, out)
        return out

    @cython.locals(idx=cython.Py_ssize_t, creates=dict)
    def _refill(self, c: _Circuit, now_ns: int, out: list) -> None:
        """Ask the link layer for downstream pairs up to the window: the free
        credit in one standing request (topped up in batches, see the class)."""
        idx = c.index
        if c.phase is not _ACTIVE or idx >= c.n_links:
            return
        held = len(c.held[_RIGHT]) + len(c.busy[_RIGHT])    # (busy: in a BSM right now)
        credit = c.credit
        creates = c.creates
        outstanding = 0
        for left in creates.values():   # (compiled: no view, no iterator)
            outstanding += left
        if idx == 0:
            # the head: no more pairs in flight than pairs still to deliver
            room = min(credit, c.number - c.delivered) - outstanding - held
        else:
            # a repeater: a downstream pair holds credit from its request until
            # the Track of the end-to-end pair it became part of has passed
            # here (or it is lost); never more live pairs than pairs still needed
            room = min(credit - c.untracked,
                       c.number - (c.requested - c.lost)) - outstanding - held
        if room <= 0:
            return
        if outstanding and (not self._top_up or 2 * room < credit):
            # pairs are still to come: the link is busy for this circuit; top
            # it up only with a batch worth a message (purify: one at a time)
            return
        standing = c.standing
        if standing is not None:
            # the link request stands: it may make `room` pairs more
            creates[standing] += room
            c.requested += room
            out.append(Submit(CreateTopUp(standing, c.path[idx + 1], room),
                              to=self.link_service))
            return
        create_id = _CREATE_ID_BASE | self._next_create_id
        self._next_create_id = (self._next_create_id + 1) % _CREATE_ID_BASE
        c.creates[create_id] = room
        c.requested += room
        if self._link_standing:
            c.standing = create_id
        out.append(Submit(CreateRequest(
            remote=c.path[c.index + 1], number=room, min_fidelity=c.link_fidelity[c.index],
            max_time_ns=self.link_max_time_ns * room, purpose_id=c.labels[c.index],
            type=RequestType.KEEP, create_id=create_id, standing=self._link_standing),
            to=self.link_service))

    def link_share(self, peer: str) -> int | None:
        """The memory slots the circuits crossing the link to ``peer`` may
        use at either end: each end's slots divided among its links
        (``slots // degree``), the smaller end's (the neighbour's memory
        from the topology, taken equal to this node's if not known there).
        None if this node's memory is not known."""
        slots = self.num_qubits
        if not slots:
            return None
        topo = self.topology
        if topo is None or self.node not in topo.graph:
            return slots
        share = slots // max(1, topo.graph.degree(self.node))
        if peer in topo.graph:
            other = topo.memory(peer) or slots
            share = min(share, other // max(1, topo.graph.degree(peer)))
        return max(1, share)

    @cython.locals(c=_Circuit)
    def _recredit(self, peer: str) -> None:
        """Set the credit of each circuit whose downstream link goes to
        ``peer`` (the circuits crossing that link changed): the circuit's
        window (the head's; at a repeater no more than its own), at most its
        part of the link's memory share (:meth:`link_share`): the circuits
        crossing the link (either way) divide it evenly, at least 1 each (a
        circuit with none would hold pairs it waits with on its other links
        for ever). So the circuits' link pairs stay within each node's
        memory, and one link's pairs do not fill the memory that the pairs
        they wait for on the next link need, unless more circuits cross a
        link than its share has slots (``specs/network.md``, "Flow control")."""
        crossing = self._crossing.get(peer)
        if not crossing:
            return
        share = self.link_share(peer)
        part = None if share is None else max(1, share // len(crossing))
        for key in crossing:
            c = self.circuits.get(key)
            if c is None or c.index >= c.n_links or c.path[c.index + 1] != peer:
                continue
            w = c.window if c.index == 0 else min(c.window, self.window)
            c.credit = w if part is None else min(w, part)

    # ---------------------------------------------------------------- link layer
    @on(LinkOk)
    @cython.locals(c=_Circuit, p=_Pair, idx=cython.Py_ssize_t, n_links=cython.Py_ssize_t)
    def _link_ok(self, ok: LinkOk, now_ns: int) -> list:
        c = self._circuit_of(ok)
        if c is None or c.phase is not _ACTIVE:
            # a pair for a circuit that is gone (or not ours): free the memory
            if ok.qubit is None:
                return []
            return [Submit(Release(ok.ent_id, ok.remote), to=self.link_service),
                    QuantumOp(None, Discard(ok.qubit))]
        idx = c.index           # (read once: each attribute read costs, compiled or not)
        n_links = c.n_links
        side = _side_of(c, ok.remote)
        if side == _RIGHT:
            creates = c.creates
            cid = ok.create_id
            left = creates.get(cid)
            if left is None and creates:
                # (a layer in between that does not keep the id: the link
                # layer serves a purpose's requests in order, the oldest first)
                cid = next(iter(creates))
                left = creates[cid]
            if left is not None:
                # one pair of a request served (its credit now held)
                if left > 1 or cid == c.standing:
                    creates[cid] = left - 1
                else:
                    del creates[cid]
            self.stats["link_pairs"] += 1
        ent_id = ok.ent_id
        seq = ent_id.seq
        p = _new_pair(seq, ok.qubit, ok.bell_index, ok.goodness, ok.created_ns,
                      idx - 1 if side == _LEFT else idx + 1, now_ns, ent_id)
        out: list = []
        if c.type == _MD and (idx == 0 or idx == n_links):
            self._md_measure(c, side, p, out)
            return out
        held = c.held[side]
        held[seq] = p
        if idx == 0:
            if n_links > 1:
                # the head starts the pair's Track towards the tail (one link:
                # the tail decides on its own OK for the pair, see below)
                out.append(SendMessage(c.path[1], Track(c.cid, c.head, seq, p.bell,
                                                        p.fidelity, p.created_ns)))
        elif idx < n_links:
            if c.cutoff_ns:
                out.append(StartTimer(("qnp.cut", c.head, c.cid, side, seq), c.cutoff_ns))
        if c.early:
            parked = c.early.pop((side, seq), None)
            if parked:
                self._replay(parked, now_ns, out)
        if 0 < idx < n_links:
            self._try_swap(c, now_ns, out)
        elif n_links == 1 and idx == 1 and seq in held:
            # One link: the tail's OK carries what a Track would (the head's
            # would carry the same Bell state; each end's goodness and time is
            # its herald's), so the tail decides now and its PairDone gives the
            # head the pair's values (specs/network.md, "One link").
            self._tail_decide(c, p, p.bell, p.fidelity, p.created_ns, now_ns, out)
        return out

    @on(LinkErr)
    @cython.locals(c=_Circuit)
    def _link_err(self, err: LinkErr, now_ns: int) -> list:
        c = self._circuit_of(err)
        if c is None:
            return []
        # the request ends: all the credit of its pairs not served comes back
        unserved = c.creates.pop(err.create_id, 0)
        c.lost += unserved
        if err.create_id == c.standing:
            c.standing = None
        out: list = []
        if err.code in (ErrorCode.LINK_UNSUPPORTED, ErrorCode.LINK_NO_TIME):
            self._teardown_here(c, ErrorCode.NET_UNREACHABLE_FIDELITY,
                                f"link {self.node}-{err.remote}: {err.detail}", now_ns, None, out)
        elif err.code == ErrorCode.LINK_UNKNOWN_PEER:
            self._teardown_here(c, ErrorCode.NET_CIRCUIT_TORN_DOWN,
                                f"link {self.node}-{err.remote} unknown", now_ns,
                                (self.node, err.remote), out)
        elif err.code == ErrorCode.LINK_TIMEOUT:
            self._refill(c, now_ns, out)     # time has passed: ask again now
        else:
            # Refused at once (queue full, no resources, memory, rejected): asking
            # again at once could be refused at once again, for ever; wait first.
            out.append(StartTimer(("qnp.retry", c.head, c.cid), self.link_retry_ns))
        return out

    @on(LinkExpire)
    @cython.locals(c=_Circuit, p=_Pair)
    def _link_expire(self, ev: LinkExpire, now_ns: int) -> list:
        c = self._circuit_of(ev)
        if c is None:
            return []
        side = _side_of(c, ev.remote)
        if side is None:
            return []
        # The link layer has discarded its qubit and forgotten the pair (no
        # Release, no Discard from here: either would be a second one).
        p = c.held[side].get(ev.ent_id.seq)
        if p is None or p.qubit is None:
            return []
        p.qubit = None
        if c.index == 0:
            # The head sent this pair's Track when it got it (one link: the
            # tail decides on its own OK): the pair is on its way and only its
            # PairDone (or a SegmentExpire from ahead) settles it; keep the
            # pair (and its credit) until then.
            return []
        out: list = []
        self._expire_local(c, side, ev.ent_id.seq, "link expired", now_ns, True, out)
        return out

    # ---------------------------------------------------------------- swapping
    @cython.locals(pl=_Pair, pr=_Pair, idx=cython.Py_ssize_t, left=dict, right=dict,
                   busy_left=dict, busy_right=dict)
    def _try_swap(self, c: _Circuit, now_ns: int, out: list) -> None:
        """A repeater: swap held pairs, one from each side, while it can."""
        left, right = c.held
        nested = c.strategy == _NESTED
        lo, hi = c.lo, c.hi     # (nested: the segment's ends)
        while left and right:
            if nested:
                pl = _held_towards(left, lo)
                pr = _held_towards(right, hi)
                if pl is None or pr is None:
                    break
            else:
                # the oldest held pair of each side (compiled: no view, no iterator)
                for pl in left.values():
                    break
                for pr in right.values():
                    break
            sl, sr = pl.seq, pr.seq
            del left[sl]
            del right[sr]
            # both pairs leave the link layer's care (no cut-off, no expiry)
            path, idx, below = c.path, c.index, self.link_service
            out.append(Submit(Release(pl.ent_id, path[idx - 1]), to=below))
            out.append(Submit(Release(pr.ent_id, path[idx + 1]), to=below))
            busy_left, busy_right = c.busy
            busy_left[sl] = []
            busy_right[sr] = []
            if c.cutoff_ns:
                out.append(CancelTimer(("qnp.cut", c.head, c.cid, _LEFT, pl.seq)))
                out.append(CancelTimer(("qnp.cut", c.head, c.cid, _RIGHT, pr.seq)))
            out.append(self.start_op(BellMeasure(pl.qubit, pr.qubit),
                                     _Swap(c.head, c.cid, pl, pr)))

    @cython.locals(idx=cython.Py_ssize_t, swaps_left=dict, swaps_right=dict, busy_left=dict,
                   busy_right=dict)
    def _swapped(self, c: _Circuit, pl: _Pair, pr: _Pair, m: int, now_ns: int,
                 out: list) -> None:
        self.stats["swaps"] += 1
        sl, sr = pl.seq, pr.seq
        swaps_left, swaps_right = c.swaps
        swaps_left[sl] = (_RIGHT, sr, pr.bell ^ m, pr.fidelity, pr.created_ns)
        swaps_right[sr] = (_LEFT, sl, pl.bell ^ m, pl.fidelity, pl.created_ns)
        c.untracked += 1
        path, idx = c.path, c.index
        if c.strategy == _NESTED:
            out.append(SendMessage(path[idx - 1], SegmentNotice(c.cid, c.head, sl, pr.far)))
            out.append(SendMessage(path[idx + 1], SegmentNotice(c.cid, c.head, sr, pl.far)))
        # messages that waited for the BSM now pass
        busy_left, busy_right = c.busy
        parked = busy_left.pop(sl, None)
        if parked:
            self._replay(parked, now_ns, out)
        parked = busy_right.pop(sr, None)
        if parked:
            self._replay(parked, now_ns, out)
        t = c.waiting_track.pop(sl, None)
        if t is not None:
            # the Track that waited here for the swap passes now
            out.extend(self._on_track(path[idx - 1], t, now_ns))
        self._refill(c, now_ns, out)

    # ---------------------------------------------------------------- measure directly
    @cython.locals(c=_Circuit, p=_Pair)
    def _md_measure(self, c: _Circuit, side: int, p: _Pair, out: list) -> None:
        """An end of a type-D circuit got link pair ``p``: it measures its half
        at once, at an angle drawn from its basis set (this node's seeded
        stream), and the link layer forgets the pair (the measurement frees
        the slot). Messages about the pair wait for the outcome (a Track at
        the tail, a SegmentExpire), those that came before the OK too."""
        angles = MD_BASIS_SETS[c.basis][0 if c.index == 0 else 1]
        setting = self._basis_rng.randrange(len(angles))
        c.busy[side][p.seq] = c.early.pop((side, p.seq), None) or []
        out.append(Submit(Release(p.ent_id, c.neighbour(side)), to=self.link_service))
        out.append(self.start_op(Measure(p.qubit, (angles[setting], 0.0)),
                                 _MdMeasure(c.head, c.cid, side, p, setting)))

    @cython.locals(c=_Circuit, p=_Pair)
    def _md_measured(self, ctx: _MdMeasure, outcome: Any, now_ns: int) -> list:
        """The outcome of :meth:`_md_measure`: the pair is held as a record
        (setting, outcome) until its end-to-end record settles it; the head
        starts its Track only now, so a half lost in the measurement breaks
        the segment like any other end's lost half and no delivered pair is
        ever taken back (no PairLost on type D)."""
        c = self._circuit(ctx.head, ctx.cid)
        if c is None:
            return []            # (the circuit ended meanwhile: nothing is held)
        p, side = ctx.pair, ctx.side
        key = (side, p.seq)
        parked = c.busy[side].pop(p.seq, None)
        out: list = []
        if parked is None:
            return out
        if isinstance(outcome, BaseException):
            c.gone[key] = None
            out.append(SendMessage(c.neighbour(side), SegmentExpire(c.cid, c.head, p.seq,
                                                                    "measurement failed")))
            if parked:
                self._replay(parked, now_ns, out)
            self._refill(c, now_ns, out)
            return out
        p.qubit = None
        p.meas = (ctx.setting, int(outcome))
        c.held[side][p.seq] = p
        if parked:
            self._replay(parked, now_ns, out)
        if c.index == 0 and p.seq in c.held[side]:
            out.append(SendMessage(c.path[1], Track(c.cid, c.head, p.seq, p.bell, p.fidelity,
                                                    p.created_ns)))
        return out

    @cython.locals(c=_Circuit, p=_Pair)
    def _md_fields(self, c: _Circuit, p: _Pair, bell: int) -> dict:
        """A type-D end's NetOk fields for pair ``p`` in Bell state ``bell``:
        the tail of a ``correct`` circuit folds the frame into its outcome
        and setting (:func:`~qstack.network.service.fold_frame`)."""
        tail = c.index == c.n_links
        angles = MD_BASIS_SETS[c.basis][1 if tail else 0]
        setting, outcome = p.meas
        if c.correct:
            if tail and bell:
                setting, outcome = fold_frame(angles, setting, outcome, bell)
            bell = 0
        return {"bell_index": bell, "outcome": outcome, "setting": setting,
                "basis": (angles[setting], 0.0), "qubit": None}

    # ---------------------------------------------------------------- segment messages
    @cython.locals(p=_Pair, of_side=dict, parked=list)
    def _locate(self, c: _Circuit, src: str, seq: int, msg: Any) -> tuple[str, Any]:
        """Where a segment message about pair ``seq`` on the link to ``src`` stands here:
        ("swapped", record), ("held", pair), ("broken", (side, tombstone)),
        ("wait", None) or ("gone", None)."""
        side = _side_of(c, src)
        if side is None:
            return "gone", None
        of_side = c.swaps[side]         # (a typed local: compiled, each get is a C call)
        rec = of_side.get(seq)
        if rec is not None:
            return "swapped", (side, rec)
        of_side = c.held[side]
        p = of_side.get(seq)
        if p is not None:
            return "held", (side, p)
        of_side = c.busy[side]
        parked = of_side.get(seq)
        if parked is not None:
            parked.append((src, msg))
            return "wait", None
        key = (side, seq)
        rec = c.gone.get(key, _MISSING)
        if rec is not _MISSING:
            return "broken", (side, rec)     # the segment is broken here
        # the link layer's OK for this pair has not come yet: it will (the
        # sender had it), unless the circuit goes first
        c.early.setdefault(key, []).append((src, msg))
        return "wait", None

    @cython.locals(of_side=dict)
    def _take_swap(self, c: _Circuit, src: str, seq: int) -> tuple | None:
        """The swap record of pair ``seq`` on the link to ``src``, taken out
        (a Track or PairDone passes a swap once), or None if this node did
        not swap it (then :meth:`_locate` says where it stands)."""
        swaps = c.swaps
        if not (swaps[0] or swaps[1]):
            return None
        side = _side_of(c, src)
        if side is None:
            return None
        of_side = swaps[side]
        return of_side.pop(seq, None)

    @on_message(Track)
    @cython.locals(c=_Circuit, p=_Pair)
    def _on_track(self, src: str, t: Track, now_ns: int) -> list:
        out: list = []
        c = self._named(t, out)
        if c is None:
            return out
        if c.n_links == 1 and c.type != _MD:
            # one link of type K or M: the tail decided on its own link-layer
            # OK (or will), so a Track names nothing to settle; taking it would
            # leave it waiting for an OK already used
            out.append(Fail(ErrorCode.UNEXPECTED_EVENT,
                            f"Track for pair {t.link_seq} of one-link circuit {c.head}/{c.cid} "
                            f"from {src}: its tail decides on its own link pair; dropped"))
            return out
        rec = self._take_swap(c, src, t.link_seq)
        if rec is not None:
            oside, oseq, xor, f_o, created_o = rec
            # (a swap record is a repeater's: both neighbours are on the path)
            out.append(SendMessage(c.path[c.index - 1 if oside == _LEFT else c.index + 1], Track(
                c.cid, c.head, oseq, t.bell_index ^ xor, werner_swap(t.fidelity, f_o),
                min(t.created_ns, created_o))))
            # flow control: the downstream pair is now part of a tracked pair
            c.untracked -= 1
            self._refill(c, now_ns, out)
            return out
        where, info = self._locate(c, src, t.link_seq, t)
        if where == "held":
            side, p = info
            if c.index < c.n_links:
                c.waiting_track[p.seq] = t      # repeater: wait for the swap
            else:
                self._tail_decide(c, p, t.bell_index, t.fidelity, t.created_ns, now_ns, out)
        return out

    def _tail_decide(self, c: _Circuit, p: _Pair, bell: int, fidelity: float, created_ns: int,
                     now_ns: int, out: list) -> None:
        """The tail settles held pair ``p``, in Bell state ``bell`` with estimated
        ``fidelity``, its oldest link pair heralded at ``created_ns`` (what its
        Track says, or on one link its own OK): accepted, it is delivered here
        and the PairDone tells the head; refused, both ends discard it."""
        del c.held[_LEFT][p.seq]
        accept = c.delivered < c.number and fidelity + 1e-9 >= c.min_fidelity
        prev = c.path[c.index - 1]
        md = p.meas is not None       # (type D: measured at once, released then)
        if not md:
            out.append(Submit(Release(p.ent_id, prev), to=self.link_service))
        if not accept:
            self.stats["rejected"] += 1
            if not md:
                out.append(QuantumOp(None, Discard(p.qubit)))
            out.append(SendMessage(prev, PairDone(c.cid, c.head, p.seq, False, 0, bell, fidelity,
                                                  created_ns)))
            return
        seq = c.done_seq
        c.done_seq += 1
        c.delivered += 1
        ops: list = []
        if md:
            fields = self._md_fields(c, p, bell)
            bell = fields["bell_index"]
        elif c.correct and bell:
            if bell & 2:
                ops.append(Gate("x", (p.qubit,)))
            if bell & 1:
                ops.append(Gate("z", (p.qubit,)))
            bell = 0
        ok = NetOk(request_id=c.request_id, pair_id=PairId(c.head, c.cid, seq), remote=c.head,
                   bell_index=bell, fidelity=fidelity, created_ns=created_ns, qubit=p.qubit,
                   app_tag=c.app_tag, pair_index=seq, request_done=c.delivered >= c.number,
                   initiator=False, path=c.path)
        if md:
            ok = replace(ok, **fields)
        # until the head settles it, a PairLost may still take this pair back
        recent = c.recent
        recent[seq] = p.qubit if c.type == _KEEP_TYPE else None
        if len(recent) > c.window:
            # the oldest (the smallest seq: they are given in turn)
            low = c.recent_low
            while low not in recent:
                low += 1
            del recent[low]
            c.recent_low = low + 1
        out.append(SendMessage(prev, PairDone(c.cid, c.head, p.seq, True, seq, bell,
                                              fidelity, created_ns)))
        self._finish_pair(c, ok, ops, now_ns, out)

    def _finish_pair(self, c: _Circuit, ok: NetOk, ops: list, now_ns: int, out: list) -> None:
        """Run ``ops`` (corrections) then, for type M, the measurement; deliver ``ok``."""
        if c.type == _MEASURE_TYPE:
            basis = c.basis
            if basis == "random":
                # deterministic per pair and end, so runs are reproducible
                h = zlib.crc32(f"{ok.pair_id}/{self.node}".encode())
                basis = "Z" if h & 1 else "X"
            ops = ops + [Measure(ok.qubit, basis)]
            ok = replace(ok, basis=basis)
        self.stats["delivered"] += 1
        if not ops:
            out.append(Deliver(ok))
        else:
            out.append(self.start_op(ops[0], _Finish(ok, tuple(ops[1:]))))

    @on_message(PairDone)
    @cython.locals(c=_Circuit, p=_Pair, r=_Request)
    def _on_pair_done(self, src: str, m: PairDone, now_ns: int) -> list:
        out: list = []
        c = self._named(m, out)
        if c is None:
            return out
        rec = self._take_swap(c, src, m.link_seq)
        if rec is not None:
            oside, oseq = rec[0], rec[1]
            if not m.accepted:
                c.lost += 1
                self._refill(c, now_ns, out)
            out.append(SendMessage(c.neighbour(oside), PairDone(
                m.circuit_id, m.head, oseq, m.accepted, m.pair_seq, m.bell_index, m.fidelity,
                m.created_ns)))
            return out
        where, info = self._locate(c, src, m.link_seq, m)
        if where != "held" or c.index != 0:
            return out
        _, p = info
        del c.held[_RIGHT][p.seq]
        md = p.meas is not None       # (type D: measured at once, released then)
        if p.qubit is None and not md:
            # lost here while its Track was on the way: the pair is lost at both
            # ends; if the tail delivered it, it takes it back. The PairLost goes
            # out before the Track of any pair asked for now (FIFO links).
            if m.accepted:
                self.stats["lost"] += 1
                out.append(SendMessage(c.path[1], PairLost(c.cid, c.head, m.pair_seq,
                                                           "head's half expired")))
            self._refill(c, now_ns, out)
            return out
        if not m.accepted:
            self._refill(c, now_ns, out)
            if not md:
                out.append(Submit(Release(p.ent_id, c.path[1]), to=self.link_service))
                out.append(QuantumOp(None, Discard(p.qubit)))
            return out
        r = self.requests.get(c.request_id)
        c.delivered += 1
        if not md:
            out.append(Submit(Release(p.ent_id, c.path[1]), to=self.link_service))
        idx = m.pair_seq
        if r is not None:
            r.delivered += 1     # (before the refill: a standing request's room counts it)
            idx = r.delivered - 1
        self._refill(c, now_ns, out)
        # (a standing request is open until cancelled)
        done = r is not None and r.delivered >= r.req.number and not r.req.standing
        ok = NetOk(request_id=c.request_id, pair_id=PairId(c.head, c.cid, m.pair_seq),
                   remote=c.path[-1], bell_index=m.bell_index, fidelity=m.fidelity,
                   created_ns=m.created_ns, qubit=p.qubit, app_tag=c.app_tag, pair_index=idx,
                   request_done=done, initiator=True, path=c.path)
        if md:
            ok = replace(ok, **self._md_fields(c, p, m.bell_index))
        self._finish_pair(c, ok, [], now_ns, out)
        if done:
            self._finish_request(r, None, "", out)
        return out

    @on_message(SegmentNotice)
    @cython.locals(c=_Circuit, p=_Pair)
    def _on_notice(self, src: str, m: SegmentNotice, now_ns: int) -> list:
        out: list = []
        c = self._named(m, out)
        if c is None:
            return out
        where, info = self._locate(c, src, m.link_seq, m)
        if where == "swapped":
            side, (oside, oseq, *_rest) = info
            out.append(SendMessage(c.neighbour(oside), replace(m, link_seq=oseq)))
        elif where == "held":
            _, p = info
            p.far = m.far_end
            if 0 < c.index < c.n_links:
                self._try_swap(c, now_ns, out)
        return out

    @on_message(SegmentExpire)
    @cython.locals(c=_Circuit, p=_Pair)
    def _on_expire(self, src: str, m: SegmentExpire, now_ns: int) -> list:
        out: list = []
        c = self._named(m, out)
        if c is None:
            return out
        where, info = self._locate(c, src, m.link_seq, m)
        if where == "swapped":
            side, (oside, oseq, *_rest) = info
            # the segment is broken: its downstream pair is lost, and if the
            # Track had not passed yet its credit comes back
            if (m.link_seq if side == _LEFT else oseq) in c.swaps[_LEFT]:
                c.untracked -= 1
            c.lost += 1
            c.swaps[side].pop(m.link_seq, None)
            c.swaps[oside].pop(oseq, None)
            # the answer will come back from the far side: pass it on to here
            c.gone[(oside, oseq)] = (side, m.link_seq)
            out.append(SendMessage(c.neighbour(oside), replace(m, link_seq=oseq)))
            self._refill(c, now_ns, out)
        elif where == "broken":
            # the answer to a break (or a break crossing ours): the segment's
            # state here ends; pass it on if it came through here
            side, rec = info
            del c.gone[(side, m.link_seq)]
            if rec is not None:
                oside, oseq = rec
                out.append(SendMessage(c.neighbour(oside), replace(m, link_seq=oseq)))
        elif where == "held":
            side, p = info
            # the segment's other end: discard, and answer so that every node on
            # the way (and the breaking end) can forget the segment
            out.append(SendMessage(src, m))
            self._expire_local(c, side, p.seq, m.reason, now_ns, False, out)
        return out

    @on_message(CircuitTopUp)
    @cython.locals(c=_Circuit)
    def _on_top_up(self, src: str, m: CircuitTopUp, now_ns: int) -> list:
        """A standing request's circuit may deliver ``m.number`` pairs more:
        passed on towards the tail; a repeater asks its link for its part."""
        out: list = []
        c = self._named(m, out)
        if c is None or c.index == 0 or _side_of(c, src) != _LEFT:
            if c is not None:
                out.append(Fail(ErrorCode.NET_UNKNOWN_CIRCUIT,
                                f"CircuitTopUp of {c.head}/{c.cid} from {src}, which is not the "
                                f"node before {self.node} on it: ignored"))
            return out
        c.number += m.number
        if c.index < c.n_links:
            out.append(SendMessage(c.path[c.index + 1], m))
            self._refill(c, now_ns, out)
        return out

    @on_message(PairLost)
    @cython.locals(c=_Circuit)
    def _on_pair_lost(self, src: str, m: PairLost, now_ns: int) -> list:
        out: list = []
        c = self._named(m, out)
        if c is None or c.index == 0 or _side_of(c, src) != _LEFT:
            return out
        if c.index < c.n_links:
            # the end-to-end pair our downstream pair went into is lost
            c.lost += 1
            out.append(SendMessage(c.path[c.index + 1], m))
            self._refill(c, now_ns, out)
            return out
        qubit = c.recent.pop(m.pair_seq, _MISSING)
        if qubit is _MISSING:
            return out
        c.delivered -= 1
        if qubit is not None:
            # the application may have used the qubit already: its answer (maybe
            # QUBIT_UNAVAILABLE) is expected and ignored, so not fire and forget
            out.append(self.start_op(Discard(qubit), _IGNORED))
        out.append(Deliver(NetExpire(PairId(c.head, c.cid, m.pair_seq), c.head, m.reason)))
        return out

    @cython.locals(c=_Circuit, p=_Pair)
    def _expire_local(self, c: _Circuit, side: int, seq: int, reason: str, now_ns: int,
                      notify: bool, out: list) -> None:
        """Discard held pair ``seq``; with ``notify`` tell the segment's other end."""
        p = c.held[side].pop(seq, None)
        if p is None:
            return
        if side == _RIGHT:
            c.lost += 1
        else:
            c.waiting_track.pop(seq, None)
        if p.qubit is not None:
            out.append(Submit(Release(p.ent_id, c.neighbour(side)), to=self.link_service))
            out.append(QuantumOp(None, Discard(p.qubit)))
        if c.cutoff_ns and 0 < c.index < c.n_links:
            out.append(CancelTimer(("qnp.cut", c.head, c.cid, side, seq)))
        if notify:
            # a break: the other end answers with a SegmentExpire back
            c.gone[(side, seq)] = None
            out.append(SendMessage(c.neighbour(side), SegmentExpire(c.cid, c.head, seq, reason)))
        self._refill(c, now_ns, out)

    # ---------------------------------------------------------------- teardown
    @on_message(CircuitTeardown)
    @cython.locals(c=_Circuit)
    def _on_teardown(self, src: str, m: CircuitTeardown, now_ns: int) -> list:
        out: list = []
        c = self._named(m, out)
        if c is not None:
            self._torn_down(c, src, m, now_ns, out)
        return out

    @cython.locals(c=_Circuit, r=_Request)
    def _torn_down(self, c: _Circuit, src: str, m: CircuitTeardown, now_ns: int,
                   out: list) -> None:
        """Circuit ``c`` is torn down by ``m`` from ``src`` (this node itself
        for the head's own teardown)."""
        side = _side_of(c, src)
        if side is None and src != self.node:
            # only the circuit's own nodes tear it down, each to its neighbours on it
            out.append(Fail(ErrorCode.NET_UNKNOWN_CIRCUIT,
                            f"CircuitTeardown of {c.head}/{c.cid} from {src}, which is not next "
                            f"to {self.node} on it: ignored"))
            return
        onward = c.neighbour(_RIGHT if side == _LEFT else _LEFT)
        if onward is not None:
            out.append(SendMessage(onward, m))
        self._drop(c, out)
        # (a failed link reaches every node's view by link-state flooding; the
        # head only avoids it for this request's new circuit, below)
        if c.index == 0:
            r = self.requests.get(c.request_id)
            if r is not None and r.circuit == c.cid:
                if m.failed_a:
                    r.failed_links.add(frozenset((m.failed_a, m.failed_b)))
                    r.circuit = None
                    self._open_circuit(r, now_ns, out)   # route around the failure
                    return
                if m.code == ErrorCode.NET_CIRCUIT_TORN_DOWN and r.reopens < MAX_REOPENS:
                    # a session on the way broke (messages were lost), the links
                    # may be fine: a new circuit, once the session had time to return
                    r.reopens += 1
                    r.circuit = None
                    out.append(StartTimer(("qnp.reopen", r.request_id), self.link_retry_ns))
                    return
                self._finish_request(r, error_code(m.code, ErrorCode.NET_CIRCUIT_TORN_DOWN),
                                     m.detail, out)
        elif c.index == c.n_links and m.code and c.delivered < c.number and not m.failed_a:
            # (after a link failure the head routes around it: the tail is told
            # nothing, it will get the remaining pairs over the new circuit)
            out.append(Deliver(NetErr(c.request_id, c.head,
                                      error_code(m.code, ErrorCode.NET_CIRCUIT_TORN_DOWN), m.detail,
                                      c.app_tag, initiator=False)))

    @cython.locals(c=_Circuit)
    def _teardown_here(self, c: _Circuit, code: ErrorCode, detail: str, now_ns: int,
                       failed: tuple[str, str] | None, out: list) -> None:
        """Tear circuit ``c`` down from this node, in both directions
        (``failed``: the link that failed, or None)."""
        fa, fb = failed or ("", "")
        msg = CircuitTeardown(c.cid, c.head, int(code), detail[:256], fa, fb)
        for side in (_LEFT, _RIGHT):
            nb = c.neighbour(side)
            if nb is not None and (nb, self.node) != (fb, fa) and nb != fb:
                out.append(SendMessage(nb, msg))
        if c.index == 0:
            # the head handles it as if the teardown had come back to it
            self._torn_down(c, self.node, msg, now_ns, out)
            return
        self._drop(c, out)
        if c.index == c.n_links and c.delivered < c.number:
            out.append(Deliver(NetErr(c.request_id, c.head, code, detail, c.app_tag,
                                      initiator=False)))

    @cython.locals(c=_Circuit, p=_Pair, c2=_Circuit)
    def _drop(self, c: _Circuit, out: list) -> None:
        """Forget circuit ``c`` here, freeing every qubit it holds."""
        key = (c.head, c.cid)
        if self.circuits.pop(key, None) is None:
            return
        by_cid = self._by_head[c.head]
        del by_cid[c.cid]
        if not by_cid:
            del self._by_head[c.head]
        c.phase = _CLOSED
        if c.creates:
            # its standing link requests: withdrawn, so that the link makes no
            # more pairs for it (those being made still come and are freed)
            downstream = c.path[c.index + 1]
            for create_id in c.creates:
                out.append(Submit(CancelCreate(create_id, downstream), to=self.link_service))
            c.creates.clear()
        freed = []
        for side in (_LEFT, _RIGHT):
            nb = c.neighbour(side)
            crossing = self._crossing.get(nb)
            if crossing is not None:
                crossing.remove(key)
                if crossing:
                    freed += crossing
                    self._recredit(nb)
                else:
                    del self._crossing[nb]
        for side in (_LEFT, _RIGHT):
            for p in c.held[side].values():
                if p.qubit is not None:
                    out.append(Submit(Release(p.ent_id, c.neighbour(side)),
                                      to=self.link_service))
                    out.append(QuantumOp(None, Discard(p.qubit)))
                if c.cutoff_ns and 0 < c.index < c.n_links:
                    out.append(CancelTimer(("qnp.cut", c.head, c.cid, side, p.seq)))
            c.held[side].clear()
        # its labels no longer name it: late link-layer answers for them find
        # no circuit (their pairs are freed), until a new circuit takes the label
        for side in (_LEFT, _RIGHT):
            link = c.index - 1 + side           # (the link on that side)
            if 0 <= link < c.n_links and link < len(c.labels):
                labels = self._by_label.get(c.neighbour(side))
                if labels is not None and labels.get(c.labels[link]) is c:
                    del labels[c.labels[link]]
        if c.index < c.n_links:
            self._labels_used.get(c.path[c.index + 1], set()).discard(c.labels[c.index])
        # the circuits that shared a link with it may use its part of the memory now
        for other in freed:
            c2 = self.circuits.get(other)
            if c2 is not None:
                self._refill(c2, 0, out)

    @cython.locals(r=_Request, c=_Circuit)
    def _finish_request(self, r: _Request, code: ErrorCode | None, detail: str,
                        out: list) -> None:
        """End request ``r`` at the head: error (``code``) or complete (None)."""
        self.requests.pop(r.request_id, None)
        if r.req.max_time_ns:
            out.append(CancelTimer(("qnp.req", r.request_id)))
        c = self._circuit(self.node, r.circuit) if r.circuit is not None else None
        if c is not None:
            msg = CircuitTeardown(c.cid, c.head, int(code or 0), detail[:256], "", "")
            out.append(SendMessage(c.path[1], msg))
            self._drop(c, out)
        if code is not None:
            self._err(r, r.request_id, code, detail, out)

    # ================================================================ timers, ops, peers
    @on(TimerFired)
    @cython.locals(c=_Circuit, r=_Request)
    def _timer(self, ev: TimerFired, now_ns: int) -> list:
        key = ev.key
        kind = key[0]
        out: list = []
        if kind == "qnp.cut":
            _, head, cid, side, seq = key
            c = self._circuit(head, cid)
            if c is not None and seq in c.held[side]:
                self.stats["cutoffs"] += 1
                self._expire_local(c, side, seq, "cutoff", now_ns, True, out)
        elif kind == "qnp.reopen":
            r = self.requests.get(key[1])
            if r is not None and r.circuit is None:
                self._open_circuit(r, now_ns, out)
        elif kind == "qnp.retry":
            c = self._circuit(key[1], key[2])
            if c is not None:
                self._refill(c, now_ns, out)
        elif kind == "qnp.req":
            r = self.requests.get(key[1])
            if r is not None:
                self._finish_request(r, ErrorCode.NET_TIMEOUT,
                                     f"{r.delivered} of {r.req.number} pairs in time", out)
        return out

    @on(OperationDone)
    @cython.locals(sw=_Swap, c=_Circuit, pl=_Pair, pr=_Pair, p=_Pair)
    def _op_done(self, ev: OperationDone, now_ns: int) -> list:
        ctx = self.take_op(ev.op_id)
        kind = type(ctx)
        outcome = ev.outcome
        if kind is _Swap:
            sw = ctx             # (typed: its fields read in C)
            c = self._circuit(sw.head, sw.cid)
            if c is None:
                return []
            pl, pr = sw.left, sw.right
            out: list = []
            if not isinstance(outcome, BaseException):
                self._swapped(c, pl, pr, int(outcome), now_ns, out)
                return out
            # the BSM failed (qubit lost): both segments are broken
            c.lost += 1
            c.waiting_track.pop(pl.seq, None)
            for side, p in ((_LEFT, pl), (_RIGHT, pr)):
                c.gone[(side, p.seq)] = None
                out.append(SendMessage(c.neighbour(side),
                                       SegmentExpire(c.cid, c.head, p.seq, "bsm failed")))
            # messages that waited for the outcome meet the broken segments
            for side, p in ((_LEFT, pl), (_RIGHT, pr)):
                parked = c.busy[side].pop(p.seq, None)
                if parked:
                    self._replay(parked, now_ns, out)
            self._refill(c, now_ns, out)
            return out
        if kind is _MdMeasure:
            return self._md_measured(ctx, outcome, now_ns)
        if kind is _Finish:
            if isinstance(outcome, BaseException):
                return [Fail(ErrorCode.QUBIT_UNAVAILABLE, str(outcome))]
            ok, rest = ctx.ok, ctx.rest
            if not rest:
                if ok.outcome is None and isinstance(outcome, int) and ok.basis is not None:
                    ok = replace(ok, outcome=outcome, qubit=None)
                return [Deliver(ok)]
            return [self.start_op(rest[0], _Finish(ok, rest[1:]))]
        return []      # not pending (withdrawn), or its answer is ignored (_IGNORED)

    @on(PeerDown)
    def _peer_down(self, ev: PeerDown, now_ns: int) -> list:
        if ev.peer == self.node:
            self._restarted()
            return []
        # the session with a neighbour broke: messages of the circuits through
        # it may be lost, so those circuits end (the link itself may be fine)
        out: list = []
        self._teardown_through(ev.peer, f"session {self.node}-{ev.peer} reset", now_ns, False,
                               out)
        return out

    @on(LinkDown)
    def _link_down(self, ev: LinkDown, now_ns: int) -> list:
        out: list = []
        if self.linkstate is not None and ev.peer in self.linkstate.own_links():
            ad = self.linkstate.set_own(ev.peer, False)
            if ad is not None:
                self._flood(ad, ev.peer, out)
        self._teardown_through(ev.peer, f"link {self.node}-{ev.peer} down", now_ns, True, out)
        return out

    @on(LinkUp)
    def _link_up(self, ev: LinkUp, now_ns: int) -> list:
        if self.linkstate is None or ev.peer not in self.linkstate.own_links():
            return []
        out: list = []
        ad = self.linkstate.set_own(ev.peer, True)
        if ad is not None:
            self._flood(ad, ev.peer, out)
        # the two ends exchange what they know (a restarted end knows only its configuration)
        for held in self.linkstate.database():
            out.append(SendMessage(ev.peer, held))
        return out

    @on(PeerUp)
    def _peer_up(self, ev: PeerUp, now_ns: int) -> list:
        return []

    @on(Undeliverable)
    def _undeliverable(self, ev: Undeliverable, now_ns: int) -> list:
        m = ev.msg
        out: list = []
        if isinstance(m, CircuitSetup):
            # the next hop cannot be reached (its session is down): the circuit
            # cannot form; tear it down towards the head, which tries again later
            c = self._circuit(m.head, m.circuit_id)
            if c is not None:
                self._teardown_here(c, ErrorCode.NET_CIRCUIT_TORN_DOWN,
                                    f"{ev.dst} unreachable from {self.node}", now_ns, None, out)
        # anything else: LinkDown / PeerDown settle the circuits through that neighbour
        return out

    @cython.locals(c=_Circuit)
    def _teardown_through(self, peer: str, why: str, now_ns: int, failed: bool,
                          out: list) -> None:
        for c in list(self.circuits.values()):
            if peer in (c.neighbour(_LEFT), c.neighbour(_RIGHT)):
                self._teardown_here(c, ErrorCode.NET_CIRCUIT_TORN_DOWN, why, now_ns,
                                    (self.node, peer) if failed else None, out)

    def _flood(self, ad: LinkStateAd, skip: str | None, out: list) -> None:
        """Send ``ad`` to every neighbour up but ``skip``."""
        for nb in self.linkstate.neighbours_up():
            if nb != skip:
                out.append(SendMessage(nb, ad))

    @on_message(LinkStateAd)
    def _on_link_state(self, src: str, ad: LinkStateAd, now_ns: int) -> list:
        if self.linkstate is None:
            return []
        news, answer = self.linkstate.receive(ad)
        out: list = []
        if news:
            self._flood(ad, src, out)
        if answer is not None:
            if answer.origin == self.node and not news:
                self._flood(answer, None, out)          # our own, afresh: to everyone
            else:
                out.append(SendMessage(src, answer))   # the sender's copy is stale
        if news:
            # links come back: requests may use them again
            for r in self.requests.values():
                r.failed_links = {lk for lk in r.failed_links
                                  if not self.topology.link_up(*tuple(lk))}
        return out

    def _restarted(self) -> None:
        """This node was reset in place (its memory and timers are gone):
        forget every circuit, request and pending operation."""
        self.circuits.clear()
        self._by_head.clear()
        self.requests.clear()
        self._by_label.clear()
        self._crossing.clear()
        self._labels_used.clear()
        self._ops.clear()
