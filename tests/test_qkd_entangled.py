"""BBM92 and E91 over the socket API (qstack.app.qkd.entangled).

Physics against the Werner-pair closed forms: a Werner pair of fidelity F
(on Phi+) has every X-Z-plane correlation E(a, b) = (4F - 1)/3 cos(a - b), so
BBM92's QBER is 2(1 - F)/3 and E91's S = 2 sqrt 2 (4F - 1)/3 (Ekert 1991;
Werner states: Werner, PRA 40, 4277 (1989)); the end-to-end F after one swap
of Werner links is F1 F2 + (1 - F1)(1 - F2)/3 (tests/closed_forms.py).

The many-seed property (identical keys or an abort with its reason) runs the
two ends over an in-memory socket pair whose measured pairs are sampled from
the same closed form (fast); the fidelity sweep runs through the whole stack
under qstack.simulate, over the network's measure-directly pairs with one, two
or four repeaters between the ends.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import trio
from hypothesis import HealthCheck, given, settings, strategies as st

import qstack
from qstack.app.qkd import entangled as ent
from qstack.app.qkd._common import QKDError
from qstack.core.errors import ErrorCode
from qstack.network.service import MD_BASIS_SETS

from .closed_forms import werner_swap


def werner_qber(f: float) -> float:
    return 2 * (1 - f) / 3


def werner_s(f: float) -> float:
    return 2 * math.sqrt(2) * (4 * f - 1) / 3


# ---------------------------------------------------------------- an in-memory socket pair

class _Pair:
    """A Werner pair of fidelity f as measurement statistics: the first end
    measured gets a fair coin; the second agrees (same outcome for the +1
    eigenvector of each direction) with probability (1 + w cos(a - b))/2,
    w = (4f - 1)/3, a and b the two angles from Z in the X-Z plane."""

    def __init__(self, w: float, rng: np.random.Generator) -> None:
        self.w, self.rng, self.first = w, rng, None

    def measure(self, theta: float) -> int:
        if self.first is None:
            self.first = (theta, int(self.rng.integers(2)))
            return self.first[1]
        a, x = self.first
        same = self.rng.random() < (1 + self.w * math.cos(a - theta)) / 2
        return x if same else 1 - x


class _Rec:
    """One end's record of a measured pair, as the socket gives it."""

    def __init__(self, pair: tuple, setting: int, outcome: int) -> None:
        self.pair, self.setting, self.outcome = pair, setting, outcome


class _Ctx:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)


class _Sock:
    """One end of a duplex in-memory connection carrying bytes and EPR halves."""

    def __init__(self, send_data, recv_data, send_epr, recv_epr, w, rng) -> None:
        self._sd, self._rd, self._se, self._re = send_data, recv_data, send_epr, recv_epr
        self.w, self.rng, self.conn = w, rng, None

    async def send(self, data: bytes) -> None:
        assert len(data) <= 65536
        await self._sd.send(bytes(data))

    async def recv(self, timeout_ns=None) -> bytes:
        return await self._rd.receive()

    async def measure_pairs(self, number, bases, timeout_ns=None):
        """The network's measure-directly records, sampled: each end's
        setting drawn from its list of the basis set, the pair's statistics
        those of a Werner pair (the far end's record goes down the channel)."""
        head, tail = MD_BASIS_SETS[bases]
        mine = []
        for i in range(number):
            p = _Pair(self.w, self.rng)
            a, b = int(self.rng.integers(len(head))), int(self.rng.integers(len(tail)))
            mine.append(_Rec(("a", 1, i), a, p.measure(head[a])))
            await self._se.send(_Rec(("a", 1, i), b, p.measure(tail[b])))
        return mine

    async def recv_measured(self, number, timeout_ns=None):
        return [await self._re.receive() for _ in range(number)]


def run_pair(protocol: str, pairs: int, fidelity: float, seed: int,
             config: ent.EntangledConfig | None = None):
    w = (4 * fidelity - 1) / 3
    ab_d, ba_d = trio.open_memory_channel(10 ** 6), trio.open_memory_channel(10 ** 6)
    epr = trio.open_memory_channel(10 ** 6)
    rng = np.random.default_rng(seed + 7)
    sa = _Sock(ab_d[0], ba_d[1], epr[0], None, w, rng)
    sb = _Sock(ba_d[0], ab_d[1], None, epr[1], w, rng)
    f = getattr(ent, protocol)
    out = {}

    async def main():
        async def one(name, ctx, sock, initiator):
            out[name] = await f(ctx, sock, pairs, initiator=initiator, config=config)
        async with trio.open_nursery() as n:
            n.start_soon(one, "a", _Ctx(seed), sa, True)
            n.start_soon(one, "b", _Ctx(seed + 1), sb, False)

    trio.run(main)
    return out["a"], out["b"]


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 31), protocol=st.sampled_from(["bbm92", "e91"]),
       fidelity=st.floats(0.8, 1.0), pairs=st.integers(50, 6000))
def test_keys_identical_or_abort_with_reason(seed, protocol, fidelity, pairs):
    a, b = run_pair(protocol, pairs, fidelity, seed)
    assert a.ok == b.ok and a.reason == b.reason
    if a.ok:
        assert a.key.size > 0 and np.array_equal(a.key, b.key)
        assert a.qber <= 0.11
    else:
        assert a.reason in ("QBER too high", "no Bell violation", "no sifted key",
                            "verification failed", "no secret key")
        assert a.key.size == 0 and b.key.size == 0


