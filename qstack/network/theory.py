"""Closed forms the network layer plans with and the tests check against.

Conventions: fidelity ``F`` is the squared fidelity to the target Bell state;
a Werner state of fidelity ``F`` has Werner parameter ``w = (4F - 1) / 3``
(``rho = w |Phi+><Phi+| + (1 - w) I/4``). Bell-diagonal coefficient vectors are
in Bell-index order ``(Phi+, Phi-, Psi+, Psi-)`` (``qstack.physical.states``).
Transmissivity ``eta`` is a probability (0..1); fibre loss ``alpha_db_per_km``
in dB/km; lengths in km.

References (formulas re-derived here, not copied):

* Werner swap: Duer, Briegel, Cirac, Zoller, PRA 59, 169 (1999): swapping
  Werner pairs multiplies their Werner parameters.
* BBPSSW: Bennett, Brassard, Popescu, Schumacher, Smolin, Wootters, PRL 76,
  722 (1996).
* DEJMPS: Deutsch, Ekert, Jozsa, Macchiavello, Popescu, Sanpera, PRL 77, 2818
  (1996).
* PLOB bound: Pirandola, Laurenza, Ottaviani, Banchi, Nat. Commun. 8, 15043
  (2017): a pure-loss channel of transmissivity eta distributes at most
  ``-log2(1 - eta)`` ebits (or secret bits) per use without repeaters.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

__all__ = [
    "werner_param", "werner_fidelity", "werner_swap", "chain_fidelity", "swap_bell_diagonal_avg",
    "link_target_fidelity", "bbpssw", "bbpssw_pumping", "dejmps", "dejmps_werner",
    "purification_plan", "transmissivity", "plob_bound", "direct_rate_per_use",
    "expected_max_geometric", "repeater_rate_per_use", "plob_crossing_distance",
    "nested_rate_per_use", "link_cost", "link_pair_time_ns", "pipelined_rate_bound",
    "pipelined_rate_mva",
]


# ------------------------------------------------------------------ Werner states and swapping

def werner_param(fidelity: float) -> float:
    """Werner parameter ``w = (4F - 1) / 3`` of a Werner state of fidelity ``F``."""
    return (4.0 * fidelity - 1.0) / 3.0


def werner_fidelity(w: float) -> float:
    """Fidelity ``F = (1 + 3w) / 4`` of a Werner state with parameter ``w``."""
    return (1.0 + 3.0 * w) / 4.0


def werner_swap(f1: float, f2: float) -> float:
    """Fidelity after swapping two Werner pairs (BSM outcome corrected):
    ``F1 F2 + (1 - F1)(1 - F2) / 3``; equivalently ``w = w1 w2``."""
    return f1 * f2 + (1.0 - f1) * (1.0 - f2) / 3.0


def chain_fidelity(fidelities: Iterable[float]) -> float:
    """Fidelity of the end-to-end pair after swapping a chain of Werner pairs,
    hop by hop: ``1/4 + 3/4 prod(w_i)``. Order does not matter."""
    w = 1.0
    n = 0
    for f in fidelities:
        w *= werner_param(f)
        n += 1
    if n == 0:
        raise ValueError("a chain needs at least one link")
    return werner_fidelity(w)


def swap_bell_diagonal_avg(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Bell-diagonal coefficients after swapping ``a`` and ``b`` and correcting
    the outcome: the XOR convolution ``c[k] = sum_i a[i] b[i ^ k]``."""
    return [sum(a[i] * b[i ^ k] for i in range(4)) for k in range(4)]


def link_target_fidelity(end_to_end: float, n_links: int) -> float:
    """The fidelity each of ``n_links`` identical Werner links needs so that the
    swapped chain reaches ``end_to_end`` (the Werner swap formula inverted:
    ``w_link = w_e2e ** (1/n)``). Targets at or below 1/4 need nothing (1/4)."""
    if n_links < 1:
        raise ValueError("n_links must be >= 1")
    w = werner_param(end_to_end)
    if w <= 0.0:
        return 0.25
    return werner_fidelity(w ** (1.0 / n_links))


