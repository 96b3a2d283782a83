"""Seeds stacked into one computation (dgl_bilevel.seeds) give every seed what a separate run gives."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import random_graph_data
from dgl_bilevel import fit
from dgl_bilevel.errors import ConfigError, RunInterrupted
from dgl_bilevel.hypergrad import Implicit
from dgl_bilevel.inner.gnn import TrainedGNN
from dgl_bilevel.inner.laplacian import LaplacianRegularization
from dgl_bilevel.models import GCN, SumAggGNN
from dgl_bilevel.outer import LogDegree, OuterLoop
from dgl_bilevel.seeds import NotStackable, fit_seeds, stack_problems, why_not_lockstep
from dgl_bilevel.structure.edge_weights import EdgeWeights
from dgl_bilevel.structure.g2g import G2G

SEEDS = (0, 1, 2)
TOL = 1e-10


def seed_data(seed: int):
    """The tiny float64 graph with a split of its own per seed (as the bilevel splits are)."""
    data = random_graph_data(seed=0)
    perm = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(seed))
    return data.with_splits(v_in=perm[:4], v_out=perm[4:7], val=perm[7:9], test=perm[9:])


def build(seed: int, inner: str = "gnn", structure: str = "edges", init: str = "fresh"):
    data = seed_data(seed)
    if inner == "gnn":
        problem = TrainedGNN(SumAggGNN(5, 4, 3), steps=6, lr=0.05, init=init)
    else:
        problem = LaplacianRegularization(lam=1.0, steps=8, lr=0.05, init=init)
    generator = torch.Generator().manual_seed(100 + seed)
    if structure == "g2g":  # dropout draws from torch's global generator: each seed must keep its own
        graph = G2G(data.graph, data.features, hidden=4, dropout=0.5, generator=generator)
    else:
        graph = EdgeWeights(data.graph, generator=generator)
    return data, graph, problem


def assert_same_run(alone, together, tol: float = TOL) -> None:
    assert torch.allclose(alone.final_weights, together.final_weights, rtol=0, atol=tol)
    assert torch.allclose(alone.best_weights, together.best_weights, rtol=0, atol=tol)
    assert alone.best_iteration == together.best_iteration
    assert alone.best_metrics == together.best_metrics
    assert len(alone.history) == len(together.history)
    for a, b in zip(alone.history, together.history):
        for key in ("outer_loss", "total_loss", "inner_objective", "v_out_acc", "val_acc", "test_acc"):
            assert a[key] == pytest.approx(b[key], abs=tol), key


CASES = [
    ("gnn", "unrolled", "edges", "fresh", "last", None),
    ("gnn", "unrolled-nockpt", "edges", "fixed", "best_val", None),
    ("gnn", "truncated", "g2g", "fresh", "last", LogDegree()),
    ("laplacian", "unrolled", "edges", "warm", "last", LogDegree()),
    ("laplacian", "implicit", "g2g", "fresh", "best_val", None),
    ("gnn", "implicit-damped", "edges", "fresh", "last", None),  # hand-derived Hessian products, stacked
]


def method(name: str):
    if name == "unrolled-nockpt":
        from dgl_bilevel.hypergrad import Unrolled

        return Unrolled(reverse="autograd")
    if name == "implicit":  # solved to 1e-13: a joint (block-diagonal) solve then equals separate ones
        return Implicit(tol=1e-13, maxiter=500)
    if name == "implicit-damped":  # the GNN's Hessian is indefinite: damped as the CLI does, solved to 1e-13
        return Implicit(tol=1e-13, maxiter=3000, damping=0.1)
    return name


@pytest.mark.parametrize("inner,hypergrad,structure,init,select,regularizer", CASES)
def test_stacked_seeds_equal_separate_runs(inner, hypergrad, structure, init, select, regularizer):
    options = dict(outer_steps=4, lr=0.05, regularizer=regularizer, inner_select=select)
    alone = [fit(*build(s, inner, structure, init), method(hypergrad), seed=s, progress=False, **options)
             for s in SEEDS]
    torch.manual_seed(12345)  # whatever the global generator holds, each stacked seed uses its own
    loops = [OuterLoop(*build(s, inner, structure, init), method(hypergrad), seed=s, **options) for s in SEEDS]
    together = fit_seeds(loops, progress=False)
    for a, b in zip(alone, together):
        assert_same_run(a, b)
    assert together[0].history[0]["stacked_seeds"] == len(SEEDS)


def test_stacked_objective_is_the_sum_and_its_gradient_each_seeds():
    """The stack's objective is the seeds' objectives summed; its gradient in one seed's
    parameters and weights is that seed's gradient alone (float64, exact to rounding)."""
    problems, weights, params = [], [], []
    for s in SEEDS:
        data, graph, problem = build(s)
        problem.bind(data, graph.graph)
        problems.append(problem)
        weights.append(torch.rand(data.num_edges, dtype=torch.float64, generator=torch.Generator().manual_seed(s)))
        params.append(problem.initial_params(torch.Generator().manual_seed(s)))
    stacked = stack_problems(problems)
    w = torch.cat(weights).requires_grad_(True)
    p = stacked.stack_params(params)
    total = stacked.objective(p, w)
    grads = torch.autograd.grad(total, (*p, w))
    for s, problem in enumerate(problems):
        ws = weights[s].clone().requires_grad_(True)
        ps = tuple(x.clone().requires_grad_(True) for x in params[s])
        value = problem.objective(ps, ws)
        assert float(stacked.per_seed_objective[s]) == pytest.approx(float(value.detach()), abs=1e-13)
        expected = torch.autograd.grad(value, (*ps, ws))
        for got, want in zip([g[s] for g in grads[:-1]], expected[:-1]):
            assert torch.allclose(got, want, rtol=0, atol=1e-13)
        edges = slice(s * ws.numel(), (s + 1) * ws.numel())
        assert torch.allclose(grads[-1][edges], expected[-1], rtol=0, atol=1e-13)
        out = stacked.split_outputs(stacked.predict(p, w))[s]
        assert torch.allclose(out, problem.predict(ps, ws), rtol=0, atol=1e-13)


