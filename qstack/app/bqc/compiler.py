"""Compile a gate :class:`~.circuit.Circuit` to a brickwork :class:`~.brickwork.Pattern`.

Each brick layer gives every row one *slot*. Measuring a row's four qubits of
a layer at ``phi1..phi4`` applies ``J(-phi4) J(-phi3) J(-phi2) J(-phi1)``,
``J(a) = H diag(1, e^{i a})``, with a CZ between the brick's two rows after
the second and after the fourth (:mod:`.brickwork`). So:

* a **one-qubit slot** takes ``phi4 = 0``: the second half is then diagonal,
  the two CZs cancel, and the row gets ``P(-phi3) H P(-phi2) H P(-phi1)``
  (``P(a) = diag(1, e^{i a})``), an Euler decomposition: any run of gates
  ``P(a) H P(b) H P(c)`` (in time order) fits one slot, and so does a lone
  ``P(a) H P(c)``, as ``H = P(pi/2) H P(pi/2) H P(pi/2)`` up to a phase;
* a **CNOT brick** (two adjacent rows ``r, r+1`` with ``r = L mod 2``): the
  control's row measured at ``(0, 0, pi/2, 0)``, the target's at
  ``(0, pi/2, 0, -pi/2)``, which makes ``CZ (A x B) CZ (C x D)`` equal to
  CNOT up to a global phase (found by searching the 8^8 angle assignments;
  Broadbent, Fitzsimons and Kashefi's Figure 3 shows such a brick); either
  row may be the control.

Gates go into the earliest layer free on their wires (a CNOT waits for a layer
of the right parity); a CNOT between rows further apart becomes adjacent ones
through swaps (three CNOTs each). The pattern starts with H on every wire
(its input is ``|+...+>``, the circuit's ``|0...0>``) and, for a classical
readout, ends with H on every wire (the outputs are read in the X basis, so
the bits are the circuit's Z-basis outcomes).
"""
from __future__ import annotations

from qstack.core.errors import ErrorCode, QStackError

from .brickwork import MAX_LAYERS, Brickwork, Pattern
from .circuit import Circuit, phase_tokens

__all__ = ["compile_circuit", "layers_needed"]

#: (control row's angles, target row's angles), units of pi/4, for a CNOT brick.
CNOT_CONTROL = (0, 0, 2, 0)
CNOT_TARGET = (0, 2, 0, 6)


def _adjacent(gates: tuple) -> list[tuple]:
    """The gates with every CNOT between non-adjacent wires replaced by
    adjacent ones: the target swapped next to the control and back."""
    out: list[tuple] = []

    def swap(a: int, b: int) -> list[tuple]:
        return [("cnot", a, b), ("cnot", b, a), ("cnot", a, b)]

    for g in gates:
        if g[0] != "cnot" or abs(g[1] - g[2]) == 1:
            out.append(g)
            continue
        c, t = g[1], g[2]
        step = 1 if t > c else -1
        path = list(range(t, c, -step))             # t, t-step, ..., c+step
        moves = [s for a, b in zip(path, path[1:]) for s in swap(a, b)]
        out += moves + [("cnot", c, c + step)] + moves[::-1]
    return out


def _canonical(tokens: list) -> list:
    """Tokens as an alternating list ``a0, "H", a1, "H", ..., am`` (phases
    summed mod 8, ``H H`` with no phase between cancelled)."""
    out: list = [0]
    for tok in tokens:
        if tok == "H":
            if len(out) >= 2 and out[-1] == 0:
                out.pop()
                out.pop()                      # H P(0) H = I
            else:
                out += ["H", 0]
        else:
            out[-1] = (out[-1] + tok) % 8
    return out


