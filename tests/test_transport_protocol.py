"""The teleportation transport, sans-I/O: events in, actions out, no simulator."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core.errors import ErrorCode
from qstack.core.protocol import (
    Fail,
    CancelTimer, Deliver, MessageReceived, OperationDone, PeerDown, QuantumOp, SendMessage,
    StartTimer, Submit, TimerFired,
)
from qstack.network.service import NetErr, NetExpire, NetOk, NetRequest, PairId
from qstack.physical.ops import BellMeasure, Discard, Gate
from qstack.transport import service as svc
from qstack.transport.messages import (
    Ack, Data, EprHeader, Fin, PairRelease, QubitHeader, Rst, Syn, SynAck, Window,
)
from qstack.transport.protocol import Phase, TeleportTransport, correction_gate


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def delivered(actions, kind=object):
    return [a.event for a in of(actions, Deliver) if isinstance(a.event, kind)]


def sent(actions, kind=object):
    return [a.msg for a in of(actions, SendMessage) if isinstance(a.msg, kind)]


def opened(node="alice", peer="bob", port=7):
    """A transport on ``node`` with an open connection to ``peer``:``port``."""
    t = TeleportTransport(node)
    acts = t.handle(svc.Connect(1, peer, port), 0)
    (syn,) = sent(acts, Syn)
    # the far end took the connection and lets 8 items come
    acts = t.handle(MessageReceived(peer, SynAck(port, syn.src_port, 8)), 10)
    (done,) = delivered(acts, svc.Done)
    return t, done.value


def ack(conn, seq, code=0, limit=64, peer="bob"):
    """The far end's acknowledgement of item ``seq`` of ``conn``."""
    return MessageReceived(peer, Ack(conn.remote_port, conn.local_port, seq, int(code), limit))


def served(node="bob", peer="alice", port=7, peer_port=49152):
    """A transport on ``node`` that accepted a connection from ``peer``."""
    t = TeleportTransport(node)
    t.handle(svc.Listen(1, port), 0)
    acts = t.handle(MessageReceived(peer, Syn(peer_port, port, 8)), 5)
    assert sent(acts, SynAck) == [SynAck(port, peer_port, 0)]   # no window until accepted
    (inc,) = delivered(acts, svc.Incoming)
    acts = t.handle(svc.Accept(2, inc.conn), 6)
    assert sent(acts, Window) == [Window(port, peer_port, t.window)]
    return t, inc.conn


def ok(rid, seq, qubit, bell=0, initiator=True, remote="bob", head="alice", fid=0.9):
    return NetOk(rid, PairId(head, 1, seq), remote, bell, fid, 0, qubit=qubit,
                 initiator=initiator)


# ---------------------------------------------------------------- connections

def test_connect_handshake_and_ports():
    t, conn = opened()
    assert conn == svc.Conn(49152, "bob", 7)
    acts = t.handle(svc.Connect(2, "bob", 7), 20)     # a second one gets the next port
    assert sent(acts, Syn) == [Syn(49153, 7, t.window)]


def test_connect_refused_when_nobody_listens():
    server = TeleportTransport("bob")
    acts = server.handle(MessageReceived("alice", Syn(49152, 9)), 0)
    (rst,) = sent(acts, Rst)
    assert rst.code == ErrorCode.TRANSPORT_CONNECTION_REFUSED
    client = TeleportTransport("alice")
    client.handle(svc.Connect(4, "bob", 9), 0)
    acts = client.handle(MessageReceived("bob", rst), 10)
    (failed,) = delivered(acts, svc.Failed)
    assert (failed.token, failed.code) == (4, ErrorCode.TRANSPORT_CONNECTION_REFUSED)
    assert not client.conns


def test_connect_timeout():
    t = TeleportTransport("alice")
    acts = t.handle(svc.Connect(1, "bob", 7, timeout_ns=1000), 0)
    (timer,) = of(acts, StartTimer)
    acts = t.handle(TimerFired(timer.key), 1000)
    assert delivered(acts, svc.Failed)[0].code == ErrorCode.TRANSPORT_TIMEOUT


def test_listen_twice_is_port_in_use():
    t = TeleportTransport("bob")
    t.handle(svc.Listen(1, 7), 0)
    (failed,) = delivered(t.handle(svc.Listen(2, 7), 0), svc.Failed)
    assert failed.code == ErrorCode.TRANSPORT_PORT_IN_USE


# ---------------------------------------------------------------- sending

def test_send_qubit_requests_pair_measures_then_sends_header():
    t, conn = opened()
    acts = t.handle(svc.SendQubit(5, conn, "Q", b"meta", 0.8, 10_000), 100)
    (sub,) = of(acts, Submit)
    req = sub.request
    assert isinstance(req, NetRequest)
    assert (req.destination, req.number, req.min_fidelity, req.max_time_ns, req.app_tag) == \
        ("bob", 1, 0.8, 10_000, conn.local_port)
    acts = t.handle(ok(req.request_id, 0, "A"), 500)
    (qop,) = of(acts, QuantumOp)
    assert qop.op == BellMeasure("Q", "A")
    assert not sent(acts)                      # nothing leaves before the measurement
    acts = t.handle(OperationDone(qop.op_id, 3), 600)
    (hdr,) = sent(acts, QubitHeader)
    assert (hdr.seq, hdr.pair, hdr.m_x, hdr.m_z, hdr.metadata, hdr.sent_ns) == \
        (0, ("alice", 1, 0), True, True, b"meta", 100)
    assert CancelTimer(("op", 5)) in acts      # measured: it cannot want a pair any more
    assert not delivered(acts, svc.Done)       # done when the far end has it
    acts = t.handle(ack(conn, 0), 700)
    assert delivered(acts, svc.Done) == [svc.Done(5, ("alice", 1, 0))]


