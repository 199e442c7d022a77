"""Heralded attempts: how many tries until a herald, and how long a memory waited meanwhile.

Each attempt (emit, transmit, detect, herald) succeeds independently with
probability p, so the number of attempts up to and including the first
success is geometric: P(N = k) = (1−p)^(k−1) p.  Sampling N directly is exact
and costs one draw however small p is; :func:`attempts_until_herald_reference`
is the attempt-by-attempt model the tests compare it with.

With ``modes`` parallel modes (multiplexing) an attempt succeeds when any mode
does: p_eff = 1 − (1−p)^modes.  An attempt cycle lasts ``cycle_time_ns`` (for a
midpoint scheme: emission + round trip to the herald station), so a qubit
kept in memory while the link retries waits N·cycle_time_ns; callers apply
:meth:`QuantumMemory.decay <qstack.physical.memory.QuantumMemory.decay>` for
that time.  With a memory cut-off (or ``max_attempts``) the sequence gives up
after the last attempt the stored qubit can survive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qstack.physical.memory import QuantumMemory
from qstack.core.kernels import pure_python, require_cython
from qstack.physical.sources import _check_pos, _check_prob, _fail

try:  # the Cython kernel, built by setup.py
    if pure_python():
        raise ImportError("QSTACK_PURE_PYTHON=1")
    from qstack.physical import _attempts  # type: ignore[attr-defined]
    HAVE_CYTHON = True
except ImportError:  # pragma: no cover - exercised only without a build
    _attempts = None
    HAVE_CYTHON = False
    if require_cython():
        raise ImportError("qstack.physical._attempts (Cython kernel) is not built but "
                          "QSTACK_REQUIRE_CYTHON=1; build it with `pip install -e .`") from None

__all__ = [
    "HAVE_CYTHON",
    "simulate_attempt_runs",
    "HeraldOutcome",
    "sample_attempts_until_herald",
    "attempts_until_herald_reference",
    "sample_attempts_many",
    "sample_herald",
    "sample_herald_reference",
]


@dataclass(frozen=True)
class HeraldOutcome:
    """Result of a run of attempts.

    attempts: attempts made (the successful one included).
    success: False if the run stopped at the attempt limit without a herald.
    elapsed_ns: attempts × cycle time, i.e. how long a stored qubit waited.
    """

    attempts: int
    success: bool
    elapsed_ns: float


def _check_p(p_success: float) -> None:
    _check_prob("attempts", "p_success", p_success)


def sample_attempts_until_herald(p_success: float, rng: np.random.Generator) -> int:
    """Number of attempts up to and including the first success: Geometric(p), exact, one draw."""
    _check_p(p_success)
    if p_success == 0:
        raise ValueError("attempts.p_success: expected > 0 (with p = 0 no herald ever comes)")
    return int(rng.geometric(p_success))


def attempts_until_herald_reference(p_success: float, rng: np.random.Generator,
                                    max_attempts: int | None = None) -> int:
    """Attempt-by-attempt reference: draw U < p per attempt until one succeeds.

    Returns the number of attempts, or ``max_attempts`` + 1 if none of the
    first ``max_attempts`` succeeded (slow; for tests)."""
    _check_p(p_success)
    k = 0
    while max_attempts is None or k < max_attempts:
        k += 1
        if rng.random() < p_success:
            return k
    return k + 1


def sample_attempts_many(p_success: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` independent attempt counts (int64), vectorised."""
    _check_p(p_success)
    if p_success == 0:
        raise ValueError("attempts.p_success: expected > 0 (with p = 0 no herald ever comes)")
    return rng.geometric(p_success, size).astype(np.int64)


def _limits(p_success: float, cycle_time_ns: float, modes: int, memory: QuantumMemory | None,
            max_attempts: int | None) -> tuple[float, int | None]:
    _check_p(p_success)
    _check_pos("attempts", "cycle_time_ns", cycle_time_ns)
    if memory is not None:
        modes = modes if modes != 1 else memory.num_modes
    if not isinstance(modes, int) or modes < 1:
        _fail("attempts", "modes", "an integer >= 1", modes)
    limit = max_attempts
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        _fail("attempts", "max_attempts", "an integer >= 1 or None", limit)
    if memory is not None:
        m = memory.max_wait_attempts(cycle_time_ns)
        if m is not None:
            limit = m if limit is None else min(limit, m)
    p_eff = 1.0 if p_success == 1 else -math.expm1(modes * math.log1p(-p_success))
    if p_eff == 0 and limit is None:
        raise ValueError("attempts.p_success: expected > 0 when there is no attempt limit")
    return p_eff, limit


