"""Benchmark: 10,000-node networks build and run (issue 22).

A chain of 10,000 nodes and a 100 x 100 grid (:func:`qstack.sim.chain.build_chain`,
:func:`~qstack.sim.chain.build_grid`: the chain benchmark's links and stack,
EGP under QNP on every node) deliver ``pairs`` end-to-end pairs per circuit:
on the chain, ten circuits of 1,000 nodes side by side, all at once (a
circuit's path is at most 1,024 nodes on the wire, ``CircuitSetup.path`` in
specs/network.md, so no single circuit spans 10,000); on the grid, one
circuit between opposite corners (198 hops).
Each network runs in a process of its own, which reports its build time, run
time (wall, s), peak resident memory (``ru_maxrss``, MB: the whole process,
interpreter and numpy included) and the pairs' mean fidelity next to the
Werner chain formula for its number of hops.

    python -m benchmarks.bench_large                  # chain and grid, 10 pairs; JSON
    python -m benchmarks.bench_large --pairs 5 chain
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from qstack.network.service import NetRequest
from qstack.network.theory import chain_fidelity
from qstack.sim.chain import LINK_FIDELITY, ChainEnd, build_chain, build_grid
kind, size, pairs, span = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
if kind == "chain":
    net, names, ends = build_chain(size)
    # circuits of ``span`` nodes side by side over the whole chain (a circuit's
    # path is at most 1024 nodes on the wire: specs/network.md, CircuitSetup)
    circuits = [(names[i], names[min(i + span, size) - 1]) for i in range(0, size, span)]
    hops = [span - 1 if i + span <= size else size - 1 - i for i in range(0, size, span)]
else:
    net, names, ends = build_grid(size, size)
    circuits, hops = [(names[0], names[-1])], [2 * (size - 1)]
for head, tail in circuits:
    for name in (head, tail):
        if name not in ends:
            ends[name] = net.add_protocol(name, ChainEnd(name))
    net.submit(head, NetRequest(tail, number=pairs), to="network.qnp")
t1 = time.perf_counter()
net.run(until_ns=10**13)
t2 = time.perf_counter()
got = [min(len(ends[h].oks), len(ends[t].oks)) for h, t in circuits]
fids = [[ok.fidelity for ok in ends[t].oks] for _, t in circuits]
print(json.dumps({
    "network": kind, "nodes": len(names), "links": len(net.links), "circuits": len(circuits),
    "hops_per_circuit": max(hops), "pairs": sum(got),
    "build_s": round(t1 - t0, 2), "run_s": round(t2 - t1, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "events": net.sim.events_fired,
    "errors": len(net.errors) + sum(len(e.errors) for e in ends.values()),
    "mean_fidelity": sum(map(sum, fids)) / max(1, sum(map(len, fids))),
    "werner_formula": chain_fidelity([LINK_FIDELITY] * hops[0])}))
"""
SIZES = {"chain": 10_000, "grid": 100}


def run_one(kind: str, pairs: int = 10, size: int | None = None, span: int = 1000) -> dict:
    """One network in a fresh process; its figures as a dict."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _CHILD, kind, str(size or SIZES[kind]), str(pairs),
                           str(span)], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{kind}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def run(kinds=("chain", "grid"), pairs: int = 10) -> dict:
    return {kind: run_one(kind, pairs) for kind in kinds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", default=["chain", "grid"])
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(run(tuple(args.kinds), args.pairs), indent=2))
