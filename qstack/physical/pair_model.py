"""What a driver needs from a heralded-entanglement scheme's physics.

A scheme model (single-click, double-click, midpoint source, sender-receiver:
``qstack.link.schemes``) describes one link's hardware; the driver samples the
number of attempts from :meth:`success_probability` (geometric skip-ahead:
exact for independent attempts), places the heralded state in the engine and
delivers a :class:`~qstack.physical.ops.Herald` to each end after
:meth:`herald_delay_ns`.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class HeraldedPairModel(Protocol):
    """The physics of one heralded link between two memories (sides 0 and 1)."""

    def cycle_ns(self, param: float) -> int:
        """Time between the starts of two attempts, nanoseconds (>= 1)."""

    def success_probability(self, param: float) -> float:
        """Probability that one attempt is heralded as a success."""

    def herald_delay_ns(self, side: int) -> int:
        """From the emission of an attempt at ``side`` until its herald reaches
        that side, nanoseconds (the qubit waits in memory meanwhile)."""

    def heralded_state(self, param: float, bell_index: int) -> np.ndarray:
        """The 4x4 density matrix (qubit of side 0 first) of a pair heralded
        as ``bell_index``, before memory decay."""

    def sample_bell_index(self, rng: np.random.Generator) -> int:
        """The Bell index a successful herald announces."""

    def heralded_bell_indices(self) -> tuple[int, ...]:
        """Every Bell index :meth:`sample_bell_index` may return. Optional: a
        user of the model that needs it assumes all four when it is missing
        (with a finite T1 the fidelity after memory decay depends on it)."""

    def bell_index_thresholds(self) -> int | tuple[float, float, float] | None:
        """How :meth:`sample_bell_index` draws, when it is one of two simple
        forms. Optional (missing, or None: the station calls
        :meth:`sample_bell_index` for every pair):

        * an ``int``: it returns that index always, drawing nothing;
        * ``(t0, t1, t2)``, ascending in [0, 1]: it draws one ``u =
          rng.random()`` and returns the first ``i`` with ``u < t_i``
          (3 if none).

        The station then draws the index itself, from the same stream: the
        same numbers, without a Python call per pair. Read once per model,
        like the model's other figures (:func:`bell_index_rule`)."""


def bell_index_rule(model: object) -> tuple[int, float, float, float] | None:
    """A station's rule for ``model``'s Bell index (from the model's optional
    :meth:`HeraldedPairModel.bell_index_thresholds`): ``(index, 0, 0, 0)``
    for a fixed index, ``(-1, t0, t1, t2)`` for one uniform draw against
    thresholds, None to call ``sample_bell_index`` per pair. Raises
    ValueError for an answer of neither form."""
    get = getattr(model, "bell_index_thresholds", None)
    rule = None if get is None else get()
    if rule is None:
        return None
    if isinstance(rule, (int, np.integer)) and not isinstance(rule, bool):
        if not 0 <= rule <= 3:
            raise ValueError(f"bell_index_thresholds: index {rule} is not a Bell index 0..3")
        return (int(rule), 0.0, 0.0, 0.0)
    try:
        t0, t1, t2 = (float(t) for t in rule)
    except (TypeError, ValueError):
        raise ValueError(f"bell_index_thresholds: expected an index or three thresholds, "
                         f"got {rule!r}") from None
    if not 0.0 <= t0 <= t1 <= t2 <= 1.0:
        raise ValueError(f"bell_index_thresholds: expected 0 <= t0 <= t1 <= t2 <= 1, "
                         f"got {rule!r}")
    return (-1, t0, t1, t2)


class SimplePairModel:
    """An abstract heralded link: Werner pairs of a fixed fidelity, heralded
    with a fixed probability per attempt.

    For network-level studies where the optics do not matter (the way
    repeater-chain papers model links), and as the reference in driver tests.
    ``cycle_ns`` is the attempt period, ``herald_delay_ns`` the time from
    emission to the herald at either end (e.g. the light travel time to a
    midpoint and back), ``classical_delay_ns`` the one-way node-to-node delay;
    all in nanoseconds. Every herald announces ``bell_index`` (``None``: a
    uniformly random one per pair).
    """

    def __init__(self, success_probability: float = 0.1, fidelity: float = 1.0,
                 cycle_ns: int = 1_000, herald_delay_ns: int = 0,
                 classical_delay_ns: int = 0, bell_index: int | None = 0) -> None:
        if not 0.0 <= success_probability <= 1.0:
            raise ValueError("success_probability: expected a probability in [0, 1]")
        if not 0.25 <= fidelity <= 1.0:
            raise ValueError("fidelity: expected a Werner fidelity in [1/4, 1]")
        if cycle_ns < 1 or herald_delay_ns < 0 or classical_delay_ns < 0:
            raise ValueError("cycle_ns >= 1, herald_delay_ns >= 0, classical_delay_ns >= 0")
        self.p = float(success_probability)
        self.fidelity = float(fidelity)
        self._cycle_ns = int(cycle_ns)
        self._herald_delay_ns = int(herald_delay_ns)
        self.classical_delay_ns = int(classical_delay_ns)
        self.bell_index = None if bell_index is None else int(bell_index)

    def cycle_ns(self, param: float) -> int:
        return self._cycle_ns

    def success_probability(self, param: float) -> float:
        return self.p

    def herald_delay_ns(self, side: int) -> int:
        return self._herald_delay_ns

    def heralded_state(self, param: float, bell_index: int) -> np.ndarray:
        from qstack.physical.bell_diagonal import BellDiagonal

        return BellDiagonal.werner(self.fidelity, bell_index).to_density_matrix()

    def sample_bell_index(self, rng: np.random.Generator) -> int:
        if self.bell_index is None:          # each pair in a uniformly random Bell state
            return int(rng.random() * 4.0)   # (one uniform draw: cheaper than integers(4))
        return self.bell_index

    def heralded_bell_indices(self) -> tuple[int, ...]:
        return (0, 1, 2, 3) if self.bell_index is None else (self.bell_index,)

    def bell_index_thresholds(self) -> int | tuple[float, float, float]:
        # int(4 u) = i exactly when i/4 <= u < (i+1)/4 (4 u is exact in binary)
        return (0.25, 0.5, 0.75) if self.bell_index is None else self.bell_index
