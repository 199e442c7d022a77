# cython: nonecheck=True
# (compiled: a typed record read through a name that is None raises the
# AttributeError plain Python raises, instead of reading memory that is not one)
"""The entanglement generation protocol (EGP): the link layer's one protocol, ``link.egp``.

After Dahlberg et al., "A link layer protocol for quantum networks",
SIGCOMM 2019. One :class:`EGP` runs on each node and serves every heralded
link of that node. ``specs/link.md`` is the normative description; in short:

* **Service.** A :class:`~qstack.link.service.CreateRequest` submitted from
  above (the event itself) is checked against the link's physical model and
  refused with ``LINK_UNSUPPORTED`` (fidelity out of reach), ``LINK_NO_TIME``
  (the *expected* time for the pairs, from the model's success probability,
  cycle and herald delays, exceeds ``max_time_ns``), ``LINK_UNKNOWN_PEER``,
  ``LINK_QUEUE_FULL``, ``LINK_NO_RESOURCES`` or ``LINK_DOWN``. Accepted pairs
  come up as :class:`~qstack.link.service.LinkOk` at **both** ends with the
  same entanglement id and Bell index; failures as
  :class:`~qstack.link.service.LinkErr` at the requesting end; lost pairs as
  :class:`~qstack.link.service.LinkExpire` at both ends. A *standing*
  request (``CreateRequest(standing=True)``) stays open after its pairs and
  :class:`~qstack.link.service.CreateTopUp` adds to it (the ends tell each
  other with :class:`~qstack.link.messages.QueueTopUp`), so a user that asks
  for pairs a few at a time keeps one queue item, not one per few pairs.
* **Leader and follower.** Of the two ends, the node with the
  lexicographically smaller name is the *leader*: it keeps the queue (a
  follower's CREATE reaches it as :class:`~qstack.link.messages.QueueRequest`),
  numbers items (``qid``), tells the follower of each
  (:class:`~qstack.link.messages.QueueAdd`), decides which item each pair
  serves and ends items (their deadline, a full memory:
  :class:`~qstack.link.messages.Abort`). For each pair the leader submits an
  ``Entangle`` keyed ``("egp", qid, pair_index, seq)``; the follower, whenever
  it knows of unfinished items, keeps ``Entangle`` s with ``key=None``
  outstanding, which the heralding station matches with the leader's and
  whose heralds name the keys. No end waits for a time at which the other
  would know something, so the protocol works with any classical delay and
  jitter (a herald may even reach the follower before the ``QueueAdd`` of its
  item: the pair waits for it).
* **Parallel processes (multiplexing).** A link runs up to m generation
  processes at once (m from the ends' ``communication_qubits`` and memory,
  ``parallel``): the leader keeps up to m keyed Entangles out, never more for
  an item than the pairs it still needs, the follower as many followers.
  The pair's sequence number travels in its key (the leader gives it at
  submission), so both ends name a pair alike whatever order its heralds
  arrive in.
* **Scheduler** (the leader's): an unfinished consecutive/atomic item first;
  else the lowest priority value (strict classes); within a class the
  purpose with the fewest pairs scheduled per unit weight (weighted round
  robin, ties to the smaller purpose id); within a purpose the oldest item.
* **Parameter choice.** For a scheme with a knob (single-click alpha) the
  requesting end picks the largest alpha whose fidelity, after the T1/T2
  decay both qubits suffer while their heralds travel, is at least the
  requested minimum (largest alpha = highest rate); the alpha travels in the
  queue item and the leader's ``Entangle`` carries it.
* **Type M.** Each end measures its qubit right after the herald: in the
  requested basis, or for ``"random"`` in Z or X chosen independently at each
  end from the protocol's seeded generator (what BBM92-style QKD needs; the
  application sifts). Outcomes are raw: the Bell index in the OK says which
  correlation to expect.
* **Link down.** ``LinkDown`` or ``PeerDown`` for a neighbour (or a herald
  saying the link or the peer is down) ends everything on that link: its
  requests fail with ``LINK_DOWN``, its delivered pairs expire, and new
  requests are refused with ``LINK_DOWN`` until ``LinkUp`` / ``PeerUp``; both
  ends then start afresh (queue numbers and pair sequence numbers from 0).

Memory: a pair stays tracked by the EGP (for cut-off and peer-reset expiry)
until the layer above submits :class:`Release` or until more pairs of the link
were delivered than the node has memory slots (so the older ones must have
been consumed).

States of one link at one end (``specs/link.md`` has the table): ``IDLE``
(no Entangle outstanding), ``ATTEMPTING`` (1..m outstanding, ``LinkState.out``),
``BACKOFF`` (the memory was full: waiting to submit again, others may be
out), ``DOWN``.
"""
from __future__ import annotations

import math
import random
from heapq import heappop, heappush
from typing import Any, Mapping

try:
    import cython
except ImportError:              # (Cython is a build tool, not a dependency)
    from qstack._cython_shadow import cython

from qstack.core.errors import ErrorCode, error_code
from qstack.core.protocol import (
    CancelTimer, Deliver, Fail, LinkDown, LinkUp, OperationDone, PeerDown, PeerUp, Protocol,
    QuantumOp, SendMessage, Started, StartTimer, TimerFired, on, on_message,
)
from qstack.core.states import State, Transitions
from qstack.link.messages import (
    BASES, Abort, Expire, QueueAdd, QueueReject, QueueRequest, QueueSpec, QueueTopUp,
)
from qstack.link.schemes import bell_fidelity, decayed_bell_fidelity
from qstack.link.service import (
    CancelCreate, CreateRequest, CreateTopUp, EntanglementId, LinkErr, LinkExpire, LinkOk,
    Release, RequestType,
)
from qstack.physical.channels_kraus import t1t2_rates
from qstack.physical.ops import CancelEntangle, Discard, Entangle, Measure

__all__ = ["EGP", "Release", "CancelCreate", "CreateTopUp", "LinkState", "Phase"]

#: Deadline used for Entangle ops without a time limit, ns.
_NO_DEADLINE = 1 << 62
_INT32 = 2**31 - 1

_KEEP = RequestType.KEEP
_CANCELLED = ErrorCode.LINK_CANCELLED


class Phase(State):
    """The state of one link at one end (``LinkState.out`` counts the Entangles
    outstanding, at most the link's ``m``)."""

    IDLE = "idle"              # no Entangle outstanding, no retry waiting
    ATTEMPTING = "attempting"  # 1..m Entangles outstanding
    BACKOFF = "backoff"        # the memory was full: a retry timer runs (0..m-1 still out)
    DOWN = "down"              # the link or the session with the peer is down


_IDLE, _ATTEMPTING, _BACKOFF, _DOWN = Phase.IDLE, Phase.ATTEMPTING, Phase.BACKOFF, Phase.DOWN

#: Every allowed move of a link's phase at one end, by its cause
#: (``specs/link.md`` §4 has the actions that go with each).
TRANSITIONS = Transitions("link", {
    (_IDLE, "submit"): _ATTEMPTING,           # an Entangle goes out (leader or follower)
    (_ATTEMPTING, "submit"): _ATTEMPTING,     # another, while fewer than m are out
    (_ATTEMPTING, "herald"): _IDLE,           # the answer of the last one out (ok or not)
    (_ATTEMPTING, "herald, more out"): _ATTEMPTING,   # an answer, others still out
    (_BACKOFF, "herald"): _BACKOFF,           # an answer while a retry waits
    (_BACKOFF, "herald, more out"): _BACKOFF,
    (_ATTEMPTING, "withdraw"): _IDLE,         # all taken back (CancelEntangle)
    (_ATTEMPTING, "withdraw some"): _ATTEMPTING,   # one item's taken back, others out
    (_IDLE, "memory full"): _BACKOFF,         # an answer said so: wait, then again
    (_ATTEMPTING, "memory full"): _BACKOFF,
    (_BACKOFF, "memory full"): _BACKOFF,      # another one: the same wait
    (_BACKOFF, "retry"): _IDLE,               # the wait is over (Entangles follow)
    (_BACKOFF, "retry, more out"): _ATTEMPTING,
    (_BACKOFF, "withdraw"): _IDLE,
    (_BACKOFF, "withdraw some"): _BACKOFF,
    (_IDLE, "down"): _DOWN,                   # LinkDown / PeerDown (after withdrawing)
    (_DOWN, "up"): _IDLE,                     # LinkUp and PeerUp: afresh
    # the node was reset in place (PeerDown(self)): its driver dropped everything
    (_IDLE, "restart"): _IDLE, (_ATTEMPTING, "restart"): _IDLE,
    (_BACKOFF, "restart"): _IDLE, (_DOWN, "restart"): _IDLE,
})
_HERALD_DOWN = frozenset({"link down", "peer down"})
#: the moves made once per pair, by cause (a dict look-up instead of a call,
#: keyed by the state alone; a move it lacks still raises through TRANSITIONS.next)
_ON_SUBMIT = TRANSITIONS.by_cause("submit")
_ON_HERALD = TRANSITIONS.by_cause("herald")
_ON_HERALD_MORE = TRANSITIONS.by_cause("herald, more out")


