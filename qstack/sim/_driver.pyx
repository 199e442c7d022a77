# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython twin of ``qstack.sim.network.PyDriverCore``: the simulator driver's
hot path (messages to neighbours, Entangle on a link, the device's
operations, heralds, operation answers, timers) with the driver's state in
typed fields. ``SimNetwork`` stands on it when it is built and keeps every
rare path in Python (``_send_far``, ``_op_other``, faults, ...).

The same code as the twin, line for line; keep the two in step.
``tests/test_core_runtime_twins.py`` and ``tests/test_sim_speed.py`` run the
simulator both ways (``QSTACK_PURE_PYTHON=1``) and require the same numbers.
"""
from qstack.core._runtime cimport DriverHooks, EventCallback, RuntimeCore
from qstack.core._slots cimport slot_field, slot_offset
from qstack.physical._heralding cimport HeraldingStation
from qstack.physical.device cimport QuantumDevice
from qstack.sim._kernel cimport CyEventHandle, CyEventKernel
from qstack.core.errors import QStackError
from qstack.core.messages import decode, encode
from qstack.core.protocol import OperationDone, QuantumOp, SendMessage, fast_constructor
from qstack.physical.device import DEVICE_OPS
from qstack.physical.ops import Entangle

cdef object _done = fast_constructor(OperationDone)
cdef frozenset _DEVICE_OPS = DEVICE_OPS
cdef dict _NO_LINKS = {}
cdef type _Entangle = Entangle
cdef type _SendMessage = SendMessage
cdef type _QuantumOp = QuantumOp
# where they keep the fields read here, per message and operation (in C: _slots.pxd)
cdef Py_ssize_t _SEND_MSG = slot_offset(SendMessage, "msg")
cdef Py_ssize_t _SEND_DST = slot_offset(SendMessage, "dst")
cdef Py_ssize_t _OP_ID = slot_offset(QuantumOp, "op_id")
cdef Py_ssize_t _OP_OP = slot_offset(QuantumOp, "op")
cdef Py_ssize_t _ENTANGLE_VIRTUAL = slot_offset(Entangle, "virtual")
cdef Py_ssize_t _ENTANGLE_PEER = slot_offset(Entangle, "peer")


cdef class LinkCore:
    """The fields of a ``SimLink`` that the hot path reads, typed (C access
    here; plain attributes for Python). ``network.PyLinkCore`` is the twin."""

    cdef public object a
    cdef public object b
    cdef public object classical_delay_ns
    cdef public object up
    cdef public object station
    cdef public tuple ends
    cdef public object epoch
    cdef public list last_arrival
    cdef public list batch
    cdef public list batch_seq


cdef class DriverCore(DriverHooks):
    """The compiled hot path of ``SimNetwork`` (see the module doc); its fields
    are public, set by ``SimNetwork.__init__`` as plain attributes. A node's
    compiled runtime core hands it ``SendMessage`` and ``QuantumOp`` in C
    (``send_c``, ``op_c``; ``_send_action`` / ``_op_action`` for Python)."""

    cdef object _sim
    # ``sim`` when it is the compiled kernel with its own scheduling methods
    # (not overridden): scheduled on and read in C, else None (the twin
    # kernel, or a subclass that overrides them: Python calls, as before)
    cdef CyEventKernel _ck
    cdef public bint check_wire
    cdef dict _stats
    # the two counters every link pair moves several times, kept in C and
    # added to ``stats`` whenever it is read (so every read is exact)
    cdef Py_ssize_t _n_messages, _n_quantum_ops
    cdef public dict _adj
    cdef public set _down_sessions
    cdef public object jitter_ns
    cdef public object _jitter_rng
    cdef object _arrive_cb           # (EventCallbacks made once, not per event)
    cdef object _op_done_cb

    @property
    def stats(self):
        """The driver's counters (a dict): messages, quantum_ops, timers, ..."""
        self._flush_counts()
        return self._stats

    @stats.setter
    def stats(self, stats):
        self._n_messages = self._n_quantum_ops = 0
        self._stats = stats

    cdef int _flush_counts(self) except -1:
        if self._n_messages:
            self._stats["messages"] += self._n_messages
            self._n_messages = 0
        if self._n_quantum_ops:
            self._stats["quantum_ops"] += self._n_quantum_ops
            self._n_quantum_ops = 0
        return 0

    @property
    def sim(self):
        return self._sim

    @sim.setter
    def sim(self, sim):
        self._sim = sim
        cls = type(sim)
        self._ck = sim if isinstance(sim, CyEventKernel) \
            and cls.schedule is CyEventKernel.schedule \
            and cls.schedule_at is CyEventKernel.schedule_at \
            and cls.cancel is CyEventKernel.cancel else None

    cdef inline object _now(self):
        return self._ck.now if self._ck is not None else self._sim.now

    cdef inline object _at(self, object time_ns, object callback, tuple args):
        # sim.schedule_at(time_ns, callback, *args), a C call on the compiled kernel
        if self._ck is not None:
            return self._ck.schedule_at_c(time_ns, callback, args)
        return self._sim.schedule_at(time_ns, callback, *args)

    cdef inline object _after(self, object delay_ns, object callback, tuple args):
        # sim.schedule(delay_ns, callback, *args), likewise
        if self._ck is not None:
            return self._ck.schedule_c(delay_ns, callback, args)
        return self._sim.schedule(delay_ns, callback, *args)

    def _send_action(self, node, protocol, action, now):
        self.send_c(node, protocol, action, now)

    cdef int send_c(self, RuntimeCore node, object protocol, object action,
                    object now) except -1:
        cdef object msg = slot_field(action, _SendMessage, _SEND_MSG, "msg")
        cdef object dst = slot_field(action, _SendMessage, _SEND_DST, "dst")
        cdef object data, src, arrive, last_side, batch, next_seq
        cdef object handle
        cdef LinkCore link
        cdef list last
        cdef int side
        if self.check_wire:
            data = encode(msg)
            self._stats["message_bytes"] += len(data)
            msg = decode(data)
        self._n_messages += 1
        src = node.name
        link = (<dict> self._adj.get(src, _NO_LINKS)).get(dst)
        if link is not None and link.up:       # the common case: a neighbour
            if self._down_sessions and frozenset((src, dst)) in self._down_sessions:
                self._undeliverable(node, protocol, dst, msg, f"the session with {dst} is down")
                return 0
            side = 0 if src == link.a else 1
            arrive = self._now() + link.classical_delay_ns
            if self.jitter_ns:
                arrive += int(self._jitter_rng.integers(0, self.jitter_ns + 1))
            last = link.last_arrival
            last_side = last[side]
            if arrive <= last_side:
                arrive = last_side             # FIFO per direction
                batch = link.batch[side]
                next_seq = self._ck._next_seq if self._ck is not None else self._sim.next_seq
                if batch is not None and next_seq == link.batch_seq[side]:
                    # rides along with the message before it (see the twin)
                    (<list> batch).append(msg)
                    return 0
            last[side] = arrive
            batch = [msg]
            link.batch[side] = batch
            if self._arrive_cb is None:
                self._arrive_cb = _ArriveLink(self)
            handle = self._at(arrive, self._arrive_cb,
                              (link, side, link.epoch, node, link.ends[side ^ 1], batch))
            if self._ck is not None:        # (the compiled kernel's handle: its seq read in C)
                link.batch_seq[side] = (<CyEventHandle> handle).seq + 1
            else:
                link.batch_seq[side] = handle.seq + 1
            return 0
        self._send_far(node, protocol, dst, msg)
        return 0

    def _arrive_link(self, LinkCore link, int side, epoch, RuntimeCore src, RuntimeCore dst,
                     list msgs):
        self._arrive_c(link, side, epoch, src, dst, msgs)

    cdef int _arrive_c(self, LinkCore link, int side, object epoch, RuntimeCore src,
                       RuntimeCore dst, list msgs) except -1:
        cdef object name, now, msg
        cdef list batches = link.batch
        if batches[side] is msgs:
            batches[side] = None               # (fired: nothing more rides along)
        if link.epoch != epoch:
            self._stats["messages_lost"] += len(msgs)
            return 0
        name = src.name
        now = self._now()
        for msg in msgs:
            dst.message_c(name, msg, now)
        return 0

    def _op_action(self, node, protocol, action, now):
        self.op_c(node, protocol, action, now)

    cdef int op_c(self, RuntimeCore node, object protocol, object action,
                  object now) except -1:
        cdef object op_id = slot_field(action, _QuantumOp, _OP_ID, "op_id")
        cdef object op = slot_field(action, _QuantumOp, _OP_OP, "op")
        cdef object cls, t, duration, outcome, station, ref, device
        cdef int side
        cdef LinkCore link
        self._n_quantum_ops += 1
        cls = type(op)
        if cls is _Entangle:
            # (once per pair and end: _entangle's usual case inline; a virtual
            # link's pair must not come from a physical link between the two)
            link = None if slot_field(op, _Entangle, _ENTANGLE_VIRTUAL, "virtual") else \
                (<dict> self._adj.get(node.name, _NO_LINKS)).get(
                    slot_field(op, _Entangle, _ENTANGLE_PEER, "peer"))
            if op_id is not None and link is not None and link.station is not None:
                station = link.station
                side = 0 if node is link.ends[0] else 1
                ref = (node, protocol, op_id, node.incarnation)
                if type(station) is HeraldingStation:    # (the compiled one: a C call)
                    (<HeraldingStation> station).submit_c(side, ref, op)
                else:
                    station.submit(side, ref, op)
                return 0
            self._entangle(node, protocol, op_id, op)
            return 0
        if cls not in _DEVICE_OPS:
            self._op_other(node, protocol, op_id, op)
            return 0
        t = self._now()
        device = node.device
        if isinstance(device, QuantumDevice):      # (the compiled device: a C call)
            duration, outcome = (<QuantumDevice> device).execute(op, t)
        else:
            duration, outcome = device.execute(op, t)
        if op_id is None:
            # fire and forget: nobody waits for the answer, only a failure is kept
            # (None, a discard's answer, is no error: told apart without the
            # class check, which for None looks its __class__ up)
            if outcome is not None and isinstance(outcome, QStackError):
                node.record(protocol, outcome.code, outcome.detail, t)
            return 0
        if self._op_done_cb is None:
            self._op_done_cb = _OpDone(self)
        self._after(duration, self._op_done_cb, (node, node.incarnation, protocol, op_id, outcome))
        return 0

    def _op_done(self, RuntimeCore node, incarnation, protocol, op_id, outcome):
        self._op_done_c(node, incarnation, protocol, op_id, outcome)

    cdef int _op_done_c(self, RuntimeCore node, object incarnation, object protocol,
                        object op_id, object outcome) except -1:
        if node.incarnation == incarnation:
            node._feed(protocol, _done(op_id, outcome), self._now())
        return 0

    cdef object now_c(self, object clock):
        # (a station's clock.now: this driver's kernel read in C)
        if clock is self._sim:
            return self._now()
        return clock.now

    cdef object at_c(self, object clock, object time_ns, object callback, tuple args):
        # (a station's herald event: on this driver's clock, as _at schedules)
        if clock is self._sim:
            return self._at(time_ns, callback, args)
        return clock.schedule_at(time_ns, callback, *args)

    def _herald_arrives(self, side, ref, herald):
        # the stations' deliver callback: ref is what _entangle submitted
        self.herald_c(side, ref, herald)

    cdef int herald_c(self, object side, object ref, object herald) except -1:
        # (the compiled stations call this directly)
        cdef RuntimeCore node
        node = <RuntimeCore?> (<tuple> ref)[0]
        if node.incarnation == (<tuple> ref)[3]:
            node._feed((<tuple> ref)[1], _done((<tuple> ref)[2], herald), self._now())
        return 0

    def set_timer(self, node, protocol, key, at_ns):
        """(driver) Wake ``node`` for timer ``key`` of ``protocol`` at ``at_ns``."""
        self._stats["timers"] += 1
        return self._at(at_ns, self._timer_fired, (node, protocol, key))

    def _timer_fired(self, node, protocol, key):
        # the handle is the node's current one unless it was cancelled (then
        # this event would not fire): look it up rather than carry it along
        node.fire_timer(protocol, key, node.timers.get((protocol, key)), self._now())

    def cancel_timer(self, handle):
        if self._ck is not None and type(handle) is CyEventHandle:
            self._ck.cancel_c(<CyEventHandle> handle)
        else:
            self._sim.cancel(handle)


# The kernel events of the driver's hot path, fired by the compiled kernel in
# C (EventCallback); named in traces as the methods they stand for.

cdef class _ArriveLink(EventCallback):
    cdef DriverCore driver

    def __init__(self, DriverCore driver):
        self.driver = driver
        self.name = "DriverCore._arrive_link"

    cdef int fire(self, tuple args) except -1:
        if len(args) != 6:
            raise TypeError(f"_arrive_link takes 6 arguments ({len(args)} given)")
        return self.driver._arrive_c(<LinkCore?> args[0], args[1], args[2],
                                     <RuntimeCore?> args[3], <RuntimeCore?> args[4],
                                     <list?> args[5])


cdef class _OpDone(EventCallback):
    cdef DriverCore driver

    def __init__(self, DriverCore driver):
        self.driver = driver
        self.name = "DriverCore._op_done"

    cdef int fire(self, tuple args) except -1:
        if len(args) != 5:
            raise TypeError(f"_op_done takes 5 arguments ({len(args)} given)")
        return self.driver._op_done_c(<RuntimeCore?> args[0], args[1], args[2], args[3],
                                      args[4])
