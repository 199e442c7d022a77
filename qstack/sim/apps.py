"""Run application coroutines against a :class:`~qstack.sim.network.SimNetwork`.

* :class:`SimRuntime` implements :class:`qstack.transport.runtime.TransportRuntime`
  in simulated time: requests go to the node's transport protocol through the
  driver, the protocol's deliveries come back through the node's listeners,
  waiting is the kernel's runner (``sim.future``, ``sim.wait_for``), and local
  quantum operations run on the node's device with their durations owed to
  the node's processor (a ``busy_until`` clock that the next network operation
  or measurement result waits for).
* :func:`run_apps` spawns ``app(ctx)`` for every node and runs the simulation
  until they have all returned.
* :class:`IdealNetwork` sets up the ideal network layer
  (:mod:`qstack.network.ideal`, ``network.ideal``: end-to-end Werner pairs
  on request after a fixed or random wait, over virtual links): fast
  application tests, and the exact-fidelity checks of the transport (the
  real stack is ``link.egp`` + ``network.qnp``).
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from qstack.core.args import END_OF_TIME_NS
from qstack.core.errors import ErrorCode, QStackError
from qstack.core.protocol import Protocol, on
from qstack.network.service import NetCancel, NetErr, NetOk, NetRequest, PairId
from qstack.physical.ops import Allocate, BellMeasure, Discard, Gate, Measure
from qstack.sim.runner import SimTimeout
from qstack.transport.messages import PROTOCOL as TRANSPORT
from qstack.transport.runtime import TransportRuntime
from qstack.transport.socket import NodeContext, TransportClient

__all__ = ["SimRuntime", "AppRun", "run_apps", "IdealNetwork"]


class SimRuntime(TransportRuntime):
    """The socket API's runtime on node ``node`` of ``net`` (simulated time)."""

    def __init__(self, net: Any, node: str, protocol: str = TRANSPORT) -> None:
        self.net = net
        self.sim = net.sim
        self.node = node
        self.protocol = protocol
        self._node = net.node(node)
        self.device = self._node.device
        self.busy_until = 0
        self.ops_executed = 0
        # Operations starting after this may end past the end of simulated time.
        self._last_start = END_OF_TIME_NS - self.device.hw.longest_op_ns

    def _refuse_past_the_end(self, op: Any, start: int) -> None:
        """``OUT_OF_RANGE`` if ``op`` started at ``start`` would end after the
        end of simulated time (nothing is executed, the qubits are untouched)."""
        hw = self.device.hw
        if isinstance(op, Gate):
            duration = hw.gate_2q_ns if len(op.qubits) == 2 else hw.gate_1q_ns
        else:
            duration = {Allocate: hw.init_ns, Measure: hw.measure_ns, BellMeasure: hw.bsm_ns,
                        Discard: 0}.get(type(op), hw.longest_op_ns)
        if start + duration > END_OF_TIME_NS:
            raise QStackError(ErrorCode.OUT_OF_RANGE,
                              f"{type(op).__name__} starting at t={start} ns would end after "
                              f"the end of simulated time (t={END_OF_TIME_NS} ns)")

    def now_ns(self) -> int:
        return self.sim.now

    def sleep(self, delay_ns: int):
        return self.sim.sleep(delay_ns)

    def future(self) -> Any:
        return self.sim.future()

    async def wait(self, future: Any, timeout_ns: int | None) -> Any:
        try:
            return await self.sim.wait_for(future, timeout_ns)
        except SimTimeout as exc:
            raise TimeoutError(str(exc)) from None

    def submit(self, request: Any) -> None:
        self.net.submit(self.node, request, to=self.protocol)

    def submit_to(self, protocol: str, request: Any) -> None:
        self.net.submit(self.node, request, to=protocol)

    def subscribe(self, callback: Callable[[Any], None]) -> None:
        self.net.node(self.node).listeners.append(callback)

    # Local operations run on the device at once, in simulated time: the
    # queue of the contract is never longer than one operation, and the
    # ordering promise holds trivially. What is owed is time: an operation
    # starts when the previous one of this node's applications has finished
    # (``busy_until``), and outcome / settle wait for that.
    def _execute(self, op: Any) -> Any:
        """Run ``op`` now; its outcome, or the QStackError it failed with."""
        if not self._node.up:
            return QStackError(ErrorCode.TRANSPORT_NODE_DOWN,
                               f"{self.node} is down: no operation runs on it")
        start = max(self.sim.now, self.busy_until)
        if start > self._last_start:
            try:
                self._refuse_past_the_end(op, start)
            except QStackError as err:
                return err
        duration, outcome = self.device.execute(op, start)
        self.busy_until = start + int(duration)
        self.ops_executed += 1
        return outcome

    def allocate(self) -> Any:
        ref = self._execute(Allocate())
        if isinstance(ref, BaseException):
            raise ref
        return ref

    def enqueue(self, op: Any, failed: Callable[[Any], None] | None = None) -> None:
        outcome = self._execute(op)
        if failed is not None and isinstance(outcome, BaseException):
            failed(outcome)

    async def outcome(self, op: Any) -> Any:
        outcome = self._execute(op)
        if isinstance(outcome, BaseException):
            raise outcome
        wait = self.busy_until - self.sim.now
        if wait > 0:
            await self.sim.sleep(wait)
        return outcome

    async def settle(self) -> None:
        wait = self.busy_until - self.sim.now
        if wait > 0:
            await self.sim.sleep(wait)

    def rng(self) -> Any:
        return self.sim.rng(f"app:{self.node}")

    def peek(self, ref: Any) -> Any:
        # Bring the qubit's memory decay up to now first (decay is applied lazily).
        self.device.update(ref, self.sim.now)
        return self.net.engine.density_matrix([ref])


