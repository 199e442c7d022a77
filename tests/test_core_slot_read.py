"""The kernels' field reads in C (``qstack/core/_slots.pxd``: ``slot_offset``,
``slot_field``) give what ``getattr``, their pure-Python twin, gives: the
very same object for every field of every message and hot record, the same
value for a subclass (read the generic way), the same AttributeError for an
empty slot, and a TypeError at set-up for a name that is not a slot."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core.messages import registry
from qstack.core.protocol import (
    CancelTimer, Deliver, MessageReceived, OperationDone, QuantumOp, SendMessage, StartTimer,
    Submit, TimerFired,
)
from qstack.core.slots import HAVE_CYTHON
from qstack.core.vectors import import_all_messages
from qstack.link.service import CreateRequest, EntanglementId, LinkOk
from qstack.network.service import NetOk, PairId
from qstack.physical.ops import Discard, Entangle, Herald
from tests.strategies import message_strategy

pytestmark = pytest.mark.skipif(not HAVE_CYTHON, reason="qstack.core._slots not built")

import_all_messages()
MESSAGES = sorted(registry().values(), key=lambda c: c.TYPE_CODE)

# the records the kernels read (actions, operations) and others on a pair's path
RECORDS = [
    Deliver(OperationDone(1, "x"), to="link.egp"), Deliver(TimerFired("k")),
    Submit(CreateRequest("bob", number=2)), Submit(TimerFired(3), to="network.qnp"),
    StartTimer(("retry", 4), 1_000), CancelTimer("k"),
    SendMessage("bob", b"payload"), QuantumOp(7, Discard(3)), QuantumOp(None, Discard(4)),
    Entangle("bob", ("egp", 1, 0), 10_000), Entangle("bob", None, 5, param=0.1, start_ns=3,
                                                     virtual=True),
    Herald(True, qubit=3, bell_index=2, attempts=7), Herald(False, reason="deadline"),
    MessageReceived("a", b"m"), EntanglementId("a", "b", 5), PairId("a", 1, 2),
]


def _read(obj, cls, name):
    from qstack.core._slots import read_slot
    return read_slot(obj, cls, name)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_field_of_a_record_reads_as_getattr(record):
    cls = type(record)
    for f in dataclasses.fields(cls):
        assert _read(record, cls, f.name) is getattr(record, f.name)


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_field_of_a_message_reads_as_getattr(cls, data):
    msg = data.draw(message_strategy(cls))
    for f in dataclasses.fields(cls):
        assert _read(msg, cls, f.name) is getattr(msg, f.name)


@dataclasses.dataclass(frozen=True, slots=True)
class LoudDeliver(Deliver):
    """A subclass of a record with a field and a property of its own."""
    volume: int = 11

    @property
    def loud(self):
        return self.volume


def test_a_subclass_or_another_class_is_read_the_generic_way():
    ev = TimerFired("k")
    sub = LoudDeliver(ev, "app", 3)
    assert _read(sub, Deliver, "event") is ev and _read(sub, Deliver, "to") == "app"
    # a record of another class with a field of that name: its own value, not Deliver's slot
    assert _read(Submit(ev, to="x"), Deliver, "to") == "x"
    with pytest.raises(AttributeError):
        _read(SendMessage("a", 1), Deliver, "event")


def test_an_empty_slot_raises_as_getattr_does():
    bare = object.__new__(SendMessage)          # (fields never set)
    with pytest.raises(AttributeError) as ours:
        _read(bare, SendMessage, "dst")
    with pytest.raises(AttributeError) as theirs:
        getattr(bare, "dst")
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("cls, name", [
    (SendMessage, "no_such_field"), (Deliver, "__init__"), (NetOk, "__slots__"),
    (LinkOk, "__doc__"),
])
def test_a_name_that_is_not_a_slot_is_refused_when_its_place_is_looked_up(cls, name):
    from qstack.core._slots import read_slot
    with pytest.raises(TypeError, match="not a slot"):
        read_slot(None, cls, name)
