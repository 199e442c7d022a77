"""The one protocol interface every layer shares (sans-I/O).

A protocol is a plain object, one per protocol per node, that takes an
**event** and the current time and returns a list of **actions**. It never
sleeps, never touches a socket or the simulator, and never reads a clock: the
time comes in as ``now_ns``. Timers are asked for (:class:`StartTimer`) and come
back as :class:`TimerFired`; quantum operations are asked for
(:class:`QuantumOp`) and come back as :class:`OperationDone`. The two drivers,
``qstack.sim`` and ``qstack.emu``, carry actions out and feed results back.

Within a node, protocols are stacked by name: :class:`Deliver` hands an event
to the protocol above (or a named one), :class:`Submit` hands a request to the
protocol below (or a named one). Messages between nodes are
:class:`~qstack.core.messages.Message` objects; the receiving node routes a
message to the protocol named by its class's ``PROTOCOL``.

Handlers are methods named for what arrived and registered with :func:`on`::

    class Pinger(Protocol):
        name = "demo.ping"

        @on(MessageReceived)
        def _message(self, event, now_ns):
            return [SendMessage(event.src, Pong(...))]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Hashable

try:
    import cython
except ImportError:              # (Cython is a build tool, not a dependency)
    from qstack._cython_shadow import cython

from qstack.core.errors import ErrorCode
from qstack.core.messages import Message, message_constructor
from qstack.core.slots import c_maker, call_through, read_through, recycle_through, setter_source

__all__ = [
    "Event", "Action", "Protocol", "on",
    "MessageReceived", "TimerFired", "OperationDone", "PeerDown", "PeerUp", "LinkDown",
    "LinkUp", "Undeliverable", "Started",
    "SendMessage", "StartTimer", "CancelTimer", "QuantumOp", "Deliver", "Submit", "Fail",
    "fast_constructor", "fast_init", "handlers_of", "message_handlers_of",
]


class Event:
    """Marker base for events (things that happened, fed into a protocol)."""

    __slots__ = ()


class Action:
    """Marker base for actions (things a protocol asks its driver to do)."""

    __slots__ = ()


# ---------------------------------------------------------------- events

@dataclass(frozen=True, slots=True)
class Started(Event):
    """The node came up; the protocol may start timers or announce itself."""


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A message from node ``src`` arrived."""

    src: str
    msg: Message


@dataclass(frozen=True, slots=True)
class TimerFired(Event):
    """The timer the protocol started under ``key`` expired."""

    key: Hashable


@dataclass(frozen=True, slots=True)
class OperationDone(Event):
    """The quantum operation ``op_id`` finished; ``outcome`` is op-specific
    (a measurement result, a herald, qubit handles, or an exception on failure)."""

    op_id: int
    outcome: Any


@dataclass(frozen=True, slots=True)
class PeerDown(Event):
    """The classical session with node ``peer`` broke (the peer crashed, or
    the connection was reset): messages in flight between the two may have
    been lost, and messages sent until :class:`PeerUp` are not delivered.
    A node's own protocols get ``PeerDown(own name)`` when it is reset in
    place (``SimNetwork.reset_node`` without a stack factory)."""

    peer: str


@dataclass(frozen=True, slots=True)
class PeerUp(Event):
    """The classical session with ``peer`` works again. ``restarted``: the
    peer crashed and came back, so it remembers nothing of before (whatever
    was agreed with it is gone); otherwise only the session was reset."""

    peer: str
    restarted: bool = False


@dataclass(frozen=True, slots=True)
class LinkDown(Event):
    """The link to neighbour ``peer`` (quantum channel and the direct
    classical channel) is down: no heralds, no messages over it."""

    peer: str


@dataclass(frozen=True, slots=True)
class LinkUp(Event):
    """The link to neighbour ``peer`` is up again."""

    peer: str


@dataclass(frozen=True, slots=True)
class Undeliverable(Event):
    """A message this protocol sent to ``dst`` cannot be delivered: ``code``
    ``NET_NO_ROUTE`` (unknown node, or no classical path to it) or
    ``EMU_PEER_GONE`` (the session with ``dst`` is down)."""

    dst: str
    msg: Message
    code: ErrorCode
    detail: str = ""


