"""Standing link requests: ``CreateRequest(standing=True)`` and ``CreateTopUp``
(specs/link.md §4, "Standing requests").

Unit checks at the EGP (sans I/O), with one and with three generation
processes, requested by the leader and by the follower: the item stays open
at its count and no Entangle goes out beyond its limit; a top-up raises the
limit at both ends (QueueTopUp) and the pairs' indices run on; the follower
keeps Entangles out only while pairs may come (so it holds no memory slot
for an item with nothing allowed); top-ups a follower makes before its
QueueAdd comes go out when it comes; a cancel ends it with an Abort that
counts every pair made, no LinkErr; refusals (max_time, atomic,
consecutive, bad numbers, a QueueTopUp from the wrong end) have their codes.

In the simulator (hypothesis): random top-ups, at random times, by either
end of a link with any classical delay and jitter, then a cancel: both ends
deliver the same pairs, never more than the requester allowed, all of them
if the requester waited long enough before cancelling, and at the end no
item, Entangle or memory slot is left.
"""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core.errors import ErrorCode
from qstack.core.messages import decode, encode
from qstack.core.protocol import Fail, LinkDown, MessageReceived, OperationDone
from qstack.link.egp import EGP, Phase
from qstack.link.messages import Abort, QueueAdd, QueueReject, QueueRequest, QueueTopUp
from qstack.link.schemes import DoubleClickModel
from qstack.link.service import CancelCreate, CreateRequest, CreateTopUp, LinkErr, LinkOk
from qstack.physical.device import NodeHardware
from qstack.physical.ops import Herald
from tests.test_link_cancel import MODEL, _entangles, _events, _msgs, _pair
from tests.test_link_egp import build


def _idle(egp, peer):
    link = egp.links[peer]
    assert not link.items and not link.pending and not link.cancelled and not link.orphans
    assert not link.topups
    assert link.out == 0 and not link.waiting and link.phase is Phase.IDLE


class _Link:
    """Leader a and follower b, driven by hand: every message is delivered at
    once, every Entangle of the leader is answered with a pair (matched with
    one of the follower's, which must be out)."""

    def __init__(self, m):
        self.a, self.b = _pair(m)
        self.egp = {"a": self.a, "b": self.b}
        self.out = {"a": [], "b": []}       # Entangles outstanding per end
        self.oks = {"a": [], "b": []}
        self.errs = {"a": [], "b": []}
        self.sent = []                      # every message, in order
        self.now = 0

    def feed(self, node, event):
        self.now += 1
        acts = self.egp[node].handle(event, self.now)
        pending = self.egp[node]._ops          # (withdrawn Entangles leave it)
        self.out[node] = [op for op in self.out[node] + _entangles(acts) if op.op_id in pending]
        self.oks[node] += _events(acts, LinkOk)
        self.errs[node] += _events(acts, LinkErr)
        for msg in _msgs(acts):
            self.sent.append(msg)
            self.feed("b" if node == "a" else "a", MessageReceived(node, msg))
        return acts

    def pair(self):
        """The leader's oldest Entangle makes a pair with the follower's oldest."""
        lop, fop = self.out["a"].pop(0), self.out["b"].pop(0)
        self.feed("a", OperationDone(lop.op_id, Herald(True, qubit="qa", key=lop.op.key)))
        self.feed("b", OperationDone(fop.op_id, Herald(True, qubit="qb", key=lop.op.key)))


@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("requester", ["a", "b"])
def test_a_standing_request_makes_what_it_is_allowed_and_stays_open(m, requester):
    h = _Link(m)
    peer = "b" if requester == "a" else "a"
    h.feed(requester, CreateRequest(peer, number=2, create_id=7, standing=True))
    (add,) = [x for x in h.sent if isinstance(x, QueueAdd)]
    assert add.spec.standing and add.spec.number == 2
    assert len(h.out["a"]) == min(m, 2) and len(h.out["b"]) == min(m, 2)
    while h.out["a"]:
        h.pair()
    # its two pairs made: open, nothing out at either end (no slot held at the follower)
    assert len(h.oks["a"]) == len(h.oks["b"]) == 2
    assert not any(ok.request_done for ok in h.oks["a"] + h.oks["b"])
    assert not h.errs["a"] and not h.errs["b"]
    assert add.qid in h.a.links["b"].items and add.qid in h.b.links["a"].items
    assert not h.out["a"] and not h.out["b"]
    assert h.a.links["b"].phase is Phase.IDLE and h.b.links["a"].phase is Phase.IDLE
    # topped up twice: the other end hears of each, the pairs' indices run on
    before = len(h.sent)
    h.feed(requester, CreateTopUp(7, peer, 3))
    h.feed(requester, CreateTopUp(7, peer, 1))
    ups = [x for x in h.sent[before:] if isinstance(x, QueueTopUp)]
    assert [(u.qid, u.number) for u in ups] == [(add.qid, 3), (add.qid, 1)]
    assert len(h.out["a"]) == min(m, 4) and len(h.out["b"]) == min(m, 4)
    while h.out["a"]:
        h.pair()
    assert [ok.pair_index for ok in h.oks[requester]] == list(range(6))
    assert [ok.ent_id for ok in h.oks["a"]] == [ok.ent_id for ok in h.oks["b"]]
    assert all(ok.create_id == 7 for ok in h.oks[requester])
    # cancelled: the Abort counts all six, no LinkErr, nothing left
    h.feed(requester, CancelCreate(7, peer))
    (abort,) = [x for x in h.sent if isinstance(x, Abort)]
    assert abort.done == 6 and abort.code == ErrorCode.LINK_CANCELLED
    assert not h.errs["a"] and not h.errs["b"]
    _idle(h.a, "b")
    _idle(h.b, "a")


