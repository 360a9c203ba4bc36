"""`ganzoo plugins`: what each plugin provides, and which plugins are broken."""
from __future__ import annotations

import json

import ganzoo
from ganzoo.cli import main


class Hinge(ganzoo.TwoPlayerVariant):
    name = "pl-hinge"
    paper = "test"
    summary = "hinge (plugins command test)"

    def d_loss(self, real_scores, fake_scores):
        return (1 - real_scores).relu().mean() + (1 + fake_scores).relu().mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()


class Ring(ganzoo.SampledDataset):
    name = "pl-ring"
    description = "points on a circle (plugins command test)"
    spec = ganzoo.DataSpec(shape=(2,))

    def draw(self, batch_size, generator, device):
        import torch

        angle = torch.rand(batch_size, generator=generator, device=device) * 6.2832
        return ganzoo.Batch(torch.stack([angle.cos(), angle.sin()], dim=1))


class TwoHookPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(Hinge)

    @ganzoo.hookimpl
    def register_datasets(self, register):
        register(Ring)


class RaisingPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        raise RuntimeError("weights file missing")


def _json(capsys, *args):
    assert main(["plugins", "--json", *args]) == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


def test_plugin_with_its_hooks_variants_and_datasets(register_plugin, capsys):
    register_plugin(TwoHookPlugin(), "pl-two")
    rows = _json(capsys)
    row = rows["pl-two"]
    assert row["hooks"] == ["register_datasets", "register_variants"]
    assert row["variants"] == ["pl-hinge"] and row["datasets"] == ["pl-ring"]
    assert row["loaded"] and not row["builtin"] and row["errors"] == []
    assert not any(r["builtin"] for r in rows.values())  # built-ins only with --all

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "pl-two  (registered at run time)" in out
    assert "  hooks:    register_datasets, register_variants" in out
    assert "  variants: pl-hinge" in out and "  datasets: pl-ring" in out


def test_all_includes_builtins_with_ganzoo_version(capsys):
    rows = _json(capsys, "--all")
    dcgan = rows["ganzoo.variants.dcgan"]
    assert dcgan["builtin"] and dcgan["distribution"] == "ganzoo" and dcgan["version"] == ganzoo.__version__
    assert dcgan["hooks"] == ["register_variants"] and dcgan["variants"] == ["dcgan"]
    assert "digits" in rows["ganzoo.data.digits"]["datasets"]
    assert main(["plugins", "--all"]) == 0
    assert "ganzoo.variants.wgan_gp  (built-in)" in capsys.readouterr().out


def test_broken_plugin_is_listed_with_its_error(register_plugin, capsys):
    register_plugin(RaisingPlugin(), "pl-raising")
    row = _json(capsys)["pl-raising"]
    assert row["loaded"] and row["variants"] == []
    assert row["errors"] == ["register_variants: RuntimeError: weights file missing"]
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "pl-raising  (registered at run time)  BROKEN" in out
    assert "  error:    register_variants: RuntimeError: weights file missing" in out
    assert "GANZOO_LOAD_PLUGINS" in out


def test_no_third_party_plugins(capsys, monkeypatch):
    from ganzoo import plugins_cli

    monkeypatch.setattr(plugins_cli, "plugin_table", lambda include_builtin=False: [])
    assert main(["plugins"]) == 0
    assert "No third-party plugins are installed" in capsys.readouterr().out


class TypoPlugin:
    @ganzoo.hookimpl
    def register_variant(self, register):  # missing "s": pluggy never calls it
        register(Hinge)


def test_a_misspelt_hook_is_reported(register_plugin, capsys):
    register_plugin(TypoPlugin(), "pl-typo")
    row = _json(capsys)["pl-typo"]
    assert row["hooks"] == ["register_variant"] and row["variants"] == []
    assert row["errors"] == ["implements 'register_variant', which is not a ganzoo hook "
                             "(hooks: register_datasets, register_loggers, register_variants)"]
