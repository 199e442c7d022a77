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


# ---------------------------------------------------------------- the two slot writers
# qstack.core.slots: the Cython SlotWriter and the pure-Python descriptor
# setters (its twin) must build the same objects.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from qstack.core.messages import message_constructor, registry  # noqa: E402
from qstack.core.slots import HAVE_CYTHON  # noqa: E402
from qstack.core.vectors import import_all_messages  # noqa: E402
from tests.strategies import message_strategy  # noqa: E402

import_all_messages()
MESSAGES = sorted(registry().values(), key=lambda c: c.TYPE_CODE)
needs_cython = pytest.mark.skipif(not HAVE_CYTHON, reason="qstack.core._slots not built")


def _same(a, b):
    assert type(a) is type(b)
    fields = [f.name for f in dataclasses.fields(a)]
    # the very same field values (not only equal ones): nothing is converted
    assert all(getattr(a, n) is getattr(b, n) for n in fields)


@needs_cython
@pytest.mark.parametrize("cls, args, kwargs", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_compiled_and_pure_slot_writers_build_the_same_record(cls, args, kwargs):
    compiled = fast_constructor(cls, compiled=True)(*args, **kwargs)
    _same(compiled, fast_constructor(cls, compiled=False)(*args, **kwargs))
    _same(compiled, cls(*args, **kwargs))


@needs_cython
@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_compiled_and_pure_slot_writers_build_the_same_message(cls, data):
    msg = data.draw(message_strategy(cls))
    values = [getattr(msg, f.name) for f in dataclasses.fields(cls)]
    made = [message_constructor(cls, checked, compiled)(*values)
            for checked in (False, True) for compiled in (False, True)]
    for other in made[1:] + [cls(*values)]:
        _same(made[0], other)


@needs_cython
def test_compiled_slot_writer_refuses_what_it_cannot_write():
    from qstack.core._slots import SlotWriter

    class Plain:
        def __init__(self, x):
            self.x = x

    with pytest.raises(TypeError):
        SlotWriter(Plain, ["x"])                # no slot: the descriptor setters stay
    writer = SlotWriter(TimerFired, ["key"])
    with pytest.raises(TypeError):
        writer.new(1, 2)                        # one value per field
    with pytest.raises(TypeError):
        writer.fill(OperationDone(1, 2), "k")   # another class's object
    old = TimerFired("a")
    writer.fill(old, "b")                       # an __init__ may set a field again
    assert old.key == "b"


def test_fast_init_keeps_the_dataclass_init_contract():
    """``fast_init``: same parameters, defaults, factories and __post_init__
    checks as the dataclass's own __init__ (compared with an undecorated twin)."""
    from qstack.core.protocol import fast_init

    def declare():
        @dataclasses.dataclass(frozen=True, slots=True)
        class Rec:
            name: str
            number: int = 1
            extra: dict = dataclasses.field(default_factory=dict)

            def __post_init__(self):
                if self.number < 1:
                    raise ValueError("number must be >= 1")
        return Rec

    Plain, Fast = declare(), fast_init(declare())
    assert Fast.__init__ is not Plain.__init__
    for args, kwargs in [(("a",), {}), (("a", 3), {}), ((), {"name": "b", "extra": {1: 2}})]:
        assert dataclasses.astuple(Fast(*args, **kwargs)) == \
            dataclasses.astuple(Plain(*args, **kwargs))
    assert Fast("a").extra is not Fast("a").extra          # a fresh default each time
    for bad_args, error in [(("a", 0), ValueError), ((), TypeError), (("a", 1, {}, 4), TypeError)]:
        with pytest.raises(error):
            Plain(*bad_args)
        with pytest.raises(error):
            Fast(*bad_args)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fast("a").name = "b"


def test_fast_init_leaves_what_it_cannot_speed_up():
    from qstack.core.protocol import fast_init

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithInitVar:
        x: int
        scale: dataclasses.InitVar[int] = 1

    @dataclasses.dataclass(frozen=True, slots=True)
    class KeywordOnly:
        x: int = dataclasses.field(kw_only=True)

    for cls in (WithInitVar, KeywordOnly):
        init = cls.__init__
        assert fast_init(cls).__init__ is init


@needs_cython
@pytest.mark.parametrize("cls, args, kwargs", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_a_record_called_through_its_constructor_is_the_one_init_builds(cls, args, kwargs):
    """``Record(...)`` goes straight to the generated constructor
    (``call_through``); ``object.__new__`` then ``__init__`` builds the same."""
    made = cls(*args, **kwargs)
    usual = object.__new__(cls)
    cls.__init__(usual, *args, **kwargs)
    _same(made, usual)


@needs_cython
def test_call_through_is_not_inherited_and_refuses_builtin_types():
    from qstack.core._slots import call_through
    from qstack.core.protocol import fast_init

    @fast_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        x: int

        def __post_init__(self):
            if self.x < 0:
                raise ValueError("x must be >= 0")

    @dataclasses.dataclass(frozen=True, slots=True)
    class Sub(Base):
        y: int = 2

    assert Base(1) == Base(x=1) and type(Base(1)) is Base
    with pytest.raises(ValueError):
        Base(-1)                        # __post_init__ still runs
    sub = Sub(1, 5)                     # built by its own (dataclass) __init__
    assert type(sub) is Sub and (sub.x, sub.y) == (1, 5)
    with pytest.raises(TypeError):
        call_through(int, lambda: 0)


@needs_cython
def test_call_through_reaches_the_maker_each_class_has_now():
    """``Cls(...)`` reaches the maker registered last for ``Cls``: for many
    classes at once (more than the C table of Maker classes holds, so some
    are found in the dict instead) and after a class's maker changes from a
    Maker to a Python function and back."""
    from qstack.core._slots import call_through
    from qstack.core.slots import c_maker

    def python_make(cls):
        def make(x):
            obj = object.__new__(cls)
            object.__setattr__(obj, "x", x + 1000)      # (tells the makers apart)
            return obj
        return make

    classes = [dataclasses.make_dataclass(f"Rec{k}", [("x", int)], frozen=True, slots=True)
               for k in range(500)]
    for cls in classes:
        call_through(cls, c_maker(cls, ["x"], [None], [True], [None], compiled=True))
    assert [cls(k).x for k, cls in enumerate(classes)] == list(range(500))
    for cls in classes[::7]:
        call_through(cls, python_make(cls))
    assert [cls(k).x for k, cls in enumerate(classes)] == [
        k + 1000 if k % 7 == 0 else k for k in range(500)]
    for cls in classes[::14]:
        call_through(cls, c_maker(cls, ["x"], [None], [True], [None], compiled=True))
    assert [cls(k).x for k, cls in enumerate(classes)] == [
        k if k % 14 == 0 else k + 1000 if k % 7 == 0 else k for k in range(500)]


# ---------------------------------------------------------------- the C constructors (Maker)

def _outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:        # (the very error is what is compared)
        return (type(exc), str(exc))


@needs_cython
@pytest.mark.parametrize("args, kwargs", [
    ((1, "a", 2, 3, 0.5, 7), {}),
    ((1, "a", 2, 4, 0.5, 7), {}),                    # bell index out of range
    ((1, "a", 2, 3, float("nan"), 7), {}),           # NaN fidelity
    ((1, "a", 2, 3, 1, 7), {}),                      # an int for a float field
    ((1, "a", -2, 3, 0.5, 7), {}),                   # below the minimum
    ((1, "a", 1 << 70, 3, 0.5, 7), {}),              # beyond int64
    ((True, "a", 2, 3, 0.5, 7), {}),                 # a bool for an int field
    ((1, "x" * 65, 2, 3, 0.5, 7), {}),               # name too long
    ((1, 7, 2, 3, 0.5, 7), {}),                      # wrong type
    ((1, "a", 2, 3, 0.5), {"created_ns": 7}),
    ((), {"circuit_id": 1, "head": "a", "link_seq": 2, "bell_index": 3, "fidelity": 0.5,
          "created_ns": 7}),
    ((1, "a", 2, 3, 0.5), {}),                       # missing
    ((1, "a", 2, 3, 0.5, 7), {"head": "b"}),         # twice
    ((1, "a", 2, 3, 0.5, 7), {"other": 1}),          # unknown
    ((1, "a", 2, 3, 0.5, 7, 8), {}),                 # too many
])
def test_c_message_constructor_accepts_and_refuses_as_the_python_one(args, kwargs):
    """The C constructor (``Maker``) and the generated Python function (its
    twin): the same message for valid input, the same error for invalid."""
    from qstack.network.messages import Track

    c_made = _outcome(message_constructor(Track, False, True), *args, **kwargs)
    py_made = _outcome(message_constructor(Track, False, False), *args, **kwargs)
    if c_made[0] == "ok":
        assert py_made[0] == "ok"
        _same(c_made[1], py_made[1])
        _same(c_made[1], Track(*args, **kwargs))
    else:
        assert c_made[0] is py_made[0]
        if c_made[0] is not TypeError:      # (argument errors: same type, own wording)
            assert c_made[1] == py_made[1]


@needs_cython
def test_c_message_constructor_runs_post_init_unless_checked():
    from qstack.core.errors import EncodeError
    from qstack.link.messages import QueueSpec
    from qstack.link.service import RequestType

    bad = (7, 3, 0.8, 0, 2, RequestType.KEEP, "W", 1, False, False, 0.05)
    for compiled in (True, False):
        with pytest.raises(EncodeError):
            message_constructor(QueueSpec, False, compiled)(*bad)
        assert message_constructor(QueueSpec, True, compiled)(*bad).measure_basis == "W"


@dataclasses.dataclass(frozen=True, slots=True)
class _Mixed:
    a: object
    b: object = 5
    c: list = dataclasses.field(default_factory=list)
    d: object = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Plain:
    a: object
    b: object = "b"
    c: object = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Four:
    """_Mixed without its factory: a keyword call site remembered with its
    number of positional arguments takes the Maker's keyword short path."""
    a: object
    b: object = 5
    c: object = "c"
    d: object = None


@needs_cython
@pytest.mark.parametrize("cls", [_Mixed, _Plain])
def test_the_makers_short_path_builds_what_the_long_one_does(cls):
    """A positional call with nothing to check takes ``Maker``'s short path
    (``_slots.pyx``, ``_call``) once every field after the arguments has a
    plain default (``_Mixed``: from 3 arguments, its factory field given;
    ``_Plain``: from 1). Every number of arguments, positional or by keyword,
    builds the object the pure-Python constructor builds: the given values
    themselves, the defaults, a fresh list from the factory; too few or too
    many raise the same TypeError."""
    compiled = fast_constructor(cls, compiled=True)
    pure = fast_constructor(cls, compiled=False)
    names = [f.name for f in dataclasses.fields(cls)]
    values = [object(), object(), [], object()][:len(names)]
    for n in range(len(names) + 2):
        args = values[:n]
        kwargs = dict(zip(names, args))
        mixed = (args[:1], dict(list(kwargs.items())[1:]))     # (first positional, rest by name)
        for call_args, call_kwargs in ((args, {}), ((), kwargs), mixed):
            try:
                expected = pure(*call_args, **call_kwargs)
            except TypeError as exc:
                with pytest.raises(TypeError) as got:
                    compiled(*call_args, **call_kwargs)
                assert str(got.value).split("(")[1] == str(exc).split("(")[1]
                continue
            made = compiled(*call_args, **call_kwargs)
            assert type(made) is cls
            for name in names:
                got, want = getattr(made, name), getattr(expected, name)
                if cls is _Mixed and name == "c" and n < 3:
                    assert got == want == [] and got is not want     # (a fresh one each)
                else:
                    assert got is want, (cls.__name__, n, name)       # the same object


@needs_cython
@pytest.mark.parametrize("cls", [_Mixed, _Four])
@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.tuples(
    st.integers(0, 4),                                          # positional arguments
    st.permutations(["a", "b", "c", "d", "zz"]).flatmap(        # keywords, in some order
        lambda order: st.integers(0, 5).map(lambda k: order[:k]))),
    min_size=1, max_size=12))
