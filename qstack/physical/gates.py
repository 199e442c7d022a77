"""Gate matrices (numpy ``complex128``), textbook conventions.

Qubit ordering in every multi-qubit matrix: the first qubit is the most
significant bit, i.e. ``kron(a, b)`` acts with ``a`` on the first qubit. So
``CNOT`` is control = first qubit, target = second.

Rotations are ``R_P(theta) = exp(-i theta P / 2)`` (angles in radians), so
``rx(pi)`` equals ``X`` up to the global phase ``-i``.

The module-level constants are read-only arrays: they are shared by every
caller, and an accidental in-place edit would silently change physics
everywhere.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "I", "X", "Y", "Z", "H", "S", "SDG", "T", "TDG",
    "CNOT", "CX", "CZ", "SWAP", "PAULIS",
    "rx", "ry", "rz", "phase", "u3", "controlled", "is_unitary",
]


def _const(rows) -> np.ndarray:
    a = np.array(rows, dtype=np.complex128)
    a.flags.writeable = False
    return a


_R2 = 1.0 / math.sqrt(2.0)

I = _const([[1, 0], [0, 1]])  # noqa: E741 - the conventional name
X = _const([[0, 1], [1, 0]])
Y = _const([[0, -1j], [1j, 0]])
Z = _const([[1, 0], [0, -1]])
H = _const([[_R2, _R2], [_R2, -_R2]])
S = _const([[1, 0], [0, 1j]])
SDG = _const([[1, 0], [0, -1j]])
T = _const([[1, 0], [0, np.exp(1j * math.pi / 4)]])
TDG = _const([[1, 0], [0, np.exp(-1j * math.pi / 4)]])

#: Pauli matrices indexed 0..3 as I, X, Y, Z (the index convention used by
#: :mod:`qstack.physical.bell_diagonal` for ``apply_pauli``).
PAULIS = (I, X, Y, Z)

CNOT = _const([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
CX = CNOT
CZ = _const([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]])
SWAP = _const([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


def rx(theta: float) -> np.ndarray:
    """``exp(-i theta X / 2)``; theta in radians."""
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -1j * s], [-1j * s, c]], dtype=np.complex128)


def ry(theta: float) -> np.ndarray:
    """``exp(-i theta Y / 2)``; theta in radians."""
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -s], [s, c]], dtype=np.complex128)


def rz(theta: float) -> np.ndarray:
    """``exp(-i theta Z / 2)`` = diag(e^{-i theta/2}, e^{i theta/2}); theta in radians."""
    e = np.exp(-0.5j * theta)
    return np.array([[e, 0], [0, e.conjugate()]], dtype=np.complex128)


def phase(phi: float) -> np.ndarray:
    """diag(1, e^{i phi}): ``rz`` without the global phase (S = phase(pi/2))."""
    return np.array([[1, 0], [0, np.exp(1j * phi)]], dtype=np.complex128)


def u3(theta: float, phi: float, lam: float) -> np.ndarray:
    """The general single-qubit unitary (up to global phase), OpenQASM's U(theta, phi, lambda).

    Its first column is ``cos(theta/2)|0> + e^{i phi} sin(theta/2)|1>``, the
    state at polar angle theta and azimuth phi on the Bloch sphere.
    """
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array(
        [[c, -np.exp(1j * lam) * s],
         [np.exp(1j * phi) * s, np.exp(1j * (phi + lam)) * c]],
        dtype=np.complex128,
    )


def controlled(u: np.ndarray) -> np.ndarray:
    """The controlled version of a k-qubit unitary: control is the first (most significant) qubit."""
    u = np.asarray(u, dtype=np.complex128)
    d = u.shape[0]
    out = np.eye(2 * d, dtype=np.complex128)
    out[d:, d:] = u
    return out


def is_unitary(u: np.ndarray, atol: float = 1e-10) -> bool:
    """True if ``u`` is a square matrix with ``u u^dagger = 1`` within ``atol``."""
    u = np.asarray(u)
    if u.ndim != 2 or u.shape[0] != u.shape[1]:
        return False
    return bool(np.allclose(u @ u.conj().T, np.eye(u.shape[0]), atol=atol))
