"""The training toolkit: every option must change what it claims to change.

Each test is written so that it fails when an option is silently ignored:
values are checked against hand-computed numbers, shapes and dtypes are seen
from inside the critic (hooks), and bad settings are refused before anything
is written. Tiny nets (``g_width=8 d_width=8 nz=16``, ``toy_hidden=16``) and a
few steps keep the file fast on two CPU cores.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn.utils import parametrize

import ganzoo
from ganzoo.checkpoint import load_checkpoint
from ganzoo.cli import main
from ganzoo.data.base import Batch
from ganzoo.nets import MinibatchStdDev
from ganzoo.precision import Precision
from ganzoo.toolkit.diffaugment import diff_augment
from ganzoo.toolkit.ema import EMAFeature, update_ema
from ganzoo.toolkit.lr_schedule import scheduled_lr
from ganzoo.trainer import Trainer, TrainOptions
from ganzoo.variant import TrainState

TINY = {"g_width": 8, "d_width": 8, "nz": 16}
TINY_SET = [f"{k}={v}" for k, v in TINY.items()]
TOY = {"toy_hidden": 16}
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny nets gain nothing from intra-op threads; on two shared cores a second
    thread makes every op wait (conftest asks for up to 2), so use one here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- helpers ------------------------------------------------------------------
def _cli_train(out: Path, variant: str = "dcgan", *, steps: int = 4, dataset: str | None = None,
               sets: list[str] | tuple[str, ...] = (), extra: list[str] | tuple[str, ...] = ()) -> int:
    argv = ["train", variant, "--device", "cpu", "--steps", str(steps), "--batch-size", "16",
            "--out", str(out), "--quiet", "--sample-every", "0", "--ckpt-every", "0", *extra]
    if dataset is not None:
        argv += ["--dataset", dataset]
    if sets:
        argv += ["--set", *sets]  # last: --set takes every word after it
    return main(argv)


def _cli_resume(run: Path | str, steps: int, *extra: str) -> int:
    return main(["train", "--resume", str(run), "--steps", str(steps), "--device", "cpu", "--quiet",
                 "--sample-every", "0", "--ckpt-every", "0", *extra])


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _step_records(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in _metrics(run) if "event" not in r and "D/loss" in r}


def _assert_same_nets(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    assert set(a["nets"]) == set(b["nets"])
    for name, tensor in a["nets"].items():
        assert torch.equal(tensor, b["nets"][name]), name


def _variant(name: str, dataset: str, **hparams):
    spec = ganzoo.create_dataset(dataset).spec
    extra = TINY if spec.is_image else TOY
    return ganzoo.create_variant(name, spec, batch_size=16, **{**extra, **hparams}), spec


def _trainer(name: str, dataset: str, tmp_path: Path, precision: str | None = None, **hparams):
    data = ganzoo.create_dataset(dataset, seed=0)
    extra = TINY if data.spec.is_image else TOY
    variant = ganzoo.create_variant(name, data.spec, batch_size=16, **{**extra, **hparams})
    trainer = Trainer(variant, data, tmp_path / "unused",
                      TrainOptions(device="cpu", progress=False, precision=precision))
    return variant, trainer, trainer.setup()


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _weight_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]


# == 1. EMA ===================================================================
def test_update_ema_is_the_analytic_average_and_copies_buffers():
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = copy.deepcopy(source)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(torch.randn_like(p))
        source[1].running_mean.copy_(torch.randn(4))
        source[1].running_var.copy_(torch.rand(4) + 0.5)
        source[1].num_batches_tracked.fill_(7)
    old = _params(ema)
    new = _params(source)
    update_ema(ema, source, 0.9)
    for k, p in ema.named_parameters():
        torch.testing.assert_close(p, 0.9 * old[k] + 0.1 * new[k])
        assert not torch.equal(p, new[k])
    for (k, b), src in zip(ema.named_buffers(), source.buffers()):
        assert torch.equal(b, src), k  # buffers copied, not averaged
    update_ema(ema, source, 0.0)  # decay 0 copies
    for p, q in zip(ema.parameters(), source.parameters()):
        assert torch.equal(p, q)


def test_ema_feature_after_step_copies_until_ema_start_then_averages():
    variant = ganzoo.create_variant("dcgan", None, ema=0.75, ema_start=2)
    torch.manual_seed(0)
    g = nn.Linear(3, 2)
    nets = nn.ModuleDict({"G": g, "G_ema": nn.Linear(3, 2)})
    state = TrainState(nets, {}, step=1)
    feature = EMAFeature()
    feature.after_step(variant, state)  # step 1 <= ema_start: a copy
    for p, q in zip(nets["G_ema"].parameters(), g.parameters()):
        assert torch.equal(p, q)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    state.step = 2  # still <= ema_start
    feature.after_step(variant, state)
    for p, q in zip(nets["G_ema"].parameters(), g.parameters()):
        assert torch.equal(p, q)
    old = _params(nets["G_ema"])
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(-2.0)
    state.step = 3  # past ema_start: the average
    feature.after_step(variant, state)
    for k, p in nets["G_ema"].named_parameters():
        expected = 0.75 * old[k] + 0.25 * dict(g.named_parameters())[k].detach()
        torch.testing.assert_close(p, expected)


def test_ema_in_training_steps(tmp_path):
    variant, trainer, state = _trainer("dcgan", "digits", tmp_path, ema=0.9, ema_start=2)
    nets = state.nets
    assert "G_ema" in nets
    # G_ema starts as a copy of G, owned by no optimiser, and never requires grad.
    for p, q in zip(nets["G_ema"].parameters(), nets["G"].parameters()):
        assert torch.equal(p, q) and p is not q
    owned = {id(p) for opt in state.optimizers.values() for g in opt.param_groups for p in g["params"]}
    assert not owned & {id(p) for p in nets["G_ema"].parameters()}

    for _ in range(2):  # steps 1 and 2 <= ema_start: G_ema copies G
        trainer.train_step(state)
        for p, q in zip(nets["G_ema"].parameters(), nets["G"].parameters()):
            assert torch.equal(p, q)
    previous = _params(nets["G_ema"])
    trainer.train_step(state)  # step 3: the average
    assert state.step == 3
    g_now = _params(nets["G"])
    differs = False
    for k, p in nets["G_ema"].named_parameters():
        torch.testing.assert_close(p, 0.9 * previous[k] + 0.1 * g_now[k])
        differs |= not torch.equal(p, g_now[k])
        assert not p.requires_grad
    assert differs, "G_ema equals G after an averaged step"
    # BatchNorm statistics: copied from G.
    buffers = list(nets["G"].named_buffers())
    assert any("running_mean" in k for k, _ in buffers)
    for (k, b), (_, src) in zip(nets["G_ema"].named_buffers(), buffers):
        assert torch.equal(b, src), k
    assert not any(p.requires_grad for p in nets["G_ema"].parameters())
    # Sampling nets: G_ema stands in for G (a copy with its own BatchNorm statistics, below);
    # ema=False gives the plain nets.
    sampling = variant.sampling_nets(nets)
    for p, q in zip(sampling["G"].parameters(), nets["G_ema"].parameters()):
        assert torch.equal(p, q)
    assert variant.sampling_nets(nets, ema=False)["G"] is nets["G"]


def test_ema_generator_with_batchnorm_samples_with_its_own_standing_statistics():
    variant, spec = _variant("dcgan", "digits", ema=0.999)
    nets = variant.networks(spec)
    with torch.no_grad():  # make the averaged weights differ from G's
        for p in nets["G_ema"].parameters():
            p.mul_(1.5)
    nets.eval()
    stored = {k: b.clone() for k, b in nets["G_ema"].named_buffers()}
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = variant.sampling_nets(nets)
    assert torch.equal(torch.rand(3), before)  # the caller's random stream is untouched
    second = variant.sampling_nets(nets)
    g = first["G"]
    assert g is not nets["G_ema"] and not g.training  # a copy, in the caller's mode
    for k, b in nets["G_ema"].named_buffers():
        assert torch.equal(b, stored[k]), k  # the checkpointed copy keeps its buffers
    changed = False
    for (k, b), (_, b2) in zip(g.named_buffers(), second["G"].named_buffers()):
        assert torch.equal(b, b2), k  # deterministic
        changed |= "running_mean" in k and not torch.equal(b, stored[k])
    assert changed
    # The statistics are those of the EMA generator's own activations: in eval mode, its
    # first BatchNorm normalises its inputs to about zero mean and unit variance.
    first_bn = next(m for m in g.modules() if isinstance(m, nn.BatchNorm2d))
    seen = []
    hook = first_bn.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    with torch.no_grad():
        variant.generate(first, variant.latent(256, torch.device("cpu")))
    hook.remove()
    shape = (1, -1, 1, 1)
    normed = (seen[0] - first_bn.running_mean.view(shape)) / (first_bn.running_var.view(shape) + first_bn.eps).sqrt()
    assert normed.mean(dim=(0, 2, 3)).abs().max() < 0.2 and (normed.var(dim=(0, 2, 3)) - 1).abs().max() < 0.2
    # Nets without BatchNorm are swapped in as they are (no copy).
    plain, plain_spec = _variant("wgan-gp", "ring", ema=0.999)
    plain_nets = plain.networks(plain_spec)
    assert plain.sampling_nets(plain_nets)["G"] is plain_nets["G_ema"]


def test_ema_rampup_caps_the_half_life_at_a_share_of_the_steps():
    from ganzoo.toolkit.ema import ema_decay

    assert ema_decay(0.999, 0.0, 10) == 0.999  # no ramp-up
    assert ema_decay(0.999, 0.05, 0) == 0.0  # a copy at the start
    # step 100, ramp-up 0.05: half-life 5 steps; by step 100000 the decay's own 693 steps.
    assert ema_decay(0.999, 0.05, 100) == pytest.approx(0.5 ** (1 / 5))
    assert ema_decay(0.999, 0.05, 100_000) == pytest.approx(0.999)
    variant = ganzoo.create_variant("dcgan", None, ema=0.999, ema_rampup=0.05)
    g, shadow = nn.Linear(3, 2), nn.Linear(3, 2)
    nets = nn.ModuleDict({"G": g, "G_ema": shadow})
    old = _params(shadow)
    EMAFeature().after_step(variant, TrainState(nets, {}, step=100))
    beta = 0.5 ** (1 / 5)
    for k, p in shadow.named_parameters():
        torch.testing.assert_close(p, beta * old[k] + (1 - beta) * dict(g.named_parameters())[k].detach())


def test_g_ema_is_built_frozen():
    variant, spec = _variant("dcgan", "digits", ema=0.999)
    nets = variant.networks(spec)  # as ganzoo sample / eval build them, before any trainer
    assert set(nets) == {"G", "D", "G_ema"}
    assert all(p.requires_grad for p in nets["G"].parameters())
    assert not any(p.requires_grad for p in nets["G_ema"].parameters())
    optimizers = variant.optimizers_for(nets)
    owned = {id(p) for opt in optimizers.values() for g in opt.param_groups for p in g["params"]}
    assert not owned & {id(p) for p in nets["G_ema"].parameters()}
    assert owned >= {id(p) for p in nets["G"].parameters()}


def test_ema_off_adds_no_copy():
    variant, spec = _variant("dcgan", "digits")
    nets = variant.networks(spec)
    assert set(nets) == {"G", "D"}
    assert variant.sampling_nets(nets)["G"] is nets["G"]


def test_sample_uses_g_ema_and_no_ema_uses_g(tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli_train(run, steps=3, sets=[*TINY_SET, "ema=0.9"]) == 0
    capsys.readouterr()
    with_ema, without = tmp_path / "ema.png", tmp_path / "plain.png"
    assert main(["sample", str(run), "--n", "16", "--seed", "3", "--out", str(with_ema)]) == 0
    assert "(EMA generator)" in capsys.readouterr().out
    assert main(["sample", str(run), "--n", "16", "--seed", "3", "--no-ema", "--out", str(without)]) == 0
    assert "(EMA generator)" not in capsys.readouterr().out
    a, b = np.asarray(Image.open(with_ema)), np.asarray(Image.open(without))
    assert a.shape == b.shape and not np.array_equal(a, b)

    # The API: ema=False samples G itself, ema=True G_ema; rebuilt independently here.
    payload = load_checkpoint(run)
    variant = ganzoo.create_variant("dcgan", ganzoo.create_dataset("digits").spec, **payload["config"]["hparams"])
    plain = variant.build(variant.spec)  # no toolkit: just G and D
    for name in ("G", "G_ema"):
        state = {k[len(name) + 1:]: v for k, v in payload["nets"].items() if k.startswith(name + ".")}
        net = copy.deepcopy(plain["G"])
        net.load_state_dict(state)
        if name == "G_ema":  # BatchNorm in G: sampled with the EMA weights' standing statistics
            from ganzoo.toolkit.ema import recalibrate_batch_norm

            recalibrate_batch_norm(variant, nn.ModuleDict({"G": net}), [net])
        net.eval()
        torch.manual_seed(5)
        with torch.no_grad():
            direct = net(torch.randn(8, 16))
        got = ganzoo.sample(run, n=8, seed=5, ema=(name == "G_ema"))
        assert torch.equal(got, direct), name
    assert not torch.equal(ganzoo.sample(run, n=8, seed=5), ganzoo.sample(run, n=8, seed=5, ema=False))


# == 2. LR schedules ===========================================================
# lr_g=1e-3, lr_d=4e-4, lr_final=1e-5, steps=10, lr_warmup=2; computed by hand:
# warm-up: base * (s + 1) / 2; then p = (s - 2) / 8,
# linear: final + (base - final) * (1 - p); cosine: final + (base - final) * (1 + cos(pi p)) / 2.
EXPECTED_LR = {
    "linear": {0: (5e-4, 2e-4), 1: (1e-3, 4e-4), 2: (1e-3, 4e-4), 3: (8.7625e-4, 3.5125e-4),
               6: (5.05e-4, 2.05e-4), 9: (1.3375e-4, 5.875e-5)},
    "cosine": {0: (5e-4, 2e-4), 1: (1e-3, 4e-4), 2: (1e-3, 4e-4),
               3: (9.623203686e-4, 3.851565088e-4),  # cos(pi/8) = 0.9238795325
               6: (5.05e-4, 2.05e-4),
               8: (1.549821433e-4, 6.711417767e-5)},  # cos(3 pi/4) = -0.7071067812
    "constant": {0: (5e-4, 2e-4), 1: (1e-3, 4e-4), 2: (1e-3, 4e-4), 5: (1e-3, 4e-4), 9: (1e-3, 4e-4)},
}


@pytest.mark.parametrize("schedule", sorted(EXPECTED_LR))
def test_scheduled_lr_hand_values(schedule):
    for step, (g, d) in EXPECTED_LR[schedule].items():
        assert scheduled_lr(1e-3, 1e-5, step, 10, schedule, 2) == pytest.approx(g, rel=1e-9, abs=0), step
        assert scheduled_lr(4e-4, 1e-5, step, 10, schedule, 2) == pytest.approx(d, rel=1e-9, abs=0), step
    # Without warm-up the first step is at the base rate.
    assert scheduled_lr(1e-3, 0.0, 0, 10, schedule, 0) == pytest.approx(1e-3)
    if schedule == "linear":  # no warm-up, no final: base * (1 - s / steps)
        assert scheduled_lr(1e-3, 0.0, 5, 10, schedule, 0) == pytest.approx(5e-4)


@pytest.mark.parametrize("schedule", sorted(EXPECTED_LR))
def test_trainer_sets_each_optimisers_lr(schedule, tmp_path):
    _, trainer, state = _trainer("vanilla", "8gaussians", tmp_path, steps=10, lr_g=1e-3, lr_d=4e-4,
                                 lr_schedule=schedule, lr_warmup=2, lr_final=1e-5)
    for step in range(10):
        stats = trainer.train_step(state)
        if step in EXPECTED_LR[schedule]:
            g, d = EXPECTED_LR[schedule][step]
            for key, want in (("G", g), ("D", d)):
                for group in state.optimizers[key].param_groups:
                    assert group["lr"] == pytest.approx(want, rel=1e-9), (step, key)
                assert float(stats[f"lr/{key}"][0]) == pytest.approx(want, rel=1e-6)


def test_lr_schedule_off_keeps_the_base_rate(tmp_path):
    _, trainer, state = _trainer("vanilla", "8gaussians", tmp_path, steps=4, lr_g=1e-3, lr_d=4e-4)
    for _ in range(3):
        stats = trainer.train_step(state)
        assert state.optimizers["G"].param_groups[0]["lr"] == 1e-3
        assert state.optimizers["D"].param_groups[0]["lr"] == 4e-4
        assert not any(k.startswith("lr/") for k in stats)


# steps=5, lr_warmup=1, linear to 0, lr_g=1e-3, lr_d=5e-4: factors 1, 1, 3/4, 1/2, 1/4.
LR_5 = [(1e-3, 5e-4), (1e-3, 5e-4), (7.5e-4, 3.75e-4), (5e-4, 2.5e-4), (2.5e-4, 1.25e-4)]


def test_lr_in_metrics_and_resume_raising_steps(tmp_path):
    run = tmp_path / "run"
    sets = ["toy_hidden=16", "lr_g=1e-3", "lr_d=5e-4", "lr_schedule=linear", "lr_warmup=1"]
    assert _cli_train(run, "vanilla", steps=5, dataset="8gaussians", sets=sets, extra=["--log-every", "1"]) == 0
    records = _step_records(run)
    assert sorted(records) == [1, 2, 3, 4, 5]
    for k, (g, d) in enumerate(LR_5, start=1):  # the record of step k holds 0-based step k - 1
        assert records[k]["lr/G"] == pytest.approx(g, rel=1e-6), k
        assert records[k]["lr/D"] == pytest.approx(d, rel=1e-6), k

    # Raising --steps: the decay is stretched over the new length from the resume step.
    assert _cli_resume(run, 8, "--log-every", "1") == 0
    assert load_checkpoint(run)["step"] == 8
    records = _step_records(run)
    assert sorted(records)[-3:] == [6, 7, 8]
    # steps=8, warm-up 1: p = (s - 1) / 7 at s = 5, 6, 7 -> 1 - p = 3/7, 2/7, 1/7.
    for k, frac in ((6, 3 / 7), (7, 2 / 7), (8, 1 / 7)):
        assert records[k]["lr/G"] == pytest.approx(1e-3 * frac, rel=1e-6), k
        assert records[k]["lr/D"] == pytest.approx(5e-4 * frac, rel=1e-6), k


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_resume_mid_run_continues_the_schedule_exactly(schedule, tmp_path):
    straight = tmp_path / "straight"
    sets = [*TINY_SET, f"lr_schedule={schedule}", "lr_warmup=1", "lr_final=1e-5"]
    assert _cli_train(straight, steps=6, sets=sets, extra=["--ckpt-every", "3", "--keep", "0", "--log-every", "1"]) == 0
    # A run stopped after step 3 of 6: the straight run's folder as it was then.
    stopped = tmp_path / "stopped"
    shutil.copytree(straight, stopped)
    (stopped / "checkpoints" / "step-0000006.pt").unlink()
    assert _cli_resume(stopped / "checkpoints" / "step-0000003.pt", 6, "--log-every", "1") == 0
    _assert_same_nets(load_checkpoint(straight / "checkpoints" / "step-0000006.pt"),
                      load_checkpoint(stopped / "checkpoints" / "step-0000006.pt"))
    a, b = _step_records(straight), _step_records(stopped)
    for k in (4, 5, 6):
        assert a[k]["lr/G"] == b[k]["lr/G"] and a[k]["lr/D"] == b[k]["lr/D"]
    assert a[6]["lr/G"] < a[4]["lr/G"]  # it does decay


# == 3. Label smoothing =========================================================
@pytest.mark.parametrize("name", ["vanilla", "dcgan", "cgan"])
def test_label_smoothing_d_loss_hand_formula(name):
    variant = ganzoo.create_variant(name, None, label_smoothing=0.9)
    g = torch.Generator().manual_seed(0)
    r, f = torch.randn(32, generator=g) * 3, torch.randn(32, generator=g) * 3
    sp = nn.functional.softplus
    expected = (0.9 * sp(-r) + 0.1 * sp(r)).mean() + sp(f).mean()
    got = variant.d_loss(r, f)
    torch.testing.assert_close(got, expected)
    # The same as BCE with a 0.9 target for real and 0 for fake.
    bce = (nn.functional.binary_cross_entropy_with_logits(r, torch.full_like(r, 0.9))
           + nn.functional.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))
    torch.testing.assert_close(got, bce)
    plain = ganzoo.create_variant(name, None).d_loss(r, f)
    torch.testing.assert_close(plain, sp(-r).mean() + sp(f).mean())
    assert not torch.allclose(got, plain)


@pytest.mark.parametrize("name", ["wgan-gp", "lsgan"])
def test_label_smoothing_refused_where_there_are_no_labels(name, tmp_path):
    with pytest.raises(ganzoo.GanzooError, match="label_smoothing") as info:
        ganzoo.create_variant(name, None, label_smoothing=0.9)
    assert "\n" not in str(info.value)
    out = tmp_path / "api"
    with pytest.raises(ganzoo.GanzooError, match="label_smoothing"):
        ganzoo.train(name, "digits", out=out, hparams={"label_smoothing": 0.9, "steps": 1},
                     options=TrainOptions(device="cpu", progress=False))
    assert not out.exists()


# == 4. Spectral norm ===========================================================
@pytest.mark.parametrize("name, dataset", [("dcgan", "digits"), ("vanilla", "8gaussians"), ("lsgan", "digits")])
def test_spectral_norm_gives_unit_singular_values_in_d_only(name, dataset):
    variant, spec = _variant(name, dataset, d_spectral_norm=True, sn_power_iterations=10)
    nets = variant.networks(spec)
    d_layers = _weight_layers(nets["D"])
    assert d_layers and all(parametrize.is_parametrized(m, "weight") for m in d_layers)
    assert not any(parametrize.is_parametrized(m) for m in nets["G"].modules())
    nets.train()
    for _ in range(5):  # power iterations run in training-mode forward passes
        nets["D"](torch.randn(16, *spec.shape))
    for layer in d_layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=5e-3)
    for layer in _weight_layers(nets["G"]):  # G keeps its raw weights
        assert not parametrize.is_parametrized(layer)
    # The power-iteration vectors are buffers: in the state dict, so checkpointed.
    keys = nets.state_dict().keys()
    for tag in ("_u", "_v"):
        assert sum(k.startswith("D.") and k.endswith(f"parametrizations.weight.0.{tag}") for k in keys) == len(d_layers)
    # Off: no parametrisation, and a raw weight is not unit-normalised.
    plain_variant, _ = _variant(name, dataset)
    plain = plain_variant.networks(spec)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


def test_spectral_norm_vectors_are_in_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert _cli_train(run, steps=2, sets=[*TINY_SET, "d_spectral_norm=true"]) == 0
    nets = load_checkpoint(run)["nets"]
    us = [k for k in nets if k.startswith("D.") and k.endswith("parametrizations.weight.0._u")]
    assert len(us) == 3  # two convs and the head of the 28x28 critic


@pytest.mark.parametrize("plugin_sn", [True, False])
def test_hinge_plugin_is_not_double_normalised(plugin_sn):
    assert "hinge" in ganzoo.list_variants()
    variant, spec = _variant("hinge", "digits", d_spectral_norm=True, spectral_norm=plugin_sn)
    nets = variant.networks(spec)
    layers = _weight_layers(nets["D"])
    assert layers
    for layer in layers:
        assert parametrize.is_parametrized(layer, "weight")
        assert len(layer.parametrizations.weight) == 1
    nets.train()
    for _ in range(20):
        nets["D"](torch.randn(8, *spec.shape))
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=2e-2)


# == 5. R1 ===================================================================
def _hand_r1(critic: nn.Module, real: torch.Tensor, weight: float) -> torch.Tensor:
    x = real.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x)
    return weight * grad.flatten(1).pow(2).sum(1).mean()


@pytest.mark.parametrize("name, dataset", [("dcgan", "8gaussians"), ("wgan-gp", "digits")])
def test_r1_term_matches_the_hand_gradient(name, dataset):
    variant, spec = _variant(name, dataset, r1_gamma=2.0)
    torch.manual_seed(0)
    nets = variant.networks(spec)
    real = torch.randn(16, *spec.shape).clamp(-1, 1)
    batch = Batch(real)
    expected = _hand_r1(nets["D"], real, 3.0)
    torch.manual_seed(1)
    loss, stats = variant.discriminator_step(nets, batch, r1_weight=3.0)
    torch.testing.assert_close(stats["r1"].detach(), expected.detach(), rtol=1e-4, atol=1e-7)
    assert expected.item() > 0
    torch.manual_seed(1)
    base, base_stats = variant.discriminator_step(nets, batch)
    assert "r1" not in base_stats
    torch.testing.assert_close((loss - base).detach(), expected.detach(), rtol=1e-4, atol=1e-6)


def test_r1_phases_lazy_every_n_with_weight_gamma_over_2_times_n():
    variant, spec = _variant("dcgan", "8gaussians", r1_gamma=3.0, r1_every=4)
    torch.manual_seed(0)
    nets = variant.networks(spec)
    batch = Batch(torch.randn(16, 2))
    expected = _hand_r1(nets["D"], batch.real, 3.0 / 2 * 4)
    for step in range(9):
        phases = variant.phases(step)
        critic = [p for p in phases if p.name == "D"][0]
        _, stats = critic.loss(nets, batch)
        if step % 4 == 0:
            assert "r1" in stats, step
            torch.testing.assert_close(stats["r1"].detach(), expected.detach(), rtol=1e-4, atol=1e-7)
        else:
            assert "r1" not in stats, step
    every_step, _ = _variant("dcgan", "8gaussians", r1_gamma=3.0)
    _, stats = every_step.phases(5)[0].loss(nets, batch)
    torch.testing.assert_close(stats["r1"].detach(), (expected / 4).detach(), rtol=1e-4, atol=1e-7)


def test_r1_in_training_steps_only_when_due(tmp_path):
    _, trainer, state = _trainer("dcgan", "8gaussians", tmp_path, r1_gamma=1.0, r1_every=2)
    due = []
    for step in range(4):
        stats = trainer.train_step(state)
        if "D/r1" in stats:
            due.append(step)
            assert float(stats["D/r1"][0]) > 0
    assert due == [0, 2]


# == 6. Pack =================================================================
def test_pack_images_critic_sees_packed_shape():
    variant, spec = _variant("dcgan", "digits", pack=2)
    nets = variant.networks(spec)
    first = nets["D"].body[0]
    assert isinstance(first, nn.Conv2d) and first.in_channels == 2
    seen = []
    first.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    x = torch.randn(16, *spec.shape)
    assert nets["D"](x).shape == (8,)
    torch.manual_seed(0)
    _, stats = variant.discriminator_step(nets, Batch(x))
    _, _ = variant.generator_step(nets, Batch(x))
    assert seen and all(s == (8, 2, 28, 28) for s in seen), seen


def test_pack_vectors_concatenates_consecutive_samples():
    variant, spec = _variant("vanilla", "8gaussians", pack=4)
    nets = variant.networks(spec)
    first = nets["D"].body[0]
    assert isinstance(first, nn.Linear) and first.in_features == 8
    seen = []
    first.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    x = torch.randn(16, 2)
    assert nets["D"](x).shape == (4,)
    assert seen[0].shape == (4, 8)
    torch.testing.assert_close(seen[0][0], torch.cat([x[0], x[1], x[2], x[3]]))
    torch.testing.assert_close(seen[0][3], torch.cat([x[12], x[13], x[14], x[15]]))


def test_pack_errors():
    spec = ganzoo.create_dataset("digits").spec
    with pytest.raises(ganzoo.GanzooError, match="pack=3 does not divide batch_size 16"):
        ganzoo.create_variant("dcgan", spec, batch_size=16, pack=3)
    with pytest.raises(ganzoo.GanzooError, match="conditional"):
        ganzoo.create_variant("cgan", spec, batch_size=16, pack=2)
    with pytest.raises(ganzoo.GanzooError, match="pack must be >= 1"):
        ganzoo.create_variant("dcgan", spec, pack=0)


# == 7. Minibatch standard deviation ============================================
def test_minibatch_stddev_layer_by_hand():
    # (N=4, C=1, H=1, W=2); group 2: sample n is in group n % 2, i.e. {0, 2} and {1, 3}.
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 4.0], [1.0, 1.0]]).view(4, 1, 1, 2)
    y = MinibatchStdDev(2)(x)
    assert y.shape == (4, 2, 1, 2)
    assert torch.equal(y[:, :1], x)
    # Group {0, 2}: per-feature std (population) |0-2|/2 = 1 and |0-4|/2 = 2, averaged: 1.5.
    # Group {1, 3}: identical samples: sqrt(0 + 1e-8) = 1e-4.
    expected = torch.tensor([1.5, 1e-4, 1.5, 1e-4]).view(4, 1, 1, 1).expand(4, 1, 1, 2)
    torch.testing.assert_close(y[:, 1:], expected, rtol=1e-4, atol=1e-6)
    # A group larger than the batch uses the whole batch.
    assert MinibatchStdDev(8)(x).shape == (4, 2, 1, 2)


def test_minibatch_std_couples_samples_in_the_conv_critic():
    variant, spec = _variant("dcgan", "digits", minibatch_std=2)
    nets = variant.networks(spec)
    assert sum(isinstance(m, MinibatchStdDev) for m in nets["D"].modules()) == 1
    plain_variant, _ = _variant("dcgan", "digits")
    plain = plain_variant.networks(spec)
    assert not any(isinstance(m, MinibatchStdDev) for m in plain["D"].modules())
    nets.eval(), plain.eval()  # eval: BatchNorm no longer couples samples
    torch.manual_seed(0)
    x = torch.randn(4, *spec.shape)
    x2 = x.clone()
    x2[2] += 1.0  # sample 2 is sample 0's group mate (groups n % 2)
    with torch.no_grad():
        assert nets["D"](x)[0] != nets["D"](x2)[0]
        assert plain["D"](x)[0] == plain["D"](x2)[0]


def test_minibatch_std_refused_without_a_conv_critic():
    for name, dataset, extra in [("dcgan", "digits", {"arch": "mlp"}), ("vanilla", "digits", {}),
                                 ("dcgan", "8gaussians", {})]:
        variant, spec = _variant(name, dataset, minibatch_std=4, **extra)
        with pytest.raises(ganzoo.GanzooError, match="minibatch_std needs a conv critic"):
            variant.networks(spec)


# == 8. DiffAugment ===========================================================
def test_diffaug_applies_to_real_and_fake_in_training_only():
    variant, spec = _variant("dcgan", "digits", diffaug="color,translation,cutout")
    nets = variant.networks(spec)
    raw, inner = [], []
    nets["D"].register_forward_pre_hook(lambda m, args: raw.append(args[0].detach().clone()), prepend=True)
    nets["D"].body[0].register_forward_pre_hook(lambda m, args: inner.append(args[0].detach().clone()))
    nets.train()
    torch.manual_seed(0)
    real = ganzoo.create_dataset("digits", seed=0).prepare(CPU).sample(16).real
    variant.discriminator_step(nets, Batch(real))
    assert len(raw) == len(inner) == 2  # real, then fake
    assert torch.equal(raw[0], real)
    for before, after in zip(raw, inner):
        assert before.shape == after.shape
        assert not torch.equal(before, after)
    raw.clear(), inner.clear()
    nets.eval()
    with torch.no_grad():
        nets["D"](real)
    assert torch.equal(raw[0], inner[0])
    # Off: the critic sees its input unchanged in training mode too.
    plain_variant, _ = _variant("dcgan", "digits")
    plain = plain_variant.networks(spec).train()
    seen = []
    plain["D"].body[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    plain["D"](real)
    assert torch.equal(seen[0], real)


def test_diffaug_augments_each_sample_before_packing():
    # cutout on a constant image: the zeros mark each sample's own square. Augmenting
    # after packing would cut the same square out of both samples of a pack.
    variant, spec = _variant("dcgan", "digits", diffaug="cutout", pack=2)
    nets = variant.networks(spec).train()
    seen = []
    nets["D"].body[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    torch.manual_seed(0)
    nets["D"](torch.full((16, *spec.shape), 0.5))
    packed = seen[0]
    assert packed.shape == (8, 2, 28, 28)
    holes = packed == 0
    assert holes.any(dim=(2, 3)).all()  # every sample got a cut
    assert not torch.equal(holes[:, 0], holes[:, 1])


def test_diffaug_in_the_critic_is_differentiable():
    variant, spec = _variant("dcgan", "digits", diffaug="color,translation,cutout")
    nets = variant.networks(spec).train()
    x = torch.rand(16, *spec.shape).mul(2).sub(1).requires_grad_(True)
    nets["D"](x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_each_policy(policy):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(8, 3, 16, 16, generator=g) * 2 - 1).requires_grad_(True)
    torch.manual_seed(1)
    a = diff_augment(x, policy)
    torch.manual_seed(1)
    b = diff_augment(x, policy)
    assert torch.equal(a, b)  # deterministic under a seed
    assert a.shape == x.shape and not torch.equal(a, x)
    torch.manual_seed(2)
    assert not torch.equal(diff_augment(x, policy), a)  # random per draw
    a.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_diffaug_errors():
    spec = ganzoo.create_dataset("digits").spec
    with pytest.raises(ganzoo.GanzooError, match="unknown DiffAugment policy 'colour'") as info:
        ganzoo.create_variant("dcgan", spec, diffaug="colour")
    assert "color" in str(info.value)  # says what is allowed
    with pytest.raises(ValueError, match="colour"):
        diff_augment(torch.zeros(2, 1, 4, 4), "colour")
    with pytest.raises(ganzoo.GanzooError, match="diffaug augments images"):
        ganzoo.create_variant("dcgan", ganzoo.create_dataset("8gaussians").spec, diffaug="color")


# == 9. Precision =============================================================
@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)],
                         ids=["bf16", "fp32"])
def test_precision_autocast_inside_the_losses(precision, dtype, tmp_path):
    _, trainer, state = _trainer("wgan-gp", "digits", tmp_path, precision=precision, n_critic=1)
    seen = []

    def hook(module, args, output):
        seen.append((torch.is_autocast_enabled("cpu"), output.dtype))

    state.nets["D"].body[0].register_forward_hook(hook)
    stats = trainer.train_step(state)
    assert seen
    if precision == "bf16":
        assert all(enabled for enabled, _ in seen), seen
    else:
        assert not any(enabled for enabled, _ in seen), seen
    assert all(d == dtype for _, d in seen), seen
    assert all(math.isfinite(float(v)) for vs in stats.values() for v in vs)
    # Parameters stay fp32.
    assert all(p.dtype == torch.float32 for p in state.nets.parameters())


def test_precision_bf16_autocast_dtype_seen_from_the_critic(tmp_path):
    _, trainer, state = _trainer("dcgan", "digits", tmp_path, precision="bf16")
    seen = []
    state.nets["D"].register_forward_pre_hook(
        lambda m, args: seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))))
    trainer.train_step(state)
    assert seen and all(s == (True, torch.bfloat16) for s in seen), seen
    assert not torch.is_autocast_enabled("cpu")  # switched off again after the loss


def test_fp16_refused_on_cpu():
    with pytest.raises(ganzoo.GanzooError, match="fp16 needs a CUDA device"):
        Precision("fp16", CPU)


def test_bf16_wgan_gp_stays_finite(tmp_path):
    run = tmp_path / "run"
    assert _cli_train(run, "wgan-gp", steps=3, sets=TINY_SET, extra=["--precision", "bf16", "--log-every", "1"]) == 0
    assert json.loads((run / "config.json").read_text())["options"]["precision"] == "bf16"
    records = _step_records(run)
    assert sorted(records) == [1, 2, 3]
    for record in records.values():
        for key in ("D/loss", "D/gp", "G/loss"):
            assert math.isfinite(record[key]), key
    for name, tensor in load_checkpoint(run)["nets"].items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), name


# == 10. Bad input ============================================================
BAD = [
    (["dcgan", "--set", "ema=1.0"], "ema must be in [0, 1)"),
    (["dcgan", "--set", "ema=-0.1"], "ema must be in [0, 1)"),
    (["dcgan", "--set", "ema=0.9", "ema_start=-1"], "ema_start must be >= 0"),
    (["dcgan", "--set", "pack=3"], "pack=3 does not divide batch_size 16"),
    (["cgan", "--set", "pack=2"], "pack does not apply to the conditional variant"),
    (["dcgan", "--set", "diffaug=colour"], "unknown DiffAugment policy 'colour'"),
    (["dcgan", "--dataset", "8gaussians", "--set", "diffaug=color"], "diffaug augments images"),
    (["wgan-gp", "--set", "label_smoothing=0.9"], "label_smoothing does not apply to variant 'wgan-gp'"),
    (["lsgan", "--set", "label_smoothing=0.9"], "label_smoothing does not apply to variant 'lsgan'"),
    (["dcgan", "--set", "label_smoothing=1.5"], "label_smoothing must be in (0, 1]"),
    (["dcgan", "--set", "minibatch_std=4", "arch=mlp"], "minibatch_std needs a conv critic"),
    (["vanilla", "--dataset", "8gaussians", "--set", "minibatch_std=4"], "minibatch_std needs a conv critic"),
    (["dcgan", "--precision", "fp16"], "--precision fp16 needs a CUDA device"),
    (["dcgan", "--set", "lr_schedule=step"], "unknown lr_schedule 'step'"),
    (["dcgan", "--set", "lr_schedule=linear", "lr_warmup=4"], "lr_warmup must be >= 0 and below steps"),
    (["dcgan", "--set", "d_spectral_norm=true", "sn_power_iterations=0"], "sn_power_iterations must be >= 1"),
    (["dcgan", "--set", "r1_gamma=-1"], "r1_gamma must be >= 0"),
    (["dcgan", "--set", "r1_gamma=1", "r1_every=0"], "r1_every must be >= 1"),
    # A secondary option of a feature that is off would do nothing: refused, naming the main one.
    (["dcgan", "--set", "r1_every=4"], "r1_every=4 has no effect while r1 is off; also set r1_gamma"),
    (["dcgan", "--set", "ema_start=3"], "ema_start=3 has no effect while ema is off; also set ema"),
    (["dcgan", "--set", "ema_rampup=0.05"], "ema_rampup=0.05 has no effect while ema is off; also set ema"),
    (["dcgan", "--set", "ema=0.999", "ema_rampup=2"], "ema_rampup must be in [0, 1]"),
    (["dcgan", "--set", "lr_final=0.001"], "lr_final=0.001 has no effect while lr_schedule is off"),
    (["dcgan", "--set", "sn_power_iterations=2"], "has no effect while d_spectral_norm is off"),
    (["dcgan", "--set", "diffaug=,"], "diffaug: no policy in ','"),
    (["dcgan", "--set", "diffaug=color,,cutout"], "has an empty or repeated entry"),
    (["dcgan", "--set", "diffaug=color,color"], "has an empty or repeated entry"),
    (["dcgan", "--set", "ema=0.9", "ema_start=4"], "ema_start must be >= 0 and below steps (4)"),
    (["dcgan", "--set", "lr_schedule=linear", "lr_decay_start=9"], "lr_decay_start must be >= 0 and below steps"),
    (["dcgan", "--set", "lr_decay_start=2"], "lr_decay_start=2 has no effect while lr_schedule is off"),
    # pggan's default ramp-up does not block turning EMA off; a ramp-up the user sets does.
    (["pggan", "--set", "ema=0", "ema_rampup=0.1"], "ema_rampup=0.1 has no effect while ema is off"),
]


def test_turning_a_feature_off_keeps_the_variants_own_secondary_defaults():
    spec = ganzoo.create_dataset("digits").spec
    variant = ganzoo.create_variant("pggan", spec, ema=0.0)  # pggan's default ema_rampup is 0.05
    assert variant.hparams["ema"] == 0.0 and "ema" not in [f.name for f in variant.toolkit.active]


@pytest.mark.parametrize("argv, message", BAD, ids=[f"{a[0]}-{a[-1]}" for a, _ in BAD])
def test_bad_toolkit_input_is_one_line_exit_2_nothing_written(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    variant, rest = argv[0], argv[1:]
    sets_at = rest.index("--set") if "--set" in rest else len(rest)
    full = ["train", variant, "--device", "cpu", "--steps", "4", "--batch-size", "16", "--out", str(out),
            "--quiet", *rest[:sets_at], *rest[sets_at:]]
    assert main(full) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganzoo: error:"), err
    assert message in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# == 11. Exact resume with each option =========================================
RESUME_CASES = {
    "ema": ("dcgan", "digits", ["ema=0.9", "ema_start=1"], []),
    "lr_warmup": ("dcgan", "digits", ["lr_schedule=constant", "lr_warmup=1"], []),
    "label_smoothing": ("dcgan", "digits", ["label_smoothing=0.9"], []),
    "spectral_norm": ("dcgan", "digits", ["d_spectral_norm=true", "sn_power_iterations=2"], []),
    "r1": ("dcgan", "digits", ["r1_gamma=1", "r1_every=2"], []),
    "pack": ("dcgan", "digits", ["pack=2"], []),
    "minibatch_std": ("dcgan", "digits", ["minibatch_std=4"], []),
    "diffaug": ("dcgan", "digits", ["diffaug=color,translation,cutout"], []),
    "bf16": ("wgan-gp", "digits", ["n_critic=2"], ["--precision", "bf16"]),
    "all-images": ("dcgan", "digits", ["ema=0.5", "lr_schedule=constant", "lr_warmup=1", "label_smoothing=0.9",
                                       "d_spectral_norm=true", "r1_gamma=1", "r1_every=2", "pack=2",
                                       "minibatch_std=2", "diffaug=color,translation,cutout"], ["--precision", "bf16"]),
    "all-vectors": ("vanilla", "8gaussians", ["ema=0.5", "label_smoothing=0.9", "d_spectral_norm=true",
                                              "r1_gamma=1", "pack=2"], []),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_bit_identical_with_each_option(case, tmp_path):
    variant, dataset, sets, extra = RESUME_CASES[case]
    sets = [*(TINY_SET if dataset == "digits" else ["toy_hidden=16"]), *sets]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert _cli_train(straight, variant, steps=4, dataset=dataset, sets=sets, extra=extra) == 0
    assert _cli_train(stopped, variant, steps=2, dataset=dataset, sets=sets, extra=extra) == 0
    assert _cli_resume(stopped, 4) == 0
    a, b = load_checkpoint(straight), load_checkpoint(stopped)
    assert a["step"] == b["step"] == 4
    _assert_same_nets(a, b)
    assert set(a["optimizers"]) == set(b["optimizers"])
    for key in a["optimizers"]:
        for sa, sb in zip(a["optimizers"][key]["state"].values(), b["optimizers"][key]["state"].values()):
            assert all(torch.equal(sa[k], sb[k]) for k in sa), key
    assert json.loads((stopped / "config.json").read_text())["hparams"] == \
        json.loads((straight / "config.json").read_text())["hparams"]


# == 12. ganzoo list --json ===================================================
TOOLKIT_OPTIONS = {"ema", "ema_start", "ema_rampup", "lr_schedule", "lr_warmup", "lr_final", "d_spectral_norm",
                   "sn_power_iterations", "r1_gamma", "r1_every", "pack", "minibatch_std", "diffaug"}


def test_list_json_shows_toolkit_options(capsys):
    assert main(["list", "--json"]) == 0
    variants = {v["name"]: v for v in json.loads(capsys.readouterr().out)["variants"]}
    for name in ("dcgan", "vanilla", "cgan", "lsgan", "wgan-gp"):
        hp = variants[name]["hparams"]
        assert TOOLKIT_OPTIONS <= set(hp), (name, TOOLKIT_OPTIONS - set(hp))
        # cgan samples from an EMA copy by default on images (issue 14's evidence); the others do not.
        assert hp["ema"] == (0.999 if name == "cgan" else 0.0) and hp["pack"] == 1 and hp["lr_schedule"] == "constant"
    assert variants["cgan"]["vector_hparams"]["ema"] == 0.0
    for name in ("dcgan", "vanilla", "cgan"):
        assert variants[name]["hparams"]["label_smoothing"] == 1.0
        assert "label_smoothing" in variants[name]["features"]
    for name in ("wgan-gp", "lsgan"):
        assert "label_smoothing" not in variants[name]["hparams"]
        assert "label_smoothing" not in variants[name]["features"]


# == 13. fp16's code path, exercised on the CPU ================================
# The CLI refuses fp16 on a CPU (slow, and not what a user wants); the code path
# (grad scaler, its checkpointed state, the scaled inner gradient of penalties)
# is the same on CUDA, so these tests lift the refusal to run it here.
@pytest.fixture
def fp16_on_cpu(monkeypatch):
    import ganzoo.precision
    import ganzoo.runs

    monkeypatch.setattr(ganzoo.precision, "check_precision", lambda precision, device: None)
    monkeypatch.setattr(ganzoo.runs, "check_precision", lambda precision, device: None)


def test_fp16_wgan_gp_is_finite_and_resumes_exactly_with_the_scaler_state(tmp_path, fp16_on_cpu):
    hp = {**TINY, "batch_size": 16, "d_spectral_norm": True}
    opts = dict(device="cpu", progress=False, sample_every=0, ckpt_every=0, log_every=1, precision="fp16")
    straight = ganzoo.train("wgan-gp", "digits", out=tmp_path / "straight", hparams={**hp, "steps": 4},
                            options=TrainOptions(**opts))
    assert all(math.isfinite(v) for v in straight.last_metrics.values())
    saved = load_checkpoint(tmp_path / "straight")
    assert saved["precision"]["precision"] == "fp16" and "scale" in saved["precision"]["scaler"]
    ganzoo.train("wgan-gp", "digits", out=tmp_path / "stopped", hparams={**hp, "steps": 2},
                 options=TrainOptions(**opts))
    from ganzoo.runs import resume

    resume(tmp_path / "stopped", hparams={"steps": 4}, options=TrainOptions(**{**opts, "precision": None}))
    resumed = load_checkpoint(tmp_path / "stopped")
    assert resumed["precision"] == saved["precision"]  # the run's own precision and the scaler state
    _assert_same_nets(saved, resumed)


def test_penalty_inner_gradient_survives_fp16_at_the_loss_scale():
    """A critic whose input gradient (about 1e-8) underflows in fp16 gives a zero R1
    norm unless the inner gradient is taken at the loss scale, as gradient_penalty
    does under fp16 (PyTorch's AMP recipe for gradient penalties)."""
    import ganzoo.precision
    from ganzoo.ops import gradient_penalty

    critic = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        for layer in critic:
            layer.weight.fill_(5e-5)  # representable in fp16; their product underflows
    real = torch.randn(6, 4)
    _, expected = gradient_penalty(lambda x: critic(x).squeeze(1), real, None, weight=1.0, center=0.0)
    norms = {}
    for scale in (1.0, 2.0**10):
        ganzoo.precision._active_scale[0] = scale
        try:
            with torch.autocast("cpu", dtype=torch.float16):
                _, norms[scale] = gradient_penalty(lambda x: critic(x).squeeze(1), real, None, weight=1.0,
                                                   center=0.0)
        finally:
            ganzoo.precision._active_scale[0] = 1.0
    assert expected.min() > 1e-9
    assert torch.all(norms[1.0] == 0)  # underflowed: what an unscaled fp16 penalty sees
    torch.testing.assert_close(norms[2.0**10], expected, rtol=3e-2, atol=0)


def test_fp16_overflow_is_skipped_and_halves_the_scale_until_it_is_divergence():
    precision = Precision.__new__(Precision)  # an fp16 Precision on the CPU, past the CLI's refusal
    precision.precision, precision.device, precision.overflows = "fp16", CPU, 0
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    layer = nn.Linear(2, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    precision.backward(layer(torch.randn(3, 2)).sum())  # as the trainer does: scaled
    assert precision.absorb_overflow([opt]) and precision.scaler.get_scale() == 2.0
    assert layer.weight.grad is None and precision.overflows == 1
    assert precision.absorb_overflow([opt]) and precision.absorb_overflow([opt])
    assert precision.scaler.get_scale() == 0.5
    assert not precision.absorb_overflow([opt])  # below 1: a real divergence, reported as such
    assert precision.state_dict()["overflows"] == 3


# == 14. A variant with nets of other names opts in by roles ====================
class TwoWay(ganzoo.Variant):
    """Two generators and two critics on the same 2-D data (a stand-in for CycleGAN's shape)."""

    name = "test-two-way"
    paper = summary = "test: generator_nets / critic_nets roles"
    features = ("ema", "lr_schedule", "d_spectral_norm", "diffaug", "r1")
    generator_nets = ("G_a", "G_b")
    critic_nets = ("D_a", "D_b")
    defaults = {"steps": 2, "batch_size": 8, "lr": 1e-3, "width": 8}

    def build(self, spec):
        from ganzoo.nets import MLPDiscriminator, MLPGenerator

        w = self.hparams["width"]
        return nn.ModuleDict({"G_a": MLPGenerator(2, spec.shape, w, 1), "G_b": MLPGenerator(2, spec.shape, w, 1),
                              "D_a": MLPDiscriminator(spec.shape, w, 1), "D_b": MLPDiscriminator(spec.shape, w, 1)})

    def make_optimizers(self, nets):
        lr = self.hparams["lr"]
        return {"G": torch.optim.Adam([*nets["G_a"].parameters(), *nets["G_b"].parameters()], lr=lr),
                "D": torch.optim.Adam([*nets["D_a"].parameters(), *nets["D_b"].parameters()], lr=lr)}

    def phases(self, step):
        from functools import partial

        from ganzoo.toolkit.r1 import r1_due

        hp = self.hparams
        r1 = hp["r1_gamma"] / 2 * hp["r1_every"] if hp["r1_gamma"] and r1_due(step, hp["r1_every"]) else 0.0
        return [ganzoo.Phase("D", ("D",), partial(self.critic_loss, r1_weight=r1)),
                ganzoo.Phase("G", ("G",), self.generator_loss)]

    def critic_loss(self, nets, batch, r1_weight=0.0):
        from ganzoo.ops import r1_penalty

        sp = nn.functional.softplus
        loss = 0.0
        for g, d in (("G_a", "D_a"), ("G_b", "D_b")):
            with torch.no_grad():
                fake = nets[g](self.latent(len(batch), batch.real.device))
            loss = loss + sp(-nets[d](batch.real)).mean() + sp(nets[d](fake)).mean()
            if r1_weight:
                loss = loss + r1_penalty(nets[d], batch.real, gamma=2 * r1_weight)[0]
        return loss, {"loss": loss}

    def generator_loss(self, nets, batch):
        z = self.latent(len(batch), batch.real.device)
        loss = sum(nn.functional.softplus(-nets[d](nets[g](z))).mean() for g, d in (("G_a", "D_a"), ("G_b", "D_b")))
        return loss, {"loss": loss}

    def latent(self, n, device):
        return torch.randn(n, 2, device=device)

    def generate(self, nets, z, labels=None):
        return nets["G_a"](z)


def test_a_variant_with_other_net_names_takes_the_toolkit_by_roles():
    from ganzoo.testing import DataCase, check_variant

    report = check_variant(TwoWay, cases=(DataCase("vector 2-d", (2,)),))
    assert report.ok, report.format()
    ran = {r.name for r in report.results if r.status == "pass"}
    for feature in ("ema", "lr_schedule", "d_spectral_norm", "r1"):
        assert f"toolkit {feature}: resume" in ran, feature
    spec = ganzoo.DataSpec((2,), None, 100)
    nets = TwoWay(spec, ema=0.9, d_spectral_norm=True).networks(spec)
    assert {"G_a_ema", "G_b_ema"} <= set(nets)
    for name in ("D_a", "D_b"):
        assert all(parametrize.is_parametrized(m, "weight") for m in _weight_layers(nets[name]))
    sampled = TwoWay(spec, ema=0.9).sampling_nets(nets)
    assert sampled["G_a"] is nets["G_a_ema"] and sampled["G_b"] is nets["G_b_ema"]


# == 15. Review findings: resume, roles, CycleGAN's schedule ====================
@pytest.mark.parametrize("change", [["pack=2"], ["ema=0.9"], ["minibatch_std=4"], ["d_spectral_norm=true"]])
def test_an_option_that_changes_the_networks_cannot_change_on_resume(tmp_path, capsys, change):
    run = tmp_path / "run"
    assert _cli_train(run, "dcgan", steps=2, sets=TINY_SET) == 0
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    config = (run / "config.json").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "4", "--quiet", "--force", "--set", *change]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "changes the networks" in err and change[0].split("=")[0] in err, err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert (run / "config.json").read_text() == config


def test_a_role_that_names_no_built_net_is_a_clear_error():
    class BadRole(TwoWay):
        name = "test-bad-role"
        critic_nets = ("D_a", "D_c")

    spec = ganzoo.DataSpec((2,), None, 100)
    with pytest.raises(ganzoo.GanzooError, match="names 'D_c' in critic_nets, but build\\(\\) returned"):
        BadRole(spec, d_spectral_norm=True).networks(spec)
    from ganzoo.testing import DataCase, check_variant

    report = check_variant(BadRole, hparams={"d_spectral_norm": True}, cases=(DataCase("vector 2-d", (2,)),),
                           toolkit=False)
    assert not report.ok and "critic_nets" in report.format()


def test_an_unknown_feature_name_is_a_failed_contract_check():
    from ganzoo.testing import check_variant

    class Typo(TwoWay):
        name = "test-typo"
        features = ("emma",)

    report = check_variant(Typo)
    assert not report.ok and "unknown toolkit feature 'emma'" in report.format()


def test_cyclegan_schedule_constant_then_linear_from_lr_decay_start():
    from ganzoo.toolkit.lr_schedule import lr_factor

    # 10 steps, decay from step 5: 1 for steps 0-4, then 1 - (s - 5) / 5.
    assert [lr_factor(s, 10, "linear", 0, 5) for s in range(10)] == \
        pytest.approx([1, 1, 1, 1, 1, 1.0, 0.8, 0.6, 0.4, 0.2])
    # With a warm-up longer than lr_decay_start, the decay starts after the warm-up.
    assert lr_factor(1, 10, "linear", 3, 1) == pytest.approx(2 / 3)
    assert lr_factor(3, 10, "linear", 3, 1) == 1.0


def test_sample_with_and_without_ema_write_different_files(tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli_train(run, "dcgan", steps=2, sets=[*TINY_SET, "ema=0.9"]) == 0
    assert main(["sample", str(run), "--n", "4"]) == 0
    assert main(["sample", str(run), "--n", "4", "--no-ema"]) == 0
    out = capsys.readouterr().out
    assert "(EMA generator)" in out
    assert (run / "samples" / "sample-seed0.png").is_file() and (run / "samples" / "sample-seed0-no-ema.png").is_file()
