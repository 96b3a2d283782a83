"""Seeds as Ray tasks: the same results as local runs, and a killed worker loses nothing."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from dgl_bilevel.cli import main
from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.experiment import run_experiment

TESTS = Path(__file__).resolve().parent
ARGS = ["run", "--dataset", "cheaters", "--seeds", "2", "--outer-steps", "4", "--inner-steps", "5",
        "--checkpoint-every", "1", "--no-progress"]


@pytest.fixture(scope="module")
def local_ray():
    import ray  # the test extra installs it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                                       "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def _histories(folder: Path) -> dict:
    out = {}
    for seed in (0, 1):
        record = json.loads((folder / "cheaters-gnn-bo" / f"seed_{seed}.json").read_text())
        out[seed] = ([r["outer_loss"] for r in record["history"]], record["result"]["test_acc"])
    return out


def test_ray_seeds_equal_local_seeds(local_ray, tmp_path):
    assert main(ARGS + ["--out", str(tmp_path / "local")]) == 0
    assert main(ARGS + ["--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert _histories(tmp_path / "ray") == _histories(tmp_path / "local")


class KillWorkerOnce:
    """Kills the worker running seed 1 at outer iteration 2, the first time only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, state) -> None:
        if state.iteration == 2 and state.data.extras.get("seed") == 1 and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_resumes_its_seed_from_the_checkpoint(local_ray, tmp_path):
    reference = tmp_path / "reference"
    assert main(ARGS + ["--out", str(reference)]) == 0
    marker = tmp_path / "killed"
    config = ExperimentConfig(dataset="cheaters", seeds=2, outer_steps=4, inner_steps=5, checkpoint_every=1,
                              progress=False, executor="ray", out=str(tmp_path / "faulty"))
    run_experiment(config, echo=lambda line: None, callbacks=[KillWorkerOnce(str(marker))])
    assert marker.is_file()  # the kill happened
    assert _histories(tmp_path / "faulty") == _histories(reference)  # and nothing was lost or done twice
    record = json.loads((tmp_path / "faulty" / "cheaters-gnn-bo" / "seed_1.json").read_text())
    assert [r["iteration"] for r in record["history"]] == [0, 1, 2, 3]


def test_ray_tasks_write_one_log_per_seed(local_ray, tmp_path):
    """--logger with --executor ray: each task builds its seed's logger and writes under the run folder."""
    import csv

    assert main(ARGS + ["--out", str(tmp_path), "--executor", "ray", "--logger", "csv"]) == 0
    run_dir = tmp_path / "cheaters-gnn-bo"
    for seed in (0, 1):
        with (run_dir / "logs" / f"seed_{seed}" / "metrics.csv").open(newline="") as handle:
            logged = [float(row["outer_loss"]) for row in csv.DictReader(handle)]
        history = json.loads((run_dir / f"seed_{seed}.json").read_text())["history"]
        assert logged == [r["outer_loss"] for r in history] and len(logged) == 4


def test_tune_runs_trials_as_ray_tasks(local_ray, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("outer_lr: {low: 0.001, high: 0.1, log: true}\n")
    assert main(["tune", "--dataset", "cheaters", "--outer-steps", "2", "--inner-steps", "3", "--tune-seeds", "1",
                 "--trials", "4", "--space", str(space), "--executor", "ray", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    rows = json.loads((tmp_path / "cheaters-gnn-bo-tune" / "trials.json").read_text())
    assert len(rows) == 4 and all(r["state"] in ("COMPLETE", "PRUNED") for r in rows)