def test_no_pair_in_time_fails_and_returns_the_qubit():
    t, conn = opened()
    acts = t.handle(svc.SendQubit(5, conn, "Q", timeout_ns=1000), 0)
    rid = of(acts, Submit)[0].request.request_id
    acts = t.handle(TimerFired(("op", 5)), 1000)
    (failed,) = delivered(acts, svc.Failed)
    assert (failed.code, failed.qubit) == (ErrorCode.TRANSPORT_NO_PAIR, "Q")
    assert not of(acts, QuantumOp)             # the qubit was never touched
    # The pair that comes too late is given up at both ends.
    acts = t.handle(ok(rid, 0, "A"), 2000)
    assert [q.op for q in of(acts, QuantumOp)] == [Discard("A")]
    assert sent(acts, PairRelease) == [PairRelease(("alice", 1, 0))]


def test_pairs_go_to_the_head_of_the_queue_whatever_request_they_answer():
    t, conn = opened()
    r1 = of(t.handle(svc.SendQubit(5, conn, "Q1"), 0), Submit)[0].request.request_id
    r2 = of(t.handle(svc.SendQubit(6, conn, "Q2"), 0), Submit)[0].request.request_id
    # The second request's pair comes first: it still serves the first qubit.
    acts = t.handle(ok(r2, 0, "A2"), 10)
    assert [q.op for q in of(acts, QuantumOp)] == [BellMeasure("Q1", "A2")]
    acts2 = t.handle(ok(r1, 0, "A1"), 11)       # held: one measurement at a time
    assert not of(acts2, QuantumOp)
    acts = t.handle(OperationDone(of(acts, QuantumOp)[0].op_id, 0), 20)
    assert sent(acts, QubitHeader)[0].seq == 0
    (qop,) = of(acts, QuantumOp)
    assert qop.op == BellMeasure("Q2", "A1")
    acts = t.handle(OperationDone(qop.op_id, 1), 30)
    assert sent(acts, QubitHeader)[0].seq == 1
    # an Ack with code 0 is cumulative: item 1's settles item 0 too, in order
    assert [d.token for d in delivered(t.handle(ack(conn, 1), 40), svc.Done)] == [5, 6]
    assert not delivered(t.handle(ack(conn, 0), 41))          # (a late one: nothing left)


def test_expired_pair_is_replaced_before_the_teleportation():
    t, conn = opened()
    r1 = of(t.handle(svc.SendQubit(5, conn, "Q1"), 0), Submit)[0].request.request_id
    r2 = of(t.handle(svc.SendQubit(6, conn, "Q2"), 0), Submit)[0].request.request_id
    bsm1 = of(t.handle(ok(r1, 0, "A1"), 10), QuantumOp)[0]
    t.handle(ok(r2, 1, "A2"), 11)               # waits in the pool for Q2
    acts = t.handle(NetExpire(PairId("alice", 1, 1), "bob", "cut-off"), 12)
    (sub,) = of(acts, Submit)                  # asked again at once
    assert sub.request.number == 1
    acts = t.handle(OperationDone(bsm1.op_id, 0), 20)
    assert not of(acts, QuantumOp)             # Q2 waits for the new pair
    acts = t.handle(ok(sub.request.request_id, 2, "A3"), 30)
    assert [q.op for q in of(acts, QuantumOp)] == [BellMeasure("Q2", "A3")]


def test_pair_expiring_under_the_measurement_keeps_the_qubit():
    t, conn = opened()
    rid = of(t.handle(svc.SendQubit(5, conn, "Q"), 0), Submit)[0].request.request_id
    bsm = of(t.handle(ok(rid, 0, "A"), 10), QuantumOp)[0]
    acts = t.handle(NetExpire(PairId("alice", 1, 0), "bob"), 11)
    from qstack.core.errors import QStackError
    acts = t.handle(OperationDone(bsm.op_id, QStackError(ErrorCode.QUBIT_UNAVAILABLE, "A")), 12)
    assert not delivered(acts, svc.Done) and not delivered(acts, svc.Failed)
    (sub,) = of(acts, Submit)
    acts = t.handle(ok(sub.request.request_id, 1, "B"), 20)
    assert [q.op for q in of(acts, QuantumOp)] == [BellMeasure("Q", "B")]


def test_the_far_end_s_request_failing_at_this_tail_is_not_this_end_s():
    """Request ids are the head's: the tail's NetErr for the far end's request
    (initiator False) leaves this end's own request of the same id alone."""
    t, conn = opened()
    rid = of(t.handle(svc.SendQubit(5, conn, "Q", timeout_ns=10**9), 0), Submit)[0].request.request_id
    acts = t.handle(NetErr(rid, "bob", ErrorCode.NET_CIRCUIT_TORN_DOWN, initiator=False), 10)
    assert acts == [] and rid in t.requests
    (bsm,) = of(t.handle(ok(rid, 0, "A"), 20), QuantumOp)     # its pair still comes
    assert bsm.op == BellMeasure("Q", "A")


def test_permanent_network_error_fails_at_once_transient_retries():
    t, conn = opened()
    rid = of(t.handle(svc.SendQubit(5, conn, "Q", timeout_ns=10**9), 0), Submit)[0].request.request_id
    acts = t.handle(NetErr(rid, "bob", ErrorCode.NET_TIMEOUT), 10)
    (timer,) = of(acts, StartTimer)
    acts = t.handle(TimerFired(timer.key), 10 + t.retry_ns)
    (sub,) = of(acts, Submit)
    acts = t.handle(NetErr(sub.request.request_id, "bob", ErrorCode.NET_NO_ROUTE), 20)
    (failed,) = delivered(acts, svc.Failed)
    assert (failed.code, failed.qubit) == (ErrorCode.TRANSPORT_NO_PAIR, "Q")
    assert "NET_NO_ROUTE" in failed.detail


def test_far_end_net_err_with_our_id_is_ignored():
    t, conn = opened()
    rid = of(t.handle(svc.SendQubit(5, conn, "Q"), 0), Submit)[0].request.request_id
    assert t.handle(NetErr(rid, "carol", ErrorCode.NET_TIMEOUT), 10) == []


