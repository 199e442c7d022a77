"""Each fault on its own (``specs/faults.md``), and recovery from it (issue 16, item 4).

The simulator's faults: a node crash with or without a restart, a link down
and up, a classical session reset, jitter; each checked for what the nodes
are told and when, and for the network working again afterwards.
"""
import pytest

import qstack
from qstack.core.errors import ConfigError, ErrorCode
from qstack.core.faults import Fault
from qstack.core.protocol import LinkDown, LinkUp, PeerDown, PeerUp, Protocol, on
from qstack.network.messages import CircuitTeardown
from qstack.sim.network import SimNetwork
from qstack.transport.socket import TransportError

CHAIN = {"nodes": ["a", "r", "b"], "links": [["a", "r"], ["r", "b"]]}


class Watcher(Protocol):
    """Records the events of the node's surroundings, with their times."""

    name = "test.watch"

    def __init__(self, node):
        super().__init__(node)
        self.seen = []

    @on(PeerDown, PeerUp, LinkDown, LinkUp)
    def _any(self, ev, now):
        self.seen.append((now, type(ev).__name__, ev.peer))


def watched(delay=1000, jitter=0):
    net = SimNetwork(seed=1, jitter_ns=jitter)
    for n in "arb":
        net.add_node(n, stack=lambda n=n: [Watcher(n)])
    net.add_link("a", "r", classical_delay_ns=delay)
    net.add_link("r", "b", classical_delay_ns=delay)
    return net


def events(net, node):
    return net.node(node).protocol("test.watch").seen


def test_crash_and_restart_are_told_after_the_delay():
    net = watched()
    net.schedule_faults([Fault("crash", 10_000, ("r",), 50_000)])
    net.run()
    for n in "ab":
        assert events(net, n) == [(11_000, "LinkDown", "r"), (11_000, "PeerDown", "r"),
                                  (61_000, "LinkUp", "r"), (61_000, "PeerUp", "r")]
    assert net.node("r").incarnation == 1 and events(net, "r") == []   # a fresh stack


def test_link_down_and_up_and_the_session_through_the_rest():
    net = watched()
    net.schedule_faults([Fault("link_down", 10_000, ("a", "r"), 30_000)])
    net.run()
    # a and r lose their link (and its session: a has no other path to r)
    assert events(net, "a") == [(10_000, "LinkDown", "r"), (10_000, "PeerDown", "r"),
                                (40_000, "LinkUp", "r"), (41_000, "PeerUp", "r")]


def test_a_session_reset_reconnects_after_a_round_trip():
    net = watched(delay=1000)
    net.reset_channel("a", "b")      # a and b are two hops apart: 2 us one way
    net.run()
    assert events(net, "a") == [(0, "PeerDown", "b"), (4_000, "PeerUp", "b")]
    assert events(net, "b") == [(0, "PeerDown", "a"), (4_000, "PeerUp", "a")]


def test_messages_in_flight_are_lost_and_the_sender_can_tell():
    """A message sent into a session that is down comes back Undeliverable."""
    import qstack.sim.network as simnet
    from qstack.core.protocol import SendMessage, Undeliverable
    from qstack.transport.messages import Syn

    class Probe(Watcher):
        @on(Undeliverable)
        def _u(self, ev, now):
            self.seen.append((now, "Undeliverable", ev.dst, ev.code))

    net = SimNetwork(seed=1)
    for n in "arb":
        net.add_node(n, stack=lambda n=n: [Probe(n)])
    net.add_link("a", "r", classical_delay_ns=1000)
    net.add_link("r", "b", classical_delay_ns=1000)
    net.crash_node("b")
    a = net.node("a")
    a._run[SendMessage]("test.watch", SendMessage("b", Syn(1, 2)), 0)
    net.run()
    assert (0, "Undeliverable", "b", ErrorCode.NET_NO_ROUTE) in events(net, "a")
    assert simnet.SimNetwork.reset_node     # (the API keeps crash + restart as one call)


