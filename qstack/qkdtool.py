"""``qstack qkd run`` and ``qstack qkd sweep``: decoy BB84 over a network file's link.

:func:`run_block` runs one block between two neighbours under
:func:`qstack.simulate` (the ``app.qkd`` protocol on both nodes, the
applications :func:`qstack.app.qkd.api.bb84` / ``bb84_receive``);
:func:`sweep` runs one block per value of a link key and sets the closed-form
curves beside it (:mod:`qstack.app.qkd.rates`). Both raise
:class:`~qstack.core.errors.ConfigError` for input in the user's words.
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qstack.core.errors import ConfigError

__all__ = ["PROTOCOLS", "ONE_DECOY_DEFAULTS", "parse_count", "parse_param", "pick_link",
           "load_for", "table_for", "run_block", "SweepRow", "sweep", "write_csv", "plot", "pyplot"]

#: ``--protocol`` -> decoy classes besides the signal: vacuum + weak decoy
#: (Lim et al. 2014; the link has three intensity classes) or one decoy
#: (Rusca et al. 2018; two classes).
PROTOCOLS = {"decoy-bb84": 2, "decoy-bb84-1": 1}

#: The one-decoy link keys used where the link gives no ``qkd_intensities``:
#: signal 0.5 and decoy 0.15 photons/pulse sent with probabilities 0.7/0.3,
#: within 6 % of the best key of a grid over (μ1, μ2, p_μ1) for blocks of
#: 1e6-1e7 key-basis bits at 25-100 km (tests/test_qkd_onedecoy.py's system).
ONE_DECOY_DEFAULTS = {"qkd_intensities": [0.5, 0.15], "qkd_class_probs": [0.7, 0.3]}


def parse_count(text: str, what: str = "--pulses") -> int:
    """A pulse count written as 1e9, 1_000_000 or 5000000: an integer >= 1."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise ConfigError(f"{what}: expected a number of pulses such as 1e9, got {text!r}") from None
    if not math.isfinite(value) or value < 1 or value != math.floor(value) or value > 2 ** 62:
        raise ConfigError(f"{what}: expected a whole number of pulses from 1 to 2^62, got {text!r}")
    return int(value)


def parse_param(text: str) -> tuple[str, list[float]]:
    """``KEY=START:STOP:STEP`` (STOP included when the steps land on it) or
    ``KEY=V1,V2,...``: the link key and its values."""
    key, sep, spec = str(text).partition("=")
    key = key.strip()
    if not sep or not key or not spec:
        raise ConfigError(f"--param: expected KEY=START:STOP:STEP or KEY=V1,V2,..., got {text!r}")
    try:
        if ":" in spec:
            parts = [float(p) for p in spec.split(":")]
            if len(parts) != 3:
                raise ValueError
            lo, hi, step = parts
            if not (step > 0 and hi >= lo and all(map(math.isfinite, parts))):
                raise ConfigError(f"--param {key}: expected START <= STOP and STEP > 0, got {spec!r}")
            n = int(math.floor((hi - lo) / step + 1e-9)) + 1
            if n > 10_000:
                raise ConfigError(f"--param {key}: {n} points; at most 10000")
            values = [lo + i * step for i in range(n)]
        else:
            values = [float(v) for v in spec.split(",")]
    except ConfigError:              # (a ValueError too: its own message stands)
        raise
    except ValueError:
        raise ConfigError(f"--param {key}: expected numbers as START:STOP:STEP or V1,V2,..., "
                          f"got {spec!r}") from None
    return key, values


def _table(path: str) -> tuple[dict, str]:
    import tomllib

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def pick_link(spec: Any, between: tuple[str, str] | None) -> tuple[str, str]:
    """(Alice, Bob): ``between`` if they are neighbours, else the file's first link."""
    if between is None:
        if not spec.links:
            raise ConfigError(f"{spec.source or 'the network'}: no link to run QKD over")
        return spec.links[0].a, spec.links[0].b
    a, b = between
    for n in (a, b):
        if n not in spec.nodes:
            raise ConfigError(f"--between: unknown node {n!r} (nodes: {', '.join(spec.nodes)})")
    if b not in spec.neighbours(a):
        raise ConfigError(f"--between {a} {b}: not neighbours (decoy BB84 runs over one link; "
                          "a key between far nodes goes through trusted nodes)")
    return a, b


