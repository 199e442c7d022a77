"""Quantum secret sharing with GHZ states (Hillery, Bužek, Berthiaume, PRA 59, 1829 (1999)).

The dealer and the n - 1 recipients of a :class:`~qstack.app.multipartite.Group`
share GHZ_n states. Each member measures its qubit in X or Y at random and
announces only its basis. On GHZ_n the product of the +-1 outcomes has mean
<X..X Y..Y> = cos(m pi/2), m the number of Y bases: for m even the outcomes
are perfectly correlated (their XOR is m/2 mod 2), for m odd they are
independent and the round is dropped (half the rounds). On a kept round the
dealer's bit is

    a = b_1 XOR ... XOR b_{n-1} XOR (m/2 mod 2),

so the recipients *together* reconstruct it, while any proper subset of
them learns nothing: the marginal of GHZ_n on fewer than n qubits is
(|0..0><0..0| + |1..1><1..1|)/2, whose X and Y outcomes are uniform and
independent of the dealer's. With three members (HBB's setting) the two
recipients reconstruct the dealer's bits and neither alone learns anything.
The dealer then shares a secret s by announcing s XOR key
(:func:`reconstruct`).

Noise: each non-centre member's outcome is flipped with probability
r = 2(1 - F)/3 (in X a Z or Y error flips it, in Y an X or Z), so a kept
round is wrong with probability (1 - (1 - 2r)^{n-1})/2
(:func:`error_rate`). The members sacrifice ``check`` kept rounds (the
recipients announce their outcomes there) to estimate it, as HBB do against
an eavesdropper.
"""
from __future__ import annotations

from dataclasses import dataclass

from qstack.app.multipartite import Group
from qstack.core.args import int_arg
from qstack.core.errors import ErrorCode, QStackError

__all__ = ["Share", "share_rounds", "reconstruct", "error_rate"]

BASES = ("X", "Y")


def error_rate(f: float, n: int) -> float:
    """The chance that a kept round's reconstruction is wrong over pairs of
    fidelity ``f`` (n - 1 independent flips of probability r = 2(1 - F)/3)."""
    r = 2 * (1 - f) / 3
    return (1 - (1 - 2 * r) ** (n - 1)) / 2


@dataclass
class Share:
    """One member's record of a sharing: ``dealer``; ``bases`` ({member:
    list of 0 (X) / 1 (Y) per round}, public); ``bits`` (this member's own
    outcome per round, private); ``kept`` (indices of the rounds with an
    even number of Y); ``key`` (this member's bits on the kept rounds not
    sacrificed: the key for the dealer, its share for a recipient);
    ``signs`` (m/2 mod 2 for each key round); ``check_errors`` / ``checked``
    (rounds sacrificed and how many of them disagreed)."""

    member: str
    dealer: str
    bases: dict[str, list[int]]
    bits: list[int]
    kept: list[int]
    key: list[int]
    signs: list[int]
    checked: int = 0
    check_errors: int = 0


async def share_rounds(group: Group, dealer: str, rounds: int, check: int = 0) -> Share:
    """Run ``rounds`` (1..65536) GHZ rounds with ``dealer`` (a member) and
    return this member's :class:`Share`; the first ``check`` kept rounds are
    announced in full and compared (``check_errors``), the rest make the key."""
    rounds = int_arg("rounds", rounds, 1, 65536)
    check = int_arg("check", check, 0, rounds)
    if dealer not in group.members:
        raise QStackError(ErrorCode.INVALID_PARAMETER, f"dealer: {dealer!r} is not a member")
    rng = group.ctx.rng
    mine_bases, bits = [], []
    for _ in range(rounds):
        q = await group.ghz()
        b = int(rng.integers(2))
        mine_bases.append(b)
        bits.append(await q.measure(BASES[b]))
    bases = {m: list(v) for m, v in (await group.gather(bytes(mine_bases))).items()}
    kept = [i for i in range(rounds) if sum(bases[m][i] for m in group.members) % 2 == 0]
    signs = [(sum(bases[m][i] for m in group.members) // 2) % 2 for i in kept]
    checks, rest = kept[:check], kept[check:]
    # the check rounds: everyone announces its outcomes there; all can compare
    told = await group.gather(bytes(bits[i] for i in checks))
    errors = 0
    for j, i in enumerate(checks):
        parity = sum(told[m][j] for m in group.members) % 2
        errors += parity != signs[j]
    return Share(group.me, dealer, bases, bits, kept, [bits[i] for i in rest],
                 signs[len(checks):], len(checks), errors)


def reconstruct(shares: list[Share]) -> list[int]:
    """The dealer's key from every recipient's :class:`Share` (all of them
    needed: one missing leaves the bits uniformly random): the XOR of their
    bits and the sign of each key round."""
    if not shares:
        raise QStackError(ErrorCode.INVALID_PARAMETER, "reconstruct: no shares")
    dealer = shares[0].dealer
    members = set(shares[0].bases)
    have = {s.member for s in shares}
    if dealer in have or have != members - {dealer}:
        raise QStackError(ErrorCode.INVALID_PARAMETER,
                          f"reconstruct: expected the shares of {sorted(members - {dealer})}, "
                          f"got {sorted(have)}")
    out = list(shares[0].signs)
    for s in shares:
        out = [x ^ y for x, y in zip(out, s.key)]
    return out
