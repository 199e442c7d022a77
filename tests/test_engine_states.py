"""Pure state helpers (states.py) and Kraus channels (channels_kraus.py).

Tolerance 1e-12 for closed-form quantities (a handful of float operations,
round-off ~1e-15). Uhlmann fidelity goes through two Hermitian
eigendecompositions and a square root of eigenvalues; near rank-deficient
states the square root amplifies round-off (sqrt(1e-16) = 1e-8), so those
comparisons use 1e-7.
"""
import math

import numpy as np
import pytest

from qstack.physical import channels_kraus as ck
from qstack.physical import states as st
from qstack.physical.gates import X, Y, Z

ATOL = 1e-12


def test_bell_convention():
    # b = (x << 1) | z names (I (x) X^x Z^z)|Phi+>.
    phi_plus = np.array([1, 0, 0, 1]) / math.sqrt(2)
    for b in range(4):
        x, z = b >> 1, b & 1
        p = np.linalg.matrix_power(X, x) @ np.linalg.matrix_power(Z, z)
        np.testing.assert_allclose(st.bell_state(b), np.kron(np.eye(2), p) @ phi_plus, atol=ATOL)
    assert (st.PHI_PLUS, st.PHI_MINUS, st.PSI_PLUS, st.PSI_MINUS) == (0, 1, 2, 3)
    assert st.BELL_NAMES == ("Phi+", "Phi-", "Psi+", "Psi-")
    np.testing.assert_allclose(st.bell_state(3), np.array([0, 1, -1, 0]) / math.sqrt(2), atol=ATOL)


def test_ket_helpers():
    np.testing.assert_allclose(st.ket("01"), [0, 1, 0, 0], atol=ATOL)
    np.testing.assert_allclose(st.ket("+"), [1 / math.sqrt(2)] * 2, atol=ATOL)
    np.testing.assert_allclose(st.ket_from_angles(math.pi / 2, math.pi / 2), st.KET_PLUS_I, atol=ATOL)
    np.testing.assert_allclose(st.plus_theta(math.pi), st.KET_MINUS, atol=ATOL)
    with pytest.raises(ValueError):
        st.ket("0x")


def test_fidelity_and_trace_distance():
    rng = np.random.default_rng(1)
    psi = st.random_ket(rng, 2)
    rho = st.random_density_matrix(rng, 2)
    # ket vs dm paths agree with Uhlmann on a projector (rank-deficient: 1e-7, see module doc).
    assert st.fidelity(rho, psi) == pytest.approx(st.fidelity(rho, st.dm(psi)), abs=1e-7)
    assert st.fidelity(psi, psi) == pytest.approx(1.0, abs=ATOL)
    assert st.fidelity(rho, rho) == pytest.approx(1.0, abs=1e-7)
    sigma = st.random_density_matrix(rng, 2)
    assert st.fidelity(rho, sigma) == pytest.approx(st.fidelity(sigma, rho), abs=1e-9)
    # Fuchs-van de Graaf: 1 - sqrt(F) <= T <= sqrt(1 - F).
    f, t = st.fidelity(rho, sigma), st.trace_distance(rho, sigma)
    assert 1 - math.sqrt(f) - 1e-9 <= t <= math.sqrt(1 - f) + 1e-9
    assert st.trace_distance(st.ket("0"), st.ket("1")) == pytest.approx(1.0, abs=ATOL)
    assert st.trace_distance(st.ket("0"), st.ket("+")) == pytest.approx(1 / math.sqrt(2), abs=ATOL)


def test_partial_trace():
    rng = np.random.default_rng(2)
    a, b, c = (st.random_density_matrix(rng, 1) for _ in range(3))
    abc = np.kron(np.kron(a, b), c)
    np.testing.assert_allclose(st.partial_trace(abc, [1]), b, atol=ATOL)
    np.testing.assert_allclose(st.partial_trace(abc, [2, 0]), np.kron(c, a), atol=ATOL)
    np.testing.assert_allclose(st.partial_trace(st.bell_dm(0), [0]), np.eye(2) / 2, atol=ATOL)
    with pytest.raises(ValueError):
        st.partial_trace(abc, [0, 0])


def test_is_valid_density_matrix():
    assert st.is_valid_density_matrix(st.bell_dm(2))
    assert not st.is_valid_density_matrix(np.diag([1.2, -0.2]))
    assert not st.is_valid_density_matrix(np.array([[0.5, 0.5], [0, 0.5]]))
    assert not st.is_valid_density_matrix(np.eye(3) / 3)


