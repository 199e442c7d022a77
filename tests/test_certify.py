"""qstack certify: hand-built networks land at the stages they were built for.

Stages after Wehner, Elkouss & Hanson, Science 362, eaam9288 (2018); the
criteria are in qstack/experiments/certify.py's doc. Each network below is
built to pass every stage up to one and fail the next on one parameter.
"""
from __future__ import annotations

import math

import pytest

from qstack.config import network_from_dict
from qstack.experiments.certify import (certify, chsh_value, dephase_pair, format_report,
                                        teleport_fidelity, werner_coefficients)
from qstack.network.theory import chain_fidelity


def _chain(length_km: float, hops: int = 1, node: dict | None = None, **link) -> dict:
    names = ["alice"] + [f"r{i}" for i in range(1, hops)] + ["bob"]
    return {"nodes": {n: dict(node or {"t1_s": "inf", "t2_s": "inf"}) for n in names},
            "defaults": {"link": {"scheme": "sender-receiver", "length_km": length_km,
                                  "false_herald_prob": 0.0, "pair_fidelity": 0.95, **link}},
            "links": [[a, b] for a, b in zip(names, names[1:])]}


def _one(table: dict, rounds: int = 1):
    (report,) = certify(network_from_dict(table), rounds=rounds)
    return report


def test_chsh_closed_forms():
    # a Werner pair of parameter p: S = 2 sqrt(2) p (Horodecki); the bound S = 2 at
    # F = (1 + 3/sqrt(2)) / 4
    for f in (0.6, 0.78, 0.9, 1.0):
        p = (4 * f - 1) / 3
        assert chsh_value(werner_coefficients(f)) == pytest.approx(2 * math.sqrt(2) * p, abs=1e-12)
    f0 = (1 + 3 / math.sqrt(2)) / 4
    assert chsh_value(werner_coefficients(f0)) == pytest.approx(2.0, abs=1e-12)
    # readout flips scale each end's correlations by (1 - 2 p_flip)
    assert chsh_value([1, 0, 0, 0], 0.1, 0.05) == pytest.approx(2 * math.sqrt(2) * 0.8 * 0.9)
    # full dephasing of one qubit: Phi+ -> (Phi+ + Phi-)/2, a classically correlated state
    assert dephase_pair([1, 0, 0, 0], 0.0, 1.0) == pytest.approx([0.5, 0.5, 0, 0])
    assert chsh_value([0.5, 0.5, 0, 0]) == pytest.approx(2.0)
    # teleportation over Werner F: (2F + 1)/3; a misread bit mixes in the other Bell states
    assert teleport_fidelity(werner_coefficients(0.9)) == pytest.approx((2 * 0.9 + 1) / 3)
    m = 0.1      # |Phi+> only: each misread bit is a Pauli error, F = (1 - m)^2
    assert teleport_fidelity([1, 0, 0, 0], m) == pytest.approx((2 * (1 - m) ** 2 + 1) / 3)


def test_no_stage_when_no_link_gives_a_key():
    r = _one(_chain(400))                         # 80 dB of fibre: no key
    assert r.reached == -1
    s0 = r.stages[0]
    assert not s0.passed and "loss" in s0.held_back_by
    assert s0.figures["link_loss_db"] > s0.figures["link_max_loss_db"]


def test_trusted_repeater_only():
    # two 200 km links (about 40 dB each) give key one by one but not end to end
    r = _one(_chain(200, hops=2))
    assert r.reached == 0
    s1 = r.stages[1]
    assert "loss" in s1.held_back_by
    assert s1.figures["loss_db"] == pytest.approx(2 * r.stages[0].figures["link_loss_db"],
                                                  rel=1e-9)
    assert s1.figures["loss_db"] > s1.figures["max_loss_db"] > r.stages[0].figures["link_loss_db"]


def test_prepare_and_measure_without_bell_violating_pairs():
    # Werner links of 0.86: swapped twice F = 0.7453 < 0.7803, no CHSH violation
    r = _one(_chain(10, hops=2, pair_fidelity=0.86))
    assert r.reached == 1
    s2 = r.stages[2]
    assert s2.figures["fidelity"] == pytest.approx(chain_fidelity([0.86, 0.86]), abs=1e-9)
    assert s2.figures["chsh"] < 2 and "link fidelity" in s2.held_back_by
    assert "0.78" in s2.held_back_by               # the end-to-end fidelity it needs


def test_entanglement_distribution_without_memory():
    r = _one(_chain(10, node={"t1_s": "inf", "t2_s": 1e-5}))
    assert r.reached == 2
    s3 = r.stages[3]
    assert "T2 at alice and bob" in s3.held_back_by and s3.figures["teleport_fidelity"] < 2 / 3
    # the T2 it names is where teleportation over the stored pair reaches the classical 2/3
    need, wait = s3.figures["t2_needed_ns"], s3.figures["storage_ns"]
    lam = math.exp(-wait / need)
    stored = dephase_pair(werner_coefficients(0.95), lam, lam)
    assert teleport_fidelity(stored) == pytest.approx(2 / 3, abs=1e-6)
    # Werner 0.95 fully dephased keeps |Phi+> weight (F + (1 - F)/3)/2 < 1/2: below 2/3
    assert teleport_fidelity(dephase_pair(werner_coefficients(0.95), 0.0, 1.0)) == \
        pytest.approx((2 * (0.95 + 0.05 / 3) / 2 + 1) / 3, abs=1e-12)


def test_quantum_memory_network_and_more_rounds():
    r = _one(_chain(10, node={"t1_s": "inf", "t2_s": 1.0}))
    assert r.reached == 3
    # the same memories with 10^5 round trips to outlast fall back to stage 2
    r = _one(_chain(10, node={"t1_s": "inf", "t2_s": 1.0}), rounds=100_000)
    assert r.reached == 2


def test_readout_errors_hold_back_entanglement_distribution():
    r = _one(_chain(10, node={"t1_s": "inf", "t2_s": "inf", "measure_flip_prob": 0.2}))
    assert r.reached == 1 and "readout" in r.stages[2].held_back_by


def test_report_lists_every_pair_of_end_nodes_and_the_missing_stages():
    table = {"nodes": ["a", "hub", "b", "c"], "links": [["a", "hub"], ["hub", "b"], ["hub", "c"]]}
    reports = certify(network_from_dict(table))
    assert [(r.a, r.b) for r in reports] == [("a", "b"), ("a", "c"), ("b", "c")]
    text = format_report(reports)
    assert "Science 362" in text and "fault-tolerant" in text and "does not model" in text


def test_cli_certify(tmp_path, capsys):
    from qstack.cli import main

    assert main(["certify", "examples/three_nodes.toml"]) == 0
    out = capsys.readouterr().out
    assert "alice - bob" in out and "reached: 3 quantum memory" in out
    assert main(["certify", "examples/three_nodes.toml", "--ends", "alice,carol"]) == 2
    assert "unknown node 'carol'" in capsys.readouterr().err
