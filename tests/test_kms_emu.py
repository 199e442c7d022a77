"""The key management service under the emulation (``[kms]`` in the network
file): ``net up`` starts a KME process per node, an application of its
node's daemon, whose keys come from BBM92 runs between alice and bob through
their daemons and whose reservations go to the other KME over the
emulation's channels; SAEs fetch keys over HTTPS with client certificates
(httpx on trio), each from its own node's KME. And BBM92 itself both ways: the
same application under the simulator and the emulation gives QBERs that
agree with each other and with the Werner closed form 2(1 - F)/3."""
from __future__ import annotations

import base64
import math
import ssl
from pathlib import Path

import httpx
import pytest
import trio

import qstack.api as api
from qstack.app.qkd.entangled import EntangledConfig

from .test_emu import _run_all, running, same_rate
from .test_qkd_entangled import apps

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

NET = Path(__file__).resolve().parent / "kms_line.toml"
F = 0.98


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with running(NET, tmp_path_factory.mktemp("kms"), 5) as run:
        yield run


def client(run, sae: str) -> httpx.AsyncClient:
    certs = Path(run.kms["certs"])
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / f"{sae}.pem"), str(certs / f"{sae}.key"))
    return httpx.AsyncClient(verify=ctx, timeout=10)


def test_keys_from_bbm92_reach_the_slave_once(run):
    assert {"kms-alice", "kms-bob"} <= set(run.pids) and set(run.kms["ports"]) == {"alice", "bob"}
    url = {n: f"https://127.0.0.1:{p}/api/v1/keys" for n, p in run.kms["ports"].items()}

    async def main():
        async with client(run, "sae-alice") as a, client(run, "sae-bob") as b, \
                client(run, "sae-eve") as eve:
            with trio.fail_after(90):        # the first BBM92 block, in real time
                while True:
                    st = (await a.get(f"{url['alice']}/sae-bob/status")).json()
                    if st["stored_key_count"] >= 1:
                        break
                    await trio.sleep(0.2)
            assert st["key_size"] == 32 and st["target_KME_ID"] == "bob"
            r = await a.post(f"{url['alice']}/sae-bob/enc_keys", json={"number": 1})
            assert r.status_code == 200, r.text
            (key,) = r.json()["keys"]
            r = await eve.get(f"{url['bob']}/sae-alice/dec_keys", params={"key_ID": key["key_ID"]})
            assert r.status_code == 401
            r = await b.get(f"{url['bob']}/sae-alice/dec_keys", params={"key_ID": key["key_ID"]})
            assert r.status_code == 200 and r.json()["keys"] == [key]
            r = await b.get(f"{url['bob']}/sae-alice/dec_keys", params={"key_ID": key["key_ID"]})
            assert r.status_code == 400
            # the other way: bob's SAE the master, at bob's KME; alice's the slave
            r = await b.post(f"{url['bob']}/sae-alice/enc_keys", json={"number": 1})
            assert r.status_code == 200, r.text
            (back,) = r.json()["keys"]
            assert back["key"] != key["key"]          # (the other half of the material)
            r = await a.post(f"{url['alice']}/sae-bob/dec_keys",
                             json={"key_IDs": [{"key_ID": back["key_ID"]}]})
            assert r.status_code == 200 and r.json()["keys"] == [back]
            r = await eve.get(f"{url['alice']}/sae-bob/status")
            assert r.status_code == 401               # eve is attached to bob's KME

    trio.run(main)
    for node, peer in (("alice", "bob"), ("bob", "alice")):
        log = (Path(run.logs) / f"kms-{node}.log").read_text()
        assert f"kms: {node}-{peer} block 0:" in log, log


def kms_idle(run, timeout_s: float = 120.0) -> None:
    """Wait until both KMEs have taken in their first block (then they hold
    more than refill_bits and stay idle): a BBM92 run of the KMEs beside a
    test's own would share the two nodes' 40 memory slots."""
    import time

    deadline = time.monotonic() + timeout_s
    while not all("block 0:" in (Path(run.logs) / f"kms-{n}.log").read_text()
                  for n in ("alice", "bob")):
        assert time.monotonic() < deadline, "the KMEs' first block did not end"
        time.sleep(0.2)


def test_bbm92_both_ways(run):
    kms_idle(run)
    pairs = 400
    cfg = EntangledConfig(test_fraction=0.5)
    emu = trio.run(_run_all, apps("bbm92", pairs, cfg), run)
    sim = api.simulate(NET, apps("bbm92", pairs, cfg), seed=4, until_s=60)
    sim.raise_errors()
    q = 2 * (1 - F) / 3
    counts = []
    for out in (emu, sim.results):
        a, b = out["alice"], out["bob"]
        assert a.reason == b.reason and a.qber == b.qber
        errors = round(a.qber * a.test_bits)
        # binomial test bits against the Werner QBER, 4 standard errors
        assert abs(errors - a.test_bits * q) <= 4 * math.sqrt(a.test_bits * q * (1 - q)) + 1
        counts.append((errors, a.test_bits))
    assert same_rate(*counts[0], *counts[1])


# ---------------------------------------------------------------- decoy BB84 as the source

DECOY = Path(__file__).resolve().parent / "kms_decoy.toml"


def test_keys_from_decoy_bb84_blocks(tmp_path):
    """``[kms] protocol = "decoy-bb84"``: the KMEs' keys come from decoy-BB84
    blocks over the link (each daemon's app.qkd), served both ways."""
    with running(DECOY, tmp_path, 7) as run:
        url = {n: f"https://127.0.0.1:{p}/api/v1/keys" for n, p in run.kms["ports"].items()}

        async def main():
            async with client(run, "sae-alice") as a, client(run, "sae-bob") as b:
                with trio.fail_after(90):            # the first block, in real time
                    while (await a.get(f"{url['alice']}/sae-bob/status")).json()[
                            "stored_key_count"] < 1:
                        await trio.sleep(0.2)
                r = await a.post(f"{url['alice']}/sae-bob/enc_keys", json={"number": 1})
                assert r.status_code == 200, r.text
                (key,) = r.json()["keys"]
                r = await b.get(f"{url['bob']}/sae-alice/dec_keys",
                                params={"key_ID": key["key_ID"]})
                assert r.status_code == 200 and r.json()["keys"] == [key]
                assert len(base64.b64decode(key["key"])) == 8          # key_size 64 bits

        trio.run(main)
        for node, peer in (("alice", "bob"), ("bob", "alice")):
            log = (Path(run.logs) / f"kms-{node}.log").read_text()
            assert f"kms: {node}-{peer} block 0:" in log and "bits (QBER" in log, log


def test_decoy_bb84_keys_need_a_link(tmp_path):
    from qstack.config import ConfigError, load_network

    text = DECOY.read_text().replace('nodes = ["alice", "bob"]\n\n[[links]]',
                                     'nodes = ["alice", "bob", "carol"]\n\n[[links]]')
    text += '\n[[links]]\nnodes = ["bob", "carol"]\n'
    text = text.replace('links = [["alice", "bob"]]', 'links = [["alice", "carol"]]')
    (tmp_path / "net.toml").write_text(text)
    with pytest.raises(ConfigError, match="share no link"):
        load_network(tmp_path / "net.toml")
