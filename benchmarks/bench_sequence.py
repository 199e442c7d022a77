"""qstack side by side with SeQUeNCe 1.3.1 on the same hardware (issue 22).

The peer's scripts, hardware and recorded figures are in ``/work/shared/peers/
sequence/`` (``README.md``, ``bench_chain_fid.py``). Both sides model:

* hops of 2 km, the Bell-state measurement (BSM) station in the middle, fibre
  of 0.2 dB/km; classical messages 5 us/km (10 us per hop);
* memories of efficiency 0.9 emitting at 2 MHz, raw pair fidelity 0.95
  (Werner), coherence time T2 = 1 s; 10 memories per link direction
  (20 per node);
* BSM detectors of efficiency 0.9 with 10 Hz dark counts (150 ps resolution).

Workloads (SeQUeNCe's arguments in brackets): two nodes Bell-diagonal
[``2 0.02``, single-heralded], two nodes density matrix [``2 0.01
density_matrix barret_kok``], chains of 3, 5 and 9 nodes [``N 0.01``].

The qstack side is :func:`qstack.sim.chain.build_chain`'s chain with this
hardware's link model and node hardware: every node runs the
link layer's EGP under the network layer's circuit protocol (QNP, swap as soon
as possible) on :class:`~qstack.sim.network.SimNetwork`; the head asks for
``pairs`` end-to-end pairs. The link is a Werner pair heralded at the midpoint
(:class:`~qstack.physical.pair_model.SimplePairModel`, Bell state uniformly
random) whose figures are computed from the hardware: success probability per
attempt from a linear-optics BSM (:class:`~qstack.physical.optics.
LinearOpticsBSM`: 1/2 eta^2 with eta = memory efficiency x fibre(1 km) x
detector efficiency, plus dark-count heralds) = 0.299; one attempt round
(single-heralded) lasts one emission period plus the photon's trip to the
midpoint and the herald's trip back, 0.5 + 10 us; Barrett-Kok takes two such
rounds. None of the physical schemes of :mod:`qstack.link.schemes` is this
link: the double-click model has the same success probability but heralds a
dephased state (fidelity (1+V)/2 with only Z errors), which swaps to other
fidelities than SeQUeNCe's Werner pairs.

Reported for each workload and side: pairs per wall second (the headline),
pairs per simulated second (the network's own rate, which multiplexing and
pipelining decide), link attempts per end-to-end pair, the end-to-end
fidelity (of the state the two qubits really share, read from the engine) and
the Werner formula next to it, CPU seconds, and the qstack / SeQUeNCe ratio.
**Beside the ratio:** qstack samples each link's failed attempts in one
geometric draw (skip-ahead: exact for independent attempts), SeQUeNCe
simulates every attempt (11-14 events each) -- see ``ATTEMPT_NOTE``.

SeQUeNCe runs in the same benchmark run (a subprocess per workload) when
``QSTACK_SEQUENCE_PY`` names a Python with SeQUeNCe 1.3.1
(``/work/scratch/sequence13/bin/python`` when the variable is unset and that
file exists; ``QSTACK_SEQUENCE_PY=`` turns it off). Without it, the figures recorded in the peer's README are shown
instead, labelled as such. Runs are interleaved (qstack, SeQUeNCe, next
workload, ..., then the next repeat) and the medians are reported, with the
load average before and after (the machine may be busy).

Multiplexing knobs: ``processes_per_link`` (parallel generation processes per
link: the NodeHardware field ``PROCESSES_FIELD``) and ``window`` (end-to-end
pairs a circuit keeps in flight: QnpProtocol's ``window``) default to 10 and
"auto": SeQUeNCe's hardware has 10 memories per link direction, each of which
generates at once, so that is the matched hardware; ``--processes 1 --window 1``
gives qstack's one-pair-at-a-time protocols. The report shows the
configuration used.

    python -m benchmarks.bench_sequence                       # all, 3 repeats; JSON
    python -m benchmarks.bench_sequence --repeats 5 --only 2bd chain3
    python -m benchmarks.bench_sequence --processes 10 --window 4
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from qstack.network.service import NetRequest
from qstack.network.theory import chain_fidelity
from qstack.physical.device import NodeHardware
from qstack.physical.fibre import FibreChannel
from qstack.physical.optics import LinearOpticsBSM
from qstack.physical.pair_model import SimplePairModel
from qstack.sim.chain import build_chain
from qstack.sim.network import SimNetwork
from qstack.sim.probe import PairLedger, PairProbe, bind_probes

PEER_DIR = Path("/work/shared/peers/sequence")
#: SeQUeNCe's Python when ``QSTACK_SEQUENCE_PY`` is unset (a scratch venv outside the repo)
DEFAULT_SEQUENCE_PY = "/work/scratch/sequence13/bin/python"
#: NodeHardware field for parallel generation processes per link
PROCESSES_FIELD = "communication_qubits"

ATTEMPT_NOTE = ("qstack samples each link's failed attempts in one geometric draw (skip-ahead, "
                "exact for independent attempts); SeQUeNCe simulates every attempt (11-14 events "
                "each), so part of the wall-time ratio is that shortcut")


@dataclass(frozen=True)
class Hardware:
    """The hardware both simulators model (the peer README's list)."""

    hop_km: float = 2.0                  #: node to node, BSM station in the middle, km
    loss_db_per_km: float = 0.2          #: fibre attenuation, dB/km
    memory_efficiency: float = 0.9       #: probability a memory's photon is emitted
    emission_rate_hz: float = 2e6        #: memory excitation rate (SeQUeNCe's frequency), Hz
    raw_fidelity: float = 0.95           #: Werner fidelity of a heralded pair
    t2_s: float = 1.0                    #: memory coherence time, s (inf: none)
    detector_efficiency: float = 0.9     #: each BSM detector
    dark_count_hz: float = 10.0          #: each BSM detector's dark-count rate, Hz
    detector_resolution_ps: float = 150.0  #: the detectors' time bin (dark-count window), ps
    memories_per_link: int = 10          #: memories per node per link direction
    classical_us_per_km: float = 5.0     #: classical message delay, us/km

    def arrival(self) -> float:
        """Probability that a memory's photon reaches the midpoint station."""
        arm = FibreChannel(length_km=self.hop_km / 2, attenuation_db_per_km=self.loss_db_per_km)
        return self.memory_efficiency * arm.transmissivity()

    def bsm(self) -> LinearOpticsBSM:
        """The midpoint BSM: dark-count probability per detector = rate x time bin."""
        dark = self.dark_count_hz * self.detector_resolution_ps * 1e-12
        return LinearOpticsBSM(self.detector_efficiency, dark, visibility=1.0)

    def success_probability(self) -> float:
        """Per attempt: 1/2 eta^2 (eta = arrival x detector efficiency) plus dark heralds."""
        a = self.arrival()
        return self.bsm().success_probability(a, a)

    def delay_ns(self) -> int:
        """One-way classical delay between neighbours, ns."""
        return int(round(self.hop_km * self.classical_us_per_km * 1e3))

    def round_ns(self) -> int:
        """One attempt round: an emission period, the photon to the midpoint and
        the herald back (half a hop each way), ns."""
        return int(round(1e9 / self.emission_rate_hz)) + self.delay_ns()

    def link_model(self, rounds: int = 1) -> SimplePairModel:
        """The heralded Werner link: ``rounds`` attempt rounds per attempt
        (1 single-heralded, 2 Barrett-Kok); the herald reaches both ends one
        round trip to the midpoint after the last round's emission."""
        round_ns = self.round_ns()
        return SimplePairModel(self.success_probability(), self.raw_fidelity,
                               cycle_ns=rounds * round_ns,
                               herald_delay_ns=(rounds - 1) * round_ns + self.delay_ns(),
                               classical_delay_ns=self.delay_ns(), bell_index=None)

    def node_hardware(self, processes_per_link: int = 1, t2_s: float | None = None) -> NodeHardware:
        """A node: two link directions' memories, no T1 (SeQUeNCe's memories
        dephase only), T2 of ``t2_s`` (default the hardware's)."""
        t2 = self.t2_s if t2_s is None else t2_s
        return NodeHardware(num_qubits=2 * self.memories_per_link, t1_ns=math.inf,
                            t2_ns=t2 * 1e9, **{PROCESSES_FIELD: processes_per_link})


@dataclass(frozen=True)
class Workload:
    """One matched workload: the qstack chain and SeQUeNCe's script arguments."""

    key: str
    nodes: int
    formalism: str               #: qstack's: "bd" or "dm"
    rounds: int                  #: attempt rounds: 1 single-heralded, 2 Barrett-Kok
    pairs: int                   #: end-to-end pairs qstack delivers per run
    sequence_args: tuple         #: bench_chain_fid.py's arguments


WORKLOADS = (
    Workload("2bd", 2, "bd", 1, 4000, ("2", "0.02")),
    Workload("2dm", 2, "dm", 2, 2000, ("2", "0.01", "density_matrix", "barret_kok")),
    Workload("chain3", 3, "bd", 1, 2000, ("3", "0.01")),
    Workload("chain5", 5, "bd", 1, 1000, ("5", "0.01")),
    Workload("chain9", 9, "bd", 1, 1000, ("9", "0.01")),
)

#: SeQUeNCe's figures recorded in ``PEER_DIR/README.md`` (2-core machine, medians of 5
#: interleaved runs), shown when it cannot run here: pairs per wall s, per simulated s, fidelity.
RECORDED = {
    "2bd": (316, 55_000, 0.950), "2dm": (76, None, 0.950),
    "chain3": (115, 60_000, 0.903), "chain5": (40, 44_000, 0.819), "chain9": (23, 26_000, 0.680),
}


# ------------------------------------------------------------------ qstack side

def decayed_werner_bound(fidelity: float, n_links: int, wait_ns: float, t2_s: float) -> float:
    """Lowest end-to-end fidelity dephasing can leave: the 2 n_links qubits of a
    Bell-diagonal chain each waited at most ``wait_ns``; Z errors commute with
    the swaps, so the pair is phase-flipped with q = (1 - exp(-sum t / T2)) / 2
    and F -> F - q (4F - 1) / 3 (F's weight moves to a Bell state of weight (1-F)/3)."""
    if math.isinf(t2_s):
        return fidelity
    q = (1.0 - math.exp(-2 * n_links * wait_ns * 1e-9 / t2_s)) / 2.0
    return fidelity - q * (4.0 * fidelity - 1.0) / 3.0


def build(wl: Workload, hw: Hardware, processes_per_link: int = 1, window: int | str = 1,
          seed: int = 1, t2_s: float | None = None) -> tuple[SimNetwork, list[str], dict, PairLedger]:
    """The chain of ``wl`` on the real stack (:func:`~qstack.sim.chain.build_chain`
    with this hardware) with a :class:`~qstack.sim.probe.PairProbe` at both ends:
    ``(net, names, ends, ledger)``."""
    ledger = PairLedger()
    net, names, ends = build_chain(
        wl.nodes, wl.formalism, seed, fidelity=hw.raw_fidelity, model=hw.link_model(wl.rounds),
        hardware=hw.node_hardware(processes_per_link, t2_s),
        consumer=lambda node: PairProbe(node, ledger), qnp_options={"window": window})
    bind_probes(net, ends)
    return net, names, ends, ledger


def qstack_run(wl: Workload, hw: Hardware = Hardware(), pairs: int | None = None,
               processes_per_link: int = 1, window: int | str = 1, seed: int = 1,
               t2_s: float | None = None) -> dict:
    """Deliver ``pairs`` (default ``wl.pairs``) end-to-end pairs over ``wl``'s
    chain; figures as a dict (times in s, rates per s)."""
    pairs = wl.pairs if pairs is None else pairs
    t2 = hw.t2_s if t2_s is None else t2_s
    net, names, ends, ledger = build(wl, hw, processes_per_link, window, seed, t2)
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    w0, c0 = time.perf_counter(), time.process_time()
    net.run()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    got = len(ledger.pairs)
    errors = ledger.errors + list(net.errors)
    if got != pairs or errors:
        raise RuntimeError(f"{wl.key}: {got}/{pairs} pairs, errors {errors[:3]}")
    fids = ledger.fidelities()
    n_links = wl.nodes - 1
    werner = chain_fidelity([hw.raw_fidelity] * n_links)
    attempts = sum(lk.attempts for lk in net.links.values())
    heralded = sum(lk.pairs_heralded for lk in net.links.values())
    sim_s = net.sim.now * 1e-9
    return {
        "pairs": got, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
        "pairs_per_wall_s": round(got / wall, 1), "pairs_per_cpu_s": round(got / cpu, 1),
        "sim_s": round(sim_s, 6), "pairs_per_sim_s": round(got / sim_s, 1),
        "events": net.sim.events_fired,
        "link_attempts": attempts, "attempts_per_pair": round(attempts / got, 2),
        "link_pairs_per_pair": round(heralded / got, 3),
        "p_link": round(heralded / attempts, 4),
        "fidelity_mean": round(statistics.fmean(fids), 6),
        "fidelity_min": round(min(fids), 6),
        "werner_formula": round(werner, 6),
        # the lowest fidelity T2 decay allows for the longest wait seen (closed form)
        # (a qubit exists from its emission, one herald delay before its link pair's herald)
        "werner_decayed_bound": round(decayed_werner_bound(
            werner, n_links, max(ledger.ages_ns())
            + max(lk.model.herald_delay_ns(0) for lk in net.links.values()), t2), 6),
    }


# ------------------------------------------------------------------ SeQUeNCe side

def sequence_python() -> tuple[str | None, str]:
    """(SeQUeNCe's Python or None, why): ``QSTACK_SEQUENCE_PY`` if set (empty:
    off), else ``DEFAULT_SEQUENCE_PY`` if it exists."""
    py = os.environ.get("QSTACK_SEQUENCE_PY")
    if py is None:
        py = DEFAULT_SEQUENCE_PY if os.path.exists(DEFAULT_SEQUENCE_PY) else ""
        if not py:
            return None, f"QSTACK_SEQUENCE_PY unset and {DEFAULT_SEQUENCE_PY} absent"
    if not py:
        return None, "QSTACK_SEQUENCE_PY is empty (SeQUeNCe side off)"
    if not os.path.exists(py):
        return None, f"QSTACK_SEQUENCE_PY={py} does not exist"
    if not (PEER_DIR / "bench_chain_fid.py").exists():
        return None, f"{PEER_DIR / 'bench_chain_fid.py'} absent"
    return py, "measured here"


def sequence_run(py: str, wl: Workload, timeout_s: float = 900) -> dict:
    """SeQUeNCe's ``bench_chain_fid.py`` on ``wl``: its JSON figures (times in s)."""
    proc = subprocess.run([py, str(PEER_DIR / "bench_chain_fid.py"), *wl.sequence_args],
                          capture_output=True, text=True, timeout=timeout_s)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"SeQUeNCe {wl.key} failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    out = json.loads(line[5:])
    keep = ("pairs", "wall_s", "cpu_s", "pairs_per_wall_s", "pairs_per_sim_s", "sim_s", "events",
            "link_attempts", "p_link", "fid_true_mean")
    res = {k: out.get(k) for k in keep}
    res["attempts_per_pair"] = round(out["link_attempts"] / max(out["pairs"], 1), 2)
    res["pairs_per_cpu_s"] = round(out["pairs"] / out["cpu_s"], 1) if out["cpu_s"] else None
    return res


def _recorded(wl: Workload) -> dict:
    wall, sim, fid = RECORDED[wl.key]
    return {"pairs_per_wall_s": wall, "pairs_per_sim_s": sim, "fid_true_mean": fid}


# ------------------------------------------------------------------ side by side

def _median(runs: list[dict]) -> dict:
    """Per key, the median over runs of numbers (the first run's value otherwise)."""
    out = {}
    for key, value in runs[0].items():
        vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        out[key] = statistics.median(vals) if isinstance(value, (int, float)) and vals else value
    return out


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a and b else None


def _spread(runs: dict[str, list], key: str) -> list | None:
    """[lowest, highest] over the repeats of qstack's ``key`` over SeQUeNCe's
    in the same repeat (the two runs made back to back)."""
    ratios = [_ratio(q.get(key), s.get(key)) for q, s in zip(runs["qstack"], runs["sequence"])]
    ratios = [r for r in ratios if r is not None]
    return [min(ratios), max(ratios)] if ratios else None


def run(repeats: int = 3, processes_per_link: int = 10, window: int | str = "auto",
        only: tuple[str, ...] = (), pairs_scale: float = 1.0, hw: Hardware = Hardware()) -> dict:
    """The side-by-side comparison: medians of ``repeats`` interleaved runs."""
    workloads = [wl for wl in WORKLOADS if not only or wl.key in only]
    py, why = sequence_python()
    load0 = os.getloadavg()
    runs: dict[str, dict[str, list]] = {wl.key: {"qstack": [], "sequence": []} for wl in workloads}
    for rep in range(repeats):
        for wl in workloads:
            pairs = max(1, int(wl.pairs * pairs_scale))
            runs[wl.key]["qstack"].append(qstack_run(wl, hw, pairs, processes_per_link, window,
                                                     seed=1 + rep))
            if py:
                runs[wl.key]["sequence"].append(sequence_run(py, wl))
    model = hw.link_model(1)
    out: dict = {
        "config": {
            "hardware": dataclasses.asdict(hw),
            "link_model": {"p_success": round(model.p, 5), "werner_fidelity": model.fidelity,
                           "attempt_round_ns": hw.round_ns(), "classical_delay_ns": hw.delay_ns(),
                           "herald_delay_ns_single_heralded": model.herald_delay_ns(0)},
            "processes_per_link": processes_per_link, "window": window,
            "repeats": repeats, "figures": "medians of interleaved runs",
            "load_average_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
            "sequence": why if py else f"not run ({why}): figures recorded in "
                                         f"{PEER_DIR / 'README.md'}, not measured here",
            "note_beside_ratio": ATTEMPT_NOTE,
        },
        "workloads": {},
    }
    for wl in workloads:
        q = _median(runs[wl.key]["qstack"])
        s = _median(runs[wl.key]["sequence"]) if py else _recorded(wl)
        out["workloads"][wl.key] = {
            "nodes": wl.nodes, "qstack_formalism": wl.formalism,
            "sequence_args": " ".join(wl.sequence_args),
            "qstack": q, "sequence": s,
            "sequence_figures": "measured here" if py else "recorded (peer README)",
            "ratio_pairs_per_wall_s": _ratio(q["pairs_per_wall_s"], s.get("pairs_per_wall_s")),
            # steadier than wall time on a busy machine: what the work costs, not the wait for a core
            "ratio_pairs_per_cpu_s": _ratio(q["pairs_per_cpu_s"], s.get("pairs_per_cpu_s")),
            "ratio_pairs_per_sim_s": _ratio(q["pairs_per_sim_s"], s.get("pairs_per_sim_s")),
            # each repeat's own ratio (its qstack run over the SeQUeNCe run beside
            # it), lowest and highest: how far one run's ratio may be from the median
            "ratio_pairs_per_wall_s_range": _spread(runs[wl.key], "pairs_per_wall_s") if py
            else None,
            "ratio_note": ATTEMPT_NOTE,
        }
    return out


def table(res: dict) -> str:
    """The comparison as a text table."""
    cfg = res["config"]
    lines = [f"processes_per_link={cfg['processes_per_link']} window={cfg['window']} "
             f"repeats={cfg['repeats']} p={cfg['link_model']['p_success']} "
             f"load={cfg['load_average_before_after']}",
             f"SeQUeNCe: {cfg['sequence']}  (q: qstack, S: SeQUeNCe)"]
    columns = [("wall/s", "pairs_per_wall_s", ".0f"), ("cpu/s", "pairs_per_cpu_s", ".0f"),
               ("sim/s", "pairs_per_sim_s", ".0f"), ("att/pair", "attempts_per_pair", ".2f"),
               ("cpu s", "cpu_s", ".2f"), ("F", "fidelity_mean", ".5f")]

    def fmt(v, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else "-"
    lines.append("pairs per wall / CPU / simulated second, link attempts per pair, CPU s, fidelity")
    lines.append(f"{'workload':8} " + " ".join(f"{side + ' ' + title:>10}" for title, _, _ in columns
                                              for side in "qS")
                 + f" {'Werner':>8} {'wall x':>7} {'cpu x':>7} {'sim x':>7} {'wall x range':>15}")
    for key, w in res["workloads"].items():
        q, s = w["qstack"], dict(w["sequence"], fidelity_mean=w["sequence"].get("fid_true_mean"))
        cells = " ".join(f"{fmt(side.get(k), spec):>10}" for _, k, spec in columns for side in (q, s))
        lines.append(f"{key:8} {cells} {fmt(q['werner_formula'], '8.5f')} "
                     + " ".join(f"{fmt(w[k], '.2f'):>7}" for k in (
                         "ratio_pairs_per_wall_s", "ratio_pairs_per_cpu_s", "ratio_pairs_per_sim_s"))
                     + " " + format(" - ".join(fmt(x, ".1f") for x in
                                               w.get("ratio_pairs_per_wall_s_range") or ()) or "-",
                                    ">15"))
    lines.append("wall x: ratio of the medians; wall x range: the lowest and highest ratio of "
                 "one repeat's two runs, made back to back")
    lines.append(f"ratio: {cfg['note_beside_ratio']}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=10,
                        help="parallel generation processes per link (communication_qubits)")
    parser.add_argument("--window", type=lambda v: v if v == "auto" else int(v), default="auto",
                        help="end-to-end pairs a circuit keeps in flight (QnpProtocol window; "
                             "'auto' where the protocol offers it)")
    parser.add_argument("--only", nargs="*", default=(),
                        help=f"workloads among {[wl.key for wl in WORKLOADS]}")
    parser.add_argument("--pairs-scale", type=float, default=1.0,
                        help="multiply every workload's qstack pair count")
    parser.add_argument("--table", action="store_true", help="a text table after the JSON")
    args = parser.parse_args()
    result = run(args.repeats, args.processes, args.window, tuple(args.only), args.pairs_scale)
    print(json.dumps(result, indent=2))
    if args.table:
        print(table(result))