def _with_protocol(table: dict, idx: int, protocol: str) -> dict:
    """The table with the one-decoy defaults on link ``idx`` if ``protocol`` is
    decoy-bb84-1 and the link gives no intensities (a copy; else ``table``)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    entry = table["links"][idx]
    if PROTOCOLS[protocol] != 1 or not isinstance(entry, dict) or "qkd_intensities" in entry:
        return table
    t = dict(table)
    t["links"] = list(t["links"])
    t["links"][idx] = dict(entry, **ONE_DECOY_DEFAULTS)
    return t


def _check_classes(spec: Any, a: str, b: str, protocol: str) -> None:
    link = next(lk for lk in spec.links if {lk.a, lk.b} == {a, b})
    k = len(link.qkd.source.mean_photon_numbers)
    want = PROTOCOLS[protocol] + 1
    if k != want:
        hint = ("qkd_intensities = [signal, decoy] with qkd_class_probs" if want == 2 else
                "qkd_intensities = [signal, decoy, vacuum] with qkd_class_probs, or "
                "--protocol decoy-bb84-1 for two")
        raise ConfigError(f"--protocol {protocol}: the link {a}-{b} has {k} intensity classes; "
                          f"{protocol} needs {want} ({hint})")


def load_for(path: str, between: tuple[str, str] | None, protocol: str = "decoy-bb84"
             ) -> tuple[Any, str, str]:
    """(spec, Alice, Bob) of network file ``path`` ready for ``protocol``: the
    one-decoy defaults (:data:`ONE_DECOY_DEFAULTS`) on a link that gives no
    intensities; ConfigError if the link's classes do not fit the protocol."""
    from qstack.config import load_network

    load_network(path)                   # the file's own errors, with its lines
    table, _ = _table(path)
    return table_for(table, path, between, protocol)


def table_for(table: dict, source: str, between: tuple[str, str] | None,
              protocol: str = "decoy-bb84") -> tuple[Any, str, str]:
    """(spec, Alice, Bob) of the network table ``table``, as :func:`load_for`."""
    from qstack.config import network_from_dict

    spec = network_from_dict(table, source=source)
    a, b = pick_link(spec, between)
    t = _with_protocol(table, _link_index(table, a, b), protocol)
    if t is not table:
        spec = network_from_dict(t, source=f"{source} with the one-decoy defaults")
    _check_classes(spec, a, b, protocol)
    return spec, a, b


def run_block(spec: Any, a: str, b: str, pulses: int, finite: bool = True, seed: int = 1,
              decoys: int = 0) -> tuple[Any, Any, float]:
    """One block between neighbours ``a`` (Alice) and ``b`` (Bob) of ``spec``:
    (Alice's QkdResult, Bob's, wall seconds). ``decoys``: as :func:`qstack.app.qkd.api.bb84`'s."""
    import qstack
    from qstack.app.qkd import api as qkd

    async def alice(ctx):
        return await qkd.bb84(ctx, b, pulses=pulses, finite=finite, decoys=decoys)

    async def bob(ctx):
        return await qkd.bb84_receive(ctx, a)

    t0 = time.perf_counter()
    run = qstack.simulate(spec, {a: alice, b: bob}, seed=seed, qkd=True, settle_s=0,
                          until_s=None)
    wall = time.perf_counter() - t0
    run.raise_errors()
    return run.results[a], run.results[b], wall


def _link_index(table: dict, a: str, b: str) -> int:
    for i, entry in enumerate(table.get("links", [])):
        ends = entry.get("nodes") if isinstance(entry, dict) else entry
        if isinstance(ends, list) and set(ends) == {a, b}:
            return i
    raise ConfigError(f"no link {a}-{b}")


@dataclass
class SweepRow:
    """One point of a sweep: the key's value, the simulated block's figures,
    the closed forms (secret bits per pulse)."""

    value: float
    key_per_pulse: float
    key_bits: int
    qber_signal: float
    reason: str
    transmissivity: float
    mqzl: float
    plob: float
    finite: dict
    wall_s: float
    protocol: str = "decoy-bb84"