# ------------------------------------------------------------------ purification

def bbpssw(f1: float, f2: float | None = None) -> tuple[float, float]:
    """One BBPSSW round on two Werner pairs of fidelities ``f1`` (kept) and
    ``f2`` (sacrificed; default ``f1``): returns ``(F_out, p_success)``.

    Bilateral CNOT, both targets measured in Z, kept if the outcomes agree,
    then twirled back to a Werner state. With ``e = (1 - F)/3``:
    ``p = F1 F2 + F1 e2 + e1 F2 + 5 e1 e2`` and ``F' = (F1 F2 + e1 e2) / p``
    (Bennett et al. 1996, eq. for identical inputs generalised to two).
    """
    if f2 is None:
        f2 = f1
    e1, e2 = (1.0 - f1) / 3.0, (1.0 - f2) / 3.0
    p = f1 * f2 + f1 * e2 + e1 * f2 + 5.0 * e1 * e2
    return (f1 * f2 + e1 * e2) / p, p


def dejmps(a: Sequence[float], b: Sequence[float] | None = None) -> tuple[list[float], float]:
    """One DEJMPS round on Bell-diagonal pairs ``a`` (kept) and ``b``
    (sacrificed; default ``a``), coefficients in Bell-index order
    ``(Phi+, Phi-, Psi+, Psi-)``: returns ``(out_coefficients, p_success)``.

    Alice rotates her qubits by Rx(pi/2), Bob by Rx(-pi/2) (exchanging the
    Phi- and Psi- weights), bilateral CNOT, targets measured in Z, kept if
    equal. In DEJMPS' notation (A, B, C, D) = (Phi+, Psi-, Psi+, Phi-):
    ``N = (A1+B1)(A2+B2) + (C1+D1)(C2+D2)``, ``A' = (A1 A2 + B1 B2)/N``,
    ``B' = (C1 D2 + D1 C2)/N``, ``C' = (C1 C2 + D1 D2)/N``,
    ``D' = (A1 B2 + B1 A2)/N`` (Deutsch et al. 1996, for two different inputs).
    """
    if b is None:
        b = a
    A1, D1, C1, B1 = a   # Phi+, Phi-, Psi+, Psi-
    A2, D2, C2, B2 = b
    n = (A1 + B1) * (A2 + B2) + (C1 + D1) * (C2 + D2)
    A = (A1 * A2 + B1 * B2) / n
    B = (C1 * D2 + D1 * C2) / n
    C = (C1 * C2 + D1 * D2) / n
    D = (A1 * B2 + B1 * A2) / n
    return [A, D, C, B], n


def dejmps_werner(f: float, rounds: int = 1) -> tuple[float, float]:
    """``rounds`` rounds of DEJMPS recurrence starting from Werner pairs of
    fidelity ``f`` (each round on two copies of the previous output): returns
    ``(F_out, p_all)`` with ``p_all`` the product of the rounds' success
    probabilities (pairs consumed: ``2**rounds`` per attempt)."""
    e = (1.0 - f) / 3.0
    c = [f, e, e, e]
    p_all = 1.0
    for _ in range(rounds):
        c, p = dejmps(c)
        p_all *= p
    return c[0], p_all


def bbpssw_pumping(f_pair: float, steps: int, f_base: float | None = None) -> tuple[float, float]:
    """Entanglement pumping with BBPSSW: a kept pair of fidelity ``f_pair`` is
    purified ``steps`` times, each time against a fresh pair of fidelity
    ``f_base`` (default ``f_pair``). Returns ``(F_out, p_all)``."""
    if f_base is None:
        f_base = f_pair
    f, p_all = f_pair, 1.0
    for _ in range(steps):
        f, p = bbpssw(f, f_base)
        p_all *= p
    return f, p_all


