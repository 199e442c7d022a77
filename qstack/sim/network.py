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
  ``OperationDone`` after the operation's duration.
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
    SendMessage, Started, StartTimer, Submit, TimerFired,
)
from qstack.physical.device import NodeHardware, QuantumDevice
from qstack.physical.ops import CancelEntangle, Entangle, Herald
from qstack.physical.pair_model import HeraldedPairModel
from qstack.sim.runner import Simulator

__all__ = ["SimNetwork", "SimNode", "SimLink", "FailRecord"]

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

    def side_of(self, node: str) -> int:
        return 0 if node == self.a else 1


@dataclass
class _Attempt:
    """Both ends' Entangle submissions for one key, and what was scheduled."""

    requests: list = field(default_factory=lambda: [None, None])  # (proto, op_id, op) per side
    deadline_events: list = field(default_factory=lambda: [None, None])
    herald_events: list = field(default_factory=lambda: [None, None])
    qubits: list = field(default_factory=lambda: [None, None])
    started: bool = False


class SimNetwork:
    """A simulated network: build it, stack protocols on its nodes, run it.

    ``formalism`` is ``"bd"`` (Bell-diagonal pairs: fast, exact under Pauli
    noise) or ``"dm"`` (density matrices) for heralded pairs. ``seed`` fixes
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
        n = self.nodes[node]
        if not n.up:
            return
        proto = n.protocols.get(protocol)
        if proto is None:
            self.errors.append(FailRecord(self.sim.now, node, protocol, ErrorCode.UNKNOWN_TYPE,
                                          f"no protocol {protocol!r} on {node}"))
            return
        for action in proto.handle(event, self.sim.now):
            self._run_actions[type(action)](n, protocol, action)

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
        if action.dst not in self.nodes:
            self._fail(node, protocol, Fail(ErrorCode.NET_NO_ROUTE, f"unknown node {action.dst!r}"))
            return
        try:
            delay = self.classical_delay_ns(node.name, action.dst)
        except QStackError as err:
            self._fail(node, protocol, Fail(err.code, err.detail))
            return
        self.sim.schedule(delay, self._arrive, node.name, action.dst, msg)

    def _arrive(self, src: str, dst: str, msg: Any) -> None:
        self.feed(dst, msg.PROTOCOL, MessageReceived(src, msg))

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
        self.feed(node.name, key[0], TimerFired(key[1]))

    def _cancel_timer(self, node: SimNode, protocol: str, action: CancelTimer) -> None:
        handle = node.timers.pop((protocol, action.key), None)
        if handle is not None:
            self.sim.cancel(handle)

    def _quantum_op(self, node: SimNode, protocol: str, action: QuantumOp) -> None:
        self.stats["quantum_ops"] += 1
        op = action.op
        if isinstance(op, Entangle):
            self._entangle(node, protocol, action.op_id, op)
            return
        if isinstance(op, CancelEntangle):
            self._cancel_entangle(node, protocol, action.op_id, op)
            return
        duration, outcome = node.device.execute(op, self.sim.now)
        self.sim.schedule(duration, self._op_done, node.name, protocol, action.op_id, outcome)

    def _op_done(self, node: str, protocol: str, op_id: int, outcome: Any) -> None:
        self.feed(node, protocol, OperationDone(op_id, outcome))

    def _deliver(self, node: SimNode, protocol: str, action: Deliver) -> None:
        if action.to is not None:
            self.feed(node.name, action.to, action.event)
            return
        i = node.stack.index(protocol)
        if i + 1 < len(node.stack):
            self.feed(node.name, node.stack[i + 1], action.event)
            return
        node.inbox.append((self.sim.now, action.event))
        for listener in list(node.listeners):
            listener(action.event)

    def _submit(self, node: SimNode, protocol: str, action: Submit) -> None:
        if action.to is not None:
            self.feed(node.name, action.to, action.request)
            return
        i = node.stack.index(protocol)
        if i == 0:
            self._fail(node, protocol, Fail(ErrorCode.UNEXPECTED_EVENT,
                                            f"{protocol} has no layer below on {node.name}"))
            return
        self.feed(node.name, node.stack[i - 1], action.request)

    def _fail(self, node: SimNode, protocol: str, action: Fail) -> None:
        self.errors.append(FailRecord(self.sim.now, node.name, protocol, action.code,
                                      action.detail))

    # ------------------------------------------------------------------ heralded links
    def _entangle(self, node: SimNode, protocol: str, op_id: int, op: Entangle) -> None:
        link = self.links.get(frozenset((node.name, op.peer)))
        if link is None or link.model is None:
            self._herald_now(node.name, protocol, op_id,
                             Herald(False, reason=f"no quantum link to {op.peer!r}"))
            return
        if not node.device.reserve():
            self._herald_now(node.name, protocol, op_id, Herald(False, reason="memory full"))
            return
        side = link.side_of(node.name)
        attempt = link.pending.setdefault(op.key, _Attempt())
        if attempt.requests[side] is not None:  # a second submission for the same key
            node.device.release_reservation()
            self._herald_now(node.name, protocol, op_id,
                             Herald(False, reason="duplicate key"))
            return
        attempt.requests[side] = (protocol, op_id, op)
        attempt.deadline_events[side] = self.sim.schedule_at(
            max(op.deadline_ns, self.sim.now), self._entangle_deadline, link, op.key, side)
        if attempt.requests[1 - side] is not None:
            self._start_attempts(link, op.key, attempt)

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

    def _start_attempts(self, link: SimLink, key: Any, attempt: _Attempt) -> None:
        attempt.started = True
        model = link.model
        param = attempt.requests[0][2].param
        now = self.sim.now
        deadlines = [attempt.requests[s][2].deadline_ns for s in (0, 1)]
        p = float(model.success_probability(param)) if link.up else 0.0
        cycle = max(1, int(model.cycle_ns(param)))
        rng = self.sim.rng(f"link:{link.a}-{link.b}")
        delays = [int(model.herald_delay_ns(s)) for s in (0, 1)]
        # Skip-ahead: the index of the first successful attempt is geometric
        # (exact for independent attempts); no per-attempt events.
        attempts = int(rng.geometric(p)) if p > 0 else math.inf
        if attempts != math.inf:
            emitted = now + (attempts - 1) * cycle
            herald_at = [emitted + delays[s] for s in (0, 1)]
            if all(herald_at[s] <= deadlines[s] for s in (0, 1)):
                self._schedule_success(link, key, attempt, param, attempts, emitted, herald_at)
                return
        # No success in time: the deadline events (already scheduled) report failure.
        link.attempts += max(0, (min(deadlines) - now) // cycle)

    def _schedule_success(self, link: SimLink, key: Any, attempt: _Attempt, param: float,
                          attempts: int, emitted: int, herald_at: list[int]) -> None:
        rng = self.sim.rng(f"link:{link.a}-{link.b}")
        bell_index = int(link.model.sample_bell_index(rng))
        prepared, fid = self._heralded_state(link.model, param, bell_index)
        qa, qb = self.engine.new_pair(prepared)
        link.attempts += attempts
        link.pairs_heralded += 1
        for side, qubit, name in ((0, qa, link.a), (1, qb, link.b)):
            self.nodes[name].device.store(qubit, emitted, reserved=True)
            attempt.qubits[side] = qubit
            self.sim.cancel(attempt.deadline_events[side])
            proto, op_id, _ = attempt.requests[side]
            herald = Herald(True, qubit=qubit, bell_index=bell_index, attempts=attempts,
                            emitted_ns=emitted, fidelity_estimate=fid)
            attempt.herald_events[side] = self.sim.schedule_at(
                herald_at[side], self._herald_arrives, link, key, side, herald)

    def _herald_arrives(self, link: SimLink, key: Any, side: int, herald: Herald) -> None:
        attempt = link.pending.get(key)
        if attempt is None:
            return
        proto, op_id, _ = attempt.requests[side]
        attempt.herald_events[side] = None
        attempt.requests[side] = None
        if attempt.requests[1 - side] is None:
            del link.pending[key]
        self.feed((link.a, link.b)[side], proto, OperationDone(op_id, herald))

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
        self.feed(name, proto, OperationDone(op_id, Herald(False, reason=reason)))

    def _cancel_entangle(self, node: SimNode, protocol: str, op_id: int,
                         op: CancelEntangle) -> None:
        link = self.links.get(frozenset((node.name, op.peer)))
        attempt = link.pending.pop(op.key, None) if link is not None else None
        if attempt is not None:
            # Cancelling aborts the attempts at both ends (the midpoint stops).
            for side in (0, 1):
                req = attempt.requests[side]
                if req is None:
                    continue
                name = (link.a, link.b)[side]
                self.sim.cancel(attempt.deadline_events[side])
                if attempt.herald_events[side] is not None:
                    self.sim.cancel(attempt.herald_events[side])
                    self.nodes[name].device.free(attempt.qubits[side])
                else:
                    self.nodes[name].device.release_reservation()
                delay = 0 if name == node.name else link.classical_delay_ns
                self.sim.schedule(delay, self._op_done, name, req[0], req[1],
                                  Herald(False, reason="cancelled"))
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