class LinkState:
    """EGP state of one link (one neighbour). ``items`` is the queue in qid order."""

    __slots__ = ("peer", "model", "side", "leader", "delay", "min_hd", "hd", "items",
                 "next_qid", "seq", "out", "m", "waiting", "free_seqs", "follow_ctx", "served",
                 "delivered", "pending", "retries", "fid_cache", "param_cache", "capacity",
                 "last_goodness", "phase", "orphans", "link_down", "session_down", "bells",
                 "measured", "cancelled", "topups", "follow_op")

    def __init__(self, peer: str, model: Any, side: int, leader: bool, capacity: int,
                 delay_ns: int | None = None, parallel: int = 1) -> None:
        self.peer = peer
        #: generation processes run at once (Entangles outstanding at most)
        self.m = max(1, min(int(parallel), capacity))
        # the context of every follower Entangle (see EGP._on_done), and the
        # Entangle itself (immutable, the same for every one: made once)
        self.follow_ctx = (self, None, None)
        self.follow_op = Entangle(peer, None, _NO_DEADLINE, 0.0, 0)
        self.model = model
        self.side = side
        self.leader = leader
        self.delay = int(delay_ns if delay_ns is not None
                         else getattr(model, "classical_delay_ns", 0))
        self.hd = (int(model.herald_delay_ns(0)), int(model.herald_delay_ns(1)))
        self.min_hd = min(self.hd)
        # the Bell indices a herald may announce (all four if the model does not say)
        indices = getattr(model, "heralded_bell_indices", None)
        self.bells = tuple(indices()) if indices is not None else (0, 1, 2, 3)
        self.capacity = capacity
        self.fid_cache: dict = {}
        self.param_cache: dict = {}
        # per Bell index: (param, wait, goodness) of the last pair heralded with it
        self.last_goodness: list = [(None, None, 0.0)] * 4
        self.link_down = False       # LinkDown seen, no LinkUp yet
        self.session_down = False    # PeerDown seen, no PeerUp yet
        self.reset()

    def reset(self, cause: str | None = None) -> None:
        """Start afresh (qids and pair sequence numbers from 0): going down
        (after what was outstanding was withdrawn), coming up, or ``cause``
        "restart" (the node was reset in place)."""
        self.items: dict[int, _Item] = {}
        self.next_qid = 0
        self.seq = 0                 # leader: next fresh pair sequence number
        self.free_seqs: list[int] = []   # leader: numbers given back (no pair), reused first
        self.out = 0                 # Entangles outstanding (at most m)
        # leader: (item, key) of Entangles refused for a full memory, resubmitted on retry
        self.waiting: list[tuple] = []
        self.served: dict[int, int] = {}     # pairs scheduled per _Item.fair_key
        self.delivered: dict[int, tuple] = {}   # seq -> (qubit, ent_id, purpose)
        self.measured: dict[int, tuple] = {}    # type M: seq -> (ent_id, purpose), the latest
        self.pending: dict[int, CreateRequest] = {}   # follower's requests awaiting QueueAdd
        # follower: create ids of its requests cancelled before their QueueAdd came
        self.cancelled: set[int] = set()
        # follower: create id -> pairs its standing request was topped up by
        # before its QueueAdd came (sent to the leader when it comes)
        self.topups: dict[int, int] = {}
        self.orphans: dict[int, list] = {}   # follower: qid -> heralds before its QueueAdd
        self.retries = 0
        # a new start: DOWN while the link or its session is down
        down = self.link_down or self.session_down
        phase = getattr(self, "phase", None)
        if phase is None:                          # (constructed)
            self.phase = _DOWN if down else _IDLE
        elif cause is not None:
            self.phase = TRANSITIONS.next(phase, cause)
        else:
            self.phase = TRANSITIONS.next(phase, "down" if down else "up")

    @property
    def down(self) -> bool:
        return self.phase is _DOWN


class _Item:
    """One queue item (the same at both ends)."""

    __slots__ = ("qid", "origin", "spec", "done", "delivered", "finished", "local", "limit",
                 "abort_code", "sent", "out", "ending", "cancelled", "standing", "fair_key",
                 "create_id", "purpose_id", "number", "param", "keep", "deadline_ns",
                 "consecutive")

    def __init__(self, qid: int, origin: str, spec: QueueSpec, local: bool) -> None:
        self.qid = qid
        self.origin = origin
        self.spec = spec
        # the spec's fields every pair reads, copied (the spec is immutable):
        # compiled, reads of the typed item, not attribute look-ups of the spec
        self.create_id = spec.create_id
        self.purpose_id = spec.purpose_id
        self.number = spec.number
        self.param = spec.param
        self.keep = spec.type is _KEEP
        self.deadline_ns = spec.deadline_ns     # (read by the scheduler per pair)
        self.consecutive = spec.consecutive
        self.done = 0           # pairs heralded
        self.delivered = 0      # OKs delivered at this end
        self.finished = False
        self.local = local      # this end submitted the CREATE
        # pairs it will have (fewer once aborted; a standing item's grows with
        # its top-ups)
        self.limit = spec.number
        self.standing = spec.standing   # open until it is ended, whatever its count
        # leader: the class its pairs are counted in for fairness (LinkState.served)
        # (one int for (priority, purpose id), both bounded by QueueSpec's
        # limits: counted once per pair, and an int hashes in a few
        # instructions where a tuple hashes each of its items)
        self.fair_key = spec.priority << 16 | spec.purpose_id
        self.abort_code: ErrorCode | None = None   # follower: aborted by the leader
        self.sent = 0           # leader: pair indices handed out (submitted at least once)
        self.out = 0            # leader: its Entangles outstanding
        # leader: (code, detail) once it must end, when its last Entangle answers
        self.ending: tuple | None = None
        self.cancelled = False  # the requester withdrew it (CancelCreate): no LinkErr


