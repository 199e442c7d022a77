"""Quantum memory model: efficiencies, T1/T2 decay (through the state engine), modes, cut-off."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qstack.physical.sources import _check_nonneg, _check_pos, _check_prob, _fail

__all__ = ["QuantumMemory", "attempt_dephasing_from_reset"]


def attempt_dephasing_from_reset(coupling_hz: float, reset_time_ns: float) -> float:
    """Z-error probability per entangling attempt of a nuclear-spin memory
    coupled by ``coupling_hz`` (Hz, Δω/2π) to an electron spin whose reset
    takes an exponentially distributed time of mean ``reset_time_ns`` ns.

    The nuclear spin precesses at a frequency that depends on the electron's
    state, so it picks up the phase Δω·t for a random reset time t (Kalb et
    al., PRA 97, 062330 (2018), Eq. 2 and Table I); averaged over the
    exponential, the coherence shrinks by |E e^(iΔωt)| = 1/√(1 + (Δω τ)²),
    i.e. a Z error with probability p = (1 − 1/√(1 + (Δω τ)²)) / 2.
    """
    _check_nonneg("attempt_dephasing_from_reset", "coupling_hz", coupling_hz)
    _check_nonneg("attempt_dephasing_from_reset", "reset_time_ns", reset_time_ns)
    x = 2.0 * math.pi * coupling_hz * reset_time_ns * 1e-9
    return 0.5 * (1.0 - 1.0 / math.sqrt(1.0 + x * x))


@dataclass(frozen=True)
class QuantumMemory:
    """Parameters of a quantum memory at a node.

    The memory does not own qubit states: the quantum state engine does.  It
    tells the engine how a stored qubit decays (:meth:`decay`) and when it must
    be thrown away (:meth:`expired`).

    Fields:
        write_efficiency: probability that a photon/qubit is stored successfully.
        read_efficiency: probability that a stored qubit is retrieved.
        t1_ns: energy relaxation time T1 in ns (inf = none).
        t2_ns: coherence time T2 in ns (inf = none); physics requires T2 ≤ 2·T1.
        num_modes: number of modes that can be used in parallel (multiplexing).
        cutoff_ns: storage time in ns after which a qubit is discarded (inf = never).
        attempt_dephasing_prob: probability per entangling attempt on the same
            node that a stored qubit suffers a Z error (0–1/2; 0 = off): the
            NV nuclear-spin memory's dephasing by the electron's attempts
            (Kalb et al., Science 356, 928 (2017)); the simulator applies it
            through ``NodeHardware.attempt_dephasing_prob``.
    """

    # Defaults: an NV-centre electron spin with dynamical decoupling —
    # T1 > 1 h at 4 K, T2 = 1.46 s (Abobeih et al., Nat. Commun. 9, 2552 (2018));
    # one communication qubit, write/read through the optical interface
    # treated as ideal here (photon collection is the source's business).
    write_efficiency: float = 1.0
    read_efficiency: float = 1.0
    t1_ns: float = 3.6e12
    t2_ns: float = 1.46e9
    num_modes: int = 1
    cutoff_ns: float = math.inf
    attempt_dephasing_prob: float = 0.0

    def __post_init__(self) -> None:
        _check_prob("QuantumMemory", "write_efficiency", self.write_efficiency)
        _check_prob("QuantumMemory", "read_efficiency", self.read_efficiency)
        _check_pos("QuantumMemory", "t1_ns", self.t1_ns, allow_inf=True)
        _check_pos("QuantumMemory", "t2_ns", self.t2_ns, allow_inf=True)
        if self.t2_ns > 2.0 * self.t1_ns:
            _fail("QuantumMemory", "t2_ns", f"T2 <= 2*T1 = {2.0 * self.t1_ns} ns", self.t2_ns)
        if not isinstance(self.num_modes, int) or isinstance(self.num_modes, bool) or self.num_modes < 1:
            _fail("QuantumMemory", "num_modes", "an integer >= 1", self.num_modes)
        _check_pos("QuantumMemory", "cutoff_ns", self.cutoff_ns, allow_inf=True)
        _check_prob("QuantumMemory", "attempt_dephasing_prob", self.attempt_dephasing_prob)
        if self.attempt_dephasing_prob > 0.5:
            _fail("QuantumMemory", "attempt_dephasing_prob", "a probability in [0, 0.5] per "
                  "attempt", self.attempt_dephasing_prob)

    def decay(self, engine: Any, qubit: Any, wait_ns: float) -> None:
        """Apply T1/T2 decay for ``wait_ns`` ns of storage to ``qubit`` in ``engine``."""
        _check_nonneg("QuantumMemory.decay", "wait_ns", wait_ns)
        engine.memory_decay(qubit, wait_ns, self.t1_ns, self.t2_ns)

    def expired(self, stored_at_ns: float, now_ns: float) -> bool:
        """True once a qubit stored at ``stored_at_ns`` has been held longer than the cut-off."""
        return now_ns - stored_at_ns > self.cutoff_ns

    def storage_efficiency(self) -> float:
        """write × read efficiency."""
        return self.write_efficiency * self.read_efficiency

    def amplitude_damping_prob(self, wait_ns: float) -> float:
        """γ = 1 − e^(−t/T1): probability |1⟩ has relaxed after t ns."""
        return -math.expm1(-wait_ns / self.t1_ns)

    def coherence_factor(self, wait_ns: float) -> float:
        """e^(−t/T2): factor by which off-diagonal elements shrink after t ns."""
        return math.exp(-wait_ns / self.t2_ns)

    def attempt_coherence_factor(self, attempts: int) -> float:
        """(1 − 2p)^N: factor by which a stored qubit's coherences shrink after
        N entangling attempts on its node (independent Z errors of probability p)."""
        return (1.0 - 2.0 * self.attempt_dephasing_prob) ** attempts

    def multiplexed_success_prob(self, p_single: float) -> float:
        """Probability that at least one of num_modes parallel attempts succeeds: 1 − (1−p)^m."""
        _check_prob("QuantumMemory.multiplexed_success_prob", "p_single", p_single)
        return -math.expm1(self.num_modes * math.log1p(-p_single)) if p_single < 1 else 1.0

    def max_wait_attempts(self, cycle_time_ns: float) -> int | None:
        """Largest number of attempt cycles a stored qubit survives before the cut-off (None if no cut-off)."""
        _check_pos("QuantumMemory.max_wait_attempts", "cycle_time_ns", cycle_time_ns)
        if math.isinf(self.cutoff_ns):
            return None
        return int(math.floor(self.cutoff_ns / cycle_time_ns))
