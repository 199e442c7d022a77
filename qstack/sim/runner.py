"""Drive ``async def`` coroutines in simulated time, and the ``Simulator``.

The runner is a small trampoline, not an event loop of its own: each
``SimTask`` steps its coroutine with ``send``/``throw`` from a kernel event,
and the coroutine yields one of two small requests back to it:

* an ``int`` — "wake me this many nanoseconds from now" (``await sim.sleep``);
* a ``SimFuture`` — "wake me when this is done" (``await fut``, ``await task``,
  ``await box.get()``).

Waking is always done by scheduling an event (delay 0), never by resuming a
coroutine from inside whoever completed the future. So a ``box.put`` in one
task never runs another task's code in the middle of it, and the order in
which things happen is exactly the kernel's ``(time, seq)`` order — the
property that keeps a run reproducible.

No asyncio or trio here: their futures and sleeps cannot be awaited in
simulated time, and awaiting one raises a clear ``TypeError`` in the task.
"""
from __future__ import annotations

import gc
import types
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generator, TypeVar

from qstack.core.args import INT64_MAX
from qstack.sim.kernel import EventHandle, PyEventKernel, _as_ns, kernel_class
from qstack.sim.random import RandomStreams

__all__ = [
    "Simulator",
    "SimFuture",
    "SimTask",
    "Mailbox",
    "SimTimeout",
    "SimCancelledError",
    "InvalidStateError",
    "MailboxEmpty",
]

T = TypeVar("T")

_PENDING = 0
_FINISHED = 1
_CANCELLED = 2


class SimTimeout(TimeoutError):
    """``Simulator.wait_for`` ran out of simulated time."""


class SimCancelledError(BaseException):
    """Thrown into a task's coroutine when the task is cancelled.

    A ``BaseException`` (as asyncio's is) so that ``except Exception`` in
    protocol code does not swallow a cancellation by accident.
    """


class InvalidStateError(RuntimeError):
    """A future's result was read before it was set, or set twice."""


class MailboxEmpty(LookupError):
    """``Mailbox.get_nowait`` found no item."""