def purification_plan(f_raw: float, f_target: float, scheme: str = "dejmps",
                      max_rounds: int = 8) -> tuple[int, float, float] | None:
    """Fewest recurrence rounds of ``scheme`` ("dejmps" or "bbpssw") that lift
    Werner pairs of fidelity ``f_raw`` to ``f_target``.

    Returns ``(rounds, F_out, expected_raw_pairs_per_output)`` (the last
    counts failed rounds: ``prod 2 / p_k`` over rounds), or None if
    ``max_rounds`` rounds cannot reach the target (e.g. ``f_raw <= 1/2``).
    """
    if f_raw >= f_target:
        return 0, f_raw, 1.0
    e = (1.0 - f_raw) / 3.0
    c = [f_raw, e, e, e]
    f = f_raw
    cost = 1.0
    for k in range(1, max_rounds + 1):
        if scheme == "dejmps":
            c, p = dejmps(c)
            f = c[0]
        elif scheme == "bbpssw":
            f, p = bbpssw(f)
        else:
            raise ValueError(f"unknown purification scheme {scheme!r}")
        cost = 2.0 * cost / p
        if f >= f_target:
            return k, f, cost
    return None


# ------------------------------------------------------------------ rates and bounds

def transmissivity(length_km: float, alpha_db_per_km: float = 0.2) -> float:
    """Fibre transmissivity ``10 ** (-alpha L / 10)``."""
    return 10.0 ** (-alpha_db_per_km * length_km / 10.0)


def plob_bound(eta: float) -> float:
    """Repeaterless capacity of a pure-loss channel, ebits per channel use:
    ``-log2(1 - eta)`` (PLOB 2017)."""
    if eta >= 1.0:
        return math.inf
    return -math.log1p(-eta) / math.log(2.0)   # log1p: exact for tiny eta


def direct_rate_per_use(length_km: float, alpha_db_per_km: float = 0.2,
                        eta_detector: float = 1.0) -> float:
    """Pairs per channel use of direct transmission of one half of a pair
    (heralded by detection): the probability ``eta eta_d`` the photon arrives.
    Always below the PLOB bound (``eta < -log2(1 - eta)``)."""
    return transmissivity(length_km, alpha_db_per_km) * eta_detector


def expected_max_geometric(p: float, n: int) -> float:
    """Expected maximum of ``n`` independent geometric variables (attempts until
    the first success, success probability ``p`` each):
    ``E = sum_{k>=0} 1 - (1 - q^k)^n`` with ``q = 1 - p``.

    Summed term by term for ``p >= 1e-4`` (no alternating binomial sums, which
    lose all precision for large ``n``). For smaller ``p`` the Euler-Maclaurin
    form ``H_n / |ln q| + 1/2`` is used (the integral of the summand is
    ``H_n / |ln q|``; the error is O(p n), below 1e-3 relative here).
    """
    if not 0.0 < p <= 1.0:
        raise ValueError("p must be in (0, 1]")
    if n < 1:
        raise ValueError("n must be >= 1")
    if p == 1.0:
        return 1.0
    log_q = math.log1p(-p)
    if p < 1e-4:
        return sum(1.0 / j for j in range(1, n + 1)) / -log_q + 0.5
    total = 1.0   # k = 0: the maximum is always >= 1
    k = 1
    while True:
        # 1 - (1 - q^k)^n, computed without cancellation
        term = -math.expm1(n * math.log1p(-math.exp(k * log_q)))
        total += term
        if term < 1e-16 * total:
            return total
        k += 1


