"""The emulation with real processes: a physics server and three node daemons.

One network (``tests/emu_line.toml``: alice -- repeater -- bob, Werner pairs
of fidelity F = 0.9, no decay, ideal gates) is started once for the module
with ``net_up`` and stopped at its end with ``net_down``; the fixture then
checks that no process of it is left. Applications run in this process
(``qstack.connect`` / ``run_app`` under trio) or as their own process
(``qstack run``).

Statistics are checked against closed forms in F (the literature's: a
teleport over a Werner pair of fidelity F is a depolarising channel, right
outcome with probability (2F + 1)/3 [Bennett et al. 1996, PRA 54 3824];
entanglement swapping of two Werner pairs gives F1 F2 + (1-F1)(1-F2)/3; a
Werner pair's correlations <ZZ> = <XX> = (4F - 1)/3), each within 4 standard
errors of the count it comes from (binomial, computed from the closed form),
and the emulation's against the simulator's by a two-sample test at 4
standard errors. Seeds are fixed, but processes run in real time, so the
emulation's outcomes are not reproducible draw for draw: 4 sigma makes a
false alarm a 1-in-15000 event per check.
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import qstack
import qstack.api as api
from qstack.emu.client import run_app
from qstack.emu.launcher import alive, net_down, net_status, net_up
from tests import emu_apps as E

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parents[1]
LINE = Path(__file__).resolve().parent / "emu_line.toml"
F = 0.9
P = (4 * F - 1) / 3                     # a Werner pair's <ZZ> = <XX>
F_SWAP = F * F + (1 - F) ** 2 / 3       # two Werner pairs swapped at the repeater


def within(k: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """``k`` successes of ``n`` is within ``sigmas`` binomial standard errors of ``n p``."""
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def same_rate(k1: int, n1: int, k2: int, n2: int, sigmas: float = 4.0) -> bool:
    """Two binomial counts agree (pooled two-sample test at ``sigmas``)."""
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(max(p * (1 - p), 1e-12) * (1 / n1 + 1 / n2))
    return abs(k1 / n1 - k2 / n2) <= sigmas * se


async def until_listening(fn, ctx):
    """``await fn(ctx)``, again while the far end does not listen yet: the
    applications of a network start as separate programs, in no order (what
    a client of a real network does too)."""
    from qstack.core.errors import ErrorCode
    from qstack.transport.socket import TransportError

    while True:
        try:
            return await fn(ctx)
        except TransportError as err:
            if err.code != ErrorCode.TRANSPORT_CONNECTION_REFUSED:
                raise
            await trio.sleep(0.05)


async def _run_all(apps: dict, run) -> dict:
    """Every application of ``apps`` on its node of the emulated network, at once."""
    out: dict = {}

    async def one(node, fn):
        out[node] = await run_app(lambda ctx: until_listening(fn, ctx), node, run)

    with trio.fail_after(60):           # a hang fails the test, it does not stall the suite
        async with trio.open_nursery() as nursery:
            for node, fn in apps.items():
                nursery.start_soon(one, node, fn)
    return out


def emulate(apps: dict, run) -> dict:
    return trio.run(_run_all, apps, run)


def simulate(apps: dict, seed: int = 1) -> dict:
    res = api.simulate(LINE, apps, seed=seed, until_s=60)
    res.raise_errors()
    return res.results


@contextlib.contextmanager
def running(network: Path, directory: Path, seed: int):
    """The network of ``network`` up for the block (run file in
    ``directory``), then down; no process of it is left."""
    run = net_up(network, directory / "run.json", seed=seed)
    pids = dict(run.pids)
    try:
        yield run
    finally:
        net_down(run)
        left = [name for name, pid in {**pids, **run.pids}.items() if alive(pid)]
        assert not left, f"processes left behind: {left}"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with running(LINE, tmp_path_factory.mktemp("emu"), 3) as run:
        yield run


def test_every_node_is_up_and_sees_its_peers(net):
    assert set(net.pids) == {"physics", "alice", "repeater", "bob"}
    status = net_status(net)
    assert set(status) == {"alice", "repeater", "bob"}
    for name, st in status.items():
        assert not isinstance(st, BaseException), (name, st)
        assert st.node == name


def test_teleport_over_the_repeater_is_right_with_two_f_plus_one_over_three(net):
    n = 120
    out = emulate(E.teleport_apps(n), net)
    assert out["alice"] == n and out["bob"]["qubits"] == n
    # six states, each right with probability (2 F_swap + 1)/3 = 0.906
    assert within(out["bob"]["right"], n, (2 * F_SWAP + 1) / 3)


@pytest.mark.parametrize("measured, together", [(False, False), (True, False), (False, True)],
                         ids=["kept", "measured", "measure_all"])
def test_epr_pairs_are_correlated_as_werner_pairs(net, measured, together):
    n = 80
    counts = emulate(E.epr_apps(n, measured, together=together), net)["alice"]
    assert counts["Z"][1] + counts["X"][1] == n
    for basis in ("Z", "X"):      # alice -- bob over the repeater: a swapped pair
        equal, total = counts[basis]
        assert within(equal, total, (1 + (4 * F_SWAP - 1) / 3) / 2), (basis, counts)


def test_three_process_ghz_from_two_pairs(net):
    rounds = 120
    out = emulate(E.ghz_apps(rounds), net)["repeater"]
    nz, nx = out["z"], out["x"]
    # a mean of n +-1 values with mean m has standard error sqrt((1 - m^2)/n)
    for key, m, n in (("zz_ab", P, nz), ("zz_bc", P, nz), ("zz_ac", P * P, nz),
                      ("xxx", P * P, nx)):
        assert abs(out[key] - m) <= 4 * math.sqrt((1 - m * m) / n), (key, out)


def test_the_same_application_agrees_under_both_drivers(net):
    # teleport counts, simulator against emulation, two-sample at 4 sigma
    n = 80
    sim = simulate(E.teleport_apps(n, "alice", "repeater"))
    emu = emulate(E.teleport_apps(n, "alice", "repeater"), net)
    assert same_rate(sim["repeater"]["right"], n, emu["repeater"]["right"], n), (sim, emu)
    assert within(emu["repeater"]["right"], n, (2 * F + 1) / 3)


def test_qstack_run_and_qstack_connect_together(net):
    """bob as its own process (``qstack run``), alice through ``qstack.connect``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "qstack.cli", "run", "--run", net.path,
                             "bob", str(ROOT / "tests" / "emu_apps.py")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        async def alice():
            with trio.fail_after(60):
                async with qstack.connect("alice", net) as ctx:
                    return await until_listening(E.APPS["alice"], ctx)

        assert trio.run(alice) == E.N_TELEPORT
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.startswith("bob: {'right': ")
    right = int(out.split("'right': ")[1].split(",")[0])
    assert within(right, E.N_TELEPORT, (2 * F_SWAP + 1) / 3)


