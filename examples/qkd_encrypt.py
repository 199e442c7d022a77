"""Encrypt a file at alice with a QKD key and decrypt it at bob.

alice and bob run one block of decoy-state BB84 over their link under
``qstack.simulate`` (``app.qkd`` on both nodes; the one-decoy protocol with
``--decoys 1``); each end derives the same AES-256 key from its final key;
alice encrypts the file with AES-GCM and sends the ciphertext (the nonce is
derived at both ends, not sent) to bob over a transport socket in the same
simulated network; bob decrypts it and
the script checks that what bob got is the file.

Key derivation: HKDF-SHA256 (RFC 5869, ``cryptography``) over the *whole*
final key (packed bits, most significant first) as input keying material,
``info`` naming the use, 44 bytes out: the 256-bit AES key and the 96-bit
GCM nonce. The final key is already ε_sec-close to uniform (privacy
amplification), so its first 256 bits would do as the AES key too; HKDF is
used so that a key of any length ≥ 256 bits serves, and the key and nonce
are bound to this purpose. Each QKD key encrypts one file only, so the
derived nonce is never reused under one key (GCM's requirement), and a run
is reproducible by its seed.

    python examples/qkd_encrypt.py FILE                      # decrypted copy to FILE.dec
    python examples/qkd_encrypt.py FILE --decoys 1 --pulses 5e7 --seed 3
    python examples/qkd_encrypt.py FILE --keys key.bin       # the key files of
        # `qstack qkd run NET.toml --out key.bin` (key.alice.bin, key.bob.bin) instead of a run
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import qstack
from qstack.app.qkd import api as qkd

PORT = 9
CHUNK = 60_000          # bytes per socket message (the transport takes at most 65536)
INFO = b"qstack examples/qkd_encrypt.py AES-256-GCM key and nonce"


def derive(key_bits: np.ndarray | bytes) -> tuple[bytes, bytes]:
    """(32-byte AES key, 12-byte GCM nonce) by HKDF-SHA256 from a QKD key:
    uint8 bits (at least 256) or the packed bytes of a key file."""
    ikm = key_bits if isinstance(key_bits, bytes) else np.packbits(key_bits).tobytes()
    n_bits = 8 * len(ikm) if isinstance(key_bits, bytes) else int(key_bits.size)
    if n_bits < 256:
        raise ValueError(f"a QKD key of {n_bits} bits: at least 256 are needed for AES-256")
    out = HKDF(algorithm=hashes.SHA256(), length=44, salt=None, info=INFO).derive(ikm)
    return out[:32], out[32:]


def make_apps(data: bytes, name: str, pulses: int, decoys: int) -> dict:
    """alice: a QKD block with bob, then the file encrypted to bob over a socket;
    bob: the block, then the file decrypted. Each returns its QKD key length."""
    aad = name.encode()

    async def alice(ctx):
        res = await qkd.bb84(ctx, "bob", pulses=pulses, decoys=decoys)
        if not res.ok:
            return {"ok": False, "reason": res.reason}
        key, nonce = derive(res.key)
        ct = AESGCM(key).encrypt(nonce, data, aad)
        async with await ctx.connect("bob", PORT) as sock:
            await sock.send(len(ct).to_bytes(8, "big"))
            for i in range(0, len(ct), CHUNK):
                await sock.send(ct[i:i + CHUNK])
            await sock.recv()                       # bob's acknowledgement
        return {"ok": True, "key_bits": res.key_length, "ciphertext_bytes": len(ct)}

    async def bob(ctx):
        listener = ctx.listen(PORT)
        res = await qkd.bb84_receive(ctx, "alice")
        if not res.ok:
            return {"ok": False, "reason": res.reason}
        sock = await listener.accept()
        size = int.from_bytes(await sock.recv(), "big")
        parts, got = [], 0
        while got < size:
            parts.append(await sock.recv())
            got += len(parts[-1])
        await sock.send(b"ok")
        key, nonce = derive(res.key)
        # raises cryptography.exceptions.InvalidTag if the keys or the bytes differ
        plain = AESGCM(key).decrypt(nonce, b"".join(parts), aad)
        return {"ok": True, "key_bits": res.key_length, "plaintext": plain}

    return {"alice": alice, "bob": bob}


def run(path: Path, pulses: int = 20_000_000, decoys: int = 0, seed: int = 1,
        length_km: float = 25.0) -> dict:
    """Key, encrypt at alice, send, decrypt at bob, in simulated time: bob's
    plaintext and the figures. Two nodes ``length_km`` apart; with
    ``decoys=1`` the link has the one-decoy intensities of ``qstack qkd run``."""
    from qstack.qkdtool import ONE_DECOY_DEFAULTS

    link = {"nodes": ["alice", "bob"], "length_km": length_km}
    if decoys == 1:
        link.update(ONE_DECOY_DEFAULTS)
    net = {"nodes": ["alice", "bob"], "links": [link]}
    data = path.read_bytes()
    out = qstack.simulate(net, make_apps(data, path.name, pulses, decoys), seed=seed, qkd=True)
    out.raise_errors()
    a, b = out.results["alice"], out.results["bob"]
    if not (a["ok"] and b["ok"]):
        raise RuntimeError(f"the QKD block aborted: {a.get('reason') or b.get('reason')}")
    return {"plaintext": b["plaintext"], "key_bits": a["key_bits"],
            "ciphertext_bytes": a["ciphertext_bytes"], "same": b["plaintext"] == data}


def from_key_files(path: Path, keyfile: Path) -> dict:
    """The same with the key files ``qstack qkd run --out KEYFILE`` wrote
    (KEYFILE.alice / KEYFILE.bob before the suffix): no network, no run. The
    files hold whole bytes: ``key_bits`` counts the zero padding bits too."""
    ka = keyfile.with_name(f"{keyfile.stem}.alice{keyfile.suffix}").read_bytes()
    kb = keyfile.with_name(f"{keyfile.stem}.bob{keyfile.suffix}").read_bytes()
    data = path.read_bytes()
    key, nonce = derive(ka)
    ct = AESGCM(key).encrypt(nonce, data, path.name.encode())
    key, nonce = derive(kb)
    plain = AESGCM(key).decrypt(nonce, ct, path.name.encode())
    return {"plaintext": plain, "key_bits": 8 * len(ka), "ciphertext_bytes": len(ct),
            "same": plain == data}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path, help="the file alice encrypts")
    ap.add_argument("--out", type=Path, default=None, help="bob's decrypted copy (default FILE.dec)")
    ap.add_argument("--pulses", type=float, default=2e7, help="pulses of the QKD block (default 2e7)")
    ap.add_argument("--decoys", type=int, choices=(1, 2), default=2,
                    help="2: vacuum + weak decoy (default); 1: the one-decoy protocol")
    ap.add_argument("--length-km", type=float, default=25.0, help="the link's length (default 25)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keys", type=Path, default=None, metavar="KEYFILE",
                    help="use the key files of `qstack qkd run --out KEYFILE` instead of a run")
    args = ap.parse_args(argv)
    if args.keys is not None:
        r = from_key_files(args.file, args.keys)
    else:
        r = run(args.file, int(args.pulses), args.decoys, args.seed, args.length_km)
    out = args.out or args.file.with_name(args.file.name + ".dec")
    out.write_bytes(r["plaintext"])
    print(f"QKD key {r['key_bits']} bits -> AES-256-GCM key and nonce by HKDF-SHA256; "
          f"{len(r['plaintext'])} bytes encrypted at alice ({r['ciphertext_bytes']} with the tag), "
          f"decrypted at bob to {out}: {'identical' if r['same'] else 'DIFFERENT'}")
    return 0 if r["same"] else 1


if __name__ == "__main__":
    sys.exit(main())
