"""Leader election among n nodes: from W states, GHZ coins, random IDs, and anonymously.

Every node runs the same application; the group's centre (the first node)
fuses GHZ states and prepares W states from the network's pairs
(``qstack.app.multipartite``), and every node ends with the same leader
(``qstack.app.leader``). Without noise a W election takes one W state,
whatever n; with pairs of fidelity F < 1 an attempt can show no leader or
several, which every node sees, and it is repeated: the printed rates are
set against the closed forms of ``qstack.app.leader.theory``, and the
leaders' counts against a fair election (chi-square).

    python examples/leader_election.py                       # W, n = 4, F = 0.95
    python examples/leader_election.py --protocol coin --n 5 --elections 100
    python examples/leader_election.py --protocol anonymous --fidelity 0.9
    qstack sim examples/group.toml examples/leader_election.py   # APPS: 4 nodes, W

(``anonymous``: the candidates have no names in the protocol; a further node,
the source, supplies the W states.)
"""
from __future__ import annotations

import argparse
import collections
import sys

import qstack.api as api
from qstack.app import leader, multipartite as mp
from qstack.app.leader import anonymous, theory

PORT = 44
NAMES = ["alice", "bob", "charlie", "dave", "eve", "frank", "grace", "heidi", "ivan"]
PROTOCOLS = {"w": leader.w_election, "coin": leader.coin_election,
             "classical": leader.classical_election}


def make_apps(protocol: str, names: list[str], elections: int, brief: bool = False) -> dict:
    """Apps for ``names``: each runs ``elections`` elections and returns the
    list of :class:`~qstack.app.leader.Election` (for "anonymous", the first
    name is the source and the others' results are AnonymousElection);
    ``brief``: the leaders' names only."""
    if protocol == "anonymous":
        source, cands = names[0], names[1:]

        async def cand(ctx):
            return await anonymous.candidate(ctx, cands, source, PORT, elections)

        async def src(ctx):
            return await anonymous.source(ctx, cands, PORT, elections)

        apps = {m: cand for m in cands}
        apps[source] = src
        return apps
    elect = PROTOCOLS[protocol]

    async def member(ctx):
        group = await mp.open_group(ctx, names, PORT)
        out = [await elect(group) for _ in range(elections)]
        await group.close()
        return [e.leader for e in out] if brief else out

    return {m: member for m in names}


APPS = make_apps("w", NAMES[:4], 10, brief=True)


def run(protocol: str = "w", n: int = 4, elections: int = 200, fidelity: float = 0.95,
        seed: int = 1) -> dict:
    """Run the elections; returns the leaders' counts (by name, or by
    candidate for "anonymous"), the attempts' outcomes, and the run."""
    names = NAMES[:n + (protocol == "anonymous")]
    res = api.simulate(mp.mesh_network(names, fidelity, formalism="bd"),
                       make_apps(protocol, names, elections), seed=seed, until_s=3600)
    res.raise_errors()
    if protocol == "anonymous":
        cands = names[1:]
        leaders = collections.Counter(
            next(m for m in cands if res.results[m][i].leader) for i in range(elections))
        attempts = sum(res.results[names[0]])
        failures = attempts - elections
        outcomes = {"repeated": failures}
    else:
        cands = names
        out = res.results[names[0]]
        leaders = collections.Counter(e.leader for e in out)
        attempts = sum(e.attempts for e in out)
        outcomes = collections.Counter(f for e in out for f in e.failures)
    return {"leaders": {m: leaders[m] for m in cands}, "attempts": attempts,
            "outcomes": dict(outcomes), "elections": elections, "result": res}


def main(argv: list[str] | None = None) -> int:
    from scipy import stats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=[*PROTOCOLS, "anonymous"], default="w")
    parser.add_argument("--n", type=int, default=4, help="candidates (2..8)")
    parser.add_argument("--elections", type=int, default=200)
    parser.add_argument("--fidelity", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 2 <= args.n <= 8:
        parser.error("--n: 2..8")
    out = run(args.protocol, args.n, args.elections, args.fidelity, args.seed)
    res, n, f = out["result"], args.n, args.fidelity
    print(f"{args.protocol} leader election, n = {n}, {args.elections} elections, "
          f"pairs of fidelity {f}")
    counts = list(out["leaders"].values())
    print("  leaders: " + ", ".join(f"{m} {c}" for m, c in out["leaders"].items())
          + f"   (chi-square vs uniform: p = {stats.chisquare(counts).pvalue:.3f})")
    print(f"  attempts {out['attempts']}, failed and repeated: {out['outcomes']}")
    if args.protocol in ("w", "anonymous"):
        one, none, several = theory.w_outcome_probs(f, n, source=args.protocol == "anonymous")
        a = out["attempts"]
        if args.protocol == "anonymous":
            print(f"  success per attempt: {args.elections / a:.4f} (closed form {one:.4f})")
        else:
            print(f"  per attempt: one {args.elections / a:.4f} (closed form {one:.4f}), "
                  f"none {out['outcomes'].get('none', 0) / a:.4f} ({none:.4f}), "
                  f"several {out['outcomes'].get('several', 0) / a:.4f} ({several:.4f})")
    elif args.protocol == "coin":
        print(f"  a GHZ coin disagrees with probability {theory.ghz_disagree_prob(f, n):.4f}")
    else:
        print(f"  tie probability (8-bit IDs): {theory.classical_tie_prob(n, 8):.5f}")
    print(f"  {res.end_ns / 1e9:.3f} s simulated, {res.wall_s:.2f} s wall, "
          f"{args.elections / res.wall_s:.0f} elections per wall second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
