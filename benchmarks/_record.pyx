# cython: language_level=3
"""A typed Cython record with Track's fields, for bench_msgspec (compiled at
run time by pyximport; not part of the package)."""
cimport cython


@cython.final
cdef class CyTrack:
    cdef readonly unsigned int circuit_id
    cdef readonly str head
    cdef readonly long long link_seq
    cdef readonly int bell_index
    cdef readonly double fidelity
    cdef readonly long long created_ns

    def __init__(self, unsigned int circuit_id, str head, long long link_seq, int bell_index,
                 double fidelity, long long created_ns):
        if len(head) > 64 or not 0 <= bell_index <= 3 or not 0.0 <= fidelity <= 1.0 \
                or link_seq < 0 or created_ns < 0:
            raise ValueError("out of range")
        self.circuit_id = circuit_id
        self.head = head
        self.link_seq = link_seq
        self.bell_index = bell_index
        self.fidelity = fidelity
        self.created_ns = created_ns

    def as_list(self):
        return [self.circuit_id, self.head, self.link_seq, self.bell_index, self.fidelity,
                self.created_ns]
