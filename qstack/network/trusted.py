"""Trusted-node key relay: end-to-end keys from hop-by-hop keys, by XOR.

The first stage of a quantum internet (trusted-node QKD networks such as
SECOQC or the Beijing-Shanghai backbone): neighbours share keys (from QKD on
each hop); a key between far nodes is relayed through intermediate nodes that
see it in the clear, so they must be trusted. The result says which.

Relay: the origin takes ``length`` bytes ``K1`` of its key with the first hop
as the end-to-end key and sends nothing secret to that hop (the hop already
holds ``K1``); every relay ``R_i`` receives ``K1 xor K_i`` (``K_i`` the key
of the hop it came over; for the first hop the origin sends zeros, since
``K1 xor K1``), recovers ``K1``, and sends ``K1 xor K_(i+1)`` on. The
destination recovers ``K1`` with its own hop key. Each message is a one-time
pad, so an eavesdropper on the classical channels learns nothing; each relay
learns ``K1``. Hop-key blocks are named by id (``hop_key_id``); to keep two
relays in opposite directions from taking the same block, the lower-named end
of a hop uses even ids and the other odd ids.

The hop keys come in as :class:`HopKey` events (the QKD application feeds
them); a request is :class:`RelayRequest`; both ends get a :class:`RelayOk`
with the same key and ``trusted`` tuple, or a :class:`RelayErr`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from qstack.core.errors import ErrorCode
from qstack.core.protocol import Deliver, Fail, Protocol, SendMessage, on, on_message

from .messages import KeyRelay, KeyRelayAck
from .routing import RoutingError, Topology

__all__ = ["TrustedRelay", "HopKey", "RelayRequest", "RelayOk", "RelayErr", "xor_bytes"]


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR of two equal-length byte strings."""
    if len(a) != len(b):
        raise ValueError("xor of byte strings of different lengths")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


@dataclass(frozen=True, slots=True)
class HopKey:
    """A block of key ``key`` shared with neighbour ``peer`` under ``key_id``."""

    peer: str
    key_id: int
    key: bytes


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """Relay a ``length``-byte key to ``destination`` (``request_id``: caller's tag)."""

    destination: str
    length: int
    request_id: int = 0
    app_tag: int = 0


@dataclass(frozen=True, slots=True)
class RelayOk:
    """The end-to-end key, identical at both ends, with the nodes that saw it.

    ``trusted``: the intermediate nodes of ``path`` (every one of them knows
    ``key``: the key is as secret as the least trustworthy of them).
    """

    relay_id: int
    origin: str
    remote: str
    key: bytes
    path: tuple[str, ...]
    trusted: tuple[str, ...]
    request_id: int = 0
    app_tag: int = 0


@dataclass(frozen=True, slots=True)
class RelayErr:
    request_id: int
    remote: str
    code: ErrorCode
    detail: str = ""


class _Relay:
    """A relay this node started, waiting for its KeyRelayAck: the key
    ``k1`` and what the origin's RelayOk / RelayErr will say."""

    __slots__ = ("k1", "path", "request_id", "app_tag")

    def __init__(self, k1: bytes, path: tuple[str, ...], request_id: int, app_tag: int) -> None:
        self.k1 = k1
        self.path = path
        self.request_id = request_id
        self.app_tag = app_tag