class EGP(Protocol):
    """Entanglement generation protocol on ``node``.

    Args:
        node: this node's name.
        peer_models: neighbour name -> its link's heralding model (a
            :class:`~qstack.physical.pair_model.HeraldedPairModel`, ideally one
            of :mod:`qstack.link.schemes`, which add ``fidelity``,
            ``param_range`` and ``classical_delay_ns``).
        t1_ns, t2_ns: memory T1/T2 of both ends (ns; ``math.inf`` = none), for
            the fidelity after the herald wait. ``hardware`` (an object with
            ``t1_ns``, ``t2_ns``, ``num_qubits``, e.g. ``NodeHardware``) may be
            given instead.
        num_qubits: memory slots per node (atomic requests larger than this
            are refused; tracking of delivered pairs is bounded by it).
        cutoff_ns: memory cut-off for kept pairs (None: none): after this
            long a delivered, unreleased pair is discarded and EXPIREd.
        purpose_weights: weight of each purpose id within a priority class
            (default 1; the leader's weights decide).
        sides: neighbour -> this node's side (0/1) in the link's model;
            default 0 when this node's name is the smaller.
        delays: neighbour -> one-way classical delay (ns) to it, used only to
            estimate the time a request will take (``LINK_NO_TIME``); default
            the model's ``classical_delay_ns``. No decision depends on it.
        max_queue: queue items per link.
        max_memory_retries: retries of an Entangle refused for a full memory
            before giving up (the leader aborts the item with
            ``LINK_OUT_OF_MEMORY``; the follower asks it to).
        memory_backoff_max_ns: the wait between such retries starts at one
            attempt cycle and doubles up to this (ns), so that a memory kept
            full by the layer above costs few events.
        seed: seeds the random measurement bases of type-M "random" requests.
        parallel: neighbour -> generation processes the link runs at once
            (Entangles outstanding per end; ``specs/link.md`` §4): both ends
            must be given the same (``qstack.api.link_parallelism``). Default
            ``hardware.communication_qubits`` (1 without ``hardware``); never
            more than ``num_qubits``.
    """

    name = "link.egp"

    def __init__(self, node: str, peer_models: Mapping[str, Any], *, t1_ns: float = math.inf,
                 t2_ns: float = math.inf, num_qubits: int = 64, hardware: Any = None,
                 cutoff_ns: int | None = None, purpose_weights: Mapping[int, float] | None = None,
                 sides: Mapping[str, int] | None = None, delays: Mapping[str, int] | None = None,
                 max_queue: int = 256, max_memory_retries: int = 1000,
                 memory_backoff_max_ns: int = 1_000_000, seed: int = 0,
                 parallel: Mapping[str, int] | None = None) -> None:
        super().__init__(node)
        own_parallel = 1
        if hardware is not None:
            t1_ns, t2_ns = hardware.t1_ns, hardware.t2_ns
            num_qubits = hardware.num_qubits
            own_parallel = getattr(hardware, "communication_qubits", 1)
        self.t1_ns, self.t2_ns = float(t1_ns), float(t2_ns)
        # refuse T1 <= 0 or T2 > 2 T1 here, not at the first herald
        t1t2_rates(0.0, self.t1_ns, self.t2_ns)
        self.num_qubits = int(num_qubits)
        self.cutoff_ns = cutoff_ns
        self.weights = dict(purpose_weights or {})
        self.max_queue = max_queue
        self.max_memory_retries = max_memory_retries
        self.memory_backoff_max_ns = int(memory_backoff_max_ns)
        self.rng = random.Random(f"{seed}:{node}")
        sides = dict(sides or {})
        delays = dict(delays or {})
        parallel = dict(parallel or {})
        self.links: dict[str, LinkState] = {}
        for peer, model in peer_models.items():
            side = sides.get(peer, 0 if node < peer else 1)
            m = parallel.get(peer, own_parallel)
            if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                raise ValueError(f"parallel[{peer!r}]: expected an integer >= 1, got {m!r}")
            self.links[peer] = LinkState(peer, model, side, node < peer, self.num_qubits,
                                         delays.get(peer), m)
        # op id -> ("ent", link) for Entangles, or the context of a Measure
        # pending operations (start_op / take_op): an Entangle's context is its
        # LinkState, a measurement's a _Measuring record
        self._next_create = 0

    # ------------------------------------------------------------ model queries
    def expected_fidelity(self, peer: str, param: float) -> float:
        """Fidelity of a pair with ``peer`` at delivery: the model's heralded
        state after each qubit waited its herald delay in memory, the lowest
        over the Bell indices the link heralds. (With a finite T1 the index
        matters: relaxation pulls both halves towards |00>, which Phi+- contain
        and Psi+- do not, so a Psi pair loses more fidelity than a Phi pair.)"""
        link = self.links[peer]
        wait = link.hd[link.side]
        return min(self._fidelity_after(link, param, wait, b) for b in link.bells)

    def _fidelity_after(self, link: LinkState, param: float, wait_self: int, bell: int) -> float:
        """Fidelity to Bell state ``bell`` of a pair heralded as ``bell`` once this
        end's qubit waited ``wait_self`` ns and the other end's its herald delay."""
        key = (param, wait_self, bell)
        f = link.fid_cache.get(key)
        if f is None:
            model = link.model
            rho = model.heralded_state(param, bell)
            waits = [0, 0]
            waits[link.side] = wait_self
            waits[1 - link.side] = link.hd[1 - link.side]
            if math.isinf(self.t1_ns) and math.isinf(self.t2_ns):
                f = bell_fidelity(rho, bell)
            else:
                f = decayed_bell_fidelity(rho, bell, tuple(waits), self.t1_ns, self.t2_ns)
            link.fid_cache[key] = f
        return f

    def choose_param(self, peer: str, min_fidelity: float) -> float | None:
        """The scheme parameter for ``min_fidelity`` with ``peer``: the largest
        in the model's range whose delivered fidelity (incl. the herald wait's
        decay) is at least ``min_fidelity``; None if none reaches it."""
        link = self.links[peer]
        cached = link.param_cache.get(min_fidelity)
        if cached is not None:
            return cached[0]
        lo, hi = (getattr(link.model, "param_range", None) or (lambda: (0.0, 0.0)))()
        if hi <= lo:
            result = lo if self.expected_fidelity(peer, lo) >= min_fidelity - 1e-12 else None
        else:
            # Fidelity is not monotone in alpha (dark counts dominate at tiny
            # alpha, the |11> term at large alpha): scan a log grid for the
            # largest grid point that qualifies, then bisect to the boundary.
            lo = max(lo, hi * 1e-9)
            grid = [lo * (hi / lo) ** (i / 63) for i in range(64)]
            ok = [self.expected_fidelity(peer, a) >= min_fidelity for a in grid]
            if not any(ok):
                result = None
            else:
                i = max(j for j, v in enumerate(ok) if v)
                if i == len(grid) - 1:
                    result = hi
                else:
                    a, b = grid[i], grid[i + 1]
                    for _ in range(40):
                        m = 0.5 * (a + b)
                        if self.expected_fidelity(peer, m) >= min_fidelity:
                            a = m
                        else:
                            b = m
                    result = a
        link.param_cache[min_fidelity] = (result,)
        return result

    def best_fidelity(self, peer: str) -> float:
        """The highest delivered fidelity the link to ``peer`` can give (over its parameter range)."""
        lo, hi = (getattr(self.links[peer].model, "param_range", None) or (lambda: (0.0, 0.0)))()
        if hi <= lo:
            return self.expected_fidelity(peer, lo)
        lo = max(lo, hi * 1e-9)
        return max(self.expected_fidelity(peer, lo * (hi / lo) ** (i / 63)) for i in range(64))

    def expected_time_ns(self, peer: str, param: float, number: int, origin_leader: bool) -> float:
        """Expected time from CREATE to the last pair's herald, ns: until the
        follower learns of the item (one classical delay, two for the
        follower's own request) plus, per round of the link's m parallel
        processes (ceil(number / m) rounds), (1/p - 1) failed cycles and the
        longer herald delay (a process starts again once both ends heard)."""
        link = self.links[peer]
        p = float(link.model.success_probability(param))
        if p <= 0:
            return math.inf
        per_pair = (1.0 / p - 1.0) * link.model.cycle_ns(param) + max(link.hd)
        offset = (1 if origin_leader else 2) * link.delay
        return offset + -(-number // link.m) * per_pair

    # ------------------------------------------------------------ helpers
    def _err(self, req: CreateRequest, create_id: int, code: ErrorCode, detail: str) -> Deliver:
        return Deliver(LinkErr(create_id, req.remote, code, detail, req.purpose_id))

    # ------------------------------------------------------------ service: CREATE
    @on(CreateRequest)
    def _on_create(self, req: CreateRequest, now: int) -> list:
        cid = req.create_id
        if cid is None:
            cid = self._next_create
            self._next_create = (self._next_create + 1) & _INT32
        link = self.links.get(req.remote)
        if link is None:
            return [self._err(req, cid, ErrorCode.LINK_UNKNOWN_PEER, f"no link to {req.remote!r}")]
        why = _invalid(req, cid)
        if why:
            return [self._err(req, cid, ErrorCode.LINK_UNSUPPORTED, why)]
        if link.phase is _DOWN:
            return [self._err(req, cid, ErrorCode.LINK_DOWN, f"the link to {req.remote} is down")]
        if req.atomic and req.number > self.num_qubits:
            return [self._err(req, cid, ErrorCode.LINK_NO_RESOURCES,
                              f"atomic request of {req.number} pairs > {self.num_qubits} qubits")]
        param = self.choose_param(req.remote, req.min_fidelity)
        if param is None:
            best = self.best_fidelity(req.remote)
            return [self._err(req, cid, ErrorCode.LINK_UNSUPPORTED,
                              f"fidelity {req.min_fidelity} unreachable (best {best:.4f})")]
        if req.max_time_ns:
            t = self.expected_time_ns(req.remote, param, req.number, link.leader)
            if t > req.max_time_ns:
                return [self._err(req, cid, ErrorCode.LINK_NO_TIME,
                                  f"expected {t:.0f} ns for {req.number} pairs > "
                                  f"max_time {req.max_time_ns} ns")]
        if len(link.items) + len(link.pending) >= self.max_queue:
            return [self._err(req, cid, ErrorCode.LINK_QUEUE_FULL,
                              f"{self.max_queue} items queued for {req.remote}")]
        spec = QueueSpec(cid, req.number, float(req.min_fidelity),
                         now + req.max_time_ns if req.max_time_ns else 0, req.purpose_id,
                         _REQUEST_TYPE[req.type], req.measure_basis, req.priority, req.atomic,
                         req.consecutive or req.atomic, float(param), req.standing)
        if not link.leader:
            link.pending[cid] = req
            return [SendMessage(link.peer, QueueRequest(spec))]
        return self._leader_add(link, self.node, spec, now)

    def _leader_add(self, link: LinkState, origin: str, spec: QueueSpec, now: int) -> list:
        qid = link.next_qid
        link.next_qid = (qid + 1) & _INT32
        item = _Item(qid, origin, spec, origin == self.node)
        link.items[qid] = item
        actions: list = [SendMessage(link.peer, QueueAdd(qid, origin, spec))]
        if spec.deadline_ns:
            actions.append(StartTimer(("deadline", link.peer, qid), max(0, spec.deadline_ns - now)))
        if _can_submit(link):
            self._schedule(link, now, actions)
        return actions

    # ------------------------------------------------------------ queue messages
    @cython.locals(link=LinkState)
    def _link_from(self, src: str, msg: Any) -> tuple[LinkState | None, list | None]:
        """The link a message came over, or the Fail that refuses it: from a
        node that is no neighbour, or over a link that is down (sent before it
        went down: a driver drops those, this is a guard)."""
        link = self.links.get(src)
        if link is None:
            return None, [Fail(ErrorCode.LINK_UNKNOWN_PEER,
                               f"{type(msg).__name__} from {src!r}, which is not a neighbour")]
        if link.phase is _DOWN:
            return None, [Fail(ErrorCode.LINK_DOWN, f"{type(msg).__name__} from {src} while "
                                                    "the link is down: ignored")]
        return link, None

    @on_message(QueueRequest)
    def _on_request(self, src: str, msg: QueueRequest, now: int) -> list:
        link, refused = self._link_from(src, msg)
        if refused:
            return refused
        if not link.leader:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"QueueRequest from leader {link.peer}")]
        if len(link.items) >= self.max_queue:
            return [SendMessage(link.peer, QueueReject(-1, msg.spec.create_id,
                                                       int(ErrorCode.LINK_QUEUE_FULL),
                                                       "queue full"))]
        if _bad_standing(msg.spec):
            return [SendMessage(link.peer, QueueReject(-1, msg.spec.create_id,
                                                       int(ErrorCode.LINK_UNSUPPORTED),
                                                       "standing item with a deadline or "
                                                       "consecutive"))]
        return self._leader_add(link, link.peer, msg.spec, now)

    @on_message(QueueAdd)
    def _on_add(self, src: str, msg: QueueAdd, now: int) -> list:
        link, refused = self._link_from(src, msg)
        if refused:
            return refused
        if link.leader:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"QueueAdd from follower {link.peer}")]
        spec = msg.spec
        local = msg.origin == self.node
        refuse = None
        cancelled = False
        if local:
            if link.pending.pop(spec.create_id, None) is None:
                if spec.create_id in link.cancelled:
                    # cancelled before its QueueAdd came: queued only until the
                    # leader's Abort says how many pairs it got (they may be on their way)
                    link.cancelled.discard(spec.create_id)
                    cancelled = True
                else:
                    refuse = (ErrorCode.LINK_REJECTED, "unknown request")
        elif msg.origin != link.peer:
            refuse = (ErrorCode.LINK_REJECTED, "origin is neither end")
        elif len(link.items) >= self.max_queue:
            refuse = (ErrorCode.LINK_QUEUE_FULL, "queue full")
        elif spec.atomic and spec.number > self.num_qubits:
            refuse = (ErrorCode.LINK_NO_RESOURCES, "atomic request exceeds memory")
        elif _bad_standing(spec):
            refuse = (ErrorCode.LINK_UNSUPPORTED, "standing item with a deadline or consecutive")
        if refuse is None and msg.qid in link.items:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"duplicate queue item {msg.qid}")]
        if refuse is not None:
            # heralds that came first for it are freed: the leader drops the item
            actions: list = [SendMessage(link.peer, QueueReject(msg.qid, spec.create_id,
                                                                int(refuse[0]), refuse[1]))]
            for herald, _t in link.orphans.pop(msg.qid, ()):
                actions.append(QuantumOp(None, Discard(herald.qubit)))
            return actions
        item = _Item(msg.qid, msg.origin, spec, local)
        link.items[msg.qid] = item
        actions = []
        if cancelled:
            item.cancelled = True
            actions.append(self._cancel_message(link, item))
        elif local and link.topups:
            extra = link.topups.pop(spec.create_id, 0)
            if extra:
                # topped up while its QueueAdd was on its way: the leader hears it now
                item.limit += extra
                actions.append(SendMessage(link.peer, QueueTopUp(msg.qid, extra)))
        for herald, _t in link.orphans.pop(msg.qid, ()):
            key = herald.key
            if _index_ok(item, key[2]):
                self._pair_made(link, item, key[3], key[2], herald, now, actions)
            else:
                actions.append(Fail(ErrorCode.UNEXPECTED_EVENT, f"herald for pair {key[2]} of "
                                    f"item {msg.qid} of {spec.number} pairs"))
                actions.append(QuantumOp(None, Discard(herald.qubit)))
        self._follow(link, actions)
        return actions

    @on_message(QueueReject)
    def _on_reject(self, src: str, msg: QueueReject, now: int) -> list:
        link, refused = self._link_from(src, msg)
        if refused:
            return refused
        code = _link_code(msg.code)
        if msg.qid < 0:   # the leader refused our QueueRequest
            link.topups.pop(msg.create_id, None)
            req = link.pending.pop(msg.create_id, None)
            if req is None:
                link.cancelled.discard(msg.create_id)   # (cancelled meanwhile: silently)
                return []
            return [self._err(req, msg.create_id, code, f"peer: {msg.detail}")]
        item = link.items.get(msg.qid)
        if item is None or not link.leader:
            return []
        actions: list = []
        if code is _CANCELLED:
            # the follower cancelled its queued request: it ends as at a
            # deadline (Entangles out answer first), the Abort tells how many pairs
            if item.origin != link.peer:
                return [Fail(ErrorCode.UNEXPECTED_EVENT,
                             f"{link.peer} cancelled item {item.qid}, which it did not request")]
            if item.ending is None and not item.finished:
                self._end_item(link, item, code, "cancelled by the requester", actions)
                if _can_submit(link):
                    self._schedule(link, now, actions)
            return actions
        self._withdraw(link, actions, item)
        self._drop_item(link, item, code, f"peer: {msg.detail}", actions, tell_peer=False)
        if _can_submit(link):
            self._schedule(link, now, actions)
        return actions

    @on_message(Abort)
    def _on_abort(self, src: str, msg: Abort, now: int) -> list:
        link, refused = self._link_from(src, msg)
        if refused:
            return refused
        actions: list = []
        if link.leader:
            # the follower's memory stayed full: end the items being attempted
            if msg.qid == -1:
                busy = {id(e[0]): e[0] for e in link.waiting}
                busy.update((id(it), it) for it in link.items.values() if it.out)
                for item in busy.values():
                    if not item.finished:
                        self._withdraw(link, actions, item)
                        self._drop_item(link, item, _link_code(msg.code),
                                        "peer's memory stayed full", actions)
                if _can_submit(link):
                    self._schedule(link, now, actions)
            return actions
        item = link.items.get(msg.qid)
        if item is None:
            return []
        # (a standing item may have made more pairs than this end was told of)
        item.limit = msg.done if item.standing else min(item.limit, msg.done)
        item.abort_code = _link_code(msg.code)
        if item.done >= item.limit:
            self._drop_item(link, item, item.abort_code, "aborted by the leader", actions,
                            tell_peer=False)
        # else: pairs it made are still on their way here; delivered, then it ends
        self._follow(link, actions)
        return actions

    @on_message(Expire)
    def _on_expire(self, src: str, msg: Expire, now: int) -> list:
        link, refused = self._link_from(src, msg)
        if refused:
            return refused
        entry = link.delivered.pop(msg.seq, None)
        if entry is None:
            gone = link.measured.pop(msg.seq, None) if msg.reason == "withdrawn" else None
            if gone is None:
                return []
            # a measured pair the leader withdrew (it never had its half): void
            return [Deliver(LinkExpire(gone[0], link.peer, "peer: withdrawn", gone[1]))]
        actions: list = [CancelTimer(("cutoff", link.peer, msg.seq))]
        self._expire(link, entry, f"peer: {msg.reason}", actions)
        return actions

    # ------------------------------------------------------------ the leader's scheduler
    @cython.locals(link=LinkState, item=_Item)
    def _pick(self, link: LinkState, now: int) -> _Item | None:
        """The item the next pair serves (None: none may have one now)."""
        best = None
        best_key = None
        served = link.served
        for item in link.items.values():
            spec = item.spec
            if item.finished or item.ending is not None:
                continue
            if item.deadline_ns and now >= item.deadline_ns:
                continue            # its deadline timer ends it
            if item.consecutive and item.sent:
                # an unfinished consecutive/atomic item runs on; its pairs may
                # run in parallel, no other item's between them
                return item if item.sent < item.limit else None
            if item.sent >= item.limit:
                continue             # every pair it still needs is being made
            w = self.weights.get(spec.purpose_id, 1.0)
            key = (spec.priority, served.get(item.fair_key, 0) / w,
                   spec.purpose_id, item.qid)
            if best_key is None or key < best_key:
                best, best_key = item, key
        return best

    @cython.locals(item=_Item, items=dict)
    def _schedule(self, link: LinkState, now: int, actions: list) -> None:
        """The leader's link can take more Entangles (``_can_submit``): start
        pairs for the items that want them, up to m outstanding."""
        items = link.items
        served = link.served
        while True:
            if len(items) == 1:
                # one item (a repeater chain's usual case): nothing to choose between
                for item in items.values():     # (the one; compiled: no view, no iterator)
                    break
                deadline = item.deadline_ns
                if item.finished or (deadline and now >= deadline) or item.sent >= item.limit \
                        or item.ending is not None:
                    return
            else:
                item = self._pick(link, now)
                if item is None:
                    return
            k = item.fair_key
            served[k] = served.get(k, 0) + 1      # fairness counts pairs scheduled
            self._entangle(link, item, actions)
            if link.out >= link.m:
                return

    def _entangle(self, link: LinkState, item: _Item, actions: list) -> None:
        """Leader: submit the Entangle for ``item``'s next pair. Its key
        ``("egp", qid, pair index, seq)`` names the pair at both ends."""
        if link.free_seqs:
            seq = heappop(link.free_seqs)
        else:
            seq = link.seq
            link.seq = seq + 1
        index = item.sent
        item.sent = index + 1
        self._resubmit(link, item, ("egp", item.qid, index, seq), actions)

    def _resubmit(self, link: LinkState, item: _Item, key: tuple, actions: list) -> None:
        """Leader: submit ``key``'s Entangle (the first time, or again after a
        full memory or the follower's cancel: the same pair, the same number)."""
        spec = item.spec
        actions.append(self.start_op(Entangle(link.peer, key, spec.deadline_ns or _NO_DEADLINE,
                                              spec.param, 0), (link, item, key)))
        item.out += 1
        link.out += 1
        try:
            link.phase = _ON_SUBMIT[link.phase]
        except KeyError:
            TRANSITIONS.next(link.phase, "submit")      # raises the defined error

    @cython.locals(link=LinkState, item=_Item)
    def _unused(self, link: LinkState, item: _Item, key: tuple, withdrawn: bool,
                reuse: bool = True) -> None:
        """Leader: ``key``'s Entangle will not be submitted again: its pair
        number is free again if ``reuse`` (it made no pair) and, if
        ``withdrawn``, the pair does not count as scheduled (as if never picked)."""
        if reuse:
            heappush(link.free_seqs, key[3])
        if withdrawn:
            k = item.fair_key
            served = link.served
            served[k] -= 1
            if not served[k]:
                del served[k]

    # ------------------------------------------------------------ the follower
    @cython.locals(it=_Item)
    def _follow(self, link: LinkState, actions: list) -> None:
        """Follower: keep Entangles that follow the leader's outstanding, as
        many as the leader may have (up to m, at most the pairs of the items
        this end knows of still to come; m while heralds came for an item
        whose QueueAdd is on its way); none once it knows of no such pair."""
        phase = link.phase
        if link.m == 1:                    # (one process: the usual case, kept short)
            if link.orphans or _pairs_to_come(link):
                if phase is _IDLE:
                    actions.append(self.start_op(link.follow_op, link.follow_ctx))
                    link.out = 1
                    link.phase = _ATTEMPTING          # (IDLE, submit)
            elif phase is not _IDLE and phase is not _DOWN:
                self._withdraw(link, actions)
            return
        m = link.m
        if link.orphans:
            wanted = m
        else:
            # (once per pair: a loop, not a generator, and no more than m counted)
            wanted = 0
            for it in link.items.values():
                left = it.limit - it.done
                if left > 0:
                    wanted += left
                    if wanted >= m:
                        wanted = m
                        break
        if wanted:
            if phase is _BACKOFF or phase is _DOWN:
                return                        # the retry timer follows again
            out = link.out
            if out < wanted:
                ctx = link.follow_ctx
                op = link.follow_op
                # (``self.start_op(...)`` each time, not the method bound once:
                # compiled, that is a C call; Cython 3.3 turns a bound cpdef
                # method into a wrapper that calls it without its override
                # flag, an argument the C compiler warns is missing)
                while out < wanted:
                    actions.append(self.start_op(op, ctx))
                    out += 1
                link.out = out
                link.phase = _ON_SUBMIT[phase]      # (IDLE or ATTEMPTING: both allowed)
        elif phase is not _IDLE and phase is not _DOWN:
            self._withdraw(link, actions)

    def _withdraw(self, link: LinkState, actions: list, item: _Item | None = None,
                  outstanding: bool = True, tell: bool = True) -> None:
        """Take back the outstanding Entangles (unless not ``outstanding``) and
        the pending retries of the link (``item``: only that item's; leader).
        A keyed Entangle out may have made a pair whose herald reached the
        follower already (the station then frees only this end's half): its
        number is not reused and, if ``tell``, ``Expire(seq)`` tells the
        follower to expire the pair if it has it."""
        peer = link.peer
        if link.waiting:
            keep = []
            for entry in link.waiting:
                if item is None or entry[0] is item:
                    self._unused(link, entry[0], entry[1], True)
                else:
                    keep.append(entry)
            link.waiting = keep
        taken = 0
        if link.out and outstanding:
            ops = self._ops
            for op_id in [i for i, ctx in ops.items() if type(ctx) is tuple
                          and ctx[0] is link and (item is None or ctx[1] is item)]:
                _, it, key = ops.pop(op_id)         # its "cancelled" answer is then ignored
                taken += 1
                if key is not None:
                    it.out -= 1
                    self._unused(link, it, key, True, reuse=False)
                    if tell:
                        actions.append(SendMessage(peer, Expire(key[3], "withdrawn")))
                actions.append(QuantumOp(None, CancelEntangle(peer, key)))
            link.out -= taken
        phase = link.phase
        if phase is _BACKOFF:
            if not link.out and not link.waiting:
                # nothing left to retry: the wait ends (with others out it runs
                # on, and its retry finds them answered or still out)
                actions.append(CancelTimer(("retry", peer)))
                link.phase = TRANSITIONS.next(phase, "withdraw")
            else:
                link.phase = TRANSITIONS.next(phase, "withdraw some")
        elif phase is _ATTEMPTING and taken:
            link.phase = TRANSITIONS.next(phase, "withdraw" if not link.out else "withdraw some")

    # ------------------------------------------------------------ timers
    @on(TimerFired)
    def _on_timer(self, ev: TimerFired, now: int) -> list:
        kind, peer, *rest = ev.key
        link = self.links.get(peer)
        if link is None:
            return []
        actions: list = []
        if kind == "deadline":
            item = link.items.get(rest[0])
            if item is None or item.out:
                return actions       # its Entangles' own deadlines answer for it
            self._end_item(link, item, ErrorCode.LINK_TIMEOUT, "max_time ran out", actions)
            if _can_submit(link):
                self._schedule(link, now, actions)
        elif kind == "retry":
            if link.phase is not _BACKOFF:
                return actions
            link.phase = TRANSITIONS.next(_BACKOFF, "retry" if not link.out
                                          else "retry, more out")
            if link.leader:
                waiting, link.waiting = link.waiting, []
                for item, key in waiting:
                    if item.finished or item.ending is not None or link.out >= link.m:
                        self._unused(link, item, key, True)
                    else:
                        self._resubmit(link, item, key, actions)
                if link.out < link.m:
                    self._schedule(link, now, actions)
            else:
                self._follow(link, actions)
        elif kind == "cutoff":
            entry = link.delivered.pop(rest[0], None)
            if entry is not None:
                actions.append(SendMessage(link.peer, Expire(rest[0], "cutoff")))
                self._expire(link, entry, "memory cut-off", actions)
        return actions

    # ------------------------------------------------------------ operation results
    @on(OperationDone)
    @cython.locals(link=LinkState, item=_Item)
    def _on_done(self, ev: OperationDone, now: int) -> list:
        ctx = self.take_op(ev.op_id)
        if ctx is None:
            return None
        if type(ctx) is tuple:           # an Entangle: its herald
            link, item, key = ctx
            link.out = out = link.out - 1
            try:
                link.phase = (_ON_HERALD_MORE if out else _ON_HERALD)[link.phase]
            except KeyError:
                TRANSITIONS.next(link.phase, "herald")  # raises the defined error
            h = ev.outcome
            if item is not None:
                item.out -= 1
            if h is not None and h.ok:
                return self._herald_ok(link, item, key, h, now)
            return self._herald_failed(link, item, key, h, now)
        m: _Measuring = ctx
        outcome = ev.outcome
        if not isinstance(outcome, int):
            return [Fail(ErrorCode.LINK_OUT_OF_MEMORY, f"measurement failed: {outcome}")]
        item = m.item
        item.delivered = ndel = item.delivered + 1
        spec = item.spec
        link = self.links[m.peer]
        measured = link.measured       # (for an Expire of a pair the leader withdrew)
        measured[m.ent_id.seq] = (m.ent_id, spec.purpose_id)
        if len(measured) > link.capacity:
            del measured[next(iter(measured))]
        return [Deliver(LinkOk(spec.create_id, m.ent_id, m.peer, m.bell_index, m.goodness,
                               m.created_ns, spec.purpose_id, None, outcome, m.basis, m.index,
                               ndel == spec.number and not item.standing))]

    def _herald_ok(self, link: LinkState, item: _Item | None, key: tuple | None, h: Any,
                   now: int) -> list:
        link.retries = 0
        actions: list = []
        if item is not None:                     # the leader: its key names the pair
            self._pair_made(link, item, key[3], key[2], h, now, actions)
            if item.ending is not None or link.phase is not _IDLE or link.m != 1:
                # several processes, a retry waiting or the item ending
                if item.ending is not None and not item.out:
                    self._drop_item(link, item, item.ending[0], item.ending[1], actions)
                if link.phase is not _BACKOFF:   # (else the retry timer submits again)
                    self._schedule(link, now, actions)
                return actions
            if not item.finished and (item.consecutive or len(link.items) == 1) \
                    and item.sent < item.limit \
                    and (not item.deadline_ns or now < item.deadline_ns):
                # fast path (one process): the only (or a consecutive) item continues
                k = item.fair_key
                served = link.served
                served[k] = served.get(k, 0) + 1
                self._entangle(link, item, actions)
            else:
                self._schedule(link, now, actions)
            return actions
        key = h.key                              # the follower reads the leader's key
        qid = key[1] if isinstance(key, tuple) and len(key) == 4 else None
        item = link.items.get(qid)
        if item is None:
            # the leader's QueueAdd for it is still on its way: the pair waits
            link.orphans.setdefault(qid, []).append((h, now))
        elif not _index_ok(item, key[2]):
            actions.append(Fail(ErrorCode.UNEXPECTED_EVENT,
                                f"herald for pair {key[2]} of item {qid} of "
                                f"{item.spec.number} pairs"))
            actions.append(QuantumOp(None, Discard(h.qubit)))
        else:
            self._pair_made(link, item, key[3], key[2], h, now, actions)
        self._follow(link, actions)
        return actions

    def _pair_made(self, link: LinkState, item: _Item, seq: int, index: int, h: Any, now: int,
                   actions: list) -> None:
        """Pair ``seq`` of the link, ``item``'s pair ``index``: deliver it (K) or measure it (M)."""
        spec = item.spec
        peer = link.peer
        item.done = done = item.done + 1
        if done >= item.limit and (not item.standing or item.abort_code is not None):
            # (a standing item stays open at its count: its requester may add
            # more; at the follower it ends after the pairs its Abort counts)
            item.finished = True
            del link.items[item.qid]
            if link.leader and spec.deadline_ns:
                actions.append(CancelTimer(("deadline", peer, item.qid)))
        origin = item.origin
        ent_id = EntanglementId(origin, self.node if origin == peer else peer, seq)
        wait = now - h.emitted_ns
        param = item.param
        bell = h.bell_index
        last = link.last_goodness[bell]
        if last[1] == wait and last[0] == param:
            goodness = last[2]
        else:
            goodness = self._fidelity_after(link, param, wait, bell)
            link.last_goodness[bell] = (param, wait, goodness)
        if item.keep:
            item.delivered = ndel = item.delivered + 1
            qubit = h.qubit
            purpose_id = item.purpose_id
            actions.append(Deliver(LinkOk(item.create_id, ent_id, peer, bell,
                                          goodness, now, purpose_id, qubit, None, None,
                                          index, ndel == item.number and not item.standing)))
            delivered = link.delivered
            delivered[seq] = (qubit, ent_id, purpose_id)
            if len(delivered) > link.capacity:
                del delivered[next(iter(delivered))]
            if self.cutoff_ns is not None:
                actions.append(StartTimer(("cutoff", peer, seq), self.cutoff_ns))
        else:
            basis = spec.measure_basis
            if basis == "random":
                basis = "X" if self.rng.random() < 0.5 else "Z"
            actions.append(self.start_op(Measure(h.qubit, basis),
                                         _Measuring(link.peer, item, ent_id, bell,
                                                    goodness, now, basis, index)))
        if item.finished and item.abort_code is not None and item.local \
                and not item.cancelled:
            # (follower) the last pair the leader made before aborting it
            actions.append(Deliver(LinkErr(spec.create_id, peer, item.abort_code,
                                           f"aborted by the leader ({done}/{spec.number} pairs)",
                                           spec.purpose_id)))

    def _herald_failed(self, link: LinkState, item: _Item | None, key: tuple | None, h: Any,
                       now: int) -> list:
        reason = getattr(h, "reason", "no outcome")
        actions: list = []
        if reason in _HERALD_DOWN:
            return actions          # LinkDown / PeerDown follows and settles the link
        leader = item is not None
        if reason == "memory full":
            link.retries += 1
            if link.retries > self.max_memory_retries:
                link.retries = 0
                if leader:
                    self._unused(link, item, key, False)
                    self._end_item(link, item, ErrorCode.LINK_OUT_OF_MEMORY,
                                   "memory stayed full", actions)
                    if _can_submit(link):
                        self._schedule(link, now, actions)
                    return actions
                # the follower cannot tell which item to end: the leader ends those it attempts
                actions.append(SendMessage(link.peer, Abort(-1, int(ErrorCode.LINK_OUT_OF_MEMORY),
                                                            0)))
            if leader:
                if item.finished or item.ending is not None:
                    self._unused(link, item, key, False)
                    self._settle(link, item, now, actions)
                    return actions
                link.waiting.append((item, key))
            if link.phase is not _BACKOFF:
                first = max(1_000, int(link.model.cycle_ns(item.spec.param if leader else 0.0)))
                backoff = max(first, min(first << min(max(link.retries, 1) - 1, 40),
                                         self.memory_backoff_max_ns))
                actions.append(StartTimer(("retry", link.peer), backoff))
            link.phase = TRANSITIONS.next(link.phase, "memory full")
            return actions
        if not leader:
            self._follow(link, actions)      # the follower has no deadline: follow again
            return actions
        if reason == "cancelled" and not item.finished and item.ending is None:
            # the follower withdrew (it knew of no item then): ask again
            if link.phase is _BACKOFF:
                link.waiting.append((item, key))
            else:
                self._resubmit(link, item, key, actions)
            return actions
        self._unused(link, item, key, False)
        if reason != "cancelled" and not item.finished:
            code = ErrorCode.LINK_TIMEOUT if reason in ("deadline", "peer absent") \
                else ErrorCode.LINK_REJECTED
            self._end_item(link, item, code, f"no herald before the deadline ({reason})",
                           actions)
        self._settle(link, item, now, actions)
        return actions

    @cython.locals(link=LinkState, item=_Item)
    def _settle(self, link: LinkState, item: _Item, now: int, actions: list) -> None:
        """Leader, after an Entangle of ``item`` answered without a pair: end
        the item if it was ending and this was its last, then fill the link."""
        if item.ending is not None and not item.out and not item.finished:
            self._drop_item(link, item, item.ending[0], item.ending[1], actions)
        if _can_submit(link):
            self._schedule(link, now, actions)

    def _end_item(self, link: LinkState, item: _Item, code: ErrorCode, detail: str,
                  actions: list) -> None:
        """Leader: ``item`` ends (deadline, full memory): its retries are
        dropped; it ends now if none of its Entangles is out, else when the
        last answers (a pair made meanwhile still counts: the follower hears
        of it in the Abort's ``done``)."""
        if any(e[0] is item for e in link.waiting):
            # its retries only: an Entangle out may have made a pair whose
            # herald the follower has heard already
            self._withdraw(link, actions, item, outstanding=False)
        if item.out:
            item.ending = (code, detail)
        else:
            self._drop_item(link, item, code, detail, actions)

    def _drop_item(self, link: LinkState, item: _Item, code: ErrorCode, detail: str,
                   actions: list, tell_peer: bool = True) -> None:
        """Remove ``item`` from the queue; the requesting end gets LinkErr (the
        leader tells the follower, unless the follower refused it)."""
        link.items.pop(item.qid, None)
        item.ending = None
        if item.finished:
            return
        item.finished = True
        if link.leader:
            if item.deadline_ns:
                actions.append(CancelTimer(("deadline", link.peer, item.qid)))
            if tell_peer:
                actions.append(SendMessage(link.peer, Abort(item.qid, int(code), item.done)))
        if item.local and not item.cancelled:
            actions.append(Deliver(LinkErr(item.spec.create_id, link.peer, code,
                                           f"{detail} ({item.done}/{item.spec.number} pairs)",
                                           item.spec.purpose_id)))

    def _expire(self, link: LinkState, entry: tuple, reason: str, actions: list) -> None:
        qubit, ent_id, purpose = entry
        actions.append(QuantumOp(None, Discard(qubit)))   # no answer needed
        actions.append(Deliver(LinkExpire(ent_id, link.peer, reason, purpose)))

    # ------------------------------------------------------------ cancel
    @on(CancelCreate)
    def _on_cancel(self, ev: CancelCreate, now: int) -> list:
        """The requester withdraws request ``ev.create_id`` (``specs/link.md``
        §3, "Cancelling"): no more pairs are started for it, the pairs being
        made still come up at both ends, and it ends without a LinkErr."""
        link = self.links.get(ev.remote)
        if link is None or link.phase is _DOWN:
            return []          # (down: the request has failed already)
        cid = ev.create_id
        if not link.leader and cid in link.pending:
            # no QueueAdd yet: the leader's, when it comes, is answered then
            del link.pending[cid]
            link.topups.pop(cid, None)
            link.cancelled.add(cid)
            return []
        item = self._own_item(link, cid)
        if item is None or item.cancelled or item.finished:
            return []          # unknown, finished or cancelled already
        item.cancelled = True
        if not link.leader:
            # the leader ends it and answers with Abort(qid, done); the pairs
            # it made meanwhile still come here: the item waits for them
            return [self._cancel_message(link, item)]
        actions: list = []
        if item.ending is None:
            self._end_item(link, item, _CANCELLED, "cancelled", actions)
            if _can_submit(link):
                self._schedule(link, now, actions)
        return actions

    # ------------------------------------------------------------ standing requests
    @on(CreateTopUp)
    @cython.locals(link=LinkState, item=_Item)
    def _on_top_up(self, ev: CreateTopUp, now: int) -> list:
        """The requester's standing request ``ev.create_id`` may make
        ``ev.number`` pairs more (``specs/link.md`` §4, "Standing requests").
        Either end tells the other (``QueueTopUp``; a follower whose
        ``QueueAdd`` has not come yet, when it comes); at the leader the link
        serves it at once."""
        link = self.links.get(ev.remote)
        number = ev.number
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            return [Fail(ErrorCode.LINK_UNSUPPORTED,
                         f"top-up of create {ev.create_id}: number must be 1..65535, "
                         f"got {number!r}")]
        if link is None or link.phase is _DOWN:
            return []          # (down: the request has failed already)
        cid = ev.create_id
        if not link.leader and cid in link.pending:
            link.topups[cid] = link.topups.get(cid, 0) + number
            return []
        item = self._own_item(link, cid)
        if item is None or not item.standing or item.cancelled or item.finished \
                or item.ending is not None:
            return []          # unknown, not standing, ended or ending: nothing to add to
        actions: list = [SendMessage(link.peer, QueueTopUp(item.qid, number))]
        self._allow_more(link, item, number, now, actions)
        return actions

    @on_message(QueueTopUp)
    @cython.locals(link=LinkState, item=_Item)
    def _on_queue_top_up(self, src: str, msg: QueueTopUp, now: int) -> list:
        """The other end's standing item ``msg.qid`` may have ``msg.number``
        pairs more: at the leader the follower's own request (served at
        once), at the follower the leader's (it keeps more Entangles out).
        One for an item that has ended is late: ignored."""
        link, refused = self._link_from(src, msg)
        if refused:
            return refused
        item = link.items.get(msg.qid)
        if item is None or item.finished or item.ending is not None or item.cancelled:
            return []
        if not item.standing or item.origin != link.peer:
            return [Fail(ErrorCode.UNEXPECTED_EVENT,
                         f"QueueTopUp for item {msg.qid} from {link.peer}, which did not "
                         "request it as a standing item")]
        actions: list = []
        self._allow_more(link, item, msg.number, now, actions)
        return actions

    def _allow_more(self, link: LinkState, item: _Item, number: int, now: int,
                    actions: list) -> None:
        """Standing ``item`` may have ``number`` pairs more: the leader starts
        them as processes are free, the follower keeps Entangles out for them."""
        item.limit += number
        if link.leader:
            if _can_submit(link):
                self._schedule(link, now, actions)
        else:
            self._follow(link, actions)

    @staticmethod
    @cython.locals(link=LinkState, item=_Item)
    def _own_item(link: LinkState, create_id: int) -> _Item | None:
        """This end's queued item for its request ``create_id``, if any."""
        for item in link.items.values():
            if item.local and item.spec.create_id == create_id:
                return item
        return None

    @staticmethod
    def _cancel_message(link: LinkState, item: _Item) -> SendMessage:
        """Follower: ask the leader to end ``item``, whose requester cancelled it."""
        return SendMessage(link.peer, QueueReject(item.qid, item.spec.create_id, int(_CANCELLED),
                                                  "cancelled by the requester"))

    # ------------------------------------------------------------ release, the link's state
    @on(Release)
    @cython.locals(link=LinkState)
    def _on_release(self, ev: Release, now: int) -> list:
        link = self.links.get(ev.remote)
        if link is None or link.delivered.pop(ev.ent_id.seq, None) is None:
            return []
        if self.cutoff_ns is not None:
            return [CancelTimer(("cutoff", link.peer, ev.ent_id.seq))]
        return []

    @on(Started)
    def _on_started(self, ev: Started, now: int) -> list:
        return []

    @on(LinkDown)
    def _on_link_down(self, ev: LinkDown, now: int) -> list:
        link = self.links.get(ev.peer)
        if link is None:
            return []
        link.link_down = True
        return self._go_down(link, "link down")

    @on(PeerDown)
    def _on_peer_down(self, ev: PeerDown, now: int) -> list:
        if ev.peer == self.node:
            # this node restarted in place: its qubits and timers are gone
            for link in self.links.values():
                link.link_down = link.session_down = False
                link.reset("restart")
            self._ops.clear()
            return []
        link = self.links.get(ev.peer)
        if link is None:
            return []
        link.session_down = True
        return self._go_down(link, "peer reset")

    @on(LinkUp)
    def _on_link_up(self, ev: LinkUp, now: int) -> list:
        link = self.links.get(ev.peer)
        if link is not None:
            link.link_down = False
            _maybe_back(link)
        return []

    @on(PeerUp)
    def _on_peer_up(self, ev: PeerUp, now: int) -> list:
        link = self.links.get(ev.peer)
        if link is not None:
            link.session_down = False
            _maybe_back(link)
        return []

    def _go_down(self, link: LinkState, reason: str) -> list:
        """The link or the session with its peer is down: end everything on it."""
        if link.phase is _DOWN:
            return []
        actions: list = []
        if link.out or link.phase is _BACKOFF:
            self._withdraw(link, actions, tell=False)
        for seq, entry in list(link.delivered.items()):
            if self.cutoff_ns is not None:
                actions.append(CancelTimer(("cutoff", link.peer, seq)))
            self._expire(link, entry, reason, actions)
        unanswered: dict[int, _Item] = {}
        for op_id in [i for i, ctx in self._ops.items()
                      if type(ctx) is _Measuring and ctx.peer == link.peer]:
            item = self.take_op(op_id).item   # measurements in flight: their pairs are gone too
            if item.local and item.done >= item.spec.number and not item.cancelled:
                # (no LinkErr sent for it)
                unanswered[id(item)] = item
        for item in list(link.items.values()):
            self._drop_item(link, item, ErrorCode.LINK_DOWN, reason, actions, tell_peer=False)
        for cid, req in link.pending.items():
            actions.append(self._err(req, cid, ErrorCode.LINK_DOWN, reason))
        for heralds in link.orphans.values():
            for herald, _t in heralds:
                actions.append(QuantumOp(None, Discard(herald.qubit)))
        for item in unanswered.values():
            # all its pairs were heralded, some not yet measured: its request fails
            spec = item.spec
            actions.append(Deliver(LinkErr(spec.create_id, link.peer, ErrorCode.LINK_DOWN,
                                           f"{reason} ({item.delivered}/{spec.number} pairs "
                                           "measured)", spec.purpose_id)))
        link.reset()
        return actions


