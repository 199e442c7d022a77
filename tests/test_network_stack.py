"""The network layer on the real stack: SimNetwork + EGP + QnpProtocol.

Here (as in every network-layer test) each pair comes from the link layer's
EGP over heralded links on the simulator, so the whole path (queue
handshake, Entangle, heralds, LinkOk, swaps, Track, PairDone) is exercised
together; these tests use the ready-made chain of :mod:`qstack.sim.chain`.
"""
from __future__ import annotations

import pytest

from qstack.core.protocol import on
from qstack.network.service import NetErr, NetOk, NetRequest
from qstack.network.theory import chain_fidelity
from qstack.sim.chain import LINK_FIDELITY as F_LINK
from qstack.sim.chain import ChainEnd, build_chain

# Werner links, no memory decay: the protocol's estimate and the true state
# both follow the Werner chain formula; only float rounding separates them.
TOL = 1e-9


class Keeper(ChainEnd):
    """The chain's end protocol, except that it keeps each delivered qubit
    (never frees it); other events (e.g. NetExpire) are ignored."""

    name = "test.keeper"

    @on(NetOk)
    def _ok(self, ev, now_ns):
        self.oks.append(ev)

    @on(object)
    def _other(self, ev, now_ns):
        return None


def _chain_with_keepers(n: int, formalism: str, slots: int):
    return build_chain(n, formalism, seed=5, check_wire=True, slots=slots, consumer=Keeper)


@pytest.mark.parametrize("formalism", ["bd", "dm"])
def test_four_node_chain_delivers_matching_pairs_at_werner_fidelity(formalism):
    pairs = 6
    net, names, keepers = _chain_with_keepers(4, formalism, slots=pairs + 4)
    head, tail = keepers[names[0]], keepers[names[-1]]
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    net.run(until_ns=10**11, stop_when=lambda: len(head.oks) >= pairs and len(tail.oks) >= pairs)
    assert not net.errors and not head.errors and not tail.errors
    assert len(head.oks) == len(tail.oks) == pairs
    expected = chain_fidelity([F_LINK] * 3)
    by_id = {ok.pair_id: ok for ok in tail.oks}
    for ok in head.oks:
        other = by_id[ok.pair_id]
        assert ok.bell_index == other.bell_index
        assert ok.initiator and not other.initiator
        assert ok.fidelity == pytest.approx(expected, abs=TOL)
        assert other.fidelity == pytest.approx(expected, abs=TOL)
        # the state the two ends really share
        true_f = net.engine.bell_fidelity(ok.qubit, other.qubit, ok.bell_index)
        assert true_f == pytest.approx(expected, abs=TOL)
    assert sorted(ok.pair_index for ok in head.oks) == list(range(pairs))
    # one swap per repeater per delivered pair
    swaps = [net.nodes[x].protocols["network.qnp"].stats["swaps"] for x in names]
    assert swaps[0] == swaps[-1] == 0 and all(s >= pairs for s in swaps[1:-1])


def test_same_seed_same_run():
    def once():
        net, names, keepers = _chain_with_keepers(4, "bd", slots=8)
        net.submit(names[0], NetRequest(names[-1], number=3), to="network.qnp")
        net.run(until_ns=10**11)
        return ([(ok.pair_id, ok.bell_index, ok.created_ns) for ok in keepers[names[0]].oks],
                net.sim.now, net.sim.events_fired)

    assert once() == once()


def test_memory_kept_full_does_not_spin():
    # Two end slots, pairs never freed: after two pairs the ends' memories are
    # full and every later Entangle is refused. The EGP backs off (doubling
    # up to 1 ms) so events grow with simulated time at a bounded rate; a
    # busy retry loop would fire millions over the 10 s simulated here.
    net, names, keepers = _chain_with_keepers(3, "bd", slots=2)
    net.submit(names[0], NetRequest(names[-1], number=100), to="network.qnp")
    sim_s = 10
    net.run(until_ns=sim_s * 10**9)
    assert net.sim.now == sim_s * 10**9
    head, tail = keepers[names[0]], keepers[names[-1]]
    assert len(head.oks) <= 2 and len(tail.oks) <= 2
    # <= ~2 links x 2 ends x (retry timer + refusal) per ms, with margin
    assert net.sim.events_fired < 10 * 1000 * sim_s


def _link_pairs(net) -> int:
    """Pairs heralded on every link of the simulation (counted by the simulator)."""
    return sum(link.pairs_heralded for link in net.links.values())


@pytest.mark.parametrize("n", [3, 12, 40])
def test_link_pairs_per_end_to_end_pair_are_bounded(n):
    # Flow control: a repeater keeps at most `window` downstream pairs between
    # its request and the passing of the Track of the end-to-end pair it became
    # part of, and never more than the pairs still needed. With ideal links and
    # no cut-off every link pair is used: exactly (n-1) link pairs per
    # delivered pair. (Swap-as-soon-as-possible with refills after every swap
    # made about n^2/2 extra pairs, which piled up at the tail.)
    pairs = 15
    net, names, consumers = build_chain(n, "bd", seed=3, fidelity=1.0)
    head, tail = consumers[names[0]], consumers[names[-1]]
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    net.run(until_ns=10**12)
    assert not net.errors and not head.errors and not tail.errors
    assert len(head.oks) == len(tail.oks) == pairs
    assert _link_pairs(net) <= (n - 1) * pairs
    qnp_count = sum(net.nodes[x].protocols["network.qnp"].stats["link_pairs"] for x in names)
    assert qnp_count == _link_pairs(net)


