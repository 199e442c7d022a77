"""The qstack side of the SeQUeNCe comparison (benchmarks/bench_sequence.py).

Each matched workload runs with a tiny budget on the real stack and gives the
closed forms: the link's success probability is the linear-optics BSM's
1/2 eta^2; without memory decay every end-to-end pair has the Werner swap
formula's fidelity; with T2 = 1 s a two-node pair has exactly the dephased
formula and a chain lies between the Werner formula and its decay bound.
The SeQUeNCe side is skipped cleanly when its Python is absent. No test here
looks at a time.
"""
from __future__ import annotations

import math

import pytest

from benchmarks import bench_sequence as B
from qstack.network.service import NetRequest
from qstack.network.theory import chain_fidelity

HW = B.Hardware()
# The report rounds fidelities to 6 decimals: 1e-6 covers that rounding (the
# engine's own float error after <= 8 swaps is ~1e-15). A wrong link state
# would be far off: dephased instead of Werner pairs give 0.905 against
# 0.9033 on three nodes.
FID_TOL = 1e-6


def test_link_success_probability_is_the_bsm_closed_form():
    eta = HW.memory_efficiency * 10 ** (-HW.loss_db_per_km * HW.hop_km / 2 / 10) \
        * HW.detector_efficiency
    # dark counts (10 Hz x 150 ps = 1.5e-9 per detector and attempt) add false
    # heralds of order 1e-9: 1e-8 bounds them
    assert abs(HW.success_probability() - 0.5 * eta ** 2) < 1e-8
    assert abs(HW.success_probability() - 0.299) < 1e-3      # the README's figure
    model = HW.link_model(1)
    assert model.fidelity == HW.raw_fidelity
    # 10 us per hop one way (5 us/km); a round = 0.5 us emission period + 10 us
    assert HW.delay_ns() == 10_000 and model.cycle_ns(0) == 10_500
    assert HW.link_model(2).cycle_ns(0) == 21_000


@pytest.mark.parametrize("wl", B.WORKLOADS, ids=lambda wl: wl.key)
def test_each_workload_gives_the_werner_formula_without_decay(wl):
    r = B.qstack_run(wl, HW, pairs=12, t2_s=math.inf)
    expected = chain_fidelity([HW.raw_fidelity] * (wl.nodes - 1))
    assert r["pairs"] == 12
    assert abs(r["fidelity_min"] - expected) < FID_TOL
    assert abs(r["fidelity_mean"] - expected) < FID_TOL
    assert r["werner_decayed_bound"] == r["werner_formula"]
    # no cut-off: each end-to-end pair consumes exactly one pair per link
    assert r["link_pairs_per_pair"] == wl.nodes - 1
    assert r["sim_s"] > 0 and r["pairs_per_sim_s"] > 0


@pytest.mark.parametrize("wl", B.WORKLOADS, ids=lambda wl: wl.key)
def test_each_workload_with_t2_lies_between_the_formula_and_its_decay_bound(wl):
    r = B.qstack_run(wl, HW, pairs=12)            # T2 = 1 s, the hardware's
    assert r["werner_decayed_bound"] - FID_TOL <= r["fidelity_min"]
    assert r["fidelity_mean"] < r["werner_formula"]  # decay took something
    if wl.nodes == 2:
        # both qubits waited from emission to delivery: the bound is exact
        assert abs(r["fidelity_min"] - r["werner_decayed_bound"]) < FID_TOL


def test_decayed_werner_bound_closed_form():
    # q = (1 - e^(-2 n t / T2)) / 2; at T2 = inf nothing moves
    assert B.decayed_werner_bound(0.95, 3, 1e5, math.inf) == 0.95
    q = (1 - math.exp(-2 * 1 * 1e9 * 1e-9 / 1.0)) / 2
    assert math.isclose(B.decayed_werner_bound(0.95, 1, 1e9, 1.0), 0.95 - q * (4 * 0.95 - 1) / 3)
    # a long wait dephases fully (q -> 1/2): F -> (F + (1-F)/3) / 2
    assert math.isclose(B.decayed_werner_bound(0.95, 1, 1e15, 1.0), (0.95 + 0.05 / 3) / 2)


def test_attempts_per_link_pair_is_geometric():
    # 300 pairs of a 3-node chain: 600 link pairs, each 1/p attempts on average;
    # the mean of N geometric draws has sd sqrt(1-p)/p/sqrt(N) = 0.11: 5 sigma
    p = HW.success_probability()
    r = B.qstack_run(B.WORKLOADS[2], HW, pairs=300)
    per_link_pair = r["link_attempts"] / (r["pairs"] * r["link_pairs_per_pair"])
    sd = math.sqrt(1 - p) / p / math.sqrt(r["pairs"] * r["link_pairs_per_pair"])
    assert abs(per_link_pair - 1 / p) < 5 * sd


def test_window_is_a_parameter_and_keeps_the_formula():
    wl = B.WORKLOADS[3]                            # 5 nodes
    r = B.qstack_run(wl, HW, pairs=12, window=3, t2_s=math.inf)
    assert abs(r["fidelity_min"] - chain_fidelity([HW.raw_fidelity] * 4)) < FID_TOL


def test_processes_per_link_is_the_hardware_field():
    assert getattr(HW.node_hardware(4), B.PROCESSES_FIELD) == 4
    assert HW.node_hardware(1).num_qubits == 2 * HW.memories_per_link