@pytest.mark.parametrize("m", [1, 3])
def test_a_cancel_with_pairs_in_flight_counts_them_at_both_ends(m):
    h = _Link(m)
    h.feed("a", CreateRequest("b", number=1, create_id=7, standing=True))
    h.pair()
    h.feed("a", CreateTopUp(7, "b", 5))
    assert len(h.out["a"]) == m
    h.feed("a", CancelCreate(7, "b"))          # the Entangles out still answer
    assert not [x for x in h.sent if isinstance(x, Abort)]
    sent = len(h.sent)
    h.feed("a", CreateTopUp(7, "b", 5))         # a cancelled request is not topped up
    assert len(h.out["a"]) == m and len(h.sent) == sent
    while h.out["a"]:
        h.pair()
    (abort,) = [x for x in h.sent if isinstance(x, Abort)]
    assert abort.done == 1 + m
    assert [ok.ent_id for ok in h.oks["a"]] == [ok.ent_id for ok in h.oks["b"]]
    assert len(h.oks["b"]) == 1 + m
    _idle(h.a, "b")
    _idle(h.b, "a")


def test_a_follower_top_up_before_its_queue_add_goes_out_when_it_comes():
    a, b = _pair(1)
    (qreq,) = _msgs(b.handle(CreateRequest("a", number=1, create_id=5, standing=True), 0))
    assert isinstance(qreq, QueueRequest) and qreq.spec.standing
    assert b.handle(CreateTopUp(5, "a", 2), 1) == []
    assert b.handle(CreateTopUp(5, "a", 4), 2) == []
    assert b.links["a"].topups == {5: 6}
    (add,) = _msgs(a.handle(MessageReceived("b", qreq), 3))
    acts = b.handle(MessageReceived("a", add), 4)
    (up,) = _msgs(acts)
    assert up == QueueTopUp(add.qid, 6) and not b.links["a"].topups
    assert b.links["a"].items[add.qid].limit == 7
    a.handle(MessageReceived("b", up), 5)
    assert a.links["b"].items[add.qid].limit == 7


def test_a_follower_cancel_before_its_queue_add_forgets_its_top_ups():
    a, b = _pair(1)
    (qreq,) = _msgs(b.handle(CreateRequest("a", number=1, create_id=5, standing=True), 0))
    b.handle(CreateTopUp(5, "a", 2), 1)
    b.handle(CancelCreate(5, "a"), 2)
    assert not b.links["a"].topups
    (add,) = _msgs(a.handle(MessageReceived("b", qreq), 3))
    acts = b.handle(MessageReceived("a", add), 4)
    (reject,) = _msgs(acts)                  # refused as cancelled, no top-up sent
    assert isinstance(reject, QueueReject) and reject.code == ErrorCode.LINK_CANCELLED


@pytest.mark.parametrize("kw", [{"max_time_ns": 10**9}, {"atomic": True}, {"consecutive": True}])
def test_a_standing_request_with_a_time_limit_or_pairs_in_a_row_is_unsupported(kw):
    a, _b = _pair(1)
    (err,) = _events(a.handle(CreateRequest("b", number=1, standing=True, **kw), 0), LinkErr)
    assert err.code is ErrorCode.LINK_UNSUPPORTED


@pytest.mark.parametrize("number", [0, 65536, -1, 1.5, True])
def test_a_top_up_of_a_bad_number_is_refused(number):
    a, _b = _pair(1)
    a.handle(CreateRequest("b", number=1, create_id=7, standing=True), 0)
    (fail,) = a.handle(CreateTopUp(7, "b", number), 1)
    assert isinstance(fail, Fail) and fail.code is ErrorCode.LINK_UNSUPPORTED
    assert a.links["b"].items[0].limit == 1


def test_top_ups_of_unknown_plain_or_ended_requests_do_nothing():
    a, _b = _pair(1)
    assert a.handle(CreateTopUp(99, "b", 1), 0) == []            # unknown
    assert a.handle(CreateTopUp(1, "nobody", 1), 0) == []        # no such link
    a.handle(CreateRequest("b", number=2, create_id=8), 0)       # a plain one
    assert a.handle(CreateTopUp(8, "b", 1), 1) == []
    assert a.links["b"].items[0].limit == 2


