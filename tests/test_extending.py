"""The three extension guides of docs/design.md, run as tests: a new inner problem, a new
hypergradient method and a new data set each plug in with one registration and are then
available to ``fit``, the configuration and the command line."""
from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
import torchopt

import dgl_bilevel as dbl
from dgl_bilevel.cli import command_help, main
from dgl_bilevel.data import DatasetEntry, register
from dgl_bilevel.hypergrad import HypergradMethod, Solution, optimize
from dgl_bilevel.inner import InnerProblem, default_adam
from dgl_bilevel.inner.base import optimizer_from_config
from dgl_bilevel.inner.optimizers import InnerOptimizer
from dgl_bilevel.losses import task_loss
from dgl_bilevel.ops import weighted_sum
from dgl_bilevel.registry import HYPERGRADIENTS, INNER_OPTIMIZERS, INNER_PROBLEMS, STRUCTURES
from dgl_bilevel.structure.base import GraphStructure


# ----------------------------------------------------------------- 1. an inner problem
@INNER_PROBLEMS.register("propagated_linear", help="a linear classifier on once-propagated features (example)")
class PropagatedLinear(InnerProblem):
    """``softmax((X + A_w X) Theta)`` trained on ``v_in``: a one-layer SGC."""

    def __init__(self, steps: int = 50, lr: float = 0.1, init: str = "fresh") -> None:
        super().__init__(steps, default_adam(lr), init)

    @classmethod
    def from_config(cls, config, data) -> "PropagatedLinear":
        return cls(steps=config.inner_steps, lr=config.inner_lr, init=config.inner_init)

    def bind(self, data, graph) -> "PropagatedLinear":
        self.data, self.graph = data, graph
        return self

    def initial_params(self, generator):
        return (0.01 * torch.randn(self.data.num_features, self.data.out_dim, generator=generator,
                                   dtype=self.data.features.dtype),)

    def predict(self, params, edge_weight):
        x = self.data.features
        return (x + weighted_sum(self.graph, x, edge_weight)) @ params[0]

    def objective(self, params, edge_weight):
        return task_loss(self.predict(params, edge_weight), self.data.labels, self.data.v_in, self.data.task)


