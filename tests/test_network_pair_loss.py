"""End-to-end pairs lost after their Track left (network.qnp, specs/network.md
"Losing a pair"), on the real stack: SimNetwork + EGP + QnpProtocol.

The head starts a pair's Track as soon as it holds its link pair, and holds
the pair until the tail's PairDone comes back. If the head's half is lost in
between (a LinkExpire from the link layer), the pair is lost at both ends:
the head never delivers it and asks for another, the tail (if it delivered
it) gets NetExpire for it, and the request still completes with exactly the
number of pairs asked, the same pair ids at both ends. No circuit state
(parked messages, swap records, tombstones) is left behind.
"""
from __future__ import annotations

import pytest

from qstack.core.protocol import (
    Deliver, MessageReceived, OperationDone, QuantumOp, SendMessage, Submit, on,
)
from qstack.link.egp import EGP
from qstack.link.service import EntanglementId, LinkExpire, LinkOk
from qstack.network.circuit import QnpProtocol
from qstack.network.messages import SegmentExpire, Track
from qstack.network.routing import Topology
from qstack.network.service import NetExpire, NetRequest, SwapStrategy
from qstack.physical.ops import BellMeasure, Discard
from qstack.sim.chain import build_chain
from tests.test_network_stack import Keeper


class Recorder(Keeper):
    """Top of an end node: records NetOk / NetErr (as Keeper) and NetExpire;
    keeps the qubits."""

    name = "test.recorder"

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.expired: list = []

    @on(NetExpire)
    def _expire(self, ev, now_ns):
        self.expired.append(ev)

    def live(self) -> list:
        gone = {e.pair_id for e in self.expired}
        return [ok for ok in self.oks if ok.pair_id not in gone]


def _qnp(net, name):
    return net.nodes[name].protocols["network.qnp"]


def _index_of_circuits(qnp) -> dict:
    """The QNP's index of its circuits by head and id, flattened: it must be
    its ``circuits`` exactly (the two are kept together)."""
    return {(head, cid): c for head, by_cid in qnp._by_head.items() for cid, c in by_cid.items()}


def _circuit_state_left(circuits) -> list:
    """Per-pair state still held by the circuits (after completion: none)."""
    left = []
    for c in circuits:
        for attr in ("early", "waiting_track", "gone"):
            if getattr(c, attr, None):
                left.append((c.path[c.index], attr, dict(getattr(c, attr))))
        for attr in ("held", "swaps", "busy"):          # (per side: two dicts)
            per_side = getattr(c, attr)
            if per_side[0] or per_side[1]:
                left.append((c.path[c.index], attr, per_side))
    return left


def _expire_head_pair(net, names) -> int:
    """Give the head's network.qnp a LinkExpire for the link pair it holds, as
    the link layer does on a memory cut-off: the qubit is discarded first (the
    link layer's Discard), then the event; its link-layer sequence number."""
    head = _qnp(net, names[0])
    (c,) = head.circuits.values()
    (seq,) = c.held[1].keys()
    net.node(names[0]).device.free(c.held[1][seq].qubit)
    net.feed(names[0], "network.qnp", LinkExpire(EntanglementId(names[0], names[1], seq),
                                                 names[1], "cutoff", c.labels[0]))
    return seq


def _track_passed_first_repeater(net, names) -> bool:
    """The head holds a pair whose Track the first repeater has forwarded."""
    head, r1 = _qnp(net, names[0]), _qnp(net, names[1])
    if len(head.circuits) != 1 or len(r1.circuits) != 1:
        return False
    (c,) = head.circuits.values()
    (c1,) = r1.circuits.values()
    if len(c.held[1]) != 1:
        return False
    (seq,) = c.held[1].keys()
    # (the repeater's swap records, per side: seq -> (other side, other seq, ...))
    return any(rec[0] == 0 and rec[1] == seq for rec in c1.swaps[1].values()) \
        and seq not in c1.swaps[0]


