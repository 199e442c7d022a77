"""Wire messages of decoy-state BB84 between neighbours, ``app.qkd`` (type codes 0x0501-0x05FF).

``specs/qkd.md`` is the normative description; ``VECTOR_EXAMPLES`` below feed
``specs/vectors/qkd/``.  A block is named by ``(Alice, block_id)``; every
message names its ``block_id`` and goes between the block's two ends.

Bulk arrays travel in parts: a message with ``part`` (0, 1, ...) and ``last``
(the final part) is one slice of its array, each part well under the wire's
1 MiB message limit (:data:`PART_ITEMS`).  Arrays are little-endian: pulse
gaps uint32, Cascade block positions uint32, pass numbers and intensity
classes uint8; bits are packed with ``numpy.packbits`` (most significant bit
first).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qstack.core.messages import Message, limits, message

__all__ = [
    "PROTOCOL", "PART_ITEMS", "QkdStart", "SiftDetections", "SiftBases", "TestBits", "TestErrors",
    "CascadeStart", "ParityQuery", "ParityReply", "CascadeDone", "VerifyTag", "VerifyResult",
    "AmplifySeed", "QkdAbort", "VECTOR_EXAMPLES",
]

PROTOCOL = "app.qkd"

#: Most array items in one part: detections (4 + ⅛ bytes each), Cascade
#: queries (9 bytes each), or bits (⅛ byte each, ×32 for bit arrays): every
#: part stays under 600 KiB, within the wire's 1 MiB.
PART_ITEMS = 1 << 16

_U32 = limits(0, 0xFFFFFFFF)
_U63 = limits(0, (1 << 63) - 1)
_PART = limits(0, 0xFFFFFFFF)
_PROB = limits(0.0, 1.0)
_BULK = limits(max_len=1 << 20)


@message(PROTOCOL, 0x0501)
@dataclass(frozen=True, slots=True)
class QkdStart(Message):
    """Alice → Bob: block ``block_id`` of ``pulses`` pulses starts; both ends
    submit a ``PulseBlock`` now. The intensity classes are the link's
    (public, configured at both ends: the ``PulseRecord`` names them). The
    key basis (0 Z, 1 X) and the post-processing both ends run: finite-key
    (Lim et al. 2014) or asymptotic, ε_sec, ε_cor, the abort thresholds and
    the Cascade variant."""

    block_id: int = field(metadata=_U32)
    pulses: int = field(metadata=limits(1, (1 << 62)))
    key_basis: int = field(metadata=limits(0, 1))
    finite: bool
    eps_sec: float = field(metadata=_PROB)
    eps_cor: float = field(metadata=_PROB)
    qber_max: float = field(metadata=_PROB)
    phase_error_max: float = field(metadata=_PROB)
    cascade_variant: str = field(metadata=limits(max_len=16))


@message(PROTOCOL, 0x0502)
@dataclass(frozen=True, slots=True)
class SiftDetections(Message):
    """Bob → Alice, in parts: the pulses where he clicked and his basis for
    each. ``first``: the first click's pulse index; ``gaps``: uint32 index
    differences to each next click of the part (count − 1 of them);
    ``bases``: packed bits, one per click (0 Z, 1 X)."""

    block_id: int = field(metadata=_U32)
    part: int = field(metadata=_PART)
    last: bool
    count: int = field(metadata=limits(0, PART_ITEMS))
    first: int = field(metadata=_U63)
    gaps: bytes = field(metadata=_BULK)
    bases: bytes = field(metadata=_BULK)


@message(PROTOCOL, 0x0503)
@dataclass(frozen=True, slots=True)
class SiftBases(Message):
    """Alice → Bob, one per ``SiftDetections`` part: her basis (packed bits)
    and intensity class (uint8) at each of its clicks."""

    block_id: int = field(metadata=_U32)
    part: int = field(metadata=_PART)
    last: bool
    count: int = field(metadata=limits(0, PART_ITEMS))
    bases: bytes = field(metadata=_BULK)
    classes: bytes = field(metadata=_BULK)


@message(PROTOCOL, 0x0504)
@dataclass(frozen=True, slots=True)
class TestBits(Message):
    """Bob → Alice, in parts of at most 32 × ``PART_ITEMS`` bits: his bits of
    the sifted test-basis events, in pulse order (packed)."""

    block_id: int = field(metadata=_U32)
    part: int = field(metadata=_PART)
    last: bool
    count: int = field(metadata=limits(0, 32 * PART_ITEMS))
    bits: bytes = field(metadata=_BULK)


@message(PROTOCOL, 0x0505)
@dataclass(frozen=True, slots=True)
class TestErrors(Message):
    """Alice → Bob: the bit errors among the test-basis events, per intensity
    class; the parameter estimation (both ends compute it) passed."""

    block_id: int = field(metadata=_U32)
    errors: tuple[int, ...] = field(metadata=limits(0, (1 << 62), max_len=8))


@message(PROTOCOL, 0x0506)
@dataclass(frozen=True, slots=True)
class CascadeStart(Message):
    """Bob → Alice: Cascade over the ``n`` key-basis bits, the top-level block
    size of each pass, the seed of the passes' permutations."""

    block_id: int = field(metadata=_U32)
    n: int = field(metadata=limits(1, (1 << 31) - 1))
    sizes: tuple[int, ...] = field(metadata=limits(1, (1 << 31) - 1, max_len=64))
    seed: int = field(metadata=limits(0, (1 << 64) - 1))


