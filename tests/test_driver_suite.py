"""The driver suite (tests/driver_suite.py) against the simulator's driver."""
from __future__ import annotations

import pytest

from qstack.physical.pair_model import SimplePairModel
from qstack.sim.network import SimNetwork
from tests import driver_suite as suite


class SimHarness(suite.Harness):
    """The suite's harness over :class:`qstack.sim.network.SimNetwork`."""

    slack_ns = 0

    def build(self, nodes, links):
        self.net = SimNetwork(seed=1)
        for name, factories in nodes.items():
            self.net.add_node(name, stack=lambda name=name, fs=factories: [f(name) for f in fs])
        for a, b, delay, model in links:
            self.net.add_link(a, b, model=model, classical_delay_ns=delay)

    def start(self):
        self.net.start()

    def run(self, until_ns):
        self.net.run(until_ns=until_ns)

    def probe(self, node, name=suite.Probe.name):
        return self.net.node(node).protocol(name)

    def inject(self, node, protocol, actions):
        n = self.net.node(node)
        for action in actions:
            n._run[type(action)](protocol, action, self.net.now_ns)

    def crash(self, node):
        self.net.crash_node(node)

    def restart(self, node):
        self.net.restart_node(node)

    def link_down(self, a, b, up=False):
        self.net.set_link_up(a, b, up)

    def reset(self, a, b):
        self.net.reset_channel(a, b)

    @property
    def now(self):
        return self.net.now_ns


@pytest.mark.parametrize("check", suite.CHECKS, ids=lambda c: c.__name__[len("check_"):])
def test_the_simulator_passes(check):
    check(SimHarness())


def test_the_simulator_heralds_both_ends_with_the_key():
    suite.check_both_ends_hear_one_herald_with_the_key(
        SimHarness(), SimplePairModel(0.1, 0.99, 1_000, 5_000, 1_000))
