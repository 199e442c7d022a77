"""qstack sweep: experiment files, the store, executors, resuming, the table."""
from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import qstack
from qstack.core.errors import ConfigError
from qstack.experiments import executors
from qstack.experiments.experiment import experiment_from_dict, load_experiment, set_path
from qstack.experiments.store import TaskStore
from qstack.experiments.sweep import run_sweep
from qstack.experiments.table import summarise, t_quantile

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parents[1]

NET = """
nodes = ["alice", "bob"]
[defaults.node]
t1_s = "inf"
t2_s = "inf"
[defaults.link]
scheme = "sender-receiver"
length_km = 5
false_herald_prob = 0.0
pair_fidelity = 0.9
[[links]]
nodes = ["alice", "bob"]
"""


def _write(tmp: Path, body: str, name: str = "exp.toml") -> Path:
    (tmp / "net.toml").write_text(NET)
    p = tmp / name
    p.write_text(textwrap.dedent(body))
    return p


EPR = """
network = "net.toml"
metric = "epr"
seeds = 2
[options]
pairs = 2
[sweep]
"links[0].length_km" = [2, 8]
[output]
dir = "out"
plots = false
"""


def _rows(exp) -> list:
    return json.loads((exp.out_dir / "table.json").read_text())["rows"]


# ------------------------------------------------------------------ files

def test_grid_zip_ranges_and_paths(tmp_path):
    p = _write(tmp_path, """
        network = "net.toml"
        metric = "epr"
        seeds = [3, 5]
        [sweep]
        "links[0].length_km" = "0:10:5"
        defaults.link.pair_fidelity = {start = 0.8, stop = 0.9, num = 2}
        """)
    exp = load_experiment(p)
    assert exp.params == ["links[0].length_km", "defaults.link.pair_fidelity"]
    assert [pt["links[0].length_km"] for pt in exp.points] == [0, 0, 5, 5, 10, 10]
    assert all(isinstance(pt["links[0].length_km"], int) for pt in exp.points)
    assert exp.seeds == [3, 5] and len(exp.tasks()) == 12
    assert exp.tables[2]["links"][0]["length_km"] == 5
    assert exp.tables[3]["defaults"]["link"]["pair_fidelity"] == 0.9
    zipped = experiment_from_dict({"network": {"nodes": ["a", "b"], "links": [["a", "b"]]},
                                   "metric": "epr", "combine": "zip",
                                   "sweep": {"links[0].length_km": [1, 2],
                                             "nodes.a.t2_s": [0.5, 1.0]}})
    assert zipped.points == [{"links[0].length_km": 1, "nodes.a.t2_s": 0.5},
                             {"links[0].length_km": 2, "nodes.a.t2_s": 1.0}]
    # a link written as [a, b] and a list of node names become tables
    assert zipped.tables[1]["links"][0] == {"nodes": ["a", "b"], "length_km": 2}
    assert zipped.tables[1]["nodes"] == {"a": {"t2_s": 1.0}, "b": {}}


def test_set_path_leaves_the_table_alone():
    t = {"links": [["a", "b"]]}
    u = set_path(t, "links[0].length_km", 3)
    assert t == {"links": [["a", "b"]]} and u["links"][0]["length_km"] == 3
    with pytest.raises(KeyError):
        set_path(t, "links[4].length_km", 3)


