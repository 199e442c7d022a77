# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython kernels for prepare-and-measure pulse trains (decoy BB84).

Pure-Python/numpy twins and all documentation of the model, the tables and the
draw order live in :mod:`qstack.physical.pulses`; this module only runs the
loops.  Three kernels:

* ``simulate_pulses_uniforms`` — pulse by pulse, consuming the caller's
  pre-drawn uniforms ``u[7, n]`` in the documented order: bit-for-bit the same
  result as ``pulses.simulate_pulses_numpy`` and ``simulate_pulses_reference``.
* ``simulate_pulses_fast`` — pulse by pulse with a C-level xoshiro256++
  generator and 4 draws per pulse (same model, same distribution).
* ``skip_ahead`` — exact skip-ahead: geometric gaps between detection events,
  piecewise over detector states (alive / armed for an afterpulse / dead);
  uniforms from xoshiro256++ or from a caller's array (then bit-for-bit equal
  to the Python twin ``pulses.simulate_skip_ahead_python``).
"""
from libc.math cimport log1p, floor
from libc.stdint cimport uint64_t, int64_t, uint8_t, int8_t

import numpy as np


# ---------------------------------------------------------------------------
# xoshiro256++ (Blackman & Vigna, "Scrambled linear pseudorandom number
# generators", ACM TOMS 47 (2021)), written from the published recurrence.
# ---------------------------------------------------------------------------

cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef inline uint64_t _next_u64(uint64_t* s) noexcept nogil:
    cdef uint64_t result = _rotl(s[0] + s[3], 23) + s[0]
    cdef uint64_t t = s[1] << 17
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


cdef inline double _next_double(uint64_t* s) noexcept nogil:
    # top 53 bits -> uniform on [0, 1), the same resolution as numpy's random()
    return <double>(<int64_t>(_next_u64(s) >> 11)) * (1.0 / 9007199254740992.0)


def xoshiro_uniforms(uint64_t[::1] state, Py_ssize_t n):
    """n uniforms on [0,1) from the xoshiro256++ state (advanced in place)."""
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] o = out
    cdef Py_ssize_t i
    cdef uint64_t* s = &state[0]
    with nogil:
        for i in range(n):
            o[i] = _next_double(s)
    return out


# ---------------------------------------------------------------------------
# pulse by pulse, caller's uniforms  (exact twin of pulses.simulate_pulses_numpy)
# ---------------------------------------------------------------------------

def simulate_pulses_uniforms(const double[:, ::1] u, const double[::1] cum_class,
                             const double[:, :, ::1] click_table, double p_z_alice, double p_z_bob,
                             int64_t dead_gates,
                             uint8_t[::1] alice_basis, uint8_t[::1] alice_bit, uint8_t[::1] alice_class,
                             uint8_t[::1] bob_basis, uint8_t[::1] clicks, int8_t[::1] bob_bit):
    """Pulse-by-pulse model with pre-drawn uniforms u[7, n] (rows: Alice basis, Alice bit,
    class, Bob basis, D0, D1, double-click tie).  Writes the six output arrays."""
    cdef Py_ssize_t n = u.shape[1]
    cdef Py_ssize_t K = cum_class.shape[0]
    cdef Py_ssize_t i
    cdef int a, x, k, b, r0, r1, s0, s1, c0, c1
    cdef int64_t last0 = -(dead_gates + 2)
    cdef int64_t last1 = -(dead_gates + 2)
    with nogil:
        for i in range(n):
            a = 0 if u[0, i] < p_z_alice else 1
            x = 1 if u[1, i] < 0.5 else 0
            k = 0
            while u[2, i] >= cum_class[k]:
                k += 1
            b = 0 if u[3, i] < p_z_bob else 1
            if a == b:
                r0 = 0 if x == 0 else 1
                r1 = 1 - r0
            else:
                r0 = 2
                r1 = 2
            c0 = 0
            if i > last0 + dead_gates:
                s0 = 1 if i == last0 + dead_gates + 1 else 0
                if u[4, i] < click_table[s0, k, r0]:
                    c0 = 1
                    last0 = i
            c1 = 0
            if i > last1 + dead_gates:
                s1 = 1 if i == last1 + dead_gates + 1 else 0
                if u[5, i] < click_table[s1, k, r1]:
                    c1 = 1
                    last1 = i
            alice_basis[i] = a
            alice_bit[i] = x
            alice_class[i] = k
            bob_basis[i] = b
            clicks[i] = c0 | (c1 << 1)
            if c0 and c1:
                bob_bit[i] = 1 if u[6, i] < 0.5 else 0
            elif c0:
                bob_bit[i] = 0
            elif c1:
                bob_bit[i] = 1
            else:
                bob_bit[i] = -1


# ---------------------------------------------------------------------------
# pulse by pulse, C-level RNG, 4 draws per pulse
# ---------------------------------------------------------------------------

def simulate_pulses_fast(uint64_t[::1] state, const double[::1] cum_class,
                         const double[:, :, ::1] click_table, double p_z_alice, double p_z_bob,
                         int64_t dead_gates,
                         uint8_t[::1] alice_basis, uint8_t[::1] alice_bit, uint8_t[::1] alice_class,
                         uint8_t[::1] bob_basis, uint8_t[::1] clicks, int8_t[::1] bob_bit):
    """Same model as ``simulate_pulses_uniforms`` with fewer, cheaper draws (all exact).

    A 64-bit xoshiro output r gives a 53-bit uniform from its top bits
    (r >> 11) and independent fair bits from its low bits.  Draw 1: Alice's
    basis from the top bits, her bit from bit 0, the double-click tie bit from
    bit 1.  Draw 2: the class (top bits against cumsum(class_probs)·2^53).
    Draw 3: Bob's basis.  Draw 4: "any click" with P = c0 + c1 − c0·c1 and,
    when below it, which detectors clicked (below c0·c1: both; below c0: D0
    only; else D1 only) — the conditional split of one uniform is exact.
    Comparisons are made on integers, branch-free where the outcome is a coin
    flip, so the loop costs a few ns per pulse.
    """
    cdef Py_ssize_t n = clicks.shape[0]
    cdef Py_ssize_t K = cum_class.shape[0]
    cdef Py_ssize_t i
    # a local copy of the generator state: the byte stores to the outputs could
    # alias a pointer into the caller's array and force a reload every draw
    cdef uint64_t s[4]
    for i in range(4):
        s[i] = state[i]
    cdef uint64_t r, top
    cdef uint64_t two53 = 9007199254740992ULL
    cdef uint64_t t_za = <uint64_t>(p_z_alice * 9007199254740992.0)
    cdef uint64_t t_zb = <uint64_t>(p_z_bob * 9007199254740992.0)
    cdef uint64_t t_cum[9]
    cdef double tab[2 * 8 * 3]
    cdef double p0, p1, pany, v
    cdef int a, x, k, b, tie, match, r0, r1, j
    cdef int64_t last0 = -(dead_gates + 2)
    cdef int64_t last1 = -(dead_gates + 2)
    if K > 8:
        raise ValueError("simulate_pulses_fast: at most 8 intensity classes")
    if n == 0:
        return
    # raw pointers: stores through char-typed pointers may alias anything, and
    # would otherwise force the memoryview descriptors to be re-read each pulse
    cdef uint8_t* o_a = &alice_basis[0]
    cdef uint8_t* o_x = &alice_bit[0]
    cdef uint8_t* o_k = &alice_class[0]
    cdef uint8_t* o_b = &bob_basis[0]
    cdef uint8_t* o_c = &clicks[0]
    cdef int8_t* o_bit = &bob_bit[0]
    for k in range(K):
        t_cum[k] = <uint64_t>(cum_class[k] * 9007199254740992.0) if cum_class[k] < 1.0 else two53
    for a in range(2):
        for k in range(K):
            for b in range(3):
                tab[(a * K + k) * 3 + b] = click_table[a, k, b]
    with nogil:
        for i in range(n):
            r = _next_u64(s)
            a = <int>((r >> 11) >= t_za)
            x = <int>(r & 1)
            tie = <int>((r >> 1) & 1)
            top = _next_u64(s) >> 11
            k = 0
            for j in range(K - 1):  # branch-free count of thresholds passed
                k += top >= t_cum[j]
            b = <int>((_next_u64(s) >> 11) >= t_zb)
            match = a == b
            r0 = x if match else 2
            r1 = (1 - x) if match else 2
            p0 = 0.0
            if i > last0 + dead_gates:
                p0 = tab[((1 if i == last0 + dead_gates + 1 else 0) * K + k) * 3 + r0]
            p1 = 0.0
            if i > last1 + dead_gates:
                p1 = tab[((1 if i == last1 + dead_gates + 1 else 0) * K + k) * 3 + r1]
            o_a[i] = a
            o_x[i] = x
            o_k[i] = k
            o_b[i] = b
            pany = p0 + p1 - p0 * p1
            v = _next_double(s)
            if v < pany:
                if v < p0 * p1:
                    o_c[i] = 3
                    o_bit[i] = tie
                    last0 = i
                    last1 = i
                elif v < p0:
                    o_c[i] = 1
                    o_bit[i] = 0
                    last0 = i
                else:
                    o_c[i] = 2
                    o_bit[i] = 1
                    last1 = i
            else:
                o_c[i] = 0
                o_bit[i] = -1
    for i in range(4):
        state[i] = s[i]


# ---------------------------------------------------------------------------
# exact skip-ahead
# ---------------------------------------------------------------------------

cdef struct _Src:
    uint64_t* state          # xoshiro state, or NULL when reading from an array
    const double* arr
    int64_t n_arr
    int64_t pos
    int exhausted


cdef inline double _draw(_Src* src) noexcept nogil:
    if src.state != NULL:
        return _next_double(src.state)
    if src.pos >= src.n_arr:
        src.exhausted = 1
        return 0.0
    src.pos += 1
    return src.arr[src.pos - 1]


def skip_ahead(int64_t n, int64_t start, int64_t[::1] last, int64_t dead_gates, int use_armed,
               const double[::1] regime_p, const double[::1] log1m_regime_p,
               const double[:, ::1] cdf, const double[:, ::1] c0tab, const double[:, ::1] c1tab,
               const double[:, ::1] pevt, const uint8_t[:, ::1] config_fields,
               uint64_t[::1] state, const double[::1] uniforms, int64_t[::1] upos,
               int64_t[::1] out_index, uint8_t[::1] out_a, uint8_t[::1] out_x, uint8_t[::1] out_k,
               uint8_t[::1] out_b, uint8_t[::1] out_clicks, int8_t[::1] out_bit,
               int64_t[::1] nonevent):
    """Skip-ahead from gate ``start`` to ``n`` (see pulses.simulate_skip_ahead_python for the
    algorithm, which this mirrors draw for draw).  ``last`` (2,) holds each detector's last
    click gate and is updated.  Stops early when the output buffers are full.

    Returns (number of events written, next gate to simulate).  Raises ValueError if a
    caller's uniform array runs out.
    """
    cdef _Src src
    cdef uint64_t local_state[4]
    cdef int k4
    if state is not None:
        for k4 in range(4):
            local_state[k4] = state[k4]
        src.state = &local_state[0]
        src.arr = NULL
        src.n_arr = 0
    else:
        src.state = NULL
        src.arr = &uniforms[0]
        src.n_arr = uniforms.shape[0]
    src.pos = upos[0]
    src.exhausted = 0
    cdef int64_t cap = out_index.shape[0]
    cdef int64_t m = 0
    cdef int64_t i = start
    cdef int64_t l0 = last[0]
    cdef int64_t l1 = last[1]
    cdef int64_t e, e0, e1, ie
    cdef int s0, s1, st, c, C = cdf.shape[1]
    cdef double p, u, g, w, q0, q1
    with nogil:
        while i < n and m < cap and not src.exhausted:
            # detector states at gate i and the gate where they next change
            if i <= l0 + dead_gates:
                s0 = 2
                e0 = l0 + dead_gates + 1
            elif use_armed and i == l0 + dead_gates + 1:
                s0 = 1
                e0 = i + 1
            else:
                s0 = 0
                e0 = n
            if i <= l1 + dead_gates:
                s1 = 2
                e1 = l1 + dead_gates + 1
            elif use_armed and i == l1 + dead_gates + 1:
                s1 = 1
                e1 = i + 1
            else:
                s1 = 0
                e1 = n
            e = e0 if e0 < e1 else e1
            if e > n:
                e = n
            st = s0 * 3 + s1
            p = regime_p[st]
            if p <= 0.0:
                nonevent[st] += e - i
                i = e
                continue
            u = _draw(&src)
            if p >= 1.0:
                g = 0.0
            else:
                g = floor(log1p(-u) / log1m_regime_p[st])
            if g >= <double>(e - i):
                nonevent[st] += e - i
                i = e
                continue
            ie = i + <int64_t>g
            nonevent[st] += ie - i
            # what happened at gate ie: the pulse configuration, then the detectors
            u = _draw(&src)
            c = 0
            while c < C - 1 and u >= cdf[st, c]:
                c += 1
            u = _draw(&src)
            q0 = c0tab[st, c]
            q1 = c1tab[st, c]
            w = u * pevt[st, c]
            out_index[m] = ie
            out_a[m] = config_fields[c, 0]
            out_x[m] = config_fields[c, 1]
            out_k[m] = config_fields[c, 2]
            out_b[m] = config_fields[c, 3]
            if w < q0 * q1:
                out_clicks[m] = 3
                out_bit[m] = 1 if _draw(&src) < 0.5 else 0
                l0 = ie
                l1 = ie
            elif w < q0:
                out_clicks[m] = 1
                out_bit[m] = 0
                l0 = ie
            else:
                out_clicks[m] = 2
                out_bit[m] = 1
                l1 = ie
            m += 1
            i = ie + 1
    last[0] = l0
    last[1] = l1
    upos[0] = src.pos
    if state is not None:
        for k4 in range(4):
            state[k4] = local_state[k4]
    if src.exhausted:
        raise ValueError("skip_ahead: the uniform array ran out; pass more uniforms")
    return m, i
