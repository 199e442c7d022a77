"""A circuit of one link (network.qnp, specs/network.md "One link"): no Track.

The tail decides on its own link-layer OK, with its Bell state, goodness and
herald time, and its PairDone gives the head the pair's values; the head holds
its half until that PairDone, as after a Track. Both ends deliver the same pair
ids and values; a PairDone that comes before the head's own OK waits for it; a
head's half lost before the PairDone is taken back at the tail (PairLost,
NetExpire); a Track sent anyway is dropped with UNEXPECTED_EVENT; type D keeps
its Track (its head measures first).
"""
from __future__ import annotations

import pytest

from qstack.core.errors import ErrorCode
from qstack.core.protocol import Deliver, Fail, MessageReceived, OperationDone, QuantumOp, Submit
from qstack.link.service import EntanglementId, LinkExpire, LinkOk, Release
from qstack.network.messages import Track
from qstack.network.service import NetExpire, NetOk, NetRequest, NetRequestType
from qstack.physical.ops import Discard, Measure
from qstack.sim.chain import build_chain
from tests.test_network_pair_loss import (
    Recorder, _Hand, _qnp, complete_with_losses_taken_back, start_circuit,
)


def _sent(h: _Hand) -> list:
    return [type(m).__name__ for _, _, m in h.queue]


def _oks(h: _Hand, node: str) -> list:
    return [a.event for a in h.up[node] if isinstance(a, Deliver) and isinstance(a.event, NetOk)]


def _ok_at(h: _Hand, node: str, seq: int, bell: int = 0, goodness: float = 0.99) -> None:
    label = h.c["n0"].labels[0]
    other = "n1" if node == "n0" else "n0"
    h.feed(node, LinkOk(0, EntanglementId("n0", "n1", seq), other, bell, goodness, h.now, label,
                        qubit=f"q{node}{seq}"))


def test_sans_io_the_tail_decides_on_its_own_ok_and_the_head_takes_its_values():
    h = _Hand(nodes=2, number=2)
    _ok_at(h, "n0", 0, bell=3, goodness=0.97)
    assert h.queue == []                               # no Track
    _ok_at(h, "n1", 0, bell=3, goodness=0.96)           # (each end's own goodness)
    assert _sent(h) == ["PairDone"]
    (tail_ok,) = _oks(h, "n1")
    assert (tail_ok.bell_index, tail_ok.fidelity, tail_ok.qubit) == (3, 0.96, "qn10")
    # the tail's half leaves the link layer's care as it is delivered
    assert Submit(Release(EntanglementId("n0", "n1", 0), "n0"), to="link.egp") in h.up["n1"]
    h.step()
    (head_ok,) = _oks(h, "n0")
    assert head_ok.pair_id == tail_ok.pair_id and head_ok.qubit == "qn00"
    assert (head_ok.bell_index, head_ok.fidelity, head_ok.created_ns) == \
        (tail_ok.bell_index, tail_ok.fidelity, tail_ok.created_ns)
    assert head_ok.initiator and not tail_ok.initiator
    assert h.leftover() == []


def test_sans_io_correct_turns_the_tails_qubit_to_phi_plus_and_both_report_zero():
    h = _Hand(nodes=2, number=1, request={"correct": True})
    _ok_at(h, "n0", 0, bell=3)
    _ok_at(h, "n1", 0, bell=3)
    h.step()
    done: set = set()
    while True:                 # the tail's corrections, one after the other
        ops = [a for a in h.up["n1"] if isinstance(a, QuantumOp) and a.op_id not in done]
        if not ops:
            break
        for a in ops:
            done.add(a.op_id)
            h.feed("n1", OperationDone(a.op_id, None))
    gates = [a.op for a in h.up["n1"] if isinstance(a, QuantumOp)]
    assert [(g.name, g.qubits) for g in gates] == [("x", ("qn10",)), ("z", ("qn10",))]
    assert [ok.bell_index for ok in _oks(h, "n0") + _oks(h, "n1")] == [0, 0]
    assert h.leftover() == []


def test_sans_io_a_pair_done_before_the_heads_own_ok_waits_for_it():
    h = _Hand(nodes=2, number=1)
    _ok_at(h, "n1", 0)                                  # the tail hears first
    assert _sent(h) == ["PairDone"]
    h.step()                                            # the head has no pair 0 yet
    assert _oks(h, "n0") == [] and h.c["n0"].early
    _ok_at(h, "n0", 0)
    (head_ok,) = _oks(h, "n0")
    assert head_ok.pair_id == _oks(h, "n1")[0].pair_id
    assert h.leftover() == []


