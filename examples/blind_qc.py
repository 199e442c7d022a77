"""Blind quantum computation: alice has bob compute a circuit he never sees, and checks him.

alice (the client) compiles a 2-qubit circuit to a brickwork measurement
pattern and runs it on bob (the server) with ``qstack.app.bqc``: she sends
every qubit as ``|+_theta>`` with a secret theta in {k pi/4}, bob entangles
the brickwork with CZs and measures each qubit at the angle alice sends,
``delta = phi' + theta + r pi``, which is uniformly random whatever the
program. Verification hides test rounds (traps) among the computation
rounds: a server that deviates is caught with probability at least 1/2 per
test round.

    python examples/blind_qc.py                  # noiseless, a cheater, noise
    python examples/blind_qc.py --rounds 1000 --seed 3

The module-level ``APPS`` run under ``qstack sim examples/three_nodes.toml
examples/blind_qc.py`` (and ``qstack run``): there the end-to-end pairs
through the repeater have fidelity F1 F2 + (1 - F1)(1 - F2)/3 = 0.903, every
qubit arrives dephased with probability 2(1 - F)/3 = 0.065, and the traps
catch that noise as they would a cheater: alice rejects.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import Counter

import numpy as np

import qstack.api as api
from qstack.app import bqc

PORT = 11
#: H T^4 H = X on wire 0, then CNOT: |00> -> |11>, with T gates bob cannot see.
CIRCUIT = bqc.Circuit(2, [("h", 0), ("t", 0), ("t", 0), ("t", 0), ("t", 0), ("h", 0),
                          ("cnot", 0, 1)])
COMPUTATIONS, TESTS = 3, 6


def network(pair_fidelity: float = 1.0) -> dict:
    """alice -- bob, one 1 km link; memories that do not decay (the ideal
    network layer's pairs are then the only noise)."""
    return {"formalism": "dm",
            "defaults": {"node": {"memory": 16, "t1_s": "inf", "t2_s": "inf"},
                         "link": {"scheme": "sender-receiver", "length_km": 1,
                                  "false_herald_prob": 0.0, "pair_fidelity": pair_fidelity}},
            "nodes": ["alice", "bob"], "links": [["alice", "bob"]]}


def expected_distribution(circuit: bqc.Circuit) -> dict[tuple, float]:
    """The circuit's Z-basis output distribution on |0..0>, by a plain numpy
    state vector (independent of the pattern and of the network)."""
    n = circuit.wires
    h = np.array([[1, 1], [1, -1]]) / math.sqrt(2)
    one = {"h": h, "x": np.array([[0, 1], [1, 0]]), "z": np.diag([1, -1]),
           "s": np.diag([1, 1j]), "sdg": np.diag([1, -1j]),
           "t": np.diag([1, np.exp(1j * math.pi / 4)]), "tdg": np.diag([1, np.exp(-1j * math.pi / 4)])}
    psi = np.zeros((2,) * n, complex)
    psi[(0,) * n] = 1
    for g in circuit.gates:
        if g[0] == "cnot":
            c, t = g[1], g[2]
            idx = [slice(None)] * n
            idx[c] = 1
            psi[tuple(idx)] = np.flip(psi[tuple(idx)], axis=t if t < c else t - 1).copy()
            continue
        u = np.diag([1, np.exp(1j * math.pi / 4 * g[2])]) if g[0] == "rz" else one[g[0]]
        psi = np.moveaxis(np.tensordot(u, psi, axes=([1], [g[1]])), 0, g[1])
    probs = np.abs(psi.reshape(-1)) ** 2
    return {tuple(int(b) for b in np.binary_repr(i, n)): float(p)
            for i, p in enumerate(probs) if p > 1e-12}


def make_apps(circuit: bqc.Circuit = CIRCUIT, computations: int = COMPUTATIONS,
              tests: int = TESTS, deviation: bqc.Deviation | None = None) -> dict:
    """alice verifies ``circuit`` on bob: returns a summary of the
    :class:`~qstack.app.bqc.Verdict`; bob serves (dishonestly with
    ``deviation``) and returns how many angles he was told."""
    pattern = bqc.compile_circuit(circuit)

    async def alice(ctx):
        async with await ctx.connect("bob", PORT) as sock:
            verdict = await bqc.verify(ctx, sock, pattern, computations=computations,
                                       tests=tests)
        outputs = Counter(r.output for r in verdict.rounds if not r.is_test)
        ctx.log("%s: %d of %d test rounds failed; outputs %s",
                "accepted" if verdict.accepted else "rejected", verdict.failed_tests,
                verdict.tests, dict(outputs))
        return {"accepted": verdict.accepted, "output": verdict.output,
                "failed_tests": verdict.failed_tests, "tests": verdict.tests,
                "outputs": dict(outputs), "qubits": pattern.graph.size}

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        view = await bqc.serve(ctx, sock, deviation=deviation)
        return {"rounds": len(view.deltas), "angles": sum(len(d) for d in view.deltas)}

    return {"alice": alice, "bob": bob}


APPS = make_apps()


def run(deviation: bqc.Deviation | None = None, seed: int = 1, pair_fidelity: float = 1.0,
        **kw) -> api.SimulationResult:
    """Verify :data:`CIRCUIT` between alice and bob on :func:`network` (ideal
    network layer, Werner pairs of ``pair_fidelity``)."""
    res = api.simulate(network(), make_apps(deviation=deviation, **kw), seed=seed,
                       network_layer="ideal", ideal_fidelity=pair_fidelity)
    res.raise_errors()
    return res


def identity_success(rounds: int, pair_fidelity: float, seed: int = 1) -> float:
    """The fraction of rounds in which the identity on one row (5 qubits, read
    out in X) gives 0, over Werner pairs of ``pair_fidelity``."""
    pattern = bqc.Pattern(bqc.Brickwork(1, 1), (0,) * 5)

    async def alice(ctx):
        async with await ctx.connect("bob", PORT) as sock:
            res = await bqc.run_rounds(ctx, sock, pattern, rounds=rounds)
        return sum(r.output == (0,) for r in res) / rounds

    async def bob(ctx):
        await bqc.serve(ctx, await ctx.listen(PORT).accept())

    res = api.simulate(network(), {"alice": alice, "bob": bob}, seed=seed,
                       network_layer="ideal", ideal_fidelity=pair_fidelity)
    res.raise_errors()
    return res.results["alice"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=400, help="rounds per fidelity (noise table)")
    args = parser.parse_args(argv)
    pattern = bqc.compile_circuit(CIRCUIT)
    g = pattern.graph
    print(f"circuit: {len(CIRCUIT)} gates on {CIRCUIT.wires} qubits -> brickwork "
          f"{g.rows} x {g.columns} ({g.layers} brick layers, {g.size} qubits)")
    print(f"expected output (numpy state vector): {expected_distribution(CIRCUIT)}")

    res = run(seed=args.seed)
    a = res.results["alice"]
    print(f"\nhonest bob:  {'accepted' if a['accepted'] else 'REJECTED'}, "
          f"{a['failed_tests']}/{a['tests']} test rounds failed, output {a['output']}, "
          f"rounds' outputs {a['outputs']}  ({res.wall_s:.2f} s wall)")
    v = g.size // 2
    res = run(bqc.FlipOutcomes(1.0, qubits=[v]), seed=args.seed)
    a = res.results["alice"]
    print(f"cheating bob (flips qubit {v}'s bit): {'accepted' if a['accepted'] else 'rejected'}, "
          f"{a['failed_tests']}/{a['tests']} test rounds failed "
          f"(caught with probability 1 - 2^-{TESTS} = {1 - 2.0 ** -TESTS:.3f})")

    print(f"\nnoise: the identity on one row, {args.rounds} rounds per fidelity F of the pairs")
    print(f"  {'F':>5} {'success':>8} {'(1 + (1 - 2e)^3)/2, e = 2(1-F)/3':>34}")
    for f in (1.0, 0.95, 0.9, 0.8, 0.7):
        eps = 2 * (1 - f) / 3
        got = identity_success(args.rounds, f, seed=args.seed)
        sigma = math.sqrt(max(got * (1 - got), 1e-9) / args.rounds)
        print(f"  {f:5.2f} {got:8.3f} {(1 + (1 - 2 * eps) ** 3) / 2:34.3f}   (+- {sigma:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
