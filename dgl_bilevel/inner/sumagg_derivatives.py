"""Hand-derived first and second derivatives of the paper's GNN objective, for fast unrolling.

Unrolled hypergradients need, at every inner step, the vector-Jacobian product of the inner
gradient ``g(theta, w) = d/dtheta L(theta, w)`` with respect to ``(theta, w)``. Autograd gets it
by back-propagating through the backward pass (reverse over reverse), which runs the step's
forward and backward again and then both in reverse -- about four passes' worth of sparse
products per step. Because ``L`` is twice differentiable, that product is a *forward*
derivative: for a cotangent ``V`` on ``g``,

    d/dtheta <g, V> = H_thetatheta V   and   d/dw <g, V> = d/dtheta [d/dw L] . V,

the directional derivative of the full gradient ``(dL/dtheta, dL/dw)`` along ``V`` in theta.
Written out by hand for :class:`~dgl_bilevel.models.SumAggGNN` with cross-entropy on ``v_in``
and L2 weight decay (the paper's inner problem), it reuses the activations the step's own
forward and backward computed -- kept by :meth:`SumAggDerivatives.gradient` -- so each reverse
step costs one tangent pass (the same sparse products as one training step) instead of three.

Notation, for layer ``l = 1..L`` with ``H_0 = X``: ``[S_l | Q_l] = H_(l-1) W_l``,
``Z_l = S_l + M Q_l + b_l`` with ``M = A(w)^T`` (rows: destination nodes), ``H_l = elu(Z_l)``
for ``l < L`` and the logits ``Z_L``. The backward pass has ``G_l = dL/dZ_l`` and
``R_l = M^T G_l``; ``dL/dW_l = H_(l-1)^T [G_l | R_l] + wd W_l``, ``dL/db_l = sum_rows G_l + wd b_l``,
``dL/dw_e = sum_l <G_l[dst_e], Q_l[src_e]>`` and ``G_(l-1) = elu'(Z_(l-1)) * [G_l | R_l] W_l^T``.
The tangent pass differentiates each of these lines once more.
"""
from __future__ import annotations

import torch

from ..models import SumAggGNN
from ..ops import SparseFeatures, _EdgeDot, _plan


def supports(problem) -> bool:
    """True when ``problem`` (a bound trained-GNN problem whose ``objective`` is
    :class:`~dgl_bilevel.inner.gnn.TrainedGNN`'s) trains a :class:`~dgl_bilevel.models.SumAggGNN`
    for classification: the objective written out here."""
    model = getattr(problem, "model", None)
    if type(model) is not SumAggGNN or problem.data is None or problem.data.task != "classification":
        return False
    expected = [name for i in range(len(model.layers)) for name in (f"layers.{i}.weight", f"layers.{i}.bias")]
    return problem.names == expected and not problem.buffers