def test_one_pair_requests_waste_no_link_pairs():
    # A transport asking one pair at a time (one circuit per pair): no window
    # pair is made beyond the circuit's `number`, so none is discarded at teardown.
    net, names, consumers = build_chain(3, "bd", seed=4, fidelity=1.0)
    head, tail = consumers[names[0]], consumers[names[-1]]
    for k in range(1, 11):
        net.submit(names[0], NetRequest(names[-1], number=1), to="network.qnp")
        net.run(until_ns=net.sim.now + 10**10,
                stop_when=lambda: len(head.oks) >= k and len(tail.oks) >= k)
    net.run(until_ns=net.sim.now + 10**9)    # teardowns and any late pair
    assert len(head.oks) == len(tail.oks) == 10
    assert _link_pairs(net) == 2 * 10


def test_requests_refused_for_a_full_link_queue_are_retried_later():
    """Three circuits share links whose distributed queue holds one item: the
    link layer refuses the others at once (LINK_QUEUE_FULL). The QNP must wait
    and ask again (before, it asked again at once, recursing without end) and
    every request must complete."""
    net, names, keepers = _chain_with_keepers(3, "bd", slots=16)
    for name in names:
        net.nodes[name].protocols["link.egp"].max_queue = 1
    head, tail = keepers[names[0]], keepers[names[-1]]
    for _ in range(3):
        net.submit(names[0], NetRequest(names[-1], number=2), to="network.qnp")
    net.run(until_ns=10**11, stop_when=lambda: len(head.oks) >= 6 and len(tail.oks) >= 6)
    assert not head.errors and not tail.errors
    assert len(head.oks) == len(tail.oks) == 6
    assert {ok.pair_id for ok in head.oks} == {ok.pair_id for ok in tail.oks}


# ---------------------------------------------------------------- purified links

def _purified_chain(purify: bool, f_raw: float = 0.9):
    """n0000 - n0001 - n0002 on the real stack (EGP, then network.purify if
    ``purify``, then the QNP), Werner links of fidelity ``f_raw``, density
    matrices, no memory decay and noiseless gates: the delivered state is the
    closed form's."""
    net, names, ends = build_chain(3, "dm", seed=4, fidelity=f_raw, p=0.2, slots=16,
                                   consumer=Keeper, purify=purify)
    return net, net.nodes[names[0]].protocols["network.qnp"].topology, ends


def test_purified_links_reach_a_target_raw_links_cannot_as_the_closed_forms_say():
    """End-to-end F >= 0.9 over two links of raw F = 0.9 (swapped raw: 0.8133):
    without purification the request is refused as unreachable; with it the
    routing plans DEJMPS rounds per link and the delivered pairs hold exactly
    the closed-form state: k DEJMPS recurrence rounds from Werner(0.9)
    (Deutsch et al. 1996, tests/closed_forms.py), then a swap, whose fidelity to the tracked Bell state is
    sum_i c_i^2 for the link's Bell-diagonal coefficients c. Tolerance 1e-9
    (exact dm arithmetic). The network's own estimate treats each link as
    Werner; for two equal Bell-diagonal links sum c_i^2 >= c_0^2 +
    (1 - c_0)^2 / 3 (Cauchy-Schwarz), so the estimate never overstates."""
    from qstack.core.errors import ErrorCode
    from tests.closed_forms import dejmps

    a, z = "n0000", "n0002"
    net, _, ends = _purified_chain(purify=False)
    net.submit(a, NetRequest(z, number=5, min_fidelity=0.9), to="network.qnp")
    net.run(until_ns=10**9)
    (err,) = ends[a].errors
    assert err.code == ErrorCode.NET_UNREACHABLE_FIDELITY and not ends[a].oks

    number = 5
    net, topo, ends = _purified_chain(purify=True)
    head, tail = ends[a], ends[z]
    net.submit(a, NetRequest(z, number=number, min_fidelity=0.9), to="network.qnp")
    net.run(until_ns=10**10, stop_when=lambda: len(head.oks) >= number
            and len(tail.oks) >= number)
    assert not head.errors and not tail.errors and net.errors == []
    assert [ok.pair_id for ok in head.oks] == [ok.pair_id for ok in tail.oks]
    route = topo.route(a, z, 0.9, purify=True)
    rounds = net.nodes[a].protocols["network.purify"].rounds_for(0.9, route.link_fidelity[0])
    assert rounds == route.purify_rounds[0] == 2
    e = 0.1 / 3
    c = [0.9, e, e, e]
    for _ in range(rounds):
        c, _p = dejmps(c)
    expected = sum(x * x for x in c)
    for a, b in zip(head.oks, tail.oks):
        actual = net.engine.bell_fidelity(a.qubit, b.qubit, a.bell_index)
        assert actual == pytest.approx(expected, abs=1e-9)
        assert 0.9 <= a.fidelity == b.fidelity <= actual + 1e-12


def test_simulate_stacks_purification_on_request():
    from qstack.api import build_network
    from qstack.demo import DEMO_NETWORK

    stack = build_network(DEMO_NETWORK, purify=True).nodes["repeater"].stack
    assert stack == ["link.egp", "network.purify", "network.qnp", "transport.qtp"]
    assert "network.purify" not in build_network(DEMO_NETWORK).nodes["repeater"].stack
