"""Standing end-to-end requests (specs/network.md §2 "Standing end-to-end
requests"): one request and one circuit, the allowance raised by NetTopUp,
no pair made beyond it, ended only by NetCancel (or an error).

Ideal Werner links on the real stack (EGP + QNP over the simulator, a
three-node chain: one repeater), no memory decay, no loss: every link pair
becomes part of an end-to-end pair, so the counts below are exact."""
from __future__ import annotations

from qstack.core.errors import ErrorCode
from qstack.core.protocol import Fail, MessageReceived
from qstack.network.messages import CircuitTopUp
from qstack.network.service import NetCancel, NetRequest, NetTopUp
from qstack.sim.chain import build_chain

LONG = 10**10      # ns of simulated time after which nothing more may come


def _chain():
    net, names, ends = build_chain(3, "bd", seed=7, check_wire=True, slots=12)
    return net, names[0], names[-1], ends[names[0]], ends[names[-1]]


def _run_until(net, head, tail, n):
    net.run(until_ns=net.now_ns + LONG,
            stop_when=lambda: len(head.oks) >= n and len(tail.oks) >= n)
    # and on: nothing beyond the allowance may come
    net.run(until_ns=net.now_ns + LONG)


def test_a_standing_request_delivers_its_allowance_over_one_circuit_and_waits():
    net, a, z, head, tail = _chain()
    net.submit(a, NetRequest(z, number=2, request_id=9, standing=True), to="network.qnp")
    _run_until(net, head, tail, 2)
    assert len(head.oks) == len(tail.oks) == 2
    assert not any(ok.request_done for ok in head.oks)       # it stays open
    qnp = net.node(a).protocols["network.qnp"]
    assert qnp.stats["link_pairs"] == 2        # the head's link made no pair beyond it
    net.submit(a, NetTopUp(9, 3), to="network.qnp")
    _run_until(net, head, tail, 5)
    assert len(head.oks) == len(tail.oks) == 5
    assert not head.errors and not tail.errors and not net.errors
    # one circuit served all five, and both ends name the pairs alike
    assert len({ok.pair_id.circuit_id for ok in head.oks}) == 1
    assert sorted(ok.pair_id for ok in head.oks) == sorted(ok.pair_id for ok in tail.oks)
    assert qnp.stats["link_pairs"] == 5
    # the repeater knows the allowance too (CircuitTopUp): it asked for no pair
    # beyond it, and holds none
    (mid,) = [n for n in net.nodes if n not in (a, z)]
    (c,) = net.node(mid).protocols["network.qnp"].circuits.values()
    assert (c.requested, c.number, len(c.held[0]), len(c.held[1])) == (5, 5, 0, 0)
    # cancelled: the head is answered with NetErr, the circuit is gone at every node
    net.submit(a, NetCancel(9), to="network.qnp")
    net.run(until_ns=net.now_ns + LONG)
    assert [(e.request_id, e.code) for e in head.errors] == [(9, ErrorCode.NET_CIRCUIT_TORN_DOWN)]
    assert len(head.oks) == 5


def test_a_top_up_of_a_request_that_is_not_standing_changes_nothing():
    net, a, z, head, tail = _chain()
    net.submit(a, NetRequest(z, number=2, request_id=4), to="network.qnp")
    net.submit(a, NetTopUp(4, 5), to="network.qnp")
    _run_until(net, head, tail, 2)
    assert len(head.oks) == len(tail.oks) == 2 and head.oks[-1].request_done


def test_a_top_up_from_a_node_that_is_not_the_one_before_is_refused():
    net, a, z, head, tail = _chain()
    net.submit(a, NetRequest(z, number=1, request_id=3, standing=True), to="network.qnp")
    _run_until(net, head, tail, 1)
    tail_qnp = net.node(z).protocols["network.qnp"]
    (c,) = tail_qnp.circuits.values()
    acts = tail_qnp.handle(MessageReceived(a, CircuitTopUp(c.cid, c.head, 4)), net.now_ns)
    assert [f.code for f in acts if isinstance(f, Fail)] == [ErrorCode.NET_UNKNOWN_CIRCUIT]
    assert c.number == 1
