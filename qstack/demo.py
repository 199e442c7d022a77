"""``make demo``: qstack at work, with its metrics printed.

Stage one (this issue): teleport random qubit states with the state engine,
over a perfect pair and over Werner pairs, and print the fidelities next to the
closed form (2F+1)/3. Later stages turn this into a small network.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from qstack.physical.engine import QuantumEngine
from qstack.physical.states import fidelity, random_ket


def teleport(engine: QuantumEngine, psi: np.ndarray, pair_fidelity: float) -> float:
    """Teleport ``psi`` over a Werner pair of ``pair_fidelity``; return the
    fidelity of the received qubit with ``psi``."""
    (q,) = engine.from_ket(psi)
    a, b = engine.bell_pair(0, fidelity=pair_fidelity)
    engine.cnot(q, a)
    engine.h(q)
    m_z, m_x = engine.measure(q), engine.measure(a)
    engine.discard(q)       # measured qubits stay alive in the engine until discarded
    engine.discard(a)
    if m_x:
        engine.x(b)
    if m_z:
        engine.z(b)
    f = fidelity(engine.density_matrix([b]), psi)
    engine.discard(b)
    return f


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--states", type=int, default=2000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    engine = QuantumEngine(rng)
    print("qstack demo: teleporting random qubit states with the state engine\n")
    print(f"{'pair fidelity F':>16} {'mean fidelity':>14} {'(2F+1)/3':>10} {'states':>7}")
    for pair_f in (1.0, 0.95, 0.9, 0.8, 0.5):
        fids = [teleport(engine, random_ket(rng), pair_f) for _ in range(args.states)]
        print(f"{pair_f:>16.2f} {np.mean(fids):>14.4f} {(2 * pair_f + 1) / 3:>10.4f} "
              f"{args.states:>7}")
    print(f"\nlive qubits left in the engine: {engine.num_live_qubits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