# ---------------------------------------------------------------- actions

@dataclass(frozen=True, slots=True)
class SendMessage(Action):
    """Send ``msg`` to node ``dst`` over the classical channel."""

    dst: str
    msg: Message


@dataclass(frozen=True, slots=True)
class StartTimer(Action):
    """Fire :class:`TimerFired` (``key``) after ``delay_ns`` nanoseconds.
    Starting a timer whose key is already running restarts it."""

    key: Hashable
    delay_ns: int


@dataclass(frozen=True, slots=True)
class CancelTimer(Action):
    """Cancel the timer ``key``; cancelling an unknown key is a no-op."""

    key: Hashable


@dataclass(frozen=True, slots=True)
class QuantumOp(Action):
    """Carry out the physical operation ``op`` (an object from
    ``qstack.physical.ops``); the driver answers with
    :class:`OperationDone` (``op_id``) when it finishes.

    ``op_id=None`` asks for no answer (fire and forget, e.g. a ``Discard``
    whose outcome the protocol would ignore): the driver then reports a
    failure of the operation as a ``Fail`` of the submitting protocol instead.
    ``Entangle`` always needs an ``op_id`` (its answer is the herald)."""

    op_id: int | None
    op: Any


@dataclass(frozen=True, slots=True)
class Deliver(Action):
    """Hand ``event`` to the protocol above on this node, or to the protocol
    named ``to``, or to the application/user when nothing is above."""

    event: Any
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Submit(Action):
    """Hand the request ``request`` to the protocol below on this node, or to
    the protocol named ``to``."""

    request: Any
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Fail(Action):
    """Report an error with a defined code; the protocol goes on serving."""

    code: ErrorCode
    detail: str = ""
    context: Any = field(default=None, compare=False)


# ---------------------------------------------------------------- protocol base

def on_message(*message_types: type) -> Callable:
    """Register the decorated method as the handler of the wire messages of
    ``message_types``: the base class's ``MessageReceived`` handler calls it
    as ``method(src, msg, now_ns)`` (``specs/protocol.md``, "Conventions")."""

    def mark(fn: Callable) -> Callable:
        fn.__qstack_messages__ = message_types
        _MARKED.setdefault(_where_defined(fn), {})["__qstack_messages__"] = message_types
        return fn

    return mark


def on(*event_types: type) -> Callable:
    """Register the decorated method as the handler of ``event_types``."""

    def mark(fn: Callable) -> Callable:
        fn.__qstack_handles__ = event_types
        _MARKED.setdefault(_where_defined(fn), {})["__qstack_handles__"] = event_types
        return fn

    return mark


#: (module, qualified name) of every method marked by on / on_message -> its
#: marks. A class's registry is built on its first use (below); a handler
#: replaced on its class before that by an unmarked function (a patch, as
#: tests and tools do) is still the handler of what the original was marked
#: for, as when the registries were built with the class.
_MARKED: dict[tuple[str, str], dict[str, tuple]] = {}


def _where_defined(fn: Callable) -> tuple[str, str]:
    return getattr(fn, "__module__", None) or "", getattr(fn, "__qualname__", None) or ""