def test_jitter_keeps_each_pairs_order():
    """Messages between two nodes arrive in the order sent, whatever the jitter."""
    import qstack

    async def sender(ctx):
        sock = await ctx.connect("b", 7)
        for i in range(40):
            await sock.send(bytes([i]))
        await sock.close()

    async def receiver(ctx):
        sock = await ctx.listen(7).accept()
        got = []
        try:
            while True:
                got.append((await sock.recv())[0])
        except TransportError:
            return got

    r = qstack.simulate(CHAIN, {"a": sender, "b": receiver}, jitter_ns=500_000, seed=3)
    assert r.results["b"] == list(range(40))


# ---------------------------------------------------------------- recovery (item 4)

async def _sender(ctx):
    """Sends one qubit to b, then (after the repeater's fault) another."""
    out = []
    for when in (0, 50_000_000):
        await ctx.sleep(max(0, when - ctx.now_ns))
        try:
            sock = await ctx.connect("b", 7)
            q = ctx.qubit()
            q.x()
            await sock.send_qubit(q)
            out.append("ok")
            await sock.close()
        except TransportError as err:
            out.append(err.code.name)
    return out


async def _receiver(ctx):
    listener = ctx.listen(7)
    got = []
    for _ in range(2):
        sock = await listener.accept(timeout_ns=10**9)
        got.append(await (await sock.recv_qubit()).measure())
    return got


@pytest.mark.parametrize("fault", [
    {"at_s": 0.01, "crash": "r", "restart_after_s": 0.01},
    {"at_s": 0.01, "link_down": ["r", "b"], "up_after_s": 0.01},
])
def test_the_network_recovers_after_a_repeater_restarts_or_a_link_returns(fault):
    """Item 4: after a reset of a repeater its links stayed down in the routing
    table for ever and every later request failed with NET_NO_ROUTE."""
    r = qstack.simulate(CHAIN, {"a": _sender, "b": _receiver}, faults=[fault], seed=2)
    assert r.errors == {}
    assert r.results == {"a": ["ok", "ok"], "b": [1, 1]}
    # every node's own view has the links up again
    for n in "arb":
        topo = r.net.node(n).protocols["network.qnp"].topology
        assert topo.link_up("a", "r") and topo.link_up("r", "b")


def test_reset_node_then_the_chain_works_again():
    """SimNetwork.reset_node on a repeater of a built network: later requests succeed."""
    net = qstack.build_network(CHAIN, seed=1)
    net.run(until_ns=1_000_000)
    net.reset_node("r")
    from qstack.sim.apps import run_apps
    run = run_apps(net, {"a": _sender, "b": _receiver}, until_ns=10**10)
    assert not run.errors and run.results == {"a": ["ok", "ok"], "b": [1, 1]}


def test_a_forged_teardown_from_a_node_not_on_the_circuit_is_ignored():
    """Item 4: a CircuitTeardown from a node not on the circuit used to take
    the link it named down in the routing table."""
    net = {"nodes": ["a", "r", "b", "x"], "links": [["a", "r"], ["r", "b"], ["x", "r"]]}
    seen = {}

    async def sender(ctx):
        sock = await ctx.connect("b", 7)
        for _ in range(3):
            q = ctx.qubit()
            await sock.send_qubit(q)
        await sock.close()
        return "ok"

    async def receiver(ctx):
        sock = await ctx.listen(7).accept()
        return [await (await sock.recv_qubit()).measure() for _ in range(3)]

    from qstack.core.protocol import SendMessage
    from qstack.sim.apps import run_apps

    r = qstack.build_network(net, seed=1)

    def forge():
        """x (not on the circuit) tells r to tear it down, naming r-b failed."""
        qnp = r.node("r").protocols["network.qnp"]
        if not qnp.circuits:
            r.sim.schedule(10_000, forge)      # not set up yet: look again soon
            return
        head, cid = seen["circuit"] = next(iter(qnp.circuits))
        teardown = CircuitTeardown(cid, head, 303, "forged", "r", "b")
        r.node("x")._run[SendMessage]("network.qnp", SendMessage("r", teardown), r.now_ns)

    r.sim.schedule(10_000, forge)
    run = run_apps(r, {"a": sender, "b": receiver}, until_ns=10**10)
    assert not run.errors and run.results["a"] == "ok"
    assert "circuit" in seen
    assert any(f.code == ErrorCode.NET_UNKNOWN_CIRCUIT and "forged" not in f.detail
               and f.node == "r" for f in r.errors)
    assert r.node("a").protocols["network.qnp"].topology.link_up("r", "b")


