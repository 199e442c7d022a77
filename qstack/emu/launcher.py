"""Start, inspect and stop an emulated network on localhost (``qstack net ...``).

:func:`net_up` starts the physics server and one node daemon per node, each
its own process (``python -m qstack.emu.physics RUN`` / ``python -m
qstack.emu.daemon RUN NODE``), on ports chosen free on 127.0.0.1, and writes
the run file (:mod:`qstack.emu.runfile`) with the ports, the process ids and
a fresh secret. It returns when every daemon answers a status query over an
authenticated connection (so it has its stack, its listener and its
connection to the physics server), or stops everything and raises
:class:`LaunchError` naming the process that did not start and the end of
its log. Nodes named in ``absent`` are not started: their ports are
reserved in the run file (``absent`` lists them) for another program to
play them, e.g. ``qstack conformance``, which impersonates a node of the
network (``specs/conformance.md``). :func:`net_status` asks each daemon for its figures;
:func:`net_down` stops every process (SIGTERM, then SIGKILL) and removes the
run file. Processes' logs go to a directory beside the run file.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from qstack.core.errors import ErrorCode, QStackError
from qstack.emu.messages import (
    NodeFault, NodeLinkState, NodeStatus, PhysCensusQuery, PhysLinkState, StatusQuery,
)
from qstack.emu.runfile import RunFile, channel_api, default_path

__all__ = ["net_up", "net_down", "net_status", "net_fault", "net_census", "fault_schedule",
           "run_schedule", "LaunchError", "free_ports", "alive"]


class LaunchError(QStackError):
    """A process of the network did not start (``EMU_PEER_GONE``; the detail
    names it and quotes its log)."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (and is not a zombie of ours)."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # a session of its own: Ctrl-C in the terminal reaches `qstack`, which
    # stops them all in order, not each process half-way
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def net_up(network: str | Path, run_path: str | Path | None = None, *, seed: int = 1,
           time_scale: float = 1.0, formalism: str | None = None,
           timeout_s: float = 30.0, absent: tuple[str, ...] | list[str] = (),
           keepalive_s: float = 0.5, dead_after_s: float = 2.0) -> RunFile:
    """Start the network of ``network`` (a TOML file) on localhost; return
    its run file once every node is ready (see the module doc). ``seed``
    (integer), ``time_scale`` (real seconds per model second), ``timeout_s``
    (s) to wait for every node; ``absent``: nodes not to start (their ports
    reserved; a name not in the network is ``BAD_CONFIG``); ``keepalive_s``
    and ``dead_after_s`` (s): every session's keepalive period and dead-peer
    bound (``specs/wire.md``)."""
    from qstack.config import load_network

    network = str(Path(network).resolve())
    spec = load_network(network)            # a bad file fails here, before any process
    absent = list(dict.fromkeys(absent))
    unknown = [a for a in absent if a not in spec.nodes]
    if unknown:
        raise QStackError(ErrorCode.BAD_CONFIG, f"absent node(s) {', '.join(map(repr, unknown))} "
                                                f"not in {network}")
    target = Path(run_path) if run_path else default_path()
    if target.exists():
        try:
            old = RunFile.load(target)
            if any(alive(pid) for pid in old.pids.values()):
                raise LaunchError(ErrorCode.EMU_PEER_GONE,
                                  f"a network is already up with run file {target} "
                                  "(`qstack net down` first, or --run another file)")
        except (ValueError, KeyError, TypeError):
            pass
    names = list(spec.nodes)
    ports = free_ports(len(names) + 1)
    logs = target.parent / (target.stem + "-logs")
    logs.mkdir(parents=True, exist_ok=True)
    run = RunFile(network=network, secret=os.urandom(32).hex(), epoch_ns=time.monotonic_ns(),
                  time_scale=float(time_scale), seed=int(seed), formalism=formalism,
                  physics_port=ports[0], nodes=dict(zip(names, ports[1:])), logs=str(logs),
                  absent=absent, keepalive_s=float(keepalive_s),
                  dead_after_s=float(dead_after_s))
    run.save(target)
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["physics"] = _spawn(["qstack.emu.physics", run.path], logs / "physics.log")
        run.pids["physics"] = procs["physics"].pid
        # the daemons start while the physics server does (each waits for it):
        # a process's start is mostly Python's imports
        started = [n for n in names if n not in absent]
        for name in started:
            procs[name] = _spawn(["qstack.emu.daemon", run.path, name], logs / f"{name}.log")
            run.pids[name] = procs[name].pid
        _wait_port(run.physics_port, procs["physics"], "physics", logs / "physics.log",
                   timeout_s)
        if spec.faults:
            # started now, so that it is ready when the network is (it waits for that)
            procs["faults"] = _spawn(["qstack.emu.launcher", "faults", run.path],
                                     logs / "faults.log")
            run.pids["faults"] = procs["faults"].pid
        run.save(target)
        pending = set(started)
        deadline = time.monotonic() + timeout_s
        while pending:
            for name in sorted(pending):
                if procs[name].poll() is not None:
                    raise LaunchError(ErrorCode.EMU_PEER_GONE,
                                      f"node {name} did not start (exit {procs[name].returncode})"
                                      f":\n{_tail(logs / f'{name}.log')}")
            ready = trio.run(_ready, run, sorted(pending))
            pending -= ready
            if pending and time.monotonic() > deadline:
                first = sorted(pending)[0]
                raise LaunchError(ErrorCode.EMU_PEER_GONE,
                                  f"node {first} not ready after {timeout_s:g} s "
                                  f"({len(pending)} not ready):\n{_tail(logs / f'{first}.log')}")
            if pending:
                time.sleep(0.05)
        # the [faults] schedule's time 0: now, when the network is ready (as
        # the simulator's is when its applications start)
        run.ready_ns = run.now_ns()
        run.save(target)
        if spec.kms is not None:
            _start_kms(run, spec, procs, target, timeout_s)
    except BaseException:
        _stop(list(procs.values()))
        target.unlink(missing_ok=True)
        raise
    return run


