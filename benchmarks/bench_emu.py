"""Benchmarks: the emulation's wire, and a network of processes, over localhost.

``bench_channel``: a receiver process (``python -m benchmarks.bench_emu
--receive``) serves one :func:`qstack.emu.channel.serve_channels` port; this
process opens a channel to it and sends ``messages`` small application
messages (a ``StationCancel`` of 22 bytes on the wire, 26 with its frame
prefix) one way; the receiver counts them and answers one message when it
has them all. Figures: ``messages_per_s`` (messages / seconds from the first
send to the answer), ``mb_per_s`` (frame bytes / the same seconds, 10^6
bytes), ``handshake_ms`` (connect and handshake, ms), and the CPU time each
process spent per message (``sender_cpu_us_per_message``,
``receiver_cpu_us_per_message``, microseconds): on a shared machine the
rate follows the load, the CPU time much less.

    python -m benchmarks.bench_emu            # prints JSON (both)

``bench_network``: an emulated network of real processes.
Two node daemons (alice, bob) and the physics server, each its own process,
started by :func:`qstack.emu.launcher.net_up`; the two applications run in
one further process (this one) through ``qstack.connect``, as a trio program.

The link is short (100 m) with a high success probability per attempt
(emission and absorption efficiency 0.95): the physics makes a pair every
few microseconds, far above the targets, so the figures measure the
software (daemons, physics server, wire, client), not the physics. Pairs are
Werner pairs of fidelity 1 and memories do not decay, so every teleported
state must come out right: the physics' own error is zero, and ``*_right``
counts the results that do (six-state teleports measured in their own
basis; EPR halves measured in the same basis by both ends must agree).

The nodes' hardware multiplexes: ``communication_qubits = 8`` generation
processes per link (``PARALLEL``; memories with several modes, as atomic
ensembles and rare-earth crystals have), so the link keeps 8 attempts under
way; a node with one (``m = 1``) is measured too (the ``*_m1`` figures).
Each node's transport window is 64 items (``WINDOW``, ``transport_window``;
the default is 4), so a batch of 50 pairs is one request to the network
layer rather than one per pair the receiver takes.

Figures (each with ``*_right`` and ``*_cpu_us_per_item``: the CPU time,
user + system, each process spent per item -- ``physics``, ``alice``,
``bob`` (the daemons, from /proc), ``apps`` (this process, both
applications) and their ``total``, in microseconds. The machine may be
shared: the rates follow its load, the CPU time per item much less):

* ``epr_kept_per_s``: pairs delivered as qubits (``create_epr`` /
  ``recv_epr``, batches of ``BATCH``), each batch then measured by both
  ends with ``ctx.measure_all`` (one round trip for the batch);
* ``epr_measured_per_s``: pairs measured at once (``measure="Z"``);
* ``teleports_per_s``: qubits teleported alice -> bob, ``IN_FLIGHT`` under
  way at once (that many trio tasks sending on one socket), each measured
  by bob; ``teleports_one_at_a_time_per_s``: one after the other (each
  ``send_qubit`` returns when bob's node acknowledged it);
* the same three with ``_m1``: one generation process per link;
* ``net_up_3_s`` / ``net_up_50_s``: wall time of ``net_up`` until every
  daemon answers (a 3-node line, a 50-node line), and ``rss_mb_per_daemon``
  (resident memory of each daemon of the 50-node network, mean and max,
  from /proc).

Targets (issue 19): >= 2000 EPR pairs/s, >= 500 teleports/s, ``net up`` of 3
nodes < 2 s. ``QSTACK_EMU_PROFILE=DIR`` makes each daemon and the physics
server write a cProfile to DIR (see qstack/emu/profiling.py;
``QSTACK_EMU_PROFILE_CLOCK=cpu`` profiles CPU time).

    python -m benchmarks.bench_emu --network [PAIRS TELEPORTS NODES]   # NODES 0: no net up
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import trio

from qstack.emu.channel import open_channel, serve_channels
from qstack.emu.wire import encode_frame, new_secret
from qstack.physical.messages import StationCancel

ROOT = Path(__file__).resolve().parents[1]
SMALL = StationCancel(node="alice", peer="bob", key=b"k")


async def _receive(secret: bytes, count: int) -> None:
    async def handler(channel):
        cpu = time.process_time()
        for _ in range(count):
            await channel.receive()
        print(round((time.process_time() - cpu) / count * 1e6, 2), flush=True)
        await channel.send(SMALL)
        async for _ in channel:      # until the sender says goodbye
            pass

    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_channels(
            handler, 0, name="receiver", kind="node", secret=secret, task_status=task_status))
        print(port, flush=True)
        # the sender closes our stdin when it is done
        await trio.to_thread.run_sync(sys.stdin.readline)
        nursery.cancel_scope.cancel()


def bench_channel(messages: int = 100_000) -> dict:
    """Send ``messages`` small messages one way to another process; see the module doc."""
    secret = new_secret()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_emu", "--receive",
                             secret.hex(), str(messages)], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())

        async def send() -> dict:
            async with trio.open_nursery() as nursery:
                t0 = time.perf_counter()
                ch = await open_channel("127.0.0.1", port, name="sender", kind="node",
                                        secret=secret, nursery=nursery)
                t1, cpu = time.perf_counter(), time.process_time()
                for _ in range(messages):
                    await ch.send(SMALL)
                await ch.receive()
                t2, cpu = time.perf_counter(), time.process_time() - cpu
                await ch.aclose()
            frame = len(encode_frame(SMALL))
            return {"messages": messages, "frame_bytes": frame,
                    "messages_per_s": round(messages / (t2 - t1)),
                    "mb_per_s": round(messages * frame / (t2 - t1) / 1e6, 2),
                    "handshake_ms": round((t1 - t0) * 1e3, 2),
                    "sender_cpu_us_per_message": round(cpu / messages * 1e6, 2),
                    "receiver_cpu_us_per_message": float(proc.stdout.readline())}

        return trio.run(send)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


PORT = 5
#: pairs an application asks for (and measures) at once
BATCH = 50
#: generation processes per link of the benchmark's nodes (``communication_qubits``):
#: multiplexed memories, each process holding one slot from its attempt to its herald
PARALLEL = 8
#: each node's transport receive window (``transport_window``, items): a batch
#: of pairs is one request to the network (the memory, 108 slots, holds it)
WINDOW = 64
#: teleports alice keeps under way at once (trio tasks on one socket)
IN_FLIGHT = 8
LINK = """formalism = "bd"
[defaults.node]
memory = {memory}
communication_qubits = {parallel}
transport_window = {window}
t1_s = "inf"
t2_s = "inf"
[defaults.link]
scheme = "sender-receiver"
length_km = 0.1
emission_efficiency = 0.95
absorption_efficiency = 0.95
false_herald_prob = 0.0
pair_fidelity = 1.0
"""


def line_network(path: Path, n: int, memory: int = 2 * BATCH + 8, parallel: int = 1,
                 window: int = 4) -> Path:
    """A line of ``n`` nodes n0 -- n1 -- ... (alice, bob for n = 2) as a TOML
    file; ``parallel``: each node's generation processes per link;
    ``window``: each node's transport receive window (items)."""
    names = ["alice", "bob"] if n == 2 else [f"n{i}" for i in range(n)]
    text = LINK.format(memory=memory, parallel=parallel, window=window)
    text += "".join(f"[nodes.{x}]\n" for x in names)
    text += "".join(f'[[links]]\nnodes = ["{a}", "{b}"]\n' for a, b in zip(names, names[1:]))
    path.write_text(text)
    return path