def test_a_non_finite_seed_stops_alone():
    """A seed whose weights turn NaN stops (as it would alone); the others go on exactly as alone."""

    class Poisoned(EdgeWeights):
        def forward(self):
            w = super().forward()
            return w * float("nan") if self.calls_left == 0 else w

        calls_left = 10**9

    def loop(seed):
        data, graph, problem = build(seed, "laplacian")
        poisoned = Poisoned(data.graph, generator=torch.Generator().manual_seed(100 + seed))
        return OuterLoop(data, poisoned if seed == 1 else graph, problem, Implicit(tol=1e-13, maxiter=500),
                         outer_steps=3, lr=0.05, seed=seed)

    loops = [loop(s) for s in SEEDS]
    loops[1].structure.calls_left = 0  # NaN from the first iteration on
    together = fit_seeds(loops, progress=False)
    assert together[1].stopped_early and "non-finite" in together[1].stopped_early
    assert len(together[1].history) == 1
    for s in (0, 2):
        data, graph, problem = build(s, "laplacian")
        alone = fit(data, graph, problem, Implicit(tol=1e-13, maxiter=500), outer_steps=3, lr=0.05, seed=s,
                    progress=False)
        assert_same_run(alone, together[s])


def test_checkpoints_resume_seeds_at_different_iterations(tmp_path):
    """Per-seed checkpoints: interrupt, lose one seed's checkpoint, resume -- equal to one uninterrupted run."""
    paths = [tmp_path / f"checkpoint_seed{s}.pt" for s in SEEDS]

    def loops(steps):
        return [OuterLoop(*build(s), "unrolled", outer_steps=steps, lr=0.05, seed=s) for s in SEEDS]

    class StopAt:
        def __init__(self, iteration):
            self.iteration = iteration

        def __call__(self, state):
            if state.iteration == self.iteration:
                raise KeyboardInterrupt

    first = loops(5)
    first[2].callbacks.append(_as_callback(StopAt(2)))
    with pytest.raises(RunInterrupted):
        fit_seeds(first, checkpoints_at=paths, checkpoint_every=1, progress=False)
    saved = [torch.load(p, weights_only=True)["next_iteration"] for p in paths]
    assert saved[2] == 2 and all(n >= 2 for n in saved)  # seed 2 lost only the iteration in flight
    paths[0].unlink()  # seed 0 starts over; the others continue where they were
    resumed = fit_seeds(loops(5), checkpoints_at=paths, resume=True, progress=False)
    uninterrupted = fit_seeds(loops(5), progress=False)
    for a, b in zip(uninterrupted, resumed):
        assert_same_run(a, b)


