"""Benchmarks of the fused ops against plain PyTorch (``ganzoo bench``, ``benchmarks/test_ops.py``).

The protocol of ``KERNELS.md``:

* **copy**: device-to-device copy bandwidth measured in the same run (bytes
  read + written) at the kernels' size, the yardstick for "percent of
  bandwidth" (op-chain rows smaller than that may beat it: they sit in cache).
* **kernels**: each fused kernel alone at N elements: median time, GB/s by its
  traffic lower bound, percent of the copy bandwidth.
* **op chain**: ``gain * leaky_relu(x + b, 0.2)`` (gain sqrt 2), eager
  reference vs fused, forward / forward + backward / forward + backward +
  double backward, NCHW and channels_last. The double backward is what a
  penalty pass does: grads of (dx, db) flow back into dy, x and b, all leaves.
* **critic step**: a full WGAN-GP critic step (critic on real and fake, the
  penalty, backward) of the DCGAN critic at 32x32 and 64x64 (batch 64) and the
  toy MLP critic (batch 256): the baseline is the same critic from stock
  layers (``nn.LeakyReLU(0.2)``) with the usual ``autograd.grad(create_graph=True)``
  penalty; the fused one is ganzoo's critic with the fused penalty. Also: the
  ``convolution_backward`` calls in the penalty's backward, the largest
  relative difference of parameter gradients, peak memory (CUDA).
* **faster paths** of the fused critic step (``faster_paths=True``), each
  timed in the same interleaved rounds, its gradients compared with the eager
  fp32 reference's in the same memory layout (and that reference's with the
  NCHW one: see :func:`path_grad_difference`), and on CUDA its peak memory
  against the reference's: ``channels_last`` (critic and
  images in NHWC, conv critics, any device), ``cuda_graph`` (the whole step,
  both passes, the penalty's double backward and the backward, captured once
  with static shapes and replayed: no Python or launch overhead; CUDA only),
  ``cuda_graph+channels_last``, and ``bf16`` (autocast, CUDA only).
* **torch.compile** column (``compile=True``): the reference with its
  first-order parts compiled; a double backward through a compiled graph is
  not supported by torch, and is reported so.

Timing: warm-up, then the variants of a case run interleaved (round robin,
rotating order) so that load from other processes hits them alike; median,
p10 and p90 of the runs; CUDA times come from CUDA events. :func:`cautions`
lists why figures may be untrustworthy (a busy machine, noisy timings,
impossible shares of the copy bandwidth); the Markdown flags them.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..cpu_threads import other_busy_processes
from . import backend
from .fused_leaky_relu import FusedLeakyReLU, fused_leaky_relu, leaky_relu_ref
from .gradient_penalty import gradient_penalty

GAIN = math.sqrt(2.0)
SLOPE = 0.2
MODES = ("fwd", "fwd+bwd", "fwd+bwd+dbwd")
UNSUPPORTED = "unsupported"


@dataclass
class Timing:
    """Seconds per run: median, 10th and 90th percentile over ``runs`` runs."""

    median: float
    p10: float
    p90: float
    runs: int


@dataclass
class Settings:
    device: str = "cpu"
    sizes: tuple[int, ...] = (2**16, 2**20, 2**22)
    dtypes: tuple[str, ...] = ("float32",)
    layouts: tuple[str, ...] = ("nchw", "channels_last")
    critics: tuple[str, ...] = ("dcgan32", "dcgan64", "mlp256", "mlp256-fused-relu")
    warmup: int = 2
    repeats: int = 15
    critic_repeats: int = 7
    compile: bool = False
    faster_paths: bool = True
    kernel_size: int = 2**22


def default_settings(device: str, quick: bool = False) -> Settings:
    """The protocol's cases for ``device``; ``quick``: small sizes, few runs (a smoke test)."""
    if device == "cuda":
        s = Settings(device="cuda", sizes=tuple(2**k for k in range(16, 29, 2)),
                     dtypes=("float32", "bfloat16"), warmup=10, repeats=50, critic_repeats=20,
                     kernel_size=2**26)
    else:
        s = Settings()
    if quick:
        s.sizes = (2**16, 2**18)
        s.critics = ("dcgan32", "mlp256")
        s.repeats, s.critic_repeats, s.warmup = 5, 3, 1
        s.kernel_size = 2**18
    return s


