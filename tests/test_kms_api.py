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

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

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


def _tls(certs, sae: str, sock):
    """``sock`` (connected) wrapped in TLS with ``sae``'s certificate, handshake done."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / f"{sae}.pem"), str(certs / f"{sae}.key"))
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def _get_status(tls, url: str) -> int:
    """GET ``url`` (HTTP/1.1, keep-alive) over the TLS socket ``tls``: the status code."""
    host_port, path = url.split("://", 1)[1].split("/", 1)
    tls.sendall(f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        chunk = tls.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_one_client_port_towards_two_kmes(certs):
    # Linux gives one ephemeral port to connections towards different servers
    # at once; the KMEs of a process must still tell their callers apart (a
    # client-address-only registry let sae-x's handshake at bob overwrite
    # sae-a's identity at alice: a 401 for sae-a).
    import socket

    def port(url: str) -> int:
        return int(url.split(":")[2].split("/")[0])

    async def body(urls, stores):
        def both() -> tuple[int, int]:
            socks = [socket.socket() for _ in range(2)]
            for s in socks:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            socks[0].bind(("127.0.0.1", 0))
            socks[1].bind(socks[0].getsockname())
            for s, kme in zip(socks, ("alice", "bob")):
                s.connect(("127.0.0.1", port(urls[kme])))
            assert socks[0].getsockname() == socks[1].getsockname()
            # sae-a's handshake at alice first, then sae-x's at bob (its answer
            # read, so bob has filed it), then sae-a asks alice
            with _tls(certs, "sae-a", socks[0]) as a, _tls(certs, "sae-x", socks[1]) as x:
                x_status = _get_status(x, f"{urls['bob']}/sae-a/status")
                return _get_status(a, f"{urls['alice']}/sae-b/status"), x_status
        # both callers are attached where they ask, with a slave at the other KME
        assert await trio.to_thread.run_sync(both) == (200, 200)
    serve(certs, os.urandom(256), body)
