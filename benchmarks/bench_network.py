"""Benchmark: chains of N nodes delivering end-to-end pairs (network layer).

Runs the network layer's circuit protocol (``network.qnp``, swap-as-soon-as-
possible) on every node of a chain of N nodes, over the lean link-abstracted
driver of ``tests/test_network_driver.py`` (Werner link pairs after geometric
waiting times on the real state engine; the link layer's protocol is not in
the loop), and measures the wall time to deliver ``pairs`` end-to-end pairs.
Bell-diagonal states for N = 10, 100, 1000; density matrices for N = 10.

Parameters: links p = 0.05 per 1 us attempt slot, F = 0.999; classical
delay 0 (so the cost measured is the protocol's and the engine's, not the
churn of swaps that a long round trip causes); one memory slot per link end.

    python -m benchmarks.bench_network            # prints JSON
    python -m benchmarks.bench_network 10 100     # only these N
"""
from __future__ import annotations

import json
import sys
import time

from qstack.network.circuit import QnpProtocol
from qstack.network.routing import Topology
from qstack.network.service import NetRequest
from qstack.network.theory import chain_fidelity
from tests.test_network_driver import LinkNet

F_LINK = 0.999
P_LINK = 0.05


def chain_run(n: int, pairs: int, formalism: str = "bd", seed: int = 1) -> dict:
    """Deliver ``pairs`` pairs end to end over a chain of ``n`` nodes; figures as a dict."""
    t0 = time.perf_counter()
    net = LinkNet(seed=seed, formalism=formalism, consume=True, delay_ns=0, slot_ns=1000)
    topo = Topology.chain(n, fidelity=F_LINK, rate_hz=P_LINK * 1e6)
    names = [f"n{i}" for i in range(n)]
    for name in names:
        net.add_node(name)
        net.add_protocol(name, QnpProtocol(name, topo))
    for a, b in zip(names, names[1:]):
        net.add_link(a, b, p=P_LINK, fidelity=F_LINK)
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    t1 = time.perf_counter()
    net.run()
    t2 = time.perf_counter()
    fids = [p[3] for p in net.pairs]
    swaps = sum(net.nodes[x].stack[0].stats["swaps"] for x in names)
    return {
        "nodes": n, "pairs": len(net.pairs), "formalism": formalism,
        "wall_s": round(t2 - t0, 3), "setup_s": round(t1 - t0, 3),
        "wall_us_per_node_pair": round(1e6 * (t2 - t0) / (n * max(1, len(net.pairs))), 2),
        "events": net.events, "messages": net.messages, "swaps": swaps,
        "sim_time_ms": net.now / 1e6,
        "mean_fidelity": sum(fids) / len(fids) if fids else None,
        "werner_formula": chain_fidelity([F_LINK] * (n - 1)),
    }


def run(sizes=(10, 100, 1000), pairs: int = 1000) -> dict:
    """The benchmark: bd chains of ``sizes`` and a dm chain of 10 nodes."""
    out = {"bd": [chain_run(n, pairs, "bd") for n in sizes]}
    if 10 in sizes:
        out["dm"] = [chain_run(10, pairs, "dm")]
    return out


if __name__ == "__main__":
    sizes = tuple(int(a) for a in sys.argv[1:]) or (10, 100, 1000)
    print(json.dumps(run(sizes), indent=2))
