"""The client of a blind computation, over a connected socket.

::

    pattern = compile_circuit(Circuit(2, [("h", 0), ("cnot", 0, 1)]))

    async def alice(ctx):                        # the client
        async with await ctx.connect("bob", 11) as sock:
            (result,) = await run_rounds(ctx, sock, pattern)
            return result.output                 # (0, 0) or (1, 1)

    async def bob(ctx):                          # the server: sees the graph only
        sock = await ctx.listen(11).accept()
        return await serve(ctx, sock)

:func:`verify` runs computation rounds and indistinguishable test rounds in a
random order and accepts only if few enough test rounds catch a deviation.
Each qubit is sent with ``send_qubit`` (prepared here: ``H``, then ``Rz``), or
with ``remote=True`` made from an EPR pair (``create_epr``), this end's half
measured at once (:meth:`Round.prepared_remotely`). Uses only the socket API.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from qstack.core.errors import ErrorCode, QStackError

from .brickwork import Pattern
from .rounds import DUMMY, MAX_ROUNDS, PLUS, Header, Round, header

__all__ = ["run_rounds", "verify", "RoundResult", "Verdict"]


@dataclass
class RoundResult:
    """One round as the client saw it. ``output``: the output bits (a
    computation round with a classical output) or the output qubits,
    corrected (a quantum output); ``failed_traps``: the traps that came out
    wrong (a test round); ``round``: the :class:`Round` itself."""

    trap_colour: int | None
    output: Any = None
    failed_traps: list = field(default_factory=list)
    round: Round | None = None

    @property
    def is_test(self) -> bool:
        return self.trap_colour is not None


async def _send_qubits(ctx, sock, rnd: Round, first: int, last: int, remote: bool) -> None:
    """Qubits ``first .. last-1`` of the round to the server."""
    if first >= last:
        return
    if remote:
        halves = await sock.create_epr(last - first)
        for v, q in zip(range(first, last), halves):
            basis = rnd.remote_basis(v)
            outcome = await q.measure((math.pi / 2, basis[1] * math.pi / 4) if basis[0] == PLUS
                                      else "Z")
            rnd.prepared_remotely(v, basis, outcome)
        return
    for v in range(first, last):
        kind, value = rnd.prepare(v)
        q = ctx.qubit()
        if kind == DUMMY:
            if value:
                q.x()
        else:
            q.h()
            if value:
                q.rz(value * math.pi / 4)
        await sock.send_qubit(q)


async def _one_round(ctx, sock, rnd: Round, remote: bool) -> RoundResult:
    pattern = rnd.pattern
    sent = 0
    for received, measured in pattern.steps():
        await _send_qubits(ctx, sock, rnd, sent, received, remote)
        sent = received
        await sock.send(rnd.angles(measured))
        rnd.record(measured, await sock.recv())
    await _send_qubits(ctx, sock, rnd, sent, pattern.graph.size, remote)
    if rnd.is_test:
        return RoundResult(rnd.trap_colour, failed_traps=rnd.failed_traps, round=rnd)
    if pattern.measure_outputs:
        return RoundResult(None, output=rnd.output, round=rnd)
    qubits = []
    for v in pattern.graph.outputs:
        q = await sock.recv_qubit()
        k, sx, sz = rnd.correction(v)
        if k:
            q.rz(k * math.pi / 4)
        if sx:
            q.x()
        if sz:
            q.z()
        qubits.append(q)
    return RoundResult(None, output=qubits, round=rnd)


def _check_pattern(pattern: Any) -> Pattern:
    if not isinstance(pattern, Pattern):
        raise QStackError(ErrorCode.BAD_FIELD, f"pattern: expected a Pattern, got "
                                               f"{type(pattern).__name__}")
    return pattern


async def run_rounds(ctx, sock, pattern: Pattern, *, rounds: int = 1,
                     schedule: list | None = None, remote: bool = False,
                     rng: Any = None) -> list[RoundResult]:
    """Run ``pattern`` blindly on the server at the far end of ``sock``.

    ``rounds`` computation rounds, or with ``schedule`` one round per entry:
    None for a computation round, 0 or 1 for a test round with that trap
    colour. ``remote``: qubits made from EPR pairs instead of sent.
    ``rng``: the client's secret randomness (default ``ctx.rng``).
    Returns a :class:`RoundResult` per round, in order.
    """
    pattern = _check_pattern(pattern)
    rng = ctx.rng if rng is None else rng
    if schedule is None:
        if isinstance(rounds, bool) or not isinstance(rounds, int):
            raise QStackError(ErrorCode.BAD_FIELD, f"rounds: expected an integer, got {rounds!r:.40}")
        schedule = [None] * max(0, rounds)
    if not 1 <= len(schedule) <= MAX_ROUNDS:
        raise QStackError(ErrorCode.OUT_OF_RANGE,
                          f"{len(schedule)} rounds: expected 1..{MAX_ROUNDS}")
    rnds = [Round(pattern, rng, trap_colour=c) for c in schedule]    # checks the schedule
    await sock.send(header(Header(pattern.graph, len(rnds), not pattern.measure_outputs,
                                  bool(remote))))
    return [await _one_round(ctx, sock, rnd, bool(remote)) for rnd in rnds]


@dataclass
class Verdict:
    """The outcome of :func:`verify`. ``accepted``: at most ``threshold``
    test rounds failed; ``output``: the majority output of the computation
    rounds (None if rejected); ``failed_tests`` of ``tests``; ``rounds``:
    every :class:`RoundResult`, in the order run."""

    accepted: bool
    output: tuple | None
    failed_tests: int
    tests: int
    computations: int
    threshold: int
    rounds: list

    def raise_if_rejected(self) -> None:
        """``APP_ABORTED`` if the server was caught."""
        if not self.accepted:
            raise QStackError(ErrorCode.APP_ABORTED,
                              f"{self.failed_tests} of {self.tests} test rounds failed "
                              f"(at most {self.threshold} tolerated): the server deviated")


async def verify(ctx, sock, pattern: Pattern, *, computations: int = 1, tests: int = 1,
                 threshold: int = 0, remote: bool = False, rng: Any = None) -> Verdict:
    """Verified blind computation (Leichtle et al., PRX Quantum 2, 040302
    (2021)): ``computations`` computation rounds and ``tests`` test rounds
    (traps: one colour class, chosen uniformly per round) in a uniformly
    random order the server cannot tell; accepted when at most ``threshold``
    test rounds fail. The output is then the most frequent output of the
    computation rounds (of equally frequent ones, the first seen).

    A deviation that corrupts the outcome of any one qubit is caught by a
    test round with probability at least 1/2 (the qubit is a trap for one of
    the two colours), so it passes ``tests`` test rounds with ``threshold``
    0 with probability at most 2^-tests.
    """
    pattern = _check_pattern(pattern)
    if not pattern.measure_outputs:
        raise QStackError(ErrorCode.INVALID_PARAMETER, "verification needs a classical output")
    for name, value, lo in (("computations", computations, 1), ("tests", tests, 0),
                            ("threshold", threshold, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise QStackError(ErrorCode.BAD_FIELD, f"{name}: expected an integer, got {value!r:.40}")
        if value < lo:
            raise QStackError(ErrorCode.OUT_OF_RANGE, f"{name}={value}: at least {lo}")
    rng = ctx.rng if rng is None else rng
    kinds = [None] * computations + [int(c) for c in rng.integers(0, 2, tests)]
    schedule = [kinds[i] for i in rng.permutation(len(kinds))]
    results = await run_rounds(ctx, sock, pattern, schedule=schedule, remote=remote, rng=rng)
    failed = sum(1 for r in results if r.is_test and r.failed_traps)
    accepted = failed <= threshold
    output = None
    if accepted:
        votes = Counter(r.output for r in results if not r.is_test)
        output = votes.most_common(1)[0][0]
    return Verdict(accepted, output, failed, tests, computations, threshold, results)