class _Measuring:
    """A type-M pair being measured: what its OK will say."""

    __slots__ = ("peer", "item", "ent_id", "bell_index", "goodness", "created_ns", "basis",
                 "index")

    def __init__(self, peer: str, item: _Item, ent_id: EntanglementId, bell_index: int,
                 goodness: float, created_ns: int, basis: str, index: int) -> None:
        self.peer = peer
        self.item = item
        self.ent_id = ent_id
        self.bell_index = bell_index
        self.goodness = goodness
        self.created_ns = created_ns
        self.basis = basis
        self.index = index


def _invalid(req: CreateRequest, cid: int) -> str:
    """Why ``req`` is malformed, or "" if it is well formed."""
    if not isinstance(req.number, int) or not 1 <= req.number <= 65535:
        return f"number must be 1..65535, got {req.number!r}"
    if not 0.0 <= req.min_fidelity <= 1.0:
        return f"min_fidelity must be in [0, 1], got {req.min_fidelity!r}"
    if not isinstance(req.max_time_ns, int) or req.max_time_ns < 0:
        return f"max_time_ns must be an int >= 0, got {req.max_time_ns!r}"
    if not 0 <= req.purpose_id <= 65535:
        return f"purpose_id must be 0..65535, got {req.purpose_id!r}"
    if not 0 <= req.priority <= 255:
        return f"priority must be 0..255, got {req.priority!r}"
    if req.measure_basis not in BASES:
        return f"measure_basis must be one of {BASES}, got {req.measure_basis!r}"
    if not 0 <= cid <= _INT32:
        return f"create_id must be 0..{_INT32}, got {cid!r}"
    try:
        known = req.type in _REQUEST_TYPES   # as RequestType(req.type), without the enum call
    except TypeError:                        # unhashable
        known = False
    if not known:
        return f"unknown request type {req.type!r}"
    if req.standing and (req.max_time_ns or req.atomic or req.consecutive):
        return "a standing request has no max_time_ns and is neither atomic nor consecutive"
    return ""


