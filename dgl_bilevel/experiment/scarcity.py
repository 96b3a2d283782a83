"""Gradient-scarcity reports of a configured run: the hypergradient at one outer iteration
against the paper's edge distances, with the Laplacian decay bound where it applies."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..data import load_dataset
from ..data.bilevel_data import BilevelData
from ..errors import ConfigError
from ..hypergrad import get_method
from ..inner.graph_sampling import SampledGraphs
from ..results import write_json
from ..structure import GraphStructure
from ..outer import fit_loop
from ..config import ExperimentConfig
from .build import build_loop

@dataclass
class ScarcitySnapshot:
    """The hypergradient of one outer iteration with what is needed to read it.

    :func:`scarcity_snapshot` returns one: ``hypergradient`` is the per-edge gradient of the outer
    objective at outer iteration ``iteration``, ``weights`` the edge weights it was taken at,
    ``distances`` each edge's distance in the paper's sense
    (:func:`~dgl_bilevel.diagnostics.edge_distances`; ``kind``: ``"laplacian"`` or ``"gnn"``),
    ``history`` the run's records, ``bound`` the Laplacian decay bound
    (:func:`~dgl_bilevel.diagnostics.laplacian_bound`) for the quadratic Laplacian problem, else None.
    ``config``, ``data`` and ``structure`` are the run's.

    Example:
        >>> import os, tempfile
        >>> import dgl, torch
        >>> folder = tempfile.mkdtemp()
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])))
        >>> graph.ndata["feat"] = torch.eye(8)
        >>> graph.ndata["label"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> for split, nodes in {"train": [0, 7], "val": [1, 2, 5, 6], "test": [3, 4]}.items():
        ...     graph.ndata[f"{split}_mask"] = torch.isin(torch.arange(8), torch.tensor(nodes))
        >>> path = os.path.join(folder, "path.bin")
        >>> dgl.save_graphs(path, [graph])  # a graph file is a data set: --dataset path.bin
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", laplacian_loss="mse",
        ...                           out=folder, progress=False)
        >>> snap = scarcity_snapshot(config, iteration=0)
        >>> isinstance(snap, ScarcitySnapshot), snap.kind, snap.iteration, len(snap.history)
        (True, 'laplacian', 0, 1)
        >>> snap.hypergradient.shape == snap.weights.shape == snap.distances.shape == (graph.num_edges(),)
        True
        >>> import shutil
        >>> shutil.rmtree(folder)  # the example's files
    """

    config: ExperimentConfig
    iteration: int
    kind: str
    data: BilevelData
    structure: GraphStructure
    hypergradient: torch.Tensor
    weights: torch.Tensor
    distances: torch.Tensor
    history: list
    bound: Any = None


def scarcity_snapshot(config: ExperimentConfig, iteration: int = 0, keep_history_to: Optional[int] = None) -> ScarcitySnapshot:
    """Run outer iterations up to ``max(iteration, keep_history_to)`` and return the per-edge
    gradient of the outer objective (loss + regulariser) at ``iteration``, with the paper's edge
    distances and, for the quadratic Laplacian problem, the decay bound.

    Args:
        config: a configuration of a method that learns the graph; its first seed is used.
        iteration: the outer iteration whose hypergradient is kept.
        keep_history_to: run at least this far (the history then covers it).

    Returns:
        A :class:`ScarcitySnapshot`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``config``'s method does not learn the graph, or the
            hypergradient at ``iteration`` is not finite.

    Example:
        >>> import os, tempfile
        >>> import dgl, torch
        >>> folder = tempfile.mkdtemp()
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])))
        >>> graph.ndata["feat"] = torch.eye(8)
        >>> graph.ndata["label"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> for split, nodes in {"train": [0, 7], "val": [1, 2, 5, 6], "test": [3, 4]}.items():
        ...     graph.ndata[f"{split}_mask"] = torch.isin(torch.arange(8), torch.tensor(nodes))
        >>> path = os.path.join(folder, "path.bin")
        >>> dgl.save_graphs(path, [graph])  # a graph file is a data set: --dataset path.bin
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", laplacian_loss="mse",
        ...                           out=folder, progress=False)
        >>> snap = scarcity_snapshot(config, iteration=1)
        >>> snap.distances.tolist()  # per edge: hops to v_in + hops to v_out (the nearer endpoint)
        [1, 1, 1, 1, 2, 2, 4, 4, 5, 5, 5, 5, 5, 5]
        >>> bool((snap.hypergradient != 0).all()), 0 < snap.bound.rho < 1  # the bound decays with distance
        (True, True)
        >>> import dataclasses
        >>> scarcity_snapshot(dataclasses.replace(config, method="a_obs"))
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: scarcity needs a method that learns the graph ...
        >>> import shutil
        >>> shutil.rmtree(folder)  # the example's files
    """
    from ..diagnostics import ScarcityRecorder, edge_distances, laplacian_bound
    from ..losses import task_loss

    if not config.learns_graph:
        raise ConfigError(f"scarcity needs a method that learns the graph (bo, bo+power, bo+reg or bo+g2g), "
                          f"not {config.method}")
    steps = max(iteration, keep_history_to or 0) + 1
    config = dataclasses.replace(config, outer_steps=steps).resolved()
    seed = config.seed_start
    data = load_dataset(config.dataset, config.data_root, seed, config.v_out_fraction).to(getattr(torch, config.dtype))
    kind = "laplacian" if config.inner == "laplacian" else "gnn"
    recorder = ScarcityRecorder(kind, keep=[iteration])
    loop = build_loop(config, seed, data=data, callbacks=[recorder], progress_bar=f"{config.run_name} scarcity")
    structure = loop.structure
    # the problem on one graph (with a structure's sampler the loop trains a SampledGraphs wrapper of it)
    inner = loop.inner.base if isinstance(loop.inner, SampledGraphs) else loop.inner
    result = fit_loop(loop)
    if iteration not in recorder.hypergradients:
        raise ConfigError(f"no finite hypergradient at outer iteration {iteration}")
    grad, weights = recorder.hypergradients[iteration], recorder.weights[iteration]
    distances = edge_distances(structure.graph, data.v_in, data.v_out, kind)
    bound = None
    if kind == "laplacian" and inner.is_quadratic:
        solution = inner.predict(get_method("adjoint").solve(inner, weights, ()).params, weights).detach()
        y = solution.clone().requires_grad_(True)
        (outer_grad,) = torch.autograd.grad(task_loss(y, data.labels, data.v_out, data.task), y)
        bound = laplacian_bound(inner, weights, outer_grad, max_distance=int(distances.max()))
    return ScarcitySnapshot(config, iteration, kind, data, structure, grad, weights, distances, result.history, bound)


def run_scarcity(config: ExperimentConfig, iteration: int = 0, echo=print) -> dict:
    """Report the hypergradient-vs-distance profile at ``iteration``: a table on stdout,
    ``scarcity.json`` and ``scarcity.png`` in ``<out>/<run name>-scarcity/``.

    Args:
        config: a configuration of a method that learns the graph (see :func:`scarcity_snapshot`).
        iteration: the outer iteration whose hypergradient is reported.
        echo: where the report's lines go.

    Returns:
        What ``scarcity.json`` holds: ``config``, ``iteration``, ``kind``, ``zero_fraction`` (the
        share of edges whose hypergradient is exactly zero), ``profile`` (per distance: ``edges``,
        ``mean_abs``, ``max_abs``, ``zero_fraction``) and ``bound`` (or None).

    Raises:
        ~dgl_bilevel.errors.ConfigError: as :func:`scarcity_snapshot`.

    Example:
        >>> import os, tempfile
        >>> import dgl, torch
        >>> folder = tempfile.mkdtemp()
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])))
        >>> graph.ndata["feat"] = torch.eye(8)
        >>> graph.ndata["label"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> for split, nodes in {"train": [0, 7], "val": [1, 2, 5, 6], "test": [3, 4]}.items():
        ...     graph.ndata[f"{split}_mask"] = torch.isin(torch.arange(8), torch.tensor(nodes))
        >>> path = os.path.join(folder, "path.bin")
        >>> dgl.save_graphs(path, [graph])  # a graph file is a data set: --dataset path.bin
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", laplacian_loss="mse",
        ...                           out=folder, progress=False)
        >>> payload = run_scarcity(config, iteration=0, echo=lambda line: None)
        >>> payload["kind"], payload["zero_fraction"], [row["distance"] for row in payload["profile"]]
        ('laplacian', 0.0, [1, 2, 4, 5])
        >>> sorted(os.listdir(os.path.join(folder, "path-laplacian-bo-scarcity")))
        ['scarcity.json', 'scarcity.png']
        >>> import shutil
        >>> shutil.rmtree(folder)  # the example's files
    """
    from ..diagnostics import format_profile, hypergradient_profile, refined_edges
    from ..diagnostics.plots import plot_profile

    snap = scarcity_snapshot(config, iteration)
    config, bound = snap.config, snap.bound
    echo(snap.data.summary())
    run_dir = Path(config.out) / f"{config.run_name}-scarcity"
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = hypergradient_profile(snap.hypergradient, snap.distances)
    title = f"{config.run_name}, outer iteration {iteration}"
    echo(f"hypergradient vs {snap.kind} edge distance ({title}):")
    echo(format_profile(rows, bound.per_distance if bound else None))
    zero = float((snap.hypergradient == 0).double().mean())
    echo(f"edges with exactly zero hypergradient: {100 * zero:.1f}%  |  refined edges: {refined_edges(snap.weights)}")
    if bound:
        echo(f"Laplacian bound: mu_min={bound.mu_min:.4g} mu_max={bound.mu_max:.4g} rate rho={bound.rho:.4f}")
    plot_profile(snap.hypergradient, snap.distances, run_dir / "scarcity.png", title=title,
                 bound=bound.per_distance if bound else None, rate=bound.rho if bound else None,
                 xlabel=f"{snap.kind} edge distance")
    payload = {
        "config": config.to_dict(nested=False),
        "iteration": iteration,
        "kind": snap.kind,
        "zero_fraction": zero,
        "profile": [r.as_dict() for r in rows],
        "bound": None if bound is None else {
            "mu_min": bound.mu_min, "mu_max": bound.mu_max, "rho": bound.rho, "per_distance": bound.per_distance},
    }
    write_json(run_dir / "scarcity.json", payload)
    echo(f"plot and profile written to {run_dir.resolve()}")
    return payload
