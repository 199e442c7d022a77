"""Traffic in both directions at once (issue 16, item 1).

Two connections crossing a link in opposite directions used to deadlock every
time: both ends chose the same link-layer label for their circuits on the
link, so each took the other's pairs for its own.
"""
import pytest

import qstack


async def server(ctx):
    sock = await ctx.listen(7).accept()
    q = await sock.recv_qubit()
    return await q.measure()


async def client(ctx, to):
    sock = await ctx.connect(to, 7)
    q = ctx.qubit()
    q.x()
    await sock.send_qubit(q)
    return "sent"


def _client_to(to):
    async def cli(ctx):
        return await client(ctx, to)
    cli.__name__ = f"cli_to_{to}"
    return cli


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("memory", [2, 8])
def test_connections_crossing_one_link(seed, memory):
    net = {"nodes": ["a", "b"], "links": [["a", "b"]], "defaults": {"node": {"memory": memory}}}
    r = qstack.simulate(net, {"a": [server, _client_to("b")], "b": [server, _client_to("a")]},
                        seed=seed)
    assert r.errors == {}
    assert r.results == {"a:server": 1, "b:server": 1, "a:cli_to_b": "sent",
                         "b:cli_to_a": "sent"}
    assert r.metrics["qubits_delivered"] == 2


def test_routes_sharing_links_in_opposite_directions():
    """a -> d and d -> a over the chain a-b-c-d, and b -> d and c -> a at the
    same time: every link carries circuits both ways."""
    net = qstack.NetworkSpec.chain(["a", "b", "c", "d"])
    apps = {"a": [server, _client_to("d")], "d": [server, _client_to("a")],
            "b": [_client_to("d")], "c": [_client_to("a")]}

    async def server2(ctx):
        listener = ctx.listen(7)
        got = []
        for _ in range(2):
            sock = await listener.accept()
            got.append(await (await sock.recv_qubit()).measure())
        return got

    apps["a"][0] = apps["d"][0] = server2
    r = qstack.simulate(net, apps, seed=4)
    assert r.errors == {}
    assert r.results["a:server2"] == [1, 1] and r.results["d:server2"] == [1, 1]
    assert r.metrics["qubits_delivered"] == 4
