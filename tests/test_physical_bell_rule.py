"""A link model's Bell-index rule (``pair_model.bell_index_thresholds`` and
``bell_index_rule``): a model that declares how ``sample_bell_index`` draws
lets the heralding station draw the index itself, so the declaration must be
exactly what the method does. Checked for every model that declares one, at
every uniform a draw can give (hypothesis, plus the thresholds themselves and
their neighbours), and the rule's refusals of malformed declarations."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qstack.link import schemes
from qstack.physical.pair_model import SimplePairModel, bell_index_rule


class _Uniform:
    """A generator whose ``random()`` gives ``u`` once; any other draw fails."""

    def __init__(self, u: float) -> None:
        self.u = u
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        assert self.draws == 1, "the model drew twice"
        return self.u


def _by_rule(rule, u):
    fixed, t0, t1, t2 = rule
    if fixed >= 0:
        return fixed
    return 0 if u < t0 else 1 if u < t1 else 2 if u < t2 else 3


_EDGES = [0.0, 0.25, 0.5, 0.75, math.nextafter(1.0, 0.0)]
_EDGES += [math.nextafter(x, 0.0) for x in _EDGES if x > 0] + \
    [math.nextafter(x, 1.0) for x in _EDGES if x < 0.99]


@given(st.floats(0.0, 1.0, exclude_max=True) | st.sampled_from(_EDGES))
def test_the_random_simple_model_draws_as_its_thresholds_say(u):
    model = SimplePairModel(0.5, 0.9, bell_index=None)
    rule = bell_index_rule(model)
    assert rule == (-1, 0.25, 0.5, 0.75)
    assert model.sample_bell_index(_Uniform(u)) == _by_rule(rule, u)


def _fixed_models():
    yield from (SimplePairModel(0.5, 0.9, bell_index=k) for k in range(4))
    for cls in (getattr(schemes, n) for n in dir(schemes)):
        if isinstance(cls, type) and "bell_index_thresholds" in vars(cls):
            yield cls()             # (MidpointSourceModel, SenderReceiverModel: defaults)


@pytest.mark.parametrize("model", list(_fixed_models()), ids=lambda m: type(m).__name__)
def test_a_fixed_index_model_returns_it_without_a_draw(model):
    rule = bell_index_rule(model)
    assert rule is not None and rule[0] >= 0
    rng = _Uniform(0.5)
    assert model.sample_bell_index(rng) == rule[0] and rng.draws == 0
    assert model.heralded_bell_indices() == (rule[0],)


def test_a_model_without_a_rule_is_asked_per_pair():
    class Plain:
        def sample_bell_index(self, rng):
            return 0
    assert bell_index_rule(Plain()) is None

    class Declines(SimplePairModel):
        def bell_index_thresholds(self):
            return None
    assert bell_index_rule(Declines(bell_index=None)) is None


@pytest.mark.parametrize("bad", [4, -1, True, (0.5, 0.25, 0.75), (0.2, 0.4), (0.1, 0.2, 1.5),
                                 ("a", "b", "c"), 2.0])
def test_a_malformed_rule_is_refused_clearly(bad):
    class Bad(SimplePairModel):
        def bell_index_thresholds(self):
            return bad
    with pytest.raises(ValueError, match="bell_index_thresholds"):
        bell_index_rule(Bad())