async def _pair(run, alice, bob) -> tuple:
    from qstack.emu.client import run_app

    out: dict = {}

    async def a():
        while True:         # bob may not listen yet: he is another program
            try:
                out["alice"] = await run_app(alice, "alice", run)
                return
            except Exception as exc:
                if "does not listen" not in str(exc):
                    raise
                await trio.sleep(0.02)

    async def b():
        out["bob"] = await run_app(bob, "bob", run)

    async with trio.open_nursery() as n:
        n.start_soon(b)
        n.start_soon(a)
    return out["alice"], out["bob"]


def epr_apps(n: int, measured: bool):
    async def alice(ctx):
        async with await ctx.connect("bob", PORT) as sock:
            mine = bytearray()
            start = time.perf_counter()
            for done in range(0, n, BATCH):
                k = min(BATCH, n - done)
                if measured:
                    mine += bytes(await sock.create_epr(k, measure="Z"))
                else:
                    mine += bytes(await ctx.measure_all(await sock.create_epr(k), "Z"))
            theirs = await sock.recv()
            wall = time.perf_counter() - start
        return wall, sum(x == y for x, y in zip(mine, theirs))

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        out = bytearray()
        for done in range(0, n, BATCH):
            k = min(BATCH, n - done)
            if measured:
                out += bytes(await sock.recv_epr(k, measure="Z"))
            else:
                out += bytes(await ctx.measure_all(await sock.recv_epr(k), "Z"))
        await sock.send(bytes(out))
        await sock.close()

    return alice, bob


