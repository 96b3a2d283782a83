"""One driver runs every outer loop (outer/driver.py), and one function turns a configuration into a loop
(experiment/build.py::build_loop)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from conftest import random_graph_data
from dgl_bilevel import fit
from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.inner.gnn import TrainedGNN
from dgl_bilevel.models import SumAggGNN
from dgl_bilevel.outer import LogDegree, OuterLoop, fit_loop
from dgl_bilevel.seeds import fit_seeds
from dgl_bilevel.structure.g2g import G2G

import dgl_bilevel.experiment as experiment_package


def _pieces(seed: int = 1):
    """A G2G structure (its dropout draws from torch's global generator) on the tiny float64 graph."""
    data = random_graph_data(seed=0)
    structure = G2G(data.graph, data.features, hidden=4, dropout=0.5, generator=torch.Generator().manual_seed(7))
    return data, structure, TrainedGNN(SumAggGNN(5, 4, 3), steps=4, lr=0.05)


OPTIONS = dict(outer_steps=4, lr=0.05, seed=1, regularizer=LogDegree())


def _history(result) -> list:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in result.history]


def _same_payload(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_payload(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_payload(x, y) for x, y in zip(a, b))
    return a == b


def _checkpoint(path: Path) -> dict:
    payload = torch.load(path, weights_only=True)
    payload["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in payload["history"]]
    return payload


def test_fit_and_fit_seeds_of_one_loop_are_the_same_run(tmp_path):
    """A loop alone steps by its own step() whichever front end runs it: bitwise the same history,
    weights and checkpoint (torch generator included) from fit, fit_loop and fit_seeds."""
    alone = fit(*_pieces(), progress=False, checkpoint=tmp_path / "fit.pt", checkpoint_every=1, **OPTIONS)
    built = fit_loop(OuterLoop(*_pieces(), **OPTIONS), checkpoint=tmp_path / "loop.pt", checkpoint_every=1)
    loop = OuterLoop(*_pieces(), **OPTIONS)
    torch.manual_seed(12345)  # fit_seeds runs each loop on the generator it was built with, whatever torch holds
    outside = torch.get_rng_state()
    (seeded,) = fit_seeds([loop], checkpoints_at=[tmp_path / "seeds.pt"], checkpoint_every=1, progress=False)
    assert torch.equal(torch.get_rng_state(), outside)  # and leaves the caller's generator as it was
    for other, path in ((built, "loop.pt"), (seeded, "seeds.pt")):
        assert _history(other) == _history(alone)
        assert "stacked_seeds" not in other.history[0]  # no stack of one
        assert torch.equal(other.final_weights, alone.final_weights)
        assert torch.equal(other.best_weights, alone.best_weights)
        assert _same_payload(_checkpoint(tmp_path / path), _checkpoint(tmp_path / "fit.pt"))


def test_fit_seeds_of_one_loop_resumes_like_fit(tmp_path):
    """Interrupted after two iterations and resumed, fit and fit_seeds of one loop still agree bitwise."""
    for name, run in (("fit", lambda loop, **kw: [fit_loop(loop, checkpoint=kw["path"], checkpoint_every=1,
                                                           resume=kw["resume"])]),
                      ("seeds", lambda loop, **kw: fit_seeds([loop], checkpoints_at=[kw["path"]], checkpoint_every=1,
                                                             resume=kw["resume"], progress=False))):
        run(OuterLoop(*_pieces(), **{**OPTIONS, "outer_steps": 2}), path=tmp_path / f"{name}.pt", resume=False)
        run(OuterLoop(*_pieces(), **OPTIONS), path=tmp_path / f"{name}.pt", resume=True)
    assert _same_payload(_checkpoint(tmp_path / "seeds.pt"), _checkpoint(tmp_path / "fit.pt"))
    uninterrupted = fit(*_pieces(), progress=False, **OPTIONS)
    assert _checkpoint(tmp_path / "fit.pt")["history"] == _history(uninterrupted)


# ---------------------------------------------------------------- one assembly point
EXPERIMENT = Path(experiment_package.__file__).parent


def test_no_experiment_module_but_build_assembles_a_loop():
    """Only experiment/build.py constructs an OuterLoop; the others neither build one nor call fit with pieces."""
    offenders = []
    for path in sorted(EXPERIMENT.glob("*.py")):
        if path.name == "build.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name in ("OuterLoop", "fit"):
                    offenders.append(f"{path.name}:{node.lineno} {name}(...)")
    assert not offenders


QUICK = dict(dataset="cheaters", inner_steps=2, outer_steps=1, progress=False, save_graph=False)


@pytest.fixture
def built(monkeypatch):
    """Counts build_loop calls per experiment module (each imports the one function from build.py)."""
    from dgl_bilevel.experiment import build, crossfit, run, scarcity, stacked, tune

    calls: dict = {}
    for module in (run, stacked, tune, scarcity, crossfit):
        assert module.build_loop is build.build_loop

        def counted(*args, _name=module.__name__.rsplit(".", 1)[1], **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return build.build_loop(*args, **kwargs)

        monkeypatch.setattr(module, "build_loop", counted)
    return calls


def test_run_stacked_tune_scarcity_and_cross_fit_build_their_loops_in_one_place(built, tmp_path):
    from dgl_bilevel.experiment import run_experiment, scarcity_snapshot
    from dgl_bilevel.experiment.stacked import SeedTask, run_tasks_stacked
    from dgl_bilevel.experiment.tune import evaluate_trial

    run_experiment(ExperimentConfig(**QUICK, seeds=1, out=str(tmp_path), name="one"), echo=lambda *_: None)
    assert built == {"run": 1}
    config = ExperimentConfig(**QUICK, out=str(tmp_path)).resolved()
    run_tasks_stacked([SeedTask(config, seed, tmp_path / "stacked") for seed in (0, 1)], echo=lambda *_: None)
    assert built["stacked"] == 2
    evaluate_trial(config, [0, 1])
    assert built["tune"] == 2
    scarcity_snapshot(ExperimentConfig(**QUICK, out=str(tmp_path)), iteration=0)
    assert built["scarcity"] == 1
    run_experiment(ExperimentConfig(**QUICK, seeds=1, cross_fit=2, out=str(tmp_path), name="cf"), echo=lambda *_: None)
    assert built == {"run": 1, "stacked": 2, "tune": 2, "scarcity": 1, "crossfit": 2}
