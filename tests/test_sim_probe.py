"""The simulator's pair probe (qstack/sim/probe.py): what it records is the
closed form, and it frees what it reads.

On a chain of Werner links with no memory decay every end-to-end pair has
the Werner swap formula's fidelity, 1/4 + 3/4 prod(w_i) (w = (4F - 1)/3).
With T2 on two nodes both halves of a pair were emitted by the same attempt,
one herald delay before the pair's herald, and dephased until the read: the
pair is phase-flipped with q = (1 - exp(-2 t / T2)) / 2, t = age + herald
delay, so F = F0 - q (4 F0 - 1) / 3, pair by pair. After a run every pair is
read once, none is left waiting and every memory slot of every node is free.
The compiled probe and its source give the same numbers
(tests/test_core_runtime_twins.py runs both)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core.errors import ErrorCode, QStackError
from qstack.network.service import NetErr, NetRequest, NetRequestType
from qstack.network.theory import chain_fidelity
from qstack.sim.chain import HERALD_NS, LINK_FIDELITY, ChainEnd, build_chain
from qstack.sim.probe import PairLedger, PairProbe, bind_probes

# The engine's float error after at most 4 swaps of Bell-diagonal states is
# ~1e-15; 1e-12 leaves room and is far below any modelling error (a wrong
# state or a missed decay moves F by > 1e-6 here).
TOL = 1e-12


def _probed_chain(n: int, pairs: int, seed: int = 1, t2_ns: float = math.inf):
    ledger = PairLedger()
    net, names, ends = build_chain(n, seed=seed, t2_ns=t2_ns,
                                   consumer=lambda node: PairProbe(node, ledger))
    bind_probes(net, ends)
    net.submit(names[0], NetRequest(names[-1], number=pairs), to="network.qnp")
    net.run()
    return net, ledger


@settings(max_examples=12, deadline=None)
@given(n=st.integers(2, 5), pairs=st.integers(1, 25), seed=st.integers(1, 10_000))
def test_every_pair_is_read_once_at_the_werner_formula_and_every_slot_is_freed(n, pairs, seed):
    net, ledger = _probed_chain(n, pairs, seed)
    expected = chain_fidelity([LINK_FIDELITY] * (n - 1))
    assert len(ledger.pairs) == pairs and not ledger.errors and not net.errors
    assert not ledger.waiting                      # both ends heard of every pair
    assert all(abs(f - expected) < TOL for f in ledger.fidelities())
    assert all(age >= 0 for age in ledger.ages_ns())
    reads = ledger.read_times_ns()
    assert reads == sorted(reads) and reads[-1] <= net.sim.now
    assert all(node.device.used_slots == 0 for node in net.nodes.values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_with_t2_each_two_node_pair_has_the_dephased_formula_for_its_own_age(seed):
    t2_ns = 2e6                       # 2 ms: a wait of tens of us dephases by ~1e-2
    net, ledger = _probed_chain(2, 30, seed, t2_ns)
    f0 = LINK_FIDELITY
    for fidelity, age, _ in ledger.pairs:
        t = age + HERALD_NS
        q = (1.0 - math.exp(-2.0 * t / t2_ns)) / 2.0
        assert abs(fidelity - (f0 - q * (4.0 * f0 - 1.0) / 3.0)) < TOL
    assert min(ledger.fidelities()) < f0 - 1e-4          # decay did take something
    assert all(node.device.used_slots == 0 for node in net.nodes.values())


def test_a_failed_request_lands_in_the_ledgers_errors():
    ledger = PairLedger()
    net, names, ends = build_chain(3, consumer=lambda node: PairProbe(node, ledger))
    bind_probes(net, ends)
    # no path of these links gives 0.9999: refused at the head
    net.submit(names[0], NetRequest(names[-1], number=2, min_fidelity=0.9999), to="network.qnp")
    net.run()
    assert not ledger.pairs and not ledger.waiting
    assert [type(e) for e in ledger.errors] == [NetErr]
    assert ledger.errors[0].code == ErrorCode.NET_UNREACHABLE_FIDELITY


def test_a_pair_delivered_measured_stops_the_run_with_a_defined_error():
    ledger = PairLedger()
    net, names, ends = build_chain(2, consumer=lambda node: PairProbe(node, ledger))
    bind_probes(net, ends)
    net.submit(names[0], NetRequest(names[-1], number=2, type=NetRequestType.MEASURE),
               to="network.qnp")
    with pytest.raises(QStackError, match="reads kept pairs") as err:
        net.run()
    assert err.value.code == ErrorCode.INVALID_PARAMETER
    assert not ledger.pairs


def test_a_probe_that_was_never_bound_stops_the_run_with_a_defined_error():
    ledger = PairLedger()
    net, names, ends = build_chain(2, consumer=lambda node: PairProbe(node, ledger))
    net.submit(names[0], NetRequest(names[-1], number=1), to="network.qnp")
    with pytest.raises(QStackError, match="bind_probes") as err:
        net.run()
    assert err.value.code == ErrorCode.INVALID_PARAMETER


def test_a_probe_takes_only_a_pair_ledger():
    # (compiled, its ledger field is typed; the source checks the same)
    with pytest.raises(TypeError, match="must be a PairLedger"):
        PairProbe("n0000", {"waiting": {}, "pairs": [], "errors": []})


def test_bind_probes_refuses_an_end_that_is_not_a_probe():
    net, names, ends = build_chain(2, consumer=ChainEnd)
    with pytest.raises(TypeError, match="is not a PairProbe"):
        bind_probes(net, ends)