def test_create_epr_delivers_local_halves_and_headers():
    t, conn = opened()
    acts = t.handle(svc.CreateEpr(7, conn, number=2), 0)
    (sub,) = of(acts, Submit)
    assert sub.request.number == 2
    rid = sub.request.request_id
    acts = t.handle(ok(rid, 0, "A", bell=2), 10)
    assert sent(acts, EprHeader)[0].pair == ("alice", 1, 0)
    (half,) = delivered(acts, svc.EprArrived)
    assert (half.qubit, half.initiator, half.token) == ("A", True, 7)
    acts = t.handle(ok(rid, 1, "B"), 20)
    assert not delivered(acts, svc.Done)
    assert not delivered(t.handle(ack(conn, 0), 30), svc.Done)
    assert delivered(t.handle(ack(conn, 1), 31), svc.Done) == [svc.Done(7, 2)]


def test_close_fails_waiting_sends_and_sends_fin_after_data():
    t, conn = opened()
    t.handle(svc.SendQubit(5, conn, "Q"), 0)
    acts = t.handle(svc.Close(9, conn), 10)
    failed = delivered(acts, svc.Failed)
    assert [(f.token, f.code, f.qubit) for f in failed] == [(5, ErrorCode.TRANSPORT_CLOSED, "Q")]
    assert sent(acts, Fin) == [Fin(conn.local_port, 7, 0)]
    assert delivered(acts, svc.Done) == [svc.Done(9)]


# ---------------------------------------------------------------- receiving

def test_receiver_binds_header_then_pair_and_corrects():
    t, conn = served()
    hdr = QubitHeader(49152, 7, 0, ("alice", 1, 0), True, False, 0, b"x")
    acts = t.handle(MessageReceived("alice", hdr), 10)
    assert not delivered(acts, svc.QubitArrived)
    acts = t.handle(ok(99, 0, "B", bell=3, initiator=False, remote="alice"), 20)
    (qop,) = of(acts, QuantumOp)
    assert qop.op == Gate(correction_gate(2, 3), ("B",)) == Gate("z", ("B",))
    acts = t.handle(OperationDone(qop.op_id, None), 30)
    (arr,) = delivered(acts, svc.QubitArrived)
    assert (arr.qubit, arr.metadata, arr.seq, arr.latency_ns) == ("B", b"x", 0, 30)


def test_correction_table():
    # X^x Z^z for the XOR of the outcome and the pair's Bell index.
    assert [correction_gate(m, 0) for m in range(4)] == [None, "z", "x", "y"]
    assert correction_gate(1, 1) is None and correction_gate(2, 1) == "y"


def test_release_before_and_after_the_pair():
    t, conn = served()
    t.handle(MessageReceived("alice", PairRelease(("alice", 1, 0))), 0)
    acts = t.handle(ok(1, 0, "B", initiator=False, remote="alice"), 10)
    assert [q.op for q in of(acts, QuantumOp)] == [Discard("B")]
    t.handle(ok(1, 1, "C", initiator=False, remote="alice"), 20)
    acts = t.handle(MessageReceived("alice", PairRelease(("alice", 1, 1))), 30)
    assert [q.op for q in of(acts, QuantumOp)] == [Discard("C")]


def test_unbound_pair_is_dropped_after_the_bind_timeout():
    t, conn = served()
    acts = t.handle(ok(1, 0, "B", initiator=False, remote="alice"), 10)
    (timer,) = of(acts, StartTimer)
    acts = t.handle(TimerFired(timer.key), 10 + t.bind_timeout_ns)
    assert [q.op for q in of(acts, QuantumOp)] == [Discard("B")]


def test_fin_closes_after_the_last_item():
    t, conn = served()
    acts = t.handle(MessageReceived("alice", Fin(49152, 7, 1)), 0)
    assert not delivered(acts, svc.PeerClosed)
    acts = t.handle(MessageReceived("alice", Data(49152, 7, 0, b"last")), 5)
    assert [type(e) for e in delivered(acts)] == [svc.DataArrived, svc.PeerClosed]


def test_peer_down_waits_then_resets_its_connections():
    """A broken session may come back: the connection waits (nothing is
    measured meanwhile); if it does not within peer_timeout_ns, the connection
    ends with TRANSPORT_RESET and the qubit not yet sent is handed back."""
    t, conn = opened()
    rid = of(t.handle(svc.SendQubit(5, conn, "Q"), 0), Submit)[0].request.request_id
    acts = t.handle(PeerDown("bob"), 10)
    assert not delivered(acts) and of(acts, StartTimer)[0].key == ("peer", "bob")
    assert not of(t.handle(ok(rid, 0, "A"), 11), QuantumOp)     # held, not measured
    acts = t.handle(TimerFired(("peer", "bob")), 10 + t.peer_timeout_ns)
    (failed,) = delivered(acts, svc.Failed)
    assert (failed.code, failed.qubit) == (ErrorCode.TRANSPORT_RESET, "Q")
    assert delivered(acts, svc.PeerClosed)[0].code == ErrorCode.TRANSPORT_RESET
    assert not t.conns


def test_two_connections_between_the_same_nodes_stay_apart():
    t = TeleportTransport("bob")
    t.handle(svc.Listen(1, 7), 0)
    t.handle(svc.Listen(2, 8), 0)
    t.handle(MessageReceived("alice", Syn(49152, 7)), 0)
    t.handle(MessageReceived("alice", Syn(49153, 8)), 0)
    t.handle(ok(1, 0, "P0", initiator=False, remote="alice"), 1)
    t.handle(ok(1, 1, "P1", initiator=False, remote="alice"), 1)
    out = []
    for src, dst, pair in ((49153, 8, 1), (49152, 7, 0)):
        acts = t.handle(MessageReceived("alice", QubitHeader(src, dst, 0, ("alice", 1, pair),
                                                              False, False, 0)), 2)
        out += delivered(acts, svc.QubitArrived)
    assert [(a.conn.local_port, a.qubit) for a in out] == [(8, "P1"), (7, "P0")]