# -- timing ------------------------------------------------------------------

def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: dict[str, Callable[[], Any]], device: str, warmup: int,
                     repeats: int) -> dict[str, Timing]:
    """Time each function ``repeats`` times, round robin; see the module docstring."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if device == "cuda":
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fns[name]()
                stop.record()
                stop.synchronize()
                samples[name].append(start.elapsed_time(stop) / 1e3)
            else:
                t0 = time.perf_counter()
                fns[name]()
                samples[name].append(time.perf_counter() - t0)
    return {name: _summary(values) for name, values in samples.items()}


def _summary(values: list[float]) -> Timing:
    values = sorted(values)
    q = statistics.quantiles(values, n=10, method="inclusive") if len(values) > 1 else values * 9
    return Timing(median=statistics.median(values), p10=q[0], p90=q[-1], runs=len(values))


def copy_bandwidth(device: str, n: int | None = None, repeats: int = 10) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read + written."""
    n = n or (2**26 if device == "cuda" else 2**24)
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    t = time_interleaved({"copy": lambda: dst.copy_(src)}, device, warmup=2, repeats=repeats)["copy"]
    return 2 * n * src.element_size() / t.median


def environment(device: str) -> dict[str, Any]:
    """Device, versions, threads and date: recorded with every figure."""
    if device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as fh:
                name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), name)
        except OSError:
            pass
    return {
        "device": device, "device_name": name, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "backend": {c.device: f"{c.backend} ({c.reason})" for c in backend.report(build=True)
                    if c.op == "fused_leaky_relu"},
        # fp32 convolutions and matmuls on CUDA run in TF32 where these are true (torch's defaults:
        # cuDNN yes, matmul no): the gradient differences of CUDA paths include it.
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if device == "cuda" else None,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32 if device == "cuda" else None,
    }


# -- op level ----------------------------------------------------------------

