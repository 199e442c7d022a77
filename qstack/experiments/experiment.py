"""Experiment files: what ``qstack sweep`` runs.

An experiment file (TOML) names a network, a metric, the parameters to sweep,
the seeds and the outputs::

    network = "three_nodes.toml"   # a network file (relative to this file), or a
                                   # [network] table written like one
    metric = "epr"                 # built in: epr, teleport, qkd (qstack.experiments.tasks);
                                   # or app = "my_app.py" (its APPS, as `qstack sim` takes)
    seeds = 4                      # seeds 1..4 per point (or a list: [1, 7, 9])
    combine = "grid"               # every combination of the swept values ("zip": in step)

    [options]                      # the metric's options (see METRICS)
    pairs = 20

    [sweep]                        # any key of the network file, by dotted path
    "defaults.link.length_km" = [5, 10, 20, 40]          # a list
    "defaults.node.t2_s" = "0.01:0.05:0.01"             # START:STOP:STEP (qkd sweep's syntax)
    "links[0].pair_fidelity" = {start = 0.9, stop = 0.99, num = 4}   # num points, log = true

    [output]
    dir = "sweep-out"              # relative to this file (default: <experiment>.out)
    confidence = 0.95              # of the intervals in the table
    plots = true

Every point's network is built (and checked) when the file loads, so a bad
value is reported before anything runs, at the line of the swept key. Each
task (point, seed) is keyed by a hash of what decides its result: the point's
whole network table, the metric, its options (an application file by its
content) and the seed; changing the file reruns only the tasks whose key
changed.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qstack.config import _Context, _show, load_network, network_from_dict
from qstack.core.errors import ConfigError
from qstack.qkdtool import _table, parse_param

__all__ = ["Experiment", "load_experiment", "experiment_from_dict", "set_path", "parse_path",
           "task_key"]

_TOP_KEYS = {"network", "metric", "app", "seeds", "combine", "options", "sweep", "output",
             "until_s"}
_OUTPUT_KEYS = {"dir", "confidence", "plots"}
_RANGE_KEYS = {"start", "stop", "step", "num", "log"}
#: At most this many points (a typo in a range should not queue a billion tasks).
MAX_POINTS = 100_000
_PATH_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


@dataclass
class Experiment:
    """A loaded experiment file (see the module doc).

    ``network``: the base network table; ``params``: the swept dotted paths
    in file order; ``points``: one ``{path: value}`` per point; ``tables``:
    each point's network table; ``seeds``: the seeds run at every point."""

    source: str
    network: dict
    metric: str
    options: dict
    params: list[str]
    points: list[dict]
    tables: list[dict]
    seeds: list[int]
    out_dir: Path
    confidence: float = 0.95
    plots: bool = True
    until_s: float | None = None
    app_path: str | None = None
    app_sha: str = ""
    _keys: dict = field(default_factory=dict, repr=False)

    def tasks(self) -> list[tuple[int, int, str]]:
        """Every task as (point index, seed, key), points in order, seeds within."""
        out = []
        for i, table in enumerate(self.tables):
            for s in self.seeds:
                out.append((i, s, self.key(i, s)))
        return out

    def key(self, index: int, seed: int) -> str:
        k = self._keys.get((index, seed))
        if k is None:
            k = task_key(self.tables[index], self.metric, self.options, seed, self.app_sha,
                         self.until_s)
            self._keys[(index, seed)] = k
        return k


