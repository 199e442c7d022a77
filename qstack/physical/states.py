"""Pure helpers on state vectors and density matrices (numpy, no engine).

Conventions shared by the whole stack:

* Qubit ordering: the first qubit is the most significant bit (``kron(a, b)``).
* Fidelity is the *squared* (Jozsa) fidelity ``F = (tr sqrt(sqrt(rho) sigma sqrt(rho)))^2``,
  which for a pure target is ``<psi|rho|psi>``; this is the F of a Werner
  state ``F |Phi+><Phi+| + ...`` and of the repeater literature.
* Bell index ``b = (x << 1) | z`` in 0..3 names the Bell state
  ``(I (x) X^x Z^z) |Phi+>``: 0 = Phi+, 1 = Phi-, 2 = Psi+, 3 = Psi-.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "PHI_PLUS", "PHI_MINUS", "PSI_PLUS", "PSI_MINUS", "BELL_NAMES",
    "KET_0", "KET_1", "KET_PLUS", "KET_MINUS", "KET_PLUS_I", "KET_MINUS_I",
    "ket", "ket_from_angles", "plus_theta", "dm", "bell_state", "bell_dm",
    "BELL_BASIS", "fidelity", "trace_distance", "partial_trace",
    "is_valid_density_matrix", "random_ket", "random_density_matrix", "num_qubits_of",
]

PHI_PLUS, PHI_MINUS, PSI_PLUS, PSI_MINUS = 0, 1, 2, 3
BELL_NAMES = ("Phi+", "Phi-", "Psi+", "Psi-")


def _const(v) -> np.ndarray:
    a = np.array(v, dtype=np.complex128)
    a.flags.writeable = False
    return a


_R2 = 1.0 / math.sqrt(2.0)
KET_0 = _const([1, 0])
KET_1 = _const([0, 1])
KET_PLUS = _const([_R2, _R2])
KET_MINUS = _const([_R2, -_R2])
KET_PLUS_I = _const([_R2, 1j * _R2])
KET_MINUS_I = _const([_R2, -1j * _R2])

_KET_CHARS = {
    "0": KET_0, "1": KET_1, "+": KET_PLUS, "-": KET_MINUS,
    "r": KET_PLUS_I, "l": KET_MINUS_I,  # right/left circular: the Y eigenstates
}

#: Columns are the Bell states in Bell-index order (so ``BELL_BASIS[:, b]`` is
#: ``bell_state(b)``); ``BELL_BASIS.conj().T @ rho @ BELL_BASIS`` is rho in the
#: Bell basis.
BELL_BASIS = _const(
    np.array(
        [
            [_R2, 0, 0, _R2],    # Phi+  = (|00> + |11>)/sqrt2
            [_R2, 0, 0, -_R2],   # Phi-  = (|00> - |11>)/sqrt2
            [0, _R2, _R2, 0],    # Psi+  = (|01> + |10>)/sqrt2
            [0, _R2, -_R2, 0],   # Psi-  = (|01> - |10>)/sqrt2
        ]
    ).T
)


def ket(spec: str) -> np.ndarray:
    """Product state from a string of ``0 1 + - r l`` (r/l = Y eigenstates |+i>/|-i>).

    ``ket("0+")`` is ``kron(|0>, |+>)``.
    """
    if not spec:
        raise ValueError("ket spec must name at least one qubit")
    out = np.ones(1, dtype=np.complex128)
    for ch in spec:
        try:
            out = np.kron(out, _KET_CHARS[ch])
        except KeyError:
            raise ValueError(f"unknown ket symbol {ch!r}; use one of 0 1 + - r l") from None
    return out


def ket_from_angles(theta: float, phi: float) -> np.ndarray:
    """``cos(theta/2)|0> + e^{i phi} sin(theta/2)|1>``: the Bloch-sphere point (theta, phi), radians."""
    return np.array(
        [math.cos(theta / 2), np.exp(1j * phi) * math.sin(theta / 2)], dtype=np.complex128
    )


def plus_theta(theta: float) -> np.ndarray:
    """``|+_theta> = (|0> + e^{i theta}|1>)/sqrt2`` (the UBQC resource state), theta in radians."""
    return np.array([_R2, _R2 * np.exp(1j * theta)], dtype=np.complex128)


def dm(psi: np.ndarray) -> np.ndarray:
    """Density matrix ``|psi><psi|`` of a (normalised) ket."""
    psi = np.asarray(psi, dtype=np.complex128).reshape(-1)
    return np.outer(psi, psi.conj())


def bell_state(bell_index: int = PHI_PLUS) -> np.ndarray:
    """The Bell ket with the given Bell index (0 Phi+, 1 Phi-, 2 Psi+, 3 Psi-)."""
    if bell_index not in (0, 1, 2, 3):
        raise ValueError(f"bell_index must be 0..3, got {bell_index!r}")
    return BELL_BASIS[:, bell_index].copy()


def bell_dm(bell_index: int = PHI_PLUS) -> np.ndarray:
    """Density matrix of a Bell state."""
    return dm(bell_state(bell_index))


def num_qubits_of(a: np.ndarray) -> int:
    """Number of qubits of a ket (length 2^n) or a density matrix (2^n x 2^n)."""
    d = a.shape[0]
    n = d.bit_length() - 1
    if d < 2 or (1 << n) != d:
        raise ValueError(f"dimension {d} is not a power of two >= 2")
    return n


def _psd_sqrt(rho: np.ndarray) -> np.ndarray:
    # eigh, not scipy.linalg.sqrtm: rho is Hermitian, and clipping the tiny
    # negative eigenvalues that round-off leaves keeps the root Hermitian PSD.
    w, v = np.linalg.eigh(rho)
    w = np.sqrt(np.clip(w, 0.0, None))
    return (v * w) @ v.conj().T


def fidelity(rho: np.ndarray, target: np.ndarray) -> float:
    """Squared fidelity between ``rho`` and ``target``; each may be a ket or a density matrix.

    When either is a ket this is ``<psi|sigma|psi>`` (exact, cheap); two
    density matrices use Uhlmann's formula.
    """
    rho = np.asarray(rho, dtype=np.complex128)
    target = np.asarray(target, dtype=np.complex128)
    if rho.ndim == 1 and target.ndim == 1:
        if rho.shape != target.shape:
            raise ValueError(f"shape mismatch {rho.shape} vs {target.shape}")
        return float(abs(np.vdot(target, rho)) ** 2)
    if rho.ndim == 1:
        rho, target = target, rho
    if target.ndim == 1:
        if rho.shape != (target.shape[0], target.shape[0]):
            raise ValueError(f"shape mismatch {rho.shape} vs ket {target.shape}")
        return float(np.real(np.vdot(target, rho @ target)))
    if rho.shape != target.shape:
        raise ValueError(f"shape mismatch {rho.shape} vs {target.shape}")
    sr = _psd_sqrt(rho)
    m = sr @ target @ sr
    w = np.linalg.eigvalsh((m + m.conj().T) / 2)
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))) ** 2)


def trace_distance(rho: np.ndarray, sigma: np.ndarray) -> float:
    """``(1/2) || rho - sigma ||_1`` for two density matrices (or kets, converted)."""
    rho = np.asarray(rho, dtype=np.complex128)
    sigma = np.asarray(sigma, dtype=np.complex128)
    if rho.ndim == 1:
        rho = dm(rho)
    if sigma.ndim == 1:
        sigma = dm(sigma)
    if rho.shape != sigma.shape:
        raise ValueError(f"shape mismatch {rho.shape} vs {sigma.shape}")
    d = rho - sigma
    return float(0.5 * np.sum(np.abs(np.linalg.eigvalsh((d + d.conj().T) / 2))))


def partial_trace(rho: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """Reduced density matrix on the qubits ``keep`` (0 = first qubit), in the order given.

    ``partial_trace(rho, [2, 0])`` traces out every other qubit and returns the
    state of qubits 2 and 0 with qubit 2 as the most significant.
    """
    rho = np.asarray(rho)
    n = num_qubits_of(rho)
    keep = list(keep)
    if len(set(keep)) != len(keep) or any(not 0 <= k < n for k in keep):
        raise ValueError(f"keep={keep} must be distinct qubit indices in 0..{n - 1}")
    return _ptrace(rho, n, keep)


def _ptrace(rho: np.ndarray, n: int, keep: list[int]) -> np.ndarray:
    # einsum with integer sublists: a traced qubit shares its row and column label.
    rows = list(range(n))
    cols = list(range(n, 2 * n))
    kept = set(keep)
    for i in range(n):
        if i not in kept:
            cols[i] = rows[i]
    out = [rows[i] for i in keep] + [cols[i] for i in keep]
    d = 1 << len(keep)
    return np.einsum(rho.reshape((2,) * (2 * n)), rows + cols, out).reshape(d, d)


def is_valid_density_matrix(rho: np.ndarray, atol: float = 1e-9) -> bool:
    """Square 2^n matrix, Hermitian, trace 1 and eigenvalues >= -atol (all within ``atol``)."""
    rho = np.asarray(rho)
    if rho.ndim != 2 or rho.shape[0] != rho.shape[1]:
        return False
    try:
        num_qubits_of(rho)
    except ValueError:
        return False
    if not np.all(np.isfinite(rho)):
        return False
    if not np.allclose(rho, rho.conj().T, atol=atol):
        return False
    if abs(np.trace(rho) - 1.0) > atol:
        return False
    return bool(np.linalg.eigvalsh((rho + rho.conj().T) / 2).min() >= -atol)


def random_ket(rng: np.random.Generator, n_qubits: int = 1) -> np.ndarray:
    """Haar-random pure state (normalised complex Gaussian vector)."""
    d = 1 << n_qubits
    v = rng.normal(size=d) + 1j * rng.normal(size=d)
    return v / np.linalg.norm(v)


def random_density_matrix(rng: np.random.Generator, n_qubits: int = 1, rank: int | None = None) -> np.ndarray:
    """Random mixed state ``G G^dagger / tr`` from a complex Gaussian G (Hilbert-Schmidt measure for full rank)."""
    d = 1 << n_qubits
    r = d if rank is None else rank
    g = rng.normal(size=(d, r)) + 1j * rng.normal(size=(d, r))
    m = g @ g.conj().T
    return m / np.trace(m).real
