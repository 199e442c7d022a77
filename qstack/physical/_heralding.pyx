# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython twin of ``qstack.physical.heralding.PyHeraldingStation``: the same
code, line for line, as typed classes (``cdef class`` with typed fields; the
internal steps are C calls). The Python module is the reference and the
documentation (``specs/physical.md``, "Heralding station");
``tests/test_physical_heralding_twins.py`` runs both on the same random
request scripts and requires the same heralds at the same times.

Keep the two in step: a change to one is a change to the other.
"""

cimport cython

from qstack.core._runtime cimport DriverHooks, EventCallback
from qstack.core._slots cimport slot_field, slot_offset

from qstack.core.protocol import fast_constructor
from qstack.physical.ops import Entangle, Herald
from qstack.physical.pair_model import bell_index_rule

# (the same values as heralding.py's; the twin test checks them)
NEVER_NS = 1 << 62
ATTEMPT_BLOCK = 1024

cdef object _FOLLOW = None
cdef object _herald = fast_constructor(Herald)


cdef inline bint _unfollow(list follows, object req) except -1:
    # take req out of a side's followers (the oldest first, as a deque's
    # remove); False if it is not there
    cdef Py_ssize_t i
    for i in range(len(follows)):
        if follows[i] is req:
            del follows[i]
            return True
    return False


# The station's calls of a device and of the engine: a C call (cpdef) when
# they are the compiled classes (or a subclass: an override is still
# called), by name for anything else (a stand-in in a test).
cdef inline object _reserve(dev):
    if isinstance(dev, QuantumDevice):
        return (<QuantumDevice> dev).reserve()
    return dev.reserve()


cdef inline object _release_reservation(dev):
    if isinstance(dev, QuantumDevice):
        return (<QuantumDevice> dev).release_reservation()
    return dev.release_reservation()


cdef inline object _store(dev, qubit, since_ns):
    if isinstance(dev, QuantumDevice):
        return (<QuantumDevice> dev).store(qubit, since_ns, True)
    return dev.store(qubit, since_ns, reserved=True)


cdef inline object _new_pair(engine, prepared):
    if isinstance(engine, QuantumEngine):
        return (<QuantumEngine> engine).new_pair(prepared)
    return engine.new_pair(prepared)


cdef class BlockUniforms:
    """Typed twin of ``heralding.BlockUniforms`` (the station's generator as
    the link model sees it: ``random()`` from blocks of ATTEMPT_BLOCK)."""

    # (fields in _heralding.pxd)

    def __init__(self, gen):
        self.gen = gen
        self._block = []
        self._next = 0

    def random(self, size=None, dtype=None, out=None):
        """A uniform double in [0, 1) (with arguments: ``gen.random(...)``)."""
        if size is None and dtype is None and out is None:
            return self.next_c()
        return self.gen.random(size, "d" if dtype is None else dtype, out)

    cdef double next_c(self) except? -1.0:
        """The next uniform double, as :meth:`random` gives it (the station's
        own draw of a Bell index)."""
        cdef Py_ssize_t i = self._next
        if i == len(self._block):
            self._block = self.gen.random(ATTEMPT_BLOCK).tolist()
            i = 0
        self._next = i + 1
        return <double> self._block[i]

    def next_uniform(self):
        """The next uniform double (the Python twin's name for it)."""
        return self.next_c()

    def __getattr__(self, name):
        return getattr(self.gen, name)


@cython.freelist(16)
cdef class _Request:
    """One end's pending ``Entangle`` (typed: see the Python twin's ``_Request``)."""

    # (fields in _heralding.pxd)

    def __init__(self, side, ref, op):
        # (the other fields start as None / False: partner, deadline_event,
        # herald_event, qubit, started, runs (attempt runs recorded at both
        # ends), twin (the other end's request when one event carries both))
        _fill_request(self, side, ref, op)

    def __repr__(self):
        return (f"_Request(side={self.side}, key={self.key!r}, "
                f"matched={self.partner is not None})")


# where an Entangle keeps the fields a request copies (read in C: _slots.pxd)
cdef type _Entangle = Entangle
cdef Py_ssize_t _ENTANGLE_KEY = slot_offset(Entangle, "key")
cdef Py_ssize_t _ENTANGLE_DEADLINE = slot_offset(Entangle, "deadline_ns")
cdef Py_ssize_t _ENTANGLE_PARAM = slot_offset(Entangle, "param")
cdef Py_ssize_t _ENTANGLE_START = slot_offset(Entangle, "start_ns")


cdef inline void _fill_request(_Request req, side, ref, op) except *:
    req.side = side
    req.ref = ref
    req.key = slot_field(op, _Entangle, _ENTANGLE_KEY, "key")
    req.deadline = slot_field(op, _Entangle, _ENTANGLE_DEADLINE, "deadline_ns")
    req.param = slot_field(op, _Entangle, _ENTANGLE_PARAM, "param")
    req.start = slot_field(op, _Entangle, _ENTANGLE_START, "start_ns")


cdef _Request _new_request(side, ref, op):
    """``_Request(side, ref, op)`` without the type call's argument parsing
    (one per pair and end; the fields a new object does not already hold)."""
    cdef _Request req = _Request.__new__(_Request)
    _fill_request(req, side, ref, op)
    return req


cdef class HeraldingStation:
    """The heralding entity of a link (typed twin of ``heralding.PyHeraldingStation``;
    same arguments, same behaviour)."""

    # (fields in _heralding.pxd)

    def __init__(self, ends, model, engine, devices,
                 clock, deliver, rng,
                 attempts_rng, formalism = "bd", classical_delay_ns = 0):
        self.ends = tuple(ends)
        self.model = model
        self.engine = engine
        self.devices = tuple(devices)
        self.clock = clock
        self.deliver = deliver
        self.rng = rng
        self._uniforms = BlockUniforms(rng)
        self._herald_both_cb = _HeraldBoth(self)
        self.attempts_rng = attempts_rng
        self.formalism = formalism
        self.classical_delay_ns = int(classical_delay_ns)
        self.up = True
        #: pairs heralded, and attempts made (successful ones included)
        self.pairs_heralded = 0
        self.attempts = 0
        # per side: keyed requests by key, and followers in submission order
        self._keyed = ({}, {})
        # (lists, typed in C: appended to, walked oldest first and taken from
        # once per pair; a deque's methods are Python method calls here)
        self._follow = ([], [])
        # param -> (p, cycle, herald delay side 0, side 1); param -> per Bell index (prepared, fidelity)
        self._numbers = {}
        self._states = {}
        # p -> [pre-drawn attempt counts, next index]
        self._blocks = {}
        self._model_seen = model
        self._set_bell_rule()
        # some end's stored qubits dephase with each attempt (NodeHardware.attempt_dephasing_prob)
        self._dephasing = any(getattr(getattr(d, "hw", None), "attempt_dephasing_prob", 0.0) > 0
                              for d in self.devices)

    @property
    def deliver(self):
        return self._deliver

    @deliver.setter
    def deliver(self, deliver):
        self._deliver = deliver
        owner = getattr(deliver, "__self__", None)
        self._hooks = owner if isinstance(owner, DriverHooks) \
            and deliver == getattr(owner, "_herald_arrives", None) else None

    # ------------------------------------------------------------------ requests
    def submit(self, side, ref, op):
        """End ``side`` asks for a pair (``op``); ``ref`` comes back with its herald."""
        self.submit_c(side, ref, op)

    cdef int submit_c(self, object side, object ref, object op) except -1:
        # (the compiled driver calls this directly, once per pair and end)
        cdef _Request req, partner, cand
        cdef dict theirs
        cdef Py_ssize_t s, o
        clock = self.clock
        # (the sides as C indices: the lists of each end are tuples of two)
        s = side
        if s != 0 and s != 1:
            raise IndexError(f"side {side!r}: the ends of a link are sides 0 and 1")
        o = 1 - s
        if not self.up:
            clock.schedule_at(clock.now, self._deliver, side, ref,
                              Herald(False, reason="link down"))
            return 0
        if not _reserve(self.devices[s]):
            clock.schedule_at(clock.now, self._deliver, side, ref,
                              Herald(False, reason="memory full"))
            return 0
        req = _new_request(side, ref, op)
        # A request is free to match while it has no partner and no pair: one
        # whose pair is made waits only for its herald (its partner may have
        # heard already).
        key = req.key
        if key is _FOLLOW:
            partner = None
            for cand in (<dict> self._keyed[o]).values():    # the oldest free keyed request
                if cand.partner is None and cand.qubit is None:
                    partner = cand
                    break
        else:
            # listed at once (every request stays listed until answered: cancel
            # finds it there), in one look-up of the key: a key this end is
            # still waiting on is a second submission, and is not listed
            if (<dict> self._keyed[s]).setdefault(key, req) is not req:
                _release_reservation(self.devices[s])
                clock.schedule_at(clock.now, self._deliver, side, ref,
                                  Herald(False, reason="duplicate key"))
                return 0
            theirs = self._keyed[o]
            # (a link protocol keys at one end only, as the EGP's leader does:
            # the other end's keyed requests are then none, and not looked up)
            partner = theirs.get(key) if theirs else None
            if partner is not None and (partner.partner is not None or partner.qubit is not None):
                partner = None          # (matched with a follower already)
            if partner is None:
                for cand in <list> self._follow[o]:   # the oldest free follower
                    if cand.partner is None and cand.qubit is None:
                        partner = cand
                        break
        # ``partner`` tells whether it is matched
        if key is _FOLLOW:
            (<list> self._follow[s]).append(req)
        if partner is None:
            if req.deadline < NEVER_NS:
                self._arm_deadline(req)
            return 0
        self._match(req, partner)
        return 0

    cdef _arm_deadline(self, _Request req):
        if req.deadline < NEVER_NS and req.deadline_event is None:
            clock = self.clock
            req.deadline_event = clock.schedule_at(max(req.deadline, clock.now),
                                                   self._deadline, req)

    cdef _unlist(self, _Request req):
        """Take ``req`` out of the lists."""
        if req.key is _FOLLOW:
            _unfollow(<list> self._follow[req.side], req)
        else:
            (<dict> self._keyed[req.side]).pop(req.key, None)

    cdef _forget(self, _Request req):
        """``req`` is answered: remove it wherever it is listed."""
        self._unlist(req)
        if req.deadline_event is not None:
            self.clock.cancel(req.deadline_event)
            req.deadline_event = None

    # ------------------------------------------------------------------ attempts
    cdef _set_bell_rule(self):
        """How the model draws a herald's Bell index (``bell_index_rule``)."""
        rule = bell_index_rule(self.model)
        self._bell_call = rule is None
        if rule is not None:
            self._bell_fixed, self._bell_t0, self._bell_t1, self._bell_t2 = rule

    cdef _figures(self, param):
        if self._model_seen is not self.model:      # the model was replaced: recompute
            self._numbers.clear()
            self._states.clear()
            self._blocks.clear()
            self._model_seen = self.model
            self._set_bell_rule()
        nums = self._numbers.get(param)
        if nums is None:
            model = self.model
            nums = self._numbers[param] = (float(model.success_probability(param)),
                                           max(1, int(model.cycle_ns(param))),
                                           int(model.herald_delay_ns(0)),
                                           int(model.herald_delay_ns(1)))
        return nums

    def _heralded_state(self, param, bell_index):
        """(prepared pair, fidelity to the announced Bell state), computed once
        per (param, Bell index): the heralded state is deterministic. Kept per
        param as a list by Bell index (``_match`` reads it without building
        and hashing a key tuple per pair)."""
        from qstack.physical.heralding import shared_heralded_state
        if not 0 <= bell_index < 4:
            # (not a Bell index: the model's own check says so)
            return shared_heralded_state(self.model, param, bell_index, self.formalism,
                                         self.engine)
        per = self._states.get(param)
        if per is None:
            per = self._states[param] = [None, None, None, None]
        cached = per[bell_index]
        if cached is None:
            cached = per[bell_index] = shared_heralded_state(self.model, param, bell_index,
                                                             self.formalism, self.engine)
        return cached

    cdef _match(self, _Request a, _Request b):
        """Two requests matched: draw the first successful attempt and schedule
        both heralds, or let the deadlines answer if none comes in time."""
        cdef _Request r0, r1
        cdef Py_ssize_t bi
        a.partner = b
        b.partner = a
        r0, r1 = (a, b) if a.side == 0 else (b, a)
        # a keyed request names the pair (the follower learns the key from its herald)
        key = r0.key if r0.key is not _FOLLOW else r1.key
        param = r0.param if r0.key is not _FOLLOW else r1.param
        nums = self._numbers.get(param) if self._model_seen is self.model else None
        if nums is None:
            nums = self._figures(param)
        p, cycle, d0, d1 = nums
        clock = self.clock
        now = self._hooks.now_c(clock) if self._hooks is not None else clock.now
        first = max(now, r0.start, r1.start)   # the first attempt
        dl0, dl1 = r0.deadline, r1.deadline
        if p > 0:
            # Skip-ahead: the index of the first successful attempt is geometric
            # (exact for independent attempts); drawn in blocks per p, one numpy
            # call per block instead of one per pair.
            blocks = self._blocks
            block = blocks.get(p)
            if block is None or block[1] == ATTEMPT_BLOCK:
                block = blocks[p] = [self.attempts_rng.geometric(p, ATTEMPT_BLOCK).tolist(), 0]
            bi = (<list> block)[1]        # (a C index into the list of counts)
            attempts = (<list> (<list> block)[0])[bi]
            (<list> block)[1] = bi + 1
            emitted = first + (attempts - 1) * cycle
            h0 = emitted + d0
            h1 = emitted + d1
            if h0 <= dl0 and h1 <= dl1:
                if self._bell_call:
                    bell_index = int(self.model.sample_bell_index(self._uniforms))
                elif self._bell_fixed >= 0:
                    bell_index = self._bell_fixed    # (the model's fixed index: nothing drawn)
                else:
                    # the model's own draw, made here: one uniform against its thresholds
                    u = self._uniforms.next_c()
                    bell_index = 0 if u < self._bell_t0 else 1 if u < self._bell_t1 else \
                        2 if u < self._bell_t2 else 3
                per = self._states.get(param)
                cached = per[bell_index] if per is not None and 0 <= bell_index < 4 else None
                prepared, fid = cached if cached is not None else \
                    self._heralded_state(param, bell_index)
                qa, qb = _new_pair(self.engine, prepared)
                if self._dephasing:
                    self._record_attempts(r0, r1, first, cycle, attempts)
                self.attempts += attempts
                self.pairs_heralded += 1
                dev0, dev1 = self.devices
                _store(dev0, qa, emitted)
                _store(dev1, qb, emitted)
                r0.qubit, r1.qubit = qa, qb
                r0.started = r1.started = True
                for r in (r0, r1):
                    if r.deadline_event is not None:
                        clock.cancel(r.deadline_event)
                        r.deadline_event = None
                herald0 = _herald(True, qa, bell_index, attempts, emitted, fid, "", key)
                herald1 = _herald(True, qb, bell_index, attempts, emitted, fid, "", key)
                if h0 == h1:
                    # both ends hear at the same nanosecond: one event delivers
                    # both, side 0 first, exactly as two events scheduled back
                    # to back would (nothing can fire between them)
                    r0.twin, r1.twin = r1, r0
                    if self._hooks is not None:     # (the driver's kernel: a C call)
                        event = self._hooks.at_c(clock, h0, self._herald_both_cb,
                                                 (r0, r1, herald0, herald1))
                    else:
                        event = clock.schedule_at(h0, self._herald_both_cb, r0, r1,
                                                  herald0, herald1)
                    r0.herald_event = r1.herald_event = event
                    return
                r0.herald_event = clock.schedule_at(h0, self._herald, r0, herald0)
                r1.herald_event = clock.schedule_at(h1, self._herald, r1, herald1)
                return
        # No success in time: attempts run until the earlier deadline, which answers.
        r0.started = r1.started = True
        made = max(0, (min(dl0, dl1) - first) // cycle)
        if self._dephasing:
            self._record_attempts(r0, r1, first, cycle, made)
        self.attempts += made
        for r in (r0, r1):
            if r.deadline < NEVER_NS:
                self._arm_deadline(r)

    cdef _record_attempts(self, _Request r0, _Request r1, first, cycle,
                         count):
        """Tell both ends' devices of the attempts (their stored qubits dephase)."""
        now = self.clock.now
        runs = tuple(dev.add_attempts(now, first, cycle, count) for dev in self.devices)
        r0.runs = r1.runs = runs

    cdef _stop_attempts(self, _Request req):
        """Attempts for ``req`` end now (cancelled, link or peer down)."""
        if req.runs is not None:
            now = self.clock.now
            for dev, run in zip(self.devices, req.runs):
                dev.stop_attempts(run, now)
            req.runs = None
            if req.partner is not None:
                req.partner.runs = None

    def _herald(self, req: _Request, herald):
        self._herald_c(req, herald)

    cdef _herald_c(self, _Request req, herald):
        # (once per pair and end: _forget inlined; a matched request has no deadline event)
        cdef Py_ssize_t s = req.side      # (0 or 1: submit_c checked it)
        req.herald_event = None
        if req.key is _FOLLOW:
            if not _unfollow(<list> self._follow[s], req):
                raise ValueError("a heralded follower that was not listed")
        else:
            (<dict> self._keyed[s]).pop(req.key, None)
        partner = req.partner
        if partner is not None:        # this end is settled: unlink the pair
            req.partner = partner.partner = None
        if self._hooks is not None:
            self._hooks.herald_c(req.side, req.ref, herald)
        else:
            self._deliver(req.side, req.ref, herald)

    def _herald_both(self, r0: _Request, r1: _Request, herald0, herald1):
        self._herald_both_c(r0, r1, herald0, herald1)

    cdef _herald_both_c(self, _Request r0, _Request r1, herald0, herald1):
        # both ends' heralds in one event; an end whose request ended meanwhile
        # (its herald_event cleared by _drop_herald) is skipped. The twins let
        # go of each other first: the pairing matters only while the event
        # waits, and a cycle left behind would be freed by the garbage
        # collector, not at once (millions per run on long chains)
        r0.twin = r1.twin = None
        if r0.herald_event is not None:
            self._herald_c(r0, herald0)
        if r1.herald_event is not None:
            self._herald_c(r1, herald1)

    cdef _drop_herald(self, _Request req):
        """``req`` no longer waits for its herald: cancel its event, unless it
        is shared with the other end's request, which still waits for it."""
        event = req.herald_event
        req.herald_event = None
        twin = req.twin
        if twin is not None:
            req.twin = twin.twin = None      # (no cycle left behind)
        if twin is None or twin.herald_event is not event:
            self.clock.cancel(event)

    def _deadline(self, req: _Request):
        req.deadline_event = None
        partner = req.partner
        self._forget(req)
        reason = "deadline" if req.started else "peer absent"
        _release_reservation(self.devices[req.side])
        if partner is not None:
            partner.partner = None
            partner.started = False
            # the partner goes on waiting for another match (or its own deadline)
            self._arm_deadline(partner)
        self._deliver(req.side, req.ref, Herald(False, reason=reason))

    # ------------------------------------------------------------------ withdrawal
    def cancel(self, side, key):
        """End ``side`` withdraws its request for ``key`` (``None``: its oldest
        follower). Before attempts started only that request ends; after,
        both ends' requests end and the pair being made is freed. Each ended
        request is answered ``Herald(ok=False, reason="cancelled")``."""
        if key is _FOLLOW:
            follows = self._follow[side]
            req = follows[0] if follows else None
        else:
            req = (<dict> self._keyed[side]).get(key)
        if req is None:
            return
        partner = req.partner
        clock = self.clock
        self._stop_attempts(req)
        if req.herald_event is not None:
            # the pair exists (its heralds are on the way): both ends' requests end
            self._end(req, "cancelled", 0)
            if partner is not None:
                self._end(partner, "cancelled", self.classical_delay_ns)
            return
        self._forget(req)
        _release_reservation(self.devices[side])
        if partner is not None:
            partner.partner = None
            partner.started = False
            self._arm_deadline(partner)
        clock.schedule_at(clock.now, self._deliver, side, req.ref,
                          Herald(False, reason="cancelled"))

    cdef _end(self, _Request req, reason, delay):
        """Answer ``req`` with a failure now (+``delay``), freeing what it holds."""
        self._stop_attempts(req)
        self._forget(req)
        partner = req.partner
        if partner is not None:
            req.partner = partner.partner = None
        dev = self.devices[req.side]
        if req.herald_event is not None:
            self._drop_herald(req)
            if req.qubit is not None:
                dev.free(req.qubit)
        else:
            _release_reservation(dev)
        clock = self.clock
        clock.schedule_at(clock.now + delay, self._deliver, req.side, req.ref,
                          Herald(False, reason=reason))

    # ------------------------------------------------------------------ faults
    def pending(self, side=None):
        """Requests waiting or in progress (at ``side``, or at both ends)."""
        sides = (0, 1) if side is None else (side,)
        return sum(len(self._keyed[s]) + len(self._follow[s]) for s in sides)

    def set_up(self, up):
        """Take the link down (every request fails with ``"link down"`` now,
        new ones are refused) or bring it back up."""
        self.up = bool(up)
        if up:
            return
        for side in (0, 1):
            for req in list(self._keyed[side].values()) + list(self._follow[side]):
                self._end(req, "link down", 0)

    def drop_side(self, side):
        """End ``side`` crashed: forget its requests (its memory is gone with
        it: no reservation is released on its device) and fail the requests of
        the other end that were matched with them (``"peer down"``)."""
        for req in list(self._keyed[side].values()) + list(self._follow[side]):
            self._unlist(req)
            if req.deadline_event is not None:
                self.clock.cancel(req.deadline_event)
            if req.herald_event is not None:
                self._drop_herald(req)
            self._stop_attempts(req)
            partner = req.partner
            req.partner = None
            if partner is not None:
                self._end(partner, "peer down", 0)


cdef class _HeraldBoth(EventCallback):
    """``station._herald_both`` as a kernel event the compiled kernel fires in C."""
    cdef HeraldingStation station

    def __init__(self, HeraldingStation station):
        self.station = station
        self.name = "HeraldingStation._herald_both"

    cdef int fire(self, tuple args) except -1:
        if len(args) != 4:
            raise TypeError(f"_herald_both takes 4 arguments ({len(args)} given)")
        self.station._herald_both_c(<_Request?> args[0], <_Request?> args[1], args[2], args[3])
        return 0
