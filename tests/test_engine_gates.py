"""Gate matrices against the textbook, and the engine's gate kernels against a naive reference.

Tolerance: 1e-12 absolute on matrix entries. Every quantity here is a few
products of O(1) numbers, so round-off is ~1e-16 per operation; 1e-12 leaves
room for a few hundred operations and still catches any real error (which is
O(0.1) or more).
"""
import math

import numpy as np
import pytest

from qstack.physical import gates as g
from qstack.physical.engine import QuantumEngine
from qstack.physical.states import random_density_matrix, random_ket

ATOL = 1e-12
r2 = 1 / math.sqrt(2)


def test_textbook_single_qubit():
    np.testing.assert_allclose(g.I, [[1, 0], [0, 1]], atol=ATOL)
    np.testing.assert_allclose(g.X, [[0, 1], [1, 0]], atol=ATOL)
    np.testing.assert_allclose(g.Y, [[0, -1j], [1j, 0]], atol=ATOL)
    np.testing.assert_allclose(g.Z, [[1, 0], [0, -1]], atol=ATOL)
    np.testing.assert_allclose(g.H, [[r2, r2], [r2, -r2]], atol=ATOL)
    np.testing.assert_allclose(g.S, [[1, 0], [0, 1j]], atol=ATOL)
    np.testing.assert_allclose(g.SDG, [[1, 0], [0, -1j]], atol=ATOL)
    np.testing.assert_allclose(g.T, [[1, 0], [0, (1 + 1j) * r2]], atol=ATOL)
    np.testing.assert_allclose(g.S @ g.SDG, np.eye(2), atol=ATOL)
    np.testing.assert_allclose(g.T @ g.T, g.S, atol=ATOL)


def test_textbook_two_qubit():
    np.testing.assert_allclose(g.CNOT, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], atol=ATOL)
    np.testing.assert_allclose(g.CZ, np.diag([1, 1, 1, -1]), atol=ATOL)
    np.testing.assert_allclose(g.SWAP, [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], atol=ATOL)
    np.testing.assert_allclose(g.controlled(g.X), g.CNOT, atol=ATOL)


@pytest.mark.parametrize("theta", [0.0, 0.3, math.pi / 2, math.pi, 2.5, -1.1])
def test_rotations_are_exponentials(theta):
    from scipy.linalg import expm

    for fn, p in ((g.rx, g.X), (g.ry, g.Y), (g.rz, g.Z)):
        np.testing.assert_allclose(fn(theta), expm(-0.5j * theta * p), atol=ATOL)
    # u3's first column is the Bloch point (theta, phi).
    u = g.u3(theta, 0.7, -0.4)
    np.testing.assert_allclose(u[:, 0], [math.cos(theta / 2), np.exp(0.7j) * math.sin(theta / 2)], atol=ATOL)
    assert g.is_unitary(u)


def test_constants_are_read_only():
    with pytest.raises(ValueError):
        g.X[0, 0] = 5


def embed(u, targets, n):
    """Naive reference: the full 2^n operator of ``u`` on ``targets``, built entry by entry."""
    k = len(targets)
    d = 1 << n
    full = np.zeros((d, d), dtype=complex)
    for col in range(d):
        bits = [(col >> (n - 1 - i)) & 1 for i in range(n)]
        sub_in = 0
        for t in targets:
            sub_in = (sub_in << 1) | bits[t]
        for sub_out in range(1 << k):
            amp = u[sub_out, sub_in]
            if amp == 0:
                continue
            out_bits = list(bits)
            for j, t in enumerate(targets):
                out_bits[t] = (sub_out >> (k - 1 - j)) & 1
            row = 0
            for b in out_bits:
                row = (row << 1) | b
            full[row, col] += amp
    return full


NAMED_1Q = [("x", g.X), ("y", g.Y), ("z", g.Z), ("h", g.H), ("s", g.S), ("sdg", g.SDG), ("t", g.T)]


