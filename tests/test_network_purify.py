"""BBPSSW and DEJMPS as protocols on the density-matrix engine vs their
published closed forms (tests/closed_forms.py: Bennett et al. 1996, Deutsch
et al. 1996, written out from the papers, not taken from qstack.network.theory).

The purification protocol runs on the real stack (tests/netstack.py: the
simulator's driver, ``network.purify`` over the EGP over a heralded link of
Werner pairs in uniformly random Bell states, classical delay 1 us). Memories
do not decay and gates are noiseless, so neither the time raw pairs wait nor
the order they come in changes any state: the closed forms hold as they are.

Fidelities: 1e-9, since the state after a successful round is determined
(exact dm arithmetic, round-off ~1e-15 per gate). Success probabilities:
statistical, within 4 standard errors of the binomial estimate (fixed seed,
so deterministic)."""
import math

import pytest

from qstack.link.service import CreateRequest, LinkOk
from qstack.network.purify import BBPSSW, DEJMPS, PurifyProtocol, twirl_ops
from tests.closed_forms import bbpssw, dejmps, werner
from tests.netstack import ideal_hardware, inbox, link_model, stack_net


def run_purify(scheme, f_raw, target, number, mode="recurrence", seed=1, slots=None):
    slots = number + 8 if slots is None else slots   # delivered pairs stay in memory
    net, _ = stack_net("ab", {("a", "b"): link_model(0.5, f_raw)},
                       lambda n: [PurifyProtocol(n, {"a": f_raw, "b": f_raw}, scheme=scheme,
                                                 mode=mode, seed=seed)],
                       formalism="dm", seed=seed, hardware=ideal_hardware(slots))
    net.submit("a", CreateRequest("b", number=number, min_fidelity=target, purpose_id=7),
               to="network.purify")
    net.run()
    assert not net.errors
    outs_a = {e.ent_id: e for e in inbox(net, "a", LinkOk)}
    outs_b = {e.ent_id: e for e in inbox(net, "b", LinkOk)}
    assert outs_a.keys() == outs_b.keys() and len(outs_a) == number
    # every Bell fidelity of each output pair, and the protocol's estimate
    coeffs = [[net.engine.bell_fidelity(outs_a[k].qubit, outs_b[k].qubit, b) for b in range(4)]
              for k in outs_a]
    return net, coeffs, [outs_a[k].goodness for k in outs_a]


@pytest.mark.parametrize("f_raw", [0.7, 0.8, 0.9])
def test_dejmps_one_round_fidelity(f_raw):
    c1, _ = dejmps(werner(f_raw))
    net, coeffs, est = run_purify(DEJMPS, f_raw, c1[0] - 1e-6, number=4)
    for c in coeffs:     # DEJMPS has no twirl: the whole Bell diagonal is determined
        assert c == pytest.approx(c1, abs=1e-9)
    assert all(abs(g - c1[0]) < 1e-9 for g in est)


def test_dejmps_two_rounds_fidelity():
    c1, _ = dejmps(werner(0.75))
    c2, _ = dejmps(c1)
    net, coeffs, _ = run_purify(DEJMPS, 0.75, c2[0] - 1e-6, number=3)
    for c in coeffs:
        assert c == pytest.approx(c2, abs=1e-9)


def test_dejmps_pumping_fidelity():
    base = werner(0.8)
    c1, _ = dejmps(base, base)
    c2, _ = dejmps(c1, base)
    net, coeffs, _ = run_purify(DEJMPS, 0.8, c2[0] - 1e-6, number=3, mode="pumping")
    for c in coeffs:
        assert c == pytest.approx(c2, abs=1e-9)


@pytest.mark.parametrize("f_raw", [0.7, 0.85])
def test_bbpssw_one_round_fidelity(f_raw):
    f1, _ = bbpssw(f_raw)
    net, coeffs, est = run_purify(BBPSSW, f_raw, f1 - 1e-6, number=4)
    # the twirl element drawn permutes Phi-, Psi+, Psi- and keeps Phi+: only
    # F is determined pair by pair
    assert all(abs(c[0] - f1) < 1e-9 for c in coeffs)
    assert all(abs(g - f1) < 1e-9 for g in est)


@pytest.mark.parametrize("scheme", [BBPSSW, DEJMPS])
def test_success_probability_statistics(scheme):
    f_raw = 0.7
    f1, p = bbpssw(f_raw)
    # one round on Werner inputs: DEJMPS's N is BBPSSW's denominator
    assert dejmps(werner(f_raw))[1] == pytest.approx(p, abs=1e-12)
    net, _, _ = run_purify(scheme, f_raw, f1 - 1e-6, number=150, seed=11)
    st = net.nodes["a"].protocols["network.purify"].stats
    n, k = st["rounds"], st["success"]
    sem = math.sqrt(p * (1 - p) / n)
    assert abs(k / n - p) < 4 * sem, (k, n, p)


def test_bbpssw_twirl_keeps_phi_plus_and_equalises():
    """The 24 bilateral twirl elements, applied to a Bell-diagonal state,
    keep Phi+ and average the other three weights (Werner form)."""
    import numpy as np
    from qstack.physical.bell_diagonal import BellDiagonal
    from qstack.physical.engine import QuantumEngine
    bd = BellDiagonal([0.7, 0.2, 0.07, 0.03])
    acc = np.zeros(4)
    for t in range(24):
        e = QuantumEngine(0)
        qa, qb = e.bell_pair_from(bd, "dm")
        for q, creator in ((qa, True), (qb, False)):
            for name, params in twirl_ops(t, creator):
                getattr(e, name)(q, *params)
        acc += [e.bell_fidelity(qa, qb, b) for b in range(4)]
    acc /= 24
    assert abs(acc[0] - 0.7) < 1e-12
    assert np.allclose(acc[1:], 0.1, atol=1e-12)


def test_a_raw_pair_that_expires_in_a_level_is_forgotten_not_purified():
    """A raw pair waiting for its partner that the link layer expires
    (cut-off) leaves the purification: it is not combined with the next pair
    (its qubit is gone) and the layer above is not told of a pair it never saw."""
    from qstack.core.protocol import Deliver, Submit
    from qstack.link.service import EntanglementId, LinkExpire
    from qstack.physical.ops import Gate

    p = PurifyProtocol("a", {"b": 0.8}, scheme=DEJMPS)
    p.handle(CreateRequest("b", number=1, min_fidelity=0.85, purpose_id=7), 0)

    def ok(seq):
        return LinkOk(seq, EntanglementId("a", "b", seq), "b", 0, 0.8, 0, purpose_id=7,
                      qubit=f"q{seq}")

    p.handle(ok(0), 10)                                   # waits in level 0 for a partner
    acts = p.handle(LinkExpire(EntanglementId("a", "b", 0), "b", "cut-off", 7), 20)
    assert not [a for a in acts if isinstance(a, Deliver)]
    session = p.sessions[("b", 7)]
    assert session.pairs == {} and all(not lvl for lvl in session.levels.values())
    acts = p.handle(ok(1), 30)
    # no round on the expired qubit: the new pair waits and more raw pairs are asked for
    assert not [a for a in acts if hasattr(a, "op") and isinstance(a.op, Gate)]
    assert [a for a in acts if isinstance(a, Submit) and isinstance(a.request, CreateRequest)]
    # an expiry of a pair this protocol does not hold goes up unchanged
    other = LinkExpire(EntanglementId("a", "b", 99), "b", "cut-off", 7)
    assert p.handle(other, 40) == [Deliver(other)]
