"""``Variant.legacy_hparams``: a variant can change a default (or add an option that changes
behaviour) and still read back the runs an older release made, whose configs lack the key.

A plugin variant is registered in an "old" release, trains a run, and is replaced by a "new" release
whose option ``wide`` (default True) adds a module to the nets. With ``legacy_hparams = {"wide": False}``
the old run resumes, samples and evaluates as it was trained; without it the old run's weights no
longer fit the nets its config now describes.
"""
from __future__ import annotations

import json

import pytest
from torch import nn

import ganzoo
from ganzoo.cli import main
from ganzoo.evaluation import classifier
from ganzoo.evaluation.classifier import ClassifierRecipe
from ganzoo.variants.dcgan import DCGAN

SMALL = ["--dataset", "digits", "--batch-size", "8", "--device", "cpu", "--quiet", "--set", "g_width=8",
         "d_width=8", "nz=8"]


@pytest.fixture(autouse=True)
def _tiny_classifier(monkeypatch):
    """``ganzoo eval`` below needs a digit classifier; a tiny one keeps the test short."""
    monkeypatch.setattr(classifier, "DEFAULT_RECIPE", ClassifierRecipe(epochs=1, batch_size=32, width=4, features=8,
                                                                      train_limit=256, test_limit=256))


class OldRelease(DCGAN):
    name = "legacy-test"


class NewRelease(DCGAN):
    """The new release: ``wide`` (default on) adds a net; runs from before it had it off."""

    name = "legacy-test"
    defaults = {**DCGAN.defaults, "wide": True}
    legacy_hparams = {"wide": False}

    def build(self, spec):
        nets = super().build(spec)
        if self.hparams["wide"]:
            nets["extra"] = nn.Linear(1, 1)
        return nets


class NewReleaseWithoutLegacy(NewRelease):
    legacy_hparams = {}


def _plugin(cls):
    class Plugin:
        @ganzoo.hookimpl
        def register_variants(self, register):
            register(cls)

    return Plugin()


def _old_run(register_plugin, tmp_path):
    register_plugin(_plugin(OldRelease), "legacy-old")
    run = tmp_path / "run"
    assert main(["train", "legacy-test", "--steps", "2", "--ckpt-every", "1", "--out", str(run), *SMALL]) == 0
    assert "wide" not in json.loads((run / "config.json").read_text())["hparams"]
    ganzoo.plugins.unregister_plugin("legacy-old")
    register_plugin.names.remove("legacy-old")
    return run


def test_saved_hparams_fills_only_the_keys_a_config_lacks():
    assert NewRelease.saved_hparams({"steps": 3}) == {"wide": False, "steps": 3}
    assert NewRelease.saved_hparams({"steps": 3, "wide": True}) == {"wide": True, "steps": 3}
    assert DCGAN.saved_hparams({"steps": 3}) == {"steps": 3}
    spec = ganzoo.get_dataset("digits").spec
    assert NewRelease.resolve_hparams(spec, {})["wide"] is True  # new runs get the new default


def test_an_old_run_resumes_samples_and_evaluates_with_the_value_it_trained_with(register_plugin, tmp_path, capsys):
    run = _old_run(register_plugin, tmp_path)
    register_plugin(_plugin(NewRelease), "legacy-new")
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["train", "--resume", str(run), "--steps", "3", "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["hparams"]["wide"] is False  # now recorded, so the run no longer depends on the map
    payload = ganzoo.checkpoint.load_checkpoint(run)  # the newest: the resumed run's last step
    assert payload["step"] == 3 and not any(key.startswith("extra.") for key in payload["nets"])
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "10", "--json", "--no-write"]) == 0
    # A new run gets the new default.
    fresh = tmp_path / "fresh"
    assert main(["train", "legacy-test", "--steps", "1", "--out", str(fresh), *SMALL]) == 0
    assert json.loads((fresh / "config.json").read_text())["hparams"]["wide"] is True


def test_without_the_map_the_old_run_no_longer_fits(register_plugin, tmp_path, capsys):
    """What the mechanism prevents: the old config read with today's default describes other nets."""
    run = _old_run(register_plugin, tmp_path)
    register_plugin(_plugin(NewReleaseWithoutLegacy), "legacy-new")
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_legacy_key_that_is_not_a_hyperparameter_is_refused_at_registration(register_plugin):
    stray = type("Stray", (DCGAN,), {"name": "legacy-stray", "legacy_hparams": {"no_such_option": 1}})
    register_plugin(_plugin(stray), "legacy-stray")
    failures = [f for f in ganzoo.plugin_failures() if f.plugin == "legacy-stray"]
    assert len(failures) == 1 and "legacy_hparams that are not its hyperparameters: no_such_option" in failures[0].problem
    assert "legacy-stray" not in ganzoo.list_variants()


@pytest.mark.parametrize("name", ganzoo.list_variants())
def test_builtin_legacy_values_are_hyperparameters_of_the_right_type(name):
    cls = ganzoo.get_variant(name)
    known = cls.known_hparams()
    for key, value in cls.legacy_hparams.items():
        assert type(value) is type(known[key]), (name, key)
