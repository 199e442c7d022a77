"""The suite's own layout: ``make test`` runs the tests on parallel workers
(pytest-xdist) except those marked ``realtime``, which it runs after, alone.
A test module that starts processes, servers or sockets on localhost, or a
dask cluster, must carry the mark: beside a worker's load its wall-clock
timeouts would flake. This check finds such a module by what it calls."""
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent

#: Calls that start a process, a server or a socket, or a cluster of workers.
REAL_TIME_CALLS = re.compile(
    r"\b(net_up|running|emulate|serve_kme|LocalCluster|Popen|_qstack_run|free_ports|"
    r"open_tcp_stream|open_tcp_listeners|serve_tcp)\(")
MARK = re.compile(r"^pytestmark\s*=.*\bpytest\.mark\.realtime\b", re.M)


def _needs_mark(text: str) -> bool:
    return REAL_TIME_CALLS.search(text) is not None


def test_every_module_that_starts_processes_or_sockets_is_marked_realtime():
    unmarked = [p.name for p in sorted(TESTS.glob("test_*.py"))
                if p.name != Path(__file__).name    # (its examples below are strings)
                and _needs_mark(p.read_text()) and not MARK.search(p.read_text())]
    assert not unmarked, f"mark these `pytestmark = pytest.mark.realtime`: {unmarked}"


def test_the_check_sees_the_calls_it_is_about():
    assert _needs_mark("    with running(NET, tmp, 3) as run:")
    assert _needs_mark("stream = await trio.open_tcp_stream(HOST, port)")
    assert not _needs_mark("out = simulate(NET, APPS, seed=1)")
    assert MARK.search("import pytest\n\npytestmark = pytest.mark.realtime\n")
    assert not MARK.search("# pytestmark = pytest.mark.realtime\n")
