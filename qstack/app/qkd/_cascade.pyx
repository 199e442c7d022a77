# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython kernel of Cascade: Bob's state machine (``BobCore``).

The pure-Python twin, all documentation of the algorithm and the message
exchange live in :mod:`qstack.app.qkd.cascade` (``BobCorePy``); this is the same
algorithm step for step (same queries in the same order, same flips), with the
queues as int64 arrays of (pass, block, node, start, end) rows.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, int32_t, int8_t, uint8_t, uint64_t

cnp.import_array()


def permutations(int64_t n, int64_t passes, uint64_t seed):
    """(passes, n) int32: Fisher-Yates shuffles drawn from splitmix64 (twin:
    ``cascade._permutations_py``, bit for bit the same); n < 2^31."""
    out = np.empty((passes, n), dtype=np.int32)
    cdef int32_t[:, ::1] a = out
    cdef int64_t p, i, j
    cdef int32_t t
    cdef uint64_t state = seed, z
    for p in range(passes):
        for i in range(n):
            a[p, i] = <int32_t>i
        for i in range(n - 1, 0, -1):
            state += 0x9E3779B97F4A7C15ULL
            z = state
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
            z = z ^ (z >> 31)
            j = <int64_t>(((z >> 32) * <uint64_t>(i + 1)) >> 32)
            t = a[p, i]
            a[p, i] = a[p, j]
            a[p, j] = t
    return out


cdef class Rows:
    """A growable FIFO of (pass, block, node, start, end) rows."""
    cdef int64_t[:, ::1] a
    cdef int64_t head, tail

    def __cinit__(self):
        self.a = np.zeros((64, 5), dtype=np.int64)
        self.head = self.tail = 0

    cdef void _make_room(self):
        cdef int64_t live = self.tail - self.head
        arr = np.asarray(self.a)
        if self.head > 0 and 2 * live <= self.a.shape[0]:
            arr[:live] = arr[self.head:self.tail]           # slide the live rows to the front
        else:
            grown = np.zeros((2 * self.a.shape[0], 5), dtype=np.int64)
            grown[:live] = arr[self.head:self.tail]
            self.a = grown
        self.head, self.tail = 0, live

    cdef inline void push(self, int64_t p, int64_t j, int64_t i, int64_t s, int64_t e):
        if self.tail == self.a.shape[0]:
            self._make_room()
        cdef int64_t t = self.tail
        self.a[t, 0] = p; self.a[t, 1] = j; self.a[t, 2] = i
        self.a[t, 3] = s; self.a[t, 4] = e
        self.tail = t + 1


