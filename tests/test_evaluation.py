"""ganzoo.evaluation: metrics with known answers, the cached classifier, and `ganzoo eval` end to end."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

import ganzoo
from ganzoo.cli import main
from ganzoo.data.base import DataSpec, InMemoryDataset
from ganzoo.data.toy import EightGaussians, Grid, Ring, TwentyFiveGaussians
from ganzoo.errors import GanzooError
from ganzoo.evaluation import api, classifier
from ganzoo.evaluation.classifier import ClassifierRecipe, get_classifier
from ganzoo.evaluation.distance import energy_distance, sliced_wasserstein
from ganzoo.evaluation.images import (check_n, class_statistics, frechet_distance, kernel_inception_distance,
                                      precision_recall)
from ganzoo.evaluation.modes import dataset_modes, mode_metrics

from .conftest import SHARED_DATA

TINY_RECIPE = ClassifierRecipe(epochs=1, batch_size=32, width=4, features=8, train_limit=256, test_limit=256)
TINY_HPARAMS = {"steps": 3, "g_width": 8, "d_width": 8, "batch_size": 16}


# -- 2-D mode metrics ------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Ring, Grid, EightGaussians, TwentyFiveGaussians])
def test_samples_exactly_at_the_modes(cls):
    centres, std = dataset_modes(cls)
    samples = centres.repeat(100, 1)
    m = mode_metrics(samples, centres, std)
    assert m["modes"] == m["modes_total"] == centres.shape[0]
    assert m["hq_percent"] == 100.0 and m["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_modes_are_in_the_datasets_own_units():
    centres, std = dataset_modes(EightGaussians)
    assert std == pytest.approx(0.02 / 1.414)
    assert centres.norm(dim=1).max() == pytest.approx(2 / 1.414, rel=1e-5)
    centres, std = dataset_modes(Grid)
    assert std == 0.05 and centres.abs().max() == 4


def test_all_samples_at_one_mode():
    centres, std = dataset_modes(Grid)
    m = mode_metrics(centres[7:8].repeat(2500, 1), centres, std)
    assert m["modes"] == 1 and m["hq_percent"] == 100.0
    assert m["reverse_kl"] == pytest.approx(math.log(25)) and m["largest_mode_share"] == 1.0


def test_samples_far_from_every_mode():
    centres, std = dataset_modes(Ring)
    m = mode_metrics(torch.full((2500, 2), 50.0), centres, std)
    # No high-quality sample: reverse KL is reported as log K (as bad as total collapse).
    assert m["modes"] == 0 and m["hq_percent"] == 0.0 and m["hq_samples"] == 0
    assert m["reverse_kl"] == pytest.approx(math.log(8))


def test_half_the_modes_and_the_threshold():
    centres, std = dataset_modes(Ring)
    half = centres[:4].repeat(10, 1)
    just_inside = centres[:1] + torch.tensor([[2.9 * std, 0.0]])
    just_outside = centres[:1] + torch.tensor([[3.1 * std, 0.0]])
    m = mode_metrics(torch.cat([half, just_inside, just_outside]), centres, std)
    assert m["modes"] == 4 and m["hq_samples"] == 41
    assert m["reverse_kl"] == pytest.approx(sum(p * math.log(8 * p) for p in [11 / 41] + [10 / 41] * 3))


def test_real_ring_data_meets_the_protocol():
    data = Ring().prepare("cpu")
    m = mode_metrics(data.reference_sample(2500).real, *dataset_modes(Ring))
    assert m["modes"] == 8 and m["hq_percent"] > 97 and m["reverse_kl"] < 0.01


# -- distances and image metrics -------------------------------------------------------
def _features(n=600, d=8, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_a_shift():
    x = _features()
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shifts = [frechet_distance(x, x + s) for s in (0.5, 1.0, 2.0)]
    assert shifts[0] < shifts[1] < shifts[2]
    assert shifts[1] == pytest.approx(8.0, rel=1e-6)  # |mean shift|^2 = d * 1^2, covariances equal


def test_kid_grows_with_a_shift():
    x, y = _features(seed=0), _features(seed=1)
    same, _ = kernel_inception_distance(x, y, subsets=10, subset_size=300)
    shifted, _ = kernel_inception_distance(x, y + 1, subsets=10, subset_size=300)
    assert abs(same) < 0.05 < shifted


def test_precision_recall_on_identical_and_disjoint_sets():
    x = _features()
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100) == (0.0, 0.0)
    # Generated set collapsed onto a corner of the real one: precise, little recall.
    p, r = precision_recall(x, x[:50] * 0.1)
    assert p == 1.0 and r < 0.5


def test_energy_distance_and_sliced_wasserstein():
    x, y = _features(d=2, seed=0), _features(d=2, seed=1)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(x, y) < energy_distance(x, y + 1) < energy_distance(x, y + 2)
    assert sliced_wasserstein(x, y) < sliced_wasserstein(x, y + 1)


def test_class_statistics():
    probs = torch.zeros(10, 4, dtype=torch.float64)
    probs[:, 0] = 0.95
    probs[:, 1] = 0.05
    probs[:2] = torch.tensor([0.1, 0.6, 0.2, 0.1], dtype=torch.float64)
    stats = class_statistics(probs, labels=torch.tensor([0, 1] + [0] * 8))
    assert stats["confident_fraction"] == 0.8 and stats["classes_present"] == 2
    assert stats["class_histogram"] == [8, 2, 0, 0] and stats["largest_class_share"] == 0.8
    assert stats["label_accuracy"] == 0.9
    assert stats["label_accuracy_per_class"][:2] == [8 / 9, 1.0] and math.isnan(stats["label_accuracy_per_class"][2])


def test_too_few_samples_names_the_metric():
    with pytest.raises(GanzooError, match=r"precision/recall \(k=3\) needs n >= 4"):
        check_n(3)
    with pytest.raises(GanzooError, match="FD.*n >= 2.*KID needs n >= 2"):
        check_n(1)
    with pytest.raises(GanzooError, match="energy distance"):
        api.check_sample_count(1, DataSpec((2,)))


# -- the cached classifier -------------------------------------------------------------
def make_tiny_images(data_seed: int = 0, labeled: bool = True, name: str = "tiny-images"):
    """A small labeled set: class c has a bright row c in 8x8 images, plus noise."""

    class TinyImages(InMemoryDataset):
        spec = DataSpec(shape=(1, 8, 8), num_classes=4 if labeled else None, size=400)

        def load(self):
            g = torch.Generator().manual_seed(data_seed)
            labels = torch.arange(400) % 4
            images = torch.randint(0, 60, (400, 1, 8, 8), generator=g, dtype=torch.uint8)
            images[torch.arange(400), 0, 2 * labels] = 250
            return images, labels if labeled else None

    TinyImages.name = name
    TinyImages.description = "tiny test images"
    return TinyImages


def test_classifier_is_cached_reused_and_retrained_when_the_data_changes(monkeypatch):
    first = get_classifier(make_tiny_images(0)(), TINY_RECIPE, log=None)
    assert first.trained and first.path.exists() and 0 <= first.test_accuracy <= 1
    stamp = first.path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been reused")

    with monkeypatch.context() as patch:
        patch.setattr(classifier, "fit", no_training)
        again = get_classifier(make_tiny_images(0)(), TINY_RECIPE, log=None)  # a fresh instance, same data
    assert not again.trained and again.key == first.key and again.path.stat().st_mtime_ns == stamp
    same = torch.ones(5, 1, 8, 8)
    assert torch.equal(again.model(same), first.model(same))

    changed = get_classifier(make_tiny_images(1)(), TINY_RECIPE, log=None)  # other pixels
    assert changed.trained and changed.key != first.key and changed.path != first.path
    other_recipe = get_classifier(make_tiny_images(0)(), TINY_RECIPE.__class__(**{**TINY_RECIPE.to_dict(),
                                                                                  "epochs": 2}), log=None)
    assert other_recipe.trained and other_recipe.key not in (first.key, changed.key)


def test_a_damaged_cache_file_is_retrained():
    first = get_classifier(make_tiny_images(2)(), TINY_RECIPE, log=None)
    first.path.write_bytes(b"not a checkpoint")
    again = get_classifier(make_tiny_images(2)(), TINY_RECIPE, log=None)
    assert again.trained and again.key == first.key


def test_unlabeled_images_have_no_classifier():
    with pytest.raises(GanzooError, match="has no labels"):
        get_classifier(make_tiny_images(0, labeled=False)(), TINY_RECIPE, log=None)


# -- ganzoo eval end to end ------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lsgan-8g"
    ganzoo.train("lsgan", "8gaussians", out=out, hparams=TINY_HPARAMS,
                 options=ganzoo.TrainOptions(device="cpu", progress=False, sample_every=0, ckpt_every=0))
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cgan-digits"
    ganzoo.train("cgan", "digits", out=out, hparams={**TINY_HPARAMS, "nz": 16},
                 options=ganzoo.TrainOptions(device="cpu", progress=False, sample_every=0, ckpt_every=0))
    return out


def test_eval_on_a_toy_run(toy_run, capsys):
    assert main(["eval", str(toy_run), "--n", "300"]) == 0
    out = capsys.readouterr().out
    assert "lsgan on 8gaussians, step 3" in out and "modes captured" in out and "real (floor)" in out
    assert "8 / 8" in out  # the real floor captures every mode
    saved = json.loads((toy_run / "eval.json").read_text())
    assert saved["kind"] == "vector" and saved["n"] == 300 and saved["step"] == 3
    for key in ("modes", "hq_percent", "reverse_kl", "energy_distance", "sliced_wasserstein"):
        assert key in saved["metrics"] and key in saved["floor"]
    assert saved["floor"]["modes"] == 8 and saved["floor"]["hq_percent"] > 95

    assert main(["eval", str(toy_run), "--n", "300", "--json", "--no-write"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"] == saved["metrics"]  # same seed, same numbers


def test_eval_of_one_checkpoint_writes_its_own_file(toy_run):
    checkpoint = sorted((toy_run / "checkpoints").glob("step-*.pt"))[-1]
    result = ganzoo.evaluate(checkpoint, n=100, log=None)
    assert result["written_to"].endswith("eval-step-0000003.json")
    assert (toy_run / "eval-step-0000003.json").exists()


def test_eval_on_an_image_run_with_a_conditional_variant(digits_run, monkeypatch, capsys):
    # A recipe of this test's own, so the classifier is trained here whatever ran before (the cache
    # is shared by the session, and tests/test_eval_options.py caches TINY_RECIPE's first).
    own = ClassifierRecipe(**{**TINY_RECIPE.to_dict(), "test_limit": TINY_RECIPE.test_limit - 1})
    monkeypatch.setattr(classifier, "DEFAULT_RECIPE", own)
    assert main(["eval", str(digits_run), "--n", "40"]) == 0
    captured = capsys.readouterr()
    assert "training the digits feature classifier" in captured.err and "test accuracy" in captured.err
    for label in ("Fréchet distance", "KID", "precision (k=3)", "recall (k=3)", "confidence >= 0.9",
                  "classes present", "largest class share", "label accuracy", "class histogram"):
        assert label in captured.out, label
    saved = json.loads((digits_run / "eval.json").read_text())
    metrics, floor = saved["metrics"], saved["floor"]
    assert saved["kind"] == "image" and saved["classifier"]["test_source"] == "rendered"
    assert len(metrics["class_histogram"]) == 10 and sum(metrics["class_histogram"]) == 40
    assert len(metrics["label_accuracy_per_class"]) == 10
    assert floor["frechet_distance"] < metrics["frechet_distance"]  # 3 training steps are far from real
    # The second evaluation reuses the cached classifier.
    assert main(["eval", str(digits_run), "--n", "40", "--json", "--no-write"]) == 0
    captured = capsys.readouterr()
    assert "training the" not in captured.err
    assert json.loads(captured.out)["classifier"]["trained_now"] is False


def test_evaluate_during_training_leaves_the_run_undisturbed(toy_run):
    loaded = ganzoo.load_generator(toy_run)
    data = ganzoo.create_dataset("8gaussians").prepare("cpu")
    loaded.nets.train()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    data_state = data.state_dict()["generator"].clone()
    metrics = api.evaluate_during_training(toy_run, loaded.nets, loaded.variant, data, 200)
    assert torch.equal(torch.get_rng_state(), before) and loaded.nets.training
    assert torch.equal(data.state_dict()["generator"], data_state)
    assert set(metrics) >= {"modes", "hq_percent", "reverse_kl", "energy_distance"}
    assert all(isinstance(v, float) for v in metrics.values())


def test_eval_every_writes_metrics_during_training_through_the_api(tmp_path):
    options = ganzoo.TrainOptions(device="cpu", progress=False, sample_every=0, ckpt_every=0)
    options.eval_every, options.eval_n = 2, 100
    run = tmp_path / "run"
    ganzoo.train("vanilla", "ring", out=run, hparams={**TINY_HPARAMS, "steps": 4}, options=options)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/modes" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert 0 <= evals[-1]["eval/hq_percent"] <= 100


# -- bad input -------------------------------------------------------------------------
def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ganzoo: error: ")
    return err


def test_run_dir_without_a_checkpoint(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "holds no checkpoints" in _error(capsys)
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "does not exist" in _error(capsys)


def test_checkpoint_of_an_unknown_variant(toy_run, tmp_path, capsys):
    payload = torch.load(sorted((toy_run / "checkpoints").glob("step-*.pt"))[-1], weights_only=True)
    payload["config"]["variant"] = "no-such-gan"
    (tmp_path / "checkpoints").mkdir()
    torch.save(payload, tmp_path / "checkpoints" / "step-0000003.pt")
    assert main(["eval", str(tmp_path)]) == 2
    assert "unknown variant 'no-such-gan'" in _error(capsys)


def test_n_too_small_names_the_metric(toy_run, digits_run, capsys):
    assert main(["eval", str(toy_run), "--n", "1", "--no-write"]) == 2
    assert "energy distance" in _error(capsys)
    assert main(["eval", str(digits_run), "--n", "3", "--no-write"]) == 2
    err = _error(capsys)
    assert "--n 3 is too small" in err and "precision/recall (k=3) needs n >= 4" in err
    assert main(["eval", str(toy_run), "--n", "0"]) == 2  # argparse: not a positive integer
    assert "positive integer" in capsys.readouterr().err


def test_conditional_metrics_need_labels(tmp_path, capsys):
    run = tmp_path / "cgan"
    ganzoo.train("cgan", "8gaussians", out=run, hparams=TINY_HPARAMS,
                 options=ganzoo.TrainOptions(device="cpu", progress=False, sample_every=0, ckpt_every=0))
    path = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    payload = torch.load(path, weights_only=True)
    payload["config"]["dataset"] = "swissroll"  # unlabeled data, but a conditional generator
    torch.save(payload, path)
    assert main(["eval", str(run), "--n", "50"]) == 2
    assert "conditional" in (err := _error(capsys)) and "no labels" in err


def test_unlabeled_image_data_has_no_image_metrics(tmp_path, register_plugin, capsys):
    dataset_cls = make_tiny_images(0, labeled=False, name="tiny-unlabeled")

    class Plugin:
        @ganzoo.hookimpl
        def register_datasets(self, register):
            register(dataset_cls)

    register_plugin(Plugin(), "tiny-unlabeled-plugin")
    run = tmp_path / "run"
    ganzoo.train("vanilla", "tiny-unlabeled", out=run, hparams={"steps": 2, "batch_size": 8, "hidden": 8},
                 options=ganzoo.TrainOptions(device="cpu", progress=False, sample_every=0, ckpt_every=0))
    assert main(["eval", str(run), "--n", "20"]) == 2
    assert "has no labels" in _error(capsys)


# -- the real classifiers (slow: about a minute or two each on 2 CPU cores) -------------
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GANZOO_SLOW_TESTS") != "1", reason="set GANZOO_SLOW_TESTS=1 to run")
@pytest.mark.parametrize("name, least", [("mnist", 0.99), ("fashion-mnist", 0.90)])
def test_real_classifier_accuracy(name, least):
    folder = SHARED_DATA / name
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{folder} is absent")
    trained = get_classifier(ganzoo.create_dataset(name, data_dir=folder))
    print(f"{name}: test accuracy {trained.test_accuracy:.4f}, trained in {trained.train_seconds:.0f} s")
    assert trained.test_accuracy >= least


def test_check_evaluable_fails_before_training():
    from ganzoo.evaluation import check_evaluable

    check_evaluable(DataSpec((2,), 8), conditional=True, n=100)
    with pytest.raises(GanzooError, match="no labels"):
        check_evaluable(DataSpec((1, 8, 8)), conditional=False, n=100, dataset_name="dataset 'x'")
    with pytest.raises(GanzooError, match="label accuracy needs n >= 8"):
        check_evaluable(DataSpec((2,), 8), conditional=True, n=5)


def test_eval_every_refuses_a_setup_it_cannot_evaluate_before_training(tmp_path, capsys):
    from ganzoo.cli import main

    run = tmp_path / "run"
    assert main(["train", "dcgan", "--dataset", "swissroll", "--eval-every", "2", "--eval-n", "1",
                 "--steps", "2", "--out", str(run), "--quiet"]) == 2
    assert "need n >= 2" in capsys.readouterr().err
    assert not run.exists()


def test_eval_every_writes_metrics_during_training_from_the_cli(tmp_path):
    from ganzoo.cli import main

    run = tmp_path / "run"
    assert main(["train", "vanilla", "--dataset", "ring", "--eval-every", "2", "--eval-n", "200",
                 "--steps", "4", "--batch-size", "16", "--set", "toy_hidden=32", "--out", str(run), "--quiet"]) == 0
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/modes" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0 <= r["eval/modes"] <= 8 for r in evals)
