"""Registry API and plugin loading: built-ins, throwaway plugins, failures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import ganzoo
from ganzoo import plugins
from ganzoo.cli import main
from ganzoo.registry import DATASETS, VARIANTS

BUILTIN_VARIANTS = ["biggan", "cgan", "cyclegan", "dcgan", "lsgan", "pggan", "stackgan", "stylegan2", "vanilla",
                    "wgan-gp"]
BUILTIN_DATASETS = ["25gaussians", "8gaussians", "cifar10", "digits", "fashion-mnist", "folder", "folder-pair",
                    "grid", "mnist", "pair", "ring", "swissroll"]


def builtin(names: list[str], registry=VARIANTS) -> list[str]:
    """The names among ``names`` that ganzoo's built-in plugins registered.

    Installed third-party plugins (the examples in plugins/, say) add names of
    their own; tests about the built-ins must not depend on what else is installed.
    """
    return [n for n in names if plugins.plugin_info(registry.entry(n).plugin).builtin]


def test_builtins_are_registered_through_the_hook():
    assert builtin(ganzoo.list_variants()) == BUILTIN_VARIANTS
    assert builtin(ganzoo.list_datasets(), DATASETS) == BUILTIN_DATASETS
    assert VARIANTS.entry("wgan-gp").plugin == "ganzoo.variants.wgan_gp"
    for name in BUILTIN_VARIANTS:
        assert VARIANTS.entry(name).plugin in plugins.BUILTIN_PLUGINS


def test_list_filters():
    assert builtin(ganzoo.list_variants("*gan")) == ["biggan", "cgan", "cyclegan", "dcgan", "lsgan", "pggan",
                                                     "stackgan"]
    assert builtin(ganzoo.list_variants(["vanilla", "wgan*"])) == ["vanilla", "wgan-gp"]
    assert builtin(ganzoo.list_variants(conditional=True)) == ["biggan", "cgan", "stackgan"]
    assert builtin(ganzoo.list_datasets("*gaussians"), DATASETS) == ["25gaussians", "8gaussians"]


def test_get_and_create_with_overrides():
    cls = ganzoo.get_variant("lsgan")
    assert cls.name == "lsgan"
    variant = ganzoo.create_variant("lsgan", None, a=-1, lr_d="1e-3", betas="0.5,0.99")
    assert variant.hparams["a"] == -1.0 and isinstance(variant.hparams["a"], float)
    assert variant.hparams["lr_d"] == 1e-3
    assert variant.hparams["betas"] == (0.5, 0.99)


def test_unknown_name_lists_known_and_close_matches():
    with pytest.raises(ganzoo.UnknownNameError) as info:
        ganzoo.get_variant("wgangp")
    message = str(info.value)
    assert "Did you mean 'wgan-gp'" in message
    for name in BUILTIN_VARIANTS:
        assert name in message
    with pytest.raises(ganzoo.UnknownNameError, match="unknown dataset 'mnsit'"):
        ganzoo.get_dataset("mnsit")


@pytest.mark.parametrize("overrides, message", [
    ({"n_critics": 3}, "has no hyperparameter 'n_critics'"),
    ({"steps": 0}, "steps must be positive"),
    ({"lr_g": -1e-4}, "lr_g must be positive"),
    ({"betas": "0.5"}, "bad value '0.5' for hyperparameter 'betas'"),
    ({"n_critic": 2.5}, "bad value 2.5 for hyperparameter 'n_critic'"),
])
def test_bad_hyperparameters(overrides, message):
    with pytest.raises(ganzoo.GanzooError, match=message):
        ganzoo.create_variant("wgan-gp", None, **overrides)


class TinyLoss(ganzoo.TwoPlayerVariant):
    """A throwaway variant: hinge loss on the built-in nets."""

    name = "test-hinge"
    paper = "test"
    summary = "hinge loss (test plugin)"
    defaults = {**ganzoo.TwoPlayerVariant.defaults, "arch": "mlp", "steps": 3}

    def d_loss(self, real_scores, fake_scores):
        return (1 - real_scores).relu().mean() + (1 + fake_scores).relu().mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()


class GoodPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(TinyLoss)


def test_throwaway_plugin_shows_in_list_and_trains(register_plugin, tmp_path, capsys):
    register_plugin(GoodPlugin(), "test-good")
    assert "test-hinge" in ganzoo.list_variants()
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "test-hinge" in out and "plugin: test-good" in out
    run = tmp_path / "run"
    assert main(["train", "test-hinge", "--out", str(run), "--quiet", "--batch-size", "16"]) == 0
    assert (run / "samples" / "final.png").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["variant_plugin"] == "test-good"
    # Unregistering removes it again: the registry follows the plugin set.
    plugins.unregister_plugin("test-good")
    register_plugin.names.remove("test-good")
    assert "test-hinge" not in ganzoo.list_variants()


class DuplicatePlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(TinyLoss)
        register(type("Again", (TinyLoss,), {"name": "dcgan"}))


def test_duplicate_name_names_both_plugins(register_plugin, capsys):
    register_plugin(DuplicatePlugin(), "test-dup")
    failures = [str(f) for f in ganzoo.plugin_failures()]
    assert any("'dcgan' is registered by both 'ganzoo.variants.dcgan' and 'test-dup'" in f for f in failures)
    # All-or-nothing: none of the plugin's variants is kept; the built-in one still works.
    assert "test-hinge" not in ganzoo.list_variants()
    assert VARIANTS.entry("dcgan").plugin == "ganzoo.variants.dcgan"
    assert main(["list"]) == 0
    assert "Plugin problems:" in capsys.readouterr().out


class RaisingPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        raise RuntimeError("boom while registering")


class NotAVariantPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(dict)


class IncompleteVariant(ganzoo.TwoPlayerVariant):
    name = "test-incomplete"  # no d_loss / g_loss


class IncompletePlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(IncompleteVariant)


@pytest.mark.parametrize("plugin, problem", [
    (RaisingPlugin(), "RuntimeError: boom while registering"),
    (NotAVariantPlugin(), "which is not a subclass of ganzoo.Variant"),
    (IncompletePlugin(), "'test-incomplete' does not implement: d_loss, g_loss"),
])
def test_broken_plugin_is_reported_and_the_rest_works(register_plugin, plugin, problem, tmp_path):
    register_plugin(plugin, "test-broken")
    failures = [f for f in ganzoo.plugin_failures() if f.plugin == "test-broken"]
    assert len(failures) == 1 and problem in failures[0].problem
    assert builtin(ganzoo.list_variants()) == BUILTIN_VARIANTS
    assert "test-incomplete" not in ganzoo.list_variants()
    assert main(["list", "--json"]) == 0


def test_unavailable_variant_of_a_broken_plugin_names_the_plugin(register_plugin, capsys):
    register_plugin(IncompletePlugin(), "test-broken")
    assert main(["train", "test-incomplete", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "test-incomplete" in err and "test-broken" in err and "does not implement" in err


def _fake_distribution(site, name, module_source, entry_point):
    """Install a plugin package without pip: a module plus a dist-info with an entry point."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ganzoo]\n{entry_point} = {name}\n")


