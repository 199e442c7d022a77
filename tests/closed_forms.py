"""Published closed forms the tests hold qstack to, written out from the papers.

Deliberately not imported from ``qstack.network.theory``: a test that takes
its expected value from the code under test cannot fail when that code is
wrong. Fidelity F is the squared fidelity to the target Bell state; Bell
coefficient vectors are in qstack's Bell-index order (Phi+, Phi-, Psi+, Psi-).
"""
from __future__ import annotations

import math


def werner_swap(f1: float, f2: float) -> float:
    """Fidelity after swapping Werner pairs of fidelities f1 and f2 (outcome
    corrected): Werner parameters multiply, w = w1 w2 with w = (4F - 1)/3
    (Duer, Briegel, Cirac, Zoller, PRA 59, 169 (1999)), i.e.
    F = f1 f2 + (1 - f1)(1 - f2)/3."""
    return f1 * f2 + (1 - f1) * (1 - f2) / 3


def bbpssw(f: float) -> tuple[float, float]:
    """One BBPSSW round on two Werner pairs of fidelity F (Bennett, Brassard,
    Popescu, Schumacher, Smolin, Wootters, PRL 76, 722 (1996)):
    F' = (F^2 + ((1-F)/3)^2) / (F^2 + 2F(1-F)/3 + 5((1-F)/3)^2), and the
    success probability is the denominator. Returns (F', p)."""
    e = (1 - f) / 3
    p = f * f + 2 * f * (1 - f) / 3 + 5 * e * e
    return (f * f + e * e) / p, p


def werner(f: float) -> list[float]:
    """Bell coefficients of the Werner state of fidelity F on Phi+."""
    e = (1 - f) / 3
    return [f, e, e, e]


def dejmps(c1: list[float], c2: list[float] | None = None) -> tuple[list[float], float]:
    """One DEJMPS round (Deutsch, Ekert, Jozsa, Macchiavello, Popescu, Sanpera,
    PRL 77, 2818 (1996)) on Bell-diagonal pairs c1 (kept) and c2 (sacrificed;
    default c1). In the paper's labels A = Phi+, B = Psi-, C = Psi+, D = Phi-,
    for identical inputs: A' = (A^2 + B^2)/N, B' = 2CD/N, C' = (C^2 + D^2)/N,
    D' = 2AB/N with N = (A + B)^2 + (C + D)^2 the success probability; for two
    different inputs the same derivation gives A' = (A1 A2 + B1 B2)/N,
    B' = (C1 D2 + D1 C2)/N, C' = (C1 C2 + D1 D2)/N, D' = (A1 B2 + B1 A2)/N,
    N = (A1 + B1)(A2 + B2) + (C1 + D1)(C2 + D2). Returns (coefficients in
    qstack order, N)."""
    c2 = c1 if c2 is None else c2
    a1, d1, c_1, b1 = c1          # qstack order: Phi+, Phi-, Psi+, Psi-
    a2, d2, c_2, b2 = c2
    n = (a1 + b1) * (a2 + b2) + (c_1 + d1) * (c_2 + d2)
    a = (a1 * a2 + b1 * b2) / n
    b = (c_1 * d2 + d1 * c_2) / n
    c = (c_1 * c_2 + d1 * d2) / n
    d = (a1 * b2 + b1 * a2) / n
    return [a, d, c, b], n


def transmissivity(length_km: float, alpha_db_per_km: float = 0.2) -> float:
    """Transmissivity of a fibre of ``length_km`` with loss ``alpha`` dB/km:
    eta = 10^(-alpha L / 10)."""
    return 10.0 ** (-alpha_db_per_km * length_km / 10.0)


def plob_bound(eta: float) -> float:
    """Repeaterless capacity of a pure-loss channel of transmissivity eta,
    ebits per channel use: -log2(1 - eta) (Pirandola, Laurenza, Ottaviani,
    Banchi, Nat. Commun. 8, 15043 (2017)); log1p keeps tiny eta exact."""
    return -math.log1p(-eta) / math.log(2.0)


def repeater_rate_lower_bound(p: float, n_links: int) -> float:
    """Pairs per channel use of ``n_links`` parallel links of success
    probability p per use, with perfect memories and deterministic, instant
    swaps, when the chain waits until every link holds a pair and then swaps
    them all: 1 / E[max of n geometric(p)], with E[max] = sum_{k>=0}
    (1 - (1 - q^k)^n), q = 1 - p (the maximum exceeds k with probability
    1 - P(all n <= k)). Swapping as soon as possible only does better."""
    q = 1.0 - p
    total, k = 0.0, 0
    while True:
        term = 1.0 - (1.0 - q ** k) ** n_links
        total += term
        if k > 0 and term < 1e-15:
            return 1.0 / total
        k += 1


def single_click(a: float, eta: float, p: float, v: float, overlap: float) -> tuple[float, float]:
    """(P_succ, F) of single-click heralding (Cabrillo et al., PRA 59, 1025
    (1999); the photon picture of specs/link.md §5): bright-state population
    a, per-arm click probability eta, dark-count probability p per detector
    and window, two-photon visibility V. A herald is detector + clicking and
    - not (or the mirror image): no photon and a dark count; one photon
    detected (eta, half to each detector) or lost with a dark count; two
    photons bunching with probability (1+V)/2. ``overlap`` is the coherence
    factor of the photon-heralded |01>,|10> part (mode overlap sqrt(V), phase
    noise, double excitation...)."""
    q = 1 - p
    w00 = (1 - a) ** 2 * p * q
    coh = a * (1 - a) * eta / 2 * q
    inc = a * (1 - a) * (1 - eta) * p * q
    w11 = a * a * q * ((1 - eta) ** 2 * p + eta * (1 - eta) + eta * eta * (1 + v) / 4)
    n = w00 + 2 * coh + 2 * inc + w11
    return 2 * n, (coh * (1 + overlap) + inc) / n
