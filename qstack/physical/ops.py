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
==================  =========================================================

A failed operation's outcome is a :class:`~qstack.core.errors.QStackError`
(for instance ``MEMORY_FULL`` or ``QUBIT_UNAVAILABLE``) instead of raising, so
the protocol decides what to do and the node keeps serving.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

__all__ = [
    "Allocate", "Gate", "Measure", "BellMeasure", "Discard", "Entangle", "CancelEntangle",
    "Herald", "SINGLE_QUBIT_GATES", "TWO_QUBIT_GATES",
]

#: Gate names understood by :class:`Gate` (params: rotation angle in radians
#: for rx/ry/rz; a 2x2 unitary matrix for "u").
SINGLE_QUBIT_GATES = frozenset({"i", "x", "y", "z", "h", "s", "sdg", "t", "rx", "ry", "rz", "u"})
TWO_QUBIT_GATES = frozenset({"cnot", "cz", "swap"})


@dataclass(frozen=True, slots=True)
class Allocate:
    """Take a free memory slot and prepare it in ``|0>``."""


@dataclass(frozen=True, slots=True)
class Gate:
    """Apply gate ``name`` to ``qubits`` (control first for cnot)."""

    name: str
    qubits: tuple
    params: tuple = ()


@dataclass(frozen=True, slots=True)
class Measure:
    """Measure ``qubit`` in ``basis`` ("Z", "X", "Y" or (theta, phi) in
    radians) and free its slot."""

    qubit: Any
    basis: Any = "Z"


@dataclass(frozen=True, slots=True)
class BellMeasure:
    """Bell-state measurement of two local qubits (deterministic, as with a
    CNOT, H and two Z measurements on a processor node); both are freed."""

    qubit_a: Any
    qubit_b: Any


@dataclass(frozen=True, slots=True)
class Discard:
    """Free ``qubit``'s slot, tracing it out of any state it shares."""

    qubit: Any


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


@dataclass(frozen=True, slots=True)
class CancelEntangle:
    """Stop the attempts of a pending :class:`Entangle` with ``key``; its
    outcome becomes a failed :class:`Herald` (``reason="cancelled"``).
    ``virtual``: on the virtual link with ``peer`` (see :class:`Entangle`)."""

    peer: str
    key: Hashable
    virtual: bool = False


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
