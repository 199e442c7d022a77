"""The simulator's network driver: actions carried out in simulated time.

A tiny test protocol asks for heralded pairs and timers; the checks compare
timing with the link parameters and the attempt statistics with the geometric
distribution the skip-ahead samples.
"""
from dataclasses import dataclass, field
import math

import numpy as np
import pytest

from qstack.core import (ErrorCode, Deliver, Fail, Message, MessageReceived, OperationDone,
                         Protocol, QuantumOp, SendMessage, StartTimer, Submit, TimerFired,
                         CancelTimer, limits, message, on)
from qstack.physical.device import NodeHardware
from qstack.physical.ops import BellMeasure, CancelEntangle, Discard, Entangle, Herald, Measure
from qstack.physical.pair_model import SimplePairModel
from qstack.sim.network import SimNetwork


@message("test.pair", 0xFF10)
@dataclass(frozen=True, slots=True)
class Note(Message):
    text: str = field(metadata=limits(max_len=32))


@dataclass(frozen=True)
class Cancel:
    peer: str
    key: int


@dataclass(frozen=True)
class Go:
    peer: str
    key: int
    deadline_ns: int
    start_ns: int = 0


class PairMaker(Protocol):
    """Asks for one heralded pair per Go; records heralds and notes."""

    name = "test.pair"

    def __init__(self, node):
        super().__init__(node)
        self.heralds = []
        self.notes = []
        self.timers = []
        self._ops = 0

    @on(Go)
    def _go(self, event, now_ns):
        self._ops += 1
        return [QuantumOp(self._ops, Entangle(event.peer, event.key, event.deadline_ns,
                                               start_ns=event.start_ns))]

    @on(Cancel)
    def _cancel(self, event, now_ns):
        self._ops += 1
        return [QuantumOp(-self._ops, CancelEntangle(event.peer, event.key))]

    @on(OperationDone)
    def _done(self, event, now_ns):
        if event.op_id < 0:   # CancelEntangle acknowledged
            return []
        self.heralds.append((now_ns, event.outcome))
        return [Deliver(event.outcome)]

    @on(MessageReceived)
    def _note(self, event, now_ns):
        self.notes.append((now_ns, event.src, event.msg.text))

    @on(TimerFired)
    def _timer(self, event, now_ns):
        self.timers.append((now_ns, event.key))


def make_net(p=0.2, fidelity=0.9, cycle=1_000, herald=5_000, delay=7_000, formalism="bd",
             seed=3, slots=4):
    net = SimNetwork(seed=seed, formalism=formalism)
    for n in ("a", "b"):
        net.add_node(n, NodeHardware(num_qubits=slots))
        net.add_protocol(n, PairMaker(n))
    net.add_link("a", "b", SimplePairModel(p, fidelity, cycle, herald, delay))
    return net


def test_herald_timing_and_state():
    net = make_net()
    net.submit("a", Go("b", 1, 10**9))
    net.sim.schedule(2_000, net.submit, "b", Go("a", 1, 10**9))
    net.run()
    (ta, ha), = net.node("a").protocol("test.pair").heralds
    (tb, hb), = net.node("b").protocol("test.pair").heralds
    assert ha.ok and hb.ok and ta == tb
    # attempts start when the second end submits (t = 2 us); success on attempt k
    assert ta == 2_000 + (ha.attempts - 1) * 1_000 + 5_000
    assert ha.emitted_ns == ta - 5_000
    assert net.engine.bell_fidelity(ha.qubit, hb.qubit, ha.bell_index) == pytest.approx(0.9)
    assert net.node("a").inbox == [(ta, ha)]          # top protocol delivers to the inbox


def test_attempt_count_is_geometric():
    """Mean attempts over many pairs ~ 1/p; tolerance 5 standard errors of the mean."""
    p, n = 0.05, 2_000
    net = make_net(p=p, slots=1)
    for key in range(n):
        net.submit("a", Go("b", key, 10**15))
        net.submit("b", Go("a", key, 10**15))
        net.run()
        for side in "ab":
            net.node(side).device.free(net.node(side).protocol("test.pair").heralds[-1][1].qubit)
    attempts = np.array([h.attempts for _, h in net.node("a").protocol("test.pair").heralds])
    sem = math.sqrt((1 - p) / p**2 / n)
    assert abs(attempts.mean() - 1 / p) < 5 * sem


