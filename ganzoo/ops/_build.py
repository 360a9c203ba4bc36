"""Building and loading the fused ops' C++/CUDA extension.

Nothing is compiled at import time. The first call of a fused op on a CPU or
CUDA tensor asks :func:`extension` for the module, which is, in order:

1. the ahead-of-time build ``ganzoo.ops._ganzoo_ops`` (``GANZOO_BUILD_EXT=1 pip
   install --no-build-isolation .``) when it was built against this torch;
2. a JIT build from a content-hashed folder of the ops cache (sources, flags,
   torch, CUDA and Python versions all go into the hash), imported directly
   when it is complete;
3. otherwise a fresh JIT build there with ``torch.utils.cpp_extension.load``
   and ninja, under a file lock so that parallel processes build once.

A failed build is logged to ``build.log`` in its folder, warned about once per
process (:class:`FusedOpsWarning`), and the ops fall back to the PyTorch
reference. When a CUDA build fails the CPU-only extension is tried, so the CPU
kernels survive a broken CUDA toolkit.

The ops cache is ``$GANZOO_OPS_CACHE``, else ``ops/`` under the ganzoo cache
(``$GANZOO_CACHE``, else ``$XDG_CACHE_HOME/ganzoo`` or ``~/.cache/ganzoo``).
``GANZOO_OPS_VERBOSE=1`` shows the compiler's commands and output.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import platform
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from ..progress import task

#: Files of the extension, relative to the source folder (see :func:`source_dir`).
CPU_SOURCES = ("bindings.cpp", "fused_leaky_relu_cpu.cpp", "gradient_penalty_cpu.cpp")
CUDA_SOURCES = ("fused_leaky_relu.cu", "gradient_penalty.cu")
HEADERS = ("fused_ops.h", "cpu_common.h", "cuda_common.cuh")

#: Compiler flags. No -march=native: a cached build may be loaded on another
#: machine sharing the home folder; the loops vectorise at the baseline ISA.
#: The C++ standard is torch's choice (cpp_extension adds it).
#: -fno-trapping-math lets the compiler turn selects into vector blends (as
#: PyTorch's own build does); no -ffast-math, so NaN and rounding stay exact.
#: OpenMP: at::parallel_for is an inline OpenMP region, serial unless the
#: extension is compiled with it; at run time the extension shares the libgomp
#: that torch already loaded (same soname), so torch.set_num_threads applies.
#: macOS compilers lack -fopenmp: the kernels run on one thread there.
#: -ffp-contract=off: a multiply-add is fused only where the code says so
#: (std::fma), so results match PyTorch's on every platform.
if sys.platform == "win32":
    CXX_FLAGS, LD_FLAGS = ["/O2", "/openmp"], []
elif sys.platform == "darwin":
    CXX_FLAGS, LD_FLAGS = ["-O3", "-fno-trapping-math", "-fno-math-errno", "-ffp-contract=off"], []
else:
    CXX_FLAGS = ["-O3", "-fno-trapping-math", "-fno-math-errno", "-ffp-contract=off", "-fopenmp"]
    LD_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3"]

#: The module an ahead-of-time build (setup.py, GANZOO_BUILD_EXT=1) installs.
PREBUILT_MODULE = "ganzoo.ops._ganzoo_ops"

#: Extra compiler flags, for tests (a define that makes the build fail).
EXTRA_CXX_FLAGS: list[str] = []


class FusedOpsWarning(UserWarning):
    """The fused ops could not be built; the PyTorch reference runs instead."""


@dataclass
class Extension:
    """The outcome of loading the extension.

    module: the compiled module, or None when the build failed.
    cuda: whether it has CUDA kernels.
    origin: "prebuilt", "cached" (built earlier) or "built" (in this process).
    location: its build folder or file.
    error: why there is no module (one line), or None.
    log: the build log when a build ran or failed.
    cuda_note: why CUDA kernels are missing, or None.
    """

    module: ModuleType | None
    cuda: bool = False
    origin: str = ""
    location: Path | None = None
    error: str | None = None
    log: Path | None = None
    cuda_note: str | None = None


_lock = threading.Lock()
_loaded: Extension | None = None
_warned = False


def source_dir() -> Path:
    """The folder with the C++/CUDA sources: ``ganzoo/ops/csrc`` in an
    installed package (package data), else the checkout's top-level ``csrc/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "csrc", here.parents[1] / "csrc"):
        if all((candidate / name).is_file() for name in CPU_SOURCES):
            return candidate
    return here / "csrc"


def cache_root() -> Path:
    """Where JIT builds go: ``$GANZOO_OPS_CACHE``, else ``<ganzoo cache>/ops``."""
    if os.environ.get("GANZOO_OPS_CACHE"):
        return Path(os.environ["GANZOO_OPS_CACHE"]).expanduser()
    if os.environ.get("GANZOO_CACHE"):
        base = Path(os.environ["GANZOO_CACHE"]).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganzoo"
    return base / "ops"


def cuda_status() -> tuple[bool, str | None]:
    """(whether to compile CUDA kernels, why not)."""
    if torch.version.cuda is None:
        return False, "this PyTorch build has no CUDA"
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)"
    return True, None


def loaded() -> Extension | None:
    """The extension if this process already loaded (or failed to build) it."""
    return _loaded


