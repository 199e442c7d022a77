"""The entanglement generation protocol (EGP): the link layer's one protocol, ``link.egp``.

After Dahlberg et al., "A link layer protocol for quantum networks",
SIGCOMM 2019. One :class:`EGP` runs on each node and serves every heralded
link of that node. ``specs/link.md`` is the normative description; in short:

* **Service.** A :class:`~qstack.link.service.CreateRequest` submitted from
  above (the event itself) is checked against the link's physical model and
  refused with ``LINK_UNSUPPORTED`` (fidelity out of reach), ``LINK_NO_TIME``
  (the *expected* time for the pairs, from the model's success probability,
  cycle and herald delays, exceeds ``max_time_ns``), ``LINK_UNKNOWN_PEER``,
  ``LINK_QUEUE_FULL`` or ``LINK_NO_RESOURCES``. Accepted pairs come up as
  :class:`~qstack.link.service.LinkOk` at **both** ends with the same
  entanglement id and Bell index; failures as
  :class:`~qstack.link.service.LinkErr` at the requesting end; lost pairs as
  :class:`~qstack.link.service.LinkExpire` at both ends.
* **Distributed queue.** Of the two ends, the node with the lexicographically
  smaller name is the queue *master*: it numbers queue items (``qid``) and
  sends :class:`~qstack.link.messages.QueueAdd` with a start time
  ``start_ns = now + 2 x classical delay + slack``. By then the slave has the
  item and the master knows whether the slave rejected it, so both ends see
  the same queue for every scheduling decision that looks at items with
  ``start_ns <= t_ref``.
* **Scheduler.** Both ends take the same decisions at the same *reference
  time* ``t_ref``: after a herald, ``emitted_ns + min(herald delays)`` (the
  same number at both ends, and not later than either end's herald); after a
  deadline, the deadline; when idle, the start time of the next item. The
  choice is: an unfinished consecutive/atomic item first; else the lowest
  priority value (strict classes); within a class the purpose with the
  fewest pairs scheduled per unit weight (weighted round robin, ties to the
  smaller purpose id); within a purpose the oldest item. Each pair is one
  ``Entangle`` op with key ``("egp", qid, pair_index)`` at both ends.
* **Parameter choice.** For a scheme with a knob (single-click alpha) the
  requesting end picks the largest alpha whose fidelity, after the T1/T2
  decay both qubits suffer while their heralds travel, is at least the
  requested minimum (largest alpha = highest rate); the alpha travels in the
  queue item so both ends use it.
* **Type M.** Each end measures its qubit right after the herald: in the
  requested basis, or for ``"random"`` in Z or X chosen independently at each
  end from the protocol's seeded generator (what BBM92-style QKD needs; the
  application sifts). Outcomes are raw: the Bell index in the OK says which
  correlation to expect.

Memory: a pair stays tracked by the EGP (for cut-off and peer-reset expiry)
until the layer above submits :class:`Release` or until more pairs of the link
were delivered than the node has memory slots (so the older ones must have
been consumed).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Mapping

from qstack.core.errors import ErrorCode
from qstack.core.protocol import (
    CancelTimer, Deliver, Fail, MessageReceived, OperationDone, PeerDown, Protocol, QuantumOp,
    SendMessage, Started, StartTimer, TimerFired, fast_constructor, on,
)
from qstack.link.messages import (
    BASES, Abort, Expire, QueueAdd, QueueReject, QueueRequest, QueueSpec,
)
from qstack.link.schemes import bell_fidelity, decayed_bell_fidelity
from qstack.link.service import (
    CreateRequest, EntanglementId, LinkErr, LinkExpire, LinkOk, Release, RequestType,
)
from qstack.physical.channels_kraus import t1t2_rates
from qstack.physical.ops import CancelEntangle, Discard, Entangle, Measure

__all__ = ["EGP", "Release", "LinkState"]

#: Deadline used for Entangle ops of requests without a time limit, ns.
_NO_DEADLINE = 1 << 62
_INT32 = 2**31 - 1

# op kinds in EGP._ops (other ops ask for no answer)
_ENT, _MEAS = 0, 1

# made once per pair: the same objects without the frozen-dataclass __init__ cost
_link_ok = fast_constructor(LinkOk)
_ent_id = fast_constructor(EntanglementId)
_entangle_op = fast_constructor(Entangle)
_KEEP = RequestType.KEEP
_deliver = fast_constructor(Deliver)
_queue_spec = fast_constructor(QueueSpec, checked=True)
_quantum_op = fast_constructor(QuantumOp)


class LinkState:
    """EGP state of one link (one neighbour). ``items`` is the shared queue in qid order."""

    __slots__ = ("peer", "model", "side", "master", "delay", "min_hd", "hd", "items",
                 "next_qid", "seq", "op_id", "cur", "served", "wake_ref", "delivered",
                 "pending", "retries", "fid_cache", "param_cache", "capacity", "last_goodness",
                 "bells")

    def __init__(self, peer: str, model: Any, side: int, master: bool, capacity: int) -> None:
        self.peer = peer
        self.model = model
        self.side = side
        self.master = master
        self.delay = int(getattr(model, "classical_delay_ns", 0))
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
        self.reset()

    def reset(self) -> None:
        self.items: dict[int, _Item] = {}
        self.next_qid = 0
        self.seq = 0                 # next pair sequence number (same at both ends)
        self.op_id: int | None = None  # outstanding Entangle op
        self.cur: _Item | None = None  # item of the outstanding Entangle
        self.served: dict[tuple[int, int], int] = {}
        self.wake_ref: int | None = None
        self.delivered: dict[int, tuple] = {}   # seq -> (qubit, ent_id, purpose)
        self.pending: dict[int, CreateRequest] = {}   # slave's requests awaiting QueueAdd
        self.retries = 0


class _Item:
    """One queue item (the same at both ends)."""

    __slots__ = ("qid", "origin", "start_ns", "spec", "done", "delivered", "finished", "key_base",
                 "local")

    def __init__(self, qid: int, origin: str, start_ns: int, spec: QueueSpec, local: bool) -> None:
        self.qid = qid
        self.origin = origin
        self.start_ns = start_ns
        self.spec = spec
        self.done = 0           # pairs heralded
        self.delivered = 0      # OKs delivered at this end
        self.finished = False
        self.local = local      # this end submitted the CREATE


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
            (default 1).
        sides: neighbour -> this node's side (0/1) in the link's model;
            default 0 when this node's name is the smaller.
        max_queue: queue items per link.
        schedule_slack_ns: added to the queue start time (ns).
        max_memory_retries: retries of an Entangle refused for a full memory
            before the item is aborted with ``LINK_OUT_OF_MEMORY``.
        memory_backoff_max_ns: the wait between such retries starts at one
            attempt cycle and doubles up to this (ns), so that a memory kept
            full by the layer above costs few events.
        seed: seeds the random measurement bases of type-M "random" requests.
        early_commit: an idle end submits its Entangle for an item's start
            time as soon as the item is its only one (``specs/link.md``,
            "Early commit"); False decides every item at its start time on a
            wake timer (the same pairs at the same times, two events more).
    """

    name = "link.egp"

    def __init__(self, node: str, peer_models: Mapping[str, Any], *, t1_ns: float = math.inf,
                 t2_ns: float = math.inf, num_qubits: int = 64, hardware: Any = None,
                 cutoff_ns: int | None = None, purpose_weights: Mapping[int, float] | None = None,
                 sides: Mapping[str, int] | None = None, max_queue: int = 256,
                 schedule_slack_ns: int = 1_000, max_memory_retries: int = 1000,
                 memory_backoff_max_ns: int = 1_000_000, seed: int = 0,
                 early_commit: bool = True) -> None:
        super().__init__(node)
        self.early_commit = early_commit
        if hardware is not None:
            t1_ns, t2_ns = hardware.t1_ns, hardware.t2_ns
            num_qubits = hardware.num_qubits
        self.t1_ns, self.t2_ns = float(t1_ns), float(t2_ns)
        # refuse T1 <= 0 or T2 > 2 T1 here, not at the first herald
        t1t2_rates(0.0, self.t1_ns, self.t2_ns)
        self.num_qubits = int(num_qubits)
        self.cutoff_ns = cutoff_ns
        self.weights = dict(purpose_weights or {})
        self.max_queue = max_queue
        self.slack = int(schedule_slack_ns)
        self.max_memory_retries = max_memory_retries
        self.memory_backoff_max_ns = int(memory_backoff_max_ns)
        self.rng = random.Random(f"{seed}:{node}")
        sides = dict(sides or {})
        self.links: dict[str, LinkState] = {}
        for peer, model in peer_models.items():
            side = sides.get(peer, 0 if node < peer else 1)
            self.links[peer] = LinkState(peer, model, side, node < peer, self.num_qubits)
        self._ops: dict[int, tuple] = {}
        self._next_op = 0
        self._next_create = 0
        self._msg_handlers = {
            QueueAdd: self._on_add, QueueReject: self._on_reject,
            QueueRequest: self._on_request, Abort: self._on_abort, Expire: self._on_expire,
        }

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

    def expected_time_ns(self, peer: str, param: float, number: int, origin_master: bool) -> float:
        """Expected time from CREATE to the last pair's herald, ns: the queue
        start offset plus, per pair, (1/p - 1) failed cycles and the longer
        herald delay (the next pair starts once both ends heard)."""
        link = self.links[peer]
        p = float(link.model.success_probability(param))
        if p <= 0:
            return math.inf
        per_pair = (1.0 / p - 1.0) * link.model.cycle_ns(param) + max(link.hd)
        offset = (2 if origin_master else 3) * link.delay + self.slack
        return offset + number * per_pair

    # ------------------------------------------------------------ helpers
    def _op(self, rec: tuple) -> int:
        self._next_op += 1
        self._ops[self._next_op] = rec
        return self._next_op

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
        if req.atomic and req.number > self.num_qubits:
            return [self._err(req, cid, ErrorCode.LINK_NO_RESOURCES,
                              f"atomic request of {req.number} pairs > {self.num_qubits} qubits")]
        param = self.choose_param(req.remote, req.min_fidelity)
        if param is None:
            best = self.best_fidelity(req.remote)
            return [self._err(req, cid, ErrorCode.LINK_UNSUPPORTED,
                              f"fidelity {req.min_fidelity} unreachable (best {best:.4f})")]
        if req.max_time_ns:
            t = self.expected_time_ns(req.remote, param, req.number, link.master)
            if t > req.max_time_ns:
                return [self._err(req, cid, ErrorCode.LINK_NO_TIME,
                                  f"expected {t:.0f} ns for {req.number} pairs > "
                                  f"max_time {req.max_time_ns} ns")]
        if len(link.items) + len(link.pending) >= self.max_queue:
            return [self._err(req, cid, ErrorCode.LINK_QUEUE_FULL,
                              f"{self.max_queue} items queued for {req.remote}")]
        # once per request (every link pair of a repeater chain); _invalid has
        # checked what QueueSpec.__post_init__ would
        spec = _queue_spec(cid, req.number, float(req.min_fidelity),
                         now + req.max_time_ns if req.max_time_ns else 0, req.purpose_id,
                         _REQUEST_TYPE[req.type], req.measure_basis, req.priority, req.atomic,
                         req.consecutive or req.atomic, float(param))
        if not link.master:
            link.pending[cid] = req
            return [SendMessage(link.peer, QueueRequest(spec))]
        return self._master_add(link, self.node, spec, now)

    def _master_add(self, link: LinkState, origin: str, spec: QueueSpec, now: int) -> list:
        qid = link.next_qid
        link.next_qid = (qid + 1) & _INT32
        start = now + 2 * link.delay + self.slack
        item = _Item(qid, origin, start, spec, origin == self.node)
        actions: list = [SendMessage(link.peer, QueueAdd(qid, origin, start, spec))]
        self._add_item(link, item, now, actions)
        return actions

    def _add_item(self, link: LinkState, item: _Item, now: int, actions: list) -> None:
        items = link.items
        items[item.qid] = item
        if item.spec.deadline_ns:
            actions.append(StartTimer(("deadline", link.peer, item.qid),
                                      max(0, item.spec.deadline_ns - now)))
        if link.op_id is None:
            if len(items) == 1 and item.start_ns > now and self.early_commit:
                # Idle, and the only item: the decision at its start time can
                # only pick it, so submit now for that time (no wake event).
                self._commit(link, item, actions)
            else:
                self._arm_wake(link, now - 1, now, actions)
            return
        cur = link.cur
        if cur is not None and cur.start_ns > now and item.start_ns <= cur.start_ns:
            # An item committed early has a competitor for the same start
            # time: decide at that time after all (both ends do the same).
            self._withdraw(link, actions)
            self._arm_wake(link, now - 1, now, actions)

    def _commit(self, link: LinkState, item: _Item, actions: list) -> None:
        """Submit ``item``'s next pair for its start time (decided early)."""
        self._serve(link, item, actions, item.start_ns)

    def _withdraw(self, link: LinkState, actions: list) -> None:
        """Take back an Entangle submitted early, before its attempts began."""
        item = link.cur
        spec = item.spec
        k = (spec.priority, spec.purpose_id)
        served = link.served
        served[k] -= 1
        if not served[k]:
            del served[k]       # as if never picked
        self._ops.pop(link.op_id, None)
        link.op_id = None
        link.cur = None
        actions.append(QuantumOp(None, CancelEntangle(link.peer, ("egp", item.qid, item.done))))

    # ------------------------------------------------------------ queue messages
    @on(MessageReceived)
    def _on_message(self, ev: MessageReceived, now: int) -> list:
        link = self.links.get(ev.src)
        if link is None:
            return [Fail(ErrorCode.LINK_UNKNOWN_PEER, f"{type(ev.msg).__name__} from {ev.src!r}, "
                                                      "which is not a neighbour")]
        handler = self._msg_handlers.get(type(ev.msg))
        if handler is None:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"link.egp got {type(ev.msg).__name__}")]
        return handler(link, ev.msg, now)

    def _on_request(self, link: LinkState, msg: QueueRequest, now: int) -> list:
        if not link.master:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"QueueRequest from master {link.peer}")]
        if len(link.items) >= self.max_queue:
            return [SendMessage(link.peer, QueueReject(-1, msg.spec.create_id,
                                                       int(ErrorCode.LINK_QUEUE_FULL),
                                                       "queue full"))]
        return self._master_add(link, link.peer, msg.spec, now)

    def _on_add(self, link: LinkState, msg: QueueAdd, now: int) -> list:
        if link.master:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"QueueAdd from slave {link.peer}")]
        spec = msg.spec
        local = msg.origin == self.node
        if local:
            if link.pending.pop(spec.create_id, None) is None:
                return [SendMessage(link.peer, QueueReject(msg.qid, spec.create_id,
                                                           int(ErrorCode.LINK_REJECTED),
                                                           "unknown request"))]
        elif msg.origin != link.peer:
            return [SendMessage(link.peer, QueueReject(msg.qid, spec.create_id,
                                                       int(ErrorCode.LINK_REJECTED),
                                                       "origin is neither end"))]
        elif len(link.items) >= self.max_queue:
            return [SendMessage(link.peer, QueueReject(msg.qid, spec.create_id,
                                                       int(ErrorCode.LINK_QUEUE_FULL),
                                                       "queue full"))]
        elif spec.atomic and spec.number > self.num_qubits:
            return [SendMessage(link.peer, QueueReject(msg.qid, spec.create_id,
                                                       int(ErrorCode.LINK_NO_RESOURCES),
                                                       "atomic request exceeds memory"))]
        if msg.qid in link.items:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"duplicate queue item {msg.qid}")]
        # accepted: no answer (only a refusal is sent, and it arrives before start_ns)
        actions: list = []
        self._add_item(link, _Item(msg.qid, msg.origin, msg.start_ns, spec, local), now, actions)
        return actions

    def _on_reject(self, link: LinkState, msg: QueueReject, now: int) -> list:
        code = _link_code(msg.code)
        if msg.qid < 0:   # the master refused our QueueRequest
            req = link.pending.pop(msg.create_id, None)
            if req is None:
                return []
            return [self._err(req, msg.create_id, code, f"peer: {msg.detail}")]
        item = link.items.pop(msg.qid, None)
        if item is None:
            return []
        actions: list = [CancelTimer(("deadline", link.peer, item.qid))]
        if link.cur is item:
            # committed early (we were idle); the slave never submits it
            self._withdraw(link, actions)
            self._schedule(link, now, now, actions)
        item.finished = True
        if item.local:
            actions.append(Deliver(LinkErr(item.spec.create_id, link.peer, code,
                                           f"peer: {msg.detail}", item.spec.purpose_id)))
        return actions

    def _on_abort(self, link: LinkState, msg: Abort, now: int) -> list:
        item = link.items.get(msg.qid)
        if item is None:
            return []
        actions: list = []
        self._drop_item(link, item, _link_code(msg.code), "aborted by peer", actions)
        if link.cur is item:
            # our Entangle for it is cancelled by the peer's CancelEntangle; forget it
            self._ops.pop(link.op_id, None)
            link.op_id = None
            link.cur = None
        if link.op_id is None:
            self._schedule(link, msg.at_ns, now, actions)
        return actions

    def _on_expire(self, link: LinkState, msg: Expire, now: int) -> list:
        entry = link.delivered.pop(msg.seq, None)
        if entry is None:
            return []
        actions: list = [CancelTimer(("cutoff", link.peer, msg.seq))]
        self._expire(link, entry, f"peer: {msg.reason}", actions)
        return actions

    # ------------------------------------------------------------ scheduler
    def _arm_wake(self, link: LinkState, t_ref: int, now: int, actions: list) -> None:
        """Idle link: wake at the earliest start time after ``t_ref`` among
        unfinished items (items already startable but past their deadline
        are left to their deadline timers)."""
        nxt = None
        for item in link.items.values():
            if not item.finished and item.start_ns > t_ref and (nxt is None or item.start_ns < nxt):
                nxt = item.start_ns
        if nxt is None or (link.wake_ref is not None and link.wake_ref <= nxt):
            return
        link.wake_ref = nxt
        actions.append(StartTimer(("wake", link.peer), max(0, nxt - now)))

    def _pick(self, link: LinkState, t_ref: int) -> _Item | None:
        best = None
        best_key = None
        served = link.served
        for item in link.items.values():
            spec = item.spec
            if item.finished or item.start_ns > t_ref:
                continue
            if spec.deadline_ns and t_ref >= spec.deadline_ns:
                continue
            if spec.consecutive and item.done:
                return item          # an unfinished consecutive/atomic item runs on
            w = self.weights.get(spec.purpose_id, 1.0)
            key = (spec.priority, served.get((spec.priority, spec.purpose_id), 0) / w,
                   spec.purpose_id, item.qid)
            if best_key is None or key < best_key:
                best, best_key = item, key
        return best

    def _schedule(self, link: LinkState, t_ref: int, now: int, actions: list) -> None:
        """The link is idle: start the next pair as both ends decide at ``t_ref``."""
        item = self._pick(link, t_ref)
        if item is None:
            link.wake_ref = None
            self._arm_wake(link, t_ref, now, actions)
            return
        self._serve(link, item, actions)

    def _serve(self, link: LinkState, item: _Item, actions: list, start_ns: int = 0) -> None:
        """``item`` was picked: count the pair for its purpose (fairness), submit it."""
        spec = item.spec
        k = (spec.priority, spec.purpose_id)
        served = link.served
        served[k] = served.get(k, 0) + 1
        self._entangle(link, item, actions, start_ns)

    def _entangle(self, link: LinkState, item: _Item, actions: list, start_ns: int = 0) -> None:
        spec = item.spec
        self._next_op = op_id = self._next_op + 1
        self._ops[op_id] = (_ENT, link, item)
        link.op_id = op_id
        link.cur = item
        actions.append(_quantum_op(op_id, _entangle_op(link.peer, ("egp", item.qid, item.done),
                                                       spec.deadline_ns or _NO_DEADLINE,
                                                       spec.param, start_ns)))

    # ------------------------------------------------------------ timers
    @on(TimerFired)
    def _on_timer(self, ev: TimerFired, now: int) -> list:
        kind, peer, *rest = ev.key
        link = self.links.get(peer)
        if link is None:
            return []
        actions: list = []
        if kind == "wake":
            t_ref = link.wake_ref
            link.wake_ref = None
            if link.op_id is None and t_ref is not None:
                self._schedule(link, t_ref, now, actions)
        elif kind == "deadline":
            item = link.items.get(rest[0])
            if item is not None and link.cur is not item:
                self._drop_item(link, item, ErrorCode.LINK_TIMEOUT,
                                "max_time ran out while queued", actions)
                if link.op_id is None and link.wake_ref is None:
                    self._arm_wake(link, now, now, actions)
        elif kind == "retry":
            item = link.cur
            if item is not None and link.op_id is None and not item.finished:
                self._entangle(link, item, actions)
        elif kind == "cutoff":
            entry = link.delivered.pop(rest[0], None)
            if entry is not None:
                actions.append(SendMessage(link.peer, Expire(rest[0], "cutoff")))
                self._expire(link, entry, "memory cut-off", actions)
        return actions

    # ------------------------------------------------------------ operation results
    @on(OperationDone)
    def _on_done(self, ev: OperationDone, now: int) -> list:
        rec = self._ops.pop(ev.op_id, None)
        if rec is None:
            return None
        kind = rec[0]
        if kind is _ENT:
            link = rec[1]
            if link.op_id != ev.op_id:
                return None
            link.op_id = None
            h = ev.outcome
            if h is not None and h.ok:
                return self._herald_ok(link, rec[2], h, now)
            return self._herald_failed(link, rec[2], h, now)
        if kind is _MEAS:
            _, link, item, seq, ent_id, bell, goodness, created, basis, index = rec
            outcome = ev.outcome
            if not isinstance(outcome, int):
                return [Fail(ErrorCode.LINK_OUT_OF_MEMORY, f"measurement failed: {outcome}")]
            spec = item.spec
            item.delivered += 1
            return [Deliver(_link_ok(spec.create_id, ent_id, link.peer, bell, goodness, created,
                                     spec.purpose_id, None, outcome, basis, index,
                                     item.delivered == spec.number))]
        return None

    def _herald_ok(self, link: LinkState, item: _Item, h: Any, now: int) -> list:
        # once per pair at each end: locals rather than repeated attribute reads
        link.retries = 0
        spec = item.spec
        peer = link.peer
        seq = link.seq
        link.seq = seq + 1
        index = item.done
        item.done = done = index + 1
        finished = done >= spec.number
        if finished:
            item.finished = True
            del link.items[item.qid]
        origin = item.origin
        ent_id = _ent_id(origin, self.node if origin == peer else peer, seq)
        wait = now - h.emitted_ns
        param = spec.param
        bell = h.bell_index
        last = link.last_goodness[bell]
        if last[1] == wait and last[0] == param:
            goodness = last[2]
        else:
            goodness = self._fidelity_after(link, param, wait, bell)
            link.last_goodness[bell] = (param, wait, goodness)
        deadline = spec.deadline_ns
        actions: list = []
        if finished and deadline:
            actions.append(CancelTimer(("deadline", peer, item.qid)))
        if spec.type is _KEEP:
            item.delivered = ndel = item.delivered + 1
            qubit = h.qubit
            actions.append(_deliver(_link_ok(spec.create_id, ent_id, peer, h.bell_index,
                                             goodness, now, spec.purpose_id, qubit, None, None,
                                             index, ndel == spec.number)))
            delivered = link.delivered
            delivered[seq] = (qubit, ent_id, spec.purpose_id)
            if len(delivered) > link.capacity:
                del delivered[next(iter(delivered))]
            if self.cutoff_ns is not None:
                actions.append(StartTimer(("cutoff", peer, seq), self.cutoff_ns))
        else:
            basis = spec.measure_basis
            if basis == "random":
                basis = "X" if self.rng.random() < 0.5 else "Z"
            self._next_op += 1
            self._ops[self._next_op] = (_MEAS, link, item, seq, ent_id, h.bell_index, goodness,
                                        now, basis, index)
            actions.append(QuantumOp(self._next_op, Measure(h.qubit, basis)))
        t_ref = h.emitted_ns + link.min_hd
        if not finished and link.cur is item and (spec.consecutive or len(link.items) == 1) \
                and item.start_ns <= t_ref and (not deadline or t_ref < deadline):
            # fast path: the only (or a consecutive) item continues
            self._serve(link, item, actions)
        else:
            link.cur = None
            self._schedule(link, t_ref, now, actions)
        return actions

    def _herald_failed(self, link: LinkState, item: _Item, h: Any, now: int) -> list:
        reason = getattr(h, "reason", "no outcome")
        actions: list = []
        if reason == "memory full":
            link.retries += 1
            if link.retries > self.max_memory_retries:
                link.retries = 0
                link.cur = None
                actions.append(QuantumOp(None, CancelEntangle(
                    link.peer, ("egp", item.qid, item.done))))
                actions.append(SendMessage(link.peer, Abort(item.qid,
                                                            int(ErrorCode.LINK_OUT_OF_MEMORY),
                                                            now)))
                self._drop_item(link, item, ErrorCode.LINK_OUT_OF_MEMORY,
                                "memory stayed full", actions)
                self._schedule(link, now, now, actions)
                return actions
            # keep the same key: the peer's Entangle waits for ours
            first = max(1_000, int(link.model.cycle_ns(item.spec.param)))
            backoff = max(first, min(first << min(link.retries - 1, 40),
                                     self.memory_backoff_max_ns))
            actions.append(StartTimer(("retry", link.peer), backoff))
            return actions
        if reason == "cancelled":
            link.cur = None
            return actions      # an Abort (ours or the peer's) decides what comes next
        link.cur = None
        deadline = item.spec.deadline_ns
        if not item.finished:
            self._drop_item(link, item, ErrorCode.LINK_TIMEOUT,
                            f"no herald before the deadline ({reason})", actions)
        t_ref = deadline if deadline else now
        self._schedule(link, t_ref, now, actions)
        return actions

    def _drop_item(self, link: LinkState, item: _Item, code: ErrorCode, detail: str,
                   actions: list) -> None:
        """Remove ``item`` from the queue; the requesting end gets LinkErr."""
        link.items.pop(item.qid, None)
        if item.finished:
            return
        item.finished = True
        if item.spec.deadline_ns:
            actions.append(CancelTimer(("deadline", link.peer, item.qid)))
        if item.local:
            actions.append(Deliver(LinkErr(item.spec.create_id, link.peer, code,
                                           f"{detail} ({item.done}/{item.spec.number} pairs)",
                                           item.spec.purpose_id)))

    def _expire(self, link: LinkState, entry: tuple, reason: str, actions: list) -> None:
        qubit, ent_id, purpose = entry
        actions.append(QuantumOp(None, Discard(qubit)))   # no answer needed
        actions.append(Deliver(LinkExpire(ent_id, link.peer, reason, purpose)))

    # ------------------------------------------------------------ release, peer down
    @on(Release)
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

    @on(PeerDown)
    def _on_peer_down(self, ev: PeerDown, now: int) -> list:
        if ev.peer == self.node:
            # this node restarted: its qubits and timers are gone; start afresh
            for link in self.links.values():
                link.reset()
            self._ops.clear()
            return []
        link = self.links.get(ev.peer)
        if link is None:
            return []
        actions: list = []
        if link.op_id is not None and link.cur is not None:
            self._ops.pop(link.op_id, None)
            actions.append(QuantumOp(None, CancelEntangle(
                link.peer, ("egp", link.cur.qid, link.cur.done))))
        for seq, entry in list(link.delivered.items()):
            if self.cutoff_ns is not None:
                actions.append(CancelTimer(("cutoff", link.peer, seq)))
            self._expire(link, entry, "peer reset", actions)
        for item in list(link.items.values()):
            self._drop_item(link, item, ErrorCode.LINK_REJECTED, "peer reset", actions)
        for cid, req in link.pending.items():
            actions.append(self._err(req, cid, ErrorCode.LINK_REJECTED, "peer reset"))
        if link.wake_ref is not None:
            actions.append(CancelTimer(("wake", link.peer)))
        link.reset()
        return actions


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
    return ""


_REQUEST_TYPES = frozenset(int(t) for t in RequestType)
_REQUEST_TYPE = {int(t): t for t in RequestType}      # RequestType(x) without the enum call


def _link_code(code: int) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.LINK_REJECTED
