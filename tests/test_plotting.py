"""Tests for ganzoo.plotting (Pillow-only PNG output)."""

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.plotting import (FAKE_COLOR, PAD_VALUE, REAL_COLOR, image_grid, save_image_grid,
                             save_scatter_plot, scatter_plot)


def test_grid_size_arithmetic():
    # Convention (as torchvision.make_grid): padding around every tile, border included.
    img = image_grid(torch.zeros(10, 1, 28, 28), nrow=5, padding=2)
    assert img.mode == "L" and img.size == (5 * 30 + 2, 2 * 30 + 2)
    img = image_grid(torch.zeros(10, 3, 8, 6), padding=1)  # default nrow = ceil(sqrt(10)) = 4
    assert img.mode == "RGB" and img.size == (4 * 7 + 1, 3 * 9 + 1)
    assert image_grid(torch.zeros(3, 1, 5, 5), nrow=8, padding=0).size == (15, 5)


def test_value_mapping_and_tile_placement():
    x = torch.empty(4, 1, 3, 3)
    x[0], x[1], x[2], x[3] = -1.0, 1.0, 0.0, 5.0  # 5 clamps to 1
    a = np.asarray(image_grid(x, nrow=2, padding=1))
    assert a.shape == (9, 9)
    assert (a[1:4, 1:4] == 0).all()       # tile 0, top-left
    assert (a[1:4, 5:8] == 255).all()     # tile 1, top-right
    assert (a[5:8, 1:4] == 128).all()     # 0 -> 127.5 -> rounded
    assert (a[5:8, 5:8] == 255).all()     # clamped
    assert a[0].max() < 64 and a[:, 4].max() < 64  # dark padding lines


def test_rgb_channels_and_empty_cells():
    x = -torch.ones(3, 3, 2, 2)
    x[0, 0] = 1.0  # red tile
    a = np.asarray(image_grid(x, nrow=2, padding=0))
    assert a.shape == (4, 4, 3)
    assert a[0, 0].tolist() == [255, 0, 0] and a[0, 2].tolist() == [0, 0, 0]
    assert a[2, 2].tolist() == [PAD_VALUE] * 3  # unused cell is padding colour
    assert a[2, 0].tolist() == [0, 0, 0]


def test_grid_rejects_bad_shapes():
    with pytest.raises(ValueError):
        image_grid(torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError):
        image_grid(torch.zeros(4, 4))


def test_save_image_grid_scale(tmp_path):
    path = tmp_path / "sub" / "grid.png"
    x = torch.rand(6, 1, 4, 4, requires_grad=True) * 2 - 1  # non-leaf, needs detach
    save_image_grid(x, path, nrow=3, padding=1, scale=3)
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (3 * (3 * 5 + 1), 3 * (2 * 5 + 1))
    small = np.asarray(image_grid(x, nrow=3, padding=1))
    assert np.array_equal(np.asarray(img)[::3, ::3], small)


def _count(a, color):
    return int((a == np.array(color, dtype=np.uint8)).all(axis=-1).sum())


def test_scatter_colours_and_size():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 2, generator=g)
    fake = torch.randn(300, 2, generator=g) * 0.3 + 1.0
    img = scatter_plot(real, fake, size=256, title="epoch 3")
    assert img.mode == "RGB" and img.size == (256, 256)
    a = np.asarray(img)
    assert _count(a, REAL_COLOR) > 500 and _count(a, FAKE_COLOR) > 300
    assert _count(a, (255, 255, 255)) > 256 * 256 // 3  # mostly white canvas


def test_scatter_bounds_and_clipping():
    real = torch.zeros(1, 2)
    fake = torch.tensor([[100.0, 100.0]])  # far outside: clipped to the top-right corner
    a = np.asarray(scatter_plot(real, fake, size=200, bounds=(-1.0, 1.0, -1.0, 1.0)))
    ys, xs = np.nonzero((a == np.array(FAKE_COLOR, dtype=np.uint8)).all(axis=-1))
    # (legend marker is orange too, so look for dots at the very corner)
    assert ((xs >= 196) & (ys <= 3)).any()
    ys, xs = np.nonzero((a == np.array(REAL_COLOR, dtype=np.uint8)).all(axis=-1))
    near_centre = (np.abs(xs - 99.5) <= 3) & (np.abs(ys - 99.5) <= 3)
    assert near_centre.any()
    with pytest.raises(ValueError):
        scatter_plot(real, fake, bounds=(1.0, -1.0, 0.0, 1.0))


def test_scatter_default_bounds_cover_real_data():
    # Real points at the extremes must be drawn inside the canvas, not on the edge.
    real = torch.tensor([[-3.0, 10.0], [5.0, 10.0], [1.0, 12.0]])
    a = np.asarray(scatter_plot(real, torch.empty(0, 2), size=300))
    ys, xs = np.nonzero((a == np.array(REAL_COLOR, dtype=np.uint8)).all(axis=-1))
    dots = (ys > 60)  # skip the legend marker (top-right corner)
    assert xs[dots].min() > 10 and xs[dots].max() < 290


def test_save_scatter_plot(tmp_path):
    path = tmp_path / "a" / "b" / "scatter.png"
    save_scatter_plot(torch.randn(50, 2), torch.randn(50, 2), path, size=128)
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (128, 128)
