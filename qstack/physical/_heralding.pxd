# The compiled heralding station's declarations, so that the simulator's
# compiled driver (qstack/sim/_driver.pyx) submits Entangles by a C call.
# The station calls the compiled device and engine in C (their cpdef
# methods); where those run from source, this kernel cannot import and its
# pure-Python twin serves (qstack/_compiled.py).
from qstack.core._runtime cimport DriverHooks
from qstack.physical.device cimport QuantumDevice
from qstack.physical.engine cimport QuantumEngine


cdef class BlockUniforms:
    cdef public object gen
    cdef list _block
    cdef Py_ssize_t _next
    cdef double next_c(self) except? -1.0


cdef class _Request:
    cdef public object side, ref, key, deadline, param, start, deadline_event, herald_event
    cdef public object qubit, runs
    cdef public _Request partner, twin
    cdef public bint started


cdef class HeraldingStation:
    cdef public object ends, model, engine, devices, clock, rng, attempts_rng, formalism
    cdef object _deliver
    # the compiled driver whose ``_herald_arrives`` is ``deliver``, else None:
    # a herald is then handed over by a C call (``herald_c``), not a Python one
    cdef DriverHooks _hooks
    cdef object _herald_both_cb      # (made once: the compiled kernel fires it in C)
    cdef public BlockUniforms _uniforms
    cdef public object classical_delay_ns, pairs_heralded, attempts
    cdef public bint up
    cdef public tuple _keyed, _follow
    cdef public dict _numbers, _states, _blocks
    cdef public object _model_seen
    cdef public bint _dephasing
    # the model's Bell-index rule (pair_model.bell_index_rule): ask it per pair,
    # or a fixed index, or thresholds for one uniform drawn here
    cdef bint _bell_call
    cdef int _bell_fixed
    cdef double _bell_t0, _bell_t1, _bell_t2

    cdef int submit_c(self, object side, object ref, object op) except -1
    cdef _arm_deadline(self, _Request req)
    cdef _unlist(self, _Request req)
    cdef _forget(self, _Request req)
    cdef _set_bell_rule(self)
    cdef _figures(self, param)
    cdef _match(self, _Request a, _Request b)
    cdef _record_attempts(self, _Request r0, _Request r1, first, cycle, count)
    cdef _stop_attempts(self, _Request req)
    cdef _herald_c(self, _Request req, herald)
    cdef _herald_both_c(self, _Request r0, _Request r1, herald0, herald1)
    cdef _drop_herald(self, _Request req)
    cdef _end(self, _Request req, reason, delay)
