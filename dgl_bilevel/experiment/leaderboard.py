"""The OGB leaderboard protocol on top of :func:`run_experiment`."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..results import format_mean_std, write_json
from ..config import ExperimentConfig, is_graph_file
from .run import run_experiment


def where_v_out(config: ExperimentConfig) -> str:
    """One line saying which labels the outer loss used, as the data set defines them."""
    from ..registry import DATASETS

    if not is_graph_file(config.dataset) and DATASETS[config.dataset].ogb:
        return "v_out is taken from the training split; validation labels only select the graph."
    if config.protocol == "lds":
        return "LDS protocol: the outer loss is on the whole validation set, which also selects the graph."
    return "v_out is half of the validation set; the other half selects the graph."


def run_leaderboard(config: ExperimentConfig, echo=print) -> dict:
    """OGB leaderboard protocol: every seed's best-validation graph, then mean and unbiased std of
    the data set's metric (OGB's Evaluator for OGB data) on test and validation; writes
    ``leaderboard.md`` and ``leaderboard.json`` with the config, package versions and wall time.

    Args:
        config: the experiment (resolved here); with no ``name`` the run gets its own folder,
            ``<out>/<run name>-leaderboard``.
        echo: where progress lines and the results table go (``print`` by default).

    Returns:
        The leaderboard row: ``dataset``, ``method``, ``inner``, ``metric``, ``test`` and ``valid``
        (each ``{"mean", "std"}``), ``seeds`` and ``wall_seconds``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: the configuration is invalid.
        ~dgl_bilevel.errors.DataError: the data set cannot be read.

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
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", laplacian_loss="mse", seeds=2,
        ...                           outer_steps=2, out=folder, progress=False, save_graph=False)
        >>> row = run_leaderboard(config, echo=lambda line: None)
        >>> row["metric"], row["seeds"], row["test"]
        ('acc', 2, {'mean': 1.0, 'std': 0.0})
        >>> sorted(name for name in os.listdir(os.path.join(folder, "path-laplacian-bo-leaderboard"))
        ...        if name.startswith("leaderboard"))
        ['leaderboard.json', 'leaderboard.md']
        >>> import shutil
        >>> shutil.rmtree(folder)  # the example's files
    """
    if config.name is None:  # its own folder: a leaderboard run never mixes with a plain run's results
        config = dataclasses.replace(config, name=config.resolved().run_name + "-leaderboard")
    started = time.perf_counter()
    summary = run_experiment(config, echo=echo)
    wall = time.perf_counter() - started
    metric = summary["metric"]
    agg = summary["aggregate"]
    run_dir = Path(config.out) / config.resolved().run_name
    pct = metric in ("acc", "rocauc")

    def fmt(mean: float, std: float) -> str:
        return format_mean_std(mean, std, pct, digits=2)
    row = {
        "dataset": config.dataset,
        "method": config.method,
        "inner": config.inner if config.method != "lp" else "label propagation",
        "metric": metric,
        "test": agg[f"test_{metric}"],
        "valid": agg[f"val_{metric}"],
        "seeds": len(summary["per_seed"]),
        "wall_seconds": wall,
    }
    md = [
        f"# Leaderboard run: {config.dataset}, {config.method}",
        "",
        f"| method | inner | test {metric} | valid {metric} | seeds | wall time |",
        "|---|---|---|---|---|---|",
        f"| {config.method} | {row['inner']} | {fmt(row['test']['mean'], row['test']['std'])} | "
        f"{fmt(row['valid']['mean'], row['valid']['std'])} | {row['seeds']} | {wall / 60:.1f} min |",
        "",
        "Per seed: the graph with the best validation score; mean ± unbiased (n - 1) standard deviation.",
        where_v_out(config),
        "",
        "## Configuration",
        "",
        "```",
        *[f"{k}: {v}" for k, v in summary["config"].items() if k not in ("extra",)],
        "```",
        "",
        "## Versions",
        "",
        "```",
        *[f"{k}: {v}" for k, v in summary["versions"].items()],
        "```",
    ]
    (run_dir / "leaderboard.md").write_text("\n".join(md) + "\n")
    write_json(run_dir / "leaderboard.json", {**row, "config": summary["config"], "versions": summary["versions"],
                                               "per_seed": summary["per_seed"]})
    echo(f"leaderboard table written to {run_dir / 'leaderboard.md'}")
    return row
