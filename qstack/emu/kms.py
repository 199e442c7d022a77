"""The key management service of an emulated network: ETSI GS QKD 014 over HTTPS.

``qstack net up`` starts it (one process, ``python -m qstack.emu.kms RUN``)
when the network file has a ``[kms]`` table (:class:`qstack.config.KmsSpec`;
``specs/kms.md`` is the normative text). It runs, on trio:

* one KME per node: a :class:`~qstack.app.qkd.keystore.KeyStore` behind an
  HTTPS server (hypercorn's trio worker serving :class:`KmsApp`, a small ASGI
  application) on the node's port, with TLS and client certificates: the
  client's certificate must be signed by the network's CA and its common name
  is the SAE id;
* per ``[kms] links`` pair, a feeder that runs BBM92
  (:func:`qstack.app.qkd.entangled.bbm92`) between the two nodes through
  their daemons (``qstack.connect``) whenever either KME holds fewer than
  ``refill_bits`` for the other, and gives both KMEs the (identical) key;
* the KME-to-KME message: a master KME's
  :class:`~qstack.app.qkd.keystore.Reservation` is applied to the slave
  KME's store before the master's answer leaves (both live in this process).

:func:`make_certs` writes a private CA and the certificates (for the KMEs and
every SAE of the table) with ``cryptography``; ``net up`` puts them in the
run's log directory, under ``kms/``.
"""
from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

import trio

from qstack.app.qkd.keystore import KeyStore, KmsError, Reservation
from qstack.core.errors import ErrorCode, QStackError

__all__ = ["KmsApp", "make_certs", "serve_kme", "run_kms", "main"]

_PREFIX = "/api/v1/keys/"

# ---------------------------------------------------------------- client identity
# hypercorn gives an ASGI application no TLS details; its trio TCP server is
# replaced by a subclass that reads the verified client certificate's common
# name after the handshake and files it under the connection's client
# address, which the ASGI scope carries ("client"). The subclass changes
# nothing else (plain-TCP connections pass through untouched).

_PEER_CN: dict[tuple, str] = {}
_PATCHED = False


def _install_identity() -> None:
    global _PATCHED
    if _PATCHED:
        return
    import hypercorn.trio.run as hrun
    from hypercorn.trio.tcp_server import TCPServer

    class _IdentityTCPServer(TCPServer):
        async def run(self) -> None:
            key = None
            stream = self.stream
            if isinstance(stream, trio.SSLStream):
                try:
                    with trio.fail_after(self.config.ssl_handshake_timeout):
                        await stream.do_handshake()
                    cert = stream.getpeercert()
                    peer = stream.transport_stream.socket.getpeername()
                    cn = next((v for rdn in (cert or {}).get("subject", ())
                               for k, v in rdn if k == "commonName"), None)
                    if cn is not None:
                        key = (peer[0], peer[1])
                        _PEER_CN[key] = cn
                except (trio.BrokenResourceError, trio.TooSlowError, OSError):
                    return          # the handshake failed (no or a bad certificate)
            try:
                await super().run()
            finally:
                if key is not None:
                    _PEER_CN.pop(key, None)

    hrun.TCPServer = _IdentityTCPServer
    _PATCHED = True


# ---------------------------------------------------------------- the ASGI application

