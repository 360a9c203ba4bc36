"""biggan (ganzoo/variants/biggan.py): the conformance kit, an exact resume, torchrun == --accumulate,
the hierarchical latent and conditional BatchNorm, the projection term, orthogonal regularisation,
spectral norm stepped once per optimiser step, truncation, and the one-line errors."""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

import ganzoo
from ganzoo.checkpoint import load_checkpoint
from ganzoo.cli import main
from ganzoo.testing import check_variant
from ganzoo.trainer import Trainer, TrainOptions
from ganzoo.variants import biggan
from ganzoo.variants.biggan import SpectralNorm, orthogonal_penalty, spectral_norms, truncate_latent

from .test_distributed import parameters, torchrun

SPEC = ganzoo.get_dataset("digits").spec
# Tiny nets: 8 feature maps at 32 px, a small embedding; the paper's training choices (attention at
# 16 px, orthogonal regularisation, 2 D steps), so every part of the variant is exercised.
SMALL = {"g_width": 2, "d_width": 2, "nz": 16, "shared_dim": 8, "attention": 16, "ortho_reg": 1e-4, "n_critic": 2}
SETS = ["--set", *(f"{k}={v}" for k, v in SMALL.items())]
CPU = torch.device("cpu")


def small_variant(**overrides):
    return ganzoo.create_variant("biggan", SPEC, **{"batch_size": 8, **SMALL, **overrides})


def test_28px_data_trains_at_32_samples_at_28_and_splits_z_into_a_chunk_per_block():
    variant = small_variant(nz=18)
    nets = variant.networks(SPEC)
    generator, critic = nets["G"], nets["D"]
    assert variant.side == 32 and generator.chunks == [5, 5, 4, 4]  # the linear layer, then 3 blocks
    assert biggan.chunk_sizes(120, 4) == [30] * 4 and biggan.chunk_sizes(120, 6) == [20] * 6  # the paper's 128 px
    z, labels = variant.latent(4, CPU), torch.arange(4)
    assert generator(z, labels).shape == (4, 1, 32, 32) and critic(generator(z, labels), labels).shape == (4,)
    nets.eval()
    out = variant.generate(nets, z, labels)
    assert out.shape == (4, 1, 28, 28) and out.abs().max() <= 1.0
    # Attention after the 16-px block in G and after D's first block (32 -> 16).
    assert generator.attention_after == 1 and critic.attention_after == 0
    assert generator.attention is not None and critic.attention is not None


def test_each_block_is_conditioned_on_the_shared_embedding_and_its_own_z_chunk():
    variant = small_variant(nz=16)
    generator = variant.networks(SPEC)["G"]
    seen = []
    for block in generator.blocks:
        block.register_forward_pre_hook(lambda module, args: seen.append(args[1].detach().clone()))
    z, labels = variant.latent(3, CPU), torch.tensor([0, 5, 9])
    generator(z, labels)
    shared = generator.shared(labels).detach()
    chunks = torch.split(z, generator.chunks, dim=1)
    assert len(seen) == 3
    for condition, chunk in zip(seen, chunks[1:]):
        assert torch.equal(condition, torch.cat([shared, chunk], dim=1))
    # Conditional BatchNorm: no affine parameters of its own; gain 1 + gamma(c), bias beta(c).
    cbn = generator.blocks[0].bn1
    assert not cbn.norm.affine and cbn.gain.in_features == 8 + generator.chunks[1]
    x, condition = torch.randn(4, 8, 4, 4), torch.randn(4, 8 + generator.chunks[1])
    cbn.eval()
    expected = (cbn.norm(x) * (1 + cbn.gain(condition))[:, :, None, None] + cbn.bias(condition)[:, :, None, None])
    torch.testing.assert_close(cbn(x, condition), expected)


