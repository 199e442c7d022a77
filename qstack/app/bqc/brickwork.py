"""The brickwork graph (public) and measurement patterns on it (the client's secret).

The brickwork state of Broadbent, Fitzsimons and Kashefi (FOCS 2009,
arXiv:0807.4154, Definition 1) with ``rows`` rows and ``4 * layers + 1``
columns, 0-indexed: every row is a chain (edges ``(r, c)-(r, c+1)``), and
brick layer ``L`` (columns ``4L .. 4L+4``) has vertical edges
``(r, c)-(r+1, c)`` at columns ``c = 4L+2`` and ``4L+4`` for the rows ``r``
with ``r = L (mod 2)``. (The paper asks for ``m = 5 (mod 8)`` columns, an odd
number of layers; any number works here.) Qubit ``v = c * rows + r`` is
measured ``v``-th: column by column, top to bottom.

The graph has a flow (Danos and Kashefi, PRA 74, 052310 (2006)):
``f((r, c)) = (r, c+1)``. Measuring qubit ``v`` in the XY-plane at angle
``phi`` (basis ``|+-_phi> = (|0> +- e^{i phi}|1>)/sqrt2``) with outcome ``s``
leaves the byproduct ``X^s`` on ``f(v)`` and ``Z^s`` on every other neighbour
of ``f(v)``. A later qubit ``u`` with accumulated byproduct ``X^{sx} Z^{sz}`` is
measured at the corrected angle ``(-1)^{sx} phi_u + sz pi`` instead (what
:meth:`Pattern.corrected` computes), so the computation is deterministic.
Angles are integers ``k`` standing for ``k pi/4`` (mod 8).

Measuring at ``phi`` implements ``J(-phi) = H diag(1, e^{-i phi})`` on the
logical qubit of that row (the output state is ``X^s J(-phi)|psi>``).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from qstack.core.args import show
from qstack.core.errors import ErrorCode, QStackError

from .circuit import MAX_WIRES

__all__ = ["Brickwork", "Pattern", "MAX_LAYERS"]

#: The most brick layers a graph may have (so 4097 columns).
MAX_LAYERS = 1024


def _check(name: str, value: object, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise QStackError(ErrorCode.BAD_FIELD, f"{name}: expected an integer, got {show(value)}")
    if not 1 <= value <= hi:
        raise QStackError(ErrorCode.OUT_OF_RANGE, f"{name}={value}: expected 1..{hi}")
    return int(value)


@dataclass(frozen=True)
class Brickwork:
    """The brickwork graph with ``rows`` (1..64) rows and ``layers``
    (1..1024) brick layers: what the server knows of a computation."""

    rows: int
    layers: int
    _neighbours: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", _check("rows", self.rows, MAX_WIRES))
        object.__setattr__(self, "layers", _check("layers", self.layers, MAX_LAYERS))
        nbrs: list[list[int]] = [[] for _ in range(self.size)]
        for a, b in self.edges():
            nbrs[a].append(b)
            nbrs[b].append(a)
        object.__setattr__(self, "_neighbours", tuple(tuple(sorted(n)) for n in nbrs))

    @property
    def columns(self) -> int:
        return 4 * self.layers + 1

    @property
    def size(self) -> int:
        """The number of qubits."""
        return self.rows * self.columns

    def qubit(self, row: int, col: int) -> int:
        return col * self.rows + row

    def position(self, v: int) -> tuple[int, int]:
        """(row, column) of qubit ``v``."""
        return v % self.rows, v // self.rows

    def column(self, col: int) -> range:
        """The qubits of column ``col``, top to bottom."""
        return range(col * self.rows, (col + 1) * self.rows)

    def vertical_rows(self, col: int) -> tuple[int, ...]:
        """The rows ``r`` with an edge ``(r, col)-(r+1, col)``."""
        if col % 4 == 2:
            parity = (col // 4) % 2
        elif col % 4 == 0 and col > 0:
            parity = (col // 4 - 1) % 2
        else:
            return ()
        return tuple(range(parity, self.rows - 1, 2))

    def edges(self) -> list[tuple[int, int]]:
        """Every edge ``(a, b)``, ``a < b``, in the order the server makes them."""
        out = []
        for c in range(self.columns):
            if c:
                out += [(self.qubit(r, c - 1), self.qubit(r, c)) for r in range(self.rows)]
            out += [(self.qubit(r, c), self.qubit(r + 1, c)) for r in self.vertical_rows(c)]
        return out

    def neighbours(self, v: int) -> tuple[int, ...]:
        return self._neighbours[v]

    def flow(self, v: int) -> int | None:
        """``f(v)``: the next qubit of ``v``'s row (None in the last column)."""
        return v + self.rows if v < self.size - self.rows else None

    @property
    def outputs(self) -> range:
        return self.column(self.columns - 1)

    def steps(self, measure_outputs: bool = True) -> list[tuple[int, range]]:
        """The protocol's steps, ``(received, measured)``: before measuring
        the qubits ``measured`` (a column) the server holds every qubit below
        index ``received`` and has made every edge among them (all of a
        measured qubit's neighbours are there). The corrected angles of a
        column depend only on earlier columns' outcomes (the flow's
        dependencies reach back one or two columns), so a column's angles go
        in one message. Without ``measure_outputs`` the last column is not
        measured."""
        last = self.columns - 1
        return [((min(c + 1, last) + 1) * self.rows, self.column(c))
                for c in range(last + (1 if measure_outputs else 0))]

    def colour(self, v: int) -> int:
        """A proper 2-colouring, ``(row + column) mod 2``: no edge joins two
        qubits of one colour (the trap rounds' classes)."""
        r, c = self.position(v)
        return (r + c) % 2


