"""ganzoo's on-device batch path against a plain DataLoader over the same tensors.

    pytest benchmarks/test_data_pipeline.py --benchmark-only --benchmark-columns=median,ops

Both sources hold MNIST's 60,000 uint8 images; each yields shuffled batches of
64 scaled to [-1, 1]. "step" rows time a whole dcgan generator step (D + G)
with each source; "batch" rows time drawing one batch alone. MNIST is read
from $GANZOO_DATA/mnist or, beside the project, ../shared/data/mnist.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ganzoo
from ganzoo.data.base import Batch, Dataset
from ganzoo.trainer import Trainer, TrainOptions

BATCH = 64


def mnist_dir() -> Path:
    for folder in (Path(os.environ.get("GANZOO_DATA", "/nonexistent")) / "mnist",
                   Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"):
        if (folder / "train-images-idx3-ubyte.gz").exists():
            return folder
    pytest.skip("MNIST files not found ($GANZOO_DATA/mnist or ../shared/data/mnist)")


class DataLoaderSource(Dataset):
    """The same tensors served the usual way: TensorDataset + DataLoader(shuffle=True)."""

    name = "mnist-dataloader"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__(0)
        self.spec = ganzoo.create_dataset("mnist").spec
        dataset = torch.utils.data.TensorDataset(images, labels)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True)
        self.iterator = iter(self.loader)

    def sample(self, batch_size: int) -> Batch:
        try:
            images, labels = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            images, labels = next(self.iterator)
        images = images.to(self.device).float().div_(127.5).sub_(1.0)
        return Batch(images, labels.to(self.device))

    def reference_sample(self, n: int) -> Batch:
        return self.sample(n)


@pytest.fixture(scope="module")
def sources():
    ours = ganzoo.create_dataset("mnist", data_dir=mnist_dir()).prepare("cpu")
    plain = DataLoaderSource(ours.data.cpu(), ours.labels.cpu()).prepare("cpu")
    return {"ganzoo": ours, "dataloader": plain}


@pytest.mark.parametrize("source", ["ganzoo", "dataloader"])
def test_batch(benchmark, sources, source):
    data = sources[source]
    benchmark.extra_info.update(source=source, torch=torch.__version__, threads=torch.get_num_threads())
    benchmark(data.sample, BATCH)


@pytest.mark.parametrize("source", ["ganzoo", "dataloader"])
def test_dcgan_step(benchmark, sources, source, tmp_path):
    data = sources[source]
    variant = ganzoo.create_variant("dcgan", data.spec, batch_size=BATCH)
    trainer = Trainer(variant, data, tmp_path, TrainOptions(device="cpu", progress=False))
    torch.manual_seed(0)
    nets = variant.build(data.spec)
    state = ganzoo.TrainState(nets, variant.make_optimizers(nets))
    for _ in range(3):
        trainer.train_step(state)
    benchmark.extra_info.update(source=source, torch=torch.__version__, threads=torch.get_num_threads())
    benchmark.pedantic(trainer.train_step, args=(state,), rounds=30, iterations=1)
