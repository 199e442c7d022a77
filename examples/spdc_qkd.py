"""Entanglement-based QKD with an SPDC source: the QBER against the pair number.

A midpoint-source link (``MidpointSourceModel``: a polarisation-entangled SPDC
source between two memories, 10 km apart) makes pairs; both ends measure
every pair at once in Z (link requests of type MEASURE). The disagreement
rate is the QBER of entanglement-based QKD with that source, which grows
with the mean pair number μ because of multi-pair emission. It is compared
with Ma, Fung & Lo, PRA 76, 012307 (2007), Eqs. (9)-(10)
(``SPDCSource.entangled_qkd_gain_qber``), whose low-efficiency limit is
λ/(1+3λ), λ = μ/2: 4.3 % at μ = 0.1.

    python examples/spdc_qkd.py               # μ = 0.02, 0.05, 0.1, 0.2; 4000 pairs each
    python examples/spdc_qkd.py --pairs 20000
"""
from __future__ import annotations

import argparse
import math
import sys

from qstack.core.protocol import Protocol, on
from qstack.link.egp import EGP
from qstack.link.schemes import MidpointSourceModel
from qstack.link.service import CreateRequest, LinkOk, RequestType
from qstack.physical.device import NodeHardware
from qstack.physical.sources import SPDCSource
from qstack.sim.network import SimNetwork

MUS = (0.02, 0.05, 0.1, 0.2)
PAIRS = 4000


class _Outcomes(Protocol):
    """Top of the stack at one end: keeps the outcome of every measured pair, by
    the pair's sequence number."""

    name = "example.outcomes"

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.outcomes: dict[int, int] = {}

    @on(LinkOk)
    def _ok(self, ev, now):
        self.outcomes[ev.ent_id.seq] = ev.outcome

    @on(object)
    def _other(self, ev, now):
        return None


def model(mu: float) -> MidpointSourceModel:
    """The link: default SPDC source (thermal, one spatio-temporal mode) of mean
    ``mu`` pairs per pulse, perfect pairs, no false heralds, so every error is
    multi-pair emission."""
    return MidpointSourceModel(source=SPDCSource(mean_pair_number=mu), false_herald_prob=0.0,
                               pair_fidelity=1.0)


def measured_qber(mu: float, pairs: int = PAIRS, seed: int = 1) -> float:
    """Disagreement rate of ``pairs`` pairs measured in Z at both ends."""
    m = model(mu)
    hw = NodeHardware(num_qubits=4, t1_ns=math.inf, t2_ns=math.inf)
    net = SimNetwork(seed=seed, formalism="bd")
    rec = {}
    for node in ("a", "b"):
        net.add_node(node, hw)
    net.add_link("a", "b", model=m)
    for node, peer in (("a", "b"), ("b", "a")):
        net.add_protocol(node, EGP(node, {peer: m}, hardware=hw))
        rec[node] = net.add_protocol(node, _Outcomes(node))
    net.submit("a", CreateRequest("b", number=pairs, type=RequestType.MEASURE, measure_basis="Z"),
               to="link.egp")
    net.run()
    a, b = rec["a"].outcomes, rec["b"].outcomes
    if len(a) != pairs or len(b) != pairs:
        raise RuntimeError(f"expected {pairs} outcomes at each end, got {len(a)} and {len(b)}")
    # the pair is Phi+ (bell_index 0): outcomes agree unless there is an error;
    # the two ends' outcomes of a pair share its sequence number
    return sum(a[k] != b[k] for k in a) / pairs


def ma_fung_lo_qber(mu: float) -> float:
    """QBER of entanglement-based QKD with the link's source and per-photon
    efficiency (no dark counts, no misalignment): Ma, Fung & Lo (2007)."""
    m = model(mu)
    return m.source.entangled_qkd_gain_qber(m.t, m.t, 0.0, 0.0, 0.0)[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=PAIRS)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"{'mu':>6} {'QBER measured':>14} {'Ma-Fung-Lo':>11} {'lam/(1+3lam)':>13}")
    for mu in MUS:
        q = measured_qber(mu, args.pairs, args.seed)
        sd = math.sqrt(max(q * (1 - q), 1e-12) / args.pairs)
        lam = mu / 2
        print(f"{mu:6.3f} {q:9.4f}±{sd:.4f} {ma_fung_lo_qber(mu):11.4f} {lam / (1 + 3 * lam):13.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