def _start_kms(run: RunFile, spec: Any, procs: dict, target: Path, timeout_s: float) -> None:
    """``[kms]``: certificates (a private CA, one per KME and SAE) under the
    logs' ``kms/``, a port per node, and a KME process per node
    (:func:`qstack.emu.kms.run_kme`, ``kms-NODE`` in the run file's pids, its
    log ``kms-NODE.log``)."""
    from qstack.emu.kms import make_certs

    names = list(spec.nodes)
    ports = (free_ports(len(names)) if spec.kms.port == 0
             else [spec.kms.port + i for i in range(len(names))])
    certs = make_certs(Path(run.logs) / "kms", names, [sae for sae, _ in spec.kms.saes])
    run.kms = {"ports": dict(zip(names, ports)), "certs": str(certs)}
    run.save(target)
    for name in names:
        procs[f"kms-{name}"] = _spawn(["qstack.emu.kms", run.path, name],
                                      Path(run.logs) / f"kms-{name}.log")
        run.pids[f"kms-{name}"] = procs[f"kms-{name}"].pid
    run.save(target)
    for name, port in zip(names, ports):
        _wait_port(port, procs[f"kms-{name}"], f"kms-{name}", Path(run.logs) / f"kms-{name}.log",
                   timeout_s)


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise LaunchError(ErrorCode.EMU_PEER_GONE,
                              f"{what} did not start (exit {proc.returncode}):\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LaunchError(ErrorCode.EMU_PEER_GONE,
                              f"{what} not listening after {timeout_s:g} s:\n{_tail(log)}")
        time.sleep(0.02)


async def _ready(run: RunFile, names: list[str]) -> set[str]:
    ready: set[str] = set()

    async def one(name: str) -> None:
        try:
            with trio.move_on_after(1.0):
                status = await _query(run, name)
                if status is not None:
                    ready.add(name)
        except (QStackError, OSError):
            pass

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)
    return ready


async def _query(run: RunFile, name: str) -> NodeStatus | None:
    """Node ``name``'s status (raises the ``QStackError`` of a failed connection)."""
    open_channel, _accept, _closed = channel_api()
    box: list = []
    async with trio.open_nursery() as nursery:
        try:
            ch = await open_channel(run.host, run.nodes[name], name="qstack-net",
                                    kind="control", secret=run.secret_bytes, nursery=nursery,
                                    connect_timeout_s=1.0)
            try:
                await ch.send(StatusQuery(1))
                reply = await ch.receive()
                box.append(reply if isinstance(reply, NodeStatus) else None)
            finally:
                await ch.aclose()
        except (QStackError, OSError) as exc:
            box.append(exc)
        nursery.cancel_scope.cancel()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def net_status(run: RunFile) -> dict[str, Any]:
    """Per node started: its ``NodeStatus`` (up), or the reason it does not
    answer (absent nodes are left out)."""
    async def all_status() -> dict[str, Any]:
        out: dict[str, Any] = {}

        async def one(name: str) -> None:
            try:
                with trio.fail_after(3.0):
                    out[name] = await _query(run, name)
            except (QStackError, OSError, trio.TooSlowError) as exc:
                out[name] = exc

        async with trio.open_nursery() as nursery:
            for name in run.nodes:
                if name not in run.absent:
                    nursery.start_soon(one, name)
        return out

    return trio.run(all_status)