# ---------------------------------------------------------------- any order of arrival

@st.composite
def arrivals(draw):
    """Items of one connection (qubits with random outcomes and Bell indices,
    EPR pairs, data), the pairs coming in an order unrelated to the items',
    and every header/pair/data event in a random order."""
    n = draw(st.integers(1, 7))
    kinds = draw(st.lists(st.sampled_from(["qubit", "qubit", "epr", "data"]), min_size=n,
                          max_size=n))
    pair_seqs = draw(st.permutations(list(range(n))))
    items = []
    events = []
    for seq, kind in enumerate(kinds):
        pid = ("alice", 4, pair_seqs[seq])
        bsm, bell = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        if kind == "data":
            events.append(("msg", Data(49152, 7, seq, bytes([seq]))))
        else:
            if kind == "qubit":
                events.append(("msg", QubitHeader(49152, 7, seq, pid, bool(bsm >> 1), bool(bsm & 1), 0)))
            else:
                events.append(("msg", EprHeader(49152, 7, seq, pid, 0)))
            events.append(("pair", NetOk(1, PairId(*pid), "alice", bell, 0.9, 0,
                                         qubit=f"q{pid[2]}", initiator=False)))
        items.append((kind, pid, bsm, bell))
    order = draw(st.permutations(events))
    delay_ops = draw(st.booleans())
    return items, order, delay_ops


@settings(max_examples=150)
@given(arrivals())
def test_any_arrival_order_maps_each_qubit_to_its_header(case):
    items, order, delay_ops = case
    t, conn = served()
    out, gates, pending = [], {}, []
    for kind, ev in order:
        event = MessageReceived("alice", ev) if kind == "msg" else ev
        acts = t.handle(event, 100)
        out += delivered(acts)
        for qop in of(acts, QuantumOp):
            gates[qop.op.qubits[0]] = qop.op.name
            pending.append(qop.op_id)
        if not delay_ops:   # complete the corrections at once, or all at the end
            while pending:
                out += delivered(t.handle(OperationDone(pending.pop(0), None), 100))
    while pending:
        out += delivered(t.handle(OperationDone(pending.pop(), None), 100))
    assert [e.seq for e in out] == list(range(len(items)))
    for ev, (kind, pid, bsm, bell) in zip(out, items):
        if kind == "data":
            assert isinstance(ev, svc.DataArrived)
            continue
        qubit = f"q{pid[2]}"
        assert ev.qubit == qubit
        want = correction_gate(bsm, bell) if kind == "qubit" else correction_gate(0, bell)
        assert gates.get(qubit) == want
        assert isinstance(ev, svc.QubitArrived if kind == "qubit" else svc.EprArrived)
    assert not t.remote_pairs and not t.headers


def test_a_header_for_another_nodes_pair_is_refused():
    """Carol names a pair that alice heads: bob must not bind it to carol's
    connection, must keep the pair for alice, and tells carol why."""
    from qstack.network.service import PairId
    from qstack.transport.messages import QubitHeader, Rst, Syn

    bob = TeleportTransport("bob")
    bob.handle(svc.Listen(1, 7), 0)
    bob.handle(MessageReceived("carol", Syn(50000, 7)), 1)
    bob.handle(NetOk(1, PairId("alice", 1, 0), "alice", 0, 0.9, 0, qubit="q_ab",
                     initiator=False), 2)
    acts = bob.handle(MessageReceived("carol", QubitHeader(50000, 7, 0, ("alice", 1, 0), False,
                                                           False, 0)), 3)
    assert not [a for a in acts if isinstance(a, Deliver)]
    assert any(isinstance(a, Fail) and a.code == ErrorCode.TRANSPORT_HEADER_MISMATCH for a in acts)
    rst = [a.msg for a in acts if isinstance(a, SendMessage) and isinstance(a.msg, Rst)]
    assert rst and rst[0].code == int(ErrorCode.TRANSPORT_HEADER_MISMATCH)
    assert ("alice", 1, 0) in bob.remote_pairs          # still there for its owner


# ---------------------------------------------------------------- giving up a connect (spec §3)

def exchange(a, b, first, now=100, max_rounds=10):
    """Carry the messages of ``first`` (actions of ``a``) between transports
    ``a`` and ``b`` until none is left; return everything delivered upward,
    per node. Fails if the two keep answering each other."""
    ups = {a.node: [], b.node: []}
    by_name = {a.node: a, b.node: b}
    pending = [(a.node, x) for x in first]
    for _ in range(max_rounds):
        msgs = [(src, x) for src, x in pending if isinstance(x, SendMessage)]
        pending = []
        if not msgs:
            return ups
        for src, x in msgs:
            dst = by_name[x.dst]
            acts = dst.handle(MessageReceived(src, x.msg), now)
            ups[dst.node] += delivered(acts)
            pending += [(dst.node, y) for y in acts]
    raise AssertionError("the two transports keep answering each other")


def test_close_while_connecting_resets_the_far_end():
    alice = TeleportTransport("alice")
    acts = alice.handle(svc.Connect(1, "bob", 7, timeout_ns=10_000), 0)
    (syn,) = sent(acts, Syn)
    bob, bconn = served(port=7, peer_port=syn.src_port)      # bob accepted the Syn
    conn = svc.Conn(syn.src_port, "bob", 7)
    acts = alice.handle(svc.Close(2, conn), 10)
    (failed,) = delivered(acts, svc.Failed)
    assert (failed.token, failed.code) == (1, ErrorCode.TRANSPORT_CLOSED)
    assert delivered(acts, svc.Done) == [svc.Done(2)]
    assert CancelTimer(("connect", conn)) in acts
    (rst,) = sent(acts, Rst)
    assert (rst.src_port, rst.dst_port, rst.code) == (conn.local_port, 7,
                                                      int(ErrorCode.TRANSPORT_CLOSED))
    assert not alice.conns
    # bob drops its half-open connection and tells its application why.
    acts = bob.handle(MessageReceived("alice", rst), 20)
    (closed,) = delivered(acts, svc.PeerClosed)
    assert (closed.conn, closed.code) == (bconn, ErrorCode.TRANSPORT_CLOSED)
    assert not bob.conns and not sent(acts)                  # an Rst is never answered