def test_the_makers_remembered_keywords_build_what_the_python_constructor_does(cls, calls):
    """``Maker`` matches a call's keyword names to fields once and reuses the
    match while the next call passes the same names in the same order (a
    call site's names, every time). Any sequence of calls (the same names
    again, another order, fewer or more, an unknown one, one that repeats a
    positional argument) builds what the pure-Python constructor builds, or
    raises the same error. A class with nothing to check or make (``_Four``)
    takes the short path once a call with those names and as many positional
    arguments has succeeded."""
    compiled = fast_constructor(cls, compiled=True)
    pure = fast_constructor(cls, compiled=False)
    values = {"a": object(), "b": object(), "c": [], "d": object(), "zz": object()}
    positional = [values["a"], values["b"], values["c"], values["d"], object()]
    for n, keywords in calls:
        args = positional[:n]
        kwargs = {k: values[k] for k in keywords}
        c_made, py_made = _outcome(compiled, *args, **kwargs), _outcome(pure, *args, **kwargs)
        assert c_made[0] == py_made[0]
        if c_made[0] == "ok":
            given_values = dict(zip("abcd", args), **kwargs)
            for name in "abcd":      # the values given, themselves; the defaults, equal
                made, expected = getattr(c_made[1], name), getattr(py_made[1], name)
                assert made is expected \
                    if name in given_values or name != "c" or cls is not _Mixed else \
                    made == expected and made is not expected
        elif "positional arguments but" not in py_made[1]:
            # the same words, naming the same keyword (too many positional
            # arguments: Python says "from 1 to 4", the Maker "4")
            assert c_made[1] == py_made[1]