def repeater_rate_per_use(length_km: float, n_links: int, alpha_db_per_km: float = 0.2,
                          eta_detector: float = 1.0) -> float:
    """Pairs per channel use of a chain of ``n_links`` equal elementary links
    with perfect memories and deterministic swaps, in the protocol that waits
    until every link holds a pair and then swaps them all:
    ``1 / E[max of n geometric(p)]`` with ``p = eta(L/n) eta_d``.

    One "use" is one attempt slot in which every elementary channel is used
    once (they run in parallel). Swap-as-soon-as-possible with memories only
    does better (a link regenerates as soon as its pair is swapped), so this
    is the model's lower bound on the simulated rate."""
    p = transmissivity(length_km / n_links, alpha_db_per_km) * eta_detector
    return 1.0 / expected_max_geometric(p, n_links)


def nested_rate_per_use(length_km: float, levels: int, alpha_db_per_km: float = 0.2,
                        eta_detector: float = 1.0, p_swap: float = 1.0) -> float:
    """Approximate pairs per channel use of a nested (doubling) repeater with
    ``2**levels`` links and swap success probability ``p_swap``:
    ``p0 (2 p_swap / 3) ** levels`` (each level waits ~3/2 times the lower
    level for two segments, then succeeds with ``p_swap``; Sangouard et al.,
    Rev. Mod. Phys. 83, 33 (2011), sec. III). With elementary links of fixed
    length this falls as a power of the distance, ``L ** log2(2 p_swap / 3)``."""
    n = 2 ** levels
    p0 = transmissivity(length_km / n, alpha_db_per_km) * eta_detector
    return p0 * (2.0 * p_swap / 3.0) ** levels


def plob_crossing_distance(n_links: int, alpha_db_per_km: float = 0.2, eta_detector: float = 1.0,
                           lo_km: float = 1.0, hi_km: float = 2000.0) -> float:
    """The distance (km) beyond which :func:`repeater_rate_per_use` with
    ``n_links`` links exceeds the PLOB bound of the whole fibre, by bisection
    on ``log(rate) - log(PLOB)`` (which grows with distance: the chain's rate
    decays ``n`` times slower in the exponent)."""
    def gap(length: float) -> float:
        r = repeater_rate_per_use(length, n_links, alpha_db_per_km, eta_detector)
        return math.log(r) - math.log(plob_bound(transmissivity(length, alpha_db_per_km)))

    if gap(hi_km) <= 0:
        raise ValueError("the chain does not beat PLOB within hi_km")
    if gap(lo_km) > 0:
        return lo_km
    for _ in range(100):
        mid = 0.5 * (lo_km + hi_km)
        if gap(mid) > 0:
            hi_km = mid
        else:
            lo_km = mid
    return 0.5 * (lo_km + hi_km)


def link_cost(rate_hz: float, fidelity: float) -> float:
    """Routing metric of one link: expected seconds per pair, inflated by the
    pair's Werner parameter so that noisy links look long:
    ``(1 / rate) / w`` (infinite for ``w <= 0`` or no rate). Additive along a
    path as an approximation of the time the path needs per usable pair."""
    w = werner_param(fidelity)
    if rate_hz <= 0.0 or w <= 0.0:
        return math.inf
    return 1.0 / (rate_hz * w)


# ------------------------------------------------------------------ pipelined circuits

def link_pair_time_ns(p: float, cycle_ns: float, herald_delay_ns: float) -> float:
    """Mean time (ns) a heralded link takes per pair when it makes pairs back
    to back, one generation process at a time: a geometric number ``K`` of
    attempts (success probability ``p`` each), one every ``cycle_ns``, and the
    herald ``herald_delay_ns`` after the successful emission, after which the
    next pair starts: ``E = (1/p - 1) cycle + herald``."""
    if not 0.0 < p <= 1.0:
        raise ValueError("p must be in (0, 1]")
    if cycle_ns < 0 or herald_delay_ns < 0:
        raise ValueError("cycle_ns and herald_delay_ns must be >= 0")
    return (1.0 / p - 1.0) * cycle_ns + herald_delay_ns


