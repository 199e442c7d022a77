"""How the two KMEs of a ``[kms] links`` pair settle decoy-BB84 blocks
(:class:`qstack.emu.kms.PairLink`), without the emulation and without real
time: trio's MockClock, the KME-to-KME messages over an in-memory pipe,
and ``app.qkd`` replaced by a script saying, per block, when and whether the
second node's result comes. Whatever the script does -- a result before the
second KME has started its runs, one lost, a stale one replayed, one twice,
one later than the KMEs wait, a block aborted at one end -- the two stores
take in the same blocks, in the same order, each run with the key of the
very block it was made from, and every block whose result reached both ends
in time goes in (the pairing never drifts; nothing is given out at one end
only)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import trio
import trio.testing

from qstack.app.qkd.bb84 import QkdResult
from qstack.app.qkd.keystore import KeyStore
from qstack.emu.client import TrioFuture
from qstack.emu.kms import ANSWER_S, PairLink

BLOCKS = 6          # blocks app.qkd runs (then it answers no more requests)
BLOCK_S = 1.0       # a block's duration (virtual s)
KEY_BITS = 128


class Runtime:
    """A node's runtime as an application sees it: callbacks, futures, and
    ``app.qkd`` requests handed to the scripted link."""

    def __init__(self, link: "Link | None" = None) -> None:
        self.callbacks: list = []
        self.link = link

    def subscribe(self, callback) -> None:
        self.callbacks.append(callback)

    def future(self) -> TrioFuture:
        return TrioFuture()

    async def wait(self, future, timeout_ns):
        assert timeout_ns is None
        return await future

    def submit_to(self, protocol, request) -> None:
        self.link.request(request)

    def deliver(self, ev) -> None:
        for cb in list(self.callbacks):     # (no callback keeps it: it is gone)
            cb(ev)


class Link:
    """``app.qkd`` on alice -- bob, scripted: block b (1, 2, ...) ends
    BLOCK_S after alice asks; ``plan[b]`` says what becomes of it: "lost"
    (bob's result never comes), "late" (ANSWER_S + BLOCK_S / 2 after alice's),
    "early" (bob's 0.5 s before alice's), "twice" (bob's delivered two
    times), "abort" (aborted at alice's end, a key at bob's). ``plan[0] =
    "stale"``: at once, bob gets a result of a block 99 no run names (as a
    daemon replays, to the first application to attach, results of blocks
    that ended before: ones of an earlier KME)."""

    def __init__(self, nursery, plan: dict[int, str], seed: int) -> None:
        self.nursery = nursery
        self.plan = plan
        self.rng = np.random.default_rng(seed)
        self.alice = Runtime(self)
        self.bob = Runtime()
        self.keys: dict[int, bytes] = {}
        self.blocks = 0
        if plan.get(0) == "stale":
            nursery.start_soon(self._stale)

    async def _stale(self) -> None:
        await trio.sleep(BLOCK_S / 10)          # (bob's KME is connected; block 1 not over)
        self.bob.deliver(QkdResult(True, "receive", "alice", 99, 0,
                                   key=np.ones(KEY_BITS, np.uint8)))

    def request(self, req) -> None:
        if self.blocks == BLOCKS:
            return
        self.blocks += 1
        self.nursery.start_soon(self._block, self.blocks, req)

    async def _block(self, b: int, req) -> None:
        bits = self.rng.integers(0, 2, KEY_BITS).astype(np.uint8)
        self.keys[b] = np.packbits(bits).tobytes()
        what = self.plan.get(b)
        sent = QkdResult(what != "abort", "send", req.peer, b, req.request_id,
                         key=bits if what != "abort" else np.zeros(0, np.uint8),
                         reason="aborted" if what == "abort" else "", qber_test=0.02)
        received = QkdResult(True, "receive", "alice", b, 0, key=bits, qber_test=0.02)
        await trio.sleep(BLOCK_S - (0.5 if what == "early" else 0.0))
        if what == "early":
            self.bob.deliver(received)
            await trio.sleep(0.5)
        self.alice.deliver(sent)
        if what in (None, "twice", "abort"):
            self.bob.deliver(received)
        if what == "twice":
            self.bob.deliver(received)
        elif what == "late":
            await trio.sleep(ANSWER_S + BLOCK_S / 2)   # (after bob gave up, before block b + 1)
            self.bob.deliver(received)


class Pipe:
    """The control connection: two in-order message queues."""

    def __init__(self) -> None:
        self.accepted = trio.Event()
        a_send, b_recv = trio.open_memory_channel(float("inf"))
        b_send, a_recv = trio.open_memory_channel(float("inf"))
        self.ends = (_End(a_send, a_recv), _End(b_send, b_recv))


class _End:
    def __init__(self, send, recv) -> None:
        self._send, self._recv = send, recv

    async def send(self, data: bytes) -> None:
        self._send.send_nowait(data)

    async def recv(self) -> bytes:
        return await self._recv.receive()


class Ctx:
    """A KME's application context: its runtime and the control pipe."""

    def __init__(self, runtime: Runtime, pipe: Pipe) -> None:
        self.runtime, self.pipe = runtime, pipe

    async def connect(self, peer: str, port: int):
        await self.pipe.accepted.wait()
        return self.pipe.ends[0]

    def listen(self, port: int):
        pipe = self.pipe

        class Listener:
            async def accept(self):
                pipe.accepted.set()
                return pipe.ends[1]
        return Listener()


