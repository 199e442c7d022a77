"""Single-click heralds in the bd formalism, exactly (issue 16, item 10, its last loose end).

The bd formalism holds the family rho_BD(c) + (za Z(x)I + zb I(x)Z)/4: in the
computational basis (first qubit most significant), every state whose only
off-diagonal elements are a real <00|rho|11> and a real <01|rho|10>. A
single-click herald is one (populations, and a real coherence between |01>
and |10>), so it is held exactly, and Bell fidelities in bd equal dm's after
any T1/T2 waits; a state outside the family is refused unless its Bell twirl
is asked for by name (``twirl=True``).

Expected values are written out here: family states are drawn in the
computational basis (populations and two real coherences within the
positivity bound), single-click states from the formula in ``specs/link.md``
§5, memory decay from its Kraus operators (``tests/test_engine_t1_decay``)
and, for the herald-then-wait case, the closed form derived in
:func:`closed_form_fidelity`.

Tolerances: 1e-12 where a state is only stored and read back (no arithmetic
but the conversion, round-off ~1e-16); 1e-9 on Bell fidelities after waits
and swaps, the bound the issue sets (a few dozen float operations on O(1)
numbers, round-off ~1e-15). The tests of links also check that what they
compare could differ: the Bell twirl the bd formalism used to apply is off
by (p00 - p11)/2 gamma (1 - gamma), ~1e-2 there, so they would catch it.
"""
import math
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as hs

from qstack.config import network_from_dict
from qstack.link.egp import EGP
from qstack.link.schemes import SingleClickModel
from qstack.link.service import CreateRequest
from qstack.physical.detectors import ThresholdDetector
from qstack.physical.device import NodeHardware
from qstack.physical.engine import QuantumEngine
from qstack.physical.pair_model import SimplePairModel
from qstack.sim.network import SimNetwork
from tests.test_engine_t1_decay import BELL, bell_fidelities, wait
from tests.test_link_egp import FidelityProbe

EXACT = 1e-12      # stored and read back
TOL = 1e-9         # after waits and swaps (the bound)
EXAMPLES = int(os.environ.get("QSTACK_ENGINE_EXAMPLES", "150"))


# ------------------------------------------------------------ states, written out

def x_state(pops, s03, s12, phase=0.0):
    """Populations ``pops`` of |00>, |01>, |10>, |11> (normalised here), coherence
    <00|rho|11> = s03 sqrt(p00 p11) and <01|rho|10> = s12 sqrt(p01 p10) e^(i phase)
    (|s| <= 1: positive semidefinite, the two 2x2 blocks being independent)."""
    p = np.array(pops, dtype=float) / sum(pops)
    rho = np.diag(p).astype(complex)
    rho[0, 3] = rho[3, 0] = s03 * math.sqrt(p[0] * p[3])
    c = s12 * math.sqrt(p[1] * p[2]) * complex(math.cos(phase), math.sin(phase))
    rho[1, 2], rho[2, 1] = c, c.conjugate()
    return rho


def single_click_weights(alpha, eta, dark, vis, sigma):
    """(p00, p01 = p10, p11, coherence <01|rho|10>) of the state heralded by
    detector + (Psi+), normalised: specs/link.md §5 written out."""
    q = 1 - dark
    w00 = (1 - alpha) ** 2 * dark * q
    coh = alpha * (1 - alpha) * q * eta / 2
    inc = alpha * (1 - alpha) * q * (1 - eta) * dark
    w11 = alpha ** 2 * q * ((1 - eta) ** 2 * dark + eta * (1 - eta) + eta ** 2 * (1 + vis) / 4)
    n = w00 + 2 * (coh + inc) + w11
    return w00 / n, (coh + inc) / n, w11 / n, coh * math.sqrt(vis) * math.exp(-sigma ** 2 / 2) / n


def arm_eta(model):
    """Per-arm efficiency: emission x fibre over half the span (0.2 dB/km) x detector."""
    return (model.emission_efficiency * 10 ** (-0.2 * model.length_km / 2 / 10)
            * model.detector.efficiency)


def closed_form_fidelity(p00, p, p11, c, gamma, lam):
    """Fidelity to its Psi+ (or Psi-) of a single-click herald after each half
    waited with damping gamma and total coherence factor lam (= e^(-t/T2)).

    |1> relaxes to |0> with probability gamma on each half independently, so
    |01> keeps p (1-gamma) and gains p11 gamma (1-gamma) from |11> (the first
    half relaxing, the second not), likewise |10>; |00> feeds neither. The
    |01><10| coherence keeps a factor lam per half and gains nothing (a Kraus
    operator of the damping that lowers one half maps the other basis state
    of the pair away). F = (P01 + P10)/2 +- Re<01|rho|10>; the herald for
    Psi- carries the coherence with the opposite sign, so F is the same.
    ``p00`` does not enter; it is an argument to say so.
    """
    return p * (1 - gamma) + p11 * gamma * (1 - gamma) + c * lam * lam


