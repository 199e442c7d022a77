"""The simulator and the garbage collector (docs/compiled-runtime.md, "Doing
less per pair").

Invariants: (1) a run leaves no per-pair garbage in reference cycles (every
object a pair's path allocates is freed by reference counting when it is
done with, so the cyclic collector has nothing to find that grows with the
work), with the compiled classes and with their pure-Python twins (this
file is in the Makefile's PURE_TESTS); (2) ``Simulator.run`` raises the
collector's young threshold only while it runs and restores the caller's
setting, also when it is nested or fails, and leaves a disabled threshold
(0) alone."""
from __future__ import annotations

import gc

import pytest

from qstack.network.service import NetRequest
from qstack.sim import Simulator
from qstack.sim.chain import build_chain
from qstack.sim.runner import GC_YOUNG_THRESHOLD


def _cyclic_garbage(pairs: int) -> int:
    """qstack objects found only by the cyclic collector after a 6-node chain
    delivered ``pairs`` pairs (automatic collection off during the run)."""
    net, names, _ends = build_chain(6, "bd", 3, stop_after=pairs)
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        net.run(until_ns=10**13)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = [o for o in gc.garbage if type(o).__module__.startswith("qstack")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
    return len(found)


def test_cyclic_garbage_does_not_grow_with_the_pairs():
    # One-off cycles (a probe engine computing the heralded state once per
    # link model) are allowed; anything per pair would make these differ by
    # at least 30 (one per link pair: 5 links x 6 more pairs).
    assert _cyclic_garbage(12) == _cyclic_garbage(6)


def test_run_raises_the_young_threshold_only_while_it_runs():
    before = gc.get_threshold()
    sim = Simulator(seed=1)
    seen = []
    sim.schedule(5, lambda: seen.append(gc.get_threshold()))
    sim.run()
    assert seen == [(max(before[0], GC_YOUNG_THRESHOLD), *before[1:])]
    assert gc.get_threshold() == before


def test_run_restores_the_threshold_when_nested_or_failing():
    before = gc.get_threshold()
    sim = Simulator(seed=1)
    inner = []

    def nested():
        sim.schedule(1, lambda: inner.append(gc.get_threshold()))
        sim.run(max_events=1)
        inner.append(gc.get_threshold())

    def boom():
        raise RuntimeError("boom")

    sim.schedule(1, nested)
    sim.schedule(10, boom)
    with pytest.raises(RuntimeError, match="boom"):
        sim.run()
    raised = (max(before[0], GC_YOUNG_THRESHOLD), *before[1:])
    assert inner == [raised, raised]
    assert gc.get_threshold() == before


def test_a_disabled_young_threshold_is_left_alone():
    before = gc.get_threshold()
    gc.set_threshold(0, *before[1:])
    try:
        sim = Simulator(seed=1)
        seen = []
        sim.schedule(1, lambda: seen.append(gc.get_threshold()[0]))
        sim.run()
        assert seen == [0]
    finally:
        gc.set_threshold(*before)