def test_connect_timeout_resets_the_far_end():
    alice = TeleportTransport("alice")
    acts = alice.handle(svc.Connect(1, "bob", 7, timeout_ns=1000), 0)
    (syn,) = sent(acts, Syn)
    bob, _ = served(port=7, peer_port=syn.src_port)
    acts = alice.handle(TimerFired(("connect", svc.Conn(syn.src_port, "bob", 7))), 1000)
    assert delivered(acts, svc.Failed)[0].code == ErrorCode.TRANSPORT_TIMEOUT
    (rst,) = sent(acts, Rst)
    assert rst.code == ErrorCode.TRANSPORT_CLOSED
    ups = exchange(alice, bob, acts)
    assert [e.code for e in ups["bob"] if isinstance(e, svc.PeerClosed)] == \
        [ErrorCode.TRANSPORT_CLOSED]
    assert not bob.conns and not alice.conns


def test_synack_for_an_unknown_connection_is_answered_with_rst():
    """The connect was given up (or forgotten) before the SynAck came: the
    listener's half-open connection is reset, and nobody answers that Rst."""
    alice = TeleportTransport("alice")
    bob, bconn = served(port=7, peer_port=49152)
    acts = alice.handle(MessageReceived("bob", SynAck(7, 49152)), 10)
    (rst,) = sent(acts, Rst)
    assert (rst.src_port, rst.dst_port, rst.code) == \
        (49152, 7, int(ErrorCode.TRANSPORT_NOT_CONNECTED))
    assert not delivered(acts) and not alice.conns
    acts = bob.handle(MessageReceived("alice", rst), 20)
    (closed,) = delivered(acts, svc.PeerClosed)
    assert (closed.conn, closed.code) == (bconn, ErrorCode.TRANSPORT_NOT_CONNECTED)
    assert not bob.conns
    assert sent(acts) == []
    # The same Rst again (or any Rst for a connection nobody has) gets no answer.
    assert bob.handle(MessageReceived("alice", rst), 30) == []
    assert alice.handle(MessageReceived("bob", Rst(7, 49152, 401)), 30) == []


def test_a_repeated_synack_on_an_open_connection_is_not_reset():
    t, conn = opened()
    acts = t.handle(MessageReceived("bob", SynAck(7, conn.local_port)), 20)
    assert acts == [] and t.conns[conn].phase is Phase.OPEN


def test_a_restarted_connecting_end_resets_the_listener():
    """The Syn went out, then alice restarted (PeerDown(self)): bob's SynAck
    meets no connection and bob's half-open connection is reset."""
    alice = TeleportTransport("alice")
    (syn,) = sent(alice.handle(svc.Connect(1, "bob", 7), 0), Syn)
    bob = TeleportTransport("bob")
    bob.handle(svc.Listen(1, 7), 0)
    alice.handle(PeerDown("alice"), 5)
    ups = exchange(bob, alice, bob.handle(MessageReceived("alice", syn), 10))
    assert [type(e) for e in ups["bob"]] == [svc.PeerClosed]
    assert not bob.conns and not alice.conns


@settings(max_examples=100)
@given(st.lists(st.sampled_from(["syn", "synack", "rst", "fin", "close", "timer"]),
                min_size=1, max_size=8))
def test_control_messages_never_ping_pong(steps):
    """Whatever the order of handshake events at either end, the answers die
    out after at most two messages (an Rst is never answered)."""
    alice, bob = TeleportTransport("alice"), TeleportTransport("bob")
    bob.handle(svc.Listen(1, 7), 0)
    (syn,) = sent(alice.handle(svc.Connect(1, "bob", 7, local_port=50000, timeout_ns=10), 0), Syn)
    conn = svc.Conn(50000, "bob", 7)
    for i, step in enumerate(steps, start=1):
        if step == "syn":
            acts, a, b = bob.handle(MessageReceived("alice", syn), i), bob, alice
        elif step == "synack":
            acts, a, b = alice.handle(MessageReceived("bob", SynAck(7, 50000)), i), alice, bob
        elif step == "rst":
            acts, a, b = bob.handle(MessageReceived("alice", Rst(50000, 7, 404)), i), bob, alice
        elif step == "fin":
            acts, a, b = bob.handle(MessageReceived("alice", Fin(50000, 7, 0)), i), bob, alice
        elif step == "close":
            acts, a, b = alice.handle(svc.Close(9, conn), i), alice, bob
        else:
            acts, a, b = alice.handle(TimerFired(("connect", conn)), i), alice, bob
        exchange(a, b, acts, now=i, max_rounds=3)


# ---------------------------------------------------------------- bounded pair-id memory (spec §5)

def test_expired_ids_are_forgotten_after_the_bind_timeout():
    t, conn = served()
    t.bind_timeout_ns = 1000
    for seq in range(50):   # pairs that were consumed (or never held) when they expired
        t.handle(NetExpire(PairId("alice", 1, seq), "alice"), 10 + seq)
    assert len(t.expired) == 50
    t.handle(NetExpire(PairId("alice", 1, 100), "alice"), 1030)
    assert len(t.expired) == 30        # those recorded at 10..30 ran out at 1010..1030
    t.handle(NetExpire(PairId("alice", 1, 101), "alice"), 5000)
    assert list(t.expired) == [("alice", 1, 101)]


