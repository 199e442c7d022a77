"""What must hold under two-way traffic, random timing and faults (issue 16).

Random networks (chains, stars, rings, grids of up to 12 nodes), random sets
of connections in both directions at once, random fault schedules (node
crashes with or without restart, links down and up, classical session
resets) and random delay jitter. Links make exact Bell pairs and memories do
not decay, so every teleported qubit must arrive exactly in the state it was
sent in: each qubit is |0> or |1> by a hash of its header's metadata, and the
receiver's Z measurement checks that the qubit came with its own header.

The invariants (each checked on every example):

1. every qubit sent is delivered exactly once with its own header, or its
   send fails with a defined code: the qubit handed back if it was not yet
   measured, else reported lost; a qubit the sender's crash kept it from
   hearing about fails with TRANSPORT_NODE_DOWN (delivered or not);
2. every application ends, within a stated bound after the last fault;
3. at the end (the network settled) every memory slot is free, the state
   engine holds no qubit, and no protocol keeps state for a dead
   connection, circuit, request or heralding attempt;
4. the same seed gives the same run.
"""
from __future__ import annotations

import zlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

import qstack
from qstack.core.errors import ErrorCode, QStackError
from qstack.transport.socket import TransportError

#: An application ends within this long after the last fault (simulated s):
#: the transport's peer timeout (1 s) and circuit re-opening (16 x 1 ms) are
#: the longest waits a fault causes, plus the time the traffic itself takes.
END_BOUND_S = 5.0
QUBITS = 8


def topology(kind: str, n: int) -> tuple[list[str], list[list[str]]]:
    names = [f"n{i:02d}" for i in range(n)]
    if kind == "chain":
        links = [[a, b] for a, b in zip(names, names[1:])]
    elif kind == "ring":
        links = [[a, b] for a, b in zip(names, names[1:] + names[:1])] if n > 2 else \
            [[names[0], names[1]]]
    elif kind == "star":
        links = [[names[0], b] for b in names[1:]]
    else:                                  # grid, as square as n allows
        cols = max(2, int(n ** 0.5))
        links = []
        for i, a in enumerate(names):
            if (i + 1) % cols and i + 1 < n:
                links.append([a, names[i + 1]])
            if i + cols < n:
                links.append([a, names[i + cols]])
    return names, links


@st.composite
def scenarios(draw):
    kind = draw(st.sampled_from(["chain", "ring", "star", "grid"]))
    n = draw(st.integers(2 if kind in ("chain", "star") else 3, 12 if kind != "chain" else 8))
    names, links = topology(kind, n)
    conns = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names),
                                     st.integers(0, 20) .map(lambda k: k * 500_000)),  # start

                          min_size=1, max_size=5).filter(
        lambda cs: all(a != b for a, b, _ in cs)))
    faults = []
    for _ in range(draw(st.integers(1, 3))):   # (without faults: tests/test_two_way.py)
        at = draw(st.integers(0, 40)) / 2000          # s, while the traffic runs
        what = draw(st.sampled_from(["crash", "link_down", "reset"]))
        if what == "crash":
            f = {"at_s": at, "crash": draw(st.sampled_from(names))}
            if draw(st.booleans()):
                f["restart_after_s"] = draw(st.integers(1, 40)) / 1000
        elif what == "link_down":
            f = {"at_s": at, "link_down": draw(st.sampled_from(links))}
            if draw(st.booleans()):
                f["up_after_s"] = draw(st.integers(1, 40)) / 1000
        else:
            a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
            if a == b:
                continue
            f = {"at_s": at, "reset": [a, b]}
        faults.append(f)
    jitter = draw(st.sampled_from([0, 10_000, 200_000]))
    seed = draw(st.integers(0, 5))
    return names, links, conns, faults, jitter, seed


def _bit(tag: bytes) -> int:
    return zlib.crc32(tag) & 1


def run_scenario(names, links, conns, faults, jitter, seed):
    net = {"nodes": {n: {"memory": 12, "t1_s": "inf", "t2_s": "inf"} for n in names},
           "links": [{"nodes": lk, "scheme": "sender-receiver", "length_km": 2,
                      "false_herald_prob": 0.0, "pair_fidelity": 1.0} for lk in links]}
    sent: dict[bytes, tuple] = {}          # tag -> ("ok",) | ("failed", code, handed back)
    received: dict[bytes, list] = {}       # tag -> [bit measured, ...]
    apps: dict[str, list] = {n: [] for n in names}
    for k, (src, dst, start) in enumerate(conns):
        port = 100 + k

        async def server(ctx, port=port):
            try:
                sock = await ctx.listen(port).accept(timeout_ns=10**9)
                while True:
                    q = await sock.recv_qubit()
                    measured = await q.measure("Z")     # first: a crash may stop it
                    received.setdefault(q.metadata, []).append(measured)
            except TransportError as err:
                return err.code.name

        async def client(ctx, k=k, dst=dst, port=port, start=start):
            await ctx.sleep(start)
            try:
                sock = await ctx.connect(dst, port, timeout_ns=10**9)
            except TransportError as err:
                return f"connect {err.code.name}"
            for i in range(QUBITS):
                tag = f"{k}:{i}".encode()
                try:
                    q = ctx.qubit()
                    if _bit(tag):
                        q.x()
                except QStackError as err:      # this node crashed: nothing runs on it
                    assert err.code == ErrorCode.TRANSPORT_NODE_DOWN
                    return "node down"
                try:
                    await sock.send_qubit(q, metadata=tag, timeout_ns=10**9)
                    sent[tag] = ("ok",)
                except TransportError as err:
                    sent[tag] = ("failed", err.code, err.qubits == [q])
                    assert (err.qubits == [q]) == q.alive
                    if q.alive and err.code != ErrorCode.TRANSPORT_NODE_DOWN:
                        q.discard()
                    if err.code != ErrorCode.TRANSPORT_NO_PAIR:
                        break
            try:
                await sock.close()
            except TransportError:
                pass
            return "done"

        server.__name__ = f"srv{k}"
        client.__name__ = f"cli{k}"
        apps[dst].append(server)
        apps[src].append(client)
    apps = {n: fns for n, fns in apps.items() if fns}
    r = qstack.simulate(net, apps, seed=seed, faults=faults, jitter_ns=jitter,
                        until_s=30.0, settle_s=30.0)
    return r, sent, received


