"""stylegan2 (ganzoo/variants/stylegan2.py): the conformance kit with both lazy regularisers, an
exact resume across R1 and path-length steps, torchrun == --accumulate, the fused LeakyReLU in G and
D, truncation and style-mixing grids, and the sampling options' CLI errors."""
from __future__ import annotations

import importlib
import json

import pytest
import torch

import ganzoo
from ganzoo.checkpoint import load_checkpoint
from ganzoo.cli import main
from ganzoo.ops import backend
from ganzoo.testing import check_variant
from ganzoo.trainer import Trainer, TrainOptions
from ganzoo.variants import stylegan2
from ganzoo.variants.stylegan2 import downsample2d, upsample2d

from .test_distributed import parameters, torchrun

SPEC = ganzoo.get_dataset("digits").spec
# Tiny nets; R1 and path length every 2 steps, so short runs cross both.
SMALL = {"nz": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64, "channel_max": 8, "r1_every": 2,
         "pl_weight": 1.0, "pl_every": 2}
SETS = ["--set", *(f"{k}={v}" for k, v in SMALL.items())]
CPU = torch.device("cpu")


def small_variant(**overrides):
    return ganzoo.create_variant("stylegan2", SPEC, **{"batch_size": 8, **SMALL, **overrides})


def test_the_filter_keeps_a_constant_away_from_the_borders_and_doubles_or_halves_the_side():
    x = torch.ones(1, 2, 8, 8)
    up, down = upsample2d(x), downsample2d(x)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    assert torch.allclose(up[..., 1:-1, 1:-1], torch.ones(1, 2, 14, 14))
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1, 2, 2, 2))
    # Zero-padded borders (upfirdn2d's): the edge rows get 3/4 of their value; bilinear would keep it.
    assert torch.allclose(up[0, 0, 0, 1:-1], torch.full((14,), 0.75))


def test_28px_data_trains_at_32_and_samples_at_28():
    variant = small_variant()
    nets = variant.networks(SPEC)
    assert variant.side == 32 and nets["G"].num_ws == 8  # 1 + 2 + 2 + 2 convs, + the last to-RGB
    z = variant.latent(4, CPU)
    assert nets["G"](z).shape == (4, 1, 32, 32) and nets["D"](nets["G"](z)).shape == (4,)
    nets.eval()
    out = variant.generate(nets, z)
    assert out.shape == (4, 1, 28, 28) and out.abs().max() <= 1.0
    assert torch.equal(out, variant.generate(nets, z))  # fixed noise maps when not training


