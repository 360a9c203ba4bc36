"""`ganzoo sample --interpolate/--gif`, per-mode file names, and `ganzoo export`."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.cli import main, sample_file_name
from ganzoo.export import _Generator
from ganzoo.sampling import interpolate, load_generator, slerp

TINY = ["--set", "g_width=8", "d_width=8", "nz=16"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for variant in ("wgan-gp", "cgan"):
        assert main(["train", variant, "--steps", "2", "--batch-size", "16", "--quiet", "--sample-every", "0",
                     "--out", str(root / variant), *TINY]) == 0
    assert main(["train", "vanilla", "--dataset", "ring", "--steps", "2", "--quiet", "--out",
                 str(root / "ring")]) == 0
    return root


def test_slerp_walks_the_great_circle():
    torch.manual_seed(0)
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # equal norms per row
    path = slerp(a, b, torch.linspace(0, 1, 7))
    assert path.shape == (3, 7, 16)
    torch.testing.assert_close(path[:, 0], a)
    torch.testing.assert_close(path[:, -1], b)
    torch.testing.assert_close(path.norm(dim=2), a.norm(dim=1, keepdim=True).expand(3, 7))  # no dip in norm
    same = slerp(a, a.clone(), torch.linspace(0, 1, 4))  # parallel endpoints: no division by zero
    assert torch.isfinite(same).all()


def test_interpolate_rows_and_labels(runs):
    loaded = load_generator(runs / "cgan")
    walk = interpolate(loaded, 5, rows=3, seed=1)
    assert walk.shape == (15, 1, 28, 28) and walk.min() >= -1 and walk.max() <= 1
    again = interpolate(loaded, 5, rows=3, seed=1)
    assert torch.equal(walk, again)  # the seed fixes the walk


@pytest.mark.parametrize("argv, message", [
    (["--interpolate", "1"], "--interpolate needs 2 to 256 points per row, got 1"),
    (["--interpolate", "1000"], "--interpolate needs 2 to 256"),
])
def test_bad_interpolation_is_one_line(runs, capsys, argv, message):
    assert main(["sample", str(runs / "wgan-gp"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["--gif", "--out", "walk.png"], "--out must end in .gif with --gif"),
    (["--out", "grid.gif"], "--out must end in .png (or add --gif for an animation)"),
])
def test_out_suffix_matches_the_mode(runs, tmp_path, capsys, argv, message):
    argv = [a if not a.endswith((".png", ".gif")) else str(tmp_path / a) for a in argv]
    assert main(["sample", str(runs / "wgan-gp"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_interpolation_needs_images(runs, capsys):
    assert main(["sample", str(runs / "ring"), "--interpolate", "4"]) == 2
    assert "this run's data is not images" in capsys.readouterr().err


def test_grid_gif_and_distinct_names(runs):
    run = runs / "cgan"
    assert main(["sample", str(run), "--interpolate", "6", "--rows", "2"]) == 0
    grid = Image.open(run / "samples" / "interpolate6-seed0.png")
    assert grid.size == (6 * 30 + 2, 2 * 30 + 2)
    assert main(["sample", str(run), "--gif", "--rows", "4", "--interpolate", "5"]) == 0
    gif = Image.open(run / "samples" / "interpolate5-seed0.gif")
    assert gif.format == "GIF" and gif.n_frames == 2 * 5 - 2  # forwards, then back without repeats
    assert main(["sample", str(run), "--label", "3", "--n", "8"]) == 0
    assert main(["sample", str(run), "--n", "10"]) == 0
    names = {p.name for p in (run / "samples").iterdir()}
    assert {"sample-seed0.png", "sample-seed0-label3.png", "interpolate6-seed0.png",
            "interpolate5-seed0.gif"} <= names
    modes = [dict(), dict(label=3), dict(no_ema=True), dict(interpolate=8), dict(interpolate=8, gif=True),
             dict(label=3, no_ema=True)]
    assert len({sample_file_name(0, **mode) for mode in modes}) == len(modes)


# -- export ----------------------------------------------------------------------------------
_LOAD_WITHOUT_GANZOO = """
import json, sys
sys.modules["ganzoo"] = None  # any use of ganzoo from here on fails: the file must stand alone
import numpy as np, torch
extra = {"ganzoo.json": ""}
g = torch.jit.load(sys.argv[1], _extra_files=extra)
data = np.load(sys.argv[2])
args = [torch.from_numpy(data["z"])] + ([torch.from_numpy(data["labels"])] if "labels" in data else [])
np.save(sys.argv[3], g(*args).detach().numpy())
text = extra["ganzoo.json"]
print(text.decode() if isinstance(text, bytes) else text)
"""


@pytest.mark.parametrize("variant", ["wgan-gp", "cgan"])
def test_torchscript_export_runs_without_ganzoo(runs, tmp_path, variant, capsys):
    run = runs / variant
    out = tmp_path / "g.pt"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert "as torchscript to" in capsys.readouterr().out
    loaded = load_generator(run)
    torch.manual_seed(3)
    z = loaded.variant.latent(5, torch.device("cpu"))
    labels = torch.tensor([0, 1, 2, 3, 9]) if loaded.variant.conditional else None
    with torch.no_grad():
        expected = _Generator(loaded).eval()(z, labels).numpy()
    inputs = {"z": z.numpy(), **({"labels": labels.numpy()} if labels is not None else {})}
    np.savez(tmp_path / "inputs.npz", **inputs)
    done = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_GANZOO, str(out), str(tmp_path / "inputs.npz"),
                           str(tmp_path / "out.npy")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
    info = json.loads(done.stdout)
    assert info["variant"] == variant and info["latent_shape"] == list(z.shape[1:])
    assert info["conditional"] == (variant == "cgan") and info["output_shape"] == [1, 28, 28]


def test_onnx_export_runs_in_onnxruntime(runs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    run = runs / "cgan"
    out = tmp_path / "g.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    loaded = load_generator(run)
    torch.manual_seed(4)
    z = loaded.variant.latent(7, torch.device("cpu"))  # another batch size than the example's
    labels = torch.arange(7) % 10
    with torch.no_grad():
        expected = _Generator(loaded).eval()(z, labels).numpy()
    session = ort.InferenceSession(str(out))
    got = session.run(None, {"z": z.numpy(), "labels": labels.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_export_bad_input_is_one_line(runs, tmp_path, capsys, monkeypatch):
    assert main(["export", str(runs / "wgan-gp"), "--format", "keras", "--out", str(tmp_path / "x")]) == 2
    assert "unknown export format 'keras'; use one of torchscript, onnx" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", str(runs / "wgan-gp"), "--format", "onnx", "--out", str(tmp_path / "y.onnx")]) == 2
    assert "needs the onnx package: pip install onnx" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y.onnx").exists()
    assert main(["export", str(tmp_path / "nothing")]) == 2