class Protocol:
    """Base of every sans-I/O protocol. Subclasses set ``name`` and register
    handlers with :func:`on`; :meth:`handle` dispatches on the event's type
    (the most specific registered base class wins).

    ``node`` is the name of the node this instance runs on.

    Compiled, this is an extension type (``protocol.pxd``): a protocol
    compiled with its own ``.pxd`` (the EGP, the QNP) reads its fields as C
    struct members and takes no attribute its ``.pxd`` does not declare; a
    Python subclass has an instance ``__dict__`` and sets whatever attributes
    it likes, as of a plain class.
    """

    name: ClassVar[str] = ""

    def __init__(self, node: str) -> None:
        self.node = node
        # pending quantum operations: op id -> what the protocol needs on its answer
        self._ops: dict[int, Any] = {}
        self._next_op = 0

    # ------------------------------------------------------------ conventions
    def _dispatch_message(self, ev: "MessageReceived", now_ns: int) -> list | None:
        """``MessageReceived``: the handler registered for the message's type
        (:func:`on_message`), or ``Fail(UNKNOWN_TYPE)``."""
        attr = message_handlers_of(self.__class__).get(ev.msg.__class__)
        if attr is None:
            return [Fail(ErrorCode.UNKNOWN_TYPE,
                         f"{self.name} on {self.node} got {type(ev.msg).__name__}")]
        return getattr(self, attr)(ev.src, ev.msg, now_ns)

    def start_op(self, op: Any, context: Any) -> "QuantumOp":
        """A ``QuantumOp`` for ``op`` whose answer will find ``context`` (a
        small record of what to do with it) through :meth:`take_op`."""
        self._next_op = op_id = self._next_op + 1
        self._ops[op_id] = context
        return QuantumOp(op_id, op)

    def take_op(self, op_id: int) -> Any:
        """The context of the pending operation ``op_id`` (forgotten now), or
        None if it is not (or no longer) pending."""
        ops = self._ops
        if type(ops) is dict:     # (compiled: the dict's pop in C, not a method look-up)
            return cython.cast(dict, ops).pop(op_id, None)
        return ops.pop(op_id, None)

    def handle(self, event: Any, now_ns: int) -> list[Action]:
        """Feed one event at time ``now_ns`` (nanoseconds); return the actions."""
        tp = event.__class__
        attr = _resolve(self.__class__, tp)
        if attr is not None:
            return getattr(self, attr)(event, now_ns) or []
        if tp in _NEWS:
            return []      # news of the node's surroundings a protocol may ignore
        return [Fail(ErrorCode.UNEXPECTED_EVENT,
                     f"{type(self).__name__} on {self.node} has no handler for "
                     f"{type(event).__name__}", context=event)]

    def handler_for(self, event_type: type) -> Callable[[Any, int], list[Action] | None]:
        """What a driver may call for events of ``event_type`` instead of
        :meth:`handle`, with the same result except that it may return None
        for no actions: the registered handler itself (one call less per
        event), or :meth:`handle` where a subclass overrides it or no handler
        is registered. Drivers cache it per (protocol, event type)."""
        handle = self.handle
        if getattr(handle, "__func__", None) is not Protocol.handle:
            return handle      # a subclass (or the instance) has its own handle
        attr = _resolve(self.__class__, event_type)
        return getattr(self, attr) if attr is not None else handle

    def message_handler_for(self, message_type: type) -> Callable[[str, Any, int], Any] | None:
        """The handler registered with :func:`on_message` for ``message_type``
        (called as ``handler(src, msg, now_ns)``) if feeding
        ``MessageReceived`` would do nothing but call it, else None (the
        driver then feeds ``MessageReceived``). Drivers cache it per message type."""
        dispatch = self.handler_for(MessageReceived)
        if getattr(dispatch, "__func__", None) is not Protocol._dispatch_message:
            return None      # its own handle, or its own MessageReceived handler
        attr = message_handlers_of(self.__class__).get(message_type)
        return getattr(self, attr) if attr is not None else None


# The handler registries live here, keyed by protocol class and built on a
# class's first use, not as class attributes set by ``__init_subclass__``: a
# compiled protocol is an extension type, which Cython makes without calling
# ``__init_subclass__`` (and refuses it in an extension class) and whose
# class attributes cannot be set. (A plain dict: protocol classes live as
# long as the program, but for the few a test makes.)
_REGISTRIES: dict[type, tuple[dict, dict, dict]] = {}


