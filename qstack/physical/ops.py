"""Physical operations a protocol asks its driver to carry out.

A protocol never touches the state engine: it returns
``QuantumOp(op_id, op)`` with one of the operations below, and the driver
answers ``OperationDone(op_id, outcome)`` when the hardware has finished (after
the operation's duration in simulated or real time). Qubits are **opaque
references** to the protocol: in the simulator they are engine handles, in the
emulator ids held by the physics server; a protocol only passes them back.

Outcomes (``OperationDone.outcome``):

==================  =========================================================
``Allocate``         a qubit reference (fresh ``|0>`` in a memory slot)
``Gate``             ``None``
``Measure``          the outcome bit (0 or 1); the qubit is freed
``BellMeasure``      the Bell index 0..3 (see ``qstack.physical.bell_diagonal``);
                     both qubits are freed
``Discard``          ``None``
``Entangle``         a :class:`Herald`
``CancelEntangle``   ``None``
``PulseBlock``       a :class:`PulseRecord` (this end's record of the block)
==================  =========================================================

A failed operation's outcome is a :class:`~qstack.core.errors.QStackError`
(for instance ``MEMORY_FULL`` or ``QUBIT_UNAVAILABLE``) instead of raising, so
the protocol decides what to do and the node keeps serving. An operation with
a parameter that is not physical (a NaN or infinite angle, an unknown basis,
a matrix that is not unitary, a two-qubit gate on one qubit) fails with
``INVALID_PARAMETER`` before any qubit is touched: the qubits keep their state
and their memory slots (:func:`check_basis`, :func:`check_angle`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

from qstack.core.args import float_arg, show
from qstack.core.errors import ErrorCode, QStackError
from qstack.core.protocol import fast_init

__all__ = [
    "Allocate", "Gate", "Measure", "BellMeasure", "Discard", "Entangle", "CancelEntangle",
    "Herald", "PulseBlock", "PulseRecord", "SINGLE_QUBIT_GATES", "TWO_QUBIT_GATES", "BASES", "check_basis", "check_angle",
]

#: Gate names understood by :class:`Gate` (params: rotation angle in radians
#: for rx/ry/rz; a 2x2 unitary matrix for "u").
SINGLE_QUBIT_GATES = frozenset({"i", "x", "y", "z", "h", "s", "sdg", "t", "rx", "ry", "rz", "u"})
TWO_QUBIT_GATES = frozenset({"cnot", "cz", "swap"})

#: Measurement bases by name (a basis may also be a pair of angles, see :class:`Measure`).
BASES = ("Z", "X", "Y")
_BASIS_NAMES = {b: b for b in BASES} | {b.lower(): b for b in BASES}


def check_angle(name: str, value: Any, error: type = QStackError) -> float:
    """A rotation angle in radians: a finite real number, as a ``float``.
    ``BAD_FIELD`` if it is not a number, ``INVALID_PARAMETER`` if NaN or
    infinite."""
    return float_arg(name, value, code=ErrorCode.INVALID_PARAMETER, error=error)


def check_basis(basis: Any, error: type = QStackError, name: str = "basis") -> Any:
    """A measurement basis, normalised: "Z", "X" or "Y" (either case), or a
    pair ``(theta, phi)`` of finite angles in radians, returned as a tuple of
    floats. ``INVALID_PARAMETER`` for an unknown name, a pair of the wrong
    length or a non-finite angle; ``BAD_FIELD`` for anything else."""
    if basis.__class__ is str:
        named = _BASIS_NAMES.get(basis)
        if named is None:
            raise error(ErrorCode.INVALID_PARAMETER,
                        f"{name}={show(basis)} is not a basis; use 'Z', 'X', 'Y' or (theta, phi)")
        return named
    if isinstance(basis, (tuple, list)) or getattr(basis, "shape", None) == (2,):
        if len(basis) != 2:
            raise error(ErrorCode.INVALID_PARAMETER,
                        f"{name}={show(basis)}: an angle basis is a pair (theta, phi)")
        theta, phi = basis
        return (check_angle(f"{name} theta", theta, error), check_angle(f"{name} phi", phi, error))
    raise error(ErrorCode.BAD_FIELD, f"{name}={show(basis)} ({type(basis).__name__}): expected "
                                     "'Z', 'X', 'Y' or a pair of angles (theta, phi)")


@fast_init
@dataclass(frozen=True, slots=True)
class Allocate:
    """Take a free memory slot and prepare it in ``|0>``."""


@fast_init
@dataclass(frozen=True, slots=True)
class Gate:
    """Apply gate ``name`` to ``qubits`` (control first for cnot)."""

    name: str
    qubits: tuple
    params: tuple = ()


@fast_init
@dataclass(frozen=True, slots=True)
class Measure:
    """Measure ``qubit`` in ``basis`` ("Z", "X", "Y" or (theta, phi) in
    radians) and free its slot."""

    qubit: Any
    basis: Any = "Z"


@fast_init
@dataclass(frozen=True, slots=True)
class BellMeasure:
    """Bell-state measurement of two local qubits (deterministic, as with a
    CNOT, H and two Z measurements on a processor node); both are freed."""

    qubit_a: Any
    qubit_b: Any


@fast_init
@dataclass(frozen=True, slots=True)
class Discard:
    """Free ``qubit``'s slot, tracing it out of any state it shares."""

    qubit: Any


