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

When the loss's receptive field is a small part of the graph
(:class:`~dgl_bilevel.inner.receptive_field.ReceptiveField`), layer ``l`` runs on its own block:
``H_(l-1)`` on the rows it reads, ``Z_l`` on the rows the next layer reads (a prefix of them, so
``S_l`` is the prefix of the self half) and ``M`` the block's edges; the backward pass pads
``G_l`` with zeros below its rows. Edge derivatives land on the field's edges, zero elsewhere.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import torch

from ..losses import row_log_softmax
from ..models import SumAggGNN
from ..ops import PerWeightCache, SparseFeatures, edge_products, weighted_sum_matrices
from .receptive_field import ReceptiveField
from .types import HandDerivatives

if TYPE_CHECKING:
    from .base import InnerProblem


def _elu_slope(h: torch.Tensor) -> torch.Tensor:
    """``elu'(z)`` from ``h = elu(z)``: 1 for z > 0 (h > 0), ``exp(z) = h + 1`` otherwise."""
    return h.clamp(max=0.0) + 1.0


def unsupported(problem: "InnerProblem") -> Optional[str]:
    """Why the objective written out here -- a :class:`~dgl_bilevel.models.SumAggGNN` trained for
    classification, :class:`~dgl_bilevel.inner.gnn.TrainedGNN`'s objective -- is not the bound
    ``problem``'s; None when it is."""
    model = problem.model
    if problem.data is None:
        return "the problem is not bound to data yet"
    if type(model) is not SumAggGNN:
        return (f"the {type(model).__name__} model has no hand-derived derivatives (only SumAggGNN, --model sumagg: "
                "the paper's GNN)")
    if problem.data.task != "classification":
        return (f"the GNN's derivatives are written out for cross-entropy, and {problem.data.name} is a "
                f"{problem.data.task} task")
    expected = [name for i in range(len(model.layers)) for name in (f"layers.{i}.weight", f"layers.{i}.bias")]
    if problem.names != expected or problem.buffers:
        return "the SumAggGNN's parameters are not its layers' weights and biases alone"
    return None


