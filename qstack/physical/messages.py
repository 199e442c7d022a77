"""The heralding station's messages on a wire (``physical.station``, 0x0110-0x011F).

In the simulator a node's ``Entangle`` / ``CancelEntangle`` operations reach
its link's :class:`~qstack.physical.heralding.HeraldingStation` as Python
calls. A driver that runs the station elsewhere (the emulation's physics
server) carries them as these messages, so that another implementation of
either side can speak to it (``specs/physical.md`` § "On a wire").

The pair key is opaque to the station, which only compares keys for
equality: on the wire it is the msgpack encoding of the node's key
(:func:`key_to_wire`), empty for a follower (``key=None``). Qubits are
named by the physics server's handle, an unsigned 63-bit integer. Times in
nanoseconds of the network's clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

import msgpack

from qstack.core.messages import Message, limits, message

__all__ = ["StationEntangle", "StationCancel", "StationHerald", "key_to_wire", "key_from_wire",
           "VECTOR_EXAMPLES"]

_NAME = limits(max_len=64)
_U63 = limits(0, (1 << 63) - 1)
_KEY = limits(max_len=256)


def key_to_wire(key: Hashable | None) -> bytes:
    """A pair key as the station sees it: msgpack bytes (b"" for a follower's
    ``None``). Keys are tuples of strings and integers (the link layer's
    ``("egp", qid, index, seq)``, the ideal network's ``("ideal", head, rid, i)``)."""
    if key is None:
        return b""
    return msgpack.packb(list(key) if isinstance(key, tuple) else key, use_bin_type=True)


def key_from_wire(raw: bytes) -> Any:
    """Inverse of :func:`key_to_wire` (lists come back as tuples)."""
    if not raw:
        return None
    value = msgpack.unpackb(raw, raw=False)
    return tuple(value) if isinstance(value, list) else value


@message("physical.station", 0x0110)
@dataclass(frozen=True, slots=True)
class StationEntangle(Message):
    """Node -> station: an ``Entangle`` of ``node`` with ``peer`` (answered by
    exactly one :class:`StationHerald` with the same ``request``)."""

    request: int = field(metadata=_U63)        # the node's reference for the answer
    node: str = field(metadata=_NAME)
    peer: str = field(metadata=_NAME)
    key: bytes = field(metadata=_KEY)          # key_to_wire(key); b"": follow
    deadline_ns: int = field(metadata=_U63)    # >= 2**62: none
    param: float = field(metadata=limits(0.0, 1.0))
    start_ns: int = field(metadata=_U63)
    virtual: bool = False


@message("physical.station", 0x0111)
@dataclass(frozen=True, slots=True)
class StationCancel(Message):
    """Node -> station: ``CancelEntangle(peer, key)`` of ``node``."""

    node: str = field(metadata=_NAME)
    peer: str = field(metadata=_NAME)
    key: bytes = field(metadata=_KEY)
    virtual: bool = False


@message("physical.station", 0x0112)
@dataclass(frozen=True, slots=True)
class StationHerald(Message):
    """Station -> node: the ``Herald`` answering request ``request``."""

    request: int = field(metadata=_U63)
    ok: bool
    qubit: int = field(metadata=_U63)          # the physics server's handle (0 on failure)
    bell_index: int = field(metadata=limits(0, 3))
    attempts: int = field(metadata=_U63)
    emitted_ns: int = field(metadata=_U63)
    fidelity_estimate: float = field(metadata=limits(0.0, 1.0))
    reason: str = field(metadata=limits(max_len=64))   # "" on success; else specs/physical.md
    key: bytes = field(metadata=_KEY)                  # the pair's key (a follower learns it)


VECTOR_EXAMPLES = {
    "station_entangle": StationEntangle(request=7, node="alice", peer="bob",
                                        key=key_to_wire(("egp", 3, 0)), deadline_ns=1 << 62,
                                        param=0.0, start_ns=120_000),
    "station_follow": StationEntangle(request=8, node="bob", peer="alice", key=b"",
                                      deadline_ns=1 << 62, param=0.0, start_ns=0),
    "station_cancel": StationCancel(node="alice", peer="bob", key=key_to_wire(("egp", 3, 0))),
    "station_herald": StationHerald(request=8, ok=True, qubit=42, bell_index=1, attempts=17,
                                    emitted_ns=135_000, fidelity_estimate=0.95, reason="",
                                    key=key_to_wire(("egp", 3, 0))),
    "station_herald_failed": StationHerald(request=7, ok=False, qubit=0, bell_index=0,
                                           attempts=0, emitted_ns=0, fidelity_estimate=0.0,
                                           reason="memory full", key=b""),
}
