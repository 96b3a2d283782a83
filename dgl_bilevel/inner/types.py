"""The names inner problems, their training loop, the flat optimizer and the recorded unroll share
for what they pass around."""
from __future__ import annotations

from typing import Callable

import torch

#: Inner parameters: a tuple of tensors.
Params = tuple
#: Called with the (detached) inner iterate after every inner step, e.g. to track validation accuracy.
Monitor = Callable[[Params], None]


class HandDerivatives:
    """Base of an inner problem's ``second_order`` capability: its objective's derivatives written out.

    Subclasses implement ``gradient(params, w) -> (loss, grads, record)`` (``record``: what the
    step computed that the second derivatives reuse) and ``gradient_vjp(record, V, w,
    defer_edges=False) -> (V^T dg/dparams, V^T dg/dw)``. With ``defer_edges`` the second entry may
    be anything :meth:`edge_sum` adds up -- the recorded unroll
    (:mod:`dgl_bilevel.hypergrad.recorded`) collects a segment's and sums them in one go, which
    pays where a step's per-edge products are too small to pay for their calls (the GNN's); by
    default it is the tensor itself and :meth:`edge_sum` its sum.
    """

    def gradient(self, params: Params, edge_weight: torch.Tensor) -> tuple:
        raise NotImplementedError

    def gradient_vjp(self, record, cotangent: Params, edge_weight: torch.Tensor, defer_edges: bool = False) -> tuple:
        raise NotImplementedError

    def edge_sum(self, pending: list) -> torch.Tensor:
        """The sum of the edge parts ``gradient_vjp(..., defer_edges=True)`` returned."""
        total = pending[0]
        for part in pending[1:]:
            total = total + part
        return total
