"""Faults in the emulation, with real processes (``specs/faults.md``).

``kill -9`` of a node daemon mid-run and of an application process, the node
restarted under its name, and the ``[faults]`` table of a network file
carried out by the launcher on the model clock -- the same schedule run by
the simulator, with the same promises checked on both. Links make exact Bell
pairs and memories do not decay, so every teleported qubit must arrive in
the state it was sent in. Through every run the physics server's census
must balance: every qubit alive in its state engine is held in exactly one
memory (``net_census``: engine == held), and when the applications are gone
nothing is left.

Times: a peer killed with ``kill -9`` is noticed when the kernel closes its
connections, at once; one that hangs, within the keepalive bound
``dead_after_s`` (2 s). The checks wait for what must happen with a deadline
of that bound plus 2 s of slack for a loaded machine (a deadline, so that a
failure cannot hang the suite -- not a measurement of speed).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
import trio

import qstack
from qstack.core.errors import ErrorCode, QStackError
from qstack.emu.daemon import CONNECT_GRACE_S
from qstack.emu.launcher import alive, net_census, net_down, net_fault, net_status, net_up
from qstack.transport.socket import TransportError
from tests.test_emu import until_listening

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parents[1]
NETWORK = """\
formalism = "bd"
[defaults.node]
memory = 16
t1_s = "inf"
t2_s = "inf"
[defaults.link]
scheme = "sender-receiver"
length_km = 0.2
emission_efficiency = 0.9
absorption_efficiency = 0.9
false_herald_prob = 0.0
pair_fidelity = 1.0
[nodes.alice]
[nodes.repeater]
[nodes.bob]
[[links]]
nodes = ["alice", "repeater"]
[[links]]
nodes = ["repeater", "bob"]
"""
PORT = 21


def bit(tag: bytes) -> int:
    return zlib.crc32(tag) & 1


def wait_for(what, check, timeout_s: float):
    """Poll ``check()`` until it returns a true value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not so after {timeout_s} s")
        time.sleep(0.05)


def balanced_census(run) -> dict:
    c = net_census(run)
    assert c["engine"] == c["held"], f"a qubit lost or duplicated: {c}"
    return c


def stopped_cleanly(run, pids: dict) -> None:
    net_down(run)
    left = [n for n, pid in {**pids, **run.pids}.items() if alive(pid)]
    assert not left, f"processes left behind: {left}"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("emufaults")
    (tmp / "net.toml").write_text(NETWORK)
    run = net_up(tmp / "net.toml", tmp / "run.json", seed=5)
    pids = dict(run.pids)
    try:
        yield run
    finally:
        stopped_cleanly(run, pids)


def stream_apps(sent: dict, received: dict, state: dict, duration_ns: int | None = None):
    """alice sends tagged qubits to bob until an error (or ``duration_ns`` of
    model time, reconnecting after errors); bob receives until an error.
    ``sent[tag]``: ("ok",) or ("failed", code, handed back); ``received[tag]``:
    the bits bob measured; ``state``: what each application ended with."""

    async def alice(ctx):
        start = ctx.now_ns
        k = 0
        while True:
            try:
                sock = await ctx.connect("bob", PORT, timeout_ns=10**9)
            except TransportError as err:
                state.setdefault("alice_connect", []).append(err.code)
                if duration_ns is None or ctx.now_ns - start > duration_ns:
                    return "connect failed"
                await ctx.sleep(50_000_000)
                continue
            while True:
                tag = f"{k}".encode()
                k += 1
                q = ctx.qubit()
                if bit(tag):
                    q.x()
                try:
                    await sock.send_qubit(q, metadata=tag, timeout_ns=10**9)
                    sent[tag] = ("ok",)
                except TransportError as err:
                    assert isinstance(err.code, ErrorCode)
                    # a qubit still there is handed back, and only then
                    assert (err.qubits == [q]) == q.alive, (err, q.alive)
                    sent[tag] = ("failed", err.code, q.alive)
                    if q.alive:
                        q.discard()
                    state.setdefault("alice_errors", []).append(err.code)
                    if err.code != ErrorCode.TRANSPORT_NO_PAIR:
                        break
                    if duration_ns is not None and ctx.now_ns - start > duration_ns:
                        break
                    await ctx.sleep(10_000_000)
                    continue
                if duration_ns is not None and ctx.now_ns - start > duration_ns:
                    await sock.close()
                    return "done"
                await ctx.sleep(10_000_000)
            sock.abort()
            if duration_ns is None or ctx.now_ns - start > duration_ns:
                return "ended by " + state["alice_errors"][-1].name
            await ctx.sleep(50_000_000)

    async def bob(ctx):
        listener = ctx.listen(PORT)
        while True:
            try:
                sock = await listener.accept(timeout_ns=5 * 10**9)
            except TransportError as err:
                return "accept " + err.code.name
            try:
                while True:
                    q = await sock.recv_qubit()
                    state["bob_got"] = state.get("bob_got", 0) + 1
                    # measured first: bob is cancelled when alice ends, and a
                    # cancelled measurement must not leave an empty record
                    bit_measured = await q.measure("Z")
                    received.setdefault(q.metadata, []).append(bit_measured)
            except TransportError as err:
                assert isinstance(err.code, ErrorCode)
                state.setdefault("bob_errors", []).append(err.code)
                if duration_ns is None:
                    return "ended by " + err.code.name

    return {"alice": alice, "bob": bob}


