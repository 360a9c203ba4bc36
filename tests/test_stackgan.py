"""stackgan (ganzoo/variants/stackgan.py): the staged schedule, Stage-I frozen in stage 2, the
conformance kit in both stages, sampling by stage, and its errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ganzoo
from ganzoo.cli import main
from ganzoo.testing import check_variant
from ganzoo.trainer import Trainer, TrainOptions
from ganzoo.variants.stackgan import ConditioningAugmentation, StackGAN, kl_to_standard_normal

SMALL = {"batch_size": 8, "g_width": 8, "d_width": 8, "embed_dim": 8, "c_dim": 4, "nz": 8}


def test_stage_one_by_default_for_half_the_steps_and_refuses_an_empty_stage():
    spec = ganzoo.get_dataset("digits").spec
    assert ganzoo.create_variant("stackgan", spec, steps=10).hparams["stage1_steps"] == 5
    variant = ganzoo.create_variant("stackgan", spec, steps=10, stage1_steps=3)
    assert [variant.stage_of(s) for s in (0, 2, 3, 9)] == [1, 1, 2, 2]
    for bad in ({"steps": 10, "stage1_steps": 10}, {"steps": 1}):
        with pytest.raises(ganzoo.GanzooError, match="stage1_steps must be between 1 and steps - 1"):
            ganzoo.create_variant("stackgan", spec, **bad)


def test_kl_term_is_zero_for_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(4, 3)
    assert kl_to_standard_normal(zeros, zeros).item() == 0.0
    # Per dimension, as the reference's KL_loss: 0.5 * mu^2 averaged (a sum over 3 dims would give 1.5).
    assert kl_to_standard_normal(torch.ones(4, 3), zeros).item() == pytest.approx(0.5)


def test_wrong_labels_always_differ():
    labels = torch.arange(10).repeat(20)
    assert (StackGAN.wrong_labels(labels, 10) != labels).all()


def test_stage_two_leaves_stage_one_untouched(tmp_path):
    dataset = ganzoo.create_dataset("digits", seed=0)
    variant = ganzoo.create_variant("stackgan", dataset.spec, steps=4, stage1_steps=2, preset="paper", **SMALL)
    trainer = Trainer(variant, dataset, tmp_path, TrainOptions(device="cpu", progress=False))
    state = trainer.setup()
    for _ in range(2):
        trainer.train_step(state)
    assert int(state.nets["progress"].stage) == 2
    stage_one = {k: v.clone() for k, v in state.nets["G1"].named_parameters()}
    stage_two = {k: v.clone() for k, v in state.nets["G2"].state_dict().items()}
    stats = {}
    for _ in range(2):
        stats = trainer.train_step(state)
    assert set(stats) >= {"D2/loss", "G2/loss", "G2/kl", "D2/wrong"}
    # Stage-I's weights as stage 1 left them; Stage-II trained.
    assert all(torch.equal(stage_one[k], v) for k, v in state.nets["G1"].named_parameters())
    assert any(not torch.equal(stage_two[k], v) for k, v in state.nets["G2"].state_dict().items())


@pytest.mark.parametrize("steps, preset", [(2, {}), (3, {}), (3, {"conditioning_augmentation": True})],
                         ids=["stopped-at-the-stage-switch", "stopped-in-stage-2", "paper-stopped-in-stage-2"])
def test_conformance_in_both_stages(steps, preset):
    report = check_variant("stackgan", hparams={"stage1_steps": 1, "embed_dim": 8, "c_dim": 4, **preset},
                           steps=steps, toolkit=False)
    assert report.ok, report.format()


def test_stage_two_before_it_trained_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "run"
    sets = ["--set", *(f"{k}={v}" for k, v in SMALL.items() if k != "batch_size"), "stage1_steps=3"]
    assert main(["train", "stackgan", "--dataset", "digits", "--steps", "4", "--batch-size", "8",
                 "--out", str(run), "--quiet", "--ckpt-every", "1", "--keep", "0", *sets]) == 0
    capsys.readouterr()
    in_stage_one = run / "checkpoints" / "step-0000002.pt"
    out = tmp_path / "stage2.png"
    assert main(["sample", str(in_stage_one), "--stage", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage 2 has not been trained yet" in err[0]
    assert not out.exists()
    assert main(["sample", str(in_stage_one), "--out", str(out)]) == 0  # Stage-I images, the stage reached


def test_stage_two_samples_and_stage_one_on_request(tmp_path, capsys):
    run = tmp_path / "run"
    sets = ["--set", *(f"{k}={v}" for k, v in SMALL.items() if k != "batch_size"), "stage1_steps=1"]
    assert main(["train", "stackgan", "--dataset", "digits", "--steps", "2", "--batch-size", "8",
                 "--out", str(run), "--quiet", *sets]) == 0
    assert main(["sample", str(run), "--label", "3", "--n", "4"]) == 0
    assert main(["sample", str(run), "--label", "3", "--n", "4", "--stage", "1"]) == 0
    assert (run / "samples" / "sample-seed0-label3.png").exists()
    assert (run / "samples" / "sample-seed0-label3-stage1.png").exists()
    assert main(["sample", str(run), "--stage", "3"]) == 2
    assert "--stage must be 1 or 2" in capsys.readouterr().err


def test_stage_on_a_variant_without_stages_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "vanilla", "--dataset", "ring", "--steps", "1", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--stage", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no sampling option --stage" in err[0]


def test_needs_labeled_image_data():
    with pytest.raises(ganzoo.GanzooError, match="needs labeled data"):
        ganzoo.create_variant("stackgan", ganzoo.get_dataset("swissroll").spec)
    with pytest.raises(ganzoo.GanzooError, match="trains on image data"):
        ganzoo.create_variant("stackgan", ganzoo.get_dataset("8gaussians").spec)


def test_the_class_resolves_stage_one_as_the_instance_does():
    # quality.py compares a finished run's config with the class's resolved settings to reuse it.
    spec = ganzoo.create_dataset("digits").spec
    resolved = ganzoo.get_variant("stackgan").resolve_hparams(spec, {"steps": 4000})
    assert resolved["stage1_steps"] == 2000
    assert ganzoo.create_variant("stackgan", spec, steps=4000).hparams == resolved


def test_without_conditioning_augmentation_c_is_the_compressed_embedding_and_there_is_no_kl():
    """The default, the paper's ablation (section 5.3): c = mu, deterministic; the generator loss has no KL term;
    kl_weight alongside it is refused."""
    spec = ganzoo.get_dataset("digits").spec
    variant = ganzoo.create_variant("stackgan", spec, **SMALL)  # the default since 2026-12-05
    assert variant.hparams["conditioning_augmentation"] is False
    nets = variant.build(spec)
    augment = nets["G1"].augment
    assert augment.fc.out_features == SMALL["c_dim"]  # no log-variance half
    embedding = torch.randn(6, SMALL["embed_dim"])
    c, mu, logvar = augment(embedding)
    assert logvar is None and torch.equal(c, mu) and torch.equal(c, augment(embedding)[0])
    assert (c >= 0).all()  # the reference's ReLU on the compressed embedding
    labels = torch.arange(8) % 10
    fake, mu, logvar = nets["G1"](variant.latent(8, torch.device("cpu")), labels)
    loss, stats = variant._generator_loss(nets["D1"], fake, mu, logvar, labels)
    assert "kl" not in stats and torch.equal(loss, stats["loss"])
    with_ca = ganzoo.create_variant("stackgan", spec, preset="paper", **SMALL)
    assert with_ca.build(spec)["G2"].augment.fc.out_features == 2 * SMALL["c_dim"]
    with pytest.raises(ganzoo.GanzooError, match="no effect with conditioning_augmentation=false"):
        ganzoo.create_variant("stackgan", spec, conditioning_augmentation=False, kl_weight=2.0)


def test_the_tensorflow_codes_head_lets_sigma_fall_below_one_and_keeps_the_kl_formula():
    """ca_code="tensorflow" (the authors' original code): leaky ReLU 0.2 and log sigma, so a negative
    pre-activation x gives sigma = exp(0.2 x) < 1; "pytorch" (ReLU, log-variance) floors sigma at 1.
    Both hand the KL term a log-variance."""
    torch.manual_seed(0)
    tensorflow = ConditioningAugmentation(8, 4, code="tensorflow")
    pytorch = ConditioningAugmentation(8, 4, code="pytorch")
    pytorch.load_state_dict(tensorflow.state_dict())
    embedding = torch.randn(64, 8)
    pre = tensorflow.fc(embedding)
    _, mu, logvar = tensorflow(embedding)
    assert torch.allclose(mu, F.leaky_relu(pre[:, :4], 0.2))
    assert torch.allclose(logvar, 2 * F.leaky_relu(pre[:, 4:], 0.2))
    assert (logvar < 0).any()  # sigma below 1 somewhere
    _, _, logvar_pt = pytorch(embedding)
    assert (logvar_pt >= 0).all() and torch.allclose(logvar_pt, F.relu(pre[:, 4:]))
    # The KL of N(mu, sigma^2) against N(0, 1), with log sigma = s: -s + (sigma^2 + mu^2 - 1) / 2.
    s = F.leaky_relu(pre[:, 4:], 0.2)
    expected = (-s + 0.5 * (torch.exp(2 * s) + mu.square() - 1)).mean()
    assert torch.allclose(kl_to_standard_normal(mu, logvar), expected, atol=1e-6)
    # c's spread follows sigma: with a fixed pre-activation, c - mu over many draws has sigma's std.
    c = torch.stack([tensorflow(embedding[:1])[0] for _ in range(4000)])
    assert torch.allclose((c - mu[:1]).std(0), torch.exp(s[:1]), rtol=0.1)


def test_an_unknown_ca_code_is_one_line():
    spec = ganzoo.get_dataset("digits").spec
    with pytest.raises(ganzoo.GanzooError, match="ca_code must be one of pytorch, tensorflow"):
        ganzoo.create_variant("stackgan", spec, ca_code="jax", **SMALL)
