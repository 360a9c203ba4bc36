"""benchmarks/quality.py (the results table) on a tiny plan: it trains, evaluates, writes and reuses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .scripts import load_benchmark


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality")


def test_quick_table_on_the_ring_writes_the_report_and_reuses_finished_runs(tmp_path, quality, capsys):
    args = ["--quick", "--datasets", "ring", "--variants", "vanilla", "wgan-gp", "--jobs", "1",
            "--out", str(tmp_path / "docs"), "--runs-dir", str(tmp_path / "runs")]
    assert quality.main(args) == 0
    report = (tmp_path / "docs" / "results.md").read_text()
    assert "| `vanilla` | ganzoo | 1 |" in report and "| `wgan-gp` | ganzoo | 1 |" in report
    assert "PacGAN4" in report and "a full rebuild fits in 2.5 hours" in report
    assert (tmp_path / "docs" / "results" / "wgan-gp-ring.png").stat().st_size > 0
    runs = json.loads((tmp_path / "docs" / "results" / "results.json").read_text())["runs"]
    assert {r["variant"] for r in runs} == {"vanilla", "wgan-gp"} and all(r["step"] == 30 for r in runs)
    from ganzoo.cli import main as ganzoo_main

    # A user's `ganzoo eval` with another --n writes eval.json; the table's record is quality.json.
    assert ganzoo_main(["eval", str(tmp_path / "runs" / "vanilla-ring-s0"), "--n", "500"]) == 0
    capsys.readouterr()

    assert quality.main(args) == 0  # the second time every run is reused, not retrained
    reused = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(reused) == 2 and all(r["reused"] for r in reused)


def test_a_changed_default_retrains_the_run(tmp_path, quality):
    run = tmp_path / "vanilla-ring-s0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"hparams": {"steps": 30, "lr_g": 1.0}}))
    assert not quality._same_hparams(run, "vanilla", "ring", 30)


def test_an_option_added_since_the_run_matches_only_at_its_default(tmp_path, quality):
    import ganzoo

    run = tmp_path / "stackgan-mnist-s0"
    run.mkdir()
    spec = quality.dataset_spec("mnist")
    before = ganzoo.get_variant("stackgan").resolve_hparams(spec, {"steps": 4000, "preset": "paper"})
    del before["ca_code"]  # a run made before the option existed, which kept the variant as it was
    (run / "config.json").write_text(json.dumps({"hparams": before}))
    assert quality._same_hparams(run, "stackgan", "mnist", 4000, {"preset": "paper"})
    assert quality._same_hparams(run, "stackgan", "mnist", 4000, {"preset": "paper", "ca_code": "pytorch"})
    assert not quality._same_hparams(run, "stackgan", "mnist", 4000, {"preset": "paper", "ca_code": "tensorflow"})
    before["an_option_since_removed"] = 1  # what the run had and the variant no longer knows: retrain
    (run / "config.json").write_text(json.dumps({"hparams": before}))
    assert not quality._same_hparams(run, "stackgan", "mnist", 4000, {"preset": "paper"})


def test_a_run_older_than_a_changed_default_is_read_with_its_legacy_value(tmp_path, quality):
    """stackgan's default turned conditioning augmentation off on 2026-12-05; runs made before the
    option existed had it on (StackGAN.legacy_hparams), so the ledger must not count them as today's."""
    import ganzoo

    run = tmp_path / "stackgan-mnist-s0"
    run.mkdir()
    spec = quality.dataset_spec("mnist")
    before = ganzoo.get_variant("stackgan").resolve_hparams(spec, {"steps": 4000, "preset": "paper"})
    del before["conditioning_augmentation"], before["ca_code"]
    (run / "config.json").write_text(json.dumps({"hparams": before}))
    assert not quality._same_hparams(run, "stackgan", "mnist", 4000)
    assert quality._same_hparams(run, "stackgan", "mnist", 4000, {"conditioning_augmentation": True})
    today = ganzoo.get_variant("stackgan").resolve_hparams(spec, {"steps": 4000})
    (run / "config.json").write_text(json.dumps({"hparams": today}))
    assert quality._same_hparams(run, "stackgan", "mnist", 4000)


