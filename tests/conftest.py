"""Shared fixtures: an isolated cache, quiet short runs, throwaway plugins."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ganzoo
from ganzoo import plugins
from ganzoo.data.base import DataSpec, InMemoryDataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Rendered digits go to a per-session folder, never the user's home."""
    old = os.environ.get("GANZOO_CACHE")
    os.environ["GANZOO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    threads = max(1, min(2, os.cpu_count() or 1))
    torch.set_num_threads(threads)
    # A fixed thread count for every CLI run of the suite (in-process and subprocesses): ganzoo's
    # default follows the machine's load, and a count that changes mid-run changes float sums, so
    # the bit-identical resume tests would depend on what else the machine runs. Tests of the
    # default itself unset it (tests/test_cpu_threads.py).
    old_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    yield
    if old_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old_threads
    if old is None:
        os.environ.pop("GANZOO_CACHE", None)
    else:
        os.environ["GANZOO_CACHE"] = old


def make_noise_images(shape: tuple[int, int, int], classes: int = 3, count: int = 64):
    """A tiny labeled image dataset class of the given (C, H, W), for shape coverage."""

    class NoiseImages(InMemoryDataset):
        name = f"noise-{shape[0]}x{shape[1]}x{shape[2]}"
        description = "random uint8 images for tests"
        spec = DataSpec(shape=shape, num_classes=classes, size=count)

        def load(self):
            g = torch.Generator().manual_seed(0)
            data = torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=g)
            return data, torch.arange(count) % classes

    return NoiseImages


class PluginRegistration:
    """Registers plugin objects for one test and removes them afterwards."""

    def __init__(self):
        self.names: list[str] = []

    def __call__(self, plugin, name: str) -> str:
        self.names.append(plugins.register_plugin(plugin, name=name))
        return name

    def cleanup(self):
        for name in self.names:
            plugins.unregister_plugin(name)


@pytest.fixture
def register_plugin():
    registration = PluginRegistration()
    yield registration
    registration.cleanup()


@pytest.fixture
def quick():
    """Options for a short, silent CPU run."""
    return ganzoo.TrainOptions(device="cpu", progress=False, sample_every=0, ckpt_every=0, log_every=1)
