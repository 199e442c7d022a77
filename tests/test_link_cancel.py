"""Withdrawing a standing link request: ``CancelCreate`` (specs/link.md §3, "Cancelling").

Unit checks at the EGP, with one and with three generation processes, of a
cancel at the leader (the requester is the leader) and at the follower (the
request queued or not yet), with pairs in flight. Invariants checked: no new
Entangle for a cancelled item, the Entangles out are not withdrawn (so every
pair they make is delivered at both ends), the leader's Abort carries the
number of pairs made, the requester gets no LinkErr, and at the end neither
end keeps an item, a pending request, an Entangle or a retry.
"""
import pytest

from qstack.core.errors import ErrorCode
from qstack.core.protocol import Deliver, MessageReceived, OperationDone, QuantumOp, SendMessage
from qstack.link.egp import EGP, Phase
from qstack.link.messages import Abort, QueueAdd, QueueReject, QueueRequest
from qstack.link.service import CancelCreate, CreateRequest, LinkErr, LinkOk
from qstack.physical.ops import CancelEntangle, Entangle, Herald
from qstack.physical.pair_model import SimplePairModel

MODEL = SimplePairModel(0.5, 1.0, 1000, 500)


def _pair(m):
    a = EGP("a", {"b": MODEL}, num_qubits=8, parallel={"b": m})     # leader ("a" < "b")
    b = EGP("b", {"a": MODEL}, num_qubits=8, parallel={"a": m})
    return a, b


def _entangles(acts):
    return [x for x in acts if isinstance(x, QuantumOp) and isinstance(x.op, Entangle)]


def _cancels(acts):
    return [x for x in acts if isinstance(x, QuantumOp) and isinstance(x.op, CancelEntangle)]


def _msgs(acts):
    return [x.msg for x in acts if isinstance(x, SendMessage)]


def _events(acts, kind):
    return [x.event for x in acts if isinstance(x, Deliver) and isinstance(x.event, kind)]


def _idle(egp, peer):
    link = egp.links[peer]
    assert not link.items and not link.pending and not link.cancelled and not link.orphans
    assert link.out == 0 and not link.waiting and link.phase is Phase.IDLE


def _herald(op, qubit):
    return OperationDone(op.op_id, Herald(True, qubit=qubit, key=op.op.key))


@pytest.mark.parametrize("m", [1, 3])
def test_leader_cancel_waits_for_its_entangles_then_aborts_with_the_pairs_made(m):
    a, b = _pair(m)
    acts = a.handle(CreateRequest("b", number=10, create_id=7), 0)
    (add,) = _msgs(acts)
    ops = _entangles(acts)
    assert len(ops) == m
    follows = _entangles(b.handle(MessageReceived("a", add), 5))
    assert len(follows) == m
    # the cancel: nothing withdrawn (a pair may be made right now), nothing new
    acts = a.handle(CancelCreate(7, "b"), 10)
    assert acts == [] and a.links["b"].out == m
    assert a.handle(CancelCreate(7, "b"), 11) == []          # twice: no-op
    assert a.handle(CancelCreate(99, "b"), 11) == []         # unknown: no-op
    assert a.handle(CancelCreate(7, "nobody"), 11) == []
    # the pairs in flight come up at the leader, no new Entangle goes out
    leader_oks, abort = [], None
    for i, op in enumerate(ops):
        acts = a.handle(_herald(op, f"qa{i}"), 20 + i)
        assert not _entangles(acts) and not _cancels(acts)
        leader_oks += _events(acts, LinkOk)
        assert not _events(acts, LinkErr)                     # cancelled: no LinkErr
        sent = _msgs(acts)
        if i < m - 1:
            assert not sent
        else:
            (abort,) = sent
    assert isinstance(abort, Abort) and abort.qid == add.qid and abort.done == m
    assert abort.code == ErrorCode.LINK_CANCELLED
    assert len(leader_oks) == m
    _idle(a, "b")
    # the follower: the Abort first, then the heralds of the pairs it says were made
    acts = b.handle(MessageReceived("a", abort), 30)
    assert not _cancels(acts)                                 # pairs still to come
    follower_oks = []
    for i, (op, lop) in enumerate(zip(follows, ops)):
        acts = b.handle(OperationDone(op.op_id, Herald(True, qubit=f"qb{i}", key=lop.op.key)),
                        40 + i)
        follower_oks += _events(acts, LinkOk)
        assert not _events(acts, LinkErr)
    assert sorted(o.ent_id.seq for o in follower_oks) == sorted(o.ent_id.seq for o in leader_oks)
    _idle(b, "a")


@pytest.mark.parametrize("m", [1, 3])
def test_leader_cancel_with_nothing_out_aborts_at_once(m):
    a, b = _pair(m)
    ops = _entangles(a.handle(CreateRequest("b", number=10, create_id=7), 0))
    # every process's Entangle refused for a full memory: the keys wait for the retry
    for op in ops:
        a.handle(OperationDone(op.op_id, Herald(False, reason="memory full")), 5)
    assert a.links["b"].phase is Phase.BACKOFF and len(a.links["b"].waiting) == m
    acts = a.handle(CancelCreate(7, "b"), 10)
    (abort,) = _msgs(acts)
    assert isinstance(abort, Abort) and abort.done == 0
    assert not _events(acts, LinkErr)
    _idle(a, "b")
    # the freed numbers are given to the next request's pairs
    keys = [o.op.key for o in _entangles(a.handle(CreateRequest("b", number=m, create_id=8), 20))]
    assert sorted(k[3] for k in keys) == list(range(m))