@needs_cython
def test_a_keyword_call_site_repeated_builds_each_time_what_python_builds():
    """The same call site again (the same names, as many positional
    arguments) takes the keyword short path: each object is the Python
    constructor's, with this call's values; a call between that fails, or
    gives another number of positional arguments, changes nothing."""
    compiled = fast_constructor(_Four, compiled=True)
    pure = fast_constructor(_Four, compiled=False)
    for round_ in range(3):
        a, d = object(), object()
        made, expected = compiled(a, d=d), pure(a, d=d)
        assert (made.a, made.b, made.c, made.d) == (expected.a, expected.b, expected.c,
                                                     expected.d) == (a, 5, "c", d)
        assert _outcome(compiled, d=d) == _outcome(pure, d=d)          # a missing
        assert _outcome(compiled, a, a, d=d, b=1) == _outcome(pure, a, a, d=d, b=1)
        assert compiled(a, 6, d=d).b == 6


@needs_cython
def test_a_maker_is_called_through_vectorcall_as_through_tp_call():
    """``Maker`` takes the vectorcall protocol (PEP 590: ``maker(...)`` passes
    the caller's argument array, no tuple or keyword dict is built), set on
    the type by ``_slots.pyx`` since Cython gives ``__call__`` only tp_call.
    Both ways build the same object, or raise the same error, for valid and
    invalid calls, positional and by keyword; and neither keeps a reference
    to an argument (an object stored in a field is held by that field only)."""
    import sys

    from qstack.core.slots import Maker
    from qstack.network.messages import Track

    assert Maker.__flags__ & (1 << 11)      # Py_TPFLAGS_HAVE_VECTORCALL
    maker = message_constructor(Track, False, True)
    assert type(maker) is Maker
    through_tp_call = type(maker).__call__  # (the slot wrapper calls tp_call)
    calls = [((1, "a", 2, 3, 0.5, 7), {}), ((1, "a", 2, 3, 0.5), {"created_ns": 7}),
             ((), {"circuit_id": 1, "head": "a", "link_seq": 2, "bell_index": 3,
                   "fidelity": 0.5, "created_ns": 7}),
             ((1, "a", 2, 4, 0.5, 7), {}), ((1, "a", 2, 3, 0.5), {}),
             ((1, "a", 2, 3, 0.5, 7), {"head": "b"}), ((1, "a", 2, 3, 0.5, 7, 8), {})]
    for args, kwargs in calls:
        by_vector = _outcome(maker, *args, **kwargs)
        by_tuple = _outcome(through_tp_call, maker, *args, **kwargs)
        assert by_vector[0] == by_tuple[0]
        if by_vector[0] == "ok":
            _same(by_vector[1], by_tuple[1])
        else:
            assert by_vector[1] == by_tuple[1]
    record = fast_constructor(_Plain, compiled=True)
    value = object()
    before = sys.getrefcount(value)
    made = [record(value) for _ in range(100)]
    assert sys.getrefcount(value) == before + 100 and all(m.a is value for m in made)
    del made
    for _ in range(100):
        with pytest.raises(TypeError):
            record(value, 1, 2, 3)
    assert sys.getrefcount(value) == before
