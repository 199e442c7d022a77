"""Applications against an emulated network: :func:`connect` and :class:`EmuRuntime`.

The socket API (:mod:`qstack.transport.socket`) is written against
:class:`~qstack.transport.runtime.TransportRuntime`; :class:`EmuRuntime` is
that runtime in real time, over a connection to the node's daemon
(``kind="app"``): requests go to the daemon's transport protocol and its
indications come back; local quantum operations are sent, in order, for the
physics server (a gate returns at once, a measurement waits for its outcome:
one round trip); a new qubit's reference is chosen here, so ``ctx.qubit()``
answers at once (a full memory is then reported by the next operation that
waits, as a queued operation's failure is). Times are integer nanoseconds of
the network's model clock (real time divided by the run's time scale).

``qstack run NODE APP.py`` runs ``APPS[NODE]`` of a file through
:func:`run_app`; a plain trio program uses ``async with qstack.connect("alice")
as ctx:``. The same application function runs under ``qstack.simulate`` and
here, unchanged.
"""
from __future__ import annotations

from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import numpy as np
import trio

from qstack.core.errors import ErrorCode, QStackError
from qstack.emu.channel import forward
from qstack.emu.clock import model_now_ns
from qstack.emu.messages import (
    APP_REF_BITS, CHOSEN_REF_BASE, INDICATIONS, QUIET, QUIET_CONFIRM_EVERY, AppConsumed,
    AppQkdResult, AppWelcome, PhysResult, PhysSettle, as_code, event_from_wire, op_to_wire,
    qkd_request_to_wire, qkd_result_from_wire, request_to_wire,
)
from qstack.emu.runfile import RunFile, channel_api
from qstack.physical.ops import Allocate
from qstack.transport.runtime import TransportRuntime
from qstack.transport.socket import NodeContext, TransportClient

__all__ = ["EmuRuntime", "TrioFuture", "connect", "run_app", "merge_consumed"]

#: The largest count one ``AppConsumed`` carries (its field's limit).
MAX_CONSUMED = 1 << 31



class TrioFuture:
    """A future for the socket API under trio (``done``, ``result``,
    ``set_result``, ``set_exception``; awaited through :meth:`EmuRuntime.wait`)."""

    __slots__ = ("_event", "_value", "_error", "_done")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        if not self._done:
            raise RuntimeError("the future is not done")
        if self._error is not None:
            raise self._error
        return self._value

    def set_result(self, value: Any) -> None:
        if not self._done:
            self._value, self._done = value, True
            self._event.set()

    def set_exception(self, exc: BaseException) -> None:
        if not self._done:
            self._error, self._done = exc, True
            self._event.set()

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self) -> Any:
        await self._event.wait()
        return self.result()


