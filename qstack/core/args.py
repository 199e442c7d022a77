"""Checks for the arguments of calls that take values from users.

The socket API, the local quantum operations and the service requests of the
layers take values from applications (or from another caller that bypasses
the socket API). A bad value is refused at the call, before anything changes,
with a :class:`~qstack.core.errors.QStackError` (or the subclass the caller
names) whose code says what is wrong and whose detail names the argument and
the value:

* ``BAD_FIELD``: the wrong type (a ``bool`` is not an integer, ``1.5`` is not
  an integer, a ``str`` is not bytes);
* ``OUT_OF_RANGE``: the right type outside the documented range (a port of
  -1, a fidelity of 1.01, a NaN, metadata longer than the wire allows);
* ``INVALID_PARAMETER``: a physical parameter that is not physical (a NaN
  rotation angle, an unknown measurement basis); the caller passes it as
  ``code``.

Each helper returns the value in the type the callee wants (``int``,
``float``, ``bytes``), so nothing downstream converts, truncates or wraps.

Simulated time is integer nanoseconds. :data:`END_OF_TIME_NS` (2**62 ns,
about 146 years) is where it ends: every absolute time a message carries is
at most that (``specs/*.md``), so no sleep, timer or operation may take a
node past it.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from qstack.core.errors import ErrorCode, QStackError

__all__ = ["END_OF_TIME_NS", "INT64_MAX", "MAX_DURATION_NS", "int_arg", "float_arg",
           "bytes_arg", "name_arg", "timeout_arg", "delay_arg", "show"]

#: The end of simulated time, ns: the largest absolute time a message may carry.
END_OF_TIME_NS = 1 << 62
#: The largest signed 64-bit integer: the limit of any time or count, ns.
INT64_MAX = (1 << 63) - 1
#: The longest duration of one hardware operation (gate, readout, attempt), ns:
#: 1000 s, far above any device (ns to ms), and short enough that millions of
#: operations fit before the end of simulated time.
MAX_DURATION_NS = 10**12


def show(value: Any) -> str:
    """``repr(value)`` for an error message, cut to a readable length (a
    400-digit int, a long string); it never raises, so a message about a bad
    value cannot fail (an int of more than 4300 digits has no ``repr`` by
    default, and any object's ``__repr__`` may raise)."""
    try:
        text = repr(value)
    except Exception:          # noqa: BLE001 - whatever a repr raises
        if isinstance(value, int):
            return f"<an int of {value.bit_length()} bits>"
        return f"<a {type(value).__name__}>"
    return text if len(text) <= 80 else f"{text[:60]}...{text[-12:]}"


def _what(value: Any) -> str:
    return f"{show(value)} ({type(value).__name__})"


def int_arg(name: str, value: Any, lo: int | None = None, hi: int | None = None, *,
            code: ErrorCode = ErrorCode.OUT_OF_RANGE, error: type = QStackError) -> int:
    """``value`` as an ``int`` in ``lo..hi`` (inclusive; None: unbounded).

    Integers and integer-like objects (numpy integers) pass; ``bool`` and
    floats (even 2.0) do not (``BAD_FIELD``); a value out of range raises
    ``code``."""
    if value.__class__ is not int:
        if isinstance(value, bool) or not hasattr(type(value), "__index__"):
            raise error(ErrorCode.BAD_FIELD, f"{name}: expected an integer, got {_what(value)}")
        value = type(value).__index__(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
        raise error(code, f"{name}={show(value)} is not in {span}")
    return value


def float_arg(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, *,
              finite: bool = True, code: ErrorCode = ErrorCode.OUT_OF_RANGE,
              error: type = QStackError) -> float:
    """``value`` as a ``float`` in ``[lo, hi]``, finite unless ``finite`` is
    False; NaN is always refused (``code``). Real numbers pass (``int``,
    ``float``, numpy scalars); ``bool`` and anything else do not
    (``BAD_FIELD``)."""
    if value.__class__ is not float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise error(ErrorCode.BAD_FIELD, f"{name}: expected a number, got {_what(value)}")
        try:
            value = float(value)
        except OverflowError:          # an integer beyond the float range
            raise error(code, f"{name}={show(value)} is too large") from None
    if not lo <= value <= hi or (finite and not math.isfinite(value)):
        span = "a finite number" if (lo, hi) == (-math.inf, math.inf) else f"in [{lo:g}, {hi:g}]"
        raise error(code, f"{name}={show(value)} is not {span}")
    return value


def bytes_arg(name: str, value: Any, max_len: int, *, error: type = QStackError) -> bytes:
    """``value`` (bytes, bytearray or memoryview) as ``bytes`` of at most
    ``max_len`` bytes. Not ``bytes(value)`` of anything: ``bytes(5)`` would
    be five zero bytes, a ``str`` has no one encoding."""
    if value.__class__ is not bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise error(ErrorCode.BAD_FIELD, f"{name}: expected bytes, got {_what(value)}")
        value = bytes(value)
    if len(value) > max_len:
        raise error(ErrorCode.OUT_OF_RANGE, f"{name}: {len(value)} bytes, more than the "
                                            f"{max_len} allowed")
    return value


def name_arg(name: str, value: Any, max_len: int = 64, *, error: type = QStackError) -> str:
    """``value`` as a node name: a non-empty ``str`` of at most ``max_len``
    characters (the wire's limit for names)."""
    if not isinstance(value, str):
        raise error(ErrorCode.BAD_FIELD, f"{name}: expected a node name (str), got {_what(value)}")
    if not value or len(value) > max_len:
        raise error(ErrorCode.OUT_OF_RANGE, f"{name}={show(value)}: a node name has 1..{max_len} "
                                            "characters")
    return value


def timeout_arg(name: str, value: Any, now_ns: int, *, error: type = QStackError) -> int | None:
    """A timeout in ns: None (no limit) or an integer in 0..2**63-1. A
    timeout that would end after :data:`END_OF_TIME_NS` can never run out and
    is returned as None (no limit), so no timer is set past the end of time."""
    if value is None:
        return None
    value = int_arg(name, value, 0, INT64_MAX, error=error)
    return None if value > END_OF_TIME_NS - now_ns else value


def delay_arg(name: str, value: Any, now_ns: int, *, error: type = QStackError) -> int:
    """A delay in ns (a sleep): an integer >= 0 that ends at or before
    :data:`END_OF_TIME_NS`; a longer one could never end and is refused."""
    value = int_arg(name, value, 0, INT64_MAX, error=error)
    if value > END_OF_TIME_NS - now_ns:
        raise error(ErrorCode.OUT_OF_RANGE,
                    f"{name}={show(value)} ends after the end of simulated time "
                    f"(t={END_OF_TIME_NS} ns; now t={now_ns} ns)")
    return value