def test_defaults_follow_the_reference_rules():
    hp = ganzoo.create_variant("stylegan2", SPEC).hparams
    assert hp["r1_gamma"] == pytest.approx(0.0002 * 32 ** 2 / hp["batch_size"])  # stylegan2-ada's auto rule
    assert hp["ema"] == pytest.approx(0.5 ** (hp["batch_size"] / 10_000), abs=1e-6)  # ema_kimg = batch * 10 / 32
    optimizers = small_variant(r1_every=16, pl_every=4).optimizers_for(small_variant().networks(SPEC))
    assert optimizers["D"].param_groups[0]["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert optimizers["G"].param_groups[0]["betas"][1] == pytest.approx(0.99 ** 0.8)


@pytest.mark.parametrize("steps", [2, 3], ids=["resumed-into-an-r1-step", "resumed-after-one"])
def test_conformance_with_lazy_r1_and_path_length(steps):
    report = check_variant("stylegan2", hparams={k: v for k, v in SMALL.items() if k != "nz"}, steps=steps,
                           toolkit=steps == 2)
    assert report.ok, report.format()


def test_resume_is_bit_identical_across_r1_and_path_length_steps(tmp_path):
    common = ["--dataset", "digits", "--batch-size", "8", "--quiet", "--device", "cpu", "--sample-every", "0",
              *SETS]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", "stylegan2", "--steps", "5", "--out", str(straight), *common]) == 0
    assert main(["train", "stylegan2", "--steps", "1", "--out", str(stopped), *common]) == 0
    # Steps 2 and 4 of the resumed part carry R1 and the path-length phase.
    assert main(["train", "--resume", str(stopped), "--steps", "5", "--quiet", "--device", "cpu"]) == 0
    a, b = load_checkpoint(straight), load_checkpoint(stopped)
    assert a["nets"].keys() == b["nets"].keys()
    for name in a["nets"]:
        assert torch.equal(a["nets"][name], b["nets"][name]), name
    assert float(a["nets"]["path_length.mean"]) > 0
    assert torch.equal(a["nets"]["G.mapping.w_avg"], a["nets"]["G_ema.mapping.w_avg"])
    assert a["nets"]["G.mapping.w_avg"].abs().sum() > 0  # tracked during training
    metrics = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert any("D_r1/loss" in m for m in metrics) and any("G_pl/loss" in m for m in metrics)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")
def test_two_ranks_equal_one_process_with_both_lazy_regularisers(tmp_path):
    # Steps 0 and 2 carry R1 and path length; style mixing, EMA, W's average and the path-length
    # mean (gathered from both ranks) must all come out the same.
    ranked, single = tmp_path / "ranked", tmp_path / "single"
    common = ["--device", "cpu", "--batch-size", "16", "--quiet", "--sample-every", "0", *SETS]
    result = torchrun("train", "stylegan2", "--steps", "3", "--out", str(ranked), *common)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.set_num_threads(1)
    assert main(["train", "stylegan2", "--steps", "3", "--out", str(single), "--accumulate", "2", *common]) == 0
    events = [json.loads(x) for x in (ranked / "metrics.jsonl").read_text().splitlines() if "event" in x]
    assert {"event": "ranks_consistent", "step": 3, "world": 2} in events
    a, b = parameters(ranked), parameters(single)
    assert {"path_length.mean", "G.mapping.w_avg", "G_ema.mapping.w_avg"} <= a.keys() and a.keys() == b.keys()
    assert float(a["path_length.mean"]) > 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_fused_leaky_relu_serves_g_d_and_r1(monkeypatch, tmp_path):
    calls = {"G": 0, "D": 0}
    where = ["G"]
    original = stylegan2.fused_leaky_relu

    def counting(x, bias=None, negative_slope=0.2, gain=1.0, dim=1):
        calls[where[0]] += 1
        assert negative_slope == 0.2 and gain in (pytest.approx(2 ** 0.5), pytest.approx(1.0))
        return original(x, bias, negative_slope, gain, dim)

    monkeypatch.setattr(stylegan2, "fused_leaky_relu", counting)
    variant = small_variant(pl_weight=0.0)
    nets = variant.networks(SPEC)
    nets["G"](variant.latent(2, CPU))
    where[0] = "D"
    nets["D"](torch.zeros(4, 1, 32, 32))
    # G: 2 mapping layers + 7 synthesis convs; D: from-RGB, 3 x 2 block convs, epilogue conv and dense.
    assert calls == {"G": 2 + 7, "D": 1 + 6 + 2}

    if backend.kernels(CPU) is None:
        pytest.skip("no native kernels on this machine: the reference op ran instead")
    used = []
    activation = importlib.import_module("ganzoo.ops.fused_leaky_relu")._Activation
    monkeypatch.setattr(activation, "apply", lambda *a, _apply=activation.apply: used.append(1) or _apply(*a))
    trainer = Trainer(variant, ganzoo.create_dataset("digits", seed=0), tmp_path,
                      TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    stats = trainer.train_step(state)  # step 0: G, D, and D's R1 through the kernels' double backward
    assert "D_r1/r1" in stats and used


def test_r1_through_the_fused_op_matches_the_reference():
    variant = small_variant()
    critic = variant.networks(SPEC)["D"]
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    grads = {}
    for mode in ("native", "ref"):
        with backend.use_backend(mode):
            penalty, _ = ganzoo.ops.r1_penalty(critic, real, gamma=1.0)
            critic.zero_grad(set_to_none=True)
            penalty.backward()
        # A gradient that is zero everywhere may be None (the fused op sends none where it is zero).
        grads[mode] = [torch.zeros_like(p) if p.grad is None else p.grad for p in critic.parameters()]
    assert any(g.abs().sum() > 0 for g in grads["native"])
    for fused, ref in zip(grads["native"], grads["ref"]):
        torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-6)


def _trained_nets():
    variant = small_variant()
    nets = variant.networks(SPEC)
    # A non-zero average, as training leaves it.
    with torch.no_grad():
        nets["G"].mapping.w_avg.copy_(nets["G"].mapping(variant.latent(64, CPU)).mean(0))
    return variant, nets.eval()


def test_truncation_one_is_none_and_small_psi_pulls_towards_the_average():
    variant, nets = _trained_nets()
    z = variant.latent(16, CPU)
    with torch.no_grad():
        plain = variant.generate(nets, z)
        assert torch.equal(variant.generate(nets, z, truncation=1.0), plain)
        spread = {psi: variant.generate(nets, z, truncation=psi).std(dim=0).mean().item() for psi in (1.0, 0.5, 0.05)}
        average = nets["G"].synthesis(nets["G"].broadcast(nets["G"].mapping.w_avg[None]), "const")
        near = variant.generate(nets, z, truncation=1e-4)
    assert spread[1.0] > spread[0.5] > spread[0.05]
    expected = stylegan2.center_crop(average, 28, 28).clamp(-1, 1).expand_as(near)
    torch.testing.assert_close(near, expected, rtol=0, atol=1e-3)
    for psi in (0.0, 1.5, -0.5):
        with pytest.raises(ganzoo.GanzooError, match=r"--truncation must be in \(0, 1\]"):
            variant.generate(nets, z, truncation=psi)


def test_style_mix_grid_rows_take_coarse_styles_and_the_diagonal_is_each_latent():
    variant, nets = _trained_nets()
    z = variant.latent(9, CPU)
    with torch.no_grad():
        grid = variant.generate(nets, z, style_mix=True).view(3, 3, 1, 28, 28)
        alone = variant.generate(nets, z[:3])
        ws = variant.style_mix_ws(nets["G"], z, 1.0, 8)
        w = nets["G"].mapping(z[:3])
    for i in range(3):
        torch.testing.assert_close(grid[i, i], alone[i], rtol=0, atol=1e-5)
    cut = nets["G"].synthesis.crossover(8)
    assert cut == 3  # 4 px: one conv; 8 px: two
    cell = ws[1 * 3 + 2]  # row 1, column 2: latent 1's coarse styles, latent 2's finer ones
    assert torch.equal(cell[:cut], w[1].expand(cut, -1)) and torch.equal(cell[cut:], w[2].expand(8 - cut, -1))
    with pytest.raises(ganzoo.GanzooError, match="--n must be a square"):
        variant.generate(nets, z[:8], style_mix=True)
    with pytest.raises(ganzoo.GanzooError, match="RES must be one of 4, 8, 16"):
        variant.generate(nets, z, style_mix=32)


def test_cli_samples_with_truncation_and_style_mix(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "stylegan2", "--dataset", "digits", "--steps", "2", "--batch-size", "8", "--out",
                 str(run), "--quiet", "--sample-every", "0", *SETS]) == 0
    assert main(["sample", str(run), "--n", "4", "--truncation", "0.7"]) == 0
    assert main(["sample", str(run), "--n", "16", "--style-mix"]) == 0
    assert main(["sample", str(run), "--n", "16", "--style-mix", "4", "--truncation", "0.5"]) == 0
    assert main(["sample", str(run), "--interpolate", "3", "--rows", "2", "--truncation", "0.5"]) == 0
    for name in ("sample-seed0-truncation0.7.png", "sample-seed0-style-mix.png",
                 "sample-seed0-style-mix4-truncation0.5.png", "interpolate3-seed0-truncation0.5.png"):
        assert (run / "samples" / name).exists(), name
    capsys.readouterr()
    for args, message in ((["--truncation", "1.5"], r"--truncation must be in (0, 1]"),
                          (["--truncation", "0"], r"--truncation must be in (0, 1]"),
                          (["--style-mix", "--n", "10"], "--n must be a square"),
                          (["--style-mix", "--interpolate", "4"], "does not combine with --interpolate")):
        assert main(["sample", str(run), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)


@pytest.mark.parametrize("option, flag", [(["--truncation", "1.5"], "--truncation"), (["--style-mix"], "--style-mix")])
def test_sampling_options_on_a_variant_without_them_are_a_one_line_error(tmp_path, capsys, option, flag):
    run = tmp_path / "run"
    assert main(["train", "dcgan", "--dataset", "digits", "--steps", "1", "--batch-size", "8", "--out", str(run),
                 "--quiet", "--sample-every", "0", "--set", "g_width=8", "d_width=8", "nz=8"]) == 0
    capsys.readouterr()
    out = tmp_path / "s.png"
    assert main(["sample", str(run), *option, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"has no sampling option {flag}" in err[0], err
    assert not out.exists()


def test_vector_data_and_bad_settings_are_one_line_errors():
    with pytest.raises(ganzoo.GanzooError, match="trains on image data"):
        ganzoo.create_variant("stylegan2", ganzoo.get_dataset("ring").spec)
    with pytest.raises(ganzoo.GanzooError, match="style_mixing must be in"):
        ganzoo.create_variant("stylegan2", SPEC, style_mixing=1.5)
    with pytest.raises(ganzoo.GanzooError, match="r1_gamma must be >= 0"):
        ganzoo.create_variant("stylegan2", SPEC, r1_gamma=-1.0)
    assert ganzoo.create_variant("stylegan2", SPEC, preset="paper").hparams["w_dim"] == 512
    # R1 and path length off by their weights alone; on, they are phases of their own.
    off = ganzoo.create_variant("stylegan2", SPEC, r1_gamma=0.0)
    assert [p.name for p in off.phases(0)] == ["G", "D"]
    assert [(p.name, p.every) for p in small_variant().phases(0)] == [("G", 1), ("G_pl", 2), ("D", 1), ("D_r1", 2)]
