"""Build qstack's Cython kernels.

Every ``*.pyx`` file under ``qstack/`` is compiled to an extension module of
the same dotted name, so a new kernel needs no edit here: put ``_kernel.pyx``
beside the pure-Python module it accelerates.
"""
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

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


setup(
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
    package_data={"qstack": ["py.typed"]},
)
