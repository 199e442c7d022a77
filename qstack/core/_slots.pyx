# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython twin of the slot setters of ``qstack.core.slots``.

A frozen slotted dataclass's generated ``__init__`` sets each field with
``object.__setattr__``; the constructors ``qstack.core.slots`` generates call
each field's slot descriptor instead (the pure-Python twin, about twice as
fast). :class:`SlotWriter` does the same in one call per object: it writes
the values straight into the object's slots, at the offsets the slot
descriptors name, which is what each descriptor's ``__set__`` does for a
valid object, without a Python-level call per field. The tests build every
message and hot record both ways and require equal objects.

:func:`call_through` sets a record class's vectorcall slot so that
``Record(...)`` runs its generated constructor (the pure-Python twin is the
usual ``object.__new__`` then ``__init__``, which does the same).
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_XDECREF, Py_XINCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

import types


cdef extern from "Python.h":
    ctypedef PyObject* (*allocfunc)(_Type*, Py_ssize_t)

    ctypedef struct _Type "PyTypeObject":
        allocfunc tp_alloc

    ctypedef struct _MemberDef "PyMemberDef":
        int type
        Py_ssize_t offset
        int flags

    ctypedef struct _MemberDescr "PyMemberDescrObject":
        _MemberDef* d_member

    ctypedef PyObject* (*vectorcallfunc)(PyObject*, PyObject* const*, size_t, PyObject*)

    ctypedef struct _CallType "PyTypeObject":
        vectorcallfunc tp_vectorcall
        unsigned long tp_flags

    PyObject* _vectorcall "PyObject_Vectorcall"(PyObject*, PyObject* const*, size_t, PyObject*)
    PyObject* _dict_get "PyDict_GetItem"(PyObject*, PyObject*)
    void _set_error "PyErr_SetString"(PyObject*, const char*)
    long _HEAPTYPE "Py_TPFLAGS_HEAPTYPE"

# structmember.h: a __slots__ entry is an object member (T_OBJECT_EX) that may be written
cdef enum:
    _T_OBJECT_EX = 16
    _READONLY = 1


cdef class SlotWriter:
    """Writes the fields ``names`` of instances of ``cls`` straight into their
    slots: ``new(*values)`` makes an instance (as ``object.__new__(cls)``
    then one descriptor ``__set__`` per field would), ``fill(obj, *values)``
    sets the fields of an existing one (an ``__init__``). ``values`` are in
    the order of ``names``; their number must match.

    Raises TypeError at construction if a name is not a writable object slot
    of ``cls`` or if ``cls`` has its own ``__new__`` (then the caller keeps
    the descriptor setters)."""

    cdef object cls
    cdef _Type* tp
    cdef Py_ssize_t n
    cdef Py_ssize_t* offsets

    def __cinit__(self, cls, names):
        names = tuple(names)
        if not isinstance(cls, type) or cls.__new__ is not object.__new__ \
                or getattr(cls, "__abstractmethods__", None):
            raise TypeError(f"{cls!r}: not a plain class built by object.__new__")
        self.offsets = <Py_ssize_t*>PyMem_Malloc(max(1, len(names)) * sizeof(Py_ssize_t))
        if self.offsets == NULL:
            raise MemoryError()
        cdef _MemberDescr* descr
        for i, name in enumerate(names):
            d = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
            if type(d) is not types.MemberDescriptorType:
                raise TypeError(f"{cls.__name__}.{name} is not a slot")
            descr = <_MemberDescr*>d
            if descr.d_member.type != _T_OBJECT_EX or descr.d_member.flags & _READONLY:
                raise TypeError(f"{cls.__name__}.{name} is not a writable object slot")
            self.offsets[i] = descr.d_member.offset
        self.n = len(names)
        self.cls = cls
        self.tp = <_Type*>cls

    def __dealloc__(self):
        PyMem_Free(self.offsets)

    cdef inline void _write(self, PyObject* o, tuple values, Py_ssize_t first):
        cdef Py_ssize_t i
        cdef PyObject* v
        cdef PyObject** slot
        cdef PyObject* old
        for i in range(self.n):
            v = PyTuple_GET_ITEM(values, first + i)
            Py_XINCREF(v)
            slot = <PyObject**>((<char*>o) + self.offsets[i])
            old = slot[0]
            slot[0] = v
            Py_XDECREF(old)

    def new(self, *values):
        """A new instance with ``values`` in its fields."""
        if PyTuple_GET_SIZE(values) != self.n:
            raise TypeError(f"{self.cls.__name__}: {self.n} values expected, "
                            f"got {PyTuple_GET_SIZE(values)}")
        cdef PyObject* o = self.tp.tp_alloc(self.tp, 0)
        if o == NULL:
            raise MemoryError()
        obj = <object>o          # (a second reference: the allocation's is given up below)
        Py_DECREF(obj)
        self._write(o, values, 0)
        return obj

    def fill(self, *args):
        """``fill(obj, *values)``: set the fields of ``obj`` (an instance of the class)."""
        if PyTuple_GET_SIZE(args) != self.n + 1:
            raise TypeError(f"{self.cls.__name__}: {self.n} values expected, "
                            f"got {PyTuple_GET_SIZE(args) - 1}")
        obj = <object>PyTuple_GET_ITEM(args, 0)
        if not isinstance(obj, self.cls):
            raise TypeError(f"expected a {self.cls.__name__}, got {type(obj).__name__}")
        self._write(<PyObject*>obj, args, 1)


# ---------------------------------------------------------------- Record(...) as fast as make(...)

# class -> the function that builds its instances (see call_through)
cdef dict _makers = {}


cdef PyObject* _call_maker(PyObject* cls, PyObject* const* args, size_t nargsf,
                           PyObject* kwnames) noexcept:
    # the class's tp_vectorcall: Cls(...) is make(...)
    cdef PyObject* make = _dict_get(<PyObject*>_makers, cls)
    if make == NULL:        # (not reached: only classes in _makers get this slot)
        _set_error(<PyObject*>TypeError, b"no constructor registered for this class")
        return NULL
    return _vectorcall(make, args, nargsf, kwnames)


def call_through(cls, make):
    """Make ``cls(...)`` call ``make(...)`` directly, instead of
    ``object.__new__`` then ``cls.__init__``: the class's vectorcall slot
    (``tp_vectorcall``, which CPython documents for type objects and never
    inherits: a subclass is built the usual way). ``make`` must build the
    same object as the class's own ``__init__`` would, checks included."""
    if not isinstance(cls, type) or not (<_CallType*>cls).tp_flags & _HEAPTYPE:
        raise TypeError(f"{cls!r}: only classes defined in Python")
    if not callable(make):
        raise TypeError("make must be callable")
    _makers[cls] = make
    (<_CallType*>cls).tp_vectorcall = _call_maker