def test_pacgan_mode_writes_the_table_beside_the_published_one(tmp_path, quality):
    args = ["--pacgan", "--quick", "--steps", "3", "--jobs", "1", "--out", str(tmp_path / "docs"),
            "--runs-dir", str(tmp_path / "runs")]
    assert quality.main(args) == 0
    report = (tmp_path / "docs" / "pacgan.md").read_text()
    for label in ("GAN", "PacGAN2", "PacGAN3", "PacGAN4"):
        assert f"| {label} | ganzoo, 3 steps | 1 |" in report and f"| {label} | PacGAN Table 1 | 10 |" in report
    assert "of 16" in report  # modes and reverse KL, 4 rows x 2 layouts
    runs = json.loads((tmp_path / "docs" / "results" / "pacgan.json").read_text())["runs"]
    assert sorted({(r["dataset"], r["pack"]) for r in runs}) == [(d, p) for d in ("grid", "ring") for p in (1, 2, 3, 4)]
    config = json.loads((tmp_path / "runs" / "pacgan4-grid-s0" / "config.json").read_text())["hparams"]
    assert config["toy_arch"] == "pacgan" and config["pack"] == 4 and config["batch_size"] == 400
    assert config["betas"] == [0.8, 0.999] and config["lr_g"] == config["lr_d"] == 1e-4


def test_a_recipe_trial_shows_every_recipe_and_seed(tmp_path, monkeypatch):
    recipes = load_benchmark("recipes")
    monkeypatch.setitem(recipes.TRIALS, "tiny", {
        "variant": "vanilla", "dataset": "grid", "seeds": 2, "steps": 3,
        "metrics": [("modes", "modes /25", 1, 1.0), ("hq_percent", "HQ %", 1, 1.0)],
        "recipes": {"plain": {"hparams": {"toy_hidden": 16}, "dataset_options": {}, "source": "test"},
                    "standardized": {"hparams": {"toy_hidden": 16}, "dataset_options": {"standardize": True},
                                     "source": "test"}},
    })
    assert recipes.main(["tiny", "--jobs", "1", "--out", str(tmp_path / "docs"),
                         "--runs-dir", str(tmp_path / "runs")]) == 0
    report = (tmp_path / "docs" / "tiny.md").read_text()
    assert "| plain |" in report and "| standardized |" in report and "3 generator steps per run" in report
    config = json.loads((tmp_path / "runs" / "tiny" / "r1-grid-s1" / "config.json").read_text())
    assert config["dataset_options"] == {"standardize": True} and config["hparams"]["toy_hidden"] == 16


def test_every_recipe_of_every_trial_still_makes_a_valid_variant(quality):
    """A trial names its recipes' settings over the variant's defaults, so a changed default can make
    an old recipe contradictory (stackgan's kl_weight without conditioning augmentation): each must
    still build its variant."""
    import ganzoo

    recipes = load_benchmark("recipes")
    for name, trial in recipes.TRIALS.items():
        spec = quality.dataset_spec(trial["dataset"])
        for label, recipe in trial["recipes"].items():
            ganzoo.get_variant(trial["variant"])(spec, **recipe["hparams"])  # raises GanzooError if invalid
            assert set(recipe) >= {"hparams", "dataset_options", "source"}, (name, label)


