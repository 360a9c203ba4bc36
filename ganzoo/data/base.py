"""What a dataset is to ganzoo: a spec plus batches drawn on the training device.

Two kinds cover every built-in set:

* :class:`InMemoryDataset`: a fixed set held as one tensor (uint8 images or
  float vectors) moved to the device once; batches are index draws from an
  epoch permutation made on the device, then scaled there, so no per-sample
  Python work runs in the training loop.
* :class:`SampledDataset`: a distribution drawn fresh for every batch (the
  WGAN-GP toy sets resample each batch).
"""
from __future__ import annotations

import abc
import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch


@dataclass(frozen=True)
class DataSpec:
    """Shape and labels of a dataset's examples.

    shape: ``(D,)`` for vectors or ``(C, H, W)`` for images.
    num_classes: number of labels, or None when the set is unlabeled.
    size: number of examples, or None for a distribution sampled afresh.
    data_scale: what the served data was divided by (``--standardize``: the
    root mean square of the coordinates; else 1). Generated samples are in the
    served units; :meth:`to_data_units` brings them back for plots and metrics.
    Images are always served as float in [-1, 1]; vectors in their own units.
    domains: 1, or 2 for a two-domain (unpaired translation) dataset, whose
    batches carry the second domain in ``Batch.extra`` (see :class:`Batch`).
    """

    shape: tuple[int, ...]
    num_classes: int | None = None
    size: int | None = None
    data_scale: float = 1.0
    domains: int = 1

    def to_data_units(self, samples: torch.Tensor) -> torch.Tensor:
        """Generated (or served) samples (B, *shape) in the dataset's own units."""
        return samples if self.data_scale == 1.0 else samples * self.data_scale

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def channels(self) -> int | None:
        return self.shape[0] if self.is_image else None

    @property
    def labeled(self) -> bool:
        return self.num_classes is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["kind"] = "image" if self.is_image else "vector"
        data["channels"] = self.channels
        if self.data_scale == 1.0:
            del data["data_scale"]  # only standardized data records it (configs stay as they were)
        if self.domains == 1:
            del data["domains"]  # likewise only two-domain data
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataSpec":
        return cls(tuple(data["shape"]), data.get("num_classes"), data.get("size"), float(data.get("data_scale", 1.0)),
                   int(data.get("domains", 1)))


@dataclass
class Batch:
    """real: (B, *spec.shape) float on the training device; labels: (B,) int64 or None.

    extra: more named tensors of B rows each, from datasets that serve more than one
    tensor per example, e.g. a two-domain dataset's second domain (``"real_b"``,
    ``"labels_b"``: see ganzoo.data.pair); sharded together with ``real``.
    """

    real: torch.Tensor
    labels: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.real.shape[0]

    @classmethod
    def without_data(cls, size: int, device: torch.device, labels: torch.Tensor | None = None) -> "Batch":
        """A batch of ``size`` rows with no data: ``real`` is ``(size, 0)``; for phases that only
        need the batch size, the device and labels (``Phase.uses_real`` False)."""
        return cls(torch.empty(size, 0, device=device), labels)

    def shard(self, index: int, count: int) -> "Batch":
        """The ``index``-th of ``count`` equal contiguous slices (for ranks and micro-batches)."""
        size = len(self) // count
        part = slice(index * size, (index + 1) * size)
        return Batch(self.real[part], None if self.labels is None else self.labels[part],
                     {k: v[part] for k, v in self.extra.items()})


