"""The heralding station of one link: both ends' ``Entangle`` requests in, heralds out.

A heralded link has an entity between (or at) its two ends that runs the
attempts and announces their outcome: the midpoint of a single-click,
double-click or midpoint-source link, the receiver's detectors of a
sender-receiver link. :class:`HeraldingStation` is that entity, written once
for both drivers: the simulator runs one per link in process, the emulation's
physics server runs the same object. ``specs/physical.md`` (§ "Heralding
station") is its normative description; in short:

* each end submits ``Entangle(peer, key, deadline_ns, param, start_ns)``; a
  memory slot is reserved at that end on submission (``"memory full"`` if none);
* a request with a key **matches** the other end's request with the same key;
  a request whose key is ``None`` **follows**: it matches the other end's
  oldest unmatched keyed request, whatever its key (the herald then names that
  key). Two followers never match. This is how a link protocol whose ends do
  not decide together (a leader choosing, a follower taking part) uses one
  link without any timing assumption;
* once matched, attempts start at the later of now and both ``start_ns``; the
  index of the first success is drawn from the geometric distribution of the
  link model's success probability (skip-ahead: exact for independent
  attempts), the pair is made in the state engine and stored at both ends,
  and each end gets ``Herald(ok=True, ...)`` at ``emitted_ns +
  herald_delay_ns(side)`` (one clock event delivers both, side 0 first, when
  the two times are equal);
* without a success by a request's deadline it fails (``"deadline"``; its
  partner, if it has no deadline of its own then, waits for another match);
* ``CancelEntangle`` withdraws a request (``"cancelled"``); once attempts have
  started it ends both ends' requests (``"cancelled"``, the pair being made is
  freed);
* a link that goes down fails every request at once (``"link down"``) and
  refuses new ones until it is up; an end that crashes is forgotten
  (:meth:`drop_side`) and requests matched with its requests fail
  (``"peer down"``).

The station does no I/O and reads no clock of its own: it is given a
``clock`` (``now``, ``schedule_at(time_ns, fn, *args) -> handle``,
``cancel(handle)``; the simulator's kernel is one) on which it schedules its
heralds and deadlines, and a ``deliver(side, ref, herald)`` callback by which
a herald reaches the end that asked (``ref`` is the submitter's opaque
reference, given back unchanged). Times are integer nanoseconds.
"""
from __future__ import annotations

from typing import Any, Callable

from qstack.core.kernels import load_kernel
from qstack.core.protocol import fast_constructor
from qstack.physical.ops import Entangle, Herald
from qstack.physical.pair_model import bell_index_rule

__all__ = ["HeraldingStation", "PyHeraldingStation", "BlockUniforms", "NEVER_NS",
           "ATTEMPT_BLOCK", "HAVE_CYTHON"]

#: Deadlines at or beyond this (ns, ~146 simulated years) mean "none": no event.
NEVER_NS = 1 << 62
#: Geometric attempt counts drawn per numpy call (per success probability).
ATTEMPT_BLOCK = 1024

_FOLLOW = None
# made twice per pair: a constructor function costs less than the type call
_herald = fast_constructor(Herald)


# (id(model), param, Bell index, formalism) -> (model, (prepared pair, fidelity)):
# every link built on one model heralds the same states, so they are worked
# out once per process, not once per link (a density-matrix check and an
# eigendecomposition each: about a millisecond, per link of a 10,000-node chain)
_HERALDED: dict = {}
_HERALDED_MAX = 4096


def shared_heralded_state(model: Any, param: float, bell_index: int, formalism: str,
                          engine: Any) -> tuple:
    """(prepared pair, fidelity to Bell state ``bell_index``) of ``model``'s
    herald at ``param`` in ``formalism``, shared by every station on the same
    model object (a prepared pair is engine-independent data)."""
    key = (id(model), param, bell_index, formalism)
    hit = _HERALDED.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    from qstack.physical.bell_diagonal import polarised_from_density_matrix
    from qstack.physical.states import bell_state, fidelity

    rho = model.heralded_state(param, bell_index)
    made_in = formalism
    if formalism == "bd" and polarised_from_density_matrix(rho) is None:
        # outside what bd holds exactly (Bell-diagonal plus local Z
        # polarisation; every built-in scheme's herald is inside): the
        # pair is made as a density matrix, exact, as any bd pair is
        # converted once an operation leaves the family. A model that
        # is asked by name to twirl (SingleClickModel(twirl=True))
        # returns a Bell-diagonal state and stays in bd.
        made_in = "dm"
    value = (engine.prepare_pair(rho, made_in), float(fidelity(rho, bell_state(bell_index))))
    if len(_HERALDED) >= _HERALDED_MAX:
        _HERALDED.clear()           # (a sweep over many models: keep the table small)
    _HERALDED[key] = (model, value)
    return value


