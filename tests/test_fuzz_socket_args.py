"""Fuzz the socket API with random argument values (issue 16.8).

For every call of the socket API and of a qubit, one argument at a time gets
a random value -- integers (huge and negative), floats (NaN, infinities,
huge), booleans, strings, None, bytes of every length around the wire
limits, tuples -- and the others a valid one. Whatever the value:

* the call works, or raises a ``QStackError`` whose code is a defined
  ``ErrorCode`` (nothing else: no ValueError, TypeError, OverflowError);
* afterwards the same socket still carries a valid send and receive both ways;
* nothing escapes ``qstack.simulate``: every application returns normally.

Each example is one short simulation on the ideal network layer (exact pairs
after ~1 ms); the budget is the profile's ``max_examples`` (100 under "ci"),
about 5 s in all.

The receive calls' timeouts are drawn among bad values and short valid ones
only: a valid long timeout would (correctly) wait for data that never comes.
Integers without a ``repr`` (over 4300 digits) are not drawn: Hypothesis
itself cannot print them; ``test_bad_arguments`` covers them.
"""
from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import qstack
from qstack.core.errors import ErrorCode, QStackError
from qstack.transport.socket import TransportTimeout

SPEC = {"defaults": {"node": {"memory": 64, "t1_s": "inf", "t2_s": "inf"}},
        "nodes": ["alice", "bob"], "links": [["alice", "bob"]]}

#: Valid values for the arguments not being fuzzed.
VALID = {"number": 1, "min_fidelity": 0.5, "measure": None, "timeout_ns": 100_000_000,
         "metadata": b"m", "data": b"d", "port": 7, "node": "bob", "theta": 0.5,
         "basis": "X", "delay_ns": 1_000}

JUNK = st.one_of(
    st.integers(), st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 65535, 65536, 2**31, 2**62, 2**63 - 1, 2**63]),
    st.floats(), st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, 1.01, 1.5]),
    st.booleans(), st.none(), st.text(max_size=70),
    st.binary(max_size=40),
    st.sampled_from([b"x" * n for n in (1023, 1024, 1025, 65536, 65537)]),
    st.tuples(st.floats(), st.floats()), st.tuples(st.integers()), st.lists(st.integers(), max_size=3),
    st.sampled_from(["Z", "X", "Y", "z", "Q", "", "bob", "alice", "nobody"]),
)


def _short_wait(v):
    """Not a valid timeout that could make a receive wait long."""
    return not (v is None or (type(v) is int and 10**9 < v < 2**63))


CALLS = {
    "send": ["data"],
    "send_qubit": ["qubit", "metadata", "min_fidelity", "timeout_ns"],
    "create_epr": ["number", "min_fidelity", "measure", "timeout_ns"],
    "recv_epr": ["number", "measure", "timeout_ns"],
    "recv": ["timeout_ns"],
    "recv_qubit": ["timeout_ns"],
    "connect": ["node", "port", "timeout_ns", "local_port"],
    "listen": ["port"],
    "accept": ["timeout_ns"],
    "sleep": ["delay_ns"],
    "rx": ["theta"], "ry": ["theta"], "rz": ["theta"],
    "measure_qubit": ["basis"],
    "cnot": ["other"],
}
RECEIVES = {"recv_epr", "recv", "recv_qubit", "accept"}


@st.composite
def fuzz_calls(draw):
    calls = []
    for _ in range(draw(st.integers(1, 4))):
        call = draw(st.sampled_from(sorted(CALLS)))
        arg = draw(st.sampled_from(CALLS[call]))
        junk = JUNK.filter(_short_wait) if call in RECEIVES and arg == "timeout_ns" else JUNK
        calls.append((call, arg, draw(junk)))
    return calls


def _args(arg, value, names):
    """Keyword arguments ``names``: ``value`` for ``arg``, valid ones for the rest."""
    return {n: value if n == arg else VALID[n] for n in names}


