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
