"""Seconds per generator step of every registered variant with its defaults.

Run with ``pytest benchmarks/ --benchmark-only``; compare variants side by side
in one run. A generator step includes the variant's critic repeats (5 for
wgan-gp). These are measurements, not pass/fail targets.
"""
from __future__ import annotations

import pytest
import torch

import ganzoo
from ganzoo.trainer import Trainer, TrainOptions


@pytest.mark.parametrize("dataset", ["digits", "8gaussians"])
@pytest.mark.parametrize("name", ganzoo.list_variants())
def test_generator_step(benchmark, name, dataset, tmp_path):
    data = ganzoo.create_dataset(dataset, seed=0)
    variant = ganzoo.create_variant(name, data.spec)
    trainer = Trainer(variant, data, tmp_path, TrainOptions(device="auto", progress=False))
    state = trainer.setup()
    for _ in range(3):  # warm-up: allocator, cuDNN autotuning
        trainer.train_step(state)

    def step():
        trainer.train_step(state)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()

    benchmark.extra_info.update(device=str(trainer.device), torch=torch.__version__,
                                batch_size=variant.batch_size, threads=torch.get_num_threads())
    benchmark.pedantic(step, rounds=10, iterations=1)
