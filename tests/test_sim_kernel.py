"""The discrete-event kernel: ordering, cancellation, run limits, random streams.

Every behavioural test runs on both kernels (pure Python and Cython); a
separate property test checks that the two produce identical event traces
for the same random workload.
"""
from __future__ import annotations

import os
import random as pyrandom
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.sim import HAVE_CYTHON, EventHandle, RandomStreams, Simulator
from qstack.sim.kernel import COMPACT_MIN_DEAD, callback_name, kernel_class

ROOT = Path(__file__).resolve().parents[1]

BACKENDS = ["python", "cython"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "cython" and not HAVE_CYTHON:
        pytest.skip("Cython kernel not built")
    return request.param


def available_backends():
    return BACKENDS if HAVE_CYTHON else ["python"]


# -- basics -----------------------------------------------------------------


def test_clock_starts_at_zero_and_is_an_int(backend):
    sim = Simulator(seed=1, backend=backend)
    assert sim.now == 0 and type(sim.now) is int
    assert sim.pending == 0 and sim.events_fired == 0
    assert sim.backend == backend
    assert isinstance(sim, Simulator)


def test_schedule_fires_at_the_right_time(backend):
    sim = Simulator(seed=1, backend=backend)
    seen = []
    sim.schedule(30, lambda: seen.append(("a", sim.now)))
    sim.schedule(10, lambda tag: seen.append((tag, sim.now)), "b")
    sim.schedule_at(20, lambda: seen.append(("c", sim.now)))
    assert sim.pending == 3
    assert sim.run() == 3
    assert seen == [("b", 10), ("c", 20), ("a", 30)]
    assert sim.now == 30 and type(sim.now) is int
    assert sim.events_fired == 3 and sim.pending == 0


def test_handles_expose_time_and_state(backend):
    sim = Simulator(seed=1, backend=backend)
    handle = sim.schedule(7, lambda: None)
    assert isinstance(handle, EventHandle)
    assert handle.time == 7 and handle.seq == 0 and not handle.cancelled
    assert sim.is_pending(handle)
    sim.run()
    assert not sim.is_pending(handle) and not handle.cancelled


def test_negative_delay_and_past_times_are_refused(backend):
    sim = Simulator(seed=1, backend=backend)
    with pytest.raises(ValueError):
        sim.schedule(-1, lambda: None)
    sim.schedule(10, lambda: None)
    sim.run()
    with pytest.raises(ValueError):
        sim.schedule_at(9, lambda: None)
    with pytest.raises(ValueError):
        sim.run(until_ns=5)
    assert sim.pending == 0
    sim.schedule_at(10, lambda: None)  # "now" itself is allowed
    assert sim.pending == 1


def test_non_integer_times_are_refused_but_numpy_ints_accepted(backend):
    sim = Simulator(seed=1, backend=backend)
    with pytest.raises(TypeError):
        sim.schedule(1.5, lambda: None)
    with pytest.raises(TypeError):
        sim.schedule_at(2.0, lambda: None)
    handle = sim.schedule(np.int64(4), lambda: None)
    sim.run()
    assert not sim.is_pending(handle) and sim.now == 4 and type(sim.now) is int


def test_zero_delay_fires_after_events_already_due_now(backend):
    sim = Simulator(seed=1, backend=backend)
    order = []

    def first():
        order.append("first")
        sim.schedule(0, lambda: order.append("scheduled by first"))

    sim.schedule(5, first)
    sim.schedule(5, lambda: order.append("second"))
    sim.run()
    assert order == ["first", "second", "scheduled by first"]


def test_simultaneous_events_fire_in_insertion_order(backend):
    sim = Simulator(seed=1, backend=backend)
    order = []
    rng = pyrandom.Random(3)
    times = [rng.choice([5, 10, 15]) for _ in range(300)]
    for i, time in enumerate(times):
        if i % 2:
            sim.schedule(time, order.append, i)
        else:
            sim.schedule_at(time, order.append, i)
    sim.run()
    expected = sorted(range(len(times)), key=lambda i: (times[i], i))
    assert order == expected


# -- run limits ----------------------------------------------------------------


def test_run_until_fires_events_at_the_horizon_and_sets_now(backend):
    sim = Simulator(seed=1, backend=backend)
    fired = []
    for t in (10, 20, 30):
        sim.schedule(t, fired.append, t)
    assert sim.run(until_ns=20) == 2
    assert fired == [10, 20] and sim.now == 20 and sim.pending == 1
    assert sim.run(until_ns=25) == 0
    assert sim.now == 25
    # scheduling is relative to the advanced clock
    sim.schedule(1, fired.append, "late")
    assert sim.run(until_ns=100) == 2
    assert fired == [10, 20, "late", 30]  # "late" is due at 26
    assert sim.now == 100


def test_run_until_with_no_events_advances_the_clock(backend):
    sim = Simulator(seed=1, backend=backend)
    assert sim.run(until_ns=1234) == 0
    assert sim.now == 1234


def test_run_until_idle_returns_count(backend):
    sim = Simulator(seed=1, backend=backend)

    def chain(n):
        if n:
            sim.schedule(3, chain, n - 1)

    sim.schedule(0, chain, 9)
    assert sim.run() == 10
    assert sim.now == 27


def test_stop_when_is_checked_after_every_event(backend):
    sim = Simulator(seed=1, backend=backend)
    count = []
    for t in range(1, 11):
        sim.schedule(t, count.append, t)
    assert sim.run(stop_when=lambda: len(count) == 4) == 4
    assert sim.now == 4 and sim.pending == 6
    # already true: nothing fires
    assert sim.run(stop_when=lambda: True) == 0
    # stop_when wins over until_ns: the clock stays at the stopping event
    assert sim.run(until_ns=100, stop_when=lambda: len(count) == 5) == 1
    assert sim.now == 5


def test_max_events(backend):
    sim = Simulator(seed=1, backend=backend)
    for t in range(10):
        sim.schedule(t, lambda: None)
    assert sim.run(max_events=3) == 3
    assert sim.now == 2 and sim.pending == 7
    assert sim.run(max_events=0) == 0
    assert sim.run(until_ns=50, max_events=100) == 7
    assert sim.now == 50
    assert sim.events_fired == 10


def test_exception_in_callback_propagates_and_kernel_stays_usable(backend):
    sim = Simulator(seed=1, backend=backend)
    fired = []

    def boom():
        raise RuntimeError("boom")

    sim.schedule(1, fired.append, 1)
    sim.schedule(2, boom)
    sim.schedule(3, fired.append, 3)
    with pytest.raises(RuntimeError, match="boom"):
        sim.run()
    assert sim.now == 2 and sim.events_fired == 2 and sim.pending == 1
    sim.run()
    assert fired == [1, 3]


# -- cancellation ---------------------------------------------------------------


def test_cancelled_events_never_fire_and_cancel_is_idempotent(backend):
    sim = Simulator(seed=1, backend=backend)
    fired = []
    keep = sim.schedule(5, fired.append, "keep")
    drop = sim.schedule(5, fired.append, "drop")
    sim.cancel(drop)
    sim.cancel(drop)  # twice: no-op
    assert drop.cancelled and sim.pending == 1
    sim.run()
    assert fired == ["keep"]
    sim.cancel(keep)  # after firing: no-op
    assert not keep.cancelled and not sim.is_pending(keep)
    assert sim.pending == 0


def test_handles_of_another_simulator_are_refused(backend):
    sim, other = Simulator(seed=1, backend=backend), Simulator(seed=1, backend=backend)
    handle = other.schedule(1, lambda: None)
    with pytest.raises(ValueError):
        sim.cancel(handle)
    with pytest.raises((ValueError, TypeError)):
        sim.is_pending(handle)
    assert other.is_pending(handle)


def test_event_scheduled_now_after_run_until_is_pending(backend):
    sim = Simulator(seed=1, backend=backend)
    early = sim.schedule(3, lambda: None)
    sim.run(until_ns=10)
    late = sim.schedule(0, lambda: None)
    assert not sim.is_pending(early) and sim.is_pending(late)
    sim.cancel(late)
    assert late.cancelled and sim.pending == 0


def test_callback_can_cancel_a_later_event_at_the_same_time(backend):
    sim = Simulator(seed=1, backend=backend)
    fired = []
    victim = None

    def killer():
        fired.append("killer")
        sim.cancel(victim)

    sim.schedule(4, killer)
    victim = sim.schedule(4, fired.append, "victim")
    sim.run()
    assert fired == ["killer"]


def test_mass_cancellation_compacts_the_heap(backend):
    sim = Simulator(seed=1, backend=backend)
    fired = []
    handles = [sim.schedule(i % 97, fired.append, i) for i in range(4 * COMPACT_MIN_DEAD)]
    for i, handle in enumerate(handles):
        if i % 5:
            sim.cancel(handle)
    survivors = [i for i in range(len(handles)) if i % 5 == 0]
    assert sim.pending == len(survivors)
    sim.run()
    assert fired == sorted(survivors, key=lambda i: (i % 97, i))
    assert sim.pending == 0


# A tiny program language for the reference-model test:
#   ("schedule", delay) | ("cancel", k) | ("until", dt) | ("max", n)
_ops = st.one_of(
    st.tuples(st.just("schedule"), st.integers(0, 40)),
    st.tuples(st.just("cancel"), st.integers(0, 10_000)),
    st.tuples(st.just("until"), st.integers(0, 30)),
    st.tuples(st.just("max"), st.integers(0, 5)),
)


@settings(max_examples=150)
@given(program=st.lists(_ops, max_size=80), backend_name=st.sampled_from(available_backends()))
def test_schedule_cancel_programs_match_a_reference_model(program, backend_name):
    sim = Simulator(seed=0, backend=backend_name)
    fired = []
    handles = []
    # the model: one record per scheduled event
    model = []  # dicts: time, seq, state in {"pending", "cancelled", "fired"}
    model_now = 0
    model_fired = []

    def model_fire(limit_time=None, limit_count=None):
        nonlocal model_now
        live = sorted(
            (e for e in model if e["state"] == "pending"), key=lambda e: (e["time"], e["seq"])
        )
        count = 0
        for event in live:
            if limit_time is not None and event["time"] > limit_time:
                break
            if limit_count is not None and count == limit_count:
                break
            event["state"] = "fired"
            model_now = event["time"]
            model_fired.append(event["seq"])
            count += 1
        return count

    for op, arg in program:
        if op == "schedule":
            seq = len(model)
            handles.append(sim.schedule(arg, fired.append, seq))
            model.append({"time": model_now + arg, "seq": seq, "state": "pending"})
        elif op == "cancel":
            if not handles:
                continue
            k = arg % len(handles)
            sim.cancel(handles[k])
            if model[k]["state"] == "pending":
                model[k]["state"] = "cancelled"
        elif op == "until":
            target = model_now + arg
            assert sim.run(until_ns=sim.now + arg) == model_fire(limit_time=target)
            model_now = target
        else:
            expected = model_fire(limit_count=arg) if arg else 0
            assert sim.run(max_events=arg) == expected
        assert sim.now == model_now
        assert sim.pending == sum(e["state"] == "pending" for e in model)
        assert fired == model_fired
        assert [sim.is_pending(h) for h in handles] == [e["state"] == "pending" for e in model]
    for handle, event in zip(handles, model):
        assert handle.cancelled == (event["state"] == "cancelled")
        assert sim.is_pending(handle) == (event["state"] == "pending")
        assert handle.time == event["time"]
    # draining fires exactly the live events, in (time, seq) order
    sim.run()
    model_fire()
    assert fired == model_fired
    assert all(event["state"] != "pending" for event in model)


# -- determinism and the Cython twin -------------------------------------------


def _workload(sim: Simulator, n_roots: int, seed_stream: str = "workload") -> None:
    """A self-feeding random workload: events spawn and cancel other events.

    Draws all its choices from the simulator's named stream, so the trace is
    a function of the simulator's seed alone.
    """
    rng = sim.rng(seed_stream)
    live = []

    def pick_delay():
        # Many ties (0 and small values) to exercise the seq tie-break.
        return int(rng.choice([0, 0, 1, 1, 2, 5, int(rng.integers(0, 1000))]))

    def arrival(depth):
        for _ in range(int(rng.integers(0, 3)) if depth < 6 else 0):
            live.append(sim.schedule(pick_delay(), arrival if rng.random() < 0.6 else timer, depth + 1))
        if live and rng.random() < 0.3:
            sim.cancel(live.pop(int(rng.integers(0, len(live)))))

    def timer(depth):
        if rng.random() < 0.5:
            live.append(sim.schedule_at(sim.now + pick_delay(), arrival, depth + 1))

    for _ in range(n_roots):
        live.append(sim.schedule(pick_delay(), arrival, 0))


def _trace_of(seed: int, backend_name: str, n_roots: int = 50, until=None):
    sim = Simulator(seed=seed, backend=backend_name)
    trace = sim.enable_trace()
    _workload(sim, n_roots)
    sim.run(until_ns=until)
    return trace, sim.now, sim.events_fired


def test_same_seed_gives_identical_trace(backend):
    first = _trace_of(7, backend)
    second = _trace_of(7, backend)
    assert first == second
    assert len(first[0]) > 100
    assert _trace_of(8, backend)[0] != first[0]


def test_trace_records_time_seq_and_qualname(backend):
    sim = Simulator(seed=1, backend=backend)
    trace = sim.enable_trace()

    def tick():
        pass

    sim.schedule(3, tick)
    sim.schedule(3, print)
    sim.run()
    assert trace == [
        (3, 0, tick.__qualname__),
        (3, 1, "print"),
    ]
    assert sim.trace is trace


def test_callback_name_has_no_addresses():
    import functools

    assert callback_name(functools.partial(print, 1)) == "partial"
    assert callback_name(print) == "print"


@pytest.mark.skipif(not HAVE_CYTHON, reason="Cython kernel not built")
@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), n_roots=st.integers(1, 80), until=st.none() | st.integers(0, 3000))
def test_cython_kernel_and_python_twin_give_identical_traces(seed, n_roots, until):
    assert _trace_of(seed, "python", n_roots, until) == _trace_of(seed, "cython", n_roots, until)