@pytest.mark.parametrize("when", ["track_passed_first_repeater", "tail_delivered"])
def test_head_pair_lost_after_its_track_left(when):
    """The head's half of a pair expires after its Track passed the first
    repeater, or after the tail delivered it (PairDone on its way back). The
    head never delivers it and asks for another; the tail gets NetExpire for
    it and frees its half. (Before: the head dropped the pair, its PairDone
    found nothing, the SegmentExpire waited for ever at the first repeater and
    the request ran into its time limit one pair short.)"""
    pairs = 5
    net, names, ends = build_chain(5, "bd", seed=11, check_wire=True, slots=pairs + 6,
                                   consumer=Recorder)
    head, tail = ends[names[0]], ends[names[-1]]
    net.submit(names[0], NetRequest(names[-1], number=pairs, max_time_ns=10**10),
               to="network.qnp")
    net.run(until_ns=10**10, stop_when=lambda: all(_qnp(net, x).circuits for x in names))
    circuits = [next(iter(_qnp(net, x).circuits.values())) for x in names]

    # lose the head's half of the second pair while the pair is on its way
    net.run(until_ns=10**10, stop_when=lambda: len(head.oks) >= 1)
    if when == "tail_delivered":
        cond = lambda: len(tail.oks) == len(head.oks) + 1    # noqa: E731  PairDone in flight
    else:
        cond = lambda: _track_passed_first_repeater(net, names)   # noqa: E731
    net.run(until_ns=10**10, stop_when=cond)
    assert cond()
    tail_before = len(tail.oks)
    _expire_head_pair(net, names)

    net.run(until_ns=10**11,
            stop_when=lambda: len(head.oks) >= pairs and len(tail.live()) >= pairs)
    net.run(until_ns=net.sim.now + 10**8)      # teardown reaches every node
    assert not net.errors and not head.errors and not tail.errors
    # exactly the number asked, the same pairs at both ends
    assert len(head.oks) == pairs and len(tail.live()) == pairs
    assert {ok.pair_id for ok in head.oks} == {ok.pair_id for ok in tail.live()}
    assert [ok.pair_index for ok in head.oks] == list(range(pairs))
    # the lost pair: delivered at the tail, then expired there, never at the head
    assert len(tail.expired) == 1
    lost = tail.expired[0]
    assert lost.pair_id in {ok.pair_id for ok in tail.oks[:tail_before + 1]}
    assert lost.pair_id not in {ok.pair_id for ok in head.oks}
    assert lost.remote == names[0]
    # the head counted it lost: one more end-to-end pair was made
    assert len(tail.oks) == pairs + 1
    # nothing left behind: circuits gone, no parked messages or records,
    # only the delivered halves in memory
    assert all(not _qnp(net, x).circuits and not _qnp(net, x)._by_head for x in names)
    assert _circuit_state_left(circuits) == []
    assert net.engine.num_live_qubits == 2 * pairs


@pytest.mark.parametrize("strategy, seed", [(SwapStrategy.ASAP, 2), (SwapStrategy.ASAP, 5),
                                            (SwapStrategy.NESTED, 2)],
                         ids=["asap-2", "asap-5", "nested-2"])
def test_link_cutoff_at_both_ends_loses_pairs_on_the_way_and_still_completes(strategy, seed):
    """The link layer's memory cut-off (EGP ``cutoff_ns``, at both ends of a
    link) shorter than some pairs' round trip: the head's half expires while
    its Track is on the way, repeaters' and the tail's while held (their
    SegmentExpire crosses Tracks and other SegmentExpires). Every loss is
    settled, the request completes with the same pairs at both ends, and no
    per-pair state is left in the circuits."""
    pairs, n = 12, 5
    # the ends keep every delivered qubit: room for all of them, and for the
    # link layer's pairs besides (delivered qubits are the application's: the
    # QNP releases them from the link layer's cut-off)
    net, names, ends = build_chain(n, "bd", seed=seed, check_wire=True, slots=24,
                                   consumer=Recorder, p=0.05)
    for name in names:
        egp = net.nodes[name].protocols["link.egp"]
        assert isinstance(egp, EGP)
        egp.cutoff_ns = 90_000      # ~ the round trip of a pair over 4 links of 10 us
    circuits = start_circuit(net, names, pairs, max_time_ns=10**9, strategy=strategy)
    assert all(_index_of_circuits(_qnp(net, x)) == _qnp(net, x).circuits for x in names)
    complete_with_losses_taken_back(net, names, ends, pairs, circuits)


def start_circuit(net, names, pairs: int, **request) -> list:
    """Ask the head for ``pairs`` to the tail; run until every node holds the
    circuit; its record at each node, head first."""
    net.submit(names[0], NetRequest(names[-1], number=pairs, **request), to="network.qnp")
    net.run(until_ns=10**10, stop_when=lambda: all(_qnp(net, x).circuits for x in names))
    return [next(iter(_qnp(net, x).circuits.values())) for x in names]


