"""The socket API in the simulator: teleportation fidelity, ordering, isolation, errors.

Fidelity checks use Werner pairs, for which teleportation is a depolarising
channel: every input state arrives with fidelity exactly (2F+1)/3, so the
checks are exact (1e-9), not statistical.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qstack.api as api
from qstack.core.errors import ErrorCode, QStackError
from qstack.network.theory import werner_swap
from qstack.physical.device import NodeHardware
from qstack.sim.apps import IdealNetwork, run_apps
from qstack.sim.network import SimNetwork
from qstack.transport.protocol import TeleportTransport
from qstack.transport.socket import TransportError, TransportTimeout

ANGLES = st.tuples(st.floats(0, math.pi), st.floats(0, 2 * math.pi))


def ideal_net(fidelity=1.0, formalism="dm", seed=1, interval_ns=100_000, random_interval=True,
              nodes=("alice", "bob"), **kw):
    net = SimNetwork(seed=seed, formalism=formalism)
    for n in nodes:
        # No memory decay; room for every qubit a test keeps unmeasured.
        net.add_node(n, NodeHardware(num_qubits=32, t1_ns=math.inf, t2_ns=math.inf))
    for a, b in zip(nodes, nodes[1:]):
        net.add_link(a, b, classical_delay_ns=20_000)
    ideal = IdealNetwork(net, fidelity=fidelity, interval_ns=interval_ns,
                         random_interval=random_interval, **kw)
    ideal.install()
    for n in nodes:
        net.add_protocol(n, TeleportTransport(n))
    net.ideal = ideal
    return net


def ket(theta, phi):
    return np.array([math.cos(theta / 2), np.exp(1j * phi) * math.sin(theta / 2)])


def teleport_apps(states, port=7):
    """alice prepares ry(theta) rz(phi)|0> for each state and sends them; bob
    returns the received qubits' references (unmeasured)."""

    async def alice(ctx):
        async with await ctx.connect("bob", port) as sock:
            for theta, phi in states:
                q = ctx.qubit()
                q.ry(theta)
                q.rz(phi)
                await sock.send_qubit(q)

    async def bob(ctx):
        sock = await ctx.listen(port).accept()
        return [(await sock.recv_qubit()).ref for _ in states]

    return {"alice": alice, "bob": bob}


def fidelities(engine, refs, states):
    out = []
    for ref, (theta, phi) in zip(refs, states):
        psi = ket(theta, phi)
        rho = engine.density_matrix([ref])
        out.append(float(np.real(psi.conj() @ rho @ psi)))
    return out


# ---------------------------------------------------------------- fidelity

@settings(max_examples=15)
@given(st.lists(ANGLES, min_size=1, max_size=4), st.integers(0, 2**16))
def test_random_states_over_one_link_arrive_with_fidelity_one(states, seed):
    net = ideal_net(1.0, seed=seed)
    run = run_apps(net, teleport_apps(states))
    assert not run.errors, run.errors
    assert fidelities(net.engine, run.results["bob"], states) == pytest.approx([1.0] * len(states),
                                                                                abs=1e-9)


@pytest.mark.parametrize("formalism", ["dm", "bd"])
@pytest.mark.parametrize("f", [0.95, 0.8, 0.6])
def test_werner_pairs_give_two_f_plus_one_over_three(f, formalism):
    rng = np.random.default_rng(7)
    states = [(math.acos(1 - 2 * rng.random()), 2 * math.pi * rng.random()) for _ in range(12)]
    net = ideal_net(f, formalism=formalism, seed=3)
    run = run_apps(net, teleport_apps(states))
    assert fidelities(net.engine, run.results["bob"], states) == \
        pytest.approx([(2 * f + 1) / 3] * len(states), abs=1e-9)


def repeater_spec(pair_fidelity, bell_index=0):
    """alice - repeater - bob over sender-receiver links that make exact
    Werner pairs (no false heralds), memories without decay."""
    return api.network_from_dict({
        "defaults": {"node": {"t1_s": "inf", "t2_s": "inf"},
                     "link": {"scheme": "sender-receiver", "length_km": 2,
                              "false_herald_prob": 0.0, "pair_fidelity": pair_fidelity,
                              "bell_index": bell_index}},
        "nodes": ["alice", "repeater", "bob"],
        "links": [["alice", "repeater"], ["repeater", "bob"]],
    })