cdef class BobCore:
    cdef public int64_t n, P, cur, total_parity, leaked, flips, rounds
    cdef public bint done
    cdef bint pend_top
    cdef uint8_t[::1] bits
    cdef int32_t[:, ::1] perm
    cdef int32_t[:, ::1] inv
    cdef int64_t[::1] k, nblk, T, base
    cdef int8_t[::1] known
    cdef uint8_t[::1] busy
    cdef uint8_t[:, ::1] fen
    cdef Rows queue, active, pend

    def __init__(self, bits, perms, sizes):
        cdef int64_t p, n, i, total
        b = np.array(bits, dtype=np.uint8)
        pm = np.ascontiguousarray(perms, dtype=np.int32)
        self.bits = b
        self.n = n = b.shape[0]
        self.perm = pm
        self.P = pm.shape[0]
        self.inv = np.empty_like(pm)
        for p in range(self.P):
            for i in range(n):
                self.inv[p, self.perm[p, i]] = <int32_t>i
        ks = np.ascontiguousarray(sizes, dtype=np.int64)
        self.k = ks
        self.nblk = np.array([-(-n // int(x)) for x in ks], dtype=np.int64)
        self.T = np.array([2 * (1 << max(0, (int(x) - 1).bit_length())) for x in ks], dtype=np.int64)
        base = np.zeros(self.P, dtype=np.int64)
        for p in range(1, self.P):
            base[p] = base[p - 1] + self.nblk[p - 1] * self.T[p - 1]
        self.base = base
        total = base[self.P - 1] + self.nblk[self.P - 1] * self.T[self.P - 1] if self.P else 0
        self.known = np.zeros(total, dtype=np.int8)     # 0 unknown, else parity + 1 (lazy zero pages)
        self.busy = np.zeros(total, dtype=np.uint8)
        self.fen = np.zeros((self.P, n + 1), dtype=np.uint8)
        self.queue, self.active, self.pend = Rows(), Rows(), Rows()
        self.cur = -1
        self.total_parity = -1
        self.leaked = self.flips = self.rounds = 0
        self.done = False
        self.pend_top = False

    # ---------------------------------------------------------------- parities

    cdef inline int _pre(self, int64_t p, int64_t i) noexcept nogil:
        cdef int r = 0
        while i > 0:
            r ^= self.fen[p, i]
            i -= i & -i
        return r

    cdef inline int _par(self, int64_t p, int64_t s, int64_t e) noexcept nogil:
        return self._pre(p, e) ^ self._pre(p, s)

    cdef inline int64_t _node(self, int64_t p, int64_t j, int64_t i) noexcept nogil:
        return self.base[p] + j * self.T[p] + i

    # ---------------------------------------------------------------- passes

    cdef void _start_pass(self):
        cdef int64_t p, n, k, i, j, nb, last
        self.cur += 1
        p = self.cur
        n = self.n
        k = self.k[p]
        for i in range(1, n + 1):
            self.fen[p, i] = self.bits[self.perm[p, i - 1]]
        for i in range(1, n + 1):
            j = i + (i & -i)
            if j <= n:
                self.fen[p, j] ^= self.fen[p, i]
        nb = self.nblk[p]
        last = nb - 1 if self.total_parity >= 0 else nb
        for j in range(last):
            self.pend.push(p, j, 1, j * k, min(j * k + k, n))
        self.pend_top = True
        if last < nb and last == 0:
            self._finish_top(p)

    cdef void _finish_top(self, int64_t p):
        cdef int64_t n = self.n, k = self.k[p], nb = self.nblk[p], j
        cdef int x = 0
        for j in range(nb - 1):
            x ^= self.known[self._node(p, j, 1)] - 1
        if self.total_parity >= 0:
            self.known[self._node(p, nb - 1, 1)] = <int8_t>((self.total_parity ^ x) + 1)
        else:
            self.total_parity = x ^ (self.known[self._node(p, nb - 1, 1)] - 1)
        for j in range(nb):
            self.queue.push(p, j, 1, j * k, min(j * k + k, n))
        self.pend_top = False

    # ---------------------------------------------------------------- protocol

    def queries(self):
        """Next round's blocks as (passes, starts, ends) int64 arrays; empty when done."""
        cdef int64_t t
        cdef int64_t[:, ::1] act
        if self.pend.tail:
            raise RuntimeError("cascade: queries() again before receive()")
        while not self.done:
            self._drain()
            if self.active.tail:
                act = self.active.a
                for t in range(self.active.tail):
                    self.pend.push(act[t, 0], act[t, 1], 2 * act[t, 2], act[t, 3],
                                   act[t, 3] + (act[t, 4] - act[t, 3] + 1) // 2)
                break
            if self.cur + 1 >= self.P:
                self.done = True
                break
            self._start_pass()
            if self.pend.tail:
                break
        if self.pend.tail:
            self.rounds += 1
        arr = np.asarray(self.pend.a)[:self.pend.tail]
        return arr[:, 0].copy(), arr[:, 3].copy(), arr[:, 4].copy()

    def receive(self, parities):
        cdef const uint8_t[::1] par = np.ascontiguousarray(parities, dtype=np.uint8)
        cdef int64_t t, p, j, i
        cdef int a
        cdef int64_t[:, ::1] pd = self.pend.a
        cdef Rows old
        if par.shape[0] != self.pend.tail:
            raise ValueError(f"cascade: {par.shape[0]} parities for {self.pend.tail} queries")
        for t in range(self.pend.tail):
            p = pd[t, 0]; j = pd[t, 1]; i = pd[t, 2]
            a = par[t] & 1
            self.leaked += 1
            self.known[self._node(p, j, i)] = <int8_t>(a + 1)
            if i > 1:
                self.known[self._node(p, j, i + 1)] = <int8_t>(((self.known[self._node(p, j, i >> 1)] - 1) ^ a) + 1)
        self.pend.tail = 0
        if self.pend_top:
            self._finish_top(self.cur)
        else:
            old, self.active = self.active, Rows()
            for t in range(old.tail):
                self._descend(old.a[t, 0], old.a[t, 1], old.a[t, 2], old.a[t, 3], old.a[t, 4])

    cdef void _descend(self, int64_t p, int64_t j, int64_t i, int64_t s, int64_t e):
        cdef int64_t m
        cdef int kl
        if self._par(p, s, e) == self.known[self._node(p, j, i)] - 1:
            self.busy[self._node(p, j, i)] = 0
            return
        while e - s > 1:
            m = s + (e - s + 1) // 2
            kl = self.known[self._node(p, j, 2 * i)] - 1
            if kl < 0:
                self.active.push(p, j, i, s, e)
                return
            self.busy[self._node(p, j, i)] = 0
            if self._par(p, s, m) != kl:
                i = 2 * i
                e = m
            else:
                i = 2 * i + 1
                s = m
            if self.busy[self._node(p, j, i)]:
                return
            self.busy[self._node(p, j, i)] = 1
        self.busy[self._node(p, j, i)] = 0
        self._flip(self.perm[p, s])

    cdef void _flip(self, int64_t x):
        cdef int64_t q, pos, t, k, j, i, s, e, m, depth, d, n = self.n
        cdef int64_t path[5 * 66]
        self.bits[x] ^= 1
        self.flips += 1
        for q in range(self.cur + 1):
            pos = self.inv[q, x]
            t = pos + 1
            while t <= n:
                self.fen[q, t] ^= 1
                t += t & -t
            k = self.k[q]
            j = pos // k
            i = 1
            s = j * k
            e = min(s + k, n)
            depth = 0
            while self.known[self._node(q, j, i)] > 0:
                path[5 * depth] = q; path[5 * depth + 1] = j; path[5 * depth + 2] = i
                path[5 * depth + 3] = s; path[5 * depth + 4] = e
                depth += 1
                if e - s == 1:
                    break
                m = s + (e - s + 1) // 2
                if pos < m:
                    i = 2 * i
                    e = m
                else:
                    i = 2 * i + 1
                    s = m
            for d in range(depth - 1, -1, -1):
                self.queue.push(path[5 * d], path[5 * d + 1], path[5 * d + 2], path[5 * d + 3], path[5 * d + 4])

    cdef void _drain(self):
        cdef int64_t h, p, j, i, s, e, node
        cdef Rows q = self.queue
        while q.head < q.tail:
            h = q.head
            p = q.a[h, 0]; j = q.a[h, 1]; i = q.a[h, 2]; s = q.a[h, 3]; e = q.a[h, 4]
            q.head = h + 1
            if q.head == q.tail:
                q.head = q.tail = 0
            node = self._node(p, j, i)
            if self.busy[node] or self._par(p, s, e) == self.known[node] - 1:
                continue
            self.busy[node] = 1
            self._descend(p, j, i, s, e)

    def key(self):
        return np.asarray(self.bits).copy()