@dataclass(frozen=True)
class Pattern:
    """A measurement pattern on ``graph``: qubit ``v`` is measured at angle
    ``angles[v] * pi/4`` before flow corrections (output qubits: 0, an
    X-basis readout when ``measure_outputs``).

    The pattern implements a unitary ``U`` on the ``rows`` logical qubits,
    which start in ``|+...+>`` (the first column); the output column then
    holds ``U|+...+>`` up to the byproduct (``X^{sx} Z^{sz}`` per qubit,
    :meth:`byproduct`). With ``measure_outputs`` every qubit is measured and
    the output bits are X-basis readouts of ``U|+...+>``.
    """

    graph: Brickwork
    angles: tuple
    measure_outputs: bool = True
    _x_deps: tuple = field(init=False, repr=False, compare=False)
    _z_deps: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        g = self.graph
        if not isinstance(g, Brickwork):
            raise QStackError(ErrorCode.BAD_FIELD, f"graph: expected a Brickwork, got {show(g)}")
        angles = tuple(self.angles)
        if len(angles) != g.size:
            raise QStackError(ErrorCode.BAD_FIELD,
                              f"angles: expected {g.size} (one per qubit), got {len(angles)}")
        for v, k in enumerate(angles):
            if isinstance(k, bool) or not isinstance(k, numbers.Integral):
                raise QStackError(ErrorCode.BAD_FIELD,
                                  f"angles[{v}]: expected an integer (units of pi/4), got {show(k)}")
        angles = tuple(int(k) % 8 for k in angles)
        if any(angles[v] for v in g.outputs):
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              "output qubits are read out at angle 0 (an X-basis readout)")
        object.__setattr__(self, "angles", angles)
        x_deps: list[list[int]] = [[] for _ in range(g.size)]
        z_deps: list[list[int]] = [[] for _ in range(g.size)]
        for u in range(g.size):
            f = g.flow(u)
            if f is None:
                continue
            x_deps[f].append(u)
            for k in g.neighbours(f):
                if k != u:
                    z_deps[k].append(u)
        object.__setattr__(self, "_x_deps", tuple(map(tuple, x_deps)))
        object.__setattr__(self, "_z_deps", tuple(map(tuple, z_deps)))

    @property
    def measured(self) -> range:
        """The qubits measured, in order."""
        g = self.graph
        return range(g.size if self.measure_outputs else g.size - g.rows)

    def byproduct(self, v: int, outcomes: list) -> tuple[int, int]:
        """(sx, sz): the X and Z byproduct on qubit ``v`` from the (corrected)
        ``outcomes`` of the qubits measured before it."""
        sx = 0
        for u in self._x_deps[v]:
            sx ^= outcomes[u]
        sz = 0
        for u in self._z_deps[v]:
            sz ^= outcomes[u]
        return sx, sz

    def corrected(self, v: int, outcomes: list) -> int:
        """``phi'_v = (-1)^sx phi_v + sz pi``, in units of pi/4 (0..7)."""
        sx, sz = self.byproduct(v, outcomes)
        k = self.angles[v]
        return ((-k if sx else k) + 4 * sz) % 8

    def steps(self) -> list[tuple[int, range]]:
        """The protocol's steps (:meth:`Brickwork.steps`)."""
        return self.graph.steps(self.measure_outputs)
