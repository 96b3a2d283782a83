"""Inner problems of several seeds as one inner problem, so every hypergradient method serves them at once.

A stacked problem is an ordinary :class:`~dgl_bilevel.inner.base.InnerProblem`: its objective is
the sum of the seeds' objectives, its parameters the seeds' parameters side by side, its edge
weights the seeds' weights one after the other (:class:`~dgl_bilevel.seeds.stack.SeedStack`).
Because no term couples two seeds, the gradient of the sum with respect to one seed's variables
is that seed's gradient, an elementwise optimizer (Adam, SGD) takes every seed's own step, and
unrolled or checkpointed differentiation of the stack gives every seed's own hypergradient: the
seeds' results equal separate runs up to rounding. Implicit differentiation solves one linear
system for all seeds (block diagonal), so its iterations stop on the joint residual: equal to
separate runs only as far as both are converged.

Which problems stack is declared, per class, in :data:`STACKABLE`; :func:`stack_problems` says
why a list of problems does not stack.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..inner.base import InnerProblem, Params
from ..inner.gnn import TrainedGNN
from ..inner.laplacian import LaplacianRegularization
from ..inner.laplacian_derivatives import LaplacianDerivatives
from ..inner.sumagg_derivatives import SumAggDerivatives
from ..losses import task_loss
from ..ops import DegreeCache, SparseFeatures, weighted_sum
from .stack import SeedStack, same_structure


class NotStackable(ConfigError):
    """These inner problems cannot be solved as one (the message says why).

    A :class:`~dgl_bilevel.errors.ConfigError`: the run falls back to one seed after the other
    (``--stack-seeds auto``) or stops (``--stack-seeds on``).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> other_seed = data.with_splits(v_in=[1, 4], v_out=[0, 5])  # another split of the same graph
        >>> try:
        ...     stack_problems([dbl.LabelPropagation().bind(data, graph)])
        ... except NotStackable as exc:
        ...     print(exc)
        these inner problems cannot be stacked: LabelPropagation does not declare a stacked form
        >>> issubclass(NotStackable, dbl.ConfigError)
        True
    """


class StackedProblem(InnerProblem):
    """Base class: ``S`` bound inner problems of one kind and settings, solved as one.

    ``per_seed_objective`` holds each seed's objective at the last evaluation (a ``[S]`` tensor),
    so that what separate runs report (the last inner objective) can be reported per seed.

    Args:
        problems: the seeds' bound problems (checked by :func:`why_not_stackable`; build stacks
            with :func:`stack_problems`, which picks the subclass).

    A subclass implements the layout (:meth:`stack_params`, :meth:`split_params`) and the
    problem (``objective``, ``predict``); its stack's edge weights are the seeds' weights one
    after the other (``self.stack.edge_weights``).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> other_seed = data.with_splits(v_in=[1, 4], v_out=[0, 5])  # another split of the same graph
        >>> problems = [dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30).bind(d, graph) for d in (data, other_seed)]
        >>> stacked = stack_problems(problems)
        >>> isinstance(stacked, StackedProblem), stacked.num_seeds, stacked.graph.num_nodes()
        (True, 2, 12)
        >>> starts = [p.initial_params(torch.Generator().manual_seed(s)) for s, p in enumerate(problems)]
        >>> params = stacked.stack_params(starts)
        >>> [tuple(p.shape) for p in params], [tuple(p[0].shape) for p in stacked.split_params(params)]
        ([(12, 2)], [(6, 2), (6, 2)])
        >>> weights = stacked.stack.edge_weights([torch.ones(10), torch.ones(10)])
        >>> [tuple(out.shape) for out in stacked.split_outputs(stacked.predict(params, weights))]
        [(6, 2), (6, 2)]
    """

    def __init__(self, problems: Sequence[InnerProblem]) -> None:
        first = problems[0]
        super().__init__(first.steps, first.optimizer, "fresh")  # elementwise: why_not_stackable requires it
        self.needs_steps = first.needs_steps  # a stack of trained models is one (Implicit's default damping)
        self.problems = list(problems)
        self.num_seeds = len(self.problems)
        self.stack = SeedStack(first.graph, self.num_seeds)
        self.data = tuple(p.data for p in self.problems)
        self.graph = self.stack.graph
        self.per_seed_objective: Optional[torch.Tensor] = None

    # -------------------------------------------------------------- layout
    def stack_params(self, per_seed: Sequence[Params]) -> Params:
        """The stack's parameters from each seed's (fresh leaves that require grad)."""
        raise NotImplementedError

    def split_params(self, params: Params) -> list[Params]:
        """Each seed's parameters (views of the stack's)."""
        raise NotImplementedError

    def split_outputs(self, outputs: torch.Tensor) -> list[torch.Tensor]:
        """Each seed's ``[N, C]`` predictions from :meth:`predict`'s ``[S * N, C]``."""
        return self.stack.seed_rows(outputs)

    def initial_params(self, generator: Optional[torch.Generator]) -> Params:
        return self.stack_params([p.initial_params(generator) for p in self.problems])

    def _record(self, per_seed: torch.Tensor) -> torch.Tensor:
        self.per_seed_objective = per_seed.detach()
        return per_seed.sum()

    def why_no_derivatives(self) -> Optional[str]:
        return None if self.derivatives is not None else self.problems[0].why_no_derivatives()

    def describe(self) -> dict:
        return {**self.problems[0].describe(), "stacked_seeds": self.num_seeds}


class StackedGNN(StackedProblem):
    """:class:`~dgl_bilevel.inner.gnn.TrainedGNN` of ``S`` seeds; parameters ``[S, ...]``.

    The model must offer ``forward_seeds(graph, feat, edge_weight, params)`` (``S`` copies at once,
    e.g. :class:`~dgl_bilevel.models.SumAggGNN`).

    Args:
        problems: the seeds' bound :class:`~dgl_bilevel.inner.gnn.TrainedGNN` problems: one model
            class and shape, the same features and settings (:func:`why_not_stackable`).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> other_seed = data.with_splits(v_in=[1, 4], v_out=[0, 5])  # another split of the same graph
        >>> _ = torch.manual_seed(0)
        >>> model = dbl.models.SumAggGNN(6, 4, 2)
        >>> problems = [dbl.TrainedGNN(model, steps=5).bind(d, graph) for d in (data, other_seed)]
        >>> stacked = stack_problems(problems)
        >>> type(stacked).__name__
        'StackedGNN'
        >>> params = stacked.stack_params([p.initial_params(torch.Generator().manual_seed(s))
        ...                                for s, p in enumerate(problems)])
        >>> [tuple(p.shape) for p in params]  # each seed's parameters along a first axis
        [(2, 6, 8), (2, 4), (2, 4, 4), (2, 2)]
        >>> weights = stacked.stack.edge_weights([torch.ones(10), torch.ones(10)])
        >>> alone = problems[1].predict(stacked.split_params(params)[1], torch.ones(10))
        >>> bool(torch.allclose(stacked.split_outputs(stacked.predict(params, weights))[1], alone, atol=1e-6))
        True
    """

    def __init__(self, problems: Sequence[TrainedGNN]) -> None:
        super().__init__(problems)
        first = problems[0]
        self.model, self.names, self.features = first.model, first.names, first.features
        self.weight_decay, self.task = first.weight_decay, first.data.task
        self.labels = first.data.labels
        self.v_in = self.stack.offset([p.data.v_in for p in self.problems])
        if first.derivatives is not None:  # the paper's GNN: hand-derived derivatives, stacked
            self.derivatives = SumAggDerivatives.for_stack(self)

    def stack_params(self, per_seed: Sequence[Params]) -> Params:
        return tuple(torch.stack([p[i].detach() for p in per_seed]).requires_grad_(True)
                     for i in range(len(self.names)))

    def split_params(self, params: Params) -> list[Params]:
        return [tuple(p[s] for p in params) for s in range(self.num_seeds)]

    def predict(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_seeds(self.graph, self.features, edge_weight, dict(zip(self.names, params)))
        return out.reshape(-1, out.shape[-1])

    def objective(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        out = self.predict(params, edge_weight)
        loss = self._per_seed_loss(out)
        if self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * sum(p.reshape(self.num_seeds, -1).pow(2).sum(1) for p in params)
        return self._record(loss)

    def _per_seed_loss(self, out: torch.Tensor) -> torch.Tensor:
        nodes = self.v_in
        if self.task == "classification":
            per_node = F.cross_entropy(out.index_select(0, nodes.index), self.labels.index_select(0, nodes.local),
                                       reduction="none") * nodes.mean_weights(out.dtype)
            return torch.zeros(self.num_seeds, dtype=out.dtype).index_add(0, nodes.seed, per_node)
        return torch.stack([task_loss(rows, self.labels, n_s, self.task)
                            for rows, n_s in zip(self.stack.seed_rows(out), nodes.per_seed)])


class StackedLaplacian(StackedProblem):
    """:class:`~dgl_bilevel.inner.laplacian.LaplacianRegularization` of ``S`` seeds; ``Y`` is ``[S * N, C]``.

    Args:
        problems: the seeds' bound problems, with the same Laplacian settings.

    Example:
        Solving the stack solves every seed as a separate run would:

        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> other_seed = data.with_splits(v_in=[1, 4], v_out=[0, 5])  # another split of the same graph
        >>> problems = [dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30).bind(d, graph) for d in (data, other_seed)]
        >>> from dgl_bilevel.inner import run_steps
        >>> stacked = stack_problems(problems)
        >>> type(stacked).__name__
        'StackedLaplacian'
        >>> starts = [p.initial_params(torch.Generator().manual_seed(s)) for s, p in enumerate(problems)]
        >>> w = torch.ones(10)
        >>> weights = stacked.stack.edge_weights([w, w])
        >>> params, _, _ = run_steps(stacked, weights, stacked.stack_params(starts), 30, differentiable=False)
        >>> together = stacked.split_outputs(stacked.predict(params, weights))
        >>> separate = [p.predict(run_steps(p, w, s, 30, differentiable=False)[0], w) for p, s in zip(problems, starts)]
        >>> [bool(torch.allclose(a, b, atol=1e-6)) for a, b in zip(together, separate)]
        [True, True]
    """

    predictions_use_weights = False

    def __init__(self, problems: Sequence[LaplacianRegularization]) -> None:
        super().__init__(problems)
        first = problems[0]
        self.coef, self.ridge, self.loss_kind = first.coef, first.ridge, first.loss_kind
        self.labels = first.data.labels
        self.targets = torch.cat([p.targets for p in self.problems])  # each seed's zero off its own v_in
        self.v_in = self.stack.offset([p.data.v_in for p in self.problems])
        self._degrees = DegreeCache()
        if first.derivatives is not None:  # each seed's written-out derivatives, stacked
            self.derivatives = LaplacianDerivatives.for_stack(self)

    def stack_params(self, per_seed: Sequence[Params]) -> Params:
        return (torch.cat([p[0].detach() for p in per_seed]).requires_grad_(True),)

    def split_params(self, params: Params) -> list[Params]:
        return [(y,) for y in self.stack.seed_rows(params[0])]

    def predict(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        return params[0]

    def objective(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        (y,) = params
        nodes, seeds = self.v_in, self.num_seeds
        picked, local = y.index_select(0, nodes.index), nodes.local
        if self.loss_kind == "ce":
            per_node = F.cross_entropy(picked, self.labels.index_select(0, local), reduction="none")
        else:
            per_node = ((picked - self.targets.index_select(0, nodes.index)) ** 2).sum(-1)
        fit = torch.zeros(seeds, dtype=y.dtype).index_add(0, nodes.seed, per_node * nodes.mean_weights(y.dtype))
        degree = self._degrees(self.graph, edge_weight, self.stack.reverse)
        per_node_smooth = degree * (y * y).sum(-1) - 2.0 * (y * weighted_sum(self.graph, y, edge_weight)).sum(-1)
        value = fit + self.coef * per_node_smooth.reshape(seeds, -1).sum(1)
        if self.ridge:
            value = value + 0.5 * self.ridge * (y * y).reshape(seeds, -1).sum(1)
        return self._record(value)


# ------------------------------------------------------------------ what stacks
def _gnn_reason(problems: Sequence[TrainedGNN]) -> Optional[str]:
    first = problems[0]
    if not callable(getattr(first.model, "forward_seeds", None)):
        return f"the {type(first.model).__name__} model has no forward_seeds (S copies at once)"
    if first.model.training:
        return "the model is in training mode (dropout): stacked seeds need a deterministic objective"
    for p in problems[1:]:
        if type(p.model) is not type(first.model) or p.names != first.names or \
                any(a.shape != b.shape for a, b in zip(p._built, first._built)):
            return "the seeds' models differ"
        if not _same_tensor_data(p.data.features, first.data.features):
            return "the seeds' node features differ"
    return None


def _laplacian_reason(problems: Sequence[LaplacianRegularization]) -> Optional[str]:
    first = problems[0]
    for p in problems[1:]:
        if (p.coef, p.ridge, p.loss_kind) != (first.coef, first.ridge, first.loss_kind):
            return "the seeds' Laplacian settings differ"
    return None


def _same_tensor_data(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, SparseFeatures) or isinstance(b, SparseFeatures):
        return False
    return a.shape == b.shape and torch.equal(a, b)


#: Inner-problem classes that stack: ``class -> (stacked class, reason it cannot stack or None)``.
STACKABLE: dict[type, tuple[type, Callable[[Sequence], Optional[str]]]] = {
    TrainedGNN: (StackedGNN, _gnn_reason),
    LaplacianRegularization: (StackedLaplacian, _laplacian_reason),
}


def why_not_stackable(problems: Sequence[InnerProblem]) -> Optional[str]:
    """Why these bound problems cannot be solved as one stack; ``None`` when they can.

    Args:
        problems: bound inner problems, one per seed.

    Returns:
        A sentence naming the first obstacle (another kind of problem, different settings,
        graphs, labels or features, an optimizer not known to be elementwise, ...), or ``None``.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> other_seed = data.with_splits(v_in=[1, 4], v_out=[0, 5])  # another split of the same graph
        >>> problems = [dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30).bind(d, graph) for d in (data, other_seed)]
        >>> why_not_stackable(problems) is None
        True
        >>> other = dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30, lam=2.0).bind(other_seed, graph)
        >>> why_not_stackable([problems[0], other])
        "the seeds' inner settings differ"
        >>> why_not_stackable([])
        'no problems'
    """
    if not problems:
        return "no problems"
    first = problems[0]
    kind = STACKABLE.get(type(first))
    if kind is None:
        return f"{type(first).__name__} does not declare a stacked form"
    if any(type(p) is not type(first) for p in problems):
        return "the seeds' inner problems are of different kinds"
    if not all(p.is_bound for p in problems):
        return "every problem must be bound to its data first"
    if any(not p.optimizer.elementwise for p in problems):
        return "the inner optimizer is not known to act elementwise (only the default Adam and SGD are)"
    if any(p.describe() != first.describe() for p in problems):
        return "the seeds' inner settings differ"
    if any(p.stochastic_objective for p in problems):
        return "the inner objective is random (dropout or graphs drawn per step)"
    if any(p.custom_steps is not None for p in problems):
        return "the inner problem trains in its own loop"
    if not same_structure([p.graph for p in problems]):
        return "the seeds' support graphs differ"
    if any(not torch.equal(p.data.labels, first.data.labels) for p in problems[1:]):
        return "the seeds' labels differ"
    return kind[1](problems)


def stack_problems(problems: Sequence[InnerProblem]) -> StackedProblem:
    """One inner problem for ``problems`` (bound, one per seed); :class:`NotStackable` says why not.

    Args:
        problems: bound inner problems, one per seed, of a class in :data:`STACKABLE`.

    Returns:
        The :class:`StackedProblem` subclass :data:`STACKABLE` names for their class; every
        hypergradient method serves it like any inner problem.

    Raises:
        ~dgl_bilevel.seeds.problems.NotStackable: :func:`why_not_stackable` found a reason.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> other_seed = data.with_splits(v_in=[1, 4], v_out=[0, 5])  # another split of the same graph
        >>> problems = [dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30).bind(d, graph) for d in (data, other_seed)]
        >>> stacked = stack_problems(problems)
        >>> type(stacked).__name__, stacked.num_seeds, stacked.graph.num_edges()
        ('StackedLaplacian', 2, 20)
        >>> weights = torch.ones(20, requires_grad=True)  # both seeds' edge weights, one after the other
        >>> starts = [p.initial_params(torch.Generator().manual_seed(s)) for s, p in enumerate(problems)]
        >>> solution = dbl.Unrolled().solve(stacked, weights, stacked.stack_params(starts))
        >>> outputs = stacked.split_outputs(stacked.predict(solution.params, weights))
        >>> [out.argmax(1).tolist() for out in outputs]
        [[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
        >>> loss = sum(out[[1, 4]].sum() for out in outputs)
        >>> tuple(torch.autograd.grad(loss, weights)[0].shape)  # every seed's hypergradient at once
        (20,)
    """
    reason = why_not_stackable(problems)
    if reason is not None:
        raise NotStackable(f"these inner problems cannot be stacked: {reason}")
    return STACKABLE[type(problems[0])][0](problems)
