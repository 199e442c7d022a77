"""Instructions per unit of work, by callgrind: run a workload at two sizes and
divide the difference in instruction counts by the difference in work.

Wall time on a shared or loaded machine says little; instruction counts do
not depend on the load. The workload runs with one OpenBLAS thread: numpy's
thread pool otherwise spins beside it and its instructions are counted
(a few % apart between runs of the same build); with one, the count at a
size repeats to a few thousand instructions in billions. Needs valgrind. Compare two checkouts, e.g. before and
after a change:

    python3 benchmarks/icount.py . chain30 20 60
    python3 benchmarks/icount.py ../old-checkout chain30 20 60

usage: icount.py REPO WORKLOAD N1 N2 [nogc]
WORKLOAD: link (pairs on one link) | chain10 | chain30 (end-to-end pairs on a
chain of 10 / 30 nodes) | transport (teleported qubits, full stack) | ideal
(teleported qubits over the ideal network layer) | seq2bd | seq9 (end-to-end
pairs on bench_sequence's SeQUeNCe-matched two nodes, Bell-diagonal, and
chain of 9).

``nogc``: the cyclic garbage collector off during the workload and one full
collection after it (which frees, and so counts, whatever garbage in
reference cycles the workload left). With the collector on, whether a full
collection (tens of millions of instructions over the whole heap) falls
inside the larger run or not moves the figure per unit by up to ~10 % on
chain10; this way the count is the work itself, deterministic (the
collector's own share during a run is measured apart, e.g. with
``gc.callbacks``)."""
import os, re, subprocess, sys, tempfile
repo, work, n1, n2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
no_gc = sys.argv[5:6] == ["nogc"]
code = {
 "link": "from benchmarks.bench_link import pairs_per_second as f; f('bd', pairs=N)",
 "chain10": "from benchmarks.bench_network import chain_run as f; f(10, pairs=N)",
 "chain30": "from benchmarks.bench_network import chain_run as f; f(30, pairs=N)",
 "transport": "from benchmarks.bench_transport import teleport_run as f; f(N, 'bd')",
 "ideal": "from benchmarks.bench_transport import teleport_run as f; f(N, 'bd', 'ideal')",
 # the SeQUeNCe-matched workloads of bench_sequence (10 processes per link, window auto)
 "seq2bd": "from benchmarks.bench_sequence import WORKLOADS as W, Hardware as H, qstack_run as f; "
           "f(W[0], H(), N, 10, 'auto')",
 "seq9": "from benchmarks.bench_sequence import WORKLOADS as W, Hardware as H, qstack_run as f; "
         "f(W[4], H(), N, 10, 'auto')",
}[work]
def count(n):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        os.path.join(repo, ".venv/bin/python"), "-c",
                        ("import gc; gc.disable(); " if no_gc else "") + code.replace("N", str(n))
                        + ("; gc.collect()" if no_gc else "")],
                       cwd=repo, check=True, capture_output=True,
                       # one BLAS thread: numpy's OpenBLAS pool spins, and its
                       # instructions (blas_thread_server) landed in the count,
                       # a few % apart between runs of the same build
                       env=dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=repo,
                                OPENBLAS_NUM_THREADS="1"))
        txt = open(out).read()
        m = re.search(r"^summary:\s*(\d+)", txt, re.M) or re.search(r"^totals:\s*(\d+)", txt, re.M)
        return int(m.group(1))
a, b = count(n1), count(n2)
print(f"{work}{' (nogc)' if no_gc else ''}: {(b - a) / (n2 - n1):,.0f} instructions per unit ({a:,} at {n1}, {b:,} at {n2})")
