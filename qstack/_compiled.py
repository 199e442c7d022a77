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

A ``.pyx`` kernel (an extension with no ``.py`` beside it: its pure-Python
twin is another module, chosen by :func:`~qstack.core.kernels.load_kernel`)
whose ``.pxd`` or ``.pyx`` cimports such a module, directly or through
another kernel, cannot import either: the finder raises ImportError for
it, and ``load_kernel`` warns and gives its twin.

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


def compiled_stems(directory: str, kernels: bool = False) -> dict[str, str]:
    """Module stem -> extension path, for every ``stem.py`` in ``directory``
    with an extension module of the same stem beside it; with ``kernels``,
    for every extension module without a ``.py`` instead (a ``.pyx``
    kernel, whose pure-Python twin is another module)."""
    try:
        names = set(os.listdir(directory))
    except OSError:
        return {}
    found = {}
    for name in names:
        for suffix in EXTENSION_SUFFIXES:
            if name.endswith(suffix):
                stem = name[: -len(suffix)]
                if (stem + ".py" in names) is not kernels:
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
    """The qstack modules the ``.pxd`` (or ``.pyx``) at ``pxd`` cimports from
    (none if there is no such file)."""
    try:
        with open(pxd, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return []
    return re.findall(r"^\s*from\s+(qstack(?:\.\w+)+)\s+cimport\b", text, re.M)


def _kernel_files(directory: str, stem: str) -> list[str]:
    """Where a kernel's cimports are written: its ``.pxd`` and its ``.pyx``
    (a ``.pyx`` cimports what it alone uses, the driver the station)."""
    return [os.path.join(directory, stem + ".pxd"), os.path.join(directory, stem + ".pyx")]


def _cimport_why(found: tuple[str, str]) -> str:
    """Why a module cannot use its extension, for a ("cimports" | "kernel",
    module) answer of :meth:`SourceFirstFinder.why_source`."""
    why, module = found
    return f"it cimports {module}, which " + (
        "runs from its source" if why == "cimports" else "cannot import either")


class SourceFirstFinder:
    """Meta-path finder: a compiled qstack module from its ``.py`` when
    :func:`source_instead` says so, or when a module it cimports runs from
    its ``.py``; otherwise it leaves the import alone. ``root``: the
    directory of the ``qstack`` package (where cimported modules are found)."""

    def __init__(self, root: str | None = None) -> None:
        # (directory, kernels) -> compiled_stems(directory, kernels)
        self._stems: dict[tuple[str, bool], dict[str, str]] = {}
        self.warned: set[str] = set()
        self._root = root or os.path.dirname(os.path.abspath(__file__))

    def _compiled_stems(self, directory: str, kernels: bool = False) -> dict[str, str]:
        stems = self._stems.get((directory, kernels))
        if stems is None:
            stems = self._stems[directory, kernels] = compiled_stems(directory, kernels)
        return stems

    def why_source(self, fullname: str, source: str, extension: str,
                   _seen: frozenset = frozenset()) -> tuple[str, str] | None:
        """(why, module) when ``fullname`` must run from ``source``: its own
        :func:`source_instead` reason, or ("cimports", the module it cimports
        that runs from its source), or ("kernel", the kernel it cimports that
        cannot import); None to import ``extension``."""
        why = source_instead(source, extension)
        if why is not None:
            return why, fullname
        return self._cimports_source(fullname, [source[:-3] + ".pxd"], _seen)

    def _cimports_source(self, fullname: str, files: list[str],
                         _seen: frozenset = frozenset()) -> tuple[str, str] | None:
        """("cimports", module) when ``files`` (the ``.pxd``, and for a kernel
        its ``.pyx``, of ``fullname``) cimport a compiled qstack module that
        runs from its source (or is not built); ("kernel", module) when they
        cimport a kernel that cannot import for that reason."""
        for dep in [dep for path in files for dep in cimported(path)]:
            if dep == fullname or dep in _seen:
                continue
            *package, stem = dep.split(".")[1:]
            directory = os.path.join(self._root, *package)
            dep_extension = self._compiled_stems(directory).get(stem)
            if dep_extension is not None:
                if self.why_source(dep, os.path.join(directory, stem + ".py"), dep_extension,
                                   _seen | {fullname}) is not None:
                    return "cimports", dep
            elif stem in self._compiled_stems(directory, kernels=True):
                # another kernel: importable unless what it cimports runs from source
                if self._cimports_source(dep, _kernel_files(directory, stem),
                                         _seen | {fullname}) is not None:
                    return "kernel", dep
            else:
                return "cimports", dep          # not built at all
        return None

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: object = None) -> ModuleSpec | None:
        if not fullname.startswith(_PREFIX) or not path:
            return None
        stem = fullname.rpartition(".")[2]
        for directory in path:
            extension = self._compiled_stems(directory).get(stem)
            if extension is None:
                self._check_kernel(fullname, directory, stem)
                continue
            source = os.path.join(directory, stem + ".py")
            found = self.why_source(fullname, source, extension)
            if found is None:
                return None
            if found[0] == "stale":
                self._stale(fullname, f"{source} was changed after its compiled module was built")
            elif found[0] != "pure":        # (the twins asked for: no warning)
                self._stale(fullname, _cimport_why(found))
            return importlib.util.spec_from_file_location(fullname, source)
        return None

    def _check_kernel(self, fullname: str, directory: str, stem: str) -> None:
        """A kernel (an extension with no ``.py``: its twin is another module)
        whose ``.pxd`` or ``.pyx`` cimports a module that runs from its source
        cannot import (it was built against that module's compiled types): an
        ImportError saying so, which :func:`~qstack.core.kernels.load_kernel`
        turns into its warning (or, under ``QSTACK_REQUIRE_CYTHON=1``, its
        error) and the kernel's pure-Python twin."""
        if stem not in self._compiled_stems(directory, kernels=True):
            return
        found = self._cimports_source(fullname, _kernel_files(directory, stem))
        if found is not None:
            raise ImportError(f"{fullname}: {_cimport_why(found)}", name=fullname)

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
