"""Benchmark: 10,000-node networks build and run (issue 22).

A chain of 10,000 nodes and a 100 x 100 grid (:func:`qstack.sim.chain.build_chain`,
:func:`~qstack.sim.chain.build_grid`: the chain benchmark's links and stack,
EGP under QNP on every node) each deliver ``pairs`` end-to-end pairs between
their ends (the chain's two ends; the grid's opposite corners, 198 hops).
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
from qstack.sim.chain import LINK_FIDELITY, build_chain, build_grid
kind, size, pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
if kind == "chain":
    net, names, ends = build_chain(size, stop_after=pairs)
    hops = size - 1
else:
    net, names, ends = build_grid(size, size, stop_after=pairs)
    hops = 2 * (size - 1)
head, tail = ends[names[0]], ends[names[-1]]
net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
t1 = time.perf_counter()
net.run(until_ns=10**13)
t2 = time.perf_counter()
got = min(len(head.oks), len(tail.oks))
fids = [ok.fidelity for ok in tail.oks]
print(json.dumps({
    "network": kind, "nodes": len(names), "links": len(net.links), "hops": hops, "pairs": got,
    "build_s": round(t1 - t0, 2), "run_s": round(t2 - t1, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "events": net.sim.events_fired, "sim_time_ms": round(net.sim.now / 1e6, 3),
    "errors": len(net.errors + head.errors + tail.errors),
    "mean_fidelity": sum(fids) / max(1, len(fids)),
    "werner_formula": chain_fidelity([LINK_FIDELITY] * hops)}))
"""

SIZES = {"chain": 10_000, "grid": 100}


def run_one(kind: str, pairs: int = 10, size: int | None = None) -> dict:
    """One network in a fresh process; its figures as a dict."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _CHILD, kind, str(size or SIZES[kind]), str(pairs)],
                          cwd=root, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def run(kinds=("chain", "grid"), pairs: int = 10) -> dict:
    return {kind: run_one(kind, pairs) for kind in kinds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", default=["chain", "grid"])
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(run(tuple(args.kinds), args.pairs), indent=2))
