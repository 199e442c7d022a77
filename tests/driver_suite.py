"""The driver suite: what every driver of qstack's node runtimes must do.

A driver carries a node's actions out and feeds back what comes (timers,
messages, operation results, the news of faults); the protocols rely on it
doing so exactly as ``specs/protocol.md`` and ``specs/faults.md`` say. These
checks are written against a small :class:`Harness` interface, so the same
checks run against the simulator (``SimHarness``, ``tests/test_driver_suite.py``)
and, once it exists, the multi-process emulation.

Each check builds nodes carrying a :class:`Probe` protocol (it records every
event with its time, and does what a test tells it to) and asserts what the
probes saw. Times are integer nanoseconds; a driver in real time may be late
by its ``slack_ns`` (the simulator: 0).
"""
from __future__ import annotations

from typing import Any, Callable

from qstack.core.errors import ErrorCode
from qstack.core.messages import Message, limits, message
from qstack.core.protocol import (
    CancelTimer, Deliver, LinkDown, LinkUp, MessageReceived, OperationDone, PeerDown, PeerUp,
    Protocol, QuantumOp, SendMessage, StartTimer, Submit, TimerFired, Undeliverable, on,
)
from qstack.physical.ops import Allocate, Discard, Entangle, Herald, Measure
from dataclasses import dataclass, field


@message("test.probe", 0xFF70)
@dataclass(frozen=True, slots=True)
class Note(Message):
    """A test message: a number, in order."""

    n: int = field(metadata=limits(0, 2**31))


class Probe(Protocol):
    """Records (time, what, detail) of everything it gets; ``script`` maps an
    event type to a function returning the actions to take."""

    name = "test.probe"

    def __init__(self, node: str, script: dict | None = None) -> None:
        super().__init__(node)
        self.seen: list[tuple] = []
        self.script = script or {}

    def _act(self, ev: Any, now: int) -> list:
        fn = self.script.get(type(ev))
        return list(fn(self, ev, now)) if fn else []

    @on(TimerFired)
    def _t(self, ev, now):
        self.seen.append((now, "timer", ev.key))
        return self._act(ev, now)

    @on(MessageReceived)
    def _m(self, ev, now):
        self.seen.append((now, "msg", ev.src, ev.msg.n))
        return self._act(ev, now)

    @on(OperationDone)
    def _o(self, ev, now):
        out = ev.outcome
        if isinstance(out, Herald):
            out = ("herald", out.ok, out.reason, out.key, out.bell_index)
        elif isinstance(out, BaseException):
            out = ("error", getattr(out, "code", None))
        elif out is not None and not isinstance(out, int):
            out = "qubit"
        self.seen.append((now, "done", ev.op_id, out))
        return self._act(ev, now)

    @on(PeerDown, PeerUp, LinkDown, LinkUp)
    def _news(self, ev, now):
        self.seen.append((now, type(ev).__name__, ev.peer,
                          getattr(ev, "restarted", None)))
        return self._act(ev, now)

    @on(Undeliverable)
    def _u(self, ev, now):
        self.seen.append((now, "undeliverable", ev.dst, ev.code))
        return self._act(ev, now)

    @on(str)
    def _request(self, ev, now):       # a request from above: a plain string
        self.seen.append((now, "request", ev))
        return self._act(ev, now)

    def kinds(self, kind: str) -> list[tuple]:
        return [s for s in self.seen if s[1] == kind]


class Upper(Probe):
    """A second protocol above a Probe (Deliver / Submit within a node)."""

    name = "test.upper"


class Harness:
    """What a driver offers the suite (one network per harness object).

    ``build(nodes, links)``: nodes (name -> list of protocol factories,
    bottom first) and links ((a, b, classical_delay_ns, model or None));
    then ``start()``, ``run(until_ns)``, ``probe(node, name)``,
    ``inject(node, protocol, actions)`` (as if the protocol had returned
    them now), ``crash(node)``, ``restart(node)``, ``link_down(a, b, up)``,
    ``reset(a, b)``; ``now``; ``slack_ns``: how late the driver may be."""

    slack_ns = 0

    def build(self, nodes: dict[str, list[Callable]], links: list[tuple]) -> None:
        raise NotImplementedError

    def start(self) -> None: ...
    def run(self, until_ns: int) -> None: ...
    def probe(self, node: str, name: str = Probe.name) -> Probe: ...
    def inject(self, node: str, protocol: str, actions: list) -> None: ...
    def crash(self, node: str) -> None: ...
    def restart(self, node: str) -> None: ...
    def link_down(self, a: str, b: str, up: bool = False) -> None: ...
    def reset(self, a: str, b: str) -> None: ...

    @property
    def now(self) -> int:
        raise NotImplementedError


# ---------------------------------------------------------------- the checks

def check_timers_fire_once_at_their_time_and_restart_or_cancel(h: Harness) -> None:
    h.build({"a": [Probe]}, [])
    h.start()
    h.inject("a", Probe.name, [StartTimer("t1", 5_000), StartTimer("t2", 1_000),
                               StartTimer("t1", 7_000),          # restart: only the new one
                               StartTimer("gone", 2_000), CancelTimer("gone"),
                               CancelTimer("never set")])        # a no-op
    h.run(20_000)
    fired = h.probe("a").kinds("timer")
    assert [k for _, _, k in fired] == ["t2", "t1"]
    assert abs(fired[0][0] - 1_000) <= h.slack_ns and abs(fired[1][0] - 7_000) <= h.slack_ns


def check_messages_arrive_after_the_delay_in_order(h: Harness) -> None:
    h.build({"a": [Probe], "b": [Probe]}, [("a", "b", 3_000, None)])
    h.start()
    h.inject("a", Probe.name, [SendMessage("b", Note(i)) for i in range(20)])
    h.run(10_000)
    got = h.probe("b").kinds("msg")
    assert [n for *_, n in got] == list(range(20))
    assert all(src == "a" and abs(t - 3_000) <= h.slack_ns for t, _, src, _ in got)


