"""Named hyperparameter presets (``--set preset=NAME``): a generic mechanism any variant can use.

A preset sits between a variant's defaults and the user's other ``--set``
values; an unknown name is a one-line error; a resumed run keeps its own
settings. Built-in variants keep ``paper`` (their paper's settings as written)
where their default recipe differs from it.
"""
from __future__ import annotations

import json

import pytest

import ganzoo
from ganzoo.cli import main
from ganzoo.errors import GanzooError
from ganzoo.variants.dcgan import DCGAN


class PresetDCGAN(DCGAN):
    """DCGAN with two presets, as a plugin would declare them."""

    name = "preset-dcgan"
    presets = {"paper": {"ema": 0.0, "lr_g": 2e-4}, "fast": {"steps": 7, "ema": 0.9}}


def test_preset_applies_over_defaults_and_under_other_overrides():
    spec = ganzoo.get_dataset("digits").spec
    fast = PresetDCGAN.resolve_hparams(spec, {"preset": "fast"})
    assert fast["steps"] == 7 and fast["ema"] == 0.9
    assert "preset" not in fast  # the resolved values are what a run records
    mine = PresetDCGAN.resolve_hparams(spec, {"preset": "fast", "ema": 0.5})
    assert mine["ema"] == 0.5 and mine["steps"] == 7  # the user's own --set wins over the preset
    assert PresetDCGAN.resolve_hparams(spec, {}) == DCGAN.resolve_hparams(spec, {})


def test_unknown_preset_names_the_ones_there_are():
    with pytest.raises(GanzooError, match=r"has no preset 'fastest'; its presets: fast, paper"):
        PresetDCGAN.resolve_hparams(None, {"preset": "fastest"})
    with pytest.raises(GanzooError, match=r"has no preset 'paper'; it has none"):
        type("NoPresets", (DCGAN,), {"name": "np", "presets": {}}).resolve_hparams(None, {"preset": "paper"})


def test_bad_preset_on_the_cli_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vanilla", "--set", "preset=nonsense", "--steps", "2", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no preset 'nonsense'" in err
    assert not out.exists()


def test_every_builtin_preset_resolves_and_is_listed(capsys):
    assert main(["list", "--json"]) == 0
    listed = {v["name"]: v for v in json.loads(capsys.readouterr().out)["variants"]}
    for name in ganzoo.list_variants():
        cls = ganzoo.get_variant(name)
        assert listed[name]["presets"] == json.loads(json.dumps(cls.presets))
        for preset, values in cls.presets.items():
            for image in (True, False):
                spec = ganzoo.get_dataset("digits" if image else "ring").spec
                resolved = cls.resolve_hparams(spec, {"preset": preset})
                for key, value in values.items():
                    assert resolved[key] == (tuple(value) if isinstance(value, list) else value), (name, key)


def test_resume_refuses_a_preset(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vanilla", "--steps", "2", "--batch-size", "8", "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "3", "--set", "preset=paper", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "keeps its own" in err


def test_wgan_gp_on_2d_data_defaults_to_its_recipe_and_paper_restores_the_toy_script(tmp_path):
    """Issue 14's evidence (docs/recipes/wgan-gp-grid-4k.md): standardized data and linear decay."""
    common = ["--dataset", "grid", "--steps", "2", "--batch-size", "16", "--device", "cpu", "--quiet",
              "--set", "toy_hidden=8"]

    def config(run):
        return json.loads((run / "config.json").read_text())

    assert main(["train", "wgan-gp", "--out", str(tmp_path / "default"), *common]) == 0
    default = config(tmp_path / "default")
    assert default["dataset_options"] == {"standardize": True}
    assert default["hparams"]["lr_schedule"] == "linear" and default["hparams"]["gp_weight"] == 0.1
    assert main(["train", "wgan-gp", "--out", str(tmp_path / "paper"), *common[:-2],
                 "--set", "toy_hidden=8", "preset=paper"]) == 0
    paper = config(tmp_path / "paper")
    assert paper["hparams"]["lr_schedule"] == "constant" and paper["dataset_options"] == {"standardize": True}
    spec = ganzoo.get_dataset("grid").spec
    assert ganzoo.get_variant("wgan-gp").resolve_hparams(spec, {})["steps"] == 4000
