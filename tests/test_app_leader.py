"""Leader election (qstack.app.leader): agreement, fairness, noise, anonymity.

Statistical checks use a fixed seed and a significance level of 0.001: a
chi-square test of the counts against the closed form must not reject
(p > 0.001). A fair election is uniform over the members; under Werner
noise each attempt's outcome (one leader, none, several) follows
:mod:`qstack.app.leader.theory`, re-derived here by enumerating the flip
patterns (not with the module's formulas). Each test that expects
acceptance is paired with a check that the same test rejects a plainly
wrong hypothesis on the same data, so that it can fail.
"""
from __future__ import annotations

import collections
import itertools

import pytest
from scipy import stats

import qstack.api as api
from qstack.app import leader, multipartite as mp
from qstack.app.leader import anonymous, theory
from qstack.core.errors import ErrorCode, QStackError

ALPHA = 0.001


def elections(kind: str, n: int, count: int, f: float = 1.0, seed: int = 1) -> list:
    names = ["n%d" % i for i in range(n)]
    fn = {"w": leader.w_election, "coin": leader.coin_election,
          "classical": leader.classical_election}[kind]

    async def app(ctx):
        group = await mp.open_group(ctx, names, 40)
        out = [await fn(group) for _ in range(count)]
        await group.close()
        return out

    res = api.simulate(mp.mesh_network(names, f, formalism="bd"), {m: app for m in names},
                       seed=seed, until_s=3600)
    res.raise_errors()
    first = res.results[names[0]]
    assert all(res.results[m] == first for m in names)      # every member agrees
    return first


def enumerate_w(f: float, n: int) -> tuple[float, float, float, list[float]]:
    """P(one), P(none), P(several) and each member's share of P(one), by
    enumerating where the excitation is and which leaves flip (prob r each)."""
    r = 2 * (1 - f) / 3
    one = none = 0.0
    share = [0.0] * n
    for j in range(n):
        for flips in itertools.product((0, 1), repeat=n - 1):
            p = (1 / n) * r ** sum(flips) * (1 - r) ** (n - 1 - sum(flips))
            bits = [int(i == j) ^ (flips[i - 1] if i else 0) for i in range(n)]
            if sum(bits) == 1:
                one += p
                share[bits.index(1)] += p
            elif sum(bits) == 0:
                none += p
    return one, none, 1 - one - none, [s / one for s in share]


def test_theory_matches_the_enumeration():
    for n, f in ((2, 0.8), (3, 0.9), (5, 0.7), (8, 0.95)):
        one, none, several, share = enumerate_w(f, n)
        assert theory.w_outcome_probs(f, n) == pytest.approx((one, none, several), abs=1e-12)
        assert theory.w_leader_probs(f, n) == pytest.approx(share, abs=1e-12)
    # classical ties, by counting all M^n draws (n = 3, M = 4: 64 draws)
    draws = list(itertools.product(range(4), repeat=3))
    ties = sum(sorted(d)[-1] == sorted(d)[-2] for d in draws)
    assert theory.classical_tie_prob(3, 2) == pytest.approx(ties / len(draws), abs=1e-12)


@pytest.mark.parametrize("kind,n,count", [("w", 3, 240), ("coin", 3, 120), ("classical", 5, 300)])
def test_elections_are_fair(kind, n, count):
    out = elections(kind, n, count)
    counts = collections.Counter(e.leader for e in out)
    observed = [counts["n%d" % i] for i in range(n)]
    assert sum(observed) == count
    assert stats.chisquare(observed).pvalue > ALPHA
    # the same data rejects an election in which one member wins 60 % of the time
    biased = [0.6 * count] + [0.4 * count / (n - 1)] * (n - 1)
    assert stats.chisquare(observed, biased).pvalue < ALPHA
    if kind == "w":
        assert all(e.attempts == 1 and not e.failures for e in out)   # perfect W: one attempt
    if kind == "coin":
        # only phantom draws fail without noise: P = 1/4 for n = 3 (indices 0..3)
        fails = sum(len(e.failures) for e in out)
        assert set(f for e in out for f in e.failures) <= {"phantom"}
        attempts = sum(e.attempts for e in out)
        assert stats.binomtest(fails, attempts, 0.25).pvalue > ALPHA


def test_classical_ties_follow_the_closed_form():
    n, bits, count = 5, 3, 300
    names = ["n%d" % i for i in range(n)]

    async def app(ctx):
        group = await mp.open_group(ctx, names, 40)
        return [await leader.classical_election(group, id_bits=bits) for _ in range(count)]

    res = api.simulate(mp.mesh_network(names), {m: app for m in names}, seed=2, until_s=3600)
    res.raise_errors()
    out = res.results["n0"]
    ties = sum(len(e.failures) for e in out)
    attempts = sum(e.attempts for e in out)
    assert stats.binomtest(ties, attempts, theory.classical_tie_prob(n, bits)).pvalue > ALPHA