@pytest.fixture
def plugin_site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site, "zoo_extra", """
        import ganzoo

        class Extra(ganzoo.TwoPlayerVariant):
            name = "extra"
            paper = "test"
            summary = "least squares again (entry-point test)"
            def d_loss(self, r, f):
                return ((r - 1) ** 2).mean() + (f ** 2).mean()
            def g_loss(self, f):
                return ((f - 1) ** 2).mean()

        @ganzoo.hookimpl
        def register_variants(register):
            register(Extra)
    """, "extra")
    _fake_distribution(site, "zoo_broken", "import does_not_exist_anywhere\n", "broken")
    return site


def _ganzoo(site, *args, load=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("GANZOO_LOAD_PLUGINS", None)
    if load is not None:
        env["GANZOO_LOAD_PLUGINS"] = load
    return subprocess.run([sys.executable, "-m", "ganzoo", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_entry_point_plugins_load_and_failures_are_listed(plugin_site):
    result = _ganzoo(plugin_site, "list", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    extra = [v for v in listing["variants"] if v["name"] == "extra"]
    assert extra and extra[0]["plugin"] == "extra" and not extra[0]["builtin"]
    failures = {f["plugin"]: f["problem"] for f in listing["plugin_failures"]}
    assert "No module named 'does_not_exist_anywhere'" in failures["broken"]


def test_load_plugins_env_restricts_third_party_plugins(plugin_site):
    only_extra = json.loads(_ganzoo(plugin_site, "list", "--json", load="extra").stdout)
    assert "extra" in [v["name"] for v in only_extra["variants"]]
    assert only_extra["plugin_failures"] == []
    none = json.loads(_ganzoo(plugin_site, "list", "--json", load="").stdout)
    assert [v["name"] for v in none["variants"]] == BUILTIN_VARIANTS
    assert none["plugin_failures"] == []
    missing = json.loads(_ganzoo(plugin_site, "list", "--json", load="nope").stdout)
    assert "GANZOO_LOAD_PLUGINS" in missing["plugin_failures"][0]["problem"]


def test_import_is_lazy():
    code = ("import sys, ganzoo; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'ganzoo.plugins' not in sys.modules, 'plugins loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class SwitchablePlugin:
    """Registers whichever variant class ``variant`` holds at the time."""

    def __init__(self, variant):
        self.variant = variant

    @ganzoo.hookimpl
    def register_variants(self, register):
        register(self.variant)


def test_the_registry_follows_a_plugin_registered_again_with_the_same_object(register_plugin):
    """The registries cache on the plugin set; a plugin object can come back with the same id()
    (re-registered, or a new object in a freed one's memory) but other variants: the cache must not
    keep serving what the earlier registration gave."""
    first = type("First", (TinyLoss,), {"name": "test-first"})
    second = type("Second", (TinyLoss,), {"name": "test-second"})
    plugin = SwitchablePlugin(first)
    register_plugin(plugin, "test-switch")
    assert "test-first" in ganzoo.list_variants()
    plugins.unregister_plugin("test-switch")  # no registry lookup in between: the cache is still keyed
    plugin.variant = second                   # on the first registration's plugin set
    plugins.register_plugin(plugin, name="test-switch")
    names = ganzoo.list_variants()
    assert "test-second" in names and "test-first" not in names
