"""Build qstack's Cython kernels.

Every ``*.pyx`` file under ``qstack/`` is compiled to an extension module of
the same dotted name, so a new kernel needs no edit here: put ``_kernel.pyx``
beside the pure-Python module it accelerates.

A few pure-Python modules on the simulator's per-pair path (``COMPILED_PY``)
are compiled too, from their unchanged source: the ``.py`` stays the one
source, and it is what runs under ``QSTACK_PURE_PYTHON=1``, without a
compiler, or after an edit until the next build (qstack/_compiled.py).

Every kernel has a pure-Python twin, so a machine without a working C
compiler still installs qstack: the extensions that fail to build are left
out with one warning, and the twins serve (``QSTACK_REQUIRE_CYTHON=1``, as
``make`` and CI set it, makes such a failure an error instead).
"""
import os
import sys
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

ROOT = Path(__file__).parent


#: Modules compiled from their own, unchanged .py source: the per-pair path of
#: a repeater chain (the EGP, the QNP, the protocol base, the state engine and
#: the device), where compiling them cut the CPU time of a chain run by 13-24 %
#: (docs/compiled-runtime.md, "Protocols compiled from their own source").
#: Measured one by one; list a module only if compiling it pays (the EGP pays
#: only with its records typed, link/egp.pxd: "Typed protocol state").
COMPILED_PY = [
    "qstack/core/protocol.py",
    "qstack/link/egp.py",
    "qstack/network/circuit.py",
    # (the closed forms: the QNP's werner_swap runs once per swap, interpreted
    # ~1,200 instructions, compiled a C function's call)
    "qstack/network/theory.py",
    # (SimplePairModel.sample_bell_index: once per link pair, from the station)
    "qstack/physical/pair_model.py",
    "qstack/physical/bell_diagonal.py",
    "qstack/physical/device.py",
    "qstack/physical/engine.py",
    # (the simulator's pair probe: once per end per delivered pair; interpreted,
    # about a sixth of a two-node link's instructions per pair)
    "qstack/sim/probe.py",
]
#: Their directives keep Python's semantics exactly: annotations stay
#: annotations (not C types that would reject None or convert ints), and
#: indexing and division stay Python's (none of the kernels' C shortcuts).
PY_DIRECTIVES = {"annotation_typing": False}
#: C flags of every extension: no fused multiply-add contraction, so that C
#: arithmetic on doubles rounds as Python's floats do, operation by operation,
#: and a compiled module gives its twin's numbers on every CPU (x86-64's
#: baseline has no FMA; aarch64's has, and GCC contracts by default).
#: No debug information (-g0 after the interpreter's own -g): the machine code
#: is the same (objdump -d of egp.o both ways), and gcc takes 20-29 % less
#: time (egp.c 71 s -> 57 s, circuit.c 77 s -> 55 s, back to back on a 2-core
#: VM); the symbols stay, so profilers still name each function (drop -g0
#: here to step through one in gdb).
C_FLAGS = ["-O3", "-ffp-contract=off", "-g0"]

#: Profile-guided optimisation (``make pgo``, docs/compiled-runtime.md,
#: "Profile-guided builds"): ``QSTACK_PGO=generate`` builds kernels that
#: count their branches and calls as they run, ``benchmarks/pgo_train.py``
#: runs them on the per-pair paths, and ``QSTACK_PGO=use`` rebuilds with
#: those counts, so gcc lays the hot paths out together and the cold ones
#: apart. The code means the same (no flag here changes what any arithmetic
#: computes: -ffp-contract=off stays); what is not trained is optimised as
#: without a profile (-fprofile-partial-training). The counts live in
#: ``PGO_DIR``, named by object file: both builds compile into ``PGO_TEMP``.
PGO_DIR = ROOT / "build" / "pgo-profile"
PGO_TEMP = ROOT / "build" / "pgo"
PGO_FLAGS = {
    "": [],
    "generate": [f"-fprofile-generate={PGO_DIR}", "-fprofile-update=single"],
    "use": [f"-fprofile-use={PGO_DIR}", "-fprofile-partial-training", "-Wno-missing-profile"],
}
PGO_MODE = os.environ.get("QSTACK_PGO", "")
if PGO_MODE not in PGO_FLAGS:
    sys.exit(f"setup.py: QSTACK_PGO={PGO_MODE!r}: expected 'generate', 'use' or unset")
C_FLAGS = C_FLAGS + PGO_FLAGS[PGO_MODE]
#: (the profiling runtime, libgcov, is linked by the same flags)
LINK_FLAGS = PGO_FLAGS[PGO_MODE]


def _extensions():
    exts = []
    for pyx in sorted((ROOT / "qstack").rglob("*.pyx")):
        rel = pyx.relative_to(ROOT).with_suffix("")
        exts.append(
            Extension(
                ".".join(rel.parts),
                [str(pyx.relative_to(ROOT))],
                include_dirs=[numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=C_FLAGS,
                extra_link_args=LINK_FLAGS,
            )
        )
    return exts


def _source_extensions():
    return [Extension(".".join(Path(py).with_suffix("").parts), [py], extra_compile_args=C_FLAGS,
                      extra_link_args=LINK_FLAGS)
            for py in COMPILED_PY]


class OptionalBuildExt(build_ext):
    """build_ext that skips the kernels it cannot compile, with one warning."""

    _errors = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)

    def finalize_options(self):
        super().finalize_options()
        if PGO_MODE:
            # both builds of a profile-guided build compile to the same object
            # files: gcc finds each one's counts by the object's path
            self.build_temp = str(PGO_TEMP)
            if PGO_MODE == "use" and not any(PGO_DIR.rglob("*.gcda")):
                sys.exit(f"setup.py: QSTACK_PGO=use: no profile in {PGO_DIR}; build with "
                         "QSTACK_PGO=generate and run benchmarks/pgo_train.py first "
                         "(`make pgo` does all three)")
        # The C compiles are independent and take most of an install (gcc -O3
        # on ~400k lines of generated C): one per core unless -j says otherwise.
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self):
        self.skipped = []
        try:
            super().run()
        except self._errors as exc:          # no compiler at all
            self._give_up(exc, [e.name for e in self.extensions])
        if self.skipped:
            print(f"WARNING: qstack: no C compiler could build {len(self.skipped)} Cython "
                  f"kernel(s) ({', '.join(self.skipped)}): installing the pure-Python twins "
                  "instead (same results, slower)", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except self._errors as exc:
            self._give_up(exc, [ext.name])

    def _give_up(self, exc, names):
        if os.environ.get("QSTACK_REQUIRE_CYTHON") == "1":
            raise exc
        self.skipped.extend(n for n in names if n not in self.skipped)


def _largest_first(exts):
    """The extensions, the largest generated C first: build_ext hands them to
    its workers in this order, and gcc's time grows with the C (circuit.c takes
    45 s at -O3, most kernels under 12 s), so the long compiles start at once
    and the short ones fill in, instead of the longest starting last."""
    return sorted(exts, key=lambda ext: -sum(os.path.getsize(src) for src in ext.sources))


setup(
    cmdclass={"build_ext": OptionalBuildExt},
    ext_modules=_largest_first(cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
        nthreads=os.cpu_count() or 1,
    ) + cythonize(_source_extensions(), language_level=3, compiler_directives=PY_DIRECTIVES,
                  nthreads=os.cpu_count() or 1)),
    package_data={"qstack": ["py.typed"]},
)
