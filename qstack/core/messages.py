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
else for any input bytes. Outgoing messages are checked the same way when they
are built: constructing a message with a field of the wrong type or outside
its declared limits raises :class:`~qstack.core.errors.EncodeError` with the
code the decoder would give that value (``BAD_FIELD``, ``OUT_OF_RANGE``), so a
bad value is refused where it is made, not when a peer decodes it. The check
is compiled once per class into its ``__init__`` (and into the functions
:func:`qstack.core.protocol.fast_constructor` makes for message classes): a
type identity test and a range comparison per field, cheap enough for the
messages built once per pair on the simulator's hot path.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from enum import IntEnum
from typing import Any, ClassVar

import msgpack

from qstack.core.args import show
from qstack.core.errors import DecodeError, EncodeError, ErrorCode
from qstack.core.slots import c_maker, call_through, read_through, recycle_through, setter_source

__all__ = [
    "Message",
    "message",
    "limits",
    "encode",
    "decode",
    "registry",
    "message_class",
    "MAX_MESSAGE_BYTES",
    "message_constructor",
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
    _qstack_ctors: ClassVar[dict] = {}   # set by message(): the compiled constructors

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

    def __init__(self, name: str, tp: Any, meta: dict, owner: str = "") -> None:
        self.name = name
        self.owner = owner
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

    def _refuse(self, code: ErrorCode, why: str) -> EncodeError:
        return EncodeError(code, f"{self.owner} field {self.name!r}: {why}")

    def check(self, value: Any) -> None:
        """Raise :class:`EncodeError` unless ``value`` is valid for this field
        (the slow path of the compiled check: it runs only for a value the
        fast test did not pass, to accept it or to say exactly why not)."""
        _check_value(self.tp, value, self)

    def len_limit(self, tp: Any) -> int:
        """The most items (``str``: characters, ``bytes``: bytes, an array:
        elements) a value of ``tp`` may have in this field: ``max_len``, or
        the wire's default (``specs/wire.md``)."""
        if self.max_len is not None:
            return self.max_len
        return MAX_MESSAGE_BYTES if tp is bytes else _DEFAULT_MAX_LEN

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


_OPTIONAL: dict = {}      # type -> (optional?, inner type): worked out once per type


def _is_optional(tp: Any) -> tuple[bool, Any]:
    known = _OPTIONAL.get(tp)
    if known is not None:
        return known
    known = (False, tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            known = (True, args[0])
    _OPTIONAL[tp] = known
    return known


_TUPLE_ARGS: dict = {}    # type -> its tuple[...] arguments, or None if not a tuple type


def _tuple_args(tp: Any) -> tuple | None:
    try:
        return _TUPLE_ARGS[tp]
    except KeyError:
        args = typing.get_args(tp) if typing.get_origin(tp) is tuple else None
        _TUPLE_ARGS[tp] = args
        return args


def _to_wire(tp: Any, value: Any) -> Any:
    optional, inner = _is_optional(tp)
    if optional:
        return None if value is None else _to_wire(inner, value)
    if isinstance(inner, type) and issubclass(inner, Message):
        return [_to_wire(f.tp, getattr(value, f.name)) for f in inner._FIELDS]
    if isinstance(inner, type) and issubclass(inner, IntEnum):
        return int(value)
    args = _tuple_args(inner)
    if args is not None:
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
    args = _tuple_args(inner)
    if args is not None:
        if not isinstance(raw, list):
            raise fc._fail(ErrorCode.BAD_FIELD, "expected an array")
        if len(args) == 2 and args[1] is Ellipsis:
            limit = fc.len_limit(tuple)
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
        limit = fc.len_limit(str)
        if len(raw) > limit:
            raise fc._fail(ErrorCode.OUT_OF_RANGE, f"string of {len(raw)} chars > {limit}")
        return raw
    if inner is bytes:
        if type(raw) is not bytes:
            raise fc._fail(ErrorCode.BAD_FIELD, "expected bytes")
        limit = fc.len_limit(bytes)
        if len(raw) > limit:
            raise fc._fail(ErrorCode.OUT_OF_RANGE, f"{len(raw)} bytes > {limit}")
        return raw
    raise TypeError(f"unsupported field type {inner!r}")  # a declaration bug, not input


# ----------------------------------------------------------------------------
# checking values when a message is built (the decoder's rules, for Python values)

def _check_value(tp: Any, value: Any, fc: _FieldCodec) -> None:
    """The decoder's rules (:func:`_from_wire`) for a Python value: the same
    faults get the same codes. The differences are only of representation:
    arrays are tuples, nested messages are instances (checked when they were
    built), enumerations are members or their integer values."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return
        raise fc._refuse(ErrorCode.BAD_FIELD, "missing value (None)")
    if isinstance(inner, type) and issubclass(inner, Message):
        if not isinstance(value, inner):
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected a {inner.__name__}, "
                                                  f"got {type(value).__name__}")
        return
    if isinstance(inner, type) and issubclass(inner, IntEnum):
        if type(value) is bool or not isinstance(value, int):
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected an integer ({inner.__name__}), "
                                                  f"got {show(value)}")
        try:
            inner(value)
        except ValueError:
            raise fc._refuse(ErrorCode.OUT_OF_RANGE, f"{show(value)} is not a {inner.__name__}") from None
        return
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        if not isinstance(value, tuple):
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected a tuple, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            limit = fc.len_limit(tuple)
            if len(value) > limit:
                raise fc._refuse(ErrorCode.OUT_OF_RANGE, f"{len(value)} items > {limit}")
            for v in value:
                _check_value(args[0], v, fc)
            return
        if len(value) != len(args):
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected {len(args)} items, got {len(value)}")
        for a, v in zip(args, value):
            _check_value(a, v, fc)
        return
    _check_scalar(inner, value, fc)


def _check_scalar(inner: Any, value: Any, fc: _FieldCodec) -> None:
    if inner is bool:
        if type(value) is not bool:
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected a boolean, got {show(value)}")
        return
    if inner is int:
        # Subclasses (an IntEnum member) go on the wire as plain integers.
        if type(value) is bool or not isinstance(value, int):
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected an integer, got {show(value)}")
        _check_range(value, fc)
        return
    if inner is float:
        if type(value) is bool or not isinstance(value, (int, float)):
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected a number, got {show(value)}")
        try:
            number = float(value)
        except OverflowError:       # an int too large for a float64
            raise fc._refuse(ErrorCode.OUT_OF_RANGE, f"{show(value)} does not fit a float") from None
        if math.isnan(number):
            raise fc._refuse(ErrorCode.OUT_OF_RANGE, "NaN is not allowed")
        _check_range(number, fc)
        return
    if inner is str:
        if not isinstance(value, str):
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected a string, got {type(value).__name__}")
        limit = fc.len_limit(str)
        if len(value) > limit:
            raise fc._refuse(ErrorCode.OUT_OF_RANGE, f"string of {len(value)} chars > {limit}")
        return
    if inner is bytes:
        if not isinstance(value, bytes):
            raise fc._refuse(ErrorCode.BAD_FIELD, f"expected bytes, got {type(value).__name__}")
        limit = fc.len_limit(bytes)
        if len(value) > limit:
            raise fc._refuse(ErrorCode.OUT_OF_RANGE, f"{len(value)} bytes > {limit}")
        return
    raise TypeError(f"unsupported field type {inner!r}")  # a declaration bug, not input


def _check_range(value: Any, fc: _FieldCodec) -> None:
    if fc.min is not None and value < fc.min:
        raise fc._refuse(ErrorCode.OUT_OF_RANGE, f"{show(value)} < minimum {fc.min}")
    if fc.max is not None and value > fc.max:
        raise fc._refuse(ErrorCode.OUT_OF_RANGE, f"{show(value)} > maximum {fc.max}")


def _literal(x: Any) -> str | None:
    """``x`` as source text that evaluates to an equal constant, or None."""
    if type(x) is int or (type(x) is float and math.isfinite(x)):
        return repr(x)
    return None


def _fast_test(tp: Any, v: str, fc: _FieldCodec, ns: dict, key: str) -> str:
    """Source of an expression that is true only for a valid value ``v`` of
    type ``tp`` (false may still be valid: the slow check then decides). Exact
    type tests and chained comparisons, so a valid value costs a few
    bytecodes; NaN fails every comparison and so reaches the slow check."""
    optional, inner = _is_optional(tp)
    if optional:
        return f"({v} is None or {_fast_test(inner, v, fc, ns, key)})"
    if isinstance(inner, type) and issubclass(inner, (Message, IntEnum)):
        ns[key] = inner
        return f"{v}.__class__ is {key}"
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        if len(args) == 2 and args[1] is Ellipsis:
            # An array of any length: a generated loop over its items.
            limit = fc.len_limit(tuple)
            item = _fast_test(args[0], "_x", fc, ns, f"{key}_x")
            exec(f"def {key}_all(_v):\n"
                 f"    if _v.__class__ is not tuple or len(_v) > {int(limit)}:\n"
                 f"        return False\n"
                 f"    for _x in _v:\n"
                 f"        if not {item}:\n"
                 f"            return False\n"
                 f"    return True\n", ns)
            return f"{key}_all({v})"
        items = " and ".join(_fast_test(a, f"{v}[{k}]", fc, ns, f"{key}_{k}")
                             for k, a in enumerate(args))
        return f"({v}.__class__ is tuple and len({v}) == {len(args)} and {items})"
    if inner in (int, float):
        lo, hi = _literal(fc.min), _literal(fc.max)
        if (fc.min is not None and lo is None) or (fc.max is not None and hi is None):
            return "False"
        test = f"{v}.__class__ is {inner.__name__}"
        if lo is not None and hi is not None:
            return f"({test} and {lo} <= {v} <= {hi})"
        if lo is not None:
            return f"({test} and {lo} <= {v})"
        if hi is not None:
            return f"({test} and {v} <= {hi})"
        return f"({test} and {v} == {v})" if inner is float else test
    if inner is bool:
        return f"{v}.__class__ is bool"
    if inner in (str, bytes):
        return f"({v}.__class__ is {inner.__name__} and len({v}) <= {int(fc.len_limit(inner))})"
    return "False"


def _compile(cls: type, compiled: bool | None = None) -> dict:
    """Generate the checked ``__init__``, the fast constructors and the
    decoder's unchecked builder of message class ``cls`` (once, at
    registration); returns their namespace. Fields are set through their
    slots (:mod:`qstack.core.slots`, as
    :func:`qstack.core.protocol.fast_constructor` does), which pays for most
    of the checks; ``compiled`` as for :func:`qstack.core.slots.setter_source`."""
    ns: dict = {"_cls": cls, "_M": _MISSING}
    params, checks, values = [], [], []
    for i, (f, fc) in enumerate(zip(dataclasses.fields(cls), cls._FIELDS)):
        if not f.init or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: message fields are positional "
                            "__init__ parameters (no init=False, no kw_only)")
        name = f.name
        ns[f"_c{i}"] = fc.check
        if f.default_factory is not dataclasses.MISSING:
            ns[f"_f{i}"] = f.default_factory
            params.append(f"{name}=_M")
            values.append((name, f"_f{i}() if {name} is _M else {name}"))
            checks.append(f"    if {name} is not _M and not {_fast_test(fc.tp, name, fc, ns, f'_t{i}')}:"
                          f" _c{i}({name})\n")
            continue
        if f.default is not dataclasses.MISSING:
            ns[f"_d{i}"] = f.default
            params.append(f"{name}=_d{i}")
        else:
            params.append(name)
        values.append((name, name))
        checks.append(f"    if not {_fast_test(fc.tp, name, fc, ns, f'_t{i}')}: _c{i}({name})\n")
    sig = ", ".join(params)
    post = ""
    if hasattr(cls, "__post_init__"):
        ns["_post_error"] = _post_init_error
        post = ("    try:\n        _qo.__post_init__()\n"
                "    except (ValueError, TypeError) as _qexc:\n"
                "        raise _post_error(_cls, _qexc) from None\n")
    body = "".join(checks)
    fill = setter_source(cls, values, "_qo", ns, new=False, compiled=compiled)
    build = setter_source(cls, values, "_qo", ns, new=True, compiled=compiled)
    src = (f"def __init__(_qo{', ' if sig else ''}{sig}):\n{body}{fill}{post}    pass\n"
           f"def make({sig}):\n{body}{build}{post}    return _qo\n"
           f"def make_checked({sig}):\n{body}{build}    return _qo\n"
           f"def raw({sig}):\n{build}    return _qo\n"
           + _wire_source(cls, ns))
    exec(src, ns)
    for fn in ("make", "make_checked", "raw", "to_body", "from_values"):
        ns[fn].__qualname__ = ns[fn].__name__ = f"{fn}_{cls.__name__}"
    ns["__init__"].__qualname__ = f"{cls.__qualname__}.__init__"
    # the same two constructors in C where the extension is built (no Python
    # frame per message): same parameters, tests, slow checks and __post_init__
    fields = dataclasses.fields(cls)
    spec = dict(
        names=[f.name for f in fields],
        defaults=[None if f.default is dataclasses.MISSING else f.default for f in fields],
        required=[f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                  for f in fields],
        factories=[None if f.default_factory is dataclasses.MISSING else f.default_factory
                   for f in fields],
        tests=[_c_test(fc.tp, fc, ns, f"_k{i}") for i, fc in enumerate(cls._FIELDS)],
        slow=[fc.check for fc in cls._FIELDS], compiled=compiled)
    if post:
        exec("def _c_post(_qo):\n" + post, ns)
    made = c_maker(cls, post=ns.get("_c_post"), qualname=cls.__qualname__, **spec)
    if made is not None:
        ns["make"] = made
        ns["make_checked"] = c_maker(cls, qualname=f"make_checked_{cls.__name__}", **spec)
    return ns


#: Field test kinds of the C constructor (``qstack/core/_slots.pyx``, ``Maker``).
_K_INT, _K_FLOAT, _K_BOOL, _K_STR, _K_BYTES, _K_CLASS, _K_PY, _K_SLOW = range(1, 9)
_I64 = (-(1 << 63), (1 << 63) - 1)


def _c_test(tp: Any, fc: _FieldCodec, ns: dict, key: str) -> tuple:
    """``(kind, a, b, optional)``: the C constructor's test of a field, true
    for exactly the values :func:`_fast_test`'s expression is true for
    (scalars in C, anything else through that expression as a function)."""
    optional, inner = _is_optional(tp)
    if isinstance(inner, type) and issubclass(inner, (Message, IntEnum)):
        return (_K_CLASS, inner, None, optional)
    if inner is bool:
        return (_K_BOOL, None, None, optional)
    if inner in (str, bytes):
        return (_K_STR if inner is str else _K_BYTES, int(fc.len_limit(inner)), None, optional)
    if inner in (int, float):
        lo, hi = _literal(fc.min), _literal(fc.max)
        if (fc.min is not None and lo is None) or (fc.max is not None and hi is None):
            return (_K_SLOW, None, None, optional)
        if inner is int and all(type(b) is int for b in (fc.min, fc.max) if b is not None):
            lo_i = _I64[0] if fc.min is None else fc.min
            hi_i = _I64[1] if fc.max is None else fc.max
            # (an int outside int64 goes to the slow check, so clamping is exact)
            if lo_i <= _I64[1] and hi_i >= _I64[0]:
                return (_K_INT, max(lo_i, _I64[0]), min(hi_i, _I64[1]), optional)
        if inner is float and all(type(b) is float or (type(b) is int and abs(b) <= 1 << 53)
                                  for b in (fc.min, fc.max) if b is not None):
            return (_K_FLOAT, -math.inf if fc.min is None else float(fc.min),
                    math.inf if fc.max is None else float(fc.max), optional)
    expr = _fast_test(tp, "_v", fc, ns, key)
    exec(f"def {key}_py(_v):\n    return {expr}\n", ns)
    return (_K_PY, ns[f"{key}_py"], None, False)


def _wire_source(cls: type, ns: dict) -> str:
    """Source of ``to_body(msg)`` (the wire array ``[type, version, fields...]``)
    and ``from_values(values)`` (the fields decoded and checked, the message
    built unchecked) for ``cls``: the per-field rules of :class:`_FieldCodec`
    unrolled once per class, so that encoding and decoding a message costs
    no loop or type-hint analysis. A scalar value that fails the inline test
    goes to its field codec, which accepts it or raises the precise error."""
    enc, dec, names = [], [], []
    for i, fc in enumerate(cls._FIELDS):
        v = f"_v{i}"
        names.append(v)
        ns[f"_w{i}"] = fc.to_wire
        ns[f"_r{i}"] = fc.from_wire
        tp = fc.scalar
        if tp is None:
            enc.append(f"_w{i}(_qm.{fc.name})")
            dec.append(f"    {v} = _r{i}({v})\n")
            continue
        enc.append(f"float(_qm.{fc.name})" if tp is float else f"_qm.{fc.name}")
        # a scalar's wire value is its Python value: the constructor's test
        # fits (an int for a float field fails it and goes to the codec,
        # which converts it)
        test = _fast_test(tp, v, fc, ns, f"_q{i}")
        dec.append(f"    if not ({test}): {v} = _r{i}({v})\n")
    ns["_TC"], ns["_VER"] = cls.TYPE_CODE, cls.VERSION
    unpack = f"    {', '.join(names)}, = _qvalues\n" if names else ""
    return (f"def to_body(_qm):\n    return [_TC, _VER{''.join(', ' + e for e in enc)}]\n"
            f"def from_values(_qvalues):\n{unpack}{''.join(dec)}"
            f"    return raw({', '.join(names)})\n")


def _post_init_error(cls: type, exc: Exception) -> EncodeError:
    if isinstance(exc, EncodeError):
        return exc
    return EncodeError(ErrorCode.OUT_OF_RANGE, f"{cls.__name__}: {exc}")


_MISSING = object()


def message_constructor(cls: type[Message], checked: bool = False,
                        compiled: bool | None = None) -> Any:
    """A function that builds ``cls`` as ``cls(...)`` does (same parameters,
    same object, same field checks) with less overhead per call; with
    ``checked=True`` the class's ``__post_init__`` (cross-field rules) is not
    run, the caller having checked it, but every field still is. This is
    what :func:`qstack.core.protocol.fast_constructor` returns for messages.
    ``compiled`` (True / False): one made anew with or without the Cython
    slot writer (:mod:`qstack.core.slots`; the tests compare the two)."""
    made = cls.__dict__.get("_qstack_ctors")
    if not made:
        return cls          # not a registered message: nothing compiled
    if compiled is not None:
        made = _compile(cls, compiled)
    return made["make_checked"] if checked else made["make"]


def _build(cls: type[Message], values: list) -> Message:
    # from_wire checks every field: the message is built without checking again
    msg = cls._from_values(values)
    if cls._qstack_ctors["post_init"]:
        try:
            msg.__post_init__()
        except (ValueError, TypeError) as exc:  # __post_init__ cross-field checks
            raise DecodeError(ErrorCode.OUT_OF_RANGE, f"{cls.__name__}: {exc}") from None
    return msg


def message(protocol: str, type_code: int, version: int = 1):
    """Class decorator registering a frozen, slotted dataclass as a wire message.

    ``protocol`` names the protocol that receives it on the destination node;
    ``type_code`` (0..65535) is unique across qstack; ``version`` is the
    message layout's version. The class's ``__init__`` is replaced by one
    that checks every field as the decoder does (:class:`EncodeError`), then
    runs the class's ``__post_init__`` if it has one.
    """

    def register(cls: type) -> type:
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
            raise TypeError(f"{cls.__name__} must be a frozen dataclass")
        if "__slots__" not in vars(cls):
            raise TypeError(f"{cls.__name__} must be a slotted dataclass (slots=True)")
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
        cls._FIELDS = tuple(_FieldCodec(f.name, hints[f.name], dict(f.metadata), cls.__name__)
                            for f in dataclasses.fields(cls))
        _install_checks(cls)
        _REGISTRY[type_code] = cls
        return cls

    return register


def _install_checks(cls: type) -> None:
    """Make constructing ``cls`` check every field (see the module doc)."""
    ns = _compile(cls)
    cls.__init__ = ns["__init__"]
    call_through(cls, ns["make"])      # Message(...) is make(...)
    read_through(cls, [f.name for f in cls._FIELDS])   # msg.field: a slot read in compiled code
    recycle_through(cls)               # a message's memory reused by the next of its class
    cls._qstack_ctors = {"make": ns["make"], "make_checked": ns["make_checked"],
                         "raw": ns["raw"], "post_init": hasattr(cls, "__post_init__")}
    cls._to_body = staticmethod(ns["to_body"])
    cls._from_values = staticmethod(ns["from_values"])


def encode(msg: Message) -> bytes:
    """Encode a registered message to msgpack bytes (``[type, version, fields...]``)."""
    cls = type(msg)
    if cls.TYPE_CODE < 0:
        raise TypeError(f"{cls.__name__} is not a registered message")
    return msgpack.packb(cls._to_body(msg), use_bin_type=True)


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