def _shape(n: int) -> tuple[int, int, int, int]:
    """(B, 64, H, W) with n elements: 32x32 maps (16x16 below 2^16)."""
    if n >= 2**16:
        return (n // 2**16, 64, 32, 32)
    return (1, 64, int(math.isqrt(n // 64)), int(math.isqrt(n // 64)))


def chain_inputs(n: int, dtype: torch.dtype, layout: str, device: str):
    g = torch.Generator(device=device).manual_seed(0)
    shape = _shape(n)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format

    def make(*size):
        return torch.randn(*size, generator=g, device=device, dtype=torch.float32).to(dtype)

    x = make(*shape).to(memory_format=fmt).requires_grad_(True)
    b = make(shape[1]).requires_grad_(True)
    dy = make(*shape).to(memory_format=fmt).requires_grad_(True)
    ddx = make(*shape).to(memory_format=fmt)
    ddb = make(shape[1])
    return x, b, dy, ddx, ddb


def chain_fn(op: Callable, mode: str, x, b, dy, ddx, ddb) -> Callable[[], None]:
    leaves = (x, b, dy)

    def clear():
        for t in leaves:
            t.grad = None

    if mode == "fwd":
        return lambda: op(x, b)
    if mode == "fwd+bwd":
        def fwd_bwd():
            torch.autograd.grad(op(x, b), (x, b), dy)
        return fwd_bwd

    def fwd_bwd_dbwd():
        clear()
        y = op(x, b)
        gx, gb = torch.autograd.grad(y, (x, b), dy, create_graph=True)
        torch.autograd.backward((gx, gb), (ddx, ddb))
    return fwd_bwd_dbwd


def _chain_bytes(mode: str, n: int, size: int) -> int:
    """Traffic lower bound of the fused chain: 2s, +3s, +3s per element (KERNELS.md)."""
    return {"fwd": 2, "fwd+bwd": 5, "fwd+bwd+dbwd": 8}[mode] * n * size


def bench_op_chain(s: Settings, copy_bps: float) -> list[dict[str, Any]]:
    rows = []
    ref = lambda x, b: leaky_relu_ref(x, b, SLOPE, GAIN)  # noqa: E731
    fused = lambda x, b: fused_leaky_relu(x, b, SLOPE, GAIN)  # noqa: E731
    for dtype_name in s.dtypes:
        dtype = getattr(torch, dtype_name)
        for layout in s.layouts:
            for n in s.sizes:
                inputs = chain_inputs(n, dtype, layout, s.device)
                compiled = torch.compile(ref) if s.compile else None
                for mode in MODES:
                    fns = {"ref": with_backend("ref", chain_fn(ref, mode, *inputs)),
                           "fused": with_backend("auto", chain_fn(fused, mode, *inputs))}
                    compile_note = None
                    if compiled is not None:
                        if mode == "fwd+bwd+dbwd":
                            compile_note = UNSUPPORTED
                        else:
                            fns["compile"] = chain_fn(compiled, mode, *inputs)
                    t = time_interleaved(fns, s.device, s.warmup, s.repeats)
                    moved = _chain_bytes(mode, n, inputs[0].element_size())
                    row = {
                        "op": "bias+lrelu+gain", "mode": mode, "n": n, "dtype": dtype_name, "layout": layout,
                        "ref": asdict(t["ref"]), "fused": asdict(t["fused"]),
                        "ratio": t["ref"].median / t["fused"].median,
                        "fused_GBps": moved / t["fused"].median / 1e9,
                        "fused_pct_copy": 100 * moved / t["fused"].median / copy_bps,
                    }
                    if "compile" in t:
                        row["compile"] = asdict(t["compile"])
                    elif compile_note:
                        row["compile"] = compile_note
                    rows.append(row)
                del inputs
    return rows


def with_backend(mode: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run():
        with backend.use_backend(mode):
            return fn()
    return run


# -- kernels alone -------------------------------------------------------------

def bench_kernels(s: Settings, copy_bps: float) -> list[dict[str, Any]]:
    """Each fused kernel alone (fp32, NCHW; bf16 too on CUDA) against its traffic bound."""
    k = backend.kernels(torch.device(s.device))
    if k is None:
        return []
    rows = []
    n = s.kernel_size
    for dtype_name in s.dtypes:
        dtype = getattr(torch, dtype_name)
        x, b, dy, _, _ = (t.detach() for t in chain_inputs(n, dtype, "nchw", s.device))
        y = k.act(x, b, None, 1.0, SLOPE, GAIN, 1)
        batch = x.shape[0]
        eps = torch.rand(batch, device=s.device)
        cases = {
            # name: (call, bytes per element in units of the element size)
            "act (fwd, bias)": (lambda: k.act(x, b, None, 1.0, SLOPE, GAIN, 1), 2),
            "act (double bwd, saved mask)": (lambda: k.act(dy, None, y, 1.0, SLOPE, GAIN, 1), 3),
            "grad (bwd)": (lambda: k.grad(dy, y, 1.0, SLOPE, GAIN, 1, False), 3),
            "grad (bwd + bias grad)": (lambda: k.grad(dy, y, 1.0, SLOPE, GAIN, 1, True), 3),
            "interpolate": (lambda: k.interpolate(x, dy, eps, True), 3),
            "penalty fwd (norms)": (lambda: k.penalty_forward(x, 10.0, 1.0), 1),
            "penalty bwd": (lambda: k.penalty_backward(torch.ones((), device=s.device, dtype=dtype),
                                                       x, torch.ones(batch, device=s.device, dtype=dtype),
                                                       10.0, 1.0), 2),
        }
        t = time_interleaved({name: call for name, (call, _) in cases.items()}, s.device,
                             s.warmup, s.repeats)
        for name, (_, units) in cases.items():
            moved = units * n * x.element_size()
            rows.append({"kernel": name, "n": n, "dtype": dtype_name, "time": asdict(t[name]),
                         "GBps": moved / t[name].median / 1e9,
                         "pct_copy": 100 * moved / t[name].median / copy_bps})
    return rows


# -- critic-step level ---------------------------------------------------------

def make_critic(name: str) -> tuple[nn.Module, tuple[int, ...], int]:
    """(ganzoo's critic, sample shape, batch) for a protocol case."""
    from ..nets import ConvDiscriminator, MLPDiscriminator

    if name.startswith("dcgan"):
        side = int(name[len("dcgan"):])
        return ConvDiscriminator((3, side, side), width=64, norm="none"), (3, side, side), 64
    if name.startswith("mlp256"):
        critic = MLPDiscriminator((2,), hidden=512, layers=3, activation="relu")
        if name == "mlp256-fused-relu":  # ReLU is a leaky ReLU with slope 0
            for i, m in enumerate(critic.body):
                if isinstance(m, nn.ReLU):
                    critic.body[i] = FusedLeakyReLU(negative_slope=0.0)
        return critic, (2,), 256
    raise ValueError(f"unknown critic {name!r}")


def stock_copy(critic: nn.Module) -> nn.Module:
    """The same critic from stock layers: every bias-free, gain-1 FusedLeakyReLU
    becomes ``nn.LeakyReLU`` (ReLU for slope 0); parameters are copied."""
    stock = copy.deepcopy(critic)

    def swap(module: nn.Module):
        for name, child in module.named_children():
            if isinstance(child, FusedLeakyReLU) and child.bias is None and child.gain == 1.0:
                setattr(module, name, nn.ReLU() if child.negative_slope == 0 else nn.LeakyReLU(child.negative_slope))
            else:
                swap(child)

    swap(stock)
    return stock


def critic_step(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                mode: str, weight: float = 10.0, autocast: torch.dtype | None = None) -> torch.Tensor:
    """One WGAN-GP critic step (no optimiser update): D(fake) - D(real) + GP, backward.

    ``autocast``: run the passes and the penalty under autocast to this dtype, as the trainer
    does with ``--precision``: scores cast to fp32, the backward outside autocast."""
    amp = (torch.autocast(real.device.type, dtype=autocast) if autocast is not None
           else contextlib.nullcontext())
    with backend.use_backend(mode):
        critic.zero_grad(set_to_none=True)
        with amp:
            loss = critic(fake).float().mean() - critic(real).float().mean()
            penalty, _ = gradient_penalty(critic, real, fake, weight=weight, eps=eps)
            total = loss + penalty
        total.backward()
    return total.detach()


def conv_backward_calls(critic: nn.Module, real, fake, eps, mode: str) -> int:
    """``aten::convolution_backward`` calls in the penalty's backward alone (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with backend.use_backend(mode):
        penalty, _ = gradient_penalty(critic, real, fake, eps=eps)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if real.is_cuda else [])
        with _quiet_native_stderr(), profile(activities=activities) as prof:
            penalty.backward()
    critic.zero_grad(set_to_none=True)
    return sum(1 for e in prof.events() if e.name == "aten::convolution_backward")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence the profiler's native start/stop lines (written to fd 2 by C++)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def grad_difference(a: nn.Module, b: nn.Module) -> float:
    """Largest over parameters of max|grad_a - grad_b| / max|grad_b|."""
    worst = 0.0
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if pa.grad is None and pb.grad is None:
            continue
        scale = pb.grad.abs().max().item()
        diff = (pa.grad - pb.grad).abs().max().item()
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst


#: The paths :func:`faster_paths` may build: name -> (CUDA only, conv critics only).
FASTER_PATHS = {"channels_last": (False, True), "cuda_graph": (True, False),
                "cuda_graph+channels_last": (True, True), "bf16": (True, False)}
#: Largest relative gradient difference from the eager fp32 reference *in the same layout* that a
#: faster fp32 path may show on a CPU (measured ~2e-7: rounding). Not held on CUDA, where cuDNN's
#: convolutions run in TF32 by default (torch's setting, recorded with the figures) and different
#: algorithms round differently; nor across layouts (see :func:`path_grad_difference`); bf16 is reported.
FP32_GRAD_TOLERANCE = 1e-4


def capture_critic_step(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                        weight: float = 10.0, warmup: int = 3) -> Callable[[], torch.Tensor]:
    """The fused critic step captured in a CUDA graph: a function that replays it.

    The inputs are static: refill ``real``, ``fake`` and ``eps`` in place (``copy_``) to step on new
    data. ``warmup`` (at least 1) steps run first on the stream the capture then uses (torch's
    recipe: lazy initialisation, cuDNN's algorithm search, per-stream cuBLAS workspaces and the
    kernels' one-time probe of ``torch.lerp``, which reads the device, all happen before the
    capture). The gradients then live in the graph's memory pool: ``critic``'s ``.grad`` tensors are
    rewritten in place by every replay (do not ``zero_grad(set_to_none=True)`` the critic after
    capture), and ``replay()`` returns the same loss tensor each time (clone it to keep it). The
    fp16 loss scale, if any, is read at capture and fixed in the graph. ``replay.peak_bytes`` is the
    step's peak memory during the capture above what was allocated before it, gradients included,
    as :func:`_peak_bytes` counts it for the eager steps (a replay allocates nothing).
    """
    if not real.is_cuda:
        raise RuntimeError("a CUDA graph needs CUDA tensors")
    if warmup < 1:
        raise ValueError("capture_critic_step needs at least one warm-up step before the capture")
    with torch.cuda.device(real.device):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                critic_step(critic, real, fake, eps, "auto", weight)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()  # the warm-up's gradients still held, as in _peak_bytes
        critic.zero_grad(set_to_none=True)  # backward inside the capture allocates them from the pool
        with torch.cuda.graph(graph, stream=stream):
            loss = critic_step(critic, real, fake, eps, "auto", weight)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base

    def replay() -> torch.Tensor:
        graph.replay()
        return loss

    replay.peak_bytes = peak  # type: ignore[attr-defined]
    return replay


def faster_paths(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                 conv: bool) -> dict[str, tuple[nn.Module, Callable[[], Any], torch.Tensor, torch.Tensor,
                                                torch.Tensor]]:
    """name -> (its own copy of ``critic``, a function running one step, the real images, fake
    images and eps it steps on, in its layout) for the paths of :data:`FASTER_PATHS` that apply on
    this device to this critic (``conv``: a conv critic)."""
    cuda = real.is_cuda
    paths = {}
    for name, (needs_cuda, needs_conv) in FASTER_PATHS.items():
        if (needs_cuda and not cuda) or (needs_conv and not conv):
            continue
        net = copy.deepcopy(critic)
        r, f, e = real, fake, eps
        if "channels_last" in name:
            net = net.to(memory_format=torch.channels_last)
            r, f = (t.contiguous(memory_format=torch.channels_last) for t in (real, fake))
        if name.startswith("cuda_graph"):
            r, f, e = r.clone(), f.clone(), eps.clone()  # the graph's static inputs (clone keeps the layout)
            fn = capture_critic_step(net, r, f, e)
        elif name == "bf16":
            def fn(net=net, r=r, f=f, e=e):
                return critic_step(net, r, f, e, "auto", autocast=torch.bfloat16)
        else:
            def fn(net=net, r=r, f=f, e=e):
                return critic_step(net, r, f, e, "auto")
        paths[name] = (net, fn, r, f, e)
    return paths


def path_grad_difference(net: nn.Module, step: Callable[[], Any], real: torch.Tensor, fake: torch.Tensor,
                         eps: torch.Tensor) -> dict[str, float]:
    """A faster path's gradients against the eager fp32 reference in the same memory layout (the
    stock copy of ``net``, ``mode="ref"``), and, for a channels_last path, that reference's against
    the NCHW one ("layout_grad_diff"; None for paths in NCHW).

    Why two figures: on the CPU box torch's own channels_last convolutions give gradients that
    differ from its NCHW ones by up to 2e-2 relative in some processes and ~1e-6 in others (in 3
    of 8 processes, 2026-12-05); the fused path agrees with the stock path of its layout to ~2e-7
    in every one. The first figure is what ganzoo's path changes, the second what the layout does."""
    step()
    reference = stock_copy(net).float()
    critic_step(reference, real.float(), fake.float(), eps, "ref")
    found: dict[str, float | None] = {"max_rel_grad_diff": grad_difference(net, reference), "layout_grad_diff": None}
    if real.dim() == 4 and real.is_contiguous(memory_format=torch.channels_last) and not real.is_contiguous():
        nchw = stock_copy(net).float().to(memory_format=torch.contiguous_format)
        critic_step(nchw, real.float().contiguous(), fake.float().contiguous(), eps, "ref")
        found["layout_grad_diff"] = grad_difference(reference, nchw)
    return found


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak CUDA memory allocated while ``fn`` runs, above what was allocated before."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def bench_critic(s: Settings) -> list[dict[str, Any]]:
    rows = []
    for name in s.critics:
        fused_critic, shape, batch = make_critic(name)
        fused_critic = fused_critic.to(s.device)
        stock = stock_copy(fused_critic)
        g = torch.Generator(device=s.device).manual_seed(0)
        real = torch.randn(batch, *shape, generator=g, device=s.device).clamp(-1, 1)
        fake = torch.randn(batch, *shape, generator=g, device=s.device).clamp(-1, 1)
        eps = torch.rand(batch, generator=g, device=s.device)
        fns = {"ref": lambda: critic_step(stock, real, fake, eps, "ref"),
               "fused": lambda: critic_step(fused_critic, real, fake, eps, "auto")}
        compile_note = None
        if s.compile:
            compiled = torch.compile(stock)

            def compiled_step():
                with backend.use_backend("ref"):
                    stock.zero_grad(set_to_none=True)
                    loss = compiled(fake).mean() - compiled(real).mean()  # first order: compiled
                    penalty, _ = gradient_penalty(stock, real, fake, eps=eps)  # double backward: eager
                    (loss + penalty).backward()
            fns["compile"] = compiled_step
            compile_note = "real/fake passes compiled, penalty pass eager"
        paths = faster_paths(fused_critic, real, fake, eps, conv=len(shape) == 3) if s.faster_paths else {}
        fns.update({path: fn for path, (_, fn, *_) in paths.items()})
        t = time_interleaved(fns, s.device, s.warmup, s.critic_repeats)
        critic_step(stock, real, fake, eps, "ref")
        critic_step(fused_critic, real, fake, eps, "auto")
        path_grad_diffs = {path: path_grad_difference(*entry) for path, entry in paths.items()}
        row = {
            "critic": name, "batch": batch, "shape": list(shape),
            "ref": asdict(t["ref"]), "fused": asdict(t["fused"]),
            "ratio": t["ref"].median / t["fused"].median,
            "max_rel_grad_diff": grad_difference(fused_critic, stock),
            "conv_backward_in_penalty_pass": {
                "ref": conv_backward_calls(stock, real, fake, eps, "ref"),
                "fused": conv_backward_calls(fused_critic, real, fake, eps, "auto")},
        }
        if "compile" in t:
            row["compile"] = asdict(t["compile"])
            row["compile_note"] = compile_note
            row["compile_double_backward"] = UNSUPPORTED
        if s.device == "cuda":
            peaks = {"ref": _peak_bytes(lambda: critic_step(stock, real, fake, eps, "ref")),
                     "fused": _peak_bytes(lambda: critic_step(fused_critic, real, fake, eps, "auto"))}
            row["peak_bytes"] = peaks
            row["peak_ratio"] = peaks["fused"] / peaks["ref"] if peaks["ref"] else None
        if paths:
            row["faster_paths"] = {}
            for path, (_, fn, *_) in paths.items():
                entry = {"time": asdict(t[path]), "ratio_to_ref": t["ref"].median / t[path].median,
                         "ratio_to_fused": t["fused"].median / t[path].median, **path_grad_diffs[path]}
                if s.device == "cuda":
                    # A replay allocates nothing (the graph keeps its pool): its peak is the capture's.
                    peak = getattr(fn, "peak_bytes", None)
                    peak = _peak_bytes(fn) if peak is None else peak
                    entry["peak_ratio"] = peak / row["peak_bytes"]["ref"] if row["peak_bytes"]["ref"] else None
                row["faster_paths"][path] = entry
        rows.append(row)
    return rows


# -- everything ----------------------------------------------------------------

@dataclass
class Results:
    environment: dict[str, Any]
    settings: dict[str, Any]
    copy_GBps: float
    kernels: list[dict[str, Any]] = field(default_factory=list)
    op_chain: list[dict[str, Any]] = field(default_factory=list)
    critic: list[dict[str, Any]] = field(default_factory=list)
    #: Why some figures should not be trusted (see :func:`cautions`); empty when none.
    cautions: list[str] = field(default_factory=list)


#: A timing whose 10th-90th percentile range exceeds this fraction of its median is "noisy".
NOISY_SPREAD = 0.5
#: More than this share of the copy bandwidth is not a real figure (the copy was slowed by
#: contention, or the work fit in a faster cache level than the copy's).
IMPLAUSIBLE_PCT_COPY = 150.0
#: Other runnable processes or a load average above this many per core make absolute times suspect.
BUSY_LOAD_PER_CORE = 0.25


def _spread(t: dict[str, Any] | str | None) -> float:
    if not isinstance(t, dict) or not t.get("median"):
        return 0.0
    return (t["p90"] - t["p10"]) / t["median"]


def _timings(r: Results):
    """(label, timing dict) for every timed figure."""
    for k in r.kernels:
        yield f"kernel {k['kernel']} {k['dtype']}", k["time"]
    for row in r.op_chain:
        for impl in ("ref", "fused"):
            yield f"op chain {row['mode']} {row['dtype']} {row['layout']} {impl}", row[impl]
    for row in r.critic:
        for impl in ("ref", "fused"):
            yield f"critic {row['critic']} {impl}", row[impl]
        for name, entry in row.get("faster_paths", {}).items():
            yield f"critic {row['critic']} {name}", entry["time"]


def cautions(r: Results) -> list[str]:
    """Reasons the figures of ``r`` may be untrustworthy: a busy machine, noisy timings,
    percentages of copy bandwidth that cannot be real. Ratios from interleaved runs stay
    comparable on a busy machine; absolute times and bandwidths do not."""
    found = []
    e = r.environment
    cores = e.get("cpu_count") or 1
    busy = e.get("other_busy_processes")
    loads = [x for x in (e.get("load_average_start"), e.get("load_average_end")) if x is not None]
    if e.get("device") == "cpu" and ((busy or 0) > 0 or any(x > BUSY_LOAD_PER_CORE * cores for x in loads)):
        load_text = " to ".join(f"{x:.2f}" for x in loads) if loads else "unknown"
        found.append(f"the machine was busy (load average {load_text} on {cores} CPUs; {busy} other "
                     "runnable process(es) at the start): absolute times and GB/s are not the hardware's; "
                     "ratios (interleaved) remain comparable")
    noisy = [label for label, t in _timings(r) if _spread(t) > NOISY_SPREAD]
    if noisy:
        found.append(f"{len(noisy)} timing(s) spread over more than {NOISY_SPREAD:.0%} of their median "
                     f"(p10-p90), marked 'noisy': e.g. {noisy[0]}; rerun on a quiet machine or with more repeats")
    implausible = [k for k in r.kernels if k["pct_copy"] > IMPLAUSIBLE_PCT_COPY]
    implausible += [row for row in r.op_chain if row["fused_pct_copy"] > IMPLAUSIBLE_PCT_COPY]
    if implausible:
        found.append(f"{len(implausible)} figure(s) above {IMPLAUSIBLE_PCT_COPY:.0f}% of the copy bandwidth, "
                     "marked '(!)': the copy it is compared with was slowed (contention) or ran in another "
                     "cache level; such percentages are not real")
    return found


def run(s: Settings, progress: Callable[[str], None] | None = None) -> Results:
    """Run the benchmark cases of ``s``; ``progress`` gets a line per stage."""
    say = progress or (lambda line: None)
    if s.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    env = environment(s.device)
    env["other_busy_processes"] = other_busy_processes()
    env["load_average_start"] = _load_average()
    say(f"copy bandwidth on {s.device} ...")
    # At the kernels' size: on a CPU 2^22 floats sit in the last-level cache,
    # and the kernels should be compared with a copy in the same regime.
    copy_bps = copy_bandwidth(s.device, n=s.kernel_size)
    results = Results(environment=env, settings=asdict(s), copy_GBps=copy_bps / 1e9)
    say("kernels ...")
    results.kernels = bench_kernels(s, copy_bps)
    say("op chain (bias + leaky ReLU + gain) ...")
    results.op_chain = bench_op_chain(s, copy_bps)
    say("WGAN-GP critic steps ...")
    results.critic = bench_critic(s)
    env["load_average_end"] = _load_average()
    results.cautions = cautions(results)
    return results


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _ms(t: dict[str, Any] | str | None) -> str:
    if t is None:
        return "-"
    if isinstance(t, str):
        return t
    noisy = " noisy" if _spread(t) > NOISY_SPREAD else ""
    return f"{t['median'] * 1e3:.3g} ({t['p10'] * 1e3:.3g}-{t['p90'] * 1e3:.3g}){noisy}"


def _pct(value: float) -> str:
    return f"{value:.0f}%" + (" (!)" if value > IMPLAUSIBLE_PCT_COPY else "")


def _n(n: int) -> str:
    k = int(math.log2(n))
    return f"2^{k}" if 2**k == n else str(n)


def to_markdown(r: Results) -> str:
    """The results as Markdown tables (times in ms: median (p10-p90))."""
    e = r.environment
    lines = [
        f"Device: {e['device_name']} ({e['device']}, {e['threads']} threads of {e['cpu_count']} CPUs); "
        f"torch {e['torch']}, CUDA {e['cuda'] or '-'}, Python {e['python']}; {e['date']}",
        f"Backend: {e['backend'].get(e['device'], '?')}",
        f"Copy bandwidth (read + write, {_n(r.settings.get('kernel_size', 0) or 1)} floats): "
        f"{r.copy_GBps:.1f} GB/s",
        "",
    ]
    for caution in r.cautions:
        lines += [f"**Caution:** {caution}.", ""]
    if r.kernels:
        lines += ["| kernel | N | dtype | ms: median (p10-p90) | GB/s | % of copy |",
                  "|---|---|---|---|---|---|"]
        for k in r.kernels:
            lines.append(f"| {k['kernel']} | {_n(k['n'])} | {k['dtype']} | {_ms(k['time'])} | "
                         f"{k['GBps']:.1f} | {_pct(k['pct_copy'])} |")
        lines.append("")
    if r.op_chain:
        compile_col = any("compile" in row for row in r.op_chain)
        lines += ["| op chain | N | dtype | layout | eager ref ms | fused ms | ratio | fused GB/s | % of copy |"
                  + (" compile ms |" if compile_col else ""),
                  "|---|---|---|---|---|---|---|---|---|" + ("---|" if compile_col else "")]
        for row in r.op_chain:
            lines.append(f"| {row['mode']} | {_n(row['n'])} | {row['dtype']} | {row['layout']} | "
                         f"{_ms(row['ref'])} | {_ms(row['fused'])} | **{row['ratio']:.2f}x** | "
                         f"{row['fused_GBps']:.1f} | {_pct(row['fused_pct_copy'])} |"
                         + (f" {_ms(row.get('compile'))} |" if compile_col else ""))
        lines.append("")
    if r.critic:
        cuda = any("peak_ratio" in row for row in r.critic)
        compile_col = any("compile" in row for row in r.critic)
        lines += ["| critic step | batch | eager ref ms | fused ms | ratio | conv_bwd in penalty bwd (ref/fused) "
                  "| max rel grad diff |" + (" peak mem fused/ref |" if cuda else "")
                  + (" compile ms (penalty eager) |" if compile_col else ""),
                  "|---|---|---|---|---|---|---|" + ("---|" if cuda else "") + ("---|" if compile_col else "")]
        for row in r.critic:
            conv = row["conv_backward_in_penalty_pass"]
            lines.append(f"| {row['critic']} | {row['batch']} | {_ms(row['ref'])} | {_ms(row['fused'])} | "
                         f"**{row['ratio']:.2f}x** | {conv['ref']}/{conv['fused']} | {row['max_rel_grad_diff']:.1e} |"
                         + (f" {row['peak_ratio']:.2f} |" if cuda else "")
                         + (f" {_ms(row.get('compile'))} |" if compile_col else ""))
        if compile_col:
            lines.append("")
            lines.append("torch.compile: double backward through a compiled critic is unsupported by torch; "
                         "only the real/fake passes are compiled.")
        lines += _faster_paths_table(r.critic)
    return "\n".join(lines)


def _faster_paths_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines for the critic step's faster paths (none when no row has them)."""
    if not any(row.get("faster_paths") for row in rows):
        return []
    cuda = any("peak_ratio" in row for row in rows)
    lines = ["", "Faster paths of the fused critic step (same interleaved rounds; ratios against the eager "
             "reference and against the fused step above; gradients against the eager fp32 reference in the "
             "path's own layout, and that reference's against NCHW):", "",
             "| critic step | path | ms | vs eager ref | vs fused | max rel grad diff | layout's own grad diff |"
             + (" peak mem / ref |" if cuda else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if cuda else "")]
    for row in rows:
        for name, entry in row.get("faster_paths", {}).items():
            peak = entry.get("peak_ratio")
            lines.append(f"| {row['critic']} | {name} | {_ms(entry['time'])} | **{entry['ratio_to_ref']:.2f}x** | "
                         f"{entry['ratio_to_fused']:.2f}x | {entry['max_rel_grad_diff']:.1e} | "
                         + (f"{entry['layout_grad_diff']:.1e} |" if entry["layout_grad_diff"] is not None else "– |")
                         + ((f" {peak:.2f} |" if peak is not None else " – |") if cuda else ""))
    return lines
