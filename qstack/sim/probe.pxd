# Augmenting declarations for probe.py (compiled from its own source,
# setup.py's COMPILED_PY): the probe's fields are C struct members, read
# once or twice per end per pair (docs/compiled-runtime.md, "Typed protocol
# classes"). Plain Python reads them as before.

from qstack.core.protocol cimport Protocol
from qstack.physical.device cimport QuantumDevice


cdef class PairLedger:
    cdef public dict waiting
    cdef public list pairs, errors


cdef class PairProbe(Protocol):
    # typed: its containers are read as C struct members
    cdef public PairLedger ledger
    # typed: bell_fidelity_now and execute are the device's cpdef methods, C calls
    cdef public QuantumDevice device
