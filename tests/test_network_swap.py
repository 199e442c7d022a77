"""End-to-end circuits (network.qnp) on the real state engine, both formalisms.

A chain of Werner links swapped hop by hop must give the Werner swap formula
(tolerance 1e-9: the Bell-diagonal algebra is exact); both ends must get the
same pair id and Bell state."""
import pytest

from qstack.core.errors import ErrorCode
from qstack.core.protocol import MessageReceived, Submit
from qstack.link.service import CreateRequest, EntanglementId, LinkOk
from qstack.network.circuit import QnpProtocol, nested_spans
from qstack.network.messages import CircuitSetup, Track
from qstack.network.routing import Topology
from qstack.network.service import NetErr, NetOk, NetRequest, NetRequestType, SwapStrategy
from qstack.network.theory import chain_fidelity
from tests.test_network_driver import LinkNet


def build_chain(n, fidelity=0.95, p=0.3, formalism="bd", seed=1, delay_ns=1000, **kw):
    net = LinkNet(seed=seed, formalism=formalism, consume=True, delay_ns=delay_ns,
                  check_wire=True)
    topo = Topology.chain(n, fidelity=fidelity, rate_hz=1e3)
    names = [f"n{i}" for i in range(n)]
    for name in names:
        net.add_node(name)
        net.add_protocol(name, QnpProtocol(name, topo, **kw))
    for a, b in zip(names, names[1:]):
        net.add_link(a, b, p=p, fidelity=fidelity)
    return net, names


def oks(net, node):
    return [e for _, e in net.inbox(node) if isinstance(e, NetOk)]


@pytest.mark.parametrize("formalism", ["bd", "dm"])
@pytest.mark.parametrize("strategy", [SwapStrategy.ASAP, SwapStrategy.NESTED])
@pytest.mark.parametrize("n_nodes", [2, 3, 4, 6])
def test_chain_of_werner_pairs_gives_the_swap_formula(formalism, strategy, n_nodes):
    f = 0.93
    net, names = build_chain(n_nodes, fidelity=f, formalism=formalism)
    net.submit(names[0], NetRequest(names[-1], number=5, strategy=strategy), to="network.qnp")
    net.run()
    head, tail = oks(net, names[0]), oks(net, names[-1])
    assert len(head) == len(tail) == 5
    expected = chain_fidelity([f] * (n_nodes - 1))
    assert len(net.pairs) == 5
    for pid, b_tail, b_head, fid, _ in net.pairs:
        assert b_tail == b_head
        assert abs(fid - expected) < 1e-9
    for h, t in zip(sorted(head, key=lambda e: e.pair_id), sorted(tail, key=lambda e: e.pair_id)):
        assert h.pair_id == t.pair_id and h.bell_index == t.bell_index
        assert abs(h.fidelity - expected) < 1e-9          # the protocol's own estimate
        assert h.initiator and not t.initiator
    assert [e.request_done for e in head][-1] and not net.errors


def test_fidelity_hop_by_hop_in_both_formalisms_agree():
    f = 0.9
    for n in range(2, 8):
        got = {}
        for formalism in ("bd", "dm"):
            net, names = build_chain(n, fidelity=f, formalism=formalism, seed=n)
            net.submit(names[0], NetRequest(names[-1], number=1), to="network.qnp")
            net.run()
            got[formalism] = net.pairs[0][3]
        assert abs(got["bd"] - got["dm"]) < 1e-9
        assert abs(got["bd"] - chain_fidelity([f] * (n - 1))) < 1e-9


def test_correct_delivers_phi_plus():
    net, names = build_chain(5, fidelity=0.97)
    net.submit(names[0], NetRequest(names[-1], number=6, correct=True), to="network.qnp")
    net.run()
    assert all(b1 == 0 and b2 == 0 for _, b1, b2, _, _ in net.pairs)
    assert all(abs(fid - chain_fidelity([0.97] * 4)) < 1e-9 for *_, fid, _ in net.pairs)


def test_measure_type_gives_correlated_outcomes():
    net, names = build_chain(4, fidelity=1.0)
    net.submit(names[0], NetRequest(names[-1], number=20, type=NetRequestType.MEASURE,
                                    measure_basis="Z", correct=True), to="network.qnp")
    net.run()
    head = {e.pair_id: e for e in oks(net, names[0])}
    tail = {e.pair_id: e for e in oks(net, names[-1])}
    assert len(head) == 20 and head.keys() == tail.keys()
    for pid in head:
        assert head[pid].outcome == tail[pid].outcome      # Phi+ in Z: equal bits
        assert head[pid].basis == "Z"


def test_unreachable_fidelity_and_no_route():
    net, names = build_chain(4, fidelity=0.9)
    net.submit(names[0], NetRequest(names[-1], number=1, min_fidelity=0.95), to="network.qnp")
    net.submit(names[0], NetRequest("nowhere", number=1), to="network.qnp")
    net.run()
    errs = [e for _, e in net.inbox(names[0]) if isinstance(e, NetErr)]
    assert {e.code for e in errs} == {ErrorCode.NET_UNREACHABLE_FIDELITY, ErrorCode.NET_NO_ROUTE}


def test_cutoff_discards_old_pairs_and_keeps_fidelity():
    # slow links and a short cut-off: repeaters throw pairs away, and every
    # delivered pair is still a full chain of fresh Werner pairs
    net, names = build_chain(5, fidelity=0.95, p=0.01, default_cutoff_ns=150_000)
    net.submit(names[0], NetRequest(names[-1], number=3), to="network.qnp")
    net.run()
    cut = sum(net.nodes[n].stack[0].stats["cutoffs"] for n in names)
    assert cut > 0 and len(net.pairs) == 3
    assert all(abs(fid - chain_fidelity([0.95] * 4)) < 1e-9 for *_, fid, _ in net.pairs)
    assert net.engine.num_live_qubits == 0     # nothing leaked


def test_timeout_reports_net_timeout_at_both_ends():
    net, names = build_chain(4, fidelity=0.95, p=1e-4)
    net.submit(names[0], NetRequest(names[-1], number=5, max_time_ns=1_000_000),
               to="network.qnp")
    net.run()
    for node in (names[0], names[-1]):
        errs = [e for _, e in net.inbox(node) if isinstance(e, NetErr)]
        assert [e.code for e in errs] == [ErrorCode.NET_TIMEOUT]


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