def test_without_shared_embedding_and_hierarchical_z_each_norm_looks_up_its_own_class_embedding():
    variant = small_variant(nz=16, shared_embedding=False, hierarchical_z=False)
    generator = variant.networks(SPEC)["G"]
    assert generator.shared is None and generator.chunks == [16]
    assert generator.linear.in_features == 16  # all of z enters the first layer
    seen = []
    for block in generator.blocks:
        block.register_forward_pre_hook(lambda module, args: seen.append(args[1].detach().clone()))
    z, labels = variant.latent(3, CPU), torch.tensor([0, 5, 9])
    generator(z, labels)
    assert len(seen) == 3 and all(torch.equal(condition, labels) for condition in seen)
    cbn = generator.blocks[0].bn1
    assert isinstance(cbn.gain, torch.nn.Embedding) and cbn.gain.weight.shape == (10, cbn.norm.num_features)
    x = torch.randn(3, cbn.norm.num_features, 4, 4)
    cbn.eval()
    expected = cbn.norm(x) * (1 + cbn.gain.weight[labels])[:, :, None, None] + cbn.bias.weight[labels][:, :, None, None]
    torch.testing.assert_close(cbn(x, labels), expected)
    # The per-layer embeddings are G weights like any other: orthogonal regularisation covers them.
    regularised = {id(w) for w in generator.regularised_weights()}
    assert id(cbn.gain.weight) in regularised and id(cbn.bias.weight) in regularised
    generator.eval()
    assert not torch.allclose(generator(z, torch.tensor([1, 1, 1])), generator(z, torch.tensor([2, 2, 2])))


def test_n02_initialisation_draws_weights_of_std_0_02_and_restarts_the_power_iteration():
    nets = small_variant(weight_init="N02", g_width=8, d_width=8).networks(SPEC)
    for net in nets.values():
        weights = [w for _, w in spectral_norms(net)]
        assert torch.cat([w.flatten() for w in weights]).std().item() == pytest.approx(0.02, rel=0.05)
        # sigma = u^T W v near W's largest singular value again (15 power iterations, as when built; the
        # vectors of the orthogonal weights they replace would give a fraction of it)
        for norm, weight in spectral_norms(net):
            sigma = (weight.flatten(1) * torch.outer(norm._u, norm._v)).sum()
            assert sigma.item() == pytest.approx(torch.linalg.matrix_norm(weight.flatten(1), ord=2).item(), rel=0.15)
    assert nets["G"].shared.weight.std().item() == pytest.approx(0.02, rel=0.2)
    ortho = small_variant(g_width=8, d_width=8).networks(SPEC)["G"].linear.parametrizations.weight.original
    assert torch.linalg.matrix_norm(ortho, ord=2).item() == pytest.approx(1.0)  # the default: orthogonal


@pytest.mark.parametrize("overrides, message", [
    ({"shared_embedding": False}, "hierarchical_z=true needs shared_embedding=true"),
    ({"weight_init": "xavier"}, "weight_init must be one of ortho, N02"),
])
def test_architecture_options_refuse_what_the_reference_cannot_do(tmp_path, overrides, message):
    with pytest.raises(ganzoo.GanzooError, match=message):
        small_variant(**overrides)
    out = tmp_path / "run"
    assert main(["train", "biggan", "--dataset", "digits", "--steps", "1", "--out", str(out), "--quiet",
                 "--set", *(f"{k}={v}" for k, v in overrides.items())]) == 2
    assert not out.exists()


def test_the_critic_adds_the_projection_of_the_label_embedding():
    critic = small_variant().networks(SPEC)["D"]
    critic.eval()
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    a, b = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    with torch.no_grad():
        h = critic.features(images)
        assert h.shape == (4, 8) and (h >= 0).all()  # ReLU, then global sum pooling
        for labels in (a, b):
            projection = (critic.embed(labels) * h).sum(dim=1)
            torch.testing.assert_close(critic(images, labels), critic.linear(h).squeeze(1) + projection)
        assert not torch.allclose(critic(images, a), critic(images, b))  # the output depends on the label


