"""Figures of gradient scarcity (matplotlib, written to PNG files)."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch

from .distances import UNREACHABLE


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, path, title: str, legend: bool = True, **legend_options) -> None:
    """Title, legend, tight layout, write ``path`` as PNG and free the figure."""
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(**legend_options)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def plot_profile(
    hypergradient: torch.Tensor,
    distances: torch.Tensor,
    path: "str | os.PathLike",
    *,
    title: str = "",
    bound: Optional[dict] = None,
    rate: Optional[float] = None,
    xlabel: str = "edge distance",
) -> None:
    """``|dF/dw_e|`` against edge distance on a log scale: every edge, per-distance max and mean,
    optionally the rigorous bound and a line with the bound's rate anchored at the data."""
    plt = _pyplot()
    g = hypergradient.detach().abs().double()
    d = distances
    fig, ax = plt.subplots(figsize=(6, 4))
    reach = d != UNREACHABLE
    nonzero = reach & (g > 0)
    jitter = (torch.rand(int(nonzero.sum())) - 0.5) * 0.3
    ax.scatter(d[nonzero].double() + jitter, g[nonzero], s=2, alpha=0.25, color="tab:blue", label="edges (|g| > 0)")
    levels = sorted(int(v) for v in torch.unique(d[reach]))
    maxes = [float(g[d == v].max()) for v in levels]
    means = [float(g[d == v].mean()) for v in levels]
    ax.plot(levels, [m if m > 0 else float("nan") for m in maxes], "o-", color="tab:red", label="max")
    ax.plot(levels, [m if m > 0 else float("nan") for m in means], "s--", color="tab:orange", label="mean")
    zeros = [v for v, m in zip(levels, maxes) if m == 0]
    if zeros:
        floor = min((x for x in g[nonzero].tolist() if x > 0), default=1e-12) / 10
        ax.plot(zeros, [floor] * len(zeros), "x", color="black", markersize=8, label="all exactly 0")
    if bound:
        xs = [v for v in levels if v in bound]
        ax.plot(xs, [bound[v] for v in xs], "k-", linewidth=1, label="bound (Thm IV.2)")
    if rate is not None and levels and maxes[0] > 0:
        ax.plot(levels, [maxes[0] * rate ** (v - levels[0]) for v in levels], "k:", label=f"rate {rate:.3f}^d")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("|hypergradient|")
    _save(fig, ax, path, title, fontsize=7)


def plot_edge_heatmap(graph, values: torch.Tensor, path: "str | os.PathLike", *, title: str = "",
                      marks: Sequence[tuple[str, Sequence[int]]] = ()) -> None:
    """An ``n x n`` heat map of per-edge values (e.g. the hypergradient), nodes in index order;
    ``marks`` shades node ranges (e.g. ``("V_in", indices)``) along the axes."""
    plt = _pyplot()
    n = graph.num_nodes()
    src, dst = graph.edges()
    dense = torch.zeros(n, n, dtype=torch.float64)
    dense[src, dst] = values.detach().abs().double()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    vmax = float(dense.max()) or 1.0
    im = ax.imshow(dense.numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
    colors = ["tab:green", "tab:cyan", "tab:olive"]
    for (label, nodes), color in zip(marks, colors):
        nodes = torch.as_tensor(nodes)
        ax.scatter(nodes, torch.full_like(nodes, -2), s=4, color=color, marker="s", label=label, clip_on=False)
    ax.set_xlabel("node")
    ax.set_ylabel("node")
    fig.colorbar(im, ax=ax, label="|hypergradient|")
    _save(fig, ax, path, title, legend=bool(marks), loc="lower left", fontsize=7, markerscale=3)


def plot_curves(series: dict, path: "str | os.PathLike", *, ylabel: str, title: str = "", logy: bool = False) -> None:
    """Lines of per-iteration values, one per named series."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ys in series.items():
        ax.plot(range(len(ys)), ys, label=name)
    ax.set_xlabel("outer iteration")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    _save(fig, ax, path, title, fontsize=8)


def plot_profile_lines(profiles: dict, path: "str | os.PathLike", *, title: str = "", xlabel: str = "edge distance") -> None:
    """Mean ``|hypergradient|`` per distance for several runs (``{name: [ProfileRow, ...]}``) on a
    log scale; distances whose edges are all exactly zero are drawn as crosses on the floor."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    positive = [r.mean_abs for rows in profiles.values() for r in rows if r.distance != UNREACHABLE and r.mean_abs > 0]
    floor = min(positive) / 10 if positive else 1e-12
    for i, (name, rows) in enumerate(profiles.items()):
        rows = [r for r in rows if r.distance != UNREACHABLE]
        xs = [r.distance for r in rows]
        color = f"C{i}"
        ax.plot(xs, [r.mean_abs if r.mean_abs > 0 else float("nan") for r in rows], "o-", color=color, label=name)
        zeros = [r.distance for r in rows if r.mean_abs == 0]
        if zeros:
            ax.plot(zeros, [floor] * len(zeros), "x", color=color, markersize=9)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel + "  (x: all exactly zero)")
    ax.set_ylabel("mean |hypergradient|")
    _save(fig, ax, path, title, fontsize=8)
