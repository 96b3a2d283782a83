"""Bad input on the command line: one table of the 26 inputs of issue 30, each answered by a message
that names what is wrong -- no traceback, nothing started, nothing left on disk -- except
``--outer-steps 0``, which has a documented meaning and says it; then the rules behind the rows
(YAML errors name file, line and option; options the inner problem ignores are refused)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dgl_bilevel._dgl import dgl
from dgl_bilevel.cli import build_parser, config_from_args, main
from dgl_bilevel.config import ExperimentConfig, InnerConfig, read_yaml_options, unread_options
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.registry import INNER_PROBLEMS

REPO = Path(__file__).resolve().parents[1]

# (id, argv -- "{tmp}" is the test's folder, see _files --, exit code, substrings the message must hold)
BAD_INPUTS = [
    # the four of issue 30; --outer-steps 0 has a meaning (docs/usage.md), said when it is used
    ("yaml-syntax", ["run", "--config", "{tmp}/syntax.yaml"], 2,
     ["syntax.yaml, line 2, option 'outer_steps': invalid YAML", "line 3, column 6"]),
    ("yaml-type", ["run", "--config", "{tmp}/typed.yaml"], 2,
     ["typed.yaml, line 2: option 'outer_steps' must be an integer, got 'many'"]),
    ("outer-steps-0", ["run", "--dataset", "cheaters", "--inner-steps", "2", "--outer-steps", "0"], 0,
     ["dgl-bilevel: --outer-steps 0: nothing is learned; each seed's initial graph"]),
    ("model-with-laplacian", ["run", "--inner", "laplacian", "--model", "gcn"], 2,
     ["--model is not read by the laplacian inner problem (only by gnn)"]),
    # already clear before
    ("unknown-dataset", ["run", "--dataset", "nope"], 2, ["--dataset: unknown dataset 'nope'"]),
    ("missing-data-root", ["run", "--data-root", "{tmp}/nowhere"], 2, ["nowhere/planetoid does not exist"]),
    ("negative-outer-lr", ["run", "--outer-lr", "-0.1"], 2, ["--outer-lr must be > 0", "-0.1"]),
    ("hidden-0", ["run", "--hidden", "0"], 2, ["--hidden must be >= 1", "got 0"]),
    ("seeds-negative", ["run", "--seeds", "-1"], 2, ["--seeds must be >= 1", "got -1"]),
    ("unknown-hypergradient", ["run", "--hypergrad", "nope"], 2, ["--hypergrad: unknown hypergradient method 'nope'"]),
    ("missing-config-file", ["run", "--config", "{tmp}/missing.yaml"], 2, ["missing.yaml does not exist"]),
    ("unknown-yaml-key", ["run", "--config", "{tmp}/unknown.yaml"], 2,
     ["unknown.yaml: unknown option(s) outer_stepz at line 2 (did you mean outer_steps?)"]),
    ("not-a-graph-file", ["run", "--dataset", "{tmp}/text.bin"], 2,
     ["text.bin is not a file written by dgl.save_graphs"]),
    ("nan-features", ["run", "--dataset", "{tmp}/nan.bin", "--inner-steps", "2"], 2, ["features contain 1 NaN"]),
    ("topk-budget-0", ["run", "--dataset", "cheaters", "--structure", "topk", "--budget", "0"], 2,
     ["--budget must be > 0"]),
    ("budget-above-edges", ["run", "--dataset", "cheaters", "--structure", "topk", "--budget", "1e9"], 2,
     ["budget 1000000000.0 selects 1000000000 edges; the support has"]),
    ("workers-0", ["run", "--workers", "0"], 2, ["--workers must be >= 1"]),
    ("device-cuda", ["run", "--device", "cuda"], 2, ["--device cuda: dgl_bilevel runs on the CPU only"]),
    ("ogb-without-files", ["run", "--dataset", "ogbn-arxiv", "--data-root", "{tmp}/data"], 2,
     ["ogbn_arxiv does not exist"]),
    ("negative-energy-lam", ["run", "--inner", "energy", "--energy-lam", "-1"], 2, ["--energy-lam must be >= 0"]),
    ("tune-0-trials", ["tune", "--dataset", "cheaters", "--trials", "0"], 2, ["--trials must be >= 1; got 0"]),
    ("unknown-scarcity-inner", ["scarcity", "--inner", "nope"], 2, ["--inner: unknown inner problem 'nope'"]),
    ("missing-heterophilous-file", ["run", "--dataset", "texas", "--data-root", "{tmp}/data"], 2,
     ["texas: missing data file", "heterophilous/texas.npz"]),
    ("negative-inner-steps", ["run", "--inner-steps", "-1"], 2, ["--inner-steps must be >= 0", "got -1"]),
    ("negative-damping", ["run", "--damping", "-1"], 2, ["--damping must be >= 0"]),
    ("unknown-implicit-solver", ["run", "--hypergrad", "implicit", "--implicit-solver", "foo"], 2,
     ["--implicit-solver: unknown linear solver 'foo'", "available: minres, cg, gmres, neumann"]),
    # edge probabilities, protocols, refit and cross-fitting
    ("graph-samples-0", ["run", "--dataset", "cheaters", "--structure", "bernoulli", "--graph-samples", "0"], 2,
     ["--graph-samples must be >= 1"]),
    ("theta-outside-0-1", ["run", "--dataset", "cheaters", "--structure", "bernoulli", "--theta-candidate", "1.5"], 2,
     ["--theta-candidate must lie in [0, 1]"]),
    ("theta-shared-without-bernoulli", ["run", "--dataset", "cheaters", "--theta-shared", "cosine"], 2,
     ["--theta-shared cosine", "needs --structure bernoulli"]),
    ("cross-fit-1", ["run", "--dataset", "cheaters", "--cross-fit", "1"], 2, ["--cross-fit needs at least 2 folds"]),
    ("cross-fit-too-many-folds", ["run", "--dataset", "cheaters", "--inner-steps", "2", "--cross-fit", "500"], 2,
     ["--cross-fit 500: the smallest class has"]),
    ("lds-on-ogb", ["run", "--dataset", "ogbn-arxiv", "--protocol", "lds"], 2, ["OGB's rules"]),
    ("refit-under-lds", ["run", "--dataset", "cheaters", "--protocol", "lds", "--refit"], 2,
     ["--refit trains on V_in ∪ V_out"]),
    ("observed-knn-without-features", ["run", "--dataset", "{tmp}/nofeat.bin", "--support", "observed+knn"], 2,
     ["observed+knn needs node feature vectors"]),
    # the reverse engine: an explicit one the run does not qualify for is refused, saying why
    ("unknown-reverse-engine", ["run", "--reverse-engine", "nope"], 2,
     ["--reverse-engine must be one of auto, autograd, checkpointed, hand-derived", "got 'nope'"]),
    ("hand-derived-for-gcn", ["run", "--dataset", "cheaters", "--inner-steps", "2", "--model", "gcn",
                              "--reverse-engine", "hand-derived"], 2,
     ["reverse engine hand-derived (--reverse-engine) cannot differentiate TrainedGNN's trajectory",
      "the GCN model has no hand-derived derivatives"]),
    ("hand-derived-with-dropout", ["run", "--dataset", "cheaters", "--inner-steps", "2", "--inner-dropout", "0.5",
                                   "--reverse-engine", "hand-derived"], 2, ["the model trains with dropout"]),
    ("checkpointed-with-dropout", ["run", "--dataset", "cheaters", "--inner-steps", "2", "--inner-dropout", "0.5",
                                   "--reverse-engine", "checkpointed"], 2,
     ["reverse engine checkpointed (--reverse-engine) recomputes inner steps", "use autograd"]),
    ("reverse-engine-for-implicit", ["run", "--hypergrad", "implicit", "--reverse-engine", "hand-derived"], 2,
     ["--reverse-engine hand-derived chooses how unrolled and truncated", "--hypergrad implicit differentiates none"]),
    ("reverse-engine-for-default-adjoint", ["run", "--dataset", "cheaters", "--inner", "laplacian", "--laplacian-loss",
                                            "mse", "--reverse-engine", "checkpointed"], 2,
     ["the adjoint hypergradient (the default for LaplacianRegularization) differentiates none"]),
    ("deprecated-flag-against-reverse-engine", ["run", "--no-unroll-checkpoint", "--reverse-engine", "checkpointed"], 2,
     ["--no-unroll-checkpoint (deprecated) means --reverse-engine autograd, and --reverse-engine checkpointed is "
      "given too"]),
]


def _files(tmp: Path) -> None:
    """The files the rows name: broken YAML, a text file, a graph with NaN features, a data root
    with an empty heterophilous folder."""
    (tmp / "syntax.yaml").write_text("dataset: cheaters\nouter_steps: [1\ninner: gnn\n")
    (tmp / "typed.yaml").write_text("dataset: cheaters\nouter_steps: many\n")
    (tmp / "unknown.yaml").write_text("dataset: cheaters\nouter_stepz: 3\n")
    (tmp / "text.bin").write_text("not a graph\n")
    g = dgl.graph(([0, 1, 2, 3], [1, 2, 3, 0]), num_nodes=4)
    g.ndata["feat"] = torch.tensor([[1.0], [float("nan")], [0.0], [1.0]])
    g.ndata["label"] = torch.tensor([0, 1, 0, 1])
    for mask, nodes in (("train_mask", [0, 1]), ("val_mask", [2, 3]), ("test_mask", [0, 3])):
        g.ndata[mask] = torch.zeros(4, dtype=torch.bool).index_fill_(0, torch.tensor(nodes), True)
    dgl.save_graphs(str(tmp / "nan.bin"), [g])
    h = dgl.graph(([0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]), num_nodes=6)  # a graph with no feature columns
    h.ndata["feat"] = torch.zeros(6, 0)
    h.ndata["label"] = torch.tensor([0, 1, 0, 1, 0, 1])
    for mask, nodes in (("train_mask", [0, 1]), ("val_mask", [2, 3]), ("test_mask", [4, 5])):
        h.ndata[mask] = torch.zeros(6, dtype=torch.bool).index_fill_(0, torch.tensor(nodes), True)
    dgl.save_graphs(str(tmp / "nofeat.bin"), [h])
    (tmp / "data" / "heterophilous").mkdir(parents=True)


def test_the_table_holds_the_26_inputs():
    """The 26 inputs of the documentation issue, then 8 of the learned-graph options and 7 of the
    reverse engine, each once."""
    assert len(BAD_INPUTS) == 41 and len({row[0] for row in BAD_INPUTS}) == 41


@pytest.mark.parametrize("argv, code, expected", [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_gets_a_message_not_a_traceback(tmp_path, capsys, argv, code, expected):
    _files(tmp_path)
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--out", str(out), "--no-progress"]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Stack trace" not in err
    for text in expected:
        assert text in err
    if code:
        assert err.startswith("dgl-bilevel: error: ")
        assert not out.exists() or not any(out.iterdir())  # refused before anything was written


# --------------------------------------------------------------------------- --outer-steps 0
def test_outer_steps_0_scores_the_initial_graph_and_says_so(tmp_path, capsys):
    """Documented meaning (docs/usage.md): nothing is learned, each seed's starting graph is scored once."""
    args = ["run", "--dataset", "cheaters", "--inner-steps", "2", "--out", str(tmp_path), "--no-progress"]
    assert main(args + ["--outer-steps", "0"]) == 0
    assert "--outer-steps 0: nothing is learned" in capsys.readouterr().err
    seed = json.loads((tmp_path / "cheaters-gnn-bo" / "seed_0.json").read_text())
    assert seed["history"] == [] and seed["result"]["outer_iterations"] == 0 and seed["result"]["best_iteration"] == 0
    assert main(args + ["--outer-steps", "2", "--name", "two"]) == 0  # the same starting graph, scored before its step
    two = json.loads((tmp_path / "two" / "seed_0.json").read_text())
    for split in ("v_in", "v_out", "val", "test"):
        assert two["history"][0][f"{split}_acc"] == seed["result"][f"{split}_acc"]
    assert main(args + ["--outer-steps", "2", "--resume"]) == 0  # continued from its checkpoint: as if run at once
    resumed = json.loads((tmp_path / "cheaters-gnn-bo" / "seed_0.json").read_text())
    assert [r["outer_loss"] for r in resumed["history"]] == [r["outer_loss"] for r in two["history"]]