def test_image_rows_come_twice_from_one_run_with_the_ema_column(tmp_path, quality):
    args = ["--quick", "--datasets", "digits", "--variants", "vanilla", "--jobs", "1",
            "--out", str(tmp_path / "docs"), "--runs-dir", str(tmp_path / "runs")]
    assert quality.main(args) == 0
    report = (tmp_path / "docs" / "results.md").read_text()
    config = json.loads((tmp_path / "runs" / "vanilla-digits-s0" / "config.json").read_text())["hparams"]
    assert config["ema"] == quality.IMAGE_EMA  # the run keeps an EMA copy of G...
    rows = [line for line in report.splitlines() if line.startswith("| `vanilla` |")]
    assert len(rows) == 2  # ...and is scored from both generators
    assert any("| EMA 0.999 |" in row for row in rows) and any("| trained G |" in row for row in rows)
    record = json.loads((tmp_path / "runs" / "vanilla-digits-s0" / "quality.json").read_text())
    assert record["ema"] and record["metrics"] != record["no_ema_metrics"]
    for grid in ("vanilla-digits.png", "vanilla-digits-no-ema.png"):
        assert (tmp_path / "docs" / "results" / grid).stat().st_size > 0
    assert "## Targets (issue 14)" in report and "a full rebuild fits in 2.5 hours" in report


def test_a_changed_dataset_default_retrains_the_run(tmp_path, quality):
    run = tmp_path / "wgan-gp-grid-s0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"dataset_options": {}}))
    assert not quality._same_dataset_options(run, "wgan-gp", "grid", None)  # wgan-gp asks for standardize
    assert quality._same_dataset_options(run, "vanilla", "grid", None)
    (run / "config.json").write_text(json.dumps({"dataset_options": {"standardize": True}}))
    assert quality._same_dataset_options(run, "wgan-gp", "grid", None)
    assert quality._same_dataset_options(run, "wgan-gp", "grid", {"standardize": True})
    assert not quality._same_dataset_options(run, "wgan-gp", "grid", {"standardize": False})


def test_the_ledger_carries_finished_runs_to_a_clean_checkout(tmp_path, quality, capsys):
    ledger = tmp_path / "ledger"
    args = ["--quick", "--datasets", "ring", "--variants", "vanilla", "--jobs", "1", "--ledger", str(ledger),
            "--out", str(tmp_path / "docs")]
    assert quality.main([*args, "--runs-dir", str(tmp_path / "runs")]) == 0
    entry = ledger / "vanilla-ring-s0"
    assert {p.name for p in entry.iterdir()} == {"quality.json", "config.json", "samples"}
    assert (entry / "samples" / "final.png").stat().st_size > 0
    first = json.loads((entry / "quality.json").read_text())
    capsys.readouterr()
    # Another runs directory (a clean checkout): restored from the ledger and reused, not retrained.
    assert quality.main([*args, "--runs-dir", str(tmp_path / "clean")]) == 0
    out = capsys.readouterr()
    records = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    assert [r["reused"] for r in records] == [True] and "1 run(s) restored" in out.err
    assert json.loads((tmp_path / "clean" / "vanilla-ring-s0" / "quality.json").read_text()) == first
    # --save-ledger files the runs of a runs directory (e.g. made by an older copy of the script).
    other = tmp_path / "other-ledger"
    assert quality.main([*args[:-2], "--ledger", str(other), "--out", str(tmp_path / "docs"),
                         "--runs-dir", str(tmp_path / "runs"), "--save-ledger"]) == 0
    assert (other / "vanilla-ring-s0" / "quality.json").exists()


def _finished_run(run_dir: Path, created: str, figure: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"created": created}))
    (run_dir / "quality.json").write_text(json.dumps({"metrics": {"hq_percent": figure}}))


def test_a_newer_ledger_entry_replaces_a_stale_local_run_and_keeps_it_aside(tmp_path, quality):
    ledger, runs = tmp_path / "ledger", tmp_path / "runs"
    _finished_run(ledger / "a-ring-s0", "2026-12-05T05:00:00+00:00", 2.0)  # retrained elsewhere
    _finished_run(runs / "a-ring-s0", "2026-12-04T22:00:00+00:00", 1.0)    # the stale local copy
    _finished_run(ledger / "b-ring-s0", "2026-12-04T22:00:00+00:00", 3.0)
    _finished_run(runs / "b-ring-s0", "2026-12-05T06:00:00+00:00", 4.0)    # newer than the ledger: kept
    _finished_run(ledger / "c-ring-s0", "2026-12-04T22:00:00+00:00", 5.0)  # only in the ledger
    assert quality.restore_from_ledger(ledger, runs) == 2
    figure = lambda name: json.loads((runs / name / "quality.json").read_text())["metrics"]["hq_percent"]  # noqa: E731
    assert (figure("a-ring-s0"), figure("b-ring-s0"), figure("c-ring-s0")) == (2.0, 4.0, 5.0)
    (aside,) = (runs / "superseded").iterdir()
    assert aside.name.startswith("a-ring-s0-2026-12-04T2200")
    assert json.loads((aside / "quality.json").read_text())["metrics"]["hq_percent"] == 1.0
    assert quality.restore_from_ledger(ledger, runs) == 0  # nothing left to restore


SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def test_a_pair_entry_names_its_parts_folders_and_files_safely(quality):
    mnist = Path("/data/mnist")
    assert quality.dataset_parts("pair:digits,mnist") == ["digits", "mnist"]
    assert quality.dataset_location("pair:digits,mnist", {"mnist": mnist}) == \
        ("pair", {"data_dir": f"digits,mnist:{mnist}"})
    assert quality.dataset_location("mnist", {"mnist": mnist}) == ("mnist", {"data_dir": mnist})
    assert quality.dataset_location("digits", {"mnist": mnist}) == ("digits", {})
    assert quality.missing_folders("pair:digits,mnist", {}) == ["mnist"]
    assert quality.missing_folders("pair:digits,mnist", {"mnist": mnist}) == []
    assert quality.slug("pair:digits,mnist") == "pair-digits-mnist" and quality.slug("mnist") == "mnist"
    spec = quality.dataset_spec("pair:digits,mnist")
    assert spec.domains == 2 and tuple(spec.shape) == (1, 28, 28) and spec.is_image


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_a_translation_model_gets_its_table_both_ways(tmp_path, quality):
    args = ["--quick", "--datasets", "pair:digits,mnist", "--data-dir", str(SHARED_MNIST), "--jobs", "1",
            "--out", str(tmp_path / "docs"), "--runs-dir", str(tmp_path / "runs")]
    assert quality.main(args) == 0
    report = (tmp_path / "docs" / "results.md").read_text()
    assert "## pair:digits,mnist" in report and "digits→mnist label kept % ↑" in report
    rows = [line for line in report.splitlines() if line.startswith("| `cyclegan` |")]
    assert len(rows) == 2 and all("results/cyclegan-pair-digits-mnist" in row for row in rows)
    assert "`cyclegan` on pair:digits,mnist: label preservation ≥ 90% both ways" in report
    record = json.loads((tmp_path / "runs" / "cyclegan-pair-digits-mnist-s0" / "quality.json").read_text())
    assert {"a2b/label_accuracy", "b2a/label_accuracy"} <= set(record["metrics"])
    assert "| pair:digits,mnist | 1 | cyclegan 10 | 500 |" in report  # budgets: the runs this table has


def test_a_plan_dataset_without_its_folder_is_skipped(tmp_path, quality, capsys):
    args = ["--quick", "--datasets", "pair:digits,mnist", "--jobs", "1",
            "--out", str(tmp_path / "docs"), "--runs-dir", str(tmp_path / "runs")]
    assert quality.main(args) == 0
    assert "skipping pair:digits,mnist: no folder for mnist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_no_train_reports_the_finished_runs_and_names_the_rest(tmp_path, quality):
    common = ["--quick", "--datasets", "ring", "--jobs", "1", "--out", str(tmp_path / "docs"),
              "--runs-dir", str(tmp_path / "runs")]
    assert quality.main([*common, "--variants", "vanilla"]) == 0
    assert quality.main([*common, "--variants", "vanilla", "wgan-gp", "--no-train"]) == 0
    report = (tmp_path / "docs" / "results.md").read_text()
    assert "Partial table: 1 of the plan's runs are finished" in report
    assert "Still to train: wgan-gp on ring (seed 0)" in report
    assert "| `vanilla` | ganzoo | 1 |" in report and "| `wgan-gp` | ganzoo |" not in report
    assert not (tmp_path / "runs" / "wgan-gp-ring-s0").exists()
