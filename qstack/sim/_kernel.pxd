# The compiled kernel's declarations, so that compiled callers (the
# simulator's driver, qstack/sim/_driver.pyx) schedule and read the clock by
# C calls instead of Python method calls with their argument packing.
from libc.stdint cimport int64_t


cdef struct HeapEntry:
    int64_t time
    int64_t seq
    Py_ssize_t slot


cdef class CyEventHandle:
    cdef readonly int64_t time
    cdef readonly int64_t seq
    cdef readonly bint cancelled
    cdef Py_ssize_t slot
    cdef int64_t kernel_id


cdef class CyEventKernel:
    cdef HeapEntry* _heap
    cdef Py_ssize_t _size
    cdef Py_ssize_t _capacity
    cdef list _calls                 # callback, args, callback, args, ... by slot
    cdef char* _slot_cancelled
    cdef Py_ssize_t _slot_count      # slots ever created (len(_calls) // 2)
    cdef Py_ssize_t _slot_capacity   # allocated length of _slot_cancelled
    cdef Py_ssize_t* _free_slots
    cdef Py_ssize_t _free_count
    cdef Py_ssize_t _free_capacity
    cdef int64_t _next_seq
    cdef int64_t _last_seq           # seq of the last event fired
    cdef Py_ssize_t _dead
    cdef int64_t _kernel_id
    cdef bint _stopping              # stop() was called during the run in progress
    cdef readonly int64_t now
    cdef public int64_t events_fired
    cdef public object trace

    cdef int _grow_heap(self) except -1
    cdef Py_ssize_t _take_slot(self, object callback, tuple args) except -1
    cdef int _release_slot(self, Py_ssize_t slot) except -1
    cdef CyEventHandle _push(self, int64_t time, object callback, tuple args)
    # ``schedule`` / ``schedule_at`` for C callers: the same checks and errors
    cdef CyEventHandle schedule_c(self, object delay_ns, object callback, tuple args)
    cdef CyEventHandle schedule_at_c(self, object time_ns, object callback, tuple args)
    cdef int _check_owner(self, CyEventHandle handle) except -1
    cdef int cancel_c(self, CyEventHandle handle) except -1
    cdef int _compact(self) except -1
