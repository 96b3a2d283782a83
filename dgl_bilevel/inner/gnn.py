"""Inner problem: train a GNN on ``v_in`` over the weighted graph."""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torchopt
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError
from ..losses import task_loss
from ..ops import maybe_sparse
from ..models import build_model
from ..registry import INNER_PROBLEMS
from .optimizers import InnerOptimizer
from .sumagg_derivatives import SumAggDerivatives, unsupported
from .base import InnerProblem, Params, default_adam, optimizer_from_config


REINIT = ("xavier", "module")


@INNER_PROBLEMS.register("gnn", help="a GNN (--model) trained on v_in by a differentiable optimizer")
class TrainedGNN(InnerProblem):
    """``g(phi, w) = loss(model_phi(G_w, X)[v_in], y[v_in]) + weight_decay/2 * ||phi||^2``.

    Args:
        model: an ``nn.Module`` called as ``model(graph, feat, edge_weight=w)`` -- one of
            :mod:`dgl_bilevel.models` or any ``dgl.nn``-style module. Its own parameter values
            are only used for shapes (and as the start with ``init="fixed"`` if ``keep_init``).
        steps: inner training steps (paper: 100 on Cora, 200 on cheaters).
        lr: learning rate of the default optimizer (torchopt Adam, ``eps_root=1e-16``).
        optimizer: an :class:`~dgl_bilevel.inner.optimizers.InnerOptimizer` instead of the default, or
            any torchopt ``GradientTransformation`` (then nothing is assumed of it: not elementwise).
        weight_decay: L2 coefficient; it is part of the objective (as coupled weight decay in
            ``torch.optim.Adam``), so implicit differentiation sees it too.
        init: ``"fresh"`` (re-initialisation every outer iteration), ``"fixed"`` or
            ``"warm"``; see :class:`~dgl_bilevel.inner.base.InnerProblem`.
        reinit: how parameters are drawn: ``"xavier"`` (the paper: Xavier-uniform matrices from
            the run's seeded generator, zero biases, and every other vector -- normalisation
            scales and shifts -- at the value the model was built with), or ``"module"`` (each
            submodule's own ``reset_parameters``, under a torch RNG seeded from the generator).
        sparse_features: pass :class:`~dgl_bilevel.ops.SparseFeatures` to models that accept
            them when the features are at most 10% non-zero (``"auto"``), always, or never.
        train_mode: run the objective with the model in training mode (dropout active): a random
            objective, so only unrolled and truncated hypergradients on autograd's graph apply.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``lr <= 0``, ``steps < 1``, a negative ``weight_decay``, an unknown
            ``reinit``, a model without parameters; at :meth:`bind`, a model whose output is
            not one column per class.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> _ = torch.manual_seed(0)  # the model's own draw (only its shapes are used)
        >>> problem = dbl.TrainedGNN(dbl.models.SumAggGNN(6, 4, 2), steps=10, lr=0.1).bind(data, graph)
        >>> params = problem.initial_params(torch.Generator().manual_seed(0))
        >>> problem.names, [tuple(p.shape) for p in params]
        (['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias'], [(6, 8), (4,), (4, 4), (2,)])
        >>> tuple(problem.predict(params, torch.ones(graph.num_edges())).shape)
        (6, 2)
        >>> result = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), problem, hypergrad="unrolled",
        ...                  outer_steps=2, progress=False)
        >>> result.history[0]["differentiated_steps"], result.best_metrics["v_in"]
        (10, 1.0)
    """

    needs_steps = True
    config_options = frozenset({"inner_steps", "inner_lr", "inner_optimizer", "inner_init", "model", "hidden",
                                "layers", "weight_decay", "inner_dropout"})  # what from_config reads

    def __init__(
        self,
        model: nn.Module,
        steps: int = 100,
        lr: float = 1e-2,
        optimizer: "InnerOptimizer | torchopt.base.GradientTransformation | None" = None,
        weight_decay: float = 5e-4,
        init: str = "fresh",
        sparse_features: "str | bool" = "auto",
        reinit: str = "xavier",
        train_mode: bool = False,
    ) -> None:
        if not lr > 0:
            raise ConfigError(f"lr must be > 0, got {lr}")
        super().__init__(steps, optimizer or default_adam(lr), init)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1 for a trained model (0 would keep its random initialisation), "
                              f"got {steps}")
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be an nn.Module, got {type(model).__name__}")
        if reinit not in REINIT:
            raise ConfigError(f"reinit must be one of {REINIT}, got {reinit!r}")
        if weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
        self.reinit = reinit
        #: the objective runs the model in training mode (its dropout active): a random objective, so only
        #: unrolled / truncated hypergradients on autograd's graph apply; predictions stay in eval mode
        self.train_mode = bool(train_mode)
        self.stochastic_objective = self.train_mode
        self.model = model
        self.lr = lr
        self.weight_decay = float(weight_decay)
        self.sparse_features = sparse_features
        self.names = [name for name, _ in model.named_parameters()]
        if not self.names:
            raise ConfigError("model has no parameters to train")

    @classmethod
    def from_config(cls, config, data) -> "TrainedGNN":
        model = build_model(config.model, data.num_features, config.hidden, data.out_dim, num_layers=config.layers,
                            **({"dropout": config.inner_dropout} if config.inner_dropout > 0 else {}))
        problem = cls(model, steps=config.inner_steps, lr=config.inner_lr, optimizer=optimizer_from_config(config),
                      weight_decay=config.weight_decay, init=config.inner_init, train_mode=config.inner_dropout > 0)
        return problem

    def bind(self, data, graph) -> "TrainedGNN":
        self.data, self.graph = data, graph
        dtype = data.features.dtype
        # eval mode: predictions are deterministic; the objective switches to training mode only with train_mode
        self.model = copy.deepcopy(self.model).to(dtype).eval()
        accepts_sparse = getattr(self.model, "accepts_sparse_features", False)
        if self.sparse_features is True and not accepts_sparse:
            raise ConfigError(f"{type(self.model).__name__} does not accept sparse features")
        use_sparse = accepts_sparse and self.sparse_features in (True, "auto")
        self.features = maybe_sparse(data.features, 1.0 if self.sparse_features is True else 0.1) if use_sparse else data.features
        self.buffers = dict(self.model.named_buffers())
        self._built = [p.detach().clone() for p in self.model.parameters()]
        self._dtype = dtype
        self._check_output_width()
        self.derivatives = SumAggDerivatives.for_problem(self) if self.why_no_derivatives() is None else None
        return self

    def why_no_derivatives(self) -> Optional[str]:
        """Why the objective's derivatives are not written out (None when they are: the paper's GNN)."""
        if type(self).objective is not TrainedGNN.objective or type(self).predict is not TrainedGNN.predict:
            return f"{type(self).__name__} has an objective of its own"
        if self.train_mode:
            return "the model trains with dropout (a random objective)"
        return unsupported(self)

    def _check_output_width(self) -> None:
        """One forward pass on the observed graph: the model must output one column per class/target."""
        with torch.no_grad():
            out = self.predict(tuple(self._built), torch.ones(self.graph.num_edges(), dtype=self._dtype))
        expected = (self.data.num_nodes, self.data.out_dim)
        if out.dim() != 2 or tuple(out.shape) != expected:
            raise ConfigError(f"{type(self.model).__name__} outputs shape {tuple(out.shape)} but {self.data.name} needs "
                              f"{expected} (one column per {'class' if self.data.task == 'classification' else 'target'})")

    def initial_params(self, generator: Optional[torch.Generator]) -> Params:
        """A fresh draw following ``reinit`` (see the class docstring)."""
        if self.reinit == "module":
            return self._module_reset(generator)
        params = []
        for name, built in zip(self.names, self._built):
            if built.dim() >= 2:
                fan_in, fan_out = built.shape[-2], built.shape[-1]
                bound = (6.0 / (fan_in + fan_out)) ** 0.5
                p = (torch.rand(built.shape, generator=generator, dtype=self._dtype) * 2 - 1) * bound
            elif name.rsplit(".", 1)[-1] == "bias":
                p = torch.zeros(built.shape, dtype=self._dtype)
            else:  # normalisation scales and other vectors keep the model's own initial values
                p = built.clone()
            params.append(p)
        return tuple(params)

    def _module_reset(self, generator: Optional[torch.Generator]) -> Params:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        model = copy.deepcopy(self.model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in model.modules():
                if module is not model and callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
        return tuple(p.detach().to(self._dtype).clone() for p in model.parameters())

    def predict(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        variables = dict(zip(self.names, params))
        variables.update(self.buffers)
        return functional_call(self.model, variables, (self.graph, self.features), {"edge_weight": edge_weight})

    def objective(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        if self.train_mode:
            self.model.train()
            try:
                out = self.predict(params, edge_weight)
            finally:
                self.model.eval()
        else:
            out = self.predict(params, edge_weight)
        loss = task_loss(out, self.data.labels, self.data.v_in, self.data.task)
        if self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * sum((p * p).sum() for p in params)
        return loss

    def describe(self) -> dict:
        return {
            **super().describe(),
            "model": type(self.model).__name__,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            **({"train_mode": True} if self.train_mode else {}),
        }