def test_deadline_and_peer_absent():
    net = make_net(p=0.0)
    net.submit("a", Go("b", 1, 50_000))
    net.run()
    (t, h), = net.node("a").protocol("test.pair").heralds
    assert (t, h.ok, h.reason) == (50_000, False, "peer absent")
    assert net.node("a").device.free_slots == 4        # the reservation was released
    net.submit("a", Go("b", 2, 90_000))
    net.submit("b", Go("a", 2, 80_000))
    net.run()
    reasons = [(t, h.reason) for t, h in net.node("b").protocol("test.pair").heralds]
    assert reasons == [(80_000, "deadline")]


def test_memory_full_is_an_outcome_not_a_crash():
    net = make_net(slots=1)
    net.submit("a", Go("b", 1, 10**9))
    net.submit("a", Go("b", 2, 10**9))
    net.run(until_ns=1)
    heralds = net.node("a").protocol("test.pair").heralds
    assert heralds and heralds[0][1].reason == "memory full"


def test_cancel_aborts_both_ends():
    net = make_net(p=1e-6)
    net.submit("a", Go("b", 1, 10**12))
    net.submit("b", Go("a", 1, 10**12))
    net.run(until_ns=1_000)
    net.submit("a", Cancel("b", 1))
    net.run()
    for n in "ab":
        (t, h), = net.node(n).protocol("test.pair").heralds
        assert (h.ok, h.reason) == (False, "cancelled")
        assert t == 1_000 + (0 if n == "a" else 7_000)   # the peer hears after the classical delay
    assert net.node("a").device.free_slots == net.node("b").device.free_slots == 4


def test_messages_timers_and_unknown_protocol():
    net = make_net()
    a = net.node("a")
    for action in (SendMessage("b", Note("hi")), StartTimer("t", 500),
                   StartTimer("t", 900),                      # restart
                   StartTimer("u", 100), CancelTimer("u")):
        a._run[type(action)]("test.pair", action, net.now_ns)   # as the runtime does
    net.run()
    assert net.node("b").protocol("test.pair").notes == [(7_000, "a", "hi")]
    assert a.protocol("test.pair").timers == [(900, "t")]
    assert net.stats["message_bytes"] > 0
    net.feed("a", "nope", Go("b", 1, 1))
    assert net.errors[-1].code == ErrorCode.UNKNOWN_TYPE


def test_messages_sent_at_one_instant_share_one_event_in_order():
    # Messages one node sends a neighbour at one instant, with nothing else
    # scheduled in between, arrive in one kernel event, in their order (as
    # their own events would have fired: back to back); anything scheduled
    # in between ends the batch, so the order of events never changes.
    net = make_net()
    send = net.node("a")._run[SendMessage]
    later = []
    for text in ("1", "2"):
        send("test.pair", SendMessage("b", Note(text)), net.now_ns)
    net.sim.schedule(7_000, lambda: later.append(list(net.node("b").protocol("test.pair").notes)))
    send("test.pair", SendMessage("b", Note("3")), net.now_ns)
    fired = net.run()
    notes = net.node("b").protocol("test.pair").notes
    assert notes == [(7_000, "a", "1"), (7_000, "a", "2"), (7_000, "a", "3")]
    assert later == [notes[:2]]          # the event in between fired between them
    assert fired == 3 and net.stats["messages"] == 3
    # messages in flight are lost with their link's epoch; one sent after
    # that (same instant, nothing scheduled since) travels on its own
    send("test.pair", SendMessage("b", Note("lost")), net.now_ns)
    net.link("a", "b").new_epoch()
    send("test.pair", SendMessage("b", Note("4")), net.now_ns)
    net.run()
    assert notes[3:] == [(14_000, "a", "4")] and net.stats["messages_lost"] == 1


