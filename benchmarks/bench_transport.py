"""Benchmark: teleported qubits per second of wall time (transport layer).

alice teleports ``qubits`` qubits to bob over ``examples/three_nodes.toml``'s
topology -- alice -- repeater -- bob, two 25 km sender-receiver links making
Werner pairs of F = 0.95, memories without decay -- and bob measures each.
The full stack runs on every node (``link.egp``, ``network.qnp`` with the
repeater swapping, ``transport.qtp``) via :func:`qstack.api.simulate`, once
with Bell-diagonal states ("bd") and once with density matrices ("dm"); for
comparison the same applications run over :class:`qstack.sim.apps.IdealNetwork`
(``network_layer="ideal"``: end-to-end Werner pairs handed out on request, no
links, no repeater), which leaves the transport and the state engine alone
in the loop.

Each full-stack figure sums ``runs`` simulations of ``qubits`` (200) qubits
each, seeds 1, 2, ...: every ``send_qubit`` here opens one end-to-end
circuit, and in the tree this was written against a finished circuit left a
link-layer queue item behind, so one run of many hundred sequential
teleportations overflowed the link queue (256 items). Short runs measure the
same rate either way.

Figures: ``qubits_per_wall_s`` (qubits delivered / wall seconds of the run,
network set-up excluded), ``wall_s``, ``sim_time_s``, ``events`` (kernel
events fired), ``link_pairs``, ``fidelity_mean`` (the network's estimate).

    python -m benchmarks.bench_transport            # prints JSON
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import qstack.api as api
from qstack.network.theory import werner_swap

NETWORK = Path(__file__).resolve().parents[1] / "examples" / "three_nodes.toml"
F_LINK = 0.95
PORT = 7


def _apps(n: int) -> dict:
    async def alice(ctx):
        sock = await ctx.connect("bob", PORT)
        for i in range(n):
            q = ctx.qubit()
            if i & 1:
                q.x()
            await sock.send_qubit(q)
        await sock.close()

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        errors = 0
        for i in range(n):
            q = await sock.recv_qubit()
            errors += (await q.measure()) != (i & 1)
        return errors

    return {"alice": alice, "bob": bob}


def teleport_run(qubits: int, formalism: str, network_layer: str = "qnp", runs: int = 1) -> dict:
    """Teleport ``qubits`` qubits alice -> bob in each of ``runs`` simulations
    (seeds 1..runs); the summed figures as a dict."""
    options = {}
    if network_layer == "ideal":
        options = {"ideal_fidelity": werner_swap(F_LINK, F_LINK), "ideal_interval_ns": 100_000}
    delivered = errors = events = link_pairs = 0
    wall = setup = sim_s = fid = 0.0
    for seed in range(1, runs + 1):
        t0 = time.perf_counter()
        res = api.simulate(NETWORK, _apps(qubits), seed=seed, formalism=formalism,
                           network_layer=network_layer, **options)
        total = time.perf_counter() - t0
        res.raise_errors()
        n = res.metrics["qubits_delivered"]
        delivered += n
        errors += res.results["bob"]
        wall += res.wall_s
        setup += total - res.wall_s
        sim_s += res.end_ns * 1e-9
        events += getattr(res.net.sim, "events_fired", 0)
        link_pairs += res.metrics["link_pairs"]
        fid += res.metrics["fidelity_mean"] * n
    return {
        "network_layer": network_layer, "formalism": formalism, "runs": runs,
        "qubits": delivered,
        "qubits_per_wall_s": round(delivered / wall, 1),
        "wall_s": round(wall, 3), "setup_s": round(setup, 3),
        "sim_time_s": round(sim_s, 4),
        "events": events,
        "link_pairs": link_pairs,
        "fidelity_mean": round(fid / max(1, delivered), 6),
        "bit_error_rate": round(errors / max(1, delivered), 4),
    }


def run(qubits: int = 200, runs_bd: int = 10, runs_dm: int = 5, qubits_ideal: int = 5000) -> dict:
    """The benchmark: full stack (bd, dm) and the ideal network layer (bd, dm)."""
    return {
        "full_stack": [teleport_run(qubits, "bd", runs=runs_bd),
                       teleport_run(qubits, "dm", runs=runs_dm)],
        "ideal_network": [teleport_run(qubits_ideal, "bd", "ideal"),
                          teleport_run(qubits_ideal, "dm", "ideal")],
        "expected_fidelity": round(werner_swap(F_LINK, F_LINK), 6),
        "expected_bit_error_rate": round(2 * (1 - werner_swap(F_LINK, F_LINK)) / 3, 4),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
