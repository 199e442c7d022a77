"""One node's protocol stack, sans-I/O: what every driver runs per node.

A :class:`NodeRuntime` holds the protocols of one node, bottom first, and
carries out the actions that stay within the node:

* ``Deliver`` / ``Submit`` hand an event to the protocol above / below (or
  to the one named), in the same instant; what the top of the stack delivers
  goes to the node's ``inbox`` and its ``listeners`` (the socket API);
* ``Fail`` is recorded (:class:`FailRecord`) in ``failures``;
* ``StartTimer`` / ``CancelTimer``: the runtime keeps the node's timers, one
  per (protocol, key), as absolute deadlines, and asks its driver to wake it
  at each one (:meth:`RuntimeDriver.set_timer`); a timer that was restarted
  or cancelled never fires.

What must leave the node is handed to the driver: ``SendMessage`` (to
another node), ``QuantumOp`` (to the node's device or a link's heralding
station). The driver feeds back what arrives: :meth:`message`,
:meth:`op_done`, :meth:`fire_timer`, and the events of the node's
surroundings (``PeerDown``, ``PeerUp``, ``LinkDown``, ``LinkUp``,
``Undeliverable``) through :meth:`feed` or :meth:`broadcast`.

The simulator (:mod:`qstack.sim.network`) is a loop over node runtimes and the
event kernel; the emulation's node daemon is one runtime with trio sockets and
a trio clock. Neither keeps protocol logic of its own. Times are integer
nanoseconds.

A crash (:meth:`crash`) stops the node: timers go, events are ignored.
:meth:`restart` brings it back with a fresh stack made by its
``stack_factory`` (nothing survives a crash), or, without a factory, with
the same protocol objects told ``PeerDown(own name)`` so they forget their
state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable

from qstack.core.errors import ErrorCode
from qstack.core.kernels import load_kernel
from qstack.core.protocol import (
    CancelTimer, Deliver, Fail, MessageReceived, OperationDone, PeerDown, Protocol, QuantumOp,
    SendMessage, Started, StartTimer, Submit, TimerFired, fast_constructor, handlers_of,
)

__all__ = ["NodeRuntime", "RuntimeDriver", "FailRecord", "NodeDown", "NodeUp", "PyRuntimeCore",
           "RuntimeCore", "RuntimeBody", "HAVE_CYTHON"]

# made once per message, herald and timer on the hot path: the constructor
# functions, called Python to Python, cost less than the type call
# (qstack.core.slots.call_through) that protocol code goes through
_received = fast_constructor(MessageReceived)
_done = fast_constructor(OperationDone)
_fired = fast_constructor(TimerFired)


@dataclass(frozen=True, slots=True)
class FailRecord:
    """A ``Fail`` action as a runtime recorded it (time in ns)."""

    time_ns: int
    node: str
    protocol: str
    code: ErrorCode
    detail: str


@dataclass(frozen=True, slots=True)
class NodeDown:
    """Given to a runtime's listeners when its node crashes: everything the
    stack held is gone (a restart brings a fresh one)."""

    node: str


@dataclass(frozen=True, slots=True)
class NodeUp:
    """Given to a runtime's listeners when its node comes back after a crash
    (with a fresh stack: nothing of before survives)."""

    node: str


class RuntimeDriver:
    """What a driver provides to the runtimes it runs (an interface).

    ``now`` is the driver's clock (integer ns). ``set_timer`` must arrange for
    ``node.fire_timer(protocol, key, handle)`` to be called at ``at_ns`` and
    return a handle that ``cancel_timer`` accepts (cancelling a handle whose
    timer fired is a no-op).
    """

    now: int

    def executors(self, node: "NodeRuntime") -> dict:
        """Optional: ``{SendMessage: fn, QuantumOp: fn}`` with ``fn(protocol,
        action, now)`` carrying those actions out for ``node`` directly
        (instead of :meth:`send` / :meth:`quantum`)."""
        return {}

    def send(self, node: "NodeRuntime", protocol: str, dst: str, msg: Any) -> None:
        raise NotImplementedError

    def quantum(self, node: "NodeRuntime", protocol: str, op_id: int | None, op: Any) -> None:
        raise NotImplementedError

    def set_timer(self, node: "NodeRuntime", protocol: str, key: Hashable, at_ns: int) -> Any:
        raise NotImplementedError

    def cancel_timer(self, handle: Any) -> None:
        raise NotImplementedError


class PyRuntimeCore:
    """The hot path of a :class:`NodeRuntime`, in pure Python: events in,
    actions carried out. The reference twin of the compiled
    ``qstack.core._runtime.RuntimeCore`` (same methods, same results; see
    docs/compiled-runtime.md). It relies on the attributes
    :class:`NodeRuntime` sets up and on its ``record`` method."""

    def _forget_handlers(self) -> None:
        """The stack changed: every handler found so far is forgotten."""
        self._handlers.clear()

    # ------------------------------------------------------------------ events in
    def feed(self, protocol: str, event: Any, now: int) -> None:
        """Give ``event`` to ``protocol`` at ``now`` and carry out its actions
        (the hot path of every driver)."""
        if not self.up:
            return
        try:
            handler = self._handlers[protocol][event.__class__]
        except KeyError:
            proto = self.protocols.get(protocol)
            if proto is None:
                self.record(protocol, ErrorCode.UNKNOWN_TYPE,
                            f"no protocol {protocol!r} on {self.name}", now)
                return
            handler = self._handlers.setdefault(protocol, {})[event.__class__] = \
                proto.handler_for(event.__class__)
        actions = handler(event, now)
        if actions:
            run = self._run
            for action in actions:
                run[action.__class__](protocol, action, now)

    def message(self, src: str, msg: Any, now: int) -> None:
        """Message ``msg`` from node ``src`` arrived: to the protocol it names,
        as ``MessageReceived`` or, where that would only call the protocol's
        handler for the message's type, to that handler directly (no event
        object and one call less per message, the hot path of every driver)."""
        if not self.up:
            return
        try:
            protocol, handler = self._on_message[msg.__class__]
        except KeyError:
            protocol = msg.PROTOCOL
            proto = self.protocols.get(protocol)
            handler = proto.message_handler_for(msg.__class__) if proto is not None else None
            self._on_message[msg.__class__] = protocol, handler
        if handler is None:
            self.feed(protocol, _received(src, msg), now)
            return
        actions = handler(src, msg, now)
        if actions:
            run = self._run
            for action in actions:
                run[action.__class__](protocol, action, now)

    def op_done(self, protocol: str, op_id: int, outcome: Any, now: int) -> None:
        """The quantum operation ``op_id`` of ``protocol`` finished."""
        self.feed(protocol, _done(op_id, outcome), now)

    def fire_timer(self, protocol: str, key: Hashable, handle: Any, now: int) -> None:
        """The driver's wake-up for timer ``key`` of ``protocol`` (``handle``
        as ``set_timer`` returned it; a stale one is ignored)."""
        timers = self.timers
        tk = (protocol, key)
        if timers.get(tk) is not handle:
            return
        del timers[tk]
        self.feed(protocol, _fired(key), now)

    # ------------------------------------------------------------------ actions
    def _start_timer(self, protocol: str, action: StartTimer, now: int) -> None:
        tk = (protocol, action.key)
        timers = self.timers
        driver = self.driver
        old = timers.get(tk)
        if old is not None:
            driver.cancel_timer(old)
        delay = action.delay_ns
        timers[tk] = driver.set_timer(self, protocol, action.key,
                                      now + int(delay) if delay > 0 else now)

    def _cancel_timer(self, protocol: str, action: CancelTimer, now: int) -> None:
        handle = self.timers.pop((protocol, action.key), None)
        if handle is not None:
            self.driver.cancel_timer(handle)

    def _deliver(self, protocol: str, action: Deliver, now: int) -> None:
        to = action.to
        if to is None:
            to = self.above.get(protocol)
        if to is not None:
            self.feed(to, action.event, now)
            return
        self.inbox.append((now, action.event))
        for listener in list(self.listeners):
            listener(action.event)

    def _submit(self, protocol: str, action: Submit, now: int) -> None:
        to = action.to
        if to is None:
            to = self.below.get(protocol)
            if to is None:
                self.record(protocol, ErrorCode.UNEXPECTED_EVENT,
                            f"{protocol} has no layer below on {self.name}", now)
                return
        self.feed(to, action.request, now)

    def _fail(self, protocol: str, action: Fail, now: int) -> None:
        self.record(protocol, action.code, action.detail, now)



# the compiled core when built (and not QSTACK_PURE_PYTHON=1), else the twin above
_compiled = load_kernel("qstack.core._runtime")
RuntimeCore = _compiled.RuntimeCore if _compiled is not None else PyRuntimeCore
HAVE_CYTHON = _compiled is not None


class RuntimeBody:
    """Everything of a :class:`NodeRuntime` but its hot path (building the
    stack, broadcast, crash, restart, ``record``): stands on a core,
    :class:`PyRuntimeCore` or the compiled ``RuntimeCore``
    (``class NodeRuntime(RuntimeBody, RuntimeCore)``; the twin tests make
    one of each).

    ``NodeRuntime(name, driver, failures=None, stack_factory=None)``:
    ``failures``: the list ``Fail`` records are appended to (a driver may
    share one list between its nodes). ``stack_factory``: a callable
    returning the node's protocols, bottom first, used by :meth:`restart`
    after a crash (and at once if no protocol was added yet).
    """

    def __init__(self, name: str, driver: RuntimeDriver, *,
                 failures: list | None = None,
                 stack_factory: Callable[[], Iterable[Protocol]] | None = None) -> None:
        self.name = name
        self.driver = driver
        self.failures: list[FailRecord] = failures if failures is not None else []
        self.stack_factory = stack_factory
        self.protocols: dict[str, Protocol] = {}
        self.stack: list[str] = []
        #: (time ns, event) of everything the top of the stack delivered
        self.inbox: list[tuple[int, Any]] = []
        #: callbacks given every event the top of the stack delivers
        self.listeners: list[Callable[[Any], None]] = []
        #: (protocol, key) -> the driver's handle of the running timer
        self.timers: dict[tuple[str, Hashable], Any] = {}
        self.up = True
        self.incarnation = 0        # restarts so far
        # protocol name -> {event type -> the protocol's handler} (Protocol.handler_for)
        self._handlers: dict[str, dict[type, Callable]] = {}
        # message type -> (protocol name, its handler for that type or None),
        # see Protocol.message_handler_for
        self._on_message: dict[type, tuple[str, Callable | None]] = {}
        self.above: dict[str, str | None] = {}
        self.below: dict[str, str | None] = {}
        self._run = {
            SendMessage: self._send_message,
            StartTimer: self._start_timer,
            CancelTimer: self._cancel_timer,
            QuantumOp: self._quantum_op,
            Deliver: self._deliver,
            Submit: self._submit,
            Fail: self._fail,
        }
        # A driver may carry messages and operations out itself, called as
        # ``fn(protocol, action, now)`` (one call less per action on its hot path)
        self._run.update(driver.executors(self))
        if _compiled is not None and isinstance(self, _compiled.RuntimeCore) \
                and isinstance(driver, _compiled.DriverHooks):
            # a compiled driver core: the compiled runtime core hands it
            # those two actions in C (no executor call between)
            self.hooks = driver
        if stack_factory is not None:
            for proto in stack_factory():
                self.add(proto)

    # ------------------------------------------------------------------ building
    def add(self, protocol: Protocol) -> Protocol:
        """Stack ``protocol`` on top (bottom first); a protocol whose class sets
        ``BESIDE = True`` stands beside the stack instead (nothing above or
        below it: what it delivers goes to the node's listeners, and the
        stack's deliveries never reach it), e.g. ``app.qkd``."""
        if protocol.name in self.protocols:
            raise ValueError(f"{self.name} already runs a protocol named {protocol.name!r}")
        self.protocols[protocol.name] = protocol
        if not getattr(protocol, "BESIDE", False):
            self.stack.append(protocol.name)
        self._restack()
        return protocol

    def _restack(self) -> None:
        stack = self.stack
        self._forget_handlers()
        self._on_message.clear()
        self.above = {p: (stack[i + 1] if i + 1 < len(stack) else None)
                      for i, p in enumerate(stack)}
        self.below = {p: (stack[i - 1] if i else None) for i, p in enumerate(stack)}

    def protocol(self, name: str) -> Protocol:
        return self.protocols[name]

    @property
    def top(self) -> str | None:
        return self.stack[-1] if self.stack else None

    # ------------------------------------------------------------------ events in
    def broadcast(self, event: Any, now: int) -> None:
        """Give ``event`` to every protocol of the node, bottom first, those
        beside the stack where they were added (the node's surroundings
        changed: ``PeerDown``, ``LinkUp``, ...)."""
        for name in list(self.protocols):
            self.feed(name, event, now)

    def start(self, now: int) -> None:
        """Feed ``Started`` to every protocol that handles it."""
        for name in list(self.protocols):
            if Started in handlers_of(type(self.protocols[name])):
                self.feed(name, Started(), now)

    def _send_message(self, protocol: str, action: SendMessage, now: int) -> None:
        self.driver.send(self, protocol, action.dst, action.msg)

    def _quantum_op(self, protocol: str, action: QuantumOp, now: int) -> None:
        self.driver.quantum(self, protocol, action.op_id, action.op)

    def record(self, protocol: str, code: ErrorCode, detail: str, now: int) -> None:
        """Record a failure on behalf of ``protocol`` (e.g. a fire-and-forget
        operation that failed in the driver)."""
        self.failures.append(FailRecord(now, self.name, protocol, code, detail))

    # ------------------------------------------------------------------ crash, restart
    def crash(self) -> None:
        """Stop the node: every timer is cancelled, events are ignored until
        :meth:`restart`, and the listeners (the socket API above the stack)
        are given :class:`NodeDown`."""
        for handle in self.timers.values():
            self.driver.cancel_timer(handle)
        self.timers.clear()
        was_up, self.up = self.up, False
        if was_up:
            event = NodeDown(self.name)
            for listener in list(self.listeners):
                listener(event)

    def restart(self, now: int) -> None:
        """Bring a crashed node back: a fresh stack from ``stack_factory``
        (then ``Started``), or without one the same protocols, each told
        ``PeerDown(own name)`` to forget its state."""
        for handle in self.timers.values():
            self.driver.cancel_timer(handle)
        self.timers.clear()
        self._forget_handlers()
        self._on_message.clear()
        self.up = True
        self.incarnation += 1
        if self.stack_factory is not None:
            self.protocols = {}
            self.stack = []
            for proto in self.stack_factory():
                self.add(proto)
        event = NodeUp(self.name)
        for listener in list(self.listeners):
            listener(event)
        if self.stack_factory is not None:
            self.start(now)
        else:
            self.broadcast(PeerDown(self.name), now)

    def __repr__(self) -> str:
        state = "" if self.up else " down"
        return f"<NodeRuntime {self.name} [{', '.join(self.stack)}]{state}>"


class NodeRuntime(RuntimeBody, RuntimeCore):  # type: ignore[valid-type,misc]
    """The protocol stack of node ``name``, driven by ``driver`` (see the module
    doc and :class:`RuntimeBody`): the compiled core when it is built (and
    ``QSTACK_PURE_PYTHON`` is not 1), else :class:`PyRuntimeCore`."""
