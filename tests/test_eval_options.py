"""Sampling options in evaluation: `ganzoo eval --truncation PSI` / `--stage N`, the API's
``options``, the file names that keep eval.json, the one-line errors, and
benchmarks/truncation_sweep.py on a tiny run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import ganzoo
from ganzoo.cli import main
from ganzoo.errors import GanzooError
from ganzoo.evaluation import api, classifier
from ganzoo.evaluation.classifier import ClassifierRecipe

from .scripts import load_benchmark

TINY_RECIPE = ClassifierRecipe(epochs=1, batch_size=32, width=4, features=8, train_limit=256, test_limit=256)
N = 10  # samples per evaluation (the image metrics need n >= 4)
# The smallest settings of tests/test_stylegan2.py, tests/test_stackgan.py and the dcgan CLI tests.
STYLEGAN2 = ["--set", "nz=8", "w_dim=8", "mapping_layers=2", "channel_base=64", "channel_max=8"]
STACKGAN = ["--set", "g_width=8", "d_width=8", "embed_dim=8", "c_dim=4", "nz=8", "stage1_steps=1"]
DCGAN = ["--set", "g_width=8", "d_width=8", "nz=8"]


@pytest.fixture(autouse=True)
def _tiny_classifier(monkeypatch):
    monkeypatch.setattr(classifier, "DEFAULT_RECIPE", TINY_RECIPE)


def _train(tmp_path_factory, variant: str, steps: int, sets: list[str]) -> Path:
    run = tmp_path_factory.mktemp("runs") / variant
    assert main(["train", variant, "--dataset", "digits", "--steps", str(steps), "--batch-size", "8",
                 "--out", str(run), "--quiet", "--sample-every", "0", *sets]) == 0
    return run


@pytest.fixture(scope="module")
def stylegan2_run(tmp_path_factory):
    return _train(tmp_path_factory, "stylegan2", 2, STYLEGAN2)


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    return _train(tmp_path_factory, "dcgan", 1, DCGAN)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_truncation_changes_the_scores_and_is_recorded_beside_eval_json(stylegan2_run):
    plain = api.evaluate(stylegan2_run, n=N, log=None)
    truncated = api.evaluate(stylegan2_run, n=N, log=None, options={"truncation": 0.5})
    assert "sampling_options" not in plain and truncated["sampling_options"] == {"truncation": 0.5}
    assert truncated["metrics"]["frechet_distance"] != plain["metrics"]["frechet_distance"]
    assert plain["written_to"].endswith("/eval.json")
    assert truncated["written_to"].endswith("/eval-truncation0.5.json")
    saved_plain = json.loads((stylegan2_run / "eval.json").read_text())
    assert "sampling_options" not in saved_plain and saved_plain["metrics"] == plain["metrics"]  # not overwritten
    saved = json.loads((stylegan2_run / "eval-truncation0.5.json").read_text())
    assert saved["sampling_options"] == {"truncation": 0.5} and saved["metrics"] == truncated["metrics"]

    checkpoint = sorted((stylegan2_run / "checkpoints").glob("step-*.pt"))[-1]
    one = api.evaluate(checkpoint, n=N, log=None, options={"truncation": 0.5})
    assert one["written_to"].endswith("/eval-step-0000002-truncation0.5.json")


def test_generate_samples_passes_the_options(stylegan2_run):
    loaded = ganzoo.load_generator(stylegan2_run)
    args = (loaded.variant, loaded.nets, loaded.spec, 6)
    plain, _ = api.generate_samples(*args)
    half, _ = api.generate_samples(*args, options={"truncation": 0.5})
    one, _ = api.generate_samples(*args, options={"truncation": 1.0})
    assert not torch.equal(plain, half)
    assert torch.equal(plain, one)  # stylegan2: psi 1 is no truncation (biggan's psi 1 is its threshold 2)
    # The same latents, pulled towards the average: less spread across the samples.
    assert half.std(dim=0).mean() < plain.std(dim=0).mean()


def test_file_names_name_the_options_as_sample_does():
    assert api.eval_file_name() == api.EVAL_FILE == "eval.json"
    assert api.eval_file_name(1000) == "eval-step-0001000.json"
    assert api.eval_file_name(None, {"truncation": 0.7}) == "eval-truncation0.7.json"
    assert api.eval_file_name(12, {"truncation": 0.7, "stage": 1}) == "eval-step-0000012-stage1-truncation0.7.json"


def test_bad_options_are_one_line_errors_before_the_classifier(stylegan2_run, dcgan_run, monkeypatch):
    def no_reference(*args, **kwargs):
        raise AssertionError("the real reference was built before the options were checked")

    monkeypatch.setattr(api, "_image_reference", no_reference)
    for psi in (1.5, 0.0, -0.5):
        with pytest.raises(GanzooError, match=r"--truncation must be in \(0, 1\]"):
            api.evaluate(stylegan2_run, n=N, log=None, options={"truncation": psi})
    with pytest.raises(GanzooError, match="draws a style-mixing grid, not independent samples") as info:
        api.evaluate(stylegan2_run, n=N, log=None, options={"style_mix": True})
    assert "\n" not in str(info.value)
    with pytest.raises(GanzooError, match="has no sampling option --stage"):
        api.evaluate(stylegan2_run, n=N, log=None, options={"stage": 1})
    with pytest.raises(GanzooError, match="'dcgan' has no sampling option --truncation"):
        api.evaluate(dcgan_run, n=N, log=None, options={"truncation": 0.5})
    loaded = ganzoo.load_generator(stylegan2_run)
    with pytest.raises(GanzooError, match="not independent samples"):
        api.generate_samples(loaded.variant, loaded.nets, loaded.spec, 4, options={"style_mix": True})
    assert not list(stylegan2_run.glob("eval-*1.5*.json"))


def test_translation_models_refuse_sampling_options():
    dataset = ganzoo.create_dataset("pair:digits,digits")  # not prepared: refused before it is used
    variant = ganzoo.create_variant("cyclegan", dataset.spec)
    nets = variant.networks(dataset.spec)
    with pytest.raises(GanzooError, match="'cyclegan' has no sampling option --truncation"):
        api.compute_metrics(variant, nets, dataset, N, options={"truncation": 0.5})
    variant.sampling_options = {"truncation": "a plugin's"}  # a translation model that listed one
    with pytest.raises(GanzooError, match="translates images: sampling options do not apply"):
        api.compute_metrics(variant, nets, dataset, N, options={"truncation": 0.5})


def test_cli_eval_with_truncation(stylegan2_run, capsys):
    assert main(["eval", str(stylegan2_run), "--truncation", "0.5", "--n", str(N)]) == 0
    out = capsys.readouterr().out
    assert "truncation 0.5" in out.splitlines()[0]
    assert "eval-truncation0.5.json" in out
    assert json.loads((stylegan2_run / "eval-truncation0.5.json").read_text())["sampling_options"] == {
        "truncation": 0.5}
    assert main(["eval", str(stylegan2_run), "--truncation", "0.5", "--n", str(N), "--json", "--no-write"]) == 0
    assert json.loads(capsys.readouterr().out)["sampling_options"] == {"truncation": 0.5}


@pytest.mark.parametrize("args, message", [
    (["--truncation", "1.5"], "--truncation must be in (0, 1]"),
    (["--truncation", "0"], "--truncation must be in (0, 1]"),
    (["--truncation", "nan"], "expected a number"),
    (["--stage", "1"], "'stylegan2' has no sampling option --stage"),
    (["--stage", "0"], "expected a positive integer"),
    (["--truncation", "0.5", "--features", "inception"], "not to --features inception"),
])
def test_cli_eval_bad_options_exit_2_with_one_line(stylegan2_run, capsys, args, message):
    assert main(["eval", str(stylegan2_run), "--n", str(N), "--no-write", *args]) == 2
    assert message in _error(capsys)


def test_cli_eval_option_on_a_variant_without_it(dcgan_run, capsys):
    assert main(["eval", str(dcgan_run), "--truncation", "0.5", "--n", str(N)]) == 2
    assert "'dcgan' has no sampling option --truncation" in _error(capsys)
    assert not list(dcgan_run.glob("eval*.json"))


def test_cli_eval_folders_refuse_options(tmp_path, capsys):
    assert main(["eval", "--real", str(tmp_path), "--fake", str(tmp_path), "--stage", "1"]) == 2
    assert "--stage applies to a run scored with ganzoo's classifier features" in _error(capsys)


def test_cli_eval_stage(tmp_path_factory, capsys):
    run = _train(tmp_path_factory, "stackgan", 2, STACKGAN)
    capsys.readouterr()
    assert main(["eval", str(run), "--n", str(N), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--n", str(N), "--json", "--stage", "1"]) == 0
    stage_one = json.loads(capsys.readouterr().out)
    assert stage_one["sampling_options"] == {"stage": 1} and stage_one["written_to"].endswith("eval-stage1.json")
    assert stage_one["metrics"]["frechet_distance"] != plain["metrics"]["frechet_distance"]
    assert main(["eval", str(run), "--n", str(N), "--stage", "3"]) == 2
    assert "--stage must be 1 or 2" in _error(capsys)


# -- benchmarks/truncation_sweep.py ----------------------------------------------------
@pytest.fixture(scope="module")
def sweep_script():
    return load_benchmark("truncation_sweep")


def test_sweep_writes_the_table_and_both_grids(stylegan2_run, sweep_script, tmp_path, capsys):
    md, grid, mix = tmp_path / "sweep.md", tmp_path / "grid.png", tmp_path / "mix.png"
    before = sorted(p.name for p in stylegan2_run.iterdir())
    assert sweep_script.main([str(stylegan2_run), "--psi", "1", "0.5", "--n", str(N), "--out-md", str(md),
                              "--grid", str(grid), "--style-mix-grid", str(mix)]) == 0
    printed = capsys.readouterr().out
    text = md.read_text()
    assert text == printed
    lines = text.splitlines()
    assert lines[0].startswith("Truncation sweep of stylegan2 on digits") and "step 2" in lines[0]
    assert f"n = {N} samples" in lines[0] and f"torch {torch.__version__}" in lines[0] and "load average" in lines[0]
    assert lines[2] == "| psi | FD | KID | precision | recall | largest class % |"  # unconditional
    rows = [line.split(" | ") for line in lines[4:]]
    assert [row[0] for row in rows] == ["| 1", "| 0.5", "| real (floor)"]
    assert rows[0] != rows[1]  # truncation changed the scores
    # The rows match `ganzoo eval`'s numbers at the same psi.
    expected = api.evaluate(stylegan2_run, n=N, log=None, write=False, options={"truncation": 0.5})
    assert rows[1][1] == f"{expected['metrics']['frechet_distance']:.3f}"
    # One row of 10 latents (28 px + 2 px padding) per psi; a 6 x 6 style-mixing grid.
    assert Image.open(grid).size == (10 * 30 + 2, 2 * 30 + 2)
    assert Image.open(mix).size == (6 * 30 + 2, 6 * 30 + 2)
    assert sorted(p.name for p in stylegan2_run.iterdir()) == before  # nothing written into the run


def test_sweep_errors_are_one_line(stylegan2_run, dcgan_run, sweep_script, tmp_path, capsys):
    assert sweep_script.main([str(stylegan2_run), "--psi", "1.5", "--n", str(N)]) == 2
    assert "--truncation must be in (0, 1]" in _error(capsys)
    assert sweep_script.main([str(dcgan_run), "--psi", "0.5", "--n", str(N)]) == 2
    assert "has no sampling option --truncation" in _error(capsys)
    mix = tmp_path / "mix.png"
    assert sweep_script.main([str(dcgan_run), "--psi", "none", "--n", str(N), "--style-mix-grid", str(mix)]) == 2
    assert "has no sampling option --style-mix" in _error(capsys)
    assert not mix.exists()
