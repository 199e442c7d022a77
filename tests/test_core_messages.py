"""The message codec: declared fields, ranges, versions and the one decode error."""
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Optional

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qstack.core import DecodeError, ErrorCode, Message, decode, encode, limits, message
from qstack.core.messages import registry
from tests.strategies import message_strategy


class Colour(IntEnum):
    RED = 1
    BLUE = 2


@message("test.inner", 0xFF01)
@dataclass(frozen=True, slots=True)
class Inner(Message):
    a: int = field(metadata=limits(0, 255))
    b: str = field(metadata=limits(max_len=8))


@message("test.outer", 0xFF02, version=3)
@dataclass(frozen=True, slots=True)
class Outer(Message):
    seq: int = field(metadata=limits(0, 2**32 - 1))
    ratio: float = field(metadata=limits(0.0, 1.0))
    colour: Colour
    payload: bytes = field(metadata=limits(max_len=16))
    ids: tuple[int, ...] = field(metadata=limits(0, 9, max_len=4))
    pair: tuple[str, int]
    inner: Inner
    note: Optional[str] = None
    flag: bool = False

    def __post_init__(self):
        if self.flag and self.note is None:
            raise ValueError("flag needs a note")


def sample() -> Outer:
    return Outer(7, 0.5, Colour.BLUE, b"\x00\x01", (1, 2), ("x", 3), Inner(4, "hi"), "n", True)


def test_roundtrip_and_wire_form():
    msg = sample()
    data = encode(msg)
    assert decode(data) == msg
    body = msgpack.unpackb(data)
    assert body[:2] == [0xFF02, 3]                      # [type, version, fields...]
    assert body[2] == 7 and body[8] == [4, "hi"]        # nested message = its field array


@pytest.mark.parametrize("mutate, code", [
    (lambda b: b.__setitem__(0, 0xFFFE), ErrorCode.UNKNOWN_TYPE),
    (lambda b: b.__setitem__(1, 2), ErrorCode.UNSUPPORTED_VERSION),
    (lambda b: b.pop(), ErrorCode.BAD_FIELD),
    (lambda b: b.__setitem__(2, -1), ErrorCode.OUT_OF_RANGE),
    (lambda b: b.__setitem__(2, "7"), ErrorCode.BAD_FIELD),
    (lambda b: b.__setitem__(3, 1.5), ErrorCode.OUT_OF_RANGE),
    (lambda b: b.__setitem__(3, float("nan")), ErrorCode.OUT_OF_RANGE),
    (lambda b: b.__setitem__(4, 9), ErrorCode.OUT_OF_RANGE),
    (lambda b: b.__setitem__(5, b"x" * 17), ErrorCode.OUT_OF_RANGE),
    (lambda b: b.__setitem__(6, [1, 2, 3, 4, 5]), ErrorCode.OUT_OF_RANGE),
    (lambda b: b.__setitem__(7, ["x"]), ErrorCode.BAD_FIELD),
    (lambda b: b.__setitem__(8, [300, "hi"]), ErrorCode.OUT_OF_RANGE),
    (lambda b: b.__setitem__(9, None), ErrorCode.OUT_OF_RANGE),   # __post_init__ rule
])
def test_each_defect_has_its_code(mutate, code):
    body = msgpack.unpackb(encode(sample()))
    mutate(body)
    with pytest.raises(DecodeError) as err:
        decode(msgpack.packb(body, use_bin_type=True))
    assert err.value.code == code


def test_not_msgpack_is_malformed():
    for junk in (b"", b"\xc1", b"\x92\x01", msgpack.packb({"a": 1}), msgpack.packb([1])):
        with pytest.raises(DecodeError) as err:
            decode(junk)
        assert err.value.code in (ErrorCode.MALFORMED,)


@given(message_strategy(Outer))
def test_roundtrip_property(msg):
    assert decode(encode(msg)) == msg


def test_duplicate_type_code_refused():
    with pytest.raises(ValueError):
        @message("test.dup", 0xFF01)
        @dataclass(frozen=True, slots=True)
        class Clash(Message):
            x: int = 0


def test_registry_holds_classes():
    assert registry()[0xFF02] is Outer


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(data):
    try:
        decode(data)
    except DecodeError:
        pass


# ---------------------------------------------------------------- checked when built

from qstack.core.errors import EncodeError, QStackError  # noqa: E402
from qstack.core.protocol import fast_constructor  # noqa: E402


def _fields(**changes):
    base = {fc.name: getattr(sample(), fc.name) for fc in Outer._FIELDS}
    base.update(changes)
    return base