def cache_dir() -> Path:
    """Where generated data is cached: $GANZOO_CACHE, else $XDG_CACHE_HOME/ganzoo."""
    if os.environ.get("GANZOO_CACHE"):
        return Path(os.environ["GANZOO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ganzoo"


class Dataset(abc.ABC):
    """Base class of every dataset a plugin registers.

    Subclasses set ``name``, ``description`` and ``spec``. Construction must be
    cheap (``ganzoo list`` builds none, but reads ``spec``); the work happens in
    :meth:`prepare`, once per run, before the first :meth:`sample`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    spec: ClassVar[DataSpec]

    def __init__(self, seed: int = 0):
        #: Seeds this run's batch order (not the data itself, which is fixed).
        self.seed = seed
        self.device = torch.device("cpu")
        self.generator: torch.Generator | None = None

    @classmethod
    def stored_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The options as a run's config.json keeps them, so a resume works from any folder:
        by default ``data_dir`` made absolute. A dataset whose ``data_dir`` is not one path
        (``pair:A,B``) overrides this."""
        return {k: str(Path(v).expanduser().resolve()) if k == "data_dir" else v for k, v in options.items()}

    def prepare(self, device: torch.device | str = "cpu") -> "Dataset":
        """Load or generate the data and move it to ``device``; returns self."""
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Subclass hook: load data onto ``self.device``."""

    def state_dict(self) -> dict[str, Any]:
        """Where the batch stream stands (saved in checkpoints for exact resume)."""
        if self.generator is None:
            return {}
        return {"generator": self.generator.get_state(), "device": self.device.type}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Continue the batch stream of :meth:`state_dict`; False when it cannot continue exactly.

        A CPU generator's state does not fit a CUDA generator (and back): a run
        resumed on another kind of device draws its batches from a generator
        reseeded from the saved state, so the resume is still reproducible.
        """
        if "generator" not in state or self.generator is None:
            return True
        if state.get("device", "cpu") != self.device.type:
            digest = hashlib.sha256(state["generator"].cpu().numpy().tobytes()).digest()
            self.generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            return False
        self.generator.set_state(state["generator"])
        return True

    @abc.abstractmethod
    def sample(self, batch_size: int) -> Batch:
        """A batch of ``batch_size`` examples on ``self.device`` (see :class:`Batch`)."""

    def sample_labels(self, batch_size: int) -> torch.Tensor | None:
        """The labels ``(batch_size,)`` int64 of a batch, for a phase that needs no data
        (``Phase.uses_real`` False); None for unlabeled data. Default: those of :meth:`sample`
        (a dataset may draw the labels alone, as the in-memory ones do)."""
        return self.sample(batch_size).labels

    @abc.abstractmethod
    def reference_sample(self, n: int) -> Batch:
        """``n`` examples for plots and evaluation, the same every call.

        Drawn with a generator of its own, so it never shifts the training
        batch stream (a run's batches stay a function of its seed).
        """

    def _reference_generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(0x5EED)


class SampledDataset(Dataset):
    """A distribution sampled afresh for every batch."""

    @abc.abstractmethod
    def draw(self, batch_size: int, generator: torch.Generator, device: torch.device) -> Batch:
        """A fresh batch from the distribution."""

    def sample(self, batch_size: int) -> Batch:
        if self.generator is None:
            self.prepare()
        return self.draw(batch_size, self.generator, self.device)

    def reference_sample(self, n: int) -> Batch:
        return self.draw(n, self._reference_generator(), self.device)


class InMemoryDataset(Dataset):
    """A fixed set held on the device; batches follow a shuffled epoch order.

    Subclasses implement :meth:`load`, returning ``(data, labels)``: uint8
    images (N, C, H, W) in 0..255, or float vectors (N, D); labels (N,) int64 or
    None.
    """

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.data: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self._order: torch.Tensor | None = None
        self._position = 0

    @abc.abstractmethod
    def load(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The whole set on the CPU: ``(data, labels)`` as described above."""

    def _prepare(self) -> None:
        if self.data is None:
            data, labels = self.load()
            self.data, self.labels = data, labels
        self.data = self.data.to(self.device)
        self.labels = None if self.labels is None else self.labels.to(self.device)
        self._order, self._position = None, 0

    def __len__(self) -> int:
        if self.data is None:
            self.prepare()
        return self.data.shape[0]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._order is not None:
            state.update(order=self._order.cpu(), position=self._position)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        exact = super().load_state_dict(state)
        if "order" in state:
            self._order = state["order"].to(self.device)
            self._position = int(state["position"])
        return exact

    def _scale(self, data: torch.Tensor) -> torch.Tensor:
        if data.dtype == torch.uint8:  # images: 0..255 -> [-1, 1]
            return data.float().div_(127.5).sub_(1.0)
        return data.float()

    def _next_indices(self, batch_size: int) -> torch.Tensor:
        n = len(self)
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the {n} examples of {self.name!r}")
        if self._order is None or self._position + batch_size > n:
            # Drop the short tail of an epoch: every batch has batch_size items.
            self._order = torch.randperm(n, generator=self.generator, device=self.device)
            self._position = 0
        indices = self._order[self._position : self._position + batch_size]
        self._position += batch_size
        return indices

    def reference_sample(self, n: int) -> Batch:
        if self.data is None:
            self.prepare()
        n = min(n, len(self))
        indices = torch.randperm(len(self), generator=self._reference_generator(), device=self.device)[:n]
        labels = None if self.labels is None else self.labels[indices]
        return Batch(self._scale(self.data[indices]), labels)

    def sample(self, batch_size: int) -> Batch:
        indices = self._next_indices(batch_size)
        labels = None if self.labels is None else self.labels[indices]
        return Batch(self._scale(self.data[indices]), labels)

    def sample_labels(self, batch_size: int) -> torch.Tensor | None:
        # The next examples' labels, without gathering and scaling their images; a subclass that
        # serves batches its own way keeps its labels.
        if type(self).sample is not InMemoryDataset.sample:
            return self.sample(batch_size).labels
        indices = self._next_indices(batch_size)
        return None if self.labels is None else self.labels[indices]
