"""``qstack certify``: the stage of the quantum internet a network reaches.

The stages are those of S. Wehner, D. Elkouss and R. Hanson, "Quantum
internet: A vision for the road ahead", Science 362, eaam9288 (2018), Fig. 2.
Each stage adds a functionality to the one before; a pair of end nodes
reaches a stage when it has that stage's functionality and every earlier
one's. qstack computes the first four from the network's own parameters,
with qstack's physics, between every pair of end nodes along the shortest
path (by fibre length):

0. **Trusted repeater**: an end-to-end key, the intermediate nodes trusted
   (they learn it): every link of the path gives prepare-and-measure QKD a
   positive secret key, the asymptotic decoy-BB84 rate of the link's own
   pulse physics (``qkd_*`` keys; :func:`qstack.app.qkd.rates.asymptotic_rate`).
1. **Prepare and measure**: end-to-end quantum communication without
   trusting the nodes between: a state prepared at one end is measured at the
   other, so the photon crosses the whole path (intermediate nodes route it
   without measuring). Tested as decoy BB84 with the first link's source and
   the last link's detectors over the product of the links' transmissivities
   (the sum of their losses in dB): positive key, else the loss (or the
   error rate) holds it back; the loss at which the key ends is printed.
2. **Entanglement distribution**: end-to-end entanglement, heralded, with
   measurements done at once (no storage at the ends); the stage that enables
   device-independent protocols. Tested as a CHSH violation S > 2 by the end
   nodes' pair measured at once: the links' best heralded fidelities (over
   each scheme's parameter) swapped along the path as Werner pairs
   (:func:`qstack.network.theory.chain_fidelity`), each repeater's two-qubit
   gate depolarising the swap, the ends' readout errors scaling each
   correlation by (1 - 2 p_flip); S is the Horodecki maximum
   2 sqrt(t1² + t2²) of the two largest correlations of the Bell-diagonal
   state. Repeaters' storage while the other link is made and their readout
   errors are not counted (a bound from above on S).
3. **Quantum memory**: the end nodes hold qubits while they communicate,
   which lets them transfer unknown qubits (teleportation), the capability
   the paper names for this stage. Tested as teleportation over the stored
   pair beating the best classical (measure and prepare) average fidelity
   2/3: the pair's Bell-diagonal state after both end qubits dephased (T2:
   coherence e^(-t/T2)) for ``rounds`` round trips between the ends plus the
   expected time the end-to-end pair takes (the slowest link's mean time to
   a herald, as if every link were attempted at once), the sender's Bell
   measurement misread with its readout error (a wrong Pauli correction per
   misread bit); the average fidelity of teleportation over a Bell-diagonal
   pair whose |Φ+> weight is F is (2F + 1)/3 (Horodecki et al., PRA 60, 1888
   (1999)). Else the ends' T2 holds it back, and the T2 needed is printed.

Stages 4 (few-qubit fault tolerant) and 5 (quantum computing) need
fault-tolerant local operations, which qstack does not model: the report
says so and certifies neither.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from qstack.config import NetworkSpec, load_network
from qstack.core.errors import ConfigError

__all__ = ["STAGES", "StageResult", "PairReport", "load", "certify", "format_report", "as_dict",
           "chsh_value", "dephase_pair", "teleport_fidelity"]

STAGES = ("trusted repeater", "prepare and measure", "entanglement distribution",
          "quantum memory")
NOT_MODELLED = ("few-qubit fault-tolerant", "quantum computing")
REFERENCE = "Wehner, Elkouss & Hanson, Science 362, eaam9288 (2018)"


@dataclass
class StageResult:
    """One stage for one pair: passed or not, the figures, and what holds it back."""

    stage: int
    passed: bool
    detail: str
    held_back_by: str = ""
    figures: dict = field(default_factory=dict)


@dataclass
class PairReport:
    """The stages of one pair of end nodes: ``reached`` (-1: none)."""

    a: str
    b: str
    path: list[str]
    length_km: float
    stages: list[StageResult]

    @property
    def reached(self) -> int:
        n = -1
        for s in self.stages:
            if not s.passed:
                break
            n = s.stage
        return n


def load(path: str) -> NetworkSpec:
    return load_network(path)


# --------------------------------------------------------------- physics helpers

class _Transmission:
    """A channel of given transmissivity (what QkdLinkModel.params asks of one)."""

    def __init__(self, eta: float) -> None:
        self.eta = eta

    def transmissivity(self) -> float:
        return self.eta


def _key_rate(qkd: Any, eta: float) -> float:
    from qstack.app.qkd.rates import asymptotic_rate

    return max(0.0, float(asymptotic_rate(qkd.params(_Transmission(eta)))))


def _min_eta(qkd: Any) -> float | None:
    """The smallest transmissivity with a positive key (None: none even at 1)."""
    if _key_rate(qkd, 1.0) <= 0:
        return None
    lo, hi = -30.0, 0.0                  # log10 of the transmissivity
    if _key_rate(qkd, 10 ** lo) > 0:
        return 10 ** lo
    for _ in range(60):
        mid = (lo + hi) / 2
        if _key_rate(qkd, 10 ** mid) > 0:
            hi = mid
        else:
            lo = mid
    return 10 ** hi


def _db(eta: float) -> float:
    return -10 * math.log10(eta) if eta > 0 else math.inf


def _fibre_eta(link: Any) -> float:
    return link.model.fibre.with_length(link.length_km).transmissivity()


def _best_fidelity(model: Any) -> float:
    lo, hi = model.param_range() if hasattr(model, "param_range") else (0.0, 0.0)
    if hi <= lo:
        return float(model.fidelity(lo))
    lo = max(lo, hi * 1e-9)
    return max(float(model.fidelity(lo * (hi / lo) ** (i / 63))) for i in range(64))


def _herald_time_ns(model: Any) -> float:
    """Mean time to a herald at the parameter of best fidelity, ns."""
    lo, hi = model.param_range() if hasattr(model, "param_range") else (0.0, 0.0)
    params = [lo] if hi <= lo else [max(lo, hi * 1e-9) * (hi / max(lo, hi * 1e-9)) ** (i / 63)
                                     for i in range(64)]
    best = max(params, key=lambda p: float(model.fidelity(p)))
    p = float(model.success_probability(best))
    return math.inf if p <= 0 else model.cycle_ns(best) / p


def werner_coefficients(fidelity: float) -> list[float]:
    """Bell-diagonal coefficients (Φ+, Φ-, Ψ+, Ψ-) of the Werner pair of ``fidelity``."""
    rest = (1 - fidelity) / 3
    return [fidelity, rest, rest, rest]


def dephase_pair(coeffs: list[float], coherence_a: float, coherence_b: float) -> list[float]:
    """Both qubits of a Bell-diagonal pair dephased, coherences ×λa and ×λb:
    a Z on the pair with probability (1 - λa λb)/2 (Φ+ <-> Φ-, Ψ+ <-> Ψ-)."""
    q = (1 - coherence_a * coherence_b) / 2
    p1, p2, p3, p4 = coeffs
    return [(1 - q) * p1 + q * p2, (1 - q) * p2 + q * p1, (1 - q) * p3 + q * p4,
            (1 - q) * p4 + q * p3]


def teleport_fidelity(coeffs: list[float], flip: float = 0.0) -> float:
    """Average fidelity of teleporting a qubit over a Bell-diagonal pair
    (Φ+, Φ-, Ψ+, Ψ-), each of the sender's two Bell-measurement bits misread
    with probability ``flip``: (2F + 1)/3, F the |Φ+> weight after the wrong
    corrections (a misread X bit swaps Φ <-> Ψ, a misread Z bit + <-> -)."""
    p1, p2, p3, p4 = coeffs
    p1, p2, p3, p4 = ((1 - flip) * p1 + flip * p3, (1 - flip) * p2 + flip * p4,
                      (1 - flip) * p3 + flip * p1, (1 - flip) * p4 + flip * p2)
    f = (1 - flip) * p1 + flip * p2
    return (2 * f + 1) / 3


def chsh_value(coeffs: list[float], flip_a: float = 0.0, flip_b: float = 0.0) -> float:
    """The largest CHSH value of a Bell-diagonal pair (Horodecki 1995:
    2 sqrt(t1² + t2²), t the correlation matrix's two largest singular values),
    each end's readout flipping with ``flip_a`` / ``flip_b``."""
    p1, p2, p3, p4 = coeffs
    t = sorted((abs(p1 - p2 + p3 - p4), abs(-p1 + p2 + p3 - p4), abs(p1 + p2 - p3 - p4)),
               reverse=True)
    return 2 * math.sqrt(t[0] ** 2 + t[1] ** 2) * (1 - 2 * flip_a) * (1 - 2 * flip_b)


# --------------------------------------------------------------- the stages

def _path(spec: NetworkSpec, a: str, b: str) -> tuple[list[str], list[Any]]:
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(spec.nodes)
    for lk in spec.links:
        g.add_edge(lk.a, lk.b, weight=lk.length_km, link=lk)
    try:
        path = nx.shortest_path(g, a, b, weight="weight")
    except nx.NetworkXNoPath:
        return [], []
    return path, [g.edges[u, v]["link"] for u, v in zip(path, path[1:])]


def _stage0(links: list[Any]) -> StageResult:
    rates = [(_key_rate(lk.qkd, _fibre_eta(lk)), lk) for lk in links]
    worst_rate, worst = min(rates, key=lambda r: r[0])
    name = f"{worst.a}-{worst.b}"
    eta = _fibre_eta(worst)
    figs = {"lowest_link_key_per_pulse": worst_rate, "link": name, "link_loss_db": _db(eta)}
    if worst_rate > 0:
        return StageResult(0, True, f"every link gives a key: lowest {worst_rate:.3g} bits/pulse "
                                    f"({name}, {_db(eta):.1f} dB)", figures=figs)
    eta_min = _min_eta(worst.qkd)
    if eta_min is None:
        why = (f"link {name}: no key even without loss (misalignment "
               f"{worst.qkd.misalignment_error:g}, dark counts {worst.qkd.detector.dark_count_prob:g}"
               " per gate)")
        held = f"{name} error rate (qkd_misalignment / qkd_dark_count_prob)"
    else:
        why = (f"link {name}: no key at {_db(eta):.1f} dB loss; its QKD gives key up to "
               f"{_db(eta_min):.1f} dB")
        held = f"{name} loss ({_db(eta):.1f} dB > {_db(eta_min):.1f} dB)"
        figs["link_max_loss_db"] = _db(eta_min)
    return StageResult(0, False, why, held, figs)


def _stage1(links: list[Any]) -> StageResult:
    eta = math.prod(_fibre_eta(lk) for lk in links)
    # Alice's source at one end, Bob's detectors and optics at the other
    qkd = dataclasses.replace(links[-1].qkd, source=links[0].qkd.source)
    rate = _key_rate(qkd, eta)
    eta_min = _min_eta(qkd)
    figs = {"loss_db": _db(eta), "key_per_pulse": rate,
            "max_loss_db": None if eta_min is None else _db(eta_min)}
    if rate > 0:
        return StageResult(1, True, f"end-to-end loss {_db(eta):.1f} dB: {rate:.3g} bits/pulse "
                                    f"(key up to {_db(eta_min):.1f} dB)", figures=figs)
    if eta_min is None:
        return StageResult(1, False, "no key even without loss (misalignment "
                                     f"{qkd.misalignment_error:g})",
                           "the error rate (qkd_misalignment / qkd_dark_count_prob)", figs)
    return StageResult(1, False, f"end-to-end loss {_db(eta):.1f} dB over {len(links)} link(s): "
                                 f"no key beyond {_db(eta_min):.1f} dB",
                       f"loss ({_db(eta):.1f} dB > {_db(eta_min):.1f} dB)", figs)


def _end_to_end(spec: NetworkSpec, path: list[str], links: list[Any]) -> tuple[list[float], list]:
    from qstack.network.theory import chain_fidelity, werner_fidelity, werner_param

    fids = [_best_fidelity(lk.model) for lk in links]
    w = werner_param(chain_fidelity(fids))
    for r in path[1:-1]:                   # each swap's two-qubit gate depolarises the pair
        w *= 1 - spec.nodes[r].hardware.gate_2q_depolar
    return werner_coefficients(werner_fidelity(w)), fids


def _stage2(spec: NetworkSpec, path: list[str], links: list[Any]) -> StageResult:
    coeffs, fids = _end_to_end(spec, path, links)
    fa = spec.nodes[path[0]].hardware.measure_flip_prob
    fb = spec.nodes[path[-1]].hardware.measure_flip_prob
    s = chsh_value(coeffs, fa, fb)
    weakest = min(range(len(links)), key=lambda i: fids[i])
    wl = f"{links[weakest].a}-{links[weakest].b}"
    figs = {"fidelity": coeffs[0], "chsh": s, "link_fidelities": fids,
            "readout_flips": [fa, fb]}
    text = (f"end-to-end fidelity {coeffs[0]:.4f} from link fidelities "
            f"{', '.join(f'{f:.4f}' for f in fids)}; CHSH {s:.3f}")
    if s > 2:
        return StageResult(2, True, text + " > 2", figures=figs)
    f_need = _fidelity_needed(len(path) - 2, spec, path, fa, fb)
    held = (f"link fidelity ({wl} {fids[weakest]:.4f}; the end-to-end pair needs "
            f"{f_need:.4f})" if f_need <= 1 else
            f"readout errors at the ends ({fa:g}, {fb:g}: no pair violates CHSH)")
    return StageResult(2, False, text + " <= 2", held, figs)


def _fidelity_needed(repeaters: int, spec: NetworkSpec, path: list[str], fa: float,
                     fb: float) -> float:
    """The end-to-end Werner fidelity (before the repeaters' gate noise) at
    which the CHSH value reaches 2 (> 1: none does)."""
    from qstack.network.theory import werner_fidelity

    gate = math.prod(1 - spec.nodes[r].hardware.gate_2q_depolar for r in path[1:-1])
    lo, hi = 0.25, 1.0
    if chsh_value(werner_coefficients(werner_fidelity(gate)), fa, fb) <= 2:
        return math.inf
    for _ in range(60):
        mid = (lo + hi) / 2
        w = (4 * mid - 1) / 3 * gate
        if chsh_value(werner_coefficients(werner_fidelity(w)), fa, fb) > 2:
            hi = mid
        else:
            lo = mid
    return hi


def _round_trip_ns(links: list[Any]) -> float:
    return 2 * sum(lk.classical_delay_ns if lk.classical_delay_ns is not None
                   else lk.model.classical_delay_ns for lk in links)


def _stage3(spec: NetworkSpec, path: list[str], links: list[Any], rounds: int) -> StageResult:
    coeffs, _ = _end_to_end(spec, path, links)
    ha, hb = spec.nodes[path[0]].hardware, spec.nodes[path[-1]].hardware
    trip = _round_trip_ns(links)
    wait_ns = max(_herald_time_ns(lk.model) for lk in links) + rounds * trip
    flip = max(ha.measure_flip_prob, hb.measure_flip_prob)    # the worse sender

    def fidelity(la: float, lb: float) -> float:
        return teleport_fidelity(dephase_pair(coeffs, la, lb), flip)

    f = fidelity(math.exp(-wait_ns / ha.t2_ns), math.exp(-wait_ns / hb.t2_ns))
    figs = {"storage_ns": wait_ns, "t2_ns": [ha.t2_ns, hb.t2_ns], "teleport_fidelity": f}
    text = (f"stored {wait_ns * 1e-6:.4g} ms ({rounds} round trip(s) of {trip * 1e-6:.4g} ms + "
            f"{(wait_ns - rounds * trip) * 1e-6:.4g} ms to make the pair): teleportation "
            f"fidelity {f:.4f}")
    if f > 2 / 3:
        return StageResult(3, True, text + " > 2/3 (classical)", figures=figs)
    if fidelity(1.0, 1.0) <= 2 / 3:
        return StageResult(3, False, text + " <= 2/3", f"readout errors ({flip:g}) in the "
                           "sender's Bell measurement", figs)
    # the T2 (the same at both ends) at which teleportation after storage reaches 2/3
    lo, hi = math.log(wait_ns) - 10, math.log(wait_ns) + 60
    for _ in range(80):
        mid = (lo + hi) / 2
        lam = math.exp(-wait_ns / math.exp(mid))
        if fidelity(lam, lam) > 2 / 3:
            hi = mid
        else:
            lo = mid
    need = math.exp(hi)
    figs["t2_needed_ns"] = need
    short = [n for n, h in ((path[0], ha), (path[-1], hb)) if h.t2_ns < need] or [path[0]]
    held = (f"T2 at {' and '.join(short)} ("
            + ", ".join(f"{spec.nodes[n].hardware.t2_ns * 1e-9:.4g} s" for n in short)
            + f"; needs > {need * 1e-9:.4g} s)")
    return StageResult(3, False, text + " <= 2/3 (classical)", held, figs)


def certify(spec: NetworkSpec, ends: list[str] | None = None, rounds: int = 1) -> list[PairReport]:
    """The stages of every pair of ``ends`` (default: the nodes with one link,
    or every node if none has just one)."""
    if ends is None:
        degree = {n: len(spec.neighbours(n)) for n in spec.nodes}
        ends = [n for n in spec.nodes if degree[n] == 1] or list(spec.nodes)
    for n in ends:
        if n not in spec.nodes:
            raise ConfigError(f"--ends: unknown node {n!r} (nodes: {', '.join(spec.nodes)})")
    if len(ends) < 2:
        raise ConfigError("certify needs two end nodes")
    out = []
    for a, b in itertools.combinations(ends, 2):
        path, links = _path(spec, a, b)
        if not path:
            out.append(PairReport(a, b, [], math.inf, [StageResult(
                0, False, "no path between them", "connectivity")]))
            continue
        length = sum(lk.length_km for lk in links)
        stages = [_stage0(links), _stage1(links), _stage2(spec, path, links),
                  _stage3(spec, path, links, rounds)]
        out.append(PairReport(a, b, path, length, stages))
    return out


def format_report(reports: list[PairReport]) -> str:
    lines = [f"stages after {REFERENCE}"]
    for r in reports:
        lines.append("")
        route = " > ".join(r.path) if r.path else "no path"
        lines.append(f"{r.a} - {r.b}  ({route}; {r.length_km:g} km)")
        for s in r.stages:
            lines.append(f"  {s.stage} {STAGES[s.stage]:<26} {'yes' if s.passed else 'no ':<4}"
                         f"{s.detail}")
        reached = r.reached
        first_fail = next((s for s in r.stages if not s.passed), None)
        head = f"  reached: {reached} {STAGES[reached]}" if reached >= 0 else "  reached: none"
        if first_fail is not None:
            head += f"; held back by {first_fail.held_back_by}"
        lines.append(head)
    lines.append("")
    lines.append(f"stages 4 ({NOT_MODELLED[0]}) and 5 ({NOT_MODELLED[1]}) need fault-tolerant "
                 "local operations, which qstack does not model: not certified")
    return "\n".join(lines)


def as_dict(reports: list[PairReport]) -> dict:
    return {"reference": REFERENCE, "pairs": [
        {"a": r.a, "b": r.b, "path": r.path, "length_km": r.length_km, "reached": r.reached,
         "reached_name": STAGES[r.reached] if r.reached >= 0 else None,
         "stages": [dataclasses.asdict(s) for s in r.stages]} for r in reports],
        "not_modelled": list(NOT_MODELLED)}
