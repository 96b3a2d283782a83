"""Heterophilous graphs (texas, cornell, wisconsin, chameleon) read by DGL's own
``HeterophilousGraphDataset`` from ``<root>/heterophilous/<name>.npz``, with the 10 official splits.

DGL's class looks for ``<raw_dir>/<name>_<url hash>/<name>.npz`` and downloads when it is
absent; a subclass points it at the local folder and never downloads. Seed ``s`` uses official
split ``s mod 10``: its training nodes are ``v_in``, its validation nodes are halved at random
(seeded) into ``v_out`` and validation -- the protocol used for Cora -- and its test nodes are
the test set. Features (bag-of-words counts) are row-normalised, as for Cora.
"""
from __future__ import annotations

from .._dgl import dgl
from ..errors import DataError
from .bilevel_data import BilevelData
from .files import PathLike, data_root, require_files
from .splits import seeded_generator, split_in_two

HETEROPHILOUS = ("texas", "cornell", "wisconsin", "chameleon")
NUM_SPLITS = 10


class _LocalHeterophilousDataset(dgl.data.heterophilous_graphs.HeterophilousGraphDataset):
    """DGL's loader reading ``<folder>/<name>.npz``; never downloads."""

    def __init__(self, name: str, folder: str) -> None:
        self._local_folder = folder
        super().__init__(name=name, raw_dir=folder, verbose=False)

    @property
    def raw_path(self) -> str:
        return self._local_folder

    def download(self) -> None:  # pragma: no cover - guarded by require_files
        raise DataError(f"{self.name}.npz is missing from {self._local_folder}; dgl_bilevel never downloads")


def heterophilous(name: str, root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """One of texas, cornell, wisconsin, chameleon with official split ``seed % 10``."""
    if name not in HETEROPHILOUS:
        raise DataError(f"unknown heterophilous data set {name!r}; choose from {HETEROPHILOUS}")
    folder = data_root(root) / "heterophilous"
    require_files(folder, [f"{name}.npz"], name)
    try:
        dataset = _LocalHeterophilousDataset(name, str(folder))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{name}: could not read {folder.resolve() / (name + '.npz')}: {exc}") from exc
    graph = dataset[0]
    feat = graph.ndata["feat"].float()
    graph.ndata["feat"] = feat / feat.sum(1, keepdim=True).clamp_min(1e-12)
    split = seed % NUM_SPLITS
    val_nodes = graph.ndata["val_mask"][:, split].nonzero().flatten()
    v_out, val = split_in_two(val_nodes, 0.5, seeded_generator(seed))
    return BilevelData.from_dgl(
        graph,
        v_in=graph.ndata["train_mask"][:, split],
        v_out=v_out,
        val=val,
        test=graph.ndata["test_mask"][:, split],
        num_classes=dataset.num_classes,
        name=name,
        extras={"source": str(folder.resolve()), "official_split": split},
    )
