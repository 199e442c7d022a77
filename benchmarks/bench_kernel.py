"""Throughput of the discrete-event kernel and the coroutine runner.

Figures (per backend, ``python`` = pure-Python twin, ``cython`` = the kernel
used by default when built):

* ``kernel_null_events_per_s`` — schedule N = 1,000,000 no-op callbacks at
  scattered times (the heap grows to a million entries), then run them; the
  rate counts both halves: N / (schedule time + run time). The issue's target
  is >= 1,000,000 on one core.
* ``kernel_steady_events_per_s`` — 1,000 timers that each reschedule
  themselves, so the heap stays small, as in most simulations; events fired
  per second.
* ``kernel_pingpong_msgs_per_s`` — two coroutines exchanging messages through
  mailboxes, each sleeping 1 ns before replying; messages delivered per
  second.

Run: ``python -m benchmarks.bench_kernel`` (prints JSON). Wall-clock figures
of this machine; no test asserts them.
"""
from __future__ import annotations

import gc
import json
import time

from qstack.sim import HAVE_CYTHON, Simulator

NULL_EVENTS = 1_000_000
STEADY_TIMERS = 1_000
STEADY_EVENTS = 1_000_000
PINGPONG_MESSAGES = 200_000
REPEATS = 3


def _backends() -> list[str]:
    return ["python", "cython"] if HAVE_CYTHON else ["python"]


def _noop() -> None:
    pass


def null_events(backend: str, n: int = NULL_EVENTS) -> float:
    """Events per second for scheduling then firing ``n`` no-op events."""
    sim = Simulator(seed=0, backend=backend)
    schedule = sim.schedule
    # Scattered, repeatable delays (a multiplicative hash of i), including
    # ties, so the heap does real work rather than appending in order.
    delays = [(i * 2654435761) % 1_000_003 for i in range(n)]
    gc.collect()
    start = time.perf_counter()
    for delay in delays:
        schedule(delay, _noop)
    fired = sim.run()
    elapsed = time.perf_counter() - start
    assert fired == n
    return n / elapsed


def steady_events(backend: str, timers: int = STEADY_TIMERS, n: int = STEADY_EVENTS) -> float:
    """Events per second with a small heap: ``timers`` self-rescheduling timers."""
    sim = Simulator(seed=0, backend=backend)
    schedule = sim.schedule

    def tick(period: int) -> None:
        schedule(period, tick, period)

    for i in range(timers):
        schedule(i, tick, 997 + i)  # distinct periods: the order keeps changing
    gc.collect()
    start = time.perf_counter()
    fired = sim.run(max_events=n)
    elapsed = time.perf_counter() - start
    assert fired == n
    return n / elapsed


def pingpong(backend: str, messages: int = PINGPONG_MESSAGES) -> float:
    """Messages per second between two coroutines, 1 ns sleep per hop."""
    sim = Simulator(seed=0, backend=backend)
    to_pong, to_ping = sim.mailbox("to_pong"), sim.mailbox("to_ping")
    rounds = messages // 2

    async def ping() -> None:
        for i in range(rounds):
            await sim.sleep(1)
            to_pong.put(i)
            await to_ping.get()

    async def pong() -> None:
        for _ in range(rounds):
            msg = await to_pong.get()
            await sim.sleep(1)
            to_ping.put(msg)

    gc.collect()
    start = time.perf_counter()
    sim.spawn(pong())
    sim.run_until_complete(ping())
    elapsed = time.perf_counter() - start
    assert sim.now == 2 * rounds
    return 2 * rounds / elapsed


def _best(measure, backend: str) -> float:
    # Best of a few runs: the least disturbed by other load on the machine.
    return max(measure(backend) for _ in range(REPEATS))


def run() -> dict:
    figures: dict = {
        "kernel_null_events_per_s": {},
        "kernel_steady_events_per_s": {},
        "kernel_pingpong_msgs_per_s": {},
    }
    for backend in _backends():
        figures["kernel_null_events_per_s"][backend] = round(_best(null_events, backend))
        figures["kernel_steady_events_per_s"][backend] = round(_best(steady_events, backend))
        figures["kernel_pingpong_msgs_per_s"][backend] = round(_best(pingpong, backend))
    figures["kernel_null_events"] = NULL_EVENTS
    figures["kernel_target_null_events_per_s"] = 1_000_000
    default = "cython" if HAVE_CYTHON else "python"
    figures["kernel_meets_target"] = figures["kernel_null_events_per_s"][default] >= 1_000_000
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
