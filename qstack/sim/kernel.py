"""The discrete-event kernel: an integer-nanosecond clock and an event heap.

Events are ordered by ``(time_ns, seq)`` where ``seq`` is a counter that
increases with every ``schedule`` call, so events due at the same nanosecond
fire in the order they were scheduled. That tie-break is what makes a run
reproducible bit for bit: nothing depends on hash order, object addresses or
floating-point time.

Cancelling an event only sets a flag on its handle (lazy deletion); the heap
entry is dropped when it reaches the top. When cancelled entries outnumber
live ones the heap is rebuilt without them, so protocols that start and cancel
many timers do not make the heap grow without bound.

Two interchangeable kernels implement this:

* ``PyEventKernel`` here, in pure Python (``heapq`` of
  ``(time, seq, handle, callback, args)`` tuples) — the reference twin;
* ``CyEventKernel`` in ``_kernel.pyx``, the same algorithm over a C array —
  used by default when the extension is built.

``Simulator`` (the public face) combines one of them with named random
streams and the coroutine runner.
"""
from __future__ import annotations

from abc import ABCMeta
from heapq import heapify, heappop, heappush
from operator import index as _as_index
from typing import Any, Callable

from qstack.core.kernels import pure_python, require_cython

__all__ = [
    "EventHandle",
    "PyEventKernel",
    "CyEventKernel",
    "HAVE_CYTHON",
    "kernel_class",
    "callback_name",
]

#: Rebuild the heap once this many cancelled entries are waiting in it *and*
#: they outnumber the live ones. Below the floor a rebuild costs more than the
#: dead entries do.
COMPACT_MIN_DEAD = 256


def callback_name(callback: Any) -> str:
    """A stable, address-free name for ``callback``, as recorded in traces.

    ``functools.partial`` objects and other callables without a
    ``__qualname__`` are named by their type, never by ``repr`` (which would
    contain a memory address and differ between runs).
    """
    name = getattr(callback, "__qualname__", None)
    if isinstance(name, str):
        return name
    return type(callback).__qualname__


def _as_ns(value: Any, what: str) -> int:
    """Coerce ``value`` to an exact integer number of nanoseconds.

    Accepts ``int`` and integer-like objects (numpy integers); refuses floats,
    because a float clock would break the deterministic ordering.
    """
    try:
        return int(_as_index(value))
    except TypeError:
        raise TypeError(
            f"{what} must be an integer number of nanoseconds, not {type(value).__name__}"
        ) from None


class EventHandle(metaclass=ABCMeta):
    """A scheduled event, as returned by ``schedule`` and ``schedule_at``.

    Attributes (read them, do not assign them):

    * ``time`` — the simulated time in nanoseconds at which it fires;
    * ``seq`` — its insertion number, the tie-break between equal times;
    * ``cancelled`` — ``True`` once ``Simulator.cancel`` took effect on it
      (it was called before the event fired).

    Whether it is still waiting is ``sim.is_pending(handle)``. The handle
    holds no reference to the callback: the kernel keeps that, and drops it
    when the event fires or is discarded.

    The Cython kernel returns its own handle type, registered as a virtual
    subclass, so ``isinstance(h, EventHandle)`` holds for both kernels.
    """

    __slots__ = ("time", "seq", "cancelled", "kernel")

    def __init__(self, time: int, seq: int, kernel: "PyEventKernel") -> None:
        self.time = time
        self.seq = seq
        self.cancelled = False
        self.kernel = kernel  # refuse handles from other simulators in cancel()

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<EventHandle t={self.time}ns seq={self.seq}{state}>"


