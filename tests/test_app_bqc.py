"""Blind quantum computation (qstack.app.bqc): correctness, verification, blindness, noise.

Everything the protocol computes is checked against numpy simulations in
``tests/bqc_reference.py`` that do not use qstack's state engine: gate
circuits as state vectors, patterns qubit by qubit. Network runs use two
nodes on the ideal network layer (Werner pairs of the fidelity asked for)
with density matrices; the applications use only the socket API.

Tolerances: exact results (fidelity of a returned state, a deterministic
output, a trap that must or must not fire) to 1e-9 or exactly; frequencies
within 4 binomial standard deviations of the closed form, computed from the
closed form (a fixed seed makes each run reproducible; 4 sigma leaves a
6e-5 chance per check that an honest run fails by chance).
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import qstack.api as api
from qstack.app import bqc
from qstack.app.bqc import rounds as R
from qstack.core.errors import ErrorCode, QStackError

from .bqc_reference import H, apply1, circuit_state, run_pattern, same_state

PORT = 11
ONE = ["h", "s", "sdg", "t", "tdg", "x", "z"]


def network(rows: int) -> dict:
    """client -- server, one link; memories that do not decay. The server
    holds two columns, the client a column of EPR halves, each end a pair
    half per teleported qubit."""
    return {"formalism": "dm",
            "defaults": {"node": {"memory": 4 * rows + 6, "t1_s": "inf", "t2_s": "inf"},
                         "link": {"scheme": "sender-receiver", "length_km": 1,
                                  "false_herald_prob": 0.0}},
            "nodes": ["client", "server"], "links": [["client", "server"]]}


def run(pattern, *, rounds=1, schedule=None, remote=False, deviation=None, fidelity=1.0,
        seed=1):
    """Run ``pattern`` between the two nodes; the client returns its
    RoundResults and the output qubits (kept: they are in its return value)."""

    async def client(ctx):
        async with await ctx.connect("server", PORT) as sock:
            res = await bqc.run_rounds(ctx, sock, pattern, rounds=rounds, schedule=schedule,
                                       remote=remote)
        return [res, [r.output for r in res if isinstance(r.output, list)]]

    async def server(ctx):
        sock = await ctx.listen(PORT).accept()
        return await bqc.serve(ctx, sock, deviation=deviation)

    res = api.simulate(network(pattern.graph.rows), {"client": client, "server": server},
                       seed=seed, network_layer="ideal", ideal_fidelity=fidelity)
    res.raise_errors()
    return res


@st.composite
def circuits(draw, max_wires=3, max_gates=8, gates=None):
    wires = draw(st.integers(1, max_wires))
    names = gates or ONE + ["rz", "cnot"]
    out = []
    for _ in range(draw(st.integers(0, max_gates))):
        name = draw(st.sampled_from(names))
        if name == "cnot":
            if wires < 2:
                continue
            c = draw(st.integers(0, wires - 1))
            t = draw(st.integers(0, wires - 2))
            out.append(("cnot", c, t + (t >= c)))
        elif name == "rz":
            out.append(("rz", draw(st.integers(0, wires - 1)), draw(st.integers(-8, 15))))
        else:
            out.append((name, draw(st.integers(0, wires - 1))))
    return wires, out


def expected_state(wires, gates, measure_outputs):
    """What the output column holds: C|0..0>, and H on every wire before an X readout."""
    psi = circuit_state(wires, gates)
    if measure_outputs:
        for w in range(wires):
            psi = apply1(psi, H, w, wires)
    return psi


# ---------------------------------------------------------------- graph and compiler

@pytest.mark.parametrize("rows,layers", [(1, 1), (2, 1), (4, 3), (5, 3)])
def test_brickwork_edges_are_bfk_definition_1(rows, layers):
    # BFK 2009, Definition 1, 1-indexed rows i and columns j, m = 5 (mod 8):
    # rows are chains; vertical edges (i, j)-(i+1, j) and (i, j+2)-(i+1, j+2)
    # for j = 3 (mod 8) and i odd, and for j = 7 (mod 8) and i even.
    m = 4 * layers + 1
    assert m % 8 == 5
    want = set()
    for i in range(1, rows + 1):
        for j in range(1, m):
            want.add(((i, j), (i, j + 1)))
    for j in range(1, m + 1):
        for i in range(1, rows):
            if (j % 8 == 3 and i % 2 == 1) or (j % 8 == 7 and i % 2 == 0):
                want |= {((i, j), (i + 1, j)), ((i, j + 2), (i + 1, j + 2))}
    g = bqc.Brickwork(rows, layers)
    got = set()
    for a, b in g.edges():
        (ra, ca), (rb, cb) = g.position(a), g.position(b)
        got.add(((ra + 1, ca + 1), (rb + 1, cb + 1)))
    assert got == want
    assert all(g.colour(a) != g.colour(b) for a, b in g.edges())     # a proper 2-colouring


@settings(max_examples=60)
@given(circuits(max_wires=3, max_gates=10), st.booleans(), st.integers(0, 2**32 - 1))
def test_compiled_pattern_computes_the_circuit(circ, measure_outputs, seed):
    # The pattern run in numpy with random outcomes and its flow corrections
    # leaves exactly the circuit's state (every branch: two of them per example).
    wires, gates = circ
    pattern = bqc.compile_circuit(bqc.Circuit(wires, gates), measure_outputs=measure_outputs)
    assert pattern.graph.layers == bqc.layers_needed(bqc.Circuit(wires, gates), measure_outputs)
    want = expected_state(wires, gates, measure_outputs)
    rng = np.random.default_rng(seed)
    for _ in range(2):
        got, _ = run_pattern(pattern, rng)
        assert same_state(got, want) == pytest.approx(1.0, abs=1e-9)


def test_compiler_packs_a_cnot_into_one_brick():
    # H on wire 0 then CNOT: the prefix H and H cancel, the CNOT takes layer 0
    # for the pair (0, 1); wire 1's prefix H needs a slot first, so layer 2.
    c = bqc.Circuit(2, [("cnot", 0, 1)])
    assert bqc.layers_needed(c, measure_outputs=False) == 3
    assert bqc.compile_circuit(c, measure_outputs=False, layers=5).graph.layers == 5
    with pytest.raises(QStackError) as err:
        bqc.compile_circuit(c, measure_outputs=False, layers=2)
    assert err.value.code == ErrorCode.OUT_OF_RANGE


# ---------------------------------------------------------------- over the network

@settings(max_examples=6)
@given(circuits(max_wires=3, max_gates=5), st.booleans(), st.integers(1, 1000))
def test_blind_computation_returns_the_circuit_state(circ, remote, seed):
    # Quantum output: the server sends the output column back, the client
    # undoes its pads and the byproduct: the state is C|0..0>, exactly, on a
    # noiseless network, whether qubits were sent or made from EPR pairs.
    wires, gates = circ
    pattern = bqc.compile_circuit(bqc.Circuit(wires, gates), measure_outputs=False)
    res = run(pattern, remote=remote, seed=seed)
    (qubits,) = res.results["client"][1]
    rho = res.net.engine.density_matrix([q.ref for q in qubits])
    psi = circuit_state(wires, gates)
    assert float(np.real(psi.conj() @ rho @ psi)) == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=10)
@given(circuits(max_wires=3, max_gates=8, gates=["x", "cnot", "z"]), st.integers(1, 1000))
def test_classical_output_of_a_reversible_circuit_is_deterministic(circ, seed):
    # X, Z and CNOT map |0..0> to one basis state: every round reads it out.
    wires, gates = circ
    bits = [0] * wires
    for g in gates:
        if g[0] == "x":
            bits[g[1]] ^= 1
        elif g[0] == "cnot":
            bits[g[2]] ^= bits[g[1]]
    pattern = bqc.compile_circuit(bqc.Circuit(wires, gates))
    res = run(pattern, rounds=2, seed=seed)
    assert [r.output for r in res.results["client"][0]] == [tuple(bits)] * 2


def test_output_distribution_of_a_non_clifford_circuit():
    # H T H on |0>: P(1) = |<1|H T H|0>|^2 = sin^2(pi/8) = 0.1464.
    n = 300
    pattern = bqc.compile_circuit(bqc.Circuit(1, [("h", 0), ("t", 0), ("h", 0)]))
    res = run(pattern, rounds=n, seed=7)
    ones = sum(r.output[0] for r in res.results["client"][0])
    p = math.sin(math.pi / 8) ** 2
    assert abs(ones - n * p) < 4 * math.sqrt(n * p * (1 - p))      # 43.9 +- 24.5


def test_bell_circuit_outputs_correlated_bits():
    # H, CNOT: 00 or 11, each with probability 1/2; never 01 or 10.
    n = 40
    pattern = bqc.compile_circuit(bqc.Circuit(2, [("h", 0), ("cnot", 0, 1)]))
    res = run(pattern, rounds=n, seed=2, remote=True)
    counts = Counter(r.output for r in res.results["client"][0])
    assert set(counts) <= {(0, 0), (1, 1)}
    assert abs(counts[(1, 1)] - n / 2) < 4 * math.sqrt(n / 4)     # 20 +- 12.6


# ---------------------------------------------------------------- verification (traps)

def trap_fail_probability(graph, q):
    """A test round's chance to fail when each trap errs independently with
    probability q: traps are one colour class, chosen with probability 1/2."""
    sizes = Counter(graph.colour(v) for v in range(graph.size))
    return sum(0.5 * (1 - (1 - q) ** sizes[c]) for c in (0, 1))


def test_honest_server_passes_every_trap_and_computes():
    pattern = bqc.compile_circuit(bqc.Circuit(2, [("x", 0), ("cnot", 0, 1)]))
    schedule = [None, 0, 1, None, 1, 0]
    res = run(pattern, schedule=schedule, seed=4)
    rounds = res.results["client"][0]
    assert [r.trap_colour for r in rounds] == schedule
    assert all(r.failed_traps == [] for r in rounds if r.is_test)
    assert [r.output for r in rounds if not r.is_test] == [(1, 1), (1, 1)]


def test_single_qubit_attack_is_caught_exactly_when_that_qubit_is_a_trap():
    # A server that always flips qubit v's outcome fails a test round iff v
    # is a trap, i.e. iff the round's colour is v's: probability 1/2 per
    # test round, the protocol's stated bound for a 2-colourable graph.
    graph = bqc.Brickwork(2, 1)
    pattern = bqc.Pattern(graph, (0,) * graph.size)
    v = 3
    schedule = [0, 1, 1, 0, 0, 1]
    res = run(pattern, schedule=schedule, deviation=bqc.FlipOutcomes(1.0, qubits=[v]), seed=5)
    for r in res.results["client"][0]:
        assert r.failed_traps == ([v] if r.trap_colour == graph.colour(v) else [])


def test_verify_accepts_honest_and_rejects_a_single_qubit_attack():
    pattern = bqc.compile_circuit(bqc.Circuit(2, [("x", 1), ("cnot", 1, 0)]))

    def apps(deviation):
        async def client(ctx):
            async with await ctx.connect("server", PORT) as sock:
                return await bqc.verify(ctx, sock, pattern, computations=3, tests=8)

        async def server(ctx):
            return await bqc.serve(ctx, await ctx.listen(PORT).accept(), deviation=deviation)
        return {"client": client, "server": server}

    honest = api.simulate(network(2), apps(None), seed=1, network_layer="ideal")
    verdict = honest.results["client"]
    assert verdict.accepted and verdict.output == (1, 1) and verdict.failed_tests == 0
    v = 5
    bad = api.simulate(network(2), apps(bqc.FlipOutcomes(1.0, qubits=[v])), seed=1,
                       network_layer="ideal")
    verdict = bad.results["client"]
    colour = pattern.graph.colour(v)
    caught = sum(1 for r in verdict.rounds if r.trap_colour == colour)
    assert verdict.failed_tests == caught and verdict.tests == 8
    assert verdict.accepted == (caught == 0)
    with pytest.raises(QStackError) as err:
        verdict.raise_if_rejected()
    assert err.value.code == ErrorCode.APP_ABORTED


@pytest.mark.parametrize("deviation,q,graph", [
    # Each reported bit flipped with probability 0.1: a trap errs with q = 0.1.
    (bqc.FlipOutcomes(0.1), 0.1, bqc.Brickwork(2, 1)),
    # Measured at delta + pi/2 with probability 0.5: a trap errs with
    # q = 0.5 sin^2(pi/4) = 0.25 (Born rule for |+_delta> in the |+-_{delta+pi/2}> basis).
    (bqc.WrongAngle(0.5, math.pi / 2), 0.5 * math.sin(math.pi / 4) ** 2, bqc.Brickwork(1, 1)),
])
def test_random_deviation_is_caught_at_the_stated_rate(deviation, q, graph):
    n = 200
    pattern = bqc.Pattern(graph, (0,) * graph.size)
    rng = np.random.default_rng(3)
    schedule = [int(c) for c in rng.integers(0, 2, n)]
    res = run(pattern, schedule=schedule, deviation=deviation, seed=9)
    failed = sum(1 for r in res.results["client"][0] if r.failed_traps)
    # The schedule is fixed: the expected count is the sum over its rounds.
    sizes = Counter(graph.colour(v) for v in range(graph.size))
    probs = [1 - (1 - q) ** sizes[c] for c in schedule]
    mean, var = sum(probs), sum(p * (1 - p) for p in probs)
    assert abs(failed - mean) < 4 * math.sqrt(var)
    assert trap_fail_probability(graph, q) == pytest.approx(
        np.mean([1 - (1 - q) ** sizes[c] for c in (0, 1)]))


# ---------------------------------------------------------------- blindness

def _view_table(views, graph):
    """Counts of (position, delta, outcome) over rounds: what the server saw."""
    table = np.zeros((graph.size, 16), dtype=int)
    for view in views:
        for deltas, outs in zip(view.deltas, view.outcomes):
            for v, (d, b) in enumerate(zip(deltas, outs)):
                table[v, 2 * d + b] += 1
    return table


def _chi2_two_programs(a, b):
    """Chi-square test of homogeneity: per position a 2 x 16 table (program x
    (delta, outcome)); positions are independent under the null, so the
    statistics add (df = 15 per position)."""
    stat, df = 0.0, 0
    for ra, rb in zip(a, b):
        table = np.array([ra, rb])
        table = table[:, table.sum(axis=0) > 0]
        chi2, _, dof, _ = stats.chi2_contingency(table, correction=False)
        stat, df = stat + chi2, df + dof
    return stat, df, stats.chi2.sf(stat, df)


def test_server_view_is_independent_of_the_program(monkeypatch):
    # Two programs on the same graph (2 x 5): the identity and a CNOT brick
    # with T gates. Null hypothesis: the server's view (every delta and its
    # outcome, per position) has the same distribution for both. Test:
    # chi-square homogeneity at significance 0.001 (the chance that this
    # fixed-seed check would fail for a truly blind protocol).
    graph = bqc.Brickwork(2, 1)
    identity = bqc.Pattern(graph, (0,) * graph.size)
    angles = [0] * graph.size
    for row, slot in ((0, bqc.compiler.CNOT_CONTROL), (1, bqc.compiler.CNOT_TARGET)):
        for i, k in enumerate(slot):
            angles[graph.qubit(row, i)] = k
    angles[graph.qubit(0, 0)], angles[graph.qubit(1, 1)] = 1, 7     # T, and T^dagger in a slot
    program = bqc.Pattern(graph, tuple(angles))
    n = 160
    views = [run(p, rounds=n, seed=s).results["server"] for p, s in ((identity, 1), (program, 2))]
    assert views[0].transcript == views[1].transcript               # the order of requests
    stat, df, p = _chi2_two_programs(*(_view_table([v], graph) for v in views))
    assert p > 0.001, (stat, df)
    # ... and every delta is uniform on the eight angles (pooled, df = 7).
    pooled = sum(_view_table([v], graph) for v in views).reshape(graph.size, 8, 2).sum(axis=(0, 2))
    assert stats.chisquare(pooled).pvalue > 0.001

    # The test has power: a client that skips the pads (theta = 0, r = 0)
    # leaks the program, and the same test rejects it.
    real_init = R.Round.__init__

    def unpadded(self, *a, **kw):
        real_init(self, *a, **kw)
        self.r = [0] * len(self.r)

    def unrotated(self, v):
        self.state[v] = 0
        return R.PLUS, 0

    monkeypatch.setattr(R.Round, "__init__", unpadded)
    monkeypatch.setattr(R.Round, "prepare", unrotated)
    leaky = [run(p, rounds=40, seed=s).results["server"] for p, s in ((identity, 1), (program, 2))]
    _, _, p_leak = _chi2_two_programs(*(_view_table([v], graph) for v in leaky))
    assert p_leak < 1e-6


# ---------------------------------------------------------------- noise

def test_z_error_on_qubits_0_2_4_flips_the_one_row_output():
    # The derivation behind the noise test, in the numpy reference: on the
    # 5-qubit chain with angles 0 (the identity, read out in X), a Z before
    # entangling flips the output iff it hits qubit 0, 2 or 4 (the chain of Z
    # dependencies 0 -> 2 -> 4); on 1 or 3 it only changes X byproducts,
    # which an angle-0 (X-basis) measurement does not see.
    pattern = bqc.Pattern(bqc.Brickwork(1, 1), (0,) * 5)
    plus = np.array([1, 1]) / math.sqrt(2)
    rng = np.random.default_rng(1)
    for v in range(5):
        psi, _ = run_pattern(pattern, rng, z_errors={v})
        assert same_state(psi, plus) == pytest.approx(0.0 if v in (0, 2, 4) else 1.0, abs=1e-12)


@pytest.mark.parametrize("fidelity,remote", [(0.9, False), (0.8, True)])
def test_success_probability_falls_with_the_pair_fidelity(fidelity, remote):
    # Teleporting |+_theta> over a Werner pair of fidelity F (or measuring
    # half of one) is the depolarising channel rho -> l rho + (1 - l) I/2,
    # l = (4F - 1)/3; on an equatorial state that is a Z with probability
    # eps = (1 - l)/2 = 2(1 - F)/3, independently per qubit. The identity
    # on one row (5 qubits) then succeeds iff an even number of qubits 0, 2,
    # 4 got one: P = (1 + (1 - 2 eps)^3)/2 (0.825 at F = 0.9, 0.697 at 0.8).
    n = 300
    pattern = bqc.Pattern(bqc.Brickwork(1, 1), (0,) * 5)
    res = run(pattern, rounds=n, fidelity=fidelity, remote=remote, seed=6)
    ok = sum(r.output == (0,) for r in res.results["client"][0])
    eps = 2 * (1 - fidelity) / 3
    p = (1 + (1 - 2 * eps) ** 3) / 2
    assert abs(ok - n * p) < 4 * math.sqrt(n * p * (1 - p))


def test_honest_server_over_noisy_pairs_fails_test_rounds_at_the_noise_rate():
    # Over Werner pairs of fidelity F every trap gets a Z and every dummy a
    # bit flip with probability eps = 2(1 - F)/3, independently (the
    # depolarising channel of teleportation on |+_theta> and on |d>). A trap
    # passes iff its own flip equals the parity of its dummy neighbours'
    # flips; summing over the dummies' flips gives the exact rate. Noise
    # looks like deviation: this is why verify has a threshold.
    graph, f, n = bqc.Brickwork(1, 1), 0.9, 300
    eps = 2 * (1 - f) / 3

    def fail_probability(colour):
        traps = [v for v in range(graph.size) if graph.colour(v) == colour]
        dummies = [v for v in range(graph.size) if graph.colour(v) != colour]
        p_pass = 0.0
        for flips in range(2 ** len(dummies)):
            bit = {d: (flips >> i) & 1 for i, d in enumerate(dummies)}
            p = math.prod(eps if bit[d] else 1 - eps for d in dummies)
            for t in traps:
                parity = sum(bit[u] for u in graph.neighbours(t)) % 2
                p *= eps if parity else 1 - eps
            p_pass += p
        return 1 - p_pass

    schedule = [int(c) for c in np.random.default_rng(4).integers(0, 2, n)]
    res = run(bqc.Pattern(graph, (0,) * graph.size), schedule=schedule, fidelity=f, seed=8)
    failed = sum(1 for r in res.results["client"][0] if r.failed_traps)
    probs = [fail_probability(c) for c in schedule]        # 0.291 (traps 0, 2, 4), 0.283
    mean, var = sum(probs), sum(p * (1 - p) for p in probs)
    assert abs(failed - mean) < 4 * math.sqrt(var)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("wires,gates,code", [
    (0, [], ErrorCode.OUT_OF_RANGE),
    (True, [], ErrorCode.BAD_FIELD),
    (2, [("cx", 0, 1)], ErrorCode.INVALID_PARAMETER),
    (2, [("cnot", 1, 1)], ErrorCode.INVALID_PARAMETER),
    (2, [("h", 2)], ErrorCode.OUT_OF_RANGE),
    (2, [("h", 1.0)], ErrorCode.BAD_FIELD),
    (2, [("rz", 0, 0.5)], ErrorCode.BAD_FIELD),
    (2, [("rz", 0)], ErrorCode.BAD_FIELD),
    (2, ["h"], ErrorCode.BAD_FIELD),
    (2, "h0", ErrorCode.BAD_FIELD),
])
def test_bad_circuits_are_refused_with_a_code(wires, gates, code):
    with pytest.raises(QStackError) as err:
        bqc.Circuit(wires, gates)
    assert err.value.code == code


def test_bad_patterns_and_messages_are_refused_with_a_code():
    g = bqc.Brickwork(1, 1)
    for angles, code in (((0,) * 4, ErrorCode.BAD_FIELD), ((0,) * 4 + (1,), ErrorCode.INVALID_PARAMETER),
                         ((0.5,) * 5, ErrorCode.BAD_FIELD)):
        with pytest.raises(QStackError) as err:
            bqc.Pattern(g, angles)
        assert err.value.code == code
    with pytest.raises(QStackError) as err:
        bqc.Brickwork(1, 0)
    assert err.value.code == ErrorCode.OUT_OF_RANGE
    good = R.header(R.Header(g, 3, quantum_output=True, remote=True))
    assert R.parse_header(good) == R.Header(g, 3, True, True)
    for data, code in ((b"xyz" + good[3:], ErrorCode.MALFORMED), (good[:-1], ErrorCode.MALFORMED),
                       (good[:3] + b"\x09" + good[4:], ErrorCode.UNSUPPORTED_VERSION),
                       (good[:-1] + b"\x80", ErrorCode.BAD_FIELD),
                       (good[:6] + b"\0\0\0\0" + good[10:], ErrorCode.OUT_OF_RANGE)):
        with pytest.raises(QStackError) as err:
            R.parse_header(data)
        assert err.value.code == code
    rnd = bqc.Round(bqc.Pattern(g, (0,) * 5), np.random.default_rng(1))
    for data, code in ((b"\x00\x01", ErrorCode.BAD_FIELD), (b"\x02", ErrorCode.OUT_OF_RANGE)):
        with pytest.raises(QStackError) as err:
            rnd.record(range(1), data)                # a server's reply checked
        assert err.value.code == code
    with pytest.raises(QStackError) as err:
        R.check_angles(b"\x08", 1)
    assert err.value.code == ErrorCode.OUT_OF_RANGE


def _started(coro):
    """Run a coroutine up to its first wait (argument checks come before it)."""
    try:
        coro.send(None)
    finally:
        coro.close()


def test_bad_client_calls_are_refused_before_anything_is_sent():
    pattern = bqc.Pattern(bqc.Brickwork(1, 1), (0,) * 5)
    quantum = bqc.Pattern(bqc.Brickwork(1, 1), (0,) * 5, measure_outputs=False)
    rng = np.random.default_rng(1)
    for call, code in (
            (bqc.run_rounds(None, None, pattern, rounds=1.5, rng=rng), ErrorCode.BAD_FIELD),
            (bqc.run_rounds(None, None, pattern, rounds=0, rng=rng), ErrorCode.OUT_OF_RANGE),
            (bqc.run_rounds(None, None, "program", rng=rng), ErrorCode.BAD_FIELD),
            (bqc.run_rounds(None, None, quantum, schedule=[0], rng=rng),
             ErrorCode.INVALID_PARAMETER),                     # traps need a readout
            (bqc.verify(None, None, pattern, tests=-1, rng=rng), ErrorCode.OUT_OF_RANGE),
            (bqc.verify(None, None, quantum, rng=rng), ErrorCode.INVALID_PARAMETER)):
        with pytest.raises(QStackError) as err:
            _started(call)
        assert err.value.code == code


def test_server_refuses_a_malformed_header():
    async def client(ctx):
        async with await ctx.connect("server", PORT) as sock:
            await sock.send(b"hello")
            return await sock.recv()

    async def server(ctx):
        return await bqc.serve(ctx, await ctx.listen(PORT).accept())

    res = api.simulate(network(1), {"client": client, "server": server}, seed=1,
                       network_layer="ideal")
    assert res.errors["server"].code == ErrorCode.MALFORMED
    assert res.errors["client"].code == ErrorCode.TRANSPORT_ABORTED


# ---------------------------------------------------------------- the example

@pytest.fixture(scope="module")
def blind_qc():
    from .test_examples import load
    return load("blind_qc")


def test_blind_qc_example_main_prints_the_verdicts_and_the_noise_table(blind_qc, capsys):
    assert blind_qc.expected_distribution(blind_qc.CIRCUIT) == pytest.approx({(1, 1): 1.0})
    assert blind_qc.main(["--rounds", "40"]) == 0
    out = capsys.readouterr().out
    assert "honest bob:  accepted, 0/6 test rounds failed, output (1, 1)" in out
    for f in (0.95, 0.9, 0.8, 0.7):
        eps = 2 * (1 - f) / 3
        assert f"{(1 + (1 - 2 * eps) ** 3) / 2:34.3f}" in out


def test_blind_qc_apps_run_over_the_repeater_network(blind_qc):
    # What `qstack sim examples/three_nodes.toml examples/blind_qc.py` runs:
    # bob serves every round (3 computations + 6 tests) of the 34-qubit
    # brickwork; the noise of the swapped pairs fails test rounds.
    from .test_examples import THREE_NODES

    res = api.simulate(THREE_NODES, blind_qc.APPS, seed=1, until_s=120)
    assert res.ok, res.errors
    a, b = res.results["alice"], res.results["bob"]
    assert b == {"rounds": 9, "angles": 9 * 34}
    assert a["tests"] == 6 and a["accepted"] == (a["failed_tests"] == 0)
    assert res.metrics["qubits_delivered"] == 9 * 34


def test_the_readme_block_verifies_a_circuit_blindly():
    from .test_readme import _block, _run

    first, second = _run(_block("bqc.verify(ctx, sock, pattern"))
    accepted, outputs = eval(first)
    assert accepted and len(outputs) == 4 and set(outputs) <= {(0, 0), (1, 1)}
    angles = eval(second)
    assert len(angles) == 10 and set(angles) <= set(range(8))
