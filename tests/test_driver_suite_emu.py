"""The driver suite (tests/driver_suite.py) against the emulation's driver.

:class:`EmuHarness` runs the emulation's own pieces -- a
:class:`~qstack.emu.physics.PhysicsServer` and one
:class:`~qstack.emu.daemon.NodeDaemon` per node, talking over TCP on
127.0.0.1 through the same channels as ``qstack net up`` -- in one process,
under trio in a thread of its own, so that the suite can build nodes of its
own probe protocols and reach into them. A crash cancels a daemon (its
connections close, as a killed process's do), a restart starts a fresh one
under the same name.

Real time: the network runs ``TIME_SCALE`` = 5000 times slower than its
model (1 model us = 5 real ms), so the suite's microsecond delays are
milliseconds of real time; the model clock's 0 is set once every daemon is
connected to its neighbours. A real-time driver is late by its process's
scheduling: ``slack_ns`` = 20 ms of real time (4 us of model time), stated
for a loaded two-CPU machine. It cannot fast-forward either: ``run`` waits
for model time to reach its argument but at most ``MAX_WAIT_S`` of real time
(the suite's one long run, 1 model second for a herald, waits for far less).
"""
from __future__ import annotations

import os
import threading
import time

import pytest
import trio

from qstack.config import LinkSpec, NetworkSpec, NodeSpec
from qstack.emu.clock import RealClock
from qstack.emu.daemon import NodeDaemon
from qstack.emu.launcher import free_ports
from qstack.emu.physics import PhysicsServer, serve
from qstack.emu.runfile import RunFile
from qstack.physical.pair_model import SimplePairModel
from tests import driver_suite as suite

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

TIME_SCALE = 5000.0
MAX_WAIT_S = 1.5


class EmuHarness(suite.Harness):
    """The suite's harness over the emulation's physics server and daemons."""

    slack_ns = int(20e6 / TIME_SCALE)       # 20 ms of real time

    def build(self, nodes, links):
        self.factories = nodes
        self.spec = NetworkSpec(
            nodes={n: NodeSpec(n) for n in nodes},
            links=tuple(LinkSpec(a, b, "test", model, 0.0, delay) for a, b, delay, model in links))
        ports = free_ports(len(nodes) + 1)
        self.runfile = RunFile(network="(driver suite)", secret=os.urandom(32).hex(),
                               epoch_ns=time.monotonic_ns(), time_scale=TIME_SCALE,
                               physics_port=ports[0], nodes=dict(zip(nodes, ports[1:])))
        self.daemons: dict[str, NodeDaemon] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    # ------------------------------------------------------------ the trio thread
    def start(self):
        self._ready = threading.Event()
        self._error: list = []
        self._thread = threading.Thread(target=self._thread_main, daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error:
            raise RuntimeError(f"the emulated network did not start: {self._error}")

    def _thread_main(self):
        try:
            trio.run(self._main)
        except BaseException as exc:        # noqa: BLE001 -- reported to the test thread
            self._error.append(exc)
            self._ready.set()

    def _stack(self, name):
        return [f(name) for f in self.factories[name]]

    async def _daemon(self, name, task_status=trio.TASK_STATUS_IGNORED):
        d = NodeDaemon(self.runfile, name, self.spec, stack=self._stack)
        d.clock.epoch_ns = self.clock.epoch_ns      # one clock for the whole network
        self.daemons[name] = d
        with trio.CancelScope() as scope:
            self.scopes[name] = scope
            await d.serve(task_status=task_status)

    async def _main(self):
        self.token = trio.lowlevel.current_trio_token()
        self.clock = RealClock(self.runfile.epoch_ns, TIME_SCALE)
        physics = PhysicsServer(self.spec, self.clock, seed=1)
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await nursery.start(serve, self.runfile, physics)
            for name in self.factories:
                await nursery.start(self._daemon, name)
            # every neighbour's session open before time 0: no message waits for one
            for d in self.daemons.values():
                for other in d.neighbours:
                    d._peer(other)
            with trio.fail_after(20):
                while not all(p.channel is not None and p.boot is not None
                              for d in self.daemons.values() for p in d.peers.values()):
                    await trio.sleep(0.005)
            epoch = time.monotonic_ns()
            for clock in [self.clock] + [d.clock for d in self.daemons.values()]:
                clock.epoch_ns = epoch
            self.runfile.epoch_ns = epoch
            self._ready.set()
            await trio.sleep_forever()

    def call(self, fn, *args):
        """``fn(*args)`` in the trio thread (synchronously), its result."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)

    def stop(self):
        if getattr(self, "token", None) is not None:
            try:
                self.call(self.nursery.cancel_scope.cancel)
            except trio.RunFinishedError:
                pass
            self._thread.join(10)

    # ------------------------------------------------------------ the interface
    def run(self, until_ns):
        wait_s = (until_ns - self.now) * TIME_SCALE / 1e9
        time.sleep(min(MAX_WAIT_S, max(0.0, wait_s)) + self.slack_ns * TIME_SCALE / 1e9)

    def probe(self, node, name=suite.Probe.name):
        return self.call(lambda: self.daemons[node].runtime.protocol(name))

    def inject(self, node, protocol, actions):
        def go():
            rt = self.daemons[node].runtime
            for action in actions:
                rt._run[type(action)](protocol, action, self.now)
        self.call(go)

    def crash(self, node):
        def go():
            self.scopes[node].cancel()
            self.daemons.pop(node)
        self.call(go)

    def restart(self, node):
        async def go():
            await self.nursery.start(self._daemon, node)
        trio.from_thread.run(go, trio_token=self.token)
        # The suite's next step gives the reconnection a few model microseconds
        # (a fraction of a second of real time): on a loaded machine the
        # restarted daemon's sessions may take longer than that to open, so
        # wait (bounded) until every neighbour has seen its new boot.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.call(self._rejoined, node):
            time.sleep(0.01)

    def _rejoined(self, node):
        d = self.daemons.get(node)
        if d is None or d.boot is None:
            return False
        for other in d.neighbours:
            od = self.daemons.get(other)
            peer = od.peers.get(node) if od is not None else None
            if od is not None and (peer is None or not peer.up or peer.boot != d.boot):
                return False
        return True

    def link_down(self, a, b, up=False):
        def go():
            for d in self.daemons.values():
                self.nursery.start_soon(d._link_state, a, b, up)
            station = self._physics_station(a, b)
            if station is not None:
                station.set_up(up)
        self.call(go)

    def _physics_station(self, a, b):
        return None             # the suite's links here have no quantum model

    def reset(self, a, b):
        self.call(lambda: self.nursery.start_soon(self.daemons[a]._reset, b))

    @property
    def now(self):
        return self.clock.now


@pytest.fixture
def harness():
    h = EmuHarness()
    yield h
    h.stop()


@pytest.mark.parametrize("check", suite.CHECKS, ids=lambda c: c.__name__[len("check_"):])
def test_the_emulation_passes(check, harness):
    check(harness)


def test_the_emulation_heralds_both_ends_with_the_key(harness):
    suite.check_both_ends_hear_one_herald_with_the_key(
        harness, SimplePairModel(0.1, 0.99, 1_000, 5_000, 1_000))
