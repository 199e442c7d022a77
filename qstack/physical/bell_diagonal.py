"""Bell-diagonal two-qubit states: four probabilities instead of a 4x4 matrix.

A Bell-diagonal state is ``rho = sum_b c_b |B_b><B_b|`` over the Bell basis,
with Bell index ``b = (x << 1) | z`` naming ``(I (x) X^x Z^z)|Phi+>``
(0 Phi+, 1 Phi-, 2 Psi+, 3 Psi-). The family is closed under Pauli gates,
Pauli channels on either qubit and entanglement swapping, so repeater chains
with Pauli noise can be simulated exactly with a handful of float operations.

Pauli index convention for :meth:`BellDiagonal.apply_pauli`: 0 = I, 1 = X,
2 = Y, 3 = Z (the order of :data:`qstack.physical.gates.PAULIS`).

Why no separate Pauli frame: a Pauli on either qubit only permutes the
coefficients, ``b -> b XOR mask`` with mask I=0, X=2 (flips x), Y=3, Z=1
(flips z), and the permutation is as cheap as updating a frame would be. The
mask is the same for both qubits because ``(P (x) I)|Phi+> = (I (x) P^T)|Phi+>``
and ``P^T = +-P``; for the same reason a Bell-diagonal state is symmetric
under exchanging its two qubits.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

try:
    import cython
except ImportError:              # (Cython is a build tool, not a dependency)
    from qstack._cython_shadow import cython

from .states import BELL_BASIS, BELL_NAMES, PHI_MINUS, PHI_PLUS, PSI_MINUS, PSI_PLUS

__all__ = [
    "BellDiagonal", "swap_bell_diagonal", "swap_average", "PAULI_TO_BELL_MASK",
    "decay_polarised", "swap_polarised", "swap_outcome_probs", "polarised_density_matrix",
    "polarised_from_density_matrix", "FAMILY_ATOL",
    "PHI_PLUS", "PHI_MINUS", "PSI_PLUS", "PSI_MINUS", "BELL_NAMES",
]

#: Bell-index XOR mask of the Pauli with index 0..3 (I, X, Y, Z).
PAULI_TO_BELL_MASK = (0, 2, 3, 1)

# Projectors |B_b><B_b|, shape (4, 4, 4).
_PROJ = np.einsum("ib,jb->bij", BELL_BASIS, BELL_BASIS.conj())
_PROJ.flags.writeable = False
_PROJ_FLAT = _PROJ.reshape(4, 16)

# Coefficients are kept as a tuple of four Python floats: every map here is a
# dozen multiply-adds, and on four numbers plain float arithmetic beats numpy's
# per-call overhead several times over (this is the repeater-chain hot path).


@cython.locals(a0=cython.double, a1=cython.double, a2=cython.double, a3=cython.double,
               b0=cython.double, b1=cython.double, b2=cython.double, b3=cython.double)
def _xor_conv(a: tuple, b: tuple) -> tuple:
    """``c[k] = sum_i a[i] b[i ^ k]`` written out. (Compiled, in C doubles: the
    same IEEE operations in the same order as Python's floats, so the same
    numbers, with no float object made per product; once per swap.)"""
    a0, a1, a2, a3 = a
    b0, b1, b2, b3 = b
    return (
        a0 * b0 + a1 * b1 + a2 * b2 + a3 * b3,
        a0 * b1 + a1 * b0 + a2 * b3 + a3 * b2,
        a0 * b2 + a1 * b3 + a2 * b0 + a3 * b1,
        a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0,
    )


def _permute(c: tuple, m: int) -> tuple:
    """``out[b] = c[b ^ m]``."""
    if m == 0:
        return c
    c0, c1, c2, c3 = c
    if m == 1:
        return (c1, c0, c3, c2)
    if m == 2:
        return (c2, c3, c0, c1)
    return (c3, c2, c1, c0)


def _check_index(name: str, v: int, hi: int = 4) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 0 <= v < hi:
        raise ValueError(f"{name} must be an int in 0..{hi - 1}, got {v!r}")
    return int(v)


_PAULI_IDS = frozenset((0, 1, 2, 3))  # fast path for valid indices; anything else gets checked


def _check_side(side: int) -> None:
    if side not in (0, 1):
        raise ValueError(f"side must be 0 (first qubit) or 1 (second qubit), got {side!r}")


class BellDiagonal:
    """An immutable Bell-diagonal state: probabilities ``coeffs[b]`` of the four Bell states.

    Every operation returns a new object. ``coeffs`` is a read-only float64
    array summing to 1.
    """

    __slots__ = ("_c",)

    def __init__(self, coeffs: Sequence[float], *, atol: float = 1e-9) -> None:
        c = np.array(coeffs, dtype=np.float64).reshape(-1)
        if c.shape != (4,):
            raise ValueError(f"a Bell-diagonal state has 4 coefficients, got {c.shape[0]}")
        if not np.all(np.isfinite(c)) or c.min() < -atol:
            raise ValueError(f"Bell-diagonal coefficients must be finite and >= 0, got {c.tolist()}")
        s = c.sum()
        if abs(s - 1.0) > atol:
            raise ValueError(f"Bell-diagonal coefficients must sum to 1, got sum {s!r}")
        c = np.clip(c, 0.0, None)
        c /= c.sum()
        self._c = tuple(float(v) for v in c)

    @classmethod
    def _trusted(cls, c: tuple) -> "BellDiagonal":
        # Internal constructor for results of exact coefficient maths: skips
        # validation, which would otherwise dominate the cost of a swap (a
        # subclass, if anyone makes one, is built and checked by its __init__).
        return _from_coeffs(c) if cls is BellDiagonal else cls(c)

    # -- construction -------------------------------------------------------
    @classmethod
    def werner(cls, fidelity: float, bell_index: int = PHI_PLUS) -> "BellDiagonal":
        """``F`` on ``bell_index``, ``(1-F)/3`` on each of the other three Bell states."""
        f = float(fidelity)
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"fidelity must be in [0, 1], got {fidelity!r}")
        b = _check_index("bell_index", bell_index)
        c = [(1.0 - f) / 3.0] * 4
        c[b] = f
        return cls._trusted(tuple(c))

    @classmethod
    def pure(cls, bell_index: int = PHI_PLUS) -> "BellDiagonal":
        """The pure Bell state with this index."""
        c = [0.0] * 4
        c[_check_index("bell_index", bell_index)] = 1.0
        return cls._trusted(tuple(c))

    @classmethod
    def from_density_matrix(cls, rho: np.ndarray) -> "BellDiagonal":
        """Bell twirl of a two-qubit density matrix: keep its diagonal in the Bell basis.

        Exact for a Bell-diagonal ``rho``; for any other state this is the
        state after a (real, implementable) Bell twirl, which keeps every Bell
        fidelity.
        """
        rho = np.asarray(rho, dtype=np.complex128)
        if rho.shape != (4, 4):
            raise ValueError(f"expected a 4x4 density matrix, got shape {rho.shape}")
        c = np.real(np.einsum("bij,ji->b", _PROJ, rho))
        c = np.clip(c, 0.0, None)
        s = c.sum()
        if not s > 0.0:
            raise ValueError("density matrix has zero trace")
        return cls._trusted(tuple(float(v) for v in c / s))

    # -- views --------------------------------------------------------------
    @property
    def coeffs(self) -> np.ndarray:
        """Read-only float64 array of the four Bell probabilities, in Bell-index order."""
        a = np.array(self._c, dtype=np.float64)
        a.flags.writeable = False
        return a

    def as_tuple(self) -> tuple[float, float, float, float]:
        """The four coefficients as plain floats."""
        return self._c

    def __getitem__(self, bell_index: int) -> float:
        return self._c[bell_index]

    def fidelity(self, bell_index: int = PHI_PLUS) -> float:
        """Fidelity to the Bell state ``bell_index``: its coefficient."""
        if type(bell_index) is int and 0 <= bell_index <= 3:    # (the usual call)
            return self._c[bell_index]
        return self._c[_check_index("bell_index", bell_index)]

    def to_density_matrix(self) -> np.ndarray:
        """The 4x4 density matrix (first qubit most significant)."""
        return (np.array(self._c) @ _PROJ_FLAT).reshape(4, 4)

    def allclose(self, other: "BellDiagonal", atol: float = 1e-12) -> bool:
        return all(abs(x - y) <= atol for x, y in zip(self._c, other._c))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BellDiagonal):
            return NotImplemented
        return self._c == other._c

    def __hash__(self) -> int:
        return hash(self._c)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={v:.6g}" for n, v in zip(BELL_NAMES, self._c))
        return f"BellDiagonal({parts})"

    # -- Pauli operations ---------------------------------------------------
    def apply_pauli(self, side: int, pauli: int) -> "BellDiagonal":
        """Apply Pauli ``pauli`` (0 I, 1 X, 2 Y, 3 Z) to qubit ``side`` (0 first, 1 second).

        The result does not depend on ``side`` (see the module docstring); the
        argument is kept so callers say what they mean and get it checked.
        """
        _check_side(side)
        if side != 0 and side != 1:
            _check_side(side)
        if pauli not in _PAULI_IDS:
            _check_index("pauli", pauli)
        return _from_coeffs(_permute(self._c, PAULI_TO_BELL_MASK[pauli]))

    def pauli_channel(self, side: int, px: float, py: float, pz: float) -> "BellDiagonal":
        """Apply X, Y, Z with probabilities px, py, pz to qubit ``side``."""
        _check_side(side)
        for name, v in (("px", px), ("py", py), ("pz", pz)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        pi = 1.0 - px - py - pz
        if pi < -1e-12:
            raise ValueError(f"px + py + pz must be <= 1, got {px + py + pz!r}")
        return self._pauli_unchecked(px, py, pz)

    @cython.locals(pi=cython.double,
                   c0=cython.double, c1=cython.double, c2=cython.double, c3=cython.double)
    def _pauli_unchecked(self, px: float, py: float, pz: float) -> "BellDiagonal":
        """:meth:`pauli_channel` for probabilities the caller has already checked
        (the engine's noise and memory decay, once per operation on a hot path;
        compiled, in C doubles, the same operations in the same order as
        Python's floats)."""
        pi = 1.0 - px - py - pz
        if pi < 0.0:
            pi = 0.0     # rounding: px + py + pz may exceed 1 by ~1e-12
        c0, c1, c2, c3 = self._c
        # out[b] = pI c[b] + pX c[b^2] + pY c[b^3] + pZ c[b^1]
        return _from_coeffs((
            pi * c0 + px * c2 + py * c3 + pz * c1,
            pi * c1 + px * c3 + py * c2 + pz * c0,
            pi * c2 + px * c0 + py * c1 + pz * c3,
            pi * c3 + px * c1 + py * c0 + pz * c2,
        ))

    def depolarize(self, side: int, p: float) -> "BellDiagonal":
        """Depolarising channel (replace by I/2 with probability p) on one qubit; F -> (1-p)F + p/4."""
        q = p / 4.0
        return self.pauli_channel(side, q, q, q)

    def dephase(self, side: int, p: float) -> "BellDiagonal":
        """Dephasing with coherences scaled by 1-p (Z with probability p/2), as ``channels_kraus.dephasing``."""
        return self.pauli_channel(side, 0.0, 0.0, p / 2.0)

    def bit_flip(self, side: int, p: float) -> "BellDiagonal":
        """X with probability p on one qubit."""
        return self.pauli_channel(side, p, 0.0, 0.0)

    def phase_flip(self, side: int, p: float) -> "BellDiagonal":
        """Z with probability p on one qubit."""
        return self.pauli_channel(side, 0.0, 0.0, p)

    # -- swapping -----------------------------------------------------------
    def swap(self, other: "BellDiagonal") -> dict[int, "BellDiagonal"]:
        """Post-swap states of the outer qubits for each BSM outcome (each has probability 1/4).

        ``self`` is the pair (A0, A1), ``other`` is (B0, B1), the BSM acts on
        (A1, B0); the returned states are of (A0, B1).
        """
        return {m: swap_bell_diagonal(self, other, m) for m in range(4)}

    def swap_average(self, other: "BellDiagonal") -> "BellDiagonal":
        """State after swapping with ``other`` and applying the Pauli correction; see :func:`swap_average`."""
        return swap_average(self, other)


@cython.locals(obj=BellDiagonal)
def _from_coeffs(c: tuple) -> BellDiagonal:
    """A :class:`BellDiagonal` with coefficients ``c`` (a tuple of four floats
    from exact coefficient maths), unchecked: :meth:`BellDiagonal._trusted`
    for this class, a C call where compiled (once per swap and memory decay)."""
    obj = BellDiagonal.__new__(BellDiagonal)
    obj._c = c
    return obj


def swap_average(a: BellDiagonal, b: BellDiagonal) -> BellDiagonal:
    """Outer-pair state after swapping ``a`` and ``b`` and correcting the BSM outcome.

    The XOR convolution ``c[k] = sum_i a[i] b[i ^ k]``: the Bell indices of the
    two input pairs add up (XOR) in the output. For Werner inputs this is
    ``F1 F2 + (1-F1)(1-F2)/3``. The correction for outcome ``m`` is the Pauli
    ``X^x Z^z`` (``m = (x << 1) | z``) on either outer qubit.
    """
    return _from_coeffs(_xor_conv(a._c, b._c))


def swap_bell_diagonal(a: BellDiagonal, b: BellDiagonal, bsm_outcome: int) -> BellDiagonal:
    """Uncorrected outer-pair state after a BSM with outcome ``bsm_outcome`` on the inner qubits.

    For pure inputs ``B_i`` and ``B_j`` and outcome ``m`` the outer pair is
    ``B_(i ^ j ^ m)``; for mixtures, ``c[k] = (a * b)[k ^ m]`` with ``*`` the
    XOR convolution. Every outcome has probability 1/4 for Bell-diagonal inputs.
    """
    if bsm_outcome not in _PAULI_IDS:
        _check_index("bsm_outcome", bsm_outcome)
    return _from_coeffs(_permute(_xor_conv(a._c, b._c), bsm_outcome))


# ---------------------------------------------------------------------------
# Bell-diagonal pairs with local Z polarisation: exact T1 decay.
#
# Amplitude damping (T1 relaxation) is not a Pauli channel: it pulls a qubit
# towards |0>, which gives the pair a local Bloch vector along Z and takes it
# out of the Bell-diagonal family. Replacing it by its Pauli twirl gets the
# Bell fidelity right while only one half has decayed, but not once both
# have: the second half's damping turns the first half's polarisation into
# ZZ correlation (a fidelity gain of gamma_A gamma_B / 4 the twirl misses).
#
# The smallest family that holds the exact state is one step larger: in the
# Pauli expansion rho = (1/4) sum_ij R_ij sigma_i (x) sigma_j a Bell-diagonal
# state has R = diag(1, tx, ty, tz); add the local polarisations
# za = <Z (x) I> = R_z0 and zb = <I (x) Z> = R_0z:
#
#     rho = rho_BD(c) + (za Z (x) I + zb I (x) Z) / 4.
#
# Bell fidelities are still the four coefficients c (Z (x) I and I (x) Z have
# no Bell-basis diagonal). Pauli gates and channels, amplitude damping,
# dephasing and entanglement swapping all map this family to itself, each in
# a few float operations, so T1 decay stays exact in the fast formalism.
# The correlations of c are t = (tx, ty, tz) = (<XX>, <YY>, <ZZ>):
#
#     tx = c0 - c1 + c2 - c3,  ty = -c0 + c1 + c2 - c3,  tz = c0 + c1 - c2 - c3
#     c  = (1 + tx - ty + tz, 1 - tx + ty + tz, 1 + tx + ty - tz, 1 - tx - ty - tz) / 4
#
# (Phi+ has t = (1, -1, 1), Phi- (-1, 1, 1), Psi+ (1, 1, -1), Psi- (-1, -1, -1).)
# ``pol`` below is the pair (za, zb), first qubit first.
# ---------------------------------------------------------------------------

def _corr(c: tuple) -> tuple:
    """(tx, ty, tz) = (<XX>, <YY>, <ZZ>) of Bell coefficients c."""
    c0, c1, c2, c3 = c
    return (c0 - c1 + c2 - c3, -c0 + c1 + c2 - c3, c0 + c1 - c2 - c3)


def _coeffs(tx: float, ty: float, tz: float) -> tuple:
    """Bell coefficients with correlations (tx, ty, tz); inverse of :func:`_corr`."""
    return ((1.0 + tx - ty + tz) * 0.25, (1.0 - tx + ty + tz) * 0.25,
            (1.0 + tx + ty - tz) * 0.25, (1.0 - tx - ty - tz) * 0.25)


def decay_polarised(bd: BellDiagonal, pol: tuple | None, side: int, gamma: float,
                    lam: float) -> tuple[BellDiagonal, tuple]:
    """Amplitude damping ``gamma`` then coherence factor ``lam`` on qubit ``side``, exactly.

    ``gamma`` is the probability |1> relaxes to |0> (``1 - exp(-t/T1)``);
    ``lam`` multiplies that qubit's X and Y components on top of the damping's
    own ``sqrt(1-gamma)`` (pure dephasing: ``1 - p`` in
    :func:`qstack.physical.channels_kraus.dephasing`'s convention). In the
    Pauli transfer picture damping sends I -> I + gamma Z, Z -> (1-gamma) Z,
    X, Y -> sqrt(1-gamma) X, Y, so, with ``z_s`` this qubit's polarisation and
    ``z_o`` the other's::

        tx, ty -> sqrt(1-gamma) lam (tx, ty)
        tz     -> (1-gamma) tz + gamma z_o
        z_s    -> (1-gamma) z_s + gamma,      z_o unchanged.

    Returns the new (coefficients, polarisation).
    """
    za, zb = (0.0, 0.0) if pol is None else pol
    # written out (no helper calls): this runs on every wait of a stored qubit
    c0, c1, c2, c3 = bd._c
    k = (1.0 - gamma) ** 0.5 * lam * 0.25
    hx = k * (c0 - c1 + c2 - c3)            # tx / 4 after the map
    hy = k * (c1 + c2 - c0 - c3)            # ty / 4
    keep = 1.0 - gamma
    tz = c0 + c1 - c2 - c3
    if side == 0:
        tz = keep * tz + gamma * zb
        za = keep * za + gamma
    else:
        tz = keep * tz + gamma * za
        zb = keep * zb + gamma
    hz = 0.25 + 0.25 * tz
    lz = 0.5 - hz
    c = (hz + hx - hy, hz - hx + hy, lz + hx + hy, lz - hx - hy)
    # round-off may leave -1e-17 where a coefficient is exactly 0
    if c[0] < 0.0 or c[1] < 0.0 or c[2] < 0.0 or c[3] < 0.0:
        c = tuple(v if v > 0.0 else 0.0 for v in c)
    return _from_coeffs(c), (za, zb)


def swap_outcome_probs(z_a1: float, z_b0: float) -> tuple[float, float, float, float]:
    """Probabilities of the four BSM outcomes on qubits (A1, B0) of two polarised pairs.

    ``z_a1`` is the polarisation of the measured half of pair A, ``z_b0`` of
    pair B. ``P(m) = (1 + d_m z_a1 z_b0) / 4`` with ``d_m = +1`` for Phi+- and
    ``-1`` for Psi+- (the <ZZ> of the projected Bell state): uniform for
    Bell-diagonal inputs.
    """
    s = 0.25 * z_a1 * z_b0
    return (0.25 + s, 0.25 + s, 0.25 - s, 0.25 - s)


# (<XX>, <YY>, <ZZ>) of Bell state m, the sign each correlation takes through
# a projection on it.
_BELL_CORR = ((1.0, -1.0, 1.0), (-1.0, 1.0, 1.0), (1.0, 1.0, -1.0), (-1.0, -1.0, -1.0))


def swap_polarised(a: BellDiagonal, pol_a: tuple | None, b: BellDiagonal, pol_b: tuple | None,
                   bsm_outcome: int) -> tuple[BellDiagonal, tuple | None]:
    """Uncorrected outer-pair state after a BSM with outcome ``bsm_outcome`` on (A1, B0).

    Pair A is (A0, A1), pair B is (B0, B1), each given as Bell coefficients and
    polarisation (first qubit first; None = none); returns (coefficients,
    polarisation) of (A0, B1). With ``R`` the Pauli-expansion matrices of
    the two pairs and ``D = diag(1, t(B_m))`` the correlations of the
    projected Bell state, the outer pair's matrix is ``R_A D R_B`` divided by
    its (0, 0) element, ``4 P(m)`` (see :func:`swap_outcome_probs`)::

        t'  = (ax dx bx, ay dy by, za0 zb1 + az dz bz) / (1 + za1 dz zb0)
        za' = (za0 + az dz zb0) / (1 + za1 dz zb0)
        zb' = (zb1 + za1 dz bz) / (1 + za1 dz zb0)

    The polarisation is None when it comes out exactly zero (back on the
    fast path).
    """
    if bsm_outcome not in _PAULI_IDS:
        _check_index("bsm_outcome", bsm_outcome)
    za0, za1 = (0.0, 0.0) if pol_a is None else pol_a
    zb0, zb1 = (0.0, 0.0) if pol_b is None else pol_b
    return _swap_polarised(a, za0, za1, b, zb0, zb1, bsm_outcome)


def _swap_polarised(a: BellDiagonal, za0: float, za1: float, b: BellDiagonal, zb0: float,
                    zb1: float, m: int) -> tuple[BellDiagonal, tuple | None]:
    """:func:`swap_polarised` with the polarisations as floats and the outcome
    unchecked (the engine's swap of every T1-decayed pair: written out, no
    helper calls)."""
    a0, a1, a2, a3 = a._c
    b0, b1, b2, b3 = b._c
    dx, dy, dz = _BELL_CORR[m]
    inv = 1.0 / (1.0 + za1 * dz * zb0)
    az = a0 + a1 - a2 - a3
    bz = b0 + b1 - b2 - b3
    q = 0.25 * inv
    hx = (a0 - a1 + a2 - a3) * (b0 - b1 + b2 - b3) * dx * q     # tx' / 4
    hy = (a1 + a2 - a0 - a3) * (b1 + b2 - b0 - b3) * dy * q     # ty' / 4
    hz = 0.25 + (za0 * zb1 + az * dz * bz) * q                  # (1 + tz') / 4
    lz = 0.5 - hz
    c = (hz + hx - hy, hz - hx + hy, lz + hx + hy, lz - hx - hy)
    if c[0] < 0.0 or c[1] < 0.0 or c[2] < 0.0 or c[3] < 0.0:
        c = tuple(v if v > 0.0 else 0.0 for v in c)
    z0 = (za0 + az * dz * zb0) * inv
    z1 = (zb1 + za1 * dz * bz) * inv
    return _from_coeffs(c), (None if z0 == 0.0 and z1 == 0.0 else (z0, z1))


#: Largest element (absolute value) of the part of a density matrix outside the
#: family ``rho_BD(c) + (za Z(x)I + zb I(x)Z)/4`` that
#: :func:`polarised_from_density_matrix` takes for round-off. Dropping a part of
#: size e changes no Bell fidelity now, nor after Pauli noise or T1/T2 decay
#: (they never map it into the family), and a swap's results by O(e): 1e-12
#: keeps that far below the 1e-9 to which the bd and dm formalisms agree.
FAMILY_ATOL = 1e-12


def polarised_from_density_matrix(rho: np.ndarray, atol: float = FAMILY_ATOL
                                  ) -> tuple[BellDiagonal, tuple | None] | None:
    """The (coefficients, polarisation) of a 4x4 density matrix, or None if it is outside the family.

    The inverse of :func:`polarised_density_matrix`. The family
    ``rho_BD(c) + (za Z(x)I + zb I(x)Z)/4`` is, in the computational basis
    (first qubit most significant), every state whose only off-diagonal
    elements are a **real** ``<00|rho|11>`` and a **real** ``<01|rho|10>``
    (their conjugates aside): the Pauli components II, XX, YY, ZZ, ZI, IZ. In
    the Bell basis: Bell-diagonal plus real coherences Phi+/Phi- (``(za +
    zb)/4``) and Psi+/Psi- (``(za - zb)/4``). A single-click herald is one
    (populations, and a real coherence between |01> and |10>); a state with an
    imaginary such coherence, or any other coherence, is not.

    ``rho`` must already be a valid density matrix (the engine checks it).
    Returns None when ``rho`` differs from its part in the family by more
    than ``atol`` in some element; otherwise the Bell coefficients (clipped at
    0, normalised) and ``(za, zb) = (<Z(x)I>, <I(x)Z>)`` (divided by the trace),
    or None for the polarisation when both are within ``atol`` of 0.
    """
    rho = np.asarray(rho, dtype=np.complex128)
    if rho.shape != (4, 4):
        raise ValueError(f"expected a 4x4 density matrix, got shape {rho.shape}")
    c = np.real(np.einsum("bij,ji->b", _PROJ, rho))     # Bell fidelities, unclipped
    d = np.real(np.diagonal(rho))
    za = float(d[0] + d[1] - d[2] - d[3])
    zb = float(d[0] - d[1] + d[2] - d[3])
    # the family part, rebuilt linearly (the Pauli components II, XX, YY, ZZ
    # from c, ZI and IZ from za, zb); the rest is what bd cannot hold
    part = (c @ _PROJ_FLAT).reshape(4, 4).astype(np.complex128)
    part[0, 0] += (za + zb) * 0.25
    part[1, 1] += (za - zb) * 0.25
    part[2, 2] += (zb - za) * 0.25
    part[3, 3] -= (za + zb) * 0.25
    if not np.abs(rho - part).max() <= atol:
        return None
    bd = BellDiagonal.from_density_matrix(rho)
    trace = float(c.sum())
    if abs(za) <= atol and abs(zb) <= atol:
        return bd, None
    return bd, (za / trace, zb / trace)


def polarised_density_matrix(bd: BellDiagonal, pol: tuple | None) -> np.ndarray:
    """The 4x4 density matrix of a Bell-diagonal pair with local polarisation ``pol``."""
    rho = bd.to_density_matrix()
    if pol is not None:
        za, zb = pol
        # (za Z(x)I + zb I(x)Z) / 4 is diagonal in the computational basis
        rho[0, 0] += (za + zb) * 0.25
        rho[1, 1] += (za - zb) * 0.25
        rho[2, 2] += (zb - za) * 0.25
        rho[3, 3] -= (za + zb) * 0.25
    return rho
