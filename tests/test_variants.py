"""Every registered variant (built-in or plugin) trains, on toy and image data.

Parametrised over the registry, so a new variant is covered without a new test.
"""
from __future__ import annotations

import math

import pytest
import torch

import ganzoo
from ganzoo.trainer import Trainer, TrainOptions

from .conftest import make_noise_images

VARIANTS = ganzoo.list_variants()


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def run_steps(variant_name: str, dataset, steps: int = 2, tmp_path=None, **hparams):
    """Build, take ``steps`` generator steps, return (variant, state, stats, initial params).

    ``hparams`` the variant does not have (``g_width`` for a variant with nets of its own) are dropped."""
    known = ganzoo.get_variant(variant_name).known_hparams()
    hparams = {k: v for k, v in hparams.items() if k in known}
    variant = ganzoo.create_variant(variant_name, dataset.spec, batch_size=8, **hparams)
    trainer = Trainer(variant, dataset, tmp_path, TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    before = {name: _snapshot(net) for name, net in state.nets.items()}
    stats = {}
    for _ in range(steps):
        stats = trainer.train_step(state)
    return variant, state, stats, before


def check_training(variant, state, stats, before):
    assert stats, "a generator step produced no stats"
    for name, values in stats.items():
        for v in values:
            assert math.isfinite(float(v)), f"{name} is not finite"
    assert any(name.endswith("/loss") for name in stats)
    # The nets of the optimisers that the phases of the steps taken updated (a staged variant
    # such as stackgan trains its Stage-II nets only after stage 1).
    stepped = {key for step in range(state.step) for phase in variant.phases(step) for key in phase.updates}
    trained = {n for key, opt in state.optimizers.items() if key in stepped
               for n, net in state.nets.items()
               if any(p is q for g in opt.param_groups for p in g["params"] for q in net.parameters())}
    assert {"G", "D"} <= set(state.nets) or trained, "variant has no trained networks"
    for name in trained:
        assert _changed(before[name], state.nets[name]), f"parameters of {name} did not change"


def check_sampling(variant, state, spec, n=6):
    labels = torch.arange(n) % spec.num_classes if variant.conditional else None
    state.nets.eval()
    with torch.no_grad():
        out = variant.generate(state.nets, variant.latent(n, torch.device("cpu")), labels)
    assert out.shape == (n, *spec.shape)
    assert torch.isfinite(out).all()
    if spec.is_image:
        assert out.min() >= -1.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", [n for n in VARIANTS if "vector" in ganzoo.get_variant(n).data_kinds])
def test_trains_on_toy_data(name, tmp_path):
    dataset = ganzoo.create_dataset("8gaussians", seed=0)
    variant, state, stats, before = run_steps(name, dataset, tmp_path=tmp_path)
    check_training(variant, state, stats, before)
    check_sampling(variant, state, dataset.spec)


def for_variant(name: str, dataset):
    """``dataset`` as the variant takes it: as both domains of a pair for a translation model."""
    if ganzoo.get_variant(name).domains == 2:
        from ganzoo.data.pair import TwoDomains

        return TwoDomains(dataset, type(dataset)(seed=1), seed=0)
    return dataset


@pytest.mark.parametrize("name", VARIANTS)
def test_trains_on_digits(name, tmp_path):
    dataset = for_variant(name, ganzoo.create_dataset("digits", seed=0))
    variant, state, stats, before = run_steps(name, dataset, tmp_path=tmp_path)
    check_training(variant, state, stats, before)
    check_sampling(variant, state, dataset.spec)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 64, 64), (3, 64, 64)], ids=str)
@pytest.mark.parametrize("name", VARIANTS)
def test_image_sizes_and_channels(name, shape, tmp_path):
    dataset = for_variant(name, make_noise_images(shape)(seed=0))
    variant, state, stats, before = run_steps(name, dataset, steps=1, tmp_path=tmp_path, g_width=8, d_width=8)
    check_training(variant, state, stats, before)
    check_sampling(variant, state, dataset.spec)


