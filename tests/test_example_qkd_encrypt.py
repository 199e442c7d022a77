"""examples/qkd_encrypt.py: a file encrypted at alice with a key from a decoy-BB84
block and decrypted at bob comes out the same; keys that differ by one bit fail
GCM's tag instead of decrypting to something else."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag

_PATH = Path(__file__).resolve().parent.parent / "examples" / "qkd_encrypt.py"


def _example():
    spec = importlib.util.spec_from_file_location("qkd_encrypt", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_file_encrypted_with_a_qkd_key_decrypts_to_itself(tmp_path):
    ex = _example()
    f = tmp_path / "secret.bin"
    f.write_bytes(np.random.default_rng(5).integers(0, 256, 70_000, dtype=np.uint8).tobytes())
    out = tmp_path / "copy.bin"
    assert ex.main([str(f), "--out", str(out), "--decoys", "1", "--seed", "2"]) == 0
    assert out.read_bytes() == f.read_bytes()
    r = ex.run(f, 20_000_000, decoys=2, seed=4)
    assert r["same"] and r["key_bits"] >= 256
    assert r["ciphertext_bytes"] == 70_000 + 16          # GCM's 128-bit tag


def test_key_files_that_differ_fail_the_tag(tmp_path):
    ex = _example()
    f = tmp_path / "m.txt"
    f.write_bytes(b"attack at dawn\n" * 100)
    key = np.random.default_rng(1).integers(0, 2, 4096, dtype=np.uint8)
    (tmp_path / "k.alice.bin").write_bytes(np.packbits(key).tobytes())
    (tmp_path / "k.bob.bin").write_bytes(np.packbits(key).tobytes())
    assert ex.from_key_files(f, tmp_path / "k.bin")["same"]
    key[17] ^= 1
    (tmp_path / "k.bob.bin").write_bytes(np.packbits(key).tobytes())
    with pytest.raises(InvalidTag):
        ex.from_key_files(f, tmp_path / "k.bin")
    with pytest.raises(ValueError, match="at least 256"):
        ex.derive(key[:255])