class KmsApp:
    """The ETSI GS QKD 014 REST interface of one KME (ASGI 3).

    ``store``: the KME's key store; ``deliver``: hands a reservation to the
    peer KME (raises :class:`KmsError` if it cannot be applied: the keys are
    then not given out). ``identity``: ``scope -> SAE id or None`` (default:
    the client certificate's common name)."""

    def __init__(self, store: KeyStore, deliver: Callable[[Reservation], None],
                 identity: Callable[[dict], str | None] | None = None) -> None:
        self.store = store
        self.deliver = deliver
        self.identity = identity or (lambda scope: _PEER_CN.get(tuple(scope.get("client") or ())))

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        try:
            status, payload = self.handle(scope, body)
        except KmsError as err:
            status, payload = err.status, {"message": err.detail}
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    def handle(self, scope: dict, body: bytes) -> tuple[int, dict]:
        """(status, JSON body) of one request; raises :class:`KmsError`."""
        sae = self.identity(scope)
        if not sae:
            raise KmsError(ErrorCode.APP_KMS_UNAUTHORIZED, "no client certificate")
        path = scope["path"]
        if not path.startswith(_PREFIX) or path.count("/") != 5:
            return 404, {"message": f"no such resource {path}"}
        other, call = path[len(_PREFIX):].split("/")
        method = scope["method"]
        if call not in ("status", "enc_keys", "dec_keys"):
            return 404, {"message": f"no such resource {path}"}
        allowed = ("GET",) if call == "status" else ("GET", "POST")
        if method not in allowed:
            return 405, {"message": f"{method} {call}: use {' or '.join(allowed)}"}
        query = parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True)
        req = _json(body) if method == "POST" else {}
        if call == "status":
            return 200, self.store.status(sae, other)
        if call == "enc_keys":
            if method == "GET":
                req = {k: _int_param(k, v[-1]) for k, v in query.items() if k in ("number", "size")}
            if req.get("extension_mandatory"):
                raise KmsError(ErrorCode.APP_KMS_BAD_REQUEST,
                               "extension_mandatory: no extension is supported")
            keys, reservation = self.store.enc_keys(
                sae, other, req.get("number", 1), req.get("size"),
                req.get("additional_slave_SAE_IDs") or ())
            self.deliver(reservation)
            return 200, _container(keys)
        # dec_keys
        if method == "GET":
            ids = query.get("key_ID", [])
        else:
            items = req.get("key_IDs")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise KmsError(ErrorCode.APP_KMS_BAD_REQUEST,
                               'key_IDs: expected a list of {"key_ID": ...} objects')
            ids = [i.get("key_ID") for i in items]
        return 200, _container(self.store.dec_keys(sae, other, ids))


