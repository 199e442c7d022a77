"""Reference simulations for the blind-computation tests, in plain numpy.

Independent of qstack's state engine: gate circuits as state vectors, and
measurement patterns run qubit by qubit (add ``|+>``, CZ along the graph's
edges, project on ``|+-_phi> = (|0> +- e^{i phi}|1>)/sqrt2`` with Born
probabilities). Conventions: ``P(k) = diag(1, e^{i k pi/4})``; wire 0 is the
most significant bit of a basis-state index.
"""
from __future__ import annotations

import numpy as np

H = np.array([[1, 1], [1, -1]], dtype=complex) / np.sqrt(2)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Z = np.diag([1, -1]).astype(complex)


def P(k: int) -> np.ndarray:
    return np.diag([1, np.exp(1j * np.pi / 4 * k)])


GATES = {"h": H, "s": P(2), "sdg": P(6), "t": P(1), "tdg": P(7), "x": X, "z": Z}


def apply1(psi: np.ndarray, u: np.ndarray, w: int, n: int) -> np.ndarray:
    t = np.tensordot(u, psi.reshape((2,) * n), axes=([1], [w]))
    return np.moveaxis(t, 0, w).reshape(-1)


def circuit_state(wires: int, gates) -> np.ndarray:
    """``C|0...0>`` for gates as in ``qstack.app.bqc.circuit`` (names, wires, k)."""
    psi = np.zeros(2 ** wires, complex)
    psi[0] = 1
    for g in gates:
        name = g[0].lower()
        if name == "cnot":
            c, t = g[1], g[2]
            a = psi.reshape((2,) * wires).copy()
            idx = [slice(None)] * wires
            idx[c] = 1
            a[tuple(idx)] = np.flip(a[tuple(idx)], axis=t if t < c else t - 1)
            psi = a.reshape(-1)
        elif name == "rz":
            psi = apply1(psi, P(g[2]), g[1], wires)
        else:
            psi = apply1(psi, GATES[name], g[1], wires)
    return psi


def same_state(a: np.ndarray, b: np.ndarray) -> float:
    """|<a|b>|^2 for normalised vectors: 1 when equal up to a global phase."""
    return float(abs(np.vdot(a, b)) ** 2)


def run_pattern(pattern, rng: np.random.Generator, z_errors=()) -> tuple[np.ndarray, list]:
    """Run ``pattern`` (a ``qstack.app.bqc.Pattern``) with random outcomes and
    its flow corrections; return the output column's state with the byproduct
    undone (before any output readout) and the outcomes. ``z_errors``: qubits
    that get a Z before they are entangled (a dephasing fault)."""
    g = pattern.graph
    live: list[int] = []
    psi = np.ones(1, complex)
    s = [0] * g.size
    edges = g.edges()
    added = 0

    def add(v: int) -> None:
        nonlocal psi
        plus = np.array([1, 1], complex) / np.sqrt(2)
        if v in z_errors:
            plus = Z @ plus
        psi = np.kron(psi, plus)
        live.append(v)
        n = len(live)
        for a, b in edges:
            if v in (a, b) and a in live and b in live:
                t = psi.reshape((2,) * n).copy()
                idx = [slice(None)] * n
                idx[live.index(a)] = 1
                idx[live.index(b)] = 1
                t[tuple(idx)] *= -1
                psi = t.reshape(-1)

    def measure(v: int, k: int) -> int:
        nonlocal psi
        n, i = len(live), live.index(v)
        t = np.moveaxis(psi.reshape((2,) * n), i, 0)
        e = np.exp(-1j * np.pi / 4 * k)
        branches = [(t[0] + e * t[1]) / np.sqrt(2), (t[0] - e * t[1]) / np.sqrt(2)]
        p0 = float(np.sum(abs(branches[0]) ** 2))
        out = 0 if rng.random() < p0 else 1
        b = branches[out]
        psi = (b / np.linalg.norm(b)).reshape(-1)
        live.remove(v)
        return out

    outputs = set(g.outputs)
    for received, measured in pattern.steps():
        while added < received:
            add(added)
            added += 1
        for v in measured:
            if v in outputs:
                continue
            s[v] = measure(v, pattern.corrected(v, s))
    while added < g.size:
        add(added)
        added += 1
    n = len(live)
    for i, v in enumerate(live):
        sx, sz = pattern.byproduct(v, s)
        if sx:
            psi = apply1(psi, X, i, n)
        if sz:
            psi = apply1(psi, Z, i, n)
    return psi, s
