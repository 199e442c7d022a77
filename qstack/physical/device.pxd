# Augmenting declarations for device.py (compiled from its own source,
# setup.py's COMPILED_PY): a node's device becomes an extension type, so the
# compiled device reads its own fields (the slots in use, the memory's decay
# figures) as C struct members. Plain Python reads them as before.
# docs/compiled-runtime.md, "Typed device and engine".

cdef class QuantumDevice:
    cdef public object node, engine, hw, rng, peak_slots, _rates
    cdef public dict _last_update
    cdef public list _attempt_runs
    cdef public Py_ssize_t _reserved, _slots
    cdef public bint _decays, _dephases
