"""Data: the BilevelData container, loaders for real data on disk, and the paper's generators."""
from .bilevel_data import SPLITS, BilevelData
from .graph_file import load_graph_file
from .planetoid import citeseer, cora, load_cora_graph, load_planetoid_graph, planetoid, pubmed
from .registry import DATASETS, DatasetEntry, load_dataset, register
from .splits import seeded_generator, split_in_two
from .synthetic import cheaters, synthetic1

__all__ = [
    "BilevelData",
    "SPLITS",
    "cora",
    "citeseer",
    "pubmed",
    "planetoid",
    "load_cora_graph",
    "load_planetoid_graph",
    "load_graph_file",
    "cheaters",
    "synthetic1",
    "split_in_two",
    "seeded_generator",
    "DATASETS",
    "DatasetEntry",
    "load_dataset",
    "register",
]
