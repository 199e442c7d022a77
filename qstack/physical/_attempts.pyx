# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython kernel for attempt-by-attempt heralded entanglement runs.

The model, its documentation and the pure-Python twin
(:func:`qstack.physical.attempts._attempt_runs_python`) live in
:mod:`qstack.physical.attempts`; this module only runs the loop. Both consume
the caller's uniforms in the same order, so they agree bit for bit.
"""
from libc.stdint cimport int64_t, uint8_t


def attempt_runs(const double[::1] u, double p_success, int64_t modes, int64_t limit,
                 int64_t[::1] attempts, uint8_t[::1] success,
                 int64_t run, int64_t k, int64_t m):
    """Advance the runs from state (run, k attempts made, m modes tried in the
    current attempt) with the uniforms ``u``; return (run, k, m, used)."""
    cdef Py_ssize_t n_runs = attempts.shape[0]
    cdef Py_ssize_t n_u = u.shape[0]
    cdef Py_ssize_t i = 0
    with nogil:
        while run < n_runs and i < n_u:
            if m == 0:
                if limit >= 0 and k >= limit:
                    attempts[run] = k
                    success[run] = 0
                    run += 1
                    k = 0
                    continue
                k += 1
            if u[i] < p_success:
                attempts[run] = k
                success[run] = 1
                run += 1
                k = 0
                m = 0
            else:
                m += 1
                if m == modes:
                    m = 0
            i += 1
        # runs that end at their limit need no more uniforms
        while run < n_runs and m == 0 and limit >= 0 and k >= limit:
            attempts[run] = k
            success[run] = 0
            run += 1
            k = 0
    return run, k, m, i
