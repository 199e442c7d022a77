"""End-to-end circuits (network.qnp) on the real stack, both formalisms.

The QNP runs on the simulator's driver over the link layer's EGP
(tests/netstack.py): heralded links of Werner pairs in uniformly random Bell
states, classical delays, memories without decay. A chain of Werner links
swapped hop by hop must give the Werner swap formula whatever the timing
(tolerance 1e-9: the Bell-diagonal algebra is exact, only float rounding
differs); both ends must get the same pair id and Bell state."""
import pytest

from qstack.core.errors import ErrorCode
from qstack.core.protocol import MessageReceived, Submit
from qstack.link.service import CreateRequest, EntanglementId, LinkOk
from qstack.network.circuit import QnpProtocol, nested_spans
from qstack.network.messages import CircuitSetup, Track
from qstack.network.routing import Topology
from qstack.network.service import NetErr, NetOk, NetRequest, NetRequestType, SwapStrategy
from tests.closed_forms import werner_swap
from tests.netstack import inbox, link_model, stack_net


def chain_fidelity(fidelities):
    """The Werner swap formula folded along the chain (tests/closed_forms.py)."""
    f, *rest = fidelities
    for g in rest:
        f = werner_swap(f, g)
    return f


def build_chain(n, fidelity=0.95, p=0.3, formalism="bd", seed=1, **kw):
    topo = Topology.chain(n, fidelity=fidelity, rate_hz=1e3)
    names = [f"n{i}" for i in range(n)]
    model = link_model(p, fidelity)
    net, book = stack_net(names, {(a, b): model for a, b in zip(names, names[1:])},
                          lambda name: [QnpProtocol(name, topo, **kw)],
                          formalism=formalism, seed=seed, sink=True)
    return net, names, book


def oks(net, node):
    return inbox(net, node, NetOk)


@pytest.mark.parametrize("formalism", ["bd", "dm"])
@pytest.mark.parametrize("strategy", [SwapStrategy.ASAP, SwapStrategy.NESTED])
@pytest.mark.parametrize("n_nodes", [2, 3, 4, 6])
def test_chain_of_werner_pairs_gives_the_swap_formula(formalism, strategy, n_nodes):
    f = 0.93
    net, names, book = build_chain(n_nodes, fidelity=f, formalism=formalism)
    net.submit(names[0], NetRequest(names[-1], number=5, strategy=strategy), to="network.qnp")
    net.run()
    head, tail = oks(net, names[0]), oks(net, names[-1])
    assert len(head) == len(tail) == 5
    expected = chain_fidelity([f] * (n_nodes - 1))
    assert len(book.pairs) == 5
    for pair in book.pairs:
        assert pair.bell_head == pair.bell_tail
        assert abs(pair.fidelity - expected) < 1e-9
    for h, t in zip(sorted(head, key=lambda e: e.pair_id), sorted(tail, key=lambda e: e.pair_id)):
        assert h.pair_id == t.pair_id and h.bell_index == t.bell_index
        assert abs(h.fidelity - expected) < 1e-9          # the protocol's own estimate
        assert h.initiator and not t.initiator
    assert [e.request_done for e in head][-1] and not net.errors
    assert net.stats["message_bytes"] > 0      # every message went through its encoding


def test_fidelity_hop_by_hop_in_both_formalisms_agree():
    f = 0.9
    for n in range(2, 8):
        got = {}
        for formalism in ("bd", "dm"):
            net, names, book = build_chain(n, fidelity=f, formalism=formalism, seed=n)
            net.submit(names[0], NetRequest(names[-1], number=1), to="network.qnp")
            net.run()
            (pair,) = book.pairs
            got[formalism] = pair.fidelity
        assert abs(got["bd"] - got["dm"]) < 1e-9
        assert abs(got["bd"] - chain_fidelity([f] * (n - 1))) < 1e-9


def test_correct_delivers_phi_plus():
    net, names, book = build_chain(5, fidelity=0.97)
    net.submit(names[0], NetRequest(names[-1], number=6, correct=True), to="network.qnp")
    net.run()
    assert len(book.pairs) == 6 and not net.errors
    assert all(p.bell_head == 0 and p.bell_tail == 0 for p in book.pairs)
    assert all(abs(p.fidelity - chain_fidelity([0.97] * 4)) < 1e-9 for p in book.pairs)


def test_measure_type_gives_correlated_outcomes():
    net, names, _ = build_chain(4, fidelity=1.0)
    net.submit(names[0], NetRequest(names[-1], number=20, type=NetRequestType.MEASURE,
                                    measure_basis="Z", correct=True), to="network.qnp")
    net.run()
    head = {e.pair_id: e for e in oks(net, names[0])}
    tail = {e.pair_id: e for e in oks(net, names[-1])}
    assert len(head) == 20 and head.keys() == tail.keys()
    for pid in head:
        assert head[pid].outcome == tail[pid].outcome      # Phi+ in Z: equal bits
        assert head[pid].basis == "Z"
    assert not net.errors and net.engine.num_live_qubits == 0


def test_unreachable_fidelity_and_no_route():
    net, names, _ = build_chain(4, fidelity=0.9)
    net.submit(names[0], NetRequest(names[-1], number=1, min_fidelity=0.95), to="network.qnp")
    net.submit(names[0], NetRequest("nowhere", number=1), to="network.qnp")
    net.run()
    errs = inbox(net, names[0], NetErr)
    assert {e.code for e in errs} == {ErrorCode.NET_UNREACHABLE_FIDELITY, ErrorCode.NET_NO_ROUTE}
    assert not net.errors