def test_applications_on_a_crashed_node_are_answered():
    """Item 4: pending requests at a reset node were dropped without an answer
    and its applications hung. Now they fail with TRANSPORT_NODE_DOWN."""
    async def waiting(ctx):
        sock = await ctx.listen(7).accept()     # nobody connects: waits
        return "accepted"

    async def after(ctx):
        await ctx.sleep(20_000_000)           # the node is down now
        with pytest.raises(TransportError) as info:
            await ctx.connect("a", 9)
        return info.value.code

    r = qstack.simulate(CHAIN, {"b": [waiting, after]},
                        faults=[{"at_s": 0.01, "crash": "b"}], seed=1)
    assert isinstance(r.errors["b:waiting"], TransportError)
    assert r.errors["b:waiting"].code == ErrorCode.TRANSPORT_NODE_DOWN
    assert r.results["b:after"] == ErrorCode.TRANSPORT_NODE_DOWN


# ---------------------------------------------------------------- every run ends (item 5)

def test_an_application_that_sleeps_for_ever_ends_at_the_default_limit():
    async def forever(ctx):
        while True:
            await ctx.sleep(10**9)

    r = qstack.simulate(CHAIN, {"a": forever}, seed=1)
    assert r.end_ns == int(qstack.api.DEFAULT_UNTIL_S * 1e9)
    err = r.errors["a"]
    assert isinstance(err, TimeoutError) and "'a'" in str(err) and "still running" in str(err)


def test_qstack_sim_ends_a_run_that_never_would(tmp_path, capsys):
    from qstack.cli import main

    (tmp_path / "net.toml").write_text('nodes = ["a", "b"]\nlinks = [["a", "b"]]\n')
    (tmp_path / "app.py").write_text(
        "async def forever(ctx):\n    while True:\n        await ctx.sleep(10**9)\n"
        "APPS = {'a': forever}\n")
    code = main(["sim", str(tmp_path / "net.toml"), str(tmp_path / "app.py")])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED TimeoutError" in out and "still running" in out


# ---------------------------------------------------------------- the [faults] table

def test_faults_from_the_network_file(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text('nodes = ["a", "r", "b"]\nlinks = [["a", "r"], ["r", "b"]]\n'
                    '[faults]\njitter_ns = 1000\n'
                    '[[faults.events]]\nat_s = 0.01\ncrash = "r"\nrestart_after_s = 0.01\n'
                    '[[faults.events]]\nat_s = 0.03\nreset = ["a", "b"]\n')
    spec = qstack.load_network(path)
    assert spec.jitter_ns == 1000
    assert spec.faults == (Fault("crash", 10_000_000, ("r",), 10_000_000),
                           Fault("reset", 30_000_000, ("a", "b")))
    r = qstack.simulate(spec, {"a": _sender, "b": _receiver}, seed=2)
    assert r.results == {"a": ["ok", "ok"], "b": [1, 1]}
    assert [(t, what) for t, what, _ in r.net.faults] == \
        [(10_000_000, "crash"), (20_000_000, "restart"), (30_000_000, "reset")]


@pytest.mark.parametrize("table, words", [
    ({"at_s": 1, "crash": "zz"}, "unknown node 'zz'"),
    ({"at_s": 1, "link_down": ["a", "b"]}, "no link a-b"),
    ({"crash": "a"}, "at_s: missing"),
    ({"at_s": 1, "crash": "a", "reset": ["a", "b"]}, "exactly one of"),
    ({"at_s": -1, "crash": "a"}, "at_s: expected a number of seconds >= 0"),
    ({"at_s": 1, "reset": ["a", "a"]}, "two different nodes"),
    ({"at_s": 1, "crash": "a", "up_after_s": 1}, "unknown key for a crash fault"),
])
def test_bad_fault_tables_are_refused_naming_them(table, words):
    with pytest.raises(ConfigError) as info:
        qstack.simulate(CHAIN, {}, faults=[table])
    assert words in str(info.value) and "faults[0]" in str(info.value)
