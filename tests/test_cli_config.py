"""Network files (qstack.config), the ``qstack`` command (``sim``, ``demo``) and
the top-level API re-exports."""
from __future__ import annotations

import json
import math
import re
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    ('nodes = ["a", "b"]\nlinks = [["a", "c"]]\n', "links[0][1]"),
    ('nodes = ["a", "b"]\nlinks = [{nodes = ["a", "b"], length_km = "far"}]\n', "length_km"),
    ('nodes = ["a", "b"]\nlinks = [{nodes = ["a", "b"], scheme = "smoke-signal"}]\n', "scheme"),
    ('nodes = ["a", "b"]\n[defaults.node]\nmemory = 2.5\n', "defaults.node.memory"),
    ('nodes = ["a"]\n[defaults.node]\nt1_s = 1.0\nt2_s = 3.0\n', "defaults.node.t1_s"),
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


def load_text(tmp_path, text, name="net.toml"):
    """Load ``text`` as a network file; the ConfigError's message (or None)."""
    path = write(tmp_path, name, text)
    try:
        qstack.load_network(path)
    except ConfigError as exc:
        return exc.detail
    return None


TWO = 'nodes = ["alice", "bob"]\n[[links]]\nnodes = ["alice", "bob"]\n'


# Issue 16 item 9, one test per defect: each of these loaded, or failed with
# another message, before the loader was rewritten.

@pytest.mark.parametrize("text, key, expected, got", [
    # named the internal t1_ns/t2_ns, without the value
    ('[nodes.alice]\nt2_s = -1\n', "nodes.alice.t2_s",
     'expected a number of seconds > 0', "got -1"),
    # named num_qubits
    ('[nodes.alice]\nmemory = 0\n', "nodes.alice.memory",
     "expected an integer >= 1", "got 0"),
    # named loss_db_per_km for a NaN length_km
    (TWO + "length_km = nan\n", "links[0].length_km", "expected a length in km >= 0",
     "got nan"),
])
def test_an_error_names_the_key_the_file_wrote(tmp_path, text, key, expected, got):
    msg = load_text(tmp_path, text)
    assert msg is not None and key in msg and expected in msg and got in msg, msg
    assert "t1_ns" not in msg and "num_qubits" not in msg and "loss_db_per_km" not in msg


def test_an_error_gives_the_file_and_line_of_the_key(tmp_path):
    text = ('nodes = ["alice", "bob"]\n\n[[links]]\nnodes = ["alice", "bob"]\n\n'
            '[[links]]   # the second link\nnodes = ["bob", "alice"]\nlength_km = -3\n')
    msg = load_text(tmp_path, text)
    # the duplicate link is the first fault found, on line 7, in links[1].nodes
    assert msg.startswith(f"{tmp_path / 'net.toml'}:7: links[1].nodes"), msg
    msg = load_text(tmp_path, text.replace('["bob", "alice"]', '["bob", "bob"]'))
    assert msg.startswith(f"{tmp_path / 'net.toml'}:7: links[1].nodes"), msg
    msg = load_text(tmp_path, 'nodes = ["a", "b"]\nlinks = [\n  ["a", "b"],\n'
                    '  {nodes = ["b", "c"]},\n]\n')
    assert msg.startswith(f"{tmp_path / 'net.toml'}:4: links[1].nodes[1]: unknown node \"c\""), msg


def test_a_default_is_blamed_where_it_is_written(tmp_path):
    msg = load_text(tmp_path, 'nodes = ["a", "b"]\n[defaults.node]\nt2_s = "never"\n')
    assert msg.startswith(f"{tmp_path / 'net.toml'}:3: defaults.node.t2_s: expected"), msg
    assert 'got "never"' in msg


