"""Honest baselines (issue 12.2): ``--method a_obs+v_out`` trains the inner problem on V_in ∪ V_out,
the labels bilevel optimisation sees; the merged training set, its effect on every inner problem,
the command line, validation, and recipes/baselines.py."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

import dgl_bilevel as dbl
from dgl_bilevel.cli import main
from dgl_bilevel.data import BilevelData
from dgl_bilevel.errors import ConfigError, DataError
from dgl_bilevel.experiment import ExperimentConfig, MethodPreset, run_data, scarcity_snapshot
from dgl_bilevel.experiment.build import build_inner
from dgl_bilevel.methods import TRAINING_SETS
from dgl_bilevel.registry import METHODS

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _set(t: torch.Tensor) -> set:
    return set(t.tolist())


# --------------------------------------------------------------------------- the merged training set
def test_merged_training_set_is_v_in_union_v_out_and_leaves_val_test_alone(tiny):
    merged = tiny.with_v_out_in_training()
    assert _set(merged.v_in) == _set(tiny.v_in) | _set(tiny.v_out)
    assert merged.v_in.numel() == tiny.v_in.numel() + tiny.v_out.numel()  # no node twice
    assert torch.equal(merged.v_out, tiny.v_out)  # still reported (as a training score)
    assert torch.equal(merged.val, tiny.val) and torch.equal(merged.test, tiny.test)
    assert not _set(merged.v_in) & (_set(merged.val) | _set(merged.test))
    assert merged.v_out_in_training and not tiny.v_out_in_training  # the original is untouched
    assert _set(tiny.v_in) == {0, 1, 2, 3}
    assert merged.with_v_out_in_training() is merged  # idempotent
    assert merged.to(torch.float32).v_out_in_training  # copies keep the flag
    assert "v_in includes v_out" in merged.summary()


def test_merged_data_is_still_validated(tiny):
    merged = tiny.with_v_out_in_training()
    with pytest.raises(DataError, match="overlap"):  # v_in, val and test must stay disjoint
        merged.with_splits(val=[0, 8])
    with pytest.raises(DataError, match="not in v_in"):  # the flag promises v_out inside v_in
        dataclasses.replace(tiny, v_out_in_training=True)
    with pytest.raises(DataError, match="overlap"):  # without the flag v_in and v_out must be disjoint
        dataclasses.replace(merged, v_out_in_training=False)


def test_run_data_follows_the_method_declared_training_set():
    assert METHODS["a_obs+v_out"].training_set == "v_in+v_out" and not METHODS["a_obs+v_out"].learns_graph
    assert {METHODS[m].training_set for m in METHODS.choices() if m != "a_obs+v_out"} == {"v_in"}
    plain = run_data(ExperimentConfig(dataset="cheaters", method="a_obs", dtype="float64").resolved(), 0)
    merged = run_data(ExperimentConfig(dataset="cheaters", method="a_obs+v_out", dtype="float64").resolved(), 0)
    assert merged.features.dtype == torch.float64
    assert _set(merged.v_in) == _set(plain.v_in) | _set(plain.v_out)
    assert torch.equal(merged.val, plain.val) and torch.equal(merged.test, plain.test)


# --------------------------------------------------------------------------- it trains on the extra labels
def _flip_v_out(data: BilevelData) -> BilevelData:
    labels = data.labels.clone()
    labels[data.v_out] = 1 - labels[data.v_out]  # cheaters: pass/fail
    return dataclasses.replace(data, labels=labels)


@pytest.mark.parametrize("inner_name", ["gnn", "laplacian", "lp", "energy"])
def test_inner_objective_depends_on_v_out_labels_only_for_a_obs_plus_v_out(inner_name):
    """The inner objective at fixed parameters changes with V_out's labels under a_obs+v_out, and
    not under a_obs: a method that silently trained on V_in alone would fail this."""
    changed = {}
    for method in ("a_obs", "a_obs+v_out"):
        config = ExperimentConfig(dataset="cheaters", inner=inner_name, method=method, dtype="float64").resolved()
        data = run_data(config, 0)
        values = []
        for version in (data, _flip_v_out(data)):
            inner = build_inner(config, version).bind(version, version.graph)
            start = inner.starting_params(torch.Generator().manual_seed(0))
            gen = torch.Generator().manual_seed(1)
            params = tuple(torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in start)
            values.append(float(inner.objective(params, version.observed_weights())))
        changed[method] = abs(values[0] - values[1]) > 1e-9 * max(1.0, abs(values[0]))
    assert changed == {"a_obs": False, "a_obs+v_out": True}


def test_a_obs_plus_v_out_fits_flipped_v_out_labels_where_a_obs_does_not():
    """End to end on the cheaters line with V_out's labels flipped: trained on them, the Laplacian
    fits them (V_out is a training set); trained on V_in alone, it predicts the true labels there."""
    scores = {}
    for method in ("a_obs", "a_obs+v_out"):
        config = ExperimentConfig(dataset="cheaters", inner="laplacian", method=method, dtype="float64").resolved()
        data = _flip_v_out(run_data(config, 0))
        inner = build_inner(config, data)
        metrics, outputs = dbl.solve_on_graph(data, inner, data.observed_weights(), seed=0)
        scores[method] = (metrics["v_out"], outputs)
    assert scores["a_obs+v_out"][0] == 1.0 and scores["a_obs"][0] < 0.2
    assert not torch.allclose(scores["a_obs"][1], scores["a_obs+v_out"][1])


# --------------------------------------------------------------------------- command line
@pytest.mark.parametrize("inner_name", ["gnn", "laplacian", "lp", "energy"])
def test_cli_runs_a_obs_plus_v_out_for_every_inner_problem(tmp_path, capsys, inner_name):
    steps = [] if inner_name == "lp" else ["--inner-steps", "5"]  # label propagation is exact: the flag is refused
    args = ["run", "--dataset", "cheaters", "--inner", inner_name, "--method", "a_obs+v_out", *steps,
            "--seeds", "2", "--out", str(tmp_path), "--no-progress", "--dtype", "float64"]
    assert main(args) == 0
    run_dir = tmp_path / f"cheaters-{inner_name}-a_obs+v_out"
    seed0 = json.loads((run_dir / "seed_0.json").read_text())
    assert seed0["result"]["training_set"] == "v_in+v_out" and seed0["run_config"]["method"] == "a_obs+v_out"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["training_set"] == "v_in+v_out" and "training score" in summary["note"]
    assert "v_out_acc" in summary["aggregate"]  # kept in the record, labelled as a training score
    out = capsys.readouterr().out
    assert "V_out(train) acc" in out and "V_out score is a training score" in out and "v_in includes v_out" in out
    assert main(args + ["--resume"]) == 0  # resume: same settings, finished seeds skipped
    assert "already finished" in capsys.readouterr().out


def test_cli_plain_a_obs_records_its_training_set(tmp_path, capsys):
    assert main(["run", "--dataset", "cheaters", "--method", "a_obs", "--inner-steps", "3", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    summary = json.loads((tmp_path / "cheaters-gnn-a_obs" / "summary.json").read_text())
    assert summary["training_set"] == "v_in" and "note" not in summary
    assert "V_out(train)" not in capsys.readouterr().out


def test_resume_refuses_results_of_the_other_training_set(tmp_path, capsys):
    common = ["run", "--dataset", "cheaters", "--inner-steps", "3", "--out", str(tmp_path), "--no-progress",
              "--name", "shared"]
    assert main(common + ["--method", "a_obs"]) == 0
    assert main(common + ["--method", "a_obs+v_out", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "method: 'a_obs' there, 'a_obs+v_out' now" in err and "Traceback" not in err


# --------------------------------------------------------------------------- validation
def test_graph_learning_fields_are_ignored_as_by_a_obs():
    """Like ``a_obs``, the preset solves once on the observed graph: outer-problem options resolve
    as they do for ``a_obs`` and do not change the result."""
    extra = dict(structure="g2g", regularizer="log_degree", outer_steps=3, outer_lr=0.5)
    resolved = {m: ExperimentConfig(dataset="cheaters", method=m, inner="lp", **extra).resolved()
                for m in ("a_obs", "a_obs+v_out")}
    same = {k: v for k, v in resolved["a_obs"].to_dict(nested=False).items() if k != "method"}
    assert same == {k: v for k, v in resolved["a_obs+v_out"].to_dict(nested=False).items() if k != "method"}
    assert not resolved["a_obs+v_out"].learns_graph and resolved["a_obs+v_out"].lam == 0.1  # lambda of A_obs
    results = []
    for options in ({}, extra):
        config = ExperimentConfig(dataset="cheaters", method="a_obs+v_out", inner="lp", dtype="float64",
                                  **options).resolved()
        data = run_data(config, 0)
        results.append(dbl.solve_on_graph(data, build_inner(config, data), data.observed_weights())[1])
    assert torch.equal(results[0], results[1])
    for method in ("a_obs", "a_obs+v_out"):  # an incomplete outer structure is refused alike
        with pytest.raises(ConfigError, match="--budget"):
            ExperimentConfig(dataset="cheaters", method=method, structure="topk").resolved()


def test_a_method_that_learns_the_graph_cannot_train_on_v_out():
    assert TRAINING_SETS == ("v_in", "v_in+v_out")
    with pytest.raises(ConfigError, match="outer loss on v_out would be a training loss"):
        MethodPreset("bad", learns_graph=True, training_set="v_in+v_out")
    with pytest.raises(ConfigError, match="training_set must be one of"):
        MethodPreset("bad", learns_graph=False, training_set="v_out")


def test_outer_loop_refuses_merged_data(tiny):
    merged = tiny.with_v_out_in_training()
    with pytest.raises(ConfigError, match="training loss"):
        dbl.fit(merged, dbl.EdgeWeights(merged.graph), dbl.LaplacianRegularization(loss="mse"), outer_steps=1,
                progress=False)
    with pytest.raises(ConfigError, match="learns the graph"):
        scarcity_snapshot(ExperimentConfig(dataset="cheaters", method="a_obs+v_out"))


# --------------------------------------------------------------------------- recipes/baselines.py
@pytest.fixture
def recipe():
    sys.path.insert(0, str(RECIPES))
    try:
        import baselines

        yield baselines
    finally:
        sys.path.remove(str(RECIPES))


RESULTS_MD = """# Results