def extension(build: bool = True) -> Extension | None:
    """The extension, building it on first use (None when ``build`` is False
    and it is neither installed nor cached)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        want_cuda, cuda_note = cuda_status()
        result = _prebuilt(want_cuda)
        if result is None:
            result = _jit(want_cuda, build)
            if result is None:
                return None
            if result.module is None and want_cuda:
                failed = result
                result = _jit(False, build)
                if result is not None:
                    result.cuda_note = f"the CUDA build failed: {failed.error} (log: {failed.log})"
                    if result.module is None:
                        result = failed
        if result.module is not None and not result.cuda and result.cuda_note is None:
            result.cuda_note = cuda_note
        _loaded = result
        if result.module is None:
            _warn(result)
        return result


def reset() -> None:
    """Forget the loaded extension and the warning (tests)."""
    global _loaded, _warned
    with _lock:
        _loaded = None
        _warned = False


def _warn(result: Extension) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    log = f"Build log: {result.log}. " if result.log else ""
    warnings.warn(
        f"the fused ops could not be built ({result.error}); using the plain PyTorch "
        f"reference instead, which is slower. {log}`ganzoo ops` shows "
        "the details; set GANZOO_OPS=ref to skip the build.",
        FusedOpsWarning,
        stacklevel=4,
    )


def _torch_version() -> str:
    return torch.__version__.split("+")[0]


def _prebuilt(want_cuda: bool) -> Extension | None:
    try:
        module = importlib.import_module(PREBUILT_MODULE)
        info = module.info()
    except Exception:  # noqa: BLE001 - absent, or built against another torch: JIT instead
        return None
    if info.get("torch_version") != _torch_version():
        return None  # built against another torch: its ABI may differ
    if want_cuda and not info.get("cuda"):
        return None  # a CPU-only wheel on a GPU machine: build the CUDA kernels
    return Extension(module, cuda=bool(info.get("cuda")), origin="prebuilt",
                     location=Path(module.__file__))


def _spec(with_cuda: bool) -> tuple[str, list[str], list[str], list[str]]:
    """(module name, source paths, C++ flags, nvcc flags) of a JIT build."""
    folder = source_dir()
    names = CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())
    cxx = list(CXX_FLAGS) + list(EXTRA_CXX_FLAGS) + (["-DGANZOO_WITH_CUDA"] if with_cuda else [])
    nvcc = list(NVCC_FLAGS) if with_cuda else []
    digest = hashlib.sha256()
    for name in sorted(names + HEADERS):
        path = folder / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    for part in (cxx, nvcc, LD_FLAGS, torch.__version__, torch.version.cuda, sys.version, platform.machine(),
                 sys.platform, os.environ.get("CXX"), os.environ.get("TORCH_CUDA_ARCH_LIST")):
        digest.update(repr(part).encode() + b"\0")
    name = f"ganzoo_ops_{'cuda' if with_cuda else 'cpu'}_{digest.hexdigest()[:16]}"
    return name, [str(folder / n) for n in names], cxx, nvcc


def _library_path(folder: Path, name: str) -> Path:
    return folder / (name + (".pyd" if sys.platform == "win32" else ".so"))


def _import_built(folder: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, _library_path(folder, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jit(with_cuda: bool, build: bool) -> Extension | None:
    name, sources, cxx, nvcc = _spec(with_cuda)
    folder = cache_root() / name
    done = folder / "complete"
    log = folder / "build.log"
    if done.is_file():
        try:
            return Extension(_import_built(folder, name), cuda=with_cuda, origin="cached",
                             location=folder, log=log)
        except ImportError:
            pass  # damaged: build again below
    if not build:
        return None
    missing = [s for s in sources if not Path(s).is_file()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return Extension(None, error=f"cannot create the build folder {folder}: {exc.strerror or exc}")
    with _file_lock(folder.parent / f"{name}.lock"):
        if done.is_file():  # another process built it while we waited
            try:
                return Extension(_import_built(folder, name), cuda=with_cuda, origin="cached",
                                 location=folder, log=log)
            except ImportError:
                done.unlink(missing_ok=True)
        if missing:
            error = f"sources missing: {', '.join(missing)}"
            log.write_text(error + "\n")
            return Extension(None, location=folder, error=error, log=log)
        # We hold the lock, so torch's own baton file can only be stale (a
        # build killed earlier); left there it would make torch wait forever.
        (folder / "lock").unlink(missing_ok=True)
        started = time.perf_counter()
        try:
            from torch.utils import cpp_extension

            # One-off (cached), shown as its own step: the training bar starts after it.
            with task(f"compiling the fused ops ({'CPU + CUDA' if with_cuda else 'CPU'}; once, cached in "
                      f"{folder}; a minute or two)"):
                module = cpp_extension.load(
                    name=name, sources=sources, extra_cflags=cxx, extra_cuda_cflags=nvcc,
                    extra_ldflags=list(LD_FLAGS), build_directory=str(folder), with_cuda=with_cuda,
                    verbose=os.environ.get("GANZOO_OPS_VERBOSE", "") not in ("", "0"),
                )
        except Exception as exc:  # noqa: BLE001 - any failure means: use the reference
            text = str(exc)
            log.write_text(f"ganzoo: building {name} failed\n\n{text}\n")
            return Extension(None, location=folder, error=_first_line(text), log=log)
        log.write_text(f"ganzoo: built {name} in {time.perf_counter() - started:.1f} s\n"
                       f"sources: {', '.join(sources)}\nflags: {' '.join(cxx)}\n")
        done.write_text(name + "\n")
        return Extension(module, cuda=with_cuda, origin="built", location=folder, log=log)


def _first_line(text: str) -> str:
    if "Error building extension" in text:
        return "the compiler reported errors"
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "unknown error")
    return line if len(line) <= 200 else line[:197] + "..."


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on ``path`` held by this process (released if it dies)."""
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
