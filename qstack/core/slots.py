"""Setting the fields of frozen slotted dataclasses fast: the source the
generated constructors use (:func:`qstack.core.protocol.fast_constructor`,
the checked message constructors of :mod:`qstack.core.messages`).

A frozen dataclass's own ``__init__`` sets each field with
``object.__setattr__``. The generated constructors write the fields through
their slots instead, in one of two interchangeable ways:

* the pure-Python twin: one call of the field's slot descriptor ``__set__``
  per field (the reference);
* the Cython :class:`~qstack.core._slots.SlotWriter` (``_slots.pyx``), used
  when it is built: one call per object that writes every value into its
  slot directly. Hot records (heralds, link and network OKs, messages) are
  made several times per pair, so this is a good part of what a pair costs.

With the extension, :func:`call_through` also lets ``Record(...)`` call the
generated constructor directly (the class's vectorcall slot), so protocol
code builds records plainly at the cost of a constructor function; and
:func:`c_maker` gives that constructor in C (``_slots.Maker``: the
arguments bound, the fields tested and written, ``__post_init__`` run,
without a Python frame), the generated Python function being its twin.

Both make the same object; ``tests/test_core_fast_constructor.py`` builds
every message and record class both ways and compares.
"""
from __future__ import annotations

from typing import Callable

from qstack.core.kernels import pure_python, require_cython

__all__ = ["HAVE_CYTHON", "setter_source", "call_through", "read_through", "recycle_through",
           "c_maker", "NO_TEST"]

try:  # the Cython twin, built by setup.py
    if pure_python():
        raise ImportError("QSTACK_PURE_PYTHON=1")
    from qstack.core._slots import SlotWriter  # type: ignore[import-not-found]
    from qstack.core._slots import Maker
    from qstack.core._slots import call_through as _call_through
    from qstack.core._slots import read_through as _read_through
    from qstack.core._slots import recycle_through as _recycle_through
    HAVE_CYTHON = True
except ImportError:  # pragma: no cover - depends on the build
    if require_cython():
        raise ImportError("QSTACK_REQUIRE_CYTHON=1 but qstack.core._slots is not built; "
                          "build it with `pip install -e .`") from None
    SlotWriter = Maker = _call_through = _read_through = _recycle_through = None
    HAVE_CYTHON = False


def setter_source(cls: type, fields: list[tuple[str, str]], obj: str, ns: dict, *,
                  new: bool, compiled: bool | None = None) -> str:
    """Source lines (4-space indented) that set the fields of ``obj``, an
    instance of ``cls``: ``fields`` is ``[(field name, value expression)]``.
    ``new``: the lines make ``obj`` first (as ``object.__new__(cls)``).
    What the lines refer to is put in ``ns``. ``compiled``: use the Cython
    writer (None: if it is built and applies to ``cls``), else the fields'
    slot descriptors (the pure-Python twin)."""
    writer = None
    if compiled is not False and SlotWriter is not None:
        try:
            writer = SlotWriter(cls, [name for name, _ in fields])
        except TypeError:
            if compiled:
                raise
    elif compiled:
        raise ImportError("qstack.core._slots is not built")
    values = ", ".join(expr for _, expr in fields)
    if writer is not None:
        if new:
            ns["_wnew"] = writer.new
            return f"    {obj} = _wnew({values})\n"
        ns["_wfill"] = writer.fill
        return f"    _wfill({obj}{', ' if values else ''}{values})\n"
    lines = []
    if new:
        ns["_new"], ns["_cls"] = object.__new__, cls
        lines.append(f"    {obj} = _new(_cls)\n")
    for i, (name, expr) in enumerate(fields):
        ns[f"_s{i}"] = _slot(cls, name).__set__
        lines.append(f"    _s{i}({obj}, {expr})\n")
    return "".join(lines)


#: A field test (:func:`c_maker`) that accepts every value: records check nothing.
NO_TEST = (0, None, None, False)


def c_maker(cls: type, names: list, defaults: list, required: list, factories: list,
            tests: list | None = None, slow: list | None = None, post: Callable | None = None,
            qualname: str = "", compiled: bool | None = None) -> Callable | None:
    """The constructor of ``cls`` in C (the Cython ``Maker``), doing what the
    generated Python constructor ``make`` does (same parameters ``names``
    with their ``defaults`` / ``factories``, same field tests and slow
    checks, then ``post(obj)``), without a Python frame per object; or None
    where it is not built, ``compiled`` is False, or it cannot write ``cls``
    (the generated Python function then serves: the pure-Python twin).
    ``tests``: per field ``(kind, a, b, optional)`` (``_slots.pyx``), None:
    no test; ``slow``: per field the check that decides a value the test
    did not pass. The tests build every message and record both ways."""
    if compiled is False or Maker is None:
        if compiled:
            raise ImportError("qstack.core._slots is not built")
        return None
    n = len(names)
    try:
        return Maker(cls, names, defaults, required, factories,
                     tests if tests is not None else [NO_TEST] * n,
                     slow if slow is not None else [None] * n, post,
                     qualname or f"make_{cls.__name__}")
    except TypeError:
        if compiled:
            raise
        return None


def call_through(cls: type, make: Callable) -> None:
    """Let ``cls(...)`` be ``make(...)``, a generated constructor that builds
    the same object as ``object.__new__`` and ``cls.__init__`` would (checks
    included), without the type call's two steps: with the extension built,
    a ``Record(...)`` written plainly in protocol code costs what calling its
    constructor function does. Without it (the pure-Python twin) nothing
    changes: ``cls(...)`` runs ``cls.__init__``, which does the same."""
    if _call_through is not None:
        if Maker is None or not isinstance(make, Maker):
            make.__qualname__ = cls.__qualname__   # (errors name the class, as __init__'s do)
        _call_through(cls, make)


def read_through(cls: type, names: list) -> bool:
    """Let a compiled module's ``obj.<name>`` read the fields ``names`` of
    ``cls`` (a slotted record) straight from their slots, where the extension
    is built (``_slots.read_through``: the class's attribute look-up first
    compares the name with its fields, else it is the generic one), instead
    of the generic look-up, about a hundred machine instructions per read:
    records' fields are read several hundred times per end-to-end pair on a
    chain. The same values and errors either way; without the extension (the
    pure-Python twin) nothing changes. Returns whether it applies."""
    if _read_through is None:
        return False
    try:
        _read_through(cls, names)
    except TypeError:
        return False          # (not a plain slotted class: the generic look-up serves)
    return True


def recycle_through(cls: type) -> bool:
    """Let ``cls`` (a slotted record) reuse its freed instances' memory, where
    the extension is built (``_slots.recycle_through``: a free list per class,
    as CPython's tuples have, in place of the generic allocation and
    deallocation of a Python class's instance, about 400 machine instructions
    a record; a record lives for one event or message). Nothing an instance
    shows changes; without the extension (the pure-Python twin) nothing
    changes at all. Returns whether it applies."""
    if _recycle_through is None:
        return False
    try:
        _recycle_through(cls)
    except TypeError:
        return False          # (not nothing but slots: the generic functions serve)
    return True


def _slot(cls: type, name: str):
    """The slot descriptor of field ``name`` (on ``cls`` or a base)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(f"{cls.__name__} has no slot {name!r}")