async def _fuzz_one(ctx, sock, call, arg, value):
    """Make one call with ``value`` for ``arg``; free whatever it returns."""
    held = []
    try:
        if call == "send":
            await sock.send(value)
        elif call == "send_qubit":
            q = ctx.qubit()
            held.append(q)
            kw = _args(arg, value, ["metadata", "min_fidelity", "timeout_ns"])
            await sock.send_qubit(value if arg == "qubit" else q, **kw)
        elif call == "create_epr":
            kw = _args(arg, value, ["min_fidelity", "measure", "timeout_ns"])
            out = await sock.create_epr(value if arg == "number" else 1, **kw)
            held.extend(out)
        elif call == "recv_epr":
            kw = _args(arg, value, ["measure"])
            kw["timeout_ns"] = value if arg == "timeout_ns" else 1_000
            held.extend(await sock.recv_epr(value if arg == "number" else 1, **kw))
        elif call in ("recv", "recv_qubit"):
            got = await getattr(sock, call)(timeout_ns=value)
            held.append(got)
        elif call == "connect":
            kw = _args(arg, value, ["node", "port", "timeout_ns"])
            kw["local_port"] = value if arg == "local_port" else None
            other = await ctx.socket().connect(kw.pop("node"), kw.pop("port"), **kw)
            await other.close()
        elif call == "listen":
            await ctx.listen(value).close()
        elif call == "accept":
            server = ctx.listen(9)
            try:
                await server.accept(timeout_ns=value)
            finally:
                await server.close()
        elif call == "sleep":
            await ctx.sleep(value)
        elif call in ("rx", "ry", "rz"):
            q = ctx.qubit()
            held.append(q)
            getattr(q, call)(value)
        elif call == "measure_qubit":
            q = ctx.qubit()
            held.append(q)
            await q.measure(value)
        elif call == "cnot":
            q = ctx.qubit()
            held.append(q)
            q.cnot(value)
        return None
    except QStackError as err:
        held.extend(getattr(err, "qubits", []))      # EPR halves made before a failure
        return err
    finally:
        for q in held:
            if hasattr(q, "alive") and q.alive:
                q.discard()


def _apps(calls):
    async def alice(ctx):
        sock = await ctx.connect("bob", 7)
        errors = []
        for i, (call, arg, value) in enumerate(calls):
            try:
                err = await _fuzz_one(ctx, sock, call, arg, value)
            except Exception as exc:     # noqa: BLE001 - anything else is the failure
                raise AssertionError(f"{call}({arg}={value!r}) raised {exc!r}") from exc
            if err is not None:
                assert isinstance(err.code, ErrorCode) and err.detail, err
                errors.append((call, arg, int(err.code)))
            # the socket still works, both ways
            await sock.send(b"sync %d" % i)
            reply = await sock.recv(timeout_ns=10**10)
            assert reply == b"ack %d" % i, (call, arg, value, reply)
        await sock.send(b"done")
        return errors

    async def bob(ctx):
        sock = await ctx.listen(7).accept()

        async def drain():
            # take (and free) every qubit and EPR half waiting: a receiver holds
            # at most `window` items its application has not taken
            # (specs/transport.md §4), so one that only reads bytes while EPR
            # halves wait ahead of them would stall the connection
            for recv in (sock.recv_qubit, lambda **kw: sock.recv_epr(1, **kw)):
                while True:
                    try:
                        got = await recv(timeout_ns=0)
                    except TransportTimeout:
                        break
                    except QStackError:     # a lost item: the next one may follow
                        continue
                    for q in got if isinstance(got, list) else [got]:
                        q.discard()

        while True:
            await drain()
            try:
                msg = await sock.recv(timeout_ns=1_000_000)
            except TransportTimeout:
                continue
            if msg == b"done":
                return "ok"
            if not msg.startswith(b"sync "):
                continue                # bytes alice's fuzzed send() got through
            await drain()               # what alice's call sent (before this message: in order)
            await sock.send(msg.replace(b"sync", b"ack"))

    return {"alice": alice, "bob": bob}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(fuzz_calls(), st.integers(0, 2**16))
# a whole window of EPR halves ahead of the bytes the receiver waits for
@example(calls=[("create_epr", "number", 4)], seed=0)
def test_random_arguments_are_refused_with_a_code_and_the_socket_keeps_working(calls, seed):
    res = qstack.simulate(SPEC, _apps(calls), seed=seed, network_layer="ideal",
                          ideal_interval_ns=100_000, stall_s=None)
    assert res.ok, {k: repr(v) for k, v in res.errors.items()}
    assert res.results["bob"] == "ok"
    assert not [r for r in res.failures if r.code == ErrorCode.INTERNAL_ERROR]
