"""The CHSH game's randomness certificate (qstack.app.chsh, Pironio et al. 2010).

The bound is checked in its other form, the adversary's guessing
probability P_g = (1 + sqrt(2 - S^2/4))/2 and H_min = -log2 P_g, at its two
ends (no randomness at the local bound S = 2, one bit at Tsirelson's
2 sqrt2) and for monotonicity; the certificate of a network run is
checked against the bound at its own S - 3 sigma, and against the Werner
prediction of S (4 standard errors, as in test_examples).
"""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qstack.api as api
from qstack.app import chsh
from qstack.app.multipartite import mesh_network
from qstack.core.errors import ErrorCode, QStackError


@given(st.floats(2.0, 2 * math.sqrt(2)), st.floats(2.0, 2 * math.sqrt(2)))
def test_bound_is_minus_log_of_the_guessing_probability(s1, s2):
    for s in (s1, s2):
        p_guess = 0.5 + 0.5 * math.sqrt(max(0.0, 2 - s * s / 4))
        assert chsh.min_entropy_bound(s) == pytest.approx(-math.log2(p_guess), abs=1e-12)
    if s1 < s2:
        assert chsh.min_entropy_bound(s1) <= chsh.min_entropy_bound(s2)


def test_bound_at_its_ends():
    assert chsh.min_entropy_bound(2.0) == 0.0
    assert chsh.min_entropy_bound(1.2) == 0.0                    # local: nothing certified
    assert chsh.min_entropy_bound(2 * math.sqrt(2)) == pytest.approx(1.0, abs=1e-7)
    assert chsh.min_entropy_bound(3.0) == 1.0                    # an estimate past Tsirelson
    with pytest.raises(QStackError) as err:
        chsh.min_entropy_bound(float("nan"))
    assert err.value.code == ErrorCode.OUT_OF_RANGE


def test_a_network_run_certifies_what_its_s_allows():
    pairs, f = 2000, 0.97
    names = ["alice", "bob"]

    async def alice(ctx):
        async with await ctx.connect("bob", 9) as sock:
            return await chsh.play_alice(ctx, sock, pairs)

    async def bob(ctx):
        sock = await ctx.listen(9).accept()
        await chsh.play_bob(ctx, sock, pairs)
        await sock.close()

    res = api.simulate(mesh_network(names, f, memory=64, formalism="bd"),
                       {"alice": alice, "bob": bob}, seed=4, until_s=600)
    res.raise_errors()
    cert = chsh.randomness_check(res.results["alice"], sigmas=3)
    assert cert.rounds == pairs
    assert abs(cert.s - chsh.werner_s(f)) < 4 * cert.sigma       # sigma ~ 0.045
    assert cert.s_low == pytest.approx(cert.s - 3 * cert.sigma)
    assert cert.h_min == pytest.approx(chsh.min_entropy_bound(cert.s_low))
    assert cert.h_min > 0.2 and cert.bits == pytest.approx(pairs * cert.h_min)
    with pytest.raises(QStackError):
        chsh.randomness_check([(0, 0, 0, 0)])                    # three settings never played
