"""Leader election among the members of a group: from W states, from GHZ coins, classical.

Every member runs the same function on its :class:`~qstack.app.multipartite.Group`
and gets the same :class:`Election` back (the leader's name, how many
attempts it took and why the failed ones failed). An attempt whose outcome
is not one agreed leader is *detected* -- every member broadcasts what it
measured or drew, so all see the same failure -- and repeated, up to
``max_attempts`` (then ``APP_ABORTED``).

* :func:`w_election` -- the group shares W_n (exactly one excitation); each
  member measures Z and broadcasts its bit; the member that got 1 leads.
  One attempt suffices on a perfect W state, whatever n. Under noise (each
  non-centre qubit flipped with probability r = 2(1 - F)/3, F the pairs'
  fidelity: an X or Y of the Werner channel) an attempt can show no 1 or
  several: detected and repeated (:func:`qstack.app.leader.theory.w_outcome_probs`).
* :func:`coin_election` -- rounds of elimination with shared coins: each
  round measures a GHZ_n state in Z (one coin all members share) and keeps
  the half of the candidate indices 0..2^k - 1 (k = ceil(log2 n)) whose bit
  matches; indices >= n are phantoms, and a draw that ends on one starts
  again (so each member wins with probability exactly 1/n). Under noise
  members can see different coins (a flipped leaf): each broadcasts its
  coins, and a disagreement is detected and the draw repeated.
* :func:`classical_election` -- the baseline without quantum resources:
  every member draws a random ID of ``id_bits`` bits, the largest leads; a
  tie for the largest (probability :func:`~qstack.app.leader.theory.classical_tie_prob`)
  is detected and the draw repeated. It needs private randomness and IDs
  that every member trusts the others to draw fairly; the W election needs
  neither coin nor ID -- only the state.

Fairness assumes honest members and an honest centre (it prepares and fuses
the states); the anonymous variant (:mod:`.anonymous`) has a source that is
not a candidate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from qstack.app.multipartite import Group
from qstack.core.args import int_arg
from qstack.core.errors import ErrorCode, QStackError

__all__ = ["Election", "w_election", "coin_election", "classical_election"]

MAX_ATTEMPTS = 64


@dataclass
class Election:
    """The outcome every member agrees on: ``leader`` (a member's name),
    ``attempts`` (>= 1) and ``failures`` (why each failed attempt failed:
    "none", "several", "disagree", "phantom", "tie"), ``resources`` (W or
    GHZ states used, 0 for the classical election)."""

    leader: str
    attempts: int
    failures: list[str] = field(default_factory=list)
    resources: int = 0


def _attempts(value: int) -> int:
    return int_arg("max_attempts", value, 1, 1 << 20)


def _give_up(kind: str, failures: list[str]) -> QStackError:
    return QStackError(ErrorCode.APP_ABORTED,
                       f"{kind}: no leader after {len(failures)} attempts ({failures[-8:]} last)")


async def w_election(group: Group, max_attempts: int = MAX_ATTEMPTS) -> Election:
    """Elect a leader of ``group`` from W states (see the module doc)."""
    max_attempts = _attempts(max_attempts)
    failures: list[str] = []
    for attempt in range(1, max_attempts + 1):
        q = await group.w()
        bits = await group.gather(bytes([await q.measure("Z")]))
        ones = [m for m in group.members if bits[m] == b"\x01"]
        if len(ones) == 1:
            return Election(ones[0], attempt, failures, attempt)
        failures.append("several" if ones else "none")
    raise _give_up("W election", failures)


async def coin_election(group: Group, max_attempts: int = MAX_ATTEMPTS) -> Election:
    """Elect a leader of ``group`` by rounds of elimination with GHZ coins."""
    max_attempts = _attempts(max_attempts)
    k = max(0, math.ceil(math.log2(group.n)))
    failures: list[str] = []
    used = 0
    for attempt in range(1, max_attempts + 1):
        index = 0
        for _ in range(k):        # round j keeps the half whose bit j is the coin
            q = await group.ghz()
            used += 1
            index = (index << 1) | await q.measure("Z")
        seen = await group.gather(index.to_bytes(4, "big"))
        if len(set(seen.values())) != 1:
            failures.append("disagree")
        elif index >= group.n:
            failures.append("phantom")
        else:
            return Election(group.members[index], attempt, failures, used)
    raise _give_up("GHZ coin election", failures)


async def classical_election(group: Group, id_bits: int = 8,
                             max_attempts: int = MAX_ATTEMPTS) -> Election:
    """Elect a leader of ``group`` by random IDs of ``id_bits`` (1..32) bits:
    the largest leads, a tie for it is repeated."""
    id_bits = int_arg("id_bits", id_bits, 1, 32)
    max_attempts = _attempts(max_attempts)
    failures: list[str] = []
    for attempt in range(1, max_attempts + 1):
        mine = int(group.ctx.rng.integers(1 << id_bits))
        ids = {m: int.from_bytes(v, "big") for m, v in
               (await group.gather(mine.to_bytes(4, "big"))).items()}
        top = max(ids.values())
        winners = [m for m in group.members if ids[m] == top]
        if len(winners) == 1:
            return Election(winners[0], attempt, failures, 0)
        failures.append("tie")
    raise _give_up("classical election", failures)