def test_sans_io_a_refused_pair_is_discarded_at_both_ends():
    """A link pair below the request's minimum (by the tail's own goodness)
    is refused: both ends discard it, the head asks again, the next is
    delivered as the circuit's first pair."""
    h = _Hand(nodes=2, number=1, request={"min_fidelity": 0.9})
    _ok_at(h, "n0", 0, goodness=0.8)
    _ok_at(h, "n1", 0, goodness=0.8)
    assert [(type(m).__name__, m.accepted) for _, _, m in h.queue] == [("PairDone", False)]
    assert QuantumOp(None, Discard("qn10")) in h.up["n1"] and _oks(h, "n1") == []
    h.up["n0"].clear()
    h.step()
    assert QuantumOp(None, Discard("qn00")) in h.up["n0"] and _oks(h, "n0") == []
    assert any(isinstance(a, Submit) for a in h.up["n0"])       # asks again
    _ok_at(h, "n0", 1)
    _ok_at(h, "n1", 1)
    h.step()
    assert [o.pair_id.seq for o in _oks(h, "n0")] == [0] == [o.pair_id.seq for o in _oks(h, "n1")]
    assert h.leftover() == []


def test_sans_io_the_heads_half_lost_before_the_pair_done_is_taken_back():
    h = _Hand(nodes=2, number=1)
    _ok_at(h, "n0", 0)
    _ok_at(h, "n1", 0)
    (ok,) = _oks(h, "n1")
    h.feed("n0", LinkExpire(EntanglementId("n0", "n1", 0), "n1", "cutoff", h.c["n0"].labels[0]))
    assert h.c["n0"].held[1][0].qubit is None           # kept (credit) until settled
    h.up["n0"].clear()
    h.step()                                            # the PairDone
    assert _sent(h) == ["PairLost"]
    assert _oks(h, "n0") == []
    assert any(isinstance(a, Submit) for a in h.up["n0"])       # asks again, after it
    h.up["n1"].clear()
    h.step()
    assert [a.event for a in h.up["n1"] if isinstance(a, Deliver)] == \
        [NetExpire(ok.pair_id, "n0", "head's half expired")]
    assert h.c["n1"].delivered == 0
    # the next pair is delivered as pair 1 at both ends
    _ok_at(h, "n0", 1)
    _ok_at(h, "n1", 1)
    h.step()
    assert [o.pair_id.seq for o in _oks(h, "n0")] == [1] == [o.pair_id.seq for o in _oks(h, "n1")]
    assert h.leftover() == []


@pytest.mark.parametrize("at", ["n0", "n1"])
def test_sans_io_a_track_on_one_link_is_dropped_with_unexpected_event(at):
    h = _Hand(nodes=2, number=1)
    c = h.c[at]
    src = "n1" if at == "n0" else "n0"
    h.feed(at, MessageReceived(src, Track(c.cid, "n0", 5, 0, 0.9, 0)))
    (fail,) = [a for a in h.up[at] if isinstance(a, Fail)]
    assert fail.code == ErrorCode.UNEXPECTED_EVENT and f"n0/{c.cid}" in fail.detail
    assert h.queue == [] and h.leftover() == []
    # the circuit goes on: its pair is delivered at both ends
    _ok_at(h, "n0", 0)
    _ok_at(h, "n1", 0)
    h.step()
    assert len(_oks(h, "n0")) == len(_oks(h, "n1")) == 1


def test_sans_io_type_d_keeps_its_track_on_one_link():
    """The head of a type-D circuit starts the Track once its measurement is
    done: a half lost in it breaks the segment before the tail delivers."""
    h = _Hand(nodes=2, number=1, request={"type": NetRequestType.MEASURE_DIRECTLY,
                                          "measure_basis": "Z"})
    _ok_at(h, "n0", 0)
    _ok_at(h, "n1", 0)
    assert h.queue == [] and _oks(h, "n1") == []
    for node in ("n0", "n1"):
        (op,) = [a for a in h.up[node] if isinstance(a, QuantumOp)]
        assert isinstance(op.op, Measure)
        h.feed(node, OperationDone(op.op_id, 1))            # the outcome
    assert _sent(h) == ["Track"]
    h.step()
    assert _sent(h) == ["PairDone"]
    h.step()
    assert len(_oks(h, "n0")) == len(_oks(h, "n1")) == 1
    assert h.leftover() == []


