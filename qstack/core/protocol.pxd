# Augmenting declarations for protocol.py (compiled from its own source,
# setup.py's COMPILED_PY): the protocol base becomes an extension type, so a
# protocol compiled with its own .pxd (link/egp.pxd, network/circuit.pxd)
# can be one too and read its fields as C struct members.
# docs/compiled-runtime.md, "Typed protocol classes".
#
# The fields are `object`: a subclass may keep anything in them (a test's
# protocol counts its operations in `_ops`). No instance `__dict__` here: a
# Python subclass gets its own (as every Python subclass of an extension type
# without __slots__ does) and sets any attribute; a compiled protocol has only
# what its .pxd declares. (With one in the base, Cython gives every instance
# its own empty dict, whose distinct version tags defeat the cached check for
# a Python override on every cpdef call, from node to node.) The
# `__weakref__` slot keeps weak references working, as on a plain class.

cdef class Protocol:
    cdef object __weakref__
    cdef public object node, _ops, _next_op

    # (C calls from a compiled protocol; a Python subclass may override them)
    cpdef start_op(self, op, context)
    cpdef take_op(self, op_id)
