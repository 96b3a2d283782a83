"""The reverse engine of unrolled and truncated hypergradients: one option (``Unrolled(reverse=...)``,
``--reverse-engine``, ``reverse_engine:``), ``auto`` choosing as before, an explicit engine the
problem does not qualify for refused with the reason, ``--no-unroll-checkpoint`` a deprecated alias."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
import torchopt

import dgl_bilevel as dbl
from conftest import random_graph_data
from dgl_bilevel.cli import build_parser, config_from_args
from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.data import load_dataset
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.hypergrad import REVERSE_ENGINES, Truncated, Unrolled, get_method
from dgl_bilevel.inner import LaplacianRegularization, TrainedGNN
from dgl_bilevel.losses import task_loss
from dgl_bilevel.models import GCN, SumAggGNN
from dgl_bilevel.registry import HYPERGRADIENTS


def _data(task="classification"):
    return random_graph_data(n=30, num_edges=80, features=6, classes=3, seed=1, task=task)


def _gnn(data, model=None, **kwargs):
    out = data.out_dim
    return TrainedGNN(model or SumAggGNN(6, 5, out), steps=6, **kwargs).bind(data, data.graph)


def _hypergradient(problem, method, data):
    w = (0.3 + torch.rand(data.num_edges, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    w.requires_grad_(True)
    solution = method.solve(problem, w, problem.starting_params(torch.Generator().manual_seed(1)))
    loss = task_loss(problem.predict(solution.params, w), data.labels, data.v_out, data.task)
    (grad,) = torch.autograd.grad(loss, w)
    return grad, solution.info["reverse"]


def test_auto_chooses_as_before():
    data = _data()
    assert _hypergradient(_gnn(data), Unrolled(), data)[1] == "hand-derived"
    assert _hypergradient(_gnn(data, GCN(6, 5, 3)), Unrolled(), data)[1] == "checkpointed"
    dropout = _gnn(data, GCN(6, 5, 3, dropout=0.5), train_mode=True)
    assert _hypergradient(dropout, Unrolled(), data)[1] == "autograd"
    laplacian = LaplacianRegularization(loss="ce", steps=6).bind(data, data.graph)
    assert _hypergradient(laplacian, Truncated(3), data)[1] == "hand-derived"
    cleared = _gnn(data)
    cleared.derivatives = None  # the paper's GNN with its derivatives taken away: recomputed steps
    assert _hypergradient(cleared, Unrolled(), data)[1] == "checkpointed"
    with pytest.raises(ConfigError, match="TrainedGNN's derivatives are None"):
        Unrolled(reverse="hand-derived").check(cleared)


def test_each_engine_runs_what_it_names_and_they_agree():
    data = _data()
    problem = _gnn(data)
    auto, _ = _hypergradient(problem, Unrolled(), data)
    for engine in ("autograd", "checkpointed", "hand-derived"):
        grad, ran = _hypergradient(problem, Unrolled(reverse=engine), data)
        assert ran == engine
        assert float((grad - auto).norm() / auto.norm()) < 1e-11
        if engine == "hand-derived":
            assert torch.equal(grad, auto)  # what auto chose, bit for bit
    grad, ran = _hypergradient(problem, Truncated(3, reverse="checkpointed"), data)
    assert ran == "checkpointed"


class _OwnObjective(TrainedGNN):
    def objective(self, params, edge_weight):
        return super().objective(params, edge_weight) + sum((p ** 4).sum() for p in params)


@pytest.mark.parametrize("case, reason", [
    ("gcn", "the GCN model has no hand-derived derivatives (only SumAggGNN"),
    ("dropout", "the model trains with dropout"),
    ("torchopt-transform", "its inner optimizer is not known to act elementwise"),
    ("own-objective", "_OwnObjective has an objective of its own"),
    ("regression", "written out for cross-entropy"),
    ("label-propagation", "LabelPropagation declares no hand-derived derivatives"),
])
def test_an_explicit_hand_derived_engine_is_refused_with_the_reason(case, reason):
    data = _data("regression" if case == "regression" else "classification")
    if case == "gcn":
        problem = _gnn(data, GCN(6, 5, 3))
    elif case == "dropout":
        problem = _gnn(data, SumAggGNN(6, 5, 3), train_mode=True)
    elif case == "torchopt-transform":
        problem = _gnn(data, optimizer=torchopt.adam(1e-2))
    elif case == "own-objective":
        problem = _OwnObjective(SumAggGNN(6, 5, 3), steps=6).bind(data, data.graph)
    elif case == "regression":
        problem = _gnn(data)
    else:
        problem = dbl.LabelPropagation().bind(data, data.graph)
    for method in (Unrolled(reverse="hand-derived"), Truncated(2, reverse="hand-derived")):
        with pytest.raises(ConfigError, match="reverse engine hand-derived") as caught:
            method.check(problem)
        assert reason in str(caught.value)
    Unrolled().check(problem)  # auto falls back instead


def test_an_explicit_engine_is_refused_before_the_first_outer_iteration():
    data = _data()
    structure = dbl.EdgeWeights(data.graph, generator=torch.Generator().manual_seed(0))
    inner = TrainedGNN(GCN(6, 5, 3), steps=3)
    with pytest.raises(ConfigError, match="the GCN model has no hand-derived derivatives"):
        dbl.fit(data, structure, inner, hypergrad=Unrolled(reverse="hand-derived"), outer_steps=1, progress=False)
    result = dbl.fit(data, structure, inner, hypergrad=get_method("unrolled", reverse="checkpointed"),
                     outer_steps=1, progress=False)
    assert result.config["reverse"] == "checkpointed"


def test_recomputing_a_random_objective_is_refused():
    data = _data()
    problem = _gnn(data, GCN(6, 5, 3, dropout=0.5), train_mode=True)
    with pytest.raises(ConfigError, match="objective is random"):
        Unrolled(reverse="checkpointed").check(problem)
    assert _hypergradient(problem, Unrolled(reverse="autograd"), data)[1] == "autograd"


def test_auto_says_at_debug_level_why_it_is_not_hand_derived(caplog):
    data = _data()
    caplog.set_level(logging.DEBUG, logger="dgl_bilevel.hypergrad.unrolled")
    _hypergradient(_gnn(data, GCN(6, 5, 3)), Unrolled(), data)
    assert "reverse engine auto: checkpointed, not hand-derived (the GCN model has no hand-derived" in caplog.text


def test_the_deprecated_checkpoint_keyword_maps_to_an_engine():
    with pytest.warns(DeprecationWarning, match="checkpoint= is deprecated"):
        assert Unrolled(checkpoint=False).reverse == "autograd"
    with pytest.warns(DeprecationWarning):
        assert Truncated(3, checkpoint=True).reverse == "auto"
    with pytest.raises(ConfigError, match="not both"), pytest.warns(DeprecationWarning):
        Unrolled(reverse="checkpointed", checkpoint=False)
    with pytest.raises(ConfigError, match="reverse must be one of auto, autograd, checkpointed, hand-derived"):
        Unrolled(reverse="graph")


def test_the_configuration_declares_the_engines_the_methods_take():
    field = next(f for f in dataclasses.fields(ExperimentConfig) if f.name == "reverse_engine")
    assert field.metadata["choices"] == REVERSE_ENGINES and field.default == "auto"
    for name, options in (("unrolled", {}), ("truncated", {"truncate_k": 3})):
        for engine in REVERSE_ENGINES:
            config = ExperimentConfig(dataset="cheaters", hypergrad=name, reverse_engine=engine, **options).resolved()
            assert HYPERGRADIENTS.from_config(name, config).reverse == engine


def test_no_unroll_checkpoint_is_a_deprecated_alias_of_autograd(capsys):
    with pytest.warns(DeprecationWarning, match="use --reverse-engine autograd"):
        config = ExperimentConfig(dataset="cheaters", unroll_checkpoint=False).resolved()
    assert config.reverse_engine == "autograd" and config.unroll_checkpoint
    assert "unroll_checkpoint" not in config.to_dict(nested=False)  # written configs say reverse_engine
    assert HYPERGRADIENTS.from_config("unrolled", config).reverse == "autograd"
    args = build_parser("run").parse_args(["run", "--no-unroll-checkpoint"])
    config = config_from_args(args)
    assert "warning: --no-unroll-checkpoint (unroll_checkpoint: false) is deprecated" in capsys.readouterr().err
    with pytest.warns(DeprecationWarning):
        assert config.resolved().reverse_engine == "autograd"
    args = build_parser("run").parse_args(["run", "--reverse-engine", "hand-derived"])
    assert config_from_args(args).reverse_engine == "hand-derived" and capsys.readouterr().err == ""


def test_autograd_unroll_accepts_a_constant_start():
    """``initial_params`` returns tensors without grad; every engine must take them as the start."""
    data = load_dataset("cheaters", None, 0).to(torch.float64)
    inner = dbl.TrainedGNN(dbl.models.GCN(data.num_features, 8, data.out_dim), steps=3)
    inner.bind(data, data.graph)
    start = inner.initial_params(torch.Generator().manual_seed(0))
    assert not any(p.requires_grad for p in start)
    grads = []
    for engine in ("autograd", "checkpointed"):
        w = data.observed_weights().clone().requires_grad_(True)
        solution = dbl.Unrolled(reverse=engine).solve(inner, w, start)
        loss = inner.predict(solution.params, w)[data.v_out].logsumexp(1).sum()
        grads.append(torch.autograd.grad(loss, w)[0])
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-13)
