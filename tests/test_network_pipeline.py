"""Pipelined circuits (network.qnp, specs/network.md "Flow control"): standing
link requests, several end-to-end pairs in flight per circuit, and the rate
they give.

* By hand (sans I/O, three QnpProtocols n0 - n1 - n2): a node asks its
  downstream link for all its free credit in one standing request and tops
  it up (CreateTopUp) only in batches of at least half its window while
  pairs of it are still to come (plain requests, with a time limit per
  pair: a new request under the same rule), never asks for
  more than the circuit still needs, and gets all the unserved credit of a
  multi-pair request back on a LinkErr; windows: ``"auto"`` from the memory,
  an explicit integer, a request's own, the memory shared by circuits.
* On the real stack (tests/netstack.py): chains of 2, 3, 5 and 9 nodes on
  SeQUeNCe's chain hardware (p = 0.299 per 10 us attempt, herald 10 us,
  classical delay 10 us per hop, Werner 0.95, no memory decay): the
  delivered pairs per simulated second rise with the window towards the
  link rate and agree with the closed forms of qstack.network.theory
  (tolerances at each assertion), and every pair has exactly the Werner
  product fidelity.
* Properties (hypothesis): random chains, windows, memories, concurrent
  circuits in both directions, swap strategies, faults and requests
  cancelled at random times (NetCancel: the circuit ends and its standing
  link requests are withdrawn with CancelCreate): every request ends; pairs
  are delivered once, with the same Bell state at both ends; memory,
  circuits and link-layer queues (cancelled requests too) are empty at the end.
* After a circuit ends, its links make no pair for it any more but those
  already being made (at most m per link, here 1).
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qstack.core.errors import ErrorCode
from qstack.core.faults import Fault
from qstack.core.protocol import MessageReceived, StartTimer, Submit, TimerFired
from qstack.link.service import CancelCreate, CreateRequest, CreateTopUp, LinkErr
from qstack.network.circuit import MAX_AUTO_WINDOW, QnpProtocol
from qstack.network.messages import CircuitConfirm, CircuitSetup
from qstack.network.routing import Topology
from qstack.network.service import (
    NetCancel, NetErr, NetExpire, NetOk, NetRequest, SwapStrategy,
)
from qstack.network.theory import (
    chain_fidelity, credit_settle_ns, link_pair_time_ns, pipelined_rate_bound, pipelined_rate_mva,
)
from qstack.physical.device import NodeHardware
from qstack.physical.pair_model import SimplePairModel
from tests.netstack import inbox, stack_net
from tests.test_network_pair_loss import _Hand


def _submitted(h: _Hand, node: str, kind: type) -> list:
    """The ``kind`` requests ``node`` submitted below so far (and forget them)."""
    got = [a.request for a in h.up[node] if isinstance(a, Submit) and isinstance(a.request, kind)]
    h.up[node] = [a for a in h.up[node] if not (isinstance(a, Submit)
                                                and isinstance(a.request, kind))]
    return got


def _creates(h: _Hand, node: str) -> list:
    """The link requests ``node`` submitted so far (and forget them)."""
    return _submitted(h, node, CreateRequest)


def _deliver_one(h: _Hand) -> None:
    """One end-to-end pair through n0 - n1 - n2: both link pairs, the swap,
    the Track to the tail and the PairDone back to the head."""
    h.link_pair("n0", "n1")
    h.link_pair("n1", "n2")
    h.finish_ops("n1")
    while h.queue:
        h.step()


# ---------------------------------------------------------------- by hand

def test_a_node_asks_for_its_whole_window_in_one_request():
    h = _Hand(number=10, window=4)
    for node in ("n0", "n1"):
        (req,) = _creates(h, node)
        assert req.number == 4 and req.create_id is not None
    assert not _creates(h, "n2")                       # the tail makes no link pairs


def _top_ups(h: _Hand, node: str) -> list:
    """The top-ups of link requests ``node`` submitted so far (and forget them)."""
    return _submitted(h, node, CreateTopUp)


def test_a_standing_link_request_is_topped_up_in_batches_of_half_the_window():
    """One standing link request per circuit and link: credit that comes
    back is added to it (CreateTopUp), in batches of half the window while
    pairs of it are still to come; no new request per pair."""
    h = _Hand(number=10, window=4)
    for node in ("n0", "n1"):
        (req,) = _creates(h, node)
        assert req.standing and req.number == 4
        assert h.c[node].standing == req.create_id
    first = h.c["n0"].standing
    _deliver_one(h)               # one credit back at the head, 3 pairs still to come
    assert not _top_ups(h, "n0") and not _creates(h, "n0")
    _deliver_one(h)               # two back: a batch worth a top-up
    (up,) = _top_ups(h, "n0")
    assert (up.create_id, up.remote, up.number) == (first, "n1", 2)
    assert not _creates(h, "n0") and not _creates(h, "n1")
    assert h.c["n0"].outstanding == 4 and h.c["n0"].creates == {first: 4}
    for _ in range(4):            # the link serves all of it: no pair still to come
        h.link_pair("n0", "n1")
    assert h.c["n0"].creates == {first: 0}
    h.feed("n0", NetCancel(h.c["n0"].request_id))    # the circuit ends: the request is withdrawn
    (cancel,) = [a.request for a in h.up["n0"] if isinstance(a, Submit)
                 and isinstance(a.request, CancelCreate)]
    assert cancel.create_id == first


def test_a_plain_request_is_topped_up_in_batches_of_half_the_window():
    """With a time limit per link pair (``link_max_time_ns``) the link
    requests are plain ones: another only for a batch of half the window."""
    h = _Hand(number=10, window=4, link_max_time_ns=10**9)
    (first,) = _creates(h, "n0")
    assert not first.standing and first.max_time_ns == 4 * 10**9
    _deliver_one(h)               # one credit back at the head, 3 pairs still standing
    assert not _creates(h, "n0")
    _deliver_one(h)               # two back: a batch worth a request
    (req,) = _creates(h, "n0")
    assert req.number == 2 and not req.standing
    assert h.c["n0"].outstanding == 4 and sum(h.c["n0"].creates.values()) == 4
    assert not _top_ups(h, "n0")


def test_never_more_link_pairs_than_the_circuit_needs():
    h = _Hand(number=3, window=8)
    assert [r.number for r in _creates(h, "n0")] == [3]
    assert [r.number for r in _creates(h, "n1")] == [3]


@pytest.mark.parametrize("served", [0, 1])
def test_a_link_error_returns_all_unserved_credit_of_its_request(served):
    h = _Hand(number=10, window=4)
    (req,) = _creates(h, "n0")
    if served:
        h.link_pair("n0", "n1")                     # one pair of it came (its Track is out)
    c = h.c["n0"]
    h.feed("n0", LinkErr(req.create_id, "n1", ErrorCode.LINK_QUEUE_FULL, "full",
                         req.purpose_id))
    assert c.outstanding == 0 and not c.creates
    (timer,) = [a for a in h.up["n0"] if isinstance(a, StartTimer)]
    h.feed("n0", TimerFired(timer.key))              # refused at once: asks again later
    (again,) = _creates(h, "n0")
    assert again.number == 4 - served and again.create_id != req.create_id


def _topology(n: int, memory: int | None) -> Topology:
    topo = Topology()
    names = [f"n{i}" for i in range(n)]
    for name in names:
        topo.add_node(name, memory)
    for a, b in zip(names, names[1:]):
        topo.add_link(a, b)
    return topo


def test_windows_auto_explicit_and_per_request():
    topo = _topology(3, 8)
    assert QnpProtocol("n0", topo).window == 1                   # memory not known
    auto = QnpProtocol("n0", topo, num_qubits=8)                 # "auto" by default:
    assert auto.window == MAX_AUTO_WINDOW                        # the memory decides
    # each end's slots over its links, the smaller end's: n1 has two links
    assert auto.link_share("n1") == 4
    assert QnpProtocol("n1", topo, num_qubits=8).link_share("n2") == 4
    assert QnpProtocol("n0", _topology(2, 8), num_qubits=8).link_share("n1") == 8
    assert QnpProtocol("n0", topo, window=7, num_qubits=8).window == 7
    for bad in (0, -1, 70_000, 2.0, "big", True):
        with pytest.raises(ValueError):
            QnpProtocol("n0", topo, window=bad)
    with pytest.raises(ValueError):
        NetRequest("n2", window=70_000)
    # a request's own window travels in the setup; a repeater keeps to the smaller
    h = _Hand(number=10, request={"window": 2}, window=8)
    assert h.c["n2"].window == 2
    assert [r.number for r in _creates(h, "n0")] == [2]
    assert [r.number for r in _creates(h, "n1")] == [2]


def _confirmed(head: QnpProtocol, requests: int) -> list:
    """``requests`` circuits from ``head`` to n2, confirmed: the sizes of the
    link requests each makes (in circuit order)."""
    cids = []
    for _ in range(requests):
        (setup,) = [a.msg for a in head.handle(NetRequest("n2", number=10), 0)
                    if isinstance(getattr(a, "msg", None), CircuitSetup)]
        cids.append(setup.circuit_id)
    sizes = []
    for cid in cids:
        acts = head.handle(MessageReceived("n1", CircuitConfirm(cid, "n0", True, 0, "")), 1)
        sizes.append([a.request.number for a in acts if isinstance(a, Submit)])
    return sizes


def test_circuits_crossing_a_link_share_its_memory():
    """8 slots a node, n1 with two links: the link n0-n1 may hold 4 pairs at
    each end. One circuit uses all 4, two get 2 each, so that one link's
    pairs do not fill the memory the pairs they wait for on the next link
    need; never fewer than one."""
    topo = _topology(3, 8)
    assert _confirmed(QnpProtocol("n0", topo, num_qubits=8), 1) == [[4]]
    assert _confirmed(QnpProtocol("n0", topo, num_qubits=8), 2) == [[2], [2]]
    assert _confirmed(QnpProtocol("n0", topo, num_qubits=8), 5) == [[1]] * 5


# ---------------------------------------------------------------- rate on the real stack

#: SeQUeNCe's chain hardware (/work/shared/peers/sequence/README.md), as
#: benchmarks/bench_network.py runs it, without memory decay
P, F, HOP_NS, SLOTS = 0.299, 0.95, 10_000, 20
PAIRS = 1000
#: relative standard error of a rate measured over PAIRS deliveries: the time
#: per pair is a geometric number of attempts plus a constant, coefficient of
#: variation below 1, so at most 1 / sqrt(PAIRS) (~3.2%)
SIGMA = 1.0 / math.sqrt(PAIRS)


def chain_run(n: int, window: int, strategy=SwapStrategy.ASAP, t2_ns: float = math.inf):
    """Pairs per simulated second over ``n`` nodes and the pairs delivered."""
    names = [f"n{i}" for i in range(n)]
    topo = Topology.chain(n, fidelity=F, rate_hz=1e3)
    model = SimplePairModel(P, F, HOP_NS, HOP_NS, HOP_NS, bell_index=None)
    hw = NodeHardware(num_qubits=SLOTS, t1_ns=math.inf, t2_ns=t2_ns)
    net, book = stack_net(names, {(a, b): model for a, b in zip(names, names[1:])},
                          lambda name: [QnpProtocol(name, topo, window=window,
                                                    num_qubits=SLOTS)],
                          seed=n, hardware=hw, sink=True)
    net.submit(names[0], NetRequest(names[-1], number=PAIRS, strategy=strategy),
               to="network.qnp")
    net.run()
    assert len(book.pairs) == PAIRS and not net.errors
    span = book.pairs[-1].time_ns - book.pairs[0].time_ns
    return (PAIRS - 1) / span * 1e9, book.pairs


@pytest.mark.parametrize("n", [2, 3, 5, 9])
def test_rate_rises_with_the_window_to_the_link_rate_as_the_closed_forms_say(n):
    t_pair = link_pair_time_ns(P, HOP_NS, HOP_NS)
    link_rate = 1e9 / t_pair
    settle = credit_settle_ns([HOP_NS] * (n - 1))     # one link: no Track, d; else 2 d (n-1)
    werner = chain_fidelity([F] * (n - 1))
    rates = {}
    for w in (1, 2, 4, SLOTS // 2):     # the last: what the memory allows
        rate, pairs = chain_run(n, w)
        rates[w] = rate
        bound = pipelined_rate_bound([t_pair] * (n - 1), w, settle)
        # the bound (Little's law on the head's credit; the link rate) holds,
        # up to 3 standard errors of the measured rate
        assert rate <= bound * (1 + 3 * SIGMA), (w, rate, bound)
        # and the mean-value estimate is met within 25%: it leaves out the
        # Tracks' waits at repeaters for their own link pairs (up to 15% on
        # these chains), on one link at window 1 the link layer's top-up trip
        # (a hop per pair, 17% here), and the rate is measured to 3 sigma (~10%)
        assert rate >= 0.75 * pipelined_rate_mva(t_pair, w, settle), (w, rate)
        # every pair is the Werner product (no decay, exact Bell-diagonal algebra)
        assert all(p.bell_head == p.bell_tail and abs(p.fidelity - werner) < 1e-9
                   for p in pairs)
    ws = sorted(rates)
    for a, b in zip(ws, ws[1:]):
        assert rates[b] >= rates[a] * (1 - 3 * SIGMA), rates      # rises (within noise)
    assert rates[ws[-1]] >= 1.5 * rates[1], rates                   # and clearly
    # with the memory's window the chain runs near its links' rate
    assert rates[ws[-1]] >= 0.8 * link_rate, (rates, link_rate)


def test_nested_swapping_pipelines_too_at_the_werner_product():
    n = 5
    slow, _ = chain_run(n, 1, SwapStrategy.NESTED)
    fast, pairs = chain_run(n, SLOTS // 2, SwapStrategy.NESTED)
    assert fast >= 1.5 * slow
    werner = chain_fidelity([F] * (n - 1))
    assert all(p.bell_head == p.bell_tail and abs(p.fidelity - werner) < 1e-9 for p in pairs)


# ---------------------------------------------------------------- properties

@st.composite
def scenarios(draw):
    n = draw(st.integers(2, 7))
    names = [f"n{i}" for i in range(n)]
    window = draw(st.sampled_from(["auto", 1, 2, 3, 5, 8]))
    slots = draw(st.integers(4, 16))
    requests = []
    for _ in range(draw(st.integers(1, 3))):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        if a == b:
            continue
        start = draw(st.integers(0, 4)) * 50_000
        # cancelled (NetCancel) at a random time after its start, or not
        cancel = draw(st.sampled_from([None, None, None, 1, 2, 5, 10, 20, 40]))
        requests.append((a, b, draw(st.integers(1, 8)),
                         draw(st.sampled_from([SwapStrategy.ASAP, SwapStrategy.NESTED])),
                         start, None if cancel is None else start + cancel * 25_000))
    if not requests:
        requests.append((names[0], names[-1], 3, SwapStrategy.ASAP, 0, None))
    faults = []
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 2))):
            at = draw(st.integers(0, 40)) * 20_000
            kind = draw(st.sampled_from(["link_down", "reset", "crash"]))
            if kind == "crash":
                faults.append(Fault("crash", at, (draw(st.sampled_from(names)),),
                                    draw(st.integers(1, 20)) * 50_000))
            else:
                i = draw(st.integers(0, n - 2))
                after = draw(st.integers(1, 20)) * 50_000 if kind == "link_down" else None
                faults.append(Fault(kind, at, (names[i], names[i + 1]), after))
    cutoff = draw(st.sampled_from([0, 0, 300_000]))
    return n, window, slots, requests, faults, cutoff, draw(st.integers(0, 3))


def run_scenario(n, window, slots, requests, faults, cutoff, seed):
    names = [f"n{i}" for i in range(n)]
    topo = Topology.chain(n, fidelity=F, rate_hz=1e3)
    model = SimplePairModel(P, F, HOP_NS, HOP_NS, HOP_NS, bell_index=None)
    hw = NodeHardware(num_qubits=slots, t1_ns=math.inf, t2_ns=math.inf)
    net, book = stack_net(names, {(a, b): model for a, b in zip(names, names[1:])},
                          lambda name: [QnpProtocol(name, topo, window=window, num_qubits=slots,
                                                    default_cutoff_ns=cutoff)],
                          seed=seed, hardware=hw, sink=True)
    for k, (a, b, number, strategy, start, cancel) in enumerate(requests):
        req = NetRequest(b, number=number, strategy=strategy, request_id=k + 1,
                         max_time_ns=500_000_000)
        net.sim.schedule(start, net.submit, a, req, "network.qnp")
        if cancel is not None:
            net.sim.schedule(cancel, net.submit, a, NetCancel(k + 1), "network.qnp")
    net.schedule_faults(faults)
    net.run()
    return net, names, book


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_pipelined_circuits_keep_every_promise(case):
    n, window, slots, requests, faults, cutoff, seed = case
    net, names, book = run_scenario(*case)
    crashed = {f.nodes[0] for f in faults if f.kind == "crash"}
    # without faults, and while the circuits do not oversubscribe a link's
    # memory (at most one per slot of its share, slots // 2 at a repeater:
    # specs/network.md "Flow control"), nothing fails: no time-out, no deadlock
    cancelled = any(r[5] is not None for r in requests)
    settled = not faults and not cancelled and len(requests) <= slots // 2
    for k, (a, b, number, _strategy, _start, _cancel) in enumerate(requests):
        rid = k + 1
        oks = [e for e in inbox(net, a, NetOk) if e.request_id == rid and e.initiator]
        errs = [e for e in inbox(net, a, NetErr) if e.request_id == rid and e.initiator]
        # every request ends: all its pairs at the head, or an error with a code
        assert (len(oks) == number and oks[-1].request_done and not errs) or \
            (len(errs) == 1 and len(oks) < number) or a in crashed, (rid, len(oks), errs)
        if settled:
            assert len(oks) == number and not errs, (rid, len(oks), errs)
    for name in names:
        ids = [e.pair_id for e in inbox(net, name, NetOk)]
        assert len(ids) == len(set(ids)), name                 # each pair delivered once
    # a pair both ends have: same id and Bell state, the Werner product
    for p in book.pairs:
        assert p.bell_head == p.bell_tail
    expired = {e.pair_id for name in names for e in inbox(net, name, NetExpire)}
    if settled:
        heads = {e.pair_id for name in names for e in inbox(net, name, NetOk) if e.initiator}
        tails = {e.pair_id for name in names for e in inbox(net, name, NetOk)
                 if not e.initiator} - expired
        assert heads == tails
        assert {p.pair_id for p in book.pairs} >= heads
        for name in names:
            for e in inbox(net, name, NetOk):
                if e.initiator:
                    hops = len(e.path) - 1
                    assert abs(e.fidelity - chain_fidelity([F] * hops)) < 1e-9
    # halves whose other end never came (a fault took it) are the application's
    # to free; after that nothing is held anywhere
    for node, ok in book._half.values():
        device = net.node(node).device
        if ok.qubit is not None and ok.qubit in device.stored_qubits():
            device.free(ok.qubit)
    for name, node in net.nodes.items():
        if not node.up:
            continue
        assert node.device.used_slots == 0, (name, node.device.stored_qubits())
        q = node.protocols["network.qnp"]
        assert not q.circuits and not q.requests, (name, list(q.circuits))
        for link in node.protocols["link.egp"].links.values():
            assert not link.items and not link.pending and not link.orphans, (name, link.peer)
            assert not link.cancelled and link.out == 0, (name, link.peer)


# ---------------------------------------------------------------- no pairs after the end

@pytest.mark.parametrize("n, end", [(2, "cancelled"), (4, "cancelled"), (4, "finished")])
def test_no_link_pairs_are_made_for_a_circuit_after_it_ended(n, end, monkeypatch):
    """A chain of n nodes, window 16: when the circuit ends (cancelled mid-way,
    or all its pairs delivered), its nodes withdraw their standing link
    requests (CancelCreate). Pairs heralded after every node has heard of
    the end (the head's end time plus two classical delays per hop: the
    teardown, then a follower's QueueReject) can only be those whose
    Entangles were out then: at most m = 1 per link. Without the
    withdrawal the requests standing at a cancel (checked to exceed that)
    would be served in full (without it: 10 late pairs in the n = 2 run).
    A circuit that finished has nothing standing here (no node asks for more
    pairs than it still needs): that case checks that no late pair comes."""
    import tests.netstack
    from qstack.link.egp import EGP

    heralds = []                     # (time, node) of each pair made, at the link's leader

    class CountingEGP(EGP):
        # (a subclass, not a patch of EGP: compiled, EGP is an extension
        # type, whose methods cannot be replaced)
        def _pair_made(self, link, item, seq, index, h, now, actions):
            if link.leader:
                heralds.append((now, self.node))
            return super()._pair_made(link, item, seq, index, h, now, actions)

    monkeypatch.setattr(tests.netstack, "EGP", CountingEGP)
    names = [f"n{i}" for i in range(n)]
    topo = Topology.chain(n, fidelity=F, rate_hz=1e3)
    model = SimplePairModel(P, F, HOP_NS, HOP_NS, HOP_NS, bell_index=None)
    hw = NodeHardware(num_qubits=SLOTS, t1_ns=math.inf, t2_ns=math.inf)
    net, book = stack_net(names, {(a, b): model for a, b in zip(names, names[1:])},
                          lambda name: [QnpProtocol(name, topo, window=16, num_qubits=SLOTS)],
                          seed=5, hardware=hw, sink=True)
    number = 10_000 if end == "cancelled" else 30
    net.submit(names[0], NetRequest(names[-1], number=number), to="network.qnp")
    standing = []

    def look():
        standing.append(sum(sum(c.creates.values()) for name in names
                            for c in net.node(name).protocols["network.qnp"].circuits.values()))

    if end == "cancelled":
        t_cancel = 2_000_000
        net.sim.schedule_at(t_cancel - 1, look)
        net.sim.schedule_at(t_cancel, net.submit, names[0], NetCancel(1), "network.qnp")
        net.run()
        (err,) = inbox(net, names[0], NetErr)
        assert err.detail == "cancelled"
        t_end = t_cancel
        assert standing[0] > n - 1, standing        # more than the in-flight bound
    else:
        net.run()
        oks = [(t, e) for t, e in net.nodes[names[0]].inbox if isinstance(e, NetOk)]
        assert len(oks) == number and not inbox(net, names[0], NetErr)
        t_end = oks[-1][0]
    assert not net.errors
    assert any(t < t_end for t, _ in heralds)
    settled = t_end + 2 * (n - 1) * HOP_NS
    late = [(t, node) for t, node in heralds if t > settled]
    assert len(late) <= n - 1, late
    for name in names:
        for link in net.node(name).protocols["link.egp"].links.values():
            assert not link.items and not link.pending and not link.cancelled and link.out == 0
