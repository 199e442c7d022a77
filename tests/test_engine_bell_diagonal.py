"""BellDiagonal: construction, Pauli algebra and swapping, each checked against density matrices.

Tolerance 1e-12: all maps are a few multiply-adds on four floats (or 4x4
matrix products for the reference), so round-off stays ~1e-15.
"""
import numpy as np
import pytest

from qstack.physical import gates as g
from qstack.physical import states as st
from qstack.physical.bell_diagonal import (
    PAULI_TO_BELL_MASK, BellDiagonal, decay_polarised, polarised_density_matrix,
    swap_average, swap_bell_diagonal, swap_outcome_probs, swap_polarised,
)
from qstack.physical.channels_kraus import (
    amplitude_damping, apply_kraus_dm, depolarizing, dephasing, pauli_channel,
)

ATOL = 1e-12


def rand_bd(rng):
    return BellDiagonal(rng.dirichlet(np.ones(4)))


def on_side(op, side):
    return np.kron(op, np.eye(2)) if side == 0 else np.kron(np.eye(2), op)


def kraus_on_side(kraus, side):
    return [on_side(k, side) for k in kraus]


def test_construction_and_validation():
    w = BellDiagonal.werner(0.85, 2)
    np.testing.assert_allclose(w.coeffs, [0.05, 0.05, 0.85, 0.05], atol=ATOL)
    assert w.fidelity(2) == pytest.approx(0.85)
    assert BellDiagonal.pure(3).fidelity(3) == 1.0
    for bad in ([0.5, 0.5], [0.5, 0.6, 0.0, 0.0], [1.2, -0.2, 0, 0], [np.nan, 1, 0, 0]):
        with pytest.raises(ValueError):
            BellDiagonal(bad)
    with pytest.raises(ValueError):
        BellDiagonal.werner(1.1)
    with pytest.raises(ValueError):
        w.coeffs[0] = 1.0  # read-only


def test_density_matrix_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        bd = rand_bd(rng)
        rho = bd.to_density_matrix()
        assert st.is_valid_density_matrix(rho)
        assert BellDiagonal.from_density_matrix(rho).allclose(bd, ATOL)
        for b in range(4):
            assert st.fidelity(rho, st.bell_state(b)) == pytest.approx(bd.fidelity(b), abs=ATOL)
    # Twirl of a non-Bell-diagonal state keeps the Bell fidelities.
    rho = st.dm(st.ket("00"))
    np.testing.assert_allclose(BellDiagonal.from_density_matrix(rho).coeffs, [0.5, 0.5, 0, 0], atol=ATOL)


@pytest.mark.parametrize("side", [0, 1])
@pytest.mark.parametrize("pauli", [0, 1, 2, 3])
def test_apply_pauli_matches_matrix(side, pauli):
    rng = np.random.default_rng(10 * side + pauli)
    bd = rand_bd(rng)
    p = g.PAULIS[pauli]
    u = on_side(p, side)
    ref = u @ bd.to_density_matrix() @ u.conj().T
    np.testing.assert_allclose(bd.apply_pauli(side, pauli).to_density_matrix(), ref, atol=ATOL)
    assert PAULI_TO_BELL_MASK[pauli] == (0, 2, 3, 1)[pauli]


@pytest.mark.parametrize("side", [0, 1])
def test_pauli_channels_match_kraus(side):
    rng = np.random.default_rng(5 + side)
    bd = rand_bd(rng)
    rho = bd.to_density_matrix()
    cases = [
        (bd.depolarize(side, 0.3), depolarizing(0.3)),
        (bd.dephase(side, 0.4), dephasing(0.4)),
        (bd.pauli_channel(side, 0.1, 0.05, 0.2), pauli_channel(0.1, 0.05, 0.2)),
        (bd.bit_flip(side, 0.3), pauli_channel(0.3, 0, 0)),
        (bd.phase_flip(side, 0.3), pauli_channel(0, 0, 0.3)),
    ]
    for got, kraus in cases:
        np.testing.assert_allclose(got.to_density_matrix(), apply_kraus_dm(rho, kraus_on_side(kraus, side)), atol=ATOL)
    w = BellDiagonal.werner(0.9)
    assert w.depolarize(side, 0.2).fidelity() == pytest.approx(0.8 * 0.9 + 0.2 / 4, abs=ATOL)


