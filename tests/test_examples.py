"""The programs in examples/ run, and what they print is physics.

Each example is loaded from its file (examples/ is not a package) and run with
a fixed seed. Fidelities of teleported states are exact (Werner pairs make
teleportation a depolarising channel: (2F+1)/3 for every input state, 1e-9);
measured statistics (the CHSH value, bob's error rate over the repeater) are
checked against their closed forms within 4 standard errors, computed from
the closed form itself -- a fixed seed makes the outcome reproducible, the
tolerance says how far chance may take it.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

import qstack.api as api
from qstack.network.theory import werner_swap

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
THREE_NODES = EXAMPLES / "three_nodes.toml"


def load(name: str):
    """Import examples/NAME.py as a module (as ``qstack sim`` loads an app file)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"qstack_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def teleport():
    return load("teleport")


@pytest.fixture(scope="module")
def chsh():
    return load("chsh")


@pytest.fixture(scope="module")
def relay():
    return load("relay")


def test_every_example_has_a_main():
    names = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    assert {"teleport", "chsh", "relay"} <= set(names)
    for name in names:
        assert callable(getattr(load(name), "main", None)), name


# ---------------------------------------------------------------- teleport

@pytest.mark.parametrize("f", [1.0, 0.9])
def test_teleported_states_arrive_with_two_f_plus_one_over_three(teleport, f):
    out = teleport.run(f, teleport.STATES, seed=3)
    assert len(out["fidelities"]) == len(teleport.STATES)
    assert out["fidelities"] == pytest.approx([(2 * f + 1) / 3] * len(teleport.STATES), abs=1e-9)


def test_teleport_main_prints_the_fidelities(teleport, capsys):
    assert teleport.main(["--states", "3", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "1.000000" in out and f"{(2 * 0.9 + 1) / 3:.6f}" in out


def test_teleport_apps_run_over_the_repeater_network(teleport):
    # What `qstack sim examples/three_nodes.toml examples/teleport.py` runs.
    res = api.simulate(THREE_NODES, teleport.APPS, seed=1, until_s=60)
    assert res.ok, res.errors
    f_end = werner_swap(0.95, 0.95)
    assert res.metrics["qubits_delivered"] == len(teleport.STATES)
    for theta, phi, q in res.results["bob"]:
        psi = teleport.ket(theta, phi)
        rho = res.net.engine.density_matrix([q.ref])
        assert float((psi.conj() @ rho @ psi).real) == pytest.approx((2 * f_end + 1) / 3, abs=1e-9)


# ---------------------------------------------------------------- CHSH

def test_chsh_value_matches_the_werner_formula(chsh):
    pairs, f = 2000, 0.95
    out = chsh.run(pairs, f, seed=1)
    assert out["pairs"] == pairs
    assert sum(out["counts"]) == pairs
    # Each E(ai, bj) is a mean of n_k outcomes +-1 with |mean| = (4F-1)/(3 sqrt2):
    # variance (1 - E^2)/n_k; S sums four independent ones.
    e = (4 * f - 1) / 3 / math.sqrt(2)
    sigma = math.sqrt(sum((1 - e * e) / n for n in out["counts"]))
    assert out["expected"] == pytest.approx(2 * math.sqrt(2) * (4 * f - 1) / 3)
    assert abs(out["S"] - out["expected"]) < 4 * sigma          # sigma ~ 0.067 here
    assert out["S"] > 2                                         # Bell violation
    for k, sign in enumerate((1, 1, 1, -1)):                    # each correlation, too
        assert abs(out["E"][k] - sign * e) < 4 * math.sqrt((1 - e * e) / out["counts"][k])


def test_chsh_main_prints_s(chsh, capsys):
    assert chsh.main(["--pairs", "200", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "S measured" in out and f"{chsh.werner_s(0.95):.4f}" in out


# ---------------------------------------------------------------- relay

def test_relay_error_rate_and_fidelity_over_the_repeater(relay):
    n = 400
    res = relay.run(n, seed=2)
    f_end = werner_swap(relay.LINK_FIDELITY, relay.LINK_FIDELITY)
    assert res.metrics["qubits_delivered"] == n
    assert res.metrics["send_failures"] == 0 and res.metrics["errors"] == 0
    # The network's estimate for the pairs used: the Werner swap formula, exactly.
    assert res.metrics["fidelity_mean"] == pytest.approx(f_end, abs=1e-9)
    # bob's errors are binomial(n, 2(1 - F_end)/3): within 4 standard deviations.
    p = 2 * (1 - f_end) / 3
    errors = res.results["bob"]["errors"]
    assert abs(errors - n * p) < 4 * math.sqrt(n * p * (1 - p))   # 25.8 +- 19.7


def test_relay_apps_are_what_the_cli_runs(relay):
    res = api.simulate(THREE_NODES, relay.APPS, seed=1, until_s=60)
    assert res.ok, res.errors
    assert res.results["alice"] == relay.N_QUBITS
    assert res.results["bob"]["qubits"] == relay.N_QUBITS


def test_relay_main_prints_the_metrics_table(relay, capsys):
    assert relay.main(["--qubits", "20"]) == 0
    out = capsys.readouterr().out
    for key in ("qubits_delivered", "fidelity_mean", "latency_mean_ms", "pairs_per_s"):
        assert key in out