class TrustedRelay(Protocol):
    """The trusted-node relay (``network.trusted``); one per node.

    ``topology``: where the origin routes (hop count; fidelity ignored).
    ``trust``: nodes this node is willing to relay through (None: any);
    a path through an untrusted node is avoided, or the request fails with
    ``NET_NO_ROUTE``.
    """

    name = "network.trusted"

    def __init__(self, node: str, topology: Topology | None = None,
                 trust: set[str] | None = None) -> None:
        super().__init__(node)
        self.topology = topology
        self.trust = trust
        self.keys: dict[str, dict[int, bytes]] = {}     # peer -> key id -> unused block
        self._next_relay = 1
        self._pending: dict[int, _Relay] = {}      # relay id -> relay started here

    @on(HopKey)
    def _hop_key(self, ev: HopKey, now_ns: int) -> list:
        self.keys.setdefault(ev.peer, {})[ev.key_id] = ev.key
        return []

    def _take(self, peer: str, length: int) -> tuple[int, bytes] | None:
        """An unused block of at least ``length`` bytes from our side's id parity."""
        parity = 0 if self.node < peer else 1
        pool = self.keys.get(peer, {})
        for kid in sorted(pool):
            if kid % 2 == parity and len(pool[kid]) >= length:
                return kid, pool.pop(kid)[:length]
        return None

    def _route(self, dst: str) -> tuple[str, ...]:
        if self.topology is None:
            raise RoutingError(ErrorCode.NET_NO_ROUTE, "no topology")
        g = self.topology._live()
        if self.trust is not None:
            g.remove_nodes_from([n for n in list(g.nodes)
                                 if n not in self.trust and n not in (self.node, dst)])
        import networkx as nx
        try:
            return tuple(nx.shortest_path(g, self.node, dst))
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            raise RoutingError(ErrorCode.NET_NO_ROUTE,
                               f"no path of trusted nodes from {self.node} to {dst}") from None

    @on(RelayRequest)
    def _request(self, req: RelayRequest, now_ns: int) -> list:
        try:
            path = self._route(req.destination)
        except RoutingError as exc:
            return [Deliver(RelayErr(req.request_id, req.destination, exc.code, exc.detail))]
        got = self._take(path[1], req.length)
        if got is None:
            return [Deliver(RelayErr(req.request_id, req.destination, ErrorCode.NET_REJECTED,
                                     f"not enough key with {path[1]}"))]
        kid, k1 = got
        rid = (zlib.crc32(self.node.encode()) & 0xFFFF) << 16 | (self._next_relay & 0xFFFF)
        self._next_relay += 1
        self._pending[rid] = _Relay(k1, path, req.request_id, req.app_tag)
        # the first hop's one-time pad of K1 with itself is all zeros
        return [SendMessage(path[1], KeyRelay(rid, self.node, path, kid, bytes(len(k1)),
                                              req.app_tag))]

    @on_message(KeyRelay)
    def _on_relay(self, src: str, m: KeyRelay, now_ns: int) -> list:
        block = self.keys.get(src, {}).pop(m.hop_key_id, None)
        i = m.path.index(self.node) if self.node in m.path else -1
        back = SendMessage(src, KeyRelayAck(m.relay_id, m.origin, m.path, False,
                                            int(ErrorCode.NET_REJECTED)))
        if block is None or len(block) < len(m.masked) or i <= 0:
            return [back]
        k1 = xor_bytes(m.masked, block[:len(m.masked)])
        if i == len(m.path) - 1:
            ok = RelayOk(m.relay_id, m.origin, m.origin, k1, m.path, m.path[1:-1],
                         app_tag=m.app_tag)
            return [Deliver(ok), SendMessage(src, KeyRelayAck(m.relay_id, m.origin, m.path,
                                                              True, 0))]
        nxt = m.path[i + 1]
        got = self._take(nxt, len(k1))
        if got is None:
            return [back]
        kid, k_next = got
        return [SendMessage(nxt, KeyRelay(m.relay_id, m.origin, m.path, kid,
                                          xor_bytes(k1, k_next), m.app_tag))]

    @on_message(KeyRelayAck)
    def _on_ack(self, src: str, m: KeyRelayAck, now_ns: int) -> list:
        if m.origin != self.node:
            i = m.path.index(self.node) if self.node in m.path else -1
            if i <= 0 or m.path[i + 1:i + 2] != (src,):
                # not on its path, or not from the next node on it: refused
                return [Fail(ErrorCode.NET_REJECTED,
                             f"KeyRelayAck {m.relay_id} of {m.origin} from {src}, which does "
                             f"not come after {self.node} on its path: ignored")]
            return [SendMessage(m.path[i - 1], m)]
        relay = self._pending.pop(m.relay_id, None)
        if relay is None:
            return []
        path = relay.path
        if not m.ok:
            return [Deliver(RelayErr(relay.request_id, path[-1], ErrorCode(m.code)
                                     if m.code in {c.value for c in ErrorCode}
                                     else ErrorCode.NET_REJECTED, "relay refused"))]
        return [Deliver(RelayOk(m.relay_id, self.node, path[-1], relay.k1, path, path[1:-1],
                                relay.request_id, relay.app_tag))]
