"""Which build of a protocol module runs: the compiled one or its own source.

A few per-pair modules (setup.py's ``COMPILED_PY``: the QNP, the engine,
the device, ...) are compiled by Cython from their unchanged ``.py`` source, and
the extension module lands beside the ``.py`` (``circuit.py`` and
``circuit.cpython-311-x86_64-linux-gnu.so``). CPython imports the extension when
both are there. This finder, put first on ``sys.meta_path`` by
``import qstack``, sends such a module to its ``.py`` instead when

* ``QSTACK_PURE_PYTHON=1`` (the switch that runs everything as plain Python:
  the kernels' twins, and these modules' source), or
* the ``.py`` was changed after the extension was built (its mtime is later by
  more than :data:`STALE_AFTER_S`): the edit runs, not a stale build, with one
  warning saying how to rebuild; with ``QSTACK_REQUIRE_CYTHON=1`` (``make``,
  CI) that is an ImportError instead; or
* a module its ``.pxd`` cimports (``from qstack.core.protocol cimport
  Protocol``) runs from its source, as above: the extension was built against
  that module's compiled types and cannot import without them.

For every other module, and for a built module whose build is current, it
does nothing (the normal import machinery finds the extension). See
docs/compiled-runtime.md, "Protocols compiled from their own source".
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from typing import Sequence

__all__ = ["SourceFirstFinder", "cimported", "install", "compiled_stems", "source_instead"]

#: A ``.py`` newer than its extension by more than this (seconds) is an edit
#: made after the build. Not 0: installing a wheel writes the ``.py`` just
#: after the extension beside it.
STALE_AFTER_S = 2.0

_PREFIX = "qstack."


def compiled_stems(directory: str) -> dict[str, str]:
    """Module stem -> extension path, for every ``stem.py`` in ``directory``
    with an extension module of the same stem beside it."""
    try:
        names = set(os.listdir(directory))
    except OSError:
        return {}
    found = {}
    for name in names:
        for suffix in EXTENSION_SUFFIXES:
            if name.endswith(suffix):
                stem = name[: -len(suffix)]
                if stem + ".py" in names:
                    found[stem] = os.path.join(directory, name)
                break
    return found


def source_instead(source: str, extension: str) -> str | None:
    """Why the module compiled to ``extension`` must run from ``source``
    ("pure" or "stale"), or None when the extension is the one to import."""
    # (the switch is read here, not through qstack.core.kernels: importing
    # qstack.core would import a compiled module before this finder is in place)
    if os.environ.get("QSTACK_PURE_PYTHON") == "1":
        return "pure"
    try:
        if os.stat(source).st_mtime > os.stat(extension).st_mtime + STALE_AFTER_S:
            return "stale"
    except OSError:
        return None
    return None


def cimported(pxd: str) -> list[str]:
    """The qstack modules the ``.pxd`` at ``pxd`` cimports from (none if there
    is no such file)."""
    try:
        with open(pxd, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return []
    return re.findall(r"^\s*from\s+(qstack(?:\.\w+)+)\s+cimport\b", text, re.M)


class SourceFirstFinder:
    """Meta-path finder: a compiled qstack module from its ``.py`` when
    :func:`source_instead` says so, or when a module it cimports runs from
    its ``.py``; otherwise it leaves the import alone. ``root``: the
    directory of the ``qstack`` package (where cimported modules are found)."""

    def __init__(self, root: str | None = None) -> None:
        self._stems: dict[str, dict[str, str]] = {}     # directory -> compiled_stems
        self.warned: set[str] = set()
        self._root = root or os.path.dirname(os.path.abspath(__file__))

    def _compiled_stems(self, directory: str) -> dict[str, str]:
        stems = self._stems.get(directory)
        if stems is None:
            stems = self._stems[directory] = compiled_stems(directory)
        return stems

    def why_source(self, fullname: str, source: str, extension: str,
                   _seen: frozenset = frozenset()) -> tuple[str, str] | None:
        """(why, module) when ``fullname`` must run from ``source``: its own
        :func:`source_instead` reason, or ("cimports", the module it cimports
        that runs from its source); None to import ``extension``."""
        why = source_instead(source, extension)
        if why is not None:
            return why, fullname
        for dep in cimported(source[:-3] + ".pxd"):
            if dep == fullname or dep in _seen:
                continue
            *package, stem = dep.split(".")[1:]
            directory = os.path.join(self._root, *package)
            dep_extension = self._compiled_stems(directory).get(stem)
            if dep_extension is None or self.why_source(
                    dep, os.path.join(directory, stem + ".py"), dep_extension,
                    _seen | {fullname}) is not None:
                return "cimports", dep
        return None

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: object = None) -> ModuleSpec | None:
        if not fullname.startswith(_PREFIX) or not path:
            return None
        stem = fullname.rpartition(".")[2]
        for directory in path:
            extension = self._compiled_stems(directory).get(stem)
            if extension is None:
                continue
            source = os.path.join(directory, stem + ".py")
            found = self.why_source(fullname, source, extension)
            if found is None:
                return None
            if found[0] == "stale":
                self._stale(fullname, f"{source} was changed after its compiled module was built")
            elif found[0] == "cimports":
                self._stale(fullname, f"it cimports {found[1]}, which runs from its source")
            return importlib.util.spec_from_file_location(fullname, source)
        return None

    def _stale(self, fullname: str, why: str) -> None:
        hint = "rebuild with `make install` (or `pip install -e .`)"
        if os.environ.get("QSTACK_REQUIRE_CYTHON") == "1":
            raise ImportError(f"{fullname}: {why} and QSTACK_REQUIRE_CYTHON=1; {hint}")
        if fullname not in self.warned:
            self.warned.add(fullname)
            warnings.warn(f"{fullname}: {why}: running the source (same results, slower); "
                          f"{hint}", RuntimeWarning, stacklevel=2)


def install() -> SourceFirstFinder:
    """Put the finder first on ``sys.meta_path`` (once) and return it."""
    for finder in sys.meta_path:
        if isinstance(finder, SourceFirstFinder):
            return finder
    finder = SourceFirstFinder()
    sys.meta_path.insert(0, finder)
    return finder