def test_orthogonal_penalty_on_known_matrices():
    # The modified form leaves the filters' norms free: orthogonal rows of any length cost nothing.
    assert orthogonal_penalty([torch.diag(torch.tensor([3.0, 5.0]))]).item() == 0.0
    w = torch.tensor([[1.0, 1.0], [1.0, 0.0]], requires_grad=True)  # W W^T = [[2, 1], [1, 1]]
    penalty = orthogonal_penalty([w])
    assert penalty.item() == pytest.approx(2.0)  # the two off-diagonal 1s, squared
    penalty.backward()
    off = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(w.grad, 4 * off @ w.detach())  # d/dW ||W W^T * (1 - I)||^2 = 4 (...) W
    # A conv kernel (out, in, k, k) is a matrix of one row per output unit: two equal filters.
    kernel = torch.ones(2, 1, 2, 2)
    assert orthogonal_penalty([kernel]).item() == pytest.approx(2 * 4.0 ** 2)


def test_orthogonal_regularisation_covers_g_but_its_shared_embedding_and_enters_the_g_loss():
    variant = small_variant()
    nets = variant.networks(SPEC)
    generator = nets["G"]
    weights = generator.regularised_weights()
    assert all(w is not generator.shared.weight for w in weights)
    originals = [w for _, w in spectral_norms(generator)]
    assert len(weights) == len(originals) and {id(w) for w in weights} == {id(w) for w in originals}
    batch = ganzoo.create_dataset("digits", seed=0).sample(8)
    _, stats = variant.generator_loss(nets, batch)
    torch.testing.assert_close(stats["ortho"], orthogonal_penalty(weights).detach())
    off = small_variant(ortho_reg=0.0)
    _, stats = off.generator_loss(nets, batch)
    assert "ortho" not in stats
    with pytest.raises(ganzoo.GanzooError, match="ortho_reg must be >= 0"):
        small_variant(ortho_reg=-1.0)


