"""Anonymous transmission (qstack.app.anonymous_transmission, Christandl-Wehner 2005).

Four members c (the centre), a, b, d; d receives, a or b sends (chosen per
run); the applications are examples/anonymous_transmission.py's. Correctness: d holds the sent state (peeked from the simulator), with
fidelity 1 on perfect pairs and, under noise, the value of the Pauli
channel composed here (two Werner channels for S's and R's qubits, a Z flip
of probability 2(1 - F)/3 for the other leaf). Anonymity: a chi-square test
of independence (0.001) between who sent and each part of c's and of d's
view must not reject; the same test rejects a view that names the sender.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import qstack.api as api
from qstack.app import anonymous_transmission as at, multipartite as mp
from qstack.core.errors import ErrorCode, QStackError
from tests.test_examples import load

ALPHA = 0.001
MEMBERS = ["c", "a", "b", "d"]
THETA = load("anonymous_transmission").THETA   # the state sent: RY(THETA)|0>, Bloch (sin, 0, cos)


def run(senders: list[str], f: float = 1.0, seed: int = 1) -> dict:
    # the example's applications (every member's Transmission records)
    apps = load("anonymous_transmission").make_apps(senders, names=MEMBERS, receiver="d",
                                                    views=True, port=43)
    res = api.simulate(mp.mesh_network(MEMBERS, f, formalism="dm"), apps, seed=seed,
                       until_s=3600)
    res.raise_errors()
    return res.results


def pauli_mix(*dists):
    """The distribution (I, X, Y, Z) of the product of independent Pauli errors."""
    table = {(0, 0): 0, (1, 0): 1, (1, 1): 2, (0, 1): 3}          # (x, z) bits -> index
    out = np.array([1.0, 0, 0, 0])
    for d in dists:
        new = np.zeros(4)
        for (x1, z1), i in table.items():
            for (x2, z2), j in table.items():
                new[table[(x1 ^ x2, z1 ^ z2)]] += out[i] * d[j]
        out = new
    return out


def test_the_receiver_gets_the_qubit_and_only_it_is_notified():
    senders = ["a", "b", "a"]
    out = run(senders)
    for k in range(len(senders)):
        assert [out[m][k].receiver for m in MEMBERS] == [False, False, False, True]
        assert out["d"][k].view["fidelity"] == pytest.approx(1.0, abs=1e-9)


def test_fidelity_under_noise():
    f = 0.9
    out = run(["a", "b"], f)
    q = (1 - f) / 3
    werner = [f, q, q, q]
    flip = [1 - 2 * q, 0, 0, 2 * q]
    p_i, p_x, p_y, p_z = pauli_mix(werner, werner, flip)
    expected = p_i + p_x * math.sin(THETA) ** 2 + p_z * math.cos(THETA) ** 2
    for k in range(2):
        assert out["d"][k].view["fidelity"] == pytest.approx(expected, abs=1e-9)   # exact state


def test_no_member_learns_the_sender():
    rng = np.random.default_rng(7)
    senders = ["a" if x else "b" for x in rng.integers(2, size=160)]
    out = run(senders, seed=2)
    idx = [0 if s == "a" else 1 for s in senders]

    def independent(cells: list[int]) -> float:
        table = np.zeros((2, max(cells) + 1))
        for i, c in zip(idx, cells):
            table[i, c] += 1
        table = table[:, table.sum(axis=0) > 0]
        return stats.chi2_contingency(table).pvalue

    def code(bits):
        return int("".join(map(str, bits)), 2)

    for observer in ("c", "d"):
        views = [t.view for t in out[observer]]
        assert independent([code(v["notify"][:3]) for v in views]) > ALPHA
        assert independent([code(v["announced"]) for v in views]) > ALPHA
        assert independent([code(v["dcnet"][0]) for v in views]) > ALPHA
        assert independent([code(v["dcnet"][1]) for v in views]) > ALPHA
    # a view with the sender's own announcement and outcome slot would give it away
    assert independent([int(t.view["outcome"] is None) for t in out["a"]]) < ALPHA


def test_bad_calls_are_refused():
    async def app(ctx):
        group = await mp.open_group(ctx, ["a", "b"], 43)
        codes = []
        for args in ((ctx.qubit(), None), (None, "b"), (ctx.qubit(), "a"), (ctx.qubit(), "z")):
            try:
                await at.transmit(group, *args)
            except QStackError as err:
                codes.append(err.code)
        return codes

    async def other(ctx):
        await mp.open_group(ctx, ["a", "b"], 43)

    res = api.simulate(mp.mesh_network(["a", "b"]), {"a": app, "b": other}, seed=1, until_s=1)
    assert res.results["a"] == [ErrorCode.INVALID_PARAMETER] * 4
