"""Cascade error correction as a message exchange, leakage counted bit by bit.

Variant
-------
Cascade (Brassard and Salvail, EUROCRYPT 1993) with the optimisations of
J. Martinez-Mateo, C. Pacher, M. Peev, A. Ciurana, V. Martin, "Demystifying
the information reconciliation protocol Cascade", Quantum Inf. Comput. 15,
453 (2015), arXiv:1407.3257.  Block sizes from the estimated QBER p:

* ``"yan14"`` (default): the block sizes of H. Yan et al., "Information
  reconciliation protocol in quantum key distribution system", ICNC 2008
  (Martinez-Mateo et al.'s "Cascade opt. (2)"): k1 = ⌈0.8/p⌉, k2 = 5 k1, k_i = n/2 for i ≥ 3, run for 14
  passes as opt. (7) and (8) are (Yan et al.: 10).  Measured here on 10⁴-bit
  blocks over 100 seeds: f = 1.074-1.087 at p = 1-5 %, where opt. (7) and (8),
  whose sizes are powers of two, jump between 1.07 and 1.14 as p moves;
* ``"yan"``: the same with Yan et al.'s 10 passes;
* ``"opt7"``: k1 = 2^⌈log2(1/p)⌉, k2 = 4 k1, k_i = n/2, 14 passes (the paper's);
* ``"opt8"``: α = log2(1/p) − ½, k1 = 2^⌈α⌉, k2 = 2^⌈(α + 12)/2⌉, k3 = 4096,
  k_i = n/2 for i ≥ 4, 14 passes (the paper's);
* ``"original"``: k1 = ⌈0.73/p⌉, k_i = 2 k_(i−1), 4 passes (Brassard-Salvail);

and, in every variant:

* a fresh pseudo-random permutation of the key per pass, from a seed both ends know;
* sub-block reuse: every block whose parity Alice has disclosed, top-level or
  met during a binary search, is remembered, and a bit flip re-examines the
  smallest known blocks containing it in every pass (the cascade effect);
* parities that follow from disclosed ones are never asked: in the binary
  search the right half's parity is the block's minus the left half's, and from
  pass 2 on the last top-level block's parity follows from the key's total parity
  (the XOR of pass 1's top-level parities).

Bob drives, Alice answers: Bob sends :class:`ParityQuery` (blocks named by pass
and a range of positions in that pass's permuted order), Alice returns
:class:`ParityReply`.  Each round carries every query that can be asked in
parallel: a new pass's top-level blocks, or the next half-block of every binary
search under way.  A flip happens only where a single bit's parity (Alice's bit)
differs from Bob's, so every flip corrects an error: Cascade never adds one.

Leakage is what Eve learns about Alice's key: one bit per parity Alice
discloses, counted exactly (:attr:`CascadeAlice.disclosed`).  Efficiency
f = leaked / (n · h(QBER)) with the QBER the block actually had.  Cascade
cannot tell whether errors remain (an even number in every known block); the
pipeline's error verification (:mod:`.verification`) decides.

The per-bit work (prefix parities, binary search, the bookkeeping of known
blocks and the cascade over flips) is the compiled kernel ``_cascade.BobCore``;
:class:`BobCorePy` below is its pure-Python twin, the same algorithm step for
step (the tests check they ask the same queries and end with the same key).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from qstack.core.errors import ErrorCode
from qstack.core.kernels import load_kernel

from qstack.physical.qkd import binary_entropy

from ._common import QKDError, as_bits, check_pos_int, check_prob, fail

_cascade = load_kernel("qstack.app.qkd._cascade")
HAVE_CYTHON = _cascade is not None

__all__ = [
    "HAVE_CYTHON", "VARIANTS", "block_sizes", "pass_permutations",
    "CascadeStart", "ParityQuery", "ParityReply", "CascadeAlice", "CascadeBob", "BobCorePy",
    "CascadeResult", "reconcile", "efficiency",
]

VARIANTS = ("yan14", "yan", "opt7", "opt8", "original")
PASSES_MAX = 64     # a CascadeStart asking for more passes is refused (memory: passes × n bytes)
_MIN_QBER = 1e-5     # below this the first block would exceed any key; clamp (sizes clamp to n/2 anyway)


def block_sizes(n: int, qber: float, variant: str = "yan14") -> list[int]:
    """Top-level block size of each pass for an n-bit key at estimated QBER ``qber``.

    Sizes are clamped to [1, ⌈n/2⌉] so that every pass has at least two blocks
    (one block's parity is the key's total parity, already known after pass 1).
    """
    n = check_pos_int("cascade.n", n)
    p = max(check_prob("cascade.qber", qber, open_high=True), _MIN_QBER)
    half = max(1, n // 2)
    if variant in ("yan14", "yan"):
        k1 = math.ceil(0.8 / p)
        raw = [k1, 5 * k1] + [half] * (12 if variant == "yan14" else 8)
    elif variant == "opt8":
        a = math.log2(1.0 / p) - 0.5
        raw = [2 ** math.ceil(a), 2 ** math.ceil((a + 12.0) / 2.0), 4096] + [half] * 11
    elif variant == "opt7":
        k1 = 2 ** math.ceil(math.log2(1.0 / p))
        raw = [k1, 4 * k1] + [half] * 12
    elif variant == "original":
        k1 = math.ceil(0.73 / p)
        raw = [k1, 2 * k1, 4 * k1, 8 * k1]
    else:
        fail("cascade.variant", f"one of {VARIANTS}", variant, ErrorCode.BAD_FIELD)
    cap = max(1, -(-n // 2))
    return [int(min(max(1, k), cap)) for k in raw]


_M64 = (1 << 64) - 1


def _permutations_py(n: int, passes: int, seed: int) -> np.ndarray:
    """Pure-Python twin of ``_cascade.permutations``: per pass a Fisher-Yates shuffle
    (i = n−1 … 1, j = ⌊(z >> 32)(i+1) / 2³²⌋, Lemire's multiply-shift) with z from
    splitmix64 (Steele, Lea, Flood 2014) continuing across passes.  The draw's
    bias is below n/2³²: irrelevant for spreading errors."""
    out = np.empty((passes, n), dtype=np.int32)
    state = seed & _M64
    for p in range(passes):
        a = list(range(n))
        for i in range(n - 1, 0, -1):
            state = (state + 0x9E3779B97F4A7C15) & _M64
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
            z ^= z >> 31
            j = ((z >> 32) * (i + 1)) >> 32
            a[i], a[j] = a[j], a[i]
        out[p] = a
    return out


def pass_permutations(n: int, passes: int, seed: int, use_cython: bool | None = None) -> np.ndarray:
    """(passes, n) int32: row p maps a position in pass p's order to a key index.

    Both ends derive them from the same seed (sent in :class:`CascadeStart`);
    the shuffles only spread bursty errors, they need not be secret.
    """
    if n >= 1 << 31:
        fail("cascade.n", "fewer than 2^31 bits", n)
    if use_cython is None:
        use_cython = HAVE_CYTHON
    if use_cython:
        return _cascade.permutations(n, passes, seed & _M64)
    return _permutations_py(n, passes, seed)


# --------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class CascadeStart:
    """Bob → Alice: key length, the block size of each pass, the permutation seed."""

    n: int
    sizes: tuple[int, ...]
    seed: int


@dataclass(frozen=True)
class ParityQuery:
    """Bob → Alice: parities wanted of blocks [starts[i], ends[i]) in pass passes[i]'s order."""

    round: int
    passes: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


@dataclass(frozen=True)
class ParityReply:
    """Alice → Bob: one parity bit per queried block, in query order."""

    round: int
    parities: np.ndarray


# --------------------------------------------------------------------------
# Alice: answers parity queries from prefix parities
# --------------------------------------------------------------------------

class CascadeAlice:
    """Alice's end: holds her key, answers :class:`ParityQuery`, counts what she discloses."""

    def __init__(self, bits: np.ndarray) -> None:
        self.bits = as_bits("CascadeAlice.bits", bits)
        self.disclosed = 0
        self._prefix: np.ndarray | None = None
        self._round = -1

    def on_start(self, msg: CascadeStart) -> None:
        if msg.n != self.bits.size:
            raise QKDError(ErrorCode.APP_ABORTED, f"cascade: Bob's key has {msg.n} bits, Alice's {self.bits.size}")
        if not 1 <= len(msg.sizes) <= PASSES_MAX or any(not 1 <= int(k) <= msg.n for k in msg.sizes):
            raise QKDError(ErrorCode.OUT_OF_RANGE, f"cascade: block sizes {msg.sizes} for {msg.n} bits "
                                                   f"(1..{PASSES_MAX} passes of 1..n bits)")
        perms = pass_permutations(msg.n, len(msg.sizes), msg.seed)
        pre = np.zeros((len(msg.sizes), msg.n + 1), dtype=np.uint8)
        for p in range(len(msg.sizes)):
            np.bitwise_xor.accumulate(self.bits[perms[p]], out=pre[p, 1:])
        self._prefix = pre

    def on_query(self, q: ParityQuery) -> ParityReply:
        if self._prefix is None:
            raise QKDError(ErrorCode.UNEXPECTED_EVENT, "cascade: parity query before CascadeStart")
        if q.round <= self._round:
            raise QKDError(ErrorCode.UNEXPECTED_EVENT, f"cascade: query round {q.round} after {self._round}")
        pre = self._prefix
        P, n1 = pre.shape
        ps, s, e = (np.asarray(a, dtype=np.int64) for a in (q.passes, q.starts, q.ends))
        if ps.size and (ps.min() < 0 or ps.max() >= P or s.min() < 0 or e.max() >= n1 or np.any(s >= e)):
            raise QKDError(ErrorCode.OUT_OF_RANGE, "cascade: a queried block is outside the key")
        self._round = q.round
        self.disclosed += int(ps.size)
        return ParityReply(q.round, pre[ps, e] ^ pre[ps, s])


# --------------------------------------------------------------------------
# Bob's kernel: pure-Python twin of _cascade.BobCore
# --------------------------------------------------------------------------

class BobCorePy:
    """Bob's Cascade state machine (pure Python; ``_cascade.BobCore`` is the compiled twin).

    ``queries()`` returns the next round's blocks as (passes, starts, ends) int64
    arrays (empty when Cascade has finished); ``receive(parities)`` takes Alice's
    answers in the same order.  Blocks of pass p form binary trees: top-level
    block j = positions [j k_p, min((j+1) k_p, n)), node 1 its root, node i's
    children 2i and 2i+1 split [s, e) at s + ⌈(e − s)/2⌉.
    """

    def __init__(self, bits: np.ndarray, perms: np.ndarray, sizes: np.ndarray) -> None:
        self.bits = np.array(bits, dtype=np.uint8)
        self.n = n = int(self.bits.size)
        self.perm = np.asarray(perms, dtype=np.int64)
        self.P = int(self.perm.shape[0])
        self.inv = np.empty_like(self.perm)
        for p in range(self.P):
            self.inv[p, self.perm[p]] = np.arange(n)
        self.k = [int(k) for k in sizes]
        self.nblk = [-(-n // k) for k in self.k]
        self.T = [2 * (1 << max(0, (k - 1).bit_length())) for k in self.k]
        self.base = [0] * self.P
        for p in range(1, self.P):
            self.base[p] = self.base[p - 1] + self.nblk[p - 1] * self.T[p - 1]
        total = self.base[-1] + self.nblk[-1] * self.T[-1] if self.P else 0
        self.known = np.full(total, -1, dtype=np.int8)
        self.busy = np.zeros(total, dtype=np.uint8)
        self.fen = np.zeros((self.P, n + 1), dtype=np.uint8)
        self.cur = -1
        self.total_parity = -1
        self.queue: deque = deque()
        self.active: list = []
        self.pend: list = []
        self.pend_top = False
        self.leaked = 0
        self.flips = 0
        self.rounds = 0
        self.done = False

    # -- Fenwick tree of XOR over pass p's order
    def _pre(self, p: int, i: int) -> int:
        f = self.fen[p]
        r = 0
        while i > 0:
            r ^= int(f[i])
            i -= i & -i
        return r

    def _par(self, p: int, s: int, e: int) -> int:
        return self._pre(p, e) ^ self._pre(p, s)

    def _node(self, p: int, j: int, i: int) -> int:
        return self.base[p] + j * self.T[p] + i

    def _start_pass(self) -> None:
        self.cur = p = self.cur + 1
        n, k = self.n, self.k[p]
        f = self.fen[p]
        f[1:] = self.bits[self.perm[p]]
        for i in range(1, n + 1):          # O(n) Fenwick build
            j = i + (i & -i)
            if j <= n:
                f[j] ^= f[i]
        nb = self.nblk[p]
        last = nb - 1 if self.total_parity >= 0 else nb
        for j in range(last):
            self.pend.append((p, j, 1, j * k, min(j * k + k, n)))
        self.pend_top = True
        if last < nb and last == 0:         # one block, its parity is the total: nothing to ask
            self._finish_top(p)

    def _finish_top(self, p: int) -> None:
        n, k, nb = self.n, self.k[p], self.nblk[p]
        x = 0
        for j in range(nb - 1):
            x ^= int(self.known[self._node(p, j, 1)])
        if self.total_parity >= 0:
            self.known[self._node(p, nb - 1, 1)] = self.total_parity ^ x
        else:
            self.total_parity = x ^ int(self.known[self._node(p, nb - 1, 1)])
        for j in range(nb):
            self.queue.append((p, j, 1, j * k, min(j * k + k, n)))
        self.pend_top = False

    def queries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.pend:
            raise QKDError(ErrorCode.UNEXPECTED_EVENT, "cascade: queries() again before receive()")
        while not self.done:
            self._drain()
            if self.active:
                for (p, j, i, s, e) in self.active:
                    self.pend.append((p, j, 2 * i, s, s + (e - s + 1) // 2))
                break
            if self.cur + 1 >= self.P:
                self.done = True
                break
            self._start_pass()
            if self.pend:
                break
        if self.pend:
            self.rounds += 1
        arr = np.array([(q[0], q[3], q[4]) for q in self.pend], dtype=np.int64).reshape(-1, 3)
        return arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy()

    def receive(self, parities: np.ndarray) -> None:
        par = np.asarray(parities)
        if par.shape != (len(self.pend),):
            raise QKDError(ErrorCode.BAD_FIELD, f"cascade: {par.shape} parities for {len(self.pend)} queries")
        for (p, j, i, s, e), a in zip(self.pend, par):
            a = int(a) & 1
            self.leaked += 1
            self.known[self._node(p, j, i)] = a
            if i > 1:                      # a left child: the right one follows
                self.known[self._node(p, j, i + 1)] = int(self.known[self._node(p, j, i >> 1)]) ^ a
        self.pend = []
        if self.pend_top:
            self._finish_top(self.cur)
        else:
            old, self.active = self.active, []
            for node in old:
                self._descend(*node)

    def _descend(self, p: int, j: int, i: int, s: int, e: int) -> None:
        """Continue the binary search of a block this search owns (busy)."""
        known, busy = self.known, self.busy
        if self._par(p, s, e) == known[self._node(p, j, i)]:
            busy[self._node(p, j, i)] = 0          # no longer odd (a flip elsewhere fixed it)
            return
        while e - s > 1:
            m = s + (e - s + 1) // 2
            kl = known[self._node(p, j, 2 * i)]
            if kl < 0:
                self.active.append((p, j, i, s, e))
                return
            busy[self._node(p, j, i)] = 0
            if self._par(p, s, m) != kl:
                i, e = 2 * i, m
            else:
                i, s = 2 * i + 1, m
            if busy[self._node(p, j, i)]:
                return                              # another search already owns this block
            busy[self._node(p, j, i)] = 1
        busy[self._node(p, j, i)] = 0
        self._flip(int(self.perm[p, s]))

    def _flip(self, x: int) -> None:
        self.bits[x] ^= 1
        self.flips += 1
        n = self.n
        for q in range(self.cur + 1):
            pos = int(self.inv[q, x])
            f = self.fen[q]
            t = pos + 1
            while t <= n:
                f[t] ^= 1
                t += t & -t
            k = self.k[q]
            j = pos // k
            i, s, e = 1, j * k, min(j * k + k, n)
            path = []
            while self.known[self._node(q, j, i)] >= 0:
                path.append((q, j, i, s, e))
                if e - s == 1:
                    break
                m = s + (e - s + 1) // 2
                if pos < m:
                    i, e = 2 * i, m
                else:
                    i, s = 2 * i + 1, m
            self.queue.extend(reversed(path))      # smallest known block first

    def _drain(self) -> None:
        while self.queue:
            p, j, i, s, e = self.queue.popleft()
            node = self._node(p, j, i)
            if self.busy[node] or self._par(p, s, e) == self.known[node]:
                continue
            self.busy[node] = 1
            self._descend(p, j, i, s, e)

    def key(self) -> np.ndarray:
        return self.bits.copy()


# --------------------------------------------------------------------------
# Bob's end and an in-process run
# --------------------------------------------------------------------------

class CascadeBob:
    """Bob's end: ``start()`` → :class:`CascadeStart`, then ``next_query()`` →
    :class:`ParityQuery` or None when finished, ``on_reply()`` for each answer.

    qber: the estimated QBER the block sizes follow; seed: the permutation seed;
    use_cython: the compiled kernel (default when built) or the Python twin;
    max_passes: stop after this many passes (default: the variant's).
    """

    def __init__(self, bits: np.ndarray, qber: float, seed: int, variant: str = "yan14",
                 use_cython: bool | None = None, max_passes: int | None = None) -> None:
        self._bits = as_bits("CascadeBob.bits", bits)
        if self._bits.size == 0:
            fail("CascadeBob.bits", "at least one bit", 0)
        self.sizes = tuple(block_sizes(self._bits.size, qber, variant))
        if max_passes is not None:      # fewer passes: less leaked, more errors left for verification
            self.sizes = self.sizes[:check_pos_int("CascadeBob.max_passes", max_passes)]
        self.seed = int(seed)
        self.qber_estimate = float(qber)
        if use_cython is None:
            use_cython = HAVE_CYTHON
        if use_cython and not HAVE_CYTHON:
            fail("CascadeBob.use_cython", "False (the Cython kernel is not built)", use_cython)
        perms = pass_permutations(self._bits.size, len(self.sizes), self.seed)
        core_cls = _cascade.BobCore if use_cython else BobCorePy
        self.core = core_cls(self._bits, perms, np.asarray(self.sizes, dtype=np.int64))
        self._round = 0
        self._waiting = False
        self._asked = 0

    def start(self) -> CascadeStart:
        """The opening message: key length, block sizes, permutation seed."""
        return CascadeStart(self._bits.size, self.sizes, self.seed)

    def next_query(self) -> ParityQuery | None:
        """The next round's parity query, or None once Cascade has finished."""
        if self._waiting:
            raise QKDError(ErrorCode.UNEXPECTED_EVENT, f"cascade: round {self._round} not answered yet")
        ps, s, e = self.core.queries()
        if ps.size == 0:
            return None
        self._round += 1
        self._waiting = True
        self._asked = int(ps.size)
        return ParityQuery(self._round, ps, s, e)

    def on_reply(self, reply: ParityReply) -> None:
        """Alice's parities for the round asked last."""
        if not self._waiting or reply.round != self._round:
            raise QKDError(ErrorCode.UNEXPECTED_EVENT, f"cascade: reply for round {reply.round}, "
                                                       f"waiting for {self._round if self._waiting else None}")
        par = np.asarray(reply.parities, dtype=np.uint8)
        if par.shape != (self._asked,):
            raise QKDError(ErrorCode.BAD_FIELD, f"cascade: {par.size} parities for {self._asked} queries")
        self._waiting = False
        self.core.receive(par)

    @property
    def done(self) -> bool:
        return bool(self.core.done)

    @property
    def leaked(self) -> int:
        """Parities Bob received (= bits Alice disclosed)."""
        return int(self.core.leaked)

    def key(self) -> np.ndarray:
        return np.asarray(self.core.key(), dtype=np.uint8)


@dataclass(frozen=True)
class CascadeResult:
    """Outcome of :func:`reconcile`: Bob's corrected key, the bits Alice disclosed,
    the message rounds, Bob's flips (each one corrects an error), the block sizes."""

    key: np.ndarray
    leaked: int
    rounds: int
    flips: int
    sizes: tuple[int, ...] = field(default=())


def efficiency(leaked: int, n: int, qber: float) -> float:
    """f = leaked / (n · h(QBER)); ∞ if QBER = 0 and anything leaked."""
    h = binary_entropy(qber)
    if h == 0.0:
        return math.inf if leaked else 1.0
    return leaked / (n * h)


def reconcile(alice_bits: np.ndarray, bob_bits: np.ndarray, qber: float, seed: int = 0,
              variant: str = "yan14", use_cython: bool | None = None) -> CascadeResult:
    """Run both ends in process (the messages pass by hand): Bob's key corrected toward Alice's."""
    alice = CascadeAlice(alice_bits)
    bob = CascadeBob(bob_bits, qber, seed, variant, use_cython)
    alice.on_start(bob.start())
    rounds = 0
    while (q := bob.next_query()) is not None:
        bob.on_reply(alice.on_query(q))
        rounds += 1
    assert alice.disclosed == bob.leaked
    return CascadeResult(bob.key(), alice.disclosed, rounds, int(bob.core.flips), bob.sizes)
