"""OGB node-property data sets through the ``ogb`` package's own DGL loader, from a local root.

OGB data cannot be downloaded on every machine, and ``DglNodePropPredDataset`` downloads when a
file is missing and waits on stdin when the release marker is missing. :func:`check_ogb_root`
therefore checks the folder first and fails at once with the layout it expected; the real
loader then reads the files. Splits are OGB's official ones and the metric is OGB's
``Evaluator``.

OGB's rules forbid gradient-based use of validation labels, so the bilevel split takes
``v_out`` out of the *training* nodes (``v_out_fraction``, seeded) and uses validation only to
pick the best graph. :func:`write_ogb_layout` writes generated data in the same layout, so the
real loader can be tested and benchmarked without the real data.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .._dgl import dgl  # noqa: F401  (imports DGL with its shims before ogb imports it)
from ..errors import DataError
from ..losses import Metric
from .bilevel_data import BilevelData
from .files import PathLike
from .generated import GeneratedGraph, bilevel_from_split

#: Data sets with OGB's plain csv layout that dgl_bilevel reads, with their split folder.
OGB_NODE_DATASETS = {
    "ogbn-arxiv": {"split": "time", "node_files": ["node_year"], "features": "node-feat"},
    "ogbn-products": {"split": "sales_ranking", "node_files": [], "features": "node-feat"},
    "ogbn-proteins": {"split": "species", "node_files": ["node_species"], "features": None},
}


def default_ogb_root() -> Path:
    """Where OGB data sets are looked for when no root is given: ``<data root>/ogb`` (the data root
    of :func:`~dgl_bilevel.data.files.data_root`: ``$DGL_BILEVEL_DATA``, else ../shared/data, ...),
    so the default does not depend on the current directory."""
    from .files import data_root

    return data_root(None) / "ogb"


def ogb_folder(root: PathLike, name: str) -> Path:
    """``<root>/<name with underscores>`` (or the ``_dgl`` variant OGB also accepts)."""
    base = Path(root) / name.replace("-", "_")
    dgl_variant = Path(str(base) + "_dgl")
    return dgl_variant if dgl_variant.is_dir() and not base.is_dir() else base


def expected_layout(name: str) -> str:
    info = OGB_NODE_DATASETS[name]
    extra = "".join(f", {f}.csv.gz" for f in info["node_files"])
    feats = f", {info['features']}.csv.gz" if info["features"] else ", edge-feat.csv.gz"
    return (
        f"{name.replace('-', '_')}/RELEASE_v1.txt; "
        f"raw/ with edge.csv.gz, num-node-list.csv.gz, num-edge-list.csv.gz, node-label.csv.gz{feats}{extra}; "
        f"split/{info['split']}/ with train.csv.gz, valid.csv.gz, test.csv.gz "
        "(or processed/dgl_data_processed from an earlier load instead of raw/)"
    )


def check_ogb_root(root: Optional[PathLike], name: str) -> Path:
    """Fail fast, naming the folder and the expected layout, unless ``name`` is complete under ``root``."""
    if name not in OGB_NODE_DATASETS:
        raise DataError(f"unsupported OGB data set {name!r}; supported: {', '.join(OGB_NODE_DATASETS)}")
    if root is None:
        raise DataError(f"{name}: pass the folder holding OGB data (the OGB root); nothing is ever downloaded")
    folder = ogb_folder(root, name)
    info = OGB_NODE_DATASETS[name]
    problems = []
    if not folder.is_dir():
        problems.append(f"folder {folder.resolve()} does not exist")
    else:
        if not (folder / "RELEASE_v1.txt").is_file():
            problems.append("RELEASE_v1.txt is missing (OGB's loader would stop and ask on stdin)")
        processed = (folder / "processed" / "dgl_data_processed").is_file()
        if not processed:
            needed = ["edge", "num-node-list", "num-edge-list", "node-label"] + info["node_files"]
            needed += [info["features"]] if info["features"] else ["edge-feat"]
            missing = [f"raw/{n}.csv.gz" for n in needed if not (folder / "raw" / f"{n}.csv.gz").is_file()]
            if missing:
                problems.append("missing " + ", ".join(missing) + " (OGB's loader would try to download)")
        split_dir = folder / "split" / info["split"]
        missing = [f"split/{info['split']}/{s}.csv.gz" for s in ("train", "valid", "test")
                   if not (split_dir / f"{s}.csv.gz").is_file() and not (split_dir / "split_dict.pt").is_file()]
        if missing:
            problems.append("missing " + ", ".join(missing))
    if problems:
        raise DataError(f"{name} under {Path(root).resolve()}: " + "; ".join(problems)
                        + f". Expected layout: {expected_layout(name)}")
    return folder


def ogb_metric(name: str) -> Metric:
    """The official ``ogb.nodeproppred.Evaluator`` as a :class:`Metric`."""
    from ogb.nodeproppred import Evaluator

    evaluator = Evaluator(name)
    key = evaluator.eval_metric

    def fn(out: torch.Tensor, labels: torch.Tensor, nodes: torch.Tensor) -> float:
        if key == "acc":
            y_pred = out[nodes].argmax(-1, keepdim=True)
            y_true = labels[nodes].reshape(-1, 1)
        else:
            y_pred, y_true = out[nodes], labels[nodes]
        return float(evaluator.eval({"y_true": y_true, "y_pred": y_pred})[key])

    return Metric(key, True, fn)


def load_ogb(name: str, root: Optional[PathLike], seed: int = 0, v_out_fraction: float = 0.5) -> BilevelData:
    """An OGB node-property data set as :class:`BilevelData` with OGB's split and Evaluator.

    ``v_out`` is ``v_out_fraction`` of the official training nodes (seeded); ``v_in`` the rest.
    Directed graphs (ogbn-arxiv) are made symmetric, as in OGB's reference GNNs. ogbn-proteins
    has no node features: each node gets the mean of its edges' 8 features.
    """
    root = Path(root).expanduser() if root is not None else default_ogb_root()
    check_ogb_root(root, name)
    from ogb.nodeproppred import DglNodePropPredDataset

    try:
        dataset = DglNodePropPredDataset(name=name, root=str(root))
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(f"{name}: OGB's loader failed on {ogb_folder(root, name).resolve()}: {exc}") from exc
    graph, labels = dataset[0]
    split = dataset.get_idx_split()
    if "feat" in graph.ndata:
        features = graph.ndata["feat"].float()
    else:
        features = dgl.ops.copy_e_mean(graph, graph.edata["feat"].float())
    src, dst = graph.edges()
    task = "multilabel" if dataset.task_type == "binary classification" else "classification"
    data = bilevel_from_split(
        src.numpy(), dst.numpy(), features.numpy(), labels.numpy() if task == "multilabel" else labels.numpy().ravel(),
        split["train"].numpy(), split["valid"].numpy(), split["test"].numpy(),
        v_out_fraction=v_out_fraction, seed=seed, name=name, task=task,
    )
    data.metric = ogb_metric(name)
    data.extras["source"] = str(ogb_folder(root, name).resolve())
    return data


# ------------------------------------------------------------------------ writing
def _write_csv_gz(path: Path, array: np.ndarray, fmt: str) -> None:
    array = np.asarray(array)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    with gzip.open(path, "wt", compresslevel=1) as handle:
        np.savetxt(handle, array, fmt=fmt, delimiter=",")


def write_ogb_layout(graph: GeneratedGraph, root: PathLike, name: str = "ogbn-arxiv") -> Path:
    """Write a generated citation graph in OGB's on-disk layout for ``name`` (default ogbn-arxiv),
    so that ``ogb.nodeproppred.DglNodePropPredDataset(name, root)`` reads it. Returns the folder."""
    if name != "ogbn-arxiv":
        raise DataError("write_ogb_layout writes the ogbn-arxiv layout only")
    folder = Path(root) / name.replace("-", "_")
    raw, split = folder / "raw", folder / "split" / "time"
    raw.mkdir(parents=True, exist_ok=True)
    split.mkdir(parents=True, exist_ok=True)
    _write_csv_gz(raw / "edge.csv.gz", np.stack([graph.src, graph.dst], axis=1), "%d")
    _write_csv_gz(raw / "num-node-list.csv.gz", np.array([graph.num_nodes]), "%d")
    _write_csv_gz(raw / "num-edge-list.csv.gz", np.array([graph.src.size]), "%d")
    _write_csv_gz(raw / "node-feat.csv.gz", graph.features, "%.6f")
    _write_csv_gz(raw / "node-label.csv.gz", graph.labels, "%d")
    _write_csv_gz(raw / "node_year.csv.gz", graph.years, "%d")
    for part in ("train", "valid", "test"):
        _write_csv_gz(split / f"{part}.csv.gz", getattr(graph, part), "%d")
    (folder / "RELEASE_v1.txt").write_text("# generated by dgl_bilevel (synthetic, arxiv-shaped); not OGB data\n")
    return folder