SPEC = SimpleNamespace(kms=SimpleNamespace(protocol="decoy-bb84", pulses=1000, finite=False,
                                           eps_sec=1e-10, eps_cor=1e-15, refill_bits=10**9))


def settle(plan: dict[int, str], bob_starts_s: float = 0.0, seed: int = 1):
    """Both KMEs, as ``run_kme`` starts them (``open`` on connecting, the
    runs once the HTTPS server is up: bob's ``bob_starts_s`` later), until
    all is quiet. Returns (the link, per node the (run, key) taken in, in
    order, per node its log lines)."""
    taken: dict[str, list] = {"alice": [], "bob": []}
    logs: dict[str, list] = {"alice": [], "bob": []}
    out: list = []

    async def kme(node, peer, ctx, start_s, nursery) -> None:
        store = KeyStore(node, {"sae-a": "alice", "sae-b": "bob"}, key_size=64)
        add = store.add_material
        store.add_material = lambda p, n, key: (taken[node].append((n, key)), add(p, n, key))[1]
        link = PairLink(node, peer, 0, node == "alice", store, SPEC, logs[node].append)
        link.open(ctx)
        await trio.sleep(start_s)
        nursery.start_soon(link.control, ctx)
        nursery.start_soon(link.feed, ctx)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            qkd = Link(nursery, plan, seed)
            out.append(qkd)
            pipe = Pipe()
            await kme("alice", "bob", Ctx(qkd.alice, pipe), 0.0, nursery)
            nursery.start_soon(kme, "bob", "alice", Ctx(qkd.bob, pipe), bob_starts_s, nursery)
            # (every block has ended, and every wait of the KMEs has run out)
            await trio.sleep(BLOCKS * (BLOCK_S + 4 * ANSWER_S) + 60)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out[0], taken, logs


#: plan, bob's runs' start (s), the blocks refused at both ends, the results
#: bob drops (a block no run names, logged)
CASES = {
    "in step": ({}, 0.0, set(), set()),
    "bob's first result before its runs start": ({}, 5 * BLOCK_S, set(), set()),
    "a result lost": ({2: "lost"}, 0.0, {2}, set()),
    "a result later than the KMEs wait": ({2: "late"}, 0.0, {2}, {2}),
    "a result before the other end's": ({3: "early"}, 0.0, set(), set()),
    "a result replayed": ({2: "twice"}, 0.0, set(), {2}),
    "a block aborted at one end": ({4: "abort"}, 0.0, {4}, set()),
    "a stale result first": ({0: "stale"}, 0.0, set(), {99}),
}


@pytest.mark.parametrize("case", CASES)
def test_both_stores_take_in_the_same_blocks(case):
    plan, bob_starts_s, refused, dropped = CASES[case]
    qkd, taken, logs = settle(plan, bob_starts_s)
    assert qkd.blocks == BLOCKS
    # run n is app.qkd block n + 1 (alice asks for one block at a time)
    expected = [(b - 1, qkd.keys[b]) for b in range(1, BLOCKS + 1) if b not in refused]
    assert taken["alice"] == expected, logs
    assert taken["bob"] == expected, logs
    for node, peer in (("alice", "bob"), ("bob", "alice")):
        for b in refused:
            assert any(line.startswith(f"kms: {node}-{peer} block {b - 1}: no key (")
                       for line in logs[node]), logs[node]
    assert {int(line.split()[4][:-2]) for line in logs["bob"] if "result dropped" in line} \
        == dropped
    for b in dropped:
        assert f"kms: bob-alice: app.qkd block {b}'s result dropped (no run of KME alice " \
               "names it)" in logs["bob"], logs["bob"]