def complete_with_losses_taken_back(net, names, ends, pairs: int, circuits: list) -> None:
    """Run the request to its end and check it: exactly ``pairs`` pairs, the
    same at both ends; some were lost at the head after the tail delivered
    them and were taken back there (NetExpire); nothing left in the circuits."""
    head, tail = ends[names[0]], ends[names[-1]]
    net.run(until_ns=10**11,
            stop_when=lambda: len(head.oks) >= pairs and len(tail.live()) >= pairs)
    net.run(until_ns=net.sim.now + 10**8)
    assert not head.errors and not tail.errors
    assert len(head.oks) == pairs and len(tail.live()) == pairs
    assert {ok.pair_id for ok in head.oks} == {ok.pair_id for ok in tail.live()}
    lost = _qnp(net, names[0]).stats["lost"]
    assert lost > 0 and len(tail.expired) == lost == len(tail.oks) - pairs
    assert {e.pair_id for e in tail.expired} <= {ok.pair_id for ok in tail.oks}
    assert all(not _qnp(net, x).circuits for x in names)
    assert _circuit_state_left(circuits) == []


# ---------------------------------------------------------------- by hand (sans I/O)

class _Hand:
    """QnpProtocols n0 (head) - n1 - ... (tail), three by default, driven by
    hand: the test decides when each message arrives."""

    def __init__(self, number: int = 2, request: dict | None = None, nodes: int = 3,
                 **qnp) -> None:
        topo = Topology.chain(nodes)
        names = [f"n{i}" for i in range(nodes)]
        self.p = {n: QnpProtocol(n, topo, **qnp) for n in names}
        self.now = 0
        self.queue: list = []            # (src, dst, msg) sent, not yet delivered
        self.up: dict = {n: [] for n in self.p}   # Deliver / Submit / QuantumOp per node
        self.feed("n0", NetRequest(names[-1], number=number, **(request or {})))
        while self.queue:                # setup and confirm
            self.step()
        self.c = {n: next(iter(q.circuits.values())) for n, q in self.p.items()}
        self.seq = {f"{a}-{b}": 0 for a, b in zip(names, names[1:])}

    def feed(self, node, event):
        self.now += 1
        for a in self.p[node].handle(event, self.now):
            if isinstance(a, SendMessage):
                self.queue.append((node, a.dst, a.msg))
            else:
                self.up[node].append(a)

    def step(self, index: int = 0):
        """Deliver the ``index``-th message still in flight."""
        src, dst, msg = self.queue.pop(index)
        self.feed(dst, MessageReceived(src, msg))
        return msg

    def link_pair(self, a: str, b: str, swap_ops: bool = True) -> int:
        """A link pair a-b: LinkOk at both ends (a asked for it)."""
        name = f"{a}-{b}"
        seq = self.seq[name]
        self.seq[name] += 1
        label = self.c[a].labels[self.c[a].index]
        for me, other in ((a, b), (b, a)):
            self.feed(me, LinkOk(0, EntanglementId(a, b, seq), other, 0, 0.99, self.now, label,
                                 qubit=f"q{me}{seq}"))
        return seq

    def finish_ops(self, node):
        """Complete the node's pending quantum operations (BSM outcome 0)."""
        ops, self.up[node] = [a for a in self.up[node] if isinstance(a, QuantumOp)], \
            [a for a in self.up[node] if not isinstance(a, QuantumOp)]
        for op in ops:
            self.feed(node, OperationDone(op.op_id, 0 if isinstance(op.op, BellMeasure) else None))

    def leftover(self):
        return _circuit_state_left(self.c.values())


def test_sans_io_tail_break_crossing_the_track_leaves_nothing_behind():
    """The tail's held pair expires while the Track is on its way to it: the
    Track meets the broken segment (dropped, not parked for an OK that will
    never come), the head discards its half and answers, the answer clears
    the repeater's and the tail's tombstones, and the head asks again."""
    h = _Hand()
    s0 = h.link_pair("n0", "n1")                 # head sends Track(s0)
    r0 = h.link_pair("n1", "n2")
    h.finish_ops("n1")                            # the BSM: swapped
    assert [type(m).__name__ for _, _, m in h.queue] == ["Track"]
    h.step()                                      # Track passes n1 -> Track(r0) to n2
    assert h.queue[0][2] == Track(h.c["n0"].cid, "n0", r0, 0, h.queue[0][2].fidelity,
                                  h.queue[0][2].created_ns)
    h.feed("n2", LinkExpire(EntanglementId("n1", "n2", r0), "n1", "cutoff",
                            h.c["n1"].labels[1]))  # the tail breaks: SegmentExpire(r0) to n1
    h.step()                                      # the Track meets the tombstone
    assert not h.c["n2"].early and (0, r0) in h.c["n2"].gone
    h.step()                                      # n1 passes the break on to the head
    h.step()                                      # the head discards and answers
    assert not h.c["n0"].held[1]
    assert any(isinstance(a, Submit) for a in h.up["n0"][-3:])     # asks for a new pair
    msg = h.step()                                # the answer passes n1 ...
    assert isinstance(msg, SegmentExpire) and msg.link_seq == s0
    h.step()                                      # ... and reaches the tail
    assert not h.queue and h.leftover() == []
    assert not any(isinstance(a, Deliver) for n in h.p for a in h.up[n])