async def until_alice_ends(apps: dict, run) -> dict:
    """alice's and bob's applications of ``apps`` on ``run``'s network until
    alice's ends (bob's, waiting for a next connection, is then stopped)."""
    out = {}

    async def one(node):
        async with qstack.connect(node, run) as ctx:
            out[node] = await until_listening(apps[node], ctx)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "bob")
            nursery.start_soon(one, "alice")
            while "alice" not in out:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    return out


def check_deliveries(sent: dict, received: dict) -> None:
    """Each qubit delivered at most once, in its own state; one handed back never delivered."""
    for tag, bits in received.items():
        assert bits == [bit(tag)], f"{tag}: delivered {bits}, sent {bit(tag)}"
    for tag, outcome in sent.items():
        if outcome[0] == "failed" and outcome[2]:
            assert tag not in received, f"{tag}: handed back and delivered"


def test_kill_9_of_a_node_daemon_then_its_restart(net):
    sent, received, state = {}, {}, {}
    apps = stream_apps(sent, received, state)
    seen_down: dict = {}

    async def main():
        out = {}

        async def one(node):
            async with qstack.connect(node, net) as ctx:
                out[node] = await until_listening(apps[node], ctx)

        with trio.fail_after(60):                 # nothing hangs
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, "bob")
                nursery.start_soon(one, "alice")
                while state.get("bob_got", 0) < 5:
                    await trio.sleep(0.01)
                os.kill(net.pids["repeater"], signal.SIGKILL)
                killed = time.monotonic()

                def peers_see_it():
                    st = net_status(net)
                    return all(not isinstance(st[n], BaseException) and
                               "repeater" not in st[n].peers_up for n in ("alice", "bob"))

                await trio.to_thread.run_sync(
                    lambda: wait_for("alice and bob see the repeater down", peers_see_it,
                                     net.dead_after_s + 2))
                seen_down["after_s"] = time.monotonic() - killed
        return out

    out = trio.run(main)
    # both applications ended with a defined error, alice's qubit handed back if alive
    assert out["alice"].startswith("ended by") and out["bob"].startswith("ended by"), out
    assert state["alice_errors"] and state["bob_errors"]
    check_deliveries(sent, received)
    assert sum(1 for o in sent.values() if o == ("ok",)) >= 5
    # the repeater's memory was emptied with its process; nothing left anywhere
    wait_for("no qubit left", lambda: balanced_census(net)["engine"] == 0, 5)

    # restarted under its name, it rejoins and works
    old = net.pids["repeater"]
    net_fault(net, "restart", "repeater")
    assert net.pids["repeater"] != old

    def rejoined():
        st = net_status(net)
        return all(not isinstance(st[n], BaseException) for n in st) and \
            "repeater" in st["alice"].peers_up and "repeater" in st["bob"].peers_up

    wait_for("the repeater rejoins", rejoined, CONNECT_GRACE_S + 5)
    sent2, received2, state2 = {}, {}, {}
    again = stream_apps(sent2, received2, state2, duration_ns=300_000_000)

    assert trio.run(until_alice_ends, again, net)["alice"] == "done"
    assert sent2 and all(o == ("ok",) for o in sent2.values())
    check_deliveries(sent2, received2)
    wait_for("no qubit left", lambda: balanced_census(net)["engine"] == 0, 5)


HOLDER = '''
async def alice(ctx):
    sock = await ctx.connect("bob", {port})
    halves = await sock.create_epr(3)
    mine = [ctx.qubit(), ctx.qubit()]
    mine[0].h()
    await sock.send(b"ready")
    await ctx.sleep(10**12)        # holds everything until killed

APPS = {{"alice": alice}}
'''


