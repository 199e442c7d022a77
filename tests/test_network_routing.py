"""Routing: metric, alternative paths, a failed link makes traffic take another path."""
import pytest

from qstack.core.errors import ErrorCode
from qstack.network.circuit import QnpProtocol
from qstack.network.routing import RoutingError, Topology
from qstack.network.service import NetErr, NetOk, NetRequest
from qstack.network.theory import chain_fidelity
from tests.closed_forms import werner_swap
from tests.netstack import DELAY_NS, inbox, link_model, stack_net


def diamond():
    # a - b - d is cheaper (faster links) than a - c - d
    t = Topology()
    t.add_link("a", "b", fidelity=0.95, rate_hz=1000)
    t.add_link("b", "d", fidelity=0.95, rate_hz=1000)
    t.add_link("a", "c", fidelity=0.95, rate_hz=200)
    t.add_link("c", "d", fidelity=0.95, rate_hz=200)
    return t


def test_cheapest_path_and_alternatives():
    t = diamond()
    assert t.route("a", "d").path == ("a", "b", "d")
    assert t.paths("a", "d", k=3) == [("a", "b", "d"), ("a", "c", "d")]
    t.set_link_up("b", "d", False)
    assert t.route("a", "d").path == ("a", "c", "d")
    t.set_link_up("a", "c", False)
    with pytest.raises(RoutingError) as exc:
        t.route("a", "d")
    assert exc.value.code == ErrorCode.NET_NO_ROUTE


def test_fidelity_targets_invert_the_swap_formula():
    t = Topology.chain(5, fidelity=0.99)
    r = t.route("n0", "n4", min_fidelity=0.9)
    assert len(r.link_fidelity) == 4
    assert abs(chain_fidelity(r.link_fidelity) - 0.9) < 1e-12
    assert r.purify_rounds == (0, 0, 0, 0)


def test_noisy_path_avoided_or_purified():
    t = Topology()
    t.add_link("a", "b", fidelity=0.8, rate_hz=1000)      # fast but noisy
    t.add_link("b", "d", fidelity=0.8, rate_hz=1000)
    t.add_link("a", "c", fidelity=0.99, rate_hz=10)       # slow but clean
    t.add_link("c", "d", fidelity=0.99, rate_hz=10)
    assert t.route("a", "d", 0.9, purify=False).path == ("a", "c", "d")
    with pytest.raises(RoutingError) as exc:
        Topology.chain(3, fidelity=0.8).route("n0", "n2", 0.9, purify=False)
    assert exc.value.code == ErrorCode.NET_UNREACHABLE_FIDELITY
    r = Topology.chain(3, fidelity=0.8).route("n0", "n2", 0.9, purify=True)
    assert all(k >= 1 for k in r.purify_rounds)


def _diamond_net(topo):
    """The diamond on the real stack (tests/netstack.py): the QNP over the EGP,
    heralded links of Werner pairs (F = 0.95, p = 0.2 per 1 us attempt, 1 us
    classical delay), an application consuming the pairs at every node."""
    model = link_model(0.2, 0.95)
    links = {(a, b): model for a, b in (("a", "b"), ("b", "d"), ("a", "c"), ("c", "d"))}
    return stack_net("abcd", links, lambda n: [QnpProtocol(n, topo)], seed=2, sink=True)


def test_link_down_before_request_uses_other_path():
    # b-d goes down; once the link-state advertisements of its ends have
    # reached a (two hops, 1 us each), a's own view routes around it
    net, book = _diamond_net(diamond())
    net.set_link_up("b", "d", False)
    net.run(until_ns=10 * DELAY_NS)
    view = net.nodes["a"].protocols["network.qnp"].linkstate.topology
    assert not view.graph.edges["b", "d"]["up"]
    net.submit("a", NetRequest("d", number=5), to="network.qnp")
    net.run()
    got = inbox(net, "a", NetOk)
    assert len(got) == 5 and all(e.path == ("a", "c", "d") for e in got)
    assert not net.errors and len(book.pairs) == 5
    assert all(abs(p.fidelity - werner_swap(0.95, 0.95)) < 1e-9 for p in book.pairs)


def test_link_failure_mid_request_reroutes_and_succeeds():
    net, book = _diamond_net(diamond())
    net.submit("a", NetRequest("d", number=40), to="network.qnp")
    # run until a few pairs went over a-b-d, then cut b-d
    net.run(stop_when=lambda: len(inbox(net, "a", NetOk)) >= 5)
    net.set_link_up("b", "d", False)
    net.run()
    head = inbox(net, "a", NetOk)
    tail = inbox(net, "d", NetOk)
    assert not inbox(net, "a", NetErr)
    assert len(head) == 40 and len(tail) == 40
    paths = {e.path for e in head}
    assert paths == {("a", "b", "d"), ("a", "c", "d")}
    assert head[-1].request_done
    assert {e.pair_id for e in head} == {e.pair_id for e in tail}
    # every pair delivered at both ends is a swap of two fresh Werner pairs
    assert len(book.pairs) == 40
    assert all(abs(p.fidelity - werner_swap(0.95, 0.95)) < 1e-9 for p in book.pairs)
    # the pairs the cut link held are discarded once, by the link layer
    assert not net.errors, net.errors