@pytest.mark.parametrize("extra, key", [
    ("length_km = 1e300", "length_km"),                   # overflowed the clock mid-run
    ("attempt_ns = 9000000000000000000", "attempt_ns"),   # 2 attempts + herald > int64
    ("length_km = inf", "length_km"),
    ("loss_db_per_km = nan", "loss_db_per_km"),
    ("classical_delay_ns = 9223372036854775808", "classical_delay_ns"),
    ('scheme = "single-click"\nphase_noise_rad = 1e300', "phase_noise_rad"),  # ** 2 overflows
    ('scheme = "midpoint-source"\nn_max = 0', "n_max"),   # silently a dead link
    ('scheme = "midpoint-source"\nn_max = 100000000', "n_max"),  # a loop of 1e8 at run
])
def test_a_number_that_would_fail_later_is_refused_at_load(tmp_path, extra, key):
    msg = load_text(tmp_path, TWO + extra + "\n")
    assert msg is not None and f"links[0].{key}:" in msg, msg


@pytest.mark.parametrize("node", [
    "t2_s = 1e300",                                   # 1e309 ns: inf, silently
    "gate_1q_ns = 1e30",                              # a float taken as an int
    "gate_2q_ns = 9223372036854775807\nmeasure_ns = 9223372036854775807",  # a BSM's sum
    "t1_ns = nan",
])
def test_a_node_number_that_would_fail_later_is_refused_at_load(tmp_path, node):
    msg = load_text(tmp_path, f'[nodes.alice]\n{node}\n')
    assert msg is not None and "nodes.alice" in msg, msg


def test_the_attempt_cycle_is_bounded_by_the_longest_duration(tmp_path):
    # every duration is at most MAX_DURATION_NS (1000 s): far inside the
    # int64 clock whatever a scheme adds up (a double-click cycle is 2 a + d)
    from qstack.core.args import MAX_DURATION_NS

    a = MAX_DURATION_NS
    assert load_text(tmp_path, TWO + f"length_km = 0\nattempt_ns = {a}\n") is None
    msg = load_text(tmp_path, TWO + f"length_km = 0\nattempt_ns = {a + 1}\n")
    assert "links[0].attempt_ns" in msg and str(MAX_DURATION_NS) in msg, msg


@pytest.mark.parametrize("table, first, second", [
    ("[nodes.alice]", "t2_s = 1.0", "t2_ns = 5e8"),
    ("[nodes.alice]", "memory = 2", "num_qubits = 4"),
    ("[nodes.alice]", "t1_ns = 1e9", "t1_s = 2"),
    ("[defaults.node]", "num_qubits = 2", "memory = 4"),
])
def test_a_key_with_its_alias_in_one_table_is_an_error_naming_both(tmp_path, table, first,
                                                                    second):
    msg = load_text(tmp_path, f'[nodes.alice]\n{table}\n{first}\n{second}\n'
                    .replace("[nodes.alice]\n[nodes.alice]", "[nodes.alice]"))
    k1, k2 = first.split(" =")[0], second.split(" =")[0]
    assert msg is not None and k1 in msg and k2 in msg, msg


def test_a_node_key_overrides_the_default_whichever_alias_either_uses(tmp_path):
    path = write(tmp_path, "net.toml", '[defaults.node]\nmemory = 4\nt2_ns = 1e8\n'
                 '[nodes.a]\nnum_qubits = 2\nt2_s = 0.5\n[nodes.b]\n')
    spec = qstack.load_network(path)
    assert spec.nodes["a"].hardware.num_qubits == 2 and spec.nodes["b"].hardware.num_qubits == 4
    assert spec.nodes["a"].hardware.t2_ns == 5e8 and spec.nodes["b"].hardware.t2_ns == 1e8


@pytest.mark.parametrize("extra, key", [
    ('scheme = "single-click"\ntwirl = "yes"', "twirl"),
    ('scheme = "midpoint-source"\nbell_index = true', "bell_index"),
    ("attempt_ns = 0.5", "attempt_ns"),
    ("attempt_ns = 5000.0", "attempt_ns"),             # a float, even a whole one
    ("visibility = true", "visibility"),
    ("detector_efficiency = false", "detector_efficiency"),
    ("classical_delay_ns = 10.0", "classical_delay_ns"),
    ("scheme = 2", "scheme"),
])
def test_types_are_strict(tmp_path, extra, key):
    msg = load_text(tmp_path, TWO + extra + "\n")
    assert msg is not None and f"links[0].{key}: expected" in msg, msg


