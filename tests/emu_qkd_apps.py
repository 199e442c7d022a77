"""Decoy BB84 between alice and bob (``app.qkd``), for ``qstack sim --qkd`` and
``qstack run`` alike: each end returns its result's figures and its key's
length and SHA-256 (``qstack run`` prints at most 2000 characters of a
result), so that a test compares both ends and both drivers."""
import hashlib

import numpy as np

from qstack.app.qkd import api as qkd

#: A small block: ~1.4 kbit of asymptotic key over the 25 km link of qkd_emu.toml.
PULSES = 300_000


def _summary(r):
    return {"ok": r.ok, "reason": r.reason, "key_bits": int(r.key.size),
            "key_sha256": hashlib.sha256(np.packbits(r.key).tobytes()).hexdigest(), "sifted": r.sifted,
            "n_pulses": r.n_pulses, "sent_per_class": list(r.sent_per_class),
            "qber_test": r.qber_test, "block": r.block_id,
            "phase_error": None if r.estimate is None else r.estimate.phase_error}


async def alice(ctx):
    return _summary(await qkd.bb84(ctx, "bob", pulses=PULSES, finite=False))


async def bob(ctx):
    return _summary(await qkd.bb84_receive(ctx, "alice"))


APPS = {"alice": alice, "bob": bob}
