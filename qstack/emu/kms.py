"""The key management service of an emulated network: ETSI GS QKD 014 over HTTPS.

``qstack net up`` starts, when the network file has a ``[kms]`` table
(:class:`qstack.config.KmsSpec`; ``specs/kms.md`` is the normative text), one
KME process per node (``python -m qstack.emu.kms RUN NODE``, :func:`run_kme`).
Each is an application of its own node's daemon, as a KME is a separate box
beside its QKD devices, and runs, on trio:

* the node's :class:`~qstack.app.qkd.keystore.KeyStore` behind an HTTPS
  server (hypercorn's trio worker serving :class:`KmsApp`, a small ASGI
  application) on the node's port, with TLS and client certificates: the
  client's certificate must be signed by the network's CA and its common name
  is the SAE id;
* per ``[kms] links`` pair it is in, a :class:`PairLink`: BBM92 runs
  (:func:`qstack.app.qkd.entangled.bbm92`) with the other node through the
  two daemons whenever either KME holds fewer than ``refill_bits`` for the
  other, each end taking in its own run's key; and the KME-to-KME messages
  (a block's agreement, a master KME's
  :class:`~qstack.app.qkd.keystore.Reservation` and its answer) over a
  transport socket between the two KMEs: the emulation's channels, every hop
  authenticated by the network's secret (``specs/wire.md``). A master KME
  answers its SAE only once the slave KME has applied the reservation.

Why processes of their own rather than a part of each daemon: the daemon is
the node's real-time protocol loop, and TLS handshakes and HTTP parsing in
it would delay its timers; an SAE-facing HTTPS server is the node's attack
surface, which a fault in should not take the protocol stack down with it;
and the KME then reaches QKD the way any application does (``qstack.connect``),
so the daemon needs nothing of the KMS.

:func:`make_certs` writes a private CA and the certificates (for the KMEs and
every SAE of the table) with ``cryptography``; ``net up`` puts them in the
run's log directory, under ``kms/``.
"""
from __future__ import annotations

import base64
import collections
import datetime
import hashlib
import inspect
import ipaddress
import json
import math
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

import numpy as np
import trio

from qstack.app.qkd.keystore import KeyStore, KmsError, Reservation
from qstack.core.errors import ErrorCode, QStackError

__all__ = ["KmsApp", "PairLink", "make_certs", "serve_kme", "run_kme", "main"]

_PREFIX = "/api/v1/keys/"

# ---------------------------------------------------------------- client identity
# hypercorn gives an ASGI application no TLS details; its trio TCP server is
# replaced by a subclass that reads the verified client certificate's common
# name after the handshake and files it under the connection's two
# addresses, server and client, which the ASGI scope carries ("server",
# "client"). Both are needed: the registry is shared by every KME of the
# process, and Linux hands one ephemeral client port to connections towards
# different servers at once. The subclass changes nothing else (plain-TCP
# connections pass through untouched).

_PEER_CN: dict[tuple, str] = {}
_PATCHED = False