def test_node_types_are_strict(tmp_path):
    for node in ("memory = 2.0", "memory = true", "measure_flip_prob = true", 't1_s = "1"'):
        msg = load_text(tmp_path, f'[nodes.alice]\n{node}\n')
        assert msg is not None and f"nodes.alice.{node.split(' =')[0]}: expected" in msg, msg


def test_node_names_fit_the_wire_and_the_command_line(tmp_path):
    from qstack.config import wire_limits

    limit = wire_limits()[0]
    assert limit == 64                       # specs/link.md, specs/network.md: str, max_len 64
    ok = "n" * limit
    assert load_text(tmp_path, f'nodes = ["{ok}", "b"]\nlinks = [["{ok}", "b"]]\n') is None
    for bad in ("n" * (limit + 1), "", "node 1", "tab\\there", "new\\nline", "bell\\u0007"):
        msg = load_text(tmp_path, f'nodes = ["a", "{bad}"]\n')
        assert msg is not None and "nodes[1]: expected a node name" in msg, (bad, msg)
        msg = load_text(tmp_path, f'[nodes.a]\n[nodes."{bad}"]\n')
        assert msg is not None and "expected a node name" in msg, (bad, msg)


def test_a_name_at_the_wire_limit_runs_end_to_end(tmp_path):
    # Every message is encoded on the way (SimNetwork(check_wire=True)): a
    # 65-character name used to load and then fail in the middle of the run.
    from qstack.config import wire_limits

    a, b = "a" * wire_limits()[0], "b" * wire_limits()[0]

    async def alice(ctx):
        async with await ctx.connect(b, 5) as sock:
            q = ctx.qubit()
            q.x()
            await sock.send_qubit(q)

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        return await (await sock.recv_qubit()).measure()

    res = qstack.simulate({"nodes": [a, "r", b], "links": [[a, "r"], ["r", b]]},
                          {a: alice, b: bob}, seed=1)
    assert res.ok, res.errors
    assert res.results[b] == 1


def test_the_path_limit_is_what_the_wire_carries():
    from qstack.config import wire_limits
    from qstack.core.errors import EncodeError
    from qstack.core.messages import decode, encode
    from qstack.network.messages import CircuitSetup

    limit = wire_limits()[1]

    def setup(n):
        return CircuitSetup(circuit_id=1, head="n0", path=tuple(f"n{i}" for i in range(n)),
                            request_id=1, number=1, min_fidelity=0.5,
                            link_fidelity=(0.9,) * (n - 1), link_labels=(1,), strategy=0,
                            cutoff_ns=0, type=0, measure_basis="Z", app_tag=0)

    assert decode(encode(setup(limit))).path == setup(limit).path
    with pytest.raises(EncodeError, match="path"):       # refused before it is sent
        encode(setup(limit + 1))


def test_a_network_whose_circuit_path_could_exceed_the_wire_is_refused():
    from qstack.config import wire_limits

    limit = wire_limits()[1]

    def chain(n, ring=False):
        names = [f"n{i}" for i in range(n)]
        links = [[x, y] for x, y in zip(names, names[1:])] + ([[names[-1], names[0]]] * ring)
        return {"nodes": names, "links": links}

    qstack.network_from_dict(chain(limit))                # its longest path fits exactly
    with pytest.raises(ConfigError, match=rf"up to {limit + 1} nodes \(between n0 and "
                                          rf"n{limit}\).*CircuitSetup.path"):
        qstack.network_from_dict(chain(limit + 1))
    with pytest.raises(ConfigError, match=rf"up to {limit + 1} nodes"):
        qstack.network_from_dict(chain(limit + 1, ring=True))
    # Many nodes, short paths: a star of 2 x limit leaves has paths of 3 nodes.
    leaves = [f"leaf{i}" for i in range(2 * limit)]
    spec = qstack.network_from_dict({"nodes": ["hub", *leaves],
                                     "links": [["hub", x] for x in leaves]})
    assert len(spec.nodes) == 2 * limit + 1


