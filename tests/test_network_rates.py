"""Rates over distance: a repeater chain with memories beats the repeaterless
PLOB bound beyond a computed distance, direct transmission never does; rate
falls polynomially with repeaters (fixed spacing) and exponentially without.

Model: elementary link attempts succeed with the fibre transmissivity of
their length (0.2 dB/km, ideal detectors), one attempt per channel use
(slot), perfect memories, deterministic swaps, classical delay neglected.
Run on the real stack (tests/netstack.py: the simulator's driver, the EGP,
the QNP) set to that model: an attempt every ``SLOT_NS``, its herald at both
ends one slot after emission (so a pair after k attempts takes k slots, and
the next attempt starts as its herald arrives), zero classical delay, and
local operations (swaps, measurements) that take no time. A rate is pairs per
slot up to the last pair's delivery, held to the closed forms of
tests/closed_forms.py (PLOB bound; the wait-for-all-links lower bound).
Statistical tolerances: counts of 300 pairs, a few standard errors."""
import math

import numpy as np
import pytest

from qstack.network import theory as th
from qstack.network.circuit import QnpProtocol
from qstack.network.routing import Topology
from qstack.network.service import NetRequest
from tests import closed_forms as cf
from tests.netstack import ideal_hardware, link_model, stack_net

SLOT_NS = 1_000
#: Local operations take no time (the model's deterministic, instant swaps).
INSTANT = dict(gate_1q_ns=0, gate_2q_ns=0, measure_ns=0, init_ns=0)


def simulated_rate(length_km, n_links, pairs=300, seed=3):
    """End-to-end pairs per channel use of a chain of ``n_links`` equal links."""
    names = [f"n{i}" for i in range(n_links + 1)]
    topo = Topology.chain(n_links + 1)
    model = link_model(cf.transmissivity(length_km / n_links), 1.0, cycle_ns=SLOT_NS,
                       delay_ns=0, herald_delay_ns=SLOT_NS)
    net, book = stack_net(names, {(a, b): model for a, b in zip(names, names[1:])},
                          lambda name: [QnpProtocol(name, topo)], seed=seed,
                          hardware=ideal_hardware(4, **INSTANT), sink=True)
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    net.run()
    assert len(book.pairs) == pairs and not net.errors
    return pairs / (book.pairs[-1].time_ns / SLOT_NS)


def direct_rate(length_km, uses=2_000_000, seed=4):
    """Direct transmission: each use delivers a pair with probability eta."""
    rng = np.random.default_rng(seed)
    return rng.binomial(uses, th.transmissivity(length_km)) / uses


@pytest.mark.parametrize("n_links", [2, 4])
def test_repeater_chain_beats_plob_beyond_crossing_distance(n_links):
    d = th.plob_crossing_distance(n_links)
    # the computed crossing: 2 links ~34 km, 4 links ~27 km at 0.2 dB/km
    assert 20 < d < 40
    for length in (1.5 * d, 3 * d, 6 * d):
        r = simulated_rate(length, n_links)
        plob = cf.plob_bound(cf.transmissivity(length))
        assert r > 1.2 * plob, (length, r, plob)
        # and the model's lower bound holds (300 pairs: ~6% statistical error)
        assert r > 0.8 * cf.repeater_rate_lower_bound(cf.transmissivity(length / n_links),
                                                      n_links)
    # well below the crossing the chain stays under the bound
    length = 0.3 * d
    assert simulated_rate(length, n_links) < cf.plob_bound(cf.transmissivity(length))


@pytest.mark.parametrize("length", [5, 20, 50, 100])
def test_direct_transmission_never_exceeds_plob(length):
    eta = th.transmissivity(length)
    r = direct_rate(length)
    sem = math.sqrt(eta / 2_000_000) + 1e-12
    assert r <= th.plob_bound(eta) + 4 * sem
    assert abs(r - eta) < 5 * sem + 1e-9


def test_rate_polynomial_with_repeaters_exponential_without():
    spacing = 25.0
    lengths = np.array([50.0, 100.0, 200.0, 400.0])
    rep = np.array([simulated_rate(L, int(L / spacing), pairs=150) for L in lengths])
    direct = np.array([th.direct_rate_per_use(L) for L in lengths])
    # with repeaters: log(rate) vs log(L) is (close to) a line of small slope
    slope, icpt = np.polyfit(np.log(lengths), np.log(rep), 1)
    resid = np.log(rep) - (slope * np.log(lengths) + icpt)
    assert -2.0 < slope < 0.0 and np.abs(resid).max() < 0.3
    # without: log(rate) vs L is a line of slope -alpha ln(10)/10
    s_dir = np.polyfit(lengths, np.log(direct), 1)[0]
    assert abs(s_dir + 0.2 * math.log(10) / 10) < 1e-9
    # repeaters decay slower than any fixed exponential here: the ratio over
    # an 8x longer distance is above 1/64 (polynomial of degree < 2), direct ~ 1e-7
    assert rep[-1] / rep[0] > 1 / 64 and direct[-1] / direct[0] < 1e-6