@settings(max_examples=6)
@given(st.lists(ANGLES, min_size=1, max_size=3), st.integers(0, 2**16), st.sampled_from([0, 3]))
def test_random_states_over_a_repeater_arrive_with_fidelity_one(states, seed, bell):
    res = api.simulate(repeater_spec(1.0, bell), teleport_apps(states), seed=seed, formalism="dm")
    assert res.ok, res.errors
    assert fidelities(res.net.engine, res.results["bob"], states) == \
        pytest.approx([1.0] * len(states), abs=1e-9)


def test_werner_links_over_a_repeater_give_two_f_plus_one_over_three():
    f_link = 0.9
    rng = np.random.default_rng(11)
    states = [(math.acos(1 - 2 * rng.random()), 2 * math.pi * rng.random()) for _ in range(6)]
    res = api.simulate(repeater_spec(f_link, 3), teleport_apps(states), seed=5, formalism="dm")
    assert res.ok, res.errors
    f_end = werner_swap(f_link, f_link)
    assert res.metrics["fidelity_mean"] == pytest.approx(f_end, abs=1e-9)
    assert fidelities(res.net.engine, res.results["bob"], states) == \
        pytest.approx([(2 * f_end + 1) / 3] * len(states), abs=1e-9)


# ---------------------------------------------------------------- order and isolation

def test_items_arrive_in_order_with_their_metadata():
    n = 12
    net = ideal_net(1.0, seed=9, interval_ns=50_000)   # random intervals, random Bell states

    async def alice(ctx):
        sock = await ctx.connect("bob", 7)
        for i in range(n):
            q = ctx.qubit()
            if i % 2:
                q.x()
            await sock.send_qubit(q, metadata=i.to_bytes(2, "big"))
            await sock.send(b"after %d" % i)

    async def bob(ctx):
        sock = await ctx.listen(7).accept()
        out = []
        for _ in range(n):
            q = await sock.recv_qubit()
            out.append((int.from_bytes(q.metadata, "big"), await q.measure(), await sock.recv()))
        return out

    run = run_apps(net, {"alice": alice, "bob": bob})
    assert run.results["bob"] == [(i, i % 2, b"after %d" % i) for i in range(n)]


def test_two_applications_on_the_same_nodes_do_not_see_each_others_qubits():
    net = ideal_net(1.0, seed=4, interval_ns=30_000)

    def sender(port, bit):
        async def app(ctx):
            sock = await ctx.connect("bob", port)
            for _ in range(5):
                q = ctx.qubit()
                if bit:
                    q.x()
                await sock.send_qubit(q, metadata=bytes([port]))
        app.__name__ = f"send{port}"
        return app

    def receiver(port):
        async def app(ctx):
            sock = await ctx.listen(port).accept()
            got = []
            for _ in range(5):
                q = await sock.recv_qubit()
                got.append((q.metadata[0], await q.measure()))
            return got
        app.__name__ = f"recv{port}"
        return app

    run = run_apps(net, {"alice": [sender(7, 0), sender(8, 1)],
                         "bob": [receiver(7), receiver(8)]})
    assert not run.errors, run.errors
    assert run.results["bob:recv7"] == [(7, 0)] * 5
    assert run.results["bob:recv8"] == [(8, 1)] * 5


# ---------------------------------------------------------------- EPR pairs and bytes

@pytest.mark.parametrize("basis", ["Z", "X"])
def test_epr_pairs_are_phi_plus(basis):
    net = ideal_net(1.0, seed=2)

    async def alice(ctx):
        sock = await ctx.connect("bob", 5)
        return await sock.create_epr(8, measure=basis)

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        return await sock.recv_epr(8, measure=basis)

    run = run_apps(net, {"alice": alice, "bob": bob})
    assert run.results["alice"] == run.results["bob"]
    assert len(set(run.results["alice"])) == 2        # not all the same outcome


# ---------------------------------------------------------------- errors