def test_a_new_inner_problem_runs_in_fit_and_from_the_command_line(tiny, tmp_path):
    structure = dbl.EdgeWeights(tiny.graph, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = dbl.fit(tiny, structure, PropagatedLinear(steps=20), "unrolled", outer_steps=3, progress=False)
    assert len(result.history) == 3 and result.history[0]["v_in_acc"] >= 0
    assert "propagated_linear" in command_help("run")
    assert main(["run", "--dataset", "cheaters", "--inner", "propagated_linear", "--outer-steps", "2",
                 "--inner-steps", "5", "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "cheaters-propagated_linear-bo" / "summary.json").is_file()


# ----------------------------------------------------------------- 2. a hypergradient method
@HYPERGRADIENTS.register("last_step", help="differentiate the last inner step only (example)", options={})
class LastStep(HypergradMethod):
    """All inner steps but the last without a graph, the last one differentiated."""

    name = "last_step"

    def solve(self, problem, edge_weight, params, monitor=None):
        params, state, _ = optimize(problem, edge_weight, params, problem.steps - 1, differentiable=False)
        params, _, value = optimize(problem, edge_weight, params, 1, differentiable=True, state=state)
        return Solution(params, value)


def test_a_new_hypergradient_method_equals_what_it_claims(tiny):
    weights = torch.rand(tiny.num_edges, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def hypergradient(method):
        w = weights.clone().requires_grad_(True)
        inner = PropagatedLinear(steps=10, init="fixed").bind_once(tiny, tiny.graph)
        inner._fixed = (torch.full((tiny.num_features, tiny.out_dim), 0.01, dtype=torch.float64),)
        solution = method.solve(inner, w, inner.starting_params())
        loss = F.cross_entropy(inner.predict(solution.params, w)[tiny.v_out], tiny.labels[tiny.v_out])
        return torch.autograd.grad(loss, w)[0]

    ours, reference = hypergradient(dbl.hypergrad.get_method("last_step")), hypergradient(dbl.Truncated(k=1))
    assert torch.allclose(ours, reference, rtol=1e-12, atol=1e-15) and ours.abs().sum() > 0


# ----------------------------------------------------------------- 3. a data set
def _ring(root, seed):
    from dgl_bilevel._dgl import dgl

    n = 40
    src = torch.arange(n)
    graph = dgl.graph((torch.cat([src, (src + 1) % n]), torch.cat([(src + 1) % n, src])), num_nodes=n)
    labels = (src // 10) % 2
    features = torch.nn.functional.one_hot(labels, 2).float() + 0.1 * torch.rand(n, 2, generator=torch.Generator().manual_seed(seed))
    return dbl.BilevelData(graph, features, labels, v_in=src[::4], v_out=src[1::4], val=src[2::4], test=src[3::4],
                           name="ring")


def test_a_new_data_set_is_listed_and_runs(tmp_path, capsys):
    register(DatasetEntry("ring", "a 40-node ring with two label blocks (example)", _ring))
    assert main(["datasets"]) == 0 and "ring" in capsys.readouterr().out
    assert main(["run", "--dataset", "ring", "--outer-steps", "2", "--inner-steps", "5", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    summary = json.loads((tmp_path / "ring-gnn-bo" / "summary.json").read_text())
    assert summary["per_seed"][0]["outer_iterations"] == 2


# ----------------------------------------------------------------- 4. a graph structure
@STRUCTURES.register("scaled_observed", help="one learnable scale on every observed edge (example)")
class ScaledObserved(GraphStructure):
    """``w = softplus(a) * w_obs``: one parameter for the whole graph."""

    def __init__(self, graph) -> None:
        super().__init__()
        self.graph = graph
        self.raw = torch.nn.Parameter(torch.zeros(()))

    @classmethod
    def from_config(cls, config, data, support, generator=None) -> "ScaledObserved":
        return cls(support).to(data.features.dtype)

    def forward(self) -> torch.Tensor:
        return F.softplus(self.raw) * torch.ones(self.graph.num_edges(), dtype=self.raw.dtype)


def test_a_new_structure_learns_from_the_command_line(tmp_path):
    assert "scaled_observed" in command_help("run")
    assert main(["run", "--dataset", "cheaters", "--structure", "scaled_observed", "--outer-steps", "3",
                 "--inner-steps", "5", "--out", str(tmp_path), "--name", "scaled", "--no-progress"]) == 0
    from dgl_bilevel._dgl import dgl

    assert len(json.loads((tmp_path / "scaled" / "seed_0.json").read_text())["history"]) == 3
    (graph,), _ = dgl.load_graphs(str(tmp_path / "scaled" / "graph_seed0.bin"))
    weights = graph.edata["w"]
    assert torch.all(weights == weights[0]) and abs(float(weights[0]) - math.log(2.0)) > 1e-6  # the scale moved


# ----------------------------------------------------------------- 5. an inner optimizer
@INNER_OPTIMIZERS.register("sgd_momentum", help="torchopt SGD with momentum 0.9 (example)")
def sgd_momentum(config) -> InnerOptimizer:
    return InnerOptimizer(torchopt.sgd(config.inner_lr, momentum=0.9), elementwise=True)


def test_a_new_inner_optimizer_is_an_option_and_runs(tiny, tmp_path):
    assert "sgd_momentum" in command_help("run")
    assert main(["run", "--dataset", "cheaters", "--inner-optimizer", "sgd_momentum", "--outer-steps", "2",
                 "--inner-steps", "5", "--out", str(tmp_path), "--name", "momentum", "--no-progress"]) == 0
    config = dbl.ExperimentConfig(dataset="cheaters", inner_optimizer="sgd_momentum", inner_lr=0.1)
    inner = PropagatedLinear(steps=3)
    inner.optimizer = optimizer_from_config(config)
    inner.bind_once(tiny, tiny.graph)
    params = inner.starting_params(torch.Generator().manual_seed(0))
    w = torch.ones(tiny.num_edges, dtype=torch.float64)
    ours = dbl.Unrolled().solve(inner, w, params).params[0]
    # the same three steps written out: v <- 0.9 v + g, theta <- theta - lr v
    theta, velocity = params[0].clone().requires_grad_(True), torch.zeros_like(params[0])
    for _ in range(3):
        (grad,) = torch.autograd.grad(inner.objective((theta,), w), theta)
        velocity = 0.9 * velocity + grad
        theta = (theta - 0.1 * velocity).detach().requires_grad_(True)
    assert torch.allclose(ours, theta, rtol=1e-12, atol=1e-14)
