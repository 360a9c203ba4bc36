"""The conformance kit (ganzoo.testing, `ganzoo check`, the `ganzoo_check` fixture).

Every registered variant must pass it; each kind of broken variant must fail
the check that is meant to catch it, with a reason that says what is wrong.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid

import pytest
import torch

import ganzoo
from ganzoo.cli import main
from ganzoo.testing import DATA_CASES, check_variant

FAST = DATA_CASES[:2]  # vector and grayscale 28x28: enough to show a failure


@pytest.mark.parametrize("name", ganzoo.list_variants())
def test_every_registered_variant_passes(name):
    report = check_variant(name)
    assert report.ok, report.format()
    labels = [r.name for r in report.results]
    for case in ("vector 2-d", "image 1x28x28", "image 3x28x28", "image 1x32x32", "image 3x32x32"):
        for check in ("build", "train", "sampling", "determinism", "checkpoint", "resume"):
            assert f"{case}: {check}" in labels


class Good(ganzoo.TwoPlayerVariant):
    """A well-behaved variant that the broken ones below each break in one way."""

    name = "kit-good"
    paper = "test"
    summary = "least squares, for the kit's tests"

    def d_loss(self, real_scores, fake_scores):
        return ((real_scores - 1) ** 2).mean() + (fake_scores ** 2).mean()

    def g_loss(self, fake_scores):
        return ((fake_scores - 1) ** 2).mean()


def _status(report, name):
    return next(r for r in report.results if r.name == name)


def test_a_good_class_passes_without_registering():
    report = check_variant(Good, cases=FAST)
    assert report.ok, report.format()
    assert report.source.startswith("class ")
    assert report.format().splitlines()[-1].startswith(f"{len(report.results)} passed, 0 failed")


class NaNLoss(Good):
    def g_loss(self, fake_scores):
        return fake_scores.mean() * float("nan")


class UnboundedImages(Good):
    def generate(self, nets, z, labels=None):
        return super().generate(nets, z, labels) + 1.5


class WrongShape(Good):
    def generate(self, nets, z, labels=None):
        return super().generate(nets, z, labels)[:, :1]


class IgnoresLabels(Good):
    conditional = True

    def generate(self, nets, z, labels=None):
        return nets["G"](z, torch.zeros_like(labels))


class Unseeded(Good):
    def latent(self, n, device):
        generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
        return torch.randn(n, self.noise_dim, generator=generator).to(device)


class HiddenState(Good):
    """Counts its own calls: a resumed run starts the count again."""

    calls = 0

    def g_loss(self, fake_scores):
        self.calls += 1
        return super().g_loss(fake_scores) * self.calls


class UnknownOptimiser(Good):
    def phases(self, step):
        d, g = super().phases(step)
        return [ganzoo.Phase("D", ("critic",), d.loss), g]


class FrozenGenerator(Good):
    def make_optimizers(self, nets):
        optimizers = super().make_optimizers(nets)
        optimizers["G"] = torch.optim.SGD(nets["G"].parameters(), lr=0.0)
        return optimizers


class Opaque:
    """Not a tensor or plain container: weights_only loading refuses it."""


class UnsafeExtra(Good):
    def end_step(self, state):
        state.extra["thing"] = Opaque()


class Incomplete(ganzoo.TwoPlayerVariant):
    name = "kit-incomplete"
    paper = "test"
    summary = "no losses"


class BadName(Good):
    name = "My GAN"


@pytest.mark.parametrize("variant, check, reason", [
    (NaNLoss, "vector 2-d: train", "G/loss is nan"),
    (UnboundedImages, "image 1x28x28: sampling", "images must be in [-1, 1]"),
    (WrongShape, "vector 2-d: build", "generate() returned shape (6, 1), expected (6, 2)"),
    (IgnoresLabels, "vector 2-d: sampling", "labels are ignored"),
    (Unseeded, "vector 2-d: determinism", "two runs with the same seed"),
    (HiddenState, "vector 2-d: resume", "keep state outside nets, optimisers and TrainState.extra"),
    (UnknownOptimiser, "vector 2-d: build", "phase 'D' updates ['critic']"),
    (FrozenGenerator, "vector 2-d: train", "no parameter of optimiser 'G' changed"),
    (UnsafeExtra, "vector 2-d: checkpoint", "was refused"),
    (Incomplete, "contract", "does not implement: d_loss, g_loss"),
    (BadName, "contract", "name 'My GAN' must be lowercase"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_broken_variant_fails_the_right_check(variant, check, reason):
    report = check_variant(variant, cases=FAST)
    assert not report.ok
    result = _status(report, check)
    assert result.status == "fail", report.format()
    assert reason in result.detail, report.format()
    assert f"FAIL  {check}" in report.format()


def test_image_only_problems_pass_the_vector_case():
    report = check_variant(UnboundedImages, cases=FAST)
    assert _status(report, "vector 2-d: sampling").status == "pass"


def test_checks_after_a_failure_are_skipped_with_a_reason():
    report = check_variant(Incomplete, cases=FAST)
    build = _status(report, "vector 2-d: build")
    assert build.status == "skip" and "contract" in build.detail
    report = check_variant(NaNLoss, cases=FAST)
    assert _status(report, "vector 2-d: sampling").status == "skip"
    assert "skipped" in report.format().splitlines()[-1]


def test_the_reason_points_at_the_plugin_code():
    class Crashes(Good):
        def d_loss(self, real_scores, fake_scores):
            raise ValueError("bad shapes")

    result = _status(check_variant(Crashes, cases=FAST), "vector 2-d: train")
    assert result.detail.startswith("ValueError: bad shapes (at test_testing.py:")
    assert "in d_loss)" in result.detail


def test_the_kit_leaves_rng_and_threads_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    check_variant(Good, cases=FAST[:1])
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_report_as_json():
    data = check_variant(Good, cases=FAST[:1]).to_dict()
    assert data["ok"] and data["fail"] == 0 and data["pass"] == len(data["results"])
    assert {"name", "status", "detail"} <= set(data["results"][0])


def test_unknown_name_is_a_ganzoo_error():
    with pytest.raises(ganzoo.UnknownNameError, match="Did you mean 'wgan-gp'"):
        check_variant("wgan-gpp")


# -- the command ------------------------------------------------------------------
def test_check_command_passes_a_builtin(capsys):
    assert main(["check", "dcgan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ganzoo check dcgan (built-in plugin ganzoo.variants.dcgan)")
    assert "0 failed" in out and "FAIL" not in out


class NamedNaN(NaNLoss):
    name = "kit-nan"


class KitPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(NamedNaN)
        register(type("Fine", (Good,), {"name": "kit-fine"}))


def test_check_command_exits_2_with_the_reasons(register_plugin, capsys):
    register_plugin(KitPlugin(), "kit-plugin")
    assert main(["check", "kit-nan", "--steps", "1"]) == 2
    captured = capsys.readouterr()
    assert "FAIL  vector 2-d: train" in captured.out and "G/loss is nan" in captured.out
    assert captured.err.strip().count("\n") == 0
    assert "variant 'kit-nan' failed" in captured.err
    assert main(["check", "kit-fine", "--json", "--set", "arch=mlp"]) == 0


def test_check_command_names_a_broken_plugin(register_plugin, capsys):
    class Raising:
        @ganzoo.hookimpl
        def register_variants(self, register):
            raise RuntimeError("cannot import my weights")

    register_plugin(Raising(), "kit-raising")
    assert main(["check", "kit-raising"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "variant 'kit-raising' is unavailable" in err
    assert "plugin 'kit-raising': register_variants: RuntimeError: cannot import my weights" in err


def test_check_command_refuses_a_bad_override(capsys):
    assert main(["check", "dcgan", "--set", "n_critics=2"]) == 2
    assert "has no hyperparameter 'n_critics'" in capsys.readouterr().err


# -- the pytest fixture, as a plugin author's suite uses it ------------------------------
def test_ganzoo_check_fixture_is_registered_with_pytest(tmp_path):
    (tmp_path / "test_author.py").write_text(textwrap.dedent('''
        import torch
        import ganzoo
        from ganzoo.testing import DATA_CASES


        class Mine(ganzoo.TwoPlayerVariant):
            name = "mine"
            paper = "test"
            summary = "hinge"

            def d_loss(self, r, f):
                return (1 - r).relu().mean() + (1 + f).relu().mean()

            def g_loss(self, f):
                return -f.mean()


        class Unbounded(Mine):
            def generate(self, nets, z, labels=None):
                return super().generate(nets, z, labels) + 1.5


        def test_mine(ganzoo_check):
            report = ganzoo_check(Mine, cases=DATA_CASES[:2])
            assert report.ok


        def test_unbounded(ganzoo_check):
            ganzoo_check(Unbounded, cases=DATA_CASES[:2])


        def test_by_name(ganzoo_check):
            ganzoo_check("dcgan", cases=DATA_CASES[:1])


        def test_unknown(ganzoo_check):
            ganzoo_check("no-such-gan-%s")
    ''' % uuid.uuid4().hex[:6]))
    env = {**os.environ, "GANZOO_LOAD_PLUGINS": ""}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_author.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert "2 failed, 2 passed" in out, out + result.stderr
    assert re.search(r"FAIL  image 1x28x28: sampling +images must be in \[-1, 1\], got", out), out
    assert "ganzoo check no-such-gan" in out and "unknown variant" in out