def test_send_without_a_pair_in_time_raises_and_the_qubit_is_still_usable():
    net = ideal_net(1.0, interval_ns=10**9, random_interval=False)   # pairs far too slow

    async def alice(ctx):
        sock = await ctx.connect("bob", 7)
        q = ctx.qubit()
        q.x()
        try:
            await sock.send_qubit(q, timeout_ns=1_000_000)
        except TransportError as err:
            assert err.qubits == [q]
            q.x()                                      # still ours: back to |0>
            return err.code, await q.measure()
        return None

    async def bob(ctx):
        ctx.listen(7)
        await ctx.sleep(10**8)     # listening (an application that ends closes its sockets)

    run = run_apps(net, {"alice": alice, "bob": bob}, until_ns=10**10)
    assert run.results["alice"] == (ErrorCode.TRANSPORT_NO_PAIR, 0)


def test_permanent_network_error_raises_no_pair():
    net = ideal_net(1.0, fail=lambda node, req: ErrorCode.NET_NO_ROUTE)

    async def alice(ctx):
        sock = await ctx.connect("bob", 7)
        q = ctx.qubit()
        with pytest.raises(TransportError) as info:
            await sock.send_qubit(q)
        return info.value.code, q.alive

    async def bob(ctx):
        await ctx.listen(7).accept()     # (accepted: alice may send, and asks for a pair)
        await ctx.sleep(10**8)

    assert run_apps(net, {"alice": alice, "bob": bob}).results["alice"] == \
        (ErrorCode.TRANSPORT_NO_PAIR, True)


def test_connection_refused_and_receive_timeout():
    net = ideal_net()

    async def alice(ctx):
        with pytest.raises(TransportError) as refused:
            await ctx.connect("bob", 99)
        sock = await ctx.connect("bob", 7)
        with pytest.raises(TransportTimeout):
            await sock.recv_qubit(timeout_ns=1000)
        with pytest.raises(TimeoutError):
            await sock.recv(timeout_ns=1000)
        return refused.value.code

    async def bob(ctx):
        await ctx.listen(7).accept()
        await ctx.sleep(10**7)           # (were it to end, its socket would close)

    run = run_apps(net, {"alice": alice, "bob": bob})
    assert run.results["alice"] == ErrorCode.TRANSPORT_CONNECTION_REFUSED


def test_recv_after_peer_close_raises_closed_and_sent_qubit_is_gone():
    net = ideal_net()

    async def alice(ctx):
        sock = await ctx.connect("bob", 7)
        q = ctx.qubit()
        await sock.send_qubit(q)
        with pytest.raises(QStackError) as gone:
            q.h()
        await sock.close()
        return gone.value.code

    async def bob(ctx):
        sock = await ctx.listen(7).accept()
        await sock.recv_qubit()
        with pytest.raises(TransportError) as closed:
            await sock.recv_qubit()
        return closed.value.code

    run = run_apps(net, {"alice": alice, "bob": bob})
    assert run.results == {"alice": ErrorCode.QUBIT_UNAVAILABLE,
                           "bob": ErrorCode.TRANSPORT_CLOSED}


def test_listening_twice_on_a_port_is_refused():
    net = ideal_net()

    async def bob(ctx):
        ctx.listen(7)
        with pytest.raises(TransportError) as info:
            ctx.listen(7)
        return info.value.code

    assert run_apps(net, {"bob": bob}).results["bob"] == ErrorCode.TRANSPORT_PORT_IN_USE


def test_local_gates_cost_time():
    net = ideal_net()

    async def alice(ctx):
        q = ctx.qubit()        # init 1000 ns
        for _ in range(10):
            q.h()              # 100 ns each
        await q.measure()      # 2000 ns
        return ctx.now_ns

    assert run_apps(net, {"alice": alice}).results["alice"] == 1000 + 10 * 100 + 2000


def test_a_run_whose_memory_stays_full_stops_with_a_stall_error():
    """Bob keeps every qubit (12) in an 8-qubit memory: the ninth send can
    never get a pair. The run must end (stall detection), not spin for ever."""
    n = 12

    async def alice(ctx):
        async with await ctx.connect("bob", 7) as sock:
            for _ in range(n):
                q = ctx.qubit()
                await sock.send_qubit(q)

    async def bob(ctx):
        sock = await ctx.listen(7).accept()
        return [await sock.recv_qubit() for _ in range(n)]

    res = api.simulate({"nodes": ["alice", "bob"], "links": [["alice", "bob"]]},
                       {"alice": alice, "bob": bob}, seed=1, stall_s=5)
    assert set(res.errors) == {"alice", "bob"}
    assert all(isinstance(e, TimeoutError) and "stalled" in str(e) for e in res.errors.values())
    assert res.metrics["qubits_delivered"] == 8          # what fitted in bob's memory
    # The last progress is within the first simulated second; the watchdog
    # (period 5 s) sees a whole period without progress by 2 periods later.
    assert 5 * 10**9 <= res.end_ns <= 3 * 5 * 10**9