class PyEventKernel:
    """The event heap and clock in pure Python (the reference twin).

    ``now`` is the current simulated time in nanoseconds (an ``int``); it only
    moves forward, and only inside ``run``.
    """

    def __init__(self) -> None:
        self.now = 0
        self.events_fired = 0
        #: ``None``, or a list that ``run`` appends ``(time_ns, seq, name)`` to
        #: for every fired event (see ``enable_trace``).
        self.trace: list[tuple[int, int, str]] | None = None
        self._heap: list[tuple[int, int, EventHandle, Callable[..., Any], tuple]] = []
        self._next_seq = 0
        self._last_seq = -1  # seq of the last event fired (see is_pending)
        self._dead = 0  # cancelled entries still in the heap
        self._stopping = False  # stop() was called during the run in progress

    # -- scheduling -------------------------------------------------------

    def schedule(self, delay_ns: int, callback: Callable[..., Any], *args: Any) -> EventHandle:
        """Call ``callback(*args)`` ``delay_ns`` nanoseconds from now.

        ``delay_ns`` must be an integer >= 0; a delay of 0 fires after every
        event already due now. Raises ``ValueError`` for a negative delay.
        """
        if delay_ns.__class__ is not int:  # rare path: numpy ints, floats, junk
            delay_ns = _as_ns(delay_ns, "delay_ns")
        if delay_ns < 0:
            raise ValueError(f"delay_ns must be >= 0, got {delay_ns}")
        time = self.now + delay_ns
        seq = self._next_seq
        self._next_seq = seq + 1
        handle = EventHandle(time, seq, self)
        heappush(self._heap, (time, seq, handle, callback, args))
        return handle

    def schedule_at(self, time_ns: int, callback: Callable[..., Any], *args: Any) -> EventHandle:
        """Call ``callback(*args)`` at absolute simulated time ``time_ns``.

        Raises ``ValueError`` if ``time_ns`` is earlier than ``now``.
        """
        time_ns = _as_ns(time_ns, "time_ns")
        if time_ns < self.now:
            raise ValueError(f"time_ns={time_ns} is in the past (now={self.now})")
        return self.schedule(time_ns - self.now, callback, *args)

    def _has_fired(self, handle: EventHandle) -> bool:
        # Events fire in increasing (time, seq) order and every pending event
        # sorts after the last one fired, so "fired" is a comparison with the
        # clock, valid for any handle of this kernel that was not cancelled.
        # (It saves marking every handle as it fires.)
        return handle.time < self.now or (handle.time == self.now and handle.seq <= self._last_seq)

    def is_pending(self, handle: EventHandle) -> bool:
        """True if the event is still waiting to fire (neither fired nor cancelled)."""
        self._check_owner(handle)
        return not handle.cancelled and not self._has_fired(handle)

    def _check_owner(self, handle: EventHandle) -> None:
        if getattr(handle, "kernel", None) is not self:
            raise ValueError("this event handle belongs to another simulator")

    def cancel(self, handle: EventHandle) -> None:
        """Cancel a scheduled event so that it never fires.

        Cancelling an event that already fired or was already cancelled does
        nothing. A handle from another simulator raises ``ValueError``.
        """
        self._check_owner(handle)
        if handle.cancelled or self._has_fired(handle):
            return
        handle.cancelled = True
        self._dead += 1
        if self._dead >= COMPACT_MIN_DEAD and 2 * self._dead > len(self._heap):
            self._compact()

    def _compact(self) -> None:
        # In place: ``run`` holds a reference to the list while callbacks
        # (which may cancel, and so compact) are executing.
        heap = self._heap
        heap[:] = [entry for entry in heap if not entry[2].cancelled]
        heapify(heap)
        self._dead = 0

    # -- inspection -------------------------------------------------------

    @property
    def pending(self) -> int:
        """Number of live (not cancelled) events waiting in the heap."""
        return len(self._heap) - self._dead

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next scheduled event will get: an event's ``seq + 1``
        while nothing was scheduled after it (the driver adds a message to
        the event carrying the one sent just before it on the same link)."""
        return self._next_seq

    @property
    def next_event_time(self) -> int | None:
        """Time in nanoseconds of the next live event, or ``None`` if idle."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heappop(heap)
            self._dead -= 1
        return heap[0][0] if heap else None

    def enable_trace(self) -> list[tuple[int, int, str]]:
        """Start recording ``(time_ns, seq, callback qualname)`` per fired event.

        Returns the list (also available as ``trace``), so two runs can be
        compared entry by entry.
        """
        if self.trace is None:
            self.trace = []
        return self.trace

    # -- the loop ---------------------------------------------------------

    def stop(self) -> None:
        """End the run in progress after the event now firing (``run``
        returns; the clock stays at that event's time, the events still
        scheduled stay). Outside a run it does nothing. Cheaper than a
        ``stop_when`` callable, which is called after every event: the code
        that knows the run is done says so once."""
        self._stopping = True

    def run(
        self,
        until_ns: int | None = None,
        stop_when: Callable[[], bool] | None = None,
        max_events: int | None = None,
    ) -> int:
        """Fire events in ``(time, seq)`` order; return how many fired.

        * ``until_ns`` — fire events due at or before this time, then set
          ``now = until_ns`` (unless stopped earlier by the other limits);
        * ``stop_when`` — a zero-argument callable, checked before the first
          event and after every event; the run stops when it returns true;
        * ``max_events`` — stop after firing this many events;
        * a callback calling :meth:`stop` ends the run after it returns.

        With none of them, run until no events are left. An exception raised
        by a callback propagates out of ``run``, leaving the kernel consistent
        (that event counts as fired, later events stay scheduled).
        """
        if until_ns is not None:
            until_ns = _as_ns(until_ns, "until_ns")
            if until_ns < self.now:
                raise ValueError(f"until_ns={until_ns} is in the past (now={self.now})")
        if max_events is not None:
            max_events = _as_ns(max_events, "max_events")
            if max_events <= 0:
                return 0
        if stop_when is not None and stop_when():
            return 0

        heap = self._heap
        trace = self.trace
        fired = 0
        reached_horizon = True  # false when stop_when / max_events / stop() ended the run
        self._stopping = False
        if until_ns is None and stop_when is None and max_events is None and trace is None:
            # The common "run until idle" case, kept free of per-event checks.
            while heap:
                time, seq, handle, callback, args = heappop(heap)
                if handle.cancelled:
                    self._dead -= 1
                    continue
                self.now = time
                self._last_seq = seq
                fired += 1
                self.events_fired += 1
                callback(*args)
                if self._stopping:
                    self._stopping = False
                    break
            return fired

        while heap:
            entry = heappop(heap)
            time = entry[0]
            if until_ns is not None and time > until_ns:
                heappush(heap, entry)  # not due yet: put it back
                break
            _, seq, handle, callback, args = entry
            if handle.cancelled:
                self._dead -= 1
                continue
            self.now = time
            self._last_seq = seq
            fired += 1
            self.events_fired += 1
            if trace is not None:
                trace.append((time, seq, callback_name(callback)))
            callback(*args)
            if self._stopping:
                self._stopping = False
                reached_horizon = False
                break
            if stop_when is not None and stop_when():
                reached_horizon = False
                break
            if fired == max_events:
                reached_horizon = False
                break
        if until_ns is not None and reached_horizon:
            self.now = until_ns
        return fired


