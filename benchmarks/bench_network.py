"""Benchmark: chains of N nodes delivering end-to-end pairs on the real stack.

Every node of a chain of N nodes runs the link layer's EGP (``link.egp``)
under the network layer's circuit protocol (``network.qnp``, swap as soon as
possible, flow-control window 1) on :class:`qstack.sim.network.SimNetwork`; neighbours are
joined by heralded links (:class:`qstack.physical.pair_model.SimplePairModel`:
Werner pairs of fidelity ``F_LINK``, success probability ``P_LINK`` per
1 us attempt, herald 5 us after emission, one-way classical delay 10 us,
i.e. about 2 km of fibre). The head asks for ``pairs`` end-to-end pairs; a
consumer stacked on ``network.qnp`` at both ends discards each delivered
qubit at once so the memory frees. The figure is the wall time of the run
(setup excluded, reported apart), for Bell-diagonal states at N = 10, 100,
1000 and density matrices at N = 10.

Nodes have 8 memory slots and no memory decay (so the fidelity estimate can
be checked against the Werner chain formula, reported next to it). The wire
check (msgpack round trip of every message, a debugging aid) is off by
default: it measures the encoder, not the simulator; ``--wire`` turns it on.

    python -m benchmarks.bench_network                # N = 10 100 1000; JSON
    python -m benchmarks.bench_network 10 100         # only these N
    python -m benchmarks.bench_network --budget 0 1000   # 1000 pairs at N = 1000 (minutes)
    python -m benchmarks.bench_network --pairs 200 --wire 10

Parameters: ``sizes`` (N), ``--pairs`` (default 1000), ``--budget`` (cap on
N x pairs per chain, default 200000: the default run delivers 1000 pairs at
N = 10 and 100 and 200 at N = 1000, to stay within ~2 minutes), ``--wire``.
"""
from __future__ import annotations

import argparse
import json
import math
import time

from qstack.core.protocol import Protocol, QuantumOp, on
from qstack.link.egp import EGP
from qstack.network.circuit import QnpProtocol
from qstack.network.purify import PurifyProtocol
from qstack.network.routing import Topology
from qstack.network.service import NetErr, NetOk, NetRequest
from qstack.network.theory import chain_fidelity
from qstack.physical.device import NodeHardware
from qstack.physical.ops import Discard
from qstack.physical.pair_model import SimplePairModel
from qstack.sim.network import SimNetwork

F_LINK = 0.999
P_LINK = 0.1
CYCLE_NS = 1_000
HERALD_NS = 5_000
DELAY_NS = 10_000
SLOTS = 8


class Consumer(Protocol):
    """Top of an end node's stack: records each NetOk and discards its qubit."""

    name = "bench.consumer"

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.oks: list = []
        self.errors: list = []

    @on(NetOk)
    def _ok(self, ev: NetOk, now_ns: int):
        self.oks.append(ev)
        if ev.qubit is None:
            return None
        return [QuantumOp(None, Discard(ev.qubit))]   # no answer wanted

    @on(NetErr)
    def _err(self, ev: NetErr, now_ns: int):
        self.errors.append(ev)


def build_chain(n: int, formalism: str = "bd", seed: int = 1, check_wire: bool = False,
                fidelity: float = F_LINK, p: float = P_LINK, slots: int = SLOTS,
                t1_ns: float = math.inf, t2_ns: float = math.inf, consumer: type = None,
                purify: bool = False):
    """A chain ``n0000 - n0001 - ...`` on the real stack; (net, names, consumers at the
    ends). ``consumer``: the protocol class stacked on network.qnp at both ends.
    ``purify``: ``network.purify`` between the EGP and the QNP, which then plans
    purification where a request needs it."""
    names = [f"n{i:04d}" for i in range(n)]
    net = SimNetwork(seed=seed, formalism=formalism, check_wire=check_wire)
    model = SimplePairModel(p, fidelity, CYCLE_NS, HERALD_NS, DELAY_NS)
    hw = NodeHardware(num_qubits=slots, t1_ns=t1_ns, t2_ns=t2_ns)
    topo = Topology()
    for name in names:
        net.add_node(name, hw)
        topo.add_node(name)
    for a, b in zip(names, names[1:]):
        net.add_link(a, b, model=model)
        topo.add_link(a, b, fidelity=fidelity, rate_hz=p / CYCLE_NS * 1e9)
    for i, name in enumerate(names):
        peers = {names[j]: model for j in (i - 1, i + 1) if 0 <= j < n}
        net.add_protocol(name, EGP(name, peers, hardware=hw, seed=seed))
        service = "link.egp"
        if purify:
            net.add_protocol(name, PurifyProtocol(name, {peer: fidelity for peer in peers}))
            service = PurifyProtocol.name
        net.add_protocol(name, QnpProtocol(name, topo, purify=purify, link_service=service))
    consumers = {name: net.add_protocol(name, (consumer or Consumer)(name))
                 for name in (names[0], names[-1])}
    return net, names, consumers


