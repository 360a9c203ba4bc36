"""Two-domain datasets for unpaired image-to-image translation (CycleGAN).

* ``pair:A,B``: any two registered image datasets of the same shape, e.g.
  ``pair:digits,mnist`` (each part may carry its own folder: ``pair:digits,mnist:DIR``);
* ``folder-pair:PATH``: the layout CycleGAN's own datasets use, ``PATH/trainA`` and
  ``PATH/trainB`` (``testA`` / ``testB`` with ``--split test``), each a folder of images.

The two domains are unpaired and shuffled independently (domain B's batch order has
its own seed). A batch's ``real`` and ``labels`` are domain A's; ``extra["real_b"]``
(and ``extra["labels_b"]`` when B is labeled) are domain B's, the same number of
rows. The spec is A's shape with ``domains=2`` and A's classes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import GanzooError
from ..hookspecs import hookimpl
from .base import Batch, DataSpec, Dataset

#: The names of domain B's tensors in ``Batch.extra``.
REAL_B, LABELS_B = "real_b", "labels_b"


class TwoDomains(Dataset):
    """Two image datasets served side by side; see the module docstring."""

    name = "two-domains"
    description = "two image datasets as translation domains A and B"

    def __init__(self, first: Dataset, second: Dataset, seed: int = 0):
        super().__init__(seed)
        for part in (first, second):
            if not part.spec.is_image:
                raise GanzooError(f"a two-domain dataset needs image datasets; {part.name!r} holds vectors "
                                  f"of shape {tuple(part.spec.shape)}")
        if tuple(first.spec.shape) != tuple(second.spec.shape):
            raise GanzooError(f"the two domains must have the same shape: {first.name!r} is "
                              f"{'x'.join(map(str, first.spec.shape))}, {second.name!r} "
                              f"{'x'.join(map(str, second.spec.shape))} (use --image-size and --channels)")
        self.first, self.second = first, second
        self.spec = DataSpec(tuple(first.spec.shape), first.spec.num_classes, first.spec.size, domains=2)

    def prepare(self, device: torch.device | str = "cpu") -> "TwoDomains":
        self.device = torch.device(device)
        self.first.prepare(device)
        self.second.prepare(device)
        return self

    @staticmethod
    def _join(a: Batch, b: Batch) -> Batch:
        extra = {REAL_B: b.real, **({LABELS_B: b.labels} if b.labels is not None else {})}
        return Batch(a.real, a.labels, extra)

    def sample(self, batch_size: int) -> Batch:
        return self._join(self.first.sample(batch_size), self.second.sample(batch_size))

    def reference_sample(self, n: int) -> Batch:
        a, b = self.first.reference_sample(n), self.second.reference_sample(n)
        rows = min(len(a), len(b))  # a small folder may hold fewer than n images

        def head(batch: Batch) -> Batch:
            return Batch(batch.real[:rows], None if batch.labels is None else batch.labels[:rows])

        return self._join(head(a), head(b))

    def state_dict(self) -> dict[str, Any]:
        return {"a": self.first.state_dict(), "b": self.second.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        exact_a = self.first.load_state_dict(state.get("a", {})) is not False
        exact_b = self.second.load_state_dict(state.get("b", {})) is not False
        return exact_a and exact_b


class PairOfDatasets(TwoDomains):
    """pair:A,B: two registered image datasets of one shape as the domains A and B."""

    name = "pair"
    description = "two registered image datasets of one shape as translation domains: pair:A,B (e.g. pair:digits,mnist)"
    spec = DataSpec(shape=(1, 28, 28), num_classes=None, size=None, domains=2)

    @classmethod
    def stored_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """``data_dir`` names two datasets; a part's own folder (``mnist:DIR``) is made absolute."""
        from ..registry import split_dataset_name

        stored = dict(options)
        if options.get("data_dir"):
            parts = []
            for part in str(options["data_dir"]).split(",", 1):
                base, folder = split_dataset_name(part.strip())
                parts.append(base if folder is None else f"{base}:{Path(folder).expanduser().resolve()}")
            stored["data_dir"] = ",".join(parts)
        return stored

    def __init__(self, seed: int = 0, data_dir: str | None = None, image_size: int | None = None,
                 channels: int | None = None):
        from ..registry import create_dataset, dataset_option_names, split_dataset_name

        names = [n.strip() for n in str(data_dir or "").split(",", 1)] if data_dir else []
        if len(names) != 2 or not all(names):
            raise GanzooError("pair needs two datasets: --dataset pair:A,B (e.g. pair:digits,mnist)")
        parts = []
        for offset, name in enumerate(names):
            base, _ = split_dataset_name(name)
            options: dict[str, Any] = {"seed": seed + offset}  # B's batch order is its own
            taken = dataset_option_names(base)
            for key, value in (("image_size", image_size), ("channels", channels)):
                if value is not None and key in taken:
                    options[key] = value
            parts.append(create_dataset(name, **options))
        super().__init__(*parts, seed=seed)


class FolderPair(TwoDomains):
    """folder-pair:PATH: CycleGAN's layout, PATH/trainA and PATH/trainB (testA, testB with --split test)."""

    name = "folder-pair"
    description = "CycleGAN's folder layout: folder-pair:PATH with PATH/trainA and PATH/trainB (testA/testB)"
    spec = DataSpec(shape=(3, 64, 64), num_classes=None, size=None, domains=2)

    def __init__(self, seed: int = 0, data_dir: str | os.PathLike | None = None, image_size: int | None = None,
                 channels: int | None = None, split: str = "train"):
        from .folder import ImageFolder

        if data_dir is None:
            raise GanzooError("folder-pair needs a folder: --dataset folder-pair:PATH (with PATH/trainA and PATH/trainB)")
        if split not in ("train", "test"):
            raise GanzooError(f"folder-pair has the splits train and test, not {split!r}")
        root = Path(data_dir).expanduser()
        folders = [root / f"{split}A", root / f"{split}B"]
        missing = [f.name for f in folders if not f.is_dir()]
        if missing:
            raise GanzooError(f"folder-pair: {root} has no {' or '.join(missing)} folder "
                              f"(CycleGAN's layout: {split}A/ and {split}B/, one folder of images per domain)")
        first = ImageFolder(seed=seed, data_dir=folders[0], image_size=image_size, channels=channels)
        # Domain B at A's size and channels, so the shapes match unless the user chose otherwise.
        second = ImageFolder(seed=seed + 1, data_dir=folders[1], image_size=first.image_size,
                             channels=first.channels)
        super().__init__(first, second, seed=seed)


@hookimpl
def register_datasets(register):
    register(PairOfDatasets)
    register(FolderPair)