def _as_callback(function):
    from dgl_bilevel.outer.callbacks import as_callbacks

    return as_callbacks([function])[0]


def test_what_does_not_stack_says_why():
    data, graph, problem = build(0)
    gcn = TrainedGNN(GCN(5, 4, 3), steps=6, lr=0.05)
    loops = [OuterLoop(data, graph, problem, "unrolled", outer_steps=1),
             OuterLoop(*build(1)[:2], gcn, "unrolled", outer_steps=1)]
    assert "inner settings differ" in why_not_lockstep(loops)  # a GCN beside a sum-aggregation GNN
    alone_gcn = [OuterLoop(*build(s)[:2], TrainedGNN(GCN(5, 4, 3), steps=3), "unrolled", outer_steps=1) for s in SEEDS[:2]]
    assert "forward_seeds" in why_not_lockstep(alone_gcn)
    custom = [OuterLoop(*build(s)[:2], TrainedGNN(SumAggGNN(5, 4, 3), steps=3, optimizer=_sgd()), "unrolled",
                        outer_steps=1) for s in SEEDS[:2]]
    assert "elementwise" in why_not_lockstep(custom)
    methods = [OuterLoop(*build(0), "unrolled", outer_steps=1), OuterLoop(*build(1), "truncated", outer_steps=1)]
    assert "methods differ" in why_not_lockstep(methods)
    with pytest.raises(NotStackable, match="different kinds"):
        lap = build(1, "laplacian")
        lap[2].bind(lap[0], lap[1].graph)
        stack_problems([loops[0].inner, lap[2]])
    with pytest.raises(ConfigError, match="cannot share"):
        fit_seeds(alone_gcn, progress=False)


def _sgd():
    import torchopt

    return torchopt.sgd(0.1)


# ---------------------------------------------------------------- dgl-bilevel run --seeds
def _run(tmp_path, data_root, name, stack, seeds=3, **extra):
    from dgl_bilevel.config import ExperimentConfig
    from dgl_bilevel.experiment import run_experiment

    config = ExperimentConfig.from_mapping({
        "dataset": "cora", "data_root": str(data_root), "inner": "gnn", "method": "bo", "seeds": seeds,
        "outer_steps": 2, "inner_steps": 3, "dtype": "float64", "progress": False, "out": str(tmp_path),
        "name": name, "stack_seeds": stack, "save_graph": False, **extra})
    lines = []
    summary = run_experiment(config, echo=lines.append)
    return summary, lines


def test_run_stacks_seeds_with_the_results_of_separate_runs(tmp_path, data_root):
    stacked, lines = _run(tmp_path, data_root, "stacked", "on")
    assert any("inner problems stacked" in line for line in lines)
    separate, lines = _run(tmp_path, data_root, "separate", "off")
    assert not any("stacked" in line for line in lines)
    for a, b in zip(separate["per_seed"], stacked["per_seed"]):
        for key in ("v_out_acc", "val_acc", "test_acc", "best_iteration"):
            assert a[key] == b[key]
        assert b["stacked_seeds"] == 3 and "stacked_seeds" not in a
    histories = [json.loads((tmp_path / name / "seed_1.json").read_text())["history"] for name in ("separate", "stacked")]
    for a, b in zip(*histories):
        assert a["outer_loss"] == pytest.approx(b["outer_loss"], abs=TOL)


def test_run_auto_falls_back_and_on_refuses(tmp_path, data_root, monkeypatch):
    summary, lines = _run(tmp_path, data_root, "gcn-auto", "auto", seeds=2, model="gcn")
    assert any("one after the other" in line and "forward_seeds" in line for line in lines)
    assert len(summary["per_seed"]) == 2
    with pytest.raises(ConfigError, match="--stack-seeds on"):
        _run(tmp_path, data_root, "gcn-on", "on", seeds=2, model="gcn")
    # a memory budget for one seed at a time: stacks of one, the same results
    import dgl_bilevel.experiment.stacked as stacked_module

    monkeypatch.setattr(stacked_module, "available_memory", lambda: 1)
    small, lines = _run(tmp_path, data_root, "one-at-a-time", "auto", seeds=2)
    assert sum("inner problems stacked" in line for line in lines) == 2
    assert all(r["stacked_seeds"] == 1 for r in small["per_seed"])


