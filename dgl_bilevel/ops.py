"""Differentiable graph and feature operations shared by the inner problems.

Everything that touches edges goes through DGL's message-passing kernels, whose
double backward is exact (DESIGN.md section 2); no dense N x N matrix is ever formed.
"""
from __future__ import annotations

import warnings
from typing import Union

import torch

from ._dgl import dgl


def weighted_sum(graph: "dgl.DGLGraph", feat: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
    """``out[v] = sum over edges u -> v of edge_weight[e] * feat[u]`` (A^T feat with A[u, v] = w_e).

    Differentiable in ``feat`` and ``edge_weight``, to any order.
    """
    if feat.dim() == 1:
        return weighted_sum(graph, feat.unsqueeze(-1), edge_weight).squeeze(-1)
    return dgl.ops.u_mul_e_sum(graph, feat, edge_weight.view(-1, *([1] * (feat.dim() - 1))))


def symmetric_weighted_sum(
    graph: "dgl.DGLGraph", reverse: "dgl.DGLGraph", feat: torch.Tensor, edge_weight: torch.Tensor
) -> torch.Tensor:
    """``(W + W^T) feat``: each stored edge acts in both directions.

    ``reverse`` must be ``dgl.reverse(graph)`` (edge ``e`` of it is edge ``e`` of ``graph``
    turned around), so both share ``edge_weight``.
    """
    return weighted_sum(graph, feat, edge_weight) + weighted_sum(reverse, feat, edge_weight)


def edge_difference_product(graph: "dgl.DGLGraph", a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per edge ``u -> v``: ``<a[u] - a[v], b[u] - b[v]>`` (summed over trailing dims)."""
    da = dgl.ops.u_sub_v(graph, a, a)
    db = da if b is a else dgl.ops.u_sub_v(graph, b, b)
    prod = da * db
    return prod.reshape(prod.shape[0], -1).sum(-1)


def edge_dot(graph: "dgl.DGLGraph", a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per edge ``u -> v``: ``<a[u], b[v]>``."""
    if a.dim() == 1:
        a, b = a.unsqueeze(-1), b.unsqueeze(-1)
    return dgl.ops.u_dot_v(graph, a, b).reshape(-1)


def weighted_degrees(
    graph: "dgl.DGLGraph", edge_weight: torch.Tensor, reverse: "dgl.DGLGraph | None" = None
) -> torch.Tensor:
    """Weighted in-degree ``W^T 1``; with ``reverse = dgl.reverse(graph)``, ``(W + W^T) 1``."""
    deg = dgl.ops.copy_e_sum(graph, edge_weight)
    if reverse is not None:
        deg = deg + dgl.ops.copy_e_sum(reverse, edge_weight)
    return deg


class _SparseMatmul(torch.autograd.Function):
    """``A @ W`` for a constant sparse CSR ``A``; the backward reuses a stored ``A^T``.

    The backward is itself a ``_SparseMatmul`` (linear in the incoming gradient), so the
    product is differentiable to any order in ``W`` -- which unrolled hypergradients need.
    torch's own sparse backward rebuilds ``A^T`` on every call, which dominated run time.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, matrix: torch.Tensor, matrix_t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(matrix, matrix_t)
        return matrix @ weight

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        matrix, matrix_t = ctx.saved_tensors
        return _SparseMatmul.apply(grad_out.contiguous(), matrix_t, matrix), None, None


class SparseFeatures:
    """A constant sparse node-feature matrix, kept with its transpose for fast projections.

    Bag-of-words features such as Cora's are about 1% non-zero; projecting them with a
    sparse product is ~50x cheaper than a dense one and keeps memory flat.
    """

    def __init__(self, dense: torch.Tensor) -> None:
        self.shape = tuple(dense.shape)
        self.dtype = dense.dtype
        self.device = dense.device
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only its matmul
            warnings.simplefilter("ignore", UserWarning)
            self.matrix = dense.to_sparse_csr()
            self.matrix_t = dense.t().contiguous().to_sparse_csr()
        self.density = float(self.matrix.values().numel()) / max(1, dense.numel())

    def __matmul__(self, weight: torch.Tensor) -> torch.Tensor:
        return _SparseMatmul.apply(weight, self.matrix, self.matrix_t)

    def to(self, dtype: torch.dtype) -> "SparseFeatures":
        return SparseFeatures(self.matrix.to_dense().to(dtype))

    def __repr__(self) -> str:
        return f"SparseFeatures(shape={self.shape}, density={self.density:.4f})"


Features = Union[torch.Tensor, SparseFeatures]


def project(feat: Features, weight: torch.Tensor) -> torch.Tensor:
    """``feat @ weight`` for dense or :class:`SparseFeatures` inputs."""
    return feat @ weight


def maybe_sparse(feat: torch.Tensor, max_density: float = 0.1) -> Features:
    """Wrap ``feat`` as :class:`SparseFeatures` when at most ``max_density`` of it is non-zero."""
    if feat.dim() != 2 or feat.numel() == 0:
        return feat
    density = float((feat != 0).sum()) / feat.numel()
    return SparseFeatures(feat) if density <= max_density else feat
