"""Every executor (sequential, local processes, Ray) keeps the same promises: the sequential run's
records, callbacks and logs in every seed, errors raised here, and -- where seeds run in workers
apart from the caller -- workers that stop with their parent and a dead worker's seeds resumed
from their checkpoints bit for bit.

Ray starts once for the module (a local start takes 10 s or more), and only when a Ray case runs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.experiment import run_experiment
from dgl_bilevel.experiment.executors import (
    ProcessExecutor, RayExecutor, SequentialExecutor, executor_for, total_iterations,
)
from dgl_bilevel.experiment.stacked import SeedTask

TESTS = Path(__file__).resolve().parent
EXECUTORS = ("sequential", "processes", "ray")
#: why the death properties do not apply to the sequential executor (its docstring says the same)
NO_SEPARATE_WORKER = ("exempt: the sequential executor runs every seed in the caller's process, so no worker can "
                      "outlive the caller or die apart from it; a run that dies resumes with --resume "
                      "(tests/test_checkpoints.py)")
WITH_WORKERS = (pytest.param("sequential", marks=pytest.mark.skip(reason=NO_SEPARATE_WORKER)), "processes", "ray")


@pytest.fixture(scope="module")
def local_ray():
    import ray  # the test extra installs it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                                       "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture
def executor(request):
    """The executor's name; Ray is started (once for the module) for the Ray case only."""
    if request.param == "ray":
        request.getfixturevalue("local_ray")
    return request.param


def _config(executor: str, out, **extra) -> ExperimentConfig:
    """Two cheaters seeds (their support graphs differ, so no executor stacks them) on ``executor``."""
    where = {"sequential": {}, "processes": {"workers": 2}, "ray": {"executor": "ray"}}[executor]
    settings = {"dataset": "cheaters", "seeds": 2, "outer_steps": 4, "inner_steps": 5, "checkpoint_every": 1,
                "progress": False, "out": str(out), **where, **extra}
    return ExperimentConfig(**settings)


def _histories(out: Path) -> dict:
    found = {}
    for seed in (0, 1):
        record = json.loads((out / "cheaters-gnn-bo" / f"seed_{seed}.json").read_text())
        found[seed] = ([r["outer_loss"] for r in record["history"]], record["result"]["test_acc"])
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The sequential run's histories and test scores: what every executor must give, bit for bit."""
    out = tmp_path_factory.mktemp("reference")
    run_experiment(_config("sequential", out), echo=lambda line: None)
    return _histories(out)


class KillWorkerOnce:
    """Kills the process running seed 1 at outer iteration ``at``, the first time only."""

    def __init__(self, marker: str, at: int = 2) -> None:
        self.marker, self.at = marker, at

    def __call__(self, state) -> None:
        if state.iteration == self.at and state.data.extras.get("seed") == 1 and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


class FailingCallback:
    """Raises at the first outer iteration (module-level: workers unpickle it)."""

    def __call__(self, state) -> None:
        raise ValueError("a callback failed in a seed")


class RecordPid:
    """Leaves a file named after each process that runs an outer iteration."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __call__(self, state) -> None:
        Path(self.folder, str(os.getpid())).touch()


def test_the_configuration_picks_the_executor(tmp_path):
    def picked(n_seeds: int = 2, **options):
        config = ExperimentConfig(dataset="cheaters", **options)
        return executor_for([SeedTask(config, seed, tmp_path) for seed in range(n_seeds)])

    assert isinstance(picked(), SequentialExecutor)
    assert isinstance(picked(workers=3), ProcessExecutor) and picked(workers=3).workers == 3
    assert isinstance(picked(1, workers=3), SequentialExecutor)  # one seed: no process to start
    assert isinstance(picked(workers=3, method="a_obs"), SequentialExecutor)  # fixed graph: cheaper than a process
    ray = picked(executor="ray", ray_address="head:6379", cpus_per_task=2)
    assert isinstance(ray, RayExecutor) and (ray.address, ray.cpus_per_task) == ("head:6379", 2)
    assert isinstance(picked(0, executor="ray"), SequentialExecutor)  # nothing to run: Ray is not started
    local, remote = ExperimentConfig(dataset="cheaters"), ExperimentConfig(dataset="cheaters", executor="ray")
    with pytest.raises(ConfigError, match="different executors"):
        executor_for([SeedTask(local, 0, tmp_path), SeedTask(remote, 1, tmp_path)])
    bar_total = total_iterations([SeedTask(ExperimentConfig(dataset="cheaters", outer_steps=7), 0, tmp_path),
                                  SeedTask(ExperimentConfig(dataset="cheaters", method="a_obs"), 1, tmp_path)])
    assert bar_total == 7  # one bar counts the outer iterations of seeds that learn a graph


@pytest.mark.parametrize("executor", EXECUTORS, indirect=True)
def test_every_executor_gives_the_sequential_records_and_one_log_per_seed(executor, tmp_path, reference):
    """The same histories and scores bit for bit, and each seed's logger built where the seed runs."""
    import csv

    run_experiment(_config(executor, tmp_path, logger="csv"), echo=lambda line: None)
    assert _histories(tmp_path) == reference
    run_dir = tmp_path / "cheaters-gnn-bo"
    for seed in (0, 1):
        with (run_dir / "logs" / f"seed_{seed}" / "metrics.csv").open(newline="") as handle:
            logged = [float(row["outer_loss"]) for row in csv.DictReader(handle)]
        assert logged == reference[seed][0]


