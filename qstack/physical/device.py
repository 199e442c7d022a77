"""A node's quantum hardware: memory slots, gate and measurement noise, timing.

The device carries out the local operations of :mod:`qstack.physical.ops` on
the state engine and says how long each takes; the driver (simulator or
emulator physics server) turns that duration into time. Memory decay is
applied lazily: a stored qubit remembers when it was last brought up to date,
and every operation that touches it first applies T1/T2 decay for the time it
waited. Nobody pays for idle qubits until they are used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qstack.core.args import MAX_DURATION_NS, show
from qstack.core.errors import ErrorCode, QStackError
from qstack.physical.channels_kraus import _decay_rates
from qstack.physical.ops import (
    SINGLE_QUBIT_GATES, TWO_QUBIT_GATES, Allocate, BellMeasure, Discard, Gate, Measure,
    check_angle, check_basis,
)

__all__ = ["NodeHardware", "QuantumDevice"]


@dataclass(frozen=True, slots=True)
class NodeHardware:
    """Parameters of one node's processor and memory.

    Defaults are of the order of a trapped-ion or NV-centre processing node
    (gate times of microseconds, readout of a few microseconds, seconds-scale
    memory coherence with dynamical decoupling), with noiseless gates: set the
    error fields to study their effect.

    Times are nanoseconds; ``t1_ns`` / ``t2_ns`` may be ``math.inf``. The
    durations (``gate_1q_ns``, ``gate_2q_ns``, ``measure_ns``, ``init_ns``)
    are integers in 0..``MAX_DURATION_NS`` (10**12 ns, 1000 s): simulated
    time is integer nanoseconds, and a longer operation would carry a node
    towards the end of simulated time (2**62 ns) in a few thousand steps.
    ``*_depolar`` are depolarising probabilities applied to each qubit a gate
    touches; ``measure_flip_prob`` flips each readout bit.
    ``attempt_dephasing_prob`` p: every entangling attempt of any link of
    this node applies Z with probability p to every other qubit stored here
    (coherences x (1 - 2p) per attempt, (1 - 2p)^N after N attempts): the
    dephasing of stored NV nuclear-spin qubits by the electron spin's
    entangling attempts (Kalb et al., Science 356, 928 (2017); Kalb et al.,
    PRA 97, 062330 (2018)); 0 (default) is off.
    ``communication_qubits``: how many heralded entanglement generation
    processes the node runs at once on each of its links (communication
    qubits, or the modes of a multiplexed source/memory, per link): a link
    runs min(both ends', each end's ``num_qubits``, the link's own cap) in
    parallel (``specs/link.md`` §4). 1 (default) is one communication qubit
    that must hear a herald before it tries again, as an NV centre or a
    trapped ion does. Bad values raise ``ValueError`` naming the field (a
    configuration file's ``ConfigError``).
    """

    num_qubits: int = 8
    t1_ns: float = math.inf
    t2_ns: float = 1e9
    gate_1q_ns: int = 100
    gate_2q_ns: int = 1_000
    measure_ns: int = 2_000
    init_ns: int = 1_000
    gate_1q_depolar: float = 0.0
    gate_2q_depolar: float = 0.0
    measure_flip_prob: float = 0.0
    attempt_dephasing_prob: float = 0.0
    communication_qubits: int = 1

    def __post_init__(self) -> None:
        # Strict types (a bool is not a count, a float not a number of ns)
        # and no NaN: a bad value is refused here, not met mid-run.
        if not _is_int(self.num_qubits) or self.num_qubits < 1:
            raise ValueError(f"num_qubits: expected an integer >= 1, got {show(self.num_qubits)}")
        if not _is_int(self.communication_qubits) or not 1 <= self.communication_qubits <= 65535:
            raise ValueError("communication_qubits: expected an integer in 1..65535 (generation "
                             f"processes per link), got {show(self.communication_qubits)}")
        for name in ("t1_ns", "t2_ns"):
            value = getattr(self, name)
            if not _is_real(value) or not value > 0:
                raise ValueError(f"{name}: expected a time in ns > 0 (inf: no decay), "
                                 f"got {show(value)}")
        if self.t2_ns > 2 * self.t1_ns:
            raise ValueError(f"t2_ns = {self.t2_ns} exceeds 2*t1_ns = {2 * self.t1_ns}: "
                             "unphysical (T2 <= 2*T1)")
        for name in ("gate_1q_ns", "gate_2q_ns", "measure_ns", "init_ns"):
            value = getattr(self, name)
            # The driver schedules these as integer ns (a float would not be
            # refused until the first operation, in the middle of a run).
            if not _is_int(value) or not 0 <= value <= MAX_DURATION_NS:
                raise ValueError(f"{name}: expected an integer duration in 0..{MAX_DURATION_NS} "
                                 f"ns, got {show(value)}")
        for name in ("gate_1q_depolar", "gate_2q_depolar", "measure_flip_prob"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {show(value)}")
        # above 1/2 a flip is likelier than not: coherences would change sign
        # with each attempt, which no memory does
        value = self.attempt_dephasing_prob
        if not _is_real(value) or not 0.0 <= value <= 0.5:
            raise ValueError("attempt_dephasing_prob: expected a probability in [0, 0.5] per "
                             f"attempt, got {show(value)}")

    @property
    def bsm_ns(self) -> int:
        """Duration of a deterministic Bell-state measurement (CNOT, H, two readouts)."""
        return self.gate_2q_ns + self.gate_1q_ns + self.measure_ns

    @property
    def decays(self) -> bool:
        return math.isfinite(self.t1_ns) or math.isfinite(self.t2_ns)

    @property
    def longest_op_ns(self) -> int:
        """The duration of the longest local operation, ns."""
        return max(self.init_ns, self.measure_ns, self.bsm_ns)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A real number that is not NaN (infinities pass; callers bound them)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and not math.isnan(value))


class QuantumDevice:
    """One node's memory and processor, acting on a shared state engine.

    ``engine`` is a :class:`qstack.physical.engine.QuantumEngine`; ``rng`` a
    numpy Generator for readout errors.
    """

    def __init__(self, node: str, engine: Any, hardware: NodeHardware, rng: Any) -> None:
        self.node = node
        self.engine = engine
        self.hw = hardware
        self.rng = rng
        self._last_update: dict[Any, int] = {}   # stored qubit -> time its decay is applied to
        self._reserved = 0
        #: the most slots in use at once (stored or reserved) since this
        #: device was made: what a node's memory had to hold
        self.peak_slots = 0
        # hot-path copies of hardware figures (NodeHardware is frozen)
        self._slots = hardware.num_qubits
        self._decays = hardware.decays
        self._t1_ns, self._t2_ns = hardware.t1_ns, hardware.t2_ns
        # (a swap's: bsm_ns is a property that adds three durations)
        self._bsm_ns = hardware.bsm_ns
        self._gate_2q_depolar = hardware.gate_2q_depolar
        self._measure_flip_prob = hardware.measure_flip_prob
        self._rates: tuple | None = None     # (1/T1, 1/T_phi), per ns, at the first decay
        #: entangling attempts made at this node, [first_ns, cycle_ns, count]
        #: each (attempts at first + k cycle, k < count); only kept when the
        #: hardware dephases stored qubits per attempt
        self._attempt_runs: list[list[int]] = []
        self._dephases = hardware.attempt_dephasing_prob > 0

    # ------------------------------------------------------------ memory slots
    @property
    def used_slots(self) -> int:
        return len(self._last_update) + self._reserved

    @property
    def free_slots(self) -> int:
        return self.hw.num_qubits - self.used_slots

    def reserve(self) -> bool:
        """Reserve a slot for a qubit that will arrive (e.g. a heralded pair)."""
        used = len(self._last_update) + self._reserved
        if used >= self._slots:
            return False
        self._reserved += 1
        if used >= self.peak_slots:
            self.peak_slots = used + 1
        return True

    def release_reservation(self) -> None:
        if self._reserved <= 0:
            raise RuntimeError("no reserved slot to release")
        self._reserved -= 1

    def store(self, qubit: Any, since_ns: int, reserved: bool = False) -> None:
        """Put ``qubit`` in memory; it has been waiting since ``since_ns``."""
        if reserved:
            if self._reserved <= 0:
                raise RuntimeError("no reserved slot to release")
            self._reserved -= 1
        elif self.free_slots <= 0:
            raise QStackError(ErrorCode.MEMORY_FULL, f"{self.node}: all {self.hw.num_qubits} "
                                                     "memory slots are in use")
        else:
            used = len(self._last_update) + self._reserved + 1
            if used > self.peak_slots:
                self.peak_slots = used
        self._last_update[qubit] = since_ns

    def reset(self) -> None:
        """Lose the whole memory (a crash): every stored qubit is traced out
        and every reservation dropped."""
        for qubit in list(self._last_update):
            self.free(qubit)
        self._reserved = 0

    def holds(self, qubit: Any) -> bool:
        return qubit in self._last_update

    def stored_qubits(self) -> list:
        return list(self._last_update)

    def update(self, qubit: Any, now_ns: int) -> None:
        """Apply the memory decay ``qubit`` suffered since it was last updated."""
        last = self._last_update.get(qubit)
        if last is None:
            raise QStackError(ErrorCode.QUBIT_UNAVAILABLE,
                              f"{self.node}: qubit {show(qubit)} is not in this node's memory")
        if now_ns > last:
            if self._decays:
                # (once per stored qubit used: this memory's rates, checked once;
                # the same numbers as channels_kraus.t1t2_rates)
                rates = self._rates
                if rates is None:
                    rates = self._rates = _decay_rates(self._t1_ns, self._t2_ns)
                wait = now_ns - last
                inv_t1, inv_tphi = rates
                self.engine._decay(qubit, -math.expm1(-wait * inv_t1) if inv_t1 else 0.0,
                                   -math.expm1(-wait * inv_tphi), wait, self._t1_ns,
                                   self._t2_ns)
            if self._dephases and self._attempt_runs:
                self._attempt_dephasing(qubit, last, now_ns)
            self._last_update[qubit] = now_ns

    def bell_fidelity_now(self, qubit: Any, other: "QuantumDevice", other_qubit: Any,
                          bell_index: int, now_ns: int) -> float:
        """Fidelity to Bell state ``bell_index`` (0 Phi+, 1 Phi-, 2 Psi+, 3 Psi-)
        at ``now_ns`` of the pair of ``qubit`` (stored here) and ``other_qubit``
        (stored in ``other``, which may be this device): the value
        :meth:`update` on both halves and the engine's ``bell_fidelity`` would
        give, read without changing the state (each half's decay since its
        last update stays pending, as for any idle qubit). With per-attempt
        dephasing at either end both halves are brought up to date first."""
        last = self._last_update.get(qubit)
        last_other = other._last_update.get(other_qubit)
        if last is None or last_other is None:
            bad, dev = (qubit, self) if last is None else (other_qubit, other)
            raise QStackError(ErrorCode.QUBIT_UNAVAILABLE,
                              f"{dev.node}: qubit {show(bad)} is not in this node's memory")
        if (self._dephases and self._attempt_runs) or (other._dephases and other._attempt_runs):
            self.update(qubit, now_ns)
            other.update(other_qubit, now_ns)
            return self.engine.bell_fidelity(qubit, other_qubit, bell_index)
        wait = now_ns - last if self._decays and now_ns > last else 0
        wait_other = now_ns - last_other if other._decays and now_ns > last_other else 0
        if not wait and not wait_other:
            return self.engine.bell_fidelity(qubit, other_qubit, bell_index)
        return self.engine.decayed_bell_fidelity(qubit, other_qubit, bell_index, wait,
                                                 wait_other, self._t1_ns, self._t2_ns,
                                                 other._t1_ns, other._t2_ns)

    # ------------------------------------------------------------ attempts
    def add_attempts(self, now_ns: int, first_ns: int, cycle_ns: int,
                     count: int) -> list[int] | None:
        """Record, at ``now_ns``, ``count`` entangling attempts at ``first_ns +
        k cycle_ns`` (ns): every qubit stored here meanwhile dephases with them
        (applied lazily, like T1/T2). Returns the run, for
        :meth:`stop_attempts`; None (nothing kept) if this hardware does not
        dephase per attempt."""
        if not self._dephases or count <= 0:
            return None
        # a run that ended before now and before every stored qubit's last
        # update concerns no qubit any more (a qubit stored later is stored
        # from now on)
        oldest = min(min(self._last_update.values(), default=now_ns), now_ns)
        self._attempt_runs = [r for r in self._attempt_runs
                              if r[0] + (r[2] - 1) * r[1] > oldest]
        run = [int(first_ns), max(1, int(cycle_ns)), int(count)]
        self._attempt_runs.append(run)
        return run

    def stop_attempts(self, run: list[int] | None, now_ns: int) -> None:
        """The attempts of ``run`` after ``now_ns`` are not made (cancelled)."""
        if run is None:
            return
        first, cycle, count = run
        run[2] = 0 if now_ns < first else min(count, (now_ns - first) // cycle + 1)

    def _attempt_dephasing(self, qubit: Any, last_ns: int, now_ns: int) -> None:
        """Apply the dephasing of the attempts made in (last_ns, now_ns]: Z with
        probability (1 - (1 - 2p)^N) / 2 for N attempts (the exact aggregate
        of N independent flips of probability p)."""
        n = 0
        for first, cycle, count in self._attempt_runs:
            k_lo = 0 if last_ns < first else (last_ns - first) // cycle + 1
            k_hi = min(count - 1, (now_ns - first) // cycle) if now_ns >= first else -1
            if k_hi >= k_lo:
                n += k_hi - k_lo + 1
        if n:
            p = self.hw.attempt_dephasing_prob
            self.engine.phase_flip(qubit, 0.5 * (1.0 - (1.0 - 2.0 * p) ** n))

    def free(self, qubit: Any, discard: bool = True) -> None:
        """Free ``qubit``'s slot (tracing it out of the engine if ``discard``)."""
        self._last_update.pop(qubit, None)
        if discard:
            self.engine.drop(qubit)

    # ------------------------------------------------------------ operations
    def execute(self, op: Any, now_ns: int) -> tuple[int, Any]:
        """Carry out ``op`` at ``now_ns``; return (duration in ns, outcome).

        A failure is returned as the outcome (a :class:`QStackError`), never
        raised, so the calling protocol decides and the node keeps serving.
        Parameters are checked before any qubit is touched: a bad one fails
        with ``INVALID_PARAMETER`` (duration 0) and the qubits keep their
        state and their slots.
        """
        kind = type(op)
        try:
            # (each kind by its method, so a subclass's override serves; compiled,
            # the two of every link pair and swap are C calls)
            if kind is Discard:
                return self._discard(op, now_ns)
            if kind is BellMeasure:
                return self._bell_measure(op, now_ns)
            if kind is Gate:
                return self._gate(op, now_ns)
            if kind is Measure:
                return self._measure(op, now_ns)
            if kind is Allocate:
                return self._allocate(op, now_ns)
            return 0, QStackError(ErrorCode.INVALID_PARAMETER,
                                  f"{self.node}: unknown operation {kind.__name__}")
        except QStackError as err:
            return 0, err
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # What the checks below do not foresee (an unhashable or foreign
            # object for a qubit, ...) is still the caller's bad argument: an
            # outcome with a code, not an exception out of the driver.
            return 0, QStackError(ErrorCode.INVALID_PARAMETER,
                                  f"{self.node}: {type(op).__name__} refused: "
                                  f"{type(exc).__name__}: {exc}")

    def _allocate(self, op: Allocate, now_ns: int) -> tuple[int, Any]:
        if self.free_slots <= 0:
            raise QStackError(ErrorCode.MEMORY_FULL, f"{self.node}: no free memory slot")
        qubit = self.engine.qubit()
        self.store(qubit, now_ns + self.hw.init_ns)
        return self.hw.init_ns, qubit

    def _gate(self, op: Gate, now_ns: int) -> tuple[int, Any]:
        name, qubits = op.name, op.qubits
        if name.__class__ is not str or qubits.__class__ is not tuple:
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              f"gate {show(name)} on {show(qubits)}: expected a gate name and a "
                              "tuple of qubits")
        params = _gate_params(name, op.params) if name in _PARAM_GATES else ()
        if len(qubits) == 2 and qubits[0] is qubits[1]:
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              f"gate {name!r}: a two-qubit gate on one qubit")
        for q in qubits:
            self.update(q, now_ns)
        eng = self.engine
        if name in SINGLE_QUBIT_GATES and len(qubits) == 1:
            (q,) = qubits
            if name in ("rx", "ry", "rz"):
                getattr(eng, name)(q, *params)
            elif name == "u":
                eng.apply(params[0], [q])
            elif name != "i":
                getattr(eng, name)(q)
            if self.hw.gate_1q_depolar:
                eng.depolarize(q, self.hw.gate_1q_depolar)
            duration = self.hw.gate_1q_ns
        elif name in TWO_QUBIT_GATES and len(qubits) == 2:
            getattr(eng, name)(*qubits)
            if self.hw.gate_2q_depolar:
                for q in qubits:
                    eng.depolarize(q, self.hw.gate_2q_depolar)
            duration = self.hw.gate_2q_ns
        else:
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              f"gate {name!r} on {len(qubits)} qubit(s) is not supported")
        for q in qubits:
            self._last_update[q] = now_ns + duration
        return duration, None

    def _readout(self, bit: int) -> int:
        if self._measure_flip_prob and self.rng.random() < self._measure_flip_prob:
            return bit ^ 1
        return bit

    def _measure(self, op: Measure, now_ns: int) -> tuple[int, Any]:
        basis = op.basis
        if basis.__class__ is not str or basis not in _NAMED_BASES:
            basis = check_basis(basis)      # before the qubit is touched
        self.update(op.qubit, now_ns)
        bit = self._readout(self.engine.measure(op.qubit, basis))
        self.free(op.qubit)
        return self.hw.measure_ns, bit

    def _bell_measure(self, op: BellMeasure, now_ns: int) -> tuple[int, Any]:
        a, b = op.qubit_a, op.qubit_b
        if a is b:
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              "a Bell-state measurement of a qubit with itself")
        self.update(a, now_ns)
        self.update(b, now_ns)
        if self._gate_2q_depolar:
            self.engine.depolarize(a, self._gate_2q_depolar)
            self.engine.depolarize(b, self._gate_2q_depolar)
        index = self.engine.bsm(a, b)
        if self._measure_flip_prob:
            index = (self._readout(index >> 1) << 1) | self._readout(index & 1)
        self._last_update.pop(a, None)
        self._last_update.pop(b, None)
        return self._bsm_ns, index

    def _discard(self, op: Discard, now_ns: int) -> tuple[int, Any]:
        qubit = op.qubit
        if self._last_update.pop(qubit, _ABSENT) is _ABSENT:
            raise QStackError(ErrorCode.QUBIT_UNAVAILABLE,
                              f"{self.node}: qubit {show(qubit)} is not in memory")
        self.engine.drop(qubit)          # (nothing if it was consumed already)
        return _DONE_NOW


