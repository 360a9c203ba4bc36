"""The trainer's hot path (issue 18): no data drawn for phases that need none, fused Adam that
drops a non-finite update on the device, the host check kept for other optimisers, and
PyTorch-GAN's MLP nets (the peer benchmark's)."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

import ganzoo
from ganzoo.cli import main
from ganzoo.data.base import Batch
from ganzoo.guard import skips_on_device
from ganzoo.optim import adam, fused_supported
from ganzoo.trainer import Diverged, Trainer, TrainOptions


def _trainer(name: str, dataset: str = "digits", tmp_path=None, **hparams):
    data = ganzoo.create_dataset(dataset, seed=0)
    variant = ganzoo.create_variant(name, data.spec, **hparams)
    trainer = Trainer(variant, data, tmp_path, TrainOptions(device="cpu", progress=False))
    return trainer, trainer.setup()


class _CountingDataset:
    """Wraps a dataset's sample / sample_labels to count the calls."""

    def __init__(self, dataset):
        self.calls = {"sample": 0, "sample_labels": 0}
        for name in self.calls:
            original = getattr(dataset, name)

            def counted(n, _name=name, _original=original):
                self.calls[_name] += 1
                return _original(n)

            setattr(dataset, name, counted)


@pytest.mark.parametrize("name, conditional", [("dcgan", False), ("cgan", True)])
def test_generator_phase_draws_no_data(tmp_path, name, conditional):
    trainer, state = _trainer(name, tmp_path=tmp_path, batch_size=8, g_width=8, d_width=8)
    counter = _CountingDataset(trainer.dataset)
    seen = []
    generator_phase = [p for p in trainer.variant.phases(0) if p.name == "G"][0]
    assert generator_phase.uses_real is False
    original_loss = generator_phase.loss

    def spy(nets, batch):
        seen.append(batch)
        return original_loss(nets, batch)

    original_phases = trainer.variant.phases
    trainer.variant.phases = lambda step: [dataclasses.replace(p, loss=spy) if p.name == "G" else p
                                           for p in original_phases(step)]
    trainer.train_step(state)
    # one data batch for the critic; the generator phase only draws labels when conditional
    assert counter.calls == {"sample": 1, "sample_labels": 1 if conditional else 0}
    batch = seen[0]
    assert batch.real.shape == (8, 0) and len(batch) == 8
    assert (batch.labels is not None) == conditional
    if conditional:
        assert batch.labels.dtype == torch.int64 and batch.labels.shape == (8,)


def test_without_data_batch_shards_and_has_no_columns():
    batch = Batch.without_data(8, torch.device("cpu"), torch.arange(8))
    part = batch.shard(1, 2)
    assert len(part) == 4 and part.labels.tolist() == [4, 5, 6, 7]
    with pytest.raises(RuntimeError):
        batch.real.view(8, 1, 28, 28)  # there is no data to reshape


def test_in_memory_sample_labels_follow_the_batch_order():
    a = ganzoo.create_dataset("digits", seed=3)
    b = ganzoo.create_dataset("digits", seed=3)
    a.prepare(torch.device("cpu"))
    b.prepare(torch.device("cpu"))
    assert torch.equal(a.sample_labels(16), b.sample(16).labels)
    assert torch.equal(a.sample(16).labels, b.sample_labels(16))


def test_builtin_variants_use_fused_adam_and_skip_on_device(tmp_path):
    trainer, state = _trainer("wgan-gp", tmp_path=tmp_path, batch_size=8, g_width=8, d_width=8)
    assert all(g["fused"] for opt in state.optimizers.values() for g in opt.param_groups)
    assert skips_on_device(list(state.optimizers.values()), trainer.precision)


def test_adam_helper(monkeypatch):
    layer = torch.nn.Linear(4, 3)
    assert fused_supported(layer.parameters())
    assert adam(layer.parameters(), lr=1e-3).param_groups[0]["fused"]
    assert not adam(layer.parameters(), lr=1e-3, foreach=False).param_groups[0]["fused"]
    assert adam([{"params": list(layer.parameters())}], lr=1e-3).param_groups[0]["fused"]
    monkeypatch.setenv("GANZOO_FUSED_ADAM", "0")
    assert not adam(layer.parameters(), lr=1e-3).param_groups[0]["fused"]


