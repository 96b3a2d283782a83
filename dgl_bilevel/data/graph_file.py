"""Your own graph from a file: ``--dataset path/to/graph.bin``, written by ``dgl.save_graphs``.

The file holds one homogeneous graph whose ``ndata`` has

* ``feat``: ``[N, D]`` floating-point features;
* ``label``: ``[N]`` integer classes (classification) or ``[N]`` / ``[N, T]`` floats (regression);
  nodes outside every mask may hold anything (e.g. -1);
* ``train_mask``, ``val_mask``, ``test_mask``: ``[N]`` boolean masks (or 0/1 integers:
  ``dgl.save_graphs`` stores booleans as uint8), or ``[N, S]`` for S alternative splits (seed
  ``s`` uses split ``s mod S``).

The bilevel split is Cora's: ``train_mask`` is ``v_in``, ``val_mask`` is halved at random
(seeded) into ``v_out`` and validation, ``test_mask`` is the test set. Edge data is ignored.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .._dgl import dgl
from ..errors import DataError
from .bilevel_data import BilevelData
from .files import PathLike
from .splits import seeded_generator, split_in_two

REQUIRED_NDATA = ("feat", "label", "train_mask", "val_mask", "test_mask")
MASKS = ("train_mask", "val_mask", "test_mask")
FORMAT = ("one graph saved with dgl.save_graphs whose ndata holds feat [N, D] float, label [N] int "
          "(classification) or float (regression), and train_mask / val_mask / test_mask [N] (or [N, S]) bool")


def read_graph_file(path: PathLike) -> "dgl.DGLGraph":
    """The one graph in ``path``, with its ndata checked against :data:`FORMAT`."""
    path = Path(path).expanduser()
    where = str(path.resolve())
    if not path.is_file():
        raise DataError(f"graph file {where} does not exist")
    try:
        graphs, _ = dgl.load_graphs(str(path))
    except (dgl.DGLError, OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"{where} is not a file written by dgl.save_graphs ({type(exc).__name__}: "
                        f"{_first_line(exc)})") from exc
    if len(graphs) != 1:
        raise DataError(f"{where} holds {len(graphs)} graphs; expected exactly one ({FORMAT})")
    graph = graphs[0]
    if not graph.is_homogeneous:
        raise DataError(f"{where}: the graph has node types {graph.ntypes} and edge types {graph.etypes}; "
                        "expected a homogeneous graph (dgl.to_homogeneous converts one)")
    missing = [k for k in REQUIRED_NDATA if k not in graph.ndata]
    if missing:
        raise DataError(f"{where}: ndata lacks {', '.join(repr(k) for k in missing)} (has: "
                        f"{', '.join(repr(k) for k in graph.ndata) or 'nothing'}); expected {FORMAT}")
    _check_ndata(graph, where)
    return graph


def _first_line(exc: Exception) -> str:
    """An error's first line without DGL's C++ prefix (``[12:00:00] file.cc:128: ``) and stack trace."""
    lines = str(exc).strip().splitlines()
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", lines[0]) if lines else type(exc).__name__


def _check_ndata(graph: "dgl.DGLGraph", where: str) -> None:
    feat, label = graph.ndata["feat"], graph.ndata["label"]
    if feat.dim() != 2 or not feat.is_floating_point():
        raise DataError(f"{where}: ndata['feat'] must be a [N, D] floating-point tensor, got shape "
                        f"{tuple(feat.shape)} and dtype {feat.dtype} (convert with .float(); one feature: "
                        ".unsqueeze(1))")
    if label.dtype == torch.bool or label.dim() not in (1, 2) or (label.dim() == 2 and not label.is_floating_point()):
        raise DataError(f"{where}: ndata['label'] must be [N] integer classes or [N] / [N, T] floats, got shape "
                        f"{tuple(label.shape)} and dtype {label.dtype}")
    splits = None
    for key in MASKS:
        mask = graph.ndata[key]
        problem = ""
        if mask.is_floating_point() or mask.is_complex():
            problem = "; floating-point masks are refused (convert with .bool())"
        elif mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            problem = "; it holds values other than 0 and 1 (a mask, not a list of node indices)"
        if problem or mask.dim() not in (1, 2):
            raise DataError(f"{where}: ndata[{key!r}] must be a boolean [N] mask (or [N, S] for S splits), got "
                            f"shape {tuple(mask.shape)} and dtype {mask.dtype}{problem}")
        graph.ndata[key] = mask.bool()  # dgl.save_graphs stores boolean masks as uint8
        columns = 1 if mask.dim() == 1 else mask.shape[1]
        if splits is not None and columns != splits:
            raise DataError(f"{where}: the masks disagree on the number of splits: "
                            + ", ".join(f"{k} {tuple(graph.ndata[k].shape)}" for k in MASKS))
        splits = columns


def load_graph_file(path: PathLike, seed: int = 0) -> BilevelData:
    """A :class:`BilevelData` from a ``dgl.save_graphs`` file (see the module docstring for the format).

    Args:
        path: the file (``~`` is expanded).
        seed: picks the split (``seed mod S`` of ``S`` stored splits) and seeds the halving of
            ``val_mask`` into ``v_out`` and validation.

    Returns:
        The data, named after the file's stem; a float label means regression.

    Raises:
        ~dgl_bilevel.errors.DataError: if the file is missing, not written by ``dgl.save_graphs``, holds other than
            one homogeneous graph, lacks or has malformed ``ndata``, or its ``val_mask`` has
            fewer than 2 nodes.

    Example:
        >>> import os
        >>> import tempfile
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.data import load_graph_file
        >>> ring = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0])))
        >>> ring.ndata["feat"] = torch.eye(6)
        >>> ring.ndata["label"] = torch.tensor([0, 1, 0, 1, 0, 1])
        >>> ring.ndata["train_mask"] = torch.tensor([True, True, False, False, False, False])
        >>> ring.ndata["val_mask"] = torch.tensor([False, False, True, True, False, False])
        >>> ring.ndata["test_mask"] = torch.tensor([False, False, False, False, True, True])
        >>> path = os.path.join(tempfile.mkdtemp(), "ring.bin")
        >>> dgl.save_graphs(path, [ring])
        >>> data = load_graph_file(path, seed=0)
        >>> data.summary()
        'ring: 6 nodes, 12 edges, 6 features, 2 classes; v_in=2, v_out=1, val=1, test=2'
        >>> data.v_in.tolist(), sorted(data.v_out.tolist() + data.val.tolist()), data.test.tolist()
        ([0, 1], [2, 3], [4, 5])
    """
    graph = read_graph_file(path)
    where = str(Path(path).expanduser().resolve())
    masks = {key: graph.ndata[key] for key in MASKS}
    num_splits = 1 if masks["train_mask"].dim() == 1 else masks["train_mask"].shape[1]
    split = seed % num_splits
    if num_splits > 1:
        masks = {key: mask[:, split] for key, mask in masks.items()}
    val_nodes = masks["val_mask"].nonzero().flatten()
    if val_nodes.numel() < 2:
        raise DataError(f"{where}: val_mask{f' (split {split})' if num_splits > 1 else ''} holds "
                        f"{val_nodes.numel()} node(s); at least 2 are needed, as it is halved into v_out and "
                        "validation")
    v_out, val = split_in_two(val_nodes, 0.5, seeded_generator(seed))
    label = graph.ndata["label"]
    task = "regression" if label.is_floating_point() else "classification"
    return BilevelData.from_dgl(
        graph,
        v_in=masks["train_mask"],
        v_out=v_out,
        val=val,
        test=masks["test_mask"],
        task=task,
        name=Path(path).stem,
        extras={"source": where, "split_seed": seed, "split": split, "num_splits": num_splits},
    )