def reference_swap(rho_a, rho_b, m):
    """Outcome probability and normalised state of (A0, B1) after projecting
    (A1, B0) of rho_a (x) rho_b onto Bell state m (no correction)."""
    big = np.kron(rho_a, rho_b).reshape([2] * 8)          # (a0 a1 b0 b1, a0' a1' b0' b1')
    v = BELL[m].reshape(2, 2)
    t = np.einsum("ij,aijbckld,kl->abcd", v.conj(), big, v)   # <B|..|B> on (a1, b0)
    out = t.reshape(4, 4)
    prob = float(np.trace(out).real)
    return prob, out / prob


# ------------------------------------------------------------ 1. the family round-trips

pops = hs.lists(hs.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda w: sum(w) > 1e-3)
unit = hs.floats(-1.0, 1.0)


@settings(max_examples=EXAMPLES, deadline=None)
@given(pops, unit, unit, hs.booleans())
def test_any_state_of_the_family_round_trips_exactly(w, s03, s12, labelled):
    """A state with populations and real <00|rho|11>, <01|rho|10>: prepare_pair
    and new_pair (with and without labels) and from_density_matrix keep it in
    bd, and its density matrix and Bell fidelities come back to 1e-12."""
    rho = x_state(w, s03, s12)
    eng = QuantumEngine(0)
    prepared = eng.prepare_pair(rho, "bd")
    pairs = [eng.new_pair(prepared, ["a", "b"] if labelled else None),
             tuple(eng.from_density_matrix(rho, "bd"))]
    for a, b in pairs:
        assert eng.formalism_of(a) == "bd"
        np.testing.assert_allclose(eng.density_matrix([a, b]), rho, atol=EXACT, rtol=0)
        expect = bell_fidelities(rho.real)
        for k in range(4):
            assert eng.bell_fidelity(a, b, k) == pytest.approx(expect[k], abs=EXACT)


alphas = hs.floats(1e-4, 0.5)
etas = hs.floats(0.01, 1.0)
darks = hs.floats(0.0, 1e-3)
vises = hs.floats(0.0, 1.0)
sigmas = hs.floats(0.0, 2.0)


@settings(max_examples=EXAMPLES, deadline=None)
@given(alphas, etas, darks, vises, sigmas, hs.integers(0, 3))
def test_single_click_heralds_are_in_the_family(alpha, eff, dark, vis, sigma, bell):
    """Every single-click herald (any alpha, efficiency, dark counts,
    visibility, phase noise, announced Bell state) is prepared in bd as it is:
    its density matrix comes back to 1e-12, and its polarisation is not zero
    (so it is not Bell-diagonal: a twirl would lose something)."""
    model = SingleClickModel(length_km=0.0, emission_efficiency=eff, visibility=vis,
                             phase_noise_rad=sigma,
                             detector=ThresholdDetector(efficiency=1.0, dark_count_prob_per_gate=dark))
    rho = model.heralded_state(alpha, bell)
    p00, p, p11, c = single_click_weights(alpha, arm_eta(model), dark, vis, sigma)
    if bell == 2:   # the formula as written (Psi+): the model's state is it
        np.testing.assert_allclose(rho, x_state([p00, p, p, p11], 0.0, c / p if p else 0.0),
                                   atol=EXACT, rtol=0)
    eng = QuantumEngine(0)
    a, b = eng.new_pair(eng.prepare_pair(rho, "bd"))
    assert eng.formalism_of(a) == "bd"
    np.testing.assert_allclose(eng.density_matrix([a, b]), rho, atol=EXACT, rtol=0)
    if abs(p00 - p11) > 1e-9:
        assert eng.bell_diagonal_of(a) is None        # polarised, not Bell-diagonal


# ------------------------------------------------------------ 2. outside the family

