"""The stand-in for Cython's pure-Python mode (qstack/_cython_shadow.py): a
module that types its locals runs unchanged without Cython."""
from qstack._cython_shadow import cython


def test_locals_returns_the_function_itself():
    def f(x):
        return x + 1

    assert cython.locals(x=cython.int)(f) is f
    assert cython.cfunc(f) is f
    assert cython.declare(cython.int, 7) == 7
    assert f(1) == 2


def test_type_names_are_python_types():
    assert not cython.compiled
    assert cython.int(3.0) == 3 and cython.double(1) == 1.0
    assert cython.bint(0) is False and cython.Py_ssize_t("7") == 7


def test_the_typed_protocols_run_without_cython():
    """With ``import cython`` failing (Cython not installed), the typed
    modules (the EGP, the QNP, the engine, the Bell-diagonal states) import the
    stand-in and run a chain as plain Python, with the same numbers as with
    Cython's own shadow module."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = (
        "import sys\n"
        "class NoCython:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cython' or name.startswith('Cython'):\n"
        "            raise ImportError('no Cython here')\n"
        "if sys.argv[1] == 'hide':\n"
        "    sys.meta_path.insert(0, NoCython())\n"
        "import qstack.link.egp as egp, qstack.network.circuit as circuit\n"
        "import qstack.physical.engine as engine, qstack.physical.bell_diagonal as bd\n"
        "from qstack._cython_shadow import cython as shim\n"
        "typed = (egp, circuit, engine, bd)\n"
        "assert all(m.cython is shim for m in typed) == (sys.argv[1] == 'hide')\n"
        "from benchmarks.bench_network import chain_run\n"
        "r = chain_run(6, pairs=20)\n"
        "print(r['events'], r['messages'], r['sim_time_ms'], r['mean_fidelity'])\n")
    env = dict(os.environ, QSTACK_PURE_PYTHON="1", PYTHONPATH=str(root))
    runs = [subprocess.run([sys.executable, "-c", script, how], cwd=root, env=env,
                           capture_output=True, text=True, timeout=300)
            for how in ("hide", "keep")]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()
