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
    it (row-normalised features, Planetoid masks in ndata), without self-loops.

    Args:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"``.
        root: the data root holding ``planetoid/`` (default: see
            :func:`~dgl_bilevel.data.files.data_root`). Nothing is ever downloaded.

    Returns:
        The graph, its ``ndata`` holding ``feat``, ``label``, ``train_mask``, ``val_mask`` and
        ``test_mask``.

    Raises:
        ~dgl_bilevel.errors.DataError: on an unknown name, missing files (each one named) or unreadable ones.

    Example:
        Eight tiny Planetoid files (DGL's validation set is the 500 nodes after the training ones,
        so the graph needs a few more than 500 nodes): a 506-node ring, 4 training nodes, 2 test nodes.

        >>> import pickle
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> import scipy.sparse as sp
        >>> n = 506
        >>> x = sp.csr_matrix(np.arange(n * 3, dtype=np.float32).reshape(n, 3) % 4 + 1)
        >>> y = np.eye(2, dtype=np.int32)[np.arange(n) % 2]
        >>> files = {"x": x[:4], "y": y[:4], "allx": x[:504], "ally": y[:504], "tx": x[504:],
        ...          "ty": y[504:], "graph": {i: [(i + 1) % n] for i in range(n)}}
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "planetoid").mkdir()
        >>> for suffix, obj in files.items():
        ...     _ = (root / "planetoid" / f"ind.pubmed.{suffix}").write_bytes(pickle.dumps(obj))
        >>> _ = (root / "planetoid" / "ind.pubmed.test.index").write_text("505\\n504\\n")
        >>> graph = load_planetoid_graph("pubmed", root)
        >>> graph.num_nodes(), graph.num_edges(), int(graph.ndata["train_mask"].sum())
        (506, 1012, 4)
        >>> graph.ndata["feat"][0].tolist()  # row-normalised counts 1, 2, 3
        [0.1666666716337204, 0.3333333432674408, 0.5]
    """
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
    """The Cora DGLGraph (features row-normalised by DGL, Planetoid masks in ndata).

    ``load_planetoid_graph("cora", root)``; see :func:`load_planetoid_graph`.

    Raises:
        ~dgl_bilevel.errors.DataError: if the files are missing or unreadable.

    Example:
        With Cora's files in ``<root>/planetoid``, ``load_cora_graph(root).num_nodes()`` is 2708.
        Without them, the error names the folder that was searched:

        >>> import tempfile
        >>> from dgl_bilevel.data import load_cora_graph
        >>> load_cora_graph(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.DataError: Cora: data folder .../planetoid does not exist ...
    """
    return load_planetoid_graph("cora", root)


def planetoid(name: str, root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """``cora``, ``citeseer`` or ``pubmed`` with the paper's split: Planetoid train = ``v_in``; the
    Planetoid validation set split at random (seeded) in half into ``v_out`` and validation;
    Planetoid test.

    Args:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"``.
        root: the data root holding ``planetoid/`` (default: see
            :func:`~dgl_bilevel.data.files.data_root`). Nothing is ever downloaded.
        seed: seeds the halving of the validation set.

    Returns:
        The classification :class:`BilevelData`, named ``name``.

    Raises:
        ~dgl_bilevel.errors.DataError: on an unknown name, missing files (each one named) or unreadable ones.

    Example:
        Eight tiny Planetoid files (DGL's validation set is the 500 nodes after the training ones,
        so the graph needs a few more than 500 nodes): a 506-node ring, 4 training nodes, 2 test nodes.

        >>> import pickle
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> import scipy.sparse as sp
        >>> n = 506
        >>> x = sp.csr_matrix(np.arange(n * 3, dtype=np.float32).reshape(n, 3) % 4 + 1)
        >>> y = np.eye(2, dtype=np.int32)[np.arange(n) % 2]
        >>> files = {"x": x[:4], "y": y[:4], "allx": x[:504], "ally": y[:504], "tx": x[504:],
        ...          "ty": y[504:], "graph": {i: [(i + 1) % n] for i in range(n)}}
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "planetoid").mkdir()
        >>> for suffix, obj in files.items():
        ...     _ = (root / "planetoid" / f"ind.pubmed.{suffix}").write_bytes(pickle.dumps(obj))
        >>> _ = (root / "planetoid" / "ind.pubmed.test.index").write_text("505\\n504\\n")
        >>> data = planetoid("pubmed", root, seed=0)
        >>> data.summary()
        'pubmed: 506 nodes, 1012 edges, 3 features, 2 classes; v_in=4, v_out=250, val=250, test=2'
        >>> data.v_in.tolist(), data.test.tolist()
        ([0, 1, 2, 3], [504, 505])
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
    """Cora with the paper's split (see :func:`planetoid`).

    Raises:
        ~dgl_bilevel.errors.DataError: if the files are missing or unreadable.

    Example:
        With Cora's files in ``<root>/planetoid`` (see :func:`planetoid` for the format),
        ``cora(root, seed=0).summary()`` reads ``'cora: 2708 nodes, 10556 edges, 1433 features,
        7 classes; v_in=140, v_out=250, val=250, test=1000'``. Without them:

        >>> import tempfile
        >>> from dgl_bilevel.data import cora
        >>> cora(tempfile.mkdtemp(), seed=0)
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.DataError: Cora: data folder .../planetoid does not exist ...
    """
    return planetoid("cora", root, seed)


def citeseer(root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """CiteSeer with the paper's split (see :func:`planetoid`); its isolated test-range nodes are
    in the graph with zero features and in no node set, as DGL builds it.

    Raises:
        ~dgl_bilevel.errors.DataError: if the files are missing or unreadable.

    Example:
        A folder without CiteSeer's files: the error lists each missing one.

        >>> import tempfile
        >>> from pathlib import Path
        >>> from dgl_bilevel.data import citeseer
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "planetoid").mkdir()
        >>> citeseer(root, seed=0)
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.DataError: CiteSeer: missing data file(s): .../ind.citeseer.x, ...
    """
    return planetoid("citeseer", root, seed)


def pubmed(root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """PubMed with the paper's split (see :func:`planetoid`).

    Raises:
        ~dgl_bilevel.errors.DataError: if the files are missing or unreadable.

    Example:
        ``pubmed(root, seed)`` is ``planetoid("pubmed", root, seed)`` (whose example writes tiny
        PubMed files); a missing folder is named:

        >>> import tempfile
        >>> from dgl_bilevel.data import pubmed
        >>> pubmed(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.DataError: PubMed: data folder .../planetoid does not exist ...
    """
    return planetoid("pubmed", root, seed)