class SimFuture:
    """A value that will be available later in simulated time.

    Set it once with ``set_result`` or ``set_exception`` (from a callback or
    a task); ``await fut`` inside a task suspends until then. Callbacks added
    with ``add_done_callback`` are called as kernel events (delay 0) with the
    future as the only argument.
    """

    __slots__ = ("_sim", "_state", "_result", "_exception", "_callbacks", "_retrieved")

    def __init__(self, sim: "Simulator") -> None:
        self._sim = sim
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[SimFuture], Any]] = []
        self._retrieved = False

    # -- state ------------------------------------------------------------

    def done(self) -> bool:
        """True once a result or an exception is set, or it was cancelled."""
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> Any:
        """The result; raises the stored exception, or ``InvalidStateError`` if pending."""
        if self._state == _PENDING:
            raise InvalidStateError("result is not set yet")
        self._mark_retrieved()
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        """The stored exception (``None`` on success); ``InvalidStateError`` if pending."""
        if self._state == _PENDING:
            raise InvalidStateError("result is not set yet")
        self._mark_retrieved()
        return self._exception

    def _mark_retrieved(self) -> None:
        self._retrieved = True

    # -- completion -------------------------------------------------------

    def set_result(self, value: Any) -> None:
        if self._state != _PENDING:
            raise InvalidStateError(f"{self!r} is already done")
        self._result = value
        self._state = _FINISHED
        self._fire_callbacks()

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        if self._state != _PENDING:
            raise InvalidStateError(f"{self!r} is already done")
        if isinstance(exception, type):
            exception = exception()
        if isinstance(exception, StopIteration):
            # It would end the awaiting coroutine's generator machinery.
            raise TypeError("StopIteration cannot be set as a future's exception")
        self._exception = exception
        self._state = _FINISHED
        self._fire_callbacks()

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the future; awaiting it raises ``SimCancelledError``.

        Returns ``False`` if it was already done.
        """
        if self._state != _PENDING:
            return False
        self._exception = SimCancelledError(msg) if msg is not None else SimCancelledError()
        self._state = _CANCELLED
        self._fire_callbacks()
        return True

    def _fire_callbacks(self) -> None:
        callbacks = self._callbacks
        if callbacks:
            self._callbacks = []
            schedule = self._sim.schedule
            for callback in callbacks:
                schedule(0, callback, self)

    def add_done_callback(self, callback: Callable[["SimFuture"], Any]) -> None:
        """Call ``callback(self)`` as an event once done (at once if already done)."""
        if self._state != _PENDING:
            self._sim.schedule(0, callback, self)
        else:
            self._callbacks.append(callback)

    def remove_done_callback(self, callback: Callable[["SimFuture"], Any]) -> int:
        """Remove every registration of ``callback``; return how many were removed."""
        before = len(self._callbacks)
        self._callbacks = [cb for cb in self._callbacks if cb != callback]
        return before - len(self._callbacks)

    def __await__(self) -> Generator["SimFuture", None, Any]:
        if self._state == _PENDING:
            yield self  # the task parks on us until we are done
        return self.result()

    def __repr__(self) -> str:
        state = {_PENDING: "pending", _FINISHED: "finished", _CANCELLED: "cancelled"}[self._state]
        return f"<{type(self).__name__} {state}>"


class SimTask(SimFuture):
    """A coroutine running in simulated time; a future for its return value.

    Created by ``Simulator.spawn``. ``await task`` waits for it and returns
    its result or raises its exception. A task whose exception nobody was
    waiting for when it failed is listed in ``Simulator.failed_tasks`` until
    someone reads it (``result()``, ``exception()`` or ``await``).
    """

    __slots__ = ("name", "_coro", "_waiting_on", "_wakeup", "_cancel_requested", "_awaited",
                 "steps")

    def __init__(self, sim: "Simulator", coro: Coroutine[Any, Any, Any], name: str | None) -> None:
        super().__init__(sim)
        self.name = name if name is not None else getattr(coro, "__qualname__", "task")
        self._coro = coro
        self._waiting_on: SimFuture | None = None
        self._wakeup = sim.schedule(0, self._step)
        #: Pending ``SimCancelledError`` to throw at the next suspension, set
        #: when a task cancels itself while it is running.
        self._cancel_requested: SimCancelledError | None = None
        #: True when somebody will read the outcome (an awaiting task,
        #: ``run_until_complete``, a done-callback), so a failure is not lost.
        self._awaited = False
        #: How many times the coroutine has been resumed (progress, for watchdogs).
        self.steps = 0

    def _step(self, thrown: BaseException | None = None) -> None:
        """Advance the coroutine to its next request (runs as a kernel event)."""
        self._wakeup = None
        self.steps += 1
        sim = self._sim
        previous = sim.current_task
        sim.current_task = self
        try:
            if thrown is None:
                request = self._coro.send(None)
            else:
                request = self._coro.throw(thrown)
        except StopIteration as stop:
            self._result = stop.value
            self._state = _FINISHED
            self._fire_callbacks()
            return
        except SimCancelledError as cancelled:
            self._exception = cancelled
            self._state = _CANCELLED
            self._fire_callbacks()
            return
        except Exception as error:
            self._fail(error)
            return
        except BaseException as error:  # KeyboardInterrupt, SystemExit: stop the run
            self._fail(error)
            raise
        finally:
            sim.current_task = previous

        if self._cancel_requested is not None:
            # cancel() was called by this very task while it ran; honour it now.
            thrown, self._cancel_requested = self._cancel_requested, None
            self._wakeup = sim.schedule(0, self._step, thrown)
        elif request.__class__ is int:
            self._wakeup = sim.schedule(request, self._step)
        elif isinstance(request, SimFuture):
            if request._state != _PENDING:
                self._wakeup = sim.schedule(0, self._step)
            else:
                if isinstance(request, SimTask):
                    request._awaited = True
                self._waiting_on = request
                request._callbacks.append(self._resume)
        else:
            error = TypeError(
                f"task {self.name!r} awaited {request!r}, which is not a qstack.sim "
                "awaitable; use sim.sleep, sim.future, Mailbox (asyncio/trio objects "
                "cannot be awaited in simulated time)"
            )
            self._wakeup = sim.schedule(0, self._step, error)

    def _resume(self, future: SimFuture) -> None:
        # Done-callback of the future we parked on.
        if self._waiting_on is future:
            self._waiting_on = None
            self._step()

    def _fail(self, error: BaseException) -> None:
        self._exception = error
        self._state = _FINISHED
        if not self._awaited and not self._callbacks:
            self._sim.failed_tasks.append(self)
        self._fire_callbacks()

    def _mark_retrieved(self) -> None:
        self._retrieved = True
        failed = self._sim.failed_tasks
        if failed and self in failed:
            failed.remove(self)

    def add_done_callback(self, callback: Callable[["SimFuture"], Any]) -> None:
        self._awaited = True
        super().add_done_callback(callback)

    def cancel(self, msg: Any = None) -> bool:
        """Ask the task to stop: ``SimCancelledError`` is thrown into it.

        The coroutine may catch it to clean up. If the task is waiting on a
        plain future, that future is cancelled too (so, e.g., a mailbox does
        not hand an item to a getter that has gone); a task it awaits is left
        running. Returns ``False`` if the task has already finished.
        """
        if self._state != _PENDING:
            return False
        error = SimCancelledError(msg) if msg is not None else SimCancelledError()
        sim = self._sim
        if sim.current_task is self:
            self._cancel_requested = error
            return True
        waiting_on = self._waiting_on
        if waiting_on is not None:
            self._waiting_on = None
            waiting_on.remove_done_callback(self._resume)
            if not isinstance(waiting_on, SimTask):
                waiting_on.cancel()
        if self._wakeup is not None:
            sim.cancel(self._wakeup)
        self._wakeup = sim.schedule(0, self._step, error)
        return True

    @property
    def wakes_at_ns(self) -> int | None:
        """When this task is next stepped (simulated time, ns), if it is
        sleeping or due; None while it is parked on a future or done."""
        wakeup = self._wakeup
        return None if wakeup is None else wakeup.time

    @property
    def waiting_on(self) -> SimFuture | None:
        """The future this task is parked on, if any (for debugging deadlocks)."""
        return self._waiting_on

    def __repr__(self) -> str:
        state = {_PENDING: "pending", _FINISHED: "finished", _CANCELLED: "cancelled"}[self._state]
        return f"<SimTask {self.name!r} {state}>"


class Mailbox:
    """An unbounded FIFO of messages between callbacks and tasks.

    ``put`` is synchronous, so plain kernel callbacks (a fibre delivering a
    message, a timer) can feed tasks. ``await box.get()`` returns at once if
    an item is waiting, and otherwise parks the task; waiting getters are
    served in the order they arrived.
    """

    __slots__ = ("_sim", "_items", "_getters", "name")

    def __init__(self, sim: "Simulator", name: str | None = None) -> None:
        self._sim = sim
        self._items: deque[Any] = deque()
        self._getters: deque[SimFuture] = deque()
        self.name = name

    def put(self, item: Any) -> None:
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if getter._state == _PENDING:  # skip getters that gave up (cancelled)
                getter.set_result(item)
                return
        self._items.append(item)

    @types.coroutine
    def get(self) -> Generator[SimFuture, None, Any]:
        """Await the next item."""
        if self._items:
            return self._items.popleft()
        getter = SimFuture(self._sim)
        self._getters.append(getter)
        yield getter
        return getter.result()

    def get_nowait(self) -> Any:
        """The next item; raises ``MailboxEmpty`` if there is none."""
        if self._items:
            return self._items.popleft()
        raise MailboxEmpty(f"mailbox {self.name or ''} is empty".replace("  ", " "))

    def empty(self) -> bool:
        return not self._items

    def __len__(self) -> int:
        """Number of items waiting to be taken."""
        return len(self._items)

    def __repr__(self) -> str:
        return f"<Mailbox {self.name or ''} items={len(self._items)} getters={len(self._getters)}>"


@types.coroutine
def _sleep_request(delay_ns: int) -> Generator[int, None, None]:
    yield delay_ns


class _Deadline:
    """The timer behind one ``wait_for``: cancels the waiting task when it fires."""

    __slots__ = ("task", "expired")

    def __init__(self, task: SimTask) -> None:
        self.task = task
        self.expired = False

    def expire(self) -> None:
        waiting_on = self.task._waiting_on
        if waiting_on is not None and waiting_on._state != _PENDING:
            # The awaited thing completed at this same instant and the task's
            # wake-up is already queued: completion wins over the deadline
            # (otherwise an item taken from a mailbox would be lost).
            return
        self.expired = True
        self.task.cancel(self)


#: The garbage collector's youngest-generation threshold while a simulation
#: runs (net allocations between young collections; see :meth:`Simulator.run`).
GC_YOUNG_THRESHOLD = 10_000


class Simulator:
    """A deterministic discrete-event simulation: clock, events, randomness, tasks.

    ``Simulator(seed, backend="auto", strict=True)``:

    * ``seed`` — the root of every named random stream (``rng(name)``);
    * ``backend`` — ``"cython"``, ``"python"`` or ``"auto"`` (Cython when
      built); both give identical results;
    * ``strict`` — if true, ``run`` raises the exception of any task that
      failed with nobody awaiting it, so bugs in tasks are loud.

    Time is an ``int`` number of nanoseconds, ``now``. The kernel methods
    (``schedule``, ``schedule_at``, ``cancel``, ``is_pending``, ``run``, ``stop``,
    ``pending``, ``next_seq``, ``events_fired``, ``next_event_time``, ``enable_trace``,
    ``trace``) are documented on ``qstack.sim.kernel.PyEventKernel``.

    The instance is of a concrete subclass that mixes this class with the
    chosen kernel, so kernel calls are direct method calls with no delegation
    layer in the hot path; ``isinstance(sim, Simulator)`` holds.
    """

    # Filled in by the concrete subclasses below.
    _kernel_base: type = PyEventKernel

    if TYPE_CHECKING:  # the kernel's API, for type checkers and editors only
        now: int
        events_fired: int
        trace: list[tuple[int, int, str]] | None

        @property
        def pending(self) -> int: ...
        @property
        def next_event_time(self) -> int | None: ...
        @property
        def next_seq(self) -> int: ...
        def schedule(self, delay_ns: int, callback: Callable[..., Any], *args: Any) -> EventHandle: ...
        def schedule_at(self, time_ns: int, callback: Callable[..., Any], *args: Any) -> EventHandle: ...
        def cancel(self, handle: EventHandle) -> None: ...
        def is_pending(self, handle: EventHandle) -> bool: ...
        def enable_trace(self) -> list[tuple[int, int, str]]: ...
        def stop(self) -> None: ...

    def __new__(cls, seed: int = 0, *, backend: str = "auto", strict: bool = True) -> "Simulator":
        if cls is Simulator:
            cls = _SIMULATOR_CLASSES[kernel_class(backend)]
        return cls._kernel_base.__new__(cls)

    def __init__(self, seed: int = 0, *, backend: str = "auto", strict: bool = True) -> None:
        self._kernel_base.__init__(self)
        self.backend = "cython" if self._kernel_base is not PyEventKernel else "python"
        self.seed = seed
        self.streams = RandomStreams(seed)
        self.strict = strict
        #: Tasks that failed while nobody awaited them and whose exception has
        #: not been read since.
        self.failed_tasks: list[SimTask] = []
        #: The task whose coroutine is executing, or ``None`` in a plain callback.
        self.current_task: SimTask | None = None

    # -- randomness -------------------------------------------------------

    def rng(self, name: str):
        """The named random stream ``name`` (same Generator on every call)."""
        return self.streams.get(name)

    # -- running ----------------------------------------------------------

    def run(
        self,
        until_ns: int | None = None,
        stop_when: Callable[[], bool] | None = None,
        max_events: int | None = None,
    ) -> int:
        """Fire events; see ``PyEventKernel.run``. Returns the number fired.

        In strict mode, afterwards raises the exception of the first task
        that failed unobserved (the task is then no longer listed).

        While it runs, the garbage collector's youngest generation is
        collected every ``GC_YOUNG_THRESHOLD`` net allocations instead of
        every 700 (Python's default; restored afterwards). A run allocates
        and frees millions of short-lived objects (events, actions, messages)
        that reference counting frees at once: the collector, started every
        700 of them, finds almost nothing, yet every tenth young collection
        goes through the older generations and, every so often, through the
        whole network's state (most of the collector's time on a chain of
        1,000 nodes, ~7 % of the run; ~1.5 % with this threshold). Objects
        in reference cycles are still collected, a little later.
        """
        threshold = gc.get_threshold()
        if threshold[0] and threshold[0] < GC_YOUNG_THRESHOLD:
            gc.set_threshold(GC_YOUNG_THRESHOLD, *threshold[1:])
        try:
            fired = self._kernel_base.run(self, until_ns, stop_when, max_events)
        finally:
            if gc.get_threshold()[0] == GC_YOUNG_THRESHOLD:
                gc.set_threshold(*threshold)
        if self.strict and self.failed_tasks:
            task = self.failed_tasks[0]
            error = task.exception()  # marks it retrieved, unlisting it
            assert error is not None
            error.add_note(f"(raised in qstack.sim task {task.name!r}, which nobody awaited)")
            raise error
        return fired

    def run_until_complete(self, coro_or_task: Coroutine[Any, Any, T] | SimTask) -> T:
        """Spawn ``coro`` (or take a task), run until it finishes, return its result.

        Raises the task's exception if it failed, and ``RuntimeError`` if the
        simulation runs out of events first (the task is deadlocked).
        """
        task = coro_or_task if isinstance(coro_or_task, SimTask) else self.spawn(coro_or_task)
        task._awaited = True
        if not task.done():
            self.run(stop_when=task.done)
        if not task.done():
            raise RuntimeError(
                f"simulation went idle at t={self.now}ns before task {task.name!r} finished "
                f"(it waits on {task.waiting_on!r})"
            )
        return task.result()

    # -- coroutines -------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> SimTask:
        """Start ``coro`` as a task at the current simulated time.

        The first step runs as a scheduled event (after the events already
        due now), not inline.
        """
        if not isinstance(coro, Coroutine):
            raise TypeError(f"spawn() needs a coroutine object, got {type(coro).__name__}")
        return SimTask(self, coro, name)

    def sleep(self, delay_ns: int) -> Awaitable[None]:
        """``await sim.sleep(ns)``: resume ``delay_ns`` nanoseconds later (int >= 0).

        Raises ``ValueError`` at the call if the wake-up would be later than
        the kernel's clock can hold (2**63-1 ns), rather than letting the
        kernel fail to schedule it in the middle of the run."""
        if delay_ns.__class__ is not int:
            delay_ns = _as_ns(delay_ns, "delay_ns")
        if delay_ns < 0:
            raise ValueError(f"delay_ns must be >= 0, got {delay_ns}")
        if delay_ns > INT64_MAX - self.now:
            raise ValueError(f"delay_ns={delay_ns} would end after t={INT64_MAX} ns, the "
                             "largest simulated time")
        return _sleep_request(delay_ns)

    def future(self) -> SimFuture:
        """A new pending future bound to this simulator."""
        return SimFuture(self)

    def mailbox(self, name: str | None = None) -> Mailbox:
        """A new empty mailbox bound to this simulator."""
        return Mailbox(self, name)

    async def wait_for(self, awaitable: Awaitable[T], timeout_ns: int | None) -> T:
        """Await ``awaitable`` for at most ``timeout_ns`` nanoseconds.

        On timeout raises ``SimTimeout``, after cancelling what was awaited:
        a coroutine gets ``SimCancelledError`` thrown in (so its ``finally``
        blocks run), a future or task is cancelled. If the result arrives at
        the very nanosecond of the deadline, the result wins.
        ``timeout_ns=None`` waits without limit, and so does a timeout that
        would end after the largest simulated time (2**63-1 ns): it can never
        run out.
        """
        if timeout_ns is None:
            return await awaitable
        if timeout_ns.__class__ is not int:
            timeout_ns = _as_ns(timeout_ns, "timeout_ns")
        if timeout_ns < 0:
            raise ValueError(f"timeout_ns must be >= 0, got {timeout_ns}")
        if timeout_ns > INT64_MAX - self.now:
            return await awaitable
        task = self.current_task
        if task is None:
            raise RuntimeError("wait_for must be awaited inside a task")
        if isinstance(awaitable, SimFuture) and awaitable.done():
            return awaitable.result()
        deadline = _Deadline(task)
        timer = self.schedule(timeout_ns, deadline.expire)
        try:
            return await awaitable
        except SimCancelledError as cancelled:
            if deadline.expired and cancelled.args and cancelled.args[0] is deadline:
                if isinstance(awaitable, SimTask):
                    awaitable.cancel()
                raise SimTimeout(f"timed out after {timeout_ns} ns") from None
            raise
        finally:
            self.cancel(timer)


# The two concrete simulator classes: the runner mixed with one kernel each.
# ``Simulator`` comes first in the bases so that its ``run`` (strict-mode
# check) wraps the kernel's.


class _PySimulator(Simulator, PyEventKernel):
    _kernel_base = PyEventKernel


_SIMULATOR_CLASSES: dict[type, type] = {PyEventKernel: _PySimulator}

try:
    from qstack.sim.kernel import CyEventKernel as _CyEventKernel

    if _CyEventKernel is not None:

        class _CySimulator(Simulator, _CyEventKernel):  # type: ignore[misc,valid-type]
            _kernel_base = _CyEventKernel

        _SIMULATOR_CLASSES[_CyEventKernel] = _CySimulator
except ImportError:  # pragma: no cover - kernel.py already decided
    pass
