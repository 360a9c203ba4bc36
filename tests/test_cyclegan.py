"""cyclegan (ganzoo/variants/cyclegan.py), the two-domain datasets (ganzoo/data/pair.py) and
`ganzoo translate`."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ganzoo
from ganzoo.cli import main
from ganzoo.data.pair import REAL_B
from ganzoo.testing import check_variant
from ganzoo.variants.cyclegan import ImagePool

SMALL = ["--set", "g_width=4", "d_width=4", "res_blocks=1", "--batch-size", "4"]


def test_pair_serves_two_independently_shuffled_domains():
    data = ganzoo.create_dataset("pair:digits,digits", seed=0).prepare("cpu")
    assert data.spec.domains == 2 and data.spec.shape == (1, 28, 28)
    batch = data.sample(16)
    assert batch.extra[REAL_B].shape == batch.real.shape == (16, 1, 28, 28)
    assert not torch.equal(batch.labels, batch.extra["labels_b"])  # B's order has its own seed
    half = batch.shard(1, 2)
    assert torch.equal(half.extra[REAL_B], batch.extra[REAL_B][8:])
    state = data.state_dict()
    again = data.sample(8)
    data.load_state_dict(state)
    assert torch.equal(data.sample(8).extra[REAL_B], again.extra[REAL_B])


@pytest.mark.parametrize("name, message", [
    ("pair:digits", "pair needs two datasets"),
    ("pair:digits,cifar10", "the two domains must have the same shape"),
    ("pair:digits,ring", "needs image datasets"),
])
def test_bad_pairs_are_one_line_errors(name, message, tmp_path, capsys):
    assert main(["train", "cyclegan", "--dataset", name, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


def _write_images(folder, count, size=28, value=0):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((size, size), (value + 40 * i) % 256, dtype=np.uint8)).save(folder / f"{i}.png")


def test_folder_pair_reads_cyclegans_layout_and_names_a_missing_folder(tmp_path, capsys):
    _write_images(tmp_path / "data" / "trainA", 8)
    assert main(["train", "cyclegan", "--dataset", f"folder-pair:{tmp_path / 'data'}", "--out",
                 str(tmp_path / "run"), "--quiet"]) == 2
    assert "has no trainB folder" in capsys.readouterr().err
    _write_images(tmp_path / "data" / "trainB", 8, value=100)
    data = ganzoo.create_dataset(f"folder-pair:{tmp_path / 'data'}", image_size=28, channels=1).prepare("cpu")
    assert data.spec.shape == (1, 28, 28) and data.sample(4).extra[REAL_B].shape == (4, 1, 28, 28)


def test_one_domain_variants_refuse_pairs_and_cyclegan_refuses_one_domain():
    with pytest.raises(ganzoo.GanzooError, match="translates between two domains"):
        ganzoo.create_variant("cyclegan", ganzoo.get_dataset("digits").spec)
    pair = ganzoo.create_dataset("pair:digits,digits").spec
    with pytest.raises(ganzoo.GanzooError, match="trains on one domain"):
        ganzoo.create_variant("dcgan", pair)


def test_image_pool_fills_then_swaps_half_the_time():
    torch.manual_seed(0)
    pool = ImagePool(4, (1, 2, 2))
    first = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    assert torch.equal(pool.query(first), first)  # filling: returned as given...
    assert int(pool.count) == 0
    pool.commit()  # ...and stored when the step ends
    assert int(pool.count) == 4 and torch.equal(pool.images, first)
    new = torch.arange(100.0, 300.0).view(200, 1, 1, 1).expand(200, 1, 2, 2)
    out = pool.query(new)
    swapped = (out != new).flatten(1).any(1)
    assert 0.35 < swapped.float().mean().item() < 0.65  # about half come from the pool
    assert set(out[swapped][:, 0, 0, 0].tolist()) <= set(range(0, 300))  # older fakes, never invented
    assert torch.equal(pool.images, first)  # staged, not applied, until the step ends
    pool.commit()
    # The pool now holds, in each slot, the last fake swapped into it (sequentially, as the paper's).
    values = set(pool.images[:, 0, 0, 0].tolist())
    assert values <= set(range(100, 300)) | set(range(4)) and values != set(range(4))


def test_a_pool_query_sees_the_step_start_and_commits_in_order():
    pool = ImagePool(2, (1, 1, 1))
    pool.query(torch.full((1, 1, 1, 1), 1.0))  # micro-batch 0 appends one fake
    pool.query(torch.full((2, 1, 1, 1), 2.0))  # micro-batch 1 sees an empty pool too and appends two
    pool.commit()  # in order: 1 then the first 2; the second 2 finds the pool full and is dropped
    assert pool.images.flatten().tolist() == [1.0, 2.0] and int(pool.count) == 2


def test_the_decay_starts_at_half_the_run_unless_set():
    spec = ganzoo.create_dataset("pair:digits,digits").spec
    assert ganzoo.create_variant("cyclegan", spec, steps=100).hparams["lr_decay_start"] == 50
    assert ganzoo.create_variant("cyclegan", spec, steps=100, lr_decay_start=10).hparams["lr_decay_start"] == 10


@pytest.mark.parametrize("identity", [{}, {"identity_weight": 5.0}], ids=["default", "with-identity-loss"])
def test_conformance_kit_passes(identity):
    report = check_variant("cyclegan", hparams={"g_width": 4, "d_width": 4, "res_blocks": 1, **identity}, steps=2,
                           toolkit=False)
    assert report.ok, report.format()


def test_the_identity_loss_is_off_by_default_and_the_authors_code_preset_turns_it_on():
    """docs/recipes/cyclegan-identity.md: without it the translations kept the label more often."""
    spec = ganzoo.create_dataset("pair:digits,digits").spec
    assert ganzoo.get_variant("cyclegan").resolve_hparams(spec, {})["identity_weight"] == 0.0
    assert ganzoo.get_variant("cyclegan").resolve_hparams(spec, {"preset": "authors-code"})["identity_weight"] == 5.0


def test_train_grid_translate_and_its_errors(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "cyclegan", "--dataset", "pair:digits,digits", "--steps", "2", "--out", str(run),
                 "--quiet", *SMALL]) == 0
    grid = Image.open(run / "samples" / "final.png")
    # 6 columns (a, a->b, a->b->a, b, b->a, b->a->b) by 8 rows of 28-px tiles, upscaled 2x, 2-px padding
    assert grid.size == (6 * 60 + 4, 8 * 60 + 4)
    inputs = tmp_path / "in"
    _write_images(inputs, 3)
    capsys.readouterr()
    assert main(["translate", str(run), "--input", str(inputs), "--direction", "b2a"]) == 0
    written = sorted(p.name for p in (run / "translate-b2a").iterdir())
    assert written == ["0.png", "1.png", "2.png"]
    assert Image.open(run / "translate-b2a" / "0.png").size == (28, 28)
    # Bad input: one line, exit 2, nothing written.
    _write_images(tmp_path / "big", 1, size=30)
    for args, message in [
        (["--input", str(tmp_path / "big"), "--direction", "a2b"], "is 30x30; this model translates 28x28"),
        (["--input", str(inputs), "--direction", "sideways"], "--direction must be one of a2b, b2a"),
        (["--input", str(tmp_path / "nothing"), "--direction", "a2b"], "does not exist"),
    ]:
        out = tmp_path / "out"
        assert main(["translate", str(run), *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()


def test_translate_refuses_a_model_that_does_not_translate(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "vanilla", "--dataset", "digits", "--steps", "1", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    _write_images(tmp_path / "in", 1)
    assert main(["translate", str(run), "--input", str(tmp_path / "in"), "--direction", "a2b"]) == 2
    assert "is not a translation model" in capsys.readouterr().err


def test_evaluation_translates_both_ways_and_scores_label_preservation(tmp_path):
    from ganzoo.evaluation import ClassifierRecipe, evaluate
    from ganzoo.evaluation.cli import format_result

    run = tmp_path / "run"
    assert main(["train", "cyclegan", "--dataset", "pair:digits,digits", "--steps", "1", "--out", str(run),
                 "--quiet", *SMALL]) == 0
    # A recipe of its own: the cached classifiers are shared by the whole test session, and
    # test_evaluation.py expects to train its own tiny one.
    recipe = ClassifierRecipe(epochs=1, batch_size=32, width=3, features=6, train_limit=128, test_limit=128)
    result = evaluate(run, n=64, recipe=recipe, log=None)
    assert result["kind"] == "translation" and result["n_translated"] == 64
    for direction in ("a2b", "b2a"):
        for key in ("frechet_distance", "precision", "label_accuracy"):
            assert f"{direction}/{key}" in result["metrics"] and f"{direction}/{key}" in result["floor"]
        assert 0.0 <= result["metrics"][f"{direction}/label_accuracy"] <= 1.0
    text = format_result(result)
    assert "a2b (label accuracy" in text and "b2a (label accuracy" in text and "domain B classifier" in text
