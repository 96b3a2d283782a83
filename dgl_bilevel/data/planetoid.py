"""Cora with the paper's bilevel split, read by DGL's own ``CoraGraphDataset`` from local files.

The files in ``<root>/planetoid/ind.cora.*`` are the bytes DGL downloads (it names them
``ind.cora_v2.*``); we link them under DGL's names in a temporary folder and point a
subclass of ``CoraGraphDataset`` at it, with downloading and caching switched off.
"""
from __future__ import annotations

import os
import tempfile

from .._dgl import dgl
from ..errors import DataError
from .bilevel_data import BilevelData
from .files import PathLike, data_root, require_files
from .splits import seeded_generator, split_in_two

PLANETOID_SUFFIXES = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")


class _LocalCoraDataset(dgl.data.CoraGraphDataset):
    """``CoraGraphDataset`` reading a prepared folder; never downloads, never writes a cache."""

    def __init__(self, folder: str) -> None:
        self._local_folder = folder
        super().__init__(raw_dir=folder, force_reload=True, verbose=False)

    @property
    def raw_path(self) -> str:
        return self._local_folder

    def has_cache(self) -> bool:
        return False

    def download(self) -> None:  # pragma: no cover - guarded by require_files
        raise DataError(f"Cora files are missing from {self._local_folder}; dgl_bilevel never downloads")

    def save(self) -> None:
        pass


def load_cora_graph(root: PathLike | None = None) -> "dgl.DGLGraph":
    """The Cora DGLGraph (features row-normalised by DGL, Planetoid masks in ndata)."""
    folder = data_root(root) / "planetoid"
    paths = require_files(folder, [f"ind.cora.{s}" for s in PLANETOID_SUFFIXES], "Cora")
    with tempfile.TemporaryDirectory(prefix="dgl_bilevel_cora_") as tmp:
        for suffix, path in zip(PLANETOID_SUFFIXES, paths):
            os.symlink(path.resolve(), os.path.join(tmp, f"ind.cora_v2.{suffix}"))
        try:
            dataset = _LocalCoraDataset(tmp)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"Cora: could not read the Planetoid files in {folder.resolve()}: {exc}") from exc
        return dataset[0]


def cora(root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """Cora with the paper's split: Planetoid train = ``v_in``; the Planetoid validation set
    split at random (seeded) in half into ``v_out`` and validation; Planetoid test.
    """
    graph = load_cora_graph(root)
    val_nodes = graph.ndata["val_mask"].nonzero().flatten()
    v_out, val = split_in_two(val_nodes, 0.5, seeded_generator(seed))
    return BilevelData.from_dgl(
        graph,
        v_in="train_mask",
        v_out=v_out,
        val=val,
        test="test_mask",
        name="cora",
        extras={"source": str((data_root(root) / "planetoid").resolve()), "split_seed": seed},
    )
