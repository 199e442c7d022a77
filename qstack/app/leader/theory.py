"""Closed forms for the elections of :mod:`qstack.app.leader` under Werner noise.

A Werner pair of fidelity F puts one Pauli error on the qubit it carries to a
non-centre member (I with probability F, X, Y, Z with (1 - F)/3 each; see
:mod:`qstack.app.multipartite`); a Z measurement is flipped by X or Y, so
each non-centre member's bit flips independently with probability
r = 2(1 - F)/3, the centre's never. All probabilities are dimensionless.
"""
from __future__ import annotations

__all__ = ["flip_prob", "w_outcome_probs", "w_leader_probs", "ghz_disagree_prob",
           "classical_tie_prob"]


def flip_prob(f: float) -> float:
    """r = 2(1 - F)/3: the chance that a Werner pair's error flips a Z outcome."""
    return 2 * (1 - f) / 3


def w_outcome_probs(f: float, n: int, source: bool = False) -> tuple[float, float, float]:
    """(one leader, no leader, several) for one W_n attempt over pairs of fidelity ``f``.

    The excitation sits on one of the n members, uniformly; t of them got
    their qubit over a pair (t = n - 1 when a member prepared the state,
    t = n when a separate ``source`` did) and flip independently. With the
    excitation on a noiseless member the outcome has one 1 iff nobody flips;
    on a noisy member j it has one 1 iff nobody flips, or j and exactly one
    other noisy member flip, and none iff j alone flips; every other
    pattern gives several."""
    r = flip_prob(f)
    t = n if source else n - 1
    one = (1 - r) ** t + (t / n) * (t - 1) * r * r * (1 - r) ** max(0, t - 2)
    none = (t / n) * r * (1 - r) ** (t - 1)
    return one, none, 1 - one - none


def w_leader_probs(f: float, n: int) -> list[float]:
    """Each member's chance to be elected by a successful W_n attempt (the
    centre first): the noise favours the leaves slightly, since a leaf can
    also win by two flips."""
    r = flip_prob(f)
    one = w_outcome_probs(f, n)[0]
    centre = (1 - r) ** (n - 1) / n
    leaf = ((1 - r) ** (n - 1) + (n - 2) * r * r * (1 - r) ** max(0, n - 3)) / n
    return [centre / one] + [leaf / one] * (n - 1)


def ghz_disagree_prob(f: float, n: int) -> float:
    """The chance that the members' Z outcomes of one GHZ_n fused from pairs
    of fidelity ``f`` are not all equal: 1 - (1 - r)^(n-1)."""
    return 1 - (1 - flip_prob(f)) ** (n - 1)


def classical_tie_prob(n: int, id_bits: int) -> float:
    """The chance that the largest of n IDs drawn uniformly from 0..2^b - 1
    is drawn more than once: 1 - n sum_m m^(n-1) / M^n, M = 2^b (exactly one
    member draws m and the n - 1 others draw less)."""
    m_count = 1 << id_bits
    unique = sum(n * m ** (n - 1) for m in range(m_count)) / m_count ** n
    return 1 - unique
