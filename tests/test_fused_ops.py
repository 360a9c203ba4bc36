"""The fused ops against their references: gradcheck / gradgradcheck in float64
on every available backend, parity in float32, ties at zero, layouts, and a
full WGAN-GP critic step (parameter gradients, no convolution_backward on
zeros in the penalty pass).

Backends: "cpu" (C++ kernels, built once per session on first use), "ref"
(plain PyTorch) and "cuda" (skipped without a GPU). Shapes are small: CI has
two cores.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from ganzoo.nets import ConvDiscriminator, MLPDiscriminator
from ganzoo.ops import (
    FusedLeakyReLU,
    fused_leaky_relu,
    gradient_norm_penalty,
    gradient_penalty,
    interpolate,
    leaky_relu_ref,
    r1_penalty,
    use_backend,
)
from ganzoo.ops import bench

HAS_CUDA = torch.cuda.is_available()
BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("ref", id="ref"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")),
]


def _device(backend: str) -> str:
    return "cuda" if backend == "cuda" else "cpu"


def _mode(backend: str) -> str:
    return "ref" if backend == "ref" else "native"


def _away_from_zero(t: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Values pushed at least ``margin`` away from 0 (finite differences must
    not straddle the kink)."""
    return torch.where(t >= 0, t + margin, t - margin)


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # non-dense: every other column of a wider tensor
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        return wide[..., ::2]
    return t.contiguous()


