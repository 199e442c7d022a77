"""The typed physical layer (``physical/engine.pxd``, ``device.pxd``,
``bell_diagonal.pxd``): the methods of every link pair and swap are cpdef,
so the device calls the engine, and the engine a Bell-diagonal state, in C.

What a user sees must not change: a Python subclass still overrides those
methods and the compiled callers call the override; a Bell-diagonal state
keeps its value semantics (equality, hash, pickling); and the device carries
out each kind of operation by its own method. Every test here runs both on
the compiled modules and on their source (``QSTACK_PURE_PYTHON=1``, the
Makefile's pure pass); the one that checks the extension types themselves
is skipped where they are not built. docs/compiled-runtime.md, "Typed
physical layer".
"""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.kernels import compiled_modules
from qstack.physical.bell_diagonal import BellDiagonal, _from_coeffs, swap_bell_diagonal
from qstack.physical.device import DEVICE_OPS, NodeHardware, QuantumDevice
from qstack.physical.engine import QuantumEngine
from qstack.physical.ops import Allocate, BellMeasure, Discard, Entangle, Gate, Measure

COMPILED = compiled_modules().get("qstack.physical.engine", False)


def _device(engine: QuantumEngine, cls: type = QuantumDevice, t2_ns: float = math.inf):
    return cls("a", engine, NodeHardware(num_qubits=4, t2_ns=t2_ns), np.random.default_rng(1))


def _stored_pair(dev: QuantumDevice, fidelity: float = 0.9):
    prepared = dev.engine.prepare_pair(BellDiagonal.werner(fidelity).to_density_matrix(), "bd")
    a, b = dev.engine.new_pair(prepared)
    dev.store(a, 0)
    dev.store(b, 0)
    return a, b


def test_an_engine_subclass_override_is_what_the_device_calls():
    calls = []

    class CountingEngine(QuantumEngine):
        def drop(self, q):
            calls.append(q)
            return super().drop(q)

    dev = _device(CountingEngine(np.random.default_rng(3)))
    a, b = _stored_pair(dev)
    assert dev.execute(Discard(a), 10) == (0, None)
    # the device's _discard reached the override (compiled: by the cpdef dispatch)
    assert calls == [a] and not dev.holds(a) and dev.holds(b)


def test_a_device_subclass_override_is_what_execute_calls():
    seen = []

    class CountingDevice(QuantumDevice):
        def _bell_measure(self, op, now_ns):
            seen.append(op)
            return super()._bell_measure(op, now_ns)

    dev = _device(QuantumEngine(np.random.default_rng(3)), CountingDevice)
    a, _ = _stored_pair(dev)
    c, _ = _stored_pair(dev)
    duration, outcome = dev.execute(BellMeasure(a, c), 5)
    assert seen == [BellMeasure(a, c)]
    assert duration == dev.hw.bsm_ns and outcome in (0, 1, 2, 3)


def test_execute_carries_out_each_device_operation_and_refuses_the_rest():
    assert DEVICE_OPS == {Allocate, Gate, Measure, BellMeasure, Discard}
    dev = _device(QuantumEngine(np.random.default_rng(2)))
    duration, q = dev.execute(Allocate(), 0)
    assert duration == dev.hw.init_ns and dev.holds(q)
    assert dev.execute(Gate("x", (q,)), 10) == (dev.hw.gate_1q_ns, None)
    duration, bit = dev.execute(Measure(q), 20)
    assert (duration, bit) == (dev.hw.measure_ns, 1) and not dev.holds(q)
    # an operation the device does not carry out: an outcome with a code, not an exception
    duration, err = dev.execute(Entangle("b", 1, 10**9), 30)
    assert duration == 0 and isinstance(err, QStackError)
    assert err.code is ErrorCode.INVALID_PARAMETER and "unknown operation Entangle" in str(err)
    # a qubit that is not in memory: the defined code
    duration, err = dev.execute(Discard(q), 40)
    assert duration == 0 and err.code is ErrorCode.QUBIT_UNAVAILABLE


def test_the_fidelity_read_through_the_device_equals_the_decay_formula():
    # Z flips with probability q_end = (1 - exp(-t / T2)) / 2 at each end (T1 = inf):
    # F(t) = (1 - q) F0 + q F1, q = qa + qb - 2 qa qb the probability of exactly one flip.
    # Exact maths on four numbers: equal to the formula up to rounding (1e-15).
    t2_ns = 1e6
    dev = _device(QuantumEngine(np.random.default_rng(4)), t2_ns=t2_ns)
    a, b = _stored_pair(dev, 0.9)
    wait = 250_000
    q_end = -0.5 * math.expm1(-wait / t2_ns)
    q = 2 * q_end - 2 * q_end * q_end
    expected = (1 - q) * 0.9 + q * (0.1 / 3)
    assert dev.bell_fidelity_now(a, dev, b, 0, wait) == pytest.approx(expected, abs=1e-15)
    # reading did not change the state
    assert dev.engine.bell_fidelity(a, b, 0) == pytest.approx(0.9, abs=1e-15)


