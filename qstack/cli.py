"""The ``qstack`` command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qstack._version import __version__
from qstack.appfile import load_apps, one_line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qstack",
        description="qstack: a layered quantum network stack (simulate and emulate "
                    "quantum-internet protocols from photons to applications).",
    )
    parser.add_argument("--version", action="version", version=f"qstack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the demo network and print its metrics")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--qubits", type=int, default=None,
                      help="qubits to teleport (default: the demo's own)")

    sim = sub.add_parser(
        "sim", help="simulate applications on a network described in TOML",
        description="Run the applications of APP.py (its module-level APPS = {node: async "
                    "def fn(ctx)}) on the network of NETWORK.toml in simulated time, and "
                    "print their results and the run's metrics.",
        epilog="exit status: 0 every application returned; 1 an application failed (raised "
               "or timed out; each is printed as FAILED); 2 bad input: a bad option, a "
               "network file that does not load, or an application file that cannot be "
               "read, does not import (syntax error, exception at import) or has no valid "
               "APPS; the reason is printed on one line.")
    sim.add_argument("network", help="network description (TOML), see qstack.config")
    sim.add_argument("app", help="Python file defining APPS = {node: async def fn(ctx), ...}")
    sim.add_argument("--seed", type=_seed, default=1, help="random seed, an integer >= 0 "
                     "(default 1)")
    sim.add_argument("--formalism", choices=("bd", "dm"), default=None,
                     help="two-qubit state formalism (default: the file's, else bd)")
    sim.add_argument("--until", type=_seconds, default=None, metavar="SECONDS",
                     help="stop after this much simulated time (seconds; default one "
                          "simulated hour: every run ends)")
    sim.add_argument("--network-layer", choices=("qnp", "ideal"), default="qnp",
                     help="qnp: link + network layers; ideal: Werner pairs on request")
    sim.add_argument("--purify", action="store_true",
                     help="purify links (DEJMPS) where a request needs more fidelity "
                          "than a link gives raw (qnp layer)")
    sim.add_argument("--qkd", action="store_true",
                     help="also run decoy-state BB84 with the neighbours on every node "
                          "(app.qkd; applications call qstack.app.qkd.api.bb84)")
    sim.add_argument("--json", metavar="FILE", default=None,
                     help="also write results and metrics to FILE as JSON")
    net = sub.add_parser(
        "net", help="start, inspect, fault and stop an emulated network on localhost",
        description="An emulated network: one process per node plus a physics server, on "
                    "127.0.0.1, in real time (qstack.emu).",
        epilog="exit status: 0 done; 1 a process did not start or a node does not answer; "
               "2 bad input (a network file that does not load, no network up).")
    net.add_argument("--run", default=None, metavar="FILE",
                     help="the run file (default $QSTACK_RUN, else "
                          "$XDG_RUNTIME_DIR/qstack/run.json or ~/.qstack/run.json)")
    net_sub = net.add_subparsers(dest="net_command", metavar="ACTION")
    up = net_sub.add_parser("up", help="start every node of NETWORK.toml; returns when all "
                                       "are ready")
    up.add_argument("network", help="network description (TOML)")
    up.add_argument("--seed", type=_seed, default=1, help="random seed (default 1)")
    up.add_argument("--time-scale", type=_scale, default=1.0, metavar="X",
                    help="real seconds per model second (default 1; 10 runs ten times "
                         "slower than the physics, for a long fibre on a fast machine)")
    up.add_argument("--formalism", choices=("bd", "dm"), default=None)
    up.add_argument("--absent", default="", metavar="NODE[,NODE...]",
                    help="nodes not to start: their ports are reserved in the run file for "
                         "another program to play them (qstack conformance)")
    up.add_argument("--foreground", action="store_true",
                    help="stay in the foreground; Ctrl-C stops the whole network")
    net_sub.add_parser("status", help="each node: up, peers, qubits in memory, pairs made")
    net_sub.add_parser("down", help="stop every process of the network")
    fault = net_sub.add_parser("fault", help="apply a fault (specs/faults.md) to the running "
                                             "network")
    fault.add_argument("kind", choices=("crash", "restart", "link-down", "link-up", "reset"))
    fault.add_argument("node", help="the node (crash, restart) or one end (link, reset)")
    fault.add_argument("peer", nargs="?", default="", help="the other end (link, reset)")

    run = sub.add_parser(
        "run", help="run an application against a node of the emulated network",
        description="Run APPS[NODE] of APP.py (the same file `qstack sim` takes) as an "
                    "application of NODE of the network `qstack net up` started, and print "
                    "its result.",
        epilog="exit status: 0 the application returned; 1 it raised; 2 bad input (no such "
               "node or file, no network up).")
    run.add_argument("node")
    run.add_argument("app", help="Python file defining APPS = {node: async def fn(ctx), ...}")
    run.add_argument("--run", default=None, metavar="FILE", help="the run file")
    run.add_argument("--function", default=None,
                     help="which of APPS[NODE] to run when it lists several (by name)")
    conf = sub.add_parser(
        "conformance", help="test a running node daemon against specs/ (black box)",
        description="Test the node daemon at --target against the clauses of specs/ through "
                    "its sockets: the session (versions, secret, keepalive), framing faults, "
                    "and the link, network and transport messages a peer can send. Cases that "
                    "need to play a node of the network use the nodes the run file lists as "
                    "absent (`qstack net up --absent NODE,...`). See specs/conformance.md.",
        epilog="exit status: 0 every case passed (or was skipped); 1 a case failed; 2 bad "
               "input (no target, no secret, a bad run file).")
    conf.add_argument("--target", default=None, metavar="HOST:PORT",
                      help="the daemon to test (default: with --node, its port in the run file)")
    conf.add_argument("--secret", default=None, metavar="HEX",
                      help="the network's secret (default: the run file's)")
    conf.add_argument("--run", default=None, metavar="FILE",
                      help="the run file: the secret and the absent nodes to play")
    conf.add_argument("--node", default=None, help="the target by its node name (run file)")
    conf.add_argument("--strict", action="store_true", help="also run the SHOULD cases")
    conf.add_argument("--junit", default=None, metavar="FILE",
                      help="also write a JUnit XML report to FILE")
    conf.add_argument("--list", action="store_true", help="list the cases and exit")
    conf.add_argument("-k", dest="keyword", default=None, metavar="EXPR",
                      help="only the cases whose id or title contains EXPR")
    conf.add_argument("--timeout", type=_seconds, default=2.0, metavar="SECONDS",
                      help="how long a case waits for each answer (default 2)")
    _qkd_parser(sub)
    _experiment_parsers(sub)
    return parser


def _experiment_parsers(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep", help="run a parameter sweep of an experiment file: table, plots, resumable",
        description="Run every (point, seed) task of EXPERIMENT.toml (qstack.experiments."
                    "experiment) on a local process pool or on dask.distributed, storing each "
                    "finished task at once (a rerun does only what is missing), then write the "
                    "table (CSV and JSON: mean, standard error, confidence interval per point "
                    "and metric) and a plot per metric and swept parameter.",
        epilog="exit status: 0 done (tasks that raised are in the table's failures); 2 bad "
               "input (an experiment file that does not load, no dask); 130 interrupted "
               "(what finished is kept: rerun to go on).")
    sweep.add_argument("experiment", help="experiment description (TOML)")
    sweep.add_argument("-j", "--jobs", type=_jobs, default=None, metavar="N",
                       help="worker processes (default: the CPUs; 1: in this process)")
    sweep.add_argument("--dask", default=None, metavar="ADDRESS",
                       help="run on dask.distributed: a scheduler's address, or 'local' for a "
                            "LocalCluster of -j workers (pip install 'qstack[dask]')")
    sweep.add_argument("--out", default=None, metavar="DIR",
                       help="output directory (default: the file's [output] dir)")
    cert = sub.add_parser(
        "certify", help="the stage of the quantum internet each pair of end nodes reaches",
        description="Place a network at the stages of Wehner, Elkouss and Hanson, Science 362, "
                    "eaam9288 (2018): trusted repeater, prepare and measure, entanglement "
                    "distribution, quantum memory; computed from the network's parameters "
                    "(qstack.experiments.certify). The two later stages need fault tolerance, "
                    "which qstack does not model.",
        epilog="exit status: 0 done; 2 bad input.")
    cert.add_argument("network", help="network description (TOML)")
    cert.add_argument("--rounds", type=_jobs, default=1, metavar="N",
                      help="communication rounds (round trips between the end nodes) a "
                           "stored pair must outlast for the quantum-memory stage (default 1)")
    cert.add_argument("--ends", default=None, metavar="NODE,NODE,...",
                      help="the end nodes (default: every node with one link, or all nodes "
                           "if none has)")
    cert.add_argument("--json", default=None, metavar="FILE", help="also write the result")


def run_sweep_cmd(args: argparse.Namespace) -> int:
    """``qstack sweep``: 0 done, 2 bad input, 130 interrupted."""
    import os

    from qstack.core.errors import ConfigError
    from qstack.experiments import executors
    from qstack.experiments.experiment import load_experiment
    from qstack.experiments.sweep import run_sweep

    try:
        exp = load_experiment(args.experiment)
        if args.out:
            exp.out_dir = Path(args.out)
        jobs = args.jobs or os.cpu_count() or 1
        if args.dask:
            ex = executors.DaskExecutor(args.dask, jobs)
        elif jobs == 1:
            ex = executors.InlineExecutor()
        else:
            ex = executors.PoolExecutor(jobs)
    except ConfigError as exc:
        print(f"qstack sweep: {one_line(exc.detail)}", file=sys.stderr)
        return 2
    print(f"{args.experiment}: {len(exp.points)} points x {len(exp.seeds)} seeds, metric "
          f"{exp.metric}, on {ex.name}; results in {exp.out_dir}")
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    try:
        with Progress(TextColumn("points {task.fields[points]}"), BarColumn(),
                      TextColumn("tasks {task.completed}/{task.total}"),
                      TextColumn("failed {task.fields[failed]}"), TimeRemainingColumn()) as bar:
            task = bar.add_task("sweep", total=len(exp.points) * len(exp.seeds), points="",
                                failed=0)

            def show(p: dict) -> None:
                bar.update(task, completed=p["done"], failed=p["failed"],
                           points=f"{p['points_done']}/{p['points']}")

            report = run_sweep(exp, ex, progress=show)
    except KeyboardInterrupt:
        print("qstack sweep: interrupted; finished tasks are stored: rerun to go on",
              file=sys.stderr)
        return 130
    except ConfigError as exc:
        print(f"qstack sweep: {one_line(exc.detail)}", file=sys.stderr)
        return 2
    finally:
        ex.close()
    print(f"tasks: {report.tasks} ({report.reused} from the store, {report.ran} run now, "
          f"{report.failed} failed, {report.lost} lost with their worker and rerun); "
          f"{report.wall_s:.1f} s")
    if report.bad_lines:
        print(f"store: {report.bad_lines} damaged record(s) skipped and redone")
    for f in report.files:
        print(f"wrote {f}")
    return 0


def run_certify(args: argparse.Namespace) -> int:
    """``qstack certify``: 0 done, 2 bad input."""
    import json

    from qstack.core.errors import QStackError
    from qstack.experiments import certify

    try:
        spec = certify.load(args.network)
        ends = [e for e in args.ends.split(",") if e] if args.ends else None
        report = certify.certify(spec, ends=ends, rounds=args.rounds)
    except QStackError as exc:
        print(f"qstack certify: {one_line(exc.detail)}", file=sys.stderr)
        return 2
    print(certify.format_report(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(certify.as_dict(report), fh, indent=1, default=str)
    return 0


def _jobs(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_jobs.__name__ = "integer >= 1"


def _qkd_parser(sub: Any) -> None:
    qkd = sub.add_parser(
        "qkd", help="decoy-state BB84 over a link of a network file: one run, or a sweep",
        description="Prepare-and-measure QKD between neighbours in simulated time: the "
                    "link's pulse physics (its qkd_* and eavesdropper keys) and the whole "
                    "post-processing over messages between the two nodes (specs/qkd.md).",
        epilog="exit status: 0 done; 1 the block aborted (the reason is printed); 2 bad "
               "input (a bad option, a network file that does not load, nodes that are "
               "not neighbours, a link whose intensity classes do not fit --protocol, a bad "
               "--param).")
    qsub = qkd.add_subparsers(dest="qkd_command", metavar="ACTION")
    run = qsub.add_parser("run", help="one block between two neighbours: key, QBER, bounds, "
                                      "leaks, time; writes the keys")
    sweep = qsub.add_parser("sweep", help="key rate against a link key (e.g. length_km): "
                                          "CSV table and PNG plot")
    for p, pulses, finite in ((run, "1e8", True), (sweep, "1e7", False)):
        p.add_argument("network", help="network description (TOML)")
        p.add_argument("--protocol", choices=("decoy-bb84", "decoy-bb84-1"), default="decoy-bb84",
                       help="decoy-bb84: signal, weak decoy and vacuum (Lim et al. 2014; the "
                            "link's three intensity classes); decoy-bb84-1: signal and one "
                            "decoy (Rusca et al. 2018; two classes, 0.5/0.15 photons with "
                            "probabilities 0.7/0.3 where the link gives none) (default "
                            "decoy-bb84)")
        p.add_argument("--pulses", default=pulses, metavar="N",
                       help=f"pulses per block, e.g. 1e9 (default {pulses})")
        p.add_argument("--between", nargs=2, metavar=("ALICE", "BOB"), default=None,
                       help="the two neighbours, Alice first (default: the file's first link)")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--finite", dest="finite", action="store_true", default=finite,
                       help="Lim et al.'s finite-key bounds" + (" (default)" if finite else ""))
        g.add_argument("--asymptotic", dest="finite", action="store_false",
                       help="their asymptotic limit" + ("" if finite else " (default)"))
        p.add_argument("--seed", type=_seed, default=1, help="random seed (default 1)")
    run.add_argument("--out", default=None, metavar="KEYFILE",
                     help="write each end's key to its own file, KEYFILE with the node's "
                          "name before the suffix (key.bin -> key.alice.bin, key.bob.bin), "
                          "packed bits, most significant first")
    sweep.add_argument("--param", required=True, metavar="KEY=START:STOP:STEP",
                       help="the link key to sweep and its values (START:STOP:STEP or "
                            "V1,V2,...), e.g. length_km=0:200:10")
    sweep.add_argument("--block-sizes", default="", metavar="N1,N2",
                       help="also a closed-form finite-key curve per block size, e.g. 1e8,1e10")
    sweep.add_argument("--csv", default=None, metavar="OUT.csv", help="write the table here")
    sweep.add_argument("--plot", default=None, metavar="OUT.png", help="write the plot here")


def run_qkd(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``qstack qkd run|sweep``: 0 done, 1 the block aborted, 2 bad input."""
    from qstack.core.errors import ConfigError
    from qstack import qkdtool

    if args.qkd_command is None:
        parser.parse_args(["qkd", "--help"])
        return 2
    try:
        pulses = qkdtool.parse_count(args.pulses)
        between = tuple(args.between) if args.between else None
        if args.qkd_command == "run":
            spec, a, b = qkdtool.load_for(args.network, between, args.protocol)
        else:
            key, values = qkdtool.parse_param(args.param)
            sizes = [qkdtool.parse_count(v, "--block-sizes") for v in args.block_sizes.split(",")
                     if v.strip()]
            if args.csv is None and args.plot is None:
                raise ConfigError("qkd sweep: give --csv OUT.csv and/or --plot OUT.png")
            if args.plot:
                qkdtool.pyplot()             # matplotlib is the [plot] extra
    except ConfigError as exc:
        print(f"qstack qkd: {one_line(exc)}", file=sys.stderr)
        return 2
    if args.qkd_command == "run":
        ra, rb, wall = qkdtool.run_block(spec, a, b, pulses, args.finite, args.seed,
                                         qkdtool.PROTOCOLS[args.protocol])
        print(_qkd_report(ra, rb, a, b, args.finite, wall, args.protocol))
        if ra.ok and args.out:
            out = Path(args.out)
            names = []
            for node, res in ((a, ra), (b, rb)):
                path = out.with_name(f"{out.stem}.{node}{out.suffix}")
                path.write_bytes(np.packbits(res.key).tobytes())
                names.append(str(path))
            print(f"keys written: {', '.join(names)} ({ra.key_length} bits each, packed, "
                  "most significant bit first)")
        return 0 if ra.ok and rb.ok else 1
    try:
        rows = _sweep_with_progress(args, key, values, pulses, sizes, between)
    except ConfigError as exc:
        print(f"qstack qkd: {one_line(exc)}", file=sys.stderr)
        return 2
    if args.csv:
        qkdtool.write_csv(rows, key, args.csv, sizes)
        print(f"table: {args.csv} ({len(rows)} rows)")
    if args.plot:
        qkdtool.plot(rows, key, args.plot, pulses, sizes, args.finite)
        print(f"plot: {args.plot}")
    return 0


