"""Heterophilous graphs read by DGL's own ``HeterophilousGraphDataset`` from
``<root>/heterophilous/<name>.npz``, with their 10 official splits.

Two groups, one file format (keys ``node_features``, ``node_labels``, ``edges`` ``[E, 2]``,
``train_masks`` / ``val_masks`` / ``test_masks`` ``[10, N]``, as yandex-research/heterophilous-graphs
ships them):

* :data:`HETEROPHILOUS` -- texas, cornell, wisconsin, chameleon (shipped in ``../shared/data``);
* :data:`HETEROPHILOUS_BENCHMARK` -- the sets of Platonov et al. (2023), "A critical look at the
  evaluation of GNNs under heterophily": roman-empire, amazon-ratings, minesweeper, tolokers,
  questions, squirrel-filtered and chameleon-filtered. Upstream names their files with
  underscores (``roman_empire.npz``); either spelling is read. minesweeper, tolokers and questions
  are binary and scored by ROC-AUC (:data:`~dgl_bilevel.losses.BINARY_ROCAUC`), as that benchmark
  reports them; the others by accuracy.

DGL's class looks for ``<raw_dir>/<name>_<url hash>/<name with underscores>.npz`` and downloads
when it is absent; a subclass is pointed at a temporary folder holding a link to the local file
and never downloads. Seed ``s`` uses official split ``s mod 10``: its training nodes are ``v_in``,
its validation nodes are halved at random (seeded) into ``v_out`` and validation -- the protocol
used for Cora -- and its test nodes are the test set. Bag-of-words features (the WebKB and
Wikipedia sets, filtered or not) are row-normalised, as for Cora; the others (word embeddings,
mixed numeric features) are used as they are.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .._dgl import dgl
from ..errors import DataError
from ..losses import BINARY_ROCAUC
from .bilevel_data import BilevelData
from .files import PathLike, data_root, require_files
from .splits import seeded_generator, split_in_two

HETEROPHILOUS = ("texas", "cornell", "wisconsin", "chameleon")
HETEROPHILOUS_BENCHMARK = ("roman-empire", "amazon-ratings", "minesweeper", "tolokers", "questions",
                           "squirrel-filtered", "chameleon-filtered")
#: The binary sets of the benchmark, reported by ROC-AUC.
HETEROPHILOUS_BINARY = ("minesweeper", "tolokers", "questions")
#: Sets whose features are bag-of-words counts (row-normalised on loading).
_BAG_OF_WORDS = HETEROPHILOUS + ("squirrel-filtered", "chameleon-filtered")
NUM_SPLITS = 10
NPZ_KEYS = ("node_features", "node_labels", "edges", "train_masks", "val_masks", "test_masks")


def upstream_name(name: str) -> str:
    """The file stem upstream and DGL use: the name with underscores."""
    return name.replace("-", "_")


def heterophilous_file(folder: Path, name: str) -> Path:
    """The file read for ``name`` in ``folder``: ``<name>.npz`` or upstream's ``<name_with_underscores>.npz``,
    whichever exists (``<name>.npz`` when neither does)."""
    candidates = [Path(folder) / f"{name}.npz", Path(folder) / f"{upstream_name(name)}.npz"]
    return next((p for p in candidates if p.is_file()), candidates[0])


class _LocalHeterophilousDataset(dgl.data.heterophilous_graphs.HeterophilousGraphDataset):
    """DGL's loader reading ``<folder>/<name with underscores>.npz``; never downloads."""

    def __init__(self, name: str, folder: str) -> None:
        self._local_folder = folder
        super().__init__(name=name, raw_dir=folder, verbose=False)

    @property
    def raw_path(self) -> str:
        return self._local_folder

    def download(self) -> None:  # pragma: no cover - guarded by require_files
        raise DataError(f"{self.name}.npz is missing from {self._local_folder}; dgl_bilevel never downloads")


