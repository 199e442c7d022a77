"""The simulator's driver: nodes, their protocol stacks and the links between them.

Protocols (any layer) are sans-I/O objects; this module is where their actions
happen in simulated time:

* ``SendMessage`` reaches the protocol named by the message's ``PROTOCOL`` on
  the destination node after the classical delay (shortest path over the
  links' one-way delays); with ``check_wire`` every message goes through its
  msgpack encoding, so what the simulator carries is what the wire can carry.
* ``StartTimer`` / ``CancelTimer`` become kernel events.
* ``QuantumOp`` runs on the node's :class:`~qstack.physical.device.QuantumDevice`,
  or on the link's heralding entity for ``Entangle``; the answer comes back as
  ``OperationDone`` after the operation's duration (none for ``op_id=None``:
  a failure is then recorded like a ``Fail``).
* ``Deliver`` / ``Submit`` move events up and down the node's stack; what the
  top protocol delivers lands in the node's ``inbox`` and its listeners.
* ``Fail`` is recorded in :attr:`SimNetwork.errors` with the node and protocol.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import networkx as nx

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.messages import decode, encode
from qstack.core.protocol import (
    CancelTimer, Deliver, Fail, MessageReceived, OperationDone, PeerDown, Protocol, QuantumOp,
    SendMessage, Started, StartTimer, Submit, TimerFired, fast_constructor,
)
from qstack.physical.device import NodeHardware, QuantumDevice
from qstack.physical.device import _HANDLERS as _DEVICE_HANDLERS
from qstack.physical.ops import CancelEntangle, Entangle, Herald
from qstack.physical.pair_model import HeraldedPairModel
from qstack.sim.runner import Simulator

__all__ = ["SimNetwork", "SimNode", "SimLink", "FailRecord"]

#: Operation types the node's device carries out itself (no link involved).
_DEVICE_OPS = frozenset(_DEVICE_HANDLERS)
_NO_LINKS: dict = {}
_NONE_PAIR = (None, None)
#: Geometric attempt counts drawn per numpy call (per link and success probability).
_ATTEMPT_BLOCK = 1024
#: Entangle deadlines at or beyond this (ns, ~146 simulated years) mean "none".
_NEVER_NS = 1 << 62

# Built once per pair (or per message) on the hot path: skip the frozen
# dataclass __init__'s object.__setattr__ calls (same objects).
_herald = fast_constructor(Herald)
_done = fast_constructor(OperationDone)
_received = fast_constructor(MessageReceived)
_fired = fast_constructor(TimerFired)

#: Speed of light in fibre (group index 1.468 at 1550 nm), km per ns.
_FIBRE_KM_PER_NS = 299_792.458e-9 / 1.468


@dataclass(frozen=True, slots=True)
class FailRecord:
    """A ``Fail`` action as the driver saw it."""

    time_ns: int
    node: str
    protocol: str
    code: ErrorCode
    detail: str


class SimNode:
    """A node: its device and its protocol stack (bottom first)."""

    def __init__(self, name: str, device: QuantumDevice) -> None:
        self.name = name
        self.device = device
        self.protocols: dict[str, Protocol] = {}
        self.stack: list[str] = []
        self.inbox: list[tuple[int, Any]] = []
        self.listeners: list[Callable[[Any], None]] = []
        self.timers: dict[tuple[str, Any], Any] = {}
        self.up = True
        # (protocol name, event type) -> the protocol's handler (Protocol.handler_for)
        self.handlers: dict[tuple[str, type], Callable] = {}
        # protocol name -> the one above / below it (None at the top / bottom)
        self.above: dict[str, str | None] = {}
        self.below: dict[str, str | None] = {}

    def protocol(self, name: str) -> Protocol:
        return self.protocols[name]


@dataclass
class SimLink:
    """A link between neighbours ``a`` (side 0) and ``b`` (side 1)."""

    a: str
    b: str
    model: HeraldedPairModel | None
    classical_delay_ns: int
    up: bool = True
    pending: dict = field(default_factory=dict)   # Entangle key -> _Attempt
    pairs_heralded: int = 0
    attempts: int = 0
    #: driver-internal cache: (model, rng, {param: (p, cycle, delay0, delay1)},
    #: {(param, bell_index): (prepared pair, fidelity)}, attempts rng,
    #: {p: [pre-drawn attempt counts, next index]}, (node a, node b)); rebuilt
    #: if ``model`` changes
    _cache: Any = field(default=None, repr=False, compare=False)

    def side_of(self, node: str) -> int:
        return 0 if node == self.a else 1


class _Attempt:
    """Both ends' Entangle submissions for one key, and what was scheduled.

    Per side: ``requests`` (proto, op_id, op), ``deadline_events`` (kernel
    handle or None), ``herald_events`` (kernel handle or None), ``qubits``.
    A plain slotted class: one is made per pair, so construction is hot."""

    __slots__ = ("requests", "deadline_events", "herald_events", "qubits", "started")

    def __init__(self) -> None:
        self.requests: list = [None, None]
        self.deadline_events: list = [None, None]
        # replaced by lists when the pair is scheduled (_start_attempts)
        self.herald_events: list | tuple = _NONE_PAIR
        self.qubits: list | tuple = _NONE_PAIR
        self.started = False

    def __repr__(self) -> str:
        return (f"_Attempt(requests={self.requests!r}, started={self.started!r})")


class SimNetwork:
    """A simulated network: build it, stack protocols on its nodes, run it.

    ``formalism`` is ``"bd"`` (Bell-diagonal pairs: fast, exact under Pauli
    noise and T1/T2 memory decay) or ``"dm"`` (density matrices) for heralded pairs. ``seed`` fixes
    every random number: the same seed gives the same run.
    """

    def __init__(self, seed: int = 1, formalism: str = "bd", check_wire: bool = True,
                 strict: bool = True) -> None:
        from qstack.physical.engine import QuantumEngine

        if formalism not in ("bd", "dm"):
            raise ValueError(f"formalism: expected 'bd' or 'dm', got {formalism!r}")
        self.seed = seed
        self.formalism = formalism
        self.check_wire = check_wire
        self.sim = Simulator(seed=seed, strict=strict)
        self.engine = QuantumEngine(self.sim.rng("engine"))
        self.nodes: dict[str, SimNode] = {}
        self.links: dict[frozenset, SimLink] = {}
        self.graph = nx.Graph()
        self.errors: list[FailRecord] = []
        self.stats = {"messages": 0, "message_bytes": 0, "quantum_ops": 0, "timers": 0}
        self._delay_cache: dict[str, dict[str, float]] = {}
        self._started = False
        self._state_cache: dict = {}
        self._adj: dict[str, dict[str, SimLink]] = {}   # node -> neighbour -> link
        self._run_actions = {
            SendMessage: self._send_message,
            StartTimer: self._start_timer,
            CancelTimer: self._cancel_timer,
            QuantumOp: self._quantum_op,
            Deliver: self._deliver,
            Submit: self._submit,
            Fail: self._fail,
        }

    # ------------------------------------------------------------------ build
    def add_node(self, name: str, hardware: NodeHardware | None = None) -> SimNode:
        """Add node ``name`` with its hardware (defaults: :class:`NodeHardware`)."""
        if name in self.nodes:
            raise ValueError(f"node {name!r} already exists")
        device = QuantumDevice(name, self.engine, hardware or NodeHardware(),
                               self.sim.rng(f"device:{name}"))
        node = SimNode(name, device)
        self.nodes[name] = node
        self.graph.add_node(name)
        return node

    def add_link(self, a: str, b: str, model: HeraldedPairModel | None = None,
                 classical_delay_ns: int | None = None, length_km: float | None = None) -> SimLink:
        """Connect ``a`` and ``b``. ``model`` is the heralding physics (``None``
        for a classical-only link); its side 0 is the node whose name sorts
        first. The one-way classical delay is, in order:
        ``classical_delay_ns``, the model's ``classical_delay_ns``, or the
        fibre delay of ``length_km``."""
        for n in (a, b):
            if n not in self.nodes:
                raise ValueError(f"link {a}-{b}: unknown node {n!r}")
        if classical_delay_ns is None:
            classical_delay_ns = getattr(model, "classical_delay_ns", None)
        if classical_delay_ns is None:
            classical_delay_ns = round((length_km or 0.0) / _FIBRE_KM_PER_NS)
        # Side 0 is the node with the smaller name, whichever order the caller
        # gives: both ends' protocols can then tell their side without asking.
        a, b = sorted((a, b))
        link = SimLink(a, b, model, int(classical_delay_ns))
        self.links[frozenset((a, b))] = link
        self._adj.setdefault(a, {})[b] = link
        self._adj.setdefault(b, {})[a] = link
        self.graph.add_edge(a, b, delay_ns=link.classical_delay_ns)
        self._delay_cache.clear()
        return link

    def add_protocol(self, node: str, protocol: Protocol) -> Protocol:
        """Stack ``protocol`` on top of ``node``'s stack (bottom first)."""
        n = self.nodes[node]
        if protocol.name in n.protocols:
            raise ValueError(f"{node} already runs a protocol named {protocol.name!r}")
        n.protocols[protocol.name] = protocol
        n.stack.append(protocol.name)
        n.handlers.clear()
        n.above = {p: (n.stack[i + 1] if i + 1 < len(n.stack) else None)
                   for i, p in enumerate(n.stack)}
        n.below = {p: (n.stack[i - 1] if i else None) for i, p in enumerate(n.stack)}
        return protocol

    def node(self, name: str) -> SimNode:
        return self.nodes[name]

    def link(self, a: str, b: str) -> SimLink:
        return self.links[frozenset((a, b))]

    # ------------------------------------------------------------------ run
    @property
    def now_ns(self) -> int:
        return self.sim.now

    def start(self) -> None:
        """Feed ``Started`` to every protocol that handles it (once)."""
        if self._started:
            return
        self._started = True
        for node in self.nodes.values():
            for name in node.stack:
                if Started in type(node.protocols[name])._handlers:
                    self.feed(node.name, name, Started())

    def run(self, until_ns: int | None = None, stop_when: Callable[[], bool] | None = None,
            max_events: int | None = None) -> int:
        """Run the simulation (see :meth:`Simulator.run`); returns events fired."""
        self.start()
        return self.sim.run(until_ns=until_ns, stop_when=stop_when, max_events=max_events)

    def submit(self, node: str, request: Any, to: str | None = None) -> None:
        """Hand ``request`` to ``node``'s protocol ``to`` (default: the top of
        its stack, the layer an application talks to) now."""
        self.start()
        n = self.nodes[node]
        self.feed(node, to or n.stack[-1], request)

    def feed(self, node: str, protocol: str, event: Any) -> None:
        """Give ``event`` to ``protocol`` on ``node`` now and carry out its actions."""
        self._feed(self.nodes[node], protocol, event)

    def _feed(self, n: SimNode, protocol: str, event: Any) -> None:
        """:meth:`feed` for a node object (the hot path: no name lookup)."""
        if not n.up:
            return
        try:
            handler = n.handlers[protocol, event.__class__]
        except KeyError:
            proto = n.protocols.get(protocol)
            if proto is None:
                self.errors.append(FailRecord(self.sim.now, n.name, protocol,
                                              ErrorCode.UNKNOWN_TYPE,
                                              f"no protocol {protocol!r} on {n.name}"))
                return
            handler = n.handlers[protocol, event.__class__] = proto.handler_for(event.__class__)
        actions = handler(event, self.sim.now)
        if actions:
            run = self._run_actions
            for action in actions:
                run[action.__class__](n, protocol, action)

    # ------------------------------------------------------------------ actions
    def classical_delay_ns(self, src: str, dst: str) -> int:
        """One-way classical delay from ``src`` to ``dst``, nanoseconds."""
        if src == dst:
            return 0
        link = self.links.get(frozenset((src, dst)))
        if link is not None:
            return link.classical_delay_ns
        table = self._delay_cache.get(src)
        if table is None:
            table = nx.single_source_dijkstra_path_length(self.graph, src, weight="delay_ns")
            self._delay_cache[src] = table
        if dst not in table:
            raise QStackError(ErrorCode.NET_NO_ROUTE, f"no classical path {src} -> {dst}")
        return int(table[dst])

    def _send_message(self, node: SimNode, protocol: str, action: SendMessage) -> None:
        msg = action.msg
        if self.check_wire:
            data = encode(msg)
            self.stats["message_bytes"] += len(data)
            msg = decode(data)
        self.stats["messages"] += 1
        dst = action.dst
        link = self._adj.get(node.name, _NO_LINKS).get(dst)
        if link is not None:       # the common case: a neighbour
            self.sim.schedule(link.classical_delay_ns, self._arrive, node.name,
                              self.nodes[dst], msg)
            return
        target = self.nodes.get(dst)
        if target is None:
            self._fail(node, protocol, Fail(ErrorCode.NET_NO_ROUTE, f"unknown node {dst!r}"))
            return
        try:
            delay = self.classical_delay_ns(node.name, dst)
        except QStackError as err:
            self._fail(node, protocol, Fail(err.code, err.detail))
            return
        self.sim.schedule(delay, self._arrive, node.name, target, msg)

    def _arrive(self, src: str, dst: SimNode, msg: Any) -> None:
        self._feed(dst, msg.PROTOCOL, _received(src, msg))

    def _start_timer(self, node: SimNode, protocol: str, action: StartTimer) -> None:
        key = (protocol, action.key)
        old = node.timers.pop(key, None)
        if old is not None:
            self.sim.cancel(old)
        self.stats["timers"] += 1
        node.timers[key] = self.sim.schedule(max(0, int(action.delay_ns)), self._timer_fired,
                                             node, key)

    def _timer_fired(self, node: SimNode, key: tuple) -> None:
        node.timers.pop(key, None)
        self._feed(node, key[0], _fired(key[1]))

    def _cancel_timer(self, node: SimNode, protocol: str, action: CancelTimer) -> None:
        handle = node.timers.pop((protocol, action.key), None)
        if handle is not None:
            self.sim.cancel(handle)

    def _quantum_op(self, node: SimNode, protocol: str, action: QuantumOp) -> None:
        self.stats["quantum_ops"] += 1
        op = action.op
        cls = op.__class__
        if cls is Entangle:
            self._entangle(node, protocol, action.op_id, op)
            return
        op_id = action.op_id
        if cls not in _DEVICE_OPS:
            if isinstance(op, Entangle):
                self._entangle(node, protocol, op_id, op)
                return
            if isinstance(op, CancelEntangle):
                self._cancel_entangle(node, protocol, op_id, op)
                return
        sim = self.sim
        duration, outcome = node.device.execute(op, sim.now)
        if op_id is None:
            # fire and forget: nobody waits for the answer, only a failure is kept
            if isinstance(outcome, QStackError):
                self._fail(node, protocol, Fail(outcome.code, outcome.detail))
            return
        sim.schedule(duration, self._op_done_node, node, protocol, op_id, outcome)

    def _op_done(self, node: str, protocol: str, op_id: int, outcome: Any) -> None:
        self._feed(self.nodes[node], protocol, _done(op_id, outcome))

    def _op_done_node(self, node: SimNode, protocol: str, op_id: int, outcome: Any) -> None:
        self._feed(node, protocol, _done(op_id, outcome))

    def _deliver(self, node: SimNode, protocol: str, action: Deliver) -> None:
        to = action.to
        if to is None:
            to = node.above.get(protocol)
        if to is not None:
            self._feed(node, to, action.event)
            return
        node.inbox.append((self.sim.now, action.event))
        for listener in list(node.listeners):
            listener(action.event)

    def _submit(self, node: SimNode, protocol: str, action: Submit) -> None:
        to = action.to
        if to is None:
            to = node.below.get(protocol)
            if to is None:
                self._fail(node, protocol, Fail(ErrorCode.UNEXPECTED_EVENT,
                                                f"{protocol} has no layer below on {node.name}"))
                return
        self._feed(node, to, action.request)

    def _fail(self, node: SimNode, protocol: str, action: Fail) -> None:
        self.errors.append(FailRecord(self.sim.now, node.name, protocol, action.code,
                                      action.detail))

    # ------------------------------------------------------------------ heralded links
    def _link_to(self, name: str, peer: str) -> SimLink | None:
        # add_link files every link under both ends in _adj
        return self._adj.get(name, _NO_LINKS).get(peer)

    def _entangle(self, node: SimNode, protocol: str, op_id: int, op: Entangle) -> None:
        name = node.name
        if op_id is None:
            self._fail(node, protocol, Fail(ErrorCode.INVALID_PARAMETER,
                                            "Entangle needs an op_id: its answer is the herald"))
            return
        link = self._adj.get(name, _NO_LINKS).get(op.peer)     # _link_to, inlined
        if link is None or link.model is None:
            self._herald_now(name, protocol, op_id,
                             _herald(False, reason=f"no quantum link to {op.peer!r}"))
            return
        if not node.device.reserve():
            self._herald_now(name, protocol, op_id, _herald(False, reason="memory full"))
            return
        side = 0 if name == link.a else 1
        key = op.key
        pending = link.pending
        attempt = pending.get(key)
        if attempt is None:
            attempt = pending[key] = _Attempt()
        elif attempt.requests[side] is not None:  # a second submission for the same key
            node.device.release_reservation()
            self._herald_now(name, protocol, op_id, _herald(False, reason="duplicate key"))
            return
        requests = attempt.requests
        requests[side] = (protocol, op_id, op)
        sim = self.sim
        if requests[1 - side] is None:
            # A deadline beyond any simulated time never fires: no event for it
            # (it would only be cancelled when the pair comes, once per pair).
            if op.deadline_ns < _NEVER_NS:
                attempt.deadline_events[side] = sim.schedule_at(
                    max(op.deadline_ns, sim.now), self._entangle_deadline, link, key, side)
        elif not self._start_attempts(link, key, attempt):
            # No success in time: the deadline events report failure. (When the
            # attempts succeed, this end's deadline event would only be
            # cancelled, so it is scheduled only now.)
            attempt.deadline_events[side] = sim.schedule_at(
                max(op.deadline_ns, sim.now), self._entangle_deadline, link, key, side)

    def _herald_now(self, node: str, protocol: str, op_id: int, herald: Herald) -> None:
        self.sim.schedule(0, self._op_done, node, protocol, op_id, herald)

    def _heralded_state(self, model: Any, param: float, bell_index: int):
        """(prepared pair, fidelity to the announced Bell state), computed once per
        (model, param, Bell index): the herald state is deterministic."""
        key = (id(model), param, bell_index)
        cached = self._state_cache.get(key)
        if cached is None:
            from qstack.physical.states import bell_state, fidelity

            rho = model.heralded_state(param, bell_index)
            # single-click heralds are not Bell-diagonal: the fast formalism keeps
            # their Bell twirl (exact for the fidelity and for Pauli noise after it)
            prepared = self.engine.prepare_pair(rho, self.formalism,
                                                twirl=self.formalism == "bd")
            cached = (prepared, float(fidelity(rho, bell_state(bell_index))))
            self._state_cache[key] = (model, cached)   # keep model alive: id() stays unique
            return cached
        return cached[1]

    def _link_cache(self, link: SimLink) -> tuple:
        """(model, rng, per-param numbers, per-(param, Bell index) states, attempts
        rng, per-p attempt blocks, (node a, node b)) of ``link``."""
        cache = link._cache
        if cache is None or cache[0] is not link.model:
            name = f"link:{link.a}-{link.b}"
            cache = link._cache = (link.model, self.sim.rng(name), {}, {},
                                   self.sim.rng(f"{name}:attempts"), {},
                                   (self.nodes[link.a], self.nodes[link.b]))
        return cache

    def _start_attempts(self, link: SimLink, key: Any, attempt: _Attempt) -> bool:
        """Both ends have submitted: sample when the first attempt succeeds and
        schedule both heralds. True if a success was scheduled, False if none
        comes before a deadline (the deadline events then report failure)."""
        attempt.started = True
        cache = link._cache
        if cache is None or cache[0] is not link.model:
            cache = self._link_cache(link)
        model, rng, numbers, states, attempts_rng, blocks, ends = cache
        requests = attempt.requests
        req0 = requests[0][2]
        param = req0.param
        nums = numbers.get(param)
        if nums is None:
            nums = numbers[param] = (float(model.success_probability(param)),
                                     max(1, int(model.cycle_ns(param))),
                                     int(model.herald_delay_ns(0)), int(model.herald_delay_ns(1)))
        p, cycle, d0, d1 = nums
        if not link.up:
            p = 0.0
        sim = self.sim
        req1 = requests[1][2]
        now = max(sim.now, req0.start_ns, req1.start_ns)   # the first attempt
        dl0 = req0.deadline_ns
        dl1 = req1.deadline_ns
        # Skip-ahead: the index of the first successful attempt is geometric
        # (exact for independent attempts); no per-attempt events. Drawn in
        # blocks per (link, p) from the link's own attempts stream: one numpy
        # call per block instead of one per pair.
        if p > 0:
            block = blocks.get(p)
            if block is None or block[1] == _ATTEMPT_BLOCK:
                block = blocks[p] = [attempts_rng.geometric(p, _ATTEMPT_BLOCK).tolist(), 0]
            attempts = block[0][block[1]]
            block[1] += 1
            emitted = now + (attempts - 1) * cycle
            h0 = emitted + d0
            h1 = emitted + d1
            if h0 <= dl0 and h1 <= dl1:
                bell_index = int(model.sample_bell_index(rng))
                sk = (param, bell_index)
                cached = states.get(sk)
                if cached is None:
                    cached = states[sk] = self._heralded_state(model, param, bell_index)
                prepared, fid = cached
                qa, qb = self.engine.new_pair(prepared)
                link.attempts += attempts
                link.pairs_heralded += 1
                node_a, node_b = ends
                node_a.device.store(qa, emitted, reserved=True)
                node_b.device.store(qb, emitted, reserved=True)
                attempt.qubits = [qa, qb]
                # (no deadline event is pending: the first end's was not
                # scheduled or is cancelled here, the second end's never is)
                deadline_events = attempt.deadline_events
                if deadline_events[0] is not None:
                    sim.cancel(deadline_events[0])
                    deadline_events[0] = None
                if deadline_events[1] is not None:
                    sim.cancel(deadline_events[1])
                    deadline_events[1] = None
                arrives = self._herald_arrives
                attempt.herald_events = [
                    sim.schedule_at(h0, arrives, link, key, 0, node_a,
                                    _herald(True, qa, bell_index, attempts, emitted, fid)),
                    sim.schedule_at(h1, arrives, link, key, 1, node_b,
                                    _herald(True, qb, bell_index, attempts, emitted, fid))]
                return True
        # No success in time: the deadline events report failure.
        link.attempts += max(0, (min(dl0, dl1) - now) // cycle)
        return False

    def _herald_arrives(self, link: SimLink, key: Any, side: int, node: SimNode,
                        herald: Herald) -> None:
        attempt = link.pending.get(key)
        if attempt is None:
            return
        requests = attempt.requests
        proto, op_id, _ = requests[side]
        attempt.herald_events[side] = None
        requests[side] = None
        if requests[1 - side] is None:
            del link.pending[key]
        self._feed(node, proto, _done(op_id, herald))

    def _entangle_deadline(self, link: SimLink, key: Any, side: int) -> None:
        attempt = link.pending.get(key)
        if attempt is None or attempt.requests[side] is None:
            return
        proto, op_id, _ = attempt.requests[side]
        attempt.requests[side] = None
        name = (link.a, link.b)[side]
        self.nodes[name].device.release_reservation()
        if attempt.requests[1 - side] is None:
            del link.pending[key]
        reason = "deadline" if attempt.started else "peer absent"
        self._feed(self.nodes[name], proto, OperationDone(op_id, _herald(False, reason=reason)))

    def _cancel_entangle(self, node: SimNode, protocol: str, op_id: int,
                         op: CancelEntangle) -> None:
        link = self._link_to(node.name, op.peer)
        attempt = link.pending.pop(op.key, None) if link is not None else None
        if attempt is not None:
            # Cancelling aborts the attempts at both ends (the midpoint stops).
            for side in (0, 1):
                req = attempt.requests[side]
                if req is None:
                    continue
                name = (link.a, link.b)[side]
                if attempt.deadline_events[side] is not None:
                    self.sim.cancel(attempt.deadline_events[side])
                if attempt.herald_events[side] is not None:
                    self.sim.cancel(attempt.herald_events[side])
                    self.nodes[name].device.free(attempt.qubits[side])
                else:
                    self.nodes[name].device.release_reservation()
                delay = 0 if name == node.name else link.classical_delay_ns
                self.sim.schedule(delay, self._op_done, name, req[0], req[1],
                                  _herald(False, reason="cancelled"))
        if op_id is not None:
            self._herald_now(node.name, protocol, op_id, None)

    # ------------------------------------------------------------------ faults
    def set_link_up(self, a: str, b: str, up: bool) -> None:
        """Take the quantum link ``a``-``b`` down (attempts never succeed) or up."""
        self.link(a, b).up = up

    def reset_node(self, name: str) -> None:
        """Crash and restart ``name``: its stored qubits are lost, its timers
        cancelled, and every neighbour's protocols are told ``PeerDown`` after
        the classical delay. Its protocols get ``PeerDown(name)`` themselves so
        they can drop their state."""
        node = self.nodes[name]
        for handle in node.timers.values():
            self.sim.cancel(handle)
        node.timers.clear()
        for qubit in node.device.stored_qubits():
            node.device.free(qubit)
        for proto in node.stack:
            self.feed(name, proto, PeerDown(name))
        for other in self.graph.neighbors(name):
            delay = self.classical_delay_ns(name, other)
            for proto in self.nodes[other].stack:
                self.sim.schedule(delay, self.feed, other, proto, PeerDown(name))