def test_a_bell_diagonal_state_keeps_its_value_semantics():
    c = (0.7, 0.1, 0.15, 0.05)
    bd = _from_coeffs(c)
    assert type(bd) is BellDiagonal and bd.as_tuple() == c
    assert bd == BellDiagonal(list(c)) and hash(bd) == hash(BellDiagonal(list(c)))
    assert BellDiagonal._trusted(c) == bd
    assert pickle.loads(pickle.dumps(bd)) == bd
    assert bd.fidelity(2) == 0.15
    with pytest.raises(ValueError):
        bd.fidelity(4)
    with pytest.raises(ValueError):
        bd.fidelity(True)          # a bool is not a Bell index
    # the Pauli map in C doubles gives the twin's floats, operation by operation
    px, py, pz = 0.01, 0.02, 0.03
    pi = 1.0 - px - py - pz
    c0, c1, c2, c3 = c
    assert bd.pauli_channel(0, px, py, pz).as_tuple() == (
        pi * c0 + px * c2 + py * c3 + pz * c1,
        pi * c1 + px * c3 + py * c2 + pz * c0,
        pi * c2 + px * c0 + py * c1 + pz * c3,
        pi * c3 + px * c1 + py * c0 + pz * c2,
    )
    # a swap of two Werner pairs: F1 F2 + (1 - F1)(1 - F2) / 3 on outcome 0
    w = BellDiagonal.werner(0.9)
    assert swap_bell_diagonal(w, w, 0).fidelity(0) == pytest.approx(
        0.81 + 0.01 / 3, abs=1e-15)


def test_a_subclass_of_the_state_is_built_and_checked_by_its_own_init():
    class Tagged(BellDiagonal):
        pass

    t = Tagged._trusted((0.25, 0.25, 0.25, 0.25))
    assert type(t) is Tagged and t.fidelity(0) == 0.25
    with pytest.raises(ValueError):
        Tagged._trusted((0.5, 0.5, 0.5, 0.5))       # the checks of __init__ ran


@pytest.mark.skipif(not COMPILED, reason="the physical layer runs as plain Python here")
def test_the_compiled_physical_classes_are_extension_types():
    for cls in (QuantumEngine, QuantumDevice, BellDiagonal):
        assert not cls.__flags__ & (1 << 9), cls        # not a heap type (Py_TPFLAGS_HEAPTYPE)
    bd = BellDiagonal.werner(0.8)
    with pytest.raises(AttributeError):
        bd._c = (1.0, 0.0, 0.0, 0.0)                    # read-only once made
    dev = _device(QuantumEngine(np.random.default_rng(1)))
    with pytest.raises(TypeError):
        dev.engine = object()                           # typed: the device calls it in C


def test_the_memory_rates_kept_per_pair_of_times_are_the_checked_ones():
    # decayed_bell_fidelity reads a memory's (1/T1, 1/T_phi) from a plain dict
    # kept per (T1, T2): the same numbers as channels_kraus's checked function,
    # impossible times still refused (and never kept), the dict bounded.
    from qstack.physical import engine as eng_mod
    from qstack.physical.channels_kraus import InvalidParameterError, _decay_rates

    for t1, t2 in ((math.inf, 1e9), (2e9, 1e9), (1e9, 2e9), (math.inf, math.inf)):
        assert eng_mod._memory_rates(t1, t2) == _decay_rates(t1, t2)
        assert eng_mod._memory_rates(t1, t2) == _decay_rates(t1, t2)     # (kept)
    with pytest.raises(InvalidParameterError):
        eng_mod._memory_rates(1e9, 3e9)          # T2 > 2 T1: no physical memory
    assert (1e9, 3e9) not in eng_mod._RATES
    for k in range(300):
        eng_mod._memory_rates(math.inf, 1e6 + k)
    assert len(eng_mod._RATES) <= 256
    # the last pair read is answered without its key: memories read in turn
    # (and times given as ints, which skip that shortcut) still get their own
    pairs = [(math.inf, 1e9), (2e9, 1e9), (math.inf, 1e9), (1e9, 1e9), (2e9, 1e9),
             (2_000_000_000, 1_000_000_000), (math.inf, 1e9)]
    for t1, t2 in pairs + pairs[::-1]:
        assert eng_mod._memory_rates(t1, t2) == _decay_rates(t1, t2)
    with pytest.raises(InvalidParameterError):   # right after a kept pair: still checked
        eng_mod._memory_rates(1e9, 3e9)
    with pytest.raises(InvalidParameterError):
        eng_mod._memory_rates(math.nan, 1e9)
