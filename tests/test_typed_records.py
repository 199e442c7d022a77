"""The classes a compiled module declares as extension types (an augmenting
``.pxd`` beside the ``.py``: the EGP's and the QNP's records, the engine and
the device; docs/compiled-runtime.md, "Typed protocol state", "Typed device
and engine") must name exactly the attributes the ``.py`` gives them.

Compiled, an attribute the ``.pxd`` lacks is an AttributeError at run time
and one it has but the ``.py`` dropped is dead weight; for a dataclass the
``.pxd``'s order is also its ``__init__``'s argument order, so another order
binds positional arguments to the wrong fields. In plain Python none of this
shows. This test reads both files, so a mismatch fails on every machine,
compiled or not, and names the class and the attribute.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PXDS = sorted(p for p in (ROOT / "qstack").rglob("*.pxd") if p.with_suffix(".py").exists())


def pxd_classes(pxd: Path) -> dict[str, list[str]]:
    """cdef class name -> the attribute names it declares (``cdef public ...``),
    in the ``.pxd``'s order. The layout slots ``__dict__`` and ``__weakref__``
    are not attributes the ``.py`` sets, and are left out."""
    classes: dict[str, list[str]] = {}
    current = None
    for line in pxd.read_text().splitlines():
        code = line.split("#", 1)[0].rstrip()
        m = re.match(r"cdef class (\w+)", code)
        if m:
            current = classes.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s+cdef (?:public |readonly )?(.+)", code)
        if m and current is not None and "(" not in m.group(1):
            # "<type> a, b, c": the names after the type
            decl = m.group(1)
            first, *rest = [part.strip() for part in decl.split(",")]
            names = [first.split()[-1]] + rest
            current.extend(n for n in names if not (n.startswith("__") and n.endswith("__")))
        elif code and not code.startswith((" ", "\t")):
            current = None
    return classes


def pxd_bases(pxd: Path) -> dict[str, str]:
    """cdef class name -> the name of its cdef base class, for those with one
    (``cdef class EGP(Protocol)``)."""
    return {m.group(1): m.group(2) for m in
            re.finditer(r"^cdef class (\w+)\((\w+)\)", pxd.read_text(), re.M)}


def inherited(name: str) -> set[str]:
    """The attributes class ``name`` has from its cdef base classes, declared
    in any ``.pxd`` (a protocol's from ``core/protocol.pxd``)."""
    out: set[str] = set()
    while name in ALL_BASES:
        name = ALL_BASES[name]
        out |= set(ALL_DECLARED.get(name, ()))
    return out


def is_dataclass(cls: ast.ClassDef) -> bool:
    """``cls`` is decorated ``@dataclass`` (or ``@dataclass(...)``)."""
    return any(getattr(d.func if isinstance(d, ast.Call) else d, "id", None) == "dataclass"
               for d in cls.decorator_list)


def py_attributes(cls: ast.ClassDef) -> tuple[list[str], set[str]]:
    """(declared, assigned): the class's declared attributes in the ``.py``'s
    order (``__slots__``, or a dataclass's annotated fields) and every
    ``self.<name> = ...`` in its methods."""
    declared: list[str] = []
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign) and "ClassVar" in ast.unparse(stmt.annotation):
            continue         # a class attribute, not an instance's
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in stmt.targets):
            declared.extend(ast.literal_eval(stmt.value))
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            declared.append(stmt.target.id)
    assigned: set[str] = set()
    for node in ast.walk(cls):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) \
                        and sub.value.id == "self":
                    assigned.add(sub.attr)
    return declared, assigned


def class_attributes(cls: ast.ClassDef, base: set[str] = frozenset()
                     ) -> tuple[list[str], set[str]]:
    """:func:`py_attributes`, where a plain class (no ``__slots__``, not a
    dataclass) declares what its methods set, but for the attributes ``base``
    that it has from a base class declared elsewhere."""
    declared, assigned = py_attributes(cls)
    return (declared or sorted(assigned - base)), assigned