_ABSENT = object()
_DONE_NOW = (0, None)
_NAMED_BASES = frozenset({"Z", "X", "Y"})
#: Gates whose parameters the device reads (the others ignore theirs).
_PARAM_GATES = frozenset({"rx", "ry", "rz", "u"})


def _gate_params(name: str, params: Any) -> tuple:
    """The checked parameters of gate ``name``: one finite angle (radians) for
    rx/ry/rz, one finite 2x2 unitary matrix for "u"; INVALID_PARAMETER otherwise."""
    if not isinstance(params, (tuple, list)) or len(params) != 1:
        raise QStackError(ErrorCode.INVALID_PARAMETER,
                          f"gate {name!r}: expected one parameter, got {show(params)}")
    if name != "u":
        return (check_angle(f"gate {name!r} angle", params[0]),)
    try:
        u = np.asarray(params[0], dtype=np.complex128)
    except (TypeError, ValueError):
        u = None
    if u is None or u.shape != (2, 2) or not np.all(np.isfinite(u)) \
            or not np.allclose(u.conj().T @ u, np.eye(2), atol=1e-9):
        raise QStackError(ErrorCode.INVALID_PARAMETER,
                          f"gate 'u': expected a finite 2x2 unitary matrix, got {show(params[0])}")
    return (u,)


#: The operations :meth:`QuantumDevice.execute` carries out.
DEVICE_OPS = frozenset((Allocate, Gate, Measure, BellMeasure, Discard))