def sample_herald(p_success: float, cycle_time_ns: float, rng: np.random.Generator, *, modes: int = 1,
                  memory: QuantumMemory | None = None, max_attempts: int | None = None) -> HeraldOutcome:
    """Attempts until a herald (exact geometric draw), with the time a stored qubit waited.

    Args:
        p_success: success probability of one attempt in one mode.
        cycle_time_ns: duration of one attempt cycle in ns.
        modes: parallel modes per attempt (defaults to ``memory.num_modes`` if a memory is given).
        memory: the memory holding a qubit meanwhile; its cut-off limits the attempts.
        max_attempts: give up after this many attempts.

    Returns:
        HeraldOutcome(attempts, success, elapsed_ns = attempts × cycle_time_ns).
    """
    p_eff, limit = _limits(p_success, cycle_time_ns, modes, memory, max_attempts)
    if limit == 0:
        return HeraldOutcome(0, False, 0.0)
    n = int(rng.geometric(p_eff)) if p_eff > 0 else (limit or 0) + 1
    if limit is not None and n > limit:
        return HeraldOutcome(limit, False, limit * cycle_time_ns)
    return HeraldOutcome(n, True, n * cycle_time_ns)


def sample_herald_reference(p_success: float, cycle_time_ns: float, rng: np.random.Generator, *, modes: int = 1,
                            memory: QuantumMemory | None = None, max_attempts: int | None = None) -> HeraldOutcome:
    """Attempt-by-attempt (and mode-by-mode) twin of :func:`sample_herald`."""
    p_eff, limit = _limits(p_success, cycle_time_ns, modes, memory, max_attempts)
    if memory is not None and modes == 1:
        modes = memory.num_modes
    k = 0
    while limit is None or k < limit:
        k += 1
        if any(rng.random() < p_success for _ in range(modes)):
            return HeraldOutcome(k, True, k * cycle_time_ns)
    return HeraldOutcome(k, False, k * cycle_time_ns)


# ---------------------------------------------------------------- many runs, attempt by attempt

def _attempt_runs_python(u: np.ndarray, p_success: float, modes: int, limit: int,
                         attempts: np.ndarray, success: np.ndarray,
                         run: int, k: int, m: int) -> tuple[int, int, int, int]:
    """Pure-Python twin of ``_attempts.attempt_runs`` (same uniforms, same result).

    State: ``run`` (the run in progress), ``k`` (attempts it has made), ``m``
    (modes tried in its current attempt). Each uniform is one mode of one
    attempt: below ``p_success`` the run heralds at attempt ``k``; after
    ``modes`` failures the attempt is over; a run stops unheralded after
    ``limit`` attempts (``limit`` < 0: no limit). Returns the new state and
    the number of uniforms used."""
    n_runs, n_u, i = len(attempts), len(u), 0
    while run < n_runs and i < n_u:
        if m == 0:
            if 0 <= limit <= k:
                attempts[run], success[run] = k, 0
                run, k = run + 1, 0
                continue
            k += 1
        if u[i] < p_success:
            attempts[run], success[run] = k, 1
            run, k, m = run + 1, 0, 0
        else:
            m += 1
            if m == modes:
                m = 0
        i += 1
    while run < n_runs and m == 0 and 0 <= limit <= k:
        attempts[run], success[run] = k, 0
        run, k = run + 1, 0
    return run, k, m, i


def simulate_attempt_runs(p_success: float, runs: int, rng: np.random.Generator | None = None, *,
                          modes: int = 1, max_attempts: int | None = None,
                          uniforms: np.ndarray | None = None, backend: str = "auto",
                          block: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """``runs`` independent runs of heralded attempts, simulated attempt by
    attempt and mode by mode (the reference model of :func:`sample_herald`).

    Returns (attempts per run as int64, heralded per run as bool). Uniforms
    come from ``uniforms`` (consumed in order; ``ValueError`` if they run out)
    or from ``rng`` in blocks of ``block``. ``backend``: "cython", "python"
    or "auto" (Cython when built); both consume the same uniforms in the same
    order and give identical results.
    """
    _check_p(p_success)
    if not isinstance(modes, int) or modes < 1:
        _fail("attempts", "modes", "an integer >= 1", modes)
    if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
        _fail("attempts", "max_attempts", "an integer >= 1 or None", max_attempts)
    if p_success == 0 and max_attempts is None:
        raise ValueError("attempts.p_success: expected > 0 when there is no attempt limit")
    if backend == "auto":
        backend = "cython" if HAVE_CYTHON else "python"
    if backend == "cython":
        if not HAVE_CYTHON:
            raise RuntimeError("the Cython kernel qstack.physical._attempts is not built")
        kernel = _attempts.attempt_runs
    elif backend == "python":
        kernel = _attempt_runs_python
    else:
        raise ValueError(f"backend: expected 'auto', 'cython' or 'python', got {backend!r}")
    attempts = np.zeros(int(runs), dtype=np.int64)
    success = np.zeros(int(runs), dtype=np.uint8)
    limit = -1 if max_attempts is None else int(max_attempts)
    state = (0, 0, 0)
    if uniforms is not None:
        u = np.ascontiguousarray(uniforms, dtype=np.float64)
        run, k, m, _ = kernel(u, float(p_success), modes, limit, attempts, success, *state)
        if run < runs:
            raise ValueError(f"uniforms: {len(u)} were not enough for {runs} runs")
        return attempts, success.astype(bool)
    if rng is None:
        raise ValueError("simulate_attempt_runs: give rng or uniforms")
    run = 0
    while run < runs:
        u = rng.random(block)
        run, k, m, _ = kernel(u, float(p_success), modes, limit, attempts, success, *state)
        state = (run, k, m)
    return attempts, success.astype(bool)
