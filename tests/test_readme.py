"""The README's Python examples run as written (each block in a fresh
namespace) and print what the README says they print.

Each block is checked against what it shows: values that are exact by
construction exactly (the kernel's clock, counts, codes), physics against the
closed form it quotes (to the 4 decimals the README prints), and results that
depend on random outcomes by their form (bits are 0 or 1)."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _run(code: str) -> list[str]:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code, "README.md block", "exec"), {"__name__": "readme"})
    return out.getvalue().strip().splitlines()


def _block(marker: str) -> str:
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f"one README block with {marker!r}, found {len(found)}"
    return found[0]


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 5


def test_the_tour_teleports_a_plus_state_and_shares_two_pairs():
    lines = _run(_block('metadata=b"plus"'))
    # bob: (X outcome of the teleported |+>, two X outcomes of EPR halves)
    first, pairs = eval(lines[0])
    assert first == 0 and len(pairs) == 2 and set(pairs) <= {0, 1}
    table = dict(line.split(None, 1) for line in lines[1:])
    assert table["qubits_delivered"] == "1" and table["epr_pairs"] == "2"
    assert table["errors"] == "0" and table["send_failures"] == "0"
    # two Werner links of the double-click scheme swapped: the estimate the
    # network reports is F1 F2 + (1-F1)(1-F2)/3 of the links' goodness, < 1
    assert 0.5 < float(table["fidelity_mean"]) < 1


def test_the_faults_example_shows_a_send_failing_while_the_repeater_is_down():
    lines = _run(_block("restart_after_s"))
    assert eval(lines[0]) == ["ok", "TRANSPORT_NO_PAIR", "ok"]
    assert eval(lines[1]) == [(30_000_000, "crash", ("repeater",)),
                              (50_000_000, "restart", ("repeater",))]


def test_the_engine_example_prints_the_werner_swap_formula():
    (line,) = _run(_block("eng.bsm(b, c)"))
    f = 0.95
    assert float(line) == pytest.approx(f * f + (1 - f) * (1 - f) / 3, abs=1e-12)
    assert "F1*F2 + (1-F1)(1-F2)/3 = 0.9033" in _block("eng.bsm(b, c)")


def test_the_kernel_example_prints_the_simulated_time():
    assert _run(_block("sim.run_until_complete(ping())")) == ["1000"]


def test_the_hand_built_link_prints_three_measured_outcomes():
    (line,) = _run(_block("RequestType.MEASURE"))
    outcomes = eval(line)
    assert len(outcomes) == 3 and set(outcomes) <= {0, 1}


def test_the_protocol_of_your_own_takes_every_pair():
    assert _run(_block("class Sink(Protocol)")) == ["1000 []"]


def test_the_localhost_commands_are_the_cli_s():
    """Every ``qstack`` command of "Run a network on localhost" parses as the
    CLI defines it, and names files that exist (the commands themselves run
    against real processes in tests/test_emu.py and tests/test_emu_faults.py)."""
    import shlex

    from qstack.cli import build_parser

    text = README.read_text()
    section = text[text.index("## Run a network on localhost"):]
    (block,) = re.findall(r"```sh\n(.*?)```", section[:section.index("\n## ", 5)], flags=re.S)
    commands = [shlex.split(line.split("#")[0].rstrip(" &")) for line in block.splitlines()
                if line.startswith("qstack ")]
    assert {c[1] for c in commands} == {"net", "run"} and len(commands) >= 8
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv[1:])
        for value in vars(args).values():
            if isinstance(value, str) and value.endswith((".toml", ".py")):
                assert (README.parent / value).exists(), value
    actions = {c[2] for c in commands if c[1] == "net"}
    assert actions == {"up", "status", "fault", "down"}


def test_the_qkd_block_ends_with_identical_keys_and_its_leaks():
    lines = _run(_block("postprocess.run_block"))
    ok, length, same = lines[0].split()
    assert ok == "True" and same == "True" and int(length) > 0
    from qstack.physical.pulses import HAVE_CYTHON
    if HAVE_CYTHON:     # the pulse kernel's own generator: the README shows this run's length
        assert f"True {length} True" in _block("postprocess.run_block")
    assert lines[1].startswith("LeakRecord(error_correction=")


def test_the_bbm92_example_gives_equal_keys_at_the_werner_qber():
    (line,) = _run(_block("bbm92(ctx, sock, 4000"))
    ok, qber, length, same = line.split()
    assert ok == "True" and same == "True" and int(length) > 0
    # end-to-end Werner F after one swap of F = 0.99 links; QBER 2(1 - F)/3;
    # about 1000 test bits: 4 binomial standard errors
    f = 0.99 * 0.99 + 0.01 * 0.01 / 3
    q = 2 * (1 - f) / 3
    assert abs(float(qber) - q) <= 4 * (q * (1 - q) / 1000) ** 0.5


def test_the_qkd_example_gives_identical_keys_at_both_ends():
    lines = _run(_block("qkd.bb84_receive"))
    ok, length, same = lines[0].split()
    assert ok == "True" and same == "True" and int(length) > 0
    head, rest = lines[1].split(") ")
    qber = [float(x) for x in head.strip("(").split(",")]
    leak, end_ns = (int(x) for x in rest.split())
    # a few percent of errors at e_d = 1.5 % (10 km: dark counts add ~nothing)
    assert 0.005 < qber[0] < 0.03 and leak > 0 and end_ns > 20_000_000
