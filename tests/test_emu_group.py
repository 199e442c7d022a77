"""The group applications against the emulation (real processes): five node
daemons of examples/group.toml (a full mesh, Werner pairs of F = 0.95) and
a physics server, the examples' APPS run as under ``qstack run``.

Checks: every member agrees on the election's leaders; the
secret-sharing error rate over all kept rounds is within 4 binomial
standard errors of (1 - (1 - 2r)^2)/2, r = 2(1 - F)/3 (real time: the
outcomes are not reproducible draw for draw, so 4 sigma as in test_emu).
"""
from __future__ import annotations

import pytest

from qstack.app import multipartite as mp, secret_sharing as qss
from tests.test_emu import emulate, running, within
from tests.test_examples import EXAMPLES, load

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

GROUP = EXAMPLES / "group.toml"
F = 0.95


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with running(GROUP, tmp_path_factory.mktemp("group"), 5) as run:
        yield run


def test_leader_election_agrees_everywhere(net):
    out = emulate(load("leader_election").APPS, net)
    assert len({tuple(v) for v in out.values()}) == 1 and len(out["alice"]) == 10


def test_secret_sharing_error_rate(net):
    names = ["alice", "bob", "charlie"]

    async def member(ctx):
        group = await mp.open_group(ctx, names, 49)
        share = await qss.share_rounds(group, "alice", 100, check=100)   # every kept round
        await group.close()
        return share.check_errors, share.checked

    out = emulate({m: member for m in names}, net)
    errors, checked = out["alice"]
    assert out["bob"] == out["charlie"] == (errors, checked)
    assert within(errors, checked, qss.error_rate(F, 3))            # 0.064