def chain_run(n: int, pairs: int = 1000, formalism: str = "bd", seed: int = 1,
              check_wire: bool = False) -> dict:
    """Deliver ``pairs`` pairs end to end over a chain of ``n`` nodes; figures as a dict."""
    t0 = time.perf_counter()
    net, names, consumers = build_chain(n, formalism, seed, check_wire)
    head, tail = consumers[names[0]], consumers[names[-1]]
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    t1 = time.perf_counter()
    net.run(until_ns=10**13,
            stop_when=lambda: len(tail.oks) >= pairs and len(head.oks) >= pairs)
    t2 = time.perf_counter()
    got = min(len(head.oks), len(tail.oks))
    if got != pairs or head.errors or tail.errors or net.errors:
        raise RuntimeError(f"chain of {n}: {got}/{pairs} pairs, errors "
                           f"{(head.errors + tail.errors + net.errors)[:3]}")
    fids = [ok.fidelity for ok in tail.oks]
    swaps = sum(net.nodes[x].protocols["network.qnp"].stats["swaps"] for x in names)
    return {
        "nodes": n, "pairs": got, "formalism": formalism, "check_wire": check_wire,
        "wall_s": round(t2 - t1, 3), "setup_s": round(t1 - t0, 3),
        "wall_us_per_node_pair": round(1e6 * (t2 - t1) / (n * got), 2),
        "events": net.sim.events_fired, "messages": net.stats["messages"],
        "quantum_ops": net.stats["quantum_ops"], "swaps": swaps,
        # flow control: (n - 1) link pairs per end-to-end pair with no cut-off
        "link_pairs_per_pair": round(sum(lk.pairs_heralded for lk in net.links.values())
                                     / got, 3),
        "sim_time_ms": round(net.sim.now / 1e6, 3),
        "mean_fidelity": sum(fids) / len(fids),
        "werner_formula": chain_fidelity([F_LINK] * (n - 1)),
    }


def run(sizes=(10, 100, 1000), pairs: int = 1000, check_wire: bool = False,
        budget: int = 200_000) -> dict:
    """The benchmark: bd chains of ``sizes`` and a dm chain of 10 nodes.

    ``budget`` caps nodes x pairs per chain (N = 1000 then delivers 200 pairs)
    so the default run stays within a few minutes; 0 means no cap."""
    def count(n: int) -> int:
        return min(pairs, max(1, budget // n)) if budget else pairs

    out: dict = {"bd": [chain_run(n, count(n), "bd", check_wire=check_wire) for n in sizes]}
    if 10 in sizes:
        out["dm"] = [chain_run(10, pairs, "dm", check_wire=check_wire)]
    bd = out["bd"]
    if len(bd) > 1:
        # wall time per node and pair: constant if the cost grows linearly with N
        out["wall_us_per_node_pair"] = {r["nodes"]: r["wall_us_per_node_pair"] for r in bd}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10, 100, 1000])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--wire", action="store_true", help="msgpack round trip of every message")
    parser.add_argument("--budget", type=int, default=200_000,
                        help="cap on nodes x pairs per chain (0: none)")
    args = parser.parse_args()
    print(json.dumps(run(tuple(args.sizes), args.pairs, args.wire, args.budget), indent=2))
