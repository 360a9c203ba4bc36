"""The gradient penalty: per-sample norm, interpolation, R1 form."""
import pytest
import torch

from ganzoo.ops import gradient_penalty, interpolate, per_sample_norm


def test_norm_is_per_sample_not_whole_batch():
    # Critic D(x) = sum_i w * x_i per sample: grad for sample b is w * ones.
    # Two samples with different gradient scales: per-sample norms are 3 and 4.
    grads = torch.zeros(2, 1, 2, 2)
    grads[0, 0, 0, 0] = 3.0
    grads[1, 0, 1, 1] = 4.0
    assert per_sample_norm(grads).tolist() == [3.0, 4.0]
    whole_batch = grads.norm()  # 5: the common mistake
    assert whole_batch.item() == pytest.approx(5.0)


def test_penalty_uses_per_sample_norms():
    scale = torch.tensor([1.0, 3.0])  # sample b's gradient has norm scale_b * |w| = scale_b * 2

    def critic(x):
        return (x.flatten(1) * 2.0 / 2.0).sum(1) * scale  # grad = scale_b * ones(4) -> norm 2 * scale_b

    real = torch.zeros(2, 1, 2, 2)
    fake = torch.ones(2, 1, 2, 2)
    penalty, norms = gradient_penalty(critic, real, fake, weight=10.0, center=1.0)
    assert norms.tolist() == pytest.approx([2.0, 6.0])
    # Per sample: 10 * mean((2-1)^2, (6-1)^2) = 130. A whole-batch norm would give
    # 10 * (sqrt(4+36) - 1)^2 = 283.5, a different answer.
    assert penalty.item() == pytest.approx(130.0)


def test_interpolation_is_per_sample_and_between_endpoints():
    real = torch.zeros(3, 2, 4, 4)
    fake = torch.ones(3, 2, 4, 4)
    eps = torch.tensor([0.0, 0.25, 1.0])
    mixed = interpolate(real, fake, eps)
    # eps weights the real sample: eps=1 -> real (0), eps=0 -> fake (1).
    assert mixed[0].unique().tolist() == [1.0]
    assert mixed[1].unique().tolist() == [0.75]
    assert mixed[2].unique().tolist() == [0.0]


def test_penalty_backpropagates_to_critic_parameters():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 16), torch.nn.LeakyReLU(0.2),
                                 torch.nn.Linear(16, 1))
    real, fake = torch.randn(5, 2, 2, 2), torch.randn(5, 2, 2, 2)
    penalty, _ = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake)
    penalty.backward()
    # The weights shape the input gradient (biases only move the piecewise-linear kinks).
    weights = [critic[1].weight, critic[3].weight]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
    # The inputs are constants for the penalty: nothing flows back into them.
    assert real.grad is None and fake.grad is None


def test_r1_is_zero_centred_at_real_points():
    w = torch.tensor([0.5, -1.5])

    def critic(x):
        return x @ w

    real = torch.randn(4, 2)
    penalty, norms = gradient_penalty(critic, real, None, weight=1.0, center=0.0)
    assert norms.tolist() == pytest.approx([w.norm().item()] * 4)
    assert penalty.item() == pytest.approx(w.norm().item() ** 2)
