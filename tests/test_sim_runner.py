"""The coroutine runner: tasks, sleeps, futures, mailboxes, timeouts, failures."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.sim import (
    HAVE_CYTHON,
    InvalidStateError,
    Mailbox,
    MailboxEmpty,
    SimCancelledError,
    SimFuture,
    SimTask,
    SimTimeout,
    Simulator,
)


@pytest.fixture(params=["python", "cython"])
def sim(request):
    if request.param == "cython" and not HAVE_CYTHON:
        pytest.skip("Cython kernel not built")
    return Simulator(seed=1, backend=request.param)


# -- tasks and sleep -------------------------------------------------------------


def test_spawn_is_scheduled_not_run_inline(sim):
    log = []

    async def worker():
        log.append(("start", sim.now))

    sim.schedule(5, lambda: sim.spawn(worker()))
    sim.run(until_ns=4)
    assert log == []
    sim.run()
    assert log == [("start", 5)]


def test_spawn_returns_a_task_that_starts_after_events_already_due():
    sim = Simulator(seed=1)
    log = []

    async def worker():
        log.append("task")

    task = sim.spawn(worker(), name="w")
    sim.schedule(0, log.append, "callback")
    assert isinstance(task, SimTask) and isinstance(task, SimFuture)
    assert task.name == "w" and not task.done() and log == []
    sim.run()
    assert log == ["task", "callback"]  # spawned first, so it runs first
    assert task.done() and task.result() is None


def test_sleep_orders_wakeups_by_time_then_spawn_order(sim):
    woke = []

    async def sleeper(name, delay):
        await sim.sleep(delay)
        woke.append((sim.now, name))

    for name, delay in [("a", 30), ("b", 10), ("c", 20), ("d", 10), ("e", 0)]:
        sim.spawn(sleeper(name, delay))
    sim.run()
    assert woke == [(0, "e"), (10, "b"), (10, "d"), (20, "c"), (30, "a")]


def test_sleep_accumulates_time(sim):
    async def walker():
        for step in (1, 2, 3, 0, 4):
            await sim.sleep(step)
        return sim.now

    assert sim.run_until_complete(walker()) == 10
    assert sim.now == 10


def test_negative_or_fractional_sleep_is_refused(sim):
    with pytest.raises(ValueError):
        sim.sleep(-1)
    with pytest.raises(TypeError):
        sim.sleep(0.5)

    async def bad():
        await sim.sleep(-5)

    with pytest.raises(ValueError):
        sim.run_until_complete(bad())


def test_task_awaiting_task(sim):
    async def child(x):
        await sim.sleep(7)
        return x * 2

    async def parent():
        first = sim.spawn(child(3))
        second = sim.spawn(child(4))
        return await first + await second, sim.now

    assert sim.run_until_complete(parent()) == (14, 7)


def test_awaiting_a_finished_task_returns_at_once(sim):
    async def quick():
        return "v"

    async def main():
        task = sim.spawn(quick())
        await sim.sleep(10)
        assert task.done()
        return await task

    assert sim.run_until_complete(main()) == "v"


# -- futures ------------------------------------------------------------------------


def test_future_set_from_a_callback_wakes_the_task(sim):
    fut = sim.future()
    sim.schedule(25, fut.set_result, "ready")

    async def waiter():
        value = await fut
        return value, sim.now

    assert sim.run_until_complete(waiter()) == ("ready", 25)


def test_future_exception_is_raised_in_the_awaiting_task(sim):
    fut = sim.future()
    sim.schedule(3, fut.set_exception, KeyError("k"))

    async def waiter():
        with pytest.raises(KeyError):
            await fut
        return "caught"

    assert sim.run_until_complete(waiter()) == "caught"


def test_future_state_errors(sim):
    fut = sim.future()
    assert not fut.done()
    with pytest.raises(InvalidStateError):
        fut.result()
    with pytest.raises(InvalidStateError):
        fut.exception()
    fut.set_result(1)
    with pytest.raises(InvalidStateError):
        fut.set_result(2)
    with pytest.raises(InvalidStateError):
        fut.set_exception(ValueError())
    assert fut.result() == 1 and fut.exception() is None
    assert not fut.cancel()


def test_done_callbacks_run_as_events(sim):
    fut = sim.future()
    seen = []
    fut.add_done_callback(lambda f: seen.append((sim.now, f.result())))
    sim.schedule(4, fut.set_result, "x")
    sim.run()
    assert seen == [(4, "x")]
    fut.add_done_callback(lambda f: seen.append("late"))  # already done: next event
    assert seen == [(4, "x")]
    sim.run()
    assert seen[-1] == "late"


def test_many_tasks_waiting_on_one_future_wake_in_order(sim):
    fut = sim.future()
    order = []

    async def waiter(i):
        order.append((i, await fut))

    for i in range(5):
        sim.spawn(waiter(i))
    sim.schedule(9, fut.set_result, "go")
    sim.run()
    assert order == [(i, "go") for i in range(5)]


# -- mailboxes ------------------------------------------------------------------------


def test_mailbox_is_fifo_and_put_works_from_callbacks(sim):
    box = sim.mailbox()
    assert isinstance(box, Mailbox)
    for t, item in [(5, "a"), (5, "b"), (8, "c")]:
        sim.schedule(t, box.put, item)

    async def reader():
        got = []
        for _ in range(3):
            got.append((await box.get(), sim.now))
        return got

    assert sim.run_until_complete(reader()) == [("a", 5), ("b", 5), ("c", 8)]


def test_mailbox_get_returns_at_once_when_items_wait(sim):
    box = sim.mailbox()
    box.put(1)
    box.put(2)
    assert len(box) == 2

    async def reader():
        return [await box.get(), await box.get()], sim.now, sim.events_fired

    # one event: the task's first step; no suspension for queued items
    assert sim.run_until_complete(reader()) == ([1, 2], 0, 1)


def test_mailbox_get_nowait(sim):
    box = sim.mailbox("inbox")
    with pytest.raises(MailboxEmpty):
        box.get_nowait()
    box.put("x")
    assert box.get_nowait() == "x" and box.empty()


def test_mailbox_getters_are_served_in_arrival_order(sim):
    box = sim.mailbox()
    got = []

    async def reader(i):
        await sim.sleep(i)  # arrive at 0, 1, 2
        got.append((i, await box.get()))

    for i in range(3):
        sim.spawn(reader(i))
    for item in "xyz":
        sim.schedule(10, box.put, item)
    sim.run()
    assert got == [(0, "x"), (1, "y"), (2, "z")]


def test_ping_pong_between_two_tasks(sim):
    to_b, to_a = sim.mailbox(), sim.mailbox()

    async def a():
        for i in range(5):
            to_b.put(i)
            reply = await to_a.get()
            assert reply == i + 100
            await sim.sleep(1)
        return sim.now

    async def b():
        while True:
            msg = await to_b.get()
            to_a.put(msg + 100)

    sim.spawn(b())
    assert sim.run_until_complete(a()) == 5


# -- wait_for --------------------------------------------------------------------


def test_wait_for_success_returns_value_and_cancels_the_timer(sim):
    fut = sim.future()
    sim.schedule(5, fut.set_result, 42)

    async def main():
        value = await sim.wait_for(fut, 100)
        return value, sim.now

    assert sim.run_until_complete(main()) == (42, 5)
    assert sim.pending == 0  # the deadline timer is gone
    sim.run()
    assert sim.now == 5


def test_wait_for_timeout_raises_simtimeout_at_the_deadline(sim):
    box = sim.mailbox()

    async def main():
        with pytest.raises(SimTimeout) as info:
            await sim.wait_for(box.get(), 50)
        assert isinstance(info.value, TimeoutError)
        return sim.now

    assert sim.run_until_complete(main()) == 50


def test_timed_out_get_does_not_swallow_a_later_item(sim):
    box = sim.mailbox()

    async def main():
        with pytest.raises(SimTimeout):
            await sim.wait_for(box.get(), 10)
        sim.schedule(5, box.put, "later")
        return await box.get()

    assert sim.run_until_complete(main()) == "later"


def test_result_at_the_deadline_instant_wins(sim):
    box = sim.mailbox()
    sim.schedule(10, box.put, "just in time")

    async def main():
        return await sim.wait_for(box.get(), 10), sim.now

    assert sim.run_until_complete(main()) == ("just in time", 10)


def test_wait_for_coroutine_timeout_runs_its_cleanup(sim):
    cleaned = []

    async def slow():
        try:
            await sim.sleep(1000)
        finally:
            cleaned.append(sim.now)

    async def main():
        with pytest.raises(SimTimeout):
            await sim.wait_for(slow(), 30)
        return sim.now

    assert sim.run_until_complete(main()) == 30
    assert cleaned == [30]
    assert sim.pending == 0  # the 1000 ns sleep was cancelled


def test_wait_for_a_future_cancels_it_on_timeout(sim):
    fut = sim.future()

    async def main():
        with pytest.raises(SimTimeout):
            await sim.wait_for(fut, 3)

    sim.run_until_complete(main())
    assert fut.cancelled()


def test_wait_for_a_task_cancels_it_on_timeout(sim):
    async def forever():
        await sim.future()

    async def main():
        task = sim.spawn(forever())
        with pytest.raises(SimTimeout):
            await sim.wait_for(task, 3)
        await sim.sleep(0)
        return task

    task = sim.run_until_complete(main())
    sim.run()
    assert task.cancelled()


def test_nested_wait_for_reports_the_right_timeout(sim):
    async def inner():
        with pytest.raises(SimTimeout):
            await sim.wait_for(sim.sleep(100), 10)  # inner deadline first
        await sim.sleep(100)  # then the outer one expires here

    async def main():
        with pytest.raises(SimTimeout):
            await sim.wait_for(inner(), 50)
        return sim.now

    assert sim.run_until_complete(main()) == 50


def test_wait_for_validation(sim):
    async def main():
        with pytest.raises(ValueError):
            await sim.wait_for(sim.future(), -1)
        done = sim.future()
        done.set_result("now")
        assert await sim.wait_for(done, 0) == "now"
        assert await sim.wait_for(sim.sleep(5), None) is None
        return sim.now

    assert sim.run_until_complete(main()) == 5
    with pytest.raises(RuntimeError):
        # outside a task there is no one to cancel at the deadline
        sim.wait_for(sim.future(), 5).send(None)


# -- exceptions and cancellation ------------------------------------------------------


def test_run_until_complete_raises_the_task_exception(sim):
    async def broken():
        await sim.sleep(2)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        sim.run_until_complete(broken())
    assert sim.failed_tasks == []


def test_awaiting_a_failed_task_raises_in_the_awaiter(sim):
    async def broken():
        raise KeyError("x")

    async def main():
        task = sim.spawn(broken())
        with pytest.raises(KeyError):
            await task
        return "handled"

    assert sim.run_until_complete(main()) == "handled"
    assert sim.failed_tasks == []


def test_unawaited_failure_raises_from_run_in_strict_mode(sim):
    async def broken():
        await sim.sleep(1)
        raise ZeroDivisionError("lost")

    sim.spawn(broken(), name="orphan")
    with pytest.raises(ZeroDivisionError) as info:
        sim.run()
    assert any("orphan" in note for note in getattr(info.value, "__notes__", []))
    assert sim.failed_tasks == []  # reported once


def test_unawaited_failure_is_listed_in_non_strict_mode():
    sim = Simulator(seed=1, strict=False)

    async def broken():
        raise RuntimeError("quiet")

    task = sim.spawn(broken())
    sim.run()
    assert sim.failed_tasks == [task]
    assert isinstance(task.exception(), RuntimeError)
    assert sim.failed_tasks == []  # reading the exception clears the report


def test_failure_awaited_later_in_the_same_run_is_not_reported(sim):
    async def broken():
        raise RuntimeError("picked up later")

    async def main():
        task = sim.spawn(broken())
        await sim.sleep(10)  # the task fails meanwhile, unawaited
        with pytest.raises(RuntimeError):
            await task
        return "ok"

    assert sim.run_until_complete(main()) == "ok"
    sim.run()  # nothing left to report


def test_cancelling_a_task(sim):
    cleaned = []

    async def worker():
        try:
            await sim.sleep(100)
        finally:
            cleaned.append(sim.now)

    async def main():
        task = sim.spawn(worker())
        await sim.sleep(10)
        assert task.cancel()
        with pytest.raises(SimCancelledError):
            await task
        assert not task.cancel()  # already finished
        return task

    task = sim.run_until_complete(main())
    assert task.cancelled() and cleaned == [10]
    assert sim.failed_tasks == []  # cancellation is not a failure


def test_task_can_cancel_itself(sim):
    async def quitter():
        sim.current_task.cancel()
        await sim.sleep(5)
        return "unreachable"

    task = sim.spawn(quitter())
    sim.run()
    assert task.cancelled() and sim.now == 0


def test_cancelled_mailbox_reader_does_not_take_items(sim):
    box = sim.mailbox()

    async def reader():
        return await box.get()

    first = sim.spawn(reader())
    second = sim.spawn(reader())
    sim.run()
    first.cancel()
    sim.run()
    box.put("item")
    sim.run()
    assert first.cancelled() and second.result() == "item"


def test_awaiting_a_foreign_object_is_a_clear_error(sim):
    class Foreign:
        def __await__(self):
            yield "asyncio-ish"

    async def main():
        await Foreign()

    with pytest.raises(TypeError, match="not a qstack.sim awaitable"):
        sim.run_until_complete(main())


def test_spawn_needs_a_coroutine(sim):
    async def f():
        pass

    with pytest.raises(TypeError):
        sim.spawn(f)


def test_deadlock_is_reported(sim):
    async def stuck():
        await sim.future()

    with pytest.raises(RuntimeError, match="idle"):
        sim.run_until_complete(stuck())


# -- determinism across kernels ---------------------------------------------------------


def _chatty_network(backend: str, seed: int, n_nodes: int):
    """Nodes sending random messages to each other with random delays and timeouts."""
    sim = Simulator(seed=seed, backend=backend)
    trace = sim.enable_trace()
    boxes = [sim.mailbox(f"n{i}") for i in range(n_nodes)]
    log = []

    async def node(i):
        rng = sim.rng(f"node{i}")
        for _ in range(6):
            dst = int(rng.integers(0, n_nodes))
            sim.schedule(int(rng.integers(0, 20)), boxes[dst].put, (i, sim.now))
            try:
                msg = await sim.wait_for(boxes[i].get(), int(rng.integers(0, 30)))
                log.append((sim.now, i, msg))
            except SimTimeout:
                log.append((sim.now, i, "timeout"))
            await sim.sleep(int(rng.integers(0, 3)))

    for i in range(n_nodes):
        sim.spawn(node(i))
    sim.run()
    return trace, log


@pytest.mark.skipif(not HAVE_CYTHON, reason="Cython kernel not built")
@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), n_nodes=st.integers(1, 6))
def test_coroutine_workloads_trace_identically_on_both_kernels(seed, n_nodes):
    assert _chatty_network("python", seed, n_nodes) == _chatty_network("cython", seed, n_nodes)


def test_coroutine_workload_is_reproducible(sim):
    first = _chatty_network(sim.backend, 5, 4)
    assert first == _chatty_network(sim.backend, 5, 4)
    assert any(entry[2] == "timeout" for entry in first[1])
    assert any(entry[2] != "timeout" for entry in first[1])