def _bad_standing(spec: QueueSpec) -> bool:
    """A standing queue item with a deadline or pairs in a row (refused)."""
    return spec.standing and (spec.deadline_ns != 0 or spec.consecutive)


def _index_ok(item: _Item, index: int) -> bool:
    """``index`` may name a pair of ``item`` (a standing item's have no upper bound)."""
    return 0 <= index and (index < item.spec.number or item.standing)


_REQUEST_TYPES = frozenset(int(t) for t in RequestType)
_REQUEST_TYPE = {int(t): t for t in RequestType}      # RequestType(x) without the enum call


@cython.locals(link=LinkState, item=_Item)
def _pairs_to_come(link: LinkState) -> bool:
    """Follower: some item it knows of may still get a pair (an open standing
    item only while its top-ups allow more than it got)."""
    for item in link.items.values():
        if item.limit > item.done:
            return True
    return False


def _can_submit(link: LinkState) -> bool:
    """The link may take another Entangle now: not down, no retry waiting,
    fewer than m out."""
    phase = link.phase
    return phase is _IDLE or (phase is _ATTEMPTING and link.out < link.m)


@cython.locals(link=LinkState)
def _maybe_back(link: LinkState) -> None:
    """The link and the session with its peer both up again: the link starts
    afresh (both ends from qid 0, seq 0)."""
    if not link.link_down and not link.session_down and link.phase is _DOWN:
        link.reset()


def _link_code(code: int) -> ErrorCode:
    return error_code(code, ErrorCode.LINK_REJECTED)
