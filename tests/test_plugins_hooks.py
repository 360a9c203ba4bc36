"""One test per hook, named ``test_hook_<hook name>`` (tests/test_hooks_meta.py checks this).

Each shows the behaviour docs/plugins.md promises for the hook: when it is
called, what its parameter accepts, and that its return value is ignored.
"""
from __future__ import annotations

import torch

import ganzoo
from ganzoo.registry import DATASETS, VARIANTS
from ganzoo.trainer import Trainer, TrainOptions


class Hinge(ganzoo.TwoPlayerVariant):
    name = "hook-hinge"
    paper = "test"
    summary = "hinge (hook test)"

    def d_loss(self, real_scores, fake_scores):
        return (1 - real_scores).relu().mean() + (1 + fake_scores).relu().mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()


class CountingVariants:
    def __init__(self):
        self.calls = 0

    @ganzoo.hookimpl
    def register_variants(self, register):
        self.calls += 1
        register(Hinge)
        return ["ignored"]  # return values are ignored


def test_hook_register_variants(register_plugin):
    plugin = CountingVariants()
    register_plugin(plugin, "hook-variants")
    assert plugin.calls == 0  # registering a plugin does not call its hooks ...
    assert "hook-hinge" in ganzoo.list_variants()  # ... the first registry query does
    ganzoo.list_variants()
    ganzoo.get_variant("hook-hinge")
    assert plugin.calls == 1  # once, while the set of plugins stays the same
    entry = VARIANTS.entry("hook-hinge")
    assert entry.obj is Hinge and entry.plugin == "hook-variants"
    assert not [f for f in ganzoo.plugin_failures() if f.plugin == "hook-variants"]


class Circle(ganzoo.SampledDataset):
    name = "hook-circle"
    description = "points on the unit circle (hook test)"
    spec = ganzoo.DataSpec(shape=(2,), num_classes=None, size=None)

    def draw(self, batch_size, generator, device):
        angle = torch.rand(batch_size, generator=generator, device=device) * (2 * torch.pi)
        return ganzoo.Batch(torch.stack([angle.cos(), angle.sin()], dim=1))


class DatasetPlugin:
    """Implements only the hook it needs, and takes no arguments it does not use."""

    @ganzoo.hookimpl
    def register_datasets(self, register):
        register(Circle)


def test_hook_register_datasets(register_plugin, tmp_path):
    register_plugin(DatasetPlugin(), "hook-datasets")
    assert "hook-circle" in ganzoo.list_datasets()
    assert DATASETS.entry("hook-circle").plugin == "hook-datasets"
    data = ganzoo.create_dataset("hook-circle", seed=0)
    variant = ganzoo.create_variant("vanilla", data.spec, batch_size=8, toy_hidden=8)
    trainer = Trainer(variant, data, tmp_path, TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    stats = trainer.train_step(state)
    assert "D/loss" in stats and state.step == 1
    assert torch.allclose(data.sample(5).real.norm(dim=1), torch.ones(5))
