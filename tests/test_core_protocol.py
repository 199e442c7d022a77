"""The shared protocol interface: dispatch by event type, unknown events reported."""
from dataclasses import dataclass

from qstack.core import (ErrorCode, Fail, MessageReceived, Protocol, StartTimer, TimerFired, on)


@dataclass(frozen=True)
class Ping:
    n: int


@dataclass(frozen=True)
class LoudPing(Ping):
    pass


class Echo(Protocol):
    name = "test.echo"

    @on(TimerFired)
    def _timer(self, event, now_ns):
        return [StartTimer(event.key, now_ns + 1)]

    @on(Ping)
    def _ping(self, event, now_ns):
        return [StartTimer(("ping", event.n), 5)]


def test_dispatch_by_type_and_subclass():
    p = Echo("a")
    assert p.handle(TimerFired("k"), 10) == [StartTimer("k", 11)]
    assert p.handle(LoudPing(3), 0) == [StartTimer(("ping", 3), 5)]   # base-class handler


def test_unknown_event_is_a_fail_action_not_an_exception():
    actions = Echo("a").handle(MessageReceived("b", None), 0)
    assert len(actions) == 1 and isinstance(actions[0], Fail)
    assert actions[0].code == ErrorCode.UNEXPECTED_EVENT


# ---------------------------------------------------------------- messages into a runtime
from dataclasses import field  # noqa: E402

from qstack.core import Deliver, Message, limits, message  # noqa: E402
from qstack.core.protocol import on_message  # noqa: E402
from qstack.core.runtime import NodeRuntime, RuntimeDriver  # noqa: E402


@message("test.direct", 0xFF7A)
@dataclass(frozen=True, slots=True)
class Hello(Message):
    n: int = field(metadata=limits(0, 100))


@message("test.direct", 0xFF7B)
@dataclass(frozen=True, slots=True)
class Stranger(Message):
    n: int = field(metadata=limits(0, 100))


class Direct(Protocol):
    name = "test.direct"

    @on_message(Hello)
    def _hello(self, src, msg, now_ns):
        return [Deliver((src, msg.n, now_ns))]


class Generic(Direct):
    """Its own MessageReceived handler: it must be given the event."""

    @on(MessageReceived)
    def _any(self, ev, now_ns):
        return [Deliver(("event", ev.src, ev.msg.n))]


def _runtime(*protocols):
    rt = NodeRuntime("a", RuntimeDriver())
    for proto in protocols:
        rt.add(proto("a"))
    return rt


def test_a_message_goes_to_its_handler_or_as_message_received():
    for proto, got in ((Direct, ("b", 7, 5)), (Generic, ("event", "b", 7))):
        rt = _runtime(proto)
        for _ in range(2):                      # (the second time from the runtime's cache)
            rt.message("b", Hello(7), 5)
        assert rt.inbox == [(5, got)] * 2 and not rt.failures


def test_a_message_nobody_handles_is_recorded_as_a_failure():
    rt = _runtime(Direct)
    rt.message("b", Stranger(1), 0)             # the protocol has no handler for it
    rt2 = _runtime()
    rt2.message("b", Hello(1), 0)               # no such protocol on the node
    for r in (rt, rt2):
        assert [f.code for f in r.failures] == [ErrorCode.UNKNOWN_TYPE] and not r.inbox
    rt.crash()
    rt.message("b", Hello(1), 0)                # a crashed node ignores it
    assert not rt.inbox
