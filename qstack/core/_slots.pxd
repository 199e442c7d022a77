# Reading the fields of slotted classes (the frozen slotted dataclasses of
# events, actions, operations and messages) in C, for the other kernels
# (qstack/core/_runtime.pyx, qstack/sim/_driver.pyx, the heralding station).
#
# A compiled module reads ``obj.field`` through the generic attribute look-up
# (the type's dictionary, the slot's descriptor, its getter: about a hundred
# machine instructions), where CPython's own interpreter has an inline cache.
# ``slot_offset`` finds, once, where a class keeps a field; ``slot_field``
# then reads it with one load when ``obj`` is exactly that class, and falls
# back to ``getattr`` otherwise (a subclass, an empty slot: the same value or
# the same AttributeError). Its pure-Python twin is ``getattr(obj, name)``;
# ``tests/test_core_slot_read.py`` compares the two on every record class.
from cpython.object cimport PyObject


cdef Py_ssize_t slot_offset(type cls, str name) except -1


cdef inline object slot_field(object obj, type cls, Py_ssize_t offset, str name):
    """``obj.<name>``; ``offset``: ``slot_offset(cls, name)``."""
    cdef PyObject* value
    if type(obj) is cls:
        value = (<PyObject**>((<char*><PyObject*>obj) + offset))[0]
        if value is not NULL:
            return <object>value
    return getattr(obj, name)
