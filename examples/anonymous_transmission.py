"""Anonymous transmission of a qubit (Christandl and Wehner 2005): dave gets it, nobody learns who sent it.

Four nodes share GHZ_4 states made by the network. In each run a random one
of alice, bob and charlie sends RY(theta)|0> to dave: a private
notification tells dave alone that he receives, the GHZ state becomes an
anonymous pair between sender and dave, and the qubit is teleported over
it with its two bits through a DC-net. Printed: dave's fidelity (read from
the simulator; exact for Werner pairs) and, for each sender, how often the
public announcements of the entanglement step had even parity -- the same,
whoever sent (the statistical test is tests/test_app_anonymous_transmission.py).
Under noise dave's fidelity is a little higher when alice, the centre that
fuses the GHZ states, sends: her qubit carries no pair's error.

    python examples/anonymous_transmission.py               # 60 runs, F = 0.97
    qstack sim examples/group.toml examples/anonymous_transmission.py
"""
from __future__ import annotations

import argparse
import collections
import math
import sys

import qstack.api as api
from qstack.app import anonymous_transmission as at, multipartite as mp

PORT = 47
NAMES = ["alice", "bob", "charlie", "dave"]
THETA = 1.1


def make_apps(senders: list[str], peek: bool = True, names: list[str] = NAMES,
              receiver: str = "dave", views: bool = False, port: int = PORT) -> dict:
    """Run ``senders[k]`` -> ``receiver`` for each k over the group ``names``;
    the receiver returns the fidelity of each qubit (``peek``; or its
    outcome measured along the state sent), the others their step-2
    announcements; with ``views`` every member returns its Transmission
    records instead (the receiver's with ``view["fidelity"]``)."""
    ket = [math.cos(THETA / 2), math.sin(THETA / 2)]

    async def member(ctx):
        group = await mp.open_group(ctx, names, port)
        out = []
        for s in senders:
            if ctx.name == s:
                q = ctx.qubit()
                q.ry(THETA)
                t = await at.transmit(group, q, receiver)
            else:
                t = await at.transmit(group)
            if t.qubit is None:
                out.append(t if views else t.view["announced"])
            elif peek:
                t.view["fidelity"] = t.qubit.fidelity_to(ket)
                t.qubit.discard()
                out.append(t if views else t.view["fidelity"])
            else:
                out.append(await t.qubit.measure((THETA, 0.0)))
        await group.gather(b".")
        await group.close()
        return out

    return {m: member for m in names}


APPS = make_apps(["alice", "charlie", "bob"], peek=False)   # dave: 0 = the state arrived


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--fidelity", type=float, default=0.97)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    import numpy as np

    rng = np.random.default_rng(args.seed)
    senders = [NAMES[int(i)] for i in rng.integers(3, size=args.runs)]
    res = api.simulate(mp.mesh_network(NAMES, args.fidelity, formalism="dm"),
                       make_apps(senders), seed=args.seed, until_s=600)
    res.raise_errors()
    fids = res.results["dave"]
    print(f"anonymous transmission, {args.runs} runs, pairs of F = {args.fidelity}")
    print(f"  dave's fidelity: mean {sum(fids) / len(fids):.5f}, "
          f"min {min(fids):.5f}, max {max(fids):.5f}")
    even = collections.defaultdict(list)
    for s, view in zip(senders, res.results["charlie"]):
        if s != "charlie":                 # (the sender knows)
            even[s].append(sum(view) % 2 == 0)
    print("  charlie's view, share of even announcement parity, by sender: "
          + ", ".join(f"{s} {sum(v) / len(v):.2f} ({len(v)})" for s, v in sorted(even.items())))
    print(f"  {res.end_ns / 1e9:.3f} s simulated, {res.wall_s:.2f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