class EmuRuntime(TransportRuntime):
    """Node ``welcome.node``'s runtime for an application process (see the module doc)."""

    def __init__(self, channel: Any, welcome: AppWelcome, nursery: Any) -> None:
        self.channel = channel
        self.node = welcome.node
        self.epoch_ns = welcome.epoch_ns
        self.time_scale = welcome.time_scale
        self.seed = welcome.seed
        self.app_id = welcome.app_id
        self._nursery = nursery
        self._callbacks: list[Callable[[Any], None]] = []
        self._requests = 0
        self._waiting: dict[int, Any] = {}       # request -> future or failed-callback
        self._quiet: deque[int] = deque()         # QUIET requests not confirmed yet
        self._refs = 0
        self._alloc_failures: list[QStackError] = []
        self._outbox_send, self._outbox_recv = trio.open_memory_channel(float("inf"))
        self.closed: QStackError | None = None
        self._qkd_parts: list = []          # AppQkdResult frames of the result arriving

    # ------------------------------------------------------------------ clock
    def now_ns(self) -> int:
        return model_now_ns(self.epoch_ns, self.time_scale)

    def _real_s(self, model_ns: int) -> float:
        return model_ns * self.time_scale / 1e9

    async def sleep(self, delay_ns: int) -> None:
        await trio.sleep(max(0.0, self._real_s(delay_ns)))

    async def _until(self, model_ns: int) -> None:
        wait = model_ns - self.now_ns()
        if wait > 0:
            await trio.sleep(self._real_s(wait))

    def future(self) -> TrioFuture:
        return TrioFuture()

    async def wait(self, future: Any, timeout_ns: int | None) -> Any:
        if timeout_ns is None or timeout_ns >= (1 << 62):
            return await future
        with trio.move_on_after(max(0.0, self._real_s(timeout_ns))):
            return await future
        raise TimeoutError(f"no answer within {timeout_ns} ns")

    # ------------------------------------------------------------------ requests
    def _send(self, msg: Any) -> None:
        if self.closed is not None:
            raise QStackError(ErrorCode.TRANSPORT_NODE_DOWN,
                              f"the connection to {self.node}'s daemon is gone: {self.closed}")
        self._outbox_send.send_nowait(msg)

    def submit(self, request: Any) -> None:
        self._send(request_to_wire(request))

    def submit_to(self, protocol: str, request: Any) -> None:
        """``app.qkd``'s requests (a decoy-BB84 block) go to the daemon as
        ``AppQkdRequest``; its results come back to the callbacks."""
        from qstack.app.qkd.bb84 import QkdRequest
        from qstack.app.qkd.messages import PROTOCOL as QKD

        if protocol == QKD and isinstance(request, QkdRequest):
            self._send(qkd_request_to_wire(request))
            return
        super().submit_to(protocol, request)

    def subscribe(self, callback: Callable[[Any], None]) -> None:
        self._callbacks.append(callback)

    def _request_id(self) -> int:
        self._requests += 1
        return self._requests

    def allocate(self) -> Any:
        if self._refs >= (1 << APP_REF_BITS) - 1:
            raise QStackError(ErrorCode.MEMORY_FULL, "this application made 2**24 qubits")
        self._refs += 1
        ref = CHOSEN_REF_BASE + (self.app_id << APP_REF_BITS) + self._refs
        self._send_unawaited(op_to_wire(Allocate(), self._request_id(), queued=True,
                                        chosen_ref=ref), self._alloc_failures.append)
        return ref

    def enqueue(self, op: Any, failed: Callable[[Any], None] | None = None) -> None:
        self._send_unawaited(op_to_wire(op, self._request_id(), queued=True),
                             failed if failed is not None else _ignore)

    def _send_unawaited(self, msg: Any, failed: Callable[[Any], None]) -> None:
        """Send an operation nobody waits for; ``failed(err)`` if it fails.
        A QUIET one is answered only if it fails (``specs/emulation.md`` §4):
        its callback is dropped when an awaited answer after it comes back."""
        self._waiting[msg.request] = failed
        self._send(msg)
        if msg.__class__ in QUIET:
            self._quiet.append(msg.request)
            if len(self._quiet) % QUIET_CONFIRM_EVERY == 0:
                # a long run of them: an answer (nobody awaits) that confirms them
                request = self._request_id()
                self._waiting[request] = TrioFuture()
                self._send(PhysSettle(request))

    async def _ask(self, msg_for: Callable[[int], Any]) -> PhysResult:
        """Send ``msg_for(request)`` (an operation answered in any case) and
        wait for its answer."""
        request = self._request_id()
        fut = TrioFuture()
        self._waiting[request] = fut
        self._send(msg_for(request))
        result: PhysResult = await fut
        return result

    def _raise_alloc_failure(self) -> None:
        if self._alloc_failures:
            raise self._alloc_failures.pop(0)

    async def outcome(self, op: Any) -> Any:
        (value,) = await self.outcomes([op])
        if isinstance(value, QStackError):
            raise value
        return value

    async def outcomes(self, ops: list) -> list:
        """All of ``ops`` sent at once, in order: one round trip for the lot."""
        asked = []
        for op in ops:
            msg = op_to_wire(op, self._request_id(), queued=True)
            failure: list = []
            if msg.__class__ in QUIET:
                # answered only if it fails: a settle after it is the answer to wait for
                self._send_unawaited(msg, failure.append)
                msg = PhysSettle(self._request_id())
            fut = TrioFuture()
            self._waiting[msg.request] = fut
            self._send(msg)
            asked.append((fut, failure))
        results = []
        for fut, failure in asked:
            result: PhysResult = await fut
            results.append(failure[0] if failure else result)
        self._raise_alloc_failure()
        done = [r.done_ns for r in results if isinstance(r, PhysResult)]
        if done:
            await self._until(max(done))
        return [r if isinstance(r, QStackError) else
                r.value if r.ok else QStackError(as_code(r.code), r.detail) for r in results]

    async def settle(self) -> None:
        result = await self._ask(lambda r: PhysSettle(r))
        self._raise_alloc_failure()
        await self._until(result.done_ns)

    def rng(self) -> Any:
        return np.random.default_rng([self.seed, self.app_id])

    # ------------------------------------------------------------------ the connection
    async def pump(self) -> None:
        """Carry messages both ways until the connection ends (a task)."""
        gone = (QStackError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)

        async def writer() -> None:
            try:
                await forward(self._outbox_recv, self.channel, merge=merge_consumed)
            except gone as err:
                self.closed = self.closed or _as_error(err)
                inner.cancel_scope.cancel()

        # (errors caught in the nursery: out of it they would come in a group)
        async with trio.open_nursery() as inner:
            inner.start_soon(writer)
            try:
                async for msg in self.channel:
                    self._arrived(msg)
            except gone as err:
                self.closed = self.closed or _as_error(err)
            finally:
                inner.cancel_scope.cancel()
        if self.closed is None:
            self.closed = QStackError(ErrorCode.EMU_PEER_GONE,
                                      f"{self.node}'s daemon closed the connection")
        self._fail_all()

    def _arrived(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is PhysResult:
            waiter = self._waiting.pop(msg.request, None)
            if waiter is None:
                return
            if isinstance(waiter, TrioFuture):
                # answers to awaited operations come in request order: the
                # QUIET operations before this one succeeded
                quiet = self._quiet
                while quiet and quiet[0] < msg.request:
                    self._waiting.pop(quiet.popleft(), None)
                waiter.set_result(msg)
            elif not msg.ok:
                waiter(QStackError(as_code(msg.code), msg.detail))
            return
        if cls in INDICATIONS:
            ev = event_from_wire(msg)
            for cb in list(self._callbacks):
                cb(ev)
        elif cls is AppQkdResult:           # (a result's frames come one after the other)
            self._qkd_parts.append(msg)
            if msg.last:
                parts, self._qkd_parts = self._qkd_parts, []
                ev = qkd_result_from_wire(parts)
                for cb in list(self._callbacks):
                    cb(ev)

    def _fail_all(self) -> None:
        """The daemon is gone: every waiter learns it; the sockets see their node down."""
        from qstack.core.runtime import NodeDown

        err = QStackError(ErrorCode.TRANSPORT_NODE_DOWN, f"{self.node}'s daemon is gone")
        for waiter in list(self._waiting.values()):
            if isinstance(waiter, TrioFuture):
                waiter.set_exception(err)
        self._waiting.clear()
        for cb in list(self._callbacks):
            cb(NodeDown(self.node))

    async def aclose(self) -> None:
        await self.channel.aclose()


def merge_consumed(batch: list) -> list:
    """``batch`` with each run of ``AppConsumed`` of one connection, one right
    after the other, joined into one (their counts added): the daemon's
    transport moves the window by the sum either way, and a batch of pairs
    taken at once tells it once. Nothing else changes place."""
    out: list = []
    for msg in batch:
        last = out[-1] if out else None
        if msg.__class__ is AppConsumed and last.__class__ is AppConsumed \
                and last.conn == msg.conn and last.count + msg.count <= MAX_CONSUMED:
            out[-1] = AppConsumed(msg.conn, last.count + msg.count)
        else:
            out.append(msg)
    return out


def _ignore(err: Any) -> None:
    """The failure callback of an operation whose failure nobody asked to hear."""


def _as_error(err: BaseException) -> QStackError:
    if isinstance(err, QStackError):
        return err
    return QStackError(ErrorCode.EMU_PEER_GONE, f"the connection broke: {err!r}")


@asynccontextmanager
async def connect(node: str, run: str | RunFile | None = None,
                  app: str | None = None) -> AsyncIterator[NodeContext]:
    """``async with qstack.connect("alice") as ctx:`` — a
    :class:`~qstack.transport.socket.NodeContext` of node ``node`` of the
    emulated network that ``qstack net up`` started (its run file ``run``,
    default :func:`qstack.emu.runfile.default_path`), for a trio program.
    On leaving the block what the application still holds is released
    (sockets aborted, qubits freed; ``ctx.result`` kept, if set) and the
    connection closed."""
    run = run if isinstance(run, RunFile) else RunFile.load(run)
    if node not in run.nodes:
        raise QStackError(ErrorCode.BAD_CONFIG,
                          f"no node {node!r} in the running network "
                          f"(nodes: {', '.join(sorted(run.nodes))})")
    try:
        async with _connected(node, run, app) as ctx:
            yield ctx
    except BaseExceptionGroup as group:
        # the application's own exception, not wrapped by the nursery it ran in
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def _connected(node: str, run: RunFile, app: str | None) -> AsyncIterator[NodeContext]:
    open_channel, _accept, _closed = channel_api()
    async with trio.open_nursery() as nursery:
        ch = await open_channel(run.host, run.nodes[node], name=app or node, kind="app",
                                secret=run.secret_bytes, nursery=nursery,
                                keepalive_s=run.keepalive_s, dead_after_s=run.dead_after_s)
        try:
            welcome = await ch.receive()
            if welcome.__class__ is not AppWelcome:
                raise QStackError(ErrorCode.UNEXPECTED_EVENT,
                                  f"{node}'s daemon answered {type(welcome).__name__}")
            runtime = EmuRuntime(ch, welcome, nursery)
            nursery.start_soon(runtime.pump)
            ctx = NodeContext(runtime, TransportClient(runtime), app=app or node)
            ctx.result = None
            yield ctx
            # Left normally: release now, in order. (Left by an exception or a
            # cancellation -- which stops the connection's tasks -- the daemon
            # frees everything when the connection closes, just below.)
            if runtime.closed is None:
                try:
                    ctx.release_all(keep=ctx.result)
                    with trio.move_on_after(5):
                        await runtime.settle()
                except QStackError:
                    pass
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    await ch.aclose()


async def run_app(fn: Any, node: str, run: str | RunFile | None = None,
                  app: str | None = None) -> Any:
    """Run ``await fn(ctx)`` on node ``node`` of the emulated network and
    return its result (the same function ``qstack.simulate`` runs); what it
    leaves (but its result) is released when it ends, however it ends."""
    async with connect(node, run, app) as ctx:
        ctx.result = await fn(ctx)
        return ctx.result
