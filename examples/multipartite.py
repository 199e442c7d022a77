"""GHZ and W states among n named nodes, made by the network from pairs, against their closed forms.

Every node opens the same group (``qstack.app.multipartite.open_group``);
the centre fuses one pair per other member into GHZ_n (CNOTs, Z
measurements, the outcomes sent, X corrections) and prepares W_n and
teleports its qubits. The delivered states' fidelities are read from the
simulator (an oracle no hardware has) and set against
F_GHZ = ((F + q)^(n-1) + (F - q)^(n-1))/2, q = (1 - F)/3, and the W formula
of the module (GHZ_3 from pairs of F = 0.95: 0.9028).

    python examples/multipartite.py                   # n = 3..6, F = 0.95 and 0.9
    qstack sim examples/group.toml examples/multipartite.py
        # APPS: five nodes measure GHZ_5 in X and W_5 in Z, 20 rounds; alice
        # returns the share of GHZ rounds with even X parity and of W rounds
        # with exactly one 1 (both 1 on perfect pairs)
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import qstack.api as api
from qstack.app import multipartite as mp

PORT = 45
NAMES = ["alice", "bob", "charlie", "dave", "eve", "frank"]


def fidelities(n: int, f: float, seed: int = 1) -> dict:
    """GHZ_n and W_n over pairs of fidelity ``f``: the simulator's fidelity
    of each state delivered, and the closed forms."""
    names = NAMES[:n]

    async def member(ctx):
        group = await mp.open_group(ctx, names, PORT)
        ghz = await group.ghz()
        w = await group.w()
        await group.gather(b".")          # all hold theirs before anyone returns
        await group.close()
        return ghz, w

    res = api.simulate(mp.mesh_network(names, f), {m: member for m in names}, seed=seed,
                       until_s=60)
    res.raise_errors()
    out = {}
    for k, kind in enumerate(("ghz", "w")):
        rho = res.net.engine.density_matrix([res.results[m][k].ref for m in names])
        psi = np.zeros(2 ** n)
        if kind == "ghz":
            psi[0] = psi[-1] = 2 ** -0.5
        else:
            psi[[1 << i for i in range(n)]] = n ** -0.5
        out[kind] = float(np.real(psi @ rho @ psi))
    out["ghz_closed"] = mp.ghz_fidelity(f, n)
    out["w_closed"] = mp.w_fidelity(f, n)
    return out


ROUNDS = 20


async def _measuring_member(ctx):
    group = await mp.open_group(ctx, NAMES[:5], PORT)
    even = single = 0
    for _ in range(ROUNDS):
        x = await (await group.ghz()).measure("X")
        z = await (await group.w()).measure("Z")
        bits = await group.gather(bytes([x, z]))
        even += sum(b[0] for b in bits.values()) % 2 == 0
        single += sum(b[1] for b in bits.values()) == 1
    await group.close()
    return {"ghz_even_x_parity": even / ROUNDS, "w_single_one": single / ROUNDS}


APPS = {m: _measuring_member for m in NAMES[:5]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fidelity", type=float, nargs="*", default=[0.95, 0.9])
    parser.add_argument("--n", type=int, nargs="*", default=[3, 4, 5, 6])
    args = parser.parse_args(argv)
    print(f"{'F':>5} {'n':>2}  {'GHZ sim':>8} {'closed':>8}  {'W sim':>8} {'closed':>8}")
    for f in args.fidelity:
        for n in args.n:
            out = fidelities(n, f)
            print(f"{f:5.2f} {n:2d}  {out['ghz']:8.5f} {out['ghz_closed']:8.5f}  "
                  f"{out['w']:8.5f} {out['w_closed']:8.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
