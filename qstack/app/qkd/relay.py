"""Trusted-node relay of QKD keys between non-neighbours, as an application.

Every node on ``path`` (origin first, destination last, trusted nodes
between) runs :func:`relay_node` with the same arguments:

1. **hop keys**: each pair of neighbours on the path runs BBM92
   (:func:`~.entangled.bbm92`) over its own socket (the upstream node
   initiates); the hop's final key is the one-time pad of that hop;
2. **relay**: each node holds a :class:`~qstack.network.trusted.TrustedRelay`
   (``network.trusted``, sans-I/O) fed with its hop keys as ``HopKey``
   events; the origin submits a ``RelayRequest`` for ``key_bytes`` bytes, and
   the protocol's ``KeyRelay`` / ``KeyRelayAck`` messages travel over the
   hop sockets, encoded with the wire codec. Every hop's message is the
   end-to-end key XOR that hop's key, so an eavesdropper on the classical
   channel learns nothing, and every trusted node recovers the key.

The result says who saw the key: both ends get the key with ``trusted`` (the
nodes between them, from the protocol's ``RelayOk``); a trusted node's result
has ``saw_key`` True and the relay's id. The hop keys are used once (the
relay pops them); whatever is left of a hop key stays in ``hops``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.messages import decode, encode
from qstack.core.protocol import Deliver, Fail, MessageReceived, SendMessage
from qstack.network.messages import KeyRelay, KeyRelayAck
from qstack.network.routing import Topology
from qstack.network.trusted import HopKey, RelayErr, RelayOk, RelayRequest, TrustedRelay

from ._common import QKDError, check_pos_int
from .entangled import EntangledConfig, EntangledResult, bbm92

__all__ = ["RelayNodeResult", "relay_node"]


@dataclass
class RelayNodeResult:
    """One node's view of a relay. ``key``: the end-to-end key (ends only,
    None on a failure or at a trusted node, which nonetheless saw it);
    ``trusted``: the nodes that saw the key besides the ends; ``saw_key``:
    this node learnt the key (every node on the path does); ``hops``: this
    node's BBM92 results by neighbour; ``reason``: why it failed ("" if not)."""

    node: str
    path: tuple[str, ...]
    role: str                           # "origin", "trusted" or "destination"
    ok: bool = False
    key: bytes | None = None
    trusted: tuple[str, ...] = ()
    saw_key: bool = False
    relay_id: int | None = None
    hops: dict[str, EntangledResult] = field(default_factory=dict)
    reason: str = ""


def _hop_id(up: str, down: str) -> int:
    """The key id the upstream end of a hop sends under (``network.trusted``:
    the lower-named end of a hop uses even ids, the other odd ids)."""
    return 0 if up < down else 1


