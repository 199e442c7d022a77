"""BBM92 between alice and bob over measure-directly pairs through the
repeater of ``emu_md.toml``, for ``qstack run`` and ``qstack.simulate``
alike (tests/test_emu_qkd.py): each end returns its result's figures and its
key's length and SHA-256 (``qstack run`` prints at most 2000 characters)."""
import hashlib

import numpy as np

from qstack.app.qkd import entangled as ent

PAIRS = 3_000
CONFIG = ent.EntangledConfig(test_fraction=0.3, eps_sec=1e-4, batch=3000)


def _summary(r):
    return {"ok": r.ok, "reason": r.reason, "key_bits": int(r.key.size),
            "key_sha256": hashlib.sha256(np.packbits(r.key).tobytes()).hexdigest(),
            "pairs": r.pairs, "sifted": r.sifted, "qber": r.qber}


async def _connect(ctx):
    """Connect to bob's port 5, again while it is refused: under ``qstack run``
    bob's application is a process of its own and may not listen yet."""
    from qstack.core.errors import ErrorCode
    from qstack.transport.socket import TransportError

    for _ in range(200):
        try:
            return await ctx.connect("bob", 5)
        except TransportError as err:
            if err.code != ErrorCode.TRANSPORT_CONNECTION_REFUSED:
                raise
            await ctx.sleep(50_000_000)
    return await ctx.connect("bob", 5)


async def alice(ctx):
    async with await _connect(ctx) as sock:
        return _summary(await ent.bbm92(ctx, sock, PAIRS, initiator=True, config=CONFIG))


async def bob(ctx):
    sock = await ctx.listen(5).accept()
    res = await ent.bbm92(ctx, sock, PAIRS, initiator=False, config=CONFIG)
    await sock.close()
    return _summary(res)


APPS = {"alice": alice, "bob": bob}
