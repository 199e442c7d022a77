"""The group examples (leader election, GHZ/W, secret sharing, anonymous
transmission) run, both as programs and as the APPS that ``qstack sim
examples/group.toml`` runs, and print physics: exact fidelities where the
closed form is exact (1e-5: printed to 5 decimals), perfect outcomes on
perfect pairs."""
from __future__ import annotations

import pytest

import qstack.api as api
from qstack.app import multipartite as mp
from tests.test_examples import EXAMPLES, load

GROUP = EXAMPLES / "group.toml"


@pytest.mark.parametrize("name", ["leader_election", "multipartite", "secret_sharing",
                                  "anonymous_transmission"])
def test_apps_run_on_the_group_network(name):
    module = load(name)
    res = api.simulate(GROUP, module.APPS, seed=1, until_s=60)
    assert res.ok, res.errors
    if name == "leader_election":
        leaders = res.results["alice"]
        assert len(leaders) == 10 and set(leaders) <= set(module.NAMES[:4])
        assert all(res.results[m] == leaders for m in module.NAMES[:4])   # all agree


def test_multipartite_example_fidelities():
    out = load("multipartite").fidelities(3, 0.95)
    assert out["ghz"] == pytest.approx(0.9028, abs=5e-5)           # the figure
    assert out["ghz"] == pytest.approx(out["ghz_closed"], abs=1e-9)
    assert out["w"] == pytest.approx(out["w_closed"], abs=1e-9)


def test_mains_print_their_figures(capsys):
    assert load("leader_election").main(["--elections", "20", "--fidelity", "1"]) == 0
    out = capsys.readouterr().out
    assert "attempts 20, failed and repeated: {}" in out           # one W state each
    assert load("leader_election").main(["--protocol", "anonymous", "--elections", "10",
                                         "--fidelity", "1"]) == 0
    assert "attempts 10, failed and repeated: {'repeated': 0}" in capsys.readouterr().out
    assert load("secret_sharing").main(["--rounds", "200"]) == 0
    out = capsys.readouterr().out
    assert "rebuild it: b'qstack' (0 wrong bits)" in out
    assert load("anonymous_transmission").main(["--runs", "4", "--fidelity", "1"]) == 0
    assert "mean 1.00000" in capsys.readouterr().out
    assert load("multipartite").main(["--n", "3", "--fidelity", "0.95"]) == 0
    assert "0.90278  0.90278" in capsys.readouterr().out