def test_an_expired_id_counts_until_the_bind_timeout_only():
    t, conn = served()
    t.bind_timeout_ns = 1000
    t.handle(ok(1, 0, "B0", initiator=False, remote="alice"), 0)   # waits for its header
    t.handle(NetExpire(PairId("alice", 1, 0), "alice"), 100)
    t.handle(NetExpire(PairId("alice", 1, 1), "alice"), 100)       # not held here
    # Within the bind timeout the header's item is Lost with the expiry's code...
    acts = t.handle(MessageReceived("alice", QubitHeader(49152, 7, 0, ("alice", 1, 0), False,
                                                          False, 0)), 1099)
    (lost,) = delivered(acts, svc.Lost)
    assert (lost.seq, lost.code) == (0, ErrorCode.NET_CIRCUIT_TORN_DOWN)
    # ... after it, a header is one whose pair never comes (§5 rule 2).
    acts = t.handle(MessageReceived("alice", QubitHeader(49152, 7, 1, ("alice", 1, 1), False,
                                                          False, 0)), 1100)
    assert not delivered(acts)
    assert StartTimer(("header", ("alice", 1, 1)), 1000) in acts
    acts = t.handle(TimerFired(("header", ("alice", 1, 1))), 2100)
    (lost,) = delivered(acts, svc.Lost)
    assert (lost.seq, lost.code) == (1, ErrorCode.TRANSPORT_HEADER_MISMATCH)
    assert not t.expired


def test_expiry_of_a_pair_this_node_heads_is_not_recorded():
    t, conn = opened()
    rid = of(t.handle(svc.CreateEpr(7, conn, number=1), 0), Submit)[0].request.request_id
    t.handle(ok(rid, 0, "A"), 10)                   # handed to the application
    t.handle(NetExpire(PairId("alice", 1, 0), "bob"), 20)
    assert not t.expired


def test_released_ids_are_forgotten_after_the_bind_timeout():
    t, conn = served()
    t.bind_timeout_ns = 1000
    t.handle(MessageReceived("alice", PairRelease(("alice", 1, 0))), 0)
    t.handle(MessageReceived("alice", PairRelease(("alice", 1, 1))), 0)
    acts = t.handle(ok(1, 0, "B0", initiator=False, remote="alice"), 999)
    assert [q.op for q in of(acts, QuantumOp)] == [Discard("B0")]     # in time: freed at once
    t.handle(MessageReceived("alice", Data(49152, 7, 0, b"x")), 1000)
    assert not t.released                                            # the other one ran out
    # A pair that comes later waits as an unbound pair and is freed by its bind timer.
    acts = t.handle(ok(1, 1, "B1", initiator=False, remote="alice"), 1500)
    (timer,) = of(acts, StartTimer)
    acts = t.handle(TimerFired(timer.key), 2500)
    assert [q.op for q in of(acts, QuantumOp)] == [Discard("B1")]


def test_pair_id_memory_stays_bounded_in_a_long_run():
    """10 000 expiries and releases, one every 1 ms, bind timeout 10 ms: at
    most the last 10 ms' worth are remembered at any time."""
    t, conn = served()
    t.bind_timeout_ns = 10_000_000
    for i in range(10_000):
        now = i * 1_000_000
        t.handle(NetExpire(PairId("alice", 2, i), "alice"), now)
        t.handle(MessageReceived("alice", PairRelease(("alice", 3, i))), now)
        assert len(t.expired) <= 10 and len(t.released) <= 10


# ---------------------------------------------------------------- measure-directly pairs

def md_ok(rid, seq, setting, outcome, initiator=True, remote="bob"):
    return NetOk(rid, PairId("alice", 1, seq), remote, 0, 0.9, 0, outcome=outcome,
                 setting=setting, initiator=initiator)


def test_measure_pairs_asks_for_type_d_and_streams_records_with_headers():
    from qstack.network.service import NetRequestType
    from qstack.transport.messages import MeasuredHeader

    t, conn = opened()
    acts = t.handle(svc.MeasurePairs(7, conn, number=2, bases="E91"), 0)
    (sub,) = of(acts, Submit)
    req = sub.request
    assert (req.type, req.measure_basis, req.correct, req.number) == (
        NetRequestType.MEASURE_DIRECTLY, "E91", True, 2)
    acts = t.handle(md_ok(req.request_id, 0, 2, 1), 10)
    (hdr,) = sent(acts, MeasuredHeader)
    assert (hdr.seq, hdr.pair, hdr.bases) == (0, ("alice", 1, 0), "E91")
    (rec,) = delivered(acts, svc.PairMeasured)
    assert (rec.setting, rec.outcome, rec.initiator, rec.token) == (2, 1, True, 7)
    assert not of(acts, QuantumOp)                  # no qubit, nothing to free
    t.handle(md_ok(req.request_id, 1, 0, 0), 20)
    assert not delivered(t.handle(ack(conn, 0), 30), svc.Done)
    assert delivered(t.handle(ack(conn, 1), 31), svc.Done) == [svc.Done(7, 2)]


def test_a_measured_pair_binds_to_its_header_and_a_kept_header_does_not_take_it():
    from qstack.transport.messages import MeasuredHeader

    t, conn = served()
    acts = t.handle(MessageReceived("alice", MeasuredHeader(49152, 7, 0, ("alice", 1, 0), 0,
                                                            "ZX")), 10)
    assert not delivered(acts, svc.PairMeasured)
    acts = t.handle(md_ok(99, 0, 1, 1, initiator=False, remote="alice"), 20)
    (rec,) = delivered(acts, svc.PairMeasured)
    assert (rec.seq, rec.pair, rec.setting, rec.outcome, rec.initiator) == (
        0, ("alice", 1, 0), 1, 1, False)
    # an EprHeader naming a measured pair: the item is lost, not delivered as a qubit
    t.handle(MessageReceived("alice", EprHeader(49152, 7, 1, ("alice", 1, 1), 0)), 30)
    acts = t.handle(md_ok(99, 1, 0, 0, initiator=False, remote="alice"), 40)
    (lost,) = delivered(acts, svc.Lost)
    assert (lost.seq, lost.code) == (1, ErrorCode.TRANSPORT_HEADER_MISMATCH)
    assert not of(acts, QuantumOp)