def test_cutoff_discards_old_pairs_and_keeps_fidelity():
    # slow links and a short cut-off: repeaters throw pairs away, and every
    # delivered pair is still a full chain of fresh Werner pairs
    net, names, book = build_chain(5, fidelity=0.95, p=0.01, default_cutoff_ns=150_000)
    net.submit(names[0], NetRequest(names[-1], number=3), to="network.qnp")
    net.run()
    cut = sum(net.nodes[n].protocols["network.qnp"].stats["cutoffs"] for n in names)
    assert cut > 0 and len(book.pairs) == 3
    assert all(abs(p.fidelity - chain_fidelity([0.95] * 4)) < 1e-9 for p in book.pairs)
    assert net.engine.num_live_qubits == 0 and not net.errors    # nothing leaked


def test_timeout_reports_net_timeout_at_both_ends():
    net, names, _ = build_chain(4, fidelity=0.95, p=1e-4)
    net.submit(names[0], NetRequest(names[-1], number=5, max_time_ns=1_000_000),
               to="network.qnp")
    net.run()
    for node in (names[0], names[-1]):
        assert [e.code for e in inbox(net, node, NetErr)] == [ErrorCode.NET_TIMEOUT]
    # the head asked; the tail is told the head's request stopped
    assert [e.initiator for e in inbox(net, names[0], NetErr)] == [True]
    assert [e.initiator for e in inbox(net, names[-1], NetErr)] == [False]
    assert not net.errors


def test_nested_spans_doubling():
    assert nested_spans(8) == {4: (0, 8), 2: (0, 4), 6: (4, 8), 1: (0, 2), 3: (2, 4),
                               5: (4, 6), 7: (6, 8)}
    assert set(nested_spans(5)) == {1, 2, 3, 4}


def test_sans_io_repeater_swaps_and_tracks():
    """Drive one repeater by hand: two LinkOks -> BSM; Track in -> Track out with
    the Pauli frame updated."""
    topo = Topology.chain(3)
    r = QnpProtocol("n1", topo)
    setup = CircuitSetup(circuit_id=9, head="n0", path=("n0", "n1", "n2"), request_id=1,
                         number=1, min_fidelity=0.0, link_fidelity=(0.0, 0.0), link_labels=(5,),
                         strategy=0, cutoff_ns=0, type=0, measure_basis="Z", app_tag=0)
    acts = r.handle(MessageReceived("n0", setup), 0)
    fwd = acts[0].msg
    assert fwd.link_labels[0] == 5 and len(fwd.link_labels) == 2
    from qstack.network.messages import CircuitConfirm
    acts = r.handle(MessageReceived("n2", CircuitConfirm(9, "n0", True, 0, "")), 0)
    assert any(isinstance(a, Submit) and isinstance(a.request, CreateRequest) for a in acts)
    r.handle(LinkOk(0, EntanglementId("n0", "n1", 1), "n0", 2, 0.9, 0, 5, qubit="qa"), 10)
    acts = r.handle(LinkOk(0, EntanglementId("n1", "n2", 4), "n2", 1, 0.8, 0, fwd.link_labels[1],
                           qubit="qb"), 20)
    bsm = [a for a in acts if type(a).__name__ == "QuantumOp"][0]
    from qstack.core.protocol import OperationDone, SendMessage
    r.handle(OperationDone(bsm.op_id, 3), 30)
    acts = r.handle(MessageReceived("n0", Track(9, "n0", 1, 2, 0.9, 0)), 40)
    out = [a for a in acts if isinstance(a, SendMessage)][0]
    assert out.dst == "n2" and out.msg.link_seq == 4
    assert out.msg.bell_index == 2 ^ 1 ^ 3
    assert abs(out.msg.fidelity - (0.9 * 0.8 + 0.1 * 0.2 / 3)) < 1e-12


def test_messages_naming_an_unknown_circuit():
    """Late traffic of a circuit already gone is dropped silently; any other
    message naming a circuit this node does not hold is a NET_UNKNOWN_CIRCUIT
    failure; a message type the protocol has no handler for, UNKNOWN_TYPE."""
    from qstack.core.protocol import Fail
    from qstack.network.messages import (
        CircuitConfirm, CircuitTeardown, KeyRelayAck, PairDone, PairLost, SegmentExpire,
        SegmentNotice,
    )

    r = QnpProtocol("n1", Topology.chain(3))
    late = [CircuitTeardown(9, "n0", 0, "", "", ""), SegmentExpire(9, "n0", 1, "cutoff"),
            PairDone(9, "n0", 1, True, 0, 0, 0.9, 0), Track(9, "n0", 1, 0, 0.9, 0),
            SegmentNotice(9, "n0", 1, 2), PairLost(9, "n0", 0, "expired")]
    for m in late:
        assert r.handle(MessageReceived("n0", m), 0) == [], m
    (fail,) = r.handle(MessageReceived("n2", CircuitConfirm(9, "n0", True, 0, "")), 0)
    assert isinstance(fail, Fail) and fail.code == ErrorCode.NET_UNKNOWN_CIRCUIT
    assert "n0/9" in fail.detail
    (fail,) = r.handle(MessageReceived("n0", KeyRelayAck(1, "n0", ("n0", "n1"), True, 0)), 0)
    assert isinstance(fail, Fail) and fail.code == ErrorCode.UNKNOWN_TYPE