def reference_swap(a: BellDiagonal, b: BellDiagonal, m: int):
    """Project qubits 1,2 of rho_a (x) rho_b onto Bell state m; return (prob, state of qubits 0,3)."""
    rho = np.kron(a.to_density_matrix(), b.to_density_matrix()).reshape([2] * 8)
    v = st.bell_state(m).reshape(2, 2)
    out = np.einsum("bc,abcdefgh,fg->adeh", v.conj(), rho, v).reshape(4, 4)
    p = np.trace(out).real
    return p, out / p


def test_swap_matches_projection():
    rng = np.random.default_rng(3)
    for _ in range(10):
        a, b = rand_bd(rng), rand_bd(rng)
        outs = a.swap(b)
        for m in range(4):
            p, ref = reference_swap(a, b, m)
            assert p == pytest.approx(0.25, abs=ATOL)  # uniform for Bell-diagonal inputs
            np.testing.assert_allclose(outs[m].to_density_matrix(), ref, atol=ATOL)
            assert swap_bell_diagonal(a, b, m) == outs[m]
            # The correction X^x Z^z on the outer qubit gives the average state.
            x, z = m >> 1, m & 1
            corr = outs[m]
            if x:
                corr = corr.apply_pauli(1, 1)
            if z:
                corr = corr.apply_pauli(1, 3)
            assert corr.allclose(swap_average(a, b), ATOL)


@pytest.mark.parametrize("f1,f2", [(1.0, 1.0), (0.9, 0.8), (0.75, 0.6), (0.5, 0.95), (0.25, 0.25)])
def test_werner_swap_formula(f1, f2):
    out = swap_average(BellDiagonal.werner(f1), BellDiagonal.werner(f2))
    assert out.fidelity() == pytest.approx(f1 * f2 + (1 - f1) * (1 - f2) / 3, abs=ATOL)
    assert BellDiagonal.werner(f1).swap_average(BellDiagonal.werner(f2)).allclose(out, ATOL)


# -- local Z polarisation (exact T1 decay) -------------------------------------------

def _decayed(rng, side_steps=3):
    """A random Bell-diagonal pair after random damping + dephasing on random
    sides: (coefficients, polarisation, reference density matrix)."""
    bd, pol = rand_bd(rng), None
    rho = bd.to_density_matrix()
    for _ in range(side_steps):
        side, gamma, lam = int(rng.integers(2)), rng.random(), rng.random()
        bd, pol = decay_polarised(bd, pol, side, gamma, lam)
        # reference: amplitude damping, then dephasing with coherence factor lam
        rho = apply_kraus_dm(rho, kraus_on_side(amplitude_damping(gamma), side))
        rho = apply_kraus_dm(rho, kraus_on_side(dephasing(1 - lam), side))
    return bd, pol, rho


def test_decay_polarised_matches_kraus():
    rng = np.random.default_rng(11)
    for _ in range(20):
        bd, pol, rho = _decayed(rng)
        np.testing.assert_allclose(polarised_density_matrix(bd, pol), rho, atol=ATOL)
        # Bell fidelities are still the coefficients
        for b in range(4):
            assert bd.fidelity(b) == pytest.approx(st.fidelity(rho, st.bell_state(b)), abs=ATOL)


def test_swap_polarised_matches_projection():
    rng = np.random.default_rng(12)
    for _ in range(10):
        a, pa, rho_a = _decayed(rng)
        b, pb, rho_b = _decayed(rng)
        probs = swap_outcome_probs(pa[1], pb[0])
        rho = np.kron(rho_a, rho_b).reshape([2] * 8)
        for m in range(4):
            v = st.bell_state(m).reshape(2, 2)
            out = np.einsum("bc,abcdefgh,fg->adeh", v.conj(), rho, v).reshape(4, 4)
            p = np.trace(out).real
            assert probs[m] == pytest.approx(p, abs=ATOL)
            c, pol = swap_polarised(a, pa, b, pb, m)
            # 1e-10: dividing by p (here >~ 1e-3) scales the round-off up
            np.testing.assert_allclose(polarised_density_matrix(c, pol), out / p, atol=1e-10)
    # without polarisation: the plain swap, and no polarisation comes out
    a, b = rand_bd(rng), rand_bd(rng)
    for m in range(4):
        c, pol = swap_polarised(a, None, b, None, m)
        assert pol is None and c.allclose(swap_bell_diagonal(a, b, m), ATOL)