def test_fused_adam_matches_the_default_to_rounding():
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    fused = copy.deepcopy(reference)
    opts = [torch.optim.Adam(reference.parameters(), lr=1e-3, betas=(0.5, 0.999)),
            adam(fused.parameters(), lr=1e-3, betas=(0.5, 0.999))]
    for _ in range(20):
        x = torch.randn(8, 16)
        for net, opt in zip((reference, fused), opts):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(reference.parameters(), fused.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class _NaNCriticAtStep2(ganzoo.TwoPlayerVariant):
    """A critic loss that is NaN on the second generator step; optimiser kind by class attribute."""

    name = "test-nan-critic"
    paper = summary = "test"
    defaults = {**ganzoo.TwoPlayerVariant.defaults, "steps": 4}
    optimizer = "adam"

    def d_loss(self, real_scores, fake_scores):
        self.calls = getattr(self, "calls", 0) + 1
        loss = torch.nn.functional.softplus(-real_scores).mean() + torch.nn.functional.softplus(fake_scores).mean()
        return loss * float("nan") if self.calls == 2 else loss

    def g_loss(self, fake_scores):
        return torch.nn.functional.softplus(-fake_scores).mean()

    def make_optimizers(self, nets):
        if self.optimizer == "adam":
            return super().make_optimizers(nets)
        return {key: torch.optim.SGD(nets[key].parameters(), lr=1e-3) for key in ("G", "D")}


def test_a_dropped_update_leaves_the_weights_untouched(tmp_path):
    data = ganzoo.create_dataset("8gaussians", seed=0)
    variant = _NaNCriticAtStep2(data.spec)
    trainer = Trainer(variant, data, tmp_path, TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    trainer.train_step(state)
    critic_before = copy.deepcopy(state.nets["D"].state_dict())
    generator_before = copy.deepcopy(state.nets["G"].state_dict())
    moments_before = copy.deepcopy(state.optimizers["D"].state_dict()["state"])
    with pytest.raises(Diverged, match=r"step 2, phase D: D/loss is nan \(that update was not applied\)"):
        trainer.train_step(state)
    for key, value in state.nets["D"].state_dict().items():
        assert torch.equal(value, critic_before[key]), key  # the NaN update was dropped
    assert any(not torch.equal(v, generator_before[k]) for k, v in state.nets["G"].state_dict().items())
    after = state.optimizers["D"].state_dict()["state"]
    for index, moments in moments_before.items():
        for name, value in moments.items():
            assert torch.equal(after[index][name], value), (index, name)  # moments and step count too


def test_other_optimisers_keep_the_host_check(tmp_path):
    data = ganzoo.create_dataset("8gaussians", seed=0)
    variant = _NaNCriticAtStep2(data.spec)
    variant.optimizer = "sgd"
    trainer = Trainer(variant, data, tmp_path, TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    assert not skips_on_device(list(state.optimizers.values()), trainer.precision)
    trainer.train_step(state)
    generator_before = copy.deepcopy(state.nets["G"].state_dict())
    with pytest.raises(Diverged, match=r"step 2, phase D: D/loss is nan;"):
        trainer.train_step(state)
    for key, value in state.nets["G"].state_dict().items():
        assert torch.equal(value, generator_before[key])  # stopped before the generator phase


def test_skip_counts_a_dropped_update_and_training_goes_on(tmp_path):
    data = ganzoo.create_dataset("8gaussians", seed=0)
    variant = _NaNCriticAtStep2(data.spec)
    trainer = Trainer(variant, data, tmp_path, TrainOptions(device="cpu", progress=False, on_nan="skip"))
    state = trainer.setup()
    stats = [trainer.train_step(state) for _ in range(4)]
    assert trainer.skipped_steps == 1 and state.step == 4
    # The dropped update's stats are NaN (the log's means skip them); the others are finite.
    assert torch.isnan(torch.stack(stats[1]["D/real"])).all()
    assert all(torch.isfinite(torch.stack(s["D/real"])).all() for i, s in enumerate(stats) if i != 1)
    assert all(torch.isfinite(p).all() for p in state.nets.parameters())


def test_pytorch_gan_mlp_nets(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "wgan-gp", "--dataset", "digits", "--steps", "2", "--batch-size", "8", "--out", str(out),
                 "--quiet", "--set", "arch=pytorch-gan-mlp", "nz=100"]) == 0
    variant = ganzoo.create_variant("wgan-gp", ganzoo.create_dataset("digits").spec, arch="pytorch-gan-mlp", nz=100)
    nets = variant.networks(ganzoo.create_dataset("digits").spec)
    linears = [m for m in nets["G"].modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 128), (128, 256), (256, 512), (512, 1024),
                                                                  (1024, 784)]
    norms = [m for m in nets["G"].modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [256, 512, 1024] and all(m.eps == 0.8 for m in norms)
    critic = [(m.in_features, m.out_features) for m in nets["D"].modules() if isinstance(m, torch.nn.Linear)]
    assert critic == [(784, 512), (512, 256), (256, 1)]
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2


def test_fast_path_matches_the_eager_reference(tmp_path, monkeypatch):
    """Fused Adam and fused ops against torch's default Adam and the plain-PyTorch ops: the same
    parameters after 3 generator steps (15 critic updates) of wgan-gp, to 1e-4 relative."""
    from ganzoo.ops import backend

    def train(mode: str, fused_adam: str, out):
        monkeypatch.setenv("GANZOO_FUSED_ADAM", fused_adam)
        with backend.use_backend(mode):
            trainer, state = _trainer("wgan-gp", tmp_path=out, batch_size=16, g_width=8, d_width=8)
            for _ in range(3):
                trainer.train_step(state)
        return state

    fast, reference = train("auto", "1", tmp_path / "a"), train("ref", "0", tmp_path / "b")
    assert all(g["fused"] for g in fast.optimizers["D"].param_groups)
    assert not any(g["fused"] for g in reference.optimizers["D"].param_groups)
    for (name, a), (_, b) in zip(fast.nets.named_parameters(), reference.nets.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_adam_keeps_parameter_groups_given_as_generators():
    layer = torch.nn.Linear(4, 3)
    opt = adam([{"params": layer.parameters(), "lr": 1e-3}])
    assert len(opt.param_groups[0]["params"]) == 2 and opt.param_groups[0]["fused"]


def test_only_plain_fused_adam_skips_on_device(tmp_path):
    class MyAdam(torch.optim.Adam):
        def step(self, closure=None):  # a subclass that may ignore found_inf
            return super().step(closure)

    trainer, _ = _trainer("dcgan", tmp_path=tmp_path, batch_size=8, g_width=8, d_width=8)
    layer = torch.nn.Linear(2, 2)
    assert skips_on_device([adam(layer.parameters(), lr=1e-3)], trainer.precision)
    assert not skips_on_device([MyAdam(layer.parameters(), lr=1e-3, fused=True)], trainer.precision)
    assert not skips_on_device([torch.optim.Adam(layer.parameters(), lr=1e-3)], trainer.precision)


def test_a_subclass_generator_step_gets_real_data():
    class FeatureMatching(ganzoo.TwoPlayerVariant):
        name = "test-feature-matching"
        paper = summary = "test"

        def d_loss(self, real_scores, fake_scores):
            return fake_scores.mean() - real_scores.mean()

        def g_loss(self, fake_scores):
            return -fake_scores.mean()

        def generator_step(self, nets, batch):  # reads batch.real
            return super().generator_step(nets, batch)

    spec = ganzoo.create_dataset("digits").spec
    assert [p.uses_real for p in FeatureMatching(spec).phases(0)] == [True, True]
    assert [p.uses_real for p in ganzoo.create_variant("dcgan", spec).phases(0)] == [True, False]


def test_resume_from_torch_default_adam_into_fused_adam(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = ["train", "wgan-gp", "--dataset", "8gaussians", "--batch-size", "16", "--out", str(out), "--quiet"]
    monkeypatch.setenv("GANZOO_FUSED_ADAM", "0")  # as a checkpoint written before fused Adam
    assert main([*args, "--steps", "2"]) == 0
    monkeypatch.delenv("GANZOO_FUSED_ADAM")
    assert main(["train", "--resume", str(out), "--steps", "4", "--quiet"]) == 0
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 4
