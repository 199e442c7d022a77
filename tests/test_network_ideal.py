"""The ideal network layer (``network.ideal``, qstack/network/ideal.py) as a
sans-I/O protocol on the simulator's virtual links: what it delivers, and its
answers to deadlines, cancels, expiries, jitter and crashes."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from qstack.core.errors import ErrorCode
from qstack.core.protocol import Protocol, on
from qstack.network.service import NetCancel, NetErr, NetExpire, NetOk, NetRequest
from qstack.physical.device import NodeHardware
from qstack.sim.apps import IdealNetwork
from qstack.sim.network import SimNetwork


class Log(Protocol):
    """Stands above ``network.ideal`` and writes down what it hears."""

    name = "test.log"

    def __init__(self, node):
        super().__init__(node)
        self.events = []

    @on(NetOk, NetErr, NetExpire)
    def _any(self, ev, now_ns):
        self.events.append((now_ns, ev))


def build(seed=1, slots=8, jitter_ns=0, delay_ns=20_000, **kw):
    net = SimNetwork(seed=seed, jitter_ns=jitter_ns)
    for n in ("a", "r", "b"):
        net.add_node(n, NodeHardware(num_qubits=slots, t1_ns=math.inf, t2_ns=math.inf))
    net.add_link("a", "r", classical_delay_ns=delay_ns)
    net.add_link("r", "b", classical_delay_ns=delay_ns)
    ideal = IdealNetwork(net, **kw)
    ideal.install()
    logs = {n: net.add_protocol(n, Log(n)) for n in net.nodes}
    return net, ideal, logs


def oks(log):
    return [ev for _, ev in log.events if isinstance(ev, NetOk)]


def test_pairs_between_non_neighbours_are_werner_pairs_in_random_bell_states():
    """Both ends get the same pair id and Bell index; the pair's state is the
    Werner state of the configured fidelity on that Bell state (exact, the
    engine's state compared to 1e-12: only rounding)."""
    net, ideal, logs = build(fidelity=0.9, interval_ns=100_000, random_interval=True, slots=64)
    net.submit("a", NetRequest("b", number=40), to="network.ideal")
    net.run()
    at_a, at_b = oks(logs["a"]), oks(logs["b"])
    assert len(at_a) == len(at_b) == 40
    assert [(o.pair_id, o.bell_index) for o in at_a] == [(o.pair_id, o.bell_index) for o in at_b]
    assert at_a[-1].request_done and at_b[-1].request_done
    assert {o.bell_index for o in at_a} == {0, 1, 2, 3}      # 40 draws: P(missing one) < 1e-4
    for o_a, o_b in zip(at_a, at_b):
        f = net.engine.bell_fidelity(o_a.qubit, o_b.qubit, o_a.bell_index)
        assert f == pytest.approx(0.9, abs=1e-12)
    # both ends hear of a pair at once, one classical delay (a to b over r:
    # 40 us) after it is made, and the first no sooner than the tail's
    # follower (the IdealOpen's 40 us) and that delay
    times = {n: [t for t, ev in logs[n].events if isinstance(ev, NetOk)] for n in ("a", "b")}
    assert times["a"] == times["b"]
    assert times["a"][0] >= 80_000
    ideal_protocols = [net.node(n).protocol("network.ideal") for n in net.nodes]
    assert all(not p.opens and not p._following for p in ideal_protocols)


def test_a_deadline_ends_the_request_at_both_ends_and_frees_nothing_held():
    net, ideal, logs = build(interval_ns=1_000_000)
    net.submit("a", NetRequest("b", number=10, max_time_ns=3_500_000), to="network.ideal")
    net.run()
    errs = [ev for _, ev in logs["a"].events if isinstance(ev, NetErr)]
    assert [e.code for e in errs] == [ErrorCode.NET_TIMEOUT]
    assert len(oks(logs["a"])) == len(oks(logs["b"])) == 3
    for n in ("a", "b"):
        p = net.node(n).protocol("network.ideal")
        assert not p.opens and not p._following and len(p.held) == 3


def test_a_cancel_ends_at_once_and_the_tail_stops_following():
    net, ideal, logs = build(interval_ns=1_000_000)
    net.submit("a", NetRequest("b", number=10, request_id=4), to="network.ideal")
    net.run(until_ns=2_500_000)
    net.submit("a", NetCancel(4), to="network.ideal")
    net.run()
    errs = [ev for _, ev in logs["a"].events if isinstance(ev, NetErr)]
    assert [(e.code, e.request_id) for e in errs] == [(ErrorCode.NET_CIRCUIT_TORN_DOWN, 4)]
    assert len(oks(logs["a"])) == 2
    for n in ("a", "b"):
        p = net.node(n).protocol("network.ideal")
        assert not p.opens and not p._following and not p._ops
    assert net.node("b").device.used_slots == 2      # the two delivered halves, nothing more


def test_full_memory_waits_for_a_free_slot():
    """Two slots at each end, four pairs asked for: two come, the rest after
    the layer above frees its halves (here: an expiry at both ends)."""
    net, ideal, logs = build(slots=2, interval_ns=100_000)
    net.submit("a", NetRequest("b", number=4), to="network.ideal")
    net.run(until_ns=5_000_000)
    assert len(oks(logs["a"])) == 2
    for key in list(ideal.pairs):
        ideal.expire(key)
    net.run(until_ns=20_000_000)
    assert len(oks(logs["a"])) == len(oks(logs["b"])) == 4
    expired = [ev for _, ev in logs["b"].events if isinstance(ev, NetExpire)]
    assert len(expired) == 2


def test_a_crashed_tail_ends_the_request():
    net, ideal, logs = build(interval_ns=1_000_000)
    net.submit("a", NetRequest("b", number=10), to="network.ideal")
    net.run(until_ns=2_500_000)
    net.crash_node("b")
    net.run(until_ns=60_000_000)
    errs = [ev for _, ev in logs["a"].events if isinstance(ev, NetErr)]
    assert len(errs) == 1 and errs[0].code in (ErrorCode.NET_CIRCUIT_TORN_DOWN,
                                               ErrorCode.NET_TIMEOUT)
    assert not net.node("a").protocol("network.ideal").opens


def test_an_injected_refusal_is_answered_with_its_code():
    net, ideal, logs = build(fail=lambda node, req: ErrorCode.NET_UNREACHABLE_FIDELITY)
    net.submit("a", NetRequest("b", number=1), to="network.ideal")
    net.run()
    (_, err), = logs["a"].events
    assert isinstance(err, NetErr) and err.code == ErrorCode.NET_UNREACHABLE_FIDELITY


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), jitter=st.integers(0, 200_000),
       number=st.integers(1, 6), both_ways=st.booleans())
