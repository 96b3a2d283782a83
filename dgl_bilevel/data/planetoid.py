"""The Planetoid citation graphs (Cora, CiteSeer, PubMed) with the paper's bilevel split, read by
DGL's own ``CitationGraphDataset`` from local files.

The files ``<root>/planetoid/ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`` are the
Planetoid pickles DGL downloads (it names Cora's ``ind.cora_v2.*``); we link them under DGL's
names in a temporary folder and point a subclass of ``CitationGraphDataset`` at it, with
downloading and caching switched off. DGL's processing is kept as it is: features row-normalised,
Planetoid masks (train = the first ``len(y)`` nodes, validation = the next 500, test = the
``test.index`` nodes) and, for CiteSeer, the nodes missing from ``test.index`` between its smallest
and largest index (isolated nodes of the original data) added with all-zero features, label 0 and
no mask. Self-loops of the adjacency lists (CiteSeer and PubMed have a few) are dropped: a learned
weight on a self-loop only duplicates the self-connection the inner GNNs add.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

from .._dgl import dgl
from ..errors import DataError
from .bilevel_data import BilevelData
from .files import PathLike, data_root, require_files
from .splits import seeded_generator, split_in_two

PLANETOID_SUFFIXES = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")
#: The Planetoid data sets and the name DGL gives each one's files.
PLANETOID = {"cora": "cora_v2", "citeseer": "citeseer", "pubmed": "pubmed"}
_TITLES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}


def planetoid_files(folder: Path, name: str) -> list[Path]:
    """The eight files of Planetoid data set ``name`` in ``folder`` (``<root>/planetoid``)."""
    return [Path(folder) / f"ind.{name}.{suffix}" for suffix in PLANETOID_SUFFIXES]


class _LocalCitationDataset(dgl.data.CitationGraphDataset):
    """``CitationGraphDataset`` reading a prepared folder; never downloads, never writes a cache."""

    def __init__(self, name: str, folder: str) -> None:
        self._local_folder = folder
        super().__init__(name, raw_dir=folder, force_reload=True, verbose=False)

    @property
    def raw_path(self) -> str:
        return self._local_folder

    def has_cache(self) -> bool:
        return False

    def download(self) -> None:  # pragma: no cover - guarded by require_files
        raise DataError(f"{self.name} files are missing from {self._local_folder}; dgl_bilevel never downloads")

    def save(self) -> None:
        pass


def load_planetoid_graph(name: str, root: PathLike | None = None) -> "dgl.DGLGraph":
    """The DGLGraph of ``cora``, ``citeseer`` or ``pubmed`` as DGL's ``CitationGraphDataset`` builds
    it (row-normalised features, Planetoid masks in ndata), without self-loops."""
    return _read_planetoid(name, root)[0]


def _read_planetoid(name: str, root: PathLike | None) -> tuple["dgl.DGLGraph", int]:
    """The graph (self-loops dropped) and DGL's class count (the width of the one-hot labels)."""
    if name not in PLANETOID:
        raise DataError(f"unknown Planetoid data set {name!r}; choose from {tuple(PLANETOID)}")
    title = _TITLES[name]
    folder = data_root(root) / "planetoid"
    paths = require_files(folder, [p.name for p in planetoid_files(folder, name)], title)
    with tempfile.TemporaryDirectory(prefix=f"dgl_bilevel_{name}_") as tmp:
        for suffix, path in zip(PLANETOID_SUFFIXES, paths):
            os.symlink(path.resolve(), os.path.join(tmp, f"ind.{PLANETOID[name]}.{suffix}"))
        try:
            dataset = _LocalCitationDataset(name, tmp)
        except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError, AttributeError,
                pickle.UnpicklingError, dgl.DGLError) as exc:
            raise DataError(f"{title}: could not read the Planetoid files in {folder.resolve()}: "
                            f"{type(exc).__name__}: {exc}") from exc
        graph, num_classes = dataset[0], int(dataset.num_classes)
    src, dst = graph.edges()
    if bool((src == dst).any()):
        graph = dgl.remove_self_loop(graph)
    return graph, num_classes


def load_cora_graph(root: PathLike | None = None) -> "dgl.DGLGraph":
    """The Cora DGLGraph (features row-normalised by DGL, Planetoid masks in ndata)."""
    return load_planetoid_graph("cora", root)


def planetoid(name: str, root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """``cora``, ``citeseer`` or ``pubmed`` with the paper's split: Planetoid train = ``v_in``; the
    Planetoid validation set split at random (seeded) in half into ``v_out`` and validation;
    Planetoid test.
    """
    graph, num_classes = _read_planetoid(name, root)
    val_nodes = graph.ndata["val_mask"].nonzero().flatten()
    v_out, val = split_in_two(val_nodes, 0.5, seeded_generator(seed))
    return BilevelData.from_dgl(
        graph,
        v_in="train_mask",
        v_out=v_out,
        val=val,
        test="test_mask",
        num_classes=num_classes,
        name=name,
        extras={"source": str((data_root(root) / "planetoid").resolve()), "split_seed": seed},
    )


def cora(root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """Cora with the paper's split (see :func:`planetoid`)."""
    return planetoid("cora", root, seed)


def citeseer(root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """CiteSeer with the paper's split (see :func:`planetoid`); its isolated test-range nodes are
    in the graph with zero features and in no node set, as DGL builds it."""
    return planetoid("citeseer", root, seed)


def pubmed(root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """PubMed with the paper's split (see :func:`planetoid`)."""
    return planetoid("pubmed", root, seed)