<!-- table1:start -->
| inner model | row | A_obs | BO | BO+regularization | BO+G2G |
|---|---|---|---|---|---|
| GNN | test, ours, code | 74.0 ± 1.6 | 79.9 ± 1.3 | 80.3 ± 0.8 | 76.1 ± 0.4 |
| GNN | test, ours, text | 73.9 ± 0.6 | 70.0 ± 1.0 | not run | 74.6 ± 0.3 |
| GNN | V_out, ours, code | 74.6 ± 1.8 | 85.5 ± 2.8 | 87.0 ± 1.3 | 74.6 ± 2.2 |
| Laplacian | test, ours, code | 71.8 ± 0.5 | 77.8 ± 0.5 † | 77.7 ± 1.3 † | 75.7 ± 1.1 |
<!-- table1:end -->

<!-- table1-notes:start -->
† marks the cells rerun on\n2026-11-24 (...), the others\nwere rerun on 2026-12-02 (...).
<!-- table1-notes:end -->

## Heterophilous graphs

<!-- heterophilous:start -->
| data set | accuracy | A_obs | BO | BO+regularization | BO+G2G |
|---|---|---|---|---|---|
| texas | test | 76.2 ± 5.5 (5) | 80.5 ± 7.5 (5) | 78.9 ± 7.3 (5) | 78.4 ± 7.6 (5) |
| texas | V_out | 82.0 ± 3.8 (5) | 90.7 ± 6.4 (5) | 91.3 ± 3.8 (5) | 85.3 ± 5.1 (5) |
<!-- heterophilous:end -->

