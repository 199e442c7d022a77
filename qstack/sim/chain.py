"""A repeater chain on the real stack, ready to run: for studies, benchmarks and tests.

:func:`build_chain` puts ``n`` nodes ``n0000 - n0001 - ...`` on a
:class:`~qstack.sim.network.SimNetwork`, each running the link layer's EGP
(``link.egp``), optionally ``network.purify`` above it, and the network
layer's circuit protocol (``network.qnp``); neighbours are joined by heralded
links of the abstract :class:`~qstack.physical.pair_model.SimplePairModel`
(Werner pairs of fidelity ``fidelity``, success probability ``p`` per
``CYCLE_NS`` attempt, herald ``HERALD_NS`` after emission, one-way classical
delay ``DELAY_NS``: about 2 km of fibre). Both end nodes get an end protocol
stacked on ``network.qnp`` (:class:`ChainEnd` unless told otherwise), which
records what arrives; submit a ``NetRequest`` to the head's ``network.qnp``
and run.

``benchmarks/bench_network.py`` times this chain; the network tests run it.
"""
from __future__ import annotations

import math

from qstack.core.protocol import Protocol, QuantumOp, on
from qstack.link.egp import EGP
from qstack.network.circuit import QnpProtocol
from qstack.network.purify import PurifyProtocol
from qstack.network.routing import Topology
from qstack.network.service import NetErr, NetOk
from qstack.physical.device import NodeHardware
from qstack.physical.ops import Discard
from qstack.physical.pair_model import HeraldedPairModel, SimplePairModel
from qstack.sim.network import SimNetwork

__all__ = ["ChainEnd", "build_chain", "build_grid", "LINK_FIDELITY", "LINK_P", "CYCLE_NS", "HERALD_NS",
           "DELAY_NS", "SLOTS"]

LINK_FIDELITY = 0.999   #: Werner fidelity of a link pair
LINK_P = 0.1            #: success probability per attempt
CYCLE_NS = 1_000        #: attempt period, ns
HERALD_NS = 5_000       #: emission to herald, ns
DELAY_NS = 10_000       #: one-way classical delay between neighbours, ns
SLOTS = 8               #: memory slots per node


class ChainEnd(Protocol):
    """Top of an end node's stack: records each NetOk and NetErr, and discards
    each delivered qubit at once (fire and forget) so the memory frees."""

    name = "chain.end"

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.oks: list = []
        self.errors: list = []
        #: called with no argument after each NetOk (build_chain's ``stop_after``)
        self.on_ok = None

    @on(NetOk)
    def _ok(self, ev: NetOk, now_ns: int):
        self.oks.append(ev)
        if self.on_ok is not None:
            self.on_ok()
        if ev.qubit is None:
            return None
        return [QuantumOp(None, Discard(ev.qubit))]   # no answer wanted

    @on(NetErr)
    def _err(self, ev: NetErr, now_ns: int):
        self.errors.append(ev)


def build_chain(n: int, formalism: str = "bd", seed: int = 1, check_wire: bool = False,
                fidelity: float = LINK_FIDELITY, p: float = LINK_P, slots: int = SLOTS,
                t1_ns: float = math.inf, t2_ns: float = math.inf, consumer: type | None = None,
                purify: bool = False, model: HeraldedPairModel | None = None,
                hardware: NodeHardware | None = None, qnp_options: dict | None = None,
                stop_after: int | None = None) -> tuple[SimNetwork, list[str], dict]:
    """A chain of ``n`` nodes on the real stack: ``(net, names, ends)``.

    ``ends`` maps the two end nodes' names to their ``consumer`` protocols
    (a :class:`ChainEnd` subclass or any protocol class taking the node name;
    default :class:`ChainEnd`). ``fidelity``, ``p``: each link's Werner
    fidelity and success probability per attempt; ``slots``, ``t1_ns``,
    ``t2_ns`` (ns, ``math.inf`` = none): every node's memory. ``purify``:
    ``network.purify`` between the EGP and the QNP, which then plans
    purification where a request needs it. ``formalism``, ``seed``,
    ``check_wire``: as for :class:`~qstack.sim.network.SimNetwork`.
    ``model``: every link's heralding physics instead of the
    ``SimplePairModel`` of ``p`` and ``fidelity`` (``fidelity`` is still what
    the topology announces); ``hardware``: every node's instead of the one of
    ``slots``, ``t1_ns``, ``t2_ns``; ``qnp_options``: further keyword
    arguments of every :class:`~qstack.network.circuit.QnpProtocol`
    (e.g. ``window``).
    ``stop_after``: a run stops (:meth:`Simulator.stop`) once both ends have
    recorded that many NetOks (ends that are :class:`ChainEnd`), with no check
    of its own after every event as ``run(stop_when=...)`` would make.
    """
    names = [f"n{i:04d}" for i in range(n)]
    return _build(names, list(zip(names, names[1:])), (names[0], names[-1]), formalism, seed,
                  check_wire, fidelity, p, slots, t1_ns, t2_ns, consumer, purify, model,
                  hardware, qnp_options, stop_after)


