"""Entanglement-based QKD over the socket API: BBM92 and E91, across repeaters.

Both run as application functions over one connected :class:`~qstack.transport.socket.QSocket`
(the same code under ``qstack.simulate`` and the emulation). The quantum
phase takes its raw key from the network's measure-directly service through
the transport (:meth:`~qstack.transport.socket.QSocket.measure_pairs` at the
initiator, :meth:`~qstack.transport.socket.QSocket.recv_measured` at the
receiver; ``specs/network.md`` "Measure directly"): each end measures its
half of every link pair as soon as its link delivers it, in a basis the
network layer draws per pair from its seeded stream out of the protocol's
basis set ("ZX" for BBM92, "E91" for E91), and the receiver's outcomes come
with the Pauli frame of the swaps folded in. No half is held by the
application and no memory is held at the ends while a pair is swapped
through the repeaters; both ends get the same pairs in the same order (the
transport binds each to one item sequence number at both ends). The
classical phase is a sequence of messages over the same socket
(``sock.send``/``sock.recv``; ``specs/qkd-entangled.md``):

1. receiver -> initiator: its bases (and a digest of the pair ids it got,
   which the initiator compares with its own: a mismatch aborts with
   ``"pairs do not match"``); 2. initiator -> receiver: its bases and
   the test subset of the sifted positions (a ``test_fraction`` of them, drawn
   by the initiator); 3. receiver -> initiator: its outcomes on the test
   positions (and, E91, on the CHSH positions); 4. initiator -> receiver: the
   verdict (QBER, S, or the abort reason);
5. Cascade (:mod:`.cascade`): the receiver corrects its key towards the
   initiator's, parity queries and replies as messages;
6. verification (:mod:`.verification`): the initiator's Toeplitz tag, the
   receiver's yes/no;
7. privacy amplification (:mod:`.amplification`): the initiator sends the
   Toeplitz seed and the final length, or the abort.

Both ends return an :class:`EntangledResult` with the same fields and, when
``ok``, identical keys; otherwise ``ok`` is False and ``reason`` says why
(``"pairs do not match"``, ``"QBER too high"``, ``"no Bell violation"`` (E91: S <= ``s_min``),
``"no sifted key"``, ``"verification failed"``, ``"no secret key"``).

Bases. BBM92 (Bennett, Brassard, Mermin, PRL 68, 557 (1992)): Z or X at both
ends; the key from the pairs measured in the same basis. E91 (Ekert, PRL 67,
661 (1991)), in the X-Z plane at angles theta from Z: the initiator 0, pi/4,
pi/2, the receiver pi/4, pi/2, 3pi/4. Equal angles (pi/4, pi/2) give the key;
initiator {0, pi/2} x receiver {pi/4, 3pi/4} give CHSH's
S = E(0, pi/4) - E(0, 3pi/4) + E(pi/2, pi/4) + E(pi/2, 3pi/4)
(on Phi+ E(a, b) = cos(a - b), S = 2 sqrt 2; on a Werner pair of fidelity F
every E shrinks by (4F - 1)/3, and the QBER of equal bases is 2(1 - F)/3).

Key length (Tomamichel, Lim, Gisin, Renner, Nat. Commun. 3, 634 (2012),
Eq. (2), mutually unbiased bases so q = 1):
l = floor(n (1 - h(Q + mu)) - leak_EC - log2(2 / (eps_sec^2 eps_cor))),
mu = sqrt((n + k)/(n k) (k + 1)/k ln(2/eps_sec)), with n key bits, k test
bits, Q the test bits' error rate (used as the tolerated rate: the block
aborts above ``qber_max``), leak_EC Cascade's disclosed parities; the last
term pays for the verification tag. E91 keys use the same bound (trusted
devices: the key pairs are BBM92's); S is reported and checked, not used in
the length.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from qstack.core.errors import ErrorCode
from qstack.network.service import MD_BASIS_SETS
from qstack.physical.qkd import binary_entropy

from ._common import QKDError, check_pos_int, check_prob
from .amplification import AmplificationSeed, amplify, toeplitz_seed
from .cascade import CascadeAlice, CascadeBob, CascadeStart, ParityQuery, ParityReply
from .verification import VerifyTag, check_tag, make_tag

__all__ = ["EntangledConfig", "EntangledResult", "bbm92", "e91", "key_length",
           "finite_size_mu", "chsh_value", "BBM92_BASES", "E91_INITIATOR", "E91_RECEIVER"]

#: Measurement directions as Bloch angles (theta from +Z, phi = 0: towards +X),
#: indexed by the settings the network reports (its basis sets
#: :data:`qstack.network.service.MD_BASIS_SETS` "ZX" and "E91").
BBM92_BASES = tuple((a, 0.0) for a in MD_BASIS_SETS["ZX"][0])     # Z, X
E91_INITIATOR = tuple((a, 0.0) for a in MD_BASIS_SETS["E91"][0])  # 0, pi/4, pi/2
E91_RECEIVER = tuple((a, 0.0) for a in MD_BASIS_SETS["E91"][1])   # pi/4, pi/2, 3pi/4

#: The network's basis set each protocol measures from.
BASIS_SET = {"bbm92": "ZX", "e91": "E91"}

#: Largest piece of one message (the socket's limit is 65536 bytes; one byte
#: says whether more pieces follow).
_PIECE = 65535


@dataclass(frozen=True)
class EntangledConfig:
    """Settings both ends must share.

    ``test_fraction``: share of the sifted pairs disclosed to estimate the
    QBER, in (0, 1). ``qber_max``: abort above this test error rate (11 %:
    where the asymptotic BBM92 rate 1 - 2h(Q) ends). ``s_min``: E91 aborts when
    S is not above it (2: the local bound). ``eps_sec``, ``eps_cor``: the
    composable security parameters. ``batch``: pairs asked of the network in
    one request (each sets up a circuit; at most 65535).
    ``timeout_ns``: each socket wait, ns (None: no limit). ``pairs_from``:
    "measure-directly" (the default: the network's measure-directly
    stream) or "kept": the transport's kept end-to-end pairs, each half
    measured by the application as it arrives, in an angle drawn from
    ``ctx.rng`` (what a network layer without the measure-directly service,
    e.g. ``network_layer="ideal"``, offers, and the comparison of
    ``benchmarks/bench_mdqkd.py``); the initiator then holds up to
    ``batch`` halves at once, so ``batch`` must fit its memory."""

    test_fraction: float = 0.2
    qber_max: float = 0.11
    s_min: float = 2.0
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    batch: int = 65535
    timeout_ns: int | None = None
    pairs_from: str = "measure-directly"

    def __post_init__(self) -> None:
        check_prob("EntangledConfig.test_fraction", self.test_fraction, open_low=True, open_high=True)
        check_prob("EntangledConfig.qber_max", self.qber_max)
        check_prob("EntangledConfig.eps_sec", self.eps_sec, open_low=True, open_high=True)
        check_prob("EntangledConfig.eps_cor", self.eps_cor, open_low=True, open_high=True)
        check_pos_int("EntangledConfig.batch", self.batch)
        if self.pairs_from not in ("measure-directly", "kept"):
            raise QKDError(ErrorCode.BAD_FIELD, "EntangledConfig.pairs_from: expected "
                           f"'measure-directly' or 'kept', got {self.pairs_from!r}")
        if self.batch > 65535:
            raise QKDError(ErrorCode.OUT_OF_RANGE,
                           f"EntangledConfig.batch: at most 65535 pairs a request, got {self.batch}")
        if not isinstance(self.s_min, (int, float)) or math.isnan(self.s_min):
            raise QKDError(ErrorCode.BAD_FIELD, f"EntangledConfig.s_min: expected a number, got {self.s_min!r}")


@dataclass
class EntangledResult:
    """What each end gets. ``key``: the final key (uint8 bits; empty on an
    abort), identical at both ends when ``ok``. ``pairs``: pairs measured;
    ``sifted``: pairs of matching bases; ``test_bits``/``key_bits``: how they
    were split; ``qber``: the test bits' error rate; ``chsh``: E91's S (None
    for BBM92); ``leaked_ec``: Cascade's parities; ``tag_bits``; ``mu``: the
    finite-size correction; ``protocol``, ``role``, ``peer``."""

    protocol: str
    role: str
    peer: str
    ok: bool = False
    reason: str = ""
    pairs: int = 0
    sifted: int = 0
    test_bits: int = 0
    key_bits: int = 0
    qber: float | None = None
    chsh: float | None = None
    chsh_counts: tuple = ()
    leaked_ec: int = 0
    tag_bits: int = 0
    mu: float = 0.0
    key: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))

    @property
    def key_length(self) -> int:
        return int(self.key.size)

    def key_bytes(self) -> bytes:
        """The key packed into bytes (the last byte zero-padded)."""
        return np.packbits(self.key).tobytes()


# ---------------------------------------------------------------- formulas

def finite_size_mu(n: int, k: int, eps_sec: float) -> float:
    """Tomamichel et al. (2012)'s statistical correction of the test error
    rate: sqrt((n + k)/(n k) (k + 1)/k ln(2/eps_sec)); n key bits, k test bits."""
    if n <= 0 or k <= 0:
        return math.inf
    return math.sqrt((n + k) / (n * k) * (k + 1) / k * math.log(2.0 / eps_sec))


def key_length(n: int, k: int, qber: float, leak_ec: int, eps_sec: float, eps_cor: float) -> int:
    """Secret bits from n sifted key bits (module docstring: Tomamichel et
    al. 2012 with q = 1); 0 when nothing is left."""
    mu = finite_size_mu(n, k, eps_sec)
    e = qber + mu
    if e >= 0.5:
        return 0
    ell = n * (1.0 - binary_entropy(e)) - leak_ec - math.log2(2.0 / (eps_sec ** 2 * eps_cor))
    return max(0, int(math.floor(ell)))


def chsh_value(a: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, tuple]:
    """E91's S from the CHSH pairs: initiator basis ``a`` (0: angle 0, 2: pi/2),
    receiver basis ``b`` (0: pi/4, 2: 3pi/4), outcomes ``x``, ``y`` (0/1).
    Returns S = E(0,0) - E(0,2) + E(2,0) + E(2,2) and the four counts."""
    s, counts = 0.0, []
    for ai, bi, sign in ((0, 0, 1), (0, 2, -1), (2, 0, 1), (2, 2, 1)):
        m = (a == ai) & (b == bi)
        c = int(m.sum())
        counts.append(c)
        if c:
            s += sign * float(np.mean(np.where(x[m] == y[m], 1.0, -1.0)))
    return s, tuple(counts)


# ---------------------------------------------------------------- framing

async def _send(sock: Any, obj: Any) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    for i in range(0, max(1, len(data)), _PIECE):
        piece = data[i:i + _PIECE]
        more = i + _PIECE < len(data)
        await sock.send(bytes([more]) + piece)


async def _recv(sock: Any, timeout_ns: int | None, expect: str) -> dict:
    parts = []
    while True:
        raw = await sock.recv(timeout_ns)
        if not raw:
            raise QKDError(ErrorCode.BAD_FIELD, f"qkd: an empty message where {expect} was due")
        parts.append(raw[1:])
        if raw[0] == 0:
            break
    try:
        obj = msgpack.unpackb(b"".join(parts), raw=False)
    except Exception as exc:
        raise QKDError(ErrorCode.BAD_FIELD, f"qkd: {expect} does not decode: {exc}") from None
    if not isinstance(obj, dict) or obj.get("t") != expect:
        got = obj.get("t") if isinstance(obj, dict) else type(obj).__name__
        raise QKDError(ErrorCode.UNEXPECTED_EVENT, f"qkd: expected {expect}, got {got!r}")
    return obj


def _arr(obj: dict, key: str, dtype: Any, n: int | None = None) -> np.ndarray:
    a = np.frombuffer(obj[key], dtype=dtype)
    if n is not None and a.size != n:
        raise QKDError(ErrorCode.BAD_FIELD, f"qkd: {obj['t']}.{key} has {a.size} entries, expected {n}")
    return a


# ---------------------------------------------------------------- the two ends

async def _measure_pairs(sock: Any, pairs: int, initiator: bool, bases: str,
                         cfg: EntangledConfig) -> tuple[np.ndarray, np.ndarray, bytes]:
    """The quantum phase: ``pairs`` measure-directly pairs in basis set
    ``bases``. Returns this end's settings (indices in its list of the set),
    outcomes and a digest of the pair ids in order (to compare the two ends'
    lists)."""
    choice = np.zeros(pairs, dtype=np.uint8)
    out = np.zeros(pairs, dtype=np.uint8)
    ids = hashlib.sha256()
    i = 0
    while i < pairs:
        n = min(cfg.batch, pairs - i)
        if initiator:
            recs = await sock.measure_pairs(n, bases=bases, timeout_ns=cfg.timeout_ns)
        else:
            recs = await sock.recv_measured(n, timeout_ns=cfg.timeout_ns)
        for r in recs:
            choice[i], out[i] = r.setting, r.outcome
            ids.update(repr(tuple(r.pair)).encode())
            i += 1
    return choice, out, ids.digest()


async def _measure_kept(ctx: Any, sock: Any, pairs: int, initiator: bool, bases: str,
                        cfg: EntangledConfig) -> tuple[np.ndarray, np.ndarray, bytes]:
    """The quantum phase over kept pairs (``pairs_from="kept"``): each half
    measured by the application as soon as it has it, at an angle of its list
    of ``bases`` drawn from ``ctx.rng``; the same return as
    :func:`_measure_pairs`, with the digest of no ids (the socket's halves
    carry none: both ends' digests are equal, the transport's order binds
    them)."""
    angles = MD_BASIS_SETS[bases][0 if initiator else 1]
    choice = ctx.rng.integers(0, len(angles), size=pairs).astype(np.uint8)
    out = np.zeros(pairs, dtype=np.uint8)
    ids = hashlib.sha256()
    i = 0
    while i < pairs:
        if initiator:
            halves = await sock.create_epr(min(cfg.batch, pairs - i), timeout_ns=cfg.timeout_ns)
        else:
            halves = await sock.recv_epr(1, timeout_ns=cfg.timeout_ns)
        for q in halves:
            out[i] = await q.measure((angles[choice[i]], 0.0))
            i += 1
    return choice, out, ids.digest()


def _sift(protocol: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Positions whose bases give key bits."""
    if protocol == "bbm92":
        return np.flatnonzero(a == b)
    # E91: initiator pi/4 (1) with receiver pi/4 (0); initiator pi/2 (2) with receiver pi/2 (1)
    return np.flatnonzero(((a == 1) & (b == 0)) | ((a == 2) & (b == 1)))