def test_a_queue_top_up_from_the_end_that_did_not_request_the_item_is_refused():
    a, b = _pair(1)
    (add,) = _msgs(a.handle(CreateRequest("b", number=1, create_id=7, standing=True), 0))
    b.handle(MessageReceived("a", add), 1)
    (fail,) = a.handle(MessageReceived("b", QueueTopUp(add.qid, 3)), 2)
    assert fail.code is ErrorCode.UNEXPECTED_EVENT and a.links["b"].items[add.qid].limit == 1
    (plain,) = _msgs(a.handle(CreateRequest("b", number=1, create_id=9), 3))
    b.handle(MessageReceived("a", plain), 4)
    (fail,) = b.handle(MessageReceived("a", QueueTopUp(plain.qid, 3)), 5)   # not standing
    assert fail.code is ErrorCode.UNEXPECTED_EVENT
    assert a.handle(MessageReceived("b", QueueTopUp(12345, 3)), 6) == []    # ended: late


def test_a_standing_queue_add_with_a_deadline_is_refused():
    _a, b = _pair(1)
    a2 = EGP("a", {"b": MODEL}, num_qubits=8)
    (add,) = _msgs(a2.handle(CreateRequest("b", number=1, create_id=7, standing=True), 0))
    bad = QueueAdd(add.qid, add.origin, type(add.spec)(**{
        **{f: getattr(add.spec, f) for f in add.spec.__dataclass_fields__}, "deadline_ns": 10}))
    (reject,) = _msgs(b.handle(MessageReceived("a", bad), 1))
    assert reject.code == ErrorCode.LINK_UNSUPPORTED


def test_link_down_fails_a_standing_request_with_link_down():
    h = _Link(1)
    h.feed("a", CreateRequest("b", number=1, create_id=7, standing=True))
    h.pair()
    acts = h.a.handle(LinkDown("b"), 100)
    (err,) = _events(acts, LinkErr)
    assert err.create_id == 7 and err.code is ErrorCode.LINK_DOWN
    assert not h.a.links["b"].items


def test_an_abort_counts_more_than_65535_pairs_on_the_wire():
    msg = Abort(3, int(ErrorCode.LINK_CANCELLED), 100_000)
    assert decode(encode(msg)) == msg


# ---------------------------------------------------------------- in the simulator

_TOP_UPS = st.lists(st.tuples(st.integers(0, 40).map(lambda k: 20_000 * k),   # when (ns)
                              st.integers(1, 4)),                               # how many
                    max_size=6)


@settings(max_examples=40, deadline=None)
@given(requester=st.sampled_from("ab"), m=st.sampled_from([1, 2]), first=st.integers(1, 3),
       top_ups=_TOP_UPS, cancel_at=st.sampled_from([300_000, 5_000_000, 10**9]),
       delay=st.sampled_from([0, 24_000, 200_000]), jitter=st.sampled_from([0, 1_000, 100_000]),
       seed=st.integers(0, 3))
def test_any_top_ups_and_delays_same_pairs_at_both_ends_within_the_allowance(
        requester, m, first, top_ups, cancel_at, delay, jitter, seed):
    """A standing request topped up at random times by random amounts, then
    cancelled: both ends deliver the same pairs (ids, Bell indices) in the
    same order, the requester never more than it allowed, and all it
    allowed when it cancelled only long after the last top-up (10^9 ns:
    ample for this link); no LinkErr; at the end nothing is held, queued or
    outstanding at either end."""
    model = DoubleClickModel(length_km=5)
    hw = NodeHardware(num_qubits=8, t1_ns=math.inf, t2_ns=math.inf)
    net, recs = build(model, hw=hw, seed=seed, jitter_ns=jitter, classical_delay_ns=delay,
                      parallel={"a": m, "b": m})
    peer = "b" if requester == "a" else "a"
    net.sim.schedule_at(0, net.submit, requester,
                        CreateRequest(peer, number=first, create_id=3, min_fidelity=0.5,
                                      standing=True), "link.egp")
    for t, n in top_ups:
        net.sim.schedule_at(t + 1, net.submit, requester, CreateTopUp(3, peer, n), "link.egp")
    net.sim.schedule_at(cancel_at, net.submit, requester, CancelCreate(3, peer), "link.egp")
    net.run(until_ns=10**11)
    assert net.sim.pending == 0                  # the run ended by itself
    pairs = {n: [(ok.ent_id, ok.bell_index, ok.create_id) for _, ok in r.oks]
             for n, r in recs.items()}
    assert pairs["a"] == pairs["b"]
    allowed = first + sum(n for _t, n in top_ups)
    got = len(pairs[requester])
    assert got <= allowed
    if cancel_at == 10**9:
        assert got == allowed
    assert not recs["a"].errs and not recs["b"].errs
    for n, egp_peer in (("a", "b"), ("b", "a")):
        link = net.node(n).protocols["link.egp"].links[egp_peer]
        assert not link.items and not link.pending and not link.topups and link.out == 0
        assert net.node(n).device.used_slots == 0
    assert net.link("a", "b").station.pending() == 0
