import pytest
import torch

import ganzoo
from ganzoo_hinge import HingeGAN


def test_conforms(ganzoo_check):
    ganzoo_check("hinge")


def test_conforms_without_spectral_norm(ganzoo_check):
    ganzoo_check("hinge", hparams={"spectral_norm": False})


def test_hinge_loss_values():
    variant = HingeGAN(None)
    real = torch.tensor([2.0, 0.5, -1.0])  # margin 1: hinge terms 0, 0.5, 2
    fake = torch.tensor([-2.0, 0.0, 1.0])  # hinge terms 0, 1, 2
    assert variant.d_loss(real, fake).item() == pytest.approx((0 + 0.5 + 2) / 3 + (0 + 1 + 2) / 3)
    assert variant.g_loss(fake).item() == pytest.approx(1 / 3)
    wide = HingeGAN(None, margin=2.0)
    assert wide.d_loss(torch.tensor([2.0]), torch.tensor([-2.0])).item() == 0.0


def _normalised(module):
    return [m for m in module.modules() if torch.nn.utils.parametrize.is_parametrized(m, "weight")]


@pytest.mark.parametrize("dataset", ["digits", "8gaussians"])
def test_spectral_norm_on_every_discriminator_layer_only(dataset):
    spec = ganzoo.get_dataset(dataset).spec
    nets = ganzoo.create_variant("hinge", spec, g_width=8, d_width=8).build(spec)
    layers = [m for m in nets["D"].modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert layers and _normalised(nets["D"]) == layers
    assert not _normalised(nets["G"])
    plain = ganzoo.create_variant("hinge", spec, spectral_norm=False, g_width=8, d_width=8).build(spec)
    assert not _normalised(plain["D"])


def test_normalised_weights_have_unit_spectral_norm():
    spec = ganzoo.get_dataset("8gaussians").spec
    nets = ganzoo.create_variant("hinge", spec, toy_hidden=32, sn_iterations=50).build(spec)
    nets.train()
    nets["D"](torch.randn(4, 2))  # power iterations run in training-mode forward passes
    for layer in _normalised(nets["D"]):
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)


def test_settings_and_options():
    hp = HingeGAN(None).hparams
    assert (hp["lr_g"], hp["lr_d"], hp["betas"], hp["n_critic"]) == (2e-4, 2e-4, (0.5, 0.999), 1)
    assert (hp["margin"], hp["spectral_norm"], hp["sn_iterations"]) == (1.0, True, 1)
    with pytest.raises(ganzoo.GanzooError, match="margin must be positive"):
        HingeGAN(None, margin=0)
