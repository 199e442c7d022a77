"""The profile-guided build (``make pgo``): its switch in setup.py refuses
what it does not know, its training refuses to train source modules, and the
benchmarks record which build they measured. (The build itself takes minutes
and is not run here; ``make pgo`` runs it, and the rest of the suite runs on
whatever build is in place, profile-guided or not.)"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.run import kernels_build

REPO = Path(__file__).resolve().parent.parent


def _run(args, **env):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_setup_refuses_an_unknown_pgo_mode():
    # (before it compiles anything: the check runs when setup.py is read)
    r = _run(["setup.py", "--name"], QSTACK_PGO="fast")
    assert r.returncode != 0
    assert "QSTACK_PGO='fast'" in r.stderr and "'generate', 'use'" in r.stderr


def test_setup_reads_without_pgo():
    r = _run(["setup.py", "--name"], QSTACK_PGO="")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "qstack"


def test_training_refuses_source_modules():
    # on the twins there are no counting kernels to train
    r = _run(["-c", "from benchmarks.pgo_train import check_compiled; check_compiled()"],
             QSTACK_PURE_PYTHON="1")
    assert r.returncode != 0
    assert "run from source" in r.stderr and "QSTACK_PGO=generate" in r.stderr


def _touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))


def test_kernels_build_names_the_build_in_place(tmp_path):
    now = time.time()
    assert kernels_build(tmp_path) == "none"
    _touch(tmp_path / "qstack" / "core" / "_slots.so", now - 100)
    _touch(tmp_path / "qstack" / "sim" / "_kernel.so", now - 90)
    assert kernels_build(tmp_path) == "plain"
    marker = tmp_path / "build" / "pgo" / "profile-guided"
    _touch(marker, now - 95)        # older than one extension: a plain build came after
    assert kernels_build(tmp_path) == "plain"
    _touch(marker, now - 80)        # written after the last extension
    assert kernels_build(tmp_path) == "profile-guided"
    _touch(tmp_path / "qstack" / "core" / "_slots.so", now - 10)   # a plain rebuild since
    assert kernels_build(tmp_path) == "plain"
