"""Inner problem: a GNN trained on mini-batches of ``v_in`` with DGL's neighbour sampler.

Each inner step samples a batch of ``v_in`` seeds and their ``fanouts``-limited neighbourhood
as DGL blocks (``dgl.dataloading.NeighborSampler``); the blocks' edge weights are gathered by
edge ID (``block.edata[dgl.EID]``) from the learnable structure, so gradients reach the full
edge-weight vector. Memory per step is that of one batch's receptive field.

The hypergradient is implicit (or first-order): the inner objective at the solution is the full
``v_in`` loss, evaluated in batches over full neighbourhoods, and Hessian-vector products and the
mixed term are accumulated batch by batch (:meth:`objective_terms`), so no step ever holds the
whole graph's second-order graph. Unrolling through random batches is not offered.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torchopt
from torch import nn
from torch.func import functional_call

from .._dgl import dgl
from ..errors import ConfigError
from ..losses import task_loss
from .base import Params
from .gnn import TrainedGNN
from .optimizers import InnerOptimizer
from .training import update_step


class SampledGNN(TrainedGNN):
    """Mini-batch trained GNN (see module docstring).

    Its ``objective`` is the full ``v_in`` objective (full neighbourhoods, in batches); training
    steps use sampled batches. Use it with :class:`~dgl_bilevel.hypergrad.Implicit` or
    :class:`~dgl_bilevel.hypergrad.FirstOrder`.

    Args:
        model: a model accepting a list of blocks (``supports_blocks = True``, e.g.
            :class:`~dgl_bilevel.models.SumAggGNN`).
        steps: mini-batch steps per outer iteration.
        batch_size: ``v_in`` seeds per training step.
        fanouts: neighbours sampled per layer (input layer first), DGL's convention.
        eval_batch_size: seeds per batch when the full objective or its derivatives are evaluated.
        lr, optimizer, weight_decay, init: as for :class:`TrainedGNN`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: a model that does not take blocks, ``batch_size`` or ``eval_batch_size``
            below 1, no ``fanouts``; at :meth:`bind`, ``fanouts`` not one per model layer; in a
            fit, an unrolled or truncated hypergradient.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> _ = torch.manual_seed(0)
        >>> problem = SampledGNN(dbl.models.SumAggGNN(6, 4, 2), steps=3, batch_size=2, fanouts=(2, 2))
        >>> problem = problem.bind(data, graph)
        >>> weights = torch.ones(graph.num_edges(), requires_grad=True)
        >>> solution = dbl.FirstOrder().solve(problem, weights, problem.initial_params(torch.Generator().manual_seed(0)))
        >>> loss = torch.nn.functional.cross_entropy(problem.predict(solution.params, weights)[data.v_out],
        ...                                          data.labels[data.v_out])
        >>> tuple(torch.autograd.grad(loss, weights)[0].shape)
        (10,)
        >>> try:
        ...     dbl.fit(data, dbl.EdgeWeights(graph), problem, hypergrad="unrolled", outer_steps=1, progress=False)
        ... except ConfigError as exc:
        ...     print(str(exc)[:56])
        SampledGNN trains on random mini-batches and cannot be u
    """

    differentiable_trajectory = False

    def __init__(
        self,
        model: nn.Module,
        steps: int = 100,
        batch_size: int = 1024,
        fanouts: Sequence[int] = (10, 10),
        eval_batch_size: int = 8192,
        lr: float = 1e-2,
        optimizer: "InnerOptimizer | torchopt.base.GradientTransformation | None" = None,
        weight_decay: float = 5e-4,
        init: str = "fresh",
    ) -> None:
        super().__init__(model, steps=steps, lr=lr, optimizer=optimizer, weight_decay=weight_decay, init=init,
                         sparse_features=False)
        if not getattr(model, "supports_blocks", False):
            raise ConfigError(f"{type(model).__name__} does not take DGL blocks; use models.SumAggGNN")
        if batch_size < 1 or eval_batch_size < 1 or not fanouts:
            raise ConfigError("SampledGNN needs batch_size >= 1, eval_batch_size >= 1 and fanouts")
        self.batch_size, self.eval_batch_size, self.fanouts = int(batch_size), int(eval_batch_size), list(fanouts)

    def bind(self, data, graph) -> "SampledGNN":
        super().bind(data, graph)
        layers = len(getattr(self.model, "layers", self.fanouts))
        if len(self.fanouts) != layers:
            raise ConfigError(f"fanouts has {len(self.fanouts)} entries but the model has {layers} layers")
        self.sampler = dgl.dataloading.NeighborSampler(self.fanouts)
        self.full_sampler = dgl.dataloading.MultiLayerFullNeighborSampler(layers)
        return self

    # ------------------------------------------------------------------ pieces
    def _forward_blocks(self, params: Params, edge_weight: torch.Tensor, sampler, seeds: torch.Tensor) -> torch.Tensor:
        input_nodes, _, blocks = sampler.sample_blocks(self.graph, seeds)
        weights = [edge_weight[block.edata[dgl.EID]] for block in blocks]
        variables = dict(zip(self.names, params))
        variables.update(self.buffers)
        return functional_call(self.model, variables, (blocks, self.features[input_nodes]), {"edge_weight": weights})

    def _batch_loss(self, params: Params, edge_weight: torch.Tensor, sampler, seeds: torch.Tensor) -> torch.Tensor:
        out = self._forward_blocks(params, edge_weight, sampler, seeds)
        local = torch.arange(seeds.numel())
        labels = self.data.labels[seeds]
        return task_loss(out, labels, local, self.data.task)

    def _decay(self, params: Params) -> torch.Tensor:
        return 0.5 * self.weight_decay * sum((p * p).sum() for p in params)

    # ------------------------------------------------------------ interface
    def custom_steps(self, params: Params, edge_weight: torch.Tensor, steps: int, monitor=None):
        """``steps`` mini-batch updates (no graph kept); batches walk through shuffled ``v_in``.

        Returns ``(params, optimizer_state, last_loss)`` like the generic loop."""
        weight = edge_weight.detach()
        params = tuple(p.detach().requires_grad_(True) for p in params)
        state = self.optimizer.init(params)
        v_in = self.data.v_in
        order = v_in[torch.randperm(v_in.numel())]
        position, value = 0, float("nan")
        for _ in range(steps):
            if position >= order.numel():
                order, position = v_in[torch.randperm(v_in.numel())], 0
            seeds = order[position : position + self.batch_size]
            position += self.batch_size
            dgl.seed(int(torch.randint(0, 2**31 - 1, (1,))))  # reproducible sampling from torch's generator

            def batch_loss(variables: Params, seeds=seeds) -> torch.Tensor:
                return self._batch_loss(variables, weight, self.sampler, seeds) + self._decay(variables)

            params, state, loss = update_step(batch_loss, self.optimizer, params, state, mode="inplace", monitor=monitor)
            value = float(loss)
        return params, state, value

    def objective_terms(self, edge_weight: torch.Tensor) -> list[Callable[[Params], torch.Tensor]]:
        """Closures whose sum is the full objective: one per batch of ``v_in`` (full neighbourhoods)."""
        v_in, n = self.data.v_in, self.data.v_in.numel()
        terms = []
        for start in range(0, n, self.eval_batch_size):
            seeds = v_in[start : start + self.eval_batch_size]
            share = seeds.numel() / n

            def term(params: Params, seeds=seeds, share=share, first=(start == 0)) -> torch.Tensor:
                value = share * self._batch_loss(params, edge_weight, self.full_sampler, seeds)
                return value + self._decay(params) if first else value

            terms.append(term)
        return terms

    def objective(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        return sum(term(params) for term in self.objective_terms(edge_weight))

    def describe(self) -> dict:
        return {**super().describe(), "sampled": True, "batch_size": self.batch_size, "fanouts": self.fanouts}