def test_a_bad_basis_set_is_refused_before_anything_changes():
    t, conn = opened()
    acts = t.handle(svc.MeasurePairs(7, conn, number=2, bases="XY"), 0)
    assert not of(acts, Submit)
    (f,) = delivered(acts, svc.Failed)
    assert f.code == ErrorCode.INVALID_PARAMETER


# ---------------------------------------------------------------- standing requests

def test_a_connection_keeps_one_standing_request_tops_it_up_and_cancels_it_when_idle():
    """specs/transport.md §4 "Standing requests": the first deficit opens a
    standing NetRequest, later ones top it up (no new request, no new
    circuit); idle for standing_idle_ns, it is cancelled, and a pair it still
    brings is released."""
    from qstack.network.service import NetCancel, NetTopUp

    t = TeleportTransport("alice", standing_idle_ns=1000)
    acts = t.handle(svc.Connect(1, "bob", 7), 0)
    (syn,) = sent(acts, Syn)
    acts = t.handle(MessageReceived("bob", SynAck(7, syn.src_port, 8)), 10)
    (done,) = delivered(acts, svc.Done)
    conn = done.value
    acts = t.handle(svc.SendQubit(2, conn, "q1", timeout_ns=50_000), 20)
    (req,) = [a.request for a in of(acts, Submit)]
    assert isinstance(req, NetRequest) and req.standing and req.number == 1
    assert req.max_time_ns == 0          # the item's own deadline fails it, not the network
    acts = t.handle(svc.SendQubit(3, conn, "q2"), 30)
    assert [a.request for a in of(acts, Submit)] == [NetTopUp(req.request_id, 1)]
    # both pairs come; the queue then wants none: the idle timer starts
    (bsm,) = of(t.handle(ok(req.request_id, 0, "p0"), 40), QuantumOp)
    assert not of(t.handle(ok(req.request_id, 1, "p1"), 45), StartTimer)    # q2 wants it
    acts = t.handle(OperationDone(bsm.op_id, 0), 50)     # q1 measured; q2's measurement starts
    assert sent(acts, QubitHeader) and of(acts, QuantumOp) and not of(acts, Submit)
    timers = [a for a in of(acts, StartTimer) if a.key[0] == "idle"]
    assert timers == [StartTimer(("idle", conn), 1000)]
    # a new item before the timer fires keeps the request (topped up again)
    acts = t.handle(svc.SendQubit(4, conn, "q3"), 500)
    assert [a.request for a in of(acts, Submit)] == [NetTopUp(req.request_id, 1)]
    acts = t.handle(TimerFired(("idle", conn)), 1050)
    assert not of(acts, Submit)
    acts = t.handle(svc.Close(5, conn), 1100)    # the waiting item fails, the queue is idle
    assert any(isinstance(e, svc.Failed) and e.token == 4 for e in delivered(acts))
    acts = t.handle(TimerFired(("idle", conn)), 1200)       # idle only since 1100
    assert not of(acts, Submit)
    (again,) = [a for a in of(acts, StartTimer) if a.key[0] == "idle"]
    acts = t.handle(TimerFired(again.key), 1100 + 1000)
    assert [a.request for a in of(acts, Submit)] == [NetCancel(req.request_id)]
    # the pair it was still making comes after the cancel: released
    acts = t.handle(ok(req.request_id, 2, "p2"), 2200)
    assert sent(acts, PairRelease) == [PairRelease(("alice", 1, 2))]


def test_a_standing_request_is_cancelled_when_its_connection_goes_and_after_its_error():
    from qstack.network.service import NetCancel

    t = TeleportTransport("alice", standing_idle_ns=10**6)
    acts = t.handle(svc.Connect(1, "bob", 7), 0)
    (syn,) = sent(acts, Syn)
    conn = delivered(t.handle(MessageReceived("bob", SynAck(7, syn.src_port, 8)), 10),
                     svc.Done)[0].value
    (req,) = [a.request for a in of(t.handle(svc.SendQubit(2, conn, "q1"), 20), Submit)]
    # a transient error ends it: the retry opens a new standing request
    t.handle(NetErr(req.request_id, "bob", ErrorCode.NET_TIMEOUT), 30)
    acts = t.handle(TimerFired(("retry", conn)), 30 + t.retry_ns)
    (req2,) = [a.request for a in of(acts, Submit)]
    assert req2.standing and req2.request_id != req.request_id
    # the connection reset: the request is cancelled with it
    acts = t.handle(MessageReceived("bob", Rst(7, conn.local_port, 407, "reset")), 40)
    assert [a.request for a in of(acts, Submit)] == [NetCancel(req2.request_id)]


# ---------------------------------------------------------------- cumulative acknowledgements

@st.composite
def ack_runs(draw):
    """A run of qubit, data and EPR items (1-3 pairs a request) alice -> bob
    (bob holding cumulative acknowledgements of EPR items), every pair of the network reaching the two ends in
    any order, some expiring at bob before their header came, operations
    answered in any order, held acknowledgements' timers firing at any time."""
    kinds = draw(st.lists(st.sampled_from(["qubit", "data", "epr1", "epr2", "epr3"]), min_size=1,
                          max_size=6))
    choices = draw(st.lists(st.integers(0, 10**6), min_size=400, max_size=400))
    expire = draw(st.lists(st.booleans(), min_size=16, max_size=16))
    return kinds, choices, expire