@dataclass
class AppRun:
    """The outcome of :func:`run_apps`: per application name, its return value
    or the exception it raised; its finishing time (ns); the contexts.
    ``faults``: exceptions protocols raised while handling events (bugs),
    which did not end the run (see :func:`run_apps`)."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    finished_ns: dict[str, int] = field(default_factory=dict)
    contexts: dict[str, NodeContext] = field(default_factory=dict)
    end_ns: int = 0
    events: int = 0
    timed_out: bool = False
    stalled: bool = False
    faults: list[BaseException] = field(default_factory=list)


class _Watchdog:
    """Checks every ``period_ns`` whether the applications made progress."""

    def __init__(self, sim: Any, tasks: list, period_ns: int, run: AppRun) -> None:
        self.sim, self.tasks, self.period, self.run = sim, tasks, max(1, period_ns), run
        self.last = -1

    def _progress(self) -> int:
        return sum(t.steps for t in self.tasks)

    def arm(self, delay_ns: int | None = None) -> None:
        self.last = self._progress()
        self.sim.schedule(self.period if delay_ns is None else delay_ns, self._check)

    def _check(self) -> None:
        live = [t for t in self.tasks if not t.done()]
        if not live:
            return
        # Only parked tasks can stall; a sleeping one will wake by itself.
        wakes = [t.wakes_at_ns for t in live if t.waiting_on is None]
        if not wakes and self._progress() == self.last:
            self.run.stalled = True
            return
        if self.sim.pending > 0:      # otherwise the run ends idle (a deadlock) by itself
            # Nothing can stall before the first sleeper wakes: look one period
            # after that, not every period of a long sleep (a sleep to the end
            # of simulated time would otherwise cost 10^7 checks).
            first_wake = min((w for w in wakes if w is not None), default=None)
            if first_wake is not None and first_wake - self.sim.now > self.period:
                self.arm(first_wake - self.sim.now + self.period)
            else:
                self.arm()


#: Default of :func:`run_apps`'s ``stall_ns``: 300 simulated seconds.
STALL_NS = 300 * 10**9


def _released(task: Any, ctx: NodeContext) -> None:
    """An application ended (however): what it left behind is released, its
    open sockets aborted, its qubits freed, but what it returned
    (``NodeContext.release_all``). A done callback rather than a wrapping
    coroutine: that would be one more frame on every step of the application."""
    result = None
    if not task.cancelled() and task.exception() is None:
        result = task.result()
    ctx.release_all(keep=result)


def run_apps(net: Any, apps: dict[str, Any], until_ns: int | None = None,
             protocol: str = TRANSPORT, stall_ns: int | None = STALL_NS,
             runtime: Callable[..., TransportRuntime] | None = None) -> AppRun:
    """Run ``apps`` on ``net``: ``{node: fn}`` or ``{node: [fn, ...]}``, each
    ``fn`` an ``async def fn(ctx)``. Returns when all have finished, or at
    ``until_ns`` (simulated ns) with ``timed_out`` set and the unfinished ones
    listed in ``errors`` as ``TimeoutError``.

    Names (the keys of ``results``, ``errors``, ...; ``ctx.app``): a node
    running one function is named by the node; with several, each is
    ``"node:function"``, and a function given more than once for a node (or
    two functions with the same ``__name__``, e.g. made by one factory) runs
    once per listing, each named ``"node:function#i"`` with ``i`` its
    position in the node's list, so no result is dropped. Every function is
    checked (an ``async def``, for a known node) before any starts:
    ``TypeError`` / ``ValueError`` naming it otherwise.

    A protocol that raises while handling an event (a bug, or a bad value
    that got past the checks) does not end the run: that event is dropped,
    the exception is kept in ``faults`` and recorded in ``net.errors`` as
    ``INTERNAL_ERROR`` (node and protocol named), and the simulation goes
    on; the applications waiting on that protocol may then time out or stall.

    ``stall_ns``: stop early when, for this long in simulated time, every
    unfinished application has been parked on a network operation without
    being resumed while the layers below keep busy (e.g. retrying into a
    memory the applications keep full): a stalled run then ends with the
    unfinished ones in ``errors`` (``stalled`` set) instead of running for
    ever. ``None`` waits without limit.

    ``runtime``: makes each node's runtime, ``runtime(net, node, protocol)``
    (default :class:`SimRuntime`; tests pass stand-ins for other drivers).
    """
    make_runtime = SimRuntime if runtime is None else runtime
    run = AppRun()
    clients: dict[str, TransportClient] = {}
    tasks = []
    for node, fn, name in _plan(net, apps):
        if node not in clients:
            clients[node] = TransportClient(make_runtime(net, node, protocol))
        ctx = NodeContext(clients[node].runtime, clients[node], app=name)
        run.contexts[name] = ctx
        task = net.sim.spawn(fn(ctx), name=name)
        task.add_done_callback(lambda t, ctx=ctx: _released(t, ctx))
        # Marks the task as observed (so strict mode does not re-raise its
        # exception out of net.run) and notes when it finished.
        task.add_done_callback(lambda t, name=name: run.finished_ns.setdefault(name, net.sim.now))
        tasks.append(task)
    # (the run's stop condition is checked after every event: a count, not a scan)
    running = [len(tasks)]
    for task in tasks:
        task.add_done_callback(lambda t: running.__setitem__(0, running[0] - 1))
    start_events = net.sim.events_fired if hasattr(net.sim, "events_fired") else 0
    if stall_ns is not None and tasks:
        _Watchdog(net.sim, tasks, int(stall_ns), run).arm()
    while True:
        try:
            net.run(until_ns=until_ns, stop_when=lambda: running[0] <= 0 or run.stalled)
            break
        except Exception as exc:     # a protocol's bug: record it, drop the event, go on
            _record_fault(net, run, exc)
    run.end_ns = net.sim.now
    run.events = (net.sim.events_fired - start_events) if hasattr(net.sim, "events_fired") else 0
    for task in tasks:
        if task.done() and not task.cancelled():
            run.finished_ns.setdefault(task.name, net.sim.now)
            exc = task.exception()
            if exc is None:
                run.results[task.name] = task.result()
            else:
                run.errors[task.name] = exc
        elif not task.done():
            waiting = task.waiting_on
            run.timed_out = until_ns is not None and net.sim.now >= until_ns
            if run.timed_out:
                why = f"still running at t={net.sim.now} ns"
            elif run.stalled:
                why = (f"stalled: no application progressed for {stall_ns / 1e9:g} s of "
                       f"simulated time (t={net.sim.now} ns; waits on {waiting!r}); a "
                       "full memory or a missing peer are the usual causes")
            else:
                why = f"deadlocked at t={net.sim.now} ns (waits on {waiting!r})"
            run.errors[task.name] = TimeoutError(f"application {task.name!r} {why}")
            task.cancel()
    return run


def _plan(net: Any, apps: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(node, function, name) of every application, all checked first."""
    if not isinstance(apps, dict):
        raise TypeError(f"apps: expected {{node: async fn}}, got {type(apps).__name__}")
    plan = []
    for node, fns in apps.items():
        if node not in net.nodes:
            raise ValueError(f"application for unknown node {node!r} "
                             f"(nodes: {', '.join(sorted(map(str, net.nodes)))})")
        if callable(fns):
            fns = [fns]
        elif not isinstance(fns, (list, tuple)):
            raise TypeError(f"applications for {node}: expected an async def function or a "
                            f"list of them, got {fns!r}")
        labels = [str(getattr(fn, "__name__", i)) for i, fn in enumerate(fns)]
        for i, fn in enumerate(fns):
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"application {labels[i]!r} for {node} must be "
                                "an async def function taking the node context")
            if len(fns) == 1:
                name = node
            elif labels.count(labels[i]) > 1:
                name = f"{node}:{labels[i]}#{i}"
            else:
                name = f"{node}:{labels[i]}"
            plan.append((node, fn, name))
    names = [name for _, _, name in plan]
    for name in names:
        if names.count(name) > 1:    # only contrived node and function names get here
            raise ValueError(f"two applications would both be named {name!r}")
    return plan