def _json(body: bytes) -> dict:
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        raise KmsError(ErrorCode.APP_KMS_BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(req, dict):
        raise KmsError(ErrorCode.APP_KMS_BAD_REQUEST, "the body must be a JSON object")
    return req


def _int_param(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise KmsError(ErrorCode.APP_KMS_BAD_REQUEST,
                       f"{name}: expected an integer, got {value!r}") from None


def _container(keys: list[tuple[str, bytes]]) -> dict:
    return {"keys": [{"key_ID": kid, "key": base64.b64encode(k).decode()} for kid, k in keys]}


# ---------------------------------------------------------------- certificates

def make_certs(directory: str | Path, kmes: list[str], saes: list[str], days: int = 30) -> Path:
    """A private CA and certificates under ``directory``: ``ca.pem``; per KME
    ``kme-NAME.pem`` / ``.key`` (for 127.0.0.1 and localhost); per SAE
    ``NAME.pem`` / ``.key`` (common name: the SAE id). Keys are EC P-256,
    written mode 0600. Returns the directory."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(path: Path, key: Any) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("qstack kms CA"))
          .issuer_name(name("qstack kms CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(cn: str, server: bool, stem: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(out / f"{stem}.key", key)

    for kme in kmes:
        leaf(kme, True, f"kme-{kme}")
    for sae in saes:
        leaf(sae, False, sae)
    return out


# ---------------------------------------------------------------- serving

async def serve_kme(app: KmsApp, port: int, certs: str | Path, kme: str, *,
                    host: str = "127.0.0.1",
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` over HTTPS on ``host:port`` (0: a free port) with the
    certificates of :func:`make_certs` in ``certs``; client certificates
    required. ``task_status.started`` gets the port bound."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    _install_identity()
    certs = Path(certs)
    cfg = Config()
    cfg.bind = [f"{host}:{port}"]
    cfg.certfile = str(certs / f"kme-{kme}.pem")
    cfg.keyfile = str(certs / f"kme-{kme}.key")
    cfg.ca_certs = str(certs / "ca.pem")
    cfg.verify_mode = ssl.CERT_REQUIRED
    cfg.accesslog = None
    cfg.errorlog = None

    class _Started:
        def started(self, binds: Any = None) -> None:
            bound = int(str(binds[0]).rsplit(":", 1)[1]) if binds else port
            task_status.started(bound)

    await serve(app, cfg, task_status=_Started())


def stores_for(spec: Any) -> dict[str, KeyStore]:
    """A key store per node of ``spec.kms``."""
    saes = dict(spec.kms.saes)
    size = spec.kms.key_size
    return {node: KeyStore(node, saes, key_size=size, min_key_size=min(64, size),
                           max_key_size=max(1024, size)) for node in spec.nodes}


def apps_for(stores: dict[str, KeyStore]) -> dict[str, KmsApp]:
    """A :class:`KmsApp` per store, each reservation applied at its slave KME."""
    def deliver(r: Reservation) -> None:
        stores[r.slave_kme].apply(r)
    return {node: KmsApp(store, deliver) for node, store in stores.items()}


async def feed(stores: dict[str, KeyStore], a: str, b: str, run: Any, spec: Any, *,
               port: int = 18_014, once: bool = False, log: Callable[[str], None] = print) -> None:
    """Keep the KMEs of nodes ``a`` and ``b`` supplied: run BBM92 between the
    two (``a`` initiates) while either holds fewer than ``refill_bits`` for
    the other (every 0.2 s a check), and give both the key under one block
    id. ``once``: one run, then return."""
    import qstack
    from qstack.app.qkd.entangled import EntangledConfig, bbm92

    kms = spec.kms
    cfg = EntangledConfig(test_fraction=kms.test_fraction, eps_sec=kms.eps_sec,
                          eps_cor=kms.eps_cor, batch=kms.batch)
    block = 0
    while True:
        if not once and min(stores[a].stored_bytes(b), stores[b].stored_bytes(a)) * 8 \
                >= kms.refill_bits:
            await trio.sleep(0.2)
            continue
        out: dict[str, Any] = {}

        async def side(node: str, initiator: bool) -> None:
            async with qstack.connect(node, run, app=f"kms-{a}-{b}") as ctx:
                if initiator:
                    while True:        # (the other side may not listen yet)
                        try:
                            sock = await ctx.connect(b, port)
                            break
                        except QStackError as err:
                            if err.code != ErrorCode.TRANSPORT_CONNECTION_REFUSED:
                                raise
                            await trio.sleep(0.02)
                else:
                    sock = await ctx.listen(port).accept()
                out[node] = await bbm92(ctx, sock, kms.pairs, initiator=initiator, config=cfg)
                await sock.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, b, False)
            nursery.start_soon(side, a, True)
        ra, rb = out[a], out[b]
        if ra.ok and rb.ok and ra.key_bytes() == rb.key_bytes():
            key = ra.key_bytes()[: ra.key_length // 8]      # whole bytes only
            stores[a].add_material(b, block, key)
            stores[b].add_material(a, block, key)
            log(f"kms: {a}-{b} block {block}: {8 * len(key)} bits (QBER {ra.qber:.4f})")
        else:
            log(f"kms: {a}-{b} block {block}: no key ({ra.reason or rb.reason})")
        block += 1
        if once:
            return


async def run_kms(run_path: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """The KMS process of the network of ``run_path`` (see the module doc)."""
    from qstack.config import load_network
    from qstack.emu.runfile import RunFile

    run = RunFile.load(run_path)
    spec = load_network(run.network)
    stores = stores_for(spec)
    apps = apps_for(stores)
    certs = run.kms["certs"]
    async with trio.open_nursery() as nursery:
        for node, app in apps.items():
            await nursery.start(serve_kme, app, run.kms["ports"][node], certs, node)
        for i, (a, b) in enumerate(spec.kms.links):
            nursery.start_soon(lambda a=a, b=b, i=i: feed(
                stores, a, b, run, spec, port=18_014 + i,
                log=lambda s: print(s, flush=True)))
        task_status.started()


def main(argv: list[str] | None = None) -> int:
    """``python -m qstack.emu.kms RUNFILE``: the KMS process ``net up`` starts."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m qstack.emu.kms RUNFILE", file=sys.stderr)
        return 2
    trio.run(run_kms, args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