class SumAggDerivatives:
    """``gradient`` (the objective's value and gradient, keeping a compact record of the pass) and
    ``gradient_vjp`` (the product of a cotangent with the gradient's Jacobian, from that record)
    for a bound :class:`~dgl_bilevel.inner.gnn.TrainedGNN` that :func:`supports` accepts.

    The record keeps per step only what is costly to rebuild: ``Q_1 = X W_1``'s neighbour half
    (a product with the feature matrix), the hidden layers ``H_l``, the weights ``W_l`` for
    ``l >= 2`` and the softmax on ``v_in`` -- 32 numbers per node on Cora's 16-unit GNN. ``G_l``,
    ``R_l`` and the other ``Q_l`` are rebuilt from them with small dense products and one
    product with ``M^T`` per layer above the first.
    """

    def __init__(self, problem) -> None:
        self.graph = problem.graph
        self.features = problem.features
        self.weight_decay = problem.weight_decay
        self.widths = [layer.out_feats for layer in problem.model.layers]
        data = problem.data
        self.v_in = data.v_in
        self.labels = data.labels[data.v_in]

    # ----------------------------------------------------------------- helpers
    def _matrices(self, edge_weight: torch.Tensor):
        plan = _plan(self.graph)
        weight = edge_weight.detach()
        return plan, plan.matrix("dst", weight), plan.matrix("src", weight)

    def _project_features(self, weight: torch.Tensor) -> torch.Tensor:
        if isinstance(self.features, SparseFeatures):
            return self.features.matrix @ weight
        return self.features @ weight

    def _features_transpose_times(self, grad: torch.Tensor) -> torch.Tensor:
        if isinstance(self.features, SparseFeatures):
            return self.features.matrix_t @ grad
        return self.features.t() @ grad

    def _logit_gradient(self, probs: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``G_L = dL/dlogits``: (softmax - one-hot) / n on the ``v_in`` rows, zero elsewhere."""
        n = self.v_in.numel()
        rows = probs.clone()
        rows[torch.arange(n), self.labels] -= 1.0
        return torch.zeros_like(like).index_add_(0, self.v_in, rows / n)

    # ------------------------------------------------------------- first order
    @torch.no_grad()
    def gradient(self, params: tuple, edge_weight: torch.Tensor) -> tuple[torch.Tensor, tuple, dict]:
        """``(L, dL/dtheta, record)`` at ``params``: the same values as autograd on the objective."""
        _, m_dst, m_src = self._matrices(edge_weight)
        weights, biases = params[0::2], params[1::2]
        count = len(weights)
        hidden, slopes, neighs = [], [], []
        h = None
        for l, (w_l, b_l) in enumerate(zip(weights, biases)):
            projected = self._project_features(w_l) if l == 0 else h @ w_l
            self_part, neigh = projected.split(self.widths[l], dim=1)
            neigh = neigh.contiguous()
            neighs.append(neigh)
            z = self_part + m_dst @ neigh + b_l
            if l < count - 1:
                h = torch.nn.functional.elu(z)
                hidden.append(h)
                slopes.append(torch.where(z > 0, torch.ones_like(z), torch.exp(z)))
        log_probs = torch.log_softmax(z.index_select(0, self.v_in), dim=1)
        loss = -log_probs.gather(1, self.labels[:, None]).sum() / self.v_in.numel()
        probs = log_probs.exp()
        grad_z = self._logit_gradient(probs, z)
        grads: list = [None] * len(params)
        for l in range(count - 1, -1, -1):
            grad_q = m_src @ grad_z
            grad_projected = torch.cat([grad_z, grad_q], dim=1)
            if l == 0:
                grads[0] = self._features_transpose_times(grad_projected)
            else:
                grads[2 * l] = hidden[l - 1].t() @ grad_projected
            grads[2 * l + 1] = grad_z.sum(0)
            if l:
                grad_z = (grad_projected @ weights[l].t()) * slopes[l - 1]
        if self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * sum((p * p).sum() for p in params)
            grads = [g + self.weight_decay * p for g, p in zip(grads, params)]
        record = {"probs": probs, "neigh": neighs[0], "hidden": hidden, "weights": [None] + [w.detach() for w in weights[1:]]}
        return loss, tuple(grads), record

    # ------------------------------------------------------------ second order
    @torch.no_grad()
    def gradient_vjp(self, record: dict, cotangent: tuple, edge_weight: torch.Tensor) -> tuple[tuple, torch.Tensor]:
        """``(V^T dg/dtheta, V^T dg/dw)`` for a cotangent ``V`` on the gradient ``g`` at the point
        ``record`` was taken: the Hessian-vector product ``H V`` and the mixed derivative
        ``d/dw <g, V>`` (one tangent pass; see the module docstring)."""
        plan, m_dst, m_src = self._matrices(edge_weight)
        probs, hidden, weights = record["probs"], record["hidden"], record["weights"]
        v_weights, v_biases = cotangent[0::2], cotangent[1::2]
        count = len(weights)
        slopes = [h.clamp(max=0.0) + 1.0 for h in hidden]  # elu'(z): 1 for z > 0 (h > 0), exp(z) = h + 1 otherwise
        neighs = [record["neigh"]] + [hidden[l - 1] @ weights[l][:, self.widths[l]:] for l in range(1, count)]
        # forward tangents: dZ_l, and dQ_l for the edge derivative
        d_pre, d_neighs = [], []
        d_h = None
        for l in range(count):
            d_projected = self._project_features(v_weights[0]) if l == 0 else d_h @ weights[l] + hidden[l - 1] @ v_weights[l]
            d_self, d_neigh = d_projected.split(self.widths[l], dim=1)
            d_neigh = d_neigh.contiguous()
            d_z = d_self + m_dst @ d_neigh + v_biases[l]
            d_pre.append(d_z)
            d_neighs.append(d_neigh)
            if l < count - 1:
                d_h = d_z * slopes[l]
        # the softmax cross-entropy's Hessian on the v_in rows
        d_rows = d_pre[-1].index_select(0, self.v_in)
        d_rows = probs * (d_rows - (probs * d_rows).sum(1, keepdim=True)) / self.v_in.numel()
        d_grad_z = torch.zeros_like(d_pre[-1]).index_add_(0, self.v_in, d_rows)
        grad_z = self._logit_gradient(probs, d_pre[-1])
        out: list = [None] * (2 * count)
        # d/dw_e sum_l <G_l[dst], Q_l[src]> = sum_l <dG_l[dst], Q_l[src]> + <G_l[dst], dQ_l[src]>: one edge product
        at_dst, at_src = [], []
        for l in range(count - 1, -1, -1):
            d_grad_q = m_src @ d_grad_z
            d_grad_projected = torch.cat([d_grad_z, d_grad_q], dim=1)
            at_dst += [d_grad_z, grad_z]
            at_src += [neighs[l], d_neighs[l]]
            out[2 * l + 1] = d_grad_z.sum(0)
            if l == 0:
                out[0] = self._features_transpose_times(d_grad_projected)
                break
            grad_projected = torch.cat([grad_z, m_src @ grad_z], dim=1)
            d_inputs = d_pre[l - 1] * slopes[l - 1]
            out[2 * l] = d_inputs.t() @ grad_projected + hidden[l - 1].t() @ d_grad_projected
            grad_h = grad_projected @ weights[l].t()
            d_grad_h = d_grad_projected @ weights[l].t() + grad_projected @ v_weights[l].t()
            curvature = slopes[l - 1].masked_fill(hidden[l - 1] > 0, 0.0)  # elu''(z): 0 for z > 0, exp(z) otherwise
            d_grad_z = curvature * d_pre[l - 1] * grad_h + slopes[l - 1] * d_grad_h
            grad_z = grad_h * slopes[l - 1]
        edge = _EdgeDot.apply(torch.cat(at_dst, dim=1), torch.cat(at_src, dim=1), plan, "dst")
        if self.weight_decay:
            out = [o + self.weight_decay * v for o, v in zip(out, cotangent)]
        return tuple(out), edge
