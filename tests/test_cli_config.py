"""Network files (qstack.config), the ``qstack`` command (``sim``, ``demo``) and
the top-level API re-exports."""
from __future__ import annotations

import json
import math
import textwrap

import pytest

import qstack
from qstack.cli import main as cli_main
from qstack.core.errors import ConfigError, ErrorCode

APP = textwrap.dedent('''
    async def alice(ctx):
        async with await ctx.connect("bob", 5) as sock:
            for _ in range(3):
                q = ctx.qubit()
                q.x()
                await sock.send_qubit(q)

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        return [await (await sock.recv_qubit()).measure() for _ in range(3)]

    APPS = {"alice": alice, "bob": bob}
''')


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- network files

def test_a_three_line_file_is_a_working_network(tmp_path):
    path = write(tmp_path, "n.toml", 'nodes = ["alice", "repeater", "bob"]\n'
                 'links = [["alice", "repeater"], ["repeater", "bob"]]\n')
    spec = qstack.load_network(path)
    assert list(spec.nodes) == ["alice", "repeater", "bob"]
    assert [(l.a, l.b) for l in spec.links] == [("alice", "repeater"), ("repeater", "bob")]
    # Defaults: double-click over 10 km, Bell-diagonal states.
    assert {l.scheme for l in spec.links} == {"double-click"}
    assert spec.formalism == "bd"


@pytest.mark.parametrize("text, field", [
    ('nodes = ["a", "b"]\nlinks = [["a", "c"]]\n', "links[0].nodes"),
    ('nodes = ["a", "b"]\nlinks = [{nodes = ["a", "b"], length_km = "far"}]\n', "length_km"),
    ('nodes = ["a", "b"]\nlinks = [{nodes = ["a", "b"], scheme = "smoke-signal"}]\n', "scheme"),
    ('nodes = ["a", "b"]\n[defaults.node]\nmemory = 2.5\n', "nodes.a.memory"),
    ('nodes = ["a"]\n[defaults.node]\nt1_s = 1.0\nt2_s = 3.0\n', "nodes.a"),
    ('nodes = ["a"]\nformalism = "qudit"\n', "formalism"),
    ('nodes = ["a"]\ncolour = "blue"\n', "colour"),
    ('links = []\n', "nodes"),
    ('nodes = ["a" \n', "not valid TOML"),
])
def test_a_bad_file_names_the_field(tmp_path, text, field):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        qstack.load_network(path)
    assert info.value.code == ErrorCode.BAD_CONFIG
    assert field in str(info.value)
    assert path in str(info.value)          # and the file it is in


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        qstack.load_network(tmp_path / "nope.toml")


# ---------------------------------------------------------------- qstack sim

def test_qstack_sim_runs_the_apps_of_a_file(tmp_path, capsys):
    net = write(tmp_path, "n.toml", 'nodes = ["alice", "bob"]\nlinks = [["alice", "bob"]]\n')
    app = write(tmp_path, "app.py", APP)
    out_json = tmp_path / "out.json"
    code = cli_main(["sim", net, app, "--seed", "3", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bob: [1, 1, 1]" in out          # X|0> teleported, measured in Z
    assert "qubits_delivered  3" in out
    data = json.loads(out_json.read_text())
    assert data["metrics"]["qubits_delivered"] == 3
    assert data["errors"] == {}


def test_qstack_sim_is_reproducible(tmp_path, capsys):
    net = write(tmp_path, "n.toml", 'nodes = ["alice", "bob"]\nlinks = [["alice", "bob"]]\n')
    app = write(tmp_path, "app.py", APP)
    outs = []
    for _ in range(2):
        cli_main(["sim", net, app, "--seed", "9"])
        outs.append([l for l in capsys.readouterr().out.splitlines() if not l.startswith("wall_s")])
    assert outs[0] == outs[1]


def test_qstack_sim_reports_bad_input_with_its_code(tmp_path, capsys):
    bad = write(tmp_path, "bad.toml", 'nodes = ["a"]\nlinks = [["a", "z"]]\n')
    app = write(tmp_path, "app.py", APP)
    assert cli_main(["sim", bad, app]) == 2
    err = capsys.readouterr().err
    assert f"error {int(ErrorCode.BAD_CONFIG)} BAD_CONFIG" in err and "links[0].nodes" in err

    good = write(tmp_path, "n.toml", 'nodes = ["alice", "bob"]\nlinks = [["alice", "bob"]]\n')
    no_apps = write(tmp_path, "noapps.py", "x = 1\n")
    assert cli_main(["sim", good, no_apps]) == 2
    assert "APPS" in capsys.readouterr().err


def test_qstack_sim_exit_code_says_an_app_failed(tmp_path, capsys):
    net = write(tmp_path, "n.toml", 'nodes = ["alice", "bob"]\nlinks = [["alice", "bob"]]\n')
    app = write(tmp_path, "app.py", "async def alice(ctx):\n    raise RuntimeError('boom')\n"
                "APPS = {'alice': alice}\n")
    assert cli_main(["sim", net, app]) == 1
    assert "alice: FAILED RuntimeError: boom" in capsys.readouterr().out


# ---------------------------------------------------------------- the demo

def test_demo_teleports_with_the_closed_form_fidelity(capsys):
    from qstack.demo import DEMO_NETWORK, make_apps

    res = qstack.simulate(DEMO_NETWORK, make_apps(40), seed=2)
    assert res.ok, res.errors
    fids = res.results["bob"]
    assert len(fids) == 40 and res.metrics["qubits_delivered"] == 40
    f_pair = res.metrics["fidelity_mean"]
    # Teleportation over a Bell-diagonal pair of fidelity F gives (2F+1)/3
    # averaged over the Bloch sphere (single states vary with the pair's error
    # axes). Tolerance: 3 standard errors of the 40-state mean, plus 5e-3 for
    # memory decay (T2 = 1 s, waits of ~10 ms), which only lowers it.
    expected = (2 * f_pair + 1) / 3
    n = len(fids)
    mean = sum(fids) / n
    std_err = (sum((f - mean) ** 2 for f in fids) / (n - 1) / n) ** 0.5
    assert expected - 3 * std_err - 5e-3 <= mean <= expected + 3 * std_err
    assert math.isfinite(f_pair) and f_pair > 0.5

    assert cli_main(["demo", "--qubits", "5"]) == 0
    assert "teleported 5 qubits" in capsys.readouterr().out


def test_top_level_api_is_re_exported():
    for name in ("simulate", "load_network", "QSocket", "Qubit", "NodeContext",
                 "TransportError", "QStackError", "ErrorCode"):
        assert getattr(qstack, name) is not None
    with pytest.raises(AttributeError):
        qstack.no_such_thing    # noqa: B018