@settings(max_examples=EXAMPLES, deadline=None)
@given(pops, unit, hs.floats(0.05, 1.0), hs.floats(0.01, math.pi - 0.01))
def test_a_state_outside_the_family_is_refused_unless_twirled_by_name(w, s03, s12, phase):
    """A complex <01|rho|10> (a phase offset between the arms) is outside the
    family: bd refuses it, naming twirl=True and dm; dm holds it exactly;
    twirl=True gives its Bell twirl, the Bell fidelities <B|rho|B>."""
    rho = x_state(w, s03, s12, phase)
    assume(abs(rho[1, 2].imag) > 1e-9)
    eng = QuantumEngine(0)
    for make in (lambda **kw: eng.from_density_matrix(rho, "bd", **kw),
                 lambda **kw: eng.new_pair(eng.prepare_pair(rho, "bd", **kw))):
        with pytest.raises(ValueError, match=r"(?s)outside.*formalism='dm'.*twirl=True"):
            make()
        a, b = make(twirl=True)
        bd = eng.bell_diagonal_of(a)
        assert bd is not None
        expect = [float(np.real(BELL[k] @ rho @ BELL[k])) for k in range(4)]
        np.testing.assert_allclose(bd.as_tuple(), expect, atol=EXACT, rtol=0)
    a, b = eng.new_pair(eng.prepare_pair(rho, "dm"))
    np.testing.assert_allclose(eng.density_matrix([a, b]), rho, atol=EXACT, rtol=0)


def test_the_family_tolerance_is_1e_12():
    """An imaginary <01|rho|10> of 1e-13 is round-off (accepted, and dropped);
    one of 1e-10 is not (refused)."""
    base = x_state([0.1, 0.4, 0.4, 0.1], 0.5, 0.5)
    eng = QuantumEngine(0)
    for eps, ok in ((1e-13, True), (1e-10, False)):
        rho = base.copy()
        rho[1, 2] += 1j * eps
        rho[2, 1] -= 1j * eps
        if ok:
            a, b = eng.from_density_matrix(rho, "bd")
            np.testing.assert_allclose(eng.density_matrix([a, b]), base, atol=EXACT, rtol=0)
        else:
            with pytest.raises(ValueError, match="twirl=True"):
                eng.from_density_matrix(rho, "bd")


# ------------------------------------------------------------ 3. waits and swaps, engine level

t1s = hs.floats(1e3, 1e7)
t2_fracs = hs.floats(0.01, 1.0)                       # T2 = 2 T1 * frac <= 2 T1
waits = hs.tuples(hs.floats(0.0, 2.0), hs.floats(0.0, 2.0))     # in units of T1


@settings(max_examples=EXAMPLES, deadline=None)
@given(alphas, etas, vises, sigmas, hs.integers(2, 3), hs.integers(2, 3), t1s, t2_fracs,
       waits, waits, waits, hs.integers(0, 2**32 - 1))
def test_single_click_pairs_waiting_and_swapped_agree_with_dm_and_the_reference(
        alpha, eff, vis, sigma, bell_a, bell_b, t1, frac, wa, wb, wo, seed):
    """Two single-click heralds (pairs A and B), each half waiting, a BSM on
    (A1, B0), the outer halves waiting again: bd and dm give the same outcome
    from the same seed, and Bell fidelities equal to each other and to the
    Kraus reference (4x4 and 16x16 matrices written out here) within 1e-9."""
    t2 = 2 * t1 * frac
    model = SingleClickModel(length_km=0.0, emission_efficiency=eff, visibility=vis,
                             phase_noise_rad=sigma,
                             detector=ThresholdDetector(efficiency=1.0, dark_count_prob_per_gate=0.0))
    rho_a, rho_b = model.heralded_state(alpha, bell_a), model.heralded_state(alpha, bell_b)
    ref_a, ref_b = rho_a.real, rho_b.real
    for side in (0, 1):
        ref_a = wait(ref_a, side, wa[side] * t1, t1, t2)
        ref_b = wait(ref_b, side, wb[side] * t1, t1, t2)
    got = {}
    for formalism in ("bd", "dm"):
        eng = QuantumEngine(np.random.default_rng(seed))
        a0, a1 = eng.new_pair(eng.prepare_pair(rho_a, formalism))
        b0, b1 = eng.new_pair(eng.prepare_pair(rho_b, formalism))
        for side in (0, 1):
            eng.memory_decay((a0, a1)[side], wa[side] * t1, t1, t2)
            eng.memory_decay((b0, b1)[side], wb[side] * t1, t1, t2)
        before = ([eng.bell_fidelity(a0, a1, k) for k in range(4)],
                  [eng.bell_fidelity(b0, b1, k) for k in range(4)])
        m = eng.bsm(a1, b0)
        eng.memory_decay(a0, wo[0] * t1, t1, t2)
        eng.memory_decay(b1, wo[1] * t1, t1, t2)
        assert eng.formalism_of(a0) == formalism     # bd never left the fast formalism
        got[formalism] = (m, before, [eng.bell_fidelity(a0, b1, k) for k in range(4)])
    m = got["bd"][0]
    assert m == got["dm"][0]
    prob, ref = reference_swap(ref_a, ref_b, m)
    assume(prob > 1e-6)         # an outcome the reference can normalise
    ref = wait(wait(ref, 0, wo[0] * t1, t1, t2), 1, wo[1] * t1, t1, t2)
    for f in ("bd", "dm"):
        _, before, after = got[f]
        np.testing.assert_allclose(before[0], bell_fidelities(ref_a), atol=TOL, rtol=0)
        np.testing.assert_allclose(before[1], bell_fidelities(ref_b), atol=TOL, rtol=0)
        np.testing.assert_allclose(after, bell_fidelities(ref), atol=TOL, rtol=0)