def test_under_jitter_every_pair_reaches_both_ends_once(seed, jitter, number, both_ways):
    """Messages jittered by up to 200 us against a 20 us hop: heralds can beat
    the IdealOpen (orphans). Invariant: each end delivers each pair once, with
    the same id and Bell index, and at the end no request or follower is open."""
    net, ideal, logs = build(seed=seed, jitter_ns=jitter, interval_ns=10_000,
                             random_interval=True, slots=16)
    net.submit("a", NetRequest("b", number=number), to="network.ideal")
    if both_ways:
        net.submit("b", NetRequest("a", number=number), to="network.ideal")
    net.run()
    for head, tail in (("a", "b"), ("b", "a")) if both_ways else (("a", "b"),):
        mine = sorted((o.pair_id.seq, o.bell_index) for o in oks(logs[head])
                      if o.pair_id.head == head)
        theirs = sorted((o.pair_id.seq, o.bell_index) for o in oks(logs[tail])
                        if o.pair_id.head == head)
        assert mine == theirs == sorted(mine)
        assert [s for s, _ in mine] == list(range(number))
    for n in net.nodes:
        p = net.node(n).protocol("network.ideal")
        assert not p.opens and not p._following and not p._orphans


@pytest.mark.parametrize("ideal_fidelity", [1.0, 0.8])
def test_neighbours_with_a_physical_link_get_the_ideal_layers_pairs(ideal_fidelity):
    # Regression: the simulator's inline Entangle path sent a virtual
    # link's request to the physical link between two neighbours, so pairs
    # had the link's fidelity (0.9 here), not the ideal layer's. Teleporting
    # |+> over a Werner pair of fidelity F arrives with fidelity (2F + 1)/3.
    import qstack.api as api

    net = {"formalism": "dm",
           "defaults": {"node": {"memory": 4, "t1_s": "inf", "t2_s": "inf"},
                        "link": {"scheme": "sender-receiver", "length_km": 1,
                                 "false_herald_prob": 0.0, "pair_fidelity": 0.9}},
           "nodes": ["a", "b"], "links": [["a", "b"]]}

    async def a(ctx):
        async with await ctx.connect("b", 3) as sock:
            q = ctx.qubit()
            q.h()
            await sock.send_qubit(q)

    async def b(ctx):
        return [await (await ctx.listen(3).accept()).recv_qubit()]

    res = api.simulate(net, {"a": a, "b": b}, network_layer="ideal",
                       ideal_fidelity=ideal_fidelity)
    (q,) = res.results["b"]
    rho = res.net.engine.density_matrix([q.ref])
    assert float(rho[0, 1].real + 0.5) == pytest.approx((2 * ideal_fidelity + 1) / 3, abs=1e-9)
    assert q.fidelity == pytest.approx(ideal_fidelity)
    assert sum(link.pairs_heralded for link in res.net.links.values()) == 0
