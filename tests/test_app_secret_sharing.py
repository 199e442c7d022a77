"""Quantum secret sharing (qstack.app.secret_sharing, Hillery-Bužek-Berthiaume 1999).

Correctness: the recipients together rebuild the dealer's key bit for bit
on perfect pairs. Security: on every kept round, one recipient's view (its
basis and outcome) is independent of the dealer's bit -- a chi-square test
of independence on the 2 x 4 table must not reject at 0.001, while the
recipients' joint XOR is (and must be) rejected as independent. Noise: the
share of wrong bits against (1 - (1 - 2r)^(n-1))/2, r = 2(1 - F)/3, derived
here from independent flips (binomial test, 0.001).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import qstack.api as api
from qstack.app import multipartite as mp, secret_sharing as qss
from qstack.core.errors import ErrorCode, QStackError

ALPHA = 0.001


def run(n: int, rounds: int, f: float = 1.0, check: int = 0, seed: int = 1) -> dict:
    names = ["dealer"] + ["r%d" % i for i in range(1, n)]

    async def app(ctx):
        group = await mp.open_group(ctx, names, 42)
        out = await qss.share_rounds(group, "dealer", rounds, check)
        await group.close()
        return out

    res = api.simulate(mp.mesh_network(names, f, formalism="bd"), {m: app for m in names},
                       seed=seed, until_s=3600)
    res.raise_errors()
    return res.results


def test_two_recipients_rebuild_the_dealers_key_and_one_alone_learns_nothing():
    out = run(3, 400)
    dealer, b, c = out["dealer"], out["r1"], out["r2"]
    assert dealer.kept == b.kept == c.kept
    assert stats.binomtest(len(dealer.kept), 400, 0.5).pvalue > ALPHA   # half the rounds kept
    assert qss.reconstruct([b, c]) == dealer.key and len(dealer.key) == len(dealer.kept)
    for one in (b, c):
        table = np.zeros((2, 4))
        for i, a in zip(one.kept, dealer.key):
            table[a, 2 * one.bases[one.member][i] + one.bits[i]] += 1
        assert stats.chi2_contingency(table).pvalue > ALPHA          # independent
    joint = np.zeros((2, 2))
    for a, x in zip(dealer.key, qss.reconstruct([b, c])):
        joint[a, x] += 1
    assert stats.chi2_contingency(joint).pvalue < ALPHA               # together: everything
    with pytest.raises(QStackError) as err:
        qss.reconstruct([b])
    assert err.value.code == ErrorCode.INVALID_PARAMETER


def test_four_members_all_recipients_needed():
    out = run(4, 200, seed=2)
    shares = [out[m] for m in ("r1", "r2", "r3")]
    assert qss.reconstruct(shares) == out["dealer"].key


@pytest.mark.parametrize("n,f", [(3, 0.85)])
def test_error_rate_under_noise(n, f):
    out = run(n, 400, f, check=60, seed=3)
    dealer = out["dealer"]
    wrong = sum(x != y for x, y in zip(qss.reconstruct([out["r1"], out["r2"]]), dealer.key))
    r = 2 * (1 - f) / 3
    # two leaves' flips: wrong iff exactly one flips
    e = 2 * r * (1 - r)
    assert qss.error_rate(f, n) == pytest.approx(e, abs=1e-12)
    total = len(dealer.key) + dealer.checked
    assert stats.binomtest(wrong + dealer.check_errors, total, e).pvalue > ALPHA
    assert stats.binomtest(wrong + dealer.check_errors, total, 0.01).pvalue < ALPHA
    assert all(out[m].check_errors == dealer.check_errors for m in out)  # all see the check