def _registry(cls: type) -> tuple[dict[type, str], dict[type, str], dict[type, str | None]]:
    """Protocol class ``cls``'s (event type -> handler name registered with
    :func:`on`, message type -> handler name registered with
    :func:`on_message`, event type -> resolved handler name or None, filled
    as events come): the methods of its whole MRO, a subclass's winning."""
    try:
        return _REGISTRIES[cls]
    except KeyError:
        pass
    handlers: dict[type, str] = {}
    messages: dict[type, str] = {}
    for klass in reversed(cls.__mro__):
        where = klass.__module__, klass.__qualname__
        for attr, fn in vars(klass).items():
            marks = _MARKED.get((where[0], f"{where[1]}.{attr}"), {})
            for tp in getattr(fn, "__qstack_handles__", marks.get("__qstack_handles__", ())):
                handlers[tp] = attr
            for tp in getattr(fn, "__qstack_messages__", marks.get("__qstack_messages__", ())):
                messages[tp] = attr
    if messages and MessageReceived not in handlers:
        handlers[MessageReceived] = "_dispatch_message"
    registry = _REGISTRIES[cls] = (handlers, messages, {})
    return registry


def _resolve(cls: type, tp: type) -> str | None:
    """The name of ``cls``'s handler for events of type ``tp`` (the most
    specific registered base class of ``tp``), or None; remembered."""
    handlers, _, resolved = _registry(cls)
    attr = resolved.get(tp, _MISSING)
    if attr is _MISSING:
        attr = resolved[tp] = next((handlers[k] for k in tp.__mro__ if k in handlers), None)
    return attr


def handlers_of(cls: type) -> dict[type, str]:
    """Event type -> the name of its handler registered with :func:`on` in
    protocol class ``cls`` (its bases' too). Do not change the dict."""
    return _registry(cls)[0]


def message_handlers_of(cls: type) -> dict[type, str]:
    """Message type -> the name of its handler registered with
    :func:`on_message` in protocol class ``cls`` (its bases' too)."""
    return _registry(cls)[1]


#: Events every protocol of a node is given (the driver's news of the node's
#: surroundings): one without a handler for them ignores them.
_NEWS = frozenset({Started, PeerDown, PeerUp, LinkDown, LinkUp, Undeliverable})


# ---------------------------------------------------------------- fast construction

_MISSING = object()


def _slot_fields(cls: type, checked: bool = False) -> tuple[list, dict] | None:
    """(fields, namespace) for building ``cls`` through its slots: fields as
    ``(index, name, kind)``, kind 0 required, 1 with a default, 2 with a
    default factory. None if that would not be the same as calling ``cls``
    (no slots, a ``__post_init__`` check unless ``checked``, an init=False field)."""
    import dataclasses

    if not dataclasses.is_dataclass(cls) or "__slots__" not in vars(cls):
        return None
    if hasattr(cls, "__post_init__") and not checked:
        return None
    if any(f._field_type is dataclasses._FIELD_INITVAR
           for f in cls.__dataclass_fields__.values()):
        return None         # an InitVar: __init__ takes what is not a field
    ns: dict = {"_M": _MISSING}
    names = []
    for i, f in enumerate(dataclasses.fields(cls)):
        if not f.init or f.kw_only:
            return None
        if f.default_factory is not dataclasses.MISSING:
            ns[f"_d{i}"] = _MISSING
            ns[f"_f{i}"] = f.default_factory
            names.append((i, f.name, 2))
        else:
            ns[f"_d{i}"] = f.default
            names.append((i, f.name, int(f.default is not dataclasses.MISSING)))
    return names, ns


def _c_maker(cls: type, names: list, ns: dict, post, qualname: str,
             compiled: bool | None) -> Callable | None:
    """The C twin (:func:`qstack.core.slots.c_maker`) of the ``make`` that
    :func:`_setters` and :func:`_signature` generate for these fields, or None."""
    return c_maker(cls, [n for _, n, _ in names],
                   [None if kind == 2 else ns.get(f"_d{i}") for i, _, kind in names],
                   [kind == 0 for _, _, kind in names],
                   [ns[f"_f{i}"] if kind == 2 else None for i, _, kind in names],
                   post=post, qualname=qualname, compiled=compiled)


def _signature(names: list) -> str:
    return ", ".join(f"{n}=_d{i}" if kind else n for i, n, kind in names)