class SumAggDerivatives(HandDerivatives):
    """``gradient`` (the objective's value and gradient, keeping a compact record of the pass) and
    ``gradient_vjp`` (the product of a cotangent with the gradient's Jacobian, from that record)
    for one trained :class:`~dgl_bilevel.models.SumAggGNN` (:meth:`for_problem`) or ``S`` seeds of
    it stacked into one problem (:meth:`for_stack`: parameters ``[S, ...]``, a graph of ``S``
    copies). Internally every tensor has a leading seed axis; one seed is a stack of one.

    The record keeps per step what the tangent pass reads and the step computed anyway: the
    neighbour halves ``Q_l`` of ``H_(l-1) W_l`` (``Q_1`` is a product with the feature matrix), the
    hidden layers ``H_l``, the weights ``W_l`` for ``l >= 2`` and the softmax on ``v_in`` -- 39
    numbers per node on Cora's 16-unit GNN on the whole graph (41 MB for 100 steps), 17 MB on the
    receptive field of the public split's 140 training nodes. ``G_l`` and ``R_l`` are rebuilt
    from them with small dense products and one product with ``M^T`` per layer above the first.
    """

    def __init__(self, graph, features, weight_decay: float, widths: list, rows: torch.Tensor, labels: torch.Tensor,
                 row_weights: torch.Tensor, row_seeds: torch.Tensor, num_seeds: int, stacked: bool,
                 report: Callable[[torch.Tensor], torch.Tensor], field: Optional[ReceptiveField] = None) -> None:
        self.graph, self.features, self.weight_decay, self.widths = graph, features, weight_decay, widths
        self.rows, self.labels, self.row_weights, self.row_seeds = rows, labels, row_weights, row_seeds
        self.num_seeds, self.stacked, self.report = num_seeds, stacked, report
        #: where the loss's receptive field is a small part of the graph, every layer runs on its part
        #: of it (``features`` and ``rows`` are then the field's, ``graph`` unused) and edge weights and
        #: edge derivatives are mapped in and out; None: every layer on the whole ``graph``
        self.field = field
        self.layer_graphs = [graph] * len(widths) if field is None else \
            [field.layer_graph(l, num_seeds) for l in range(len(widths))]
        #: rows of the last layer's output per seed (the loss rows index into them)
        self.output_rows = graph.num_nodes() // num_seeds if field is None else field.counts[0]
        self._field_weights = PerWeightCache()

    @classmethod
    def for_problem(cls, problem) -> "SumAggDerivatives":
        """For a bound :class:`~dgl_bilevel.inner.gnn.TrainedGNN` that is not :func:`unsupported`."""
        data = problem.data
        n = data.v_in.numel()
        weights = torch.full((n,), 1.0 / n, dtype=data.features.dtype)
        widths = [layer.out_feats for layer in problem.model.layers]
        field = ReceptiveField.worth_it(problem.graph, [data.v_in], len(widths))
        graph, features, rows = problem.graph, problem.features, data.v_in
        if field is not None:
            features, rows = field.restrict_features(features), field.restrict_rows(data.v_in)
        return cls(graph, features, problem.weight_decay, widths, rows, data.labels[data.v_in], weights,
                   torch.zeros(n, dtype=torch.long), 1, False, lambda per_seed: per_seed.sum(), field)

    @classmethod
    def for_stack(cls, stacked) -> "SumAggDerivatives":
        """For a :class:`~dgl_bilevel.seeds.problems.StackedGNN` of problems that are not :func:`unsupported`;
        each seed's objective is reported to it as its objective evaluation would."""
        nodes = stacked.v_in
        dtype = stacked.problems[0].data.features.dtype
        widths = [layer.out_feats for layer in stacked.model.layers]
        field = ReceptiveField.worth_it(stacked.problems[0].graph, nodes.per_seed, len(widths))
        graph, features, rows = stacked.graph, stacked.features, nodes.index
        if field is not None:
            features, rows = field.restrict_features(features), field.restrict_rows(nodes.local, nodes.seed)
        return cls(graph, features, stacked.weight_decay, widths, rows, stacked.labels.index_select(0, nodes.local),
                   nodes.mean_weights(dtype), nodes.seed, stacked.num_seeds, True, stacked._record, field)

    # ----------------------------------------------------------------- helpers
    def _matrices(self, edge_weight: torch.Tensor) -> list:
        """Per layer, ``(M_l, M_l^T)``: the sparse matrix of its (block's) weighted edges, rows =
        destinations, and its transpose."""
        if self.field is None:
            return [weighted_sum_matrices(self.graph, edge_weight)] * len(self.widths)
        # the layers' weight tensors, built once per weight tensor, so the matrices' cache holds
        weights = self._field_weights.get(edge_weight, lambda: self._layer_weights(edge_weight.detach()))
        return [weighted_sum_matrices(g, w) for g, w in zip(self.layer_graphs, weights)]

    def _layer_weights(self, edge_weight: torch.Tensor) -> list:
        kept = self.field.restrict_weights(edge_weight, self.num_seeds)
        return [self.field.layer_weights(kept, l) for l in range(len(self.widths))]

    def _edge_products(self, at_dst: list, at_src: list) -> torch.Tensor:
        """``sum_l <at_dst[l][dst_e], at_src[l][src_e]>`` over each layer's edges, for every edge of
        the full graph (``at_dst[l]``, ``at_src[l]``: lists of ``[S, rows, c]`` pieces)."""
        seeds = self.num_seeds
        if self.field is None:  # every layer on one graph: one product on all pieces side by side
            pieces_dst = [t for pieces in reversed(at_dst) for t in pieces]  # last layer first, as before
            pieces_src = [t for pieces in reversed(at_src) for t in pieces]
            return edge_products(self.graph, torch.cat(pieces_dst, dim=2).reshape(-1, sum(t.shape[2] for t in pieces_dst)),
                                 torch.cat(pieces_src, dim=2).reshape(-1, sum(t.shape[2] for t in pieces_src)))
        total = None
        for l in range(len(at_dst) - 1, -1, -1):  # the first layer has the most edges: the others add into its prefix
            dst = torch.cat(at_dst[l], dim=2)
            src = torch.cat(at_src[l], dim=2)
            values = edge_products(self.layer_graphs[l], dst.reshape(-1, dst.shape[2]), src.reshape(-1, src.shape[2]))
            values = values.reshape(seeds, -1)
            if total is None:
                total = values.new_zeros(seeds, self.field.edges.numel())
            total[:, : values.shape[1]] += values
        return self.field.expand_edge_values(total, seeds)

    @staticmethod
    def _beside(grad_z: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        """``[G | R]`` for ``d/d(H W)``: the self half ``G`` (the layer's output rows, a prefix of its
        input rows; zero below them) beside the neighbour half ``R`` (every input row)."""
        if grad_z.shape[1] == neighbour.shape[1]:
            return torch.cat([grad_z, neighbour], dim=2)
        seeds, rows, width = neighbour.shape
        out = neighbour.new_zeros(seeds, rows, grad_z.shape[2] + width)
        out[:, : grad_z.shape[1], : grad_z.shape[2]] = grad_z
        out[:, :, grad_z.shape[2]:] = neighbour
        return out

    def _seed_axis(self, params: tuple) -> tuple:
        return params if self.stacked else tuple(p.unsqueeze(0) for p in params)

    def _without_seed_axis(self, tensors: list) -> tuple:
        return tuple(tensors) if self.stacked else tuple(t.squeeze(0) for t in tensors)

    def _sparse(self, matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A (block-diagonal over seeds) sparse matrix times ``[S, rows, c]``: ``[S, its rows / S, c]``."""
        seeds, nodes, width = x.shape
        return (matrix @ x.reshape(seeds * nodes, width)).reshape(seeds, -1, width)

    def _features_times(self, weight: torch.Tensor) -> torch.Tensor:
        """``X W_s`` for every seed's ``[in, c]`` weight: one product with ``[in, S * c]``; ``[S, N, c]``."""
        seeds, width, cols = weight.shape
        wide = weight[0] if seeds == 1 else weight.permute(1, 0, 2).reshape(width, seeds * cols)
        out = self.features.matrix @ wide if isinstance(self.features, SparseFeatures) else self.features @ wide
        return out.reshape(out.shape[0], seeds, cols).transpose(0, 1)

    def _features_transpose_times(self, grad: torch.Tensor) -> torch.Tensor:
        """``X^T G_s`` for every seed's ``[N, c]``: one product; ``[S, in, c]``."""
        seeds, nodes, cols = grad.shape
        wide = grad[0] if seeds == 1 else grad.transpose(0, 1).reshape(nodes, seeds * cols)
        out = self.features.matrix_t @ wide if isinstance(self.features, SparseFeatures) else self.features.t() @ wide
        return out.reshape(out.shape[0], seeds, cols).transpose(0, 1)

    def _logit_gradient(self, probs: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``G_L = dL/dlogits``: (softmax - one-hot) / n_s on each seed's ``v_in`` rows, zero elsewhere."""
        weighted_one_hot, weights = self._weighted_targets(probs)
        flat = torch.zeros(like.shape[0] * like.shape[1], like.shape[2], dtype=like.dtype)
        return flat.index_add_(0, self.rows, torch.addcmul(weighted_one_hot, probs, weights, value=1.0)).reshape(like.shape)

    def _weighted_targets(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(-one_hot * row weight, row weight as a column)`` of the ``v_in`` rows, built once (advanced
        indexing to subtract the one-hot took ~40 us a call on Cora)."""
        held = self.__dict__.get("_targets")
        if held is None or held[1].dtype != probs.dtype:
            weights = self.row_weights.to(probs.dtype)[:, None]
            one_hot = torch.zeros(probs.shape, dtype=probs.dtype).scatter_(1, self.labels[:, None], 1.0)
            held = self._targets = (-one_hot * weights, weights)
        return held

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1]).index_select(0, self.rows)

    # ------------------------------------------------------------- first order
    @torch.no_grad()
    def gradient(self, params: tuple, edge_weight: torch.Tensor) -> tuple[torch.Tensor, tuple, dict]:
        """``(L, dL/dtheta, record)`` at ``params``: the same values as autograd on the objective."""
        matrices = self._matrices(edge_weight)
        stacked = self._seed_axis(params)
        weights, biases = stacked[0::2], stacked[1::2]
        count = len(weights)
        hidden, slopes, neighs = [], [], []
        h = None
        for l, (w_l, b_l) in enumerate(zip(weights, biases)):
            projected = self._features_times(w_l) if l == 0 else h @ w_l
            self_part, neigh = projected.split(self.widths[l], dim=2)
            neigh = neigh.contiguous()
            neighs.append(neigh)
            aggregated = self._sparse(matrices[l][0], neigh)
            z = self_part[:, : aggregated.shape[1]] + aggregated + b_l[:, None, :]
            if l < count - 1:
                h = torch.nn.functional.elu(z)
                hidden.append(h)
                slopes.append(_elu_slope(h))
        log_probs = row_log_softmax(self._rows(z))
        per_row = -log_probs.gather(1, self.labels[:, None]).squeeze(1) * self.row_weights
        per_seed = torch.zeros(self.num_seeds, dtype=z.dtype).index_add_(0, self.row_seeds, per_row)
        probs = log_probs.exp()
        grad_z = self._logit_gradient(probs, z)
        grads: list = [None] * len(stacked)
        for l in range(count - 1, -1, -1):
            grad_projected = self._beside(grad_z, self._sparse(matrices[l][1], grad_z))
            if l == 0:
                grads[0] = self._features_transpose_times(grad_projected)
            else:
                grads[2 * l] = hidden[l - 1].transpose(1, 2) @ grad_projected
            grads[2 * l + 1] = grad_z.sum(1)
            if l:
                grad_z = (grad_projected @ weights[l].transpose(1, 2)) * slopes[l - 1]
        if self.weight_decay:
            flat = torch.cat([p.reshape(self.num_seeds, -1) for p in stacked], dim=1)
            per_seed = per_seed + 0.5 * self.weight_decay * (flat * flat).sum(1)
            grads = torch._foreach_add(grads, stacked, alpha=self.weight_decay)
        # the weights are copied: as views they would keep the whole (flat) parameter vector of every
        # recorded step alive -- 18 MB over Cora's 100 steps for 224 numbers each
        record = {"probs": probs, "neighs": neighs, "hidden": hidden, "weights": [None] + [w.clone() for w in weights[1:]]}
        return self.report(per_seed), self._without_seed_axis(grads), record

    # ------------------------------------------------------------ second order
    @torch.no_grad()
    def gradient_vjp(self, record: dict, cotangent: tuple, edge_weight: torch.Tensor,
                     defer_edges: bool = False) -> tuple[tuple, "torch.Tensor | tuple"]:
        """``(V^T dg/dtheta, V^T dg/dw)`` for a cotangent ``V`` on the gradient ``g`` at the point
        ``record`` was taken: the Hessian-vector product ``H V`` and the mixed derivative
        ``d/dw <g, V>`` (one tangent pass; see the module docstring).

        With ``defer_edges`` the mixed derivative is returned as the pieces it is made of, for
        :meth:`edge_sum` to add up many steps' at once (an unroll's backward pass: the per-edge
        products of a step are too small to pay for their calls)."""
        return self._tangent(self._expand(record, edge_weight), cotangent, with_edge=True, defer_edges=defer_edges)

    def edge_sum(self, pending: list) -> torch.Tensor:
        """The sum of the mixed derivatives :meth:`gradient_vjp` returned as pieces: one product per
        layer over all of them, the steps' pieces side by side."""
        layers = range(len(self.widths))
        return self._edge_products([[t for at_dst, _ in pending for t in at_dst[l]] for l in layers],
                                   [[t for _, at_src in pending for t in at_src[l]] for l in layers])

    def hessian_products(self, record: dict, edge_weight: torch.Tensor) -> tuple[Callable, Callable]:
        """``(V -> H V, V -> d/dw <g, V>)`` at the point ``record`` was taken, for many products at
        one point (implicit differentiation): what does not depend on ``V`` is computed once here."""
        with torch.no_grad():
            point = self._expand(record, edge_weight)
        return (lambda v: self._tangent(point, v, with_edge=False)[0]), (lambda v: self._tangent(point, v, with_edge=True)[1])

    def _expand(self, record: dict, edge_weight: torch.Tensor) -> dict:
        """The record's point with every quantity the tangent pass reads that does not depend on
        the cotangent: ``elu'``, ``Q_l``, ``G_l``, ``[G_l | R_l]``, ``elu''(Z_(l-1)) * dL/dH_(l-1)``
        and the softmax on ``v_in`` times each row's weight."""
        matrices = self._matrices(edge_weight)
        probs, hidden, weights = record["probs"], record["hidden"], record["weights"]
        count = len(weights)
        slopes = [_elu_slope(h) for h in hidden]
        neighs = record["neighs"]
        seeds = neighs[0].shape[0]
        grad_z = self._logit_gradient(probs, torch.empty(seeds, self.output_rows, self.widths[-1], dtype=probs.dtype))
        grad_zs, grad_projecteds, curved_grad_hs = [None] * count, [None] * count, [None] * count
        for l in range(count - 1, -1, -1):
            grad_zs[l] = grad_z
            if l == 0:
                break
            grad_projecteds[l] = self._beside(grad_z, self._sparse(matrices[l][1], grad_z))
            grad_h = grad_projecteds[l] @ weights[l].transpose(1, 2)
            grad_z = grad_h * slopes[l - 1]
            # elu''(z): 0 for z > 0 (h > 0), exp(z) = elu'(z) otherwise; sign(relu(h)) is the step, without
            # boolean tensors (a comparison and masked_fill took ~100 us on Cora's 2,708 x 16 against ~13)
            curved_grad_hs[l] = (slopes[l - 1] - torch.relu(hidden[l - 1]).sign_()).mul_(grad_h)
        return {"matrices": matrices, "probs": probs, "weighted_probs": probs * self.row_weights[:, None],
                "hidden": hidden, "weights": weights, "slopes": slopes, "neighs": neighs, "grad_z": grad_zs,
                "grad_projected": grad_projecteds, "curved_grad_h": curved_grad_hs}

    @torch.no_grad()
    def _tangent(self, point: dict, cotangent: tuple, with_edge: bool, defer_edges: bool = False) -> tuple[tuple, object]:
        matrices, probs, hidden, weights = point["matrices"], point["probs"], point["hidden"], point["weights"]
        slopes, neighs = point["slopes"], point["neighs"]
        tangent = self._seed_axis(cotangent)
        v_weights, v_biases = tangent[0::2], tangent[1::2]
        count = len(weights)
        # forward tangents: dZ_l, dH_l = elu'(Z_l) dZ_l, and dQ_l for the edge derivative
        d_pre, d_hidden, d_neighs = [], [], []
        for l in range(count):
            if l == 0:
                d_projected = self._features_times(v_weights[0])
            else:  # dH W + H V, the product and the sum in one kernel
                d_projected = torch.baddbmm(hidden[l - 1] @ v_weights[l], d_hidden[l - 1], weights[l])
            d_self, d_neigh = d_projected.split(self.widths[l], dim=2)
            d_neigh = d_neigh.contiguous()
            d_aggregated = self._sparse(matrices[l][0], d_neigh)
            d_z = d_aggregated.add_(d_self[:, : d_aggregated.shape[1]]).add_(v_biases[l][:, None, :])
            d_pre.append(d_z)
            d_neighs.append(d_neigh)
            if l < count - 1:
                d_hidden.append(d_z * slopes[l])
        # the softmax cross-entropy's Hessian on each seed's v_in rows
        d_rows = self._rows(d_pre[-1])
        d_rows = point["weighted_probs"] * (d_rows - (probs * d_rows).sum(1, keepdim=True))
        logits = d_pre[-1]
        d_grad_z = torch.zeros(logits.shape[0] * logits.shape[1], logits.shape[2], dtype=logits.dtype)
        d_grad_z = d_grad_z.index_add_(0, self.rows, d_rows).reshape(logits.shape)
        out: list = [None] * (2 * count)
        # d/dw_e sum_l <G_l[dst], Q_l[src]> = sum_l <dG_l[dst], Q_l[src]> + <G_l[dst], dQ_l[src]>: one edge product
        # (one per layer on a receptive field), over the pieces collected here
        at_dst, at_src = [None] * count, [None] * count
        for l in range(count - 1, -1, -1):
            d_grad_projected = self._beside(d_grad_z, self._sparse(matrices[l][1], d_grad_z))
            at_dst[l], at_src[l] = [d_grad_z, point["grad_z"][l]], [neighs[l], d_neighs[l]]
            out[2 * l + 1] = d_grad_z.sum(1)
            if l == 0:
                out[0] = self._features_transpose_times(d_grad_projected)
                break
            grad_projected = point["grad_projected"][l]
            out[2 * l] = torch.baddbmm(d_hidden[l - 1].transpose(1, 2) @ grad_projected,
                                       hidden[l - 1].transpose(1, 2), d_grad_projected)
            d_grad_h = torch.baddbmm(grad_projected @ v_weights[l].transpose(1, 2), d_grad_projected, weights[l].transpose(1, 2))
            # d(elu'(Z) * dL/dH) = elu''(Z) dZ * dL/dH + elu'(Z) * d(dL/dH)
            d_grad_z = torch.addcmul(d_grad_h.mul_(slopes[l - 1]), d_pre[l - 1], point["curved_grad_h"][l])
        if self.weight_decay:
            out = torch._foreach_add(out, tangent, alpha=self.weight_decay)
        if not with_edge:
            return self._without_seed_axis(out), None
        if defer_edges:
            return self._without_seed_axis(out), (at_dst, at_src)
        return self._without_seed_axis(out), self._edge_products(at_dst, at_src)
