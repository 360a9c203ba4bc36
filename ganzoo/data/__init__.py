"""Datasets: the base classes and the embedded sets (toy 2-D, rendered digits)."""
from .base import Batch, DataSpec, Dataset, InMemoryDataset, SampledDataset

__all__ = ["Batch", "DataSpec", "Dataset", "InMemoryDataset", "SampledDataset"]