def credit_settle_ns(hop_delays_ns: Sequence[float]) -> float:
    """Classical delay (ns) from the head's link pair to the PairDone that
    settles it (``specs/network.md``, "Flow control" and "One link"), given
    the one-way delay of each link of the path (ns): over several links the
    Track's trip to the tail and the PairDone's back, ``2 sum(d)``; over one
    link only the PairDone's trip, ``d``, since the tail decides on its own
    link pair and no Track is sent."""
    if not hop_delays_ns or any(d < 0 for d in hop_delays_ns):
        raise ValueError("one delay >= 0 per link")
    total = float(sum(hop_delays_ns))
    return total if len(hop_delays_ns) == 1 else 2.0 * total


def pipelined_rate_bound(pair_time_ns: Sequence[float], window: int,
                         settle_ns: float, processes: int = 1) -> float:
    """Upper bound on the end-to-end pairs per second (Hz) of a circuit with
    flow-control window ``window`` over links whose mean times per pair are
    ``pair_time_ns`` (ns, :func:`link_pair_time_ns`; ``processes`` generation
    processes per link run in parallel), ``settle_ns`` the classical delay
    from the head's link pair to its PairDone (ns, :func:`credit_settle_ns`:
    the round trip head-tail, or on one link the one-way delay):

    ``X <= min( processes / max_i t_i ,  window / (t_head + settle) )``.

    The first term: every end-to-end pair uses one pair of every link (no
    losses), so no link may be slower than the circuit. The second is
    Little's law on the head's credit (``specs/network.md``, "Flow control"):
    each of its ``window`` credits is held from its link request through the
    pair's generation (mean ``t_head`` at least) and until its PairDone comes
    back (``settle`` at least), so at most ``window`` pairs complete per
    ``t_head + settle``. It ignores waits (for the other links' pairs, for
    swaps, for the link while it serves other credit, for the link layer's
    top-up to reach the link's other end), so it is reached only when those
    vanish."""
    if window < 1 or processes < 1 or not pair_time_ns:
        raise ValueError("window and processes must be >= 1, pair_time_ns non-empty")
    link = processes / max(pair_time_ns) * 1e9
    credit = window / (pair_time_ns[0] + settle_ns) * 1e9
    return min(link, credit)


def pipelined_rate_mva(pair_time_ns: float, window: int, settle_ns: float) -> float:
    """Estimated end-to-end pairs per second (Hz) of a circuit limited by its
    head's link and credit: the exact mean-value analysis (Reiser & Lavenberg,
    J. ACM 27, 313 (1980)) of a closed network in which ``window`` credits
    cycle through one first-come-first-served server (the head's link, mean
    ``pair_time_ns`` per pair, taken as exponential) and a pure delay
    ``settle_ns`` (:func:`credit_settle_ns`: a Track to the tail and the
    PairDone back; on one link the PairDone's trip), ns:

    ``R_k = t (1 + Q_(k-1))``, ``X_k = k / (R_k + Z)``, ``Q_k = X_k R_k``, ``X = X_window``.

    ``X_1 = 1 / (t + Z)``; ``X`` rises with the window towards the link rate
    ``1/t`` and stays below :func:`pipelined_rate_bound`. Left out: the other
    links' generation (a Track that waits at a repeater for its pair), which
    puts the simulated rate on a chain below this by up to about 15%; and the
    link layer's top-up trip to the link's other end when no other pair of
    the request is under way (window 1), which on one link adds a hop's
    delay per pair (about 17% below this at window 1 on 2 km hops)."""
    if window < 1 or pair_time_ns <= 0 or settle_ns < 0:
        raise ValueError("window >= 1, pair_time_ns > 0, settle_ns >= 0")
    queue = 0.0
    rate = 0.0
    for k in range(1, window + 1):
        resident = pair_time_ns * (1.0 + queue)
        rate = k / (resident + settle_ns)
        queue = rate * resident
    return rate * 1e9