async def relay_node(ctx: Any, path: list[str] | tuple[str, ...], *, key_bytes: int,
                     pairs: int, port: int = 20, config: EntangledConfig | None = None
                     ) -> RelayNodeResult:
    """Run this node's part of a trusted-node relay along ``path``.

    ``key_bytes``: the end-to-end key's length in bytes; ``pairs``: EPR pairs
    of each hop's BBM92 run; ``port``: the port each node listens on for its
    upstream neighbour; ``config``: the BBM92 settings (both ends of every
    hop use the same). Returns a :class:`RelayNodeResult`; a hop whose QKD
    aborts or leaves fewer than ``key_bytes`` bytes ends the relay with
    ``reason`` naming the hop (the others learn it as ``NET_REJECTED``)."""
    path = tuple(path)
    check_pos_int("relay_node.key_bytes", key_bytes)
    if len(path) < 2 or len(set(path)) != len(path) or ctx.name not in path:
        raise QKDError(ErrorCode.INVALID_PARAMETER,
                       f"relay_node: path {path!r} must hold {ctx.name} and at least two distinct nodes")
    i = path.index(ctx.name)
    role = "origin" if i == 0 else "destination" if i == len(path) - 1 else "trusted"
    res = RelayNodeResult(ctx.name, path, role)
    up = path[i - 1] if i > 0 else None
    down = path[i + 1] if i < len(path) - 1 else None
    server = ctx.listen(port) if up is not None else None
    socks: dict[str, Any] = {}
    # hop keys: downstream first (so hops finish from the destination back
    # towards the origin; each node waits only for its downstream neighbour)
    if down is not None:
        socks[down] = await ctx.connect(down, port)
        res.hops[down] = await bbm92(ctx, socks[down], pairs, initiator=True, config=config)
    if up is not None:
        socks[up] = await server.accept()
        res.hops[up] = await bbm92(ctx, socks[up], pairs, initiator=False, config=config)
    proto = TrustedRelay(ctx.name, _chain(path))
    for peer, hop in res.hops.items():
        if hop.ok and hop.key.size >= 8 * key_bytes:
            u, d = (peer, ctx.name) if peer == up else (ctx.name, peer)
            proto.handle(HopKey(peer, _hop_id(u, d), hop.key_bytes()[:key_bytes]), ctx.now_ns)
    bad = [f"hop {ctx.name}-{p}: {h.reason or f'{h.key.size} key bits < {8 * key_bytes}'}"
           for p, h in res.hops.items() if not (h.ok and h.key.size >= 8 * key_bytes)]
    res.reason = "; ".join(bad)

    async def pump(actions: list) -> tuple[Any, str | None]:
        """Carry the protocol's actions out: (the event it delivered, the
        node its first message went to)."""
        delivered, sent_to = None, None
        for act in actions:
            if isinstance(act, SendMessage):
                await socks[act.dst].send(encode(act.msg))
                sent_to = sent_to or act.dst
            elif isinstance(act, Deliver):
                delivered = act.event
            elif isinstance(act, Fail):
                raise QKDError(act.code, f"network.trusted: {act.detail}")
        return delivered, sent_to

    timeout = config.timeout_ns if config is not None else None
    ev: Any = None
    if role == "origin":
        ev, wait_from = await pump(proto.handle(RelayRequest(path[-1], key_bytes), ctx.now_ns))
    else:
        wait_from = up
    while ev is None:
        try:
            msg = decode(await socks[wait_from].recv(timeout))
        except QStackError as err:
            # the neighbour gave up (its relay failed and it closed)
            res.reason = res.reason or f"relay: {wait_from} ended ({err.code.name})"
            break
        if not isinstance(msg, (KeyRelay, KeyRelayAck)):
            raise QKDError(ErrorCode.UNEXPECTED_EVENT, f"relay: {type(msg).__name__} from {wait_from}")
        if isinstance(msg, KeyRelay):
            res.relay_id = msg.relay_id
        ev, sent_to = await pump(proto.handle(MessageReceived(wait_from, msg), ctx.now_ns))
        if ev is not None or role == "origin":
            continue
        if isinstance(msg, KeyRelayAck):
            # a trusted node passed the destination's answer back: its part is over
            res.ok = res.saw_key = bool(msg.ok)
            res.trusted = path[1:-1]
            if not msg.ok and not res.reason:
                res.reason = f"relay refused downstream ({ErrorCode(msg.code).name})"
            break
        if sent_to == up:
            # it refused the KeyRelay (no hop key): the refusal went back
            res.reason = res.reason or "relay refused here"
            break
        wait_from = sent_to
    if isinstance(ev, RelayOk):
        res.ok, res.key, res.trusted, res.saw_key = True, ev.key, ev.trusted, True
        res.relay_id = ev.relay_id
    elif isinstance(ev, RelayErr):
        res.reason = res.reason or f"{ev.code.name}: {ev.detail}"
    for sock in socks.values():
        try:
            await sock.close()
        except QStackError:
            pass            # the far end went first: nothing left to close
    if server is not None:
        await server.close()
    return res


def _chain(path: tuple[str, ...]) -> Topology:
    topo = Topology()
    for a, b in zip(path, path[1:]):
        topo.add_link(a, b)
    return topo
