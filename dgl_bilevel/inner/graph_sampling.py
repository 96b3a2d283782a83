"""An inner problem trained on graphs sampled from edge probabilities (LDS's inner problem).

:class:`SampledGraphs` wraps any inner problem. The outer variable it receives is ``theta``, one
probability per support edge; its objective is the wrapped objective averaged over graphs drawn
from ``theta`` (:class:`~dgl_bilevel.structure.sampling.GraphSampler`), and its prediction the
average of the wrapped model's class probabilities over drawn graphs (LDS's expected
prediction), returned as log-probabilities so the outer cross-entropy reads them as logits.

What the hypergradient then estimates: with ``resample="step"`` the inner trajectory is random
and the unrolled (or truncated) hypergradient differentiates the trajectory actually taken with
the straight-through estimate of each sampled graph's derivative -- a stochastic, biased estimate of
the gradient of the expected outer loss, as in LDS. With ``resample="outer"`` the inner problem is
deterministic given the iteration's graphs, so implicit hypergradients apply as well; the
straight-through estimator then reads ``d(loss)/d(graph)`` at the drawn graph as the derivative in
``theta``, and the score estimator gives an unbiased estimate of the gradient of the expected loss.

The wrapper declares no hand-derived derivatives and does not stack across seeds: hand-derived
paths assume one fixed weight vector per solve.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..structure.sampling import GraphSampler, enumerate_graphs
from .base import InnerProblem, Params


class SampledGraphs(InnerProblem):
    """``base`` trained and evaluated on graphs drawn from edge probabilities (module docstring).

    Args:
        base: the inner problem on one graph (e.g. a :class:`~dgl_bilevel.inner.TrainedGNN` of a
            normalised GCN); its steps, optimizer and initialisation are used as they are.
        sampler: how graphs are drawn (usually the structure's own).

    :func:`~dgl_bilevel.fit` wraps the inner problem in one itself when the structure draws
    graphs (a :class:`~dgl_bilevel.BernoulliEdges`); build one to use the inner problem alone.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> structure = dbl.BernoulliEdges(graph, init=0.5)
        >>> base = dbl.TrainedGNN(dbl.models.GCN(6, 4, 2), steps=5)
        >>> problem = SampledGraphs(base, structure.sampler).bind(data, graph)
        >>> params = problem.initial_params(torch.Generator().manual_seed(0))
        >>> log_probabilities = problem.predict(params, structure())  # averaged over drawn graphs
        >>> tuple(log_probabilities.shape), bool(torch.allclose(log_probabilities.exp().sum(1), torch.ones(6)))
        ((6, 2), True)
        >>> problem.derivatives is None  # autograd differentiates it
        True
        >>> dbl.fit(data, structure, base, hypergrad="unrolled", outer_steps=1, progress=False).probabilistic
        True
    """

    def __init__(self, base: InnerProblem, sampler: GraphSampler) -> None:
        super().__init__(base.steps, base.optimizer, base.init)
        self.base, self.sampler = base, sampler
        self.needs_steps = base.needs_steps
        self.stochastic_objective = sampler.stochastic_objective
        self.differentiable_trajectory = base.differentiable_trajectory
        self._masks: Optional[list[torch.Tensor]] = None  # resample="outer": this outer iteration's graphs

    def bind(self, data, graph) -> "SampledGraphs":
        self.base.bind_once(data, graph)
        self.data, self.graph = data, graph
        return self

    def initial_params(self, generator: Optional[torch.Generator]) -> Params:
        return self.base.initial_params(generator)

    def why_no_derivatives(self) -> Optional[str]:
        return "the inner problem trains on graphs sampled from edge probabilities (hand-derived paths assume one " \
               "fixed weight vector per solve)"

    def starting_params(self, generator: Optional[torch.Generator] = None) -> Params:
        """The wrapped problem's start; with ``resample="outer"`` this outer iteration's graphs are
        dropped here, to be drawn from the next ``theta`` the objective sees."""
        self._masks = None
        return self.base.starting_params(generator)

    def remember(self, params: Params) -> None:
        self.base.remember(params)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)

    # ------------------------------------------------------------------ the sampled problem
    def training_graphs(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """The graphs (as edge weights) of one objective evaluation: new ones per call with
        ``resample="step"``, else the outer iteration's (drawn at the first call, redrawn when a
        differentiable ``theta`` replaces the detached one the inner solve used)."""
        if self.sampler.resample == "step":
            return self.sampler.draw(theta, self.sampler.samples)
        if self._masks is None:
            self._masks = [m.detach() for m in self.sampler.draw(theta, self.sampler.samples)]
        if self.sampler.estimator == "ste":
            return [m + (theta - theta.detach()) for m in self._masks]
        return self._masks

    def objective(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        graphs = self.training_graphs(edge_weight)
        return sum(self.base.objective(params, w) for w in graphs) / len(graphs)

    def predict(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        """Average prediction over drawn graphs (``eval_samples`` of them; with the score estimator,
        the iteration's training graphs), or on ``theta`` itself when ``eval_samples`` is 0."""
        if self.sampler.exact_predictions:
            masks, probabilities = enumerate_graphs(edge_weight.detach(), self.sampler.pair_index)
            outputs = [self.base.predict(params, m + (edge_weight - edge_weight.detach())) for m in masks]
            return average_predictions(outputs, self.data.task, probabilities)
        if self.sampler.estimator == "score" and self._masks is not None:
            graphs = self._masks
        elif self.sampler.eval_samples == 0:
            return self.base.predict(params, edge_weight)
        else:
            graphs = self.sampler.draw(edge_weight, self.sampler.eval_samples)
        return average_predictions([self.base.predict(params, w) for w in graphs], self.data.task)

    def outer_surrogate(self, loss: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        if self.sampler.estimator != "score" or self._masks is None:
            return loss
        return self.sampler.surrogate(loss, self._masks, edge_weight)

    def describe(self) -> dict:
        return {**self.base.describe(), **self.sampler.describe()}


def average_predictions(outputs: list[torch.Tensor], task: str,
                        weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The (``weights``-weighted, default uniform) mean prediction of several outputs, in the form
    the task's loss reads.

    Classification: log of the mean class probabilities (a valid logit vector: its softmax is the
    mean); multilabel: the logit of the mean probabilities; regression: the mean.
    """
    if len(outputs) == 1 and weights is None:
        return outputs[0]
    stacked = torch.stack(outputs)
    if weights is None:
        weights = torch.full((len(outputs),), 1.0 / len(outputs), dtype=stacked.dtype)
    shape = (-1,) + (1,) * (stacked.dim() - 1)
    if task == "classification":
        log_w = torch.log(weights.clamp_min(torch.finfo(stacked.dtype).tiny)).reshape(shape)
        return torch.logsumexp(torch.log_softmax(stacked, dim=-1) + log_w, dim=0)
    if task == "multilabel":
        p = (torch.sigmoid(stacked) * weights.reshape(shape)).sum(0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
    return (stacked * weights.reshape(shape)).sum(0)
