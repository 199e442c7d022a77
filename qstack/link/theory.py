"""Closed forms for the link layer's pair rate with m parallel generation processes.

The model (``specs/link.md`` §4, "Parallel processes"): a link runs m
heralded generation processes at once. Each process, once both ends have
submitted its Entangle, makes attempts every ``cycle_ns``, each succeeding
with probability p independently (the heralding station's skip-ahead draws
the index K of the first success from the geometric distribution,
P(K = k) = (1 - p)^(k - 1) p, k >= 1); the successful emission is heralded
``herald_delay_ns`` later at the end that hears last, which then submits the
process's next Entangle (the other end, having heard first, is already
waiting). A memory slot is held at each end from submission until the herald
(and until the layer above releases the pair; here at once). So each process
is a renewal process whose period is

    T = (K - 1) * cycle_ns + herald_delay_ns,
    mu = E[T] = (1 - p) / p * cycle_ns + herald_delay_ns,
    sigma^2 = Var(T) = cycle_ns^2 (1 - p) / p^2,

and by the elementary renewal theorem (e.g. Ross, *Stochastic Processes*,
2nd ed., Thm 3.3.4) one process delivers 1/mu pairs per ns in the long run.
The m processes are independent renewal processes (each restarts on its own
herald; they share no attempt), so the link delivers

    R(m) = min(m, S) / mu    pairs per ns,

S the memory slots per end (a process needs one at each end; the EGP never
runs more than S). The count N(t) of pairs in a long window t is, by the
renewal central limit theorem (Ross, Thm 3.3.5), normal with mean
min(m, S) t / mu and variance min(m, S) t sigma^2 / mu^3: what the tests
compare with, in standard deviations.

m = 1 gives the EGP's expected time per pair (``EGP.expected_time_ns``).
Times are in ns, rates returned per second.
"""
from __future__ import annotations

import math

__all__ = ["process_period_ns", "multiplexed_pair_rate_hz", "pair_count_moments"]


def process_period_ns(p: float, cycle_ns: float, herald_delay_ns: float) -> tuple[float, float]:
    """(mean, variance) of one process's period T = (K - 1) cycle + herald
    delay, K geometric with success probability ``p`` (ns, ns^2)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p: expected a success probability in (0, 1], got {p!r}")
    if cycle_ns <= 0 or herald_delay_ns < 0:
        raise ValueError("cycle_ns > 0 and herald_delay_ns >= 0 expected, got "
                         f"{cycle_ns!r}, {herald_delay_ns!r}")
    mean = (1.0 - p) / p * cycle_ns + herald_delay_ns
    var = cycle_ns * cycle_ns * (1.0 - p) / (p * p)
    return mean, var


def multiplexed_pair_rate_hz(p: float, cycle_ns: float, herald_delay_ns: float, m: int,
                             slots: int | None = None) -> float:
    """Delivered pairs per second of m parallel heralded processes on one
    link (``slots`` memory slots per end, None: at least m), with a consumer
    that releases each pair at once: min(m, slots) / E[T] (module doc)."""
    if m < 1:
        raise ValueError(f"m: expected an integer >= 1, got {m!r}")
    running = m if slots is None else min(m, slots)
    mean, _ = process_period_ns(p, cycle_ns, herald_delay_ns)
    return running / mean * 1e9


def pair_count_moments(p: float, cycle_ns: float, herald_delay_ns: float, m: int,
                       window_ns: float) -> tuple[float, float]:
    """(mean, standard deviation) of the number of pairs m independent
    processes deliver in a long window of ``window_ns`` ns (renewal CLT:
    variance m t sigma^2 / mu^3)."""
    mean_t, var_t = process_period_ns(p, cycle_ns, herald_delay_ns)
    return m * window_ns / mean_t, math.sqrt(m * window_ns * var_t / mean_t ** 3)