def _record_fault(net: Any, run: AppRun, exc: Exception) -> None:
    """Keep an exception a protocol raised while handling an event, with the
    node and protocol it came from (the innermost protocol in its traceback)."""
    from qstack.sim.network import FailRecord

    node = proto = "?"
    tb = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, Protocol):
            node, proto = obj.node, obj.name
        tb = tb.tb_next
    run.faults.append(exc)
    net.errors.append(FailRecord(net.sim.now, node, proto, ErrorCode.INTERNAL_ERROR,
                                 f"{type(exc).__name__}: {exc}"))
    logging.getLogger("qstack.sim").error("t=%d ns %s %s raised %s: %s (event dropped, the run "
                                          "goes on)", net.sim.now, node, proto,
                                          type(exc).__name__, exc, exc_info=exc)


# ---------------------------------------------------------------- an ideal network layer

class IdealNetwork:
    """The ideal network layer (:class:`qstack.network.ideal.IdealNetProtocol`,
    ``network.ideal``) set up on a :class:`~qstack.sim.network.SimNetwork`:
    end-to-end Werner pairs of ``fidelity`` on request, without links or
    repeaters, for fast application and transport work.

    Each pair of nodes gets a virtual link on first use (the driver's
    :meth:`~qstack.sim.network.SimNetwork.add_virtual_links`) that makes a
    pair after a wait of mean ``interval_ns`` (exponential if
    ``random_interval``, else exactly that), in a uniformly random Bell
    state (``random_bell``) or Phi+; both ends hear of it ``far_delay_ns``
    later (default: the classical delay between them), both at once. A pair needs a free
    memory slot at both ends. ``fail`` (``(node, request) -> ErrorCode |
    None``) makes a node's layer refuse requests (a test's injected error);
    :meth:`expire` loses a held pair at both ends.
    """

    def __init__(self, net: Any, fidelity: float = 1.0, interval_ns: int = 1_000_000,
                 random_interval: bool = False, random_bell: bool = True,
                 far_delay_ns: int | None = None, fail: Callable | None = None) -> None:
        from qstack.physical.pair_model import SimplePairModel

        self.net = net
        self.fidelity = float(fidelity)
        self.interval_ns = int(interval_ns)
        self.fail = fail
        bell = None if random_bell else 0
        interval = max(1, self.interval_ns)
        # a wait of mean `interval`: geometric attempts of a small p (exponential
        # in the limit), or one attempt heralded `interval` late
        p = 0.01 if random_interval else 1.0
        cycle = max(1, round(interval * p / (1 - p))) if random_interval else 1

        def model(a: str, b: str, delay_ns: int) -> SimplePairModel:
            d = delay_ns if far_delay_ns is None else int(far_delay_ns)
            extra = 0 if random_interval else interval
            return SimplePairModel(p, self.fidelity, cycle, d + extra, d, bell_index=bell)

        net.add_virtual_links(model)

    def protocol(self, node: str) -> Any:
        """A fresh ``network.ideal`` protocol for ``node`` (for its stack)."""
        from qstack.network.ideal import IdealNetProtocol

        refuse = None
        if self.fail is not None:
            refuse = (lambda req, node=node: self.fail(node, req))
        return IdealNetProtocol(node, self.fidelity, refuse=refuse)

    def install(self, nodes: list[str] | None = None) -> None:
        """Stack a ``network.ideal`` protocol on each node (before the transport)."""
        for name in nodes or list(self.net.nodes):
            self.net.add_protocol(name, self.protocol(name))

    @property
    def pairs(self) -> dict[tuple, str]:
        """Pairs held by the heads: (head, request id, seq) -> the tail."""
        out = {}
        for node in self.net.nodes.values():
            proto = node.protocols.get("network.ideal")
            if proto is not None:
                for key, (_q, remote) in proto.held.items():
                    if key[0] == node.name:
                        out[key] = remote
        return out

    @property
    def made(self) -> int:
        """Pairs made so far on the virtual links (heralded, whether delivered or not)."""
        return sum(link.station.pairs_heralded for link in self.net.virtual_links())

    def expire(self, key: tuple, reason: str = "test", at: str | None = None) -> None:
        """Lose pair ``key`` = (head, request id, seq) at both ends: node
        ``at`` (default: the head) frees its half and delivers ``NetExpire``
        now, the other end when told (one classical delay later, and never
        before its ``NetOk``)."""
        from qstack.network.ideal import ExpirePair
        from qstack.network.service import PairId

        self.net.submit(at or key[0], ExpirePair(PairId(*key), reason), to="network.ideal")
