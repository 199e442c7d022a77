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
    Deliver, Fail, LinkDown, MessageReceived, OperationDone, PeerDown, Protocol, SendMessage, on,
    on_message,
)
from qstack.core.states import Transitions
from qstack.physical.ops import PulseBlock, PulseRecord

from ._common import QKDError
from .amplification import AmplificationSeed, amplify, toeplitz_seed
from .cascade import VARIANTS, CascadeAlice, CascadeBob, efficiency
from .cascade import CascadeStart as _CStart
from .cascade import ParityQuery as _PQuery
from .cascade import ParityReply as _PReply
from .estimation import (
    ONE_DECOY, DecoySettings, FiniteKeyEstimate, estimate, finite_size_bits, key_length,
)
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
    ``request_id``: the caller's tag, echoed in the result; ``decoys``: 1
    (one-decoy, Rusca et al. 2018: the link must have two intensity classes),
    2 (vacuum + weak decoy, Lim et al. 2014: three classes) or 0 (whichever
    the link's classes give)."""

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
    decoys: int = 0


@dataclass
class QkdResult:
    """One end's outcome of a block (delivered to the applications).

    ``key``: the final key (uint8 bits; identical at both ends), empty on
    abort, when ``reason`` and ``code`` say why. ``qber_test_per_class``:
    test-basis QBER per intensity class; ``qber_key``: the key basis' QBER as
    Cascade found it (Bob; Alice learns it only as leaked parities);
    ``estimate``: Lim et al.'s (Rusca et al.'s) bounds, ``estimate.method`` which; ``leaks``: bits disclosed per step;
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
    """The decoded parts of one chunked message as they arrive (in order: the
    classical channel keeps order per pair of nodes)."""

    __slots__ = ("pieces",)

    def __init__(self) -> None:
        self.pieces: list = []

    def add(self, part: int, last: bool, piece: Any) -> list | None:
        """Keep ``piece``; every piece once the last part came, else None."""
        if part != len(self.pieces):
            raise QKDError(ErrorCode.OUT_OF_RANGE, f"part {part} where {len(self.pieces)} was due")
        self.pieces.append(piece)
        if not last:
            return None
        out, self.pieces = self.pieces, []
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
        self.sifted: Any = None               # (index, basis, cls, bits) arrays of this end
        self.key_bits: np.ndarray | None = None
        self.cascade_alice: CascadeAlice | None = None
        self.cascade_bob: CascadeBob | None = None
        self.rounds = 0
        self.estimate: FiniteKeyEstimate | None = None
        self.corrected: np.ndarray | None = None
        self.ell = 0
        self.decoys = 0                        # what Alice's application asked for (0: any)

    def move(self, cause: str) -> None:
        self.phase = TRANSITIONS.next(self.phase, cause)

    def parts_of(self, cls: type) -> _Parts:
        p = self.parts.get(cls)
        if p is None:
            p = self.parts[cls] = _Parts()
        return p

    def concat(self, pieces: list, dtype: Any) -> np.ndarray:
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype)


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


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    """[lo, hi) slices of at most ``step`` items covering n items (one empty slice for 0)."""
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)] or [(0, 0)]


_SEED_BYTES = 1 << 19      # a Toeplitz seed travels in parts of 512 KiB

#: message type -> (the role that receives it, the phase it belongs to)
_RECEIVER: dict[type, tuple[str, Phase]] = {
    SiftDetections: ("send", Phase.SIFTING), SiftBases: ("receive", Phase.SIFTING),
    TestBits: ("send", Phase.ESTIMATING), TestErrors: ("receive", Phase.ESTIMATING),
    CascadeStart: ("send", Phase.CORRECTING), ParityQuery: ("send", Phase.CORRECTING),
    CascadeDone: ("send", Phase.CORRECTING), ParityReply: ("receive", Phase.CORRECTING),
    VerifyTag: ("receive", Phase.VERIFYING), VerifyResult: ("send", Phase.VERIFYING),
    AmplifySeed: ("receive", Phase.AMPLIFYING),
}


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

    def _bad(self, b: _Block, exc: QKDError, now_ns: int, out: list) -> None:
        """A message this end cannot use: the block aborts with the message's error code."""
        self._abort(b, "bad message", now_ns, out, code=exc.code, detail=exc.detail)

    def _open(self, src: str, m: Any, out: list) -> _Block | None:
        """The block message ``m`` from ``src`` is for, if it may take it now: a
        message goes to one role in one phase (:data:`_RECEIVER`); anything
        else is a ``Fail`` and changes nothing. Bob's clicks may overtake
        Alice's own record (the driver answers both ends at one instant):
        they are kept until it comes."""
        role, phase = _RECEIVER[type(m)]
        b = self.blocks.get((src, m.block_id)) or self.blocks.get((self.node, m.block_id))
        if b is None or b.peer != src:
            out.append(Fail(ErrorCode.UNEXPECTED_EVENT,
                            f"app.qkd on {self.node}: {type(m).__name__} for block {m.block_id} "
                            f"from {src}, which has no such block with it"))
            return None
        if b.role == role and b.phase is Phase.PULSES and phase is Phase.SIFTING:
            b.early.append((src, m))
            return None
        if b.role != role or b.phase is not phase:
            out.append(Fail(ErrorCode.UNEXPECTED_EVENT, f"app.qkd on {self.node}: "
                            f"{type(m).__name__} for block {b.block_id} at the "
                            f"{'sender' if b.role == 'send' else 'receiver'} in phase "
                            f"{b.phase.name}"))
            return None
        return b

    def _gather(self, b: _Block, m: Any, decode: Any, now_ns: int, out: list) -> list | None:
        """Decode part ``m`` and keep it: every part's piece once the last came;
        None until then (or when the part was bad: the block aborted)."""
        try:
            return b.parts_of(type(m)).add(m.part, m.last, decode(m))
        except QKDError as exc:
            self._bad(b, exc, now_ns, out)
            return None

    # ------------------------------------------------------------ start
    @on(QkdRequest)
    def _request(self, req: QkdRequest, now_ns: int) -> list:
        if req.cascade_variant not in VARIANTS or isinstance(req.pulses, bool) \
                or not isinstance(req.pulses, (int, np.integer)) or req.pulses < 1 \
                or req.decoys not in (0, 1, 2):
            why = (f"bad request: cascade_variant {req.cascade_variant!r} (one of {VARIANTS})"
                   if req.cascade_variant not in VARIANTS else
                   f"bad request: decoys={req.decoys!r}, expected 1, 2 or 0 (the link's)"
                   if req.decoys not in (0, 1, 2) else
                   f"bad request: pulses={req.pulses!r}, expected an integer >= 1")
            return [Deliver(QkdResult(False, "send", req.peer, 0, req.request_id, reason=why,
                                      code=ErrorCode.BAD_FIELD))]
        out: list = []
        self._next_block += 1
        bid = self._next_block
        start = QkdStart(bid, int(req.pulses), req.key_basis, req.finite, req.eps_sec,
                         req.eps_cor, req.qber_max, req.phase_error_max, req.cascade_variant)
        b = _Block("send", req.peer, bid, start, req.request_id)
        b.decoys = req.decoys
        b.result.start_ns = now_ns
        self.blocks[(self.node, bid)] = b
        out.append(self.start_op(PulseBlock(req.peer, ("qkd", self.node, bid), int(req.pulses),
                                            "send"), (self.node, bid)))
        self._send(b, start, out)
        return out

    @on_message(QkdStart)
    def _on_start(self, src: str, m: QkdStart, now_ns: int) -> list:
        if (src, m.block_id) in self.blocks:
            return [Fail(ErrorCode.UNEXPECTED_EVENT, f"block {m.block_id} of {src} started twice")]
        out: list = []
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
        if b.decoys and len(b.settings.mus) != b.decoys + 1:
            self._abort(b, "bad settings", now_ns, out, code=ErrorCode.BAD_FIELD,
                        detail=f"{b.decoys} decoy(s) asked, but the link has "
                               f"{len(b.settings.mus)} intensity classes (one-decoy needs 2: "
                               "signal, decoy; two-decoy 3: signal, decoy, vacuum)")
            return out
        b.record = rec
        b.result.pulses_end_ns = now_ns
        b.result.start_ns = rec.start_ns
        b.move("record")
        if b.role == "send":
            b.result.sent_per_class = tuple(rec.sent_per_class)
        else:
            self._send_detections(b, rec, out)
        early, b.early = b.early, []
        for src, msg in early:
            out.extend(self.handle(MessageReceived(src, msg), now_ns) or [])
        return out

    # ------------------------------------------------------------ sifting
    def _send_detections(self, b: _Block, rec: PulseRecord, out: list) -> None:
        idx = np.asarray(rec.index, dtype=np.int64)
        bas = np.asarray(rec.basis, dtype=np.uint8)
        n = idx.size
        # parts of at most PART_ITEMS clicks, cut also after any gap a uint32 cannot hold
        big = (np.flatnonzero(np.diff(idx) > 0xFFFFFFFF) + 1).tolist()
        cuts = sorted(set(range(0, n, PART_ITEMS)) | set(big)) + [n]
        spans = list(zip(cuts[:-1], cuts[1:])) or [(0, 0)]
        for i, (lo, hi) in enumerate(spans):
            seg = idx[lo:hi]
            self._send(b, SiftDetections(b.block_id, i, i == len(spans) - 1, int(hi - lo),
                                         int(seg[0]) if seg.size else 0,
                                         np.diff(seg).astype("<u4").tobytes(), _pack(bas[lo:hi])),
                       out)

    @staticmethod
    def _detections(m: SiftDetections) -> tuple[np.ndarray, np.ndarray]:
        if not m.count:
            return np.zeros(0, np.int64), np.zeros(0, np.uint8)
        gaps = _u32(m.gaps, m.count - 1, "SiftDetections.gaps")
        return m.first + np.concatenate(([0], np.cumsum(gaps))), _unpack(m.bases, m.count)

    @on_message(SiftDetections)
    def _on_detections(self, src: str, m: SiftDetections, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        pieces = b and self._gather(b, m, self._detections, now_ns, out)
        if not pieces:
            return out
        rec = b.record
        det_idx = b.concat([p[0] for p in pieces], np.int64)
        det_bas = b.concat([p[1] for p in pieces], np.uint8)
        pos = np.searchsorted(rec.index, det_idx)
        if det_idx.size and (pos.max() >= rec.index.size or np.any(rec.index[pos] != det_idx)):
            self._abort(b, "sifting failed", now_ns, out,
                        detail="Bob names pulses without a click in Alice's record")
            return out
        a_bas = np.asarray(rec.basis)[pos]
        a_cls = np.asarray(rec.cls)[pos]
        lo = 0
        for i, p in enumerate(pieces):
            hi = lo + p[0].size
            self._send(b, SiftBases(b.block_id, i, i == len(pieces) - 1, int(hi - lo),
                                    _pack(a_bas[lo:hi]), a_cls[lo:hi].astype(np.uint8).tobytes()),
                       out)
            lo = hi
        keep = a_bas == det_bas
        b.sifted = (det_idx[keep], a_bas[keep], a_cls[keep], np.asarray(rec.bit)[pos][keep])
        b.move("sifted")
        return out

    @staticmethod
    def _bases(m: SiftBases) -> tuple[np.ndarray, np.ndarray]:
        cls = np.frombuffer(m.classes, dtype=np.uint8)
        if cls.size != m.count:
            raise QKDError(ErrorCode.BAD_FIELD, f"{cls.size} classes for {m.count} clicks")
        return _unpack(m.bases, m.count), cls

    @on_message(SiftBases)
    def _on_bases(self, src: str, m: SiftBases, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        pieces = b and self._gather(b, m, self._bases, now_ns, out)
        if not pieces:
            return out
        rec = b.record
        a_bas = b.concat([p[0] for p in pieces], np.uint8)
        a_cls = b.concat([p[1] for p in pieces], np.uint8)
        idx = np.asarray(rec.index, dtype=np.int64)
        if a_bas.size != idx.size or (a_cls.size and int(a_cls.max()) >= len(b.settings.mus)):
            self._abort(b, "sifting failed", now_ns, out,
                        detail=f"{a_bas.size} bases for {idx.size} clicks, or a class out of range")
            return out
        keep = a_bas == np.asarray(rec.basis)
        bits = np.asarray(rec.bit)[keep].astype(np.uint8)
        b.sifted = (idx[keep], a_bas[keep], a_cls[keep], bits)
        b.move("sifted")
        tbits = bits[b.sifted[1] != b.start.key_basis]
        spans = _spans(tbits.size, 32 * PART_ITEMS)
        for i, (lo, hi) in enumerate(spans):
            self._send(b, TestBits(b.block_id, i, i == len(spans) - 1, int(hi - lo),
                                   _pack(tbits[lo:hi])), out)
        return out

    # ------------------------------------------------------------ estimation
    def _estimate(self, b: _Block, errors: tuple[int, ...]) -> str | None:
        """Fill the result's counts and the estimate; the abort reason and its detail, if any."""
        idx, bas, cls, bits = b.sifted
        K = len(b.settings.mus)
        kb = b.start.key_basis
        r = b.result
        r.sifted = int(idx.size)
        r.n_key = tuple(int(c) for c in np.bincount(cls[bas == kb], minlength=K)[:K])
        r.n_test = tuple(int(c) for c in np.bincount(cls[bas != kb], minlength=K)[:K])
        r.m_test = tuple(int(e) for e in errors)
        r.leaks.test_bits = int(sum(r.n_test))
        r.qber_test = sum(r.m_test) / max(1, sum(r.n_test))
        r.qber_test_per_class = tuple(m / n if n else math.nan for m, n in zip(r.m_test, r.n_test))
        s = b.start
        if sum(r.n_key) == 0:
            return "no sifted key: no key-basis event survived sifting"
        if r.qber_test > s.qber_max:
            return f"QBER too high: test-basis QBER {r.qber_test:.4f} > {s.qber_max}"
        if b.settings.method == ONE_DECOY:
            return None         # its estimate needs the key basis' errors: after Cascade
        return self._bound(b)

    def _bound(self, b: _Block, m_key: tuple[int, ...] | None = None) -> str | None:
        """The decoy estimate (the one-decoy one with the key basis' errors per
        class); the abort reason if its phase-error bound is too high."""
        r, s = b.result, b.start
        b.estimate = r.estimate = estimate(r.n_key, r.n_test, r.m_test, b.settings, s.eps_sec,
                                           s.eps_cor, s.finite, m_key)
        if b.estimate.phase_error > s.phase_error_max:
            return (f"phase error too high: phase-error bound {b.estimate.phase_error:.4f} > "
                    f"{s.phase_error_max}")
        return None

    def _stop(self, b: _Block, why: str, now_ns: int, out: list) -> None:
        reason, _, detail = why.partition(": ")
        self._abort(b, reason, now_ns, out, detail=detail)

    @on_message(TestBits)
    def _on_test_bits(self, src: str, m: TestBits, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        pieces = b and self._gather(b, m, lambda m: _unpack(m.bits, m.count), now_ns, out)
        if not pieces:
            return out
        bob_bits = b.concat(pieces, np.uint8)
        idx, bas, cls, bits = b.sifted
        tmask = bas != b.start.key_basis
        if bob_bits.size != int(tmask.sum()):
            self._bad(b, QKDError(ErrorCode.BAD_FIELD, f"{bob_bits.size} test bits for "
                                                       f"{int(tmask.sum())} test events"), now_ns, out)
            return out
        K = len(b.settings.mus)
        wrong = bits[tmask] != bob_bits
        errors = tuple(int(c) for c in np.bincount(cls[tmask][wrong], minlength=K)[:K])
        why = self._estimate(b, errors)
        if why is not None:
            self._stop(b, why, now_ns, out)
            return out
        b.move("estimated")
        b.key_bits = bits[~tmask]
        b.cascade_alice = CascadeAlice(b.key_bits)
        self._send(b, TestErrors(b.block_id, errors), out)
        return out

    @on_message(TestErrors)
    def _on_test_errors(self, src: str, m: TestErrors, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        if b is None:
            return out
        if len(m.errors) != len(b.settings.mus):
            self._bad(b, QKDError(ErrorCode.BAD_FIELD, f"{len(m.errors)} error counts for "
                                                       f"{len(b.settings.mus)} classes"), now_ns, out)
            return out
        try:
            why = self._estimate(b, tuple(m.errors))
        except QKDError as exc:
            self._bad(b, exc, now_ns, out)
            return out
        if why is not None:         # Alice would have aborted: the two ends disagree
            self._stop(b, why, now_ns, out)
            return out
        b.move("estimated")
        idx, bas, cls, bits = b.sifted
        b.key_bits = bits[bas == b.start.key_basis]
        # block sizes from the test basis' QBER (the key basis' is unknown until corrected)
        ec = b.cascade_bob = CascadeBob(b.key_bits, max(b.result.qber_test, 1e-3),
                                        int(self.rng.integers(0, 2 ** 63)), b.start.cascade_variant)
        st = ec.start()
        self._send(b, CascadeStart(b.block_id, st.n, tuple(int(k) for k in st.sizes), st.seed), out)
        self._next_query(b, out, now_ns)
        return out

    # ------------------------------------------------------------ Cascade
    @staticmethod
    def _key_errors(b: _Block) -> tuple[int, ...]:
        """Bob: the key-basis errors Cascade corrected, per intensity class."""
        idx, bas, cls, bits = b.sifted
        flips = b.corrected != b.key_bits
        K = len(b.settings.mus)
        return tuple(int(c) for c in np.bincount(cls[bas == b.start.key_basis][flips],
                                                 minlength=K)[:K])

    def _next_query(self, b: _Block, out: list, now_ns: int) -> None:
        ec = b.cascade_bob
        q = ec.next_query()
        if q is None:
            b.corrected = ec.key()
            r = b.result
            n = int(b.key_bits.size)
            r.leaks.error_correction = int(ec.leaked)
            r.qber_key = int(ec.core.flips) / n        # every flip corrected one error
            r.cascade_rounds = b.rounds
            r.cascade_efficiency = efficiency(ec.leaked, n, r.qber_key)
            m_key: tuple[int, ...] = ()
            if b.settings.method == ONE_DECOY:
                m_key = self._key_errors(b)
                why = self._bound(b, m_key)
                if why is not None:
                    self._stop(b, why, now_ns, out)
                    return
            b.move("corrected")
            self._send(b, CascadeDone(b.block_id, b.rounds, m_key), out)
            return
        b.rounds += 1
        ps = np.asarray(q.passes, dtype=np.uint8)
        s = np.asarray(q.starts).astype("<u4")
        e = np.asarray(q.ends).astype("<u4")
        spans = _spans(ps.size, PART_ITEMS)
        for i, (lo, hi) in enumerate(spans):
            self._send(b, ParityQuery(b.block_id, q.round, i, i == len(spans) - 1, int(hi - lo),
                                      ps[lo:hi].tobytes(), s[lo:hi].tobytes(), e[lo:hi].tobytes()),
                       out)

    @on_message(CascadeStart)
    def _on_cascade_start(self, src: str, m: CascadeStart, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        if b is not None:
            try:
                b.cascade_alice.on_start(_CStart(m.n, tuple(m.sizes), m.seed))
            except QKDError as exc:
                self._bad(b, exc, now_ns, out)
        return out

    @staticmethod
    def _query(m: ParityQuery) -> np.ndarray:
        ps = np.frombuffer(m.passes, dtype=np.uint8)
        if ps.size != m.count:
            raise QKDError(ErrorCode.BAD_FIELD, f"{ps.size} passes for {m.count} blocks")
        return np.stack([ps.astype(np.int64), _u32(m.starts, m.count, "ParityQuery.starts"),
                         _u32(m.ends, m.count, "ParityQuery.ends")])

    @on_message(ParityQuery)
    def _on_query(self, src: str, m: ParityQuery, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        pieces = b and self._gather(b, m, self._query, now_ns, out)
        if not pieces:
            return out
        q = np.concatenate(pieces, axis=1)
        try:
            reply = b.cascade_alice.on_query(_PQuery(m.round, q[0], q[1], q[2]))
        except QKDError as exc:
            self._bad(b, exc, now_ns, out)
            return out
        self._send(b, ParityReply(b.block_id, m.round, int(reply.parities.size),
                                  _pack(reply.parities)), out)
        return out

    @on_message(ParityReply)
    def _on_reply(self, src: str, m: ParityReply, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        if b is None:
            return out
        try:
            b.cascade_bob.on_reply(_PReply(m.round, _unpack(m.parities, m.count)))
        except QKDError as exc:
            self._bad(b, exc, now_ns, out)
            return out
        self._next_query(b, out, now_ns)
        return out

    # ------------------------------------------------------------ verification, amplification
    def _send_seed(self, b: _Block, seed: bytes, make: Any, out: list) -> None:
        """``seed`` in parts of 512 KiB, each message ``make(part, last, slice)``."""
        spans = _spans(len(seed), _SEED_BYTES)
        for i, (lo, hi) in enumerate(spans):
            self._send(b, make(i, i == len(spans) - 1, seed[lo:hi]), out)

    @on_message(CascadeDone)
    def _on_cascade_done(self, src: str, m: CascadeDone, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        if b is None:
            return out
        r = b.result
        r.leaks.error_correction = int(b.cascade_alice.disclosed)
        r.cascade_rounds = int(m.rounds)
        if b.settings.method == ONE_DECOY:
            K = len(b.settings.mus)
            if len(m.key_errors) != K or any(e > n for e, n in zip(m.key_errors, r.n_key)):
                self._bad(b, QKDError(ErrorCode.BAD_FIELD, f"key errors {m.key_errors} for "
                                                           f"{K} classes of {r.n_key} bits"),
                          now_ns, out)
                return out
            why = self._bound(b, tuple(m.key_errors))
            if why is not None:
                self._stop(b, why, now_ns, out)
                return out
        b.move("corrected")
        tag = make_tag(b.key_bits, b.start.eps_cor, self.rng)
        r.leaks.verification = tag.tag_bits
        self._send_seed(b, tag.seed, lambda i, last, part: VerifyTag(
            b.block_id, i, last, tag.n_bits, tag.tag_bits, part, tag.tag if last else b""), out)
        return out

    @on_message(VerifyTag)
    def _on_tag(self, src: str, m: VerifyTag, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        pieces = b and self._gather(b, m, lambda m: m.seed, now_ns, out)
        if not pieces:
            return out
        b.result.leaks.verification = m.tag_bits
        try:
            ok = check_tag(b.corrected, _VTag(m.n_bits, m.tag_bits, b"".join(pieces), m.tag)).ok
        except QKDError:
            ok = False          # a seed of the wrong size: the keys cannot be shown equal
        self._send(b, VerifyResult(b.block_id, ok), out)
        if not ok:
            self._abort(b, "verification failed", now_ns, out, tell=False,
                        detail="the corrected keys' hashes differ")
            return out
        b.move("verified")
        b.ell = self._length(b)
        return out

    def _length(self, b: _Block) -> int:
        """ℓ of Lim et al. Eq. (1) (Rusca et al. Eq. (A25)) from the estimate and
        the counted λ_EC (both ends alike)."""
        s = b.start
        if s.finite:
            b.result.leaks.finite_size = finite_size_bits(b.estimate.method, s.eps_sec, s.eps_cor)
        return key_length(b.estimate, b.result.leaks.error_correction)

    @on_message(VerifyResult)
    def _on_verify_result(self, src: str, m: VerifyResult, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        if b is None:
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
        self._send_seed(b, sm.seed, lambda i, last, part: AmplifySeed(b.block_id, i, last, n, ell,
                                                                      part), out)
        self._done(b, amplify(b.key_bits, sm), now_ns, out)
        return out

    def _done(self, b: _Block, key: np.ndarray, now_ns: int, out: list) -> None:
        b.result.key = key
        b.result.ok = True
        b.move("amplified")
        self._finish(b, now_ns, out)

    @on_message(AmplifySeed)
    def _on_seed(self, src: str, m: AmplifySeed, now_ns: int) -> list:
        out: list = []
        b = self._open(src, m, out)
        pieces = b and self._gather(b, m, lambda m: m.seed, now_ns, out)
        if not pieces:
            return out
        try:
            if m.n_out != b.ell or m.n_in != b.corrected.size:
                raise QKDError(ErrorCode.BAD_FIELD, f"a seed for {m.n_in} -> {m.n_out} bits; "
                                                    f"this end has {b.corrected.size} -> {b.ell}")
            key = amplify(b.corrected, AmplificationSeed(m.n_in, m.n_out, b"".join(pieces)))
        except QKDError as exc:
            self._bad(b, exc, now_ns, out)
            return out
        self._done(b, key, now_ns, out)
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
                        tell=False, detail=f"lost {ev.peer}")
        return out