def test_kill_9_of_an_application(net, tmp_path):
    app_file = tmp_path / "holder.py"
    app_file.write_text(textwrap.dedent(HOLDER.format(port=PORT + 1)))
    wait_for("every node up", lambda: all(not isinstance(s, BaseException)
                                          for s in net_status(net).values()), 10)
    proc = subprocess.Popen([sys.executable, "-m", "qstack.cli", "run", "--run", net.path,
                             "alice", str(app_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        async def bob():
            async with qstack.connect("bob", net) as ctx:
                with trio.fail_after(60):
                    sock = await ctx.listen(PORT + 1).accept()
                    halves = await sock.recv_epr(3)
                    assert await sock.recv() == b"ready"
                    held = await trio.to_thread.run_sync(net_status, net)
                    assert held["alice"].qubits_in_memory == 5 and held["alice"].apps == 1
                    await trio.to_thread.run_sync(balanced_census, net)
                    os.kill(proc.pid, signal.SIGKILL)
                    with pytest.raises(TransportError) as err:
                        await sock.recv()
                    assert err.value.code == ErrorCode.TRANSPORT_ABORTED
                    # bob's halves are his still: measuring them works
                    for q in halves:
                        await q.measure()

        trio.run(bob)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    def freed():
        st = net_status(net)["alice"]
        return st.qubits_in_memory == 0 and st.apps == 0

    wait_for("alice's daemon frees what the killed application held", freed, 5)
    wait_for("no qubit left", lambda: balanced_census(net)["engine"] == 0, 5)


# ---------------------------------------------------------------- a [faults] table, both drivers

FAULTS = """
[[faults.events]]
at_s = 0.3
crash = "repeater"
restart_after_s = 0.3
"""


def test_the_same_fault_schedule_on_both_drivers(tmp_path):
    """A crash of the repeater with a restart, from the network file's
    ``[faults]``: under the simulator and under the emulation, alice's
    stream of qubits to bob keeps the promises of specs/faults.md (every
    qubit delivered at most once in its own state, or failed with a defined
    code and handed back if still there; every application ends; nothing
    left in any memory), and the stream resumes after the restart."""
    path = tmp_path / "faulty.toml"
    path.write_text(NETWORK + FAULTS)
    # alice streams for 8 s of model time: a restarted daemon is a new process,
    # ready a second or so after it is started on a quiet machine, several on
    # a loaded one (the Python start-up alone); the simulator's at once
    duration = 8_000_000_000

    def check(sent, received, state, out):
        assert out["alice"] == "done", (out, state)
        check_deliveries(sent, received)
        ok = [int(t) for t, o in sent.items() if o == ("ok",)]
        failed = [int(t) for t, o in sent.items() if o[0] == "failed"]
        assert failed or state.get("alice_connect"), "the crash did not touch the stream"
        assert ok and max(ok) > max(failed or [0]), "no qubit went through after the restart"

    # the simulator
    sent, received, state = {}, {}, {}
    res = qstack.simulate(path, stream_apps(sent, received, state, duration), seed=2,
                          until_s=30)
    assert not res.errors, res.errors
    out = dict(res.results)
    assert [w for _t, w, _n in res.net.faults] == ["crash", "restart"]
    check(sent, received, state, out)
    assert res.net.engine.num_live_qubits == 0

    # the emulation: the launcher carries the table out on the model clock
    run = net_up(path, tmp_path / "run.json", seed=2)
    pids = dict(run.pids)
    try:
        assert "faults" in run.pids
        sent, received, state = {}, {}, {}
        apps = stream_apps(sent, received, state, duration)

        out = trio.run(until_alice_ends, apps, run)
        check(sent, received, state, out)
        log = (Path(run.logs) / "faults.log").read_text()
        assert "crash repeater" in log and "restart repeater" in log, log
        wait_for("no qubit left", lambda: balanced_census(run)["engine"] == 0, 5)
    finally:
        stopped_cleanly(run, pids)


def test_a_restarted_daemon_learns_which_links_are_down(tmp_path):
    """Issue 19: after ``kill -9`` and a restart under its name, a node knows
    the links that are down now (the physics server tells it as it connects)
    instead of assuming every link up: it routes round them (here there is no
    way round: bob is unreachable for it), and it learns when they come back."""
    (tmp_path / "net.toml").write_text(NETWORK)
    run = net_up(tmp_path / "net.toml", tmp_path / "run.json", seed=6)
    pids = dict(run.pids)
    down = (("bob", "repeater"),)
    try:
        net_fault(run, "link-down", "repeater", "bob")

        def everyone_knows(links):
            def check():
                st = net_status(run)
                return all(not isinstance(s, BaseException) and s.links_down == links
                           for s in st.values())
            return check

        wait_for("every node sees repeater-bob down", everyone_knows(down), 10)
        net_fault(run, "crash", "alice")
        wait_for("alice is gone", lambda: not alive(pids["alice"]), 10)
        net_fault(run, "restart", "alice")

        def alice_back():
            st = net_status(run)["alice"]
            return not isinstance(st, BaseException) and "repeater" in st.peers_up and st

        st = wait_for("alice answers again", alice_back, CONNECT_GRACE_S + 10)
        assert st.links_down == down                # not "every link up"

        async def connect_to_bob():
            with trio.fail_after(30):
                async with qstack.connect("alice", run) as ctx:
                    try:
                        await ctx.connect("bob", PORT, timeout_ns=5 * 10**9)
                    except TransportError as err:
                        return err.code
                    return None

        # refused at once: alice knows there is no path (without that, her
        # messages would go to bob's daemon, which refuses them, and be lost)
        assert trio.run(connect_to_bob) == ErrorCode.NET_NO_ROUTE

        net_fault(run, "link-up", "repeater", "bob")
        wait_for("every node sees the link back", everyone_knows(()), 10)
    finally:
        stopped_cleanly(run, pids)