# -- the Cython twin --------------------------------------------------------

try:
    if pure_python():
        raise ImportError("QSTACK_PURE_PYTHON=1")
    from qstack.sim._kernel import CyEventHandle, CyEventKernel
except ImportError as _exc:  # not built (e.g. a source checkout)
    if require_cython():
        raise ImportError(
            "QSTACK_REQUIRE_CYTHON=1 but the Cython kernel qstack.sim._kernel is not "
            "built; run `python setup.py build_ext --inplace` or `pip install .` "
            f"(import failed with: {_exc})"
        ) from _exc
    CyEventHandle = None  # type: ignore[assignment,misc]
    CyEventKernel = None  # type: ignore[assignment,misc]
    HAVE_CYTHON = False
else:
    EventHandle.register(CyEventHandle)
    HAVE_CYTHON = True


def kernel_class(backend: str = "auto") -> type:
    """The kernel class for ``backend``: ``"python"``, ``"cython"`` or ``"auto"``.

    ``"auto"`` picks Cython when it is built. Asking for ``"cython"`` when it
    is not built raises ``ImportError``.
    """
    if backend == "python":
        return PyEventKernel
    if backend == "cython":
        if not HAVE_CYTHON:
            raise ImportError("backend='cython' requested but qstack.sim._kernel is not built")
        return CyEventKernel
    if backend == "auto":
        return CyEventKernel if HAVE_CYTHON else PyEventKernel
    raise ValueError(f"backend must be 'python', 'cython' or 'auto', not {backend!r}")