def _connection_key(server: Any, client: Any) -> tuple:
    """The registry key of a connection from its server and client
    addresses, socket or ASGI form alike: (host, port) of each (an IPv6
    socket address's flow info and scope id left out, as in the scope)."""
    return (tuple(server or ())[:2], tuple(client or ())[:2])


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
                    sock = stream.transport_stream.socket
                    server, peer = sock.getsockname(), sock.getpeername()
                    cn = next((v for rdn in (cert or {}).get("subject", ())
                               for k, v in rdn if k == "commonName"), None)
                    if cn is not None:
                        key = _connection_key(server, peer)
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
    peer KME, a function or a coroutine function (raises :class:`KmsError`
    if it cannot be applied: the keys are then not given out). ``identity``: ``scope -> SAE id or None`` (default:
    the client certificate's common name)."""

    def __init__(self, store: KeyStore, deliver: Callable[[Reservation], None],
                 identity: Callable[[dict], str | None] | None = None) -> None:
        self.store = store
        self.deliver = deliver
        self.identity = identity or (lambda scope: _PEER_CN.get(
            _connection_key(scope.get("server"), scope.get("client"))))

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
            status, payload = await self.handle(scope, body)
        except KmsError as err:
            status, payload = err.status, {"message": err.detail}
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def handle(self, scope: dict, body: bytes) -> tuple[int, dict]:
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
            done = self.deliver(reservation)
            if inspect.isawaitable(done):       # (a KME of its own: over the network)
                await done
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


#: Transport ports of a ``[kms] links`` pair number i (at its second node):
#: the BBM92 runs, and the KME-to-KME control connection.
BBM92_PORT = 18_014
CONTROL_PORT = 18_214
#: How long a master KME waits for the slave KME's answer to a reservation,
#: a slave KME for the key material a reservation names, and the second node
#: of a pair for its own end's result of a run the first node names (s).
ANSWER_S = 20.0


class _Signal:
    """Wakes every task waiting on it each time it fires (then renews itself)."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def _wait_for(signal: _Signal, find: Callable[[], Any], timeout_s: float | None) -> Any:
    """The first value of ``find()`` other than None, tried now and each time
    ``signal`` fires; None after ``timeout_s`` seconds (None: no limit)."""
    with trio.move_on_after(math.inf if timeout_s is None else timeout_s):
        while True:
            value = find()
            if value is not None:
                return value
            await signal.wait()
    return None


@dataclass(frozen=True)
class _Outcome:
    """One end's outcome of a run: ``ok``; ``key`` (whole bytes, empty unless
    ok); ``qber``; ``reason`` (why no key); ``qkd_block``: decoy BB84, the
    block id the first node's ``app.qkd`` gave it (0: no block started),
    which the second node's result of the same block carries."""

    ok: bool
    key: bytes
    qber: float
    reason: str
    qkd_block: int | None = None

    @property
    def has_key(self) -> bool:
        return self.ok and bool(self.key)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.key if self.ok else b"").hexdigest()