def _sweep_with_progress(args, key, values, pulses, sizes, between):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from qstack import qkdtool

    with Progress(TextColumn(f"{key}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task("sweep", total=len(values))
        return qkdtool.sweep(args.network, key, values, pulses, sizes, between, args.finite,
                             args.seed, progress=lambda i, n: bar.update(task, completed=i),
                             protocol=args.protocol)


def _qkd_report(ra: Any, rb: Any, a: str, b: str, finite: bool, wall: float,
                protocol: str = "decoy-bb84") -> str:
    est = ra.estimate or rb.estimate      # (one-decoy: Bob may abort before Alice has it)
    kind = (f"finite key (eps_sec {est.eps_sec:g}, eps_cor {est.eps_cor:g})" if finite and est
            else "finite key" if finite else "asymptotic")
    lines = [f"{protocol} {a} -> {b}: {ra.n_pulses:.3g} pulses, {kind}"]
    if ra.ok and rb.ok:
        same = "identical" if np.array_equal(ra.key, rb.key) else "DIFFERENT"
        lines.append(f"key: {ra.key_length} bits at both ends ({same}); {ra.key_per_pulse:.4g} "
                     f"bits/pulse, {ra.key_rate_bps:.4g} bits/s")
    else:
        lines.append(f"aborted: {ra.reason or rb.reason}")
    names = ("signal", "decoy", "vacuum")
    q = ", ".join(f"{names[i] if i < 3 else i} {x * 100:.2f} %" if x == x else
                  f"{names[i] if i < 3 else i} -" for i, x in enumerate(ra.qber_test_per_class))
    if q:
        lines.append(f"QBER (test basis) per class: {q}; key basis after Cascade "
                     f"{rb.qber_key * 100:.2f} %" if rb.qber_key == rb.qber_key else
                     f"QBER (test basis) per class: {q}")
    if est is not None and est.method == "one-decoy":
        lines.append(f"bounds (Rusca et al. 2018): s0 >= {est.s_key0:.4g} (<= {est.s_key0_upper:.4g}), "
                     f"s1 >= {est.s_key1:.4g} (key basis, errors per class {list(est.m_key)}), "
                     f"s1 >= {est.s_test1:.4g}, v1 <= {est.v_test1:.4g} (test basis), "
                     f"phase error <= {est.phase_error:.4f}")
    elif est is not None:
        lines.append(f"bounds: s0 >= {est.s_key0:.4g}, s1 >= {est.s_key1:.4g} (key basis), "
                     f"s1 >= {est.s_test1:.4g}, v1 <= {est.v_test1:.4g} (test basis), "
                     f"phase error <= {est.phase_error:.4f}")
    lk = ra.leaks
    lines.append(f"leak: error correction {lk.error_correction} bits"
                 + (f" (f = {rb.cascade_efficiency:.3f}, {rb.cascade_rounds} rounds)"
                    if rb.cascade_efficiency == rb.cascade_efficiency else "")
                 + f", verification {lk.verification}, finite-size {lk.finite_size:.1f}, "
                   f"test bits disclosed {lk.test_bits}")
    lines.append(f"time: pulses {(ra.pulses_end_ns - ra.start_ns) * 1e-9:.4g} s, "
                 f"post-processing {(max(ra.end_ns, rb.end_ns) - ra.pulses_end_ns) * 1e-9:.4g} s "
                 f"simulated ({ra.messages + rb.messages} messages); wall {wall:.2f} s")
    return "\n".join(lines)


def run_conformance(args: argparse.Namespace) -> int:
    """``qstack conformance``: 0 all passed, 1 a case failed, 2 bad input."""
    import trio

    from qstack.conformance import runner
    from qstack.emu.runfile import RunFile, default_path

    if args.list:        # every case, with its level (--strict runs the SHOULDs too)
        for c in runner.select(True, args.keyword):
            print(f"{c.id:<18} {'SHOULD' if c.should else 'MUST  '} {c.title}")
        return 0
    cases = runner.select(args.strict, args.keyword)
    run = None
    if args.run is not None or args.secret is None or args.target is None:
        try:
            run = RunFile.load(args.run)
        except (OSError, ValueError) as exc:
            print(f"qstack conformance: no run file {args.run or default_path()} "
                  f"({getattr(exc, 'strerror', None) or exc}); give --target and --secret",
                  file=sys.stderr)
            return 2
    if args.target is not None:
        host, _, port_text = args.target.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            print(f"qstack conformance: --target {args.target!r}: expected HOST:PORT",
                  file=sys.stderr)
            return 2
        port = int(port_text)
    else:
        present = [n for n in run.nodes if n not in run.absent]
        name = args.node or (present[0] if len(present) == 1 else None)
        if name not in run.nodes:
            print("qstack conformance: give --target HOST:PORT (or --node NAME of "
                  f"{', '.join(sorted(present))})", file=sys.stderr)
            return 2
        host, port = run.host, run.nodes[name]
    try:
        secret = bytes.fromhex(args.secret) if args.secret is not None else run.secret_bytes
    except ValueError:
        print("qstack conformance: --secret: expected hexadecimal", file=sys.stderr)
        return 2
    if not secret:
        print("qstack conformance: the secret is empty", file=sys.stderr)
        return 2
    print(f"qstack conformance: {len(cases)} cases against {host}:{port}")

    def show(r: runner.Result) -> None:
        print(runner.report_line(r), flush=True)

    results = trio.run(lambda: runner.run(host, port, secret, cases, run, args.timeout,
                                          on_result=show))
    runner.report(results, sys.stdout)
    if args.junit:
        runner.write_junit(results, args.junit, f"{host}:{port}")
    return 1 if any(r.outcome == "fail" for r in results) else 0


def _scale(text: str) -> float:
    value = float(text)
    if not (1e-6 <= value <= 1e6):
        raise ValueError(text)
    return value


_scale.__name__ = "time scale in [1e-6, 1e6]"


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    from qstack.config import MAX_TIME_NS

    value = float(text)
    if not (value > 0 and value * 1e9 <= MAX_TIME_NS):     # NaN fails too
        raise ValueError(text)
    return value


_seed.__name__ = "integer >= 0"               # argparse names the type in its message
_seconds.__name__ = "number of seconds > 0"


def run_sim(args: argparse.Namespace) -> int:
    """``qstack sim``: 0 when every application returned, 1 when one failed,
    2 on bad input (the network or application file), with a one-line reason."""
    import json

    import qstack.api as api
    from qstack.core.errors import QStackError

    try:
        spec = api.load_network(args.network)
        apps = load_apps(args.app, spec.nodes)
        result = api.simulate(spec, apps, seed=args.seed, formalism=args.formalism,
                              until_s=api.DEFAULT_UNTIL_S if args.until is None else args.until,
                              network_layer=args.network_layer,
                              purify=args.purify, qkd=args.qkd)
    except QStackError as exc:
        print(f"qstack sim: error {int(exc.code)} {exc.code.name}: {one_line(exc.detail)}",
              file=sys.stderr)
        return 2
    print(f"network {args.network}: {len(spec.nodes)} nodes, {len(spec.links)} links, "
          f"formalism {args.formalism or spec.formalism}, seed {args.seed}\n")
    for name, value in sorted(result.results.items()):
        text = repr(value)
        print(f"  {name}: {text if len(text) <= 200 else text[:197] + '...'}")
    for name, exc in sorted(result.errors.items()):
        print(f"  {name}: FAILED {type(exc).__name__}: {exc}")
    print()
    print(result.table())
    if args.json:
        payload = {"results": {k: repr(v) for k, v in result.results.items()},
                   "errors": {k: f"{type(e).__name__}: {e}" for k, e in result.errors.items()},
                   "metrics": result.metrics}
        try:
            with open(args.json, "w") as fh:
                json.dump(payload, fh, indent=2, default=str)
        except OSError as exc:
            print(f"qstack sim: cannot write {args.json} ({exc.strerror or exc})",
                  file=sys.stderr)
            return 2
    return 0 if result.ok else 1


def run_net(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``qstack net up|status|down|fault``."""
    from qstack.core.errors import QStackError
    from qstack.emu import launcher
    from qstack.emu.runfile import RunFile, default_path

    action = args.net_command
    if action is None:
        parser.parse_args(["net", "--help"])
        return 2
    if action == "up":
        try:
            run = launcher.net_up(args.network, args.run, seed=args.seed,
                                  time_scale=args.time_scale, formalism=args.formalism,
                                  absent=[a for a in args.absent.split(",") if a])
        except launcher.LaunchError as exc:
            print(f"qstack net up: {exc.detail}", file=sys.stderr)
            return 1
        except QStackError as exc:
            print(f"qstack net up: error {int(exc.code)} {exc.code.name}: "
                  f"{one_line(exc.detail)}", file=sys.stderr)
            return 2
        up = len(run.nodes) - len(run.absent)
        print(f"network {args.network}: {up} node{'s' if up != 1 else ''} up on "
              f"{run.host} (run file {run.path}; logs in {run.logs})")
        for name, port in sorted(run.nodes.items()):
            what = "absent" if name in run.absent else f"pid {run.pids.get(name)}"
            print(f"  {name:<16} port {port:<6} {what}")
        if not args.foreground:
            return 0
        import time

        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            stopped = launcher.net_down(run)
            print(f"stopped {len(stopped)} processes")
            return 0
    try:
        run = RunFile.load(args.run)
    except (OSError, ValueError) as exc:
        print(f"qstack net {action}: no network up (run file {args.run or default_path()}: "
              f"{getattr(exc, 'strerror', None) or exc})", file=sys.stderr)
        return 2
    if action == "down":
        stopped = launcher.net_down(run)
        print(f"stopped {len(stopped)} processes ({', '.join(stopped) or 'none was running'})")
        return 0
    if action == "fault":
        try:
            launcher.net_fault(run, args.kind, args.node, args.peer)
        except (QStackError, OSError, KeyError) as exc:
            print(f"qstack net fault: {exc}", file=sys.stderr)
            return 1
        return 0
    status = launcher.net_status(run)
    bad = 0
    print(f"{'node':<16} {'state':<6} {'qubits':>6} {'pairs':>7} {'apps':>4}  peers up")
    for name in sorted(status):
        st = status[name]
        if isinstance(st, BaseException) or st is None:
            bad += 1
            print(f"{name:<16} {'DOWN':<6} {'':>6} {'':>7} {'':>4}  ({st})")
        else:
            print(f"{name:<16} {'up':<6} {st.qubits_in_memory:>6} {st.pairs_made:>7} "
                  f"{st.apps:>4}  {', '.join(st.peers_up) or '-'}"
                  + (f"  (links down: {', '.join(f'{a}-{b}' for a, b in st.links_down)})"
                     if st.links_down else ""))
    late = [st.late_ns_max for st in status.values() if not isinstance(st, BaseException) and st]
    try:
        census = launcher.net_census(run)
        print(f"physics: {census['engine']} qubits alive, {census['held']} held in memories"
              + ("" if census["engine"] == census["held"] else "  (MISMATCH)")
              + (f"; timers at most {max(late) / 1e6:.3f} ms late (model time)" if late else ""))
    except (QStackError, OSError, trio_errors()) as exc:
        bad += 1
        print(f"physics: DOWN ({exc})")
    return 1 if bad else 0


def trio_errors() -> type:
    import trio

    return trio.TooSlowError


def run_app_file(args: argparse.Namespace) -> int:
    """``qstack run NODE APP.py``: 0 returned, 1 raised, 2 bad input."""
    import trio

    from qstack.core.errors import QStackError
    from qstack.emu.client import run_app
    from qstack.emu.runfile import RunFile, default_path

    try:
        run = RunFile.load(args.run)
    except (OSError, ValueError) as exc:
        print(f"qstack run: no network up (run file {args.run or default_path()}: "
              f"{getattr(exc, 'strerror', None) or exc})", file=sys.stderr)
        return 2
    try:
        apps = load_apps(args.app, run.nodes)
    except QStackError as exc:
        print(f"qstack run: error {int(exc.code)} {exc.code.name}: {one_line(exc.detail)}",
              file=sys.stderr)
        return 2
    fns = apps.get(args.node)
    if fns is None:
        print(f"qstack run: {args.app} has no APPS[{args.node!r}]", file=sys.stderr)
        return 2
    fns = list(fns) if isinstance(fns, (list, tuple)) else [fns]
    if args.function is not None:
        fns = [f for f in fns if f.__name__ == args.function]
    if len(fns) != 1:
        names = ", ".join(f.__name__ for f in (apps[args.node] if isinstance(
            apps[args.node], (list, tuple)) else [apps[args.node]]))
        print(f"qstack run: APPS[{args.node!r}] lists {names}: choose one with --function",
              file=sys.stderr)
        return 2
    try:
        result = trio.run(run_app, fns[0], args.node, run)
    except QStackError as exc:
        print(f"{args.node}: FAILED {type(exc).__name__}: {exc}")
        return 1
    except Exception as exc:      # the application's own exception
        print(f"{args.node}: FAILED {type(exc).__name__}: {one_line(exc)}")
        return 1
    text = repr(result)
    print(f"{args.node}: {text if len(text) <= 2000 else text[:1997] + '...'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from qstack.demo import main as demo_main
        extra = [] if args.qubits is None else ["--qubits", str(args.qubits)]
        return demo_main(["--seed", str(args.seed), *extra])
    if args.command == "sim":
        return run_sim(args)
    if args.command == "net":
        return run_net(args, parser)
    if args.command == "run":
        return run_app_file(args)
    if args.command == "conformance":
        return run_conformance(args)
    if args.command == "qkd":
        return run_qkd(args, parser)
    if args.command == "sweep":
        return run_sweep_cmd(args)
    if args.command == "certify":
        return run_certify(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
