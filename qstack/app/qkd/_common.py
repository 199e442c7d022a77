"""Shared pieces of the QKD post-processing: the error type and the argument checks.

Every bad argument raises :class:`QKDError` (a ``ValueError`` with a defined
:class:`~qstack.core.errors.ErrorCode`) naming the argument, what was expected
and what came.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from qstack.core.errors import ErrorCode, QStackError

__all__ = ["QKDError", "as_bits", "check_prob", "check_pos_int"]


class QKDError(QStackError, ValueError):
    """A QKD post-processing argument out of its documented range, or an abort."""


def fail(name: str, expected: str, value: Any, code: ErrorCode = ErrorCode.OUT_OF_RANGE) -> None:
    raise QKDError(code, f"{name}: expected {expected}, got {value!r}")


def check_prob(name: str, value: float, *, open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a float in [0, 1] (or an open end where asked)."""
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
        fail(name, "a number", value, ErrorCode.BAD_FIELD)
    v = float(value)
    if math.isnan(v) or v < 0.0 or v > 1.0 or (open_low and v == 0.0) or (open_high and v == 1.0):
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        fail(name, f"a probability in {lo}0, 1{hi}", value)
    return v


def check_pos_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        fail(name, "an integer", value, ErrorCode.BAD_FIELD)
    if int(value) < minimum:
        fail(name, f"an integer >= {minimum}", value)
    return int(value)


def as_bits(name: str, value: Any) -> np.ndarray:
    """A 1-D array of 0/1 values as a C-contiguous uint8 array (a copy)."""
    arr = np.asarray(value)
    if arr.ndim != 1:
        fail(name, "a 1-D array of bits", f"array of shape {arr.shape}", ErrorCode.BAD_FIELD)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 1):
        fail(name, "bits (0 or 1)", f"values in [{arr.min()}, {arr.max()}] of dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.uint8).copy()