def test_invalid_utf8_is_a_config_error_with_the_byte_offset(tmp_path):
    path = tmp_path / "net.toml"
    path.write_bytes(b'nodes = ["alice"]\n# caf\xe9\n')
    with pytest.raises(ConfigError) as info:
        qstack.load_network(path)
    assert f"{path}:2: not UTF-8 text: byte 0xe9 at byte offset 23" in info.value.detail


def test_the_readme_network_file_loads(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert blocks
    for block in blocks:
        qstack.load_network(write(tmp_path, "readme.toml", block))
    # and its example error is what the loader says
    shown = next(line for line in readme.splitlines() if line.startswith("net.toml:7:"))
    write(tmp_path, "net.toml", "# six lines\n\n\n\n\n[nodes.alice]\nt2_s = -1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        qstack.load_network("net.toml")
    assert info.value.detail == shown


# ---------------------------------------------------------------- property: any mutation

VALID = {
    "formalism": "bd",
    "defaults": {"node": {"memory": 4, "t2_s": 1.0}, "link": {"length_km": 5}},
    "nodes": {"alice": {"t1_s": 10.0, "gate_2q_depolar": 0.01, "measure_ns": 3000},
              "rep": {"num_qubits": 6, "t2_ns": 5e8}, "bob": {}, "rep2": {}},
    "links": [
        {"nodes": ["alice", "rep"], "scheme": "single-click", "length_km": 20,
         "emission_efficiency": 0.1, "twirl": True, "attempt_ns": 3000,
         "detector_efficiency": 0.8, "dark_count_prob": 1e-6, "phase_noise_rad": 0.1},
        {"nodes": ["rep", "bob"], "scheme": "midpoint-source", "bell_index": 1, "n_max": 20,
         "pair_fidelity": 0.95, "loss_db_per_km": 0.25, "classical_delay_ns": 50_000},
        {"nodes": ["alice", "bob"], "scheme": "sender-receiver", "absorption_efficiency": 0.4},
        ["bob", "rep2"],
    ],
}
ALIASES = [("memory", "num_qubits"), ("t1_s", "t1_ns"), ("t2_s", "t2_ns")]


def _tables(data):
    """(path, table) of every table that holds settings."""
    yield ("defaults", "node"), data["defaults"]["node"]
    yield ("defaults", "link"), data["defaults"]["link"]
    for name, table in data["nodes"].items():
        yield ("nodes", name), table
    for i, link in enumerate(data["links"]):
        if isinstance(link, dict):
            yield ("links", i), link


def _known_keys():
    from qstack.config import _LINK_OWN, _NODE_KEYS, SCHEMES, _scheme_params

    keys = set(_NODE_KEYS) | set(_LINK_OWN) | {"nodes", "scheme", "formalism", "defaults",
                                                "links", "node", "link"}
    for scheme in SCHEMES:
        keys |= set(_scheme_params(scheme)[1])
    return keys


WRONG = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 1e-320, 10**400, -(10**400)]),
    st.integers(-(1 << 70), 1 << 70), st.booleans(), st.text(max_size=6),
    st.sampled_from([[], [1, 2], {}, {"x": 1}, "inf", "nan", None]))
BAD_NAMES = st.one_of(
    st.just(""), st.text(min_size=65, max_size=70).filter(lambda t: " " not in t),
    st.sampled_from(["a b", "tab\there", "new\nline", "nul\x00", "bell\x07", "nbsp\u00a0",
                     "ideographic\u3000space", "zero\u200bwidth"]))