def net_fault(run: RunFile, kind: str, a: str, b: str = "") -> None:
    """Apply a fault to the running network: ``kind`` "crash" (node ``a``'s
    daemon killed, SIGKILL), "restart" (node ``a`` started again, fresh),
    "link-down" / "link-up" (the quantum link ``a``-``b``), "reset" (the
    classical connection ``a``-``b`` breaks and reconnects)."""
    if kind == "crash":
        pid = run.pids.get(a)
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
        return
    if kind == "restart":
        logs = Path(run.logs)
        proc = _spawn(["qstack.emu.daemon", run.path, a], logs / f"{a}.log")
        run.pids[a] = proc.pid
        run.save()
        return

    async def tell() -> None:
        open_channel, _accept, _closed = channel_api()
        async with trio.open_nursery() as nursery:
            if kind in ("link-down", "link-up"):
                up = kind == "link-up"
                targets = [(run.physics_port, PhysLinkState(a, b, up))]
                targets += [(port, NodeLinkState(a, b, up)) for port in run.nodes.values()]
            elif kind == "reset":
                targets = [(run.nodes[a], NodeFault("reset", b))]
            else:
                raise QStackError(ErrorCode.INVALID_PARAMETER, f"unknown fault {kind!r}")
            for port, msg in targets:
                try:
                    ch = await open_channel(run.host, port, name="qstack-net", kind="control",
                                            secret=run.secret_bytes, nursery=nursery,
                                            connect_timeout_s=1.0)
                except (QStackError, OSError):
                    continue            # a crashed node: it learns the links' state on restart
                await ch.send(msg)
                await trio.sleep(0.01)
                await ch.aclose()
            nursery.cancel_scope.cancel()

    trio.run(tell)


def net_census(run: RunFile) -> dict[str, Any]:
    """The physics server's qubit census: ``{"engine": qubits alive in the
    state engine, "held": qubits held in memories, "per_node": {node: n}}``
    (``engine == held`` unless a qubit was lost or duplicated)."""
    async def ask() -> dict[str, Any]:
        open_channel, _accept, _closed = channel_api()
        async with trio.open_nursery() as nursery:
            ch = await open_channel(run.host, run.physics_port, name="qstack-net",
                                    kind="control", secret=run.secret_bytes, nursery=nursery,
                                    connect_timeout_s=1.0)
            with trio.fail_after(5):
                await ch.send(PhysCensusQuery(1))
                reply = await ch.receive()
            await ch.aclose()
            nursery.cancel_scope.cancel()
        return {"engine": reply.engine, "held": reply.held,
                "per_node": dict(zip(reply.nodes, reply.per_node))}

    return trio.run(ask)


def fault_schedule(faults: Any) -> list[tuple[int, str, str, str]]:
    """The ``net_fault`` calls a fault schedule (:class:`qstack.core.faults.Fault`
    list) makes, in order: ``(at_ns, kind, a, b)``, a restart or a link back
    up at its fault's ``at_ns + after_ns``."""
    steps = []
    for f in faults:
        a, b = f.nodes[0], (f.nodes[1] if len(f.nodes) > 1 else "")
        if f.kind == "crash":
            steps.append((f.at_ns, "crash", a, b))
            if f.after_ns is not None:
                steps.append((f.at_ns + f.after_ns, "restart", a, b))
        elif f.kind == "link_down":
            steps.append((f.at_ns, "link-down", a, b))
            if f.after_ns is not None:
                steps.append((f.at_ns + f.after_ns, "link-up", a, b))
        else:
            steps.append((f.at_ns, "reset", a, b))
    return sorted(steps, key=lambda s: s[0])


def run_schedule(run_path: str | Path) -> None:
    """Apply the ``[faults]`` of the running network's file, each at its
    ``at_s`` after the network was ready (the run file's ``ready_ns``, which
    this waits for), then return (the process ``net_up`` starts for a file
    with faults)."""
    from qstack.config import load_network
    from qstack.emu.clock import model_now_ns

    run = RunFile.load(run_path)
    while not run.ready_ns:
        time.sleep(0.005)
        run = RunFile.load(run_path)
    start_ns = run.ready_ns
    for at_ns, kind, a, b in fault_schedule(load_network(run.network).faults):
        wait_ns = start_ns + at_ns - model_now_ns(run.epoch_ns, run.time_scale)
        if wait_ns > 0:
            time.sleep(wait_ns * run.time_scale / 1e9)
        run = RunFile.load(run_path)          # a restart changed the pids
        print(f"{model_now_ns(run.epoch_ns, run.time_scale) - start_ns} ns: {kind} {a} {b}",
              flush=True)
        net_fault(run, kind, a, b)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 3
    for p in procs:
        try:
            p.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def net_down(run: RunFile) -> list[str]:
    """Stop every process of ``run`` and remove its run file; the names of
    those that were still running."""
    stopped = []
    if run.path:
        try:        # a restart (net_fault, the fault schedule) wrote the pids it started
            run.pids.update(RunFile.load(run.path).pids)
        except (OSError, ValueError):
            pass
    for name, pid in run.pids.items():
        if alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
                stopped.append(name)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 3
    for name, pid in run.pids.items():
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if run.path:
        Path(run.path).unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    """``python -m qstack.emu.launcher faults RUN``: the fault schedule's process."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qstack.emu.launcher")
    parser.add_argument("what", choices=["faults"])
    parser.add_argument("runfile")
    args = parser.parse_args(argv)
    run_schedule(args.runfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
