"""The implicit hypergradient's one list of solvers, one set of defaults (Python API = command line),
GMRES end to end, and residual warnings whose advice fits the solver that ran."""
from __future__ import annotations

import warnings

import pytest
import torch

import dgl_bilevel as dbl
from conftest import random_graph_data
from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.experiment.build import build_hypergrad, build_inner
from dgl_bilevel.experiment.seed_files import run_data
from dgl_bilevel.hypergrad import Implicit, get_method
from dgl_bilevel.hypergrad.implicit import default_damping
from dgl_bilevel.hypergrad.implicit_diff import ImplicitSolveWarning, SolveOptions
from dgl_bilevel.inner import LaplacianRegularization, TrainedGNN
from dgl_bilevel.losses import task_loss
from dgl_bilevel.models import SumAggGNN
from dgl_bilevel.outer import OuterLoop
from dgl_bilevel.registry import LINEAR_SOLVERS
from dgl_bilevel.seeds import stack_problems
from test_hypergrad import converging, dense_implicit_reference, hypergradient, relative_error


def _weights(data, seed=0):
    return 0.2 + torch.rand(data.num_edges, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------- one list
def test_every_listed_solver_is_accepted_everywhere():
    """The configuration's choices, SolveOptions and Implicit read one registry: each name works in all."""
    config_choices = next(f for f in ExperimentConfig.__dataclass_fields__.values()
                          if f.name == "implicit_solver").metadata["choices"]
    assert config_choices is LINEAR_SOLVERS
    assert set(LINEAR_SOLVERS.choices()) == {"minres", "cg", "gmres", "neumann"}
    for name in LINEAR_SOLVERS.choices():
        ExperimentConfig(dataset="cheaters", hypergrad="implicit", implicit_solver=name).resolved()
        SolveOptions(solve=name)
        assert Implicit(solver=name).solver == name
    with pytest.raises(ConfigError, match="minres, cg, gmres, neumann"):
        Implicit(solver="lu")


# ------------------------------------------------------------------------------------- gmres
def test_implicit_gmres_equals_the_dense_damped_solve_and_reports_its_residual(tiny):
    """GMRES through Implicit: the hypergradient of ``(H + damping I)^-1`` solved densely, to 1e-8 in
    float64 (2-layer GNN: an indefinite Hessian), with the true residual of the damped system reported."""
    problem = TrainedGNN(SumAggGNN(5, 3, 3, num_layers=2), steps=150, optimizer=converging(0.05), weight_decay=0.1)
    w = _weights(tiny)
    delta = 0.05
    method = Implicit(solver="gmres", tol=1e-12, maxiter=500, damping=delta)
    problem.bind(tiny, tiny.graph)
    weight = w.clone().requires_grad_(True)
    solution = method.solve(problem, weight, problem.starting_params(torch.Generator().manual_seed(1)))
    task_loss(problem.predict(solution.params, weight), tiny.labels, tiny.v_out, tiny.task).backward()
    assert solution.info["implicit_converged"] is True
    assert 0 <= solution.info["implicit_residual"] <= 1e-12 and solution.info["implicit_iterations"] >= 1
    assert method.last_solve.residual == solution.info["implicit_residual"]
    expected = dense_implicit_reference(problem, tiny, solution.params, w, delta)
    assert relative_error(weight.grad, expected) < 1e-8
    assert relative_error(dense_implicit_reference(problem, tiny, solution.params, w, 0.0), expected) > 1e-3
    # the same through the configuration (--implicit-solver gmres), which refused it before
    config = ExperimentConfig(dataset="cheaters", hypergrad="implicit", implicit_solver="gmres").resolved()
    built = build_hypergrad(config, problem)
    assert isinstance(built, Implicit) and built.solver == "gmres"


def test_gmres_and_minres_agree_on_the_laplacian(tiny):
    """On a positive definite system (cross-entropy Laplacian, undamped) GMRES and MINRES give one hypergradient."""
    settings = dict(loss="ce", ridge=5e-2, lam=0.2, normalize="none", steps=300, optimizer=converging())
    w = _weights(tiny)
    by_gmres, _ = hypergradient(LaplacianRegularization(**settings), Implicit("gmres", tol=1e-12, maxiter=500), tiny, w)
    by_minres, _ = hypergradient(LaplacianRegularization(**settings), Implicit("minres", tol=1e-12, maxiter=500),
                                 tiny, w)
    assert relative_error(by_gmres, by_minres) < 1e-9


# ------------------------------------------------------------------------------------- defaults
@pytest.mark.parametrize("inner,damping", [("gnn", 1e-3), ("laplacian", 0.0)])
def test_python_and_command_line_defaults_are_the_same(inner, damping):
    """``dbl.fit(..., hypergrad="implicit")`` and ``dgl-bilevel run --hypergrad implicit`` solve with the
    same solver, tolerance, iteration cap and damping -- 1e-3 for a trained model, 0 for the Laplacian."""
    config = ExperimentConfig(dataset="cheaters", inner=inner, hypergrad="implicit").resolved()
    assert config.damping == damping and config.implicit_solver == "minres"
    data = run_data(config, 0)
    problem = build_inner(config, data)
    from_cli = build_hypergrad(config, problem)
    from_python = get_method("implicit")  # what dbl.fit builds for hypergrad="implicit"
    assert from_python.damping is None  # the rule, applied to the problem at solve time
    assert from_python.options_for(problem) == from_cli.options_for(problem)
    assert from_python.options_for(problem).damping == damping == default_damping(type(problem))
    assert (from_python.options_for(problem).tol, from_python.options_for(problem).maxiter) == (1e-2, 200)
    # what a run records: the damping used, as a number, from either entry point
    structure = dbl.EdgeWeights(data.graph)
    loop = OuterLoop(data, structure, problem, from_python, outer_steps=1)
    assert loop.config["damping"] == damping


def test_explicit_damping_is_kept_and_stacks_follow_the_rule():
    data = random_graph_data()
    problems = [TrainedGNN(SumAggGNN(5, 4, 3), steps=3).bind(data, data.graph) for _ in range(2)]
    assert Implicit(damping=0.0).options_for(problems[0]).damping == 0.0
    assert Implicit(damping=0.25).options_for(problems[0]).damping == 0.25
    assert Implicit().describe()["damping"] == "auto"  # not yet checked against a problem
    assert Implicit().options_for(stack_problems(problems)).damping == 1e-3  # a stack of trained models
    laplacians = [LaplacianRegularization(steps=3).bind(data, data.graph) for _ in range(2)]
    assert Implicit().options_for(stack_problems(laplacians)).damping == 0.0


def test_the_python_default_converges_on_coras_gnn(data_root):
    """The issue's case: ``dbl.fit(..., hypergrad="implicit")`` with default settings on Cora's GNN warned
    (MINRES at residual 0.0122 after 200 products, undamped); with the shared default it converges."""
    data = dbl.data.cora(data_root, seed=0)
    inner = TrainedGNN(SumAggGNN(data.num_features, 16, data.num_classes), steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplicitSolveWarning)
        result = dbl.fit(data, dbl.EdgeWeights(data.graph), inner, hypergrad="implicit", outer_steps=1,
                         progress=False)
    record = result.history[0]
    assert record["implicit_converged"] is True and record["implicit_residual"] <= 1e-2
    assert result.config["damping"] == 1e-3


# ------------------------------------------------------------------------------------- warnings
@pytest.mark.parametrize("solver", ["minres", "gmres", "cg"])
def test_residual_warning_advice_fits_the_solver(tiny, solver):
    problem = TrainedGNN(SumAggGNN(5, 4, 3), steps=5)
    method = Implicit(solver=solver, maxiter=1, tol=1e-12)
    with pytest.warns(ImplicitSolveWarning) as record:
        hypergradient(problem, method, tiny, _weights(tiny))
    (message,) = [str(r.message) for r in record if issubclass(r.category, ImplicitSolveWarning)]
    advice = message.split("the hypergradient is inexact.")[1]  # after the "Implicit(solver=...)" it names
    assert advice.startswith(" Raise maxiter (now 1) or damping (now 0.001)")
    if solver == "cg":  # only a solver that cannot handle indefinite Hessians is pointed to MINRES
        assert "use solver='minres'" in advice
    else:
        assert "'minres'" not in advice and "use minres" not in advice.lower()
