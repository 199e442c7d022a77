"""Records' fields read straight from their slots (``qstack/core/_slots.pyx``,
``read_through``): the attribute look-up of each message and hot record
class compares the name with its fields and reads the slot, else it is the
generic look-up. Its twin is the generic look-up itself
(``object.__getattribute__``, what the class had before): every read must
give the very same object, or raise the same error, both ways."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core.messages import registry
from qstack.core.protocol import (
    Deliver, OperationDone, QuantumOp, SendMessage, Submit, TimerFired,
)
from qstack.core.slots import HAVE_CYTHON, read_through
from qstack.core.vectors import import_all_messages
from qstack.link.service import CreateTopUp, EntanglementId, LinkOk, Release
from qstack.network.service import NetOk
from qstack.physical.ops import BellMeasure, Herald
from tests.strategies import message_strategy
from tests.test_core_slot_read import RECORDS as KERNEL_RECORDS
from tests.test_core_slot_read import LoudDeliver

pytestmark = pytest.mark.skipif(not HAVE_CYTHON, reason="qstack.core._slots not built")

import_all_messages()
MESSAGES = sorted(registry().values(), key=lambda c: c.TYPE_CODE)
GENERIC = object.__getattribute__

# the records the kernels read (test_core_slot_read's) and the others a pair's
# protocols read most
RECORDS = KERNEL_RECORDS + [
    OperationDone(2, None), TimerFired(("t", 1)), BellMeasure(1, 2),
    Release(EntanglementId("a", "b", 5), "b"), CreateTopUp(3, "b", 2),
    LinkOk(1, EntanglementId("a", "b", 5), "b", 2, 0.9, 10, qubit=4),
]


def _reads_through(cls) -> bool:
    from qstack.core._slots import reads_through
    return reads_through(cls)


@pytest.mark.parametrize("cls", [Deliver, Submit, SendMessage, QuantumOp, OperationDone,
                                 Herald, EntanglementId, LinkOk, Release, NetOk, BellMeasure]
                         + MESSAGES[:3], ids=lambda c: c.__name__)
def test_the_hot_records_and_the_messages_are_read_through(cls):
    assert _reads_through(cls)


def _same_read(obj, name, identical=True):
    """``obj.<name>`` both ways: the same object (an equal one where each
    look-up makes one: a bound method), or the same error."""
    try:
        want = GENERIC(obj, name)
    except AttributeError as e:
        with pytest.raises(AttributeError) as got:
            getattr(obj, name)
        assert str(got.value) == str(e)
        return
    got = getattr(obj, name)
    assert got is want if identical else (type(got) is type(want) and got == want)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_field_of_a_record_reads_as_the_generic_look_up(record):
    for f in dataclasses.fields(record):
        _same_read(record, f.name)
        # a name equal to the field's but not the interned one: the generic look-up
        _same_read(record, "".join(list(f.name)))
    # not fields: methods, class attributes, the class, an unknown name
    for name in ("__class__", "__eq__", "__repr__", "__slots__", "__dataclass_fields__",
                 "no_such_field"):
        _same_read(record, name, identical=False)


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_field_of_a_message_reads_as_the_generic_look_up(cls, data):
    msg = data.draw(message_strategy(cls))
    for f in dataclasses.fields(cls):
        _same_read(msg, f.name)
    for name in ("PROTOCOL", "TYPE_CODE", "encode", "no_such_field"):
        _same_read(msg, name, identical=False)


@pytest.mark.parametrize("cls", [LinkOk, Herald, OperationDone, MESSAGES[0]],
                         ids=lambda c: c.__name__)
def test_an_empty_slot_raises_what_the_generic_look_up_raises(cls):
    obj = object.__new__(cls)        # (no __init__: every slot empty)
    for f in dataclasses.fields(cls):
        _same_read(obj, f.name)


def test_a_subclass_is_read_the_generic_way_with_its_own_fields():
    ev = TimerFired("k")
    sub = LoudDeliver(ev, "app", 3)
    for name in ("event", "to", "volume", "loud", "no_such_field"):
        _same_read(sub, name, identical=False)
    assert sub.event is ev and sub.loud == 3


def test_what_cannot_be_read_through_is_refused_and_left_as_it_was():
    class NoSlots:
        def __init__(self):
            self.x = 1

    class WithGetattr:
        __slots__ = ("x",)

        def __getattr__(self, name):
            return "fallback"

    class Slotted:
        __slots__ = ("x",)

        @property
        def y(self):
            return 2

    from qstack.core import _slots
    for cls, names in ((int, ["real"]), (NoSlots, ["x"]), (WithGetattr, ["x"]), (Slotted, ["y"])):
        with pytest.raises(TypeError):
            _slots.read_through(cls, names)
        assert not read_through(cls, names)        # (the wrapper: False, nothing changed)
        assert not _reads_through(cls)
    w = WithGetattr()
    assert w.x == "fallback"                       # (its own look-up still serves)
    # registering a class twice changes nothing
    assert read_through(Slotted, ["x"]) and read_through(Slotted, ["x"])
    s = Slotted()
    with pytest.raises(AttributeError):
        s.x
    object.__setattr__(s, "x", 5)
    assert s.x == 5 and s.y == 2


def test_a_class_read_through_that_is_given_its_own_look_up_later_uses_it():
    class Later:
        __slots__ = ("x",)

    assert read_through(Later, ["x"])
    obj = Later()
    object.__setattr__(obj, "x", 1)
    assert obj.x == 1
    Later.__getattribute__ = lambda self, name: 42    # (CPython resets the look-up slot)
    assert obj.x == 42 and not _reads_through(Later)


def test_a_class_of_many_fields_reads_each_one_and_more_than_the_table_holds_is_refused():
    # 32 names in 64 buckets share some (then the names are compared one by one)
    names = [f"field_{i}" for i in range(32)]
    Wide = type("Wide", (), {"__slots__": tuple(names)})
    from qstack.core import _slots
    _slots.read_through(Wide, names)
    obj = Wide()
    for i, name in enumerate(names):
        object.__setattr__(obj, name, i)
    for i, name in enumerate(names):
        assert getattr(obj, name) == i
        _same_read(obj, name)
    object.__delattr__(obj, "field_7")
    _same_read(obj, "field_7")                       # (emptied: the same AttributeError)
    Wider = type("Wider", (), {"__slots__": tuple(names) + ("one_more",)})
    with pytest.raises(TypeError):
        _slots.read_through(Wider, list(Wider.__slots__))