@settings(max_examples=150, deadline=None)
@given(ack_runs())
def test_cumulative_acks_settle_every_item_once_as_the_receiver_saw_it(run):
    """specs/transport.md §5: whatever the order of events, every send is
    answered once; a qubit's Done iff bob delivered it, its Failed (no
    qubit) iff bob found it lost; nothing stays unacknowledged; and bob
    never sends more Acks than items (one per pair of an EPR request)."""
    kinds, choices, expire = run
    alice = TeleportTransport("alice", window=8)
    bob = TeleportTransport("bob", window=8, ack_delay_ns=500)
    bob.handle(svc.Listen(1, 7), 0)
    wires = {"alice": [], "bob": []}          # FIFO messages towards each node
    pending = []                              # (node, event) not yet fed: pairs, op answers
    timers = {"alice": set(), "bob": set()}   # held-ack timers only ("ack", conn)
    answers, got, acks = {}, {}, [0]
    pair_no = [0]
    clock = [0]

    def feed(node, event):
        clock[0] += 1
        t = alice if node == "alice" else bob
        other = "bob" if node == "alice" else "alice"
        for a in t.handle(event, clock[0]):
            if isinstance(a, SendMessage):
                if isinstance(a.msg, Ack):
                    acks[0] += 1
                wires[other].append(a.msg)
            elif isinstance(a, QuantumOp) and a.op_id is not None:
                outcome = (pair_no[0] + len(pending)) % 4 if isinstance(a.op, BellMeasure) else None
                pending.append((node, OperationDone(a.op_id, outcome)))
            elif isinstance(a, StartTimer) and a.key[0] == "ack":
                timers[node].add(a.key)
            elif isinstance(a, Submit) and isinstance(a.request, NetRequest):
                for _ in range(a.request.number):
                    pid = PairId("alice", 4, pair_no[0])
                    pending.append(("alice", NetOk(a.request.request_id, pid, "bob", pair_no[0] % 4,
                                                   0.9, 0, qubit=f"a{pair_no[0]}")))
                    gone = expire[pair_no[0] % len(expire)]
                    pending.append(("bob", NetExpire(pid, "alice") if gone else
                                    NetOk(a.request.request_id, pid, "alice", pair_no[0] % 4, 0.9, 0,
                                          qubit=f"b{pair_no[0]}", initiator=False,
                                          app_tag=a.request.app_tag)))
                    pair_no[0] += 1
            elif isinstance(a, Deliver):
                e = a.event
                if isinstance(e, (svc.Done, svc.Failed)) and node == "alice":
                    assert e.token not in answers, "answered twice"
                    answers[e.token] = e
                elif isinstance(e, svc.Incoming):
                    pending.append(("bob", svc.Accept(2, e.conn)))
                elif isinstance(e, (svc.QubitArrived, svc.DataArrived, svc.EprArrived, svc.Lost)) \
                        and node == "bob":
                    got[e.seq] = e
                    pending.append(("bob", svc.Consumed(e.conn, 1)))

    feed("alice", svc.Connect(1, "bob", 7))
    conn = None
    sent_items = 0
    for c in choices:
        live = [k for k in ("alice", "bob") if wires[k]] + (["op"] if pending else []) \
            + (["timer"] if timers["bob"] else [])
        if conn is not None and sent_items < len(kinds):
            live.append("send")
        if not live:
            break
        what = live[c % len(live)]
        if what == "send":
            token = 10 + sent_items
            if kinds[sent_items] == "qubit":
                feed("alice", svc.SendQubit(token, conn, f"Q{sent_items}"))
            elif kinds[sent_items].startswith("epr"):
                feed("alice", svc.CreateEpr(token, conn, number=int(kinds[sent_items][3])))
            else:
                feed("alice", svc.SendBytes(token, conn, bytes([sent_items])))
            sent_items += 1
        elif what == "op":
            node, ev = pending.pop(c % len(pending))
            feed(node, ev)
        elif what == "timer":
            key = sorted(timers["bob"], key=repr)[0]
            timers["bob"].discard(key)
            feed("bob", TimerFired(key))
        else:
            msg = wires[what].pop(0)
            src = "bob" if what == "alice" else "alice"
            feed(what, MessageReceived(src, msg))
        if conn is None and 1 in answers:
            conn = answers.pop(1).value
    # drain: everything left arrives, held acknowledgements' timers fire
    for _ in range(10_000):
        if wires["bob"]:
            feed("bob", MessageReceived("alice", wires["bob"].pop(0)))
        elif wires["alice"]:
            feed("alice", MessageReceived("bob", wires["alice"].pop(0)))
        elif pending:
            feed(*pending.pop(0))
        elif timers["bob"]:
            key = timers["bob"].pop()
            feed("bob", TimerFired(key))
        else:
            break
    items = {10 + i: kind for i, kind in enumerate(kinds[:sent_items])}
    assert set(answers) == set(items)
    seq = 0
    for token, kind in items.items():
        ans = answers[token]
        if kind.startswith("epr"):
            arrived = [got.get(s) for s in range(seq, seq + int(kind[3]))]
            seq += len(arrived)
            if all(isinstance(a, svc.EprArrived) for a in arrived):
                assert isinstance(ans, svc.Done) and ans.value == len(arrived)
            else:
                lost = [a for a in arrived if isinstance(a, svc.Lost)]
                assert lost and isinstance(ans, svc.Failed) and ans.code == lost[0].code
            continue
        arrived = got.get(seq)
        seq += 1
        if kind == "data":
            assert isinstance(ans, svc.Done) and isinstance(arrived, svc.DataArrived)
        elif isinstance(arrived, svc.QubitArrived):
            assert isinstance(ans, svc.Done)
        else:
            assert isinstance(arrived, svc.Lost) and isinstance(ans, svc.Failed)
            assert ans.qubit is None and ans.code == arrived.code
    assert all(not s.unacked for s in alice.conns.values())
    assert acks[0] <= seq        # (seq: the items sent, one per pair of an EPR request)
