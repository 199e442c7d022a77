"""The client's side of one run of the brickwork, without I/O, and the wire format.

A :class:`Round` holds the client's secrets for one run: what each qubit was
prepared in, the one-time pads ``r``, the outcomes. It turns the server's
outcomes into the next column's angles and, at the end, into the output or
the trap check. Two kinds of round look the same to the server:

* a **computation** round (Broadbent, Fitzsimons and Kashefi, FOCS 2009,
  Protocol 1): every qubit is ``|+_theta> = (|0> + e^{i theta}|1>)/sqrt2``
  with ``theta`` uniform in ``{k pi/4}``; qubit ``v`` is measured at
  ``delta = phi'_v + theta_v + r_v pi`` (``phi'`` the flow-corrected angle,
  :meth:`~.brickwork.Pattern.corrected`), and its true outcome is the
  server's bit XOR ``r_v``;
* a **test** round (the trappified runs of Leichtle, Music, Kashefi and
  Ollivier, PRX Quantum 2, 040302 (2021), after Kashefi and Wallden and
  Fitzsimons and Kashefi, PRA 96, 012303 (2017)): one colour class of the
  graph's 2-colouring (an independent set) is traps, ``|+_theta>``; every
  other qubit is a dummy ``|d>``, d uniform in {0, 1}. The CZs leave each
  trap ``Z^{D_v}|+_theta>``, ``D_v`` the parity of its neighbours' dummies;
  measured at ``delta = theta + r pi`` it must give ``r XOR D_v``. A dummy
  gets a uniformly random ``delta``.

Blindness: given ``delta``, a qubit averaged over the client's secret ``r``
(and ``theta``, ``d``) is ``I/2`` in both kinds of round, and every
``delta`` is uniform on the eight angles whatever the program (the argument
of BFK's blindness proof for their Protocol 1); the order of messages is
fixed by the public graph. ``specs/bqc.md`` is the normative description.

Angles are integers ``k`` for ``k pi/4``. Wire format (a connection's
classical messages, in order): the client's :func:`header`; per round and
per step (:meth:`~.brickwork.Brickwork.steps`) the step's qubits, then one
byte per measured qubit (``delta``, 0..7) from the client and one byte per
measured qubit (the outcome, 0 or 1) back; with a quantum output the server
then sends the output column's qubits back, top to bottom.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from qstack.core.errors import ErrorCode, QStackError

from .brickwork import Brickwork, Pattern

__all__ = ["Round", "Header", "header", "parse_header", "check_angles", "check_outcomes",
           "PLUS", "DUMMY", "MAX_ROUNDS"]

PLUS, DUMMY = "plus", "dummy"
#: The most rounds one connection runs.
MAX_ROUNDS = 1 << 24
_MAGIC = b"BQC"
_VERSION = 1
_HEADER = struct.Struct("<3sBBHIB")          # magic, version, rows, layers, rounds, flags
_QUANTUM_OUTPUT, _REMOTE = 1, 2


@dataclass(frozen=True)
class Header:
    """What the server is told: the graph, how many rounds, whether the
    outputs come back as qubits, whether qubits arrive as EPR halves."""

    graph: Brickwork
    rounds: int
    quantum_output: bool = False
    remote: bool = False


def header(h: Header) -> bytes:
    """The first message of a connection (12 bytes)."""
    flags = (_QUANTUM_OUTPUT if h.quantum_output else 0) | (_REMOTE if h.remote else 0)
    return _HEADER.pack(_MAGIC, _VERSION, h.graph.rows, h.graph.layers, h.rounds, flags)


def parse_header(data: bytes) -> Header:
    """The :class:`Header` in ``data``: ``MALFORMED`` (wrong size or magic),
    ``UNSUPPORTED_VERSION``, ``OUT_OF_RANGE`` (rows, layers or rounds),
    ``BAD_FIELD`` (unknown flags)."""
    if len(data) != _HEADER.size or data[:3] != _MAGIC:
        raise QStackError(ErrorCode.MALFORMED,
                          f"not a blind-computation header ({len(data)} bytes: {data[:12]!r})")
    _, version, rows, layers, rounds, flags = _HEADER.unpack(data)
    if version != _VERSION:
        raise QStackError(ErrorCode.UNSUPPORTED_VERSION, f"header version {version}, "
                                                         f"this end speaks {_VERSION}")
    if flags & ~(_QUANTUM_OUTPUT | _REMOTE):
        raise QStackError(ErrorCode.BAD_FIELD, f"header flags {flags:#x}: unknown bits")
    if not 1 <= rounds <= MAX_ROUNDS:
        raise QStackError(ErrorCode.OUT_OF_RANGE, f"rounds={rounds}: expected 1..{MAX_ROUNDS}")
    return Header(Brickwork(rows, layers), rounds, bool(flags & _QUANTUM_OUTPUT),
                  bool(flags & _REMOTE))


def _check_bytes(what: str, data: bytes, count: int, top: int) -> bytes:
    if not isinstance(data, (bytes, bytearray)) or len(data) != count:
        raise QStackError(ErrorCode.BAD_FIELD, f"{what}: expected {count} bytes, got "
                                               f"{len(data) if isinstance(data, bytes) else data!r}")
    bad = [b for b in data if b > top]
    if bad:
        raise QStackError(ErrorCode.OUT_OF_RANGE, f"{what}: {bad[0]} is not in 0..{top}")
    return bytes(data)


def check_angles(data: bytes, count: int) -> bytes:
    """A step's angles as the server gets them: ``count`` bytes in 0..7."""
    return _check_bytes("angles", data, count, 7)


