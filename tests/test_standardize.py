"""--standardize: vector data served at unit scale, everything user-facing in the data's own units."""
from __future__ import annotations

import json

import pytest
import torch

import ganzoo
from ganzoo.cli import main
from ganzoo.sampling import load_generator, sample


@pytest.mark.parametrize("name", ["ring", "grid", "8gaussians", "25gaussians", "swissroll"])
def test_batches_have_unit_scale_and_the_reference_keeps_the_datas_units(name):
    plain = ganzoo.create_dataset(name, seed=1).prepare("cpu")
    scaled = ganzoo.create_dataset(name, seed=1, standardize=True).prepare("cpu")
    assert plain.spec.data_scale == 1.0
    batch = scaled.sample(20_000)
    assert abs(batch.real.pow(2).mean().sqrt().item() - 1.0) < 0.02
    assert torch.allclose(batch.real * scaled.spec.data_scale, plain.sample(20_000).real, atol=1e-5)
    assert torch.equal(scaled.reference_sample(100).real, plain.reference_sample(100).real)


def test_the_grid_is_divided_by_its_rms_as_the_wgan_gp_toy_script_does():
    spec = ganzoo.create_dataset("grid", standardize=True).spec
    assert abs(spec.data_scale - 8 ** 0.5) < 1e-3  # the WGAN-GP toy code's /2.828


def test_a_standardized_run_samples_and_evaluates_in_the_datas_units(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "vanilla", "--dataset", "grid", "--standardize", "--steps", "3", "--batch-size", "16",
                 "--set", "toy_hidden=16", "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["dataset_options"] == {"standardize": True}
    assert abs(config["data"]["data_scale"] - 8 ** 0.5) < 1e-3
    loaded = load_generator(run)
    points = sample(loaded, n=50, seed=3)
    torch.manual_seed(3)
    raw = loaded.variant.generate(loaded.nets, loaded.variant.latent(50, torch.device("cpu")), None)
    assert torch.allclose(points, raw.detach() * config["data"]["data_scale"])
    metrics = ganzoo.evaluate(run, n=200, device="cpu", write=False)["metrics"]
    assert 0 <= metrics["modes"] <= 25
    # A resume keeps the option; asking to drop or change the data's setup is refused.
    assert main(["train", "--resume", str(run), "--steps", "4", "--quiet"]) == 0


def test_images_do_not_take_it(tmp_path, capsys):
    assert main(["train", "dcgan", "--dataset", "digits", "--standardize", "--steps", "1", "--quiet",
                 "--out", str(tmp_path / "r")]) == 2
    assert "dataset 'digits' does not take --standardize" in capsys.readouterr().err


def test_evaluation_measures_generated_samples_in_the_datas_units():
    """The metrics' sampler multiplies by data_scale: a standardized run is judged on the real layout."""
    import dataclasses

    from ganzoo.evaluation.api import generate_samples

    spec = ganzoo.get_dataset("grid").spec
    variant = ganzoo.create_variant("vanilla", spec, toy_hidden=8)
    nets = variant.networks(spec)
    plain, _ = generate_samples(variant, nets, spec, 64, seed=5)
    scaled, _ = generate_samples(variant, nets, dataclasses.replace(spec, data_scale=2.5), 64, seed=5)
    assert torch.allclose(scaled, plain * 2.5)


class _AsksForStandardized(ganzoo.TwoPlayerVariant):
    """A plugin variant that asks for unit-scale vector data (``dataset_defaults``)."""

    name = "test-asks-standardized"
    dataset_defaults = {"standardize": True}

    def d_loss(self, real_scores, fake_scores):
        return fake_scores.mean() - real_scores.mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()


class _AsksPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(_AsksForStandardized)


def test_a_variants_dataset_defaults_apply_where_the_dataset_takes_them(tmp_path, register_plugin, capsys):
    register_plugin(_AsksPlugin(), "test-asks-plugin")
    common = ["--steps", "2", "--batch-size", "16", "--device", "cpu", "--quiet",
              "--set", "toy_hidden=8", "g_width=8", "d_width=8"]

    def options(run):
        return json.loads((run / "config.json").read_text())["dataset_options"]

    assert main(["train", "test-asks-standardized", "--dataset", "grid", "--out", str(tmp_path / "a"), *common]) == 0
    assert options(tmp_path / "a") == {"standardize": True}  # asked for, and recorded
    assert main(["train", "test-asks-standardized", "--dataset", "grid", "--no-standardize",
                 "--out", str(tmp_path / "b"), *common]) == 0
    assert options(tmp_path / "b") == {"standardize": False}  # the user's choice wins
    assert main(["train", "test-asks-standardized", "--dataset", "digits", "--out", str(tmp_path / "c"), *common]) == 0
    assert options(tmp_path / "c") == {}  # image data takes no such option: nothing asked
    capsys.readouterr()
    assert main(["list", "--json"]) == 0
    listed = {v["name"]: v for v in json.loads(capsys.readouterr().out)["variants"]}
    assert listed["test-asks-standardized"]["dataset_defaults"] == {"standardize": True}
