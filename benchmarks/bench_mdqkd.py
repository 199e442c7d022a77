"""BBM92 over measure-directly pairs against kept pairs, through the whole stack.

For a 3-node chain (one repeater) and a 5-node chain (three), 10 km links of
Werner pairs of fidelity 0.99 (sender-receiver scheme, 0.2 dB/km, no false
heralds), memories of 8 slots that do not decay, under ``qstack.simulate``:

* the quantum phase alone, ``PAIRS`` pairs: measured pairs per simulated
  second and per wall second, and the peak memory slots used at the two end
  nodes (stored and reserved for attempts);
* one whole BBM92 run of ``KEY_PAIRS`` pairs (sifting, QBER test, Cascade,
  verification, amplification; ``EntangledConfig`` below): final key bits
  per simulated second and per wall second;

each with ``pairs_from="measure-directly"`` (the network's type-D stream:
the ends measure every link pair as it arrives, ``sock.measure_pairs``) and
``pairs_from="kept"`` (the transport's kept pairs, each half measured by the
application, the initiator asking for ``KEPT_BATCH`` at a time so that they
fit its memory). Wall figures are this machine's and move with its load.

Run:  python -m benchmarks.bench_mdqkd     (prints JSON)
"""
from __future__ import annotations

import json
import time

from qstack.api import build_network
from qstack.app.qkd import entangled as ent
from qstack.config import network_from_dict
from qstack.sim.apps import run_apps

PAIRS = 4000
KEY_PAIRS = 20_000      # (fewer leave no finite-key secret bits at eps_sec 1e-6)
KEPT_BATCH = 8
LINK_KM = 10
SEED = 7


def chain(n_nodes: int) -> dict:
    nodes = ["alice"] + [f"r{i}" for i in range(n_nodes - 2)] + ["bob"]
    return {"formalism": "bd",
            "defaults": {"node": {"memory": 8, "t1_s": "inf", "t2_s": "inf"},
                         "link": {"scheme": "sender-receiver", "length_km": LINK_KM,
                                  "false_herald_prob": 0.0, "pair_fidelity": 0.99}},
            "nodes": nodes, "links": [[a, b] for a, b in zip(nodes, nodes[1:])]}


def _config(mode: str) -> ent.EntangledConfig:
    return ent.EntangledConfig(test_fraction=0.2, eps_sec=1e-6, pairs_from=mode,
                               batch=KEPT_BATCH if mode == "kept" else 65535)


def _quantum_apps(mode: str) -> dict:
    cfg = _config(mode)

    async def alice(ctx):
        async with await ctx.connect("bob", 5) as sock:
            t0 = ctx.now_ns
            if mode == "kept":
                await ent._measure_kept(ctx, sock, PAIRS, True, "ZX", cfg)
            else:
                await ent._measure_pairs(sock, PAIRS, True, "ZX", cfg)
            return ctx.now_ns - t0

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        if mode == "kept":
            await ent._measure_kept(ctx, sock, PAIRS, False, "ZX", cfg)
        else:
            await ent._measure_pairs(sock, PAIRS, False, "ZX", cfg)
        await sock.close()

    return {"alice": alice, "bob": bob}


def _bbm92_apps(mode: str) -> dict:
    cfg = _config(mode)

    async def alice(ctx):
        async with await ctx.connect("bob", 5) as sock:
            t0 = ctx.now_ns
            res = await ent.bbm92(ctx, sock, KEY_PAIRS, initiator=True, config=cfg)
            return res, ctx.now_ns - t0

    async def bob(ctx):
        sock = await ctx.listen(5).accept()
        res = await ent.bbm92(ctx, sock, KEY_PAIRS, initiator=False, config=cfg)
        await sock.close()
        return res

    return {"alice": alice, "bob": bob}


def _run(n_nodes: int, apps: dict) -> tuple[dict, float, dict]:
    spec = network_from_dict(chain(n_nodes))
    net = build_network(spec, seed=SEED)
    w0 = time.perf_counter()
    run = run_apps(net, apps, until_ns=3_600 * 10 ** 9)
    wall = time.perf_counter() - w0
    if run.errors:
        raise RuntimeError(f"benchmark run failed: {run.errors}")
    return run.results, wall, {k: net.node(k).device.peak_slots for k in ("alice", "bob")}


def run() -> dict:
    out: dict = {"pairs": PAIRS, "key_pairs": KEY_PAIRS, "link_km": LINK_KM,
                 "kept_batch": KEPT_BATCH}
    for n_nodes in (3, 5):
        for mode in ("measure-directly", "kept"):
            key = f"chain{n_nodes}_{mode.replace('-', '_')}"
            results, wall, peaks = _run(n_nodes, _quantum_apps(mode))
            sim_s = results["alice"] / 1e9
            fig = {"pairs_per_sim_s": round(PAIRS / sim_s, 1),
                   "pairs_per_wall_s": round(PAIRS / wall, 1),
                   "peak_end_slots": peaks}
            results, wall, _ = _run(n_nodes, _bbm92_apps(mode))
            (res, dt), other = results["alice"], results["bob"]
            if res.ok and not (res.key == other.key).all():
                raise RuntimeError(f"{key}: the two ends' keys differ")
            fig.update({"key_ok": res.ok, "reason": res.reason, "qber": res.qber,
                        "key_bits": res.key_length,
                        "key_bits_per_sim_s": round(res.key_length / (dt / 1e9), 1),
                        "key_bits_per_wall_s": round(res.key_length / wall, 1)})
            out[key] = fig
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
