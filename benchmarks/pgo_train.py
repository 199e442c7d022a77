"""The training run of a profile-guided build (``make pgo``; setup.py's
``QSTACK_PGO``): the per-pair paths the benchmarks measure, run once on the
kernels built with ``QSTACK_PGO=generate``, which write their branch and call
counts when the process ends. ``QSTACK_PGO=use`` then rebuilds the kernels
with those counts.

What it runs, about 5 s on a 2 GHz core with the counting kernels (a
profile needs the paths' proportions, not long runs):

* repeater chains, Bell-diagonal: 30 nodes (300 pairs) and 200 nodes (40),
  the work per link pair of ``bench_network``'s 1,000-node chain;
* a 10-node chain on density matrices (200 pairs);
* the five SeQUeNCe-matched workloads of ``bench_sequence`` (300 pairs each,
  10 generation processes per link, window auto);
* teleportation over the full stack (``bench_transport``, 200 qubits).

Code it does not reach (the emulation's wire, the applications) is optimised
as without a profile (``-fprofile-partial-training``), so a path missing
here is not made slower, only not made faster.

usage: python -m benchmarks.pgo_train
"""
from __future__ import annotations

import importlib
import sys
import time

#: the modules whose compiled build the training must run (a source module
#: here would train nothing: the counts come from the extensions)
TRAINED = ("qstack.core._runtime", "qstack.core.protocol", "qstack.link.egp",
           "qstack.network.circuit", "qstack.physical.engine", "qstack.sim._driver",
           "qstack.sim._kernel", "qstack.physical._heralding")


def _is_extension(name: str) -> bool:
    try:
        return importlib.import_module(name).__file__.endswith(".so")
    except ImportError:     # (a kernel not built, or refused with its source modules)
        return False


def check_compiled() -> None:
    """SystemExit unless every module of :data:`TRAINED` is an extension."""
    source = [name for name in TRAINED if not _is_extension(name)]
    if source:
        sys.exit(f"pgo_train: {', '.join(source)} run from source: build the kernels "
                 "(QSTACK_PGO=generate python setup.py build_ext --inplace) first")


def train() -> dict:
    """Run the workloads of the module doc; what each delivered, as a dict."""
    from benchmarks.bench_network import chain_run
    from benchmarks.bench_sequence import WORKLOADS, Hardware, qstack_run
    from benchmarks.bench_transport import teleport_run

    done = {}
    for n, pairs, formalism in ((30, 300, "bd"), (200, 40, "bd"), (10, 200, "dm")):
        done[f"chain{n}_{formalism}"] = chain_run(n, pairs=pairs, formalism=formalism)["pairs"]
    for w in WORKLOADS:
        done[f"sequence_{w.key}"] = qstack_run(w, Hardware(), 300, 10, "auto")["pairs"]
    done["teleport_bd"] = teleport_run(200, "bd")["qubits"]
    return done


def main() -> None:
    check_compiled()
    t0 = time.perf_counter()
    done = train()
    print(f"pgo_train: {len(done)} workloads in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in done.items()))


if __name__ == "__main__":
    main()
