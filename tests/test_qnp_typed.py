"""The QNP's records typed for the compiled module (qstack/network/circuit.pxd;
docs/compiled-runtime.md, "Typed protocol state: the QNP").

What must hold: the ``.pxd`` declares each record's fields in the order of
the ``.py``'s dataclass (Cython's extension dataclass takes its ``__init__``
argument order from the ``.pxd``: another order would bind positional
arguments to the wrong fields), and the records take positional and keyword
arguments alike, compiled or not; compiled, they are extension types (no
``__dict__``); and a typed name that is None where a method reads it raises
the AttributeError plain Python raises (the module's ``nonecheck``), never a
read of memory that is no record.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qstack.core.kernels import compiled_modules, pure_python
from qstack.network import circuit
from qstack.network.circuit import QnpProtocol, _Circuit, _Pair, _Request, _Swap
from tests.test_typed_records import pxd_classes

ROOT = Path(__file__).resolve().parents[1]
PXD = ROOT / "qstack" / "network" / "circuit.pxd"
COMPILED = bool(compiled_modules().get("qstack.network.circuit")) and not pure_python()


def test_the_pxd_types_the_four_records_in_the_dataclasses_order():
    # (that a .pxd declares each record's fields in the .py's order, whatever
    # the build: tests/test_typed_records.py; here: the classes imported)
    pxd = pxd_classes(PXD)
    # (and the protocol itself: tests/test_protocol_typed.py)
    assert set(pxd) == {"_Pair", "_Circuit", "_Request", "_Swap", "QnpProtocol"}
    for cls in (_Pair, _Circuit, _Request):
        assert [f.name for f in dataclasses.fields(cls)] == pxd[cls.__name__]


def test_records_bind_positional_arguments_to_their_fields():
    p = _Pair(7, "q", 2, 0.9, 100, 3, 150, "ent")
    assert (p.seq, p.qubit, p.bell, p.fidelity, p.created_ns, p.far, p.held_since,
            p.ent_id, p.meas) == (7, "q", 2, 0.9, 100, 3, 150, "ent", None)
    c = _Circuit(5, "a", ("a", "b", "c"), 1, 9, 4, 0.8, (0.9, 0.9), 0, 0, 0, "Z", 0, False)
    assert (c.cid, c.head, c.index, c.n_links, c.number, c.held, c.credit, c.lo) == \
        (5, "a", 1, 2, 4, ({}, {}), 1, -1)
    other = _Circuit(5, "a", ("a", "b"), 0, 9, 4, 0.8, (0.9,), 0, 0, 0, "Z", 0, False)
    assert other.held[0] is not c.held[0]            # (each its own dicts)
    # big ints and None stay what they were (object fields)
    p.seq, p.meas = 2**80, (1, 0)
    c.number, c.standing = 2**70, None
    assert (p.seq, p.meas, c.number, c.standing) == (2**80, (1, 0), 2**70, None)
    s = _Swap("a", 5, p, p)
    assert (s.head, s.cid, s.left, s.right) == ("a", 5, p, p)
    assert _Request(None, 3).failed_links == set()


@pytest.mark.skipif(not COMPILED, reason="circuit.py runs as plain Python here")
def test_compiled_records_are_extension_types():
    p = _Pair(7, None, 0, 0.9, 0, 1, 0)
    assert not hasattr(p, "__dict__")
    with pytest.raises(AttributeError):
        p.other = 1
    with pytest.raises(TypeError):           # a C-typed field takes integers only
        _Circuit(5, "a", ("a", "b"), None, 9, 4, 0.8, (0.9,), 0, 0, 0, "Z", 0, False)
    with pytest.raises(TypeError):           # a record-typed field takes that record only
        _Swap("a", 5, p, "not a pair")


def test_a_record_that_is_none_raises_attribute_error_not_a_crash():
    qnp = QnpProtocol("a")
    for call in (lambda: qnp._refill(None, 0, []),
                 lambda: qnp._try_swap(None, 0, []),
                 lambda: circuit._side_of(None, "b"),
                 lambda: qnp._tail_decide(_Circuit(1, "a", ("a", "b"), 1, 1, 1, 0.5, (0.9,), 0,
                                                   0, 0, "Z", 0, False), None, 0, 0.9, 0, 0,
                                                  [])):
        with pytest.raises(AttributeError, match="NoneType"):
            call()
