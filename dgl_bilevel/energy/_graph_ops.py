"""Graph plumbing of the energy: per-graph topology (cached), products with the adjacency, and
squared edge distances -- all differentiable in the features and the edge weights to any order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .._dgl import dgl
from .._graph_cache import graph_cache
from ..ops import _EdgeDot, _nonleaf, _plan, weighted_sum, weighted_sum_reverse  # noqa: PLC2701  (the library's per-edge kernel)


@dataclass
class _Topology:
    """Per-graph structure reused across calls: the reverse graph, endpoints and self-loops."""

    reverse: "dgl.DGLGraph"
    src: torch.Tensor
    dst: torch.Tensor
    loops: Optional[torch.Tensor]  # edge ids of self-loops, None if there are none
    pair: Optional[torch.Tensor]  # pair[e]: an edge t -> s for e = s -> t (a bijection), None if not symmetric
    num_edges: int


def topology(graph: "dgl.DGLGraph") -> _Topology:
    """The :class:`_Topology` of ``graph``, kept on the graph (rebuilt if its edge count changed)."""
    cache = graph_cache(graph)
    topo = cache.topology
    if topo is None or topo.num_edges != graph.num_edges():
        src, dst = graph.edges()
        loops = (src == dst).nonzero().flatten()
        topo = cache.topology = _Topology(dgl.reverse(graph), src, dst, loops if loops.numel() else None,
                                          _reverse_pairing(src, dst, graph.num_nodes()), graph.num_edges())
    return topo


def _reverse_pairing(src: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> Optional[torch.Tensor]:
    """A bijection ``e -> pair[e]`` from edges ``s -> t`` to edges ``t -> s``, if the stored edges
    are symmetric (as multisets); then ``(W + W^T) z = A(a + a[pair])^T z``: one sparse product."""
    forward = src * num_nodes + dst
    backward = dst * num_nodes + src
    order_f, order_b = torch.argsort(forward), torch.argsort(backward)
    if not torch.equal(forward[order_f], backward[order_b]):
        return None
    pair = torch.empty_like(order_f)
    pair[order_f] = order_b
    return pair


class _FixedAdjacency(torch.autograd.Function):
    """``A(w)^T y`` (``transpose=False``) or ``A(w) y`` for weights that need no gradient.

    :func:`dgl_bilevel.ops.weighted_sum` keeps its input for the edge-weight gradient; here nothing
    of ``y`` is kept, so ``K`` unfolded steps with fixed weights hold no ``[N, C]`` tensor per
    step for the backward pass (docs/benchmarks.md has the energy model's memory on the
    arxiv shape). The backward is the transposed product, itself differentiable: any order in ``y``.
    """

    @staticmethod
    def forward(ctx, y, weight, graph, transpose):
        ctx.save_for_backward(weight)
        ctx.graph, ctx.transpose = graph, transpose
        return (weighted_sum_reverse if transpose else weighted_sum)(graph, y, weight)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return _FixedAdjacency.apply(grad.contiguous(), weight, ctx.graph, not ctx.transpose), None, None, None


def adjacency_product(graph: "dgl.DGLGraph", y: torch.Tensor, weight: torch.Tensor, both: bool = False) -> torch.Tensor:
    """``A(w)^T y``, or ``(A(w) + A(w)^T) y`` with ``both``; differentiable in ``y`` and ``w``."""
    if weight.requires_grad:
        out = weighted_sum(graph, y, weight)
        return out + weighted_sum_reverse(graph, y, weight) if both else out
    out = _FixedAdjacency.apply(y, weight, graph, False)
    return out + _FixedAdjacency.apply(y, weight, graph, True) if both else out


def squared_edge_distances(graph: "dgl.DGLGraph", z: torch.Tensor) -> torch.Tensor:
    """``||z_s - z_t||^2`` per edge ``s -> t``, as ``|z_s|^2 + |z_t|^2 - 2 <z_s, z_t>`` (clamped at 0).

    The inner products run on :mod:`dgl_bilevel.ops`' per-edge kernel (SDDMM on large graphs):
    no ``[E, C]`` tensor is formed (``E x C`` less memory per unrolled step than gathering
    ``z_s - z_t``). Differentiable to any order.
    """
    topo = topology(graph)
    flat = z.reshape(z.shape[0], -1)
    norms = (flat * flat).sum(-1)
    inner = _EdgeDot.apply(_nonleaf(flat), _nonleaf(flat), _plan(graph), "dst")  # <z_t, z_s>, edge-id order
    return (norms[topo.src] + norms[topo.dst] - 2.0 * inner).clamp_min(0.0)