@pytest.mark.parametrize("body, expected", [
    ('network = "net.toml"\nmetric = "epr"\nseeds = 0\n', r"exp\.toml:3: seeds: expected a count"),
    ('network = "net.toml"\nmetric = "nope"\n', r"exp\.toml:2: metric: expected one of epr"),
    ('network = "net.toml"\nmetric = "epr"\n\n[sweep]\n"links[0].length_km" = [1, -5]\n',
     r"exp\.toml:5: sweep\.\"links\[0\]\.length_km\": the network at links\[0\]\.length_km = -5 "
     r"does not load: .*length_km"),
    ('network = "net.toml"\nmetric = "epr"\n[options]\npairz = 3\n',
     r"exp\.toml:4: options\.pairz: unknown option of metric 'epr'"),
    ('network = "net.toml"\nmetric = "epr"\n[sweep]\nx = {start = 1, stop = 2}\n',
     r"exp\.toml:4: sweep\.x: a range needs exactly one of step and num"),
    ('network = "net.toml"\nmetric = "epr"\nsweep.nodes = "1:2:0"\n',
     r"exp\.toml:3: sweep\.nodes: expected START <= STOP and STEP > 0"),
    ('network = "net.toml"\nmetric = "epr"\n[output]\nconfidence = 1.5\n',
     r"exp\.toml:4: output\.confidence: expected a probability"),
    ('network = "net.toml"\nmetric = "epr"\n[sweep]\n"links[0].length_km" = [1]\n'
     '"nodes.alice.t2_s" = [1.0, -2.0]\n', r"exp\.toml:5: sweep\.\"nodes\.alice\.t2_s\""),
    ('metric = "epr"\n', r"no network"),
    ('metric = "epr"\n[network]\nnodes = ["a", "b"]\nlinks = [["a", "c"]]\n',
     r"exp\.toml:2: network: does not load: links\[0\]"),
    ('network = "net.toml"\nmetric = "epr"\ncombine = "zip"\n[sweep]\n'
     '"links[0].length_km" = [1, 2]\n"nodes.alice.t2_s" = [1.0]\n',
     r"exp\.toml:3: combine: zip needs every swept key to have as many values"),
])
def test_bad_files_name_the_field_and_line(tmp_path, body, expected):
    p = _write(tmp_path, body)
    with pytest.raises(ConfigError, match=expected):
        load_experiment(p)


def test_a_bad_network_file_names_its_own_line(tmp_path):
    (tmp_path / "net.toml").write_text('links = [["a", "b"]]\n[nodes.b]\n'
                                       '[nodes.a]\nt2_s = -1\n')
    (tmp_path / "exp.toml").write_text('network = "net.toml"\nmetric = "epr"\n')
    with pytest.raises(ConfigError, match=r"net\.toml:4: nodes\.a\.t2_s"):
        load_experiment(tmp_path / "exp.toml")


# ------------------------------------------------------------------ statistics

def test_t_quantile_matches_scipy():
    from scipy import stats

    for dof in (1, 2, 3, 4, 7, 10, 29, 100):
        for conf in (0.5, 0.9, 0.95, 0.99):
            assert t_quantile(conf, dof) == pytest.approx(stats.t.ppf((1 + conf) / 2, dof),
                                                          rel=1e-9)


def test_summary_closed_form():
    s = summarise([1.0, 2.0, 3.0, 4.0, math.nan], 0.95)
    assert s["n"] == 4 and s["mean"] == 2.5
    assert s["stderr"] == pytest.approx(math.sqrt(5 / 3) / 2, rel=1e-12)
    assert s["ci_high"] - s["mean"] == pytest.approx(3.182446305284263 * s["stderr"], rel=1e-9)
    assert math.isnan(summarise([1.0], 0.95)["stderr"])


# ------------------------------------------------------------------ store

def test_store_survives_a_torn_and_a_corrupt_record(tmp_path):
    path = tmp_path / "tasks.jsonl"
    with TaskStore(path) as st:
        for i in range(3):
            st.add({"key": f"k{i}", "metrics": {"x": i * 0.1}, "error": None})
    lines = path.read_bytes().splitlines(keepends=True)
    corrupt = lines[1].replace(b"0.1", b"0.2")           # checksum no longer matches
    path.write_bytes(lines[0] + corrupt + lines[2][:25])  # torn last record, no newline
    st = TaskStore(path)
    assert set(st.records) == {"k0"} and st.bad_lines == 2
    st.add({"key": "k2", "metrics": {"x": 0.2}, "error": None})
    st.close()
    assert set(TaskStore(path).records) == {"k0", "k2"}
    assert path.read_bytes().endswith(b"\n")


# ------------------------------------------------------------------ sweeps

