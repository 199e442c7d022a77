"""Decoy-state BB84 between neighbours as a protocol: ``app.qkd``.

One :class:`QkdProtocol` per node (sans-I/O). Alice's application submits a
:class:`QkdRequest`; her protocol sends :class:`~.messages.QkdStart` to Bob's
and both submit a :class:`~qstack.physical.ops.PulseBlock` for the link
between them. The driver answers each end with its record when the block's
pulses have been sent (n pulse periods later); the post-processing of
:mod:`.postprocess`, step by step, then runs over wire messages between the
two protocols (``specs/qkd.md``): sifting, parameter estimation (Lim et al.
2014, finite-key or asymptotic), Cascade, verification, privacy amplification.
Both ends deliver a :class:`QkdResult` with the same key, or one with the
abort's reason and no key.

Why a protocol on the node and not a function over a socket: the pulses are a
physical operation on a link (the driver's), and the post-processing is a
conversation of ~10²-10³ messages whose bulk is numpy arrays; a node protocol
takes the record as an ``OperationDone`` and the messages as events, so the
same object runs under the simulator (and later the emulation's daemon),
whereas a socket application would need the transport's byte stream plus a
way to reach the driver's pulse operation. Applications reach it through
:func:`bb84` / :func:`bb84_receive` (:mod:`.api`).

The protocol stands beside the socket stack rather than in it (nothing above
or below it: it delivers straight to the applications' listeners).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from qstack.core.errors import ErrorCode
from qstack.core.protocol import (
    Deliver, Fail, LinkDown, OperationDone, PeerDown, Protocol, SendMessage, on, on_message,
)
from qstack.core.states import Transitions
from qstack.physical.ops import PulseBlock, PulseRecord

from ._common import QKDError
from .amplification import AmplificationSeed, amplify, toeplitz_seed
from .cascade import VARIANTS, CascadeAlice, CascadeBob, efficiency
from .cascade import CascadeStart as _CStart
from .cascade import ParityQuery as _PQuery
from .cascade import ParityReply as _PReply
from .estimation import DecoySettings, FiniteKeyEstimate, lim_estimate, lim_key_length
from .messages import (
    PART_ITEMS, PROTOCOL, AmplifySeed, CascadeDone, CascadeStart, ParityQuery, ParityReply,
    QkdAbort, QkdStart, SiftBases, SiftDetections, TestBits, TestErrors, VerifyResult, VerifyTag,
)
from .postprocess import LeakRecord
from .verification import VerifyTag as _VTag
from .verification import check_tag, make_tag

__all__ = ["QkdProtocol", "QkdRequest", "QkdResult", "Phase", "TRANSITIONS"]


class Phase(Enum):
    """Where a block is (both ends pass through the same phases)."""

    PULSES = 1       # waiting for this end's PulseRecord
    SIFTING = 2      # basis announcements
    ESTIMATING = 3   # test-basis bits, error counts, the decoy bounds
    CORRECTING = 4   # Cascade
    VERIFYING = 5    # the verification tag
    AMPLIFYING = 6   # the privacy-amplification seed
    DONE = 7
    ABORTED = 8


_LIVE = (Phase.PULSES, Phase.SIFTING, Phase.ESTIMATING, Phase.CORRECTING, Phase.VERIFYING,
         Phase.AMPLIFYING)
TRANSITIONS = Transitions("qkd block", {
    (Phase.PULSES, "record"): Phase.SIFTING,
    (Phase.SIFTING, "sifted"): Phase.ESTIMATING,
    (Phase.ESTIMATING, "estimated"): Phase.CORRECTING,
    (Phase.CORRECTING, "corrected"): Phase.VERIFYING,
    (Phase.VERIFYING, "verified"): Phase.AMPLIFYING,
    (Phase.AMPLIFYING, "amplified"): Phase.DONE,
    **{(p, "abort"): Phase.ABORTED for p in _LIVE},
})


@dataclass(frozen=True)
class QkdRequest:
    """Alice's application → her ``app.qkd``: one block of ``pulses`` pulses with
    neighbour ``peer``. ``finite``: Lim et al.'s finite-key bounds (False: their
    asymptotic limit); ``eps_sec``/``eps_cor``: composable secrecy and
    correctness; ``qber_max``/``phase_error_max``: the abort thresholds;
    ``request_id``: the caller's tag, echoed in the result."""

    peer: str
    pulses: int
    request_id: int = 0
    finite: bool = True
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    qber_max: float = 0.11
    phase_error_max: float = 0.15
    key_basis: int = 0
    cascade_variant: str = "yan14"


