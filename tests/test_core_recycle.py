"""Records' memory reused (``qstack/core/_slots.pyx``, ``recycle_through``):
a message or hot record class frees its instances onto a free list of its
own and builds the next from it. Its twin is CPython's generic allocation
and deallocation (what the class had before, and what runs without the
extension): nothing an instance shows may differ. The invariants checked:
a reused instance equals one built afresh and is tracked by the garbage
collector; freeing releases every field's value, and the class's refcount
comes back to where it was; a subclass's instance frees its own and its
base's fields and is never kept; a chain of records a million deep frees
without a deep C recursion; classes the free list cannot serve exactly are
refused and keep the generic functions."""
from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import sys
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core import slots
from qstack.core.messages import registry
from qstack.core.protocol import Deliver, Submit, TimerFired
from qstack.core.slots import HAVE_CYTHON
from qstack.core.vectors import import_all_messages
from tests.strategies import message_strategy
from tests.test_core_read_through import RECORDS
from tests.test_core_slot_read import LoudDeliver

pytestmark = pytest.mark.skipif(not HAVE_CYTHON, reason="qstack.core._slots not built")

if HAVE_CYTHON:
    from qstack.core._slots import recycle_through, recycled_count, recycles

import_all_messages()
MESSAGES = sorted(registry().values(), key=lambda c: c.TYPE_CODE)


class Payload:
    """A field value whose release a weak reference sees."""


def _fields(obj):
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))


@pytest.mark.parametrize("cls", sorted({type(r) for r in RECORDS} | set(MESSAGES),
                                       key=lambda c: c.__qualname__),
                         ids=lambda c: c.__qualname__)
def test_every_message_and_hot_record_class_recycles(cls):
    assert recycles(cls)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_freed_record_is_the_next_ones_memory_and_equals_one_built_afresh(record):
    cls = type(record)
    values = _fields(record)
    before = sys.getrefcount(cls)
    first = copy.copy(record)               # (object.__new__ through the class's allocator)
    address = id(first)
    kept = recycled_count(cls)
    del first
    assert recycled_count(cls) == min(kept + 1, 32)
    again = cls(*values)
    assert recycled_count(cls) == min(kept + 1, 32) - 1
    assert id(again) == address             # the memory reused: the list is not dead code
    assert again == record and _fields(again) == values and repr(again) == repr(record)
    assert hash(again) == hash(record) if cls.__hash__ is not None else True
    assert gc.is_tracked(again)
    del again
    assert sys.getrefcount(cls) == before


def test_freeing_releases_every_field_and_the_class_reference():
    payload = Payload()
    gone = weakref.ref(payload)
    before = sys.getrefcount(Deliver)
    records = [Deliver(TimerFired(payload), to=f"app{i}") for i in range(100)]
    assert sys.getrefcount(Deliver) == before + 100
    del records
    assert sys.getrefcount(Deliver) == before
    del payload
    assert gone() is None


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.text(max_size=5)), max_size=200))
@settings(max_examples=60, deadline=None)
def test_any_order_of_builds_and_frees_keeps_values_and_counts(steps):
    """Built and freed in any order (the free list filling, emptying and
    overflowing its 32 places): every live record keeps its fields, and once
    all are freed the classes' refcounts and the fields' values are released."""
    payloads = [Payload() for _ in range(8)]
    refs = [weakref.ref(p) for p in payloads]
    counts = {cls: sys.getrefcount(cls) for cls in (Deliver, Submit, TimerFired)}
    live: list = []
    for build, k, to in steps:
        if build or not live:
            ev = TimerFired((to, payloads[k]))
            live.append((Deliver(ev, to) if k % 2 else Submit(ev, to), ev, to))
        else:
            del live[k % len(live)]
        for rec, ev, want_to in live:
            assert _fields(rec)[0] is ev and rec.to == want_to and gc.is_tracked(rec)
    live.clear()
    rec = ev = None
    assert {cls: sys.getrefcount(cls) for cls in counts} == counts
    del payloads
    assert all(r() is None for r in refs)


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_a_message_built_in_a_freed_ones_memory_equals_its_copy(cls, data):
    msg = data.draw(message_strategy(cls))
    twin = pickle.loads(pickle.dumps(msg))   # (its own memory, maybe a freed one's)
    del msg
    again = pickle.loads(pickle.dumps(twin))
    assert again == twin and _fields(again) == _fields(twin)


def test_a_subclass_frees_its_own_and_its_bases_fields_and_is_never_kept():
    inner, extra = Payload(), Payload()
    refs = weakref.ref(inner), weakref.ref(extra)
    before = sys.getrefcount(LoudDeliver), sys.getrefcount(Deliver)
    kept = recycled_count(Deliver)
    sub = LoudDeliver(TimerFired(inner), "app", extra)
    assert not recycles(LoudDeliver) and sub.loud is extra
    del sub, inner, extra
    assert all(r() is None for r in refs)
    assert recycled_count(Deliver) == kept
    assert (sys.getrefcount(LoudDeliver), sys.getrefcount(Deliver)) == before


def test_a_million_records_deep_free_without_deep_recursion():
    """(CPython's trashcan defers the inner ones, as for nested tuples)"""
    payload = Payload()
    gone = weakref.ref(payload)
    chain = TimerFired(payload)
    for i in range(1_000_000):
        chain = Deliver(chain, "a")
    del chain, payload
    assert gone() is None


def test_a_cycle_through_a_mutable_field_is_collected():
    box: list = []
    rec = Deliver(TimerFired(box), "app")
    box.append(rec)
    marker = Payload()
    box.append(marker)
    gone = weakref.ref(marker)
    del rec, box, marker
    gc.collect()
    assert gone() is None


def _classes_to_refuse():
    @dataclasses.dataclass(frozen=True)
    class WithDict:
        a: int = 0

    @dataclasses.dataclass(frozen=True, slots=True, weakref_slot=True)
    class WithWeakrefs:
        a: int = 0

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithDel:
        a: int = 0

        def __del__(self):
            pass

    class OfATuple(tuple):
        __slots__ = ()

    class OfAProperty(property):          # (a base written in C, with slots of its own)
        __slots__ = ("a",)

    return [WithDict, WithWeakrefs, WithDel, OfATuple, OfAProperty, int]


@pytest.mark.parametrize("cls", _classes_to_refuse(), ids=lambda c: c.__name__)
def test_classes_the_free_list_cannot_serve_exactly_are_refused(cls):
    with pytest.raises(TypeError):
        recycle_through(cls)
    assert not recycles(cls) and not slots.recycle_through(cls)
    obj = cls()
    del obj                                     # (the generic functions still serve)


def test_registering_twice_changes_nothing_and_the_twin_changes_nothing(monkeypatch):
    recycle_through(Deliver)
    assert recycles(Deliver)
    monkeypatch.setattr(slots, "_recycle_through", None)
    assert slots.recycle_through(Deliver) is False
