# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython twin of ``qstack.core.runtime.PyRuntimeCore``: a node runtime's hot path.

Every event a node gets and every action its protocols return go through
these methods: ``feed``, ``message``, ``op_done``, ``fire_timer``, and the
carrying out of actions. The pure-Python twin dispatches each action through
a dict of bound methods (one Python call each); here the node's state lives
in typed fields and the actions that stay in the node (``Deliver``,
``Submit``, ``StartTimer``, ``CancelTimer``, ``Fail``) are carried out by C
calls, switched on the action's class. What leaves the node (``SendMessage``,
``QuantumOp``) goes to the driver: by a C call when the driver is a compiled
``DriverHooks`` (the simulator's ``DriverCore``, ``hooks``), else through
the executors in ``_run`` (the driver's).

Same semantics as the twin, action by action; ``tests/test_core_runtime_twins.py``
drives both with the same events and compares what each carried out, and
runs a chain both ways. ``NodeRuntime`` (``runtime.py``) derives from this
class when it is built, and holds everything that is not hot (building the
stack, crash, restart, ``record``).
"""
from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport PyObject

from qstack.core._slots cimport slot_field, slot_offset
from qstack.core.errors import ErrorCode
from qstack.core.protocol import (
    CancelTimer, Deliver, Fail, MessageReceived, OperationDone, QuantumOp, SendMessage,
    StartTimer, Submit, TimerFired, fast_constructor,
)

cdef enum:
    _HC_SIZE = 64       # entries of a node's handler cache (a power of two; see _feed)

cdef object _received = fast_constructor(MessageReceived)
cdef object _done = fast_constructor(OperationDone)
cdef object _fired = fast_constructor(TimerFired)
cdef type _Deliver = Deliver
cdef type _Submit = Submit
cdef type _StartTimer = StartTimer
cdef type _CancelTimer = CancelTimer
cdef type _Fail = Fail
cdef type _SendMessage = SendMessage
cdef type _QuantumOp = QuantumOp
cdef object _UNKNOWN_TYPE = ErrorCode.UNKNOWN_TYPE
cdef object _UNEXPECTED_EVENT = ErrorCode.UNEXPECTED_EVENT
# where the actions carried out here keep their fields (read in C: _slots.pxd)
cdef Py_ssize_t _DELIVER_TO = slot_offset(Deliver, "to")
cdef Py_ssize_t _DELIVER_EVENT = slot_offset(Deliver, "event")
cdef Py_ssize_t _SUBMIT_TO = slot_offset(Submit, "to")
cdef Py_ssize_t _SUBMIT_REQUEST = slot_offset(Submit, "request")
cdef Py_ssize_t _START_KEY = slot_offset(StartTimer, "key")
cdef Py_ssize_t _START_DELAY = slot_offset(StartTimer, "delay_ns")
cdef Py_ssize_t _CANCEL_KEY = slot_offset(CancelTimer, "key")


cdef class EventCallback:
    """A callback for the event kernel that the compiled kernel
    (``qstack/sim/_kernel.pyx``) fires by a C call, ``fire(args)``, instead
    of ``callback(*args)`` (a Python call and its argument parsing, once per
    event); anything else calls it as a function. Subclasses stand for one
    method of one object (``qstack/sim/_driver.pyx``, the heralding
    station) and take its name in traces (``__qualname__``). Here, in the
    core, so that both the kernel and the stations (which must not import
    the simulator) can see it."""

    @property
    def __qualname__(self):
        return self.name

    def __call__(self, *args):
        self.fire(args)

    cdef int fire(self, tuple args) except -1:
        raise NotImplementedError


cdef class DriverHooks:
    """Base of a compiled driver that carries out a node's ``SendMessage`` and
    ``QuantumOp`` itself (``qstack.sim._driver.DriverCore``): the core calls
    it in C instead of through the executors of ``_run``. The node uses it
    when its ``hooks`` is set (``NodeRuntime.__init__``: when the driver is one)."""

    cdef int send_c(self, RuntimeCore node, object protocol, object action,
                    object now) except -1:
        node._run[type(action)](protocol, action, now)
        return 0

    cdef int op_c(self, RuntimeCore node, object protocol, object action,
                  object now) except -1:
        node._run[type(action)](protocol, action, now)
        return 0

    cdef int herald_c(self, object side, object ref, object herald) except -1:
        self._herald_arrives(side, ref, herald)
        return 0

    cdef object at_c(self, object clock, object time_ns, object callback, tuple args):
        return clock.schedule_at(time_ns, callback, *args)

    cdef object now_c(self, object clock):
        return clock.now


cdef class RuntimeCore:
    """The compiled hot path of a node runtime (see the module doc). Its
    fields (declared in ``_runtime.pxd``) are those ``NodeRuntime.__init__``
    sets; they are public, so the Python code of ``NodeRuntime`` and the
    drivers reads and writes them as plain attributes."""

    # ------------------------------------------------------------------ events in
    def feed(self, protocol, event, now):
        """Give ``event`` to ``protocol`` at ``now`` and carry out its actions."""
        self._feed(protocol, event, now)

    def _forget_handlers(self):
        """The stack changed: every handler found so far is forgotten."""
        self._handlers.clear()
        self._hc = None

    cdef int _feed(self, object protocol, object event, object now) except -1:
        cdef object tp
        cdef object by_type
        cdef object handler = None
        cdef object proto
        cdef object actions
        cdef list hc
        cdef Py_ssize_t i
        if not self.up:
            return 0
        tp = type(event)
        # The handler of (protocol name, event class) last seen in this entry of
        # a direct-mapped cache: two pointer compares, where the dicts below
        # cost two look-ups (~140 instructions; 8 feeds per link pair). The
        # list holds its entries (the collector sees them); a miss, or another
        # string with the same name, takes the dicts and refills the entry.
        hc = self._hc
        i = 3 * <Py_ssize_t>((((<size_t><PyObject*>protocol) >> 4)
                              ^ ((<size_t><PyObject*>tp) >> 6)) & (_HC_SIZE - 1))
        if hc is not None and PyList_GET_ITEM(hc, i) == <PyObject*>protocol \
                and PyList_GET_ITEM(hc, i + 1) == <PyObject*>tp:
            handler = <object>PyList_GET_ITEM(hc, i + 2)
        else:
            by_type = self._handlers.get(protocol)
            if by_type is not None:
                handler = (<dict> by_type).get(tp)
            if handler is None:
                proto = self.protocols.get(protocol)
                if proto is None:
                    self.record(protocol, _UNKNOWN_TYPE,
                                f"no protocol {protocol!r} on {self.name}", now)
                    return 0
                handler = proto.handler_for(tp)
                if by_type is None:
                    by_type = self._handlers[protocol] = {}
                (<dict> by_type)[tp] = handler
            if hc is None:
                hc = self._hc = [None] * (3 * _HC_SIZE)
            hc[i] = protocol
            hc[i + 1] = tp
            hc[i + 2] = handler
        actions = handler(event, now)
        if actions:
            self._carry_out(protocol, actions, now)
        return 0

    def message(self, src, msg, now):
        """Message ``msg`` from node ``src`` arrived (see the twin's doc)."""
        self.message_c(src, msg, now)

    cdef int message_c(self, object src, object msg, object now) except -1:
        cdef object entry
        cdef object protocol
        cdef object handler
        cdef object proto
        cdef object actions
        if not self.up:
            return 0
        entry = self._on_message.get(type(msg))
        if entry is None:
            protocol = msg.PROTOCOL
            proto = self.protocols.get(protocol)
            handler = proto.message_handler_for(type(msg)) if proto is not None else None
            entry = (protocol, handler)
            self._on_message[type(msg)] = entry
        protocol = (<tuple> entry)[0]
        handler = (<tuple> entry)[1]
        if handler is None:
            self._feed(protocol, _received(src, msg), now)
            return 0
        actions = handler(src, msg, now)
        if actions:
            self._carry_out(protocol, actions, now)
        return 0

    def op_done(self, protocol, op_id, outcome, now):
        """The quantum operation ``op_id`` of ``protocol`` finished."""
        self._feed(protocol, _done(op_id, outcome), now)

    def fire_timer(self, protocol, key, handle, now):
        """The driver's wake-up for timer ``key`` of ``protocol`` (a stale handle is ignored)."""
        cdef object tk = (protocol, key)
        if self.timers.get(tk) is not handle:
            return
        del self.timers[tk]
        self._feed(protocol, _fired(key), now)

    # ------------------------------------------------------------------ actions
    cdef int _carry_out(self, object protocol, object actions, object now) except -1:
        cdef object action
        cdef object cls
        for action in actions:
            cls = type(action)
            if cls is _Deliver:
                self._deliver_c(protocol, action, now)
            elif cls is _StartTimer:
                self._start_timer_c(protocol, action, now)
            elif cls is _CancelTimer:
                self._cancel_timer_c(protocol, action, now)
            elif cls is _Submit:
                self._submit_c(protocol, action, now)
            elif cls is _SendMessage and self.hooks is not None:
                self.hooks.send_c(self, protocol, action, now)
            elif cls is _QuantumOp and self.hooks is not None:
                self.hooks.op_c(self, protocol, action, now)
            else:   # SendMessage, QuantumOp (the driver's executors), Fail
                self._run[cls](protocol, action, now)
        return 0

    cdef int _start_timer_c(self, object protocol, object action, object now) except -1:
        cdef object key = slot_field(action, _StartTimer, _START_KEY, "key")
        cdef object tk = (protocol, key)
        cdef object driver = self.driver
        cdef object old = self.timers.get(tk)
        cdef object delay
        if old is not None:
            driver.cancel_timer(old)
        delay = slot_field(action, _StartTimer, _START_DELAY, "delay_ns")
        self.timers[tk] = driver.set_timer(self, protocol, key,
                                           now + int(delay) if delay > 0 else now)
        return 0

    cdef int _cancel_timer_c(self, object protocol, object action, object now) except -1:
        cdef object handle = self.timers.pop(
            (protocol, slot_field(action, _CancelTimer, _CANCEL_KEY, "key")), None)
        if handle is not None:
            self.driver.cancel_timer(handle)
        return 0

    cdef int _deliver_c(self, object protocol, object action, object now) except -1:
        cdef object to = slot_field(action, _Deliver, _DELIVER_TO, "to")
        cdef object event = slot_field(action, _Deliver, _DELIVER_EVENT, "event")
        cdef object listener
        if to is None:
            to = self.above.get(protocol)
        if to is not None:
            self._feed(to, event, now)
            return 0
        self.inbox.append((now, event))
        for listener in list(self.listeners):
            listener(event)
        return 0

    cdef int _submit_c(self, object protocol, object action, object now) except -1:
        cdef object to = slot_field(action, _Submit, _SUBMIT_TO, "to")
        if to is None:
            to = self.below.get(protocol)
            if to is None:
                self.record(protocol, _UNEXPECTED_EVENT,
                            f"{protocol} has no layer below on {self.name}", now)
                return 0
        self._feed(to, slot_field(action, _Submit, _SUBMIT_REQUEST, "request"), now)
        return 0

    # the same, as Python methods (NodeRuntime's ``_run`` table names them)
    def _start_timer(self, protocol, action, now):
        self._start_timer_c(protocol, action, now)

    def _cancel_timer(self, protocol, action, now):
        self._cancel_timer_c(protocol, action, now)

    def _deliver(self, protocol, action, now):
        self._deliver_c(protocol, action, now)

    def _submit(self, protocol, action, now):
        self._submit_c(protocol, action, now)

    def _fail(self, protocol, action, now):
        self.record(protocol, action.code, action.detail, now)