@dataclass
class QkdResult:
    """One end's outcome of a block (delivered to the applications).

    ``key``: the final key (uint8 bits; identical at both ends), empty on
    abort, when ``reason`` and ``code`` say why. ``qber_test_per_class``:
    test-basis QBER per intensity class; ``qber_key``: the key basis' QBER as
    Cascade found it (Bob; Alice learns it only as leaked parities);
    ``estimate``: Lim et al.'s bounds; ``leaks``: bits disclosed per step;
    ``start_ns``/``end_ns``: the pulses' start and this end's finish (ns);
    ``messages``/``message_bytes``: what this end sent.
    """

    ok: bool
    role: str
    peer: str
    block_id: int
    request_id: int = 0
    reason: str = ""
    code: ErrorCode | None = None
    key: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    n_pulses: int = 0
    sent_per_class: tuple[int, ...] = ()
    sifted: int = 0
    n_key: tuple[int, ...] = ()
    n_test: tuple[int, ...] = ()
    m_test: tuple[int, ...] = ()
    qber_test_per_class: tuple[float, ...] = ()
    qber_test: float = math.nan
    qber_key: float = math.nan
    estimate: FiniteKeyEstimate | None = None
    leaks: LeakRecord = field(default_factory=LeakRecord)
    cascade_rounds: int = 0
    cascade_efficiency: float = math.nan
    start_ns: int = 0
    pulses_end_ns: int = 0
    end_ns: int = 0
    messages: int = 0
    message_bytes: int = 0

    @property
    def key_length(self) -> int:
        return int(self.key.size)

    @property
    def key_per_pulse(self) -> float:
        """Secret bits per pulse sent."""
        return self.key_length / self.n_pulses if self.n_pulses else 0.0

    @property
    def key_rate_bps(self) -> float:
        """Secret bits per second of the pulses' time (bits/s)."""
        span = (self.pulses_end_ns - self.start_ns) * 1e-9
        return self.key_length / span if span > 0 else 0.0


class _Parts:
    """The parts of one chunked message as they arrive (in order, per sender: FIFO)."""

    __slots__ = ("msgs",)

    def __init__(self) -> None:
        self.msgs: list = []

    def add(self, msg: Any) -> list | None:
        """Keep ``msg``; all parts once its last came, else None."""
        if msg.part != len(self.msgs):
            raise QKDError(ErrorCode.OUT_OF_RANGE, f"part {msg.part} where {len(self.msgs)} was due")
        self.msgs.append(msg)
        if not msg.last:
            return None
        out, self.msgs = self.msgs, []
        return out


class _Block:
    """One block at one end."""

    def __init__(self, role: str, peer: str, block_id: int, start: QkdStart, request_id: int) -> None:
        self.role = role
        self.peer = peer
        self.block_id = block_id
        self.start = start
        self.phase = Phase.PULSES
        self.settings: DecoySettings | None = None      # the link's classes, from the record
        self.result = QkdResult(False, role, peer, block_id, request_id, n_pulses=start.pulses)
        self.record: PulseRecord | None = None
        self.parts: dict[type, _Parts] = {}
        self.early: list = []                 # messages that came before the record
        # sifting
        self.det_index: list[np.ndarray] = []
        self.det_basis: list[np.ndarray] = []
        self.sifted: Any = None               # (index, basis, cls, bits) arrays of this end
        self.key_bits: np.ndarray | None = None
        self.test_mask: np.ndarray | None = None
        self.cascade_alice: CascadeAlice | None = None
        self.cascade_bob: CascadeBob | None = None
        self.rounds = 0
        self.estimate: FiniteKeyEstimate | None = None
        self.corrected: np.ndarray | None = None
        self.ell = 0

    def move(self, cause: str) -> None:
        self.phase = TRANSITIONS.next(self.phase, cause)

    def parts_of(self, cls: type) -> _Parts:
        p = self.parts.get(cls)
        if p is None:
            p = self.parts[cls] = _Parts()
        return p


