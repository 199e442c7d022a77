# Augmenting declarations for device.py (compiled from its own source,
# setup.py's COMPILED_PY): a node's device becomes an extension type, so the
# compiled device reads its own fields (the slots in use, the memory's decay
# figures) as C struct members. Plain Python reads them as before.
# docs/compiled-runtime.md, "Typed device and engine".

from qstack.physical.engine cimport QuantumEngine


cdef class QuantumDevice:
    # typed: the device calls the engine's cpdef methods in C
    cdef public QuantumEngine engine
    cdef public object node, hw, rng, peak_slots, _rates
    cdef public dict _last_update
    cdef public list _attempt_runs
    cdef public Py_ssize_t _reserved, _slots
    cdef public bint _decays, _dephases
    # hot-path copies of the (frozen) hardware's figures, as in the .py
    cdef public object _t1_ns, _t2_ns, _bsm_ns, _gate_2q_depolar, _measure_flip_prob

    # The methods of every link pair and swap, cpdef (called in C by the
    # device itself and the heralding station; a Python subclass still
    # overrides them). docs/compiled-runtime.md, "Typed physical layer".
    cpdef reserve(self)
    cpdef release_reservation(self)
    cpdef store(self, qubit, since_ns, reserved=*)
    cpdef update(self, qubit, now_ns)
    cpdef bell_fidelity_now(self, qubit, QuantumDevice other, other_qubit, bell_index, now_ns)
    cpdef execute(self, op, now_ns)
    cpdef _discard(self, op, now_ns)
    cpdef _bell_measure(self, op, now_ns)