def sweep(path: str, key: str, values: list[float], pulses: int, block_sizes: list[int],
          between: tuple[str, str] | None = None, finite: bool = False, seed: int = 1,
          progress: Callable[[int, int], None] | None = None,
          protocol: str = "decoy-bb84") -> list[SweepRow]:
    """A block per value of link key ``key`` (set on the link between the
    chosen neighbours), with the closed forms at each value (``mqzl``: the
    asymptotic closed form of the protocol, :func:`~qstack.app.qkd.rates.asymptotic_rate`)."""
    from qstack.app.qkd.rates import asymptotic_rate, expected_block_key, plob
    from qstack.config import load_network, network_from_dict

    table, text = _table(path)
    spec0 = load_network(path)
    a, b = pick_link(spec0, between)
    idx = _link_index(table, a, b)
    table = _with_protocol(table, idx, protocol)
    rows = []
    for i, v in enumerate(values):
        t = dict(table)
        links = list(t["links"])
        entry = links[idx]
        entry = dict(entry) if isinstance(entry, dict) else {"nodes": list(entry)}
        entry[key] = int(v) if key.endswith("_ns") and float(v).is_integer() else v
        links[idx] = entry
        t["links"] = links
        try:
            spec = network_from_dict(t, source=f"{path} with {key} = {v:g}")
        except ConfigError as exc:
            raise ConfigError(f"--param {key}={v:g}: {exc.detail}") from None
        if i == 0:
            _check_classes(spec, a, b, protocol)
        link = next(lk for lk in spec.links if {lk.a, lk.b} == {a, b})
        fibre = link.model.fibre.with_length(link.model.length_km)
        params = link.qkd.params(fibre)
        ra, rb, wall = run_block(spec, a, b, pulses, finite, seed, PROTOCOLS[protocol])
        q = ra.qber_test_per_class[0] if ra.qber_test_per_class else math.nan
        rows.append(SweepRow(v, ra.key_per_pulse, ra.key_length, q, ra.reason,
                             fibre.transmissivity(), asymptotic_rate(params),
                             plob(fibre.transmissivity()),
                             {n: expected_block_key(params, n, True) for n in block_sizes}, wall,
                             protocol))
        if progress is not None:
            progress(i + 1, len(values))
    return rows


def write_csv(rows: list[SweepRow], key: str, out: str, block_sizes: list[int]) -> None:
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        one = bool(rows) and rows[0].protocol == "decoy-bb84-1"
        w.writerow([key, "simulated_key_per_pulse", "key_bits", "qber_signal", "abort_reason",
                    "transmissivity",
                    "one_decoy_asymptotic_per_pulse" if one else "mqzl_asymptotic_per_pulse",
                    "plob_per_pulse"]
                   + [f"finite_{n:.0e}_per_pulse" for n in block_sizes] + ["wall_s"])
        for r in rows:
            w.writerow([f"{r.value:g}", f"{r.key_per_pulse:.6e}", r.key_bits, f"{r.qber_signal:.5f}",
                        r.reason, f"{r.transmissivity:.6e}", f"{r.mqzl:.6e}", f"{r.plob:.6e}"]
                       + [f"{r.finite[n]:.6e}" for n in block_sizes] + [f"{r.wall_s:.3f}"])


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed); ConfigError
    naming the extra to install when matplotlib is absent."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'qstack[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(rows: list[SweepRow], key: str, out: str, pulses: int, block_sizes: list[int],
         finite: bool) -> None:
    """Key rate per pulse against ``key`` (log scale): the simulated points,
    the closed forms, the PLOB bound. Agg backend (no display needed)."""
    plt = pyplot()
    x = [r.value for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.plot(x, [r.plob for r in rows], "k--", lw=1, label="PLOB bound −log2(1−η)")
    one = bool(rows) and rows[0].protocol == "decoy-bb84-1"
    ax.plot(x, [r.mqzl if r.mqzl > 0 else np.nan for r in rows], "C0-", lw=1.5,
            label="asymptotic one-decoy rate (Rusca et al.'s limit, closed form)" if one
            else "asymptotic decoy rate (MQZL, closed form)")
    for j, n in enumerate(block_sizes):
        ax.plot(x, [r.finite[n] if r.finite[n] > 0 else np.nan for r in rows], f"C{j + 2}:",
                lw=1.5, label=f"finite key, N = {n:.0e} "
                              f"({'Rusca' if one else 'Lim'} et al., closed form)")
    ax.plot(x, [r.key_per_pulse if r.key_per_pulse > 0 else np.nan for r in rows], "C1o",
            ms=4, label=f"simulated blocks of {pulses:.0e} pulses "
                        f"({'finite' if finite else 'asymptotic'}; with the detectors' dead time, "
                        "which the closed forms leave out)")
    ax.set_yscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel("secret key (bits per pulse)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