@pytest.mark.parametrize("name", VARIANTS)
def test_defaults_are_complete(name):
    cls = ganzoo.get_variant(name)
    assert cls.summary and cls.paper
    for key in ("steps", "batch_size"):
        assert cls.defaults.get(key, 0) > 0
    ganzoo.create_variant(name, for_variant(name, ganzoo.create_dataset("digits")).spec)


@pytest.mark.parametrize("name", ganzoo.list_variants(conditional=True))
def test_conditional_generator_uses_the_label(name):
    spec = ganzoo.create_dataset("digits").spec
    variant = ganzoo.create_variant(name, spec, g_width=8, d_width=8)
    torch.manual_seed(0)
    nets = variant.build(spec).eval()
    z = variant.latent(1, torch.device("cpu")).repeat(10, 1)
    with torch.no_grad():
        out = variant.generate(nets, z, torch.arange(10))
    # Same noise, different labels: ten different images.
    flat = out.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(10) * 1e9).min() > 0


@pytest.mark.parametrize("name", ganzoo.list_variants(conditional=True))
def test_conditional_variant_refuses_unlabeled_data(name):
    spec = ganzoo.create_dataset("swissroll").spec
    with pytest.raises(ganzoo.GanzooError, match="needs labeled data"):
        ganzoo.create_variant(name, spec)


def test_dcgan_follows_the_paper():
    spec = ganzoo.create_dataset("digits").spec
    variant = ganzoo.create_variant("dcgan", spec)
    nets = variant.build(spec)
    assert variant.hparams["betas"] == (0.5, 0.999) and variant.hparams["lr_g"] == 2e-4
    convs = [m for m in nets["D"].modules() if isinstance(m, torch.nn.Conv2d)]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 0.02) < 0.003  # N(0, 0.02) init
    bns = [m for m in nets.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(bn.eps == 1e-5 for bn in bns)  # not the BatchNorm2d(c, 0.8) pitfall
    # No BatchNorm on D's first layer.
    first = list(nets["D"].body)[:2]
    assert isinstance(first[0], torch.nn.Conv2d) and isinstance(first[1], ganzoo.ops.FusedLeakyReLU)
    assert first[1].negative_slope == 0.2 and first[1].bias is None and first[1].gain == 1.0


def test_wgan_gp_critic_has_no_batchnorm_and_paper_settings():
    spec = ganzoo.create_dataset("digits").spec
    variant = ganzoo.create_variant("wgan-gp", spec)
    nets = variant.build(spec)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in nets["D"].modules())
    hp = variant.hparams
    assert (hp["n_critic"], hp["gp_weight"], hp["lr_d"], hp["betas"]) == (5, 10.0, 1e-4, (0.5, 0.9))
    assert [p.repeats for p in variant.phases(0)] == [5, 1]


def test_discriminator_step_does_not_train_the_generator(tmp_path):
    """The fake batch is detached in the D phase: G gets no gradient there."""
    dataset = ganzoo.create_dataset("8gaussians", seed=0)
    variant = ganzoo.create_variant("dcgan", dataset.spec, batch_size=8)
    trainer = Trainer(variant, dataset, tmp_path, TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    d_phase = variant.phases(0)[0]
    for p in state.nets.parameters():
        p.requires_grad_(True)
    loss, _ = d_phase.loss(state.nets, dataset.sample(8))
    loss.backward()
    assert all(p.grad is None for p in state.nets["G"].parameters())
    assert any(p.grad is not None for p in state.nets["D"].parameters())


def test_lsgan_targets_are_configurable():
    spec = ganzoo.create_dataset("8gaussians").spec
    variant = ganzoo.create_variant("lsgan", spec, a=-1, b=1, c=0)
    scores = torch.zeros(4)
    # D: 1/2 (0 - 1)^2 + 1/2 (0 + 1)^2 = 1; G: 1/2 (0 - 0)^2 = 0.
    assert variant.d_loss(scores, scores).item() == pytest.approx(1.0)
    assert variant.g_loss(scores).item() == pytest.approx(0.0)