def test_simulation_result_pickles():
    async def a(ctx):
        raise ValueError("boom")

    r = qstack.simulate({"nodes": ["a", "b"], "links": [["a", "b"]]}, {"a": a}, seed=1)
    back = pickle.loads(pickle.dumps(r))
    assert back.net is None and back.end_ns == r.end_ns and "a" in back.errors


def test_inline_and_pool_give_the_same_table_and_resume_reruns_nothing(tmp_path):
    p = _write(tmp_path, EPR)
    exp = load_experiment(p)
    first = run_sweep(exp, executors.InlineExecutor())
    assert first.ran == 4 and first.failed == 0
    rows = _rows(exp)
    again = run_sweep(exp, executors.InlineExecutor())
    assert again.ran == 0 and again.reused == 4 and _rows(exp) == rows
    exp.out_dir = tmp_path / "pool"
    pool = executors.PoolExecutor(2)
    try:
        assert run_sweep(exp, pool).ran == 4
    finally:
        pool.close()
    assert _rows(exp) == rows
    fid = [r for r in rows if r["metric"] == "fidelity_mean"]
    assert [r["mean"] for r in fid] == pytest.approx([0.9, 0.9], abs=1e-12)  # pair_fidelity, no decay


def test_dask_local_cluster_gives_the_same_table(tmp_path):
    pytest.importorskip("distributed")
    p = _write(tmp_path, EPR)
    exp = load_experiment(p)
    run_sweep(exp, executors.InlineExecutor())
    rows = _rows(exp)
    exp.out_dir = tmp_path / "dask"
    ex = executors.DaskExecutor("local", 2)
    try:
        rep = run_sweep(exp, ex)
    finally:
        ex.close()
    assert rep.ran == 4 and _rows(exp) == rows
    # a scheduler given by its address (--dask tcp://HOST:PORT)
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        exp.out_dir = tmp_path / "dask-address"
        ex = executors.DaskExecutor(cluster.scheduler_address)
        try:
            assert run_sweep(exp, ex).ran == 4
        finally:
            ex.close()
    assert _rows(exp) == rows


def test_a_changed_file_reruns_only_the_changed_points(tmp_path):
    p = _write(tmp_path, EPR)
    run_sweep(load_experiment(p), executors.InlineExecutor())
    p.write_text(EPR.replace("[2, 8]", "[2, 8, 4]").replace("seeds = 2", "seeds = 3"))
    rep = run_sweep(load_experiment(p), executors.InlineExecutor())
    assert rep.reused == 4 and rep.ran == 5          # seed 3 at the old points, the new point


APP_FAILING = """
async def alice(ctx):
    if ctx.rng.integers(2):      # depends on the seed only
        raise RuntimeError("unlucky seed")
    return {"value": 1.5}

APPS = {"alice": alice}
"""


def test_a_task_that_raises_is_recorded_and_the_sweep_goes_on(tmp_path):
    (tmp_path / "app.py").write_text(APP_FAILING)
    p = _write(tmp_path, 'network = "net.toml"\napp = "app.py"\nseeds = 6\n'
                         '[output]\ndir = "out"\n')
    exp = load_experiment(p)
    rep = run_sweep(exp, executors.InlineExecutor())
    doc = json.loads((exp.out_dir / "table.json").read_text())
    assert 0 < rep.failed < 6 and len(doc["failures"]) == rep.failed
    assert all("RuntimeError: unlucky seed" in f["error"] for f in doc["failures"])
    row = next(r for r in doc["rows"] if r["metric"] == "result.alice.value")
    assert row["n"] == 6 - rep.failed and row["mean"] == 1.5 and row["failed"] == rep.failed


APP_SLOW = """
import os, signal, time
from pathlib import Path

async def alice(ctx):
    time.sleep(float(os.environ.get("QSTACK_TEST_TASK_SLEEP", "0")))
    marker = os.environ.get("QSTACK_TEST_KILL_MARKER")
    unlucky = ctx.rng.integers(4) == 0          # drawn either way: the same numbers after it
    if marker and unlucky and not Path(marker).exists():
        Path(marker).write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)      # the worker dies mid-task, once
    return {"draw": float(ctx.rng.random())}

APPS = {"alice": alice}
"""