def task_key(network: dict, metric: str, options: dict, seed: int, app_sha: str = "",
             until_s: float | None = None) -> str:
    """The hash (sha256, hex) of what decides a task's result."""
    blob = json.dumps({"network": network, "metric": metric, "options": options, "seed": seed,
                       "app": app_sha, "until_s": until_s}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_path(path: str) -> list:
    """``links[0].length_km`` -> ["links", 0, "length_km"] (ValueError if malformed)."""
    parts: list = []
    for chunk in path.split("."):
        m = _PATH_PART.fullmatch(chunk)
        if m is None:
            raise ValueError(path)
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return parts


def set_path(table: dict, path: str, value: Any) -> dict:
    """A copy of network table ``table`` with the key at dotted ``path`` set to
    ``value``. A link written as ``["a", "b"]`` becomes ``{nodes = ["a", "b"]}``
    and ``nodes = [...]`` a table of node tables, as the file could have
    written them, so that any key of any node or link can be swept.
    ``KeyError`` names a list index that is not there."""
    out = copy.deepcopy(table)
    parts = parse_path(path)
    here: Any = out
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(here, list) or part >= len(here):
                raise KeyError(f"{_join(parts[:i + 1])}: no such item")
            item = here[part]
            if isinstance(item, list) and isinstance(nxt, str):   # a link as [a, b]
                item = here[part] = {"nodes": list(item)}
            here = item
            continue
        if not isinstance(here, dict):
            raise KeyError(f"{_join(parts[:i + 1])}: not a table")
        child = here.get(part)
        if part == "nodes" and isinstance(child, list) and isinstance(nxt, str):
            child = here[part] = {name: {} for name in child}
        if child is None:
            child = here[part] = [] if isinstance(nxt, int) else {}
        here = child
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(here, list) or last >= len(here):
            raise KeyError(f"{_join(parts)}: no such item")
    elif not isinstance(here, dict):
        raise KeyError(f"{_join(parts[:-1])}: not a table")
    here[last] = value
    return out


def _join(parts: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if k else p)
                   for k, p in enumerate(parts))


def _read(path: Path) -> tuple[dict, str]:
    return _table(str(path))


def load_experiment(path: str | Path) -> Experiment:
    """Read and check an experiment file; :class:`ConfigError` names the
    field and the line of anything wrong."""
    path = Path(path)
    data, text = _read(path)
    return experiment_from_dict(data, source=str(path), text=text, base=path.parent,
                                default_out=path.with_suffix(".out"))