@pytest.mark.parametrize("executor", EXECUTORS, indirect=True)
def test_an_error_in_a_seed_is_raised_here(executor, tmp_path):
    """A callback that raises inside a seed (in a worker process or a Ray task) stops the run with its message."""
    with pytest.raises(Exception, match="a callback failed in a seed"):
        run_experiment(_config(executor, tmp_path), echo=lambda line: None, callbacks=[FailingCallback()])


@pytest.mark.parametrize("executor", WITH_WORKERS, indirect=True)
def test_a_killed_worker_s_seed_resumes_from_its_checkpoint(executor, tmp_path, reference):
    """SIGKILL to the worker running seed 1 mid-run: the seed runs again from its checkpoint (a process
    worker is started again, a Ray task retried) and the run's records are the uninterrupted ones."""
    marker = tmp_path / "killed"
    run_experiment(_config(executor, tmp_path / "faulty"), echo=lambda line: None,
                   callbacks=[KillWorkerOnce(str(marker))])
    assert marker.is_file()  # the kill happened
    assert _histories(tmp_path / "faulty") == reference  # and nothing was lost or done twice
    record = json.loads((tmp_path / "faulty" / "cheaters-gnn-bo" / "seed_1.json").read_text())
    assert [r["iteration"] for r in record["history"]] == [0, 1, 2, 3]


class BarRecorder:
    """Stands in for the executors' progress bar: what it showed at its highest and at the end."""

    shown: list = []

    def __init__(self, tasks, progress, description) -> None:
        self.total, self._n, self.peak = total_iterations(tasks), 0, 0

    @property
    def n(self) -> int:
        return self._n

    @n.setter
    def n(self, value: int) -> None:
        self._n, self.peak = value, max(self.peak, value)

    def update(self, step: int) -> None:
        self.n = self._n + step

    def write(self, line: str) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        BarRecorder.shown.append((self.peak, self._n, self.total))


@pytest.mark.parametrize("executor", WITH_WORKERS, indirect=True)
def test_the_bar_counts_a_restarted_seed_s_iterations_once(executor, tmp_path, monkeypatch):
    """Seed 1 is killed after reporting iteration 2 and resumes from its checkpoint of iteration 1:
    iteration 2 runs twice but the bar counts it once, never passes its total and ends there."""
    from dgl_bilevel.experiment.executors import processes, ray_tasks

    monkeypatch.setattr(processes, "progress_bar", BarRecorder)
    monkeypatch.setattr(ray_tasks, "progress_bar", BarRecorder)
    BarRecorder.shown = []
    marker = tmp_path / "killed"
    run_experiment(_config(executor, tmp_path / "run", checkpoint_every=2), echo=lambda line: None,
                   callbacks=[KillWorkerOnce(str(marker), at=3)])
    assert marker.is_file()
    assert BarRecorder.shown == [(8, 8, 8)]  # (highest, final, total): 2 seeds x 4 iterations


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


DRIVER = """
import sys
from test_executors import RecordPid, _config
from dgl_bilevel.experiment import run_experiment
executor, out, pids = sys.argv[1:]
config = _config(executor, out, outer_steps=400, inner_steps=3, save_graph=False)
run_experiment(config, echo=lambda line: None, callbacks=[RecordPid(pids)])
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("executor", WITH_WORKERS, indirect=True)
def test_workers_stop_when_their_parent_is_killed_and_resume_finishes_the_run(executor, tmp_path):
    """SIGKILL to the process that runs the experiment alone (it reaches no worker): its workers stop
    instead of running on unattended (process workers after writing their checkpoints, as on Ctrl-C;
    Ray ends the dead driver's tasks), and a resumed run finishes every seed."""
    out, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, executor, str(out), str(pids)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    folder = out / "cheaters-gnn-bo"
    try:
        deadline = time.monotonic() + 180
        while not (all((folder / f"checkpoint_seed{s}.pt").is_file() for s in (0, 1))
                   and len(list(pids.iterdir())) >= 2):
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[1][-3000:]
            time.sleep(0.05)
        workers = [int(path.name) for path in pids.iterdir()]
        assert driver.pid not in workers and len(workers) == 2
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 30
        while any(_running(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers kept running after their parent was killed"
            time.sleep(0.1)
    finally:
        try:  # what the killed driver left of its own (Ray's helper processes share its session's group)
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        driver.stderr.close()
    assert not any(folder.glob("seed_*.json"))  # stopped mid-run
    run_experiment(_config(executor, out, outer_steps=400, inner_steps=3, save_graph=False, resume=True),
                   echo=lambda line: None)
    for seed in (0, 1):
        history = json.loads((folder / f"seed_{seed}.json").read_text())["history"]
        assert [r["iteration"] for r in history] == list(range(400))


def test_tune_runs_trials_as_ray_tasks(local_ray, tmp_path):
    from dgl_bilevel.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("outer_lr: {low: 0.001, high: 0.1, log: true}\n")
    assert main(["tune", "--dataset", "cheaters", "--outer-steps", "2", "--inner-steps", "3", "--tune-seeds", "1",
                 "--trials", "4", "--space", str(space), "--executor", "ray", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    rows = json.loads((tmp_path / "cheaters-gnn-bo-tune" / "trials.json").read_text())
    assert len(rows) == 4 and all(r["state"] in ("COMPLETE", "PRUNED") for r in rows)