def test_a_stall_after_a_long_sleep_is_found_without_a_check_every_period():
    """The watchdog looks one period after the first sleeper wakes rather
    than every period of the sleep: alice sleeps 1,000 simulated seconds (2 x
    10^5 stall periods of 5 ms), then fills bob's memory as above. The stall is
    still reported soon after the wake, and the run costs a few
    thousand events, not 10^5 watchdog checks."""
    n, sleep_ns, stall_ns = 12, 10**12, 5 * 10**6

    async def alice(ctx):
        await ctx.sleep(sleep_ns)
        async with await ctx.connect("bob", 7) as sock:
            for _ in range(n):
                await sock.send_qubit(ctx.qubit())

    async def bob(ctx):
        sock = await ctx.listen(7).accept(timeout_ns=2 * sleep_ns)
        return [await sock.recv_qubit() for _ in range(n)]

    res = api.simulate({"nodes": ["alice", "bob"], "links": [["alice", "bob"]]},
                       {"alice": alice, "bob": bob}, seed=1, stall_s=stall_ns / 1e9)
    assert set(res.errors) == {"alice", "bob"}
    assert all(isinstance(e, TimeoutError) and "stalled" in str(e) for e in res.errors.values())
    # after the wake: the connection and eight sends (some ms), then the stall
    # is seen within two periods
    assert sleep_ns < res.end_ns <= sleep_ns + 100 * 10**6, res.end_ns
    assert res.net.sim.events_fired < 20_000, res.net.sim.events_fired
    assert res.metrics["qubits_delivered"] < n           # bob's memory is full


def test_a_sleeping_application_is_not_a_stall():
    async def sleeper(ctx):
        await ctx.sleep(20 * 10**9)      # 20 s, longer than the stall window
        return "awake"

    res = api.simulate({"nodes": ["alice"], "links": []}, {"alice": sleeper}, seed=1, stall_s=5)
    assert res.ok and res.results["alice"] == "awake"


def test_a_lost_epr_pair_is_reported_by_recv_epr_not_recv_qubit():
    """The pair behind an EPR header expires before bob binds it: recv_epr
    raises the loss, the qubit queue is left alone, and alice's create_epr
    fails with the same code (bob's acknowledgement says it was lost)."""
    from qstack.transport import service as svc

    net = ideal_net(1.0, seed=1, random_interval=False, far_delay_ns=0)
    seen = {}

    def expire_when_made(ev):
        # the pair is at bob, its header on the way (20 us): it expires at bob then
        if isinstance(ev, svc.EprArrived) and ev.initiator:
            net.sim.schedule(1, lambda: net.ideal.expire(next(iter(net.ideal.pairs)), at="bob"))

    net.node("alice").listeners.append(expire_when_made)

    async def alice(ctx):
        sock = await ctx.connect("bob", 5)
        with pytest.raises(TransportError) as info:
            await sock.create_epr(1)
        seen["alice"] = info.value.code
        await ctx.sleep(10_000_000)

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        with pytest.raises(TransportError) as info:
            await sock.recv_epr(1, timeout_ns=5_000_000)
        seen["epr"] = info.value.code
        with pytest.raises(TransportTimeout):
            await sock.recv_qubit(timeout_ns=1)

    run = run_apps(net, {"alice": alice, "bob": bob})
    assert not run.errors, run.errors
    assert seen == {"epr": ErrorCode.NET_CIRCUIT_TORN_DOWN,
                    "alice": ErrorCode.NET_CIRCUIT_TORN_DOWN}


# ---------------------------------------------------------------- giving up a connect

def transports(net):
    return {n: net.nodes[n].protocols["transport.qtp"] for n in net.nodes}


