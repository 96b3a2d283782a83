"""Hypergradient-vs-distance profiles and refined-edge counts."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch

from .distances import UNREACHABLE


@dataclass
class ProfileRow:
    """Hypergradient statistics over the edges at one distance (``distance = -1``: unreachable)."""

    distance: int
    edges: int
    mean_abs: float
    max_abs: float
    zero_fraction: float

    def as_dict(self) -> dict:
        return asdict(self)


def hypergradient_profile(hypergradient: torch.Tensor, distances: torch.Tensor) -> list[ProfileRow]:
    """Per distance: edge count, mean and max ``|dF/dw|``, fraction exactly zero (unreachable last)."""
    g = hypergradient.detach().abs().double()
    rows = []
    values = sorted(int(d) for d in torch.unique(distances))
    for d in [v for v in values if v != UNREACHABLE] + ([UNREACHABLE] if UNREACHABLE in values else []):
        sel = g[distances == d]
        rows.append(ProfileRow(d, sel.numel(), float(sel.mean()), float(sel.max()), float((sel == 0).double().mean())))
    return rows


def format_profile(rows: list[ProfileRow], bound: Optional[dict] = None) -> str:
    """A text table of a profile, with the Laplacian bound per distance when given."""
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
    """Edges whose weight exceeds ``fraction`` of the largest weight (the paper's "refined" edges)."""
    w = weights.detach()
    return int((w > fraction * w.max()).sum())