CASES = [(pxd, name) for pxd in PXDS for name in pxd_classes(pxd)]
#: every .pxd's cdef classes: name -> its cdef base, name -> its attributes
ALL_BASES = {k: v for p in PXDS for k, v in pxd_bases(p).items()}
ALL_DECLARED = {k: v for p in PXDS for k, v in pxd_classes(p).items()}


def test_the_compiled_protocol_modules_have_their_declarations():
    # (the EGP's records are typed; the test below must have something to check)
    assert any(p.name == "egp.pxd" for p in PXDS)


@pytest.mark.parametrize("pxd,name", CASES, ids=[f"{p.stem}.{n}" for p, n in CASES])
def test_pxd_declares_what_the_py_gives(pxd, name):
    tree = ast.parse(pxd.with_suffix(".py").read_text())
    found = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    assert found, f"{pxd.name} declares class {name}, which {pxd.stem}.py does not define"
    base = inherited(name)
    declared, assigned = class_attributes(found[0], base)
    order = pxd_classes(pxd)[name]
    in_pxd, in_py = set(order), set(declared)
    assert in_pxd == in_py, (
        f"{name}: {pxd.name} and {pxd.stem}.py disagree; only in the .pxd: "
        f"{sorted(in_pxd - in_py)}, only in the .py: {sorted(in_py - in_pxd)}")
    if is_dataclass(found[0]):
        # (Cython's extension dataclass takes its __init__ order from the .pxd)
        assert order == declared, f"{name}: {pxd.name} declares the fields in another order"
    assert assigned <= in_pxd | base, (
        f"{name}: {pxd.stem}.py sets {sorted(assigned - in_pxd - base)}, which {pxd.name} "
        f"does not declare (compiled, that is an AttributeError)")


def test_the_check_sees_a_missing_declaration(tmp_path):
    """A .pxd that lacks an attribute the .py sets is caught."""
    py = tmp_path / "rec.py"
    py.write_text("class R:\n    __slots__ = ('a', 'b')\n"
                  "    def __init__(self):\n        self.a = 1\n        self.b = 2\n"
                  "        self.c = 3\n")
    pxd = tmp_path / "rec.pxd"
    pxd.write_text("cdef class R:\n    cdef public object a\n    cdef public int b\n")
    cls = ast.parse(py.read_text()).body[0]
    declared, assigned = py_attributes(cls)
    assert pxd_classes(pxd)["R"] == ["a", "b"] == declared
    assert assigned - set(pxd_classes(pxd)["R"]) == {"c"}


def test_the_check_sees_a_plain_class_missing_a_declaration(tmp_path):
    """For a class without ``__slots__`` the attributes its methods set are
    what its .pxd must declare; one it lacks is caught."""
    py = tmp_path / "plain.py"
    py.write_text("class P:\n    def __init__(self):\n        self.a = 1\n"
                  "    def grow(self):\n        self.b = 2\n")
    pxd = tmp_path / "plain.pxd"
    pxd.write_text("cdef class P:\n    cdef public object a\n")
    declared, assigned = class_attributes(ast.parse(py.read_text()).body[0])
    assert declared == ["a", "b"] and assigned == {"a", "b"}
    assert set(declared) - set(pxd_classes(pxd)["P"]) == {"b"}



def test_a_protocol_class_is_checked_with_what_its_base_declares(tmp_path):
    """A compiled protocol's .pxd declares its own attributes; those its base
    declares (``core/protocol.pxd``) may be set in its methods without being
    declared again, and a class attribute (``ClassVar``) is no field."""
    py = tmp_path / "proto.py"
    py.write_text("from typing import ClassVar\nclass P(Protocol):\n"
                  "    name: ClassVar[str] = 'x'\n    def __init__(self, node):\n"
                  "        self.node = node\n        self.own = 1\n")
    declared, assigned = class_attributes(ast.parse(py.read_text()).body[1], {"node"})
    assert declared == ["own"] and assigned == {"node", "own"}
    assert "node" in inherited("EGP") and "node" in inherited("QnpProtocol")
    assert "__dict__" not in pxd_classes(ROOT / "qstack/core/protocol.pxd")["Protocol"]