# ------------------------------------------------------------ 4. in the simulator

def run_link(model, formalism, t1, t2, n=60, f_min=0.25, seed=5, slots=4):
    """n single-click pairs between a and b; (alpha, the OKs at a, each pair's
    fidelity to its announced Bell state in the engine when the second end's OK
    arrives, after both halves' waits in memory)."""
    hw = NodeHardware(num_qubits=slots, t1_ns=t1, t2_ns=t2)
    net = SimNetwork(seed=seed, formalism=formalism)
    for node in ("a", "b"):
        net.add_node(node, hw)
    net.add_link("a", "b", model=model)
    shared, recs = {}, {}
    for node, peer in (("a", "b"), ("b", "a")):
        net.add_protocol(node, EGP(node, {peer: model}, hardware=hw))
        recs[node] = net.add_protocol(node, FidelityProbe(node, net, shared))
    net.submit("a", CreateRequest("b", number=n, min_fidelity=f_min), to="link.egp")
    net.run()
    oks = recs["a"].oks
    assert len(oks) == n and len(recs["b"].oks) == n and not recs["a"].errs
    alpha = net.node("a").protocols["link.egp"].choose_param("b", f_min)
    return alpha, oks, recs["a"].fids + recs["b"].fids


@pytest.mark.parametrize("t1, t2", [(1e5, 1.2e5), (4e4, 8e4), (2e5, 1e4)])
def test_single_click_link_bd_equals_dm_with_finite_t1_and_t2(t1, t2):
    """A single-click link 10 km long (herald delay ~49 us, T1 from 40 to 200
    us): the same seed gives the same heralds (times, Bell indices) in both
    formalisms, and every delivered pair's Bell fidelity in bd equals dm's
    and the closed form (:func:`closed_form_fidelity`, both halves waiting
    the herald delay) within 1e-9. The twirl of the herald, which bd used to
    apply, is off from it by (p00 - p11)/2 gamma (1 - gamma): checked to be
    far above 1e-9, so that this test would catch it."""
    det = ThresholdDetector(efficiency=0.9, dark_count_prob_per_gate=1e-4)
    model = SingleClickModel(length_km=10, detector=det, visibility=0.9, phase_noise_rad=0.2)
    runs = {f: run_link(model, f, t1, t2) for f in ("bd", "dm")}
    (alpha, oks_bd, fids_bd), (alpha_dm, oks_dm, fids_dm) = runs["bd"], runs["dm"]
    assert alpha == alpha_dm
    assert [(t, o.bell_index) for t, o in oks_bd] == [(t, o.bell_index) for t, o in oks_dm]
    assert {o.bell_index for _, o in oks_bd} == {2, 3}        # both heralds seen
    np.testing.assert_allclose(fids_bd, fids_dm, atol=TOL, rtol=0)
    t = model.classical_delay_ns                             # herald delay, both ends
    gamma, lam = 1 - math.exp(-t / t1), math.exp(-t / t2)
    p00, p, p11, c = single_click_weights(alpha, arm_eta(model), 1e-4, 0.9, 0.2)
    f = closed_form_fidelity(p00, p, p11, c, gamma, lam)
    np.testing.assert_allclose(fids_bd, f, atol=TOL, rtol=0)
    # the EGP promised this fidelity (its goodness): the same number
    assert all(abs(o.goodness - f) < TOL for _, o in oks_bd + oks_dm)
    twirled = p * (1 - gamma) + (p00 + p11) / 2 * gamma * (1 - gamma) + c * lam * lam
    assert abs(twirled - f) > 1e-4