# --------------------------------------------------------------------------- YAML
def test_yaml_values_are_read_as_their_options_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("outer:\n  outer_lr: 1e-3\n  outer_steps: 4\ninner:\n  inner_lr: 1\nrun:\n  name: 2024\n")
    values, lines = read_yaml_options(path)
    assert values == {"outer_lr": 0.001, "outer_steps": 4, "inner_lr": 1.0, "name": "2024"}
    assert type(values["inner_lr"]) is float and lines == {"outer_lr": 2, "outer_steps": 3, "inner_lr": 5, "name": 7}


@pytest.mark.parametrize("text, message", [
    ("inner:\n  layers:\n", "line 2: option 'layers' needs a value, got None"),
    ("seeds: 2.5\n", "line 1: option 'seeds' must be an integer, got 2.5"),
    ("progress: 'no'\n", "line 1: option 'progress' must be true or false, got 'no'"),
    ("outer_lr: fast\n", "line 1: option 'outer_lr' must be a number, got 'fast'"),
    ("inner:\n\tinner_steps: 3\n", "line 2, option 'inner_steps': invalid YAML"),
    ("- dataset\n", "expected a mapping of options, got list"),
])
def test_yaml_errors_name_the_file_line_and_option(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_yaml_options(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_a_wrong_type_from_python_is_a_config_error_naming_the_option():
    with pytest.raises(ConfigError, match=r"--outer-steps must be an integer \(option 'outer_steps'.*got 'many'"):
        ExperimentConfig(outer_steps="many").validate()
    with pytest.raises(ConfigError, match="--outer-lr must be a number"):
        ExperimentConfig(outer_lr="1e-3").validate()


# --------------------------------------------------------------------------- options the inner problem ignores
def _config(argv: list, capsys) -> tuple[ExperimentConfig, str]:
    args = build_parser(argv[0]).parse_args(argv)
    config = config_from_args(args)
    return config, capsys.readouterr().err


def test_a_config_file_warns_about_options_its_inner_problem_ignores_where_they_matter(tmp_path, capsys):
    """A file is warned about, not refused: a written config.yaml lists every option. Values the run
    would take anyway (defaults, presets) say nothing."""
    path = tmp_path / "c.yaml"
    path.write_text("dataset: cheaters\ninner: laplacian\nhidden: 64\nmodel: sumagg\nlayers: 2\nlp_alpha: 0.5\n")
    config, err = _config(["run", "--config", str(path)], capsys)
    assert config.inner == "laplacian" and config.hidden == 64
    assert f"warning: {path}, line 3: option 'hidden' (64) has no effect: the laplacian inner problem" in err
    assert f"{path}, line 6: option 'lp_alpha'" in err
    assert "'model'" not in err and "'layers'" not in err  # the defaults: nothing to say
    _, err = _config(["run", "--config", str(path), "--inner", "gnn"], capsys)  # a flag over the file: hidden is read
    assert "'hidden'" not in err and "'lp_alpha' (0.5) has no effect: the gnn inner problem" in err
    path.write_text("dataset: cheaters\ninner: energy\nmodel: gcn\n")  # not the file's data set's preset value
    for dataset in ("cheaters", "cornell"):  # ... whichever data set the file then runs on
        _, err = _config(["run", "--config", str(path), "--dataset", dataset], capsys)
        assert f"{path}, line 3: option 'model' ('gcn') has no effect: the energy inner problem" in err


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_list_every_option_and_draw_no_warning(path, capsys):
    config, err = _config(["run", "--config", str(path)], capsys)
    assert err == "" and config.inner in ("gnn", "laplacian", "energy")
    for other in ("cornell", "cora-noise40", "cheaters"):  # --config ... --dataset NAME, as a user tries it elsewhere
        config, err = _config(["run", "--config", str(path), "--dataset", other], capsys)
        assert err == "" and config.dataset == other


def test_flags_the_inner_problem_ignores_are_refused_and_a_method_preset_is_not_overridden(capsys):
    with pytest.raises(ConfigError, match="--inner-steps is not read by the lp inner problem"):
        _config(["run", "--method", "lp", "--inner-steps", "5"], capsys)  # label propagation is solved exactly
    with pytest.raises(ConfigError, match=r"--hidden, --lam are not read by the lp inner problem \(only by: "
                                          r"--hidden: gnn, energy; --lam: laplacian\)"):
        _config(["run", "--inner", "lp", "--hidden", "8", "--lam", "2"], capsys)
    with pytest.raises(ConfigError, match="--method lp runs the lp inner problem: --inner gnn would be ignored"):
        _config(["run", "--method", "lp", "--inner", "gnn"], capsys)
    config, err = _config(["run", "--inner", "energy", "--hidden", "8", "--energy-lam", "2"], capsys)  # read: fine
    assert config.hidden == 8 and err == ""


def test_each_inner_problem_declares_exactly_the_options_from_config_reads(tiny):
    """The declarations behind the refusals match the code: record what ``from_config`` reads."""
    inner_options = {f.name for f in dataclasses.fields(InnerConfig)} - {"inner"}

    class Recording:
        def __init__(self, config):
            self.config, self.read = config, set()

        def __getattr__(self, name):
            self.read.add(name)
            return getattr(self.config, name)

    for name, cls in INNER_PROBLEMS.items():
        if getattr(cls, "config_options", None) is None:
            continue
        recording = Recording(ExperimentConfig(dataset="cheaters", inner=name).resolved())
        INNER_PROBLEMS.from_config(name, recording, tiny)
        assert recording.read & inner_options == set(cls.config_options), name
    assert unread_options("gnn", ["model", "hidden", "seeds", "outer_lr"]) == {}
    assert unread_options("laplacian", ["model", "lam", "seeds"]) == {"model": ("gnn",)}
