"""Build hook for ganzoo.

Packaging metadata lives in pyproject.toml. The fused ops' C++/CUDA sources
(``csrc/``, shipped as package data as ``ganzoo/ops/csrc``) are normally
compiled on first use (JIT, see ``ganzoo/ops/_build.py``).

``GANZOO_BUILD_EXT=1`` compiles the same extension here, ahead of time, into
``ganzoo.ops._ganzoo_ops``; torch must be importable in the build
environment, so use ``GANZOO_BUILD_EXT=1 pip install --no-build-isolation .``.
The CUDA kernels are included when torch has CUDA and a toolkit is found
(``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures).
"""
import os
import sys

from setuptools import setup


def extension_options() -> dict:
    if os.environ.get("GANZOO_BUILD_EXT", "").strip().lower() not in ("1", "true", "yes", "on"):
        return {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:
        raise SystemExit(f"GANZOO_BUILD_EXT=1 needs torch in the build environment ({exc}); "
                         "install torch first and use `pip install --no-build-isolation .`")
    # The source lists and flags of the JIT build, so both builds are the same.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from ganzoo.ops import _build

    with_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    names = _build.CPU_SOURCES + (_build.CUDA_SOURCES if with_cuda else ())
    make = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    extension = make(
        name=_build.PREBUILT_MODULE,
        sources=[f"ganzoo/ops/csrc/{name}" for name in names],
        extra_compile_args={"cxx": _build.CXX_FLAGS + (["-DGANZOO_WITH_CUDA"] if with_cuda else []),
                            "nvcc": _build.NVCC_FLAGS},
        extra_link_args=list(_build.LD_FLAGS),
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": cpp_extension.BuildExtension}}


setup(**extension_options())
