"""The simulator's driver: node runtimes, links, classical channels and faults in simulated time.

The protocols are sans-I/O objects stacked per node in a
:class:`~qstack.core.runtime.NodeRuntime`; each link's heralding entity is a
:class:`~qstack.physical.heralding.HeraldingStation`. This module only moves
things between them on the event kernel:

* ``SendMessage`` reaches the destination node after the classical delay of
  the quickest path over links that are up (plus jitter, if asked); messages
  between two nodes arrive in the order they were sent. With ``check_wire``
  every message goes through its msgpack encoding, so what the simulator
  carries is what the wire can carry. A message that cannot be delivered
  (unknown node, no path, the session down) comes back to its sender as
  ``Undeliverable``.
* ``QuantumOp`` runs on the node's :class:`~qstack.physical.device.QuantumDevice`
  (``OperationDone`` after its duration; none for ``op_id=None``, whose
  failure is recorded like a ``Fail``), or, for ``Entangle`` and
  ``CancelEntangle``, goes to the link's station.
* timers are kernel events; ``Deliver``/``Submit``/``Fail`` stay in the runtime.

Faults (``specs/faults.md``): :meth:`SimNetwork.crash_node` (memory lost,
neighbours told ``LinkDown`` and every node it talked with ``PeerDown``
after the classical delay; :meth:`restart_node` brings it back with a fresh
stack), :meth:`set_link_up` (quantum and direct classical channel),
:meth:`reset_channel` (the classical session between two nodes breaks:
messages in flight lost, both ends told, then it reconnects), and
``jitter_ns`` (a random extra delay per message that keeps each pair of
nodes' messages in order). :meth:`schedule_faults` takes a list of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable

import networkx as nx

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.faults import Fault
from qstack.core.kernels import load_kernel
from qstack.core.messages import decode, encode
from qstack.core.protocol import (
    LinkDown, LinkUp, OperationDone, PeerDown, PeerUp, Protocol, QuantumOp,
    SendMessage, Undeliverable, fast_constructor,
)
from qstack.core.runtime import FailRecord, NodeRuntime, RuntimeDriver
from qstack.physical.device import DEVICE_OPS as _DEVICE_OPS
from qstack.physical.device import NodeHardware, QuantumDevice
from qstack.physical.heralding import HeraldingStation
from qstack.physical.ops import CancelEntangle, Entangle, Herald, PulseBlock, PulseRecord
from qstack.physical.pair_model import HeraldedPairModel
from qstack.sim.runner import Simulator

__all__ = ["SimNetwork", "SimNode", "SimLink", "FailRecord", "Fault"]

#: Operation types the node's device carries out itself (no link involved).
_NO_LINKS: dict = {}

_done = fast_constructor(OperationDone)

#: Speed of light in fibre (group index 1.468 at 1550 nm), km per ns.
_FIBRE_KM_PER_NS = 299_792.458e-9 / 1.468


class SimNode(NodeRuntime):
    """A node: its runtime (protocol stack) and its device."""

    def __init__(self, name: str, device: QuantumDevice, driver: "SimNetwork",
                 failures: list, stack_factory: Callable | None = None) -> None:
        super().__init__(name, driver, failures=failures, stack_factory=stack_factory)
        self.device = device


class PyLinkCore:
    """The fields of a :class:`SimLink` the driver's hot path reads: the
    pure-Python twin of the compiled ``qstack.sim._driver.LinkCore`` (typed
    fields there, read in C)."""

    __slots__ = ("a", "b", "classical_delay_ns", "up", "station", "ends", "epoch",
                 "last_arrival", "batch", "batch_seq")


# the compiled driver core and link fields when built (and not
# QSTACK_PURE_PYTHON=1), else the twins (PyLinkCore above, PyDriverCore below)
_compiled = load_kernel("qstack.sim._driver")
LinkCore = _compiled.LinkCore if _compiled is not None else PyLinkCore


class SimLink(LinkCore):  # type: ignore[valid-type,misc]
    """A link between neighbours ``a`` (side 0) and ``b`` (side 1): its
    station (``None`` for a classical-only link) and its classical channel."""

    __slots__ = ("model", "qkd", "pulses")

    def __init__(self, a: str, b: str, model: HeraldedPairModel | None,
                 classical_delay_ns: int) -> None:
        self.a = a
        self.b = b
        self.model = model
        self.classical_delay_ns = classical_delay_ns
        self.up = True
        self.station: HeraldingStation | None = None
        self.ends: tuple = ()
        self.epoch = 0                 # bumped when messages in flight over it are lost
        self.last_arrival = [0, 0]     # FIFO: latest arrival scheduled, per direction
        # per direction: the messages of the last arrival event scheduled (None
        # once it fired) and the kernel's next seq just after it was scheduled
        self.batch: list = [None, None]
        self.batch_seq = [-1, -1]
        self.qkd = None                # its QkdLinkModel (PulseBlock), if it has one
        self.pulses = None             # its PulseStation, made on the first PulseBlock

    def side_of(self, node: str) -> int:
        return 0 if node == self.a else 1

    def new_epoch(self) -> None:
        """Messages in flight over the link are lost (a fault): what is sent
        from now on travels in new events."""
        self.epoch += 1
        self.batch = [None, None]

    @property
    def pairs_heralded(self) -> int:
        return self.station.pairs_heralded if self.station is not None else 0

    @property
    def attempts(self) -> int:
        return self.station.attempts if self.station is not None else 0

    def __repr__(self) -> str:
        return f"SimLink({self.a!r}, {self.b!r}, up={self.up})"


class PyDriverCore:
    """The simulator driver's hot path in pure Python: messages to neighbours,
    Entangle on a link, heralds, operation answers and timers. The reference
    twin of the compiled ``qstack.sim._driver.DriverCore``; :class:`SimNetwork`
    stands on one of them and keeps every rare path (non-neighbours, faults,
    virtual links, pulses, the device's operations)."""

    def _send_action(self, node: SimNode, protocol: str, action: SendMessage, now: int) -> None:
        msg = action.msg
        dst = action.dst
        if self.check_wire:
            data = encode(msg)
            self.stats["message_bytes"] += len(data)
            msg = decode(data)
        self.stats["messages"] += 1
        sim = self.sim
        src = node.name
        link = self._adj.get(src, _NO_LINKS).get(dst)
        if link is not None and link.up:       # the common case: a neighbour
            if self._down_sessions and frozenset((src, dst)) in self._down_sessions:
                self._undeliverable(node, protocol, dst, msg, f"the session with {dst} is down")
                return
            side = 0 if src == link.a else 1
            arrive = sim.now + link.classical_delay_ns
            if self.jitter_ns:
                arrive += int(self._jitter_rng.integers(0, self.jitter_ns + 1))
            last = link.last_arrival
            if arrive <= last[side]:
                arrive = last[side]            # FIFO per direction
                batch = link.batch[side]
                if batch is not None and sim.next_seq == link.batch_seq[side]:
                    # the event carrying this direction's last message arrives
                    # then too and nothing was scheduled since: the message
                    # rides along, delivered right after it as its own event
                    # would have been (one kernel event less, same order)
                    batch.append(msg)
                    return
            last[side] = arrive
            batch = [msg]
            link.batch[side] = batch
            link.batch_seq[side] = sim.schedule_at(
                arrive, self._arrive_link, link, side, link.epoch, node, link.ends[side ^ 1],
                batch).seq + 1
            return
        self._send_far(node, protocol, dst, msg)

    def _arrive_link(self, link: SimLink, side: int, epoch: int, src: SimNode, dst: SimNode,
                     msgs: list) -> None:
        # the messages sent from side ``side`` that arrive now, in their order
        if link.batch[side] is msgs:
            link.batch[side] = None            # (fired: nothing more rides along)
        if link.epoch != epoch:
            self.stats["messages_lost"] += len(msgs)
            return
        name, now = src.name, self.sim.now
        for msg in msgs:
            dst.message(name, msg, now)

    def _op_action(self, node: SimNode, protocol: str, action: QuantumOp, now: int) -> None:
        op_id = action.op_id
        op = action.op
        self.stats["quantum_ops"] += 1
        cls = op.__class__
        if cls is Entangle:
            # (once per pair and end: _entangle's usual case inline; a virtual
            # link's pair must not come from a physical link between the two)
            link = None if op.virtual else self._adj.get(node.name, _NO_LINKS).get(op.peer)
            if op_id is not None and link is not None and link.station is not None:
                link.station.submit(0 if node is link.ends[0] else 1,
                                    (node, protocol, op_id, node.incarnation), op)
                return
            self._entangle(node, protocol, op_id, op)
            return
        if cls not in _DEVICE_OPS:
            self._op_other(node, protocol, op_id, op)
            return
        self._device_op(node, protocol, op_id, op)

    def _op_done(self, node: SimNode, incarnation: int, protocol: str, op_id: int,
                 outcome: Any) -> None:
        if node.incarnation == incarnation:
            node.feed(protocol, _done(op_id, outcome), self.sim.now)

    def _herald_arrives(self, side: int, ref: tuple, herald: Herald) -> None:
        # the stations' deliver callback: ref is what _entangle submitted
        node, protocol, op_id, incarnation = ref
        if node.incarnation == incarnation:
            node.feed(protocol, _done(op_id, herald), self.sim.now)

    def set_timer(self, node: SimNode, protocol: str, key: Any, at_ns: int) -> Any:
        """(driver) Wake ``node`` for timer ``key`` of ``protocol`` at ``at_ns``."""
        self.stats["timers"] += 1
        handle = self.sim.schedule_at(at_ns, self._timer_fired, node, protocol, key)
        return handle

    def _timer_fired(self, node: SimNode, protocol: str, key: Any) -> None:
        # the handle is the node's current one unless it was cancelled (then
        # this event would not fire): look it up rather than carry it along
        node.fire_timer(protocol, key, node.timers.get((protocol, key)), self.sim.now)

    def cancel_timer(self, handle: Any) -> None:
        self.sim.cancel(handle)


# the compiled core when built (and not QSTACK_PURE_PYTHON=1), else the twin above
DriverCore = _compiled.DriverCore if _compiled is not None else PyDriverCore
HAVE_CYTHON = _compiled is not None


class SimNetwork(DriverCore, RuntimeDriver):  # type: ignore[valid-type,misc]
    """A simulated network: build it, stack protocols on its nodes, run it.

    ``formalism`` is ``"bd"`` (Bell-diagonal pairs: fast, exact under Pauli
    noise and T1/T2 memory decay) or ``"dm"`` (density matrices) for heralded
    pairs. ``seed`` fixes
    every random number: the same seed gives the same run. ``jitter_ns``: each
    message takes up to that much longer than its path's delay (uniform,
    integer ns), in order per pair of nodes.
    """

    def __init__(self, seed: int = 1, formalism: str = "bd", check_wire: bool = True,
                 strict: bool = True, jitter_ns: int = 0) -> None:
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
        self.stats = {"messages": 0, "message_bytes": 0, "quantum_ops": 0, "timers": 0,
                      "messages_lost": 0, "undeliverable": 0}
        self.jitter_ns = int(jitter_ns)
        self._jitter_rng = self.sim.rng("classical:jitter")
        self._delay_cache: dict[str, dict[str, float]] = {}
        self._started = False
        self._adj: dict[str, dict[str, SimLink]] = {}   # node -> neighbour -> link
        # classical sessions beyond neighbours: node -> the nodes it exchanged messages with
        self._sessions: dict[str, set[str]] = {}
        self._down_sessions: set[frozenset] = set()     # sessions broken, not yet back
        self._reconnecting: set[frozenset] = set()      # ... of which reconnect on a timer
        self._known_inc: dict[tuple[str, str], int] = {}  # (node, peer) -> peer's incarnation
        self._epochs: dict[frozenset, int] = {}         # pair -> resets so far
        self._fifo: dict[tuple[str, str], int] = {}     # (src, dst) -> latest arrival
        # (src, dst) -> (delay, destination node, pair) for non-neighbours, while
        # the topology and the sessions stay as they are
        self._routes: dict[tuple[str, str], tuple] = {}
        self.faults: list[tuple[int, str, tuple]] = []  # (time ns, what, nodes) as they happened
        self._virtual_model: Callable | None = None
        # virtual links (add_virtual_links), as _adj: node -> other node -> link
        self._virtual: dict[str, dict[str, SimLink]] = {}

    # ------------------------------------------------------------------ build
    def add_node(self, name: str, hardware: NodeHardware | None = None,
                 stack: Callable[[], Iterable[Protocol]] | None = None) -> SimNode:
        """Add node ``name`` with its hardware (defaults: :class:`NodeHardware`).
        ``stack``: a function returning the node's protocols, bottom first
        (called now, and again to restart the node after a crash)."""
        if name in self.nodes:
            raise ValueError(f"node {name!r} already exists")
        device = QuantumDevice(name, self.engine, hardware or NodeHardware(),
                               self.sim.rng(f"device:{name}"))
        node = SimNode(name, device, self, self.errors, stack)
        self.nodes[name] = node
        self.graph.add_node(name)
        return node

    def add_link(self, a: str, b: str, model: HeraldedPairModel | None = None,
                 classical_delay_ns: int | None = None, length_km: float | None = None,
                 qkd: Any = None) -> SimLink:
        """Connect ``a`` and ``b``. ``model`` is the heralding physics (``None``
        for a classical-only link); its side 0 is the node whose name sorts
        first. The one-way classical delay is, in order:
        ``classical_delay_ns``, the model's ``classical_delay_ns``, or the
        fibre delay of ``length_km``. ``qkd``: the link's prepare-and-measure
        pulse physics (:class:`~qstack.physical.qkdlink.QkdLinkModel`), which
        ``PulseBlock`` operations use over the model's fibre."""
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
        link.ends = (self.nodes[a], self.nodes[b])
        link.qkd = qkd
        if model is not None:
            name = f"link:{a}-{b}"
            link.station = HeraldingStation(
                (a, b), model, self.engine, (self.nodes[a].device, self.nodes[b].device),
                self.sim, self._herald_arrives, self.sim.rng(name),
                self.sim.rng(f"{name}:attempts"), self.formalism, link.classical_delay_ns)
        self.links[frozenset((a, b))] = link
        self._adj.setdefault(a, {})[b] = link
        self._adj.setdefault(b, {})[a] = link
        self.graph.add_edge(a, b, delay_ns=link.classical_delay_ns)
        self._topology_changed()
        return link

    def add_virtual_links(self, model_for: Callable[[str, str, int], HeraldedPairModel]) -> None:
        """Let any two nodes ask for pairs of each other directly (``Entangle``
        with ``virtual=True``, any node as peer): a virtual link is made for the
        two on first use, its heralding physics ``model_for(a, b, delay_ns)``
        (``delay_ns``: the classical delay between them). What the ideal
        network layer (:mod:`qstack.network.ideal`) stands on; a virtual link
        carries no messages and is in no topology."""
        self._virtual_model = model_for

    def virtual_links(self) -> list[SimLink]:
        """The virtual links made so far (each once)."""
        return [link for a, peers in self._virtual.items() for b, link in peers.items() if a < b]

    def _virtual_link(self, a: str, b: str) -> SimLink | None:
        link = self._virtual.get(a, _NO_LINKS).get(b)
        if link is None and self._virtual_model is not None and a != b \
                and a in self.nodes and b in self.nodes:
            a, b = sorted((a, b))
            delay = self._delay_or_none(a, b)
            if delay is None:
                return None
            model = self._virtual_model(a, b, delay)
            link = SimLink(a, b, model, delay)
            link.ends = (self.nodes[a], self.nodes[b])
            name = f"virtual:{a}-{b}"
            link.station = HeraldingStation(
                (a, b), model, self.engine, (self.nodes[a].device, self.nodes[b].device),
                self.sim, self._herald_arrives, self.sim.rng(name),
                self.sim.rng(f"{name}:attempts"), self.formalism, delay)
            self._virtual.setdefault(a, {})[b] = link
            self._virtual.setdefault(b, {})[a] = link
        return link

    def add_protocol(self, node: str, protocol: Protocol) -> Protocol:
        """Stack ``protocol`` on top of ``node``'s stack (bottom first)."""
        return self.nodes[node].add(protocol)

    def node(self, name: str) -> SimNode:
        return self.nodes[name]

    def link(self, a: str, b: str) -> SimLink:
        return self.links[frozenset((a, b))]

    # ------------------------------------------------------------------ run
    @property
    def now(self) -> int:
        return self.sim.now

    @property
    def now_ns(self) -> int:
        return self.sim.now

    def start(self) -> None:
        """Feed ``Started`` to every protocol that handles it (once)."""
        if self._started:
            return
        self._started = True
        now = self.sim.now
        for node in self.nodes.values():
            node.start(now)

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
        n.feed(to or n.stack[-1], request, self.sim.now)

    def feed(self, node: str, protocol: str, event: Any) -> None:
        """Give ``event`` to ``protocol`` on ``node`` now and carry out its actions."""
        self.nodes[node].feed(protocol, event, self.sim.now)

    # ------------------------------------------------------------------ classical channel
    def classical_delay_ns(self, src: str, dst: str) -> int:
        """One-way classical delay from ``src`` to ``dst`` over links that are
        up (nanoseconds); ``NET_NO_ROUTE`` if there is no such path."""
        if src == dst:
            return 0
        link = self._adj.get(src, _NO_LINKS).get(dst)
        if link is not None and link.up and link.ends[0].up and link.ends[1].up:
            return link.classical_delay_ns
        table = self._delay_cache.get(src)
        if table is None:
            table = nx.single_source_dijkstra_path_length(self._live_graph(), src,
                                                          weight="delay_ns")
            self._delay_cache[src] = table
        if dst not in table:
            raise QStackError(ErrorCode.NET_NO_ROUTE, f"no classical path {src} -> {dst}")
        return int(table[dst])

    def _mark_down(self, pair: frozenset) -> None:
        """The session ``pair`` is down: nothing goes between them until it is back."""
        self._down_sessions.add(pair)
        self._routes.clear()
        a, b = sorted(pair)
        # which incarnation of the other each end had the session with
        self._known_inc.setdefault((a, b), self.nodes[b].incarnation)
        self._known_inc.setdefault((b, a), self.nodes[a].incarnation)

    def _peer_up(self, node: str, peer: str, delay: int = 0) -> None:
        """Tell ``node`` its session with ``peer`` is back, and whether ``peer``
        restarted meanwhile (then it remembers nothing of the session)."""
        before = self._known_inc.pop((node, peer), self.nodes[peer].incarnation)
        self._notify(node, PeerUp(peer, restarted=self.nodes[peer].incarnation != before),
                     delay)

    def _topology_changed(self) -> None:
        self._delay_cache.clear()
        self._routes.clear()

    def _live_graph(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(n for n, node in self.nodes.items() if node.up)
        g.add_edges_from((lk.a, lk.b, {"delay_ns": lk.classical_delay_ns})
                         for lk in self.links.values()
                         if lk.up and lk.ends[0].up and lk.ends[1].up)
        return g

    def _reachable(self, a: str, b: str) -> bool:
        try:
            self.classical_delay_ns(a, b)
            return True
        except QStackError:
            return False

    def executors(self, node: SimNode) -> dict:
        """(driver) Per node, what carries its messages and operations out
        (partials: no Python frame between the runtime and the driver)."""
        return {SendMessage: partial(self._send_action, node),
                QuantumOp: partial(self._op_action, node)}

    def send(self, node: SimNode, protocol: str, dst: str, msg: Any) -> None:
        """(driver) ``node``'s ``protocol`` sends ``msg`` to ``dst``."""
        self._send_action(node, protocol, SendMessage(dst, msg), self.sim.now)

    def _send_far(self, node: SimNode, protocol: str, dst: str, msg: Any) -> None:
        """A message to a node that is not an up neighbour (the driver core's
        rare path): over the quickest live path, in order per pair of nodes."""
        sim = self.sim
        src = node.name
        key = (src, dst)
        route = self._routes.get(key)
        if route is None:
            # first message of the pair since the topology last changed
            target = self.nodes.get(dst)
            if target is None:
                self._undeliverable(node, protocol, dst, msg, f"unknown node {dst!r}")
                return
            pair = frozenset((src, dst))
            if pair in self._down_sessions:
                self._undeliverable(node, protocol, dst, msg, f"the session with {dst} is down")
                return
            try:
                delay = self.classical_delay_ns(src, dst)
            except QStackError as err:
                self._undeliverable(node, protocol, dst, msg, err.detail)
                return
            self._sessions.setdefault(src, set()).add(dst)
            self._sessions.setdefault(dst, set()).add(src)
            route = self._routes[key] = (delay, target, pair)
        delay, target, pair = route
        arrive = sim.now + delay
        if self.jitter_ns:
            arrive += int(self._jitter_rng.integers(0, self.jitter_ns + 1))
        last = self._fifo.get(key, 0)
        if arrive < last:
            arrive = last
        self._fifo[key] = arrive
        sim.schedule_at(arrive, self._arrive, node, target, msg, node.incarnation,
                        target.incarnation, self._epochs.get(pair, 0) if self._epochs else 0)

    def _undeliverable(self, node: SimNode, protocol: str, dst: str, msg: Any,
                       detail: str) -> None:
        self.stats["undeliverable"] += 1
        sim = self.sim
        sim.schedule_at(sim.now, node.feed, protocol,
                        Undeliverable(dst, msg, ErrorCode.NET_NO_ROUTE, detail), sim.now)

    def _arrive(self, src: SimNode, dst: SimNode, msg: Any, src_inc: int, dst_inc: int,
                epoch: int) -> None:
        if (src.incarnation != src_inc or dst.incarnation != dst_inc
                or (self._epochs
                    and self._epochs.get(frozenset((src.name, dst.name)), 0) != epoch)):
            self.stats["messages_lost"] += 1
            return
        dst.message(src.name, msg, self.sim.now)

    # ------------------------------------------------------------------ quantum operations
    def quantum(self, node: SimNode, protocol: str, op_id: int | None, op: Any) -> None:
        """(driver) Carry out ``node``'s operation ``op`` for ``protocol``."""
        self._op_action(node, protocol, QuantumOp(op_id, op), self.sim.now)

    def _op_other(self, node: SimNode, protocol: str, op_id: int | None, op: Any) -> None:
        """Every operation but an Entangle on a physical link and the device's
        own (the driver core's rare path): virtual links, cancellations, pulse
        blocks, and anything else the device is given to refuse."""
        cls = op.__class__
        if cls not in _DEVICE_OPS and isinstance(op, Entangle):
            self._entangle(node, protocol, op_id, op)
            return
        if cls not in _DEVICE_OPS and isinstance(op, CancelEntangle):
            self._cancel_entangle(node, protocol, op_id, op)
            return
        if cls is PulseBlock:
            self._pulse_block(node, protocol, op_id, op)
            return
        self._device_op(node, protocol, op_id, op)

    def _device_op(self, node: SimNode, protocol: str, op_id: int | None, op: Any) -> None:
        """``op`` on ``node``'s device: its answer after the operation's duration
        (``op_id=None``: none, only a failure is recorded)."""
        sim = self.sim
        duration, outcome = node.device.execute(op, sim.now)
        if op_id is None:
            # fire and forget: nobody waits for the answer, only a failure is kept
            if isinstance(outcome, QStackError):
                node.record(protocol, outcome.code, outcome.detail, sim.now)
            return
        sim.schedule(duration, self._op_done, node, node.incarnation, protocol, op_id, outcome)

    def _entangle(self, node: SimNode, protocol: str, op_id: int | None, op: Entangle) -> None:
        sim = self.sim
        if op_id is None:
            node.record(protocol, ErrorCode.INVALID_PARAMETER,
                        "Entangle needs an op_id: its answer is the herald", sim.now)
            return
        link = self._virtual_link(node.name, op.peer) if op.virtual else \
            self._adj.get(node.name, _NO_LINKS).get(op.peer)
        if link is None or link.station is None:
            sim.schedule(0, self._op_done, node, node.incarnation, protocol, op_id,
                         Herald(False, reason=f"no quantum link to {op.peer!r}"))
            return
        side = 0 if node is link.ends[0] else 1
        link.station.submit(side, (node, protocol, op_id, node.incarnation), op)

    def _pulse_block(self, node: SimNode, protocol: str, op_id: int | None, op: PulseBlock) -> None:
        """A block of QKD pulses: the link's PulseStation pairs both ends'
        operations and answers each with its record when the block ends."""
        from qstack.physical.fibre import FibreChannel
        from qstack.physical.qkdlink import PulseStation

        sim = self.sim
        link = self._adj.get(node.name, _NO_LINKS).get(op.peer)
        if op_id is None or link is None or link.qkd is None or not link.up:
            why = ("PulseBlock needs an op_id: its answer is the record" if op_id is None else
                   f"no QKD link to {op.peer!r}" if link is None or link.qkd is None else
                   f"the link to {op.peer!r} is down")
            if op_id is None:
                node.record(protocol, ErrorCode.INVALID_PARAMETER, why, sim.now)
            else:
                sim.schedule(0, self._op_done, node, node.incarnation, protocol, op_id,
                             PulseRecord(False, reason=why))
            return
        if link.pulses is None:
            model = link.model
            fibre = (model.fibre.with_length(model.length_km) if hasattr(model, "fibre")
                     else FibreChannel(length_km=0.0))
            link.pulses = PulseStation((link.a, link.b), link.qkd, fibre,
                                       sim.rng(f"pulses:{link.a}-{link.b}"))
        for (n, inc, proto, oid), at, record in link.pulses.submit(
                node.name, (node, node.incarnation, protocol, op_id), op, sim.now):
            sim.schedule_at(at, self._op_done, n, inc, proto, oid, record)

    def _cancel_entangle(self, node: SimNode, protocol: str, op_id: int | None,
                         op: CancelEntangle) -> None:
        link = self._virtual.get(node.name, _NO_LINKS).get(op.peer) if op.virtual else \
            self._adj.get(node.name, _NO_LINKS).get(op.peer)
        if link is not None and link.station is not None:
            link.station.cancel(0 if node is link.ends[0] else 1, op.key)
        if op_id is not None:
            self.sim.schedule(0, self._op_done, node, node.incarnation, protocol, op_id, None)

    # ------------------------------------------------------------------ faults
    def _notify(self, node: str, event: Any, delay: int = 0) -> None:
        """Give ``event`` to every protocol of ``node`` after ``delay`` ns (if
        the node is still the same incarnation and up then)."""
        n = self.nodes[node]
        self.sim.schedule(max(0, delay), self._broadcast, n, n.incarnation, event)

    def _broadcast(self, node: SimNode, incarnation: int, event: Any) -> None:
        if node.incarnation == incarnation and node.up:
            node.broadcast(event, self.sim.now)

    def _session_peers(self, name: str) -> set[str]:
        return set(self._adj.get(name, _NO_LINKS)) | self._sessions.get(name, set())

    def crash_node(self, name: str) -> None:
        """Node ``name`` crashes now: its protocols and memory are lost, its
        links' stations forget its requests, messages to and from it in
        flight are lost; each neighbour is told ``LinkDown`` and every node it
        had a session with ``PeerDown``, after the classical delay between them."""
        node = self.nodes[name]
        if not node.up:
            return
        now = self.sim.now
        self.faults.append((now, "crash", (name,)))
        peers = {p: self._delay_or_none(name, p) for p in self._session_peers(name)}
        for link in self._adj.get(name, _NO_LINKS).values():
            if link.station is not None:
                link.station.drop_side(link.side_of(name))
            if link.pulses is not None:
                link.pulses.drop(name)
            link.new_epoch()
        for link in self._virtual.get(name, _NO_LINKS).values():
            link.station.drop_side(link.side_of(name))
        node.crash()                # (its listeners, the socket API, are told)
        node.device.reset()
        self._topology_changed()
        for peer, delay in sorted(peers.items()):
            self._mark_down(frozenset((name, peer)))
            if peer in self._adj.get(name, _NO_LINKS):
                self._notify(peer, LinkDown(name), delay or 0)
            self._notify(peer, PeerDown(name), delay or 0)
        self._check_sessions()

    def restart_node(self, name: str) -> None:
        """Bring crashed node ``name`` back now, with a fresh stack and an empty
        memory; neighbours are told ``LinkUp`` (if the link is up) and the nodes
        it had sessions with ``PeerUp(restarted=True)``, after the delay."""
        node = self.nodes[name]
        if node.up:
            return
        now = self.sim.now
        self.faults.append((now, "restart", (name,)))
        node.up = True              # (so that paths through it count below)
        self._topology_changed()
        # The peers are told before the fresh stack starts: anything it sends
        # reaches them after they know it is back (FIFO within an instant).
        for peer in sorted(self._session_peers(name)):
            pair = frozenset((name, peer))
            if not self.nodes[peer].up:
                continue
            delay = self._delay_or_none(name, peer)
            if delay is None:
                continue            # still unreachable: PeerUp when a path returns
            self._down_sessions.discard(pair)
            link = self._adj.get(name, _NO_LINKS).get(peer)
            if link is not None and link.up:
                self._notify(peer, LinkUp(name), delay)
            self._notify(peer, PeerUp(name, restarted=True), delay)
            self._known_inc.pop((peer, name), None)
            self._known_inc.pop((name, peer), None)
        node.restart(now)
        # the fresh stack assumes its links up, as configured: tell it which are not
        for peer, link in sorted(self._adj.get(name, _NO_LINKS).items()):
            if not (link.up and self.nodes[peer].up):
                node.broadcast(LinkDown(peer), now)
        self._check_sessions()

    def reset_node(self, name: str) -> None:
        """Crash and restart ``name`` at once (its memory is lost). A node
        without a stack factory keeps its protocol objects, each told
        ``PeerDown(name)`` to forget its state."""
        self.crash_node(name)
        self.restart_node(name)

    def _delay_or_none(self, a: str, b: str) -> int | None:
        try:
            return self.classical_delay_ns(a, b)
        except QStackError:
            return None

    def set_link_up(self, a: str, b: str, up: bool) -> None:
        """Take the link ``a``-``b`` down (no heralds, no messages over it;
        messages in flight over it are lost; both ends told ``LinkDown`` and
        their session reset) or back up (``LinkUp``)."""
        link = self.link(a, b)
        if link.up == bool(up):
            return
        now = self.sim.now
        self.faults.append((now, "link_up" if up else "link_down", (link.a, link.b)))
        link.up = bool(up)
        if link.station is not None:
            link.station.set_up(up)
        self._topology_changed()
        ends_up = link.ends[0].up and link.ends[1].up
        if not up:
            link.new_epoch()
            if ends_up:
                for x, y in ((link.a, link.b), (link.b, link.a)):
                    self._notify(x, LinkDown(y))
                self._reset_session(link.a, link.b)
        elif ends_up:
            for x, y in ((link.a, link.b), (link.b, link.a)):
                self._notify(x, LinkUp(y))
        self._check_sessions()

    def reset_channel(self, a: str, b: str) -> None:
        """The classical session between ``a`` and ``b`` breaks now: messages in
        flight between them are lost, both are told ``PeerDown`` at once and
        ``PeerUp`` one round trip later (if they can still reach each other)."""
        now = self.sim.now
        self.faults.append((now, "reset", tuple(sorted((a, b)))))
        self._reset_session(a, b)
        self._check_sessions()

    def _reset_session(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        self._epochs[pair] = self._epochs.get(pair, 0) + 1
        link = self._adj.get(a, _NO_LINKS).get(b)
        if link is not None:
            link.new_epoch()
        if not (self.nodes[a].up and self.nodes[b].up):
            return
        self._notify(a, PeerDown(b))
        self._notify(b, PeerDown(a))
        delay = self._delay_or_none(a, b)
        if delay is None:
            self._mark_down(pair)       # back when a path returns
            return
        self._sessions.setdefault(a, set()).add(b)
        self._sessions.setdefault(b, set()).add(a)
        # reconnecting takes a round trip; until then nothing is carried
        self._mark_down(pair)
        self._reconnecting.add(pair)
        self.sim.schedule(2 * delay, self._reconnect, a, b, self.nodes[a].incarnation,
                          self.nodes[b].incarnation)

    def _reconnect(self, a: str, b: str, inc_a: int, inc_b: int) -> None:
        na, nb = self.nodes[a], self.nodes[b]
        pair = frozenset((a, b))
        self._reconnecting.discard(pair)
        if pair not in self._down_sessions:
            return
        if not (na.up and nb.up and na.incarnation == inc_a and nb.incarnation == inc_b):
            return
        if not self._reachable(a, b):
            return
        self._down_sessions.discard(pair)
        self._peer_up(a, b)
        self._peer_up(b, a)

    def _check_sessions(self) -> None:
        """After a topology change: sessions that lost every path break
        (``PeerDown`` at both ends), broken ones that have a path again and
        whose ends are up come back (``PeerUp``)."""
        seen = set()
        for a in self.nodes:
            for b in sorted(self._session_peers(a)):
                pair = frozenset((a, b))
                if pair in seen:
                    continue
                seen.add(pair)
                na, nb = self.nodes[a], self.nodes[b]
                if not (na.up and nb.up):
                    continue
                reachable = self._reachable(a, b)
                if pair in self._down_sessions:
                    if reachable and pair not in self._reconnecting:
                        self._down_sessions.discard(pair)
                        delay = self.classical_delay_ns(a, b)
                        self._peer_up(a, b, delay)
                        self._peer_up(b, a, delay)
                elif not reachable:
                    self._mark_down(pair)
                    self._epochs[pair] = self._epochs.get(pair, 0) + 1
                    self._notify(a, PeerDown(b))
                    self._notify(b, PeerDown(a))

    def schedule_faults(self, faults: Iterable[Fault]) -> None:
        """Schedule ``faults`` (:class:`~qstack.core.faults.Fault`, times in ns from now)."""
        sim = self.sim
        for f in faults:
            for name in f.nodes:
                if name not in self.nodes:
                    raise ValueError(f"{f.kind} fault: unknown node {name!r}")
            if f.kind == "crash":
                (name,) = f.nodes
                sim.schedule(f.at_ns, self.crash_node, name)
                if f.after_ns is not None:
                    sim.schedule(f.at_ns + f.after_ns, self.restart_node, name)
            elif f.kind == "link_down":
                a, b = f.nodes
                self.link(a, b)          # (KeyError now rather than at its time)
                sim.schedule(f.at_ns, self.set_link_up, a, b, False)
                if f.after_ns is not None:
                    sim.schedule(f.at_ns + f.after_ns, self.set_link_up, a, b, True)
            else:
                a, b = f.nodes
                sim.schedule(f.at_ns, self.reset_channel, a, b)
