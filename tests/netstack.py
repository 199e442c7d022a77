"""Networks for the network-layer tests: the simulator's driver and the real link layer.

Every network-layer test runs its protocols where they run in use: on
:class:`qstack.sim.network.SimNetwork` (the one driver that carries actions
out: messages through their msgpack encoding, timers, quantum operations on
the nodes' devices, heralds from each link's station), stacked on the link
layer's EGP (``link.egp``) over heralded links of
:class:`~qstack.physical.pair_model.SimplePairModel`: Werner pairs of a fixed
fidelity, in a uniformly random Bell state, after a geometric number of
attempts. Memories do not decay and gates are noiseless unless a test says
otherwise, so every state a test checks is the closed form's.

:class:`PairSink` is the application on top of a node: it passes what the
network layer delivers into the node's inbox and, once both ends of an
end-to-end pair have it, records the fidelity of the state the two qubits
really share (:class:`Pair`) and frees both qubits (the way an application
consumes its pairs).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple

from qstack.core.protocol import Deliver, Protocol, QuantumOp, on
from qstack.link.egp import EGP
from qstack.network.service import NetErr, NetExpire, NetOk
from qstack.physical.device import NodeHardware
from qstack.physical.ops import Discard
from qstack.physical.pair_model import SimplePairModel
from qstack.sim.network import SimNetwork

#: Default link timing (ns): an attempt every CYCLE_NS; its herald reaches both
#: ends one classical delay after emission (a midpoint station: light to the
#: middle, the herald back); DELAY_NS one way between neighbours (~200 m of fibre).
CYCLE_NS = 1_000
DELAY_NS = 1_000


def link_model(p: float, fidelity: float, cycle_ns: int = CYCLE_NS, delay_ns: int = DELAY_NS,
               herald_delay_ns: int | None = None) -> SimplePairModel:
    """A heralded link: success probability ``p`` per attempt, Werner pairs of
    ``fidelity`` in a uniformly random Bell state; herald ``herald_delay_ns``
    after emission (default: the classical delay ``delay_ns``)."""
    return SimplePairModel(p, fidelity, cycle_ns,
                           delay_ns if herald_delay_ns is None else herald_delay_ns,
                           delay_ns, bell_index=None)


def ideal_hardware(slots: int = 8, **timing) -> NodeHardware:
    """A node's memory of ``slots`` qubits without decay, noiseless gates
    (``timing``: gate and measurement durations, default NodeHardware's)."""
    return NodeHardware(num_qubits=slots, t1_ns=math.inf, t2_ns=math.inf, **timing)


class Pair(NamedTuple):
    """An end-to-end pair both ends delivered (``fidelity``: of the state the
    two qubits shared then, to the Bell state the ends were told)."""

    pair_id: object
    bell_head: int
    bell_tail: int
    fidelity: float
    time_ns: int


class _Free:
    """For a PairSink: discard this qubit of yours (its pair was recorded)."""

    __slots__ = ("qubit",)

    def __init__(self, qubit) -> None:
        self.qubit = qubit


class PairBook:
    """What the PairSinks of one network share (a test's record, not a protocol's)."""

    def __init__(self, net: SimNetwork) -> None:
        self.net = net
        self.pairs: list[Pair] = []
        self._half: dict = {}          # pair id -> (node, NetOk) of the end that has it


class PairSink(Protocol):
    """Top of a node's stack: each NetOk, NetErr, NetExpire goes to the node's
    inbox; a kept pair is recorded in ``book`` and freed at both ends once both
    have it (see the module doc)."""

    name = "test.sink"

    def __init__(self, node: str, book: PairBook) -> None:
        super().__init__(node)
        self.book = book

    @on(NetOk)
    def _ok(self, ev: NetOk, now_ns: int):
        out = [Deliver(ev)]
        if ev.qubit is None:
            return out
        book = self.book
        other = book._half.pop(ev.pair_id, None)
        if other is None:
            book._half[ev.pair_id] = (self.node, ev)
            return out
        node, first = other
        head, tail = (ev, first) if ev.initiator else (first, ev)
        f = book.net.engine.bell_fidelity(ev.qubit, first.qubit, ev.bell_index)
        book.pairs.append(Pair(ev.pair_id, head.bell_index, tail.bell_index, f, now_ns))
        book.net.feed(node, self.name, _Free(first.qubit))
        out.append(QuantumOp(None, Discard(ev.qubit)))
        return out

    @on(_Free)
    def _free(self, ev: _Free, now_ns: int):
        return [QuantumOp(None, Discard(ev.qubit))]

    @on(NetExpire)
    def _expire(self, ev: NetExpire, now_ns: int):
        # the network layer took the pair back (and discards the qubit itself)
        self.book._half.pop(ev.pair_id, None)
        return [Deliver(ev)]

    @on(NetErr)
    def _err(self, ev: NetErr, now_ns: int):
        return [Deliver(ev)]


def stack_net(names: Iterable[str], links: dict, upper: Callable[[str], list], *,
              formalism: str = "bd", seed: int = 1, hardware: NodeHardware | None = None,
              sink: bool = False) -> tuple[SimNetwork, PairBook]:
    """A SimNetwork of nodes ``names`` joined by ``links`` ((a, b) -> pair
    model), each node running ``link.egp`` (over its links) then the
    protocols ``upper(name)`` returns, bottom first, then (``sink``) a
    :class:`PairSink`. Every message goes through its wire encoding
    (``check_wire``). Returns ``(net, book)``."""
    hw = hardware or ideal_hardware()
    net = SimNetwork(seed=seed, formalism=formalism, check_wire=True)
    names = list(names)
    for name in names:
        net.add_node(name, hw)
    peers: dict[str, dict] = {name: {} for name in names}
    for (a, b), model in links.items():
        net.add_link(a, b, model=model)
        peers[a][b] = model
        peers[b][a] = model
    book = PairBook(net)
    for name in names:
        net.add_protocol(name, EGP(name, peers[name], hardware=hw, seed=seed))
        for proto in upper(name):
            net.add_protocol(name, proto)
        if sink:
            net.add_protocol(name, PairSink(name, book))
    return net, book


def inbox(net: SimNetwork, node: str, kind: type | None = None) -> list:
    """What the top of ``node``'s stack delivered (of type ``kind``), in order."""
    return [e for _, e in net.nodes[node].inbox if kind is None or isinstance(e, kind)]
