"""Protocol modules compiled from their own, unchanged source (setup.py's
``COMPILED_PY``; docs/compiled-runtime.md, "Protocols compiled from their own
source").

What must hold: every listed module is built (``make`` builds with
``QSTACK_REQUIRE_CYTHON=1``) and imported compiled; ``QSTACK_PURE_PYTHON=1``
imports its ``.py`` instead, as does a ``.py`` edited after the build (one
warning; an ImportError under ``QSTACK_REQUIRE_CYTHON=1``); an exception in
compiled protocol code names the ``.py`` file and line. That the compiled
and the source modules give the same numbers (fidelities, events, messages,
quantum operations on chains and the transport bench) is checked by
tests/test_core_runtime_twins.py, whose runs with and without the switch now
differ in these modules too.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
import traceback
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from qstack._compiled import STALE_AFTER_S, SourceFirstFinder
from qstack.core.kernels import compiled_modules, pure_python

ROOT = Path(__file__).resolve().parents[1]


def _listed() -> list[str]:
    """setup.py's COMPILED_PY, as dotted module names (read, not run)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED_PY":
            return [".".join(Path(p).with_suffix("").parts) for p in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no COMPILED_PY")


BUILT = bool(compiled_modules()) or os.environ.get("QSTACK_REQUIRE_CYTHON") == "1"
needs_build = pytest.mark.skipif(not BUILT, reason="the compiled protocol modules are not built")

_IMPORT = """
import importlib, json
from qstack.core.kernels import compiled_modules
names = %r
print(json.dumps({"report": compiled_modules(),
                  "files": {n: importlib.import_module(n).__file__ for n in names}}))
"""


def _import_in_subprocess(pure: str) -> dict:
    env = dict(os.environ, QSTACK_PURE_PYTHON=pure, PYTHONPATH=str(ROOT))
    env.pop("QSTACK_REQUIRE_CYTHON", None)
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c",
                           _IMPORT % (_listed(),)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@needs_build
def test_every_listed_module_is_built_and_imported_compiled():
    out = _import_in_subprocess("0")
    listed = _listed()
    assert sorted(out["report"]) == sorted(listed)       # built: no more, no fewer
    assert all(out["report"].values())
    for name, file in out["files"].items():
        assert file.endswith(tuple(EXTENSION_SUFFIXES)), (name, file)


@needs_build
def test_the_pure_python_switch_imports_every_listed_module_from_its_source():
    out = _import_in_subprocess("1")
    assert sorted(out["report"]) == sorted(_listed())
    assert not any(out["report"].values())
    for name, file in out["files"].items():
        assert file == str(ROOT / Path(*name.split("."))) + ".py", (name, file)


def test_a_module_runs_compiled_only_while_its_build_is_newer_than_its_source(
        tmp_path, monkeypatch):
    """The finder on a made-up package directory: a ``.py`` with an (unloaded,
    dummy) extension beside it, their mtimes set by hand."""
    monkeypatch.delenv("QSTACK_PURE_PYTHON", raising=False)
    monkeypatch.delenv("QSTACK_REQUIRE_CYTHON", raising=False)
    source = tmp_path / "mod.py"
    source.write_text("X = 1\n")
    extension = tmp_path / f"mod{EXTENSION_SUFFIXES[0]}"
    extension.write_bytes(b"")
    (tmp_path / "plain.py").write_text("Y = 2\n")
    built = time.time() - 100

    def finder(source_after_build_s: float) -> SourceFirstFinder:
        os.utime(extension, (built, built))
        os.utime(source, (built + source_after_build_s,) * 2)
        return SourceFirstFinder()

    path = [str(tmp_path)]
    # not a qstack module, or a qstack module with no build: left to the normal finders
    assert finder(50).find_spec("other.mod", path) is None
    assert finder(50).find_spec("qstack.fake.plain", path) is None
    # the build is current (a wheel writes the .py just after the extension)
    assert finder(-50).find_spec("qstack.fake.mod", path) is None
    assert finder(STALE_AFTER_S / 2).find_spec("qstack.fake.mod", path) is None
    # the .py was edited after the build: the source runs, with one warning
    f = finder(50)
    with pytest.warns(RuntimeWarning, match="changed after its compiled module was built"):
        spec = f.find_spec("qstack.fake.mod", path)
    assert spec.origin == str(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f.find_spec("qstack.fake.mod", path).origin == str(source)   # warned once
    # ... which a build that must be compiled refuses
    monkeypatch.setenv("QSTACK_REQUIRE_CYTHON", "1")
    with pytest.raises(ImportError, match="make install"):
        finder(50).find_spec("qstack.fake.mod", path)
    # the switch: the source, with no warning, even where the build is current
    monkeypatch.setenv("QSTACK_PURE_PYTHON", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert finder(-50).find_spec("qstack.fake.mod", path).origin == str(source)


def test_a_module_runs_from_source_when_a_module_it_cimports_does(tmp_path, monkeypatch):
    """A made-up package: ``fake/low.py`` and ``fake/high.py`` each with an
    (unloaded, dummy) extension, ``high.pxd`` cimporting from low. When low
    runs from its source (edited since the build, or never built), high must
    too: its extension was built against low's compiled types (the EGP and
    the QNP cimport the protocol base)."""
    monkeypatch.delenv("QSTACK_PURE_PYTHON", raising=False)
    monkeypatch.delenv("QSTACK_REQUIRE_CYTHON", raising=False)
    package = tmp_path / "qstack" / "fake"
    package.mkdir(parents=True)
    built = time.time() - 100
    files = {}
    for stem in ("low", "high"):
        files[stem] = (package / f"{stem}.py", package / f"{stem}{EXTENSION_SUFFIXES[0]}")
        files[stem][0].write_text("X = 1\n")
        files[stem][1].write_bytes(b"")
    (package / "high.pxd").write_text("from qstack.fake.low cimport Base\n\n"
                                      "cdef class High(Base):\n    pass\n")

    def finder(low_after_build_s: float) -> SourceFirstFinder:
        for source, extension in files.values():
            if extension.exists():
                os.utime(extension, (built, built))
            os.utime(source, (built - 50,) * 2)
        os.utime(files["low"][0], (built + low_after_build_s,) * 2)
        return SourceFirstFinder(root=str(tmp_path / "qstack"))

    path = [str(package)]
    assert finder(-50).find_spec("qstack.fake.high", path) is None       # both current
    f = finder(50)                                                       # low edited
    with pytest.warns(RuntimeWarning, match="cimports qstack.fake.low"):
        spec = f.find_spec("qstack.fake.high", path)
    assert spec.origin == str(files["high"][0])
    files["low"][1].unlink()                                             # low never built
    with pytest.warns(RuntimeWarning, match="cimports qstack.fake.low"):
        assert finder(-50).find_spec("qstack.fake.high", path).origin == str(files["high"][0])
    monkeypatch.setenv("QSTACK_REQUIRE_CYTHON", "1")
    with pytest.raises(ImportError, match="cimports qstack.fake.low"):
        finder(-50).find_spec("qstack.fake.high", path)


def test_a_kernel_that_cimports_a_module_running_from_source_gives_way_to_its_twin(
        tmp_path, monkeypatch):
    """A made-up package: ``fake/low.py`` with an (unloaded, dummy) extension,
    and two kernels (extensions with no ``.py``): ``_k1`` cimports low (as
    the heralding station cimports the device), ``_k2`` cimports ``_k1`` (as
    the driver cimports the station). While low's build is current the
    finder leaves both alone; when low runs from its source (edited, or
    ``QSTACK_PURE_PYTHON=1``), importing either is an ImportError that says
    why, which ``load_kernel`` turns into the twin (next test)."""
    monkeypatch.delenv("QSTACK_PURE_PYTHON", raising=False)
    monkeypatch.delenv("QSTACK_REQUIRE_CYTHON", raising=False)
    package = tmp_path / "qstack" / "fake"
    package.mkdir(parents=True)
    built = time.time() - 100
    low_py, low_ext = package / "low.py", package / f"low{EXTENSION_SUFFIXES[0]}"
    low_py.write_text("X = 1\n")
    for path in (low_ext, package / f"_k1{EXTENSION_SUFFIXES[0]}",
                 package / f"_k2{EXTENSION_SUFFIXES[0]}"):
        path.write_bytes(b"")
        os.utime(path, (built, built))
    # _k1 says it in its .pxd, _k2 in its .pyx
    (package / "_k1.pxd").write_text("from qstack.fake.low cimport Base\n\n"
                                     "cdef class K1:\n    cdef Base base\n")
    (package / "_k2.pyx").write_text("from qstack.fake._k1 cimport K1\n")

    def finder(low_after_build_s: float) -> SourceFirstFinder:
        os.utime(low_py, (built + low_after_build_s,) * 2)
        return SourceFirstFinder(root=str(tmp_path / "qstack"))

    path = [str(package)]
    f = finder(-50)                                                      # low current
    assert f.find_spec("qstack.fake._k1", path) is None
    assert f.find_spec("qstack.fake._k2", path) is None
    for kernel, why in (("_k1", "qstack.fake.low, which runs from its source"),
                        ("_k2", "qstack.fake._k1, which cannot import either")):
        with pytest.raises(ImportError, match=f"cimports {why}"):
            finder(50).find_spec(f"qstack.fake.{kernel}", path)          # low edited
    monkeypatch.setenv("QSTACK_PURE_PYTHON", "1")
    with pytest.raises(ImportError, match="cimports qstack.fake.low"):
        finder(-50).find_spec("qstack.fake._k1", path)


def test_a_built_kernel_that_cannot_import_warns_and_gives_its_twin(tmp_path, monkeypatch):
    """``load_kernel``: a kernel that is not built is None, quietly; one that
    is built but fails to import (here it imports a name that is gone, as
    the driver once did) is None with a warning that says why, never a
    silent fallback; under ``QSTACK_REQUIRE_CYTHON=1`` both are errors."""
    from qstack.core.kernels import load_kernel

    monkeypatch.delenv("QSTACK_PURE_PYTHON", raising=False)
    monkeypatch.delenv("QSTACK_REQUIRE_CYTHON", raising=False)
    (tmp_path / "qstack_fake_broken_kernel.py").write_text(
        "from qstack.physical.device import _NO_SUCH_TABLE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_kernel("qstack_fake_no_such_kernel") is None
    with pytest.warns(RuntimeWarning, match="cannot be imported .*_NO_SUCH_TABLE.*twin"):
        assert load_kernel("qstack_fake_broken_kernel") is None
    monkeypatch.setenv("QSTACK_REQUIRE_CYTHON", "1")
    with pytest.raises(ImportError, match="_NO_SUCH_TABLE.*QSTACK_REQUIRE_CYTHON=1"):
        load_kernel("qstack_fake_broken_kernel")
    with pytest.raises(ImportError, match="is not built but QSTACK_REQUIRE_CYTHON=1"):
        load_kernel("qstack_fake_no_such_kernel")


def test_an_error_in_protocol_code_names_the_source_file_and_line():
    """Compiled or not, the traceback has a frame in network/circuit.py at the
    line that failed (Cython records the .py file and line of each frame)."""
    from qstack.network.circuit import QnpProtocol

    qnp = QnpProtocol.__new__(QnpProtocol)              # never initialised
    with pytest.raises(AttributeError) as info:
        qnp._circuit_of(None)                           # self._by_label is missing
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert Path(frame.filename).as_posix().endswith("qstack/network/circuit.py")
    lines = (ROOT / "qstack" / "network" / "circuit.py").read_text().splitlines()
    assert lines[frame.lineno - 1].strip() == \
        "labels = self._by_label.get(ev.remote)"
    assert frame.name.endswith("_circuit_of")
    compiled = compiled_modules().get("qstack.network.circuit", False)
    assert compiled is (not pure_python() and BUILT)