def teleport_apps(n: int, in_flight: int = 1):
    """Alice teleports ``n`` six-state qubits to bob, ``in_flight`` at a time
    (that many trio tasks sending on one socket, as a trio program may: the
    socket keeps their order); bob measures each in its own basis."""
    bases = ("Z", "X", "Y")

    async def alice(ctx):
        async with await ctx.connect("bob", PORT) as sock:
            start = time.perf_counter()
            todo = iter(range(n))

            async def sender() -> None:
                for i in todo:
                    k = i % 6
                    q = ctx.qubit()
                    if k % 2:
                        q.x()
                    if k // 2:
                        q.h()
                        if k // 2 == 2:
                            q.s()
                    await sock.send_qubit(q, metadata=bytes([k]))

            async with trio.open_nursery() as nursery:
                for _ in range(in_flight):
                    nursery.start_soon(sender)
            right = int.from_bytes(await sock.recv(), "big")
            return time.perf_counter() - start, right

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        right = 0
        for _ in range(n):
            q = await sock.recv_qubit()
            basis, bit = divmod(q.metadata[0], 2)
            right += (await q.measure(bases[basis])) == bit
        await sock.send(right.to_bytes(4, "big"))
        await sock.close()

    return alice, bob


def _cpu_s(pid: int) -> float:
    """CPU time (user + system, s) process ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _items(run2, out: dict, key: str, apps: tuple, n: int) -> None:
    """Run ``apps`` (alice, bob) once on the network of ``run2``: the rate,
    the share right, and the CPU time per item of every process into ``out``."""
    before = {name: _cpu_s(pid) for name, pid in run2.pids.items()}
    app_cpu = time.process_time()
    (wall, right), _ = trio.run(_pair, run2, *apps)
    app_cpu = time.process_time() - app_cpu
    out[f"{key}_per_s"] = round(n / wall, 1)
    out[f"{key}_right"] = f"{right}/{n}"
    cpu = {name: _cpu_s(pid) - before[name] for name, pid in run2.pids.items()}
    cpu["apps"] = app_cpu
    per = {name: round(c / n * 1e6, 1) for name, c in sorted(cpu.items())}
    per["total"] = round(sum(cpu.values()) / n * 1e6, 1)
    out[f"{key}_cpu_us_per_item"] = per


def bench_network(pairs: int = 2000, teleports: int = 1000, big: int = 50) -> dict:
    """Pairs, teleports, net up and memory of a network of processes; see the module doc."""
    from qstack.emu.launcher import net_down, net_up

    out: dict = {"targets": {"epr_per_s": 2000, "teleports_per_s": 500, "net_up_3_s": 2.0},
                 "setup": {"communication_qubits": PARALLEL, "transport_window": WINDOW,
                           "batch": BATCH, "teleports_in_flight": IN_FLIGHT}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for suffix, m in (("", PARALLEL), ("_m1", 1)):
            run2 = net_up(line_network(tmp / f"two{m}.toml", 2, parallel=m, window=WINDOW),
                          tmp / f"two{m}.json")
            try:
                _items(run2, out, f"epr_kept{suffix}", epr_apps(pairs, False), pairs)
                _items(run2, out, f"epr_measured{suffix}", epr_apps(pairs, True), pairs)
                _items(run2, out, f"teleports{suffix}", teleport_apps(teleports, IN_FLIGHT),
                       teleports)
                if not suffix:
                    one = max(1, teleports // 4)
                    _items(run2, out, "teleports_one_at_a_time", teleport_apps(one, 1), one)
            finally:
                net_down(run2)
        for n in (3, big) if big else ():      # (big = 0: pairs and teleports only)
            start = time.perf_counter()
            run_n = net_up(line_network(tmp / f"line{n}.toml", n, memory=8), tmp / f"l{n}.json",
                           timeout_s=120)
            out[f"net_up_{n}_s"] = round(time.perf_counter() - start, 3)
            try:
                if n == big:
                    rss = [_rss_mb(pid) for name, pid in run_n.pids.items() if name != "physics"]
                    out["rss_mb_per_daemon"] = {"mean": round(sum(rss) / len(rss), 1),
                                                "max": round(max(rss), 1)}
                    out["rss_mb_physics"] = round(_rss_mb(run_n.pids["physics"]), 1)
            finally:
                net_down(run_n)
    return out


def run() -> dict:
    """Figures for ``benchmarks/run.py``."""
    return {"channel": bench_channel(), "network": bench_network()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--receive"]:
        trio.run(_receive, bytes.fromhex(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1:2] == ["--network"]:
        print(json.dumps(bench_network(*[int(a) for a in sys.argv[2:]]), indent=2))
    else:
        print(json.dumps(run(), indent=2))
