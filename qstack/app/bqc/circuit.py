"""Gate circuits a blind computation runs: H, S, T, Rz(k pi/4), CNOT on ``wires`` qubits.

A circuit starts from ``|0...0>`` and is a sequence of gates, each a tuple:

* ``("h", w)``, ``("s", w)``, ``("sdg", w)``, ``("t", w)``, ``("tdg", w)``,
  ``("x", w)``, ``("z", w)`` -- one-qubit gates on wire ``w``;
* ``("rz", w, k)`` -- ``diag(1, e^{i k pi/4})`` on wire ``w`` (``k`` an
  integer, taken mod 8: the angles a blind computation can hide are the
  multiples of pi/4);
* ``("cnot", c, t)`` -- control ``c``, target ``t`` (any two distinct wires).

Gates are exact up to a global phase (``rz`` is the phase gate, not
``exp(-i theta Z/2)``). Wire 0 is the first tensor factor. A bad gate is
refused when the :class:`Circuit` is made: ``BAD_FIELD`` (not a tuple, a wire
or ``k`` that is not an integer), ``OUT_OF_RANGE`` (a wire outside
``0..wires-1``, more than :data:`MAX_WIRES` wires) or ``INVALID_PARAMETER``
(an unknown gate, a CNOT of a wire with itself).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Iterable

from qstack.core.args import show
from qstack.core.errors import ErrorCode, QStackError

__all__ = ["Circuit", "MAX_WIRES", "ONE_QUBIT", "phase_tokens"]

#: The most wires a circuit may have (the brickwork's rows; the wire format's limit).
MAX_WIRES = 64

#: One-qubit gates as a time-ordered product of "H" and phase gates P(k pi/4),
#: P(a) = diag(1, e^{i a pi/4}) (X = H Z H, exact up to a global phase).
ONE_QUBIT: dict[str, tuple] = {
    "h": ("H",), "s": (2,), "sdg": (6,), "t": (1,), "tdg": (7,), "z": (4,),
    "x": ("H", 4, "H"),
}


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise QStackError(ErrorCode.BAD_FIELD, f"{name}: expected an integer, got {show(value)}")
    return int(value)


@dataclass(frozen=True)
class Circuit:
    """``wires`` qubits (1..:data:`MAX_WIRES`) from ``|0...0>`` and ``gates``
    in the order applied, normalised to tuples ``(name, wire)``,
    ``("rz", wire, k mod 8)`` or ``("cnot", control, target)``."""

    wires: int
    gates: tuple = ()

    def __post_init__(self) -> None:
        wires = _int("wires", self.wires)
        if not 1 <= wires <= MAX_WIRES:
            raise QStackError(ErrorCode.OUT_OF_RANGE,
                              f"wires={show(self.wires)}: expected 1..{MAX_WIRES}")
        if isinstance(self.gates, (str, bytes)) or not isinstance(self.gates, Iterable):
            raise QStackError(ErrorCode.BAD_FIELD,
                              f"gates: expected a sequence of tuples, got {show(self.gates)}")
        gates = tuple(self._gate(i, g, wires) for i, g in enumerate(self.gates))
        object.__setattr__(self, "wires", wires)
        object.__setattr__(self, "gates", gates)

    @staticmethod
    def _gate(i: int, gate: Any, wires: int) -> tuple:
        where = f"gates[{i}]"
        if not isinstance(gate, (tuple, list)) or not gate or not isinstance(gate[0], str):
            raise QStackError(ErrorCode.BAD_FIELD,
                              f"{where}: expected a tuple (name, wire, ...), got {show(gate)}")
        name = gate[0].lower()
        arity = {"rz": 3, "cnot": 3}.get(name, 2)
        if name not in ONE_QUBIT and name not in ("rz", "cnot"):
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              f"{where}={show(gate)}: unknown gate {gate[0]!r}; use "
                              f"{', '.join(sorted([*ONE_QUBIT, 'rz', 'cnot']))}")
        if len(gate) != arity:
            raise QStackError(ErrorCode.BAD_FIELD,
                              f"{where}={show(gate)}: {name} takes {arity - 1} arguments")
        nwires = 2 if name == "cnot" else 1
        ws = []
        for j in range(nwires):
            w = _int(f"{where} wire", gate[1 + j])
            if not 0 <= w < wires:
                raise QStackError(ErrorCode.OUT_OF_RANGE,
                                  f"{where}={show(gate)}: wire {w} outside 0..{wires - 1}")
            ws.append(w)
        if name == "cnot":
            if ws[0] == ws[1]:
                raise QStackError(ErrorCode.INVALID_PARAMETER,
                                  f"{where}={show(gate)}: a CNOT needs two distinct wires")
            return ("cnot", ws[0], ws[1])
        if name == "rz":
            return ("rz", ws[0], _int(f"{where} k", gate[2]) % 8)
        return (name, ws[0])

    def __len__(self) -> int:
        return len(self.gates)


def phase_tokens(gate: tuple) -> tuple:
    """A one-qubit gate of a :class:`Circuit` as time-ordered tokens: "H" or
    an integer a for P(a pi/4)."""
    if gate[0] == "rz":
        return (gate[2],)
    return ONE_QUBIT[gate[0]]
