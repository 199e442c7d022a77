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