class BlockUniforms:
    """The station's random generator as a link model sees it (the ``rng`` of
    ``sample_bell_index``): :meth:`random` gives the generator's next uniform
    double from a block of :data:`ATTEMPT_BLOCK` drawn in one numpy call, not
    one numpy call per pair (numpy's ``random(n)`` yields exactly the doubles
    ``n`` calls of ``random()`` give, so a model that draws with ``random()``
    draws the same numbers). Every other attribute is the generator's own: a
    model that uses other methods draws from the same generator, with the same
    distribution, though not in the order of one call per pair."""

    __slots__ = ("gen", "_block", "_next")

    def __init__(self, gen: Any) -> None:
        self.gen = gen
        self._block: list = []
        self._next = 0

    def random(self, size: Any = None, dtype: Any = None, out: Any = None) -> Any:
        """A uniform double in [0, 1) (with arguments: ``gen.random(...)``)."""
        if size is None and dtype is None and out is None:
            return self.next_uniform()
        return self.gen.random(size, "d" if dtype is None else dtype, out)

    def next_uniform(self) -> float:
        """The next uniform double, as :meth:`random` gives it (the station's
        own draw of a Bell index, ``bell_index_rule``)."""
        i = self._next
        block = self._block
        if i == len(block):
            block = self._block = self.gen.random(ATTEMPT_BLOCK).tolist()
            i = 0
        self._next = i + 1
        return block[i]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gen, name)


class _Request:
    """One end's pending ``Entangle``. A plain slotted class: one is made per
    pair and end, so construction is on the hot path."""

    __slots__ = ("side", "ref", "key", "deadline", "param", "start", "partner",
                 "deadline_event", "herald_event", "qubit", "started", "runs", "twin")

    def __init__(self, side: int, ref: Any, op: Entangle) -> None:
        self.side = side
        self.ref = ref
        self.key = op.key
        self.deadline = op.deadline_ns
        self.param = op.param
        self.start = op.start_ns
        self.partner: _Request | None = None
        self.deadline_event = None
        self.herald_event = None
        self.qubit = None
        self.started = False
        self.runs = None        # attempt runs recorded at both ends (per-attempt dephasing)
        self.twin = None        # the other end's request when one event carries both heralds

    def __repr__(self) -> str:
        return (f"_Request(side={self.side}, key={self.key!r}, "
                f"matched={self.partner is not None})")


