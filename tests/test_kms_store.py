"""The KME key store (qstack.app.qkd.keystore), sans-I/O: ETSI GS QKD 014's
rules -- a key given to the master SAE goes once to the slave SAE, by its id,
never twice and never to a third SAE; both ends get the same bytes."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from qstack.app.qkd.keystore import KeyStore, KmsError
from qstack.core.errors import ErrorCode

SAES = {"sae-a": "kme-a", "sae-b": "kme-b", "sae-c": "kme-b", "sae-a2": "kme-a"}


def pair(material: bytes = b"", **kw):
    a, b = KeyStore("kme-a", SAES, **kw), KeyStore("kme-b", SAES, **kw)
    if material:
        a.add_material("kme-b", 1, material)
        b.add_material("kme-a", 1, material)
    return a, b


def code(exc) -> tuple:
    return exc.value.code, exc.value.status


def test_master_and_slave_get_the_same_key_once():
    a, b = pair(os.urandom(4096))
    keys, res = a.enc_keys("sae-a", "sae-b", number=3, size=256)
    assert len(keys) == 3 and all(len(k) == 32 for _, k in keys)
    b.apply(res)
    got = b.dec_keys("sae-b", "sae-a", [kid for kid, _ in keys])
    assert got == keys
    with pytest.raises(KmsError) as exc:                   # never twice
        b.dec_keys("sae-b", "sae-a", [keys[0][0]])
    assert code(exc) == (ErrorCode.APP_KMS_BAD_REQUEST, 400)


def test_a_third_sae_never_gets_the_key():
    a, b = pair(os.urandom(1024))
    keys, res = a.enc_keys("sae-a", "sae-b", number=1)
    b.apply(res)
    with pytest.raises(KmsError) as exc:       # sae-c: same KME as sae-b, not the slave named
        b.dec_keys("sae-c", "sae-a", [keys[0][0]])
    assert code(exc) == (ErrorCode.APP_KMS_UNAUTHORIZED, 401)
    with pytest.raises(KmsError) as exc:       # an SAE of the master's own KME
        a.dec_keys("sae-a2", "sae-a", [keys[0][0]])
    assert exc.value.status == 400             # (its KME has no such pending key)
    # the refusal left the key for its slave
    assert b.dec_keys("sae-b", "sae-a", [keys[0][0]]) == keys


def test_two_masters_on_both_sides_never_share_bytes():
    a, b = pair(os.urandom(2048))
    ka, ra = a.enc_keys("sae-a", "sae-b", number=4, size=128)
    kb, rb = b.enc_keys("sae-b", "sae-a", number=4, size=128)
    a.apply(rb)
    b.apply(ra)
    assert not {k for _, k in ka} & {k for _, k in kb}
    assert a.dec_keys("sae-a", "sae-b", [i for i, _ in kb]) == kb
    assert b.dec_keys("sae-b", "sae-a", [i for i, _ in ka]) == ka


def test_status_fields():
    a, _ = pair(os.urandom(2 * 32 * 10), key_size=256)
    s = a.status("sae-a", "sae-b")
    assert s == {"source_KME_ID": "kme-a", "target_KME_ID": "kme-b", "master_SAE_ID": "sae-a",
                 "slave_SAE_ID": "sae-b", "key_size": 256, "stored_key_count": 10,
                 "max_key_count": 100_000, "max_key_per_request": 128, "max_key_size": 1024,
                 "min_key_size": 64, "max_SAE_ID_count": 0}


@pytest.mark.parametrize("kw,status", [
    ({"number": 0}, 400), ({"number": 129}, 400), ({"number": True}, 400),
    ({"size": 12}, 400), ({"size": 8}, 400), ({"size": 2048}, 400),
    ({"additional_slave_sae_ids": ["sae-c"]}, 400), ({"number": 100, "size": 1024}, 503),
])
def test_enc_keys_refusals(kw, status):
    a, _ = pair(os.urandom(512))
    before = a.stored_bytes("kme-b")
    with pytest.raises(KmsError) as exc:
        a.enc_keys("sae-a", "sae-b", **kw)
    assert exc.value.status == status
    assert a.stored_bytes("kme-b") == before          # nothing taken


def test_unknown_and_misplaced_saes():
    a, _ = pair(os.urandom(512))
    with pytest.raises(KmsError) as exc:
        a.enc_keys("sae-b", "sae-a")          # sae-b is not attached to kme-a
    assert exc.value.status == 401
    with pytest.raises(KmsError) as exc:
        a.enc_keys("sae-a", "nobody")
    assert exc.value.status == 400
    with pytest.raises(KmsError) as exc:
        a.status("sae-a", "sae-a2")            # both on kme-a
    assert exc.value.status == 400


def test_a_reservation_out_of_step_is_refused():
    a, b = pair(os.urandom(512))
    _, r1 = a.enc_keys("sae-a", "sae-b", number=1, size=64)
    _, r2 = a.enc_keys("sae-a", "sae-b", number=1, size=64)
    with pytest.raises(KmsError):
        b.apply(r2)                              # r1 not applied yet: offsets disagree
    b.apply(r1)
    b.apply(r2)


def test_repeated_block_is_taken_once():
    a, _ = pair()
    assert a.add_material("kme-b", 7, bytes(64)) == 64
    assert a.add_material("kme-b", 7, bytes(64)) == 0
    assert a.stored_bytes("kme-b") == 32


@settings(max_examples=60, deadline=None, derandomize=True)
@given(ops=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 5),
                              st.sampled_from([64, 128, 256]),
                              st.sampled_from(["sae-b", "sae-c", "sae-a", "sae-a2"])),
                    min_size=1, max_size=30),
       blocks=st.lists(st.binary(min_size=64, max_size=600), min_size=1, max_size=4))
def test_every_key_reaches_exactly_its_slave(ops, blocks):
    a, b = pair()
    for i, blk in enumerate(blocks):
        a.add_material("kme-b", i, blk)
        b.add_material("kme-a", i, blk)
    stores = {"a": (a, b, "sae-a"), "b": (b, a, "sae-b")}
    delivered: dict[str, bytes] = {}
    for side, n, size, asker in ops:
        master_store, slave_store, master = stores[side]
        slave = "sae-a" if side == "b" else "sae-b"
        try:
            keys, res = master_store.enc_keys(master, slave, number=n, size=size)
        except KmsError as err:
            assert err.status == 503
            continue
        slave_store.apply(res)
        ids = [k for k, _ in keys]
        if asker != slave:                       # a third SAE (or the master) asks first
            with pytest.raises(KmsError):
                slave_store.dec_keys(asker, master, ids)
        got = slave_store.dec_keys(slave, master, ids)
        assert got == keys
        for kid, key in got:
            assert kid not in delivered
            delivered[kid] = key
        with pytest.raises(KmsError):
            slave_store.dec_keys(slave, master, ids[:1])
    # no two keys share bytes from the same place: all handed-out material distinct in total
    assert sum(len(k) for k in delivered.values()) <= sum(len(b) // 2 * 2 for b in blocks)
