"""Applications over the simulated network: how many runs per wall second.

Each ``bench_*`` function measures one application and returns its figures;
:func:`run` collects every one of them (so that another application's
benchmark is one more function here).

* ``bench_bqc``: blind computations per wall second of a 2-qubit circuit on
  a brickwork of depth 4 (4 brick layers: 2 x 17 = 34 qubits, every one sent
  by the client, entangled and measured at the server, one angle message and
  one outcome message per column), client and server on two nodes 1 km
  apart, density matrices; ``rounds`` rounds on one connection, the
  applications' wall time (the simulator's ``wall_s``), best of
  ``repeats``. Variants: qubits teleported over the ideal network layer's
  pairs (``send_qubit``), prepared remotely from EPR halves
  (``create_epr``), and teleported over the full stack (the link layer's
  heralded pairs, ``network.qnp``).
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


def _bqc_network() -> dict:
    return {"formalism": "dm",
            "defaults": {"node": {"memory": 16, "t1_s": "inf", "t2_s": "inf"},
                         "link": {"scheme": "sender-receiver", "length_km": 1,
                                  "false_herald_prob": 0.0, "pair_fidelity": 1.0}},
            "nodes": ["client", "server"], "links": [["client", "server"]]}


def _bqc_run(pattern, rounds: int, remote: bool, layer: str, seed: int) -> float:
    """Wall seconds of ``rounds`` blind computations of ``pattern``."""
    from qstack.app import bqc

    async def client(ctx):
        async with await ctx.connect("server", 11) as sock:
            res = await bqc.run_rounds(ctx, sock, pattern, rounds=rounds, remote=remote)
        return [r.output for r in res]

    async def server(ctx):
        await bqc.serve(ctx, await ctx.listen(11).accept())

    res = api.simulate(_bqc_network(), {"client": client, "server": server}, seed=seed,
                       network_layer=layer, settle_s=0)
    res.raise_errors()
    return res.wall_s


def bench_bqc(rounds: int = 40, repeats: int = 3) -> dict:
    """Blind computations (and qubits) per wall second, best of ``repeats``."""
    from qstack.app import bqc

    circuit = bqc.Circuit(2, [("h", 0), ("t", 0), ("cnot", 0, 1), ("h", 1), ("s", 1),
                              ("t", 0), ("h", 0)])
    pattern = bqc.compile_circuit(circuit, layers=4)
    qubits = pattern.graph.size
    out: dict = {"qubits_per_computation": qubits, "rounds": rounds}
    for name, remote, layer in (("send_qubit_ideal", False, "ideal"),
                                ("remote_epr_ideal", True, "ideal"),
                                ("send_qubit_full_stack", False, "qnp")):
        best = min(_bqc_run(pattern, rounds, remote, layer, seed=r + 1) for r in range(repeats))
        out[f"{name}_computations_per_s"] = round(rounds / best, 1)
        out[f"{name}_qubits_per_s"] = round(rounds * qubits / best)
    return out


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
