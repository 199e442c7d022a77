"""qstack conformance against real daemon processes: our own daemon passes
every case; a deliberately broken one (tests/conformance_broken.py) fails
exactly the cases that check what it breaks. One network per module (the
target `bob`, its neighbours `alice` and `tester` and the stranger `mallory`
played by the tester: specs/conformance/network.toml), with short keepalive
periods so the keepalive cases take a fraction of a second."""
from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio

from qstack.cli import main as cli_main
from qstack.conformance import CASES, runner
from qstack.core.errors import ErrorCode, QStackError
from qstack.emu import launcher

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parents[1]
NETWORK = ROOT / "specs" / "conformance" / "network.toml"
ABSENT = ("alice", "tester", "mallory")
# short keepalive periods (s): the keepalive cases wait about dead_after_s
TIMING = dict(keepalive_s=0.1, dead_after_s=0.5)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    run = launcher.net_up(NETWORK, tmp_path_factory.mktemp("good") / "run.json",
                          absent=ABSENT, **TIMING)
    yield run
    launcher.net_down(run)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Only the physics server from net up; bob is the broken daemon."""
    run = launcher.net_up(NETWORK, tmp_path_factory.mktemp("broken") / "run.json",
                          absent=ABSENT + ("bob",), **TIMING)
    log = open(Path(run.logs) / "bob.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "tests.conformance_broken", run.path, "bob",
                             "version,secret,nodeboot,refused,pairlost,early,late"], cwd=ROOT, stdout=log,
                            stderr=log, stdin=subprocess.DEVNULL)
    run.pids["bob"] = proc.pid
    run.absent.remove("bob")
    run.save()
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline and \
                not trio.run(launcher._ready, run, ["bob"]):
            time.sleep(0.05)          # it needs a moment to start listening
        assert proc.poll() is None, (Path(run.logs) / "bob.log").read_text()[-2000:]
        yield run
    finally:
        launcher.net_down(run)
        proc.wait(timeout=10)
        log.close()


def _run(run, ids=None, secret=None, timeout_s=1.0):
    cases = [c for c in CASES if ids is None or c.id in ids]
    if ids is None:
        cases = runner.select()
    return trio.run(lambda: runner.run(run.host, run.nodes["bob"], secret or run.secret_bytes,
                                       cases, run, timeout_s))


# ---------------------------------------------------------------- the catalogue

def test_case_ids_name_a_spec_section():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    doc = (ROOT / "specs" / "conformance.md").read_text()
    for c in CASES:
        spec, section, n = c.id.split("/")
        assert (ROOT / "specs" / f"{spec}.md").exists(), c.id
        assert re.fullmatch(r"[a-z0-9.]+", section) and n.isdigit(), c.id
        # every section the cases use is listed in the conformance document
        assert f"`{spec}/{section}`" in doc, f"{spec}/{section} missing from conformance.md"
        # and the case itself, in its table
        assert f"| `{c.id}` | {'SHOULD' if c.should else 'MUST'} | {c.title} |" in doc, c.id


def test_list_and_select(capsys):
    assert cli_main(["conformance", "--list"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert [line.split()[0] for line in listed if line] == [c.id for c in CASES]
    assert {c.id for c in runner.select(keyword="transport/3")} == \
        {c.id for c in CASES if c.id.startswith("transport/3/")}
    assert all(not c.should for c in runner.select())
    assert {c.id for c in runner.select(strict=True)} == {c.id for c in CASES}


def test_bad_arguments(capsys, tmp_path):
    assert cli_main(["conformance", "--run", str(tmp_path / "none.json")]) == 2
    assert cli_main(["conformance", "--target", "nohost", "--secret", "00"]) == 2
    assert cli_main(["conformance", "--target", "127.0.0.1:1", "--secret", "zz"]) == 2
    with pytest.raises(QStackError) as err:
        launcher.net_up(NETWORK, tmp_path / "run.json", absent=("zed",))
    assert err.value.code == ErrorCode.BAD_CONFIG and not (tmp_path / "run.json").exists()


# ---------------------------------------------------------------- our daemon

def test_absent_nodes_are_reserved_not_started(good):
    assert sorted(good.absent) == sorted(ABSENT)
    assert set(good.pids) == {"physics", "bob"}
    assert set(good.nodes) == {"alice", "bob", "tester", "mallory"}
    assert set(launcher.net_status(good)) == {"bob"}


def test_our_daemon_passes_every_case(good, tmp_path, capsys):
    xml = tmp_path / "report.xml"
    rc = cli_main(["conformance", "--run", good.path, "--junit", str(xml), "--timeout", "2"])
    out = capsys.readouterr().out
    assert rc == 0, "\n".join(line for line in out.splitlines() if not line.startswith("PASS"))
    suite = ET.parse(xml).getroot()
    assert int(suite.get("tests")) == len(runner.select()) > 40
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"
    assert {tc.get("name") for tc in suite} == {c.id for c in runner.select()}
    # the daemon is still up and serving after every fault the suite threw at it
    assert launcher.net_status(good)["bob"].node == "bob"


def test_wrong_secret_fails_every_case_with_the_reason(good):
    results = _run(good, ids={"wire/framing/1", "transport/3/1"}, secret=b"wrong")
    assert [r.outcome for r in results] == ["fail", "fail"]
    assert all("EMU_AUTH_FAILED" in r.actual for r in results)


# ---------------------------------------------------------------- a broken daemon

#: what tests/conformance_broken.py breaks -> the cases that must catch it
CAUGHT = {"wire/session/2": "version", "wire/session/3": "secret", "wire/session/7": "secret",
          "emulation/3/2": "nodeboot", "transport/3/1": "refused", "network/2/15": "pairlost",
          "network/2/17": "early", "network/5/2": "late", "network/5/3": "late"}
#: cases about what it does not break: they still pass
UNTOUCHED = {"wire/session/1", "wire/framing/3", "emulation/3/1", "transport/3/2",
             "link/4/3", "network/2/1", "network/2/14", "network/2/16"}


def test_broken_daemon_fails_the_named_cases(broken):
    results = {r.case.id: r for r in _run(broken, ids=set(CAUGHT) | UNTOUCHED)}
    failed = {i for i, r in results.items() if r.outcome == "fail"}
    assert failed == set(CAUGHT), {i: (r.expected, r.actual) for i, r in results.items()
                                   if r.outcome == "fail"}
    assert "402" in results["transport/3/1"].expected
    assert "code=404" in results["transport/3/1"].actual


def test_broken_daemon_exit_status(broken, capsys):
    assert cli_main(["conformance", "--run", broken.path, "-k", "wire/session/2",
                     "--timeout", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  wire/session/2" in out and "expected:" in out and "actual:" in out
