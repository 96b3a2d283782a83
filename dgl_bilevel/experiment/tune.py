"""Hyper-parameter search with Optuna: validation scores only, several seeds per trial, pruning.

Each trial samples options from a search space, runs ``seeds`` seeds of the configuration and
scores it by the mean best *validation* score (test scores are never read). A median pruner
stops trials whose running validation score falls behind the median of earlier trials at the
same outer iteration. The study lives in a journal file, so an interrupted search resumes where
it stopped; with ``--executor ray`` trials run in parallel Ray tasks that share the study. The
best configuration is written as a YAML file that ``dgl-bilevel run --config`` reruns.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..config import ExperimentConfig, write_yaml
from ..data import load_dataset
from ..errors import ConfigError
from ..outer import Callback, IterationState, fit_loop
from .build import build_loop
from .seed_files import run_data


@dataclass(frozen=True)
class Param:
    """One searched option: a float range (optionally log-scaled), an int range, or choices."""

    name: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    integer: bool = False
    choices: Optional[tuple] = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def default_space(config: ExperimentConfig) -> list[Param]:
    """The options worth searching for this configuration's inner problem, structure and regulariser."""
    space = [Param("outer_lr", 1e-4, 1e-1, log=True), Param("inner_lr", 1e-3, 1e-1, log=True)]
    if config.inner in ("gnn", "energy"):
        space += [Param("hidden", choices=(16, 32, 64, 128)), Param("inner_steps", choices=(50, 100, 200))]
    if config.inner == "laplacian":
        space += [Param("lam", 1e-2, 1e1, log=True)]
    if config.inner == "energy":
        space += [Param("energy_lam", 1e-1, 1e1, log=True)]
    if config.regularizer == "log_degree":
        space += [Param("reg_gamma", 1e-2, 1e1, log=True)]
    if config.structure == "g2g":
        space += [Param("g2g_hidden", choices=(16, 32, 64))]
    return space


def space_from_yaml(path: "str | Path") -> list[Param]:
    """``name: {low, high, log}``, ``name: {int: [low, high]}`` or ``name: {choices: [...]}`` per option."""
    import yaml

    with open(path) as handle:
        raw = yaml.safe_load(handle) or {}
    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    space = []
    for name, spec in raw.items():
        if name not in names:
            raise ConfigError(f"search space {path}: {name!r} is not an option of the configuration")
        if not isinstance(spec, dict):
            raise ConfigError(f"search space {path}: {name} needs a mapping (low/high/log, int, or choices)")
        if "choices" in spec:
            space.append(Param(name, choices=tuple(spec["choices"])))
        elif "int" in spec:
            low, high = spec["int"]
            space.append(Param(name, low, high, integer=True, log=bool(spec.get("log", False))))
        elif "low" in spec and "high" in spec:
            space.append(Param(name, spec["low"], spec["high"], log=bool(spec.get("log", False))))
        else:
            raise ConfigError(f"search space {path}: {name} needs low and high, int: [low, high], or choices")
    return space


class _ReportValidation(Callback):
    """Reports the running mean best validation score to the trial and prunes when told to."""

    def __init__(self, trial, done: list[float], step_offset: int, maximize: bool) -> None:
        self.trial, self.done, self.offset, self.maximize = trial, done, step_offset, maximize
        self.best = -math.inf if maximize else math.inf

    def on_iteration(self, state: IterationState) -> None:
        import optuna

        value = state.record.get(f"val_{state.data.metric.name}")
        if value is None or value != value:
            return
        self.best = max(self.best, value) if self.maximize else min(self.best, value)
        running = (sum(self.done) + self.best) / (len(self.done) + 1)
        self.trial.report(running, self.offset + state.iteration)
        if self.trial.should_prune():
            raise optuna.TrialPruned()


def evaluate_trial(config: ExperimentConfig, seeds: list[int], trial=None) -> float:
    """Mean best validation score of ``config`` over ``seeds`` (test scores are not read)."""
    scores: list[float] = []
    for index, seed in enumerate(seeds):
        data = run_data(config, seed)  # the protocol's split, as a run of this configuration sees it
        maximize = data.metric.higher_is_better
        callbacks = [] if trial is None else [_ReportValidation(trial, scores, index * config.outer_steps, maximize)]
        result = fit_loop(build_loop(config, seed, data=data, callbacks=callbacks))
        scores.append(float(result.best_metrics["val"]))
    return sum(scores) / len(scores)


