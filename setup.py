"""Build qstack's Cython kernels.

Every ``*.pyx`` file under ``qstack/`` is compiled to an extension module of
the same dotted name, so a new kernel needs no edit here: put ``_kernel.pyx``
beside the pure-Python module it accelerates.

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
                extra_compile_args=["-O3"],
            )
        )
    return exts


class OptionalBuildExt(build_ext):
    """build_ext that skips the kernels it cannot compile, with one warning."""

    _errors = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)

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


setup(
    cmdclass={"build_ext": OptionalBuildExt},
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
    package_data={"qstack": ["py.typed"]},
)