def test_same_seed_same_run():
    def trace(seed):
        net = make_net(seed=seed)
        for key in range(20):
            net.submit("a", Go("b", key, 10**12))
            net.submit("b", Go("a", key, 10**12))
        net.run()
        return [(t, h.attempts) for t, h in net.node("a").protocol("test.pair").heralds]

    assert trace(5) == trace(5)
    assert trace(5) != trace(6)


def test_memory_decays_while_waiting_for_herald():
    """A pair stored for t with T2 on both ends: Werner F=1 -> dephased by
    exp(-t/T2) per side, so F = (1 + exp(-2t/T2)) / 2 (pure dephasing, T1 = inf)."""
    net = SimNetwork(seed=1, formalism="dm")
    t2 = 1e6
    for n in ("a", "b"):
        net.add_node(n, NodeHardware(num_qubits=2, t2_ns=t2))
        net.add_protocol(n, PairMaker(n))
    net.add_link("a", "b", SimplePairModel(1.0, 1.0, 1_000, 200_000, 0))
    net.submit("a", Go("b", 1, 10**9))
    net.submit("b", Go("a", 1, 10**9))
    net.run()
    (t, h), = net.node("a").protocol("test.pair").heralds
    (_, hb), = net.node("b").protocol("test.pair").heralds
    for n, q in (("a", h.qubit), ("b", hb.qubit)):
        net.node(n).device.update(q, t)
    expected = (1 + math.exp(-2 * 200_000 / t2)) / 2
    assert net.engine.bell_fidelity(h.qubit, hb.qubit, 0) == pytest.approx(expected, abs=1e-9)


@dataclass(frozen=True)
class Drop:
    qubit: object


class Dropper(PairMaker):
    """A PairMaker that can also discard without asking for an answer."""

    name = "test.pair"

    def __init__(self, node):
        super().__init__(node)
        self.answers = []

    @on(Drop)
    def _drop(self, event, now_ns):
        return [QuantumOp(None, Discard(event.qubit))]

    @on(OperationDone)
    def _done(self, event, now_ns):
        self.answers.append(event)
        return super()._done(event, now_ns)


def test_fire_and_forget_ops_get_no_answer_and_failures_are_recorded():
    net = SimNetwork(seed=3)
    for n in ("a", "b"):
        net.add_node(n, NodeHardware(num_qubits=4))
        net.add_protocol(n, Dropper(n))
    net.add_link("a", "b", SimplePairModel(0.5, 0.9, 1_000, 5_000, 7_000))
    net.submit("a", Go("b", 1, 10**9))
    net.submit("b", Go("a", 1, 10**9))
    net.run()
    a = net.node("a").protocol("test.pair")
    (_, h), = a.heralds
    n_answers = len(a.answers)
    net.submit("a", Drop(h.qubit))
    net.run()
    assert not net.node("a").device.holds(h.qubit) and not h.qubit.alive
    assert len(a.answers) == n_answers and net.errors == []     # no answer, no error
    net.submit("a", Drop(h.qubit))                              # not in memory any more
    net.run()
    assert len(a.answers) == n_answers
    (err,) = net.errors
    assert (err.node, err.protocol, err.code) == ("a", "test.pair", ErrorCode.QUBIT_UNAVAILABLE)


def test_entangle_needs_an_op_id():
    net = make_net()
    net.feed("a", "test.pair", Go("b", 1, 10**9))   # a normal one still works afterwards
    net.nodes["a"].protocols["test.pair"].handle = lambda ev, now: [
        QuantumOp(None, Entangle("b", 2, 10**9))]
    net.feed("a", "test.pair", object())
    (err,) = net.errors
    assert err.code == ErrorCode.INVALID_PARAMETER and "op_id" in err.detail


def test_attempts_begin_at_the_later_start_time():
    """Entangle.start_ns: submitted early, attempts begin at the later of the two
    ends' start times (and not before both have submitted)."""
    net = make_net()
    net.submit("a", Go("b", 1, 10**9, start_ns=50_000))
    net.sim.schedule(2_000, net.submit, "b", Go("a", 1, 10**9, start_ns=30_000))
    net.run()
    (ta, ha), = net.node("a").protocol("test.pair").heralds
    assert ha.emitted_ns == 50_000 + (ha.attempts - 1) * 1_000
    assert ta == ha.emitted_ns + 5_000
