"""Seeds split among local worker processes (``--workers``): the same files and results as one process."""
from __future__ import annotations

import json

import pytest

from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.experiment.executors import deal

TOL = 1e-10


def _config(tmp_path, data_root, method, name, **extra):
    return ExperimentConfig.from_mapping({
        "dataset": "cora", "data_root": str(data_root), "inner": "gnn", "method": method, "seeds": 3,
        "outer_steps": 2, "inner_steps": 3, "dtype": "float64", "progress": False, "out": str(tmp_path),
        "name": name, "save_graph": False, **extra})


def test_deal_is_round_robin_without_empty_workers():
    assert deal(list("abcdefg"), 2) == [[0, 2, 4, 6], [1, 3, 5]]
    assert deal(list("abc"), 5) == [[0], [1], [2]]
    assert deal(list("ab"), 1) == [[0, 1]]


def test_workers_need_the_local_executor():
    with pytest.raises(ConfigError, match="--workers 2 splits seeds among local processes"):
        ExperimentConfig.from_mapping({"dataset": "cora", "workers": 2, "executor": "ray"}).resolved()
    with pytest.raises(ConfigError, match="--workers"):
        ExperimentConfig.from_mapping({"dataset": "cora", "workers": 0}).resolved()


def test_pooled_runs_in_two_workers_equal_one_process(tmp_path, data_root):
    """Two configurations' six seeds dealt to two processes (three stacked in each) give every seed's
    results and history of the single-process pooled run, in float64 to 1e-10, and the same files."""
    from dgl_bilevel.experiment import run_experiments

    lines = []
    parallel = run_experiments([_config(tmp_path, data_root, "bo", "bo-workers", workers=2),
                                _config(tmp_path, data_root, "bo+reg", "reg-workers", workers=2)], echo=lines.append)
    assert any("6 seeds in 2 worker processes" in line for line in lines)
    single = run_experiments([_config(tmp_path, data_root, "bo", "bo-one"),
                              _config(tmp_path, data_root, "bo+reg", "reg-one")], echo=lambda _: None)
    for a, b in zip(single, parallel):
        for ra, rb in zip(a["per_seed"], b["per_seed"]):
            assert ra["seed"] == rb["seed"]
            for key in ("v_out_acc", "val_acc", "test_acc", "best_iteration"):
                assert ra[key] == rb[key], key
    # round-robin: worker 0 has bo seeds 0, 2 and bo+reg seed 1; worker 1 the other three
    assert [r["stacked_seeds"] for r in parallel[0]["per_seed"]] == [3, 3, 3]
    for name_a, name_b in (("bo-one", "bo-workers"), ("reg-one", "reg-workers")):
        for seed in range(3):
            ha = json.loads((tmp_path / name_a / f"seed_{seed}.json").read_text())["history"]
            hb = json.loads((tmp_path / name_b / f"seed_{seed}.json").read_text())["history"]
            for x, y in zip(ha, hb):
                assert x["outer_loss"] == pytest.approx(y["outer_loss"], abs=TOL)
        assert (tmp_path / name_b / "summary.json").is_file()


def test_one_run_in_workers_without_stacking(tmp_path, data_root):
    """(What every executor promises -- records, errors, a killed worker, a killed parent -- is in
    tests/test_executors.py; this file keeps what only the process pool does: dealing and stacking shares.)"""
    from dgl_bilevel.experiment import run_experiment

    summary = run_experiment(_config(tmp_path, data_root, "bo", "run-workers", workers=2, stack_seeds="off"),
                             echo=lambda _: None)
    assert [r["seed"] for r in summary["per_seed"]] == [0, 1, 2]
    assert all("stacked_seeds" not in r for r in summary["per_seed"])  # --stack-seeds off: one by one in each worker


def test_ctrl_c_stops_every_worker_and_resume_finishes_as_if_uninterrupted(tmp_path):
    """Ctrl-C at the terminal (SIGINT to the process group) mid-run: every worker checkpoints, the
    CLI says where to resume, and ``--resume`` gives the uninterrupted run's histories bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "dgl_bilevel.cli", "run", "--dataset", "cheaters", "--outer-steps", "400",
            "--inner-steps", "3", "--seeds", "2", "--workers", "2", "--checkpoint-every", "1", "--no-progress",
            "--no-save-graph"]
    run = subprocess.Popen([*args, "--out", str(tmp_path / "cut")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    folder = tmp_path / "cut" / "cheaters-gnn-bo"
    deadline = time.monotonic() + 120
    while not all((folder / f"checkpoint_seed{s}.pt").is_file() for s in (0, 1)):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "rerun the same command with --resume" in err
    assert not any(folder.glob("seed_*.json"))  # interrupted mid-run: no seed finished
    resumed = subprocess.run([*args, "--out", str(tmp_path / "cut"), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    reference = subprocess.run([*args, "--out", str(tmp_path / "whole")], capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    for seed in (0, 1):
        cut = json.loads((folder / f"seed_{seed}.json").read_text())["history"]
        whole = json.loads((tmp_path / "whole" / "cheaters-gnn-bo" / f"seed_{seed}.json").read_text())["history"]
        assert len(cut) == len(whole) == 400
        assert [r["outer_loss"] for r in cut] == [r["outer_loss"] for r in whole]


def test_a_mixed_pool_in_workers_stacks_each_inner_problem_of_a_share(tmp_path, data_root):
    """GNN and Laplacian seeds dealt to two workers: each worker stacks the seeds of its share that share
    an inner problem and runs a lone one alone; results equal one process's."""
    from dgl_bilevel.experiment import run_experiments

    def configs(suffix, workers):
        return [_config(tmp_path, data_root, "bo", f"gnn-{suffix}", workers=workers),
                _config(tmp_path, data_root, "bo", f"lap-{suffix}", inner="laplacian", workers=workers)]

    lines = []
    parallel = run_experiments(configs("workers", 2), echo=lines.append)
    single = run_experiments(configs("one", 1), echo=lambda _: None)
    # round-robin over G0 G1 G2 L0 L1 L2: worker 0 stacks G0, G2 and runs L1 alone; worker 1 runs G1 alone, stacks L0, L2
    assert [r.get("stacked_seeds") for r in parallel[0]["per_seed"]] == [2, None, 2]
    assert [r.get("stacked_seeds") for r in parallel[1]["per_seed"]] == [2, None, 2]
    assert any("[worker 0] seeds in 1 stack and 1 alone" in line for line in lines)
    for a, b in zip(single, parallel):
        for ra, rb in zip(a["per_seed"], b["per_seed"]):
            for key in ("v_out_acc", "val_acc", "test_acc", "best_iteration"):
                assert ra[key] == rb[key], key

