"""A sweep's table and plots: mean, standard error and confidence interval.

Per point and metric, over the seeds whose task returned a finite value:
``n``, ``mean``, ``stderr`` = s / sqrt(n) (s the sample standard deviation,
n - 1 in its denominator) and the two-sided Student-t interval
mean ± t_{n-1} · stderr at the experiment's confidence (NaN when n < 2).

The t quantile comes from the exact Student-t distribution for an integer
number of degrees of freedom (Abramowitz and Stegun 26.7.3 and 26.7.4: a
finite sum in θ = atan(t / sqrt(ν))), inverted by bisection; numpy and the
standard library only.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

__all__ = ["t_within", "t_quantile", "summarise", "build_table", "write_table", "plot_table"]


def t_within(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's T with ``dof`` (integer >= 1) degrees of freedom."""
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(dof))
    c, s = math.cos(theta), math.sin(theta)
    if dof % 2:                       # odd: (2/π)(θ + sinθ Σ_{k=1}^{(ν-1)/2} a_k cos^{2k-1}θ)
        total, term = 0.0, c
        for k in range(1, (dof - 1) // 2 + 1):
            if k > 1:
                term *= c * c * (2 * k - 2) / (2 * k - 1)
            total += term
        return 2 / math.pi * (theta + s * total)
    total, term = 1.0, 1.0            # even: sinθ Σ_{k=0}^{ν/2-1} b_k cos^{2k}θ
    for k in range(1, dof // 2):
        term *= c * c * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(confidence: float, dof: int) -> float:
    """t with P(|T| <= t) = ``confidence`` (the two-sided interval's half-width
    in standard errors)."""
    lo, hi = 0.0, 1.0
    while t_within(hi, dof) < confidence:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_within(mid, dof) < confidence:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2


def summarise(values: list[float], confidence: float) -> dict:
    """n, mean, stderr, ci_low, ci_high of the finite ``values``."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return {"n": 0, "mean": math.nan, "stderr": math.nan, "ci_low": math.nan,
                "ci_high": math.nan}
    mean = math.fsum(xs) / n
    if n < 2:
        return {"n": 1, "mean": mean, "stderr": math.nan, "ci_low": math.nan,
                "ci_high": math.nan}
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    se = sd / math.sqrt(n)
    half = t_quantile(confidence, n - 1) * se
    return {"n": n, "mean": mean, "stderr": se, "ci_low": mean - half, "ci_high": mean + half}


def build_table(experiment: Any, records: dict[str, dict]) -> list[dict]:
    """One row per point and metric of ``experiment``, from the stored
    ``records`` (by task key); rows in point order, metrics sorted by name."""
    rows = []
    for i, point in enumerate(experiment.points):
        recs = [records[experiment.key(i, s)] for s in experiment.seeds
                if experiment.key(i, s) in records]
        failed = [r for r in recs if r.get("error")]
        names = sorted({k for r in recs if r.get("metrics") for k in r["metrics"]})
        for name in names:
            vals = [r["metrics"].get(name) for r in recs if r.get("metrics")]
            row = {"point": i, **point, "metric": name,
                   **summarise(vals, experiment.confidence),
                   "seeds": len(experiment.seeds), "failed": len(failed)}
            rows.append(row)
        if not names:
            rows.append({"point": i, **point, "metric": "", "n": 0, "mean": math.nan,
                         "stderr": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                         "seeds": len(experiment.seeds), "failed": len(failed)})
    return rows


def _jsonable(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_table(experiment: Any, rows: list[dict], records: dict[str, dict]) -> tuple[Path, Path]:
    """table.csv and table.json in the experiment's output directory. The
    JSON also lists the failed tasks with their errors."""
    out = experiment.out_dir
    out.mkdir(parents=True, exist_ok=True)
    cols = ["point", *experiment.params, "metric", "n", "mean", "stderr", "ci_low", "ci_high",
            "seeds", "failed"]
    csv_path, json_path = out / "table.csv", out / "table.json"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow([repr(r[c]) if isinstance(r[c], float) else r[c] for c in cols])
    failures = []
    for i in range(len(experiment.points)):
        for s in experiment.seeds:
            rec = records.get(experiment.key(i, s))
            if rec is not None and rec.get("error"):
                failures.append({"point": i, "seed": s, "error": rec["error"]})
    doc = {"experiment": experiment.source, "metric": experiment.metric,
           "params": experiment.params, "seeds": experiment.seeds,
           "confidence": experiment.confidence,
           "rows": [{k: _jsonable(v) for k, v in r.items()} for r in rows],
           "failures": failures}
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    return csv_path, json_path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def plot_table(experiment: Any, rows: list[dict]) -> list[Path]:
    """A PNG per metric and swept parameter: the mean against the parameter,
    the confidence interval as error bars, one line per value of the other
    swept parameters. Agg backend (no display needed)."""
    from qstack.qkdtool import pyplot

    plt = pyplot()

    paths = []
    metrics = sorted({r["metric"] for r in rows if r["metric"]})
    for metric in metrics:
        mrows = [r for r in rows if r["metric"] == metric]
        for param in experiment.params:
            others = [p for p in experiment.params if p != param]
            series: dict[tuple, list[dict]] = {}
            for r in mrows:
                series.setdefault(tuple(r[p] for p in others), []).append(r)
            fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
            for j, (rest, rs) in enumerate(sorted(series.items(), key=lambda kv: str(kv[0]))):
                rs = sorted(rs, key=lambda r: r[param])
                x = [r[param] for r in rs]
                y = [r["mean"] for r in rs]
                err = [[r["mean"] - r["ci_low"] if math.isfinite(r["ci_low"]) else 0 for r in rs],
                       [r["ci_high"] - r["mean"] if math.isfinite(r["ci_high"]) else 0 for r in rs]]
                label = ", ".join(f"{p} = {v:g}" if isinstance(v, (int, float)) else f"{p} = {v}"
                                  for p, v in zip(others, rest)) or None
                ax.errorbar(x, y, yerr=err, fmt="o-", ms=4, capsize=3, color=f"C{j % 10}",
                            label=label)
            ax.set_xlabel(param)
            ax.set_ylabel(metric)
            ax.set_title(f"{metric}: mean over {len(experiment.seeds)} seeds, "
                         f"{experiment.confidence:.0%} confidence interval", fontsize=9)
            ax.grid(True, alpha=0.3)
            if others and len(series) <= 12:
                ax.legend(fontsize=7)
            fig.tight_layout()
            path = experiment.out_dir / f"{_slug(metric)}_vs_{_slug(param)}.png"
            fig.savefig(path)
            plt.close(fig)
            paths.append(path)
    return paths