def test_an_application_leaves_nothing_behind(net):
    emulate(E.epr_apps(20, False), net)
    for name, st in net_status(net).items():
        assert st.qubits_in_memory == 0 and st.apps == 0, (name, st)


# ---------------------------------------------------------------- the examples, both ways

def _example(name: str):
    from tests.test_examples import load

    return load(name)


def test_example_relay_both_ways(net):
    relay = _example("relay")
    n = 60
    sim = simulate(relay.make_apps(n))["bob"]
    emu = emulate(relay.make_apps(n), net)["bob"]
    assert sim["qubits"] == emu["qubits"] == n
    assert same_rate(sim["errors"], n, emu["errors"], n)
    assert within(emu["errors"], n, 2 * (1 - F_SWAP) / 3)


def test_example_chsh_both_ways(net):
    chsh = _example("chsh")
    pairs = 120
    sim = simulate(chsh.make_apps(pairs))["alice"]
    emu = emulate(chsh.make_apps(pairs), net)["alice"]
    e = (4 * F_SWAP - 1) / 3 / math.sqrt(2)     # each |E(ai, bj)|, Werner pair over the repeater
    sigma = math.sqrt(sum((1 - e * e) / n for n in emu["counts"]))
    assert emu["pairs"] == sim["pairs"] == pairs
    assert abs(emu["S"] - chsh.werner_s(F_SWAP)) < 4 * sigma
    assert abs(emu["S"] - sim["S"]) < 4 * math.sqrt(2) * sigma


def test_example_teleport_measured_both_ways(net):
    teleport = _example("teleport")
    states = teleport.STATES * 12
    sim = simulate(teleport.make_apps(states, measure=True))["bob"]
    emu = emulate(teleport.make_apps(states, measure=True), net)["bob"]
    n = len(states)
    # bob measures along each state's own direction: outcome 0 with the fidelity
    assert same_rate(sim.count(0), n, emu.count(0), n)
    assert within(emu.count(0), n, (2 * F_SWAP + 1) / 3)


def test_gates_are_answered_only_when_they_fail(net):
    """An application's allocations and gates come back only as failures
    (specs/emulation.md §5); a later answer confirms the ones before, so the
    application keeps nothing for them, and a failure is still raised."""
    from qstack.core.errors import ErrorCode, QStackError
    from qstack.emu.messages import CHOSEN_REF_BASE
    from qstack.physical.ops import Gate

    async def app(ctx):
        rt = ctx.runtime
        qs = [ctx.qubit() for _ in range(30)]
        for q in qs:
            q.x()
            q.h()
            q.h()
        kept = len(rt._waiting)                  # one failure callback per allocation and gate
        bits = await ctx.measure_all(qs)
        left = len(rt._waiting), len(rt._quiet)  # confirmed by the measurements' answers
        # a gate on a qubit that is not there: its failure comes back
        rt.enqueue(Gate("x", (CHOSEN_REF_BASE + (1 << 40),)), ctx._op_failed)
        q = ctx.qubit()
        with pytest.raises(QStackError) as info:
            await q.measure()
        return kept, bits, left, info.value.code, len(rt._waiting), len(rt._quiet)

    kept, bits, left, code, waiting, quiet = trio.run(run_app, app, "alice", net)
    assert kept == 30 * 4 and bits == [1] * 30
    assert left == (0, 0)
    assert code == ErrorCode.QUBIT_UNAVAILABLE
    assert (waiting, quiet) == (0, 0)