@pytest.mark.parametrize("fn,arg", [
    (ck.depolarizing, 0.3), (ck.dephasing, 0.4), (ck.amplitude_damping, 0.25),
    (ck.bit_flip, 0.1), (ck.phase_flip, 0.2),
])
def test_channels_trace_preserving(fn, arg):
    assert ck.is_trace_preserving(fn(arg))
    assert ck.is_trace_preserving(fn(0.0)) and ck.is_trace_preserving(fn(1.0))
    with pytest.raises(ValueError):
        fn(1.5)
    with pytest.raises(ValueError):
        fn(float("nan"))


def test_channel_conventions():
    rng = np.random.default_rng(3)
    rho = st.random_density_matrix(rng, 1)
    p = 0.3
    # Depolarising: replaced by I/2 with probability p.
    np.testing.assert_allclose(ck.apply_kraus_dm(rho, ck.depolarizing(p)),
                               (1 - p) * rho + p * np.eye(2) / 2, atol=ATOL)
    # Dephasing: coherences scaled by (1 - p), populations kept.
    out = ck.apply_kraus_dm(rho, ck.dephasing(p))
    np.testing.assert_allclose(np.diag(out), np.diag(rho), atol=ATOL)
    assert out[0, 1] == pytest.approx((1 - p) * rho[0, 1], abs=ATOL)
    np.testing.assert_allclose(ck.apply_kraus_dm(rho, ck.bit_flip(p)), (1 - p) * rho + p * X @ rho @ X, atol=ATOL)
    np.testing.assert_allclose(ck.apply_kraus_dm(rho, ck.phase_flip(p)), (1 - p) * rho + p * Z @ rho @ Z, atol=ATOL)
    np.testing.assert_allclose(ck.apply_kraus_dm(rho, ck.pauli_channel(0.1, 0.2, 0.05)),
                               0.65 * rho + 0.1 * X @ rho @ X + 0.2 * Y @ rho @ Y + 0.05 * Z @ rho @ Z, atol=ATOL)
    # Amplitude damping moves gamma of the |1> population to |0>.
    out = ck.apply_kraus_dm(st.dm(st.ket("1")), ck.amplitude_damping(0.25))
    np.testing.assert_allclose(out, np.diag([0.25, 0.75]), atol=ATOL)


def test_t1t2_decay_rates():
    t, t1, t2 = 1000.0, 5000.0, 3000.0
    rho_plus = ck.apply_kraus_dm(st.dm(st.ket("+")), ck.t1t2_decay(t, t1, t2))
    assert abs(rho_plus[0, 1]) == pytest.approx(0.5 * math.exp(-t / t2), abs=ATOL)
    rho_one = ck.apply_kraus_dm(st.dm(st.ket("1")), ck.t1t2_decay(t, t1, t2))
    assert rho_one[1, 1].real == pytest.approx(math.exp(-t / t1), abs=ATOL)
    # T2 = 2 T1 exactly is allowed (pure relaxation, no extra dephasing).
    assert ck.t1t2_rates(t, t1, 2 * t1)[1] == pytest.approx(0.0, abs=ATOL)
    # inf means no decay.
    assert ck.t1t2_rates(t, math.inf, math.inf) == (0.0, 0.0)
    g, p = ck.t1t2_rates(t, math.inf, t2)
    assert g == 0.0 and p == pytest.approx(-math.expm1(-t / t2), abs=ATOL)


def test_t2_above_2t1_refused():
    with pytest.raises(ValueError, match="2\\*T1"):
        ck.t1t2_decay(10.0, 1000.0, 2001.0)
    with pytest.raises(ValueError):
        ck.t1t2_decay(10.0, 1000.0, math.inf)
    with pytest.raises(ValueError):
        ck.t1t2_decay(-1.0, 1000.0, 1000.0)
    with pytest.raises(ValueError):
        ck.t1t2_decay(1.0, 0.0, 1000.0)
    err = None
    try:
        ck.t1t2_decay(1.0, 10.0, 30.0)
    except ck.InvalidParameterError as e:
        err = e
    assert err is not None and err.code.name == "INVALID_PARAMETER"


def test_pauli_twirl():
    assert ck.pauli_twirl(ck.pauli_channel(0.1, 0.2, 0.3)) == pytest.approx((0.4, 0.1, 0.2, 0.3), abs=ATOL)
    gamma = 0.36  # sqrt(1 - gamma) = 0.8
    pi, px, py, pz = ck.pauli_twirl(ck.amplitude_damping(gamma))
    assert (px, py) == pytest.approx((0.09, 0.09), abs=ATOL)
    assert pz == pytest.approx(0.01, abs=ATOL) and pi == pytest.approx(0.81, abs=ATOL)
    # Y is included in the basis of the twirl with its own sign conventions.
    assert ck.pauli_twirl([Y])[2] == pytest.approx(1.0, abs=ATOL)