@st.composite
def mutated(draw):
    """A mutated copy of VALID, the keys (as written) the mutation touched, and
    whether it must be refused (else it may load or be refused)."""
    import copy

    data = copy.deepcopy(VALID)
    kind = draw(st.sampled_from(["value", "unknown", "alias", "name"]))
    _, table = draw(st.sampled_from(list(_tables(data))))
    if kind == "value" and table:               # a wrong type, NaN, a huge number
        key = draw(st.sampled_from(sorted(table)))
        table[key] = value = draw(WRONG)
        # no key takes NaN, nothing, a table, or a list other than two names
        never = (value is None or isinstance(value, (dict, list))
                 or isinstance(value, float) and math.isnan(value))
        return data, [key], never
    if kind in ("value", "unknown"):
        key = draw(st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=10)
                   .filter(lambda k: k not in _known_keys()))
        draw(st.sampled_from([data, table]))[key] = draw(WRONG)
        return data, [key], True
    if kind == "alias":                         # a key with its alias, both valid alone
        first, second = draw(st.sampled_from(ALIASES))
        table = draw(st.sampled_from([data["defaults"]["node"], *data["nodes"].values()]))
        table.pop(first, None)
        table.pop(second, None)
        value = {"memory": 3, "t1_s": 50.0, "t2_s": 2.0}[first]
        table[first] = value
        table[second] = value * (1 if first == "memory" else 1e9)
        return data, [first, second], True
    old = draw(st.sampled_from(sorted(data["nodes"])))
    new = draw(BAD_NAMES)
    data["nodes"] = {new if n == old else n: t for n, t in data["nodes"].items()}
    for link in data["links"]:
        ends = link["nodes"] if isinstance(link, dict) else link
        ends[:] = [new if e == old else e for e in ends]
    return data, [json.dumps(new, ensure_ascii=False)], True   # as a TOML file quotes it


def test_the_valid_network_of_the_property_loads():
    spec = qstack.network_from_dict(VALID)
    assert len(spec.links) == 4 and spec.nodes["rep"].hardware.num_qubits == 6


@given(mutated())
@settings(max_examples=400)
def test_a_mutated_network_loads_or_raises_a_config_error_naming_the_key(case):
    from qstack.config import MAX_TIME_NS, wire_limits

    data, keys, must_fail = case
    try:
        spec = qstack.network_from_dict(data, source="net.toml")
    except ConfigError as exc:                  # and no other exception
        assert any(k in exc.detail for k in keys), (keys, exc.detail)
        if len(keys) == 2:                      # a key with its alias: both are named
            assert all(k in exc.detail for k in keys), (keys, exc.detail)
        return
    assert not must_fail, f"{keys} loaded"
    # It loaded: then it is a network a run can use.
    for name, node in spec.nodes.items():
        assert 1 <= len(name) <= wire_limits()[0] and name.isprintable() and " " not in name
        assert node.hardware.t2_ns <= 2 * node.hardware.t1_ns
    for link in spec.links:
        assert link.a in spec.nodes and link.b in spec.nodes
        m = link.model
        for p in m.param_range():
            assert 0.0 <= m.success_probability(p) <= 1.0
            assert m.cycle_ns(p) + max(m.herald_delay_ns(0), m.herald_delay_ns(1)) <= MAX_TIME_NS


def _toml_key(k):
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


TOML_VALUES = ["1", "-3", "1.5", "-inf", "nan", "true", "1e300", '"s"', "'lit'",
               '"a # not a comment"', '"esc \\" quote ]"', '"""multi\nline "" """',
               "'''lit\nmulti'''", "[1, [2, 3]]", "[\n  1, # note\n  2,\n]",
               '{ x = 1, "y z" = [1, 2] }', '[{ a = "}" }]']


