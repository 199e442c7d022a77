"""Error verification: both ends hash their corrected keys with a random Toeplitz
matrix of t rows and compare the t-bit tags.

For keys that differ, a uniformly random Toeplitz matrix gives equal tags with
probability exactly 2^(−t) (the family is 2-universal; see
:mod:`.amplification`).  So with t = ⌈log2(1/ε_cor)⌉ a pair of different keys
passes with probability at most ε_cor: the protocol is ε_cor-correct, and the
verification discloses t bits (Lim et al. 2014, Sec. II step 5: ⌈log2 1/ε_hash⌉
bits; their key length subtracts log2(2/ε_cor) ≥ t for it).

Messages: Alice sends :class:`VerifyTag` (the seed, her tag); Bob answers
:class:`VerifyResult`.  Both are plain data; a protocol carries them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._common import as_bits, check_prob, fail
from .amplification import toeplitz_hash

__all__ = ["VerifyTag", "VerifyResult", "tag_bits", "collision_probability", "make_tag", "check_tag"]


@dataclass(frozen=True)
class VerifyTag:
    """Alice → Bob: the hash seed (n_bits + tag_bits − 1 bits, packed) and her tag (packed)."""

    n_bits: int
    tag_bits: int
    seed: bytes
    tag: bytes


@dataclass(frozen=True)
class VerifyResult:
    """Bob → Alice: whether his tag equals hers."""

    ok: bool


def tag_bits(eps_cor: float) -> int:
    """t = ⌈log2(1/ε_cor)⌉: the tag length that makes the collision probability ≤ ε_cor."""
    eps = check_prob("verification.eps_cor", eps_cor, open_low=True, open_high=True)
    return max(1, math.ceil(-math.log2(eps)))


def collision_probability(t: int) -> float:
    """2^(−t): the probability that two different keys get the same t-bit tag."""
    return 2.0 ** -t


def _tag(key: np.ndarray, seed_bits: np.ndarray, t: int) -> np.ndarray:
    return toeplitz_hash(key, seed_bits, t)


def make_tag(key: np.ndarray, eps_cor: float, rng: np.random.Generator) -> VerifyTag:
    """Alice: draw a seed and tag her corrected key (t = :func:`tag_bits` of ε_cor)."""
    k = as_bits("make_tag.key", key)
    if k.size == 0:
        fail("make_tag.key", "at least one bit", 0)
    t = tag_bits(eps_cor)
    seed = rng.integers(0, 2, size=k.size + t - 1, dtype=np.uint8)
    tag = _tag(k, seed, t)
    return VerifyTag(k.size, t, np.packbits(seed).tobytes(), np.packbits(tag).tobytes())


def check_tag(key: np.ndarray, msg: VerifyTag) -> VerifyResult:
    """Bob: hash his corrected key with Alice's seed and compare the tags."""
    k = as_bits("check_tag.key", key)
    if k.size != msg.n_bits:
        return VerifyResult(False)      # different lengths cannot be the same key
    seed = np.unpackbits(np.frombuffer(msg.seed, dtype=np.uint8), count=msg.n_bits + msg.tag_bits - 1)
    mine = np.packbits(_tag(k, seed, msg.tag_bits)).tobytes()
    return VerifyResult(mine == msg.tag)
