"""Benchmark: the emulation's wire between two processes over localhost.

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

    python -m benchmarks.bench_emu            # prints JSON
"""
from __future__ import annotations

import json
import os
import subprocess
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


def run() -> dict:
    """Figures for ``benchmarks/run.py``."""
    return {"channel": bench_channel()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--receive"]:
        trio.run(_receive, bytes.fromhex(sys.argv[2]), int(sys.argv[3]))
    else:
        print(json.dumps(run(), indent=2))
