"""Hypothesis strategies derived from message declarations (shared by the fuzz tests)."""
from __future__ import annotations

import functools
import sys
import typing
from enum import IntEnum

from hypothesis import strategies as st

from qstack.core.messages import Message, _is_optional


def _strategy(tp, fc) -> st.SearchStrategy:
    optional, inner = _is_optional(tp)
    if optional:
        return st.none() | _strategy(inner, fc)
    if isinstance(inner, type) and issubclass(inner, Message):
        return message_strategy(inner)
    if isinstance(inner, type) and issubclass(inner, IntEnum):
        return st.sampled_from(list(inner))
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_strategy(args[0], fc), max_size=min(fc.max_len or 8, 8)).map(tuple)
        return st.tuples(*[_strategy(a, fc) for a in args])
    if inner is bool:
        return st.booleans()
    if inner is int:
        lo = int(fc.min) if fc.min is not None else -(1 << 63)
        hi = int(fc.max) if fc.max is not None else (1 << 63) - 1
        return st.integers(lo, hi)
    if inner is float:
        return st.floats(fc.min if fc.min is not None else -1e300,
                         fc.max if fc.max is not None else 1e300, allow_nan=False)
    if inner is str:
        return st.text(max_size=min(fc.max_len or 64, 64))
    if inner is bytes:
        return st.binary(max_size=min(fc.max_len or 64, 64))
    raise TypeError(inner)


def _examples_of(cls: type[Message]) -> list[Message]:
    """The instances of ``cls`` that protocol modules list in ``VECTOR_EXAMPLES``."""
    found = []
    for module in list(sys.modules.values()):
        examples = getattr(module, "VECTOR_EXAMPLES", None)
        if isinstance(examples, dict):
            found.extend(m for m in examples.values() if type(m) is cls)
    return found


@functools.cache
def message_strategy(cls: type[Message]) -> st.SearchStrategy:
    """Valid instances of ``cls``.

    Made once per class (strategies are immutable): building one scans every
    loaded module for listed examples, which cost more than the draws when the
    fuzz tests made it afresh for each example.

    Messages with cross-field rules reject most fully random field sets, so
    besides fully random instances this also draws a listed example with some
    fields replaced by random values: every field still gets explored, and
    most draws satisfy the rules.
    """
    fields = {fc.name: _strategy(fc.tp, fc) for fc in cls._FIELDS}

    def build(kwargs):
        try:
            return cls(**kwargs)
        except (ValueError, TypeError):
            return None

    fully_random = st.fixed_dictionaries(fields).map(build)
    examples = _examples_of(cls)
    if not examples:
        return fully_random.filter(lambda m: m is not None)

    @st.composite
    def near_example(draw):
        base = draw(st.sampled_from(examples))
        names = (draw(st.lists(st.sampled_from(list(fields)), max_size=2, unique=True))
                 if fields else [])          # a message without fields (Keepalive)
        kwargs = {fc.name: getattr(base, fc.name) for fc in cls._FIELDS}
        for name in names:
            kwargs[name] = draw(fields[name])
        return build(kwargs)

    return st.one_of(near_example(), fully_random).filter(lambda m: m is not None)