@pytest.mark.parametrize("changes, code", [
    ({"seq": -1}, ErrorCode.OUT_OF_RANGE),
    ({"seq": 2**32}, ErrorCode.OUT_OF_RANGE),
    ({"seq": "7"}, ErrorCode.BAD_FIELD),
    ({"seq": 7.0}, ErrorCode.BAD_FIELD),
    ({"seq": True}, ErrorCode.BAD_FIELD),          # a bool is not an int, as on the wire
    ({"seq": None}, ErrorCode.BAD_FIELD),
    ({"ratio": 1.5}, ErrorCode.OUT_OF_RANGE),
    ({"ratio": float("nan")}, ErrorCode.OUT_OF_RANGE),
    ({"ratio": float("inf")}, ErrorCode.OUT_OF_RANGE),
    ({"ratio": "0.5"}, ErrorCode.BAD_FIELD),
    ({"colour": 9}, ErrorCode.OUT_OF_RANGE),
    ({"colour": "RED"}, ErrorCode.BAD_FIELD),
    ({"payload": b"x" * 17}, ErrorCode.OUT_OF_RANGE),
    ({"payload": "text"}, ErrorCode.BAD_FIELD),
    ({"ids": (1, 2, 3, 4, 5)}, ErrorCode.OUT_OF_RANGE),
    ({"ids": (1, 10)}, ErrorCode.OUT_OF_RANGE),
    ({"ids": (1, "2")}, ErrorCode.BAD_FIELD),
    ({"ids": 3}, ErrorCode.BAD_FIELD),
    ({"pair": ("x",)}, ErrorCode.BAD_FIELD),
    ({"pair": ("x", "3")}, ErrorCode.BAD_FIELD),
    ({"inner": (4, "hi")}, ErrorCode.BAD_FIELD),
    ({"note": 5}, ErrorCode.BAD_FIELD),
    ({"note": None}, ErrorCode.OUT_OF_RANGE),      # __post_init__ rule (flag needs a note)
    ({"flag": 1}, ErrorCode.BAD_FIELD),
])
def test_building_a_message_checks_it_with_the_decoders_code(changes, code):
    with pytest.raises(EncodeError) as err:
        Outer(**_fields(**changes))
    assert err.value.code == code
    name = next(iter(changes))
    assert isinstance(err.value, QStackError) and isinstance(err.value, ValueError)
    if name != "note":                  # the cross-field rule names the rule instead
        assert f"'{name}'" in str(err.value) and "Outer" in str(err.value)


def test_nested_messages_are_checked_when_built():
    with pytest.raises(EncodeError) as err:
        Inner(300, "hi")
    assert err.value.code == ErrorCode.OUT_OF_RANGE


# Values a field may be given: what msgpack can carry (so the decoder can see
# the same value on the wire), tuples for arrays.
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1),
                     st.floats(), st.text(max_size=10), st.binary(max_size=20))
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=6).map(tuple))


@given(st.sampled_from([fc.name for fc in Outer._FIELDS if fc.name != "inner"]), _VALUES)
def test_construction_and_decoding_agree_on_every_value(name, value):
    """A value refused when a message is built is refused with the same code
    when it arrives on the wire, and one accepted there is accepted here.
    (``inner`` is left out: it is an object here and an array on the wire.)"""
    try:
        Outer(**_fields(**{name: value}))
        built = None
    except EncodeError as exc:
        built = exc.code
    body = msgpack.unpackb(encode(sample()))
    body[2 + [fc.name for fc in Outer._FIELDS].index(name)] = value
    try:
        decode(msgpack.packb(body, use_bin_type=True))
        decoded = None
    except DecodeError as exc:
        decoded = exc.code
    assert built == decoded


def test_fast_constructors_of_messages_check_fields_too():
    from qstack.link.messages import QueueSpec
    from qstack.link.service import RequestType
    from qstack.network.messages import Track

    make = fast_constructor(Track)
    assert make(5, "a", 17, 2, 0.875, 1_000) == Track(5, "a", 17, 2, 0.875, 1_000)
    with pytest.raises(EncodeError) as err:
        make(5, "a", 17, 7, 0.875, 1_000)          # bell_index 0..3
    assert err.value.code == ErrorCode.OUT_OF_RANGE
    checked = fast_constructor(QueueSpec, checked=True)   # skips __post_init__ only
    with pytest.raises(EncodeError):
        checked(7, 0, 0.8, 0, 2, RequestType.KEEP, "Z", 1, False, False, 0.05)   # number 0