def check_outcomes(data: bytes, count: int) -> bytes:
    """A step's outcomes as the client gets them: ``count`` bytes, 0 or 1."""
    return _check_bytes("outcomes", data, count, 1)


class Round:
    """The client's state for one round on ``pattern`` (a computation round,
    or with ``trap_colour`` 0 or 1 a test round whose traps are that colour
    class). ``rng``: a numpy Generator, the client's secret randomness.

    Drive it: for every qubit ``v`` in order, :meth:`prepare` (sent as a
    qubit) or :meth:`prepared_remotely` (an EPR half measured); per step,
    :meth:`angles` then :meth:`record` with the server's outcomes; then
    :attr:`output` (computation) or :attr:`failed_traps` (test).
    """

    def __init__(self, pattern: Pattern, rng, trap_colour: int | None = None) -> None:
        if trap_colour not in (None, 0, 1):
            raise QStackError(ErrorCode.OUT_OF_RANGE, f"trap_colour={trap_colour!r}: 0, 1 or None")
        if trap_colour is not None and not pattern.measure_outputs:
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              "test rounds need a classical output (measure_outputs)")
        g = pattern.graph
        self.pattern = pattern
        self.trap_colour = trap_colour
        self.rng = rng
        n = g.size
        if trap_colour is None:
            self.kinds = [PLUS] * n
        else:
            self.kinds = [PLUS if g.colour(v) == trap_colour else DUMMY for v in range(n)]
        #: the pads r_v
        self.r = [int(x) for x in rng.integers(0, 2, n)]
        #: theta_v (units of pi/4) of a |+_theta> qubit, or the bit d of a dummy
        self.state: list[int | None] = [None] * n
        #: the true outcomes (computation) or the server's bits (test)
        self.outcomes = [0] * n
        self._measured = 0

    @property
    def is_test(self) -> bool:
        return self.trap_colour is not None

    def prepare(self, v: int) -> tuple[str, int]:
        """What to send as qubit ``v``: ``(PLUS, k)`` for ``|+_{k pi/4}>`` or
        ``(DUMMY, d)`` for ``|d>``, chosen uniformly and remembered."""
        value = int(self.rng.integers(0, 8 if self.kinds[v] == PLUS else 2))
        self.state[v] = value
        return self.kinds[v], value

    def remote_basis(self, v: int) -> tuple[str, int]:
        """How to measure this end's half of the EPR pair that becomes qubit
        ``v`` at the server: ``(PLUS, a)`` in the XY-plane at ``a pi/4`` (a
        uniform), or ``(DUMMY, 0)`` in Z."""
        return (PLUS, int(self.rng.integers(0, 8))) if self.kinds[v] == PLUS else (DUMMY, 0)

    def prepared_remotely(self, v: int, basis: tuple[str, int], outcome: int) -> None:
        """This end's half of a Phi+ pair was measured in ``basis`` (from
        :meth:`remote_basis`) with ``outcome`` t. The server's half is then
        ``|+_{-a pi/4 + t pi}>`` (XY-plane at ``a``: ``<+-_a| x I`` on
        ``(|00> + |11>)/sqrt2`` leaves ``(|0> +- e^{-i a}|1>)/sqrt2``), or ``|t>``."""
        kind, a = basis
        self.state[v] = (-a + 4 * outcome) % 8 if kind == PLUS else int(outcome)

    def angles(self, measured: range) -> bytes:
        """The step's ``delta`` for each qubit of ``measured``."""
        out = bytearray()
        pat = self.pattern
        for v in measured:
            if self.state[v] is None:
                raise QStackError(ErrorCode.INVALID_PARAMETER, f"qubit {v} was never prepared")
            if self.kinds[v] == DUMMY:
                out.append(int(self.rng.integers(0, 8)))      # uniform, carries nothing
            elif self.is_test:
                out.append((self.state[v] + 4 * self.r[v]) % 8)
            else:
                out.append((pat.corrected(v, self.outcomes) + self.state[v] + 4 * self.r[v]) % 8)
        return bytes(out)

    def record(self, measured: range, outcomes: bytes) -> None:
        """The server's bits for the step's qubits (checked: one byte, 0 or 1, each)."""
        outcomes = check_outcomes(outcomes, len(measured))
        for v, b in zip(measured, outcomes):
            self.outcomes[v] = b if self.is_test else b ^ self.r[v]
        self._measured += len(measured)

    def correction(self, v: int) -> tuple[int, int, int]:
        """For a returned output qubit ``v``: (k, sx, sz) -- undo ``Rz(k pi/4)``
        (the pad theta), then ``X^sx`` and ``Z^sz`` (the byproduct)."""
        sx, sz = self.pattern.byproduct(v, self.outcomes)
        return (-self.state[v]) % 8, sx, sz

    @property
    def output(self) -> tuple[int, ...]:
        """The output bits, wire 0 first (a computation round with a classical output)."""
        return tuple(self.outcomes[v] for v in self.pattern.graph.outputs)

    @property
    def failed_traps(self) -> list[int]:
        """The traps whose outcome was wrong (a test round)."""
        g = self.pattern.graph
        failed = []
        for v in range(g.size):
            if self.kinds[v] != PLUS:
                continue
            parity = 0
            for u in g.neighbours(v):
                parity ^= self.state[u]
            if self.outcomes[v] != self.r[v] ^ parity:
                failed.append(v)
        return failed
