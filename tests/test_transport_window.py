"""The node key ``transport_window``: the receive window of a node's
transport connections (``specs/transport.md`` §4), read from the network
file and given to the node's ``TeleportTransport`` by both drivers' stack
builder (``qstack.api.node_stacks``)."""
from __future__ import annotations

import pytest

from qstack.api import build_network, node_stacks
from qstack.config import network_from_dict
from qstack.core.errors import ConfigError, ErrorCode
from qstack.sim.apps import run_apps
from qstack.transport.socket import TransportError

PORT = 9


def _spec(**nodes):
    return network_from_dict({
        "defaults": {"node": {"transport_window": 16, "memory": 40, "t1_s": "inf",
                              "t2_s": "inf"},
                     "link": {"length_km": 0.1, "scheme": "sender-receiver",
                              "pair_fidelity": 1.0}},
        "nodes": {"alice": nodes.get("alice", {}), "bob": nodes.get("bob", {})},
        "links": [["alice", "bob"]]})


def test_the_window_comes_from_the_node_or_its_defaults():
    spec = _spec(bob={"transport_window": 3})
    assert spec.nodes["alice"].transport_window == 16
    assert spec.nodes["bob"].transport_window == 3
    plain = network_from_dict({"nodes": ["a", "b"], "links": [["a", "b"]]})
    assert plain.nodes["a"].transport_window == 4          # the protocol's default
    stack, _topo = node_stacks(spec)
    windows = {n: [p for p in stack(n) if p.name == "transport.qtp"][0].window
               for n in ("alice", "bob")}
    assert windows == {"alice": 16, "bob": 3}


@pytest.mark.parametrize("bad", [0, 65536, 1.5, True, "8", -1])
def test_a_bad_window_is_refused_naming_the_key(bad):
    with pytest.raises(ConfigError, match="transport_window"):
        network_from_dict({"nodes": {"a": {"transport_window": bad}, "b": {}},
                           "links": [["a", "b"]]})


@pytest.mark.parametrize("window", [2, 5])
def test_a_receiver_that_takes_nothing_gets_exactly_its_window(window):
    """Alice asks for 3 w pairs; bob accepts but takes none: she can send
    exactly w (her create_epr times out holding the w halves she made)."""
    net = build_network(_spec(bob={"transport_window": window}))

    async def alice(ctx):
        sock = await ctx.connect("bob", PORT)
        with pytest.raises(TransportError) as info:
            await sock.create_epr(3 * window, timeout_ns=2_000_000)
        return info.value.code, len(info.value.qubits)

    async def bob(ctx):
        await ctx.listen(PORT).accept()
        await ctx.sleep(4_000_000)

    result = run_apps(net, {"alice": alice, "bob": bob})
    assert not result.errors, result.errors
    code, made = result.results["alice"]
    assert code in (ErrorCode.TRANSPORT_NO_PAIR, ErrorCode.TRANSPORT_TIMEOUT)
    assert made == window
