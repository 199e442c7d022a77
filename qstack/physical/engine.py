# cython: nonecheck=True
# (compiled: a typed group read through a name that is None raises the
# AttributeError plain Python raises, instead of reading memory that is not one)
"""The quantum state engine: qubit handles over per-group density matrices.

Every qubit belongs to exactly one *group*, the smallest set of qubits whose
joint state the engine keeps (a ``complex128`` density matrix, first member
most significant). A fresh qubit is a group of one. Multi-qubit gates and
channels merge the groups they touch (Kronecker product); measurement splits
the measured qubit off (its post-measurement state is a basis state, so the
joint state is a product); discard is a partial trace. A node therefore never
pays for qubits it is not entangled with.

Fast Bell-diagonal formalism ("bd"): a group of exactly two qubits may be held
as a :class:`~qstack.physical.bell_diagonal.BellDiagonal` (four floats). Pauli
gates and Pauli channels update the coefficients; a Bell-state measurement on
halves of two different bd pairs is an exact swap that leaves the two remote
halves as a new bd pair. Amplitude damping and T1 memory decay are exact too:
they leave local polarisation along Z, two more floats the group carries
(:func:`~qstack.physical.bell_diagonal.decay_polarised`), and Pauli
operations and swaps keep it exactly. A pair is created in bd from any state
of that family (:meth:`QuantumEngine.from_density_matrix`,
:meth:`QuantumEngine.prepare_pair`), exactly; any other state is refused
unless its Bell twirl is asked for by name (``twirl=True``). Any other
operation on a bd group first converts it to a density matrix, transparently
(:meth:`QuantumEngine.formalism_of` tells which is in use), so one body of
protocol code runs in both formalisms, with the same states and, from the
same seed, the same outcomes. Reading a state (``density_matrix``,
``fidelity``) never converts.

Units: times in nanoseconds, angles in radians. Outcomes are ints 0/1; Bell
outcomes are Bell indices 0..3 (``(x << 1) | z``: 0 Phi+, 1 Phi-, 2 Psi+, 3 Psi-).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence, Union

import numpy as np

try:
    import cython
except ImportError:              # (Cython is a build tool, not a dependency)
    from qstack._cython_shadow import cython

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.slots import c_maker

from . import channels_kraus as _ck
from . import gates as _g
from .bell_diagonal import (
    BellDiagonal, _swap_polarised, decay_polarised, polarised_density_matrix,
    polarised_from_density_matrix, swap_bell_diagonal,
)
from .states import BELL_BASIS, _ptrace, is_valid_density_matrix, num_qubits_of
from .states import fidelity as _fidelity

__all__ = ["QuantumEngine", "Qubit", "QubitError", "Basis"]

Basis = Union[str, tuple]


class QubitError(QStackError, ValueError):
    """Use of a qubit that was discarded, consumed by a BSM, or belongs to another engine.

    Code QUBIT_UNAVAILABLE.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.QUBIT_UNAVAILABLE, detail)


# ---------------------------------------------------------------------------
# Dense kernels on a group's density matrix (rho is 2^n x 2^n, positions are
# indices into the group's member list, 0 = most significant).
# ---------------------------------------------------------------------------

def _permute_full(a: np.ndarray, pos: Sequence[int]) -> np.ndarray:
    """Rewrite a k-qubit operator on targets at group positions ``pos`` (k == n) in group order."""
    k = len(pos)
    inv = [0] * k
    for i, p in enumerate(pos):
        inv[p] = i
    t = a.reshape((2,) * (2 * k)).transpose(inv + [k + i for i in inv])
    d = 1 << k
    return t.reshape(d, d)


def _sandwich(rho: np.ndarray, n: int, a: np.ndarray, pos: Sequence[int]) -> np.ndarray:
    """``A rho A^dagger`` with the k-qubit operator A on group positions ``pos``."""
    k = len(pos)
    if k == n:
        # The whole group: a plain matrix product is fastest (the 2-qubit-pair case).
        if any(p != i for i, p in enumerate(pos)):
            a = _permute_full(a, pos)
        return a @ rho @ a.conj().T
    d = 1 << n
    if k == 1:
        # One qubit inside a bigger group: view rows as (L, 2, R) and let matmul
        # broadcast the 2x2 over the other axes; no kron, no big operator.
        p = pos[0]
        left = 1 << p
        right = 1 << (n - p - 1)
        r = np.matmul(a, rho.reshape(left, 2, right * d))
        r = np.matmul(a.conj(), r.reshape(d * left, 2, right))
        return r.reshape(d, d)
    t = rho.reshape((2,) * (2 * n))
    at = a.reshape((2,) * (2 * k))
    ins = list(range(k, 2 * k))
    t = np.tensordot(at, t, axes=(ins, list(pos)))
    t = np.moveaxis(t, list(range(k)), list(pos))
    cols = [n + p for p in pos]
    t = np.tensordot(t, at.conj(), axes=(cols, ins))
    t = np.moveaxis(t, list(range(2 * n - k, 2 * n)), cols)
    return t.reshape(d, d)