def check_a_message_nobody_can_reach_comes_back(h: Harness) -> None:
    h.build({"a": [Probe], "b": [Probe], "c": [Probe]}, [("a", "b", 1_000, None)])
    h.start()
    h.inject("a", Probe.name, [SendMessage("nowhere", Note(1)), SendMessage("c", Note(2))])
    h.run(5_000)
    back = h.probe("a").kinds("undeliverable")
    assert [(dst, code) for _, _, dst, code in back] == \
        [("nowhere", ErrorCode.NET_NO_ROUTE), ("c", ErrorCode.NET_NO_ROUTE)]


def check_deliver_and_submit_stay_within_the_node(h: Harness) -> None:
    h.build({"a": [Probe, Upper]}, [])
    h.start()
    h.inject("a", Probe.name, [Deliver("up you go")])
    h.inject("a", Upper.name, [Submit("down you go")])
    h.run(1)
    assert [s[2] for s in h.probe("a", Upper.name).kinds("request")] == ["up you go"]
    assert [s[2] for s in h.probe("a").kinds("request")] == ["down you go"]


def check_operations_answer_once_and_fire_and_forget_does_not(h: Harness) -> None:
    got = {}

    def allocated(p, ev, now):
        got.setdefault("q", ev.outcome)
        return []

    h.build({"a": [lambda n: Probe(n, {OperationDone: allocated})]}, [])
    h.start()
    h.inject("a", Probe.name, [QuantumOp(1, Allocate())])
    h.run(100_000)
    h.inject("a", Probe.name, [QuantumOp(2, Measure(got["q"], "Z")),
                               QuantumOp(None, Discard(got["q"])),   # (gone: no answer)
                               QuantumOp(3, Discard(got["q"]))])     # gone: an error answer
    h.run(200_000)
    done = [(op, out) for _, _, op, out in h.probe("a").kinds("done")]
    # the allocation's answer is a qubit reference, of the driver's own type
    # (an object in the simulator, an integer handle in the emulation)
    assert done[0][0] == 1 and done[0][1] is not None and \
        not (isinstance(done[0][1], tuple) and done[0][1][0] == "error"), done
    assert done[1:] == [(3, ("error", ErrorCode.QUBIT_UNAVAILABLE)), (2, 0)] or \
        done[1:] == [(2, 0), (3, ("error", ErrorCode.QUBIT_UNAVAILABLE))], done


def check_both_ends_hear_one_herald_with_the_key(h: Harness, model: Any) -> None:
    h.build({"a": [Probe], "b": [Probe]}, [("a", "b", 1_000, model)])
    h.start()
    h.inject("a", Probe.name, [QuantumOp(7, Entangle("b", ("k", 1), 1 << 62, 0.0))])
    h.inject("b", Probe.name, [QuantumOp(8, Entangle("a", None, 1 << 62, 0.0))])  # follows
    h.run(10**9)
    (da,), (db,) = h.probe("a").kinds("done"), h.probe("b").kinds("done")
    assert da[3][:4] == ("herald", True, "", ("k", 1)) and db[3][:4] == da[3][:4]
    assert da[3][4] == db[3][4]            # the same Bell index at both ends


def check_a_crash_and_a_restart_are_told(h: Harness) -> None:
    h.build({n: [Probe] for n in "abc"}, [("a", "b", 1_000, None), ("b", "c", 1_000, None)])
    h.start()
    h.crash("b")
    h.run(10_000)
    h.restart("b")
    h.run(20_000)
    for n in "ac":
        news = [(what, peer, r) for _, what, peer, r in h.probe(n).seen
                if what in ("LinkDown", "PeerDown", "LinkUp", "PeerUp")]
        assert news == [("LinkDown", "b", None), ("PeerDown", "b", None),
                        ("LinkUp", "b", None), ("PeerUp", "b", True)], (n, news)


def check_a_link_down_and_a_session_reset_are_told(h: Harness) -> None:
    h.build({n: [Probe] for n in "abc"}, [("a", "b", 1_000, None), ("b", "c", 1_000, None)])
    h.start()
    h.link_down("a", "b")
    h.run(10_000)
    h.link_down("a", "b", up=True)
    h.run(20_000)
    h.reset("b", "c")
    h.run(30_000)
    a = [(what, peer) for _, what, peer, _ in h.probe("a").seen]
    assert a == [("LinkDown", "b"), ("PeerDown", "b"), ("LinkUp", "b"), ("PeerUp", "b")]
    c = [(what, peer) for _, what, peer, _ in h.probe("c").seen]
    assert c == [("PeerDown", "b"), ("PeerUp", "b")]


def check_messages_in_flight_to_a_crashed_node_are_lost(h: Harness) -> None:
    h.build({"a": [Probe], "b": [Probe]}, [("a", "b", 5_000, None)])
    h.start()
    h.inject("a", Probe.name, [SendMessage("b", Note(1))])
    h.crash("b")
    h.restart("b")
    h.run(20_000)
    assert h.probe("b").kinds("msg") == []          # the fresh b never got it


CHECKS = [
    check_timers_fire_once_at_their_time_and_restart_or_cancel,
    check_messages_arrive_after_the_delay_in_order,
    check_a_message_nobody_can_reach_comes_back,
    check_deliver_and_submit_stay_within_the_node,
    check_operations_answer_once_and_fire_and_forget_does_not,
    check_a_crash_and_a_restart_are_told,
    check_a_link_down_and_a_session_reset_are_told,
    check_messages_in_flight_to_a_crashed_node_are_lost,
]
