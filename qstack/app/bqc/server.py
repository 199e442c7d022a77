"""The server of a blind computation, over an accepted socket, and ways to deviate.

The server learns the graph (:class:`~.rounds.Header`), not the program:
per round it takes the qubits as they come (sent, or EPR halves), makes the
brickwork's CZs as soon as both ends are there (a sliding window: at most two
columns are held), measures each qubit in the XY-plane at the ``delta`` the
client sends and returns the bits; with a quantum output it sends the last
column back. It returns its :class:`ServerView`: everything it saw.

A :class:`Deviation` makes it dishonest (for experiments and tests of the
verification): :class:`FlipOutcomes` and :class:`WrongAngle`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qstack.core.errors import ErrorCode, QStackError

from .rounds import check_angles, parse_header

__all__ = ["serve", "ServerView", "Deviation", "FlipOutcomes", "WrongAngle"]


class Deviation:
    """How a server departs from the protocol; the honest server's methods
    are these. ``rng`` is the server's random stream."""

    def angle(self, v: int, delta: int, rng: Any) -> float:
        """The angle (radians) qubit ``v`` is measured at when told ``delta`` (units of pi/4)."""
        return delta * math.pi / 4

    def report(self, v: int, outcome: int, rng: Any) -> int:
        """The bit sent for qubit ``v`` measured with ``outcome``."""
        return outcome


class FlipOutcomes(Deviation):
    """Report the wrong bit with probability ``p`` for each qubit (of
    ``qubits`` only, if given: e.g. one fixed position, an attack on one
    qubit), independently."""

    def __init__(self, p: float, qubits: Any = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise QStackError(ErrorCode.OUT_OF_RANGE, f"p={p!r}: a probability in [0, 1]")
        self.p = float(p)
        self.qubits = None if qubits is None else frozenset(qubits)

    def report(self, v: int, outcome: int, rng: Any) -> int:
        if (self.qubits is None or v in self.qubits) and rng.random() < self.p:
            return outcome ^ 1
        return outcome


class WrongAngle(Deviation):
    """Measure at ``delta + offset`` radians instead, with probability ``p``
    for each qubit, independently (a trap then errs with probability
    ``sin^2(offset/2)``)."""

    def __init__(self, p: float, offset: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise QStackError(ErrorCode.OUT_OF_RANGE, f"p={p!r}: a probability in [0, 1]")
        if not math.isfinite(offset):
            raise QStackError(ErrorCode.INVALID_PARAMETER, f"offset={offset!r}: not finite")
        self.p, self.offset = float(p), float(offset)

    def angle(self, v: int, delta: int, rng: Any) -> float:
        extra = self.offset if rng.random() < self.p else 0.0
        return delta * math.pi / 4 + extra


@dataclass
class ServerView:
    """What the server saw: ``header``; ``deltas``, per round the angle
    (units of pi/4) it was told for each qubit, in the order measured;
    ``outcomes``, per round the bits it measured; ``transcript``, per round
    the sequence of requests, ``("qubit", v)``, ``("angles", n)``,
    ``("return", v)`` -- the same for every program on a graph."""

    header: Any = None
    deltas: list = field(default_factory=list)
    outcomes: list = field(default_factory=list)
    transcript: list = field(default_factory=list)


async def serve(ctx, sock, *, deviation: Deviation | None = None, rng: Any = None) -> ServerView:
    """Serve one client's rounds on ``sock`` (connected, of ``ctx``); returns the
    :class:`ServerView`. A malformed message from the client raises (its
    code: ``MALFORMED``, ``BAD_FIELD``, ``OUT_OF_RANGE``...), which ends the
    connection. ``deviation``: a :class:`Deviation` (default honest);
    ``rng``: what a deviation draws from (default ``ctx.rng``)."""
    dev = deviation or Deviation()
    rng = ctx.rng if rng is None else rng
    hdr = parse_header(await sock.recv())
    g = hdr.graph
    steps = g.steps(not hdr.quantum_output)
    view = ServerView(hdr)
    for _ in range(hdr.rounds):
        held: dict[int, Any] = {}
        got = 0
        deltas, outs, transcript = bytearray(), bytearray(), []

        async def take(upto: int) -> None:
            nonlocal got
            if got >= upto:
                return
            if hdr.remote:
                qubits = await sock.recv_epr(upto - got)
            else:
                qubits = [await sock.recv_qubit() for _ in range(got, upto)]
            for q in qubits:
                v = got
                transcript.append(("qubit", v))
                for u in g.neighbours(v):
                    if u < v:
                        if u not in held:     # the steps keep every neighbour until v comes
                            raise QStackError(ErrorCode.INTERNAL_ERROR,
                                              f"qubit {u} gone before its neighbour {v}")
                        q.cz(held[u])
                held[v] = q
                got += 1

        for received, measured in steps:
            await take(received)
            angles = check_angles(await sock.recv(), len(measured))
            transcript.append(("angles", len(measured)))
            reply = bytearray()
            for v, d in zip(measured, angles):
                outcome = await held.pop(v).measure((math.pi / 2, dev.angle(v, d, rng)))
                reply.append(dev.report(v, outcome, rng))
                outs.append(outcome)
            deltas += angles
            await sock.send(bytes(reply))
        await take(g.size)
        if hdr.quantum_output:
            for v in g.outputs:
                transcript.append(("return", v))
                await sock.send_qubit(held.pop(v))
        view.deltas.append(bytes(deltas))
        view.outcomes.append(bytes(outs))
        view.transcript.append(transcript)
    return view
