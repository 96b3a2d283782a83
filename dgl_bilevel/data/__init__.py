"""Data: the BilevelData container, loaders for real data on disk, and the paper's generators."""
from .bilevel_data import SPLITS, BilevelData
from .planetoid import cora, load_cora_graph
from .registry import DATASETS, DatasetEntry, load_dataset, register
from .splits import seeded_generator, split_in_two
from .synthetic import cheaters, synthetic1

__all__ = [
    "BilevelData",
    "SPLITS",
    "cora",
    "load_cora_graph",
    "cheaters",
    "synthetic1",
    "split_in_two",
    "seeded_generator",
    "DATASETS",
    "DatasetEntry",
    "load_dataset",
    "register",
]
