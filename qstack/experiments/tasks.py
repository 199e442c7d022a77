"""One task of a sweep: a (point, seed) run, returned as a plain record.

:func:`run_task` takes a :func:`task_spec` (a dict of plain values: the
point's network table, the metric and its options, the seed) and returns a
dict (:func:`make_record`'s fields: key, point index, point, seed, metrics
or error, wall seconds). Both pickle and go to JSON, so a task can run in
any process of any machine; no simulator ever crosses a process boundary.

Built-in metrics (``metric = ...`` in an experiment file; their options in
``[options]``):

* ``epr``: ``pairs`` end-to-end EPR pairs (default 10) between ``between``
  (default: the first and the last node) over sockets, one after the other,
  both halves measured in Z at once: ``pairs_per_s``, ``fidelity_mean`` (the network's estimate),
  ``latency_mean_ms``, ``z_mismatch`` (share of pairs whose Z outcomes
  differ), ``link_pairs``, ``sim_time_s``;
* ``teleport``: ``qubits`` random BB84 states (default 10) teleported between
  ``between``: ``qubits_delivered``, ``pairs_per_s``, ``latency_mean_ms``,
  ``error_rate`` (measured in the state's basis), ``sim_time_s``;
* ``qkd``: one decoy-BB84 block (:func:`qstack.qkdtool.run_block`) of
  ``pulses`` (default 1e6) between the neighbours ``between`` (default: the
  first link), ``finite`` (default false), ``protocol`` (decoy-bb84 or
  decoy-bb84-1): ``key_per_pulse``, ``key_bits``, ``qber_signal``,
  ``aborted`` (1 when the block gave no key);
* ``app`` (``app = "FILE.py"``): the file's ``APPS`` under
  :func:`qstack.simulate`: the run's metrics (:func:`qstack.api.metrics_of`,
  less the wall time) and every number an application returned
  (``result.<node>`` or ``result.<node>.<key>`` for a dict).

The wall time is kept beside the metrics, not among them: the metrics of a
task depend on its inputs only, so every executor gives the same table.
"""
from __future__ import annotations

import math
import time
import traceback
from typing import Any

__all__ = ["METRICS", "check_options", "task_spec", "run_task", "make_record"]

PORT = 9

#: metric -> {option: (default, check, what it expects)}
METRICS: dict[str, dict[str, tuple[Any, Any, str]]] = {}


def _int_at_least(n: int):
    return lambda v: not isinstance(v, bool) and isinstance(v, int) and v >= n


def _pair(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
            and v[0] != v[1])


def _count(v: Any) -> bool:
    return (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            and v >= 1 and float(v).is_integer() and v <= 2 ** 62)


METRICS["epr"] = {"pairs": (10, _int_at_least(1), "an integer >= 1"),
                  "between": (None, _pair, "two node names")}
METRICS["teleport"] = {"qubits": (10, _int_at_least(1), "an integer >= 1"),
                       "between": (None, _pair, "two node names")}
METRICS["qkd"] = {"pulses": (1_000_000, _count, "a whole number of pulses >= 1, e.g. 1e6"),
                  "between": (None, _pair, "two neighbours' names"),
                  "finite": (False, lambda v: isinstance(v, bool), "true or false"),
                  "protocol": ("decoy-bb84", lambda v: v in ("decoy-bb84", "decoy-bb84-1"),
                               "\"decoy-bb84\" or \"decoy-bb84-1\"")}
METRICS["app"] = {}


def check_options(metric: str, options: dict) -> dict:
    """``options`` with the metric's defaults filled in; ``KeyError((key,
    message))`` for an unknown key or a bad value."""
    known = METRICS[metric]
    out = {}
    for k, v in options.items():
        if k not in known:
            raise KeyError(k, f"unknown option of metric {metric!r}"
                              + (f" (expected {', '.join(known)})" if known else " (it takes none)"))
        default, ok, what = known[k]
        if not ok(v):
            from qstack.config import _show
            raise KeyError(k, f"expected {what}, got {_show(v)}")
        out[k] = v
    for k, (default, _, _) in known.items():
        out.setdefault(k, default)
    return out


def task_spec(experiment: Any, index: int, seed: int, key: str) -> dict:
    """What :func:`run_task` needs for task (``index``, ``seed``) of ``experiment``."""
    return {"key": key, "index": index, "point": experiment.points[index], "seed": seed,
            "network": experiment.tables[index], "metric": experiment.metric,
            "options": experiment.options, "app_path": experiment.app_path,
            "until_s": experiment.until_s}


def make_record(spec: dict, metrics: dict | None, error: str | None, wall_s: float) -> dict:
    """The record of a finished task (plain values only)."""
    return {"key": spec["key"], "index": spec["index"], "point": spec["point"],
            "seed": spec["seed"], "metrics": metrics, "error": error, "wall_s": wall_s}