def _setters(cls: type, names: list, obj: str, ns: dict, new: bool,
             compiled: bool | None) -> str:
    values = [(n, f"_f{i}() if {n} is _M else {n}" if kind == 2 else n)
              for i, n, kind in names]
    return setter_source(cls, values, obj, ns, new=new, compiled=compiled)


def fast_constructor(cls: type, *, checked: bool = False,
                     compiled: bool | None = None) -> Callable:
    """A function building ``cls`` instances exactly as ``cls(...)`` does (same
    parameters and defaults, same object), but setting a frozen slotted
    dataclass's fields through its slots (:mod:`qstack.core.slots`) rather
    than the generated ``object.__setattr__`` calls: several times faster,
    which counts for the objects made once per pair on the simulator's hot
    path. Returns ``cls`` itself where that would differ (``__post_init__``
    etc.), except with ``checked=True``: the caller has already checked what
    the class's ``__post_init__`` checks, and it is not run. ``compiled``:
    as for :func:`qstack.core.slots.setter_source` (the tests compare both).

    For a wire message (:class:`~qstack.core.messages.Message`) it is the
    message's own compiled constructor, which checks every field against its
    declared limits like ``cls(...)`` does (``checked=True`` skips only the
    ``__post_init__`` cross-field rules): no message is built unchecked."""
    if isinstance(cls, type) and issubclass(cls, Message):
        return message_constructor(cls, checked, compiled)
    spec = _slot_fields(cls, checked)
    if spec is None:
        return cls
    names, ns = spec
    made = _c_maker(cls, names, ns, None, f"make_{cls.__name__}", compiled)
    if made is not None:
        return made          # (in C: no Python frame per object)
    body = _setters(cls, names, "o", ns, True, compiled)
    exec(f"def make({_signature(names)}):\n{body}    return o\n", ns)
    make = ns["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


def fast_init(cls: type) -> type:
    """Class decorator for a frozen slotted dataclass made on a hot path (a
    service record, an event, an action): its ``__init__`` becomes one that
    sets the fields through their slots (:mod:`qstack.core.slots`) instead
    of ``object.__setattr__`` per field, then runs ``__post_init__`` as the
    dataclass's own would. Same signature, same object, same checks; and
    ``Record(...)`` calls the same code as a constructor function, without
    the type call's ``__new__`` and ``__init__`` steps
    (:func:`qstack.core.slots.call_through`).
    Put it above ``@dataclass``. A class it cannot speed up that way (no
    slots, ``init=False`` or keyword-only fields, ``InitVar``) is left as is."""
    spec = _slot_fields(cls, checked=True)     # (its __post_init__ runs below)
    if spec is None:
        return cls
    names, ns = spec
    params = _signature(names)
    fill = _setters(cls, names, "self", ns, False, None) if names else ""
    build = _setters(cls, names, "o", ns, True, None)
    post = hasattr(cls, "__post_init__")
    exec(f"def __init__(self{', ' if params else ''}{params}):\n{fill}"
         f"{'    self.__post_init__()' if post else '    pass'}\n"
         f"def make({params}):\n{build}{'    o.__post_init__()' if post else ''}\n"
         f"    return o\n", ns)
    ns["__init__"].__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = ns["__init__"]
    # Record(...) in C where the extension is built (the generated make otherwise)
    made = _c_maker(cls, names, ns, cls.__post_init__ if post else None, cls.__qualname__, None)
    call_through(cls, made if made is not None else ns["make"])
    # record.field read from its slot in compiled code, not by the generic look-up
    read_through(cls, [name for _, name, _ in names])
    # its memory reused: a record lives for one event, and a pair makes dozens
    recycle_through(cls)
    return cls


for _cls in (Started, MessageReceived, TimerFired, OperationDone, PeerDown, PeerUp, LinkDown,
             LinkUp, Undeliverable, SendMessage,
             StartTimer, CancelTimer, QuantumOp, Deliver, Submit, Fail):
    fast_init(_cls)
del _cls
