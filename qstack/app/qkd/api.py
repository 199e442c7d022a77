"""What applications call: decoy-state BB84 with a neighbour, in one await.

::

    from qstack.app.qkd import api as qkd

    async def alice(ctx):
        result = await qkd.bb84(ctx, "bob", pulses=10**8)
        return result.key          # numpy uint8 bits; result.ok, result.reason, ...

    async def bob(ctx):
        return (await qkd.bb84_receive(ctx, "alice")).key

Both ends get a :class:`~.bb84.QkdResult` with the same key, or one that says
why the block aborted. The node must run ``app.qkd`` (:class:`~.bb84.QkdProtocol`;
``qstack.simulate(..., qkd=True)`` stacks it on every node).
"""
from __future__ import annotations

from typing import Any

from .bb84 import QkdRequest, QkdResult
from .messages import PROTOCOL

__all__ = ["bb84", "bb84_receive"]


class _Client:
    """One application context's view of its node's ``app.qkd`` results."""

    def __init__(self, ctx: Any) -> None:
        self.rt = ctx.runtime
        self.results: list[QkdResult] = []
        self.waiting: list[tuple[Any, Any]] = []        # (match, future)
        self.next_id = 0
        self.rt.subscribe(self._event)

    def _event(self, ev: Any) -> None:
        if not isinstance(ev, QkdResult):
            return
        for i, (match, fut) in enumerate(self.waiting):
            if match(ev) and not fut.done():
                del self.waiting[i]
                fut.set_result(ev)
                return
        self.results.append(ev)

    async def wait(self, match: Any, timeout_ns: int | None) -> QkdResult:
        for i, ev in enumerate(self.results):
            if match(ev):
                del self.results[i]
                return ev
        fut = self.rt.future()
        entry = (match, fut)
        self.waiting.append(entry)
        try:
            return await self.rt.wait(fut, timeout_ns)
        finally:
            # (timed out or cancelled: a later result must not go to this
            # abandoned waiter)
            if entry in self.waiting:
                self.waiting.remove(entry)


def _client(ctx: Any) -> _Client:
    c = getattr(ctx, "_qkd_client", None)
    if c is None:
        c = ctx._qkd_client = _Client(ctx)
    return c


async def bb84(ctx: Any, peer: str, pulses: int, *, finite: bool = True, eps_sec: float = 1e-10,
               eps_cor: float = 1e-15, qber_max: float = 0.11, phase_error_max: float = 0.15,
               cascade_variant: str = "yan14", decoys: int = 0,
               timeout_ns: int | None = None) -> QkdResult:
    """Alice's side: one block of ``pulses`` decoy-BB84 pulses to neighbour
    ``peer`` through the link's pulse physics, then the post-processing with
    it; the :class:`~.bb84.QkdResult` (its ``key``, or why it aborted).
    ``finite``: finite-key bounds (False: asymptotic); ``decoys``: 1 for the
    one-decoy protocol (Rusca et al. 2018; the link has two intensity
    classes), 2 for vacuum + weak decoy (Lim et al. 2014; three classes), 0
    for whichever the link's classes are;
    ``timeout_ns``: give up waiting (``TimeoutError``) after this long (ns)."""
    c = _client(ctx)
    c.next_id += 1
    rid = c.next_id
    c.rt.submit_to(PROTOCOL, QkdRequest(peer, pulses, rid, finite, eps_sec, eps_cor, qber_max,
                                        phase_error_max, 0, cascade_variant, decoys))
    return await c.wait(lambda ev: ev.role == "send" and ev.request_id == rid, timeout_ns)


async def bb84_receive(ctx: Any, peer: str, timeout_ns: int | None = None) -> QkdResult:
    """Bob's side: the result of the next block neighbour ``peer`` starts with
    this node (the node's ``app.qkd`` takes part by itself; this waits).
    Results are kept from this context's first call of :func:`bb84` or
    :func:`bb84_receive` on: one that reached the application before is not
    seen (an application that must see every block subscribes to
    ``ctx.runtime`` on connecting, as the emulation's KMS does)."""
    c = _client(ctx)
    return await c.wait(lambda ev: ev.role == "receive" and ev.peer == peer, timeout_ns)