def _follower_request(m, number=10):
    a, b = _pair(m)
    (qreq,) = _msgs(b.handle(CreateRequest("a", number=number, create_id=5), 0))
    assert isinstance(qreq, QueueRequest)
    acts = a.handle(MessageReceived("b", qreq), 5)
    (add,) = _msgs(acts)
    assert isinstance(add, QueueAdd)
    return a, b, add, _entangles(acts)


def _finish_follower_cancel(a, b, add, ops, follows, reject, m, t=100):
    """The leader gets the follower's QueueReject(210) with ``ops`` out: it
    waits for them, aborts with the pairs made; the follower delivers them."""
    assert isinstance(reject, QueueReject) and reject.qid == add.qid
    assert reject.code == ErrorCode.LINK_CANCELLED
    acts = a.handle(MessageReceived("b", reject), t)
    assert not _msgs(acts) and not _cancels(acts) and not _entangles(acts)
    abort = None
    leader_oks = []
    for i, op in enumerate(ops):
        acts = a.handle(_herald(op, f"qa{i}"), t + 10 + i)
        assert not _entangles(acts)
        leader_oks += _events(acts, LinkOk)
        if i == m - 1:
            (abort,) = _msgs(acts)
    assert isinstance(abort, Abort) and abort.done == m
    assert not any(isinstance(e, LinkErr) for e in leader_oks)
    _idle(a, "b")
    # heralds at the follower first, then the Abort
    follower = []
    for i, (op, lop) in enumerate(zip(follows, ops)):
        acts = b.handle(OperationDone(op.op_id, Herald(True, qubit=f"qb{i}", key=lop.op.key)),
                        t + 20 + i)
        follower += _events(acts, LinkOk) + _events(acts, LinkErr)
    acts = b.handle(MessageReceived("a", abort), t + 30)
    assert not _events(acts, LinkErr)
    assert all(isinstance(e, LinkOk) and e.create_id == 5 for e in follower)
    assert sorted(o.ent_id.seq for o in follower) == sorted(o.ent_id.seq for o in leader_oks)
    _idle(b, "a")


@pytest.mark.parametrize("m", [1, 3])
def test_follower_cancel_of_a_queued_request(m):
    a, b, add, ops = _follower_request(m)
    follows = _entangles(b.handle(MessageReceived("a", add), 10))
    assert len(follows) == m
    acts = b.handle(CancelCreate(5, "a"), 20)
    (reject,) = _msgs(acts)
    assert not _cancels(acts)            # its followers stay: pairs may be on their way
    assert b.handle(CancelCreate(5, "a"), 21) == []           # twice: no-op
    _finish_follower_cancel(a, b, add, ops, follows, reject, m)


@pytest.mark.parametrize("m", [1, 3])
def test_follower_cancel_before_the_queue_add_came(m):
    a, b, add, ops = _follower_request(m)
    assert b.handle(CancelCreate(5, "a"), 7) == []            # nothing to tell yet
    assert not b.links["a"].pending and b.links["a"].cancelled == {5}
    acts = b.handle(MessageReceived("a", add), 10)
    (reject,) = _msgs(acts)              # queued (its pairs may come), refused at once
    follows = _entangles(acts)
    assert len(follows) == m and b.links["a"].items[add.qid].cancelled
    # the leader's pairs in flight meet the follower's Entangles
    acts = a.handle(MessageReceived("b", reject), 100)
    assert not _msgs(acts) and not _cancels(acts)
    leader = []
    abort = None
    for i, op in enumerate(ops):
        acts = a.handle(_herald(op, f"qa{i}"), 110 + i)
        assert not _entangles(acts)
        leader += _events(acts, LinkOk)
        if i == m - 1:
            (abort,) = _msgs(acts)
    assert abort.done == m and abort.code == ErrorCode.LINK_CANCELLED
    follower = []
    for op, lop in zip(follows, ops):
        acts = b.handle(OperationDone(op.op_id, Herald(True, qubit="x", key=lop.op.key)), 120)
        follower += _events(acts, LinkOk)
    acts = b.handle(MessageReceived("a", abort), 130)
    assert not _events(acts, LinkErr)
    assert sorted(o.ent_id.seq for o in follower) == sorted(o.ent_id.seq for o in leader)
    _idle(a, "b")
    _idle(b, "a")


def test_follower_cancel_then_the_leader_refuses_the_queue_request_silently():
    a, b = _pair(1)
    b.handle(CreateRequest("a", number=2, create_id=5), 0)
    b.handle(CancelCreate(5, "a"), 1)
    acts = b.handle(MessageReceived("a", QueueReject(-1, 5, int(ErrorCode.LINK_QUEUE_FULL),
                                                     "queue full")), 10)
    assert acts == []
    _idle(b, "a")


def test_follower_cancel_after_the_leader_aborted_gives_no_link_err():
    """The leader's Abort (deadline) crosses the follower's cancel: the
    requester cancelled, so the Abort ends the item without a LinkErr."""
    a, b, add, ops = _follower_request(1)
    b.handle(MessageReceived("a", add), 10)
    (reject,) = _msgs(b.handle(CancelCreate(5, "a"), 20))
    acts = b.handle(MessageReceived("a", Abort(add.qid, int(ErrorCode.LINK_TIMEOUT), 0)), 30)
    assert not _events(acts, LinkErr) and len(_cancels(acts)) == 1
    _idle(b, "a")


def test_a_cancel_from_the_follower_for_the_leaders_own_request_is_refused():
    a, _b = _pair(1)
    (add,) = _msgs(a.handle(CreateRequest("b", number=3, create_id=7), 0))
    acts = a.handle(MessageReceived("b", QueueReject(add.qid, 7, int(ErrorCode.LINK_CANCELLED),
                                                     "")), 5)
    (fail,) = acts
    assert fail.code is ErrorCode.UNEXPECTED_EVENT
    assert a.links["b"].items[add.qid].ending is None        # it goes on