def test_spectral_norm_steps_once_per_optimiser_step_and_not_in_the_forward(tmp_path, monkeypatch):
    weight = torch.randn(6, 4, 3, 3)
    norm = SpectralNorm(weight)
    norm.power_iteration(weight, 100)
    normalised = norm(weight)
    assert torch.linalg.matrix_norm(normalised.flatten(1), ord=2).item() == pytest.approx(1.0, abs=1e-4)
    # Nowhere a spectral norm of torch's: G and D carry this one, and G's shared embedding none.
    variant = small_variant()
    dataset = ganzoo.create_dataset("digits", seed=0)
    trainer = Trainer(variant, dataset, tmp_path, TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    assert not torch.nn.utils.parametrize.is_parametrized(state.nets["G"].shared)
    assert torch.nn.utils.parametrize.is_parametrized(state.nets["D"].embed)
    vectors = {k: v.clone() for k, v in state.nets.state_dict().items() if k.endswith(("._u", "._v"))}
    state.nets.train()
    state.nets["D"](torch.zeros(2, 1, 32, 32), torch.tensor([1, 2]))  # a training forward leaves them
    assert all(torch.equal(v, state.nets.state_dict()[k]) for k, v in vectors.items())
    calls = []
    original = biggan.SpectralNorm.power_iteration

    def counting(self, weight, iterations=1):
        calls.append(iterations)
        return original(self, weight, iterations)

    monkeypatch.setattr(biggan.SpectralNorm, "power_iteration", counting)
    stats = trainer.train_step(state)
    d_norms, g_norms = len(spectral_norms(state.nets["D"])), len(spectral_norms(state.nets["G"]))
    assert calls == [1] * (2 * d_norms + g_norms)  # after each of the 2 D steps and the G step
    assert len(stats["D/loss"]) == 2 and "G/ortho" in stats
    # G_ema holds G's vectors (the EMA feature copies buffers).
    ema = state.nets.state_dict()
    assert all(torch.equal(ema["G_ema" + k[1:]], v) for k, v in ema.items() if k.startswith("G.") and "._u" in k)
    # Sampling draws from a copy of G_ema with standing statistics: BatchNorm recomputed for its weights.
    sampled = variant.sampling_nets(state.nets)["G"]
    assert sampled is not state.nets["G_ema"]
    stored = state.nets["G_ema"].blocks[0].bn1.norm.running_mean
    assert not torch.equal(sampled.blocks[0].bn1.norm.running_mean, stored)


def test_defaults_follow_the_reference_cifar_script_and_the_presets_the_paper():
    variant = ganzoo.create_variant("biggan", SPEC)
    hp = variant.hparams
    # BigGAN-PyTorch's launch_cifar_ema.sh: equal rates, 4 D steps, no attention, no orthogonal reg.
    assert (hp["n_critic"], hp["betas"], hp["adam_eps"], hp["ortho_reg"]) == (4, (0.0, 0.999), 1e-6, 0.0)
    assert (hp["nz"], hp["shared_dim"], hp["ema"], hp["attention"], hp["steps"]) == (120, 128, 0.9999, 0, 800)
    assert [(p.name, p.repeats) for p in variant.phases(0)] == [("D", 4), ("G", 1)]
    optimizers = variant.optimizers_for(variant.networks(SPEC))
    assert optimizers["G"].param_groups[0]["lr"] == 2e-4 and optimizers["D"].param_groups[0]["lr"] == 2e-4
    assert optimizers["D"].param_groups[0]["eps"] == 1e-6
    assert variant.networks(SPEC)["G"].attention is None
    small = ganzoo.create_variant("biggan", SPEC, preset="paper-small").hparams
    assert (small["lr_g"], small["lr_d"], small["n_critic"], small["attention"], small["ortho_reg"],
            small["steps"], small["g_width"]) == (1e-4, 4e-4, 2, 16, 1e-4, 1200, 8)
    paper = ganzoo.create_variant("biggan", SPEC, preset="paper").hparams
    assert (paper["lr_g"], paper["lr_d"], paper["batch_size"], paper["g_width"]) == (5e-5, 2e-4, 2048, 96)
    assert (paper["n_critic"], paper["attention"], paper["ortho_reg"]) == (2, 16, 1e-4)


@pytest.mark.parametrize("steps", [2, 3], ids=["resumed-after-2", "resumed-after-3"])
def test_conformance(steps):
    report = check_variant("biggan", hparams={k: v for k, v in SMALL.items() if k != "nz"}, steps=steps,
                           toolkit=steps == 2)
    assert report.ok, report.format()


# BigGAN-PyTorch's CIFAR-10 script's generator: per-layer class embeddings, one z, N(0, 0.02) weights.
SCRIPT_ARCH = {"shared_embedding": False, "hierarchical_z": False, "weight_init": "N02"}


@pytest.mark.parametrize("arch", [{}, SCRIPT_ARCH], ids=["paper-arch", "cifar-script-arch"])
def test_resume_is_bit_identical(tmp_path, arch):
    common = ["--dataset", "digits", "--batch-size", "8", "--quiet", "--device", "cpu", "--sample-every", "0",
              *SETS, *(f"{k}={v}" for k, v in arch.items())]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", "biggan", "--steps", "4", "--out", str(straight), *common]) == 0
    assert main(["train", "biggan", "--steps", "2", "--out", str(stopped), *common]) == 0
    assert main(["train", "--resume", str(stopped), "--steps", "4", "--quiet", "--device", "cpu"]) == 0
    a, b = load_checkpoint(straight), load_checkpoint(stopped)
    assert a["nets"].keys() == b["nets"].keys()
    assert any(k.endswith("._u") for k in a["nets"]) and any(k.startswith("G_ema.") for k in a["nets"])
    for name in a["nets"]:
        assert torch.equal(a["nets"][name], b["nets"][name]), name
    metrics = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert any("G/ortho" in m for m in metrics)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")
def test_two_ranks_equal_one_process_with_accumulation(tmp_path):
    # Spectral-norm vectors, EMA and the 2 D steps must come out the same; BatchNorm normalises
    # each rank's shard as --accumulate normalises each micro-batch.
    ranked, single = tmp_path / "ranked", tmp_path / "single"
    common = ["--device", "cpu", "--batch-size", "16", "--quiet", "--sample-every", "0", *SETS]
    result = torchrun("train", "biggan", "--steps", "3", "--out", str(ranked), *common)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.set_num_threads(1)
    assert main(["train", "biggan", "--steps", "3", "--out", str(single), "--accumulate", "2", *common]) == 0
    events = [json.loads(x) for x in (ranked / "metrics.jsonl").read_text().splitlines() if "event" in x]
    assert {"event": "ranks_consistent", "step": 3, "world": 2} in events
    a, b = parameters(ranked), parameters(single)
    assert a.keys() == b.keys() and any(k.endswith("._u") for k in a) and any(k.startswith("G_ema.") for k in a)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


def test_truncation_draws_the_truncated_normal_with_threshold_two_psi():
    torch.manual_seed(0)
    z = torch.randn(200_000)
    for psi in (1.0, 0.5, 0.02):
        t = 2 * psi
        mapped = truncate_latent(z, psi)
        assert mapped.abs().max().item() <= t
        # The variance of N(0, 1) truncated to [-t, t]: 1 - 2 t phi(t) / (2 Phi(t) - 1).
        phi, cdf = math.exp(-t * t / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(t / math.sqrt(2)))
        assert mapped.var().item() == pytest.approx(1 - 2 * t * phi / (2 * cdf - 1), rel=0.02)
    # Monotone and deterministic in z: walks stay continuous, the same seed corresponds across psi.
    line = torch.linspace(-4, 4, 101)
    assert (truncate_latent(line, 0.5).diff() > 0).all()
    assert torch.equal(truncate_latent(line, 0.5), truncate_latent(line, 0.5))


def test_smaller_psi_gives_less_varied_samples_and_bad_psi_is_an_error():
    variant = small_variant()
    nets = variant.networks(SPEC).eval()
    z, labels = variant.latent(32, CPU), torch.zeros(32, dtype=torch.long)
    with torch.no_grad():
        spread = {psi: variant.generate(nets, z, labels, truncation=psi).std(dim=0).mean().item()
                  for psi in (1.0, 0.25, 0.01)}
    assert spread[1.0] > spread[0.25] > spread[0.01]
    for psi in (0.0, 1.5, -0.5):
        with pytest.raises(ganzoo.GanzooError, match=r"--truncation must be in \(0, 1\] \(biggan"):
            variant.generate(nets, z, labels, truncation=psi)


def test_cli_samples_with_truncation_and_refuses_bad_options(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "biggan", "--dataset", "digits", "--steps", "2", "--batch-size", "8", "--out",
                 str(run), "--quiet", "--sample-every", "0", *SETS]) == 0
    assert main(["sample", str(run), "--n", "4", "--truncation", "0.5", "--label", "3"]) == 0
    assert main(["sample", str(run), "--interpolate", "3", "--rows", "2", "--truncation", "0.5"]) == 0
    for name in ("sample-seed0-label3-truncation0.5.png", "interpolate3-seed0-truncation0.5.png"):
        assert (run / "samples" / name).exists(), name
    capsys.readouterr()
    for args, message in ((["--truncation", "0"], r"--truncation must be in (0, 1]"),
                          (["--truncation", "1.5"], r"--truncation must be in (0, 1]"),
                          (["--style-mix"], "has no sampling option --style-mix")):
        assert main(["sample", str(run), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)


def test_unlabeled_data_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(ganzoo.GanzooError, match="class-conditional and needs labeled data.*labeled image dataset"):
        ganzoo.create_variant("biggan", ganzoo.get_dataset("swissroll").spec)
    with pytest.raises(ganzoo.GanzooError, match="trains on image data"):
        ganzoo.create_variant("biggan", ganzoo.get_dataset("8gaussians").spec)
    folder = tmp_path / "images"  # a flat folder: images without labels
    folder.mkdir()
    for i in range(4):
        Image.new("L", (28, 28), color=i * 60).save(folder / f"{i}.png")
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "biggan", "--dataset", f"folder:{folder}", "--steps", "1", "--out", str(out),
                 "--quiet", *SETS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs labeled data" in err[0], err
    assert not out.exists()


def test_bad_sizes_are_one_line_errors():
    with pytest.raises(ganzoo.GanzooError, match="attention is the resolution of the self-attention block: "
                                                 "one of 8, 16 at 32 px"):
        small_variant(attention=32)
    assert small_variant(attention=0).networks(SPEC)["G"].attention is None
    with pytest.raises(ganzoo.GanzooError, match="nz must be at least 4 at 32 px"):
        small_variant(nz=3)
