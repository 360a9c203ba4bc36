"""pggan (ganzoo/variants/pggan.py): the growth schedule, the conformance kit across growth
steps and mid-fade, image-only data, and the CLI."""
from __future__ import annotations

import pytest
import torch

import ganzoo
from ganzoo.cli import main
from ganzoo.data.base import DataSpec
from ganzoo.testing import check_variant
from ganzoo.variants.pggan import growth_at, pixel_norm, set_growth

SPEC = DataSpec((1, 28, 28), 10, 100)


def test_growth_schedule_fades_in_then_stabilises_each_resolution():
    seen = [growth_at(step, 2, levels=2) for step in range(12)]
    assert seen == [(0, 1.0), (0, 1.0),               # 4x4
                    (1, 0.5), (1, 1.0), (1, 1.0), (1, 1.0),  # 8x8: fade in, stabilise
                    (2, 0.5), (2, 1.0), (2, 1.0), (2, 1.0),  # 16x16
                    (2, 1.0), (2, 1.0)]                # the full resolution until the end


def test_28px_data_trains_at_32_and_samples_at_28():
    variant = ganzoo.create_variant("pggan", SPEC)
    assert variant._sizes(SPEC) == (3, 32)
    nets = variant.networks(SPEC).eval()
    for level, side in ((0, 4), (1, 8), (3, 32)):
        set_growth(nets, level, 1.0)
        z = variant.latent(4, torch.device("cpu"))
        assert nets["G"](z).shape == (4, 1, side, side)
        assert nets["D"](nets["G"](z)).shape == (4,)
        out = variant.generate(nets, z)
        assert out.shape == (4, 1, 28, 28) and out.abs().max() <= 1.0
    # Real 28-px images padded with their edge pixels: a black background stays black.
    real = -torch.ones(2, 1, 28, 28)
    assert torch.equal(variant.real_at(real, 3, 1.0), -torch.ones(2, 1, 32, 32))
    assert variant.real_at(real, 1, 0.5).shape == (2, 1, 8, 8)


def test_a_fade_in_blends_the_new_block_with_the_upsampled_old_one():
    variant = ganzoo.create_variant("pggan", SPEC)
    nets = variant.networks(SPEC).eval()
    z = variant.latent(3, torch.device("cpu"))
    with torch.no_grad():
        set_growth(nets, 0, 1.0)
        low = torch.nn.functional.interpolate(nets["G"](z), scale_factor=2, mode="nearest")
        set_growth(nets, 1, 1.0)
        high = nets["G"](z)
        set_growth(nets, 1, 0.25)
        assert torch.allclose(nets["G"](z), 0.75 * low + 0.25 * high, atol=1e-5)


def test_pixel_norm_gives_unit_rms_features():
    x = torch.randn(2, 16, 3, 3) * 7
    assert torch.allclose(pixel_norm(x).square().mean(dim=1), torch.ones(2, 3, 3), atol=1e-4)


@pytest.mark.parametrize("steps", [3, 6], ids=["stopped-mid-fade", "stopped-at-a-growth-step"])
def test_conformance_across_growth(steps):
    # phase_images 16 at batch 8: 2 steps per phase. After 3 steps the run is mid-way through
    # 8x8's fade-in (alpha 0.5 done); after 6 it has just switched to 16x16 (Adam reset).
    report = check_variant("pggan", hparams={"phase_images": 16}, steps=steps, toolkit=False)
    assert report.ok, report.format()
    skipped = [r for r in report.results if r.status == "skip"]
    assert skipped and all("vector 2-d" in r.name and "image" in r.detail for r in skipped)


def test_optimiser_moments_reset_when_a_resolution_starts_fading_in(tmp_path):
    from ganzoo.trainer import Trainer, TrainOptions

    dataset = ganzoo.create_dataset("digits", seed=0)
    variant = ganzoo.create_variant("pggan", dataset.spec, batch_size=8, phase_images=16, fmap_base=16,
                                    fmap_max=16, ema=0.0)
    trainer = Trainer(variant, dataset, tmp_path, TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    trainer.train_step(state)
    assert state.optimizers["D"].state  # moments after a step at 4x4
    trainer.train_step(state)  # the last 4x4 step: 8x8 starts fading in next
    assert variant.growth(state.step) == (1, 0.5)
    assert not state.optimizers["D"].state and not state.optimizers["G"].state
    assert state.nets["G"].growth.read() == (1, 0.5) and state.nets["D"].growth.read() == (1, 0.5)


def test_vector_data_is_a_one_line_error(capsys, tmp_path):
    with pytest.raises(ganzoo.GanzooError, match="trains on image data"):
        ganzoo.create_variant("pggan", ganzoo.get_dataset("ring").spec)
    assert main(["train", "pggan", "--dataset", "ring", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trains on image data" in err[0]
    assert not (tmp_path / "run").exists()


def test_cli_trains_resumes_and_samples(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--set", "phase_images=32", "fmap_base=16", "fmap_max=16", "--batch-size", "16", "--quiet",
              "--device", "cpu"]
    assert main(["train", "pggan", "--dataset", "digits", "--steps", "3", "--out", str(run), *common]) == 0
    assert main(["train", "--resume", str(run), "--steps", "5", "--quiet", "--device", "cpu"]) == 0
    assert main(["sample", str(run), "--n", "8", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists() and (run / "samples" / "final.png").exists()
    payload = torch.load(run / "checkpoints" / "step-0000005.pt", weights_only=True)
    # 2 steps per phase: steps 0-1 at 4x4, 2-3 faded 8x8 in, 4-5 stabilise it: step 5 is next.
    assert int(payload["nets"]["G.growth.level"]) == 1 and float(payload["nets"]["G.growth.alpha"]) == 1.0
