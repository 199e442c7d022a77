"""The emulation's clock: the network's model time over real time, and a timer heap.

Every process of an emulated network (physics server, node daemons,
applications) reads the same clock: ``time.monotonic_ns()`` is one clock for
all processes of a machine (Linux ``CLOCK_MONOTONIC``), and the run file
gives the moment that is model time 0 (``epoch_ns``) and the time scale
(real seconds per model second; ``--time-scale 10`` runs a network ten times
slower than its physics, for a long fibre on a fast machine). Model time is
what the protocols see, in integer nanoseconds, exactly as in the simulator.

:class:`RealClock` is also the scheduler the sans-I/O objects need
(``now``, ``schedule_at(time_ns, fn, *args) -> handle``, ``cancel(handle)``:
the interface :class:`~qstack.physical.heralding.HeraldingStation` takes),
run by :meth:`RealClock.run` in a trio task. A timer fires as soon as its
time has come; the operating system wakes a process a little late (tens of
microseconds to a millisecond), and how late is measured: ``late_ns_max``
and ``late_ns_total`` over ``fired`` timers (model nanoseconds), which the
emulation reports as how far behind real time it ran.
"""
from __future__ import annotations

import heapq
import time
from typing import Any, Callable

import trio

__all__ = ["RealClock", "model_now_ns"]


def model_now_ns(epoch_ns: int, time_scale: float) -> int:
    """Model time now, integer nanoseconds, for a network started at
    ``epoch_ns`` (``time.monotonic_ns()``) running ``time_scale`` times slower
    than its physics."""
    return int((time.monotonic_ns() - epoch_ns) / time_scale)


class RealClock:
    """Model time of a network (``epoch_ns``, ``time_scale``) and timers on it.

    ``schedule_at(at_ns, fn, *args)`` calls ``fn(*args)`` once model time has
    reached ``at_ns`` (in order of time, then of scheduling); it returns a
    handle for :meth:`cancel`. Callbacks run in the clock's task
    (:meth:`run`), one after the other; one that raises is logged by
    ``on_error`` and the clock goes on.
    """

    def __init__(self, epoch_ns: int, time_scale: float = 1.0,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.epoch_ns = int(epoch_ns)
        self.time_scale = float(time_scale)
        self.on_error = on_error
        self._heap: list[list] = []
        self._seq = 0
        self._wake: trio.Event | None = None
        self._next_at: float = float("inf")
        self.fired = 0
        self.late_ns_total = 0
        self.late_ns_max = 0

    @property
    def now(self) -> int:
        """Model time now (ns)."""
        return model_now_ns(self.epoch_ns, self.time_scale)

    def real_ns(self, model_ns: int) -> int:
        """The ``time.monotonic_ns()`` reading at which model time is ``model_ns``."""
        return self.epoch_ns + int(model_ns * self.time_scale)

    def schedule_at(self, at_ns: int, fn: Callable, *args: Any) -> list:
        self._seq += 1
        entry = [int(at_ns), self._seq, fn, args, True]
        heapq.heappush(self._heap, entry)
        if at_ns < self._next_at and self._wake is not None:
            self._wake.set()
        return entry

    def schedule(self, delay_ns: int, fn: Callable, *args: Any) -> list:
        """``fn(*args)`` ``delay_ns`` model nanoseconds from now."""
        return self.schedule_at(self.now + max(0, int(delay_ns)), fn, *args)

    def cancel(self, handle: Any) -> None:
        if handle is not None:
            handle[4] = False

    @property
    def pending(self) -> int:
        return sum(1 for e in self._heap if e[4])

    def run_due(self) -> int:
        """Fire every timer whose time has come; the number fired."""
        heap = self._heap
        n = 0
        now = self.now
        while heap and heap[0][0] <= now:
            at, _seq, fn, args, alive = heapq.heappop(heap)
            if not alive:
                continue
            late = now - at
            self.late_ns_total += late
            if late > self.late_ns_max:
                self.late_ns_max = late
            n += 1
            try:
                fn(*args)
            except Exception as exc:       # a callback's bug must not stop the clock
                if self.on_error is None:
                    raise
                self.on_error(exc)
            if n % 64 == 0:
                now = self.now
        self.fired += n
        return n

    async def run(self) -> None:
        """Fire timers as their times come, for ever (cancel the task to stop)."""
        while True:
            self.run_due()
            heap = self._heap
            while heap and not heap[0][4]:
                heapq.heappop(heap)
            self._wake = trio.Event()
            if heap:
                self._next_at = heap[0][0]
                wait_s = (self.real_ns(heap[0][0]) - time.monotonic_ns()) / 1e9
                if wait_s <= 0:
                    await trio.lowlevel.checkpoint()
                    continue
                with trio.move_on_after(wait_s):
                    await self._wake.wait()
            else:
                self._next_at = float("inf")
                await self._wake.wait()
