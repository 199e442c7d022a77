# Augmenting declarations for engine.py (compiled from its own source,
# setup.py's COMPILED_PY): the engine, its groups and its qubit handles become
# extension types, so the compiled engine reads their fields as C struct
# members (``self`` in every method; ``g``/``q`` where @cython.locals types
# them) instead of looking each name up in a dict. Plain Python reads them as
# before. docs/compiled-runtime.md, "Typed device and engine".
#
# Every field stays `object` or a container type (ids are ints used as dict
# keys, density matrices numpy arrays), except a group's Bell-diagonal state,
# typed so that its fidelity and Pauli maps are C calls.

from qstack.physical.bell_diagonal cimport BellDiagonal, swap_bell_diagonal


cdef class _Group:
    cdef public list members
    # (typed: the engine calls a pair's fidelity and Pauli maps in C)
    cdef public BellDiagonal bd
    cdef public object rho, pol


cdef class Qubit:
    cdef public object id, engine


cdef class QuantumEngine:
    cdef public object rng, _next_id
    cdef public dict _where, _handles, _labels
    cdef public set _groups
    cdef public list _uniforms
    cdef public Py_ssize_t _next_uniform
    cdef public object _uniforms_of

    # The methods every link pair, swap and memory read passes through, cpdef:
    # the device, the heralding station and the engine itself call them in C
    # (a Python subclass still overrides them, and the compiled callers call
    # the override). docs/compiled-runtime.md, "Typed physical layer".
    cpdef _uniform(self)
    cpdef _forget(self, qid)
    cpdef _group(self, q)
    cpdef new_pair(self, prepared, labels=*)
    cpdef bell_fidelity(self, a, b, bell_index=*)
    cpdef decayed_bell_fidelity(self, a, b, bell_index, wait_a_ns, wait_b_ns, t1_ns, t2_ns,
                                t1_b_ns=*, t2_b_ns=*)
    cpdef _decay(self, q, gamma, p, wait_ns, t1_ns, t2_ns)
    cpdef bsm(self, a, b)
    cpdef drop(self, q)
    cpdef _drop_fast(self, q)


cdef class PreparedPair:
    cdef public BellDiagonal bd
    cdef public object formalism, rho, pol


cpdef tuple _memory_rates(t1_ns, t2_ns)
# (C's expm1 on C doubles, the function math.expm1 calls: the same numbers)
cdef extern from "math.h":
    double _c_expm1 "expm1"(double x) nogil
cdef tuple _last_read
