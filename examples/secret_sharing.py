"""Quantum secret sharing over GHZ states (Hillery, Bužek, Berthiaume 1999): alice deals, bob and charlie rebuild.

alice, bob and charlie share GHZ_3 states made by the network, measure each
in X or Y at random and announce only their bases; on the rounds with an
even number of Y (half of them) bob and charlie together know alice's bit,
either alone nothing. A few kept rounds are announced to estimate the error
rate, (1 - (1 - 2r)^2)/2 with r = 2(1 - F)/3 over pairs of fidelity F;
alice then sends her secret one-time-padded with the key (over noisy
pairs the rebuilt key, and so the secret, has that share of wrong bits:
error correction as in ``qstack.app.qkd`` would come next, not done here).

    python examples/secret_sharing.py                     # 600 rounds, F = 1
    python examples/secret_sharing.py --fidelity 0.95     # with errors
    qstack sim examples/group.toml examples/secret_sharing.py
"""
from __future__ import annotations

import argparse
import sys

import qstack.api as api
from qstack.app import multipartite as mp, secret_sharing as qss

PORT = 46
NAMES = ["alice", "bob", "charlie"]
SECRET = b"qstack"


def make_apps(rounds: int, check: int, secret: bytes = SECRET) -> dict:
    """alice deals; bob and charlie each return their share, and charlie
    (given bob's share over their connection) the secret they rebuild."""
    bits = [(byte >> i) & 1 for byte in secret for i in range(8)]

    async def member(ctx):
        group = await mp.open_group(ctx, NAMES, PORT)
        share = await qss.share_rounds(group, "alice", rounds, check)
        n = min(len(bits), len(share.key))
        if ctx.name == "alice":
            await group.broadcast(bytes(b ^ k for b, k in zip(bits[:n], share.key)))
            out = {"key_bits": len(share.key), "check_errors": share.check_errors,
                   "checked": share.checked}
        else:
            padded = await group.socks["alice"].recv()
            if ctx.name == "bob":                     # bob gives charlie his share
                await group.socks["charlie"].send(bytes(share.key))
                out = {"key_bits": len(share.key)}
            else:
                theirs = await group.socks["bob"].recv()
                bob = qss.Share("bob", "alice", share.bases, [], share.kept, list(theirs),
                                share.signs)
                key = qss.reconstruct([bob, share])
                got = [p ^ k for p, k in zip(padded, key)]
                out = {"secret": bytes(sum(got[8 * j + i] << i for i in range(8))
                                       for j in range(len(got) // 8))}
        await group.gather(b".")
        await group.close()
        return out

    return {m: member for m in NAMES}


APPS = make_apps(200, 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--fidelity", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    res = api.simulate(mp.mesh_network(NAMES, args.fidelity, formalism="bd"),
                       make_apps(args.rounds, args.rounds // 10), seed=args.seed, until_s=600)
    res.raise_errors()
    a, c = res.results["alice"], res.results["charlie"]
    print(f"HBB secret sharing: {args.rounds} GHZ_3 rounds over pairs of F = {args.fidelity}")
    print(f"  key bits {a['key_bits']} (about half the rounds, less {a['checked']} checked)")
    print(f"  error rate on the checked rounds {a['check_errors'] / max(1, a['checked']):.4f}"
          f"  (closed form {qss.error_rate(args.fidelity, 3):.4f})")
    wrong = sum(bin(x ^ y).count("1") for x, y in zip(SECRET, c["secret"]))
    print(f"  alice's secret {SECRET!r}, as bob and charlie rebuild it: {c['secret']!r} "
          f"({wrong} wrong bits)")
    print(f"  {res.end_ns / 1e9:.3f} s simulated, {res.wall_s:.2f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