def run_tune(
    config: ExperimentConfig,
    trials: int = 20,
    seeds: int = 2,
    space: Optional[list[Param]] = None,
    timeout: Optional[float] = None,
    sampler_seed: int = 0,
    fixed: tuple = (),
    echo: Callable[[str], None] = print,
) -> dict:
    """Search, write ``study.journal``, ``trials.json`` and ``best.yaml`` to ``<out>/<run name>-tune/``.

    ``fixed`` names options that keep the configuration's value (the command line passes the flags
    given explicitly): they are left out of the default search space.
    """
    import optuna
    from tqdm.auto import tqdm

    if not config.learns_graph:
        raise ConfigError(f"tune needs a method that learns the graph, not {config.method}")
    if trials < 1 or seeds < 1:
        raise ConfigError("tune needs trials >= 1 and seeds >= 1")
    base = config.resolved()
    space = space if space is not None else [p for p in default_space(base) if p.name not in set(fixed)]
    if not space:
        raise ConfigError("nothing to search: every option of the default space was fixed; give --space")
    data = load_dataset(base.dataset, base.data_root, base.seed_start, base.v_out_fraction)
    direction = "maximize" if data.metric.higher_is_better else "minimize"
    run_dir = Path(base.out) / f"{base.run_name}-tune"
    run_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(base, run_dir, direction, sampler_seed)
    seed_list = list(range(base.seed_start, base.seed_start + seeds))
    finished = sum(t.state.is_finished() for t in study.trials)
    remaining = max(0, trials - finished)
    if finished:
        echo(f"resuming the study in {run_dir / 'study.journal'}: {finished} trial(s) done, {remaining} to go")

    def objective(trial) -> float:
        values = {p.name: p.suggest(trial) for p in space}
        return evaluate_trial(dataclasses.replace(base, **values).resolved(), seed_list, trial)

    started = time.perf_counter()
    if base.executor == "ray":
        _optimize_on_ray(base, run_dir, direction, sampler_seed, space, seed_list, remaining, timeout)
    else:
        bar = tqdm(total=remaining, disable=not base.progress, desc=f"{base.run_name} tune", unit="trial")
        try:
            study.optimize(objective, n_trials=remaining, timeout=timeout,
                           callbacks=[lambda s, t: (bar.update(1), bar.set_postfix(best=f"{s.best_value:.4f}")
                                                    if any(x.state.name == "COMPLETE" for x in s.trials) else None)])
        finally:
            bar.close()
    study = _study(base, run_dir, direction, sampler_seed)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise ConfigError("no trial completed (all pruned or failed); widen the search or raise --trials")
    best = study.best_trial
    best_config = dataclasses.replace(base, **best.params, seeds=base.seeds).resolved()
    write_yaml(best_config, run_dir / "best.yaml")
    rows = [{"trial": t.number, "state": t.state.name, "val": t.value, **t.params} for t in study.trials]
    (run_dir / "trials.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    echo(_table(rows, [p.name for p in space], direction))
    echo(f"best trial {best.number}: mean best validation {best.value:.4f} over seeds {seed_list}; "
         f"{len(complete)} complete, {sum(t.state.name == 'PRUNED' for t in study.trials)} pruned; "
         f"{time.perf_counter() - started:.0f} s")
    echo(f"rerun it with: dgl-bilevel run --config {run_dir / 'best.yaml'}")
    return {"best_value": best.value, "best_params": best.params, "trials": rows, "best_config": str(run_dir / "best.yaml")}


def _study(base: ExperimentConfig, run_dir: Path, direction: str, sampler_seed: int):
    """The study, stored in a journal file (safe for several processes) in the run folder."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str((run_dir / "study.journal").resolve())))
    return optuna.create_study(
        study_name=base.run_name, storage=storage, load_if_exists=True, direction=direction,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=min(10, base.outer_steps // 4)),
    )


def _trials_in_worker(base, run_dir, direction, sampler_seed, space, seeds, n_trials, timeout, threads) -> int:
    """A Ray task: ``n_trials`` trials against the shared journal."""
    torch.set_num_threads(threads)
    study = _study(base, run_dir, direction, sampler_seed)

    def objective(trial) -> float:
        values = {p.name: p.suggest(trial) for p in space}
        return evaluate_trial(dataclasses.replace(base, **values).resolved(), seeds, trial)

    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    return n_trials


def _optimize_on_ray(base, run_dir, direction, sampler_seed, space, seeds, trials, timeout) -> None:
    """Trials in parallel Ray tasks (each samples from the shared journal, so TPE sees all trials).

    Not a seed executor's job (:mod:`~dgl_bilevel.experiment.executors`): the tasks are shares of
    trials against one study, as many as the cluster has free CPUs; they share its Ray session."""
    from .executors import ray_session  # noqa: PLC0415 -- only tuning on Ray needs it

    with ray_session(base.ray_address) as ray:
        workers = max(1, min(trials, int(ray.available_resources().get("CPU", 1) // base.cpus_per_task)))
        shares = [trials // workers + (i < trials % workers) for i in range(workers)]
        remote = ray.remote(num_cpus=base.cpus_per_task)(_trials_in_worker)
        ray.get([remote.remote(base, run_dir, direction, sampler_seed + i, space, seeds, n, timeout,
                               base.cpus_per_task) for i, n in enumerate(shares) if n])


def _table(rows: list[dict], names: list[str], direction: str) -> str:
    done = [r for r in rows if r["val"] is not None]
    done.sort(key=lambda r: r["val"], reverse=direction == "maximize")
    header = ["trial", "state", "val"] + names
    lines = [header] + [[str(r["trial"]), r["state"].lower(), f"{r['val']:.4f}"] + [_fmt(r.get(n)) for n in names]
                        for r in done[:10]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


__all__ = ["Param", "default_space", "space_from_yaml", "evaluate_trial", "run_tune"]