@pytest.mark.parametrize("name,mat", NAMED_1Q)
@pytest.mark.parametrize("n,target", [(1, 0), (2, 0), (2, 1), (3, 1), (4, 3)])
def test_engine_single_qubit_gates(name, mat, n, target):
    rng = np.random.default_rng(7)
    rho0 = random_density_matrix(rng, n)
    eng = QuantumEngine(rng)
    qs = eng.from_density_matrix(rho0)
    getattr(eng, name)(qs[target])
    full = embed(mat, [target], n)
    np.testing.assert_allclose(eng.density_matrix(qs), full @ rho0 @ full.conj().T, atol=ATOL)


@pytest.mark.parametrize("name,fn", [("rx", g.rx), ("ry", g.ry), ("rz", g.rz)])
def test_engine_rotations(name, fn):
    rng = np.random.default_rng(8)
    rho0 = random_density_matrix(rng, 3)
    eng = QuantumEngine(rng)
    qs = eng.from_density_matrix(rho0)
    getattr(eng, name)(qs[2], 0.77)
    full = embed(fn(0.77), [2], 3)
    np.testing.assert_allclose(eng.density_matrix(qs), full @ rho0 @ full.conj().T, atol=ATOL)


@pytest.mark.parametrize("name,mat", [("cnot", g.CNOT), ("cz", g.CZ), ("swap", g.SWAP)])
@pytest.mark.parametrize("n,targets", [(2, (0, 1)), (2, (1, 0)), (3, (0, 2)), (3, (2, 0)), (4, (3, 1))])
def test_engine_two_qubit_gates(name, mat, n, targets):
    rng = np.random.default_rng(9)
    rho0 = random_density_matrix(rng, n)
    eng = QuantumEngine(rng)
    qs = eng.from_density_matrix(rho0)
    getattr(eng, name)(qs[targets[0]], qs[targets[1]])
    full = embed(mat, list(targets), n)
    np.testing.assert_allclose(eng.density_matrix(qs), full @ rho0 @ full.conj().T, atol=ATOL)


@pytest.mark.parametrize("targets", [(0, 1, 2), (2, 0, 1), (1, 3, 0)])
def test_engine_three_qubit_unitary(targets):
    from scipy.stats import unitary_group

    rng = np.random.default_rng(10)
    u = unitary_group.rvs(8, random_state=11)
    rho0 = random_density_matrix(rng, 4)
    eng = QuantumEngine(rng)
    qs = eng.from_density_matrix(rho0)
    eng.apply(u, [qs[t] for t in targets])
    full = embed(u, list(targets), 4)
    np.testing.assert_allclose(eng.density_matrix(qs), full @ rho0 @ full.conj().T, atol=ATOL)


def test_gates_across_groups_merge_and_act_correctly():
    # Three separate qubits, each in a random pure state; a CNOT between the
    # first and third must equal the gate on the kron of the three states.
    rng = np.random.default_rng(12)
    kets = [random_ket(rng) for _ in range(3)]
    eng = QuantumEngine(rng)
    qs = [eng.from_ket(k)[0] for k in kets]
    assert eng.num_groups == 3
    eng.cnot(qs[2], qs[0])
    assert eng.num_groups == 2
    psi = np.kron(np.kron(kets[0], kets[1]), kets[2])
    psi = embed(g.CNOT, [2, 0], 3) @ psi
    np.testing.assert_allclose(eng.density_matrix(qs), np.outer(psi, psi.conj()), atol=ATOL)


def test_apply_refuses_non_unitary_and_bad_shapes():
    eng = QuantumEngine(0)
    q, r = eng.qubit(), eng.qubit()
    with pytest.raises(ValueError):
        eng.apply(np.array([[1, 0], [0, 0.5]]), [q])
    with pytest.raises(ValueError):
        eng.apply(g.CNOT, [q])
    with pytest.raises(ValueError):
        eng.apply(g.X, [q, r])


def test_qubit_handle_methods():
    eng = QuantumEngine(0)
    q, r = eng.qubit("a"), eng.qubit("b")
    q.h()
    q.cnot(r)
    assert eng.bell_fidelity(q, r, 0) == pytest.approx(1.0, abs=ATOL)
    q.z()
    assert eng.bell_fidelity(q, r, 1) == pytest.approx(1.0, abs=ATOL)
    assert q.label == "a" and "a" in repr(q)