@message(PROTOCOL, 0x0507)
@dataclass(frozen=True, slots=True)
class ParityQuery(Message):
    """Bob → Alice, in parts: round ``round``'s blocks, block i the positions
    [starts[i], ends[i]) of pass passes[i]'s permuted order."""

    block_id: int = field(metadata=_U32)
    round: int = field(metadata=_U32)
    part: int = field(metadata=_PART)
    last: bool
    count: int = field(metadata=limits(0, PART_ITEMS))
    passes: bytes = field(metadata=_BULK)
    starts: bytes = field(metadata=_BULK)
    ends: bytes = field(metadata=_BULK)


@message(PROTOCOL, 0x0508)
@dataclass(frozen=True, slots=True)
class ParityReply(Message):
    """Alice → Bob: one parity per block of round ``round`` (all its parts), packed."""

    block_id: int = field(metadata=_U32)
    round: int = field(metadata=_U32)
    count: int = field(metadata=limits(0, 1 << 23))
    parities: bytes = field(metadata=_BULK)


@message(PROTOCOL, 0x0509)
@dataclass(frozen=True, slots=True)
class CascadeDone(Message):
    """Bob → Alice: Cascade has finished after ``rounds`` rounds.
    ``key_errors``: the key-basis bit errors Cascade corrected, per intensity
    class, for the one-decoy estimate (Rusca et al. 2018, which bounds the
    vacuum detections by them); empty for two-decoy blocks."""

    block_id: int = field(metadata=_U32)
    rounds: int = field(metadata=_U32)
    key_errors: tuple[int, ...] = field(default=(), metadata=limits(0, (1 << 62), max_len=8))


@message(PROTOCOL, 0x050A)
@dataclass(frozen=True, slots=True)
class VerifyTag(Message):
    """Alice → Bob, in parts: the Toeplitz seed of the verification hash
    (``n_bits`` + ``tag_bits`` − 1 bits, packed, split over the parts) and
    Alice's ``tag_bits``-bit tag of her key (in the last part; empty before)."""

    block_id: int = field(metadata=_U32)
    part: int = field(metadata=_PART)
    last: bool
    n_bits: int = field(metadata=limits(1, (1 << 31) - 1))
    tag_bits: int = field(metadata=limits(1, 1024))
    seed: bytes = field(metadata=_BULK)
    tag: bytes = field(metadata=limits(max_len=128))


@message(PROTOCOL, 0x050B)
@dataclass(frozen=True, slots=True)
class VerifyResult(Message):
    """Bob → Alice: whether his tag equals hers."""

    block_id: int = field(metadata=_U32)
    ok: bool


@message(PROTOCOL, 0x050C)
@dataclass(frozen=True, slots=True)
class AmplifySeed(Message):
    """Alice → Bob, in parts: the Toeplitz seed (``n_in`` + ``n_out`` − 1 bits,
    packed) hashing the ``n_in``-bit corrected key to the ``n_out``-bit final key."""

    block_id: int = field(metadata=_U32)
    part: int = field(metadata=_PART)
    last: bool
    n_in: int = field(metadata=limits(1, (1 << 31) - 1))
    n_out: int = field(metadata=limits(1, (1 << 31) - 1))
    seed: bytes = field(metadata=_BULK)


@message(PROTOCOL, 0x050D)
@dataclass(frozen=True, slots=True)
class QkdAbort(Message):
    """Either way: the block ends without a key; ``code`` (an ErrorCode, e.g.
    APP_ABORTED) and ``reason`` say why."""

    block_id: int = field(metadata=_U32)
    code: int = field(metadata=limits(0, 999))
    reason: str = field(metadata=limits(max_len=256))


VECTOR_EXAMPLES = {
    "qkd_start": QkdStart(block_id=1, pulses=1_000_000_000, key_basis=0, finite=True, eps_sec=1e-10,
                          eps_cor=1e-15, qber_max=0.11, phase_error_max=0.15,
                          cascade_variant="yan14"),
    "sift_detections": SiftDetections(block_id=1, part=0, last=True, count=3, first=17,
                                      gaps=bytes.fromhex("0500000002010000"),
                                      bases=bytes.fromhex("a0")),
    "sift_bases": SiftBases(block_id=1, part=0, last=True, count=3, bases=bytes.fromhex("60"),
                            classes=bytes.fromhex("000102")),
    "test_bits": TestBits(block_id=1, part=0, last=True, count=5, bits=bytes.fromhex("b0")),
    "test_errors": TestErrors(block_id=1, errors=(12, 3, 1)),
    "cascade_start": CascadeStart(block_id=1, n=10000, sizes=(40, 200, 5000, 5000), seed=7),
    "parity_query": ParityQuery(block_id=1, round=1, part=0, last=True, count=2,
                                passes=bytes.fromhex("0000"),
                                starts=bytes.fromhex("0000000028000000"),
                                ends=bytes.fromhex("2800000050000000")),
    "parity_reply": ParityReply(block_id=1, round=1, count=2, parities=bytes.fromhex("80")),
    "cascade_done": CascadeDone(block_id=1, rounds=57),
    "cascade_done_one_decoy": CascadeDone(block_id=1, rounds=57, key_errors=(310, 95)),
    "verify_tag": VerifyTag(block_id=1, part=0, last=True, n_bits=8, tag_bits=4,
                            seed=bytes.fromhex("a5e0"), tag=bytes.fromhex("90")),
    "verify_result": VerifyResult(block_id=1, ok=True),
    "amplify_seed": AmplifySeed(block_id=1, part=0, last=True, n_in=8, n_out=3,
                                seed=bytes.fromhex("c3c0")),
    "qkd_abort": QkdAbort(block_id=1, code=500, reason="QBER too high"),
}