def _check_npz(path: Path, what: str) -> None:
    """Keys and mask shapes of an npz file, checked before DGL reads it (the masks are small; features
    and edges are left to DGL, whose errors are reported with the file's name)."""
    try:
        data = np.load(path)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{what}: could not read {path.resolve()}: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{what}: {path.resolve()} is a single array, not an npz archive of {', '.join(NPZ_KEYS)}")
    with data:
        missing = [k for k in NPZ_KEYS if k not in data.files]
        if missing:
            raise DataError(f"{what}: {path.resolve()} lacks the key(s) {', '.join(missing)} "
                            f"(has: {', '.join(data.files) or 'nothing'}; expected: {', '.join(NPZ_KEYS)})")
        n = data["node_labels"].shape[0]
        shapes = {k: data[k].shape for k in NPZ_KEYS[3:]}
    first = shapes["train_masks"]
    if len(first) != 2 or first[1] != n or any(shape != first for shape in shapes.values()):
        raise DataError(f"{what}: in {path.resolve()} the masks must all have shape [num_splits, {n}] (one row "
                        f"per official split, {n} nodes), got " + ", ".join(f"{k} {v}" for k, v in shapes.items()))


def heterophilous(name: str, root: PathLike | None = None, seed: int = 0) -> BilevelData:
    """A heterophilous data set (:data:`HETEROPHILOUS` or :data:`HETEROPHILOUS_BENCHMARK`) with
    official split ``seed % 10``."""
    if name not in HETEROPHILOUS + HETEROPHILOUS_BENCHMARK:
        raise DataError(f"unknown heterophilous data set {name!r}; choose from "
                        f"{HETEROPHILOUS + HETEROPHILOUS_BENCHMARK}")
    stem = upstream_name(name)
    folder = data_root(root) / "heterophilous"
    path = heterophilous_file(folder, name)
    if not path.is_file():
        alternative = "" if stem == name else f" (or upstream's {stem}.npz)"
        require_files(folder, [], name)  # names the folder when it is missing
        raise DataError(f"{name}: missing data file: {path.resolve()}{alternative}")
    _check_npz(path, name)
    with tempfile.TemporaryDirectory(prefix="dgl_bilevel_heterophilous_") as tmp:
        os.symlink(path.resolve(), os.path.join(tmp, f"{stem}.npz"))
        try:
            dataset = _LocalHeterophilousDataset(name, tmp)
        except (OSError, ValueError, KeyError, IndexError, dgl.DGLError) as exc:
            raise DataError(f"{name}: could not read {path.resolve()}: {exc}") from exc
        graph, num_classes = dataset[0], dataset.num_classes
    feat = graph.ndata["feat"].float()
    if name in _BAG_OF_WORDS:
        feat = feat / feat.sum(1, keepdim=True).clamp_min(1e-12)
    graph.ndata["feat"] = feat
    metric = None
    if name in HETEROPHILOUS_BINARY:
        labels = graph.ndata["label"]
        if num_classes != 2 or not bool(((labels == 0) | (labels == 1)).all()):
            raise DataError(f"{name} is a binary task (scored by ROC-AUC) but {path.resolve()} holds labels "
                            f"{sorted(int(v) for v in labels.unique()[:10])}; expected 0 and 1")
        metric = BINARY_ROCAUC
    num_splits = graph.ndata["train_mask"].shape[1]
    split = seed % num_splits
    val_nodes = graph.ndata["val_mask"][:, split].nonzero().flatten()
    v_out, val = split_in_two(val_nodes, 0.5, seeded_generator(seed))
    return BilevelData.from_dgl(
        graph,
        v_in=graph.ndata["train_mask"][:, split],
        v_out=v_out,
        val=val,
        test=graph.ndata["test_mask"][:, split],
        num_classes=num_classes,
        metric=metric,
        name=name,
        extras={"source": str(path.resolve()), "official_split": split, "num_splits": num_splits},
    )