def accept_then_expect_reset(seen: dict):
    """bob's side: accept on port 7, then record the error his first recv raises."""
    async def bob(ctx):
        sock = await ctx.listen(7).accept()
        with pytest.raises(TransportError) as info:
            await sock.recv(timeout_ns=1_000_000)
        seen["bob"] = info.value.code
        await sock.close()
    return bob


def test_a_connect_that_times_out_leaves_no_half_open_connection():
    """alice gives up before bob's SynAck can come back (round trip 40 us):
    bob, who accepted, is told, and neither end keeps the connection."""
    net = ideal_net()
    seen = {}

    async def alice(ctx):
        with pytest.raises(TransportError) as info:
            await ctx.connect("bob", 7, timeout_ns=30_000)
        seen["alice"] = info.value.code
        await ctx.sleep(1_000_000)

    run = run_apps(net, {"alice": alice, "bob": accept_then_expect_reset(seen)})
    assert not run.errors, run.errors
    assert seen == {"alice": ErrorCode.TRANSPORT_TIMEOUT, "bob": ErrorCode.TRANSPORT_CLOSED}
    assert all(not t.conns for t in transports(net).values())


def test_closing_a_socket_while_it_connects_fails_the_connect():
    """One task of alice's closes the socket another is connecting: the
    connect raises TRANSPORT_CLOSED and no connection stays open anywhere."""
    net = ideal_net()
    shared, seen = {}, {}

    async def connector(ctx):
        sock = shared["sock"] = ctx.socket()
        with pytest.raises(TransportError) as info:
            await sock.connect("bob", 7)
        seen["connect"] = info.value.code
        with pytest.raises(TransportError) as info:
            await sock.send(b"x")
        seen["send"] = info.value.code
        await ctx.sleep(1_000_000)

    async def closer(ctx):
        await ctx.sleep(1_000)                    # the Syn is on its way
        await shared["sock"].close()

    run = run_apps(net, {"alice": [connector, closer], "bob": accept_then_expect_reset(seen)})
    assert not run.errors, run.errors
    assert seen == {"connect": ErrorCode.TRANSPORT_CLOSED, "send": ErrorCode.TRANSPORT_CLOSED,
                    "bob": ErrorCode.TRANSPORT_CLOSED}
    assert all(not t.conns for t in transports(net).values())


def test_ideal_network_expiry_never_overtakes_the_pair():
    """IdealNetwork.expire of a pair before its herald: neither end ever
    delivers it (each discards its half when the herald comes); after the
    heralds: each end delivers NetOk, then NetExpire (the tail when the head's
    IdealExpire reaches it, one classical delay later), as the network layer
    promises (no NetExpire before its NetOk)."""
    from qstack.core.protocol import Protocol, on
    from qstack.network.service import NetExpire, NetOk, NetRequest

    class Log(Protocol):
        name = "test.log"

        def __init__(self, node):
            super().__init__(node)
            self.events = []

        @on(NetOk, NetExpire)
        def _any(self, ev, now_ns):
            alive = ev.qubit.alive if isinstance(ev, NetOk) else None
            self.events.append((now_ns, type(ev).__name__, alive))

    def run(expire_at_ns):
        net = SimNetwork(seed=1)
        for n in ("alice", "bob"):
            net.add_node(n)
        net.add_link("alice", "bob", classical_delay_ns=20_000)
        ideal = IdealNetwork(net, interval_ns=1_000_000, far_delay_ns=1_000_000)
        ideal.install()
        logs = {n: net.add_protocol(n, Log(n)) for n in ("alice", "bob")}
        net.submit("alice", NetRequest("bob", number=1, request_id=3), to="network.ideal")
        net.run(until_ns=expire_at_ns)
        ideal.expire(("alice", 3, 0))
        net.run()
        assert all(net.node(n).device.used_slots == 0 for n in ("alice", "bob"))
        return logs["alice"].events, logs["bob"].events

    # bob's follower starts when the IdealOpen arrives (20 us); the pair is
    # heralded at both ends 1 ms (interval) + 1 ms (far delay) later
    assert run(1_500_000) == ([], [])
    assert run(2_500_000) == ([(2_020_000, "NetOk", True), (2_500_000, "NetExpire", None)],
                              [(2_020_000, "NetOk", True), (2_520_000, "NetExpire", None)])