def test_multiplexed_pipelined_chain_keeps_the_formula_and_runs_faster_in_model_time():
    """Ten processes per link and the auto window (the matched hardware):
    still exactly the Werner product (T2 = inf), and more pairs per simulated
    second than one process with window 1 (the closed forms give 10x on the
    link and about 5x on 5 nodes; asserted only as "more than twice", far
    beyond the few-percent spread of a 40-pair run)."""
    wl = B.WORKLOADS[3]                            # 5 nodes
    fast = B.qstack_run(wl, HW, pairs=40, processes_per_link=10, window="auto", t2_s=math.inf)
    slow = B.qstack_run(wl, HW, pairs=40, processes_per_link=1, window=1, t2_s=math.inf)
    assert abs(fast["fidelity_min"] - chain_fidelity([HW.raw_fidelity] * 4)) < FID_TOL
    assert abs(fast["fidelity_mean"] - chain_fidelity([HW.raw_fidelity] * 4)) < FID_TOL
    assert fast["pairs_per_sim_s"] > 2 * slow["pairs_per_sim_s"]


@pytest.mark.parametrize("wl", B.WORKLOADS, ids=lambda wl: wl.key)
def test_the_matched_configuration_ends_with_every_pair_read_and_every_slot_free(wl):
    """Ten processes per link and the auto window: the link layer makes
    pairs ahead of the circuit's use, and none may be left over. After the
    run every end-to-end pair was read once by the probe, none waits for its
    other end, no qubit lives in the engine and no memory slot is in use."""
    net, names, ends, ledger = B.build(wl, HW, 10, "auto", seed=3)
    net.submit(names[0], NetRequest(names[-1], number=30), to="network.qnp")
    net.run()
    assert len(ledger.pairs) == 30 and not ledger.waiting and not ledger.errors
    assert not net.errors
    assert net.engine.num_live_qubits == 0
    assert all(net.nodes[name].device.used_slots == 0 for name in names)


def test_sequence_side_is_skipped_cleanly_when_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("QSTACK_SEQUENCE_PY", "")
    assert B.sequence_python()[0] is None
    monkeypatch.setenv("QSTACK_SEQUENCE_PY", str(tmp_path / "no-python"))
    py, why = B.sequence_python()
    assert py is None and "does not exist" in why
    monkeypatch.delenv("QSTACK_SEQUENCE_PY")
    monkeypatch.setattr(B, "DEFAULT_SEQUENCE_PY", str(tmp_path / "absent"))
    assert B.sequence_python()[0] is None

    res = B.run(repeats=1, only=("2bd", "chain3"), pairs_scale=0.005)
    assert res["config"]["sequence"].startswith("not run")
    assert res["config"]["processes_per_link"] == 10 and res["config"]["window"] == "auto"
    for key in ("2bd", "chain3"):
        w = res["workloads"][key]
        assert w["sequence_figures"] == "recorded (peer README)"
        assert w["sequence"]["pairs_per_wall_s"] == B.RECORDED[key][0]
        assert w["ratio_pairs_per_wall_s"] > 0 and "geometric draw" in w["ratio_note"]
        assert w["ratio_pairs_per_wall_s_range"] is None     # (no runs of its own to pair)
    assert "recorded" in B.table(res)


def test_each_repeats_ratio_pairs_the_two_runs_made_back_to_back(monkeypatch):
    # a stand-in SeQUeNCe whose rate doubles each run: the median ratio is
    # the medians' ratio, the range each repeat's own (its qstack run over
    # the SeQUeNCe run right after it)
    rates = iter([100.0, 200.0, 400.0])
    monkeypatch.setattr(B, "sequence_python", lambda: ("stand-in", "measured here"))
    monkeypatch.setattr(B, "sequence_run", lambda py, wl: {
        "pairs_per_wall_s": next(rates), "pairs_per_cpu_s": None, "pairs_per_sim_s": None})
    res = B.run(repeats=3, only=("2bd",), pairs_scale=0.005)
    w = res["workloads"]["2bd"]
    assert w["sequence"]["pairs_per_wall_s"] == 200.0
    assert w["ratio_pairs_per_wall_s"] == B._ratio(w["qstack"]["pairs_per_wall_s"], 200.0)
    lo, hi = w["ratio_pairs_per_wall_s_range"]
    assert lo <= w["ratio_pairs_per_wall_s"] <= hi and 0 < lo < hi
    assert B._spread({"qstack": [{"r": 300.0}, {"r": 100.0}], "sequence": [{"r": 2.0}, {"r": 4.0}]},
                     "r") == [25.0, 150.0]
    assert B._spread({"qstack": [{"r": 1.0}], "sequence": [{"r": None}]}, "r") is None
    assert f"{lo:.1f} - {hi:.1f}" in B.table(res)


def test_sequence_side_runs_when_present():
    py, why = B.sequence_python()
    if py is None:
        pytest.skip(f"SeQUeNCe absent: {why}")
    s = B.sequence_run(py, B.WORKLOADS[0])
    assert s["pairs"] > 0 and s["link_attempts"] >= s["pairs"]
    # SeQUeNCe's Werner link pairs hold F = 0.95 up to its own T2 decay
    assert abs(s["fid_true_mean"] - HW.raw_fidelity) < 1e-3