def build_grid(rows: int, cols: int, formalism: str = "bd", seed: int = 1,
               check_wire: bool = False, fidelity: float = LINK_FIDELITY, p: float = LINK_P,
               slots: int = SLOTS, t1_ns: float = math.inf, t2_ns: float = math.inf,
               consumer: type | None = None, purify: bool = False,
               model: HeraldedPairModel | None = None, hardware: NodeHardware | None = None,
               qnp_options: dict | None = None,
               stop_after: int | None = None) -> tuple[SimNetwork, list[str], dict]:
    """A ``rows`` x ``cols`` grid on the real stack, as :func:`build_chain`
    makes a chain (same links, stack and arguments, ``model``, ``hardware``
    and ``qnp_options`` included): node ``g{r}_{c}`` is
    linked to its right and lower neighbours; the two end nodes (given an
    end protocol) are the opposite corners, ``names[0]`` and ``names[-1]``."""
    if rows < 1 or cols < 1 or rows * cols < 2:
        raise ValueError("a grid needs rows >= 1, cols >= 1 and at least two nodes")
    names = [f"g{r}_{c}" for r in range(rows) for c in range(cols)]
    edges = [(f"g{r}_{c}", f"g{r}_{c + 1}") for r in range(rows) for c in range(cols - 1)]
    edges += [(f"g{r}_{c}", f"g{r + 1}_{c}") for r in range(rows - 1) for c in range(cols)]
    return _build(names, edges, (names[0], names[-1]), formalism, seed, check_wire, fidelity,
                  p, slots, t1_ns, t2_ns, consumer, purify, model, hardware, qnp_options,
                  stop_after)


def _build(names, edges, end_nodes, formalism, seed, check_wire, fidelity, p, slots, t1_ns, t2_ns,
           consumer, purify, model, hardware, qnp_options,
           stop_after) -> tuple[SimNetwork, list[str], dict]:
    net = SimNetwork(seed=seed, formalism=formalism, check_wire=check_wire)
    hw = hardware or NodeHardware(num_qubits=slots, t1_ns=t1_ns, t2_ns=t2_ns)
    # the QNP's window follows the memory (window "auto", unless told otherwise)
    qnp_options = {"num_qubits": hw.num_qubits, "seed": seed, **(qnp_options or {})}
    model = model or SimplePairModel(p, fidelity, CYCLE_NS, HERALD_NS, DELAY_NS)
    topo = Topology()
    for name in names:
        net.add_node(name, hw)
        topo.add_node(name, hw.num_qubits)
    neighbours: dict[str, list[str]] = {name: [] for name in names}
    for a, b in edges:
        net.add_link(a, b, model=model)
        topo.add_link(a, b, fidelity=fidelity,
                      rate_hz=model.success_probability(0.0) / model.cycle_ns(0.0) * 1e9)
        neighbours[a].append(b)
        neighbours[b].append(a)
    for name in names:
        peers = {peer: model for peer in sorted(neighbours[name])}
        net.add_protocol(name, EGP(name, peers, hardware=hw, seed=seed))
        service = "link.egp"
        if purify:
            net.add_protocol(name, PurifyProtocol(name, {peer: fidelity for peer in peers}))
            service = PurifyProtocol.name
        net.add_protocol(name, QnpProtocol(name, topo, purify=purify, link_service=service,
                                           **(qnp_options or {})))
    ends = {name: net.add_protocol(name, (consumer or ChainEnd)(name)) for name in end_nodes}
    if stop_after is not None:
        head, tail = (ends[name] for name in end_nodes)

        def on_ok() -> None:
            if len(head.oks) >= stop_after and len(tail.oks) >= stop_after:
                net.sim.stop()
        head.on_ok = tail.on_ok = on_ok
    return net, names, ends
