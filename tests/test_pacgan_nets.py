"""PacGAN's toy networks (``--set toy_arch=pacgan``), as in the authors' 2-D experiments."""
from __future__ import annotations

import pytest
import torch

import ganzoo
from ganzoo.cli import main
from ganzoo.nets import Maxout, MaxoutDiscriminator, PacGANToyGenerator


def test_maxout_is_the_max_over_pieces():
    layer = Maxout(3, 2, pieces=4)
    x = torch.randn(5, 3)
    pieces = layer.linear(x).view(5, 2, 4)
    assert torch.equal(layer(x), pieces.max(dim=2).values)


def test_the_nets_have_the_papers_shapes_and_init():
    variant = ganzoo.create_variant("vanilla", ganzoo.get_dataset("grid").spec, toy_arch="pacgan", pack=3,
                                    batch_size=300)
    nets = variant.networks(ganzoo.get_dataset("grid").spec)
    g, d = nets["G"], nets["D"]
    assert isinstance(g, PacGANToyGenerator) and isinstance(d, MaxoutDiscriminator)
    linears = [m for m in g.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 400), (400, 400), (400, 400), (400, 400),
                                                                  (400, 2)]
    assert all(m.bias is None for m in linears[:-1]) and linears[-1].bias is not None  # BN follows each hidden
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in g.modules()) == 4
    maxouts = [m for m in d.modules() if isinstance(m, Maxout)]
    assert [(m.linear.in_features, m.out_features, m.pieces) for m in maxouts] == [(6, 200, 5), (200, 200, 5),
                                                                                   (200, 200, 5)]
    weights = torch.cat([m.weight.flatten() for m in nets.modules() if isinstance(m, torch.nn.Linear)])
    assert abs(weights.std().item() - 0.02) < 0.002  # N(0, 0.02), biases 0
    assert d(torch.randn(12, 2)).shape == (4,)  # 12 samples in packs of 3: one score per pack


def test_a_short_pacgan_run_trains_and_evaluates(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "vanilla", "--dataset", "ring", "--set", "toy_arch=pacgan", "pack=2", "lr_g=1e-4",
                 "lr_d=1e-4", "betas=0.8,0.999", "--batch-size", "200", "--steps", "5", "--device", "cpu",
                 "--out", str(run), "--quiet", "--sample-every", "0"]) == 0
    metrics = ganzoo.evaluate(run, n=500, device="cpu", write=False)["metrics"]
    assert 0 <= metrics["modes"] <= 8


@pytest.mark.parametrize("args, problem", [
    (["vanilla", "--set", "toy_arch=maxout"], "unknown toy_arch 'maxout'; use 'wgan-gp' or 'pacgan'"),
    (["cgan", "--set", "toy_arch=pacgan"], "toy_arch=pacgan has no conditional nets"),
])
def test_bad_toy_arch_settings_are_one_line(args, problem, tmp_path, capsys):
    assert main(["train", *args, "--dataset", "ring", "--steps", "1", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err
    assert not (tmp_path / "r").exists()