def test_sans_io_both_ends_break_at_once():
    """The link layer's cut-off expires a held pair at both ends of a segment
    at once: the two SegmentExpires cross, each takes the other's tombstone,
    nobody answers, nothing is left."""
    h = _Hand()
    r0 = h.link_pair("n1", "n2")                  # n1 holds r0 (no left pair yet)
    label = h.c["n1"].labels[1]
    h.feed("n1", LinkExpire(EntanglementId("n1", "n2", r0), "n2", "cutoff", label))
    h.feed("n2", LinkExpire(EntanglementId("n1", "n2", r0), "n1", "cutoff", label))
    assert sorted(type(m).__name__ for _, _, m in h.queue) == ["SegmentExpire"] * 2
    h.step()
    h.step()
    assert not h.queue
    assert not h.c["n1"].gone and not h.c["n2"].gone and not h.c["n2"].early


def test_sans_io_head_loss_after_tail_delivered():
    """The head's half expires after the tail delivered the pair: PairLost
    goes out before the head asks for the next pair; the repeater counts one
    more pair to make; the tail frees its half and delivers NetExpire."""
    h = _Hand(number=1)
    s0 = h.link_pair("n0", "n1")
    h.link_pair("n1", "n2")
    h.finish_ops("n1")
    h.step()                                      # Track -> n1 -> n2
    h.step()                                      # tail delivers, PairDone back
    (ok,) = [a.event for a in h.up["n2"] if isinstance(a, Deliver)]
    h.feed("n0", LinkExpire(EntanglementId("n0", "n1", s0), "n1", "cutoff", h.c["n0"].labels[0]))
    assert h.c["n0"].held[1][s0].qubit is None    # kept (credit) until settled
    h.up["n0"].clear()
    h.step()                                      # PairDone passes n1
    h.step()                                      # PairDone at the head
    assert [type(m).__name__ for _, _, m in h.queue] == ["PairLost"]
    assert not any(isinstance(a, Deliver) for a in h.up["n0"])
    assert any(isinstance(a, Submit) for a in h.up["n0"])          # asks again
    lost_before = h.c["n1"].lost
    h.step()                                      # PairLost passes n1 (one more pair to make)
    assert h.c["n1"].lost == lost_before + 1
    assert any(isinstance(a, Submit) for a in h.up["n1"][-2:])
    h.up["n2"].clear()
    h.step()                                      # the tail takes the pair back
    expire = [a.event for a in h.up["n2"] if isinstance(a, Deliver)]
    assert expire == [NetExpire(ok.pair_id, "n0", "head's half expired")]
    assert any(isinstance(a, QuantumOp) and a.op == Discard(ok.qubit) for a in h.up["n2"])
    assert h.c["n2"].delivered == 0 and not h.c["n2"].recent
    assert h.leftover() == []


# ---------------------------------------------------------------- Release

def test_link_pairs_used_by_the_qnp_are_released_from_the_link_layer():
    """Pairs the QNP swapped or delivered are the QNP's (or the application's):
    it Releases them, so the link layer's memory cut-off never discards a
    delivered qubit later, and the link layer tracks nothing once the request
    is done (before: the EGP's cut-off discarded the application's qubits)."""
    pairs = 4
    net, names, ends = build_chain(4, "bd", seed=3, check_wire=True, slots=8,
                                   consumer=Recorder)
    for name in names:
        net.nodes[name].protocols["link.egp"].cutoff_ns = 5_000_000
    head, tail = ends[names[0]], ends[names[-1]]
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    net.run(until_ns=10**9, stop_when=lambda: len(head.oks) >= pairs and len(tail.oks) >= pairs)
    assert len(head.oks) == pairs and len(tail.oks) == pairs
    net.run(until_ns=net.sim.now + 50_000_000)          # ten cut-offs later
    assert net.errors == [] and not head.expired and not tail.expired
    for ok in head.oks + tail.oks:
        assert ok.qubit.alive                         # still the application's
    for name in names:
        egp = net.nodes[name].protocols["link.egp"]
        assert all(not link.delivered for link in egp.links.values())


def test_purify_passes_release_down_and_releases_what_it_consumes():
    from qstack.link.service import EntanglementId, Release
    from qstack.network.purify import PurifyProtocol

    pp = PurifyProtocol("a")
    rel = Release(EntanglementId("a", "b", 7), "b")
    (sub,) = pp.handle(rel, 0)
    assert isinstance(sub, Submit) and sub.request is rel and sub.to == pp.lower
