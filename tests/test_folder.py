"""Image folders: class subfolders or flat, resize + centre crop, skipped files counted once."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganzoo.data.folder import IMAGE_SUFFIXES, load_image_folder, scan_image_folder
from ganzoo.errors import GanzooError


def _solid(path: Path, color, size=(20, 20), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


@pytest.fixture
def classes(tmp_path):
    root = tmp_path / "pets"
    _solid(root / "cat" / "b.png", (255, 0, 0))
    _solid(root / "cat" / "a.jpg", (250, 0, 0))
    _solid(root / "dog" / "x.bmp", (0, 255, 0), size=(40, 30))
    _solid(root / "dog" / "deep" / "y.png", (0, 0, 255))  # nested files belong to their class
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "empty-class").mkdir()
    (root / "only-text").mkdir()
    (root / "only-text" / "readme.md").write_text("no images here")
    (root / ".hidden").mkdir()
    _solid(root / ".hidden" / "z.png", (9, 9, 9))
    return root


def test_scan_classes_sorted(classes):
    files, labels, names = scan_image_folder(classes)
    assert names == ["cat", "dog"]
    rel = [str(p.relative_to(classes)) for p in files]
    assert rel == ["cat/a.jpg", "cat/b.png", "dog/broken.png", "dog/deep/y.png", "dog/x.bmp"]
    assert labels == [0, 0, 1, 1, 1]


def test_load_classes_one_warning(classes):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, labels, names = load_image_folder(classes, image_size=8, channels=3)
    assert len(caught) == 1
    assert str(caught[0].message) == f"skipped 2 of 6 files in {classes} that are not readable images"
    assert images.shape == (4, 3, 8, 8) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 1, 1]
    assert names == ["cat", "dog"]
    # Pixels follow the files: cat/a.jpg red, cat/b.png red, dog/deep/y.png blue, dog/x.bmp green.
    dominant = images.reshape(4, 3, -1).mean(axis=2).argmax(axis=1)
    assert dominant.tolist() == [0, 0, 2, 1]


def test_flat_folder_has_no_labels(tmp_path):
    for i in range(3):
        _solid(tmp_path / f"{i}.png", (i * 100, 0, 0))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("not a class: no images")
    files, labels, names = scan_image_folder(tmp_path)
    assert labels is None and names == [] and [p.name for p in files] == ["0.png", "1.png", "2.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped, nothing to warn about
        images, labels, names = load_image_folder(tmp_path, image_size=6, channels=3)
    assert labels is None and names == [] and images.shape == (3, 3, 6, 6)
    assert images[:, 0, 3, 3].tolist() == [0, 100, 200]


def test_grayscale_and_rgb(tmp_path):
    _solid(tmp_path / "c.png", (200, 40, 10))
    _solid(tmp_path / "g.png", 77, mode="L")
    gray, _, _ = load_image_folder(tmp_path, image_size=5, channels=1)
    rgb, _, _ = load_image_folder(tmp_path, image_size=5, channels=3)
    assert gray.shape == (2, 1, 5, 5) and rgb.shape == (2, 3, 5, 5)
    expected_luma = round((200 * 299 + 40 * 587 + 10 * 114) / 1000)  # Pillow's L conversion
    assert abs(int(gray[0, 0, 2, 2]) - expected_luma) <= 1
    assert rgb[0, :, 2, 2].tolist() == [200, 40, 10]
    assert rgb[1, :, 2, 2].tolist() == [77, 77, 77]
    with pytest.raises(GanzooError, match="channels must be 1"):
        load_image_folder(tmp_path, image_size=5, channels=2)


def test_non_square_is_centre_cropped(tmp_path):
    # 30 wide x 10 high: left third red, middle third green, right third blue.
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, :10, 0] = 255
    wide[:, 10:20, 1] = 255
    wide[:, 20:, 2] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    # 10 wide x 30 high: top third red, middle green, bottom blue.
    Image.fromarray(wide.transpose(1, 0, 2).copy()).save(tmp_path / "tall.png")
    images, _, _ = load_image_folder(tmp_path, image_size=10, channels=3)
    assert images.shape == (2, 3, 10, 10)
    for image in images:  # both keep only their middle (green) square
        assert image[1].min() == 255 and image[0].max() == 0 and image[2].max() == 0
    # Short side scaled to the size (10 -> 5), then cropped: still only the middle third.
    small, _, _ = load_image_folder(tmp_path, image_size=5, channels=3)
    assert small.shape == (2, 3, 5, 5)
    assert small[:, 1, 1:4, 1:4].min() > 200 and small[:, 0, 1:4, 1:4].max() < 50


def test_upscales_small_images(tmp_path):
    _solid(tmp_path / "tiny.png", (10, 20, 30), size=(4, 6))
    images, _, _ = load_image_folder(tmp_path, image_size=12, channels=3)
    assert images.shape == (1, 3, 12, 12) and images[0, :, 6, 6].tolist() == [10, 20, 30]


def test_folder_errors(tmp_path):
    with pytest.raises(GanzooError, match=f"image folder {tmp_path / 'missing'} does not exist"):
        load_image_folder(tmp_path / "missing", 8, 3)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(GanzooError, match="is not a folder"):
        load_image_folder(tmp_path / "file.png", 8, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GanzooError, match=f"no usable images in {empty}"):
        load_image_folder(empty, 8, 3)
    (empty / "a.txt").write_text("hi")
    (empty / "b.png").write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(GanzooError, match=f"no usable images in {empty}: none of its 2 files"):
            load_image_folder(empty, 8, 3)
    assert len(caught) == 1


def test_loose_images_beside_class_folders_are_reported(tmp_path):
    _solid(tmp_path / "a" / "1.png", (1, 2, 3))
    _solid(tmp_path / "loose.png", (4, 5, 6))
    with pytest.warns(UserWarning, match="ignored 1 images lying directly in") as record:
        images, labels, names = load_image_folder(tmp_path, 4, 3)
    assert len(record) == 1 and images.shape[0] == 1 and labels.tolist() == [0] and names == ["a"]


def test_suffixes():
    assert {".png", ".jpg", ".jpeg"} <= IMAGE_SUFFIXES and ".txt" not in IMAGE_SUFFIXES
