"""Inception-v3 metrics (ganzoo/evaluation/inception.py) against the reference implementation.

These machines cannot download the FID weights, so the proof is structural: the *same* random
weights are loaded into ganzoo's network and into torch-fidelity's, and the features, FID, KID,
IS and precision/recall must agree to 1e-4. torch-fidelity is installed with --no-deps (its
torchvision requirement would replace the pinned torch); the parts of torchvision it imports
at import time are stubbed here, and nothing of them is used.
"""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.cli import main
from ganzoo.evaluation import inception
from ganzoo.evaluation.images import frechet_distance, polynomial_mmd2, precision_recall


@pytest.fixture(scope="module")
def fidelity():
    stubs = {}
    if "torchvision" not in sys.modules:
        class _Unused:  # dataset classes torch-fidelity imports but these tests never touch
            pass

        names = ("torchvision", "torchvision.datasets", "torchvision.transforms", "torchvision.transforms.functional")
        for name in names:
            stubs[name] = types.ModuleType(name)
        stubs["torchvision.datasets"].__dict__.update(CIFAR10=_Unused, STL10=_Unused, CIFAR100=_Unused)
        stubs["torchvision"].datasets = stubs["torchvision.datasets"]
        stubs["torchvision"].transforms = stubs["torchvision.transforms"]
        stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]
        sys.modules.update(stubs)
    try:
        yield pytest.importorskip("torch_fidelity")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A state dict of FID Inception's shapes with random values (BatchNorm statistics too)."""
    torch.manual_seed(0)
    model = inception.InceptionV3()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.uniform_(-0.1, 0.1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("bn.weight"):
                tensor.uniform_(0.8, 1.2)
            elif name.endswith("bn.bias") or name == "fc.bias":
                tensor.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("weights") / "inception.pth"
    torch.save(model.state_dict(), path)
    return path


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    scale = max(1.0, float(b.abs().max()))
    assert float((a.double() - b.double()).abs().max()) <= tol * scale


@pytest.mark.parametrize("size", [28, 32, 64])
def test_resize_matches_tensorflow_1x(fidelity, size):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = _images(2, size, size).float()
    ours = inception.resize_like_tensorflow1(x, 299)
    theirs = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    _close(ours, theirs, 1e-5)


def test_features_match_torch_fidelity_on_shared_weights(fidelity, random_weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                            feature_extractor_weights_path=str(random_weights))
    ours = inception.load_inception(random_weights)
    images = torch.cat([_images(3, 32, 1), _images(3, 32, 2) // 4])  # two brightness levels
    with torch.no_grad():
        pool, logits = ours(images)
        ref_pool, ref_logits = reference(images)
    assert pool.shape == (6, 2048) and logits.shape == (6, 1008)
    assert float(pool.std()) > 0 and float(logits.std()) > 0  # the weights make a non-trivial network
    _close(pool, ref_pool)
    _close(logits, ref_logits)


def test_metrics_match_torch_fidelity(fidelity):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kernel_mmd
    from torch_fidelity.metric_prc import prc_features_to_metric

    g = torch.Generator().manual_seed(5)
    real = torch.randn(400, 64, generator=g, dtype=torch.float64)
    fake = (torch.randn(400, 64, generator=g, dtype=torch.float64) * 1.2 + 0.3)
    theirs = fid_statistics_to_metric(fid_features_to_statistics(real), fid_features_to_statistics(fake), False)
    assert frechet_distance(real, fake) == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert polynomial_mmd2(real, fake) == pytest.approx(kernel_mmd(real.numpy(), fake.numpy()), rel=1e-4)
    logits = torch.randn(203, 1008, generator=g, dtype=torch.float64) * 3  # 203: parts of unequal size
    score, spread = inception.inception_score(logits)
    ref = isc_features_to_metric(logits, splits=10, shuffle=False)
    assert score == pytest.approx(ref["inception_score_mean"], rel=1e-4)
    assert spread == pytest.approx(ref["inception_score_std"], rel=1e-4)
    precision, recall = precision_recall(real.float(), fake.float())
    ref = prc_features_to_metric(fake.float(), real.float(), prc_neighborhood=3, prc_batch_size=10000,
                                 save_cpu_ram=False, verbose=False)
    assert precision == pytest.approx(ref["precision"], abs=1e-4)
    assert recall == pytest.approx(ref["recall"], abs=1e-4)


def _folder(root, name: str, n: int, size: int, seed: int):
    folder = root / name
    folder.mkdir()
    for i, image in enumerate(_images(n, size, seed)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return folder


def test_eval_two_folders_end_to_end(random_weights, tmp_path, capsys):
    real = _folder(tmp_path, "real", 12, 16, 1)
    fake = _folder(tmp_path, "fake", 12, 16, 2)
    assert main(["eval", "--real", str(real), "--fake", str(fake), "--inception-weights", str(random_weights),
                 "--json"]) == 0
    out = capsys.readouterr().out
    import json

    result = json.loads(out)
    metrics = result["metrics"]
    assert result["n_real"] == result["n_fake"] == 12 and result["features"] == "inception"
    assert set(metrics) == {"fid", "kid", "kid_std", "inception_score", "inception_score_std", "precision",
                            "recall"}
    assert all(np.isfinite(v) for v in metrics.values()) and metrics["fid"] > 0
    # The same folder on both sides: FID 0 (up to rounding).
    assert main(["eval", "--real", str(real), "--fake", str(real), "--inception-weights", str(random_weights),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["fid"] == pytest.approx(0, abs=1e-6)


def test_eval_run_with_inception_features(random_weights, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "wgan-gp", "--steps", "1", "--batch-size", "16", "--quiet", "--set", "g_width=8",
                 "d_width=8", "nz=16", "--out", str(run)]) == 0
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(random_weights))
    assert main(["eval", str(run), "--features", "inception", "--n", "12"]) == 0
    out = capsys.readouterr().out
    assert "Inception-v3 metrics: wgan-gp step 1 (12 samples) against 12 real digits images" in out
    assert "FID " in out and "IS " in out and (run / "eval-inception.json").is_file()


class _Evil:
    def __reduce__(self):  # unpickling would run code
        return (print, ("pwned",))


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(pickle.dumps(_Evil())), "cannot be read as a plain state dict"),
    (lambda p: torch.save({"fc.weight": torch.zeros(3, 3)}, p), "are not FID Inception-v3 weights"),
    (lambda p: torch.save([1, 2, 3], p), "not a state dict"),
])
def test_bad_weights_are_one_line_errors(tmp_path, capsys, make, message):
    path = tmp_path / "weights.pth"
    make(path)
    real = _folder(tmp_path, "real", 10, 8, 1)
    assert main(["eval", "--real", str(real), "--fake", str(real), "--inception-weights", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err and "\n" not in err and "pwned" not in captured.out + captured.err


def test_wrong_shape_names_the_tensor(random_weights, tmp_path, capsys):
    state = torch.load(random_weights, weights_only=True)
    state["fc.weight"] = torch.zeros(10, 2048)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(Exception, match=r"fc.weight has shape \(10, 2048\), expected \(1008, 2048\)"):
        inception.load_inception(tmp_path / "w.pth")


def test_folder_and_argument_errors(random_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    real = _folder(tmp_path, "real", 10, 8, 1)
    other = _folder(tmp_path, "other", 10, 16, 2)
    (tmp_path / "empty").mkdir()
    mixed = _folder(tmp_path, "mixed", 10, 8, 3)
    Image.new("RGB", (9, 8)).save(mixed / "odd.png")
    weights = ["--inception-weights", str(random_weights)]
    cases = [
        (["eval", "--real", str(real), "--fake", str(real)], "need the FID Inception weights as a local file"),
        (["eval", "--real", str(real)], "--real and --fake go together"),
        (["eval"], "name a run directory"),
        (["eval", "--real", str(real), "--fake", str(tmp_path / "empty"), *weights], "holds no images"),
        (["eval", "--real", str(real), "--fake", str(other), *weights], "compare images of one size"),
        (["eval", "--real", str(mixed), "--fake", str(real), *weights], "images of different sizes"),
        (["eval", "--real", str(real), "--fake", str(tmp_path / "nope"), *weights], "not a folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (argv, err)