def _decoy_outcome(res: Any) -> _Outcome:
    key = np.packbits(res.key).tobytes()[: res.key_length // 8] if res.ok else b""  # whole bytes
    return _Outcome(res.ok, key, res.qber_test, res.reason, res.block_id)


def _agree(mine: _Outcome, theirs: dict | None, late: str) -> tuple[bool, str]:
    """Whether a run's key goes in the store, given this end's outcome and the
    other end's ``block`` message (None: ``late`` says why there is none),
    and if not, why."""
    if not mine.has_key:
        return False, mine.reason or "no key"
    if theirs is None:
        return False, late
    if not theirs.get("ok"):
        return False, f"the other end has no key ({theirs.get('detail') or 'it aborted'})"
    if theirs.get("sha256") != mine.sha256:
        return False, "the other end's key differs"
    return True, ""


class PairLink:
    """One KME's side of a ``[kms] links`` pair: this node ``node`` and the
    ``peer`` node, pair number ``index`` (``initiator``: this node is the
    pair's first, which starts the QKD runs and opens the control
    connection). Everything between the two KMEs goes over the emulation's
    own authenticated channels: transport sockets between the two KME
    applications, through the nodes' daemons (``specs/kms.md`` §4):

    * QKD runs, one after the other, while either store holds fewer than
      ``refill_bits`` for the other (the second node asks for a run with a
      ``refill`` message): BBM92 on transport port ``BBM92_PORT + index``, or
      decoy BB84 over the link (``[kms] protocol = "decoy-bb84"``: the first
      node's ``app.qkd`` starts a block, the second's takes part by itself);
    * on ``CONTROL_PORT + index``, JSON messages: per run n, the first
      node's ``block`` (its outcome, its key's SHA-256 and, decoy BB84, the
      ``app.qkd`` block id, which names the second node's result of that
      block: never the next result to come), the second's ``block`` in
      answer, and the first's ``taken``, the one decision both stores follow
      (the key goes in at both ends or at neither); ``reserve`` (a master
      KME's reservation) answered by ``answer``; and ``refill``.
    """

    def __init__(self, node: str, peer: str, index: int, initiator: bool, store: KeyStore,
                 spec: Any, log: Callable[[str], None]) -> None:
        self.node, self.peer, self.index, self.initiator = node, peer, index, initiator
        self.store = store
        self.spec = spec
        self.log = log
        self.out_send, self.out_recv = trio.open_memory_channel(float("inf"))
        self.answers: dict[int, list] = {}         # reservation number -> [event, answer]
        self.material = _Signal()                   # fires on each block taken in
        self.refill_asked = _Signal()               # (first node) fires as the peer asks for a run
        self.refill_at = -1                         # ... with this many runs in at its end
        self.next_reservation = 0
        self.blocks_in = 0                          # runs settled (taken in or not)
        # first node: the run it waits for the answer of, and that answer
        self.settling = -1
        self.answered: dict[int, dict] = {}
        self.answer_arrived = _Signal()
        # second node: the first's "block" messages not settled yet (in
        # order), its "taken" ones, and this end's own results: decoy
        # BB84, app.qkd's receive-side results in arrival order; BBM92,
        # run number -> outcome
        self.announced: collections.deque[dict] = collections.deque()
        self.announce_arrived = _Signal()
        self.verdicts: dict[int, dict] = {}
        self.verdict_arrived = _Signal()
        self.received: list = []
        self.own: dict[int, _Outcome] = {}
        self.own_arrived = _Signal()

    def _tag(self, n: int | None = None) -> str:
        return f"kms: {self.node}-{self.peer}" + ("" if n is None else f" block {n}")

    # ------------------------------------------------------------ reservations
    async def reserve(self, r: Reservation) -> None:
        """Hand ``r`` to the peer KME; return once it has applied it (raises
        :class:`KmsError` ``APP_KMS_NO_KEY`` if it refused or did not answer
        within :data:`ANSWER_S`: the keys are then not given out)."""
        self.next_reservation += 1
        number = self.next_reservation
        box: list = [trio.Event(), None]
        self.answers[number] = box
        # (queued at once, in the order enc_keys took the bytes: the peer
        # applies reservations in order)
        self.out_send.send_nowait({"t": "reserve", "n": number, **_reservation_dict(r)})
        with trio.move_on_after(ANSWER_S):
            await box[0].wait()
        self.answers.pop(number, None)
        answer = box[1]
        if answer is None or not answer.get("ok"):
            why = "no answer" if answer is None else answer.get("detail", "refused")
            raise KmsError(ErrorCode.APP_KMS_NO_KEY,
                           f"KME {self.peer} did not take the reservation: {why}")

    async def _apply(self, msg: dict) -> dict:
        r = Reservation(msg["master_kme"], msg["slave_kme"], msg["master_sae"], msg["slave_sae"],
                        int(msg["size"]), int(msg["offset"]), tuple(msg["key_ids"]))
        with trio.move_on_after(ANSWER_S):
            while True:
                try:
                    self.store.apply(r)
                    return {"t": "answer", "n": msg["n"], "ok": True}
                except KmsError as err:
                    if not self.store.can_wait_for(r):
                        return {"t": "answer", "n": msg["n"], "ok": False, "detail": err.detail}
                await self.material.wait()      # its block is not in yet here
        return {"t": "answer", "n": msg["n"], "ok": False,
                "detail": f"no key material for offset {r.offset} within {ANSWER_S:g} s"}

    # ------------------------------------------------------------ the control connection
    async def control(self, ctx: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Open (first node) or accept the control connection and serve it."""
        port = CONTROL_PORT + self.index
        if self.initiator:
            sock = await _connect(ctx, self.peer, port)
        else:
            sock = await ctx.listen(port).accept()
        task_status.started()

        async def writer() -> None:
            async for msg in self.out_recv:
                await sock.send(json.dumps(msg).encode())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            while True:
                msg = json.loads(await sock.recv())
                kind = msg.get("t")
                if kind == "reserve":
                    self.out_send.send_nowait(await self._apply(msg))
                elif kind == "answer":
                    box = self.answers.get(msg.get("n"))
                    if box is not None:
                        box[1] = msg
                        box[0].set()
                elif kind == "block":
                    self._block_message(msg)
                elif kind == "taken":            # (second node)
                    self.verdicts[int(msg["block"])] = msg
                    self.verdict_arrived.fire()
                elif kind == "refill":           # (asked with that many blocks in)
                    self.refill_at = max(self.refill_at, int(msg.get("blocks", -1)))
                    self.refill_asked.fire()

    def _block_message(self, msg: dict) -> None:
        n = int(msg["block"])
        if not self.initiator:
            self.announced.append(msg)
            self.announce_arrived.fire()
        elif n == self.settling:
            self.answered[n] = msg
            self.answer_arrived.fire()
        else:
            # (it came after this end decided: its "taken" refused the run)
            self.log(f"{self._tag(n)}: the other end's outcome came too late (dropped; "
                     f"the block was refused at both ends)")

    # ------------------------------------------------------------ key material
    def open(self, ctx: Any) -> None:
        """Keep, from now on, this node's receive-side results of decoy-BB84
        blocks from the peer (second node, ``protocol = "decoy-bb84"``).
        Called before the first await after connecting: the daemon hands a
        result to the applications attached when its block ends (the first
        to attach gets those that ended before), and one that no callback
        keeps is gone."""
        if self.spec.kms.protocol == "decoy-bb84" and not self.initiator:
            from qstack.app.qkd.bb84 import QkdResult

            def kept(ev: Any) -> None:
                if isinstance(ev, QkdResult) and ev.role == "receive" and ev.peer == self.peer:
                    self.received.append(ev)
                    self.own_arrived.fire()
            ctx.runtime.subscribe(kept)

    def _low(self) -> bool:
        return self.store.stored_bytes(self.peer) * 8 < self.spec.kms.refill_bits

    async def _refill_asks(self) -> None:
        """(second node) Ask for a run whenever the store is low, once per block."""
        asked_at = -1
        while True:
            if self._low() and asked_at != self.blocks_in:
                self.out_send.send_nowait({"t": "refill", "blocks": self.blocks_in})
                asked_at = self.blocks_in
            await trio.sleep(0.2)

    async def _wait_until_low(self) -> None:
        """(first node) Until its store is low or the other KME asks for a run
        (a request made before the last block ended is stale: that block
        answered it)."""
        while not self._low() and self.refill_at < self.blocks_in:
            with trio.move_on_after(0.2):
                await self.refill_asked.wait()

    async def feed(self, ctx: Any) -> None:
        """Run QKD with the peer, run after run, while a store runs low, each
        run settled with the other KME (:meth:`open` first, at the second
        node of a decoy-BB84 pair)."""
        decoy = self.spec.kms.protocol == "decoy-bb84"
        if self.initiator:
            run = (self._decoy_runner if decoy else self._bbm92_runner)(ctx)
            n = 0
            while True:
                await self._wait_until_low()
                await self._settle_first(n, await run())
                n += 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._refill_asks)
            if not decoy:
                nursery.start_soon(self._bbm92_second, ctx)
            while True:
                msg = await _wait_for(self.announce_arrived,
                                      lambda: self.announced.popleft() if self.announced else None,
                                      None)
                await self._settle_second(msg)

    def _decoy_runner(self, ctx: Any) -> Callable:
        """(first node) One decoy-BB84 block over the link: its :class:`_Outcome`."""
        from qstack.app.qkd import api as qkd

        kms = self.spec.kms

        async def run() -> _Outcome:
            return _decoy_outcome(await qkd.bb84(ctx, self.peer, kms.pulses, finite=kms.finite,
                                                 eps_sec=kms.eps_sec, eps_cor=kms.eps_cor))
        return run

    def _bbm92_runner(self, ctx: Any) -> Callable:
        """One BBM92 run over a socket of its own: its :class:`_Outcome`."""
        from qstack.app.qkd.entangled import EntangledConfig, bbm92

        kms = self.spec.kms
        cfg = EntangledConfig(test_fraction=kms.test_fraction, eps_sec=kms.eps_sec,
                              eps_cor=kms.eps_cor, batch=kms.batch)
        port = BBM92_PORT + self.index
        listener = None if self.initiator else ctx.listen(port)

        async def run() -> _Outcome:
            sock = await (_connect(ctx, self.peer, port) if self.initiator
                          else listener.accept())
            res = await bbm92(ctx, sock, kms.pairs, initiator=self.initiator, config=cfg)
            await sock.close()
            key = res.key_bytes()[: res.key_length // 8] if res.ok else b""  # whole bytes
            return _Outcome(res.ok, key, res.qber, res.reason)
        return run

    async def _bbm92_second(self, ctx: Any) -> None:
        """(second node) BBM92 runs as the first node opens them (one
        connection each, in order): each outcome kept under its number."""
        run = self._bbm92_runner(ctx)
        n = 0
        while True:
            self.own[n] = await run()
            self.own_arrived.fire()
            n += 1

    def _received(self, block_id: int) -> Any:
        """(second node) This end's result of ``app.qkd`` block ``block_id``
        (None: not here yet); results that came before it are of blocks no
        run will name (a block before this KME, one the first node gave up
        on): dropped, logged."""
        for i, res in enumerate(self.received):
            if res.block_id == block_id:
                for old in self.received[:i]:
                    self.log(f"{self._tag()}: app.qkd block {old.block_id}'s result dropped "
                             f"(no run of KME {self.peer} names it)")
                del self.received[: i + 1]
                return res
        return None

    async def _own_outcome(self, msg: dict) -> _Outcome:
        """(second node) This end's outcome of the run the first node's
        ``block`` message ``msg`` names, waited for up to :data:`ANSWER_S`."""
        n = int(msg["block"])
        if self.spec.kms.protocol == "decoy-bb84":
            bid = int(msg.get("qkd_block") or 0)
            if bid == 0:
                return _Outcome(False, b"", math.nan, "no block was started")
            res = await _wait_for(self.own_arrived, lambda: self._received(bid), ANSWER_S)
            return (_decoy_outcome(res) if res is not None else
                    _Outcome(False, b"", math.nan, f"no result of app.qkd block {bid} here "
                                                    f"within {ANSWER_S:g} s"))
        out = await _wait_for(self.own_arrived, lambda: self.own.pop(n, None), ANSWER_S)
        return out or _Outcome(False, b"", math.nan, f"no run {n} here within {ANSWER_S:g} s")

    async def _settle_first(self, n: int, mine: _Outcome) -> None:
        """(first node) Run ``n``: its outcome to the other KME, that one's
        answer, and the decision (``taken``) both ends follow."""
        self.settling = n
        msg = {"t": "block", "block": n, "ok": mine.has_key, "sha256": mine.sha256,
               "detail": mine.reason}
        if mine.qkd_block is not None:
            msg["qkd_block"] = mine.qkd_block
        self.out_send.send_nowait(msg)
        # (the second node waits up to ANSWER_S for its own result first)
        theirs = await _wait_for(self.answer_arrived, lambda: self.answered.pop(n, None),
                                 2 * ANSWER_S)
        self.settling = -1
        take, why = _agree(mine, theirs, f"KME {self.peer} did not answer within "
                                         f"{2 * ANSWER_S:g} s")
        self.out_send.send_nowait({"t": "taken", "block": n, "ok": take, "detail": why})
        self._conclude(n, mine, take, why)

    async def _settle_second(self, first: dict) -> None:
        """(second node) The run the first node's ``block`` message ``first``
        names: this end's outcome in answer, then its ``taken``."""
        n = int(first["block"])
        mine = await self._own_outcome(first)
        self.out_send.send_nowait({"t": "block", "block": n, "ok": mine.has_key,
                                   "sha256": mine.sha256, "detail": mine.reason})
        # (no time limit: the first node answers every "block" it sent with a
        # "taken", and deciding alone could leave the two stores different)
        verdict = await _wait_for(self.verdict_arrived, lambda: self.verdicts.pop(n, None), None)
        take, why = _agree(mine, first, "")
        if not verdict.get("ok"):
            take, why = False, why or f"KME {self.peer} refused it: {verdict.get('detail')}"
        elif not take:      # (cannot be: the first node compared the same two digests)
            self.log(f"{self._tag(n)}: KME {self.peer} took it in, this end not ({why})")
        self._conclude(n, mine, take, why)

    def _conclude(self, n: int, mine: _Outcome, take: bool, why: str) -> None:
        self.blocks_in += 1
        if take:
            self.store.add_material(self.peer, n, mine.key)
            self.material.fire()
            self.log(f"{self._tag(n)}: {8 * len(mine.key)} bits (QBER {mine.qber:.4f})")
        else:
            self.log(f"{self._tag(n)}: no key ({why})")


def _reservation_dict(r: Reservation) -> dict:
    return {"master_kme": r.master_kme, "slave_kme": r.slave_kme, "master_sae": r.master_sae,
            "slave_sae": r.slave_sae, "size": r.size, "offset": r.offset,
            "key_ids": list(r.key_ids)}


async def _connect(ctx: Any, peer: str, port: int) -> Any:
    """A socket to ``peer``'s ``port``, retried while the far end does not listen yet."""
    while True:
        try:
            return await ctx.connect(peer, port)
        except QStackError as err:
            if err.code != ErrorCode.TRANSPORT_CONNECTION_REFUSED:
                raise
            await trio.sleep(0.02)


async def run_kme(run_path: str, node: str, *,
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """The KME process of ``node`` in the network of ``run_path`` (module doc):
    its store behind the HTTPS API, and one :class:`PairLink` per ``[kms]
    links`` pair it is in, all as one application of its node's daemon."""
    import qstack
    from qstack.config import load_network
    from qstack.emu.runfile import RunFile

    run = RunFile.load(run_path)
    spec = load_network(run.network)
    store = stores_for(spec)[node]
    log = lambda s: print(s, flush=True)          # noqa: E731
    links: dict[str, PairLink] = {}
    for i, (a, b) in enumerate(spec.kms.links):
        if node in (a, b):
            peer = b if node == a else a
            links[peer] = PairLink(node, peer, i, node == a, store, spec, log)

    async def deliver(r: Reservation) -> None:
        link = links.get(r.slave_kme)
        if link is None:
            raise KmsError(ErrorCode.APP_KMS_NO_KEY, f"KME {node} shares no keys with "
                                                     f"{r.slave_kme}")
        await link.reserve(r)

    async with qstack.connect(node, run, app=f"kme-{node}") as ctx:
        for link in links.values():
            link.open(ctx)              # (at once: before a result can come and go)
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_kme, KmsApp(store, deliver), run.kms["ports"][node],
                                run.kms["certs"], node)
            for link in links.values():
                nursery.start_soon(link.control, ctx)
                nursery.start_soon(link.feed, ctx)
            task_status.started()


def main(argv: list[str] | None = None) -> int:
    """``python -m qstack.emu.kms RUNFILE NODE``: the KME process of ``NODE``
    that ``net up`` starts."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m qstack.emu.kms RUNFILE NODE", file=sys.stderr)
        return 2
    trio.run(run_kme, args[0], args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