def _random_shape(seed: int) -> tuple[int, ...]:
    """A 4-d shape drawn once per seed (sides 1-5: size-1 dims included)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(int(v) for v in torch.randint(1, 6, (4,), generator=g))


# (shape, dim, bias, slope, gain, layout): fixed and random shapes, with and
# without bias, several slopes (incl. 0, 1 and negative) and gains (incl.
# negative), contiguous / channels_last / non-dense inputs.
LRELU_CASES = [
    (_random_shape(11), 1, True, 0.2, 1.0, "channels_last"),
    (_random_shape(12), 1, True, 0.1, 1.5, "contiguous"),
    (_random_shape(13), 1, False, 0.2, 1.0, "strided"),
    ((3, 4, 5, 6), 1, True, 0.2, 1.0, "contiguous"),
    ((2, 5, 3, 4), 1, True, 0.2, math.sqrt(2), "channels_last"),
    ((4, 3, 5, 2), 1, False, 0.01, 1.0, "strided"),
    ((6, 7), 1, True, 0.0, 1.0, "contiguous"),
    ((5, 3, 4), -1, True, 1.0, 0.5, "contiguous"),
    ((2, 3, 4, 5), 1, True, -0.3, 1.0, "channels_last"),
    ((3, 6, 2, 3), 1, True, 0.2, -0.7, "contiguous"),
    ((2, 3, 4, 5), 2, False, 0.5, 2.0, "strided"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,dim,with_bias,slope,gain,layout", LRELU_CASES)
def test_fused_leaky_relu_gradcheck_and_gradgradcheck(backend, shape, dim, with_bias, slope, gain, layout):
    device = _device(backend)
    g = torch.Generator().manual_seed(hash((shape, dim, slope)) % 2**31)
    pre = _away_from_zero(torch.randn(*shape, generator=g, dtype=torch.float64))
    channels = shape[dim]
    bias = torch.randn(channels, generator=g, dtype=torch.float64) if with_bias else None
    view = [1] * len(shape)
    view[dim] = -1
    x = pre - (bias.view(view) if with_bias else 0)  # so that x + b == pre, away from the kink
    x = _layout(x.to(device), layout).requires_grad_(True)
    inputs = (x, bias.to(device).requires_grad_(True)) if with_bias else (x,)

    def f(x, b=None):
        return fused_leaky_relu(x, b, slope, gain, dim)

    with use_backend(_mode(backend)):
        assert gradcheck(f, inputs)
        assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_leaky_relu_third_order(backend):
    """The backward of the backward is differentiable too (any order)."""
    device = _device(backend)
    g = torch.Generator().manual_seed(3)
    x = _away_from_zero(torch.randn(2, 3, 4, generator=g, dtype=torch.float64)).to(device).requires_grad_(True)
    b = (0.01 * torch.randn(3, generator=g, dtype=torch.float64)).to(device).requires_grad_(True)
    dy = torch.randn(2, 3, 4, generator=g, dtype=torch.float64).to(device).requires_grad_(True)

    def first_order(x, b, dy):
        return torch.autograd.grad(fused_leaky_relu(x, b, 0.2, 1.5), (x, b), dy, create_graph=True)

    with use_backend(_mode(backend)):
        assert gradgradcheck(first_order, (x, b, dy))


def _parity(x, b, slope, gain, dy, ddx, ddb):
    """(y, dx, db, d(dy)) through the op: forward, backward, double backward."""
    x = x.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    dy = dy.detach().clone().requires_grad_(True)
    y = fused_leaky_relu(x, b, slope, gain)
    dx, db = torch.autograd.grad(y, (x, b), dy, create_graph=True)
    (ddy,) = torch.autograd.grad((dx, db), (dy,), (ddx, ddb))
    return y.detach(), dx.detach(), db.detach(), ddy


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("slope,gain", [(0.2, 1.0), (0.2, math.sqrt(2)), (0.0, 1.0)])
def test_float32_parity_with_reference_including_ties_at_zero(layout, slope, gain):
    """Forward and backward match the reference bit for bit in float32, also
    where x + b == 0 (the slope applies there, as in PyTorch); the bias
    gradient matches up to summation order."""
    g = torch.Generator().manual_seed(0)
    b = torch.randn(4, generator=g)
    x = torch.randn(3, 4, 5, 6, generator=g)
    x[:, :, :2] = -b.view(1, 4, 1, 1)  # exact ties: x + b == 0
    x = _layout(x, layout)
    dy, ddx = torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 4, 5, 6, generator=g)
    ddb = torch.randn(4, generator=g)
    assert ((x + b.view(1, 4, 1, 1)) == 0).sum() > 0
    with use_backend("native"):
        fused = _parity(x, b, slope, gain, dy, ddx, ddb)
    with use_backend("ref"):
        ref = _parity(x, b, slope, gain, dy, ddx, ddb)
    names = ("y", "dx", "db", "ddy")
    for name, a, r in zip(names, fused, ref):
        assert a.shape == r.shape, name
        if name == "db":
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(a, r), name
    assert fused[0].is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")


def test_module_is_a_drop_in_for_leaky_relu():
    x = torch.randn(4, 6, 3, 3)
    act = FusedLeakyReLU(negative_slope=0.2)
    assert act.bias is None and list(act.parameters()) == []
    assert torch.equal(act(x), torch.nn.LeakyReLU(0.2)(x))
    layer = FusedLeakyReLU(6, negative_slope=0.1, gain=2.0)
    assert layer.bias.shape == (6,) and "channels=6" in repr(layer)
    torch.nn.init.normal_(layer.bias)
    torch.testing.assert_close(layer(x), leaky_relu_ref(x, layer.bias.detach(), 0.1, 2.0), rtol=0, atol=0)
    assert FusedLeakyReLU(6, bias=False).bias is None


def test_forward_saves_one_tensor_and_the_penalty_pass_sends_no_zeros():
    """One saved tensor per Function; the double backward gives x and b no gradient
    at all (stock leaky_relu sends zeros back through the forward pass)."""
    packed = []

    def pack(t):
        packed.append(t)
        return t

    x = torch.randn(2, 3, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    with use_backend("native"), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fused_leaky_relu(x, b)
        assert len(packed) == 1
        dy = torch.randn_like(y, requires_grad=True)
        dx, db = torch.autograd.grad(y, (x, b), dy, create_graph=True)
        assert len(packed) == 2  # the backward Function saves its mask, nothing else
    gx, gb, gdy = torch.autograd.grad(dx.square().sum() + db.sum(), (x, b, dy), allow_unused=True)
    assert gx is None and gb is None and gdy is not None
    with use_backend("ref"):
        y = fused_leaky_relu(x, b)
        dx, db = torch.autograd.grad(y, (x, b), dy, create_graph=True)
        zeros = torch.autograd.grad(dx.square().sum() + db.sum(), (x, b), allow_unused=True)
    assert all(z is not None and not z.any() for z in zeros)  # the waste the fused op avoids


def test_validation_errors():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="bias must have shape"):
        fused_leaky_relu(x, torch.zeros(4))
    with pytest.raises(ValueError, match="out of range"):
        fused_leaky_relu(x, torch.zeros(3), dim=5)


# -- the penalty ops --------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("center", [1.0, 0.0])
def test_gradient_norm_penalty_gradcheck_and_gradgradcheck(backend, center):
    device = _device(backend)
    g = torch.Generator().manual_seed(1)
    grad = torch.randn(3, 2, 2, 3, generator=g, dtype=torch.float64).to(device)
    grad = _layout(grad, "channels_last" if center else "contiguous").requires_grad_(True)

    def f(grad):
        return gradient_norm_penalty(grad, weight=7.0, center=center)[0]

    with use_backend(_mode(backend)):
        assert gradcheck(f, (grad,))
        assert gradgradcheck(f, (grad,))
        penalty, norms = gradient_norm_penalty(grad, weight=7.0, center=center)
    expected = grad.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, expected)
    torch.testing.assert_close(penalty, 7.0 * (expected - center).pow(2).mean())


@pytest.mark.parametrize("backend", BACKENDS)
def test_interpolate_gradcheck_and_gradgradcheck(backend):
    device = _device(backend)
    g = torch.Generator().manual_seed(2)
    real = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    fake = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    eps = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, device=device, requires_grad=True)
    with use_backend(_mode(backend)):
        assert gradcheck(interpolate, (real, fake, eps))
        assert gradgradcheck(interpolate, (real, fake, eps))


def test_interpolate_matches_lerp_in_both_branches():
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    eps = torch.tensor([0.0, 0.3, 0.7, 1.0])
    with use_backend("native"):
        fused = interpolate(real, fake, eps)
        fused_cl = interpolate(real.contiguous(memory_format=torch.channels_last),
                               fake.contiguous(memory_format=torch.channels_last), eps)
    ref = torch.lerp(fake, real, eps.view(-1, 1, 1, 1))
    # Bit for bit: a one-ulp change of x_hat can flip a mask in the critic.
    assert torch.equal(fused, ref) and torch.equal(fused_cl, ref)
    assert torch.equal(fused[0], fake[0]) and torch.equal(fused[3], real[3])
    big_real, big_fake = torch.randn(8, 3, 32, 32, generator=g), torch.randn(8, 3, 32, 32, generator=g)
    big_eps = torch.rand(8, generator=g)
    with use_backend("native"):
        assert torch.equal(interpolate(big_real, big_fake, big_eps),
                           torch.lerp(big_fake, big_real, big_eps.view(-1, 1, 1, 1)))


def _small_critic(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "conv":
        return ConvDiscriminator((2, 8, 8), width=4, norm="none")
    return MLPDiscriminator((2, 4, 4), hidden=8, layers=2, activation="lrelu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_gradient_penalty_gradcheck_wrt_critic_weights(backend, kind):
    """The whole penalty (interpolation, critic, its gradient, norms) as a
    function of one critic weight: its derivative is the double backward."""
    device = _device(backend)
    torch.manual_seed(0)
    if kind == "conv":  # tiny: gradcheck perturbs each entry of the first weight
        critic, shape = ConvDiscriminator((1, 8, 8), width=2, norm="none"), (1, 8, 8)
    else:
        critic, shape = MLPDiscriminator((2, 2, 2), hidden=6, layers=2, activation="lrelu"), (2, 2, 2)
    critic = critic.double().to(device)
    g = torch.Generator().manual_seed(5)
    real = torch.randn(3, *shape, generator=g, dtype=torch.float64).to(device)
    fake = torch.randn(3, *shape, generator=g, dtype=torch.float64).to(device)
    eps = torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64, device=device)
    name, weight = next(iter(critic.named_parameters()))

    def f(w):
        def critic_fn(x):
            return torch.func.functional_call(critic, {name: w}, (x,))
        return gradient_penalty(critic_fn, real, fake, weight=3.0, eps=eps)[0]

    with use_backend(_mode(backend)):
        assert gradcheck(f, (weight.detach().clone().requires_grad_(True),))


def test_r1_penalty_is_zero_centred_at_real_points():
    w = torch.tensor([0.5, -1.5])
    real = torch.randn(4, 2)
    with use_backend("native"):
        penalty, norms = r1_penalty(lambda x: x @ w, real, gamma=4.0)
    torch.testing.assert_close(norms, torch.full((4,), w.norm().item()))
    torch.testing.assert_close(penalty, 2.0 * w.norm() ** 2)


# -- the critic step -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_wgan_gp_critic_step_fused_matches_reference(kind):
    """A full critic step (real, fake, penalty, backward): ganzoo's critic with
    the fused ops against the same critic from stock layers with the usual
    penalty; parameter gradients agree to 1e-5 relative."""
    fused = _small_critic(kind)
    stock = bench.stock_copy(fused)
    assert not any(isinstance(m, FusedLeakyReLU) for m in stock.modules())
    g = torch.Generator().manual_seed(6)
    shape = (2, 8, 8) if kind == "conv" else (2, 4, 4)
    real, fake = torch.randn(8, *shape, generator=g), torch.randn(8, *shape, generator=g)
    eps = torch.rand(8, generator=g)
    loss_fused = bench.critic_step(fused, real, fake, eps, "native")
    loss_ref = bench.critic_step(stock, real, fake, eps, "ref")
    torch.testing.assert_close(loss_fused, loss_ref, rtol=1e-5, atol=1e-6)
    assert bench.grad_difference(fused, stock) < 1e-5
    for p in fused.parameters():
        assert p.grad is not None


def test_penalty_pass_runs_no_convolution_backward_on_zeros():
    critic = _small_critic("conv")
    stock = bench.stock_copy(critic)
    g = torch.Generator().manual_seed(7)
    real, fake = torch.randn(4, 2, 8, 8, generator=g), torch.randn(4, 2, 8, 8, generator=g)
    eps = torch.rand(4, generator=g)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in critic.modules())
    assert bench.conv_backward_calls(critic, real, fake, eps, "native") == 0
    # The stock critic runs one per conv layer, on zeros: what the fused op removes.
    assert bench.conv_backward_calls(stock, real, fake, eps, "ref") == convs


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_cuda_reduced_precision_against_float32_reference(dtype, layout):
    g = torch.Generator().manual_seed(8)
    x32 = torch.randn(4, 8, 6, 6, generator=g)
    b32, dy32 = torch.randn(8, generator=g), torch.randn(4, 8, 6, 6, generator=g)
    x = _layout(x32.to("cuda", dtype), layout).requires_grad_(True)
    b = b32.to("cuda", dtype).requires_grad_(True)
    with use_backend("native"):
        y = fused_leaky_relu(x, b, 0.2, math.sqrt(2))
        dx, db = torch.autograd.grad(y, (x, b), dy32.to("cuda", dtype))
    ref_y = leaky_relu_ref(x.detach().float(), b.detach().float(), 0.2, math.sqrt(2))
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float32: 1e-6}[dtype]
    torch.testing.assert_close(y.float(), ref_y, rtol=tol, atol=tol)
    assert y.dtype == dtype and dx.dtype == dtype and db.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