@pytest.mark.skipif(not HAVE_CYTHON, reason="Cython kernel not built")
def test_twins_agree_through_heavy_cancellation():
    # Enough cancellations to trigger several compactions in both kernels.
    traces = []
    for name in ("python", "cython"):
        sim = Simulator(seed=11, backend=name)
        trace = sim.enable_trace()
        rng = sim.rng("cancel-storm")
        handles = []

        def noop():
            pass

        for _ in range(20 * COMPACT_MIN_DEAD):
            handles.append(sim.schedule(int(rng.integers(0, 500)), noop))
            if rng.random() < 0.85:
                sim.cancel(handles[int(rng.integers(0, len(handles)))])
        pending = sim.pending
        assert sim.run() == pending
        traces.append(trace)
    assert traces[0] == traces[1]


def test_backend_selection():
    assert Simulator(seed=1, backend="python").backend == "python"
    assert Simulator(seed=1).backend == ("cython" if HAVE_CYTHON else "python")
    with pytest.raises(ValueError):
        Simulator(seed=1, backend="fortran")
    with pytest.raises(ValueError):
        kernel_class("fortran")


_BLOCK_EXTENSION = textwrap.dedent(
    """
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "qstack.sim._kernel":
                raise ImportError("blocked for the test")
    sys.meta_path.insert(0, Block())
    """
)


