"""Trusted-node relay: both ends get the same key, the relays are named.

The relay runs on the simulator's driver (messages through their wire
encoding, 1 us per hop). It uses no quantum link: the hop keys (from QKD on
each hop) are fed in as HopKey events, so the nodes are joined by
classical-only links and stack nothing under ``network.trusted``."""
import os

from qstack.core.errors import ErrorCode
from qstack.network.routing import Topology
from qstack.network.trusted import HopKey, RelayErr, RelayOk, RelayRequest, TrustedRelay, xor_bytes
from qstack.sim.network import SimNetwork
from tests.netstack import DELAY_NS


def relay_net(names, trust=None, key_len=32, blocks=4):
    net = SimNetwork(seed=1, check_wire=True)
    topo = Topology()
    for a, b in zip(names, names[1:]):
        topo.add_link(a, b)
    for n in names:
        net.add_node(n)
        net.add_protocol(n, TrustedRelay(n, topo, trust=trust))
    for a, b in zip(names, names[1:]):
        net.add_link(a, b, classical_delay_ns=DELAY_NS)
        for kid in range(blocks):
            k = os.urandom(key_len)          # the hop's QKD key block, known to a and b
            for me, other in ((a, b), (b, a)):
                net.feed(me, "network.trusted", HopKey(other, kid, k))
    return net


def inbox(net, node):
    """What ``node``'s relay delivered; no protocol recorded a failure meanwhile."""
    assert not net.errors
    return [e for _, e in net.nodes[node].inbox]


def test_xor_relay_over_three_hops():
    names = ["a", "t1", "t2", "b"]
    net = relay_net(names)
    net.submit("a", RelayRequest("b", 16, request_id=5), to="network.trusted")
    net.run()
    (ok_a,) = inbox(net, "a")
    (ok_b,) = inbox(net, "b")
    assert isinstance(ok_a, RelayOk) and isinstance(ok_b, RelayOk)
    assert ok_a.key == ok_b.key and len(ok_a.key) == 16
    assert ok_a.trusted == ok_b.trusted == ("t1", "t2")
    assert ok_a.path == ("a", "t1", "t2", "b") and ok_a.request_id == 5


def test_untrusted_node_is_refused():
    net = relay_net(["a", "t1", "b"], trust={"a", "b"})
    net.submit("a", RelayRequest("b", 8), to="network.trusted")
    net.run()
    (err,) = inbox(net, "a")
    assert isinstance(err, RelayErr) and err.code == ErrorCode.NET_NO_ROUTE


def test_out_of_key_material():
    net = relay_net(["a", "t1", "b"], key_len=4)
    net.submit("a", RelayRequest("b", 8), to="network.trusted")
    net.run()
    (err,) = inbox(net, "a")
    assert isinstance(err, RelayErr) and err.code == ErrorCode.NET_REJECTED


def test_many_relays_in_both_directions_stay_consistent():
    net = relay_net(["a", "t", "b"], blocks=12)
    for i in range(3):
        net.submit("a", RelayRequest("b", 8, request_id=i), to="network.trusted")
        net.submit("b", RelayRequest("a", 8, request_id=10 + i), to="network.trusted")
    net.run()
    ka = {e.relay_id: e.key for e in inbox(net, "a") if isinstance(e, RelayOk)}
    kb = {e.relay_id: e.key for e in inbox(net, "b") if isinstance(e, RelayOk)}
    assert len(ka) == 6 and ka == kb


def test_xor_bytes():
    assert xor_bytes(b"\x0f\xf0", b"\xff\xff") == b"\xf0\x0f"


def test_a_relay_ack_from_off_its_path_is_refused_not_raised():
    """A KeyRelayAck naming a path this node is not on (or coming from a node
    that is not next on it) is answered with a Fail, never an exception."""
    from qstack.core.errors import ErrorCode
    from qstack.core.protocol import Fail, MessageReceived
    from qstack.network.messages import KeyRelayAck
    from qstack.network.trusted import TrustedRelay

    relay = TrustedRelay("t1")
    for path, src in ((("a", "t9", "b"), "b"), (("a", "t1", "b"), "zz")):
        acts = relay.handle(MessageReceived(src, KeyRelayAck(1, "a", path, True, 0)), 0)
        (fail,) = acts
        assert isinstance(fail, Fail) and fail.code == ErrorCode.NET_REJECTED
