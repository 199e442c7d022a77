"""The stand-in for Cython's pure-Python mode (qstack/_cython_shadow.py): a
module that types its locals runs unchanged without Cython."""
from qstack._cython_shadow import cython


def test_locals_returns_the_function_itself():
    def f(x):
        return x + 1

    assert cython.locals(x=cython.int)(f) is f
    assert f(1) == 2


def test_type_names_are_python_types():
    assert not cython.compiled
    assert cython.int(3.0) == 3 and cython.double(1) == 1.0
    assert cython.bint(0) is False and cython.Py_ssize_t("7") == 7
