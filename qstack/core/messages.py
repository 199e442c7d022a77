"""Wire messages: frozen dataclasses with a version, encoded with msgpack.

A message class is declared once, with its fields' types and ranges, and the
codec derives encoding, decoding and validation from that declaration, so the
spec (``specs/*.md``), the code and the test vectors cannot drift apart::

    @message("link.egp", 0x0201)
    @dataclass(frozen=True, slots=True)
    class Create(Message):
        remote: str = field(metadata=limits(max_len=64))
        number: int = field(metadata=limits(1, 65535))

Wire form (``specs/wire.md``): a msgpack array ``[type_code, version, f1, f2, ...]``
with the fields in declaration order. Supported field types: ``bool``, ``int``,
``float``, ``str``, ``bytes``, ``IntEnum`` subclasses, ``Optional[T]``,
``tuple[T, ...]`` and fixed ``tuple[T1, T2, ...]``, and nested ``Message``
classes (encoded as their field array, without type code and version).

:func:`decode` raises :class:`~qstack.core.errors.DecodeError` and nothing
else for any input bytes.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from enum import IntEnum
from typing import Any, ClassVar

import msgpack

from qstack.core.errors import DecodeError, ErrorCode

__all__ = [
    "Message",
    "message",
    "limits",
    "encode",
    "decode",
    "registry",
    "message_class",
    "MAX_MESSAGE_BYTES",
]

#: Largest encoded message accepted by :func:`decode`, in bytes.
MAX_MESSAGE_BYTES = 1 << 20

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 64) - 1
_DEFAULT_MAX_LEN = 4096


def limits(min_value: float | None = None, max_value: float | None = None, *,
           max_len: int | None = None) -> dict:
    """Field metadata: inclusive numeric range and/or maximum length (str, bytes, tuple)."""
    return {"min": min_value, "max": max_value, "max_len": max_len}


class Message:
    """Base class of every wire message. Subclasses are frozen dataclasses.

    Class attributes set by :func:`message`: ``PROTOCOL`` (which protocol on a
    node receives it, e.g. ``"link.egp"``), ``TYPE_CODE`` (16-bit, unique) and
    ``VERSION``.
    """

    __slots__ = ()
    PROTOCOL: ClassVar[str] = ""
    TYPE_CODE: ClassVar[int] = -1
    VERSION: ClassVar[int] = 1
    _FIELDS: ClassVar[tuple] = ()

    def encode(self) -> bytes:
        """This message as wire bytes."""
        return encode(self)


_REGISTRY: dict[int, type[Message]] = {}


def registry() -> dict[int, type[Message]]:
    """All registered message classes by type code (a copy)."""
    return dict(_REGISTRY)


def message_class(type_code: int) -> type[Message]:
    """The registered class for ``type_code``; ``KeyError`` if none."""
    return _REGISTRY[type_code]


# ----------------------------------------------------------------------------
# field codecs: one small object per field, built once at class registration

class _FieldCodec:
    """Validates and converts one field between Python and msgpack values."""

    def __init__(self, name: str, tp: Any, meta: dict) -> None:
        self.name = name
        self.tp = tp
        self.min = meta.get("min")
        self.max = meta.get("max")
        self.max_len = meta.get("max_len")
        # Plain scalar fields (most of them) skip the type-hint analysis that
        # nested, optional and enum fields need: that analysis was the
        # codec's main cost per message.
        self.scalar = tp if tp in (int, float, str, bool, bytes) else None

    def _fail(self, code: ErrorCode, why: str) -> DecodeError:
        return DecodeError(code, f"field {self.name!r}: {why}")

    def check_range(self, value: Any) -> None:
        if self.min is not None and value < self.min:
            raise self._fail(ErrorCode.OUT_OF_RANGE, f"{value!r} < minimum {self.min}")
        if self.max is not None and value > self.max:
            raise self._fail(ErrorCode.OUT_OF_RANGE, f"{value!r} > maximum {self.max}")

    def to_wire(self, value: Any) -> Any:
        scalar = self.scalar
        if scalar is not None:
            return float(value) if scalar is float else value
        return _to_wire(self.tp, value)

    def from_wire(self, raw: Any) -> Any:
        if self.scalar is not None:
            if raw is None:
                raise self._fail(ErrorCode.BAD_FIELD, "missing value (nil)")
            return _scalar_from_wire(self.scalar, raw, self)
        return _from_wire(self.tp, raw, self)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _to_wire(tp: Any, value: Any) -> Any:
    optional, inner = _is_optional(tp)
    if optional:
        return None if value is None else _to_wire(inner, value)
    if isinstance(inner, type) and issubclass(inner, Message):
        return [_to_wire(f.tp, getattr(value, f.name)) for f in inner._FIELDS]
    if isinstance(inner, type) and issubclass(inner, IntEnum):
        return int(value)
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        if len(args) == 2 and args[1] is Ellipsis:
            return [_to_wire(args[0], v) for v in value]
        return [_to_wire(a, v) for a, v in zip(args, value)]
    if inner is float:
        return float(value)
    return value


def _from_wire(tp: Any, raw: Any, fc: _FieldCodec) -> Any:
    optional, inner = _is_optional(tp)
    if optional:
        return None if raw is None else _from_wire(inner, raw, fc)
    if raw is None:
        raise fc._fail(ErrorCode.BAD_FIELD, "missing value (nil)")
    if isinstance(inner, type) and issubclass(inner, Message):
        if not isinstance(raw, list) or len(raw) != len(inner._FIELDS):
            raise fc._fail(ErrorCode.BAD_FIELD, f"expected {inner.__name__} as an array "
                                                f"of {len(inner._FIELDS)}")
        return _build(inner, raw)
    if isinstance(inner, type) and issubclass(inner, IntEnum):
        if type(raw) is not int:
            raise fc._fail(ErrorCode.BAD_FIELD, f"expected an integer ({inner.__name__})")
        try:
            return inner(raw)
        except ValueError:
            raise fc._fail(ErrorCode.OUT_OF_RANGE,
                           f"{raw} is not a {inner.__name__}") from None
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        if not isinstance(raw, list):
            raise fc._fail(ErrorCode.BAD_FIELD, "expected an array")
        if len(args) == 2 and args[1] is Ellipsis:
            limit = fc.max_len if fc.max_len is not None else _DEFAULT_MAX_LEN
            if len(raw) > limit:
                raise fc._fail(ErrorCode.OUT_OF_RANGE, f"{len(raw)} items > {limit}")
            return tuple(_from_wire(args[0], v, fc) for v in raw)
        if len(raw) != len(args):
            raise fc._fail(ErrorCode.BAD_FIELD, f"expected {len(args)} items, got {len(raw)}")
        return tuple(_from_wire(a, v, fc) for a, v in zip(args, raw))
    return _scalar_from_wire(inner, raw, fc)


def _scalar_from_wire(inner: Any, raw: Any, fc: _FieldCodec) -> Any:
    if inner is bool:
        if type(raw) is not bool:
            raise fc._fail(ErrorCode.BAD_FIELD, "expected a boolean")
        return raw
    if inner is int:
        if type(raw) is not int:
            raise fc._fail(ErrorCode.BAD_FIELD, "expected an integer")
        fc.check_range(raw)
        return raw
    if inner is float:
        if type(raw) not in (float, int):
            raise fc._fail(ErrorCode.BAD_FIELD, "expected a number")
        value = float(raw)
        if math.isnan(value):
            raise fc._fail(ErrorCode.OUT_OF_RANGE, "NaN is not allowed")
        fc.check_range(value)
        return value
    if inner is str:
        if type(raw) is not str:
            raise fc._fail(ErrorCode.BAD_FIELD, "expected a string")
        limit = fc.max_len if fc.max_len is not None else _DEFAULT_MAX_LEN
        if len(raw) > limit:
            raise fc._fail(ErrorCode.OUT_OF_RANGE, f"string of {len(raw)} chars > {limit}")
        return raw
    if inner is bytes:
        if type(raw) is not bytes:
            raise fc._fail(ErrorCode.BAD_FIELD, "expected bytes")
        limit = fc.max_len if fc.max_len is not None else MAX_MESSAGE_BYTES
        if len(raw) > limit:
            raise fc._fail(ErrorCode.OUT_OF_RANGE, f"{len(raw)} bytes > {limit}")
        return raw
    raise TypeError(f"unsupported field type {inner!r}")  # a declaration bug, not input


def _build(cls: type[Message], values: list) -> Message:
    kwargs = {fc.name: fc.from_wire(raw) for fc, raw in zip(cls._FIELDS, values)}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ cross-field checks
        raise DecodeError(ErrorCode.OUT_OF_RANGE, f"{cls.__name__}: {exc}") from None


def message(protocol: str, type_code: int, version: int = 1):
    """Class decorator registering a frozen dataclass as a wire message.

    ``protocol`` names the protocol that receives it on the destination node;
    ``type_code`` (0..65535) is unique across qstack; ``version`` is the
    message layout's version.
    """

    def register(cls: type) -> type:
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
            raise TypeError(f"{cls.__name__} must be a frozen dataclass")
        if not issubclass(cls, Message):
            raise TypeError(f"{cls.__name__} must subclass Message")
        if not 0 <= type_code <= 0xFFFF:
            raise ValueError("type_code must fit in 16 bits")
        if type_code in _REGISTRY and _REGISTRY[type_code].__qualname__ != cls.__qualname__:
            raise ValueError(f"type code {type_code:#06x} already used by "
                             f"{_REGISTRY[type_code].__name__}")
        hints = typing.get_type_hints(cls)
        cls.PROTOCOL = protocol
        cls.TYPE_CODE = type_code
        cls.VERSION = version
        cls._FIELDS = tuple(_FieldCodec(f.name, hints[f.name], dict(f.metadata))
                            for f in dataclasses.fields(cls))
        _REGISTRY[type_code] = cls
        return cls

    return register


def encode(msg: Message) -> bytes:
    """Encode a registered message to msgpack bytes (``[type, version, fields...]``)."""
    cls = type(msg)
    if cls.TYPE_CODE < 0:
        raise TypeError(f"{cls.__name__} is not a registered message")
    body = [cls.TYPE_CODE, cls.VERSION]
    body.extend(fc.to_wire(getattr(msg, fc.name)) for fc in cls._FIELDS)
    return msgpack.packb(body, use_bin_type=True)


def decode(data: bytes) -> Message:
    """Decode wire bytes to a message. Raises only :class:`DecodeError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(ErrorCode.MALFORMED, "expected bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(ErrorCode.FRAME_TOO_LARGE,
                          f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        body = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise DecodeError(ErrorCode.MALFORMED, f"not msgpack: {type(exc).__name__}") from None
    if not isinstance(body, list) or len(body) < 2:
        raise DecodeError(ErrorCode.MALFORMED, "expected an array [type, version, ...]")
    type_code, version = body[0], body[1]
    if type(type_code) is not int or type(version) is not int:
        raise DecodeError(ErrorCode.MALFORMED, "type and version must be integers")
    cls = _REGISTRY.get(type_code)
    if cls is None:
        raise DecodeError(ErrorCode.UNKNOWN_TYPE, f"type code {type_code}")
    if version != cls.VERSION:
        raise DecodeError(ErrorCode.UNSUPPORTED_VERSION,
                          f"{cls.__name__} version {version}, supported {cls.VERSION}")
    values = body[2:]
    if len(values) != len(cls._FIELDS):
        raise DecodeError(ErrorCode.BAD_FIELD,
                          f"{cls.__name__} has {len(cls._FIELDS)} fields, got {len(values)}")
    return _build(cls, values)


def as_dict(msg: Message) -> dict:
    """A message's fields as a JSON-friendly dict (for test vectors and logs)."""
    return {fc.name: _to_wire(fc.tp, getattr(msg, fc.name)) for fc in type(msg)._FIELDS}


def from_dict(cls: type[Message], fields: dict) -> Message:
    """Inverse of :func:`as_dict` (bytes given as hex strings are accepted)."""
    raw = []
    for fc in cls._FIELDS:
        value = fields[fc.name]
        if fc.tp is bytes and isinstance(value, str):
            value = bytes.fromhex(value)
        raw.append(value)
    return _build(cls, raw)
