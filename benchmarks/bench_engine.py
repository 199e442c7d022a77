"""Throughput of the quantum state engine (qstack.physical.engine).

Figures (wall clock on this machine; no test asserts them):

* ``engine_two_qubit_gates_per_s`` — CNOT on two qubits already in one
  2-qubit group (a 4x4 density matrix), repeated.
* ``engine_single_qubit_gates_per_s`` — H on a qubit in its own group.
* ``engine_single_qubit_gates_4q_group_per_s`` — H on one qubit of a 4-qubit
  group (the reshaped-matmul kernel, no 16x16 operator is built).
* ``engine_measurements_per_s`` — Z measurement of one half of a dm Bell pair
  (split of a 2-qubit group), pair creation included.
* ``engine_bd_swaps_per_s`` / ``engine_dm_swaps_per_s`` — entanglement swaps
  along a linear repeater chain of Werner pairs (BSM of the chain's right end
  with the next pair's left half, then the Pauli correction); pairs are created
  before the clock starts. In dm each swap merges two 4x4 groups into a
  16x16 one and projects back to 4x4.
* ``engine_bd_chain_1000_links_s`` — seconds for a complete 1000-link chain in
  the bd formalism: create the pairs, memory decay on every half, swap end to
  end, read the fidelity (links of F = 0.9999, each half waiting 10 us in a
  memory with T1 = 10 s, T2 = 1 s).

Run: ``python -m benchmarks.bench_engine`` (prints JSON).
"""
from __future__ import annotations

import gc
import json
import time

import numpy as np

from qstack.physical.engine import QuantumEngine

REPEATS = 3


def _best_rate(fn, n: int) -> float:
    """Operations per second: best of REPEATS runs of ``fn(n)`` (which returns its own elapsed seconds)."""
    best = min(fn(n) for _ in range(REPEATS))
    return n / best


def two_qubit_gates(n: int) -> float:
    eng = QuantumEngine(np.random.default_rng(0))
    a, b = eng.bell_pair(0, 0.9)
    cnot = eng.cnot
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        cnot(a, b)
    return time.perf_counter() - t0


def single_qubit_gates(n: int) -> float:
    eng = QuantumEngine(np.random.default_rng(0))
    q = eng.qubit()
    h = eng.h
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        h(q)
    return time.perf_counter() - t0


def single_qubit_gates_4q(n: int) -> float:
    eng = QuantumEngine(np.random.default_rng(0))
    qs = [eng.qubit() for _ in range(4)]
    for q in qs[1:]:
        eng.cnot(qs[0], q)
    h = eng.h
    q = qs[2]
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        h(q)
    return time.perf_counter() - t0


def measurements(n: int) -> float:
    eng = QuantumEngine(np.random.default_rng(0))
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        a, b = eng.bell_pair(0, 0.95)
        eng.measure(a)
        eng.discard(a)
        eng.discard(b)
    return time.perf_counter() - t0


def chain_swaps(formalism: str, n: int) -> float:
    eng = QuantumEngine(np.random.default_rng(1))
    pairs = [eng.bell_pair(0, 0.999, formalism) for _ in range(n + 1)]
    right = pairs[0][1]
    bsm, x, z = eng.bsm, eng.x, eng.z
    gc.collect()
    t0 = time.perf_counter()
    for a, b in pairs[1:]:
        m = bsm(right, a)
        if m & 2:
            x(b)
        if m & 1:
            z(b)
        right = b
    elapsed = time.perf_counter() - t0
    assert eng.num_live_qubits == 2
    return elapsed


def bd_chain(links: int = 1000) -> tuple[float, float]:
    t0 = time.perf_counter()
    eng = QuantumEngine(np.random.default_rng(2))
    pairs = [eng.bell_pair(0, 0.9999, "bd") for _ in range(links)]
    for a, b in pairs:
        eng.memory_decay(a, 10_000.0, 1e10, 1e9)
        eng.memory_decay(b, 10_000.0, 1e10, 1e9)
    left, right = pairs[0]
    for a, b in pairs[1:]:
        m = eng.bsm(right, a)
        if m & 2:
            eng.x(b)
        if m & 1:
            eng.z(b)
        right = b
    f = eng.bell_fidelity(left, right)
    return time.perf_counter() - t0, f


def run() -> dict:
    chain_s, chain_f = min(bd_chain() for _ in range(REPEATS))
    return {
        "engine_two_qubit_gates_per_s": round(_best_rate(two_qubit_gates, 100_000)),
        "engine_single_qubit_gates_per_s": round(_best_rate(single_qubit_gates, 100_000)),
        "engine_single_qubit_gates_4q_group_per_s": round(_best_rate(single_qubit_gates_4q, 50_000)),
        "engine_measurements_per_s": round(_best_rate(measurements, 20_000)),
        "engine_bd_swaps_per_s": round(_best_rate(lambda n: chain_swaps("bd", n), 100_000)),
        "engine_dm_swaps_per_s": round(_best_rate(lambda n: chain_swaps("dm", n), 20_000)),
        "engine_bd_chain_1000_links_s": round(chain_s, 4),
        "engine_bd_chain_1000_links_fidelity": round(chain_f, 6),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
