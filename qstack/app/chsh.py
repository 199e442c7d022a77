"""The CHSH game on network EPR pairs, and the randomness it certifies device-independently.

Two parties measure halves of pairs in bases chosen at random -- alice a0 = Z,
a1 = X; bob b0, b1 = Z rotated by -/+ pi/4 towards X -- and estimate

    S = E(a0, b0) + E(a0, b1) + E(a1, b0) - E(a1, b1)

(:func:`chsh_value`). A local (classical) model gives |S| <= 2, quantum
mechanics up to 2 sqrt2 (Tsirelson), reached by Phi+; a Werner pair of
fidelity F gives S = 2 sqrt2 (4F - 1)/3 (:func:`werner_s`).

Device-independent randomness (Pironio et al., Nature 464, 1021 (2010)): for
any devices that produce CHSH value S, an adversary guesses alice's outcome
with probability at most (1 + sqrt(2 - S^2/4))/2, so each outcome holds at
least H_min = 1 - log2(1 + sqrt(2 - S^2/4)) bits of min-entropy
(:func:`min_entropy_bound`: 0 at S = 2, 1 at S = 2 sqrt2).
:func:`randomness_check` applies it to the measured S minus a number of
standard errors, which is the i.i.d., asymptotic form of the certificate
(Pironio et al.'s finite-statistics bound is stronger than this
estimate and not implemented).

:func:`play_alice` and :func:`play_bob` run the game over a connected
socket (alice creates the pairs, bob reports his bases and outcomes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from qstack.core.args import float_arg, int_arg
from qstack.core.errors import ErrorCode, QStackError

__all__ = ["ALICE", "BOB", "chsh_value", "werner_s", "min_entropy_bound", "Certificate",
           "randomness_check", "play_alice", "play_bob"]

#: Measurement directions as Bloch angles (theta, phi): theta from +Z, phi = 0
#: towards +X, phi = pi towards -X.
ALICE = [(0.0, 0.0), (math.pi / 2, 0.0)]                  # Z, X
BOB = [(math.pi / 4, 0.0), (math.pi / 4, math.pi)]        # (Z+X)/sqrt2, (Z-X)/sqrt2
TSIRELSON = 2 * math.sqrt(2)


def werner_s(f: float) -> float:
    """The CHSH value of a Werner pair of fidelity ``f``: 2 sqrt(2) (4f - 1)/3."""
    return TSIRELSON * (4 * f - 1) / 3


def chsh_value(records: list[tuple[int, int, int, int]]) -> tuple[float, list[float], list[int]]:
    """S from ``(alice basis, bob basis, alice outcome, bob outcome)`` records;
    also the four correlations E(ai, bj) (index 2i + j) and their counts."""
    sums, counts = [0] * 4, [0] * 4
    for a, b, x, y in records:
        k = 2 * a + b
        sums[k] += 1 if x == y else -1
        counts[k] += 1
    e = [s / c if c else 0.0 for s, c in zip(sums, counts)]
    return e[0] + e[1] + e[2] - e[3], e, counts


def min_entropy_bound(s: float) -> float:
    """Bits of min-entropy per outcome certified by CHSH value ``s``:
    1 - log2(1 + sqrt(2 - s^2/4)) for 2 < s <= 2 sqrt2, 0 for s <= 2. An
    estimate above 2 sqrt2 (statistics) counts as 2 sqrt2; NaN is refused
    (``OUT_OF_RANGE``)."""
    s = float_arg("s", s, -math.inf, math.inf)
    if s <= 2:
        return 0.0
    s = min(s, TSIRELSON)
    return 1 - math.log2(1 + math.sqrt(max(0.0, 2 - s * s / 4)))


@dataclass
class Certificate:
    """``s`` and its standard error ``sigma``; ``s_low`` = s - sigmas x sigma;
    ``h_min`` (bits per outcome at ``s_low``); ``bits``: rounds x h_min."""

    s: float
    sigma: float
    s_low: float
    h_min: float
    bits: float
    rounds: int


def randomness_check(records: list[tuple[int, int, int, int]], sigmas: float = 3.0) -> Certificate:
    """The certificate of a run's records (see the module doc): each E is a
    mean of +-1 values, standard error sqrt((1 - E^2)/n), and S sums four
    independent ones. ``sigmas`` >= 0."""
    sigmas = float_arg("sigmas", sigmas, 0.0, 1e6)
    s, e, counts = chsh_value(records)
    if min(counts) == 0:
        raise QStackError(ErrorCode.OUT_OF_RANGE, f"randomness_check: a basis pair was never "
                                                  f"played (counts {counts})")
    sigma = math.sqrt(sum((1 - x * x) / n for x, n in zip(e, counts)))
    low = s - sigmas * sigma
    h = min_entropy_bound(low)
    return Certificate(s, sigma, low, h, h * len(records), len(records))


async def play_alice(ctx, sock, pairs: int, batch: int = 50) -> list[tuple[int, int, int, int]]:
    """Alice's side: ``pairs`` (1..65536) pairs in batches of ``batch``, each
    half measured at once in a random basis; returns the records."""
    pairs = int_arg("pairs", pairs, 1, 65536)
    batch = int_arg("batch", batch, 1, 65535)
    mine = []
    while len(mine) < pairs:
        for q in await sock.create_epr(min(batch, pairs - len(mine))):
            a = int(ctx.rng.integers(2))
            mine.append((a, await q.measure(ALICE[a])))
    theirs = await sock.recv()                 # bob's bases and outcomes, 2 bits a pair
    return [(a, theirs[i] >> 1, x, theirs[i] & 1) for i, (a, x) in enumerate(mine)]


async def play_bob(ctx, sock, pairs: int) -> None:
    """Bob's side of :func:`play_alice`: measures each half as it comes, in a
    random basis, and sends his bases and outcomes (one byte a pair)."""
    pairs = int_arg("pairs", pairs, 1, 65536)
    report = bytearray()
    for _ in range(pairs):
        (q,) = await sock.recv_epr(1)
        b = int(ctx.rng.integers(2))
        report.append((b << 1) | await q.measure(BOB[b]))
    await sock.send(bytes(report))