SLOW = """
network = "net.toml"
app = "app.py"
seeds = 8
[sweep]
"links[0].length_km" = [1, 2]
[output]
dir = "out"
plots = false
"""


def _slow_sweep_uninterrupted(tmp_path: Path) -> tuple[Path, list]:
    """The SLOW experiment's file and its table from a run left alone."""
    (tmp_path / "app.py").write_text(APP_SLOW)
    p = _write(tmp_path, SLOW)
    exp = load_experiment(p)
    exp.out_dir = tmp_path / "clean"
    run_sweep(exp, executors.InlineExecutor())
    return p, _rows(exp)


def test_killed_driver_resumes_to_the_same_table(tmp_path):
    p, clean = _slow_sweep_uninterrupted(tmp_path)
    env = dict(os.environ, QSTACK_TEST_TASK_SLEEP="0.2")
    proc = subprocess.Popen([sys.executable, "-m", "qstack.cli", "sweep", str(p), "-j", "1"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    store = tmp_path / "out" / "tasks.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if store.exists() and store.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = store.read_bytes().count(b"\n")
    assert 3 <= done < 16, "the driver must die mid-sweep"
    exp = load_experiment(p)
    rep = run_sweep(exp, executors.InlineExecutor())
    assert rep.reused >= 3 and rep.reused + rep.ran == 16
    assert _rows(exp) == clean


def test_killed_worker_is_recorded_and_redone(tmp_path, monkeypatch):
    p, clean = _slow_sweep_uninterrupted(tmp_path)
    marker = tmp_path / "killed"
    monkeypatch.setenv("QSTACK_TEST_KILL_MARKER", str(marker))
    exp = load_experiment(p)
    pool = executors.PoolExecutor(2)
    try:
        rep = run_sweep(exp, pool)
    finally:
        pool.close()
    assert marker.exists() and rep.lost >= 1 and rep.failed == 0
    st = TaskStore(exp.out_dir / "tasks.jsonl")
    assert sum(st.lost.values()) == rep.lost
    assert _rows(exp) == clean


def test_cli_sweep_and_its_errors(tmp_path, capsys):
    from qstack.cli import main

    p = _write(tmp_path, EPR.replace("plots = false", "plots = true"))
    assert main(["sweep", str(p), "-j", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 points x 2 seeds" in out and "fidelity_mean_vs_links_0_.length_km.png" in out
    assert (tmp_path / "out" / "fidelity_mean_vs_links_0_.length_km.png").stat().st_size > 1000
    csv_text = (tmp_path / "out" / "table.csv").read_text()
    assert csv_text.splitlines()[0] == ("point,links[0].length_km,metric,n,mean,stderr,ci_low,"
                                        "ci_high,seeds,failed")
    bad = _write(tmp_path, 'network = "net.toml"\nmetric = "epr"\nseeds = -1\n', "bad.toml")
    assert main(["sweep", str(bad)]) == 2
    assert "bad.toml:3: seeds" in capsys.readouterr().err


def test_killed_dask_worker_is_rerun_by_the_scheduler(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    p, clean = _slow_sweep_uninterrupted(tmp_path)
    marker = tmp_path / "killed"
    monkeypatch.setenv("QSTACK_TEST_KILL_MARKER", str(marker))   # the workers inherit it
    exp = load_experiment(p)
    ex = executors.DaskExecutor("local", 2)
    try:
        rep = run_sweep(exp, ex)
    finally:
        ex.close()
    assert marker.exists() and rep.failed == 0 and rep.ran == 16
    assert _rows(exp) == clean


def test_the_readme_experiment_is_the_example_file():
    import tomllib

    readme = (ROOT / "README.md").read_text()
    start = readme.index('network = "three_nodes.toml"        # examples/sweep_chain.toml')
    block = readme[start:readme.index("```", start)]
    exp = load_experiment(ROOT / "examples" / "sweep_chain.toml")
    shown = tomllib.loads(block)
    assert shown["metric"] == exp.metric and shown["options"]["pairs"] == exp.options["pairs"]
    assert list(shown["sweep"]) == exp.params and len(exp.points) == 10
