# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython twin of ``qstack.sim.kernel.PyEventKernel``.

Same algorithm, same ordering, same trace; only faster. The pure-Python
kernel is the reference: ``tests/test_sim_kernel.py`` runs random workloads on
both and requires identical event traces.

Layout, and why:

* The heap is a C array of ``(time, seq, slot)`` structs. Comparisons read
  only the struct, never a Python object, so sifting a heap of a million
  events stays in contiguous memory instead of chasing pointers.
* ``slot`` indexes ``self._calls``, a Python list holding each pending
  event's callback at ``2*slot`` and its argument tuple at ``2*slot + 1``
  (adjacent, so one cache line serves both), and ``self._slot_cancelled``, a
  C byte array. Firing an event therefore never touches its handle.
* Keeping callbacks in a list, not in the handles, lets the cyclic garbage
  collector see them (a task's wake-up references the task, which references
  the simulator, which owns this list), and leaves handles free of Python
  references, so they are not tracked by the collector at all: a million
  pending events cost the collector nothing.
* A handle learns it was cancelled through its own flag; whether it fired is
  worked out from the clock (see ``is_pending``), so nothing is written to
  the handle when it fires.
* Freed slots are reused through a C stack of free indices.

Times are signed 64-bit nanoseconds (about 292 years of simulated time);
larger values raise ``OverflowError``.
"""
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int64_t

from qstack.core._runtime cimport EventCallback

from operator import index as _as_index

# Must match kernel.COMPACT_MIN_DEAD so that both twins compact at the same
# moments (compaction is invisible in traces, but keep them alike anyway).
cdef enum:
    COMPACT_MIN_DEAD = 256


cdef inline bint entry_before(HeapEntry a, HeapEntry b) noexcept nogil:
    return a.time < b.time or (a.time == b.time and a.seq < b.seq)


# Each kernel gets a distinct id, stamped on its handles, so that a handle
# from another simulator is refused instead of flagging an unrelated slot.
cdef int64_t _next_kernel_id = 1


def callback_name(callback):
    """Same naming rule as ``kernel.callback_name`` (kept in step with it)."""
    name = getattr(callback, "__qualname__", None)
    if isinstance(name, str):
        return name
    return type(callback).__qualname__


cdef inline int64_t as_ns(value, str what) except? -1:
    if type(value) is int:             # (the common case, per scheduled event: no call)
        return value
    try:
        return _as_index(value)
    except TypeError:
        raise TypeError(
            f"{what} must be an integer number of nanoseconds, not {type(value).__name__}"
        ) from None


# -- heap primitives (module functions, not methods: inlined C, no vtable)

cdef inline void _sift_up(CyEventKernel self, Py_ssize_t pos, HeapEntry entry,
                          Py_ssize_t start=0) noexcept nogil:
    # Move the hole at ``pos`` towards ``start`` (the root unless told) until
    # ``entry`` fits.
    cdef HeapEntry* heap = self._heap
    cdef Py_ssize_t parent
    while pos > start:
        parent = (pos - 1) >> 1
        if entry_before(entry, heap[parent]):
            heap[pos] = heap[parent]
            pos = parent
        else:
            break
    heap[pos] = entry

cdef inline void _sift_down_from(CyEventKernel self, Py_ssize_t pos, HeapEntry entry) noexcept nogil:
    # heapq's trick: walk the hole down to a leaf always taking the smaller
    # child (one comparison per level), then sift ``entry`` up from there.
    # The replacement usually belongs near the bottom, so this does fewer
    # comparisons than the textbook sift-down.
    cdef HeapEntry* heap = self._heap
    cdef Py_ssize_t size = self._size
    cdef Py_ssize_t start = pos
    cdef Py_ssize_t child = 2 * pos + 1
    while child < size:
        if child + 1 < size and entry_before(heap[child + 1], heap[child]):
            child += 1
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    _sift_up(self, pos, entry, start)

cdef inline HeapEntry _pop_top(CyEventKernel self) noexcept nogil:
    cdef HeapEntry top = self._heap[0]
    self._size -= 1
    if self._size > 0:
        _sift_down_from(self, 0, self._heap[self._size])
    return top


cdef inline bint _has_fired(CyEventKernel self, CyEventHandle handle) noexcept:
    # Events fire in increasing (time, seq) order and every pending event
    # sorts after the last one fired, so "fired" is a comparison with the
    # clock, valid for any handle of this kernel that was not cancelled.
    return handle.time < self.now or (handle.time == self.now and handle.seq <= self._last_seq)


@cython.freelist(16)
@cython.final
@cython.auto_pickle(False)
cdef class CyEventHandle:
    """A scheduled event of the Cython kernel (see ``kernel.EventHandle``;
    fields in ``_kernel.pxd``)."""

    def __repr__(self):
        state = " cancelled" if self.cancelled else ""
        return f"<EventHandle t={self.time}ns seq={self.seq}{state}>"


@cython.auto_pickle(False)
cdef class CyEventKernel:
    """The event heap and clock (Cython). API identical to ``PyEventKernel``.

    Not final: ``Simulator`` subclasses it in Python to add the coroutine
    runner and random streams.
    """

    # (fields in _kernel.pxd)

    def __cinit__(self, *args, **kwargs):
        # Subclasses may take constructor arguments; the kernel needs none.
        global _next_kernel_id
        self._heap = NULL
        self._size = 0
        self._capacity = 0
        self._calls = []
        self._slot_cancelled = NULL
        self._slot_count = 0
        self._slot_capacity = 0
        self._free_slots = NULL
        self._free_count = 0
        self._free_capacity = 0
        self._next_seq = 0
        self._last_seq = -1
        self._dead = 0
        self._kernel_id = _next_kernel_id
        _next_kernel_id += 1
        self._stopping = False
        self.now = 0
        self.events_fired = 0
        self.trace = None

    def __dealloc__(self):
        PyMem_Free(self._heap)
        PyMem_Free(self._slot_cancelled)
        PyMem_Free(self._free_slots)

    # -- heap primitives ----------------------------------------------------

    cdef int _grow_heap(self) except -1:
        cdef Py_ssize_t capacity = self._capacity * 2 if self._capacity else 1024
        cdef HeapEntry* heap = <HeapEntry*> PyMem_Realloc(self._heap, capacity * sizeof(HeapEntry))
        if heap == NULL:
            raise MemoryError()
        self._heap = heap
        self._capacity = capacity
        return 0

    cdef Py_ssize_t _take_slot(self, object callback, tuple args) except -1:
        cdef Py_ssize_t slot
        cdef Py_ssize_t capacity
        cdef char* flags
        if self._free_count:
            self._free_count -= 1
            slot = self._free_slots[self._free_count]
            self._calls[2 * slot] = callback
            self._calls[2 * slot + 1] = args
        else:
            slot = self._slot_count
            if slot == self._slot_capacity:
                capacity = self._slot_capacity * 2 if self._slot_capacity else 1024
                flags = <char*> PyMem_Realloc(self._slot_cancelled, capacity)
                if flags == NULL:
                    raise MemoryError()
                self._slot_cancelled = flags
                self._slot_capacity = capacity
            self._calls.append(callback)
            self._calls.append(args)
            self._slot_count += 1
        self._slot_cancelled[slot] = 0
        return slot

    cdef int _release_slot(self, Py_ssize_t slot) except -1:
        cdef Py_ssize_t* stack
        cdef Py_ssize_t capacity
        # Drop the references now: a fired event must not keep its callback
        # (and whatever that holds) alive until the slot is reused.
        self._calls[2 * slot] = None
        self._calls[2 * slot + 1] = None
        if self._free_count == self._free_capacity:
            capacity = self._free_capacity * 2 if self._free_capacity else 1024
            stack = <Py_ssize_t*> PyMem_Realloc(self._free_slots, capacity * sizeof(Py_ssize_t))
            if stack == NULL:
                raise MemoryError()
            self._free_slots = stack
            self._free_capacity = capacity
        self._free_slots[self._free_count] = slot
        self._free_count += 1
        return 0

    # -- scheduling -----------------------------------------------------------

    cdef CyEventHandle _push(self, int64_t time, object callback, tuple args):
        cdef CyEventHandle handle = CyEventHandle.__new__(CyEventHandle)
        cdef HeapEntry entry
        if self._size == self._capacity:
            self._grow_heap()
        entry.time = time
        entry.seq = self._next_seq
        entry.slot = self._take_slot(callback, args)
        self._next_seq += 1
        handle.time = time
        handle.seq = entry.seq
        handle.slot = entry.slot
        handle.kernel_id = self._kernel_id
        self._size += 1
        _sift_up(self, self._size - 1, entry)
        return handle

    def schedule(self, delay_ns, callback, *args):
        """Call ``callback(*args)`` ``delay_ns`` nanoseconds from now (int >= 0)."""
        return self.schedule_c(delay_ns, callback, args)

    def schedule_at(self, time_ns, callback, *args):
        """Call ``callback(*args)`` at absolute simulated time ``time_ns``."""
        return self.schedule_at_c(time_ns, callback, args)

    cdef CyEventHandle schedule_c(self, object delay_ns, object callback, tuple args):
        cdef int64_t delay = as_ns(delay_ns, "delay_ns")
        if delay < 0:
            raise ValueError(f"delay_ns must be >= 0, got {delay_ns}")
        return self._push(self.now + delay, callback, args)

    cdef CyEventHandle schedule_at_c(self, object time_ns, object callback, tuple args):
        cdef int64_t time = as_ns(time_ns, "time_ns")
        if time < self.now:
            raise ValueError(f"time_ns={time_ns} is in the past (now={self.now})")
        return self._push(time, callback, args)

    def is_pending(self, CyEventHandle handle not None):
        """True if the event is still waiting to fire (neither fired nor cancelled)."""
        self._check_owner(handle)
        return not handle.cancelled and not _has_fired(self, handle)

    cdef int _check_owner(self, CyEventHandle handle) except -1:
        if handle.kernel_id != self._kernel_id:
            raise ValueError("this event handle belongs to another simulator")
        return 0

    def cancel(self, CyEventHandle handle not None):
        """Cancel a scheduled event; a no-op if it already fired or was cancelled."""
        self.cancel_c(handle)

    cdef int cancel_c(self, CyEventHandle handle) except -1:
        if handle is None:
            raise TypeError("Argument 'handle' has incorrect type (expected "
                            "qstack.sim._kernel.CyEventHandle, got NoneType)")
        self._check_owner(handle)
        if handle.cancelled or _has_fired(self, handle):
            return 0
        handle.cancelled = True
        self._slot_cancelled[handle.slot] = 1
        self._dead += 1
        if self._dead >= COMPACT_MIN_DEAD and 2 * self._dead > self._size:
            self._compact()
        return 0

    cdef int _compact(self) except -1:
        cdef Py_ssize_t read, write = 0
        cdef Py_ssize_t i
        cdef HeapEntry entry
        for read in range(self._size):
            entry = self._heap[read]
            if self._slot_cancelled[entry.slot]:
                self._release_slot(entry.slot)
            else:
                self._heap[write] = entry
                write += 1
        self._size = write
        self._dead = 0
        # Floyd's heapify: sift down every internal node, bottom-up.
        i = self._size // 2 - 1
        while i >= 0:
            _sift_down_from(self, i, self._heap[i])
            i -= 1
        return 0

# -- inspection -------------------------------------------------------------

    @property
    def pending(self):
        """Number of live (not cancelled) events waiting in the heap."""
        return self._size - self._dead

    @property
    def next_seq(self):
        """The ``seq`` the next scheduled event will get (see ``PyEventKernel.next_seq``)."""
        return self._next_seq

    @property
    def next_event_time(self):
        """Time in nanoseconds of the next live event, or ``None`` if idle."""
        cdef HeapEntry entry
        while self._size and self._slot_cancelled[self._heap[0].slot]:
            entry = _pop_top(self)
            self._release_slot(entry.slot)
            self._dead -= 1
        if self._size == 0:
            return None
        return self._heap[0].time

    def enable_trace(self):
        """Start recording ``(time_ns, seq, callback qualname)`` per fired event."""
        if self.trace is None:
            self.trace = []
        return self.trace

    # -- the loop -----------------------------------------------------------------

    def stop(self):
        """End the run in progress after the event now firing (see ``PyEventKernel.stop``)."""
        self._stopping = True

    def run(self, until_ns=None, stop_when=None, max_events=None):
        """Fire events in ``(time, seq)`` order; return how many fired.

        Semantics are those of ``PyEventKernel.run``.
        """
        cdef bint has_until = until_ns is not None
        cdef int64_t until = 0
        cdef int64_t limit = -1  # -1: no limit
        cdef int64_t fired = 0
        cdef bint reached_horizon = True
        cdef HeapEntry entry
        cdef Py_ssize_t slot
        cdef object callback
        cdef tuple args
        cdef object trace = self.trace

        if has_until:
            until = as_ns(until_ns, "until_ns")
            if until < self.now:
                raise ValueError(f"until_ns={until_ns} is in the past (now={self.now})")
        if max_events is not None:
            limit = as_ns(max_events, "max_events")
            if limit <= 0:
                return 0
        if stop_when is not None and stop_when():
            return 0

        self._stopping = False
        while self._size:
            if has_until and self._heap[0].time > until:
                break
            entry = _pop_top(self)
            slot = entry.slot
            if self._slot_cancelled[slot]:
                self._release_slot(slot)
                self._dead -= 1
                continue
            callback = self._calls[2 * slot]
            args = <tuple> self._calls[2 * slot + 1]
            self._release_slot(slot)
            self.now = entry.time
            self._last_seq = entry.seq
            fired += 1
            self.events_fired += 1
            if trace is not None:
                trace.append((entry.time, entry.seq, callback_name(callback)))
            if isinstance(callback, EventCallback):
                (<EventCallback> callback).fire(args)     # (a C call)
            else:
                callback(*args)
            if self._stopping:
                self._stopping = False
                reached_horizon = False
                break
            if stop_when is not None and stop_when():
                reached_horizon = False
                break
            if fired == limit:
                reached_horizon = False
                break
        if has_until and reached_horizon:
            self.now = until
        return fired

