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
    """An inner problem's objective ``g(params, w)`` with its derivatives written out
    (:attr:`~dgl_bilevel.inner.base.InnerProblem.derivatives`): the whole interface every fast path
    uses -- plain training (:meth:`value_and_gradient`), the recorded unroll
    (:mod:`~dgl_bilevel.hypergrad.recorded`: :meth:`gradient`, :meth:`gradient_vjp`,
    :meth:`edge_sum`) and implicit differentiation (:meth:`hessian_products`).

    Subclasses implement :meth:`gradient`, :meth:`gradient_vjp` and :meth:`hessian_products`.
    """

    def value_and_gradient(self, params: Params, edge_weight: torch.Tensor) -> tuple:
        """``(g, dg/dparams)`` at ``params`` without an autograd graph."""
        value, grads, _ = self.gradient(params, edge_weight)
        return value, grads

    def gradient(self, params: Params, edge_weight: torch.Tensor) -> tuple:
        """``(g, dg/dparams, record)``; ``record`` holds what the pass computed that the second
        derivatives at this point reuse."""
        raise NotImplementedError

    def gradient_vjp(self, record, cotangent: Params, edge_weight: torch.Tensor, defer_edges: bool = False) -> tuple:
        """``(V^T dg/dparams, V^T dg/dw)`` for a cotangent ``V`` on the gradient, at the point of
        ``record``. With ``defer_edges`` the second entry may be anything :meth:`edge_sum` adds up
        (a segment's steps summed in one go, where one step's per-edge products are too small to
        pay for their calls); by default it is the tensor itself."""
        raise NotImplementedError

    def hessian_products(self, record, edge_weight: torch.Tensor) -> tuple[Callable, Callable]:
        """``(V -> H V, V -> d/dw <g, V>)`` at the point of ``record``, for many products there
        (what does not depend on ``V`` is computed once)."""
        raise NotImplementedError

    def edge_sum(self, pending: list) -> torch.Tensor:
        """The sum of the edge parts ``gradient_vjp(..., defer_edges=True)`` returned."""
        total = pending[0]
        for part in pending[1:]:
            total = total + part
        return total
