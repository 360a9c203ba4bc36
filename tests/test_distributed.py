"""torchrun on CPU with gloo: equivalence to one process, resume, and a failing rank."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganzoo.checkpoint import load_checkpoint
from ganzoo.cli import main

from .test_registry import _fake_distribution

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")

# --device cpu: these are gloo runs of 2 processes, also on a machine with one GPU.
SMALL = ["--device", "cpu", "--batch-size", "16", "--quiet", "--sample-every", "0", "--set", "g_width=8", "d_width=8", "nz=16"]


def torchrun(*args: str, nproc: int = 2, env: dict | None = None, timeout: float = 240):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "ganzoo", *args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "GANZOO_DIST_TIMEOUT": "60", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=environment)


def parameters(run: Path) -> dict[str, torch.Tensor]:
    """Trained parameters only: BatchNorm running statistics follow rank 0's shard."""
    nets = load_checkpoint(run)["nets"]
    return {k: v for k, v in nets.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.parametrize("variant", ["dcgan", "wgan-gp"])
def test_two_ranks_equal_one_process_over_the_same_global_batches(tmp_path, variant):
    ranked, single = tmp_path / "ranked", tmp_path / "single"
    result = torchrun("train", variant, "--steps", "3", "--out", str(ranked), *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.set_num_threads(1)
    assert main(["train", variant, "--steps", "3", "--out", str(single), "--accumulate", "2", *SMALL]) == 0
    events = [json.loads(x) for x in (ranked / "metrics.jsonl").read_text().splitlines() if "event" in x]
    assert {"event": "ranks_consistent", "step": 3, "world": 2} in events  # both ranks hold the same weights
    a, b = parameters(ranked), parameters(single)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    # And the run really moved away from its initialisation.
    assert load_checkpoint(ranked)["step"] == 3


@pytest.mark.parametrize("variant, sets", [
    # 1 step per phase: 4x4, then 8x8 faded in and stabilised (an Adam reset on the way); EMA on.
    ("pggan", ["phase_images=16", "fmap_base=16", "fmap_max=16"]),
    # Stage 1 for 2 steps, then stage 2 with Stage-I frozen; matching-aware D draws wrong labels.
    ("stackgan", ["stage1_steps=2", "g_width=8", "d_width=8", "embed_dim=8", "c_dim=4", "nz=16"]),
])
def test_growing_and_staged_variants_are_exact_under_torchrun(tmp_path, variant, sets):
    ranked, single = tmp_path / "ranked", tmp_path / "single"
    common = ["--device", "cpu", "--batch-size", "16", "--quiet", "--sample-every", "0", "--set", *sets]
    result = torchrun("train", variant, "--steps", "3", "--out", str(ranked), *common)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.set_num_threads(1)
    assert main(["train", variant, "--steps", "3", "--out", str(single), "--accumulate", "2", *common]) == 0
    a, b = parameters(ranked), parameters(single)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


def test_cyclegan_pools_are_exact_under_torchrun(tmp_path):
    # A pool of 4 fills in the first step (8 fakes per shard), then swaps: each rank changes its
    # copy from its own shard, and the step's end replays both shards' changes on every rank.
    ranked, single = tmp_path / "ranked", tmp_path / "single"
    common = ["--dataset", "pair:digits,digits", "--device", "cpu", "--batch-size", "16", "--quiet",
              "--sample-every", "0", "--set", "g_width=8", "d_width=8", "res_blocks=1", "pool_size=4"]
    result = torchrun("train", "cyclegan", "--steps", "3", "--out", str(ranked), *common)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.set_num_threads(1)
    assert main(["train", "cyclegan", "--steps", "3", "--out", str(single), "--accumulate", "2", *common]) == 0
    a, b = parameters(ranked), parameters(single)
    assert {"pool_a.images", "pool_b.images", "pool_a.count"} <= a.keys() and a.keys() == b.keys()
    assert int(a["pool_a.count"]) == 4 and a["pool_b.images"].abs().sum() > 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


def test_resume_a_two_rank_run(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert torchrun("train", "dcgan", "--steps", "4", "--out", str(straight), *SMALL).returncode == 0
    assert torchrun("train", "dcgan", "--steps", "2", "--out", str(stopped), *SMALL).returncode == 0
    result = torchrun("train", "--resume", str(stopped), "--steps", "4", "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = parameters(straight), parameters(stopped)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_failing_rank_ends_the_run(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site, "zoo_failing", """
        import os
        import ganzoo

        class Failing(ganzoo.TwoPlayerVariant):
            name = "failing"
            paper = summary = "test"
            def d_loss(self, r, f):
                return (f - r).mean()
            def g_loss(self, f):
                self.calls = getattr(self, "calls", 0) + 1
                if os.environ.get("RANK") == "1" and self.calls == 2:
                    raise RuntimeError("boom on rank 1")
                return -f.mean()

        @ganzoo.hookimpl
        def register_variants(register):
            register(Failing)
    """, "failing")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    result = torchrun("train", "failing", "--dataset", "8gaussians", "--steps", "1000", "--out",
                      str(tmp_path / "run"), "--quiet", "--batch-size", "16", env=env)
    assert result.returncode != 0
    assert "boom on rank 1" in result.stdout + result.stderr
    assert time.monotonic() - start < 150


def test_batch_must_split_across_ranks(tmp_path):
    result = torchrun("train", "dcgan", "--steps", "1", "--batch-size", "15", "--out", str(tmp_path / "r"),
                      "--quiet")
    assert result.returncode != 0
    assert "does not split into 2 rank(s)" in result.stderr
    assert not (tmp_path / "r").exists()


def test_more_ranks_than_gpus_is_a_clear_error(monkeypatch):
    from ganzoo.distributed import init_from_env
    from ganzoo.errors import GanzooError

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(GanzooError, match="LOCAL_RANK 1 has no GPU.*1 CUDA device.*--device cpu"):
        init_from_env(torch.device("cuda"))


def test_a_regulariser_phase_of_its_own_is_exact_under_torchrun(tmp_path):
    """A plugin's lazy R1 phase (a double backward through the plain critic, no other
    loss in the phase) used to leave the ranks' critics apart: the trainer now
    all-reduces every phase's gradients itself. Two ranks must equal one process
    with --accumulate 2, with EMA and R1 from the toolkit on as well."""
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site, "zoo_lazyr1", """
        import torch
        import ganzoo
        from ganzoo.ops import r1_penalty

        class LazyR1(ganzoo.TwoPlayerVariant):
            name = "lazy-r1"
            paper = summary = "test: R1 in a phase of its own"
            def d_loss(self, r, f):
                return torch.nn.functional.softplus(-r).mean() + torch.nn.functional.softplus(f).mean()
            def g_loss(self, f):
                return torch.nn.functional.softplus(-f).mean()
            def phases(self, step):
                return [*super().phases(step), ganzoo.Phase("R1", ("D",), self.r1, every=2)]
            def r1(self, nets, batch):
                penalty, _ = r1_penalty(lambda x: nets["D"](x), batch.real, gamma=10.0)
                return penalty, {"loss": penalty}

        @ganzoo.hookimpl
        def register_variants(register):
            register(LazyR1)
    """, "lazyr1")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    args = ["--steps", "4", "--dataset", "8gaussians", *SMALL, "toy_hidden=16", "ema=0.5", "r1_gamma=1"]
    ranked, single = tmp_path / "ranked", tmp_path / "single"
    result = torchrun("train", "lazy-r1", "--out", str(ranked), *args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    local = subprocess.run([sys.executable, "-m", "ganzoo", "train", "lazy-r1", "--out", str(single),
                            "--accumulate", "2", *args], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert local.returncode == 0, local.stderr[-3000:]
    events = [json.loads(x) for x in (ranked / "metrics.jsonl").read_text().splitlines() if "event" in x]
    assert {"event": "ranks_consistent", "step": 4, "world": 2} in events
    a, b = parameters(ranked), parameters(single)
    assert "G_ema.body.0.weight" in a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