@pytest.mark.parametrize("n,f", [(3, 0.8), (3, 0.92)])
def test_w_election_under_noise_detects_and_repeats(n, f):
    out = elections("w", n, 200, f, seed=3)
    failures = collections.Counter(x for e in out for x in e.failures)
    observed = [len(out), failures["none"], failures["several"]]
    one, none, several, share = enumerate_w(f, n)
    total = sum(observed)
    assert stats.chisquare(observed, [total * one, total * none, total * several]).pvalue > ALPHA
    # with the noise ignored (every attempt succeeds) the same data is rejected
    assert stats.binomtest(len(out), total, 0.999).pvalue < ALPHA
    leaders = collections.Counter(e.leader for e in out)
    assert stats.chisquare([leaders["n%d" % i] for i in range(n)],
                           [len(out) * s for s in share]).pvalue > ALPHA


def test_coin_disagreement_follows_the_closed_form():
    n, f = 3, 0.85
    out = elections("coin", n, 100, f, seed=4)
    # every attempt draws k = 2 coins; an attempt shows a disagreement iff one
    # of its coins does: 1 - (1 - d)^2 with d the per-GHZ rate (r = 0.1 here)
    r = 2 * (1 - f) / 3
    d = 1 - (1 - r) ** (n - 1)
    p_attempt = 1 - (1 - d) ** 2
    attempts = sum(e.attempts for e in out)
    disagree = sum(x == "disagree" for e in out for x in e.failures)
    assert theory.ghz_disagree_prob(f, n) == pytest.approx(d, abs=1e-12)
    assert stats.binomtest(disagree, attempts, p_attempt).pvalue > ALPHA
    assert stats.binomtest(disagree, attempts, 0.0001).pvalue < ALPHA


class _Port:
    """A socket as the anonymous program may see it: send and receive only
    (asking who is behind it raises)."""

    def __init__(self, sock):
        self._sock = sock
        self.send, self.recv, self.recv_qubit = sock.send, sock.recv, sock.recv_qubit

    def __getattr__(self, name):
        raise AssertionError(f"the anonymous program asked its port for {name!r}")


def anonymous_run(n: int, count: int, f: float = 1.0, seed: int = 1):
    cands = ["c%d" % i for i in range(n)]

    async def cand(ctx):
        group = await mp.open_group(ctx, ["src"] + cands, 41, centre="src")
        ports = [_Port(group.socks[m]) for m in group.others if m != "src"]
        src = _Port(group.socks["src"])
        return [await anonymous.elect(src, ports) for _ in range(count)]

    async def src(ctx):
        group = await mp.open_group(ctx, ["src"] + cands, 41)
        return [await anonymous.serve_w(ctx, [group.socks[m] for m in cands])
                for _ in range(count)]

    apps = {m: cand for m in cands}
    apps["src"] = src
    res = api.simulate(mp.mesh_network(["src"] + cands, f, formalism="bd"), apps,
                       seed=seed, until_s=3600)
    res.raise_errors()
    return [[res.results[m][i] for m in cands] for i in range(count)], res.results["src"]


def test_anonymous_election_is_exact_on_perfect_w_and_fair():
    n, count = 3, 150
    runs, made = anonymous_run(n, count)
    assert made == [1] * count                       # one W state per election, always
    winners = []
    for views in runs:
        assert sum(v.leader for v in views) == 1     # exactly one leader ...
        assert all(v.attempts == 1 and v.counts == [1] for v in views)   # ... at once
        winners.append([v.leader for v in views].index(True))
    observed = list(collections.Counter(winners)[i] for i in range(n))
    assert stats.chisquare(observed).pvalue > ALPHA


def test_anonymous_election_repeats_under_noise():
    runs, made = anonymous_run(3, 40, f=0.8, seed=5)
    for views, w_states in zip(runs, made):
        assert sum(v.leader for v in views) == 1
        assert all(v.attempts == w_states for v in views)
        assert all(c != 1 for c in views[0].counts[:-1]) and views[0].counts[-1] == 1
    assert sum(made) > len(made)                     # some attempt failed and was repeated


def test_bad_arguments_are_refused():
    async def app(ctx):
        group = await mp.open_group(ctx, ["a"], 40)
        codes = []
        for call in (lambda: leader.w_election(group, max_attempts=0),
                     lambda: leader.classical_election(group, id_bits=0),
                     lambda: leader.coin_election(group, max_attempts=1.5)):
            try:
                await call()
            except QStackError as err:
                codes.append(err.code)
        return codes, (await leader.classical_election(group)).leader

    res = api.simulate(mp.mesh_network(["a", "b"]), {"a": app}, seed=1, until_s=1)
    assert res.results["a"] == ([ErrorCode.OUT_OF_RANGE, ErrorCode.OUT_OF_RANGE,
                                 ErrorCode.BAD_FIELD], "a")
