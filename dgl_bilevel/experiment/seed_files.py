"""What one seed runs on and what it leaves on disk: its data, its checkpoint path, ``seed_<s>.json``
and ``graph_seed<s>.bin``, and the settings a finished seed's results depend on.

Shared by the one-seed-at-a-time path (:mod:`~dgl_bilevel.experiment.run`) and the stacked one
(:mod:`~dgl_bilevel.experiment.stacked`), so both write the same files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .._dgl import dgl
from ..config import ExperimentConfig
from ..data import SPLITS, load_dataset
from ..data.bilevel_data import BilevelData
from ..errors import ConfigError
from ..outer import FitResult
from ..results import write_json

#: the node data a saved graph (``graph_seed<s>.bin``) carries: labels and split masks, not the features
#: (they are the data set's, and would make every saved graph as large as the data set).
SAVED_NODE_DATA = ("label",) + tuple(f"{split}_mask" for split in SPLITS)


def training_view(data: BilevelData, training_set: str) -> BilevelData:
    """``data`` as a method's declared training set needs it (:data:`~dgl_bilevel.methods.TRAINING_SETS`):
    unchanged for ``v_in``, :meth:`~BilevelData.with_v_out_in_training` for ``v_in+v_out``.

    Args:
        data: one seed's data.
        training_set: ``"v_in"`` or ``"v_in+v_out"`` (a method's ``training_set``).

    Returns:
        ``data`` itself, or the copy whose ``v_in`` also holds ``v_out``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown training set.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> training_view(data, "v_in") is data
        True
        >>> wider = training_view(data, "v_in+v_out")
        >>> wider.v_in.tolist(), wider.v_out_in_training
        ([0, 1, 4, 5], True)
        >>> try:
        ...     training_view(data, "everything")
        ... except ConfigError as exc:
        ...     print(exc)
        unknown training set 'everything'
    """
    if training_set == "v_in":
        return data
    if training_set == "v_in+v_out":
        return data.with_v_out_in_training()
    raise ConfigError(f"unknown training set {training_set!r}")


def run_data(config: ExperimentConfig, seed: int) -> BilevelData:
    """The data one seed of a resolved ``config`` runs on: its split, in ``config.dtype``, with the
    method's training set (``a_obs+v_out`` trains on ``v_in ∪ v_out``).

    Args:
        config: a resolved configuration (:meth:`~dgl_bilevel.config.ExperimentConfig.resolved`).
        seed: the seed, which picks the split of data sets with several.

    Returns:
        The seed's :class:`~dgl_bilevel.BilevelData`.

    Raises:
        ~dgl_bilevel.errors.DataError: the data set's files are missing or malformed.

    Example:
        >>> import os, tempfile
        >>> import dgl, torch
        >>> from dgl_bilevel.config import ExperimentConfig
        >>> folder = tempfile.mkdtemp()
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])))
        >>> graph.ndata["feat"] = torch.eye(8)
        >>> graph.ndata["label"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> graph.ndata["train_mask"] = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1], dtype=torch.bool)
        >>> graph.ndata["val_mask"] = torch.tensor([0, 1, 1, 0, 0, 1, 1, 0], dtype=torch.bool)
        >>> graph.ndata["test_mask"] = torch.tensor([0, 0, 0, 1, 1, 0, 0, 0], dtype=torch.bool)
        >>> path = os.path.join(folder, "path.bin")
        >>> dgl.save_graphs(path, [graph])  # a graph file is a data set: --dataset path.bin
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", method="a_obs+v_out",
        ...                           dtype="float64").resolved()
        >>> data = run_data(config, seed=0)
        >>> data.num_nodes, data.features.dtype, data.v_out_in_training  # v_out inside v_in: a_obs+v_out
        (8, torch.float64, True)
        >>> len(data.v_in), len(data.v_out)  # train_mask's 2 nodes plus v_out's half of val_mask
        (4, 2)
        >>> import shutil
        >>> shutil.rmtree(folder)  # the example's files
    """
    data = load_dataset(config.dataset, config.data_root, seed, config.v_out_fraction).to(getattr(torch, config.dtype))
    if config.protocol == "lds":
        data = data.with_outer_loss_on_validation()
    return training_view(data, config.training_set)


def checkpoint_path(run_dir: Path, seed: int) -> Path:
    return run_dir / f"checkpoint_seed{seed}.pt"


def clear_stale_checkpoints(run_dir: Path, seeds: Sequence[int]) -> None:
    """A run that does not resume starts every seed afresh: remove the checkpoints a previous run
    left for these seeds (they would be overwritten anyway), so that a seed run again after its
    worker died resumes only from checkpoints of this run."""
    for seed in seeds:
        path = checkpoint_path(run_dir, seed)
        if path.is_file():
            path.unlink()


def write_learned_seed(config: ExperimentConfig, seed: int, run_dir: Path, result: FitResult, seconds: float,
                       **extra) -> dict:
    """Write a learned graph's seed files (``seed_<s>.json``, ``graph_seed<s>.bin``); returns its record."""
    if config.save_graph:
        dgl.save_graphs(str(run_dir / f"graph_seed{seed}.bin"), [result.to_graph(node_data=SAVED_NODE_DATA)])
    return write_seed(config, seed, run_dir, {**result.summary(), **extra}, result.config, result.history, seconds)


def write_seed(config: ExperimentConfig, seed: int, run_dir: Path, record: dict, config_used: dict, history: list,
               seconds: float) -> dict:
    """``seed_<s>.json``: the seed's record, the settings it ran under and its history."""
    record = {"seed": seed, **record, "training_set": config.training_set, "wall_seconds": seconds}
    write_json(run_dir / f"seed_{seed}.json", {"result": record, "config": config_used, "history": history,
                                               "run_config": comparable_settings(config)})
    return record


#: Options that may differ between a run and its resumption (they change neither results nor their meaning).
RESUME_FREE = ("seeds", "seed_start", "out", "name", "resume", "progress", "log_every", "checkpoint_every",
               "save_graph", "extra", "data_root", "executor", "ray_address", "cpus_per_task",
               "stack_seeds", "workers", "logger", "log_histogram_every")


def comparable_settings(config: ExperimentConfig) -> dict:
    """The settings a finished seed's results depend on."""
    return {k: v for k, v in config.to_dict(nested=False).items() if k not in RESUME_FREE}


#: Options replaced since results were first written: old name -> (new name, old value -> new value).
RENAMED_SETTINGS = {"unroll_checkpoint": ("reverse_engine", {True: "auto", False: "autograd"})}


def changed_settings(saved: dict, current: dict) -> list:
    """The names of the settings that differ between a finished seed's (``saved``) and this run's.

    An option added since the seed was written counts as unchanged when this run leaves it at its
    default (the old result could not depend on it); a replaced option is compared under its new name.
    """
    saved = dict(saved)
    for old, (new, values) in RENAMED_SETTINGS.items():
        if old in saved:
            value = saved.pop(old)
            if new not in saved and old not in current:
                saved[new] = values.get(value, value)
    fields = ExperimentConfig.__dataclass_fields__
    added = {k for k in current if k not in saved and k in fields and current[k] == fields[k].default}
    return sorted(k for k in (set(saved) | set(current)) - added if saved.get(k) != current.get(k))
