# Augmenting declarations for engine.py (compiled from its own source,
# setup.py's COMPILED_PY): the engine, its groups and its qubit handles become
# extension types, so the compiled engine reads their fields as C struct
# members (``self`` in every method; ``g``/``q`` where @cython.locals types
# them) instead of looking each name up in a dict. Plain Python reads them as
# before. docs/compiled-runtime.md, "Typed device and engine".
#
# Every field stays `object` or a container type: the values are Python's
# (ids are ints used as dict keys, states are numpy arrays or BellDiagonal).

cdef class _Group:
    cdef public list members
    cdef public object rho, bd, pol


cdef class Qubit:
    cdef public object id, engine


cdef class QuantumEngine:
    cdef public object rng, _next_id
    cdef public dict _where, _handles, _labels
    cdef public set _groups


cdef class PreparedPair:
    cdef public object formalism, bd, rho, pol