def test_keys_come_out_at_low_noise():
    for protocol in ("bbm92", "e91"):
        a, b = run_pair(protocol, 30_000, 0.98, 1)
        assert a.ok, a.reason
        assert np.array_equal(a.key, b.key) and a.key.size > 1000
        # the corrected key is private: fewer bits than the key-basis pairs
        assert a.key.size < a.key_bits


def test_key_length_formula_by_hand():
    # Tomamichel et al. 2012, Eq. (2) with q = 1, worked out independently
    n, k, q, leak, es, ec = 100_000, 20_000, 0.02, 15_000, 1e-10, 1e-15
    mu = math.sqrt((n + k) / (n * k) * (k + 1) / k * math.log(2 / es))
    e = q + mu
    h = -e * math.log2(e) - (1 - e) * math.log2(1 - e)
    want = math.floor(n * (1 - h) - leak - math.log2(2 / (es * es * ec)))
    assert ent.key_length(n, k, q, leak, es, ec) == want
    assert ent.key_length(100, 10, 0.3, 0, es, ec) == 0


def test_intercept_everything_aborts():
    # F = 0.25 is the maximally mixed state: QBER 1/2
    a, b = run_pair("bbm92", 2000, 0.25, 3)
    assert not a.ok and a.reason == b.reason == "QBER too high"
    # S = 2 sqrt2 * 0.6 = 1.70 < 2: E91 checks S before the QBER (0.2)
    a, b = run_pair("e91", 3000, 0.7, 3)
    assert not a.ok and a.reason == "no Bell violation"


def test_bad_config_refused():
    with pytest.raises(QKDError) as exc:
        ent.EntangledConfig(test_fraction=0.0)
    assert exc.value.code == ErrorCode.OUT_OF_RANGE
    with pytest.raises(QKDError):
        ent.EntangledConfig(batch=0)


# ---------------------------------------------------------------- through the stack

def chain(link_fidelity: float, repeaters: int = 1) -> dict:
    """alice - repeater(s) - bob, 5 km links making Werner pairs of
    ``link_fidelity`` (sender-receiver scheme, no false heralds), memories
    that do not decay: the end-to-end pairs are Werner pairs of F1 F2 + ...
    folded over the links."""
    nodes = ["alice"] + [f"repeater{i}" for i in range(repeaters)] + ["bob"]
    return {
        "formalism": "bd",
        "defaults": {"node": {"memory": 40, "t1_s": "inf", "t2_s": "inf"},
                     "link": {"scheme": "sender-receiver", "length_km": 5,
                              "false_herald_prob": 0.0, "pair_fidelity": link_fidelity}},
        "nodes": nodes,
        "links": [[a, b] for a, b in zip(nodes, nodes[1:])],
    }


def folded(link_f: float, repeaters: int) -> float:
    f = link_f
    for _ in range(repeaters):
        f = werner_swap(f, link_f)
    return f


def apps(protocol: str, pairs: int, config=None) -> dict:
    f = getattr(ent, protocol)

    async def alice(ctx):
        async with await ctx.connect("bob", 5) as sock:
            return await f(ctx, sock, pairs, initiator=True, config=config)

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        res = await f(ctx, sock, pairs, initiator=False, config=config)
        await sock.close()
        return res

    return {"alice": alice, "bob": bob}


#: half the sifted pairs tested, so the QBER estimate has the statistics
CFG = ent.EntangledConfig(test_fraction=0.5, eps_sec=1e-6)


@pytest.mark.parametrize("link_f,pairs,repeaters", [(0.97, 1200, 1), (0.9, 1200, 1),
                                                    (0.98, 1200, 2), (0.99, 1200, 4)])
def test_bbm92_qber_follows_werner_across_repeaters(link_f, pairs, repeaters):
    res = qstack.simulate(chain(link_f, repeaters), apps("bbm92", pairs, CFG), seed=11,
                          until_s=600)
    res.raise_errors()
    a, b = res.results["alice"], res.results["bob"]
    f = folded(link_f, repeaters)
    q = werner_qber(f)
    # binomial standard error of the test bits; 4 sigma (+ 1e-9 for q = 0)
    sigma = math.sqrt(q * (1 - q) / a.test_bits)
    assert abs(a.qber - q) <= 4 * sigma + 1e-9, (a.qber, q, sigma)
    assert a.ok == b.ok and a.reason == b.reason
    if a.ok:
        assert np.array_equal(a.key, b.key) and a.key.size > 0


@pytest.mark.parametrize("link_f,seed,repeaters", [(1.0, 5, 1), (0.93, 6, 1), (0.75, 7, 1),
                                                   (0.96, 8, 2), (0.98, 9, 4)])
def test_e91_chsh_follows_werner_across_repeaters(link_f, seed, repeaters):
    res = qstack.simulate(chain(link_f, repeaters), apps("e91", 1200, CFG), seed=seed,
                          until_s=600)
    res.raise_errors()
    a, b = res.results["alice"], res.results["bob"]
    f = folded(link_f, repeaters)
    s_want = werner_s(f)
    e = (4 * f - 1) / 3 * math.sqrt(0.5)            # |E| of each CHSH setting
    # S sums four means of +-1 outcomes: variance sum (1 - E^2)/n_i; 4 sigma
    sigma = math.sqrt(sum((1 - e * e) / n for n in a.chsh_counts))
    assert abs(a.chsh - s_want) <= 4 * sigma, (a.chsh, s_want, sigma)
    assert b.chsh == a.chsh
    if s_want < 2 - 4 * sigma:       # (link F 0.75: S = 1.26)
        assert not a.ok and a.reason == b.reason == "no Bell violation"
    elif a.ok:
        assert np.array_equal(a.key, b.key)