def _slots(tokens: list) -> list[tuple[int, int, int, int]]:
    """One-qubit slots (phi1..phi4, units of pi/4) applying ``tokens`` in order."""
    seq = _canonical(tokens)
    phases, nh = seq[0::2], len(seq) // 2       # a0 H a1 H ... H a_nh
    if nh == 0:
        return [((-phases[0]) % 8, 0, 0, 0)] if phases[0] else []
    out, i, lead = [], 0, phases[0]
    while i < nh:
        if nh - i >= 2:                         # P(lead) H P(mid) H P(trail)
            mid, trail = phases[i + 1], phases[i + 2]
            out.append(((-lead) % 8, (-mid) % 8, (-trail) % 8, 0))
            i += 2
            lead = 0
        else:                                   # P(lead) H P(trail), H = P(2) H P(2) H P(2)
            trail = phases[i + 1]
            out.append(((-lead - 2) % 8, 6, (-trail - 2) % 8, 0))
            i += 1
    return out


def layers_needed(circuit: Circuit, measure_outputs: bool = True) -> int:
    """The number of brick layers :func:`compile_circuit` uses for ``circuit``."""
    return _schedule(circuit, measure_outputs)[0]


def _schedule(circuit: Circuit, measure_outputs: bool) -> tuple[int, dict]:
    n = circuit.wires
    slots: dict[tuple[int, int], tuple[int, int, int, int]] = {}   # (layer, row) -> angles
    ready = [0] * n                           # each wire's first free layer
    pending: list[list] = [["H"] for _ in range(n)]   # |+> in, |0> for the circuit

    def flush(w: int) -> None:
        for slot in _slots(pending[w]):
            slots[(ready[w], w)] = slot
            ready[w] += 1
        pending[w] = []

    for g in _adjacent(circuit.gates):
        if g[0] != "cnot":
            pending[g[1]].extend(phase_tokens(g))
            continue
        c, t = g[1], g[2]
        flush(c)
        flush(t)
        top = min(c, t)
        layer = max(ready[c], ready[t])
        if layer % 2 != top % 2:              # bricks of layer L join rows r = L (mod 2)
            layer += 1
        slots[(layer, c)] = CNOT_CONTROL
        slots[(layer, t)] = CNOT_TARGET
        ready[c] = ready[t] = layer + 1
    for w in range(n):
        if measure_outputs:
            pending[w].append("H")            # read out in the X basis
        flush(w)
    return max(1, max(ready)), slots


def compile_circuit(circuit: Circuit, *, measure_outputs: bool = True,
                    layers: int | None = None) -> Pattern:
    """The brickwork pattern of ``circuit`` (a :class:`Circuit`, or a
    ``(wires, gates)`` pair).

    ``measure_outputs`` (default): the pattern's output bits are the
    circuit's Z-basis outcomes on ``|0...0>``; otherwise its output qubits
    hold the circuit's output state ``C|0...0>`` (up to the byproduct the
    client undoes). ``layers``: the brickwork's size, at least what the
    circuit needs (:func:`layers_needed`; ``OUT_OF_RANGE`` if fewer), the
    rest idle -- the graph, all the server learns, is then the same for every
    circuit of that size.
    """
    if not isinstance(circuit, Circuit):
        if not isinstance(circuit, (tuple, list)) or len(circuit) != 2:
            raise QStackError(ErrorCode.BAD_FIELD,
                              f"circuit: expected a Circuit or (wires, gates), got {circuit!r:.80}")
        circuit = Circuit(*circuit)
    need, slots = _schedule(circuit, bool(measure_outputs))
    if layers is None:
        layers = need
    elif isinstance(layers, bool) or not isinstance(layers, int):
        raise QStackError(ErrorCode.BAD_FIELD, f"layers: expected an integer, got {layers!r:.80}")
    elif not need <= layers <= MAX_LAYERS:
        raise QStackError(ErrorCode.OUT_OF_RANGE,
                          f"layers={layers}: the circuit needs {need}..{MAX_LAYERS}")
    graph = Brickwork(circuit.wires, layers)
    angles = [0] * graph.size
    for (layer, row), slot in slots.items():
        for i, k in enumerate(slot):
            angles[graph.qubit(row, 4 * layer + i)] = k
    return Pattern(graph, tuple(angles), measure_outputs=bool(measure_outputs))
