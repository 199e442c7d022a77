"""Benchmark: chains of N nodes delivering end-to-end pairs on the real stack.

The chain is :func:`qstack.sim.chain.build_chain`'s: every node of a chain of
N nodes runs the link layer's EGP (``link.egp``) under the network layer's
circuit protocol (``network.qnp``, swap as soon as possible, flow-control
window 1) on :class:`qstack.sim.network.SimNetwork`; neighbours are joined by
heralded links (:class:`qstack.physical.pair_model.SimplePairModel`: Werner
pairs of fidelity ``F_LINK`` = 0.999, success probability 0.1 per 1 us
attempt, herald 5 us after emission, one-way classical delay 10 us, i.e.
about 2 km of fibre). The head asks for ``pairs`` end-to-end pairs; the
chain's end protocol at both ends discards each delivered qubit at once so
the memory frees. The figure is the wall time of the run
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
    python -m benchmarks.bench_network --sequence        # the SeQUeNCe-matched chains only

Parameters: ``sizes`` (N), ``--pairs`` (default 1000), ``--budget`` (cap on
N x pairs per chain, default 200000: the default run delivers 1000 pairs at
N = 10 and 100 and 200 at N = 1000, to stay within ~2 minutes), ``--wire``.

The chain above runs the network layer's default flow-control window
(``window="auto"``: the memory's share of a link, half of a repeater's 8
slots: 4 end-to-end pairs in flight).

**Pairs per simulated second** (:func:`sequence_rates`, also in the default
run): the chains of 2, 3, 5 and 9 nodes on SeQUeNCe's hardware
(``/work/shared/peers/sequence/README.md``): 2 km hops with the Bell-state
measurement in the middle (herald 10 us after emission: 1 km there, 1 km
back; one attempt per 10 us, since a memory must hear its outcome before
re-emitting; one-way classical delay 10 us), success probability 0.299 per
attempt, Werner pairs of fidelity 0.95, T2 = 1 s, 20 memory slots per node
(10 per link direction), one generation process per link; with window 1 and
with the auto window (the memory's share of a link: 20 on two nodes, 10 on
longer chains, where a repeater splits its 20 slots between its links). The rate is (pairs - 1) / (time from the first
delivery to the last), set beside the closed forms of
``qstack.network.theory`` (``pipelined_rate_bound``, ``pipelined_rate_mva``)
and SeQUeNCe's figures; the fidelity is the engine's, of the pair's state at
delivery, beside the Werner product.
"""
from __future__ import annotations

import argparse
import json
import time

from qstack.network.service import NetRequest
from qstack.network.theory import (
    chain_fidelity, credit_settle_ns, link_pair_time_ns, pipelined_rate_bound, pipelined_rate_mva,
)
from qstack.physical.pair_model import SimplePairModel
from qstack.sim.chain import LINK_FIDELITY as F_LINK
from qstack.sim.chain import build_chain
from qstack.sim.probe import PairLedger, PairProbe, bind_probes

#: SeQUeNCe's chain hardware (see the module doc): success probability per
#: attempt, Werner fidelity, attempt cycle = herald delay = classical delay (ns),
#: T2 (ns), memory slots per node
SEQ_P, SEQ_F, SEQ_HOP_NS, SEQ_T2_NS, SEQ_SLOTS = 0.299, 0.95, 10_000, 1e9, 20
#: SeQUeNCe 1.3.1's pairs per simulated second and end-to-end fidelity (README there)
SEQUENCE_FIGURES = {2: (55_000, 0.950), 3: (60_000, 0.903), 5: (44_000, 0.819),
                    9: (26_000, 0.680)}


def chain_run(n: int, pairs: int = 1000, formalism: str = "bd", seed: int = 1,
              check_wire: bool = False) -> dict:
    """Deliver ``pairs`` pairs end to end over a chain of ``n`` nodes; figures as a dict."""
    t0 = time.perf_counter()
    net, names, consumers = build_chain(n, formalism, seed, check_wire, stop_after=pairs)
    head, tail = consumers[names[0]], consumers[names[-1]]
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    t1 = time.perf_counter()
    net.run(until_ns=10**13)    # (the chain's ends stop it at the last pair)
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


def sequence_chain_run(n: int, window, pairs: int = 2000, seed: int = 1) -> dict:
    """End-to-end pairs per simulated second on SeQUeNCe's hardware (module doc)."""
    model = SimplePairModel(SEQ_P, SEQ_F, SEQ_HOP_NS, SEQ_HOP_NS, SEQ_HOP_NS, bell_index=None)
    ledger = PairLedger()
    net, names, ends = build_chain(n, seed=seed, model=model, slots=SEQ_SLOTS, t2_ns=SEQ_T2_NS,
                                   qnp_options={"window": window}, fidelity=SEQ_F,
                                   consumer=lambda node: PairProbe(node, ledger))
    bind_probes(net, ends)
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    net.run(until_ns=10**13)
    if len(ledger.pairs) != pairs or net.errors or ledger.errors:
        raise RuntimeError(f"chain of {n}: {len(ledger.pairs)}/{pairs} pairs")
    times = ledger.read_times_ns()
    qnp = net.nodes[names[0]].protocols["network.qnp"]
    w = min(qnp.window, qnp.link_share(names[1]))      # the head's credit
    t_pair = link_pair_time_ns(SEQ_P, SEQ_HOP_NS, SEQ_HOP_NS)
    settle = credit_settle_ns([SEQ_HOP_NS] * (n - 1))
    seq_rate, seq_fid = SEQUENCE_FIGURES.get(n, (None, None))
    return {
        "nodes": n, "window": w, "pairs": pairs,
        "pairs_per_sim_s": round((pairs - 1) / (times[-1] - times[0]) * 1e9),
        "bound_pairs_per_sim_s": round(pipelined_rate_bound([t_pair] * (n - 1), w, settle)),
        "mva_pairs_per_sim_s": round(pipelined_rate_mva(t_pair, w, settle)),
        "link_pairs_per_sim_s": round(1e9 / t_pair),
        "mean_fidelity": round(sum(ledger.fidelities()) / pairs, 5),
        "werner_formula": round(chain_fidelity([SEQ_F] * (n - 1)), 5),
        "sequence_pairs_per_sim_s": seq_rate, "sequence_fidelity": seq_fid,
    }


def sequence_rates(sizes=(2, 3, 5, 9), pairs: int = 2000) -> list:
    """:func:`sequence_chain_run` for each size with window 1 and the auto window."""
    return [sequence_chain_run(n, w, pairs) for n in sizes for w in (1, "auto")]


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
    out["sequence_chains"] = sequence_rates()
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
    parser.add_argument("--sequence", action="store_true",
                        help="only the SeQUeNCe-matched chains (pairs per simulated second)")
    args = parser.parse_args()
    if args.sequence:
        print(json.dumps(sequence_rates(), indent=2))
        raise SystemExit(0)
    print(json.dumps(run(tuple(args.sizes), args.pairs, args.wire, args.budget), indent=2))