def test_run_experiments_pools_the_seeds_of_several_methods(tmp_path, data_root):
    """bo and bo+reg (other structures' settings, the same inner problem) share one stack; each run's
    files and results are those of its own run_experiment."""
    from dgl_bilevel.config import ExperimentConfig
    from dgl_bilevel.experiment import run_experiment, run_experiments

    def config(method, name, stack):
        return ExperimentConfig.from_mapping({
            "dataset": "cora", "data_root": str(data_root), "inner": "gnn", "method": method, "seeds": 2,
            "outer_steps": 2, "inner_steps": 3, "dtype": "float64", "progress": False, "out": str(tmp_path),
            "name": name, "stack_seeds": stack, "save_graph": False})

    lines = []
    pooled = run_experiments([config("bo", "bo-pooled", "auto"), config("bo+reg", "reg-pooled", "auto")],
                             echo=lines.append)
    assert any("bo-pooled seeds 0, 1; reg-pooled seeds 0, 1: inner problems stacked" in line for line in lines)
    alone = [run_experiment(config("bo", "bo-alone", "off"), echo=lambda _: None),
             run_experiment(config("bo+reg", "reg-alone", "off"), echo=lambda _: None)]
    for a, b in zip(alone, pooled):
        assert b["per_seed"][0]["stacked_seeds"] == 4
        for ra, rb in zip(a["per_seed"], b["per_seed"]):
            for key in ("v_out_acc", "val_acc", "test_acc", "best_iteration"):
                assert ra[key] == rb[key], key
    assert (tmp_path / "reg-pooled" / "summary.json").is_file() and (tmp_path / "reg-pooled" / "config.yaml").is_file()


def test_run_experiments_stacks_each_inner_problem_of_a_mixed_pool_apart(tmp_path, data_root):
    """A pool of GNN and Laplacian seeds runs as two stacks (one per inner problem); a configuration
    that shares with none (another hypergradient) runs alone; every result is that of its own run."""
    from dgl_bilevel.config import ExperimentConfig
    from dgl_bilevel.experiment import run_experiment, run_experiments

    def config(inner, name, stack, **extra):
        return ExperimentConfig.from_mapping({
            "dataset": "cora", "data_root": str(data_root), "inner": inner, "method": "bo", "seeds": 2,
            "outer_steps": 2, "inner_steps": 3, "dtype": "float64", "progress": False, "out": str(tmp_path),
            "name": name, "stack_seeds": stack, "save_graph": False, **extra})

    lines = []
    pooled = run_experiments([config("gnn", "gnn-pooled", "auto"), config("laplacian", "lap-pooled", "auto"),
                              config("laplacian", "lone-pooled", "auto", hypergrad="truncated", seeds=1)],
                             echo=lines.append)
    assert any("seeds in 2 stacks and 1 alone" in line for line in lines)
    assert any("gnn-pooled seeds 0, 1: inner problems stacked" in line for line in lines)
    assert any("lap-pooled seeds 0, 1: inner problems stacked" in line for line in lines)
    assert [r.get("stacked_seeds") for r in pooled[0]["per_seed"] + pooled[1]["per_seed"]] == [2, 2, 2, 2]
    assert "stacked_seeds" not in pooled[2]["per_seed"][0]
    alone = [run_experiment(config("gnn", "gnn-alone", "off"), echo=lambda _: None),
             run_experiment(config("laplacian", "lap-alone", "off"), echo=lambda _: None),
             run_experiment(config("laplacian", "lone-alone", "off", hypergrad="truncated", seeds=1), echo=lambda _: None)]
    for a, b in zip(alone, pooled):
        for ra, rb in zip(a["per_seed"], b["per_seed"]):
            for key in ("v_out_acc", "val_acc", "test_acc", "best_iteration"):
                assert ra[key] == rb[key], key
    for name_a, name_b, seeds in (("gnn-alone", "gnn-pooled", 2), ("lap-alone", "lap-pooled", 2), ("lone-alone", "lone-pooled", 1)):
        for seed in range(seeds):
            ha = json.loads((tmp_path / name_a / f"seed_{seed}.json").read_text())["history"]
            hb = json.loads((tmp_path / name_b / f"seed_{seed}.json").read_text())["history"]
            assert len(ha) == len(hb) == 2
            for x, y in zip(ha, hb):
                assert x["outer_loss"] == pytest.approx(y["outer_loss"], abs=TOL)