def check(r, sent, received, faults):
    # 2. every application ended, within the bound after the last fault
    assert not any(isinstance(e, TimeoutError) for e in r.errors.values()), r.errors
    assert not r.errors, r.errors
    last = max([f["at_s"] + f.get("restart_after_s", 0) + f.get("up_after_s", 0)
                for f in faults] + [0.0])
    assert r.end_ns <= (last + END_BOUND_S) * 1e9, (r.end_ns, last)
    # 1. delivered once with its own header, or failed with a code
    for tag, bits in received.items():
        assert len(bits) == 1, f"{tag} delivered {len(bits)} times"
        assert bits[0] == _bit(tag), f"{tag} arrived in the wrong state"
    for tag, outcome in sent.items():
        if outcome[0] == "ok":
            # done = the far end's transport has it; its application reads it
            # unless its node crashed meanwhile
            crashed = any("crash" in f for f in faults)
            assert tag in received or crashed, f"{tag}: sent, never received"
        else:
            _, code, handed_back = outcome
            assert isinstance(code, ErrorCode)
            if handed_back:
                assert tag not in received, f"{tag}: handed back and delivered"
            elif tag in received:
                # measured, delivered, and the sender could not hear of it: only
                # when it crashed, or the far end restarted before acknowledging
                assert code in (ErrorCode.TRANSPORT_NODE_DOWN, ErrorCode.TRANSPORT_RESET), \
                    (tag, code)
    # 3. nothing held, nothing left over
    net = r.net
    for name, node in net.nodes.items():
        assert node.device.used_slots == 0, (name, node.device.stored_qubits(),
                                             node.device._reserved)
        if not node.up:
            continue
        t = node.protocols["transport.qtp"]
        assert not t.conns and not t.remote_pairs and not t.headers, (name, t.conns)
        q = node.protocols["network.qnp"]
        assert not q.circuits and not q.requests, (name, list(q.circuits), list(q.requests))
        egp = node.protocols["link.egp"]
        for link in egp.links.values():
            assert not link.items and not link.pending and not link.orphans, (name, link.peer)
            assert link.out == 0 and not link.waiting
    assert net.engine.num_live_qubits == 0
    for link in net.links.values():
        assert link.station is None or link.station.pending() == 0


@settings(max_examples=80, deadline=None)
@given(scenarios())
@example((["n00", "n01", "n02", "n03"], topology("ring", 4)[1],
          [("n02", "n01", 7_500_000), ("n01", "n02", 6_000_000)],
          [{"at_s": 0.0125, "link_down": ["n03", "n00"]},
           {"at_s": 0.0, "crash": "n00", "restart_after_s": 0.033}], 0, 0))
@example((topology("chain", 8)[0], topology("chain", 8)[1],
          [("n04", "n06", 6_000_000), ("n05", "n00", 4_000_000), ("n03", "n01", 6_000_000)],
          [{"at_s": 0.019, "crash": "n05"},
           {"at_s": 0.0065, "crash": "n03", "restart_after_s": 0.019},
           {"at_s": 0.0185, "crash": "n02", "restart_after_s": 0.032}], 200_000, 4))
@example((topology("chain", 8)[0], topology("chain", 8)[1],
          [("n02", "n01", 10_000_000), ("n02", "n01", 3_500_000), ("n02", "n06", 2_000_000),
           ("n01", "n07", 9_500_000), ("n05", "n03", 6_000_000)],
          [{"at_s": 0.01, "link_down": ["n02", "n03"], "up_after_s": 0.034},
           {"at_s": 0.0185, "crash": "n06", "restart_after_s": 0.004},
           {"at_s": 0.0035, "crash": "n04", "restart_after_s": 0.007}], 0, 3))
def test_traffic_under_faults_keeps_every_promise(case):
    # (the two examples after these: a session back without "restarted" after
    # the far end restarted behind a partition; the server waited for ever)
    # (the example: n00 restarted believing its link to n03 up; n03's own
    # advertisement came back to it round the ring and it re-advertised for
    # ever, 2 million messages, before restarted nodes were told their links'
    # state and an advertisement's own current one coming back was dropped)
    names, links, conns, faults, jitter, seed = case
    r, sent, received = run_scenario(*case)
    check(r, sent, received, faults)


@settings(max_examples=5, deadline=None)
@given(scenarios())
def test_same_seed_same_run(case):
    """4. Two runs of one scenario give the same results, metrics and failures."""
    a, sent_a, got_a = run_scenario(*case)
    b, sent_b, got_b = run_scenario(*case)
    assert (a.results, a.end_ns, sent_a, got_a) == (b.results, b.end_ns, sent_b, got_b)
    strip = lambda m: {k: v for k, v in m.items() if k != "wall_s"}   # noqa: E731
    assert strip(a.metrics) == strip(b.metrics)
    assert [(f.time_ns, f.node, f.code) for f in a.failures] == \
        [(f.time_ns, f.node, f.code) for f in b.failures]
