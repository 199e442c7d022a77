"""The few names of Cython's pure-Python mode that qstack's compiled protocol
modules use, for a machine without Cython.

A module in setup.py's ``COMPILED_PY`` is compiled from its own ``.py``; where
its hot methods read records declared as extension types (an augmenting
``.pxd`` beside the ``.py``), the methods say so with ``@cython.locals``, and
the compiled module reads those fields as C struct members instead of by
generic attribute look-up (docs/compiled-runtime.md, "Typed protocol state").
Such a module starts with::

    try:
        import cython
    except ImportError:              # (Cython is a build tool, not a dependency)
        from qstack._cython_shadow import cython

(The import sits in each such module, not in one shared helper, because
Cython recognises ``@cython.locals`` only through the compiled module's own
``import cython``.) With Cython installed, ``import cython`` finds Cython's
own shadow module; without it, this one: the decorators return the function unchanged and the
type names are the Python types, so the source runs as plain Python.
"""
from __future__ import annotations

__all__ = ["cython"]


class cython:                         # noqa: N801 (it stands in for the module)
    """Stand-in for the ``cython`` module in plain Python."""

    compiled = False
    int = int
    bint = bool
    double = float
    Py_ssize_t = int
    longlong = int

    @staticmethod
    def locals(**_types):
        """``@cython.locals(name=type, ...)``: declares C types of a function's
        arguments and locals to the compiler; in plain Python, nothing."""
        return lambda function: function

    @staticmethod
    def declare(_type=None, value=None):
        """``name = cython.declare(type, value)``: a module or local variable
        of C type ``type``; in plain Python, ``value`` itself."""
        return value

    @staticmethod
    def cfunc(function):
        """``@cython.cfunc``: makes a module function a C function, called from
        the compiled module without a Python call; in plain Python, the
        function itself."""
        return function

    @staticmethod
    def cast(_type, value, typecheck=False):
        """``cython.cast(type, value)``: tells the compiler ``value`` is of
        ``type`` (a C cast); in plain Python, ``value`` itself."""
        return value
