"""Trusted-node relay of BBM92 keys between non-neighbours (qstack.app.qkd.relay),
through the whole stack under qstack.simulate."""
from __future__ import annotations

import qstack
from qstack.app.qkd.entangled import EntangledConfig
from qstack.app.qkd.relay import relay_node

#: loose eps_sec and half the sifted pairs tested: a few thousand pairs per hop
#: then leave a key of some bytes (the finite-size term dominates small blocks)
CFG = EntangledConfig(test_fraction=0.5, eps_sec=1e-4)


def line(names: list[str]) -> dict:
    return {"formalism": "bd",
            "defaults": {"node": {"memory": 40, "t1_s": "inf", "t2_s": "inf"},
                         "link": {"scheme": "sender-receiver", "length_km": 5,
                                  "false_herald_prob": 0.0, "pair_fidelity": 0.99}},
            "nodes": names, "links": [[a, b] for a, b in zip(names, names[1:])]}


def run(names, key_bytes, pairs, seed=2):
    async def app(ctx):
        return await relay_node(ctx, names, key_bytes=key_bytes, pairs=pairs, config=CFG)
    res = qstack.simulate(line(names), {n: app for n in names}, seed=seed, until_s=600)
    res.raise_errors()
    return res.results


def test_relay_over_two_trusted_nodes():
    names = ["alice", "t1", "t2", "bob"]
    out = run(names, 8, 3000)
    a, b = out["alice"], out["bob"]
    assert a.ok and b.ok, (a.reason, b.reason)
    assert a.key == b.key and len(a.key) == 8
    assert a.trusted == b.trusted == ("t1", "t2")
    # the end-to-end key is the origin's first hop key (TrustedRelay's K1)
    assert a.key == a.hops["t1"].key_bytes()[:8]
    # it is none of the other hops' keys: those only padded it on their hop
    assert a.key != out["t2"].hops["bob"].key_bytes()[:8]
    for t in ("t1", "t2"):
        r = out[t]
        assert r.role == "trusted" and r.saw_key and r.key is None
        assert r.relay_id == a.relay_id
    # each hop's two ends agree on the hop key
    assert out["t1"].hops["t2"].key_bytes() == out["t2"].hops["t1"].key_bytes()


def test_relay_without_enough_hop_key_fails_with_a_reason_everywhere():
    names = ["alice", "t1", "bob"]
    out = run(names, 64, 400)            # 400 pairs: every hop's BBM92 leaves no key
    for n in names:
        r = out[n]
        assert not r.ok and r.key is None and r.reason, (n, r)
    assert "hop alice-t1" in out["alice"].reason


def test_a_bad_path_is_refused():
    import pytest
    import trio

    from qstack.app.qkd._common import QKDError
    from qstack.core.errors import ErrorCode

    class Ctx:
        name = "alice"

    for path in (["alice"], ["alice", "alice"], ["t1", "bob"]):
        with pytest.raises(QKDError) as exc:
            trio.run(lambda: relay_node(Ctx(), path, key_bytes=8, pairs=10))
        assert exc.value.code == ErrorCode.INVALID_PARAMETER