def _chsh_positions(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero(((a == 0) | (a == 2)) & ((b == 0) | (b == 2)))


async def _run(protocol: str, ctx: Any, sock: Any, pairs: int, initiator: bool,
               config: EntangledConfig | None) -> EntangledResult:
    cfg = config or EntangledConfig()
    pairs = check_pos_int(f"{protocol}.pairs", pairs)
    role = "initiator" if initiator else "receiver"
    peer = sock.conn.remote if getattr(sock, "conn", None) is not None else ""
    res = EntangledResult(protocol, role, peer, pairs=pairs)
    if cfg.pairs_from == "kept":
        choice, bits, digest = await _measure_kept(ctx, sock, pairs, initiator,
                                                   BASIS_SET[protocol], cfg)
    else:
        choice, bits, digest = await _measure_pairs(sock, pairs, initiator, BASIS_SET[protocol],
                                                    cfg)
    t = cfg.timeout_ns
    rng = ctx.rng
    if initiator:
        msg = await _recv(sock, t, "bases")
        theirs = _arr(msg, "b", np.uint8, pairs)
        a, b = choice, theirs
        sift = _sift(protocol, a, b)
        test = np.sort(rng.choice(sift.size, size=int(round(cfg.test_fraction * sift.size)),
                                  replace=False)) if sift.size else np.zeros(0, dtype=np.int64)
        await _send(sock, {"t": "sift", "b": a.tobytes(), "test": test.astype(np.int64).tobytes()})
        rep = await _recv(sock, t, "test")
        test_pos = sift[test]
        chsh_pos = _chsh_positions(a, b) if protocol == "e91" else np.zeros(0, dtype=np.int64)
        y_test = _arr(rep, "x", np.uint8, test_pos.size)
        y_chsh = _arr(rep, "c", np.uint8, chsh_pos.size)
        key_pos = np.delete(sift, test)
        res.sifted, res.test_bits, res.key_bits = int(sift.size), int(test_pos.size), int(key_pos.size)
        reason = ""
        if test_pos.size:
            res.qber = float(np.mean(bits[test_pos] != y_test))
        if protocol == "e91":
            res.chsh, res.chsh_counts = chsh_value(a[chsh_pos], b[chsh_pos], bits[chsh_pos], y_chsh)
        # (E91's own test, the Bell violation, comes first)
        if msg.get("ids") != digest:
            reason = "pairs do not match"
        elif protocol == "e91" and not res.chsh > cfg.s_min:
            reason = "no Bell violation"
        elif key_pos.size == 0 or test_pos.size == 0:
            reason = "no sifted key"
        elif res.qber > cfg.qber_max:
            reason = "QBER too high"
        await _send(sock, {"t": "verdict", "qber": res.qber, "S": res.chsh,
                           "counts": list(res.chsh_counts), "reason": reason})
        if reason:
            res.reason = reason
            return res
        key = bits[key_pos].copy()
        alice = CascadeAlice(key)
        start = await _recv(sock, t, "cascade")
        alice.on_start(CascadeStart(int(start["n"]), tuple(start["sizes"]), int(start["seed"])))
        while True:
            q = await _recv(sock, t, "query")
            if q["done"]:
                break
            reply = alice.on_query(ParityQuery(int(q["r"]), _arr(q, "p", np.int64),
                                               _arr(q, "s", np.int64), _arr(q, "e", np.int64)))
            await _send(sock, {"t": "reply", "r": reply.round,
                               "par": np.asarray(reply.parities, dtype=np.uint8).tobytes()})
        res.leaked_ec = alice.disclosed
        tag = make_tag(key, cfg.eps_cor, rng)
        res.tag_bits = tag.tag_bits
        await _send(sock, {"t": "tag", "n": tag.n_bits, "tb": tag.tag_bits, "seed": tag.seed, "tag": tag.tag})
        if not (await _recv(sock, t, "verified"))["ok"]:
            res.reason = "verification failed"
            return res
        n, k = key.size, test_pos.size
        res.mu = finite_size_mu(n, k, cfg.eps_sec)
        ell = key_length(n, k, res.qber, res.leaked_ec, cfg.eps_sec, cfg.eps_cor)
        if ell <= 0:
            await _send(sock, {"t": "pa", "n_out": 0, "seed": b""})
            res.reason = "no secret key"
            return res
        seed = toeplitz_seed(n, ell, rng)
        await _send(sock, {"t": "pa", "n_out": ell, "seed": seed.seed})
        res.key = amplify(key, seed)
        res.ok = True
        return res

    # ---- the receiver
    await _send(sock, {"t": "bases", "b": choice.tobytes(), "ids": digest})
    msg = await _recv(sock, t, "sift")
    a, b = _arr(msg, "b", np.uint8, pairs), choice
    sift = _sift(protocol, a, b)
    test = _arr(msg, "test", np.int64)
    if test.size and (test.min() < 0 or test.max() >= sift.size or np.any(np.diff(test) <= 0)):
        raise QKDError(ErrorCode.OUT_OF_RANGE, "qkd: test positions outside the sifted key")
    test_pos = sift[test]
    chsh_pos = _chsh_positions(a, b) if protocol == "e91" else np.zeros(0, dtype=np.int64)
    await _send(sock, {"t": "test", "x": bits[test_pos].tobytes(), "c": bits[chsh_pos].tobytes()})
    key_pos = np.delete(sift, test)
    res.sifted, res.test_bits, res.key_bits = int(sift.size), int(test_pos.size), int(key_pos.size)
    v = await _recv(sock, t, "verdict")
    res.qber, res.chsh = v["qber"], v["S"]
    res.chsh_counts = tuple(v["counts"])
    if v["reason"]:
        res.reason = v["reason"]
        return res
    bob = CascadeBob(bits[key_pos], res.qber, int(rng.integers(0, 2 ** 62)))
    st = bob.start()
    await _send(sock, {"t": "cascade", "n": st.n, "sizes": list(st.sizes), "seed": st.seed})
    while (q := bob.next_query()) is not None:
        await _send(sock, {"t": "query", "done": False, "r": q.round,
                           "p": np.asarray(q.passes, np.int64).tobytes(),
                           "s": np.asarray(q.starts, np.int64).tobytes(),
                           "e": np.asarray(q.ends, np.int64).tobytes()})
        rep = await _recv(sock, t, "reply")
        bob.on_reply(ParityReply(int(rep["r"]), _arr(rep, "par", np.uint8)))
    await _send(sock, {"t": "query", "done": True})
    res.leaked_ec = bob.leaked
    key = bob.key()
    tag = await _recv(sock, t, "tag")
    ver = check_tag(key, VerifyTag(int(tag["n"]), int(tag["tb"]), tag["seed"], tag["tag"]))
    res.tag_bits = int(tag["tb"])
    await _send(sock, {"t": "verified", "ok": bool(ver.ok)})
    if not ver.ok:
        res.reason = "verification failed"
        return res
    res.mu = finite_size_mu(key.size, test_pos.size, cfg.eps_sec)
    pa = await _recv(sock, t, "pa")
    if int(pa["n_out"]) <= 0:
        res.reason = "no secret key"
        return res
    res.key = amplify(key, AmplificationSeed(int(key.size), int(pa["n_out"]), pa["seed"]))
    res.ok = True
    return res


async def bbm92(ctx: Any, sock: Any, pairs: int, *, initiator: bool,
                config: EntangledConfig | None = None) -> EntangledResult:
    """BBM92 over the connected socket ``sock`` of node context ``ctx``:
    ``pairs`` EPR pairs (the ``initiator`` creates them, the other end
    receives them), then sifting, the QBER test, Cascade, verification and
    privacy amplification as messages on ``sock``. Both ends call it with the
    same ``pairs`` and ``config``; returns an :class:`EntangledResult`."""
    return await _run("bbm92", ctx, sock, pairs, initiator, config)


async def e91(ctx: Any, sock: Any, pairs: int, *, initiator: bool,
              config: EntangledConfig | None = None) -> EntangledResult:
    """E91 over ``sock``, as :func:`bbm92`; the result's ``chsh`` is S (from
    the initiator's bases 0, pi/2 and the receiver's pi/4, 3pi/4), and the
    run aborts with ``"no Bell violation"`` when S <= ``config.s_min``."""
    return await _run("e91", ctx, sock, pairs, initiator, config)
