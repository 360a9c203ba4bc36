"""Embedded datasets: constants, labels, on-device sampling, the digits cache."""
from __future__ import annotations

import math

import pytest
import torch

import ganzoo
from ganzoo.data.base import cache_dir
from ganzoo.data.toy import eight_gaussian_centres


def test_eight_gaussians_constants():
    data = ganzoo.create_dataset("8gaussians", seed=1).prepare("cpu")
    batch = data.sample(4096)
    assert batch.real.shape == (4096, 2) and batch.labels.shape == (4096,)
    centres = eight_gaussian_centres() / 1.414
    residual = batch.real - centres[batch.labels]
    assert residual.std().item() == pytest.approx(0.02 / 1.414, rel=0.1)
    assert torch.bincount(batch.labels, minlength=8).min() > 400
    radius = centres.norm(dim=1)
    assert torch.allclose(radius, torch.full((8,), 2 / 1.414))
    # Resampled fresh every batch.
    assert not torch.equal(data.sample(16).real, data.sample(16).real)


def test_twenty_five_gaussians_is_a_fixed_shuffled_set():
    data = ganzoo.create_dataset("25gaussians", seed=0).prepare("cpu")
    assert len(data) == 100_000
    assert torch.bincount(data.labels).tolist() == [4000] * 25
    assert data.data.abs().max().item() < 4.5 / 2.828
    again = ganzoo.create_dataset("25gaussians", seed=5).prepare("cpu")
    assert torch.equal(data.data, again.data)  # the run seed changes order, not the set


def test_swissroll_range_and_no_labels():
    data = ganzoo.create_dataset("swissroll", seed=0).prepare("cpu")
    batch = data.sample(2000)
    assert batch.labels is None and batch.real.shape == (2000, 2)
    # t in [1.5 pi, 4.5 pi] -> radius up to 4.5 pi / 7.5 (+ noise).
    assert batch.real.norm(dim=1).max().item() < 4.5 * math.pi / 7.5 + 0.5


def test_in_memory_batches_cover_an_epoch_without_repeats():
    data = ganzoo.create_dataset("25gaussians", seed=3).prepare("cpu")
    data.data = data.data[:100]
    data.labels = data.labels[:100]
    seen = torch.cat([data._next_indices(25) for _ in range(4)])
    assert sorted(seen.tolist()) == list(range(100))
    with pytest.raises(ValueError, match="exceeds"):
        data.sample(101)


def test_digits_dataset_images_labels_and_cache():
    data = ganzoo.create_dataset("digits", seed=0)
    path = data.cache_path()
    assert str(path).startswith(str(cache_dir()))
    data.prepare("cpu")
    assert path.exists()
    assert data.data.shape == (20_000, 1, 28, 28) and data.data.dtype == torch.uint8
    assert torch.bincount(data.labels).tolist() == [2000] * 10
    batch = data.sample(64)
    assert batch.real.dtype == torch.float32 and batch.real.shape == (64, 1, 28, 28)
    assert batch.real.min() >= -1 and batch.real.max() <= 1
    assert batch.real.min() == -1 and batch.real.max() > 0.9
    # A second load reads the cache and gives the same data.
    again = ganzoo.create_dataset("digits", seed=0).prepare("cpu")
    assert torch.equal(again.data, data.data)


def test_damaged_digits_cache_is_rendered_again():
    data = ganzoo.create_dataset("digits")
    data.prepare("cpu")
    path = data.cache_path()
    path.write_bytes(b"not an npz")
    fresh = ganzoo.create_dataset("digits").prepare("cpu")
    assert torch.equal(fresh.data, data.data)


def test_trainer_never_names_a_variant():
    import inspect

    import ganzoo.precision
    import ganzoo.runs
    import ganzoo.toolkit
    import ganzoo.trainer

    sources = [inspect.getsource(module) for module in (ganzoo.trainer, ganzoo.runs, ganzoo.precision,
                                                         ganzoo.toolkit)]
    for source in sources:
        for name in ganzoo.list_variants():
            assert f'"{name}"' not in source and f"'{name}'" not in source


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians", "swissroll"])
def test_reference_sample_is_fixed_and_leaves_the_batch_stream_alone(name):
    plotted = ganzoo.create_dataset(name, seed=1).prepare("cpu")
    untouched = ganzoo.create_dataset(name, seed=1).prepare("cpu")
    first = plotted.reference_sample(100).real
    assert torch.equal(first, plotted.reference_sample(100).real)
    assert torch.equal(plotted.sample(32).real, untouched.sample(32).real)


@pytest.mark.parametrize("name, modes, std, radius", [("ring", 8, 0.01, 1.0), ("grid", 25, 0.05, 4 * 2**0.5)])
def test_pacgan_layouts(name, modes, std, radius):
    data = ganzoo.create_dataset(name, seed=0).prepare("cpu")
    centres, mode_std = type(data).modes()
    assert centres.shape == (modes, 2) and mode_std == std
    assert centres.norm(dim=1).max().item() == pytest.approx(radius, rel=1e-5)
    batch = data.sample(5000)
    assert torch.equal(torch.cdist(batch.real, centres).argmin(1), batch.labels)
    residual = batch.real - centres[batch.labels]
    assert residual.std().item() == pytest.approx(std, rel=0.1)


def test_wgan_toy_mixtures_report_modes_in_data_units():
    centres, std = ganzoo.get_dataset("8gaussians").modes()
    assert centres.norm(dim=1).tolist() == pytest.approx([2 / 1.414] * 8)
    assert std == pytest.approx(0.02 / 1.414)
