"""Measure-directly circuits (network type D) and the measured-pair stream above them.

Physics against the Werner closed forms: link pairs are Werner pairs of
fidelity F (SimplePairModel), n links swapped give a Werner pair of the
folded fidelity (tests/closed_forms.werner_swap, Duer-Briegel-Cirac-Zoller
1999), whose X-Z-plane correlations are E(a, b) = (4F - 1)/3 cos(a - b) on
Phi+: BBM92's QBER is 2(1 - F)/3 and E91's CHSH value S = 2 sqrt2 (4F - 1)/3.
The ends measure each link pair as it arrives (before any swap); the
statistics are those of the end-to-end pair because the swaps and the ends'
measurements act on different qubits (they commute), and the tail folds the
frame into its outcome (service.fold_frame, checked exactly below).

Invariants (hypothesis over chain lengths, seeds, cut-offs, swap strategies
and a link going down): no end holds a memory slot longer than one measurement, so an end's
peak occupancy is bounded by its link's generation processes (reserved
attempt slots plus the pairs being measured: 2 per process), whatever the
chain's length; every pair is delivered at most once at each end, with the
same pair id, and every pair the head delivers is one the tail delivered
(a pair the tail accepted whose PairDone a teardown cut off is delivered at
the tail only: the transport, which binds the tail's pair to the head's
header, never hands it to the application, checked through the socket).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import qstack
from qstack.network.service import (
    MD_BASIS_SETS, NetRequest, NetRequestType, SwapStrategy, fold_frame,
)
from qstack.sim.chain import build_chain

from .closed_forms import werner_swap

_D = NetRequestType.MEASURE_DIRECTLY


def end_to_end_fidelity(link_f: float, n_links: int) -> float:
    f = link_f
    for _ in range(n_links - 1):
        f = werner_swap(f, link_f)
    return f


# ---------------------------------------------------------------- the frame, exactly

_I2 = np.eye(2)
_X = np.array([[0, 1], [1, 0]], dtype=complex)
_Z = np.array([[1, 0], [0, -1]], dtype=complex)


def _obs(theta: float) -> np.ndarray:
    return math.cos(theta) * _Z + math.sin(theta) * _X


def test_fold_frame_gives_the_phi_plus_correlation_for_every_frame_and_setting():
    """<O(a) (x) O(theta)> on (I (x) X^x Z^z)|Phi+> must equal the folded
    (-1)^flip cos(a - theta'): exact linear algebra, tolerance 1e-12."""
    phi = np.array([1, 0, 0, 1], dtype=complex) / math.sqrt(2)
    for name, (head, tail) in MD_BASIS_SETS.items():
        for bell in range(4):
            x, z = bell >> 1, bell & 1
            p = np.linalg.matrix_power(_X, x) @ np.linalg.matrix_power(_Z, z)
            psi = np.kron(_I2, p) @ phi
            seen = set()
            for j, theta in enumerate(tail):
                k, flip = fold_frame(tail, j, 0, bell)
                seen.add(k)
                assert fold_frame(tail, j, 1, bell) == (k, 1 - flip)
                for a in head:
                    raw = np.real(np.vdot(psi, np.kron(_obs(a), _obs(theta)) @ psi))
                    want = (-1) ** flip * math.cos(a - tail[k])
                    assert abs(raw - want) < 1e-12, (name, bell, a, theta)
            # the frame permutes the tail's settings (a uniform draw stays uniform)
            assert seen == set(range(len(tail)))


def test_a_set_the_frame_does_not_map_onto_itself_is_refused():
    with pytest.raises(ValueError):
        fold_frame((0.0, math.pi / 4), 1, 0, 2)      # X: pi/4 -> 3pi/4, not in the set
    with pytest.raises(ValueError):
        NetRequest("b", type=_D, measure_basis="random")


# ---------------------------------------------------------------- a chain, network level

def run_chain(n_nodes: int, link_f: float, number: int, bases: str, seed: int, **req):
    net, names, ends = build_chain(n_nodes, fidelity=link_f, seed=seed, slots=8)
    net.submit(names[0], NetRequest(names[-1], number=number, type=_D, measure_basis=bases,
                                    correct=True, **req), to="network.qnp")
    net.run()
    return net, names, ends[names[0]], ends[names[-1]]


def paired(head, tail) -> list:
    by_id = {ok.pair_id: ok for ok in tail.oks}
    return [(a, by_id[a.pair_id]) for a in head.oks]


@pytest.mark.parametrize("repeaters", [1, 2, 4])
@pytest.mark.parametrize("link_f", [1.0, 0.97, 0.93])
def test_bbm92_qber_follows_werner_across_repeaters(repeaters, link_f):
    _net, _names, head, tail = run_chain(repeaters + 2, link_f, 3000, "ZX", seed=repeaters)
    pairs = paired(head, tail)
    assert len(pairs) == len(head.oks) == len(tail.oks) == 3000
    assert all(a.bell_index == b.bell_index == 0 for a, b in pairs)
    same = [(a.outcome != b.outcome) for a, b in pairs if a.setting == b.setting]
    q_want = 2 * (1 - end_to_end_fidelity(link_f, repeaters + 1)) / 3
    q = float(np.mean(same))
    # binomial standard error of the matched-basis pairs (~1500); 4 sigma (+1e-9 for q = 0)
    sigma = math.sqrt(q_want * (1 - q_want) / len(same))
    assert abs(q - q_want) <= 4 * sigma + 1e-9, (q, q_want, sigma)
    # the reported fidelity is the Werner fold of the link estimates
    assert all(abs(a.fidelity - end_to_end_fidelity(link_f, repeaters + 1)) < 1e-6
               for a, _ in pairs[:20])


def chsh(pairs) -> tuple[float, list]:
    """S = E(0, pi/4) - E(0, 3pi/4) + E(pi/2, pi/4) + E(pi/2, 3pi/4) from
    the head's settings 0 (0), 2 (pi/2) and the tail's 0 (pi/4), 2 (3pi/4)."""
    s, counts = 0.0, []
    for ai, bi, sign in ((0, 0, 1), (0, 2, -1), (2, 0, 1), (2, 2, 1)):
        prod = [1.0 if a.outcome == b.outcome else -1.0 for a, b in pairs
                if a.setting == ai and b.setting == bi]
        counts.append(len(prod))
        s += sign * float(np.mean(prod))
    return s, counts


@pytest.mark.parametrize("repeaters", [1, 2, 4])
@pytest.mark.parametrize("link_f", [1.0, 0.95, 0.85])
def test_e91_chsh_follows_werner_across_repeaters(repeaters, link_f):
    _net, _names, head, tail = run_chain(repeaters + 2, link_f, 4000, "E91", seed=10 + repeaters)
    pairs = paired(head, tail)
    assert len(pairs) == 4000
    f = end_to_end_fidelity(link_f, repeaters + 1)
    s_want = 2 * math.sqrt(2) * (4 * f - 1) / 3
    s, counts = chsh(pairs)
    e = (4 * f - 1) / 3 * math.sqrt(0.5)            # |E| of each CHSH setting
    # S sums four means of +-1 outcomes (~440 each): variance sum (1 - E^2)/n_i; 4 sigma
    sigma = math.sqrt(sum((1 - e * e) / n for n in counts))
    assert abs(s - s_want) <= 4 * sigma + 1e-9, (s, s_want, sigma)
    # the key settings (head pi/4 with tail pi/4, pi/2 with pi/2) agree but for 2(1-F)/3
    key = [(a.outcome != b.outcome) for a, b in pairs
           if (a.setting, b.setting) in ((1, 0), (2, 1))]
    q_want = 2 * (1 - f) / 3
    assert abs(np.mean(key) - q_want) <= 4 * math.sqrt(q_want * (1 - q_want) / len(key)) + 1e-9


def test_without_correct_the_raw_outcomes_and_the_frame_come_up():
    """correct=False: both ends report the pair's Bell index and raw outcomes;
    folding them by hand gives the same agreement as the tail's folding
    (perfect links: every matched Z/X pair agrees after folding)."""
    net, names, ends = build_chain(4, fidelity=1.0, seed=4, slots=8)
    net.submit(names[0], NetRequest(names[-1], number=400, type=_D, measure_basis="ZX"),
               to="network.qnp")
    net.run()
    head, tail = ends[names[0]], ends[names[-1]]
    pairs = paired(head, tail)
    assert len(pairs) == 400 and {a.bell_index for a, _ in pairs} == {0, 1, 2, 3}
    tail_set = MD_BASIS_SETS["ZX"][1]
    for a, b in pairs:
        assert a.bell_index == b.bell_index
        k, o = fold_frame(tail_set, b.setting, b.outcome, b.bell_index)
        if k == a.setting:
            assert o == a.outcome


# ---------------------------------------------------------------- memory and delivery invariants

def _watch(net, names):
    """The end nodes' devices (``peak_slots``: the most slots, stored or
    reserved for an attempt, they used at once)."""
    return {name: net.node(name).device for name in (names[0], names[-1])}


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(n_nodes=st.integers(2, 8), seed=st.integers(0, 10_000),
       cutoff_us=st.sampled_from([0, 30, 80, 300]),
       down=st.one_of(st.none(), st.tuples(st.integers(0, 6), st.integers(50, 4000))),
       bases=st.sampled_from(sorted(MD_BASIS_SETS)),
       strategy=st.sampled_from(list(SwapStrategy)))
def test_ends_hold_no_memory_and_pairs_come_once_at_both_ends(n_nodes, seed, cutoff_us, down,
                                                              bases, strategy):
    net, names, ends = build_chain(n_nodes, fidelity=0.97, seed=seed, slots=8)
    peaks = _watch(net, names)
    net.submit(names[0], NetRequest(names[-1], number=300, type=_D, measure_basis=bases,
                                    correct=True, cutoff_ns=cutoff_us * 1000, strategy=strategy),
               to="network.qnp")
    if down is not None:
        link, at_us = down
        a = names[link % (n_nodes - 1)]
        b = names[link % (n_nodes - 1) + 1]
        net.sim.schedule_at(at_us * 1000, net.set_link_up, a, b, False)
    net.run(until_ns=2_000_000_000)
    head, tail = ends[names[0]], ends[names[-1]]
    # one generation process per link (communication_qubits 1): its reserved
    # slot, plus the pair it heralded being measured
    m = 1
    for name, dev in peaks.items():
        assert dev.peak_slots <= 2 * m, (name, dev.peak_slots)
        assert dev.used_slots <= m             # nothing held once done
    h_ids = [ok.pair_id for ok in head.oks]
    t_ids = [ok.pair_id for ok in tail.oks]
    assert len(set(h_ids)) == len(h_ids) and len(set(t_ids)) == len(t_ids)
    assert set(h_ids) <= set(t_ids)
    assert all(ok.qubit is None and ok.outcome in (0, 1) for ok in head.oks + tail.oks)
    if down is None:
        # no link failure: every pair at both ends, the request complete
        assert set(h_ids) == set(t_ids) and len(h_ids) == 300 and not head.errors
    else:
        # the tail's surplus: pairs it accepted whose PairDone the teardown cut off
        assert len(set(t_ids) - set(h_ids)) <= 8
        if len(h_ids) < 300:
            assert head.errors


def test_kept_pairs_do_hold_memory_at_the_head():
    """The same watch on a type-K request: the head holds each half until its
    PairDone, so its peak grows past the measure-directly bound (the monitor
    sees memory when it is held)."""
    net, names, ends = build_chain(6, fidelity=0.97, seed=2, slots=8)
    peaks = _watch(net, names)
    net.submit(names[0], NetRequest(names[-1], number=200), to="network.qnp")
    net.run()
    assert len(ends[names[0]].oks) == 200
    assert peaks[names[0]].peak_slots > 2


# ---------------------------------------------------------------- through the socket

def _net(n_nodes: int, link_f: float) -> dict:
    nodes = ["alice"] + [f"r{i}" for i in range(n_nodes - 2)] + ["bob"]
    return {"formalism": "bd",
            "defaults": {"node": {"memory": 8, "t1_s": "inf", "t2_s": "inf"},
                         "link": {"scheme": "sender-receiver", "length_km": 5,
                                  "false_herald_prob": 0.0, "pair_fidelity": link_f}},
            "nodes": nodes, "links": [[a, b] for a, b in zip(nodes, nodes[1:])]}


def test_the_socket_stream_binds_the_same_pairs_in_the_same_order_at_both_ends():
    n = 700

    async def alice(ctx):
        async with await ctx.connect("bob", 5) as sock:
            first = await sock.measure_pairs(n - 200, bases="E91")
            rest = await sock.measure_pairs(200, bases="ZX")
            return first + rest

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        got = await sock.recv_measured(n)
        await sock.close()
        return got

    res = qstack.simulate(_net(4, 1.0), {"alice": alice, "bob": bob}, seed=3, until_s=600)
    res.raise_errors()
    a, b = res.results["alice"], res.results["bob"]
    assert [x.pair for x in a] == [y.pair for y in b] and len(a) == n
    assert [x.seq for x in a] == [y.seq for y in b] == list(range(n))
    assert a[0].initiator and not b[0].initiator
    # perfect links: E91's key settings and BBM92's matched settings agree
    for i, (x, y) in enumerate(zip(a, b)):
        key = (x.setting, y.setting) in ((1, 0), (2, 1)) if i < n - 200 else x.setting == y.setting
        if key:
            assert x.outcome == y.outcome


def test_measure_pairs_refuses_an_unknown_basis_set():
    async def alice(ctx):
        async with await ctx.connect("bob", 5) as sock:
            with pytest.raises(qstack.transport.socket.TransportError) as exc:
                await sock.measure_pairs(3, bases="XY")
            return int(exc.value.code)

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        await sock.close()

    res = qstack.simulate(_net(2, 1.0), {"alice": alice, "bob": bob}, seed=1, until_s=10)
    res.raise_errors()
    assert res.results["alice"] == int(qstack.core.errors.ErrorCode.INVALID_PARAMETER)


def test_the_ideal_network_layer_refuses_measure_directly_and_the_socket_says_so():
    async def alice(ctx):
        async with await ctx.connect("bob", 5) as sock:
            with pytest.raises(qstack.transport.socket.TransportError) as exc:
                await sock.measure_pairs(3)
            await sock.send(b"done")
            return int(exc.value.code), exc.value.detail

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        await sock.recv()
        await sock.close()

    res = qstack.simulate(_net(2, 1.0), {"alice": alice, "bob": bob}, seed=1, until_s=10,
                          network_layer="ideal")
    res.raise_errors()
    code, detail = res.results["alice"]
    assert code == int(qstack.core.errors.ErrorCode.TRANSPORT_NO_PAIR)
    assert "measure-directly" in detail


def test_a_device_counts_its_peak_of_stored_and_reserved_slots():
    from qstack.physical.device import NodeHardware, QuantumDevice
    from qstack.physical.engine import QuantumEngine

    eng = QuantumEngine(1)
    dev = QuantumDevice("a", eng, NodeHardware(num_qubits=4), np.random.default_rng(1))
    assert dev.reserve() and dev.reserve() and dev.peak_slots == 2
    q = eng.qubit()
    dev.store(q, 0, reserved=True)            # a reservation turned into a qubit: still 2
    assert dev.peak_slots == 2
    dev.store(eng.qubit(), 0)                 # one more: 3
    dev.free(q)
    dev.release_reservation()
    assert dev.used_slots == 1 and dev.peak_slots == 3
