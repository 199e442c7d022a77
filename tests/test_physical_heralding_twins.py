"""The compiled heralding station (``qstack/physical/_heralding.pyx``) and its
pure-Python reference (``PyHeraldingStation``) give the same heralds at the
same times for the same requests: random scripts of submissions (keyed and
following, with and without deadlines and start times), cancellations, link
down and up, crashed ends, on symmetric and asymmetric links, with and without
per-attempt dephasing (docs/compiled-runtime.md)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.physical import heralding
from qstack.physical.device import NodeHardware, QuantumDevice
from qstack.physical.engine import QuantumEngine
from qstack.physical.heralding import PyHeraldingStation
from qstack.physical.ops import Entangle
from qstack.physical.pair_model import SimplePairModel
from qstack.sim import Simulator

pytestmark = pytest.mark.skipif(not heralding.HAVE_CYTHON,
                                reason="qstack.physical._heralding not built (or QSTACK_PURE_PYTHON=1)")


class _Model(SimplePairModel):
    """``rule``: "thresholds" (the station draws the Bell index itself, by the
    model's thresholds), "asked" (the model declares none: the station calls
    ``sample_bell_index`` per pair), "fixed" (always Psi+, nothing drawn)."""

    def __init__(self, p, delays, rule="thresholds"):
        super().__init__(p, 0.97, 1_000, bell_index=2 if rule == "fixed" else None)
        self.delays = delays
        self.rule = rule

    def herald_delay_ns(self, side: int) -> int:
        return self.delays[side]

    def bell_index_thresholds(self):
        return None if self.rule == "asked" else super().bell_index_thresholds()


def _run(cls, script, p, delays, dephasing, rule="thresholds"):
    sim = Simulator(seed=5)
    eng = QuantumEngine(np.random.default_rng(3))
    hw = NodeHardware(num_qubits=3, t2_ns=math.inf, attempt_dephasing_prob=dephasing)
    devs = tuple(QuantumDevice(n, eng, hw, np.random.default_rng(i)) for i, n in enumerate("ab"))
    got = []
    station = cls(("a", "b"), _Model(p, delays, rule), eng, devs, sim,
                  lambda side, ref, h: got.append((sim.now, side, ref, h.ok, h.reason, h.key,
                                                   h.bell_index, h.attempts, h.emitted_ns,
                                                   h.fidelity_estimate)),
                  np.random.default_rng(1), np.random.default_rng(2), "bd", 2_000)
    for i, (at, what, side, key, deadline, start) in enumerate(sorted(script, key=lambda s: s[0])):
        sim.run(until_ns=max(at, sim.now))
        if what == "submit":
            station.submit(side, i, Entangle("b" if side == 0 else "a", key,
                                             sim.now + deadline if deadline else 1 << 62, 0.0,
                                             start_ns=sim.now + start))
        elif what == "cancel":
            station.cancel(side, key)
        elif what == "down":
            station.set_up(False)
        elif what == "up":
            station.set_up(True)
        elif what == "crash":
            station.drop_side(side)
    sim.run()
    return got, station.attempts, station.pairs_heralded, station.pending(), \
        [d.free_slots for d in devs]


step = st.tuples(st.integers(0, 60_000),
                 st.sampled_from(["submit"] * 6 + ["cancel", "cancel", "down", "up", "crash"]),
                 st.integers(0, 1), st.sampled_from([None, 1, 2, 3]),
                 st.sampled_from([0, 3_000, 20_000]), st.sampled_from([0, 0, 5_000]))


@settings(max_examples=120, deadline=None)
@given(st.lists(step, max_size=30), st.sampled_from([0.05, 0.3, 1.0]),
       st.sampled_from([(4_000, 4_000), (1_000, 6_000), (0, 0)]), st.sampled_from([0.0, 0.01]),
       st.sampled_from(["thresholds", "asked", "fixed"]))
def test_compiled_station_equals_its_reference(script, p, delays, dephasing, rule):
    assert _run(PyHeraldingStation, script, p, delays, dephasing, rule) == \
        _run(heralding.HeraldingStation, script, p, delays, dephasing, rule)


@settings(max_examples=40, deadline=None)
@given(st.lists(step, max_size=30), st.sampled_from([0.3, 1.0]))
def test_the_stations_own_draw_of_a_bell_index_is_the_models(script, p):
    """A model's thresholds let the station draw the Bell index itself: the
    heralds are those it gives when the station asks the model per pair
    (same stream, same uniform, same index), in both twins."""
    for cls in (PyHeraldingStation, heralding.HeraldingStation):
        assert _run(cls, script, p, (4_000, 4_000), 0.0, "thresholds") == \
            _run(cls, script, p, (4_000, 4_000), 0.0, "asked")


def test_the_twins_share_their_constants():
    from qstack.physical import _heralding
    assert (_heralding.NEVER_NS, _heralding.ATTEMPT_BLOCK) == \
        (heralding.NEVER_NS, heralding.ATTEMPT_BLOCK)


@pytest.mark.parametrize("side", [2, -1])
def test_a_side_that_is_not_an_end_of_the_link_is_refused_alike(side):
    """A link has sides 0 and 1: both twins refuse any other with the same
    IndexError, before a memory slot is reserved or anything is listed (the
    compiled station indexes its ends' lists in C, unchecked past that)."""
    for cls in (PyHeraldingStation, heralding.HeraldingStation):
        sim = Simulator(seed=5)
        eng = QuantumEngine(np.random.default_rng(3))
        hw = NodeHardware(num_qubits=3, t2_ns=math.inf)
        devs = tuple(QuantumDevice(n, eng, hw, np.random.default_rng(i))
                     for i, n in enumerate("ab"))
        station = cls(("a", "b"), _Model(0.5, (1_000, 1_000)), eng, devs, sim,
                      lambda *_: None, np.random.default_rng(1), np.random.default_rng(2))
        with pytest.raises(IndexError, match="sides 0 and 1"):
            station.submit(side, 0, Entangle("b", None, 1 << 62, 0.0))
        assert station.pending() == 0 and [d.free_slots for d in devs] == [3, 3]
