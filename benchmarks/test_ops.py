"""Fused ops against eager PyTorch, with pytest-benchmark.

The cases of ``ganzoo.ops.bench`` (the protocol in KERNELS.md): the
bias + leaky ReLU + gain chain at 2^22 elements (2^26 on CUDA) in forward,
forward + backward and forward + backward + double backward, NCHW and
channels_last; and full WGAN-GP critic steps (DCGAN critic 32x32 and 64x64 at
batch 64, the toy MLP critic at batch 256). Each group holds the reference and
the fused variant of one case side by side::

    pytest benchmarks/test_ops.py --benchmark-only --benchmark-group-by=group

``ganzoo bench`` runs the same cases interleaved and prints the ratios, GB/s
and percent of copy bandwidth; use it for benchmarks/RESULTS.md. These are
measurements, not pass/fail targets.
"""
from __future__ import annotations

import math

import pytest
import torch

from ganzoo.ops import bench, fused_leaky_relu, leaky_relu_ref

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
N = 2**26 if DEVICE == "cuda" else 2**22
ROUNDS = 30 if DEVICE == "cuda" else 10
OPS = {"ref": lambda x, b: leaky_relu_ref(x, b, bench.SLOPE, bench.GAIN),
       "fused": lambda x, b: fused_leaky_relu(x, b, bench.SLOPE, bench.GAIN)}
MODE = {"ref": "ref", "fused": "auto"}


def _info(benchmark, **extra) -> None:
    env = bench.environment(DEVICE)
    benchmark.extra_info.update(device=env["device_name"], torch=env["torch"], cuda=env["cuda"],
                                threads=env["threads"], date=env["date"], **extra)


def _synced(fn):
    if DEVICE != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize()
    return run


@pytest.mark.parametrize("impl", ["ref", "fused"])
@pytest.mark.parametrize("mode", bench.MODES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_op_chain(benchmark, impl, mode, layout):
    inputs = bench.chain_inputs(N, torch.float32, layout, DEVICE)
    fn = bench.with_backend(MODE[impl], bench.chain_fn(OPS[impl], mode, *inputs))
    benchmark.group = f"op chain {mode} {layout} N=2^{int(math.log2(N))}"
    _info(benchmark, impl=impl, n=N)
    benchmark.pedantic(_synced(fn), rounds=ROUNDS, warmup_rounds=2)


@pytest.mark.parametrize("impl", ["ref", "fused"])
@pytest.mark.parametrize("critic", ["dcgan32", "dcgan64", "mlp256"])
def test_wgan_gp_critic_step(benchmark, impl, critic):
    fused_critic, shape, batch = bench.make_critic(critic)
    net = (bench.stock_copy(fused_critic) if impl == "ref" else fused_critic).to(DEVICE)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    real = torch.randn(batch, *shape, generator=g, device=DEVICE).clamp(-1, 1)
    fake = torch.randn(batch, *shape, generator=g, device=DEVICE).clamp(-1, 1)
    eps = torch.rand(batch, generator=g, device=DEVICE)
    benchmark.group = f"WGAN-GP critic step {critic} batch {batch}"
    _info(benchmark, impl=impl, batch=batch)
    benchmark.pedantic(_synced(lambda: bench.critic_step(net, real, fake, eps, MODE[impl])),
                       rounds=max(3, ROUNDS // 2), warmup_rounds=1)
