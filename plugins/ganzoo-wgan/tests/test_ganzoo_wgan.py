import pytest
import torch

import ganzoo


def test_conforms(ganzoo_check):
    # ganzoo's conformance kit: builds, trains, samples, reloads, on tiny data.
    ganzoo_check("wgan")


def test_registered_by_this_plugin():
    assert "wgan" in ganzoo.list_variants()


def test_paper_settings():
    variant = ganzoo.create_variant("wgan", ganzoo.get_dataset("digits").spec)
    hp = variant.hparams
    assert (hp["lr_g"], hp["lr_d"], hp["n_critic"], hp["clip"]) == (5e-5, 5e-5, 5, 0.01)
    nets = variant.build(ganzoo.get_dataset("digits").spec)
    optimizers = variant.make_optimizers(nets)
    assert all(isinstance(opt, torch.optim.RMSprop) for opt in optimizers.values())
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    assert not any(isinstance(m, norms) for m in nets["D"].modules())
    assert [phase.repeats for phase in variant.phases(0)] == [5, 1]


def test_betas_are_not_a_setting():
    with pytest.raises(ganzoo.GanzooError, match="no hyperparameter 'betas'"):
        ganzoo.create_variant("wgan", None, betas="0.5,0.9")


def test_critic_is_clipped_after_every_critic_step():
    dataset = ganzoo.create_dataset("8gaussians", seed=0)
    variant = ganzoo.create_variant("wgan", dataset.spec, batch_size=16, toy_hidden=16,
                                    lr_d=0.5, clip=0.05)
    dataset.prepare("cpu")
    nets = variant.build(dataset.spec)
    optimizers = variant.make_optimizers(nets)
    critic = variant.phases(0)[0]
    for _ in range(critic.repeats):
        batch = dataset.sample(16)
        optimizers["D"].zero_grad()
        loss, _ = critic.loss(nets, batch)
        loss.backward()
        optimizers["D"].step()  # lr 0.5 pushes weights far outside the clip box ...
        critic.after(nets)      # ... and the clip brings them back
        weights = torch.cat([p.flatten() for p in nets["D"].parameters()])
        assert weights.abs().max() <= 0.05
    generator = torch.cat([p.flatten() for p in nets["G"].parameters()])
    assert generator.abs().max() > 0.05  # the generator is never clipped