def _python_without_extension(code: str, require: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["QSTACK_REQUIRE_CYTHON"] = "1" if require else "0"
    env.pop("QSTACK_PURE_PYTHON", None)     # (the switch would hide the missing extension)
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_EXTENSION + code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_extension_falls_back_to_python():
    result = _python_without_extension(
        "import qstack.sim as s\n"
        "assert not s.HAVE_CYTHON\n"
        "assert s.Simulator(1).backend == 'python'\n"
        "try:\n    s.Simulator(1, backend='cython')\nexcept ImportError:\n    print('ok')\n",
        require=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_missing_extension_is_an_error_when_required():
    result = _python_without_extension("import qstack.sim\n", require=True)
    assert result.returncode != 0
    assert "QSTACK_REQUIRE_CYTHON" in result.stderr and "ImportError" in result.stderr


# -- named random streams ---------------------------------------------------------


def _draws(streams: RandomStreams, name: str, n: int = 5):
    return streams.get(name).random(n).tolist()


def test_stream_is_the_same_object_on_repeated_calls():
    sim = Simulator(seed=5)
    assert sim.rng("a") is sim.rng("a")
    assert isinstance(sim.rng("a"), np.random.Generator)


def test_streams_do_not_depend_on_creation_order():
    forward = RandomStreams(42)
    backward = RandomStreams(42)
    names = ["detector", "source", "memory", "basis"]
    a = {name: _draws(forward, name) for name in names}
    b = {name: _draws(backward, name) for name in reversed(names)}
    assert a == b


def test_adding_a_consumer_does_not_change_other_streams():
    plain = RandomStreams(9)
    crowded = RandomStreams(9)
    # the crowded family gains new consumers before, between and after
    crowded.get("newcomer-1").random(100)
    first = _draws(crowded, "alice", 50)
    crowded.get("newcomer-2").integers(0, 10, size=1000)
    second = _draws(crowded, "bob", 50)
    assert first == _draws(plain, "alice", 50)
    assert second == _draws(plain, "bob", 50)


def test_streams_differ_between_names_and_seeds():
    streams = RandomStreams(1)
    assert _draws(streams, "a") != _draws(streams, "b")
    assert _draws(RandomStreams(1), "a") != _draws(RandomStreams(2), "a")


def test_stream_derivation_is_stable_across_processes():
    # Python's hash() is salted per process; the derivation must not use it.
    code = "from qstack.sim import RandomStreams; print(RandomStreams(3).get('x').integers(0, 2**62))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED=str(salt)),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for salt in (1, 2)
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str(RandomStreams(3).get("x").integers(0, 2**62))


def test_stream_seed_validation():
    with pytest.raises(ValueError):
        RandomStreams(-1)
    with pytest.raises(TypeError):
        RandomStreams(1.5)
    with pytest.raises(TypeError):
        RandomStreams(1).get(3)


def test_next_event_time_skips_cancelled_events(backend):
    sim = Simulator(seed=1, backend=backend)
    assert sim.next_event_time is None
    first = sim.schedule(5, lambda: None)
    sim.schedule(9, lambda: None)
    assert sim.next_event_time == 5
    sim.cancel(first)
    assert sim.next_event_time == 9 and sim.pending == 1


def test_next_seq_is_the_seq_the_next_event_gets(backend):
    sim = Simulator(seed=1, backend=backend)
    start = sim.next_seq
    first = sim.schedule(5, lambda: None)
    assert first.seq == start and sim.next_seq == first.seq + 1
    sim.cancel(first)                      # (cancelling schedules nothing)
    assert sim.next_seq == first.seq + 1
    assert sim.schedule_at(3, lambda: None).seq == first.seq + 1
    sim.run()
    assert sim.next_seq == first.seq + 2   # (firing schedules nothing)


def test_simulator_with_pending_tasks_is_garbage_collected(backend):
    # Tasks and their wake-up events form reference cycles through the
    # simulator; the collector must be able to see (and free) them.
    import gc
    import weakref

    def make():
        sim = Simulator(seed=1, backend=backend)

        async def sleeper():
            await sim.sleep(1_000)

        sim.spawn(sleeper())
        sim.run(until_ns=10)
        return weakref.ref(sim)

    ref = make()
    gc.collect()
    assert ref() is None