def test_twirl_asked_for_by_name_is_the_twirl():
    """twirl=True on the link: the heralded state is the Bell twirl, in both
    formalisms alike, and its fidelity after the waits is the twirl's closed
    form (|00> and |11> each with (p00 + p11)/2), not the exact one."""
    t1, t2 = 1e5, 1.2e5
    model = SingleClickModel(length_km=10, detector=ThresholdDetector(efficiency=0.9),
                             visibility=0.9, twirl=True)
    runs = {f: run_link(model, f, t1, t2, n=20) for f in ("bd", "dm")}
    alpha, _, fids = runs["bd"]
    np.testing.assert_allclose(fids, runs["dm"][2], atol=TOL, rtol=0)
    t = model.classical_delay_ns
    gamma, lam = 1 - math.exp(-t / t1), math.exp(-t / t2)
    dark = model.detector.dark_count_prob_per_gate
    p00, p, p11, c = single_click_weights(alpha, arm_eta(model), dark, 0.9, 0.0)
    twirled = closed_form_fidelity((p00 + p11) / 2, p, (p00 + p11) / 2, c, gamma, lam)
    np.testing.assert_allclose(fids, twirled, atol=TOL, rtol=0)
    assert abs(twirled - closed_form_fidelity(p00, p, p11, c, gamma, lam)) > 1e-4


class _PhaseOffsetModel(SimplePairModel):
    """A heralded link whose state is outside the bd family: a single-click-like
    Psi+ with a phase offset between the arms (a complex <01|rho|10>)."""

    PHASE = 0.7

    def heralded_state(self, param, bell_index):
        return x_state([0.02, 0.45, 0.45, 0.08], 0.0, 0.9, self.PHASE)


def test_a_heralded_state_outside_the_family_is_made_as_a_density_matrix_in_bd():
    """The station prepares, in bd, a herald outside the family as a density
    matrix (exact, no silent twirl): the pairs are dm pairs, and their
    fidelities after T1/T2 waits equal the dm formalism's and the Kraus
    reference's, where the twirl's would not."""
    t1, t2, delay = 1e5, 1.5e5, 40_000
    model = _PhaseOffsetModel(1.0, 1.0, 1_000, delay, delay, bell_index=2)
    rho = model.heralded_state(0, 2)
    fids = {}
    for formalism in ("bd", "dm"):
        _, _, fids[formalism] = run_link(model, formalism, t1, t2, n=5, f_min=0.3, seed=2,
                                         slots=2)
    ref = wait(wait(rho, 0, delay, t1, t2), 1, delay, t1, t2)
    f = float(np.real(BELL[2] @ ref @ BELL[2]))
    np.testing.assert_allclose(fids["bd"], fids["dm"], atol=TOL, rtol=0)
    np.testing.assert_allclose(fids["bd"], f, atol=TOL, rtol=0)
    tw = np.diag([float(np.real(BELL[k] @ rho @ BELL[k])) for k in range(4)])
    tw = BELL.T @ tw @ BELL
    f_tw = float(BELL[2] @ wait(wait(tw, 0, delay, t1, t2), 1, delay, t1, t2) @ BELL[2])
    assert abs(f_tw - f) > 1e-4


def test_station_makes_dm_pairs_only_for_states_outside_the_family():
    """Which formalism the station's pairs are in, read from the engine."""
    from qstack.physical.heralding import HeraldingStation

    class _Clock:
        now = 0

        def schedule_at(self, t, fn, *args):
            return None

        def cancel(self, h):
            pass

    for model, expect in ((_PhaseOffsetModel(1.0, 1.0, 1_000, 0, 0, bell_index=2), "dm"),
                          (SingleClickModel(), "bd")):
        eng = QuantumEngine(0)
        st = HeraldingStation(("a", "b"), model, eng, (None, None), _Clock(), None,
                              np.random.default_rng(0), np.random.default_rng(0), "bd")
        prepared, fid = st._heralded_state(0.1, 2)
        a, b = eng.new_pair(prepared)
        assert eng.formalism_of(a) == expect
        rho = model.heralded_state(0.1, 2)
        np.testing.assert_allclose(eng.density_matrix([a, b]), rho, atol=EXACT, rtol=0)
        assert fid == pytest.approx(float(np.real(BELL[2] @ rho @ BELL[2])), abs=EXACT)


# ------------------------------------------------------------ 5. the network file

def test_the_network_file_twirls_only_when_it_says_so():
    """A single-click link in a bd network: no twirl unless ``twirl = true``."""
    links = [{"nodes": ["a", "b"], "scheme": "single-click"},
             {"nodes": ["b", "c"], "scheme": "single-click", "twirl": True}]
    for formalism in ("bd", "dm"):
        spec = network_from_dict({"formalism": formalism, "nodes": ["a", "b", "c"],
                                  "links": links})
        assert [link.model.twirl for link in spec.links] == [False, True]
