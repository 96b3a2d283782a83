"""Hypergradient-vs-distance profiles and refined-edge counts."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch

from .distances import UNREACHABLE


@dataclass
class ProfileRow:
    """Hypergradient statistics over the edges at one distance (``distance = -1``: unreachable).

    Args:
        distance: the edge distance (see :func:`~dgl_bilevel.diagnostics.edge_distances`).
        edges: how many edges lie at it.
        mean_abs, max_abs: mean and largest ``|dF/dw|`` over those edges.
        zero_fraction: the share whose hypergradient is exactly zero.

    Example:
        >>> import torch
        >>> from dgl_bilevel.diagnostics import hypergradient_profile
        >>> row = hypergradient_profile(torch.tensor([0.5, -1.5, 0.0]), torch.tensor([1, 1, 1]))[0]
        >>> row.as_dict()
        {'distance': 1, 'edges': 3, 'mean_abs': 0.6666666666666666, 'max_abs': 1.5, 'zero_fraction': 0.3333333333333333}
    """

    distance: int
    edges: int
    mean_abs: float
    max_abs: float
    zero_fraction: float

    def as_dict(self) -> dict:
        return asdict(self)


def hypergradient_profile(hypergradient: torch.Tensor, distances: torch.Tensor) -> list[ProfileRow]:
    """Per distance: edge count, mean and max ``|dF/dw|``, fraction exactly zero (unreachable last).

    Args:
        hypergradient: ``[E]`` hypergradient of the edge weights.
        distances: ``[E]`` edge distances (-1: unreachable).

    Returns:
        One :class:`ProfileRow` per distance present, ascending, the unreachable row last.

    Example:
        >>> import torch
        >>> from dgl_bilevel.diagnostics import hypergradient_profile
        >>> rows = hypergradient_profile(torch.tensor([0.4, -0.2, 0.0, 0.0, 0.1]),
        ...                              torch.tensor([0, 0, 2, 2, -1]))
        >>> [(r.distance, r.edges, round(r.mean_abs, 4), r.zero_fraction) for r in rows]
        [(0, 2, 0.3, 0.0), (2, 2, 0.0, 1.0), (-1, 1, 0.1, 0.0)]
    """
    g = hypergradient.detach().abs().double()
    rows = []
    values = sorted(int(d) for d in torch.unique(distances))
    for d in [v for v in values if v != UNREACHABLE] + ([UNREACHABLE] if UNREACHABLE in values else []):
        sel = g[distances == d]
        rows.append(ProfileRow(d, sel.numel(), float(sel.mean()), float(sel.max()), float((sel == 0).double().mean())))
    return rows


def format_profile(rows: list[ProfileRow], bound: Optional[dict] = None) -> str:
    """A text table of a profile, with the Laplacian bound per distance when given.

    Args:
        rows: from :func:`hypergradient_profile`.
        bound: distance -> bound (``LaplacianBound.per_distance``); a column of its own.

    Returns:
        The table, one line per row under a header.

    Example:
        >>> import torch
        >>> from dgl_bilevel.diagnostics import format_profile, hypergradient_profile
        >>> rows = hypergradient_profile(torch.tensor([0.4, -0.2, 0.0]), torch.tensor([0, 0, 1]))
        >>> print(format_profile(rows, bound={0: 1.0}))
         distance   edges    mean |g|     max |g|   zero       bound
        ------------------------------------------------------------
                0       2   3.000e-01   4.000e-01   0.0%   1.000e+00
                1       1   0.000e+00   0.000e+00 100.0%           -
    """
    header = f"{'distance':>9} {'edges':>7} {'mean |g|':>11} {'max |g|':>11} {'zero':>6}" + (f" {'bound':>11}" if bound else "")
    lines = [header, "-" * len(header)]
    for r in rows:
        d = "unreach." if r.distance == UNREACHABLE else str(r.distance)
        line = f"{d:>9} {r.edges:>7d} {r.mean_abs:>11.3e} {r.max_abs:>11.3e} {100 * r.zero_fraction:>5.1f}%"
        if bound:
            b = bound.get(r.distance)
            line += f" {b:>11.3e}" if b is not None else f" {'-':>11}"
        lines.append(line)
    return "\n".join(lines)


def refined_edges(weights: torch.Tensor, fraction: float = 0.01) -> int:
    """Edges whose weight exceeds ``fraction`` of the largest weight (the paper's "refined" edges).

    Args:
        weights: one weight per edge.
        fraction: the share of the largest weight an edge must exceed.

    Returns:
        The number of such edges.

    Example:
        >>> import torch
        >>> from dgl_bilevel.diagnostics import refined_edges
        >>> refined_edges(torch.tensor([1.0, 0.02, 0.009, 0.5]))
        3
        >>> refined_edges(torch.tensor([1.0, 0.02, 0.009, 0.5]), fraction=0.1)
        2
    """
    w = weights.detach()
    return int((w > fraction * w.max()).sum())