class PyHeraldingStation:
    """The heralding entity of the link ``ends[0]``-``ends[1]`` (see the module
    doc), in pure Python: the reference twin of the compiled
    ``qstack.physical._heralding.HeraldingStation`` (the same code as typed
    classes; :data:`HeraldingStation` is the compiled one when it is built).

    Args:
        ends: the two node names, side 0 first (the smaller name).
        model: the link's physics, a
            :class:`~qstack.physical.pair_model.HeraldedPairModel`.
        engine: the :class:`~qstack.physical.engine.QuantumEngine` pairs are made in.
        devices: the two ends' :class:`~qstack.physical.device.QuantumDevice`,
            side 0 first (memory slots are reserved and pairs stored there).
        clock: schedules the station's own events (see the module doc).
        deliver: ``deliver(side, ref, herald)`` hands a herald to the end that asked.
        rng: numpy Generator for the announced Bell index (the model draws
            from it through a :class:`BlockUniforms`).
        attempts_rng: numpy Generator for the attempt counts (its own stream,
            so the heralds' timing does not depend on the Bell indices drawn).
        formalism: "bd" (pairs held as Bell-diagonal coefficients and local
            polarisation, exactly; a heralded state outside that family is
            made as a density matrix, exactly) or "dm" (density matrices).
        classical_delay_ns: one-way delay between the ends (ns): a cancellation
            after attempts started reaches the far end that much later.
    """

    def __init__(self, ends: tuple[str, str], model: Any, engine: Any, devices: tuple,
                 clock: Any, deliver: Callable[[int, Any, Herald], None], rng: Any,
                 attempts_rng: Any, formalism: str = "bd", classical_delay_ns: int = 0) -> None:
        self.ends = tuple(ends)
        self.model = model
        self.engine = engine
        self.devices = tuple(devices)
        self.clock = clock
        self.deliver = deliver
        self.rng = rng
        self._uniforms = BlockUniforms(rng)
        self.attempts_rng = attempts_rng
        self.formalism = formalism
        self.classical_delay_ns = int(classical_delay_ns)
        self.up = True
        #: pairs heralded, and attempts made (successful ones included)
        self.pairs_heralded = 0
        self.attempts = 0
        # per side: keyed requests by key, and followers in submission order
        self._keyed: tuple[dict, dict] = ({}, {})
        self._follow: tuple[list, list] = ([], [])    # (oldest first; lists as in the compiled twin)
        # param -> (p, cycle, herald delay side 0, side 1); param -> per Bell index (prepared, fidelity)
        self._numbers: dict = {}
        self._states: dict = {}
        # p -> [pre-drawn attempt counts, next index]
        self._blocks: dict = {}
        self._model_seen = model
        # how the model draws a herald's Bell index (None: ask it per pair)
        self._bell_rule = bell_index_rule(model)
        # some end's stored qubits dephase with each attempt (NodeHardware.attempt_dephasing_prob)
        self._dephasing = any(getattr(getattr(d, "hw", None), "attempt_dephasing_prob", 0.0) > 0
                              for d in self.devices)

    # ------------------------------------------------------------------ requests
    def submit(self, side: int, ref: Any, op: Entangle) -> None:
        """End ``side`` asks for a pair (``op``); ``ref`` comes back with its herald."""
        clock = self.clock
        if side != 0 and side != 1:
            raise IndexError(f"side {side!r}: the ends of a link are sides 0 and 1")
        if not self.up:
            clock.schedule_at(clock.now, self.deliver, side, ref,
                              Herald(False, reason="link down"))
            return
        if not self.devices[side].reserve():
            clock.schedule_at(clock.now, self.deliver, side, ref,
                              Herald(False, reason="memory full"))
            return
        req = _Request(side, ref, op)
        other = 1 - side
        # A request is free to match while it has no partner and no pair: one
        # whose pair is made waits only for its herald (its partner may have
        # heard already).
        key = req.key
        if key is _FOLLOW:
            partner = None
            for cand in self._keyed[other].values():    # the oldest free keyed request
                if cand.partner is None and cand.qubit is None:
                    partner = cand
                    break
        else:
            # listed at once (every request stays listed until answered: cancel
            # finds it there), in one look-up of the key: a key this end is
            # still waiting on is a second submission, and is not listed
            if self._keyed[side].setdefault(key, req) is not req:
                self.devices[side].release_reservation()
                clock.schedule_at(clock.now, self.deliver, side, ref,
                                  Herald(False, reason="duplicate key"))
                return
            theirs = self._keyed[other]
            # (a link protocol keys at one end only, as the EGP's leader does:
            # the other end's keyed requests are then none, and not looked up)
            partner = theirs.get(key) if theirs else None
            if partner is not None and (partner.partner is not None or partner.qubit is not None):
                partner = None          # (matched with a follower already)
            if partner is None:
                for cand in self._follow[other]:   # the oldest free follower
                    if cand.partner is None and cand.qubit is None:
                        partner = cand
                        break
        # ``partner`` tells whether it is matched
        if key is _FOLLOW:
            self._follow[side].append(req)
        if partner is None:
            if req.deadline < NEVER_NS:
                self._arm_deadline(req)
            return
        self._match(req, partner)

    def _arm_deadline(self, req: _Request) -> None:
        if req.deadline < NEVER_NS and req.deadline_event is None:
            clock = self.clock
            req.deadline_event = clock.schedule_at(max(req.deadline, clock.now),
                                                   self._deadline, req)

    def _unlist(self, req: _Request) -> None:
        """Take ``req`` out of the lists."""
        if req.key is _FOLLOW:
            try:
                self._follow[req.side].remove(req)
            except ValueError:
                pass
        else:
            self._keyed[req.side].pop(req.key, None)

    def _forget(self, req: _Request) -> None:
        """``req`` is answered: remove it wherever it is listed."""
        self._unlist(req)
        if req.deadline_event is not None:
            self.clock.cancel(req.deadline_event)
            req.deadline_event = None

    # ------------------------------------------------------------------ attempts
    def _figures(self, param: float) -> tuple:
        if self._model_seen is not self.model:      # the model was replaced: recompute
            self._numbers.clear()
            self._states.clear()
            self._blocks.clear()
            self._model_seen = self.model
            self._bell_rule = bell_index_rule(self.model)
        nums = self._numbers.get(param)
        if nums is None:
            model = self.model
            nums = self._numbers[param] = (float(model.success_probability(param)),
                                           max(1, int(model.cycle_ns(param))),
                                           int(model.herald_delay_ns(0)),
                                           int(model.herald_delay_ns(1)))
        return nums

    def _heralded_state(self, param: float, bell_index: int) -> tuple:
        """(prepared pair, fidelity to the announced Bell state), computed once
        per (param, Bell index): the heralded state is deterministic. Kept per
        param as a list by Bell index (``_match`` reads it without building
        and hashing a key tuple per pair)."""
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

    def _match(self, a: _Request, b: _Request) -> None:
        """Two requests matched: draw the first successful attempt and schedule
        both heralds, or let the deadlines answer if none comes in time."""
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
        first = max(clock.now, r0.start, r1.start)   # the first attempt
        dl0, dl1 = r0.deadline, r1.deadline
        if p > 0:
            # Skip-ahead: the index of the first successful attempt is geometric
            # (exact for independent attempts); drawn in blocks per p, one numpy
            # call per block instead of one per pair.
            blocks = self._blocks
            block = blocks.get(p)
            if block is None or block[1] == ATTEMPT_BLOCK:
                block = blocks[p] = [self.attempts_rng.geometric(p, ATTEMPT_BLOCK).tolist(), 0]
            attempts = block[0][block[1]]
            block[1] += 1
            emitted = first + (attempts - 1) * cycle
            h0 = emitted + d0
            h1 = emitted + d1
            if h0 <= dl0 and h1 <= dl1:
                rule = self._bell_rule
                if rule is None:
                    bell_index = int(self.model.sample_bell_index(self._uniforms))
                elif rule[0] >= 0:
                    bell_index = rule[0]         # (the model's fixed index: nothing drawn)
                else:
                    # the model's own draw, made here: one uniform against its thresholds
                    u = self._uniforms.next_uniform()
                    bell_index = 0 if u < rule[1] else 1 if u < rule[2] else 2 if u < rule[3] \
                        else 3
                per = self._states.get(param)
                cached = per[bell_index] if per is not None and 0 <= bell_index < 4 else None
                prepared, fid = cached if cached is not None else \
                    self._heralded_state(param, bell_index)
                qa, qb = self.engine.new_pair(prepared)
                if self._dephasing:
                    self._record_attempts(r0, r1, first, cycle, attempts)
                self.attempts += attempts
                self.pairs_heralded += 1
                dev0, dev1 = self.devices
                dev0.store(qa, emitted, reserved=True)
                dev1.store(qb, emitted, reserved=True)
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
                    r0.herald_event = r1.herald_event = clock.schedule_at(
                        h0, self._herald_both, r0, r1, herald0, herald1)
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

    def _record_attempts(self, r0: _Request, r1: _Request, first: int, cycle: int,
                         count: int) -> None:
        """Tell both ends' devices of the attempts (their stored qubits dephase)."""
        now = self.clock.now
        runs = tuple(dev.add_attempts(now, first, cycle, count) for dev in self.devices)
        r0.runs = r1.runs = runs

    def _stop_attempts(self, req: _Request) -> None:
        """Attempts for ``req`` end now (cancelled, link or peer down)."""
        if req.runs is not None:
            now = self.clock.now
            for dev, run in zip(self.devices, req.runs):
                dev.stop_attempts(run, now)
            req.runs = None
            if req.partner is not None:
                req.partner.runs = None

    def _herald(self, req: _Request, herald: Herald) -> None:
        # (once per pair and end: _forget inlined; a matched request has no deadline event)
        req.herald_event = None
        if req.key is _FOLLOW:
            self._follow[req.side].remove(req)
        else:
            self._keyed[req.side].pop(req.key, None)
        partner = req.partner
        if partner is not None:        # this end is settled: unlink the pair
            req.partner = partner.partner = None
        self.deliver(req.side, req.ref, herald)

    def _herald_both(self, r0: _Request, r1: _Request, herald0: Herald, herald1: Herald) -> None:
        # both ends' heralds in one event; an end whose request ended meanwhile
        # (its herald_event cleared by _drop_herald) is skipped. The twins let
        # go of each other first: the pairing matters only while the event
        # waits, and a cycle left behind would be freed by the garbage
        # collector, not at once (millions per run on long chains)
        r0.twin = r1.twin = None
        if r0.herald_event is not None:
            self._herald(r0, herald0)
        if r1.herald_event is not None:
            self._herald(r1, herald1)

    def _drop_herald(self, req: _Request) -> None:
        """``req`` no longer waits for its herald: cancel its event, unless it
        is shared with the other end's request, which still waits for it."""
        event = req.herald_event
        req.herald_event = None
        twin = req.twin
        if twin is not None:
            req.twin = twin.twin = None      # (no cycle left behind)
        if twin is None or twin.herald_event is not event:
            self.clock.cancel(event)

    def _deadline(self, req: _Request) -> None:
        req.deadline_event = None
        partner = req.partner
        self._forget(req)
        reason = "deadline" if req.started else "peer absent"
        self.devices[req.side].release_reservation()
        if partner is not None:
            partner.partner = None
            partner.started = False
            # the partner goes on waiting for another match (or its own deadline)
            self._arm_deadline(partner)
        self.deliver(req.side, req.ref, Herald(False, reason=reason))

    # ------------------------------------------------------------------ withdrawal
    def cancel(self, side: int, key: Any) -> None:
        """End ``side`` withdraws its request for ``key`` (``None``: its oldest
        follower). Before attempts started only that request ends; after,
        both ends' requests end and the pair being made is freed. Each ended
        request is answered ``Herald(ok=False, reason="cancelled")``."""
        if key is _FOLLOW:
            follows = self._follow[side]
            req = follows[0] if follows else None
        else:
            req = self._keyed[side].get(key)
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
        self.devices[side].release_reservation()
        if partner is not None:
            partner.partner = None
            partner.started = False
            self._arm_deadline(partner)
        clock.schedule_at(clock.now, self.deliver, side, req.ref,
                          Herald(False, reason="cancelled"))

    def _end(self, req: _Request, reason: str, delay: int) -> None:
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
            dev.release_reservation()
        clock = self.clock
        clock.schedule_at(clock.now + delay, self.deliver, req.side, req.ref,
                          Herald(False, reason=reason))

    # ------------------------------------------------------------------ faults
    def pending(self, side: int | None = None) -> int:
        """Requests waiting or in progress (at ``side``, or at both ends)."""
        sides = (0, 1) if side is None else (side,)
        return sum(len(self._keyed[s]) + len(self._follow[s]) for s in sides)

    def set_up(self, up: bool) -> None:
        """Take the link down (every request fails with ``"link down"`` now,
        new ones are refused) or bring it back up."""
        self.up = bool(up)
        if up:
            return
        for side in (0, 1):
            for req in list(self._keyed[side].values()) + list(self._follow[side]):
                self._end(req, "link down", 0)

    def drop_side(self, side: int) -> None:
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


# the compiled twin when built (and not QSTACK_PURE_PYTHON=1), else the reference above
_compiled = load_kernel("qstack.physical._heralding")
HeraldingStation = _compiled.HeraldingStation if _compiled is not None else PyHeraldingStation
HAVE_CYTHON = _compiled is not None