@fast_init
@dataclass(frozen=True, slots=True)
class Entangle:
    """Attempt heralded entanglement with neighbour ``peer`` until a herald
    or until ``deadline_ns`` (absolute, nanoseconds).

    Both ends submit an ``Entangle``: with the same ``key`` (the two link
    protocols agreed on it beforehand), or one end with a key and the other
    with ``key=None``, which *follows*: it takes part in whatever keyed
    request the other end makes, and its herald names that key. Attempts
    start when both have submitted, and not before ``start_ns`` (absolute,
    nanoseconds; the later of the two ends' values). ``param`` is the
    scheme's tuning knob (the bright-state population alpha for single-click,
    ignored by schemes without one; a follower's is ignored). A memory slot
    is reserved on submission. ``virtual``: ask the driver's *virtual link*
    with ``peer`` (any node; what the ideal network layer stands on) instead
    of the quantum link to a neighbour. ``specs/physical.md`` (heralding
    station).
    """

    peer: str
    key: Hashable
    deadline_ns: int
    param: float = 0.0
    start_ns: int = 0
    virtual: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class CancelEntangle:
    """Stop the attempts of a pending :class:`Entangle` with ``key``; its
    outcome becomes a failed :class:`Herald` (``reason="cancelled"``).
    ``virtual``: on the virtual link with ``peer`` (see :class:`Entangle`)."""

    peer: str
    key: Hashable
    virtual: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class Herald:
    """The outcome of :class:`Entangle` at one end.

    ``qubit`` is this end's half of the pair (``None`` on failure);
    ``bell_index`` the Bell state the herald announces (0..3); ``attempts``
    the number of attempts made; ``emitted_ns`` the time the successful
    attempt's photon was emitted (the qubit waited in memory since then);
    ``fidelity_estimate`` the model's fidelity of the heralded state before
    memory decay; ``key`` the key of the pair (for a follower, the key the
    other end asked with). On failure ``ok`` is False and ``reason`` says why
    ("deadline", "cancelled", "memory full", "peer absent", "link down",
    "peer down", "duplicate key").
    """

    ok: bool
    qubit: Any = None
    bell_index: int = 0
    attempts: int = 0
    emitted_ns: int = 0
    fidelity_estimate: float = 0.0
    reason: str = ""
    key: Any = None


@dataclass(frozen=True, slots=True)
class PulseBlock:
    """Send (``role="send"``) or receive (``role="receive"``) a block of ``n``
    prepare-and-measure pulses (decoy-state BB84) over the quantum link with
    neighbour ``peer``. Both ends submit one with the same ``key``; the block
    starts when both have, and each end receives its :class:`PulseRecord`
    when the block ends, ``n`` pulse periods later. The link's pulse physics
    (source, fibre, Bob's detectors, an eavesdropper if configured) is the
    driver's: :class:`qstack.physical.qkdlink.QkdLinkModel`."""

    peer: str
    key: Hashable
    n: int
    role: str = "send"


@dataclass(frozen=True, slots=True)
class PulseRecord:
    """One end's record of a :class:`PulseBlock` (arrays over the block's
    detection events, in pulse order).

    Sender: ``index`` (int64 pulse index), ``basis`` (0 Z, 1 X), ``bit`` and
    ``cls`` (intensity class) at every pulse where the receiver clicked, and
    ``sent_per_class``. The sender's choices at the other pulses are never
    announced by anyone (sifting names only the receiver's clicks), so the
    record leaves them out rather than hold ~n numbers for nothing.
    Receiver: ``index``, ``basis``, ``bit`` of its clicks (``cls`` empty).
    ``start_ns``/``end_ns``: the block's span; ``period_ns``: pulse period.
    ``intensities``/``class_probs``: the link's intensity classes (mean
    photon numbers and probabilities; public, configured at both ends).
    On failure ``ok`` is False and ``reason`` says why.
    """

    ok: bool
    role: str = ""
    n_pulses: int = 0
    index: Any = None
    basis: Any = None
    bit: Any = None
    cls: Any = None
    sent_per_class: tuple = ()
    start_ns: int = 0
    end_ns: int = 0
    period_ns: float = 0.0
    reason: str = ""
    intensities: tuple = ()
    class_probs: tuple = ()
