"""The ETSI GS QKD 014 REST API (qstack.emu.kms) over real HTTPS with client
certificates (a private CA made with ``cryptography``), called with httpx on
trio: the standard's fields, the key given to the master SAE reaching the
slave SAE once, and the error paths (400, 401, 503 with a message; a client
without a certificate refused at the handshake)."""
from __future__ import annotations

import base64
import os
import ssl

import httpx
import pytest
import trio

from qstack.app.qkd.keystore import KeyStore
from qstack.emu.kms import apps_for, make_certs, serve_kme

SAES = {"sae-a": "alice", "sae-b": "bob", "sae-x": "bob"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("kms"), ["alice", "bob"], ["sae-a", "sae-b", "sae-x"])


def client(certs, sae=None) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if sae is not None:
        ctx.load_cert_chain(str(certs / f"{sae}.pem"), str(certs / f"{sae}.key"))
    return httpx.AsyncClient(verify=ctx, timeout=10)


def serve(certs, material: bytes, body):
    stores = {n: KeyStore(n, SAES, key_size=256, max_key_per_request=8) for n in ("alice", "bob")}
    stores["alice"].add_material("bob", 0, material)
    stores["bob"].add_material("alice", 0, material)
    apps = apps_for(stores)

    async def main():
        async with trio.open_nursery() as nursery:
            ports = {n: await nursery.start(serve_kme, apps[n], 0, certs, n) for n in apps}
            urls = {n: f"https://127.0.0.1:{p}/api/v1/keys" for n, p in ports.items()}
            await body(urls, stores)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_status_enc_dec_once(certs):
    async def body(urls, stores):
        async with client(certs, "sae-a") as a, client(certs, "sae-b") as b:
            r = await a.get(f"{urls['alice']}/sae-b/status")
            assert r.status_code == 200
            st = r.json()
            assert st["source_KME_ID"] == "alice" and st["target_KME_ID"] == "bob"
            assert st["master_SAE_ID"] == "sae-a" and st["slave_SAE_ID"] == "sae-b"
            assert st["stored_key_count"] == 1024 // 2 * 8 // 256
            for k in ("key_size", "max_key_count", "max_key_per_request", "max_key_size",
                      "min_key_size", "max_SAE_ID_count"):
                assert isinstance(st[k], int)
            r = await a.post(f"{urls['alice']}/sae-b/enc_keys", json={"number": 2, "size": 128})
            assert r.status_code == 200
            keys = r.json()["keys"]
            assert len(keys) == 2 and all(len(base64.b64decode(k["key"])) == 16 for k in keys)
            r = await a.get(f"{urls['alice']}/sae-b/enc_keys", params={"number": 1})
            assert r.status_code == 200
            (third,) = r.json()["keys"]
            # the slave gets them by id: POST with key_IDs, GET with key_ID
            r = await b.post(f"{urls['bob']}/sae-a/dec_keys",
                             json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
            assert r.status_code == 200 and r.json()["keys"] == keys
            r = await b.get(f"{urls['bob']}/sae-a/dec_keys", params={"key_ID": third["key_ID"]})
            assert r.status_code == 200 and r.json()["keys"] == [third]
            # never twice
            r = await b.get(f"{urls['bob']}/sae-a/dec_keys", params={"key_ID": third["key_ID"]})
            assert r.status_code == 400 and "delivered already" in r.json()["message"]
    serve(certs, os.urandom(1024), body)


def test_error_paths(certs):
    async def body(urls, stores):
        async with client(certs, "sae-a") as a, client(certs, "sae-b") as b, \
                client(certs, "sae-x") as x:
            r = await a.post(f"{urls['alice']}/sae-b/enc_keys", json={"number": 1})
            kid = r.json()["keys"][0]["key_ID"]
            # a third SAE (same KME as the slave) may not have it: 401
            r = await x.get(f"{urls['bob']}/sae-a/dec_keys", params={"key_ID": kid})
            assert r.status_code == 401 and kid in r.json()["message"]
            # the slave may still
            r = await b.get(f"{urls['bob']}/sae-a/dec_keys", params={"key_ID": kid})
            assert r.status_code == 200
            # an SAE asking a KME it is not attached to: 401
            r = await b.get(f"{urls['alice']}/sae-a/status")
            assert r.status_code == 401 and r.json()["message"]
            # bad parameters: 400
            for req in ({"number": 0}, {"size": 100}, {"number": 9},
                        {"number": 1, "extension_mandatory": [{"x": 1}]},
                        {"number": 1, "additional_slave_SAE_IDs": ["sae-x"]}):
                r = await a.post(f"{urls['alice']}/sae-b/enc_keys", json=req)
                assert r.status_code == 400 and r.json()["message"], req
            r = await a.get(f"{urls['alice']}/sae-b/enc_keys", params={"number": "two"})
            assert r.status_code == 400
            r = await a.post(f"{urls['alice']}/sae-b/enc_keys", content=b"{not json")
            assert r.status_code == 400
            r = await a.get(f"{urls['alice']}/nobody/status")
            assert r.status_code == 400
            r = await b.post(f"{urls['bob']}/sae-a/dec_keys", json={"key_IDs": "x"})
            assert r.status_code == 400
            # more than is stored: 503
            r = await a.post(f"{urls['alice']}/sae-b/enc_keys", json={"number": 8, "size": 1024})
            assert r.status_code == 503 and "bits" in r.json()["message"]
            r = await a.delete(f"{urls['alice']}/sae-b/status")
            assert r.status_code == 405
        # no client certificate: the TLS handshake is refused
        async with client(certs) as anon:
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                await anon.get(f"{urls['alice']}/sae-b/status")
    serve(certs, os.urandom(256), body)
