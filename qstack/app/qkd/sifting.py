"""Sifting (basis reconciliation) for decoy-state BB84, per intensity class.

Messages, in order (plain data; a protocol carries them):

1. Bob → Alice, :class:`BobDetections`: the pulses where he got a click and the
   basis he measured each in (his bits stay private).
2. Alice → Bob, :class:`AliceBases`: her basis and intensity class for each of
   those pulses (both are public in decoy BB84: the decoy analysis needs the
   classes; the basis is the usual sifting announcement).

Each end then keeps the pulses where the bases agree: :class:`SiftedKey` holds
their pulse indices, basis, intensity class and this end's bit, in pulse order,
so Alice's and Bob's sifted keys line up position by position.  Bases are
0 = Z and 1 = X, as in :mod:`qstack.physical.pulses`; a double click was already
squashed to a random bit by the detector model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qstack.core.errors import ErrorCode

from ._common import QKDError, fail

__all__ = ["AliceRecord", "BobRecord", "BobDetections", "AliceBases", "SiftedKey",
           "records_from_events", "bob_detections", "alice_bases", "sift_alice", "sift_bob"]


def _arr(name: str, value, dtype, n: int | None = None) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim != 1:
        fail(name, "a 1-D array", f"shape {a.shape}", ErrorCode.BAD_FIELD)
    if n is not None and a.size != n:
        fail(name, f"{n} entries (one per pulse)", a.size, ErrorCode.BAD_FIELD)
    return np.ascontiguousarray(a, dtype=dtype)


def _record(owner: str, index, basis, bit, bit_dtype, bit_lo: int) -> tuple[np.ndarray, ...]:
    """Checked (index, basis, bit) arrays of one end's record."""
    idx = _arr(f"{owner}.index", index, np.int64)
    n = idx.size
    bas = _arr(f"{owner}.basis", basis, np.uint8, n)
    bits = _arr(f"{owner}.bit", bit, bit_dtype, n)
    if n and (bas.max() > 1 or bits.max() > 1 or bits.min() < bit_lo):
        fail(owner, f"bases in {{0, 1}} and bits in [{bit_lo}, 1]", "other values")
    if n > 1 and np.any(np.diff(idx) <= 0):
        fail(f"{owner}.index", "strictly increasing pulse indices", "unsorted or repeated")
    return idx, bas, bits


@dataclass
class AliceRecord:
    """What Alice sent: per pulse (or per detection event) its index, basis, bit, intensity class."""

    index: np.ndarray
    basis: np.ndarray
    bit: np.ndarray
    cls: np.ndarray

    def __post_init__(self) -> None:
        self.index, self.basis, self.bit = _record("AliceRecord", self.index, self.basis, self.bit, np.uint8, 0)
        self.cls = _arr("AliceRecord.cls", self.cls, np.uint8, self.index.size)


@dataclass
class BobRecord:
    """What Bob measured: per pulse (or event) its index, basis and bit (−1: no click)."""

    index: np.ndarray
    basis: np.ndarray
    bit: np.ndarray

    def __post_init__(self) -> None:
        self.index, self.basis, self.bit = _record("BobRecord", self.index, self.basis, self.bit, np.int8, -1)


def records_from_events(ev) -> tuple[AliceRecord, BobRecord]:
    """Split a physical-layer :class:`~qstack.physical.pulses.PulseEvents` (or
    ``PulseTrain``, via its ``events()``) into the two ends' records."""
    if hasattr(ev, "events") and not hasattr(ev, "index"):
        ev = ev.events()
    return (AliceRecord(ev.index, ev.alice_basis, ev.alice_bit, ev.alice_class),
            BobRecord(ev.index, ev.bob_basis, ev.bob_bit))


@dataclass(frozen=True)
class BobDetections:
    """Bob → Alice: pulse indices with a click, and Bob's basis for each."""

    index: np.ndarray
    basis: np.ndarray


@dataclass(frozen=True)
class AliceBases:
    """Alice → Bob: her basis and intensity class for each pulse Bob named."""

    basis: np.ndarray
    cls: np.ndarray


@dataclass(frozen=True)
class SiftedKey:
    """One end's sifted events in pulse order: index, basis, intensity class, this end's bit."""

    index: np.ndarray
    basis: np.ndarray
    cls: np.ndarray
    bits: np.ndarray

    @property
    def size(self) -> int:
        """Sifted events (both bases)."""
        return int(self.index.size)

    def mask(self, basis: int) -> np.ndarray:
        """Boolean mask of the events in ``basis`` (0 = Z, 1 = X)."""
        return self.basis == basis

    def counts(self, basis: int, n_classes: int) -> np.ndarray:
        """Sifted events of ``basis`` per intensity class (int64, length n_classes)."""
        return np.bincount(self.cls[self.mask(basis)], minlength=n_classes).astype(np.int64)[:n_classes]


def bob_detections(bob: BobRecord) -> BobDetections:
    """Bob's announcement: where he clicked and in which basis."""
    clicked = bob.bit >= 0
    return BobDetections(bob.index[clicked], bob.basis[clicked])


def alice_bases(alice: AliceRecord, det: BobDetections) -> AliceBases:
    """Alice's answer: her basis and class at every pulse Bob clicked on."""
    pos = np.searchsorted(alice.index, det.index)
    if det.index.size and (pos.max() >= alice.index.size or np.any(alice.index[pos] != det.index)):
        raise QKDError(ErrorCode.APP_ABORTED, "sifting: Bob names pulses Alice has no record of")
    return AliceBases(alice.basis[pos], alice.cls[pos])


def _keep(det: BobDetections, reply: AliceBases) -> np.ndarray:
    if reply.basis.size != det.index.size:
        raise QKDError(ErrorCode.BAD_FIELD, f"sifting: {reply.basis.size} bases for {det.index.size} detections")
    return reply.basis == det.basis


def sift_alice(alice: AliceRecord, det: BobDetections) -> tuple[AliceBases, SiftedKey]:
    """Alice: answer Bob's announcement and keep the pulses where the bases agree."""
    reply = alice_bases(alice, det)
    keep = _keep(det, reply)
    pos = np.searchsorted(alice.index, det.index[keep])
    return reply, SiftedKey(det.index[keep], reply.basis[keep], reply.cls[keep], alice.bit[pos])


def sift_bob(bob: BobRecord, det: BobDetections, reply: AliceBases) -> SiftedKey:
    """Bob: keep the pulses where Alice's basis equals his."""
    keep = _keep(det, reply)
    pos = np.searchsorted(bob.index, det.index[keep])
    return SiftedKey(det.index[keep], reply.basis[keep], reply.cls[keep], bob.bit[pos].astype(np.uint8))