# ---------------------------------------------------------------- the real stack

def test_one_link_on_the_stack_both_ends_agree_at_the_werner_fidelity():
    pairs = 40
    net, names, ends = build_chain(2, "bd", seed=4, check_wire=True, slots=pairs + 4,
                                   consumer=Recorder, fidelity=0.95)
    head, tail = ends[names[0]], ends[names[-1]]
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    net.run(until_ns=10**10, stop_when=lambda: len(head.oks) >= pairs)
    net.run(until_ns=net.sim.now + 10**8)
    assert not net.errors and not head.errors and not tail.errors
    assert len(head.oks) == len(tail.oks) == pairs
    by_id = {ok.pair_id: ok for ok in tail.oks}
    for ok in head.oks:
        other = by_id[ok.pair_id]
        assert (ok.bell_index, ok.fidelity, ok.created_ns) == \
            (other.bell_index, other.fidelity, other.created_ns)
    # the estimate is the link's Werner fidelity (no decay: the closed form),
    # and the state the two qubits hold is that Bell state at that fidelity
    there = net.nodes[names[-1]].device
    for ok in head.oks:
        assert abs(ok.fidelity - 0.95) < 1e-9
        f = net.nodes[names[0]].device.bell_fidelity_now(
            ok.qubit, there, by_id[ok.pair_id].qubit, ok.bell_index, net.sim.now)
        assert abs(f - 0.95) < 1e-9
    assert _qnp(net, names[0]).stats["delivered"] == pairs


def test_one_link_head_halves_lost_on_the_stack_are_taken_back_and_the_request_completes():
    """The link layer's cut-off at the head falls inside the jitter of the
    PairDone's trip: some heads' halves expire before their PairDone. Each
    such pair is taken back at the tail (NetExpire), the request still
    completes with the same pairs at both ends, nothing is left behind."""
    pairs = 20
    net, names, ends = build_chain(2, "bd", seed=7, check_wire=True, slots=2 * pairs + 8,
                                   consumer=Recorder)
    hop = net.classical_delay_ns(names[0], names[1])
    net.jitter_ns = hop
    for name in names:
        net.nodes[name].protocols["link.egp"].cutoff_ns = hop + hop // 2
    circuits = start_circuit(net, names, pairs, max_time_ns=10**10)
    complete_with_losses_taken_back(net, names, ends, pairs, circuits)
    assert net.engine.num_live_qubits == 2 * pairs


def test_one_link_through_purification_both_ends_agree_at_the_closed_form():
    """network.purify between the EGP and the QNP on one link: the tail
    decides on purify's LinkOk (its goodness the closed form's), the head on
    the PairDone; both report the same pairs and fidelity, and the state they
    hold is k DEJMPS rounds of Werner(0.8) (Deutsch et al. 1996;
    tests/closed_forms.py), to 1e-9 (exact density-matrix arithmetic)."""
    from tests.closed_forms import dejmps
    from tests.test_network_stack import Keeper

    number = 4
    net, names, ends = build_chain(2, "dm", seed=4, fidelity=0.8, p=0.2, slots=16,
                                   consumer=Keeper, purify=True)
    head, tail = ends[names[0]], ends[names[1]]
    net.submit(names[0], NetRequest(names[1], number=number, min_fidelity=0.9),
               to="network.qnp")
    net.run(until_ns=10**10, stop_when=lambda: len(head.oks) >= number
            and len(tail.oks) >= number)
    assert not head.errors and not tail.errors and net.errors == []
    assert [ok.pair_id for ok in head.oks] == [ok.pair_id for ok in tail.oks]
    rounds = net.nodes[names[0]].protocols["network.purify"].rounds_for(0.8, 0.9)
    assert rounds >= 1
    e = 0.2 / 3
    c = [0.8, e, e, e]
    for _ in range(rounds):
        c, _p = dejmps(c)
    for a, b in zip(head.oks, tail.oks):
        assert a.bell_index == b.bell_index == 0
        actual = net.engine.bell_fidelity(a.qubit, b.qubit, 0)
        assert actual == pytest.approx(c[0], abs=1e-9)
        assert a.fidelity == b.fidelity >= 0.9
