"""A CHSH test on EPR pairs made by the network, against the Werner prediction.

alice asks the transport for EPR pairs with ``create_epr``, bob takes his
halves with ``recv_epr``; each measures every half at once in one of two
bases chosen at random (its own seeded random stream), bob sends his bases and
outcomes to alice over the same connection, and alice estimates

    S = E(a0, b0) + E(a0, b1) + E(a1, b0) - E(a1, b1)

with a0 = Z, a1 = X, b0, b1 = Z rotated by -/+ pi/4 towards X (all in the X-Z
plane, where the correlation of Phi+ is E(a, b) = cos(angle between a and b)).
On Phi+, S = 2 sqrt(2); on a Werner pair of fidelity F every correlation
shrinks by (4F - 1)/3, so S = 2 sqrt(2) (4F - 1)/3, which beats the local bound
2 for F > (1 + 3/sqrt(2))/4 ~ 0.78. alice also prints the randomness that S
certifies device-independently (Pironio et al., Nature 464, 1021 (2010):
1 - log2(1 + sqrt(2 - S^2/4)) bits per outcome, at S less three standard
errors; ``qstack.app.chsh``).

    python examples/chsh.py                 # 4000 pairs, F = 0.95
    python examples/chsh.py --pairs 20000 --fidelity 0.85
"""
from __future__ import annotations

import argparse
import math
import sys

import qstack.api as api
from qstack.app import chsh
from qstack.app.chsh import chsh_value, werner_s  # noqa: F401  (the example's figures)

PORT = 9
PAIRS = 4000
PAIR_FIDELITY = 0.95
#: alice asks for pairs in batches (one network request, one end-to-end
#: circuit each) and holds a batch's halves until the last is made.
BATCH = 50


def network(pair_fidelity: float = PAIR_FIDELITY, formalism: str = "bd") -> dict:
    """Two nodes 10 km apart; the link makes Werner pairs of ``pair_fidelity``
    (no false heralds), memories do not decay, so F is the pairs' fidelity."""
    return {
        "formalism": formalism,
        "defaults": {"node": {"memory": BATCH + 14, "t1_s": "inf", "t2_s": "inf"},
                     "link": {"scheme": "sender-receiver", "length_km": 10,
                              "false_herald_prob": 0.0, "pair_fidelity": pair_fidelity}},
        "nodes": ["alice", "bob"],
        "links": [["alice", "bob"]],
    }


def make_apps(pairs: int) -> dict:
    async def alice(ctx):
        async with await ctx.connect("bob", PORT) as sock:
            records = await chsh.play_alice(ctx, sock, pairs, BATCH)
        s, e, counts = chsh.chsh_value(records)
        cert = chsh.randomness_check(records)
        ctx.log("S = %.4f over %d pairs", s, len(records))
        return {"S": s, "E": e, "counts": counts, "pairs": len(records),
                "h_min": cert.h_min, "s_low": cert.s_low, "certified_bits": cert.bits}

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        await chsh.play_bob(ctx, sock, pairs)
        await sock.close()

    return {"alice": alice, "bob": bob}


APPS = make_apps(PAIRS)


def run(pairs: int = PAIRS, pair_fidelity: float = PAIR_FIDELITY, seed: int = 1,
        formalism: str = "bd") -> dict:
    """Run the test; alice's result plus the Werner prediction and the run."""
    if pairs > 65536:
        raise ValueError("bob reports in one message of at most 65536 bytes: pairs <= 65536")
    res = api.simulate(network(pair_fidelity, formalism), make_apps(pairs), seed=seed,
                       until_s=60)
    res.raise_errors()
    out = dict(res.results["alice"])
    out.update(expected=werner_s(pair_fidelity), fidelity=pair_fidelity, result=res)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--fidelity", type=float, default=PAIR_FIDELITY)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    out = run(args.pairs, args.fidelity, args.seed)
    res = out["result"]
    # Each E is a mean of N/4 outcomes +-1: its standard error is sqrt((1 - E^2)/n).
    sigma = math.sqrt(sum((1 - e * e) / max(1, n) for e, n in zip(out["E"], out["counts"])))
    print(f"CHSH over {out['pairs']} EPR pairs (link pairs: Werner, F = {args.fidelity})")
    for (i, j), e, n in zip([(0, 0), (0, 1), (1, 0), (1, 1)], out["E"], out["counts"]):
        print(f"  E(a{i}, b{j}) = {e:+.4f}   ({n} pairs)")
    print(f"  S measured          = {out['S']:.4f} +- {sigma:.4f} (1 sigma)")
    print(f"  2 sqrt2 (4F - 1)/3  = {out['expected']:.4f}")
    print(f"  local bound 2, Tsirelson bound 2 sqrt2 = {2 * math.sqrt(2):.4f}")
    print(f"  certified randomness (Pironio et al. 2010, at S - 3 sigma = {out['s_low']:.4f}): "
          f"{out['h_min']:.4f} bits per outcome, {out['certified_bits']:.0f} bits in all")
    print(f"  {res.end_ns / 1e9:.3f} s simulated, {res.wall_s:.2f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
