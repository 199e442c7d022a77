"""The per-pair shortcuts of the heralding station and the engine (issue 22,
docs/compiled-runtime.md) give what the general paths give: the station's
uniforms come in blocks but are the generator's own doubles in order; a
discarded half of a Bell-diagonal pair leaves its partner maximally mixed and
the engine empty once both are gone; ``drop`` is ``discard`` for a live qubit
and nothing for a consumed one; the decayed Bell fidelity of a Bell-diagonal
pair equals its closed form and the density-matrix engine's value. Run
compiled and (``QSTACK_PURE_PYTHON=1``) on the twins."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qstack.physical import heralding
from qstack.physical.bell_diagonal import BellDiagonal
from qstack.physical.device import NodeHardware, QuantumDevice
from qstack.physical.engine import QuantumEngine
from qstack.physical.ops import Discard, Entangle
from qstack.physical.pair_model import SimplePairModel
from qstack.sim import Simulator

_UNIFORMS = [heralding.BlockUniforms]
if heralding.HAVE_CYTHON:
    from qstack.physical import _heralding
    _UNIFORMS.append(_heralding.BlockUniforms)


@pytest.mark.parametrize("cls", _UNIFORMS)
def test_block_uniforms_are_the_generators_doubles_in_order(cls):
    n = 3 * heralding.ATTEMPT_BLOCK + 17         # across block boundaries
    ref = np.random.default_rng(11)
    u = cls(np.random.default_rng(11))
    assert [u.random() for _ in range(n)] == [ref.random() for _ in range(n)]
    # other methods are the generator's own (the same generator, drawn later)
    assert u.integers(0, 4, size=3).shape == (3,)
    assert u.random(2).shape == (2,) and u.random(dtype=np.float32) < 1.0
    assert u.bit_generator is u.gen.bit_generator


@pytest.mark.parametrize("station_cls", sorted({heralding.PyHeraldingStation,
                                                 heralding.HeraldingStation}, key=str))
def test_station_bell_indices_are_one_uniform_per_pair_as_before(station_cls):
    """A model drawing int(4 u) per pair: the heralds announce exactly the
    indices of the generator's doubles taken one per pair, in order."""
    sim = Simulator(seed=1)
    eng = QuantumEngine(np.random.default_rng(3))
    hw = NodeHardware(num_qubits=2)
    devs = tuple(QuantumDevice(n, eng, hw, np.random.default_rng(i)) for i, n in enumerate("ab"))
    got = []

    def deliver(side, ref, h):
        got.append((side, h.bell_index))
        devs[side].free(h.qubit)

    station = station_cls(("a", "b"), SimplePairModel(0.5, 0.9, 1_000, bell_index=None), eng,
                          devs, sim, deliver, np.random.default_rng(21),
                          np.random.default_rng(22), "bd")
    pairs = heralding.ATTEMPT_BLOCK + 50
    for i in range(pairs):
        station.submit(0, i, Entangle("b", ("k", i), 1 << 62))
        station.submit(1, i, Entangle("a", None, 1 << 62))
        sim.run()
    ref = np.random.default_rng(21)
    expected = [int(ref.random() * 4.0) for _ in range(pairs)]
    assert [b for side, b in got if side == 0] == expected
    assert [b for side, b in got if side == 1] == expected
    assert eng.num_live_qubits == 0 and eng.num_groups == 0


def _bd_pair(eng, fidelity=0.9, bell=2):
    return eng.new_pair(eng.prepare_pair(BellDiagonal.werner(fidelity, bell).to_density_matrix(),
                                         "bd"))


@pytest.mark.parametrize("first", [0, 1])
def test_discarding_halves_of_a_bd_pair(first):
    eng = QuantumEngine(np.random.default_rng(1))
    qs = _bd_pair(eng)
    eng.discard(qs[first])
    keep = qs[1 - first]
    assert not qs[first].alive and keep.alive
    np.testing.assert_allclose(eng.density_matrix(keep), np.eye(2) / 2, atol=1e-15)
    assert eng.num_live_qubits == 1 and eng.num_groups == 1
    keep.discard()
    assert eng.num_live_qubits == 0 and eng.num_groups == 0
    with pytest.raises(Exception, match="no longer available"):
        eng.discard(keep)


def test_drop_is_discard_for_a_live_qubit_and_nothing_for_a_consumed_one():
    eng = QuantumEngine(np.random.default_rng(1))
    a, b = _bd_pair(eng)
    c, d = _bd_pair(eng)
    eng.bsm(b, c)                      # b and c consumed, a and d now share a pair
    assert eng.drop(b) is False and eng.drop(c) is False
    assert eng.num_live_qubits == 2
    assert eng.drop(a) is True and eng.drop(d) is True
    assert eng.num_live_qubits == 0 and eng.num_groups == 0
    # a density-matrix pair goes the general way
    e, f = eng.from_density_matrix(BellDiagonal.werner(0.8).to_density_matrix())
    assert eng.drop(e) and eng.drop(f) and eng.num_live_qubits == 0


def test_device_discard_frees_the_slot_of_a_consumed_qubit():
    eng = QuantumEngine(np.random.default_rng(1))
    dev = QuantumDevice("a", eng, NodeHardware(num_qubits=4), np.random.default_rng(2))
    a, b = _bd_pair(eng)
    c, d = _bd_pair(eng)
    for q in (a, b, c, d):
        dev.store(q, 0)
    eng.bsm(b, c)
    for q in (b, a):
        assert dev.execute(Discard(q), 10) == (0, None)
    assert dev.free_slots == 2 and not a.alive and d.alive
    _, err = dev.execute(Discard(b), 10)
    assert err is not None and "not in memory" in str(err)


@pytest.mark.parametrize("bell", range(4))
def test_decayed_bell_fidelity_of_a_bd_pair_is_its_closed_form(bell):
    """T2 only: F = (1 - q) F_B + q F_{B^1}, q = qa + qb - 2 qa qb, qx = (1 -
    exp(-t_x / T2)) / 2 (T_phi = T2 without T1), and the dm engine agrees."""
    t2, wa, wb = 1e6, 3e5, 7e5
    coeffs = (0.7, 0.1, 0.15, 0.05)
    rho = BellDiagonal(coeffs).to_density_matrix()
    bd, dm = QuantumEngine(np.random.default_rng(1)), QuantumEngine(np.random.default_rng(1))
    a, b = bd.new_pair(bd.prepare_pair(rho, "bd"))
    c, d = dm.from_density_matrix(rho)
    qa, qb = (1 - math.exp(-wa / t2)) / 2, (1 - math.exp(-wb / t2)) / 2
    q = qa + qb - 2 * qa * qb
    formula = (1 - q) * coeffs[bell] + q * coeffs[bell ^ 1]
    got = bd.decayed_bell_fidelity(a, b, bell, wa, wb, math.inf, t2)
    assert got == pytest.approx(formula, abs=1e-14)
    assert dm.decayed_bell_fidelity(c, d, bell, wa, wb, math.inf, t2) == \
        pytest.approx(formula, abs=1e-12)
    assert bd.decayed_bell_fidelity(a, b, bell, 0, 0, math.inf, t2) == \
        pytest.approx(coeffs[bell], abs=1e-15)