def run_task(spec: dict) -> dict:
    """Run one task; an exception becomes the record's ``error`` (type, message
    and the innermost frame), so a sweep goes on past it."""
    t0 = time.perf_counter()
    try:
        metrics = _METRIC_FNS[spec["metric"]](spec)
        metrics = {k: float(v) for k, v in metrics.items()}
        error = None
    except Exception as exc:           # the task's failure, recorded; the sweep goes on
        metrics = None
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}{where}"
    return make_record(spec, metrics, error, time.perf_counter() - t0)


def _until(spec: dict, default: float) -> float:
    return spec["until_s"] if spec["until_s"] is not None else default


def _ends(net: Any, between: list | None) -> tuple[str, str]:
    nodes = list(net.nodes)
    if between is None:
        return nodes[0], nodes[-1]
    for n in between:
        if n not in net.nodes:
            raise ValueError(f"between: unknown node {n!r} (nodes: {', '.join(nodes)})")
    return between[0], between[1]


def _simulate(net: Any, spec: dict, apps: dict, until_default: float) -> Any:
    import qstack

    res = qstack.simulate(net, apps, seed=spec["seed"],
                          until_s=_until(spec, until_default))
    res.raise_errors()
    return res


def _stack_metrics(res: Any, names: tuple) -> dict:
    return {k: res.metrics[k] for k in names}


def _two_ends(spec: dict, count: str) -> tuple[Any, str, str, int]:
    """(network spec, first end, second end, the count option ``count``)."""
    from qstack.config import network_from_dict

    net = network_from_dict(spec["network"])
    a, b = _ends(net, spec["options"]["between"])
    return net, a, b, spec["options"][count]


def _epr(spec: dict) -> dict:
    net, a, b, n = _two_ends(spec, "pairs")

    # one pair at a time, measured at once: a run never holds more than a
    # pair per end, whatever the memories' size
    async def alice(ctx):
        async with await ctx.connect(b, PORT) as sock:
            return [await (await sock.create_epr(1))[0].measure("Z") for _ in range(n)]

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        return [await (await sock.recv_epr(1))[0].measure("Z") for _ in range(n)]

    res = _simulate(net, spec, {a: alice, b: bob}, 3600.0)
    ra, rb = res.results[a], res.results[b]
    out = _stack_metrics(res, ("pairs_per_s", "fidelity_mean", "latency_mean_ms", "link_pairs",
                               "sim_time_s"))
    out["z_mismatch"] = sum(x != y for x, y in zip(ra, rb)) / n
    return out


def _teleport(spec: dict) -> dict:
    net, a, b, n = _two_ends(spec, "qubits")

    async def alice(ctx):
        async with await ctx.connect(b, PORT) as sock:
            for _ in range(n):
                basis, bit = int(ctx.rng.integers(2)), int(ctx.rng.integers(2))
                q = ctx.qubit()
                if bit:
                    q.x()
                if basis:
                    q.h()
                await sock.send_qubit(q, metadata=bytes([basis, bit]))

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        errors = 0
        for _ in range(n):
            q = await sock.recv_qubit()
            basis, bit = q.metadata
            errors += (await q.measure("X" if basis else "Z")) != bit
        return errors

    res = _simulate(net, spec, {a: alice, b: bob}, 3600.0)
    out = _stack_metrics(res, ("qubits_delivered", "pairs_per_s", "latency_mean_ms",
                               "sim_time_s"))
    out["error_rate"] = res.results[b] / n
    return out


def _qkd(spec: dict) -> dict:
    from qstack import qkdtool

    opts = spec["options"]
    protocol = opts["protocol"]
    net, a, b = qkdtool.table_for(spec["network"], "the point's network",
                                  tuple(opts["between"]) if opts["between"] else None, protocol)
    ra, _, _ = qkdtool.run_block(net, a, b, int(opts["pulses"]), opts["finite"], spec["seed"],
                                 qkdtool.PROTOCOLS[protocol])
    q = ra.qber_test_per_class[0] if ra.qber_test_per_class else math.nan
    return {"key_per_pulse": ra.key_per_pulse, "key_bits": ra.key_length, "qber_signal": q,
            "aborted": 0.0 if ra.ok else 1.0}


def _app(spec: dict) -> dict:
    from qstack.appfile import load_apps
    from qstack.config import network_from_dict

    net = network_from_dict(spec["network"])
    apps = load_apps(spec["app_path"], net.nodes)
    res = _simulate(net, spec, apps, 3600.0)
    out = {k: v for k, v in res.metrics.items()
           if k != "wall_s" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, value in sorted(res.results.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"result.{name}"] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"result.{name}.{k}"] = v
    return out


_METRIC_FNS = {"epr": _epr, "teleport": _teleport, "qkd": _qkd, "app": _app}