def _values(ctx: _Context, where: tuple, spec: Any) -> list:
    """The values of one swept key: a list, "START:STOP:STEP" / "V1,V2" or a range table."""
    if isinstance(spec, list):
        if not spec:
            raise ctx.error(where, "expected at least one value, got []")
        return list(spec)
    if isinstance(spec, str):
        try:
            _, values = parse_param(f"x={spec}")
        except ConfigError as exc:
            raise ctx.error(where, exc.detail.replace("--param x: ", "").replace("--param: ", "")
                            ) from None
        ints = all(re.fullmatch(r"\s*-?\d+\s*", p) for p in re.split("[:,]", spec))
        return [int(round(v)) for v in values] if ints else values
    if isinstance(spec, dict):
        unknown = set(spec) - _RANGE_KEYS
        if unknown:
            raise ctx.error(where + (sorted(unknown)[0],), "unknown range key (expected start, "
                            "stop and step or num, optionally log = true)")
        for k in ("start", "stop"):
            if k not in spec:
                raise ctx.error(where, f"a range needs {k}")
        lo, hi = spec["start"], spec["stop"]
        for k, v in (("start", lo), ("stop", hi)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ctx.bad(where + (k,), "a finite number", v)
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ctx.bad(where + ("log",), "true or false", log)
        if ("step" in spec) == ("num" in spec):
            raise ctx.error(where, "a range needs exactly one of step and num")
        if "num" in spec:
            num = spec["num"]
            if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_POINTS:
                raise ctx.bad(where + ("num",), f"an integer from 1 to {MAX_POINTS}", num)
            if log:
                if lo <= 0 or hi <= 0:
                    raise ctx.error(where, "log = true needs start > 0 and stop > 0")
                return [lo * (hi / lo) ** (i / max(num - 1, 1)) for i in range(num)]
            return [lo + (hi - lo) * i / max(num - 1, 1) for i in range(num)]
        step = spec["step"]
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
            raise ctx.bad(where + ("step",), "a number > 0", step)
        if log:
            raise ctx.error(where, "log = true goes with num, not step")
        if hi < lo:
            raise ctx.error(where, f"expected start <= stop, got {lo} > {hi}")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        if n > MAX_POINTS:
            raise ctx.error(where, f"{n} values; at most {MAX_POINTS}")
        return [lo + i * step for i in range(n)]     # integers stay integers
    raise ctx.bad(where, "a list of values, \"START:STOP:STEP\" or a table {start, stop, "
                         "step or num}", spec)


def _flatten(table: dict, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """[(TOML key path, value spec)] of [sweep]: nested tables are dotted paths
    unless they are range tables."""
    out = []
    for k, v in table.items():
        if isinstance(v, dict) and not (set(v) & {"start", "stop"}):
            out.extend(_flatten(v, prefix + (k,)))
        else:
            out.append((prefix + (k,), v))
    return out


def _culprit(network: dict, columns: list, params: list, combo: tuple) -> tuple:
    """The swept key (its TOML path) whose value alone breaks the network, else
    the first one: where an error about a point points."""
    for (where, _), p, v in zip(columns, params, combo):
        try:
            network_from_dict(set_path(network, p, v))
        except (ConfigError, KeyError):
            return where
    return columns[0][0] if columns else ("network",)


def experiment_from_dict(data: dict, source: str = "experiment", text: str | None = None,
                         base: Path | None = None, default_out: Path | None = None) -> Experiment:
    """An :class:`Experiment` from a parsed experiment table (see the module doc)."""
    from qstack.experiments.tasks import METRICS, check_options

    ctx = _Context(source, text)
    base = base or Path(".")
    for k in data:
        if k not in _TOP_KEYS:
            raise ctx.error((k,), f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")
    # -- the network
    if "network" not in data:
        raise ctx.error((), "no network: give network = \"FILE.toml\" or a [network] table")
    net = data["network"]
    if isinstance(net, str):
        net_path = base / net
        spec = load_network(net_path)       # its own errors name its own lines
        network, _ = _read(net_path)
        net_source = str(net_path)
    elif isinstance(net, dict):
        network = net
        net_source = f"{source} [network]"
        try:
            network_from_dict(network)
        except ConfigError as exc:
            raise ctx.error(("network",), f"does not load: {exc.detail}") from None
    else:
        raise ctx.bad(("network",), "a network file name or a [network] table", net)
    # -- the metric
    app_path = app_sha = None
    if "app" in data and "metric" in data:
        raise ctx.error(("app",), "give metric or app, not both")
    if "app" in data:
        app = data["app"]
        if not isinstance(app, str):
            raise ctx.bad(("app",), "a Python file name", app)
        p = base / app
        try:
            app_sha = hashlib.sha256(p.read_bytes()).hexdigest()
        except OSError as exc:
            raise ctx.error(("app",), f"cannot read {p} ({exc.strerror or exc})") from None
        metric, app_path = "app", str(p.resolve())
    else:
        metric = data.get("metric")
        if metric is None:
            raise ctx.error((), f"no metric: give metric = one of {', '.join(METRICS)}, "
                                "or app = \"FILE.py\"")
        if metric not in METRICS or metric == "app":
            raise ctx.bad(("metric",), f"one of {', '.join(m for m in METRICS if m != 'app')}",
                          metric)
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ctx.bad(("options",), "a table", options)
    try:
        options = check_options(metric, options)
    except KeyError as exc:
        raise ctx.error(("options", exc.args[0]), exc.args[1]) from None
    until_s = data.get("until_s")
    if until_s is not None and (isinstance(until_s, bool) or not isinstance(until_s, (int, float))
                                or not 0 < until_s < 9e9):
        raise ctx.bad(("until_s",), "simulated seconds > 0", until_s)
    # -- seeds
    seeds = data.get("seeds", 1)
    if isinstance(seeds, bool):
        raise ctx.bad(("seeds",), "a count >= 1 or a list of seeds >= 0", seeds)
    if isinstance(seeds, int):
        if not 1 <= seeds <= MAX_POINTS:
            raise ctx.bad(("seeds",), f"a count from 1 to {MAX_POINTS}", seeds)
        seeds = list(range(1, seeds + 1))
    elif isinstance(seeds, list) and seeds:
        for i, s in enumerate(seeds):
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ctx.bad(("seeds", i), "a seed, an integer >= 0", s)
        if len(set(seeds)) != len(seeds):
            raise ctx.error(("seeds",), "a seed is listed twice")
    else:
        raise ctx.bad(("seeds",), "a count >= 1 or a list of seeds >= 0", seeds)
    # -- the sweep
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        raise ctx.bad(("sweep",), "a table of dotted network keys", sweep)
    params, columns = [], []
    for where_rel, spec in _flatten(sweep):
        where = ("sweep",) + where_rel
        dotted = ".".join(where_rel)
        try:
            parse_path(dotted)
        except ValueError:
            raise ctx.error(where, "expected a dotted network key such as defaults.link.length_km "
                                   "or links[0].length_km") from None
        if dotted in params:
            raise ctx.error(where, "swept twice")
        params.append(dotted)
        columns.append((where, _values(ctx, where, spec)))
    combine = data.get("combine", "grid")
    if combine not in ("grid", "zip"):
        raise ctx.bad(("combine",), "\"grid\" or \"zip\"", combine)
    if combine == "zip" and len({len(v) for _, v in columns}) > 1:
        raise ctx.error(("combine",), "zip needs every swept key to have as many values ("
                        + ", ".join(f"{p}: {len(v)}" for p, (_, v) in zip(params, columns)) + ")")
    combos = (list(zip(*(v for _, v in columns))) if combine == "zip"
              else list(itertools.product(*(v for _, v in columns))))
    if len(combos) > MAX_POINTS:
        raise ctx.error(("sweep",), f"{len(combos)} points; at most {MAX_POINTS}")
    points, tables = [], []
    for combo in combos:
        point = dict(zip(params, combo))
        table = network
        for (where, _), p, v in zip(columns, params, combo):
            try:
                table = set_path(table, p, v)
            except KeyError as exc:
                raise ctx.error(where, f"not a key of the network: {exc.args[0]}") from None
        try:
            network_from_dict(table, source=net_source)
        except ConfigError as exc:
            at = ", ".join(f"{p} = {_show(v)}" for p, v in point.items())
            raise ctx.error(_culprit(network, columns, params, combo),
                            f"the network at {at or 'the base point'} does not load: "
                            f"{exc.detail}") from None
        points.append(point)
        tables.append(table)
    # -- outputs
    output = data.get("output", {})
    if not isinstance(output, dict):
        raise ctx.bad(("output",), "a table", output)
    for k in output:
        if k not in _OUTPUT_KEYS:
            raise ctx.error(("output", k), f"unknown key (expected {', '.join(sorted(_OUTPUT_KEYS))})")
    out_dir = output.get("dir")
    if out_dir is not None and not isinstance(out_dir, str):
        raise ctx.bad(("output", "dir"), "a directory name", out_dir)
    conf = output.get("confidence", 0.95)
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 < conf < 1:
        raise ctx.bad(("output", "confidence"), "a probability in (0, 1)", conf)
    plots = output.get("plots", True)
    if not isinstance(plots, bool):
        raise ctx.bad(("output", "plots"), "true or false", plots)
    out = base / out_dir if out_dir else (default_out or Path("experiment.out"))
    return Experiment(source=source, network=network, metric=metric, options=options,
                      params=params, points=points, tables=tables, seeds=seeds, out_dir=out,
                      confidence=float(conf), plots=plots,
                      until_s=None if until_s is None else float(until_s),
                      app_path=app_path, app_sha=app_sha or "")
