"""Loading the optional Cython kernels.

A kernel (``_name.pyx`` beside the module it accelerates, built by setup.py)
is optional: without it the pure-Python twin serves.  ``QSTACK_REQUIRE_CYTHON=1``
(set by ``make test`` and CI) turns a missing kernel into an ImportError, so a
build that silently fell back cannot pass.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["load_kernel"]


def load_kernel(module: str) -> ModuleType | None:
    """The compiled module ``module`` (dotted name), or None if it is not built."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("QSTACK_REQUIRE_CYTHON") == "1":
            raise ImportError(f"{module} (Cython kernel) is not built but QSTACK_REQUIRE_CYTHON=1; "
                              "build it with `pip install -e .`") from None
        return None
