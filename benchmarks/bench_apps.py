"""Applications over the simulated network: how many runs per wall second.

Each ``bench_*`` function measures one application and returns its figures;
:func:`run` collects every one of them (so that another application's
benchmark is one more function here).

* ``bench_leader``: leader elections per wall second among n = 3, 5, 8
  nodes (a full mesh of 1 km sender-receiver links giving Werner pairs of
  F = 0.95, the whole stack on every node, formalism "bd"), for the
  W-state election (one W_n per attempt: n - 1 teleportations and n(n - 1)
  messages), the GHZ-coin elimination and the classical random-ID
  baseline; the wall time of the applications' run (the simulator's
  ``wall_s``), best of 2, and the attempts per election. The W election
  slows with n as the engine's density matrix of the W state being
  teleported grows (up to n + 2 qubits, 4^(n+2) entries, at the last
  teleportation): its Bell measurements dominate at n = 8.

Run:  python -m benchmarks.bench_apps     (prints JSON)
"""
from __future__ import annotations

import json
import sys

import qstack.api as api
from qstack.app import leader, multipartite as mp

PROTOCOLS = {"w": leader.w_election, "coin": leader.coin_election,
             "classical": leader.classical_election}


def _elections(protocol: str, n: int, count: int, seed: int) -> tuple[float, float]:
    """(wall s of the run, attempts per election) of ``count`` elections."""
    names = [f"n{i}" for i in range(n)]
    elect = PROTOCOLS[protocol]

    async def member(ctx):
        group = await mp.open_group(ctx, names, 40)
        out = [await elect(group) for _ in range(count)]
        await group.close()
        return out

    res = api.simulate(mp.mesh_network(names, 0.95, formalism="bd"), {m: member for m in names},
                       seed=seed, until_s=3600, settle_s=0)
    res.raise_errors()
    return res.wall_s, sum(e.attempts for e in res.results[names[0]]) / count


def bench_leader(sizes: tuple[int, ...] = (3, 5, 8), repeats: int = 2) -> dict:
    """Elections per wall second for each protocol and n (best of ``repeats``)."""
    out: dict = {}
    for protocol in PROTOCOLS:
        _elections(protocol, min(sizes), 5, seed=0)      # warm-up (imports, caches), not timed
        for n in sizes:
            count = {3: 200, 5: 60, 8: 20}.get(n, 20)
            best, attempts = float("inf"), 0.0
            for r in range(repeats):
                wall, attempts = _elections(protocol, n, count, seed=r + 1)
                best = min(best, wall)
            out[f"{protocol}_n{n}_elections_per_s"] = round(count / best, 1)
            out[f"{protocol}_n{n}_attempts_per_election"] = round(attempts, 3)
    return out


def run() -> dict:
    """Every ``bench_*`` of this module, by name."""
    here = sys.modules[__name__]
    return {name[len("bench_"):]: fn() for name, fn in sorted(vars(here).items())
            if name.startswith("bench_") and callable(fn)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