@st.composite
def toml_documents(draw):
    """TOML text in the forms network files use, and the line of every key
    path as written (the oracle for the locator)."""
    keys = st.text(st.sampled_from("ab_-1 .é\"'"), min_size=1, max_size=6)
    value = st.sampled_from(TOML_VALUES)
    lines, where = [], {}

    def put(path, text):
        where[path] = len(lines) + 1
        lines.extend(text.split("\n"))

    for k in draw(st.lists(keys, max_size=3, unique=True)):
        put((k,), f"{_toml_key(k)} = {draw(value)}")
    for t in draw(st.lists(keys, max_size=3, unique=True)):
        if draw(st.booleans()):
            lines.append("# a comment [not.a.table]")
        put(("tbl", t), f"[ tbl.{_toml_key(t)} ]   # a table")
        for k in draw(st.lists(keys, max_size=3, unique=True)):
            put(("tbl", t, k), f"{_toml_key(k)} = {draw(value)}")
    for i in range(draw(st.integers(0, 3))):
        put(("arr", i), "[[arr]]")
        for k in draw(st.lists(keys, max_size=3, unique=True)):
            put(("arr", i, k), f"  {_toml_key(k)}= {draw(value)}")
    return "\n".join(lines) + "\n", where


@given(toml_documents())
def test_the_key_locator_finds_the_line_of_every_key(doc):
    import tomllib

    from qstack.config import _locate

    text, where = doc
    tomllib.loads(text)                         # the oracle writes valid TOML
    found = _locate(text)
    for path, line in where.items():
        assert found.get(path) == line, (path, line, found.get(path), text)


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
    assert f"error {int(ErrorCode.BAD_CONFIG)} BAD_CONFIG" in err and "links[0][1]" in err

    good = write(tmp_path, "n.toml", 'nodes = ["alice", "bob"]\nlinks = [["alice", "bob"]]\n')
    no_apps = write(tmp_path, "noapps.py", "x = 1\n")
    assert cli_main(["sim", good, no_apps]) == 2
    assert "APPS" in capsys.readouterr().err


@pytest.mark.parametrize("source, says", [
    ("def f(:\n    pass\n", ":1: SyntaxError: "),
    ("import os\n\nraise RuntimeError('boom\\non two lines')\n",
     ":3: RuntimeError while importing: boom on two lines"),
    ("import sys\nsys.exit(3)\n", ":2: SystemExit while importing: 3"),
    ("x = 1\n", "expected a module-level APPS"),
    ("def f(ctx):\n    pass\nAPPS = {'alice': f}\n", "APPS['alice']: expected an async def"),
    ("async def f(ctx):\n    pass\nAPPS = {'carol': f}\n", "APPS['carol']: no such node"),
])
def test_qstack_sim_an_app_file_that_does_not_give_apps_is_bad_input(tmp_path, capsys, source,
                                                                     says):
    # Before: a syntax error or an exception at import escaped as a traceback (exit 1).
    net = write(tmp_path, "n.toml", 'nodes = ["alice", "bob"]\nlinks = [["alice", "bob"]]\n')
    app = write(tmp_path, "app.py", source)
    assert cli_main(["sim", net, app]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"qstack sim: error {int(ErrorCode.BAD_CONFIG)} BAD_CONFIG: {app}")
    assert says in err, err


@pytest.mark.parametrize("option", [["--seed", "-1"], ["--until", "nan"], ["--until", "-2"],
                                    ["--until", "1e300"]])
def test_qstack_sim_refuses_a_bad_option_as_bad_input(tmp_path, capsys, option):
    net = write(tmp_path, "n.toml", 'nodes = ["alice", "bob"]\nlinks = [["alice", "bob"]]\n')
    app = write(tmp_path, "app.py", APP)
    with pytest.raises(SystemExit) as info:
        cli_main(["sim", net, app, *option])
    assert info.value.code == 2
    assert f"argument {option[0]}: invalid" in capsys.readouterr().err


def test_qstack_sim_help_documents_its_exit_status(capsys):
    with pytest.raises(SystemExit):
        cli_main(["sim", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 every application returned; 1 an application failed" in text
    assert "2 bad input" in text and "does not import (syntax error, exception at import)" in text


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