def _pack(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def _unpack(data: bytes, count: int) -> np.ndarray:
    out = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count)
    if out.size != count:
        raise QKDError(ErrorCode.BAD_FIELD, f"{len(data)} bytes hold fewer than {count} bits")
    return out


def _u32(data: bytes, count: int, name: str) -> np.ndarray:
    if len(data) != 4 * count:
        raise QKDError(ErrorCode.BAD_FIELD, f"{name}: {len(data)} bytes for {count} uint32")
    return np.frombuffer(data, dtype="<u4").astype(np.int64)


class QkdProtocol(Protocol):
    """Decoy-state BB84 with neighbours (``app.qkd``), one per node.

    ``seed``: this node's random choices (Cascade's permutation seed, the
    hash seeds) come from a generator seeded with (seed, crc32(node)).
    """

    name = PROTOCOL
    BESIDE = True      # beside the socket stack: it delivers to the applications directly

    def __init__(self, node: str, seed: int = 1) -> None:
        super().__init__(node)
        self.rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(node.encode())])
        self.blocks: dict[tuple[str, int], _Block] = {}   # (Alice, block id) -> block
        self._next_block = 0
        self.results: list[QkdResult] = []

    # ------------------------------------------------------------ helpers
    def _send(self, b: _Block, msg: Any, out: list) -> None:
        b.result.messages += 1
        out.append(SendMessage(b.peer, msg))

    def _key(self, b: _Block) -> tuple[str, int]:
        return (self.node if b.role == "send" else b.peer, b.block_id)

    def _finish(self, b: _Block, now_ns: int, out: list) -> None:
        b.result.end_ns = now_ns
        self.blocks.pop(self._key(b), None)
        self.results.append(b.result)
        out.append(Deliver(b.result))

    def _abort(self, b: _Block, reason: str, now_ns: int, out: list, tell: bool = True,
               code: ErrorCode = ErrorCode.APP_ABORTED, detail: str = "") -> None:
        if b.phase in (Phase.DONE, Phase.ABORTED):
            return
        b.move("abort")
        b.result.ok = False
        b.result.reason = reason + (f": {detail}" if detail else "")
        b.result.code = code
        b.result.key = np.zeros(0, np.uint8)
        if tell:
            self._send(b, QkdAbort(b.block_id, int(code), reason[:256]), out)
        self._finish(b, now_ns, out)

    def _block_for(self, src: str, block_id: int, out: list) -> _Block | None:
        b = self.blocks.get((src, block_id)) or self.blocks.get((self.node, block_id))
        if b is None or b.peer != src:
            out.append(Fail(ErrorCode.UNEXPECTED_EVENT,
                            f"app.qkd on {self.node}: a message for block {block_id} from {src}, "
                            "which has no such block with it"))
            return None
        return b

    # ------------------------------------------------------------ start
    @on(QkdRequest)
    def _request(self, req: QkdRequest, now_ns: int) -> list:
        out: list = []
        if req.cascade_variant not in VARIANTS or isinstance(req.pulses, bool) \
                or not isinstance(req.pulses, (int, np.integer)) or req.pulses < 1:
            bad = QkdResult(False, "send", req.peer, 0, req.request_id, reason="bad request",
                            code=ErrorCode.BAD_FIELD)
            bad.reason = (f"bad request: cascade_variant {req.cascade_variant!r} (one of "
                          f"{VARIANTS})" if req.cascade_variant not in VARIANTS else
                          f"bad request: pulses={req.pulses!r}, expected an integer >= 1")
            return [Deliver(bad)]
        self._next_block += 1
        bid = self._next_block
        start = QkdStart(bid, int(req.pulses), req.key_basis, req.finite, req.eps_sec,
                         req.eps_cor, req.qber_max, req.phase_error_max, req.cascade_variant)
        b = _Block("send", req.peer, bid, start, req.request_id)
        b.result.start_ns = now_ns
        self.blocks[(self.node, bid)] = b
        out.append(self.start_op(PulseBlock(req.peer, ("qkd", self.node, bid), int(req.pulses), "send"),
                                 (self.node, bid)))
        self._send(b, start, out)
        return out

    @on_message(QkdStart)
    def _on_start(self, src: str, m: QkdStart, now_ns: int) -> list:
        out: list = []
        if (src, m.block_id) in self.blocks:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"block {m.block_id} of {src} started twice")]
        b = _Block("receive", src, m.block_id, m, 0)
        b.result.start_ns = now_ns
        self.blocks[(src, m.block_id)] = b
        if m.cascade_variant not in VARIANTS:
            self._abort(b, "bad request", now_ns, out, code=ErrorCode.BAD_FIELD,
                        detail=f"cascade_variant {m.cascade_variant!r} (one of {VARIANTS})")
            return out
        out.append(self.start_op(PulseBlock(src, ("qkd", src, m.block_id), m.pulses, "receive"),
                                 (src, m.block_id)))
        return out

    @on(OperationDone)
    def _record(self, ev: OperationDone, now_ns: int) -> list:
        key = self.take_op(ev.op_id)
        b = self.blocks.get(key) if key is not None else None
        if b is None:
            return []
        out: list = []
        rec = ev.outcome
        if not isinstance(rec, PulseRecord) or not rec.ok:
            self._abort(b, "no pulses", now_ns, out, detail=getattr(rec, "reason", repr(rec)))
            return out
        try:
            b.settings = DecoySettings(tuple(rec.intensities), tuple(rec.class_probs))
        except QKDError as exc:
            self._abort(b, "bad settings", now_ns, out, code=exc.code,
                        detail=f"the link's intensity classes: {exc.detail}")
            return out
        b.record = rec
        b.result.pulses_end_ns = now_ns
        b.result.start_ns = min(b.result.start_ns, rec.start_ns) if b.result.start_ns else rec.start_ns
        b.move("record")
        if b.role == "send":
            b.result.sent_per_class = tuple(rec.sent_per_class)
        else:
            self._send_detections(b, rec, out)
        for src, msg in b.early:
            out.extend(self.handle_message(src, msg, now_ns) or [])
        b.early = []
        return out

    def handle_message(self, src: str, msg: Any, now_ns: int) -> list:
        from qstack.core.protocol import MessageReceived
        return self.handle(MessageReceived(src, msg), now_ns)

    # ------------------------------------------------------------ sifting
    def _send_detections(self, b: _Block, rec: PulseRecord, out: list) -> None:
        idx = np.asarray(rec.index, dtype=np.int64)
        bas = np.asarray(rec.basis, dtype=np.uint8)
        n = idx.size
        starts = list(range(0, n, PART_ITEMS)) or [0]
        parts = []
        for s in starts:
            seg = idx[s:s + PART_ITEMS]
            gaps = np.diff(seg)
            if gaps.size and gaps.max() > 0xFFFFFFFF:      # a gap beyond uint32: cut the part there
                cut = int(np.argmax(gaps > 0xFFFFFFFF)) + 1
                parts += [(s, s + cut), (s + cut, min(n, s + PART_ITEMS))]
            else:
                parts.append((s, min(n, s + PART_ITEMS)))
        # (a second oversized gap inside a split part is impossible for n <= 2^62 pulses? not
        # guaranteed: split again until every part's gaps fit)
        fixed = []
        while parts:
            s, e = parts.pop(0)
            g = np.diff(idx[s:e])
            if g.size and g.max() > 0xFFFFFFFF:
                cut = s + int(np.argmax(g > 0xFFFFFFFF)) + 1
                parts[:0] = [(s, cut), (cut, e)]
            else:
                fixed.append((s, e))
        for i, (s, e) in enumerate(fixed):
            seg = idx[s:e]
            self._send(b, SiftDetections(b.block_id, i, i == len(fixed) - 1, int(e - s),
                                         int(seg[0]) if seg.size else 0,
                                         np.diff(seg).astype("<u4").tobytes(), _pack(bas[s:e])), out)
        b.result.leaks.test_bits = 0

    @on_message(SiftDetections)
    def _on_detections(self, src: str, m: SiftDetections, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._early(b, src, m):
            return out
        try:
            if m.count:
                gaps = _u32(m.gaps, m.count - 1, "SiftDetections.gaps")
                b.det_index.append(m.first + np.concatenate(([0], np.cumsum(gaps))))
                b.det_basis.append(_unpack(m.bases, m.count))
            parts = b.parts_of(SiftDetections).add(m)
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        if parts is None:
            return out
        rec = b.record
        det_idx = np.concatenate(b.det_index) if b.det_index else np.zeros(0, np.int64)
        det_bas = np.concatenate(b.det_basis) if b.det_basis else np.zeros(0, np.uint8)
        pos = np.searchsorted(rec.index, det_idx)
        if det_idx.size and (pos.max() >= rec.index.size or np.any(rec.index[pos] != det_idx)):
            self._abort(b, "sifting failed", now_ns, out,
                        detail="Bob names pulses without a click in Alice's record")
            return out
        a_bas = np.asarray(rec.basis)[pos]
        a_cls = np.asarray(rec.cls)[pos]
        # the settings travel with the first part of Alice's bases (below): Bob needs them
        # only from here on
        lo = 0
        for p in parts:
            hi = lo + p.count
            self._send(b, SiftBases(b.block_id, p.part, p.last, p.count, _pack(a_bas[lo:hi]),
                                    a_cls[lo:hi].astype(np.uint8).tobytes()), out)
            lo = hi
        keep = a_bas == det_bas
        b.sifted = (det_idx[keep], a_bas[keep], a_cls[keep], np.asarray(rec.bit)[pos][keep])
        b.det_index, b.det_basis = [], []
        b.move("sifted")
        return out

    @on_message(SiftBases)
    def _on_bases(self, src: str, m: SiftBases, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._early(b, src, m):
            return out
        try:
            b.det_basis.append(_unpack(m.bases, m.count))
            cls = np.frombuffer(m.classes, dtype=np.uint8)
            if cls.size != m.count:
                raise QKDError(ErrorCode.BAD_FIELD, f"{cls.size} classes for {m.count} clicks")
            b.det_index.append(cls)
            parts = b.parts_of(SiftBases).add(m)
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        if parts is None:
            return out
        rec = b.record
        a_bas = np.concatenate(b.det_basis) if b.det_basis else np.zeros(0, np.uint8)
        a_cls = np.concatenate(b.det_index) if b.det_index else np.zeros(0, np.uint8)
        b.det_index, b.det_basis = [], []
        idx = np.asarray(rec.index, dtype=np.int64)
        if a_bas.size != idx.size:
            self._abort(b, "sifting failed", now_ns, out,
                        detail=f"{a_bas.size} bases for {idx.size} clicks")
            return out
        K = len(b.settings.mus)
        if a_cls.size and int(a_cls.max()) >= K:
            self._abort(b, "sifting failed", now_ns, out, detail="an intensity class out of range")
            return out
        keep = a_bas == np.asarray(rec.basis)
        bits = np.asarray(rec.bit)[keep].astype(np.uint8)
        b.sifted = (idx[keep], a_bas[keep], a_cls[keep], bits)
        b.move("sifted")
        tb = 1 - b.start.key_basis
        tmask = b.sifted[1] == tb
        tbits = bits[tmask]
        chunk = 32 * PART_ITEMS
        starts = list(range(0, tbits.size, chunk)) or [0]
        for i, s in enumerate(starts):
            seg = tbits[s:s + chunk]
            self._send(b, TestBits(b.block_id, i, i == len(starts) - 1, int(seg.size), _pack(seg)), out)
        return out

    # ------------------------------------------------------------ estimation
    def _counts(self, b: _Block) -> tuple[np.ndarray, np.ndarray]:
        idx, bas, cls, bits = b.sifted
        K = len(b.settings.mus)
        kb = b.start.key_basis
        n_key = np.bincount(cls[bas == kb], minlength=K)[:K]
        n_test = np.bincount(cls[bas != kb], minlength=K)[:K]
        return n_key, n_test

    def _estimate(self, b: _Block, errors: tuple[int, ...]) -> str | None:
        """Fill the result's counts and the estimate; the abort reason, if any."""
        n_key, n_test = self._counts(b)
        r = b.result
        r.sifted = int(b.sifted[0].size)
        r.n_key = tuple(int(c) for c in n_key)
        r.n_test = tuple(int(c) for c in n_test)
        r.m_test = tuple(int(e) for e in errors)
        r.leaks.test_bits = int(sum(r.n_test))
        r.qber_test = sum(r.m_test) / max(1, sum(r.n_test))
        r.qber_test_per_class = tuple(m / n if n else math.nan for m, n in zip(r.m_test, r.n_test))
        s = b.start
        if sum(r.n_key) == 0:
            return "no sifted key"
        if r.qber_test > s.qber_max:
            return "QBER too high"
        b.estimate = r.estimate = lim_estimate(r.n_key, r.n_test, r.m_test, b.settings, s.eps_sec,
                                               s.eps_cor, s.finite)
        if b.estimate.phase_error > s.phase_error_max:
            return "phase error too high"
        return None

    def _detail(self, b: _Block, reason: str) -> str:
        r = b.result
        if reason == "QBER too high":
            return f"test-basis QBER {r.qber_test:.4f} > {b.start.qber_max}"
        if reason == "phase error too high":
            return f"phase-error bound {b.estimate.phase_error:.4f} > {b.start.phase_error_max}"
        return "no key-basis event survived sifting"

    @on_message(TestBits)
    def _on_test_bits(self, src: str, m: TestBits, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._early(b, src, m):
            return out
        try:
            b.det_basis.append(_unpack(m.bits, m.count))
            parts = b.parts_of(TestBits).add(m)
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        if parts is None:
            return out
        bob_bits = np.concatenate(b.det_basis) if b.det_basis else np.zeros(0, np.uint8)
        b.det_basis = []
        idx, bas, cls, bits = b.sifted
        tmask = bas != b.start.key_basis
        if bob_bits.size != int(tmask.sum()):
            self._abort(b, "bad message", now_ns, out, code=ErrorCode.BAD_FIELD,
                        detail=f"{bob_bits.size} test bits for {int(tmask.sum())} test events")
            return out
        wrong = bits[tmask] != bob_bits
        K = len(b.settings.mus)
        errors = tuple(int(c) for c in np.bincount(cls[tmask][wrong], minlength=K)[:K])
        reason = self._estimate(b, errors)
        if reason is not None:
            self._abort(b, reason, now_ns, out, detail=self._detail(b, reason))
            return out
        b.move("estimated")
        kmask = ~tmask
        b.key_bits = bits[kmask]
        b.cascade_alice = CascadeAlice(b.key_bits)
        self._send(b, TestErrors(b.block_id, errors), out)
        return out

    @on_message(TestErrors)
    def _on_test_errors(self, src: str, m: TestErrors, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._phase(b, Phase.ESTIMATING, m, out):
            return out
        if len(m.errors) != len(b.settings.mus):
            self._abort(b, "bad message", now_ns, out, code=ErrorCode.BAD_FIELD,
                        detail=f"{len(m.errors)} error counts for {len(b.settings.mus)} classes")
            return out
        try:
            reason = self._estimate(b, tuple(m.errors))
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        if reason is not None:       # Alice would have aborted: she and Bob disagree
            self._abort(b, reason, now_ns, out, detail=self._detail(b, reason))
            return out
        b.move("estimated")
        idx, bas, cls, bits = b.sifted
        b.key_bits = bits[bas == b.start.key_basis]
        seed = int(self.rng.integers(0, 2 ** 63))
        ec = b.cascade_bob = CascadeBob(b.key_bits, max(b.result.qber_test, 1e-3), seed,
                                        b.start.cascade_variant)
        st = ec.start()
        self._send(b, CascadeStart(b.block_id, st.n, tuple(int(k) for k in st.sizes), st.seed), out)
        self._next_query(b, now_ns, out)
        return out

    # ------------------------------------------------------------ Cascade
    def _next_query(self, b: _Block, now_ns: int, out: list) -> None:
        ec = b.cascade_bob
        q = ec.next_query()
        if q is None:
            b.corrected = ec.key()
            r = b.result
            n = int(b.key_bits.size)
            r.leaks.error_correction = int(ec.leaked)
            r.qber_key = int(ec.core.flips) / n
            r.cascade_rounds = b.rounds
            r.cascade_efficiency = efficiency(ec.leaked, n, r.qber_key)
            b.move("corrected")
            self._send(b, CascadeDone(b.block_id, b.rounds), out)
            return
        b.rounds += 1
        ps = np.asarray(q.passes, dtype=np.uint8)
        s = np.asarray(q.starts).astype("<u4")
        e = np.asarray(q.ends).astype("<u4")
        starts = list(range(0, ps.size, PART_ITEMS)) or [0]
        for i, lo in enumerate(starts):
            hi = lo + PART_ITEMS
            self._send(b, ParityQuery(b.block_id, q.round, i, i == len(starts) - 1,
                                      int(ps[lo:hi].size), ps[lo:hi].tobytes(), s[lo:hi].tobytes(),
                                      e[lo:hi].tobytes()), out)

    @on_message(CascadeStart)
    def _on_cascade_start(self, src: str, m: CascadeStart, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._phase(b, Phase.CORRECTING, m, out):
            return out
        try:
            b.cascade_alice.on_start(_CStart(m.n, tuple(m.sizes), m.seed))
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
        return out

    @on_message(ParityQuery)
    def _on_query(self, src: str, m: ParityQuery, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._phase(b, Phase.CORRECTING, m, out):
            return out
        try:
            ps = np.frombuffer(m.passes, dtype=np.uint8)
            if ps.size != m.count:
                raise QKDError(ErrorCode.BAD_FIELD, f"{ps.size} passes for {m.count} blocks")
            b.det_basis.append(ps.astype(np.int64))
            b.det_index.append(np.stack([_u32(m.starts, m.count, "ParityQuery.starts"),
                                         _u32(m.ends, m.count, "ParityQuery.ends")]))
            parts = b.parts_of(ParityQuery).add(m)
            if parts is None:
                return out
            ps = np.concatenate(b.det_basis)
            se = np.concatenate(b.det_index, axis=1)
            b.det_basis, b.det_index = [], []
            reply = b.cascade_alice.on_query(_PQuery(m.round, ps, se[0], se[1]))
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        self._send(b, ParityReply(b.block_id, m.round, int(reply.parities.size),
                                  _pack(reply.parities)), out)
        return out

    @on_message(ParityReply)
    def _on_reply(self, src: str, m: ParityReply, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._phase(b, Phase.CORRECTING, m, out):
            return out
        try:
            b.cascade_bob.on_reply(_PReply(m.round, _unpack(m.parities, m.count)))
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        self._next_query(b, now_ns, out)
        return out

    @on_message(CascadeDone)
    def _on_cascade_done(self, src: str, m: CascadeDone, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._phase(b, Phase.CORRECTING, m, out):
            return out
        r = b.result
        r.leaks.error_correction = int(b.cascade_alice.disclosed)
        r.cascade_rounds = int(m.rounds)
        b.move("corrected")
        tag = make_tag(b.key_bits, b.start.eps_cor, self.rng)
        r.leaks.verification = tag.tag_bits
        seed = tag.seed
        step = 1 << 19
        starts = list(range(0, len(seed), step)) or [0]
        for i, lo in enumerate(starts):
            last = i == len(starts) - 1
            self._send(b, VerifyTag(b.block_id, i, last, tag.n_bits, tag.tag_bits,
                                    seed[lo:lo + step], tag.tag if last else b""), out)
        return out

    @on_message(VerifyTag)
    def _on_tag(self, src: str, m: VerifyTag, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._phase(b, Phase.VERIFYING, m, out):
            return out
        try:
            parts = b.parts_of(VerifyTag).add(m)
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        if parts is None:
            return out
        tag = _VTag(m.n_bits, m.tag_bits, b"".join(p.seed for p in parts), m.tag)
        b.result.leaks.verification = m.tag_bits
        try:
            ok = check_tag(b.corrected, tag).ok
        except (QKDError, ValueError):
            ok = False
        self._send(b, VerifyResult(b.block_id, ok), out)
        if not ok:
            self._abort(b, "verification failed", now_ns, out, tell=False,
                        detail="the corrected keys' hashes differ")
            return out
        b.move("verified")
        b.ell = self._length(b)
        return out

    def _length(self, b: _Block) -> int:
        s = b.start
        if s.finite:
            b.result.leaks.finite_size = 6 * math.log2(21 / s.eps_sec) + math.log2(2 / s.eps_cor)
        return lim_key_length(b.estimate, b.result.leaks.error_correction)

    @on_message(VerifyResult)
    def _on_verify_result(self, src: str, m: VerifyResult, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._phase(b, Phase.VERIFYING, m, out):
            return out
        if not m.ok:
            self._abort(b, "verification failed", now_ns, out, tell=False,
                        detail="the corrected keys' hashes differ")
            return out
        b.move("verified")
        ell = b.ell = self._length(b)
        if ell <= 0:
            self._abort(b, "no secret key", now_ns, out,
                        detail="the estimate leaves a key length of 0 bits")
            return out
        n = int(b.key_bits.size)
        sm = toeplitz_seed(n, ell, self.rng)
        step = 1 << 19
        starts = list(range(0, len(sm.seed), step)) or [0]
        for i, lo in enumerate(starts):
            self._send(b, AmplifySeed(b.block_id, i, i == len(starts) - 1, n, ell,
                                      sm.seed[lo:lo + step]), out)
        b.result.key = amplify(b.key_bits, sm)
        b.result.ok = True
        b.move("amplified")
        self._finish(b, now_ns, out)
        return out

    @on_message(AmplifySeed)
    def _on_seed(self, src: str, m: AmplifySeed, now_ns: int) -> list:
        out: list = []
        b = self._block_for(src, m.block_id, out)
        if b is None or self._phase(b, Phase.AMPLIFYING, m, out):
            return out
        try:
            parts = b.parts_of(AmplifySeed).add(m)
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        if parts is None:
            return out
        if m.n_out != b.ell or m.n_in != b.corrected.size:
            self._abort(b, "bad message", now_ns, out, code=ErrorCode.BAD_FIELD,
                        detail=f"a seed for {m.n_in} -> {m.n_out} bits; this end has "
                               f"{b.corrected.size} -> {b.ell}")
            return out
        try:
            b.result.key = amplify(b.corrected, AmplificationSeed(m.n_in, m.n_out,
                                                                  b"".join(p.seed for p in parts)))
        except QKDError as exc:
            self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)
            return out
        b.result.ok = True
        b.move("amplified")
        self._finish(b, now_ns, out)
        return out

    @on_message(QkdAbort)
    def _on_abort(self, src: str, m: QkdAbort, now_ns: int) -> list:
        out: list = []
        b = self.blocks.get((src, m.block_id)) or self.blocks.get((self.node, m.block_id))
        if b is None or b.peer != src:
            return out          # (a block that already ended here)
        code = ErrorCode(m.code) if m.code in {c.value for c in ErrorCode} else ErrorCode.APP_ABORTED
        self._abort(b, m.reason, now_ns, out, tell=False, code=code, detail=f"{src} aborted")
        return out

    # ------------------------------------------------------------ faults
    @on(PeerDown, LinkDown)
    def _peer_down(self, ev: Any, now_ns: int) -> list:
        out: list = []
        for b in [b for b in self.blocks.values() if b.peer == ev.peer]:
            self._abort(b, "peer down" if isinstance(ev, PeerDown) else "link down", now_ns, out,
                        tell=False, code=ErrorCode.APP_ABORTED, detail=f"lost {ev.peer}")
        return out

    def _early(self, b: _Block, src: str, msg: Any) -> bool:
        """A message before this end's record (the driver answers both ends at
        the same instant, but the message may be processed first): kept for later."""
        if b.record is None:
            b.early.append((src, msg))
            return True
        return False

    def _phase(self, b: _Block, want: Phase, msg: Any, out: list) -> bool:
        """True (and a Fail) if ``msg`` is out of place in ``b``'s phase."""
        if b.phase is want:
            return False
        out.append(Fail(ErrorCode.UNEXPECTED_EVENT, f"app.qkd on {self.node}: "
                        f"{type(msg).__name__} for block {b.block_id} in phase {b.phase.name}"))
        return True