def _kron(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.kron`` for two square matrices, without its generic-shape overhead (~6x faster here)."""
    da, db = a.shape[0], b.shape[0]
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(da * db, da * db)


def _front(rho: np.ndarray, n: int, pos: Sequence[int]) -> np.ndarray:
    """rho with the qubits at ``pos`` moved to the front (in that order), others after in their order."""
    k = len(pos)
    if all(p == i for i, p in enumerate(pos)):
        return rho
    others = [i for i in range(n) if i not in pos]
    perm = list(pos) + others
    d = 1 << n
    return rho.reshape((2,) * (2 * n)).transpose(perm + [n + p for p in perm]).reshape(d, d)


def _project(rho: np.ndarray, n: int, phi: np.ndarray, pos: Sequence[int]) -> np.ndarray:
    """``<phi| rho |phi>`` on group positions ``pos``: unnormalised state of the other qubits."""
    k = len(pos)
    m = 1 << (n - k)
    if k == 1:
        # matmul broadcasting on reshaped views: no transpose copy needed.
        p = pos[0]
        d = 1 << n
        left = 1 << p
        right = 1 << (n - p - 1)
        t = np.matmul(phi.conj(), rho.reshape(left, 2, right * d))  # (L, R*d)
        t = np.matmul(phi, t.reshape(left * right * left, 2, right))  # (L*R*L, R)
        return t.reshape(m, m)
    big_k = 1 << k
    r = _front(rho, n, pos)
    t = np.matmul(phi.conj(), r.reshape(big_k, m * big_k * m))  # indices (m, k', m')
    return np.matmul(phi, t.reshape(m, big_k, m))


def _sample(probs: Sequence[float], u: float) -> int:
    """Inverse-CDF sampling from (possibly slightly unnormalised) probabilities with one uniform draw."""
    total = 0.0
    for p in probs:
        total += max(p, 0.0)
    acc = 0.0
    last = 0
    for i, p in enumerate(probs):
        if p <= 0.0:
            continue
        last = i
        acc += p / total
        if u < acc:
            return i
    return last  # u within round-off of 1: the last possible outcome


# Measurement bases: (ket of outcome 0, ket of outcome 1).
_R2 = 1.0 / math.sqrt(2.0)
_BASES = {
    "Z": (np.array([1, 0], dtype=np.complex128), np.array([0, 1], dtype=np.complex128)),
    "X": (np.array([_R2, _R2], dtype=np.complex128), np.array([_R2, -_R2], dtype=np.complex128)),
    "Y": (np.array([_R2, 1j * _R2], dtype=np.complex128), np.array([_R2, -1j * _R2], dtype=np.complex128)),
}

#: Uniforms the engine draws from its generator per numpy call (``_uniform``).
UNIFORM_BLOCK = 1024

# (read once per pair's fidelity read: module globals, not math's attributes)
_INF = math.inf
if not cython.compiled:
    # (compiled, the .pxd names C's expm1: the function math.expm1 itself calls)
    _c_expm1 = math.expm1

#: (T1, T2) in ns -> ``channels_kraus._decay_rates`` of them (``_memory_rates``)
_RATES: dict = {}
#: The last (T1, T2) read and its rates, ``(T1, T2, rates)``: most reads are of
#: the one memory type a network has, answered by two compares of floats
#: without building the key (one tuple, replaced whole: a reader in another
#: thread never sees one pair's times with another's rates)
_last_read: tuple = (math.nan, math.nan, ())


@cython.locals(known=dict, last=tuple, floats=cython.bint)
def _memory_rates(t1_ns: float, t2_ns: float) -> tuple:
    """``(1/T1, 1/T_phi)`` per ns of a memory, checked
    (:func:`channels_kraus._decay_rates`), kept per pair of times in a plain
    dict: a look-up per fidelity read instead of the LRU cache's call.
    Cleared past 256 pairs of times (a sweep over many memories)."""
    global _last_read
    last = _last_read
    # (only floats take the shortcut and are kept for it: any other value
    # goes through the check)
    floats = type(t1_ns) is float and type(t2_ns) is float
    if floats and t1_ns == last[0] and t2_ns == last[1]:
        return last[2]
    key = (t1_ns, t2_ns)
    known = _RATES          # (typed: compiled, its get is a C call, not a bound method made)
    rates = known.get(key)
    if rates is None:
        rates = _ck._decay_rates(t1_ns, t2_ns)     # raises for impossible times
        if len(known) >= 256:
            known.clear()
        known[key] = rates
    if floats:
        _last_read = (t1_ns, t2_ns, rates)
    return rates


_BELL_KETS = [np.ascontiguousarray(BELL_BASIS[:, b]) for b in range(4)]
_BELL_CONJ = BELL_BASIS.conj()
_MAXMIX1 = np.eye(2, dtype=np.complex128) / 2
_MAXMIX1.setflags(write=False)   # shared by every lone half of a discarded bd pair
_KET0_DM = np.array([[1, 0], [0, 0]], dtype=np.complex128)

#: The Bell-diagonal coefficients of one Bell state, by index (a Pauli frame).
_ONE_HOT = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))


def _pauli_mix(lam: Sequence[float], rho: np.ndarray) -> np.ndarray:
    """sum_k lam_k P_k rho P_k^dagger over the four Bell-index Paulis, written
    out: for rho = [[a, b], [c, d]] Z gives [[a, -b], [-c, d]], X [[d, c],
    [b, a]] and XZ [[d, -c], [-b, a]] (a 2x2 in scalars: no matrix products)."""
    (a, b), (c, d) = rho.tolist()
    l0, l1, l2, l3 = lam
    same, flip = l0 + l1, l2 + l3
    keep, cross = l0 - l1, l2 - l3
    return np.array([[same * a + flip * d, keep * b + cross * c],
                     [keep * c + cross * b, same * d + flip * a]], dtype=np.complex128)
_ZERO1 = np.zeros((2, 2), dtype=np.complex128)
_ZERO1.setflags(write=False)    # a template, only ever copied


def _gate2(u: np.ndarray) -> tuple:
    """(U, U^dagger, U with its qubits exchanged, its dagger): precomputed for the 2-qubit fast path."""
    sw = _g.SWAP @ u @ _g.SWAP
    return (u, np.ascontiguousarray(u.conj().T), sw, np.ascontiguousarray(sw.conj().T))


_GATE2_CNOT = _gate2(_g.CNOT)
_GATE2_CZ = _gate2(_g.CZ)
_GATE2_SWAP = _gate2(_g.SWAP)
_DAG = {name: np.ascontiguousarray(getattr(_g, name).conj().T) for name in ("H", "S", "SDG", "T")}


def _basis_kets(basis: Basis) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(basis, str):
        try:
            return _BASES[basis.upper()]
        except KeyError:
            raise ValueError(f"unknown basis {basis!r}; use 'Z', 'X', 'Y' or (theta, phi)") from None
    try:
        theta, phi = basis
        theta, phi = float(theta), float(phi)
    except (TypeError, ValueError):
        raise ValueError(f"basis must be 'Z', 'X', 'Y' or a (theta, phi) pair, got {basis!r}") from None
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    e = complex(math.cos(phi), math.sin(phi))
    # Outcome 0 is the Bloch point (theta, phi), outcome 1 its antipode.
    return (np.array([c, e * s], dtype=np.complex128), np.array([s, -e * c], dtype=np.complex128))


class _Group:
    """Joint state of a set of qubits: ``rho`` (dm) or ``bd`` (exactly two members).

    A bd group may carry ``pol = (za, zb)``, the local polarisations <Z(x)I>
    and <I(x)Z> (in member order) that T1 decay leaves; its state is then
    ``rho_BD + (za Z(x)I + zb I(x)Z)/4`` (see ``bell_diagonal.decay_polarised``).
    None means exactly Bell-diagonal.
    """

    __slots__ = ("members", "rho", "bd", "pol")

    def __init__(self, members: list[int], rho: np.ndarray | None = None, bd: BellDiagonal | None = None,
                 pol: tuple | None = None):
        self.members = members
        self.rho = rho
        self.bd = bd
        self.pol = pol


class Qubit:
    """A handle on one qubit of a :class:`QuantumEngine`; the state lives in the engine.

    Methods delegate to the engine (``q.h()`` is ``engine.h(q)``).
    """

    __slots__ = ("id", "engine")

    def __init__(self, id: int, engine: "QuantumEngine") -> None:
        self.id = id
        self.engine = engine

    @property
    def alive(self) -> bool:
        """False once the qubit was discarded or consumed by a Bell-state measurement."""
        return self.id in self.engine._where

    @property
    def label(self) -> str | None:
        return self.engine._labels.get(self.id)

    def __repr__(self) -> str:
        lab = self.engine._labels.get(self.id)
        state = "" if self.alive else ", dead"
        return f"Qubit({self.id}{', ' + repr(lab) if lab is not None else ''}{state})"

    # single-qubit gates
    def x(self) -> None: self.engine.x(self)
    def y(self) -> None: self.engine.y(self)
    def z(self) -> None: self.engine.z(self)
    def h(self) -> None: self.engine.h(self)
    def s(self) -> None: self.engine.s(self)
    def sdg(self) -> None: self.engine.sdg(self)
    def t(self) -> None: self.engine.t(self)
    def rx(self, theta: float) -> None: self.engine.rx(self, theta)
    def ry(self, theta: float) -> None: self.engine.ry(self, theta)
    def rz(self, theta: float) -> None: self.engine.rz(self, theta)
    def apply(self, u: np.ndarray) -> None: self.engine.apply(u, [self])

    # two-qubit gates (self is control / first)
    def cnot(self, target: "Qubit") -> None: self.engine.cnot(self, target)
    def cz(self, other: "Qubit") -> None: self.engine.cz(self, other)
    def swap(self, other: "Qubit") -> None: self.engine.swap(self, other)

    # noise
    def depolarize(self, p: float) -> None: self.engine.depolarize(self, p)
    def dephase(self, p: float) -> None: self.engine.dephase(self, p)
    def amplitude_damp(self, gamma: float) -> None: self.engine.amplitude_damp(self, gamma)
    def bit_flip(self, p: float) -> None: self.engine.bit_flip(self, p)
    def phase_flip(self, p: float) -> None: self.engine.phase_flip(self, p)

    def memory_decay(self, wait_ns: float, t1_ns: float, t2_ns: float) -> None:
        self.engine.memory_decay(self, wait_ns, t1_ns, t2_ns)

    # measurement and lifetime
    def measure(self, basis: Basis = "Z") -> int: return self.engine.measure(self, basis)
    def bsm(self, other: "Qubit") -> int: return self.engine.bsm(self, other)
    def reset(self) -> None: self.engine.reset(self)
    def discard(self) -> None: self.engine.discard(self)
    def density_matrix(self) -> np.ndarray: return self.engine.density_matrix([self])


# A heralded pair makes two qubit handles and their group. Compiled, they are
# extension types (engine.pxd) built by their own __init__ in C; run from
# this source (QSTACK_PURE_PYTHON=1, or an edit since the build) they are
# slotted classes, built in C where qstack.core.slots' Maker is (it writes
# the slots as __init__ does, without a Python call per object), else by the
# classes themselves.
_make_qubit = c_maker(Qubit, ["id", "engine"], [None, None], [True, True], [None, None],
                      qualname="make_Qubit") or Qubit
_make_group = c_maker(_Group, ["members", "rho", "bd", "pol"], [None] * 4, [True] * 4,
                      [None] * 4, qualname="make__Group") or _Group


class PreparedPair:
    """A validated two-qubit state ready to instantiate (:meth:`QuantumEngine.prepare_pair`).

    ``bd`` and ``pol`` (the local polarisations (za, zb), None for none) when
    held in the bd formalism, else ``rho`` (read-only).
    """

    __slots__ = ("formalism", "bd", "rho", "pol")

    def __init__(self, formalism: str, bd: BellDiagonal | None, rho: np.ndarray | None,
                 pol: tuple | None = None) -> None:
        self.formalism = formalism
        self.bd = bd
        self.rho = rho
        self.pol = pol


class QuantumEngine:
    """Owns the quantum state of every qubit it created.

    ``rng`` draws every measurement outcome (a ``numpy.random.Generator``; an
    int seeds a new one). Same seed and same calls give the same outcomes.
    """

    def __init__(self, rng: np.random.Generator | int | None = None) -> None:
        if rng is None or isinstance(rng, (int, np.integer)):
            rng = np.random.default_rng(rng)
        self.rng = rng
        # uniforms drawn from rng in blocks (see _uniform); _uniforms_of: the
        # generator the block came from (a new rng assigned starts a new one)
        self._uniforms: list = []
        self._next_uniform = 0
        self._uniforms_of = None
        self._where: dict[int, _Group] = {}
        self._groups: set[_Group] = set()
        self._handles: dict[int, Qubit] = {}
        self._labels: dict[int, str] = {}
        self._next_id = 0

    # -- bookkeeping --------------------------------------------------------
    @property
    def num_groups(self) -> int:
        return len(self._groups)

    @property
    def num_live_qubits(self) -> int:
        return len(self._where)

    def __repr__(self) -> str:
        return f"QuantumEngine(live_qubits={self.num_live_qubits}, groups={self.num_groups})"

    def _new_qubit(self, label: str | None) -> Qubit:
        qid = self._next_id
        self._next_id += 1
        q = Qubit(qid, self)
        self._handles[qid] = q
        if label is not None:
            self._labels[qid] = label
        return q

    def _add_group(self, members: list[int], rho: np.ndarray | None = None, bd: BellDiagonal | None = None,
                   pol: tuple | None = None) -> _Group:
        g = _Group(members, rho, bd, pol)
        self._groups.add(g)
        where = self._where
        for m in members:
            where[m] = g
        return g

    @cython.locals(i=cython.Py_ssize_t, block=list)
    def _uniform(self) -> float:
        """The next uniform double in [0, 1) from ``rng``, for a measurement
        or a swap. Drawn in blocks of :data:`UNIFORM_BLOCK`, one numpy call
        per block instead of one per draw: numpy's ``random(n)`` yields
        exactly the doubles ``n`` calls of ``random()`` give, so every
        outcome is the one a draw per call would give (as the heralding
        station's ``BlockUniforms``). Only a caller that also draws from the
        same generator itself would see the stream shifted."""
        i = self._next_uniform
        block = self._uniforms
        if i == len(block) or self._uniforms_of is not self.rng:
            self._uniforms_of = self.rng
            block = self._uniforms = self.rng.random(UNIFORM_BLOCK).tolist()
            i = 0
        self._next_uniform = i + 1
        return block[i]

    def _forget(self, qid: int) -> None:
        self._where.pop(qid, None)
        self._handles.pop(qid, None)
        self._labels.pop(qid, None)

    @cython.locals(handle=Qubit)
    def _group(self, q: Qubit) -> _Group:
        if type(q) is Qubit:
            handle = q          # (typed: compiled, its fields are read in C)
            if handle.engine is self:
                g = self._where.get(handle.id)
                if g is not None:
                    return g
        else:
            try:
                if q.engine is self:
                    return self._where[q.id]
            except (KeyError, AttributeError):
                pass
        if not isinstance(q, Qubit):
            raise TypeError(f"expected a Qubit, got {type(q).__name__}")
        if q.engine is not self:
            raise QubitError(f"{q!r} belongs to another engine")
        raise QubitError(f"{q!r} is no longer available (discarded or consumed by a measurement)")

    @staticmethod
    def _to_dm(g: _Group) -> None:
        if g.bd is not None:
            if g.pol is None:
                g.rho = g.bd.to_density_matrix()
            else:
                g.rho = polarised_density_matrix(g.bd, g.pol)
                g.pol = None
            g.bd = None

    def _gather(self, qubits: Sequence[Qubit]) -> tuple[_Group, list[int]]:
        """One dm group holding all ``qubits`` (merging as needed) and their positions in it."""
        groups: list[_Group] = []
        for q in qubits:
            g = self._group(q)
            if g not in groups:
                groups.append(g)
        if len(qubits) > 1 and len({q.id for q in qubits}) != len(qubits):
            raise QubitError(f"the same qubit appears twice in {list(qubits)!r}")
        for g in groups:
            self._to_dm(g)
        if len(groups) == 1:
            g = groups[0]
        else:
            members: list[int] = []
            rho = None
            for h in groups:
                members.extend(h.members)
                rho = h.rho if rho is None else _kron(rho, h.rho)
                self._groups.discard(h)
            g = self._add_group(members, rho)
        idx = g.members.index
        return g, [idx(q.id) for q in qubits]

    def _split_off(self, g: _Group, pos: int, rest: np.ndarray | None) -> None:
        """Remove member ``pos`` from ``g``; ``rest`` is the (normalised) state of the others."""
        del g.members[pos]
        if g.members:
            g.rho = rest
        else:
            self._groups.discard(g)

    # -- creation -----------------------------------------------------------
    def qubit(self, label: str | None = None) -> Qubit:
        """A new qubit in |0>, in a group of its own."""
        q = self._new_qubit(label)
        self._add_group([q.id], _KET0_DM.copy())
        return q

    def from_ket(self, psi: np.ndarray, labels: Sequence[str] | None = None) -> list[Qubit]:
        """New qubits in the pure state ``psi`` (length 2^n, normalised), one group."""
        psi = np.asarray(psi, dtype=np.complex128).reshape(-1)
        n = num_qubits_of(psi)
        norm = np.linalg.norm(psi)
        if abs(norm - 1.0) > 1e-9:
            raise ValueError(f"ket must be normalised, has norm {norm!r}")
        return self._create(np.outer(psi, psi.conj()), n, labels)

    def plus_theta(self, theta: float, label: str | None = None) -> Qubit:
        """A new qubit in ``(|0> + e^{i theta}|1>)/sqrt2`` (theta in radians)."""
        e = complex(math.cos(theta), math.sin(theta))
        rho = 0.5 * np.array([[1, e.conjugate()], [e, 1]], dtype=np.complex128)
        q = self._new_qubit(label)
        self._add_group([q.id], rho)
        return q

    def from_density_matrix(self, rho: np.ndarray, formalism: str = "dm",
                            labels: Sequence[str] | None = None, *, twirl: bool = False) -> list[Qubit]:
        """New qubits jointly holding ``rho`` (first qubit = most significant), one group.

        ``formalism="bd"`` needs two qubits and holds, exactly, every state of
        the family ``rho_BD(c) + (za Z(x)I + zb I(x)Z)/4``: Bell-diagonal plus
        local polarisation along Z, i.e. every state whose only coherences
        are a real ``<00|rho|11>`` and a real ``<01|rho|10>`` (a single-click
        herald is one; see
        :func:`~qstack.physical.bell_diagonal.polarised_from_density_matrix`,
        tolerance ``bell_diagonal.FAMILY_ATOL`` = 1e-12 per element). Any other
        ``rho`` is refused unless ``twirl=True``: then the pair holds its Bell
        twirl, only its Bell-basis diagonal -- an approximation the caller asks
        for by name: every Bell fidelity is kept, and stays right under Pauli
        noise, but not under T1 decay (which turns the dropped polarisation
        into Bell fidelity) nor for swap outcomes. ``twirl=True`` always
        twirls, a state in the family too.
        """
        rho = np.asarray(rho, dtype=np.complex128)
        if rho.ndim != 2 or rho.shape[0] != rho.shape[1]:
            raise ValueError(f"density matrix must be square, got shape {rho.shape}")
        n = num_qubits_of(rho)
        if not is_valid_density_matrix(rho, atol=1e-9):
            raise ValueError("not a density matrix (needs Hermitian, PSD, trace 1 within 1e-9)")
        if formalism == "dm":
            return self._create(rho.copy(), n, labels)
        if formalism != "bd":
            raise ValueError(f"formalism must be 'dm' or 'bd', got {formalism!r}")
        if n != 2:
            raise ValueError(f"the Bell-diagonal formalism holds exactly 2 qubits, rho has {n}")
        if twirl:
            return self._create_bd(BellDiagonal.from_density_matrix(rho), labels)
        split = polarised_from_density_matrix(rho)
        if split is None:
            raise ValueError(
                "rho is outside what the bd formalism holds exactly (Bell-diagonal plus local "
                "Z polarisation: no coherence but a real <00|rho|11> and a real <01|rho|10>): "
                "use formalism='dm' to keep it exactly, or pass twirl=True to keep only its "
                "Bell-basis diagonal (an approximation: Bell fidelities kept, wrong under T1 decay)"
            )
        return self._create_bd(split[0], labels, split[1])

    def _create(self, rho: np.ndarray, n: int, labels: Sequence[str] | None) -> list[Qubit]:
        if labels is not None and len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} qubits")
        qs = [self._new_qubit(None if labels is None else labels[i]) for i in range(n)]
        self._add_group([q.id for q in qs], rho)
        return qs

    def _create_bd(self, bd: BellDiagonal, labels: Sequence[str] | None,
                   pol: tuple | None = None) -> list[Qubit]:
        if labels is not None and len(labels) != 2:
            raise ValueError(f"{len(labels)} labels for 2 qubits")
        a = self._new_qubit(None if labels is None else labels[0])
        b = self._new_qubit(None if labels is None else labels[1])
        self._add_group([a.id, b.id], bd=bd, pol=pol)
        return [a, b]

    def bell_pair(self, bell_index: int = 0, fidelity: float = 1.0, formalism: str = "dm",
                  labels: Sequence[str] | None = None) -> tuple[Qubit, Qubit]:
        """A Werner pair: ``fidelity`` on Bell state ``bell_index``, (1-F)/3 on each other one."""
        bd = BellDiagonal.werner(fidelity, bell_index)
        return self.bell_pair_from(bd, formalism, labels)

    def bell_pair_from(self, state: BellDiagonal, formalism: str = "dm",
                       labels: Sequence[str] | None = None) -> tuple[Qubit, Qubit]:
        """A new pair holding a given Bell-diagonal state, in either formalism."""
        if formalism == "bd":
            a, b = self._create_bd(state, labels)
        elif formalism == "dm":
            a, b = self._create(state.to_density_matrix(), 2, labels)
        else:
            raise ValueError(f"formalism must be 'dm' or 'bd', got {formalism!r}")
        return a, b

    def prepare_pair(self, rho: np.ndarray, formalism: str = "dm", *,
                     twirl: bool = False) -> "PreparedPair":
        """Validate and convert a two-qubit state once, for many :meth:`new_pair` calls.

        The checks and conversion of :meth:`from_density_matrix` (Hermitian,
        PSD, trace 1; in the bd family, or ``twirl``), with the same rules and
        errors, cost far more than creating a pair; a heralded link creates
        the same state over and over. In ``bd`` a state in the family is kept
        exactly (Bell coefficients and polarisation); one outside it is
        refused unless ``twirl=True`` names the approximation.
        """
        rho = np.asarray(rho, dtype=np.complex128)
        if rho.shape != (4, 4):
            raise ValueError(f"a pair's density matrix is 4x4, got shape {rho.shape}")
        probe = QuantumEngine(0)
        (a, _b) = probe.from_density_matrix(rho, formalism, twirl=twirl)
        g = probe._group(a)
        if g.bd is not None:
            return PreparedPair(formalism, g.bd, None, g.pol)
        frozen = rho.copy()
        frozen.setflags(write=False)
        return PreparedPair(formalism, None, frozen)

    @cython.locals(g=_Group, pp=PreparedPair)
    def new_pair(self, prepared: "PreparedPair",
                 labels: Sequence[str] | None = None) -> tuple[Qubit, Qubit]:
        """A new pair in the state of ``prepared`` (see :meth:`prepare_pair`)."""
        if type(prepared) is PreparedPair:
            pp = prepared           # (compiled: its fields read in C, not looked up)
            bd = pp.bd
            pol = pp.pol
        else:
            bd = prepared.bd
            pol = prepared.pol if bd is not None else None
        if bd is not None:
            if labels is None:
                # the hot path of every heralded link: _create_bd inlined
                qid = self._next_id
                self._next_id = qid + 2
                a = _make_qubit(qid, self)
                b = _make_qubit(qid + 1, self)
                handles = self._handles
                handles[qid] = a
                handles[qid + 1] = b
                g = _make_group([qid, qid + 1], None, bd, pol)
                self._groups.add(g)
                where = self._where
                where[qid] = g
                where[qid + 1] = g
                return a, b
            a, b = self._create_bd(bd, labels, pol)
        else:
            a, b = self._create(prepared.rho.copy(), 2, labels)
        return a, b

    # -- inspection ---------------------------------------------------------
    def formalism_of(self, q: Qubit) -> str:
        """"bd" if q's group is held as Bell-diagonal coefficients, else "dm"."""
        return "bd" if self._group(q).bd is not None else "dm"

    def group_members(self, q: Qubit) -> tuple[Qubit, ...]:
        """The qubits sharing q's group (its own included), in the group's order."""
        return tuple(self._handles[m] for m in self._group(q).members)

    def bell_diagonal_of(self, q: Qubit) -> BellDiagonal | None:
        """The Bell-diagonal state of q's pair if held in the bd formalism and Bell-diagonal, else None.

        A bd pair with local polarisation (left by T1 decay, see
        :meth:`memory_decay`, or created so, e.g. a single-click herald) is not
        Bell-diagonal and gives None; :meth:`density_matrix` and
        :meth:`bell_fidelity` read it exactly.
        """
        g = self._group(q)
        return g.bd if g.pol is None else None

    def density_matrix(self, qubits: Sequence[Qubit] | Qubit) -> np.ndarray:
        """Reduced density matrix of ``qubits``, first given = most significant. Does not convert bd groups."""
        if isinstance(qubits, Qubit):
            qubits = [qubits]
        qubits = list(qubits)
        if not qubits:
            raise ValueError("density_matrix needs at least one qubit")
        if len({q.id for q in qubits}) != len(qubits):
            raise QubitError(f"the same qubit appears twice in {qubits!r}")
        # Reduce each group to the requested members, kron, then reorder.
        order: list[int] = []
        rho = None
        seen: list[_Group] = []
        for q in qubits:
            g = self._group(q)
            if g in seen:
                continue
            seen.append(g)
            want = [x.id for x in qubits if self._where[x.id] is g]
            n = len(g.members)
            keep = [g.members.index(i) for i in want]
            if g.bd is not None:
                # fresh array, safe to hand out
                grho = g.bd.to_density_matrix() if g.pol is None else polarised_density_matrix(g.bd, g.pol)
            else:
                grho = g.rho.copy() if keep == list(range(n)) else g.rho
            red = grho if keep == list(range(n)) else _ptrace(grho, n, keep)
            rho = red if rho is None else _kron(rho, red)
            order.extend(want)
        target = [q.id for q in qubits]
        if order != target:
            # Old position i moves to the position its qubit has in the request.
            rho = _permute_full(rho, [target.index(o) for o in order])
        return rho

    def fidelity(self, qubits: Sequence[Qubit] | Qubit, target: np.ndarray) -> float:
        """Squared fidelity of the reduced state of ``qubits`` to a ket or density matrix."""
        return _fidelity(self.density_matrix(qubits), np.asarray(target))

    def bell_fidelity(self, a: Qubit, b: Qubit, bell_index: int = 0) -> float:
        """``<B|rho_ab|B>`` for the Bell state ``bell_index`` with ``a`` as first qubit."""
        ga = self._group(a)
        if ga.bd is not None and self._group(b) is ga and a.id != b.id:
            return ga.bd.fidelity(bell_index)
        if bell_index not in (0, 1, 2, 3):
            raise ValueError(f"bell_index must be 0..3, got {bell_index!r}")
        if len(ga.members) == 2 and a.id != b.id and self._group(b) is ga:
            # the pair is its whole group: four entries of its matrix (every
            # Bell state is symmetric or antisymmetric under swapping the two
            # halves, so their order does not matter), e.g. <Phi+-|rho|Phi+-> =
            # (rho_00 + rho_33) / 2 +- Re rho_03
            r = ga.rho
            if bell_index < 2:
                diag, off = r[0, 0].real + r[3, 3].real, r[0, 3].real
            else:
                diag, off = r[1, 1].real + r[2, 2].real, r[1, 2].real
            return float(0.5 * diag + off if bell_index & 1 == 0 else 0.5 * diag - off)
        rho = self.density_matrix([a, b])
        v = _BELL_KETS[bell_index]
        return float(np.real(np.vdot(v, rho @ v)))

    @cython.locals(ga=_Group, bd=BellDiagonal, wa=cython.double, wb=cython.double,
                   qa=cython.double, qb=cython.double, q=cython.double, f=cython.double,
                   inv_t1_a=cython.double, inv_tphi_a=cython.double,
                   inv_t1_b=cython.double, inv_tphi_b=cython.double, ha=Qubit, hb=Qubit)
    def decayed_bell_fidelity(self, a: Qubit, b: Qubit, bell_index: int, wait_a_ns: float,
                              wait_b_ns: float, t1_ns: float, t2_ns: float,
                              t1_b_ns: float | None = None, t2_b_ns: float | None = None) -> float:
        """What :meth:`bell_fidelity` would read after :meth:`memory_decay` of
        ``a`` over ``wait_a_ns`` and of ``b`` over ``wait_b_ns`` (ns; T1/T2 of
        ``a``'s memory, of ``b``'s if ``t1_b_ns``/``t2_b_ns`` are given), without
        changing the state. Without relaxation (T1 = inf) the decay is a Z flip
        on each half (probability p/2, :func:`channels_kraus.t1t2_rates`): two
        flips leave every Bell state as it is and one maps Bell state B to B^1,
        so F = (1 - q) F_B + q F_{B^1} with q the probability of exactly one
        flip; with relaxation the channels act on a copy of the pair's state."""
        if bell_index not in (0, 1, 2, 3):
            raise ValueError(f"bell_index must be 0..3, got {bell_index!r}")
        t1b = t1_ns if t1_b_ns is None else t1_b_ns
        t2b = t2_ns if t2_b_ns is None else t2_b_ns
        if not (0.0 <= wait_a_ns < _INF and 0.0 <= wait_b_ns < _INF):
            raise ValueError(f"waits must be finite numbers of ns >= 0, got {wait_a_ns!r}, "
                             f"{wait_b_ns!r}")
        wa, wb = wait_a_ns, wait_b_ns      # (checked numbers: C doubles from here)
        # (once per pair read: the memories' rates, checked and kept, not t1t2_rates)
        inv_t1_a, inv_tphi_a = _memory_rates(t1_ns, t2_ns)
        inv_t1_b, inv_tphi_b = _memory_rates(t1b, t2b)
        if inv_t1_a == 0.0 and inv_t1_b == 0.0:
            # Z flips with probability p/2, p = 1 - exp(-t / T_phi) (t1t2_rates)
            qa = -0.5 * _c_expm1(-wa * inv_tphi_a)
            qb = -0.5 * _c_expm1(-wb * inv_tphi_b)
            q = qa + qb - 2.0 * qa * qb
            ga = self._group(a)
            bd = ga.bd
            if bd is not None and self._group(b) is ga:
                if type(a) is Qubit and type(b) is Qubit:
                    ha = a          # (typed: compiled, their ids are read in C)
                    hb = b
                    two = ha.id != hb.id
                else:
                    two = a.id != b.id
                if two:
                    # a Bell-diagonal pair (the usual read): both fidelities are
                    # two of its four coefficients, one group look-up for both
                    f = bd.fidelity(bell_index)
                    return f if q == 0.0 else (1.0 - q) * f + q * bd.fidelity(bell_index ^ 1)
            f = self.bell_fidelity(a, b, bell_index)
            if q == 0.0:
                return f
            return (1.0 - q) * f + q * self.bell_fidelity(a, b, bell_index ^ 1)
        rho = self.density_matrix([a, b])       # a fresh array: the state is not touched
        for pos, ops in ((0, _ck.t1t2_decay(wait_a_ns, t1_ns, t2_ns)),
                         (1, _ck.t1t2_decay(wait_b_ns, t1b, t2b))):
            out = _sandwich(rho, 2, ops[0], [pos])
            for k in ops[1:]:
                out += _sandwich(rho, 2, k, [pos])
            rho = out
        v = _BELL_KETS[bell_index]
        return float(np.real(np.vdot(v, rho @ v)))

    # -- gates --------------------------------------------------------------
    def apply(self, u: np.ndarray, qubits: Sequence[Qubit] | Qubit) -> None:
        """Apply a unitary on 1..n qubits (first listed = most significant); merges their groups."""
        if isinstance(qubits, Qubit):
            qubits = [qubits]
        u = np.asarray(u, dtype=np.complex128)
        k = len(qubits)
        if k == 0:
            raise ValueError("apply needs at least one qubit")
        if u.shape != (1 << k, 1 << k):
            raise ValueError(f"a {k}-qubit gate must be {1 << k}x{1 << k}, got shape {u.shape}")
        if not _g.is_unitary(u, atol=1e-9):
            raise ValueError("gate matrix is not unitary (use apply_kraus for non-unitary maps)")
        self._apply_op(u, qubits)

    def _apply_op(self, u: np.ndarray, qubits: Sequence[Qubit]) -> None:
        g, pos = self._gather(qubits)
        g.rho = _sandwich(g.rho, len(g.members), u, pos)

    def _apply1(self, u: np.ndarray, q: Qubit, uh: np.ndarray | None = None) -> None:
        g = self._group(q)
        if g.bd is not None:
            self._to_dm(g)
        members = g.members
        if len(members) == 1:
            g.rho = u @ g.rho @ (u.conj().T if uh is None else uh)
        else:
            g.rho = _sandwich(g.rho, len(members), u, [members.index(q.id)])

    def _apply2(self, gate: tuple, a: Qubit, b: Qubit) -> None:
        """Named two-qubit gate; fast path when a and b already form a 2-qubit dm group."""
        where = self._where
        ga = where.get(a.id)
        if ga is not None and ga.bd is None and a.engine is self and b.engine is self:
            members = ga.members
            if len(members) == 2 and where.get(b.id) is ga:
                if members[0] == a.id:
                    ga.rho = gate[0] @ ga.rho @ gate[1]
                else:  # group order is (b, a): use the gate conjugated by SWAP
                    ga.rho = gate[2] @ ga.rho @ gate[3]
                return
        self._apply_op(gate[0], [a, b])

    def _pauli(self, index: int, u: np.ndarray, q: Qubit) -> None:
        g = self._group(q)
        if g.bd is not None:
            g.bd = g.bd.apply_pauli(g.members.index(q.id), index)
            if g.pol is not None and (index == 1 or index == 2):
                # X and Y anticommute with Z: that qubit's polarisation flips
                pol = g.pol
                g.pol = (-pol[0], pol[1]) if g.members[0] == q.id else (pol[0], -pol[1])
        else:
            self._apply1(u, q)

    def x(self, q: Qubit) -> None:
        """Pauli X (stays in the bd formalism)."""
        self._pauli(1, _g.X, q)

    def y(self, q: Qubit) -> None:
        """Pauli Y (stays in the bd formalism)."""
        self._pauli(2, _g.Y, q)

    def z(self, q: Qubit) -> None:
        """Pauli Z (stays in the bd formalism)."""
        self._pauli(3, _g.Z, q)

    def h(self, q: Qubit) -> None:
        self._apply1(_g.H, q, _DAG["H"])

    def s(self, q: Qubit) -> None:
        self._apply1(_g.S, q, _DAG["S"])

    def sdg(self, q: Qubit) -> None:
        self._apply1(_g.SDG, q, _DAG["SDG"])

    def t(self, q: Qubit) -> None:
        self._apply1(_g.T, q, _DAG["T"])

    def rx(self, q: Qubit, theta: float) -> None:
        """``exp(-i theta X/2)``, theta in radians."""
        self._apply1(_g.rx(theta), q)

    def ry(self, q: Qubit, theta: float) -> None:
        """``exp(-i theta Y/2)``, theta in radians."""
        self._apply1(_g.ry(theta), q)

    def rz(self, q: Qubit, theta: float) -> None:
        """``exp(-i theta Z/2)``, theta in radians."""
        self._apply1(_g.rz(theta), q)

    def cnot(self, control: Qubit, target: Qubit) -> None:
        self._apply2(_GATE2_CNOT, control, target)

    def cz(self, a: Qubit, b: Qubit) -> None:
        self._apply2(_GATE2_CZ, a, b)

    def swap(self, a: Qubit, b: Qubit) -> None:
        """Exchange the states of ``a`` and ``b`` (a gate; for entanglement swapping see :meth:`bsm`)."""
        self._apply2(_GATE2_SWAP, a, b)

    # -- noise --------------------------------------------------------------
    def apply_kraus(self, kraus_ops: Sequence[np.ndarray], qubits: Sequence[Qubit] | Qubit) -> None:
        """Apply the channel ``rho -> sum K rho K^dagger`` on ``qubits`` (checked trace preserving)."""
        if isinstance(qubits, Qubit):
            qubits = [qubits]
        ops = [np.asarray(k, dtype=np.complex128) for k in kraus_ops]
        k = len(qubits)
        if k == 0:
            raise ValueError("apply_kraus needs at least one qubit")
        d = 1 << k
        if not ops or any(o.shape != (d, d) for o in ops):
            raise ValueError(f"Kraus operators on {k} qubit(s) must each be {d}x{d}")
        if not _ck.is_trace_preserving(ops, atol=1e-9):
            raise ValueError("Kraus operators are not trace preserving (sum K^dagger K != 1)")
        self._kraus(ops, qubits)

    def _kraus(self, ops: Sequence[np.ndarray], qubits: Sequence[Qubit]) -> None:
        g, pos = self._gather(qubits)
        n = len(g.members)
        rho = g.rho
        out = _sandwich(rho, n, ops[0], pos)
        for k in ops[1:]:
            out += _sandwich(rho, n, k, pos)
        g.rho = out

    def _pauli_noise(self, q: Qubit, px: float, py: float, pz: float, kraus_fn, p: float) -> None:
        g = self._group(q)
        if g.bd is not None:
            g.bd = g.bd.pauli_channel(g.members.index(q.id), px, py, pz)
            if g.pol is not None:
                # <Z> survives I and Z, changes sign under X and Y
                pol = g.pol
                f = 1.0 - 2.0 * (px + py)
                g.pol = (f * pol[0], pol[1]) if g.members[0] == q.id else (pol[0], f * pol[1])
        else:
            self._kraus(kraus_fn(p), [q])

    def depolarize(self, q: Qubit, p: float) -> None:
        """Replace ``q`` by I/2 with probability p (``channels_kraus.depolarizing``). Stays bd."""
        _ck._check_prob("depolarizing probability", p)
        self._pauli_noise(q, p / 4, p / 4, p / 4, _ck.depolarizing, p)

    def dephase(self, q: Qubit, p: float) -> None:
        """Scale q's coherences by 1-p (Z with probability p/2; ``channels_kraus.dephasing``). Stays bd."""
        _ck._check_prob("dephasing probability", p)
        self._pauli_noise(q, 0.0, 0.0, p / 2, _ck.dephasing, p)

    def bit_flip(self, q: Qubit, p: float) -> None:
        """X with probability p. Stays bd."""
        _ck._check_prob("bit-flip probability", p)
        self._pauli_noise(q, p, 0.0, 0.0, _ck.bit_flip, p)

    def phase_flip(self, q: Qubit, p: float) -> None:
        """Z with probability p. Stays bd."""
        _ck._check_prob("phase-flip probability", p)
        self._pauli_noise(q, 0.0, 0.0, p, _ck.phase_flip, p)

    def amplitude_damp(self, q: Qubit, gamma: float) -> None:
        """|1> -> |0> with probability gamma (``channels_kraus.amplitude_damping``).

        Exact in both formalisms: a bd pair stays bd, polarised along Z
        (``bell_diagonal.decay_polarised``).
        """
        g = self._group(q)
        if g.bd is not None:
            gamma = _ck._check_prob("amplitude-damping gamma", gamma)
            if gamma > 0.0:
                g.bd, g.pol = decay_polarised(g.bd, g.pol, g.members.index(q.id), gamma, 1.0)
        else:
            self._kraus(_ck.amplitude_damping(gamma), [q])

    def memory_decay(self, q: Qubit, wait_ns: float, t1_ns: float, t2_ns: float) -> None:
        """Decay of a stored qubit over ``wait_ns`` with relaxation time T1 and coherence time T2 (ns).

        The exact channel ``channels_kraus.t1t2_decay`` in both formalisms:
        excited population decays as exp(-t/T1), coherences as exp(-t/T2).
        Bell-diagonal groups stay in the fast formalism: with T1 = inf the
        channel is pure dephasing, a Pauli channel; with a finite T1 the pair
        also gains local polarisation along Z, which the bd group carries
        exactly (``bell_diagonal.decay_polarised``), so Bell fidelities equal
        the density-matrix formalism's however long both halves wait.

        ``T2 > 2*T1`` raises ``InvalidParameterError`` (a ValueError); T1 or T2 may be ``math.inf``.
        """
        gamma, p = _ck.t1t2_rates(wait_ns, t1_ns, t2_ns)
        self._decay(q, gamma, p, wait_ns, t1_ns, t2_ns)

    def _decay(self, q: Qubit, gamma: float, p: float, wait_ns: float, t1_ns: float,
               t2_ns: float) -> None:
        """:meth:`memory_decay` once its ``(gamma, p)`` are known (``t1t2_rates``
        of the same wait and times, checked by the caller: a device works its
        memory's rates out once, not per qubit update)."""
        if gamma == 0.0 and p == 0.0:
            self._group(q)  # still refuse dead qubits
            return
        g = self._group(q)
        if g.bd is not None:
            if gamma == 0.0:
                # pure dephasing: a Z flip with probability p/2, which leaves any
                # polarisation as it is (probability valid: t1t2_rates checked it)
                g.bd = g.bd._pauli_unchecked(0.0, 0.0, p * 0.5)
            else:
                g.bd, g.pol = decay_polarised(g.bd, g.pol, g.members.index(q.id), gamma, 1.0 - p)
        else:
            self._kraus(_ck.t1t2_decay(wait_ns, t1_ns, t2_ns), [q])

    # -- measurement --------------------------------------------------------
    def measure(self, q: Qubit, basis: Basis = "Z") -> int:
        """Measure ``q`` in ``basis`` and return 0 or 1 (Born rule, draws from the engine's rng).

        ``basis``: "Z" (|0>, |1>), "X" (|+>, |->), "Y" (|+i>, |-i>) or a
        ``(theta, phi)`` pair: outcome 0 is the Bloch point
        ``cos(theta/2)|0> + e^{i phi} sin(theta/2)|1>``, outcome 1 its antipode.
        The qubit stays alive in the measured basis state, in a group of its
        own; the rest of its former group keeps the conditional state.
        """
        kets = _basis_kets(basis)
        g = self._group(q)
        if g.bd is not None and g.pol is None:
            # Half of a Bell-diagonal pair (measure-directly ends): each outcome
            # has probability 1/2 (the half's marginal is I/2) and leaves the
            # partner in sum_k lam_k P_k |v*><v*| P_k^dagger, |v> the outcome's
            # ket (on Phi+, <v| on one half leaves |v*> on the other). The same
            # single draw and threshold as the dm path: the same outcomes.
            u = self._uniform()
            outcome = 0 if u < 0.5 else 1
            v = kets[outcome]
            w = v.conj()
            members = g.members
            partner = members[1] if members[0] == q.id else members[0]
            self._groups.discard(g)
            self._add_group([partner], _pauli_mix(g.bd.as_tuple(), np.outer(w, w.conj())))
            self._add_group([q.id], np.outer(v, v.conj()))
            return outcome
        if g.bd is not None:
            self._to_dm(g)
        n = len(g.members)
        u = self._uniform()
        if n == 1:
            rho = g.rho
            v0 = kets[0]
            p0 = float(np.real(np.vdot(v0, rho @ v0)))
            outcome = 0 if u < p0 else 1
            g.rho = np.outer(kets[outcome], kets[outcome].conj())
            return outcome
        pos = g.members.index(q.id)
        rest = _project(g.rho, n, kets[0], [pos])
        p0 = rest.trace().real
        if u < p0:
            outcome = 0
        else:
            outcome = 1
            rest = _project(g.rho, n, kets[1], [pos])
        p = rest.trace().real
        self._split_off(g, pos, rest / p)
        self._add_group([q.id], np.outer(kets[outcome], kets[outcome].conj()))
        return outcome

    @cython.locals(ga=_Group, gb=_Group, qa=Qubit, qb=Qubit)
    def bsm(self, a: Qubit, b: Qubit) -> int:
        """Bell-state measurement of (a, b); returns the Bell index of the projected state. Consumes a and b.

        When ``a`` and ``b`` are halves of two different bd pairs this is an
        exact entanglement swap in the fast formalism (each outcome has
        probability 1/4) and the two remote halves become one bd pair in the
        state :func:`~qstack.physical.bell_diagonal.swap_bell_diagonal` gives.
        Correct outcome ``m = (x << 1) | z`` by applying X if x, then Z if z, to
        either remote half. Otherwise groups are merged and projected exactly.
        """
        where = self._where
        if type(a) is Qubit and type(b) is Qubit:
            # (once per swap: _group's usual case inline; compiled, the
            # handles' and groups' fields are read in C)
            qa, qb = a, b
            ida, idb = qa.id, qb.id
            ga = where.get(ida) if qa.engine is self else None
            gb = where.get(idb) if qb.engine is self else None
        else:
            ga = gb = None
        if ga is None or gb is None:
            ga = self._group(a)          # raises the defined error
            gb = self._group(b)
            ida, idb = a.id, b.id
        if ida == idb:
            raise QubitError(f"bsm needs two different qubits, got {a!r} twice")
        u = self._uniform()
        if ga.bd is not None and gb.bd is not None:
            if ga is not gb:
                if ga.pol is not None or gb.pol is not None:
                    return self._bsm_polarised(ga, gb, a, b, u)
                # Uniform for Bell-diagonal inputs; same single draw and same
                # inverse-CDF mapping as the dm path, so both formalisms
                # give the same outcomes from the same seed.
                outcome = int(u * 4.0)
                ma, mb = ga.members, gb.members
                pa = ma[1] if ma[0] == ida else ma[0]
                pb = mb[1] if mb[0] == idb else mb[0]
                new = swap_bell_diagonal(ga.bd, gb.bd, outcome)
                groups = self._groups
                groups.discard(ga)
                groups.discard(gb)
                self._forget(ida)
                self._forget(idb)
                # (the repeater's hot path: _add_group inline)
                g = _Group([pa, pb], None, new, None)
                groups.add(g)
                where[pa] = g
                where[pb] = g
                return outcome
            # Both halves of the same bd pair: Bell states are exchange
            # symmetric up to sign, so the order of a and b does not matter.
            outcome = _sample(ga.bd.as_tuple(), u)
            self._groups.discard(ga)
            self._forget(ida)
            self._forget(idb)
            return outcome
        lone = None
        if ga.bd is None and gb.bd is not None and gb.pol is None and len(ga.members) == 1:
            lone, pair, via = ga, gb, b
        elif gb.bd is None and ga.bd is not None and ga.pol is None and len(gb.members) == 1:
            lone, pair, via = gb, ga, a
        if lone is not None:
            return self._teleport(lone, pair, a, b, via, u)
        g, (pa_, pb_) = self._gather([a, b])
        n = len(g.members)
        if n == 2:
            # Bell states are exchange symmetric up to a sign, so the Bell
            # probabilities do not depend on which of a, b comes first.
            probs = np.real(np.sum(_BELL_CONJ * (g.rho @ BELL_BASIS), axis=0))
            outcome = _sample(probs.tolist(), u)
            self._groups.discard(g)
            self._forget(ida)
            self._forget(idb)
            return outcome
        # Move a, b to the front once; the reduced state and the projection
        # are then plain reshapes and matrix products.
        m_dim = 1 << (n - 2)
        r = _front(g.rho, n, [pa_, pb_])
        red = r.reshape(4, m_dim, 4, m_dim).trace(axis1=1, axis2=3)
        probs = np.real(np.sum(_BELL_CONJ * (red @ BELL_BASIS), axis=0))
        outcome = _sample(probs.tolist(), u)
        v = _BELL_KETS[outcome]
        t = np.matmul(v.conj(), r.reshape(4, m_dim * 4 * m_dim))
        rest = np.matmul(v, t.reshape(m_dim, 4, m_dim))
        rest /= rest.trace().real
        for qid in (ida, idb):
            g.members.remove(qid)
            self._forget(qid)
        g.rho = rest
        return outcome

    def _teleport(self, lone: _Group, pair: _Group, a: Qubit, b: Qubit, via: Qubit,
                  u: float) -> int:
        """:meth:`bsm` of a qubit alone in its group (``lone``, e.g. the partner
        of a half measured at once) with half ``via`` of the Bell-diagonal
        pair ``pair``: a teleportation. Exact: the outcome is uniform (the
        half's marginal is I/2 whatever the lone state), and outcome m =
        (x << 1) | z leaves the pair's far half in sum_k lam_k P_k Q rho Q^dagger
        P_k^dagger, Q = X^x Z^z (what the correction X then Z undoes on Phi+)."""
        outcome = int(u * 4.0)
        rho = _pauli_mix(_ONE_HOT[outcome], lone.rho)
        members = pair.members
        far = members[1] if members[0] == via.id else members[0]
        out = _pauli_mix(pair.bd.as_tuple(), rho)
        self._groups.discard(lone)
        self._groups.discard(pair)
        self._forget(a.id)
        self._forget(b.id)
        self._add_group([far], out)
        return outcome

    def _bsm_polarised(self, ga: _Group, gb: _Group, a: Qubit, b: Qubit, u: float) -> int:
        """:meth:`bsm` of halves ``a``, ``b`` of two bd pairs, one of them polarised (T1 decay).

        Exact, and the outcomes are no longer uniform
        (``bell_diagonal.swap_outcome_probs``); ``u`` is the bsm's one uniform draw.
        """
        # Orient pair A as (pa, a) and B as (b, pb): the Bell-diagonal part is
        # exchange symmetric, the polarisation is not.
        ma, mb = ga.members, gb.members
        pol = ga.pol
        if ma[0] == a.id:
            pa = ma[1]
            za1, za0 = (0.0, 0.0) if pol is None else pol
        else:
            pa = ma[0]
            za0, za1 = (0.0, 0.0) if pol is None else pol
        pol = gb.pol
        if mb[0] == b.id:
            pb = mb[1]
            zb0, zb1 = (0.0, 0.0) if pol is None else pol
        else:
            pb = mb[0]
            zb1, zb0 = (0.0, 0.0) if pol is None else pol
        # Inverse CDF over swap_outcome_probs (P(0) = P(1) = 1/4 + s,
        # P(2) = P(3) = 1/4 - s), as _sample draws it in the dm path, written out.
        s = 0.25 * za1 * zb0
        p_phi = 0.25 + s if s > -0.25 else 0.0
        p_psi = 0.25 - s if s < 0.25 else 0.0
        if p_psi == 0.0 or (p_phi > 0.0 and u < 2.0 * p_phi):
            outcome = 0 if u < p_phi else 1
        else:
            outcome = 2 if u - 2.0 * p_phi < p_psi else 3
        new, pol = _swap_polarised(ga.bd, za0, za1, gb.bd, zb0, zb1, outcome)
        self._groups.discard(ga)
        self._groups.discard(gb)
        self._forget(a.id)
        self._forget(b.id)
        self._add_group([pa, pb], None, new, pol)
        return outcome

    def reset(self, q: Qubit) -> None:
        """Trace ``q`` out of its group and re-prepare it in |0>, alone."""
        self._remove(q)
        self._add_group([q.id], _KET0_DM.copy())

    def discard(self, q: Qubit) -> None:
        """Trace ``q`` out; any later use of ``q`` raises :class:`QubitError`."""
        if not self._drop_fast(q):
            self._remove(q)
            self._forget(q.id)

    def drop(self, q: Qubit) -> bool:
        """Trace ``q`` out if it is alive (:meth:`discard`); False, and
        nothing done, if it was discarded or consumed already."""
        if self._drop_fast(q):
            return True
        if not q.alive:
            return False
        self._remove(q)
        self._forget(q.id)
        return True

    @cython.locals(handle=Qubit, g=_Group)
    def _drop_fast(self, q: Qubit) -> bool:
        """The usual discards (once per pair and end), with fewer look-ups
        than :meth:`_remove`: ``q`` alone in its group, or one half of a
        Bell-diagonal pair without polarisation (the other half is left
        maximally mixed, as :meth:`_remove` leaves it). False, and nothing
        done, for anything else."""
        if type(q) is not Qubit:
            return False
        handle = q              # (typed: compiled, its fields are read in C)
        if handle.engine is not self:
            return False
        qid = handle.id
        where = self._where
        g = where.get(qid)
        if g is None:
            return False
        members = g.members
        if len(members) == 1:
            self._groups.discard(g)
        elif g.bd is not None and g.pol is None:
            g.members = [members[1] if members[0] == qid else members[0]]
            g.bd = None
            g.rho = _MAXMIX1
        else:
            return False
        del where[qid]
        self._handles.pop(qid, None)
        if self._labels:
            self._labels.pop(qid, None)
        return True

    def _remove(self, q: Qubit) -> None:
        g = self._where.get(q.id) if q.__class__ is Qubit and q.engine is self else None
        if g is None:
            g = self._group(q)     # raises the right error
        members = g.members
        if len(members) == 1:
            self._groups.discard(g)
            del self._where[q.id]
            return
        pos = members.index(q.id)
        if g.bd is not None:
            # The reduced state of either half of a Bell-diagonal pair is I/2.
            # the group object becomes the partner's own (one allocation less
            # per discarded pair); _MAXMIX1 is read-only, never changed in place
            g.members = [members[1 - pos]]
            g.bd = None
            pol = g.pol
            if pol is None:
                g.rho = _MAXMIX1
            else:
                # a polarised pair's half keeps its <Z>: (I + z Z) / 2
                z = pol[1 - pos]
                rho = _ZERO1.copy()     # (half the cost of np.array from lists)
                rho[0, 0] = 0.5 + 0.5 * z
                rho[1, 1] = 0.5 - 0.5 * z
                g.rho = rho
                g.pol = None
            del self._where[q.id]
            return
        n = len(members)
        rho = g.rho
        if n == 2:
            # one half of a pair (once per pair and end): the partial trace as
            # two slices, rho_kept[i, j] = sum_k rho[(i k), (j k)] (kept qubit
            # first) or rho[(k i), (k j)]
            g.rho = rho[0::2, 0::2] + rho[1::2, 1::2] if pos == 1 else rho[:2, :2] + rho[2:, 2:]
        else:
            g.rho = _ptrace(rho, n, [i for i in range(n) if i != pos])
        del members[pos]
        del self._where[q.id]

    def discard_all(self, qubits: Iterable[Qubit]) -> None:
        for q in qubits:
            self.discard(q)