<!-- heterophilous-notes:start -->
Splits. Runs of 2026-11-23 (`results/heterophilous/`).
<!-- heterophilous-notes:end -->
"""


def test_recipe_copies_bo_numbers_with_their_dates(recipe, tmp_path):
    path = tmp_path / "results.md"
    path.write_text(RESULTS_MD)
    bo = recipe.copied_bo(path)
    assert bo[("gnn", "cora")] == ("79.9 ± 1.3", "Table I (runs of 2026-12-02)")  # the code row, not the text row
    assert bo[("laplacian", "cora")] == ("77.8 ± 0.5", "Table I († rerun of 2026-11-24)")
    assert bo[("gnn", "texas")] == ("80.5 ± 7.5", "the heterophilous table (runs of 2026-11-23)")
    # the notes' wording since every code cell comes from one (stacked) run
    path.write_text(RESULTS_MD.replace("† marks the cells rerun on\n2026-11-24 (...), the others\nwere rerun on 2026-12-02 (...).",
                                       'Every "code" cell comes from one run on 2026-12-03 (...).').replace(" †", ""))
    assert recipe.copied_bo(path)[("laplacian", "cora")] == ("77.8 ± 0.5", "Table I (runs of 2026-12-03)")


def test_recipe_selects_by_validation_never_test(recipe, tmp_path):
    def summary(val, test):
        return {"per_seed": [{"seed": 0}, {"seed": 1}],
                "aggregate": {"val_acc": {"mean": val, "std": 0.0}, "test_acc": {"mean": test, "std": 0.0}}}

    grid = [recipe.Cell("x", "gcn", "v_in", h, 0.01) for h in (16, 64)]
    for cell, (val, test) in zip(grid, [(0.7, 0.9), (0.8, 0.1)]):
        (tmp_path / cell.name).mkdir()
        (tmp_path / cell.name / "summary.json").write_text(json.dumps(summary(val, test)))
    chosen, _ = recipe.select(str(tmp_path), grid)
    assert chosen.hidden == 64  # best validation, although its test accuracy is the worse one


def test_recipe_end_to_end_on_cheaters(recipe, tmp_path, capsys):
    """A tiny run of every baseline (2 seeds, a 1-point grid) on the generated cheaters set, the
    table in a new section of a copy of docs/results.md, and a rerun that skips every run."""
    docs = tmp_path / "results.md"
    docs.write_text(RESULTS_MD)
    argv = ["--datasets", "cheaters", "--laplacian", "cheaters", "--seeds", "2", "--hidden", "8", "--lr", "0.05",
            "--inner-steps", "5", "--out", str(tmp_path / "runs"), "--docs", str(docs)]
    table = recipe.main(argv)
    out = capsys.readouterr().out
    assert out.count("] cheaters-") == 10 and "skipped" not in out
    for row in ("GNN eq. (4) | V_in |", "GNN eq. (4) | V_in ∪ V_out |", "GCN, tuned | V_in ∪ V_out |",
                "APPNP, tuned | V_in |", "Laplacian | V_in ∪ V_out |", "label propagation | V_in ∪ V_out |"):
        assert row in table
    assert "not run" not in table and "h 8, lr 0.05" in table
    text = docs.read_text()
    assert text.index("## Honest baselines") < text.index("<!-- baselines:start -->") < text.index("## Heterophilous")
    seed0 = json.loads((tmp_path / "runs" / "cheaters-gnn-v_in+v_out" / "seed_0.json").read_text())
    assert seed0["result"]["training_set"] == "v_in+v_out"
    recipe.main(argv + ["--no-docs"])
    assert capsys.readouterr().out.count("finished earlier, skipped") == 10
