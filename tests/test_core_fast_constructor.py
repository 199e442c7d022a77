"""``fast_constructor`` builds exactly the object the class's own constructor builds."""
from __future__ import annotations

import dataclasses

import pytest

from qstack.core.protocol import (
    Deliver, MessageReceived, OperationDone, SendMessage, StartTimer, TimerFired,
    fast_constructor,
)
from qstack.link.service import CreateRequest, EntanglementId, LinkOk
from qstack.network.service import NetOk, PairId
from qstack.physical.ops import Entangle, Herald

CASES = [
    (Herald, (True,), {"qubit": 3, "bell_index": 2, "attempts": 7}),
    (Herald, (False,), {"reason": "deadline"}),
    (OperationDone, (4, "x"), {}),
    (MessageReceived, ("a", b"m"), {}),
    (TimerFired, (("k", 1),), {}),
    (CreateRequest, ("bob",), {"number": 3, "min_fidelity": 0.9}),
    (EntanglementId, ("a", "b", 5), {}),
    (Entangle, ("bob", ("egp", 1, 0), 10_000), {}),
    (PairId, ("a", 1, 2), {}),
]


@pytest.mark.parametrize("cls, args, kwargs", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_fast_constructor_equals_the_class_constructor(cls, args, kwargs):
    fast = fast_constructor(cls)
    a, b = fast(*args, **kwargs), cls(*args, **kwargs)
    assert type(a) is type(b)
    assert dataclasses.astuple(a) == dataclasses.astuple(b)
    assert a == b


@dataclasses.dataclass(frozen=True, slots=True)
class _WithFactory:
    flag: bool
    extra: dict = dataclasses.field(default_factory=dict, compare=False)


def test_default_factories_give_fresh_objects():
    fast = fast_constructor(_WithFactory)
    h1, h2 = fast(True), fast(True)
    assert h1.extra == {} and h1.extra is not h2.extra


def test_patched_protocol_actions_keep_their_signatures():
    assert SendMessage("b", 1) == SendMessage(dst="b", msg=1)
    assert StartTimer("k", 5).delay_ns == 5
    with pytest.raises(TypeError):
        Deliver()                       # a required field stays required
    with pytest.raises(dataclasses.FrozenInstanceError):
        TimerFired("k").key = "other"   # still frozen


def test_classes_with_post_init_checks_are_left_alone():
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self):
            if self.x < 0:
                raise ValueError("x")

    assert fast_constructor(Checked) is Checked


def test_checked_builds_the_same_object_without_post_init():
    """``checked=True``: a class with a ``__post_init__`` check gets a fast
    constructor too (same object for valid input); the check is the caller's."""
    from qstack.link.messages import QueueSpec
    from qstack.link.service import RequestType

    args = (7, 3, 0.8, 0, 2, RequestType.KEEP, "Z", 1, False, False, 0.05)
    fast = fast_constructor(QueueSpec, checked=True)
    assert fast is not QueueSpec and fast(*args) == QueueSpec(*args)
    bad = args[:6] + ("W",) + args[7:]
    with pytest.raises(ValueError):
        QueueSpec(*bad)
    with pytest.raises(ValueError):
        fast_constructor(QueueSpec)(*bad)   # a message's: its __post_init__ runs unless checked
    assert fast(*bad).measure_basis == "W"                      # not checked here
