"""Doing less per pair without changing a number (issue 22, docs/compiled-runtime.md):
the kernel's ``stop()``, one event for both heralds of a link pair, and a
chain stopped by its ends rather than by a check after every event."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qstack.network.service import NetRequest
from qstack.physical.device import NodeHardware, QuantumDevice
from qstack.physical.engine import QuantumEngine
from qstack.physical.heralding import HeraldingStation
from qstack.physical.ops import Entangle
from qstack.physical.pair_model import SimplePairModel
from qstack.sim import HAVE_CYTHON, Simulator
from qstack.sim.chain import build_chain

BACKENDS = ["python", "cython"] if HAVE_CYTHON else ["python"]
NEVER = 1 << 62


# ------------------------------------------------------------------ the kernel's stop()

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("until", [None, 1_000])
def test_stop_ends_the_run_after_the_current_event(backend, until):
    sim = Simulator(seed=1, backend=backend)
    seen = []

    def fire(tag):
        seen.append((tag, sim.now))
        if tag == "b":
            sim.stop()
    for t, tag in ((10, "a"), (20, "b"), (20, "c"), (30, "d")):
        sim.schedule_at(t, fire, tag)
    assert sim.run(until_ns=until) == 2
    assert seen == [("a", 10), ("b", 20)] and sim.now == 20   # (not moved to the horizon)
    assert sim.pending == 2
    assert sim.run() == 2                                      # the flag does not linger
    assert seen[2:] == [("c", 20), ("d", 30)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_outside_a_run_does_nothing(backend):
    sim = Simulator(seed=1, backend=backend)
    sim.schedule(5, lambda: None)
    sim.schedule(6, lambda: None)
    sim.stop()
    assert sim.run() == 2 and sim.now == 6


# ------------------------------------------------------------------ one event, both heralds

def _station(sim, herald_delay=(5_000, 5_000)):
    """A station on ``sim`` whose model heralds side 0 / side 1 after the given delays (ns)."""
    class _Model(SimplePairModel):
        def herald_delay_ns(self, side: int) -> int:
            return herald_delay[side]
    eng = QuantumEngine(np.random.default_rng(3))
    devs = tuple(QuantumDevice(n, eng, NodeHardware(num_qubits=4), np.random.default_rng(i))
                 for i, n in enumerate("ab"))
    got = []
    station = HeraldingStation(("a", "b"), _Model(0.5, 0.99, 1_000), eng, devs, sim,
                               lambda side, ref, h: got.append((sim.now, side, ref, h)),
                               np.random.default_rng(1), np.random.default_rng(2), "bd", 10_000)
    return station, got


@pytest.mark.parametrize("delays", [(5_000, 5_000), (3_000, 7_000)])
def test_both_heralds_arrive_when_due_side_0_first(delays):
    """Equal delays: one event carries both heralds (side 0 first); unequal:
    each end hears at its own time. Either way both get the same pair."""
    sim = Simulator(seed=1)
    station, got = _station(sim, delays)
    station.submit(0, "x", Entangle("b", 7, NEVER, 0.0))
    station.submit(1, "y", Entangle("a", 7, NEVER, 0.0))
    expected_events = 1 if delays[0] == delays[1] else 2
    assert sim.pending == expected_events
    sim.run()
    assert [(side, ref) for _, side, ref, _ in got] == [(0, "x"), (1, "y")]
    (t0, _, _, h0), (t1, _, _, h1) = got
    assert h0.ok and h1.ok and h0.emitted_ns == h1.emitted_ns
    assert (t0 - h0.emitted_ns, t1 - h1.emitted_ns) == delays
    assert station.pending() == 0


@pytest.mark.parametrize("delays", [(5_000, 5_000), (3_000, 7_000)])
def test_cancel_while_the_heralds_are_on_the_way_ends_both(delays):
    """CancelEntangle after the pair was made: both ends answered "cancelled"
    (the far end one classical delay later), no herald fires, memory freed."""
    sim = Simulator(seed=1)
    station, got = _station(sim, delays)
    station.submit(0, "x", Entangle("b", 7, NEVER, 0.0))
    station.submit(1, "y", Entangle("a", 7, NEVER, 0.0))
    station.cancel(0, 7)
    sim.run()
    assert [(t, side, h.ok, h.reason) for t, side, _, h in got] == \
        [(0, 0, False, "cancelled"), (10_000, 1, False, "cancelled")]
    assert [d.free_slots for d in station.devices] == [4, 4]


def test_a_crashed_end_leaves_the_other_ends_answer_alone():
    """drop_side(1) while the shared herald event is pending: side 0 gets
    "peer down" at once and the shared event delivers nothing later."""
    sim = Simulator(seed=1)
    station, got = _station(sim)
    station.submit(0, "x", Entangle("b", 7, NEVER, 0.0))
    station.submit(1, "y", Entangle("a", 7, NEVER, 0.0))
    station.drop_side(1)
    sim.run()
    assert [(t, side, h.ok, h.reason) for t, side, _, h in got] == [(0, 0, False, "peer down")]


# ------------------------------------------------------------------ a chain stopped by its ends

def test_chain_stopped_by_its_ends_equals_one_stopped_by_stop_when():
    """build_chain(stop_after=k) ends the run at the k-th pair at both ends,
    where ``run(stop_when=...)`` (checked after every event) ended it: same
    time, same events, same fidelities."""
    k = 20
    runs = []
    for by_ends in (True, False):
        net, names, ends = build_chain(6, stop_after=k if by_ends else None)
        head, tail = ends[names[0]], ends[names[-1]]
        net.submit(names[0], NetRequest(names[-1], number=k), to="network.qnp")
        if by_ends:
            net.run(until_ns=10**13)
        else:
            net.run(until_ns=10**13, stop_when=lambda: len(head.oks) >= k and len(tail.oks) >= k)
        runs.append((net.sim.now, net.sim.events_fired, [ok.fidelity for ok in tail.oks]))
    assert runs[0] == runs[1]
    assert len(runs[0][2]) == k


# ------------------------------------------------------------------ the pure-Python switch

def test_pure_python_switch_puts_every_kernel_on_its_twin():
    """QSTACK_PURE_PYTHON=1: every kernel counts as not built, even with
    QSTACK_REQUIRE_CYTHON=1 (the switch wins), and a run still works."""
    code = ("import qstack.sim.kernel as k, qstack.core.slots as s, qstack.core.runtime as r\n"
            "import qstack.physical.attempts as a, qstack.physical.pulses as p\n"
            "import qstack.app.qkd.cascade as c\n"
            "print(k.HAVE_CYTHON, s.HAVE_CYTHON, r.HAVE_CYTHON, a.HAVE_CYTHON, p.HAVE_CYTHON,"
            " c._cascade is not None)\n"
            "from qstack.sim.chain import build_chain\n"
            "net, names, ends = build_chain(3)\n"
            "print(type(net.sim).__name__, r.RuntimeCore.__name__, isinstance(net.nodes[names[0]], r.PyRuntimeCore))\n")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, QSTACK_PURE_PYTHON="1", QSTACK_REQUIRE_CYTHON="1", PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"] * 6 + ["_PySimulator", "PyRuntimeCore", "True"]


# ------------------------------------------------------------------ the driver's counters

_COUNTS_SCRIPT = """
import json
from qstack.network.service import NetRequest
from qstack.sim.chain import build_chain
net, names, ends = build_chain(4, stop_after=6)
net.submit(names[0], NetRequest(names[-1], number=6), to="network.qnp")
seen = []
def sample():
    s = net.stats
    seen.append((net.sim.events_fired, s["messages"], s["quantum_ops"], s["timers"]))
    return False
net.run(until_ns=10**13, stop_when=sample)
print(json.dumps({"seen": seen, "stats": net.stats}))
"""


def test_the_drivers_counters_read_mid_run_equal_the_twins():
    """The compiled driver counts messages and quantum operations in C and
    adds them to ``stats`` when it is read: read after every event of a run,
    the counters equal the pure-Python twin's (which counts in the dict)."""
    root = Path(__file__).resolve().parents[1]
    runs = []
    for pure in (False, True):
        env = dict(os.environ, PYTHONPATH=str(root))
        env.pop("QSTACK_PURE_PYTHON", None)
        if pure:
            env["QSTACK_PURE_PYTHON"] = "1"
        proc = subprocess.run([sys.executable, "-c", _COUNTS_SCRIPT], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout))
    compiled, twin = runs
    assert compiled == twin
    assert compiled["stats"]["messages"] > 0 and compiled["stats"]["quantum_ops"] > 0
    # counters only grow (the run's last events, after the last reading, add to them)
    final = [compiled["stats"][k] for k in ("messages", "quantum_ops", "timers")]
    readings = compiled["seen"] + [[compiled["seen"][-1][0]] + final]
    assert all(a <= b for x, y in zip(readings, readings[1:]) for a, b in zip(x, y))
