"""Teleport qubits from alice to bob through a repeater, and print the run's metrics.

The network is ``examples/three_nodes.toml``: alice -- repeater -- bob, two
25 km heralded links making Werner pairs of fidelity F = 0.95. Every node runs
the full stack; the repeater runs no application -- its network layer swaps
the two link pairs into an end-to-end pair alice-bob of fidelity
F1 F2 + (1 - F1)(1 - F2)/3, over which alice's transport teleports.

alice sends ``N_QUBITS`` qubits, each a random BB84 state (basis Z or X, bit 0
or 1, named in the header's metadata); bob measures each in its basis. A
teleported qubit comes out right with probability (2F_end + 1)/3, so bob's
error rate estimates 2(1 - F_end)/3.

    python examples/relay.py
    python examples/relay.py --qubits 500 --seed 4
    qstack sim examples/three_nodes.toml examples/relay.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import qstack.api as api
from qstack.network.theory import werner_swap

NETWORK = Path(__file__).resolve().parent / "three_nodes.toml"
PORT = 7
N_QUBITS = 200
LINK_FIDELITY = 0.95      # pair_fidelity in three_nodes.toml


def make_apps(n_qubits: int) -> dict:
    """alice teleports ``n_qubits`` random BB84 states; bob measures each in
    the basis the metadata names and returns (errors, qubits)."""

    async def alice(ctx):
        async with await ctx.connect("bob", PORT) as sock:
            for _ in range(n_qubits):
                basis, bit = int(ctx.rng.integers(2)), int(ctx.rng.integers(2))
                q = ctx.qubit()
                if bit:
                    q.x()
                if basis:
                    q.h()                 # |+> or |->
                await sock.send_qubit(q, metadata=bytes([basis, bit]))
        return n_qubits

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        errors = 0
        for _ in range(n_qubits):
            q = await sock.recv_qubit()
            basis, bit = q.metadata
            errors += (await q.measure("X" if basis else "Z")) != bit
        ctx.log("%d errors in %d qubits", errors, n_qubits)
        return {"errors": errors, "qubits": n_qubits}

    return {"alice": alice, "bob": bob}


APPS = make_apps(N_QUBITS)


def run(n_qubits: int = N_QUBITS, seed: int = 1, network=NETWORK,
        **options) -> api.SimulationResult:
    """Simulate the relay; raises the first application error, if any."""
    res = api.simulate(network, make_apps(n_qubits), seed=seed, until_s=120, **options)
    res.raise_errors()
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", type=int, default=N_QUBITS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--network", default=str(NETWORK), help="a TOML network file")
    args = parser.parse_args(argv)
    res = run(args.qubits, args.seed, args.network)
    bob = res.results["bob"]
    f_end = werner_swap(LINK_FIDELITY, LINK_FIDELITY)
    print(f"alice -> repeater -> bob: {bob['qubits']} qubits teleported")
    print(f"  bob's error rate     {bob['errors'] / bob['qubits']:.4f} "
          f"({bob['errors']} of {bob['qubits']})")
    print(f"  expected 2(1-F)/3    {2 * (1 - f_end) / 3:.4f}   "
          f"(F = {f_end:.4f}, two links of {LINK_FIDELITY} swapped)")
    print("\nmetrics (qstack.simulate):")
    print(res.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
