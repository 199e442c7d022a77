"""Teleport a few random qubit states from alice to bob and print their fidelities.

Two nodes 5 km apart, one heralded sender-receiver link whose pairs are Werner
states of fidelity ``PAIR_FIDELITY``; the full stack runs on both nodes (link
layer, end-to-end circuits, teleportation transport). Teleporting over a Werner
pair of fidelity F is a depolarising channel, so every state must arrive with
fidelity exactly (2F + 1)/3 -- 1 for a perfect link.

    python examples/teleport.py                 # F = 1 and F = 0.9
    python examples/teleport.py --states 10 --seed 3

The module-level ``APPS`` run under ``qstack sim NETWORK.toml examples/teleport.py``
too; bob then returns his received qubits' descriptions.
"""
from __future__ import annotations

import argparse
import math
import struct
import sys

import numpy as np

import qstack.api as api

PORT = 7
PAIR_FIDELITY = 0.9
N_STATES = 5
#: The states alice sends, as Bloch angles (theta, phi): uniform on the sphere,
#: fixed so that a run is reproducible whatever the seed of the simulation.
_rng = np.random.default_rng(2024)
STATES = [(math.acos(1 - 2 * _rng.random()), 2 * math.pi * _rng.random()) for _ in range(N_STATES)]


def network(pair_fidelity: float = PAIR_FIDELITY, formalism: str = "dm",
            memory: int = 16) -> dict:
    """The two-node network as a dict (the same schema as a TOML file).

    bob keeps every qubit he receives, so his memory must hold them all plus
    the half of the next pair: ``memory`` > the number of states sent.
    """
    return {
        "formalism": formalism,
        # Memories without decay: the fidelity is the link's alone.
        "defaults": {"node": {"memory": memory, "t1_s": "inf", "t2_s": "inf"},
                     "link": {"scheme": "sender-receiver", "length_km": 5,
                              "false_herald_prob": 0.0, "pair_fidelity": pair_fidelity}},
        "nodes": ["alice", "bob"],
        "links": [["alice", "bob"]],
    }


def ket(theta: float, phi: float) -> np.ndarray:
    """cos(theta/2)|0> + e^{i phi} sin(theta/2)|1>."""
    return np.array([math.cos(theta / 2), np.exp(1j * phi) * math.sin(theta / 2)])


def make_apps(states: list[tuple[float, float]], measure: bool = False) -> dict:
    """alice prepares each state and teleports it, its angles in the header's
    metadata; bob returns ``(theta, phi, qubit)`` for each qubit he receives
    (unmeasured, so that the caller can look at its state), or with
    ``measure`` the outcome of measuring each along its own state's direction
    (0 with probability its fidelity: what hardware, or an emulated network,
    can tell without looking at the state)."""

    async def alice(ctx):
        async with await ctx.connect("bob", PORT) as sock:
            for theta, phi in states:
                q = ctx.qubit()
                q.ry(theta)
                q.rz(phi)
                await sock.send_qubit(q, metadata=struct.pack("<dd", theta, phi))
                ctx.log("sent (%.3f, %.3f)", theta, phi)

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        got = []
        for _ in states:
            q = await sock.recv_qubit()
            theta, phi = struct.unpack("<dd", q.metadata)
            got.append(await q.measure((theta, phi)) if measure else (theta, phi, q))
        return got

    return {"alice": alice, "bob": bob}


APPS = make_apps(STATES)


def run(pair_fidelity: float, states=STATES, seed: int = 1, formalism: str = "dm") -> dict:
    """Teleport ``states``; returns the fidelity of each received qubit (read
    off the simulator's state engine) and the closed form."""
    net = network(pair_fidelity, formalism, memory=max(4, len(states) + 2))
    # until_s: a safety net -- an application that waits forever (e.g. for a
    # pair that a full memory can never hold) is reported, not run for ever.
    res = api.simulate(net, make_apps(states), seed=seed, until_s=10)
    res.raise_errors()
    fids = []
    for theta, phi, q in res.results["bob"]:
        psi = ket(theta, phi)
        rho = res.net.engine.density_matrix([q.ref])
        fids.append(float(np.real(psi.conj() @ rho @ psi)))
    return {"fidelities": fids, "expected": (2 * pair_fidelity + 1) / 3,
            "states": [(t, p) for t, p, _ in res.results["bob"]], "result": res}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--states", type=int, default=N_STATES)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    states = [(math.acos(1 - 2 * rng.random()), 2 * math.pi * rng.random())
              for _ in range(args.states)]
    for f in (1.0, PAIR_FIDELITY):
        out = run(f, states, seed=args.seed)
        res = out["result"]
        print(f"link pair fidelity F = {f}: expected (2F+1)/3 = {out['expected']:.6f}")
        print(f"  {'theta':>7} {'phi':>7} {'fidelity':>9}")
        for (theta, phi), fid in zip(out["states"], out["fidelities"]):
            print(f"  {theta:7.3f} {phi:7.3f} {fid:9.6f}")
        print(f"  {len(out['fidelities'])} qubits in {res.end_ns / 1e6:.3f} ms simulated, "
              f"{res.wall_s:.2f} s wall\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
