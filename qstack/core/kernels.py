"""Loading the optional Cython kernels.

A kernel (``_name.pyx`` beside the module it accelerates, built by setup.py)
is optional: without it the pure-Python twin serves.  ``QSTACK_REQUIRE_CYTHON=1``
(set by ``make test`` and CI) turns a missing kernel into an ImportError, so a
build that silently fell back cannot pass. ``QSTACK_PURE_PYTHON=1`` makes every
kernel count as not built, so the whole stack runs on the pure-Python twins
even where the extensions are built (it wins over ``QSTACK_REQUIRE_CYTHON``);
``make test`` runs a subset of the suite that way (docs/compiled-runtime.md).
"""
from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

__all__ = ["compiled_modules", "load_kernel", "pure_python", "require_cython"]


def pure_python() -> bool:
    """True when ``QSTACK_PURE_PYTHON=1``: every kernel's pure-Python twin serves."""
    return os.environ.get("QSTACK_PURE_PYTHON") == "1"


def require_cython() -> bool:
    """True when a kernel that is not built must be an ImportError
    (``QSTACK_REQUIRE_CYTHON=1``, unless ``QSTACK_PURE_PYTHON=1`` asks for the twins)."""
    return os.environ.get("QSTACK_REQUIRE_CYTHON") == "1" and not pure_python()


def load_kernel(module: str) -> ModuleType | None:
    """The compiled module ``module`` (dotted name), or None if it is not built
    (or ``QSTACK_PURE_PYTHON=1``). A kernel that is built but cannot be
    imported (it imports a name that is gone, or it cimports a module that
    runs from its source: :mod:`qstack._compiled`) is None too, with a
    RuntimeWarning that says why: the twin then serves, never silently.
    Under ``QSTACK_REQUIRE_CYTHON=1`` either case is an ImportError."""
    if pure_python():
        return None
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        not_built = isinstance(exc, ModuleNotFoundError) and exc.name == module
        why = "is not built" if not_built else f"cannot be imported ({exc})"
        if require_cython():
            raise ImportError(f"{module} (Cython kernel) {why} but QSTACK_REQUIRE_CYTHON=1; "
                              "build it with `pip install -e .`") from None
        if not not_built:
            warnings.warn(f"{module} (Cython kernel) {why}: running its pure-Python twin "
                          "(same results, slower); rebuild with `make install` "
                          "(or `pip install -e .`)", RuntimeWarning, stacklevel=2)
        return None


def compiled_modules() -> dict[str, bool]:
    """Every qstack module compiled from its own ``.py`` source (setup.py's
    ``COMPILED_PY``) that is built here -> True when importing it gives the
    compiled build, False when it gives the source (``QSTACK_PURE_PYTHON=1``,
    or the ``.py`` was edited after the build: see :mod:`qstack._compiled`)."""
    from pathlib import Path

    import qstack
    from qstack._compiled import compiled_stems, source_instead

    root = Path(qstack.__file__).parent
    found = {}
    for directory in sorted({root, *(p.parent for p in root.rglob("*.py"))}):
        package = ".".join(("qstack", *directory.relative_to(root).parts))
        for stem, extension in compiled_stems(str(directory)).items():
            found[f"{package}.{stem}"] = source_instead(str(directory / f"{stem}.py"),
                                                        extension) is None
    return dict(sorted(found.items()))
