"""Running a configuration over seeds and writing results: per-seed JSON, learned graphs, summary."""
from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Sequence

import torch

from .._version import __version__
from .._dgl import dgl
from ..config import ExperimentConfig, is_graph_file, write_yaml
from ..data import SPLITS
from ..data.files import resolve_data_root
from ..errors import ConfigError
from ..registry import DATASETS
from ..outer import FitResult, fit_loop, solve_on_graph
from ..outer.loggers import seed_loggers
from ..outer.fit_check import warn_if_at_chance, warn_if_validation_memorised
from ..outer.loop import node_data
from ..results import aggregate, refit_lines, results_table, write_json
from .build import build_hypergrad, build_inner, build_loop
from .crossfit import cross_fit
from .refit import after_fit, all_label_candidates, fresh_sampler, gated
from .executors import executor_for
from .seed_files import (  # noqa: F401 -- RESUME_FREE, comparable_settings, training_view: importable from here too
    RESUME_FREE, changed_settings, checkpoint_path, clear_stale_checkpoints, comparable_settings, run_data,
    training_view, write_learned_seed, write_seed,
)
from .stacked import SeedTask


def run_seed(config: ExperimentConfig, seed: int, run_dir: Path, callbacks: Sequence = ()) -> dict:
    """One seed: load the split, solve on the observed graph or learn it, write ``seed_<s>.json`` (+ graph).

    A checkpoint of this seed in ``run_dir`` is continued (the caller removes stale ones when a
    run does not resume), so a seed restarted after a crash picks up where it stopped. With
    ``config.logger`` the seed's log goes to ``run_dir/logs/seed_<s>/`` (built here, in whatever
    process or Ray task runs the seed).

    Args:
        config: a resolved configuration (``config.resolved()``).
        seed: which seed: its split, initialisation and generators.
        run_dir: the run's folder (made if missing); ``seed_<s>.json``, the learned graph (with
            ``config.save_graph``) and the seed's checkpoint go there.
        callbacks: added to the seed's outer loop.

    Returns:
        The seed's record, as written to ``seed_<s>.json``: every split's score at the
        best-validation iteration (``<split>_<metric>``), ``best_iteration``, ``outer_iterations``,
        timings and ``stopped_early``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if the configuration cannot be built into a run (e.g. an
            inner problem the data does not fit) or the seed's checkpoint was written with other settings.

    Example:
        >>> import os, tempfile
        >>> import dgl, torch
        >>> folder = tempfile.mkdtemp()
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])))
        >>> graph.ndata["feat"] = torch.eye(8)
        >>> graph.ndata["label"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> for split, nodes in {"train": [0, 7], "val": [1, 2, 5, 6], "test": [3, 4]}.items():
        ...     graph.ndata[f"{split}_mask"] = torch.isin(torch.arange(8), torch.tensor(nodes))
        >>> path = os.path.join(folder, "path.bin")
        >>> dgl.save_graphs(path, [graph])  # a graph file is a data set: --dataset path.bin
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", laplacian_loss="mse", seeds=2,
        ...                           outer_steps=2, out=folder, progress=False, save_graph=False)
        >>> from pathlib import Path
        >>> record = run_seed(config.resolved(), seed=0, run_dir=Path(folder))
        >>> record["seed"], record["outer_iterations"], record["best_iteration"], record["test_acc"]
        (0, 2, 0, 1.0)
        >>> sorted(os.listdir(folder))
        ['checkpoint_seed0.pt', 'path.bin', 'seed_0.json']
        >>> observed = dataclasses.replace(config, method="a_obs").resolved()  # solve on the observed graph
        >>> run_seed(observed, seed=1, run_dir=Path(folder))["outer_iterations"]
        0
        >>> import shutil
        >>> shutil.rmtree(folder)  # the example's files
    """
    data = run_data(config, seed)
    started = time.perf_counter()
    if not config.learns_graph:
        inner = build_inner(config, data)
        method = build_hypergrad(config, inner)
        metrics, _ = solve_on_graph(data, inner, data.observed_weights(), hypergrad=method, seed=seed,
                                    inner_select=config.inner_select)
        metric = data.metric.name
        warn_if_at_chance(data, metrics["v_in"], config.inner, f"seed {seed}: ")
        record = {f"{s}_{metric}": v for s, v in metrics.items()}
        record.update(best_iteration=0, outer_iterations=0, median_seconds_per_iteration=float("nan"),
                      stopped_early=None)
        return write_seed(config, seed, run_dir, record, {**inner.describe(), **method.describe()}, [],
                          time.perf_counter() - started)
    if config.cross_fit:
        return run_cross_fit_seed(config, data, seed, run_dir, callbacks, started)
    loop = build_loop(config, seed, data=data, callbacks=callbacks, run_dir=run_dir,
                      progress_bar=f"{config.run_name} seed {seed}", log_every=config.log_every)
    result: FitResult = fit_loop(loop, checkpoint=checkpoint_path(run_dir, seed),
                                 checkpoint_every=config.checkpoint_every, resume=True)
    warn_if_at_chance(data, result.best_metrics.get("v_in", float("nan")), config.inner, f"seed {seed}: ")
    warn_if_validation_memorised(data, result.best_metrics.get("val", float("nan")), config.outer_steps,
                                 f"seed {seed}: ")
    return write_learned_seed(config, seed, run_dir, result, time.perf_counter() - started,
                              **after_fit(config, data, loop.structure, result, seed))


def run_cross_fit_seed(config: ExperimentConfig, data, seed: int, run_dir: Path, callbacks: Sequence,
                       started: float) -> dict:
    """One seed of ``--cross-fit K``: K fold graphs, averaged, then the inner model refit on every label on it.

    The record's split scores are the refit's (its V_in and V_out scores are training scores); each
    fold's best-validation scores are kept as ``fold_<k>_<split>_<metric>``, the same model on the
    observed graph as ``refit_observed_*`` and the one the validation gate keeps as ``refit_gated_*``.
    """
    combined, folds, structure = cross_fit(config, data, seed, config.cross_fit,
                                           lambda k: [*callbacks, *seed_loggers(config, seed, run_dir, fold=k)])
    sampler = fresh_sampler(structure.sampler, seed) if structure.sampler is not None else None
    candidates = all_label_candidates(config, data, structure.graph, combined, seed, sampler)
    metrics = candidates["learned"][0]
    metric = data.metric.name
    history = [{**record, "fold": k} for k, fold in enumerate(folds) for record in fold.history]
    result = FitResult(best_iteration=-1, best_metrics=metrics, best_weights=combined, final_weights=combined,
                       history=history, support=structure.graph, config={**folds[0].config, "cross_fit": config.cross_fit},
                       metric=metric, node_data=node_data(data), probabilistic=sampler is not None)
    extra = {f"fold_{k}_{split}_{metric}": value for k, fold in enumerate(folds)
             for split, value in fold.best_metrics.items()}
    extra.update({f"refit_observed_{split}_{metric}": value for split, value in candidates["observed"][0].items()})
    extra.update(gated(candidates, data, seed))
    return write_learned_seed(config, seed, run_dir, result, time.perf_counter() - started,
                              final_model_trained_on="v_in+v_out", **extra)


def finished_seed(config: ExperimentConfig, path: Path) -> "dict | None":
    """A finished seed's result if its settings are this run's; None if it must run (longer) again.

    A seed finished with fewer outer steps continues from its checkpoint; any other difference is
    an error, so resuming never reports old results under new settings.
    """
    saved = json.loads(path.read_text())
    settings, current = saved.get("run_config"), comparable_settings(config)
    if settings is None:
        raise ConfigError(f"{path} was written without its settings (an older version): they cannot be checked "
                          "against this run's; remove it, or run without resume")
    changed = changed_settings(settings, current)
    if not changed:
        return saved["result"]
    checkpoint = path.parent / f"checkpoint_seed{saved['result']['seed']}.pt"
    if changed == ["outer_steps"] and settings["outer_steps"] < current["outer_steps"] and checkpoint.is_file():
        return None
    differences = ", ".join(f"{k}: {settings.get(k)!r} there, {current.get(k)!r} now" for k in changed)
    raise ConfigError(f"{path} was finished with other settings ({differences}); remove it or use another "
                      "output folder")


def _run_seeds(config: ExperimentConfig, seeds: list, run_dir: Path, callbacks: Sequence, echo=print,
               try_stacking: bool = True) -> list:
    """Every seed in ``seeds`` through the configured executor (:func:`~dgl_bilevel.experiment.executors.executor_for`);
    records in seed order (``try_stacking=False``: the caller already knows these seeds do not stack)."""
    tasks = [SeedTask(config, seed, run_dir) for seed in seeds]
    return executor_for(tasks).map(run_seed, tasks, callbacks, progress=config.progress, description=config.run_name,
                                   echo=echo, stacking=config.stack_seeds if try_stacking else "off")


@dataclasses.dataclass
class PreparedRun:
    """A configuration's run folder, its finished seeds and the seeds still to run."""

    config: ExperimentConfig
    run_dir: Path
    created: bool
    metric: str
    results: dict
    todo: list

    def record(self, seed: int, record: dict, echo) -> None:
        self.results[seed] = record
        if record.get("stopped_early"):
            echo(f"seed {seed}: {record['stopped_early']}")

    def clean_up_failed(self) -> None:
        """A run that failed before any result leaves nothing behind."""
        run_dir = self.run_dir
        if self.created and not any(run_dir.glob("seed_*.json")) and not any(run_dir.glob("checkpoint_*.pt")):
            shutil.rmtree(run_dir, ignore_errors=True)


def prepare_run(config: ExperimentConfig, echo=print) -> PreparedRun:
    """Resolve ``config``, say where the data comes from, write ``config.yaml``, find finished seeds."""
    config = config.resolved()
    data0 = run_data(config, config.seed_start)
    if is_graph_file(config.dataset):
        echo(f"graph file: {Path(config.dataset).expanduser().resolve()}")
    elif DATASETS[config.dataset].files is not None and not DATASETS[config.dataset].ogb:
        root, why = resolve_data_root(config.data_root)
        echo(f"data root: {root} ({why})")
    echo(data0.summary())
    run_dir = Path(config.out) / config.run_name
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(config, run_dir / "config.yaml")
    prepared = PreparedRun(config, run_dir, created, data0.metric.name, {}, [])
    try:
        for seed in range(config.seed_start, config.seed_start + config.seeds):
            done = run_dir / f"seed_{seed}.json"
            finished = finished_seed(config, done) if config.resume and done.is_file() else None
            if finished is not None:
                prepared.results[seed] = finished
                echo(f"seed {seed}: already finished ({done}), skipped")
            else:
                prepared.todo.append(seed)
        if not config.resume:
            clear_stale_checkpoints(run_dir, prepared.todo)
    except BaseException:
        prepared.clean_up_failed()
        raise
    return prepared


def summarize_run(prepared: PreparedRun, echo=print) -> dict:
    """Write ``summary.json`` of a run whose seeds have all finished and print its table."""
    config, metric, run_dir = prepared.config, prepared.metric, prepared.run_dir
    per_seed = [prepared.results[seed] for seed in sorted(prepared.results)]
    keys = [f"{s}_{metric}" for s in SPLITS] + ["median_seconds_per_iteration"]
    summary = {
        "run": config.run_name,
        "metric": metric,
        "training_set": config.training_set,
        **({"note": f"v_out is part of the inner training set: v_out_{metric} is a training score"}
           if config.training_set != "v_in" else {}),
        "aggregate": aggregate(per_seed, keys),
        "per_seed": per_seed,
        "config": config.to_dict(nested=False),
        "versions": versions(),
    }
    write_json(run_dir / "summary.json", summary)
    trained = ("v_in", "v_out") if config.training_set == "v_in+v_out" else ("v_in",)
    echo(results_table(per_seed, metric, title=f"{config.run_name}: best-validation graph per seed", trained=trained))
    if config.training_set != "v_in":
        echo(f"trained on {config.training_set}: the V_out score is a training score, not a held-out one")
    for line in refit_lines(per_seed, metric):
        echo(line)
    echo(f"results written to {run_dir.resolve()}")
    return summary


def run_experiment(config: ExperimentConfig, echo=print, callbacks: Sequence = ()) -> dict:
    """Run every seed (skipping finished ones when resuming), write ``summary.json``, print the table.

    ``callbacks`` are added to every seed's outer loop (with Ray they must pickle).

    Args:
        config: the run's configuration (resolved here); results go to ``<config.out>/<run name>/``.
        echo: where the run's lines go (the data set, the results table, where files were written).
        callbacks: added to every seed's outer loop.

    Returns:
        The summary written to ``summary.json``: ``run`` (the run's name), ``metric``, ``aggregate``
        (mean and standard deviation of every split's score over the seeds), ``per_seed`` (each
        seed's record), ``config`` and ``versions``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if the configuration is invalid, or (``resume``) a finished
            seed in the run's folder was run with other settings.

    Example:
        >>> import os, tempfile
        >>> import dgl, torch
        >>> folder = tempfile.mkdtemp()
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])))
        >>> graph.ndata["feat"] = torch.eye(8)
        >>> graph.ndata["label"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> for split, nodes in {"train": [0, 7], "val": [1, 2, 5, 6], "test": [3, 4]}.items():
        ...     graph.ndata[f"{split}_mask"] = torch.isin(torch.arange(8), torch.tensor(nodes))
        >>> path = os.path.join(folder, "path.bin")
        >>> dgl.save_graphs(path, [graph])  # a graph file is a data set: --dataset path.bin
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", laplacian_loss="mse", seeds=2,
        ...                           outer_steps=2, out=folder, progress=False, save_graph=False)
        >>> lines = []
        >>> summary = run_experiment(config, echo=lines.append)
        >>> summary["run"], summary["metric"], len(summary["per_seed"]), summary["aggregate"]["test_acc"]
        ('path-laplacian-bo', 'acc', 2, {'mean': 1.0, 'std': 0.0})
        >>> run_dir = os.path.join(folder, summary["run"])
        >>> sorted(name for name in os.listdir(run_dir) if name.endswith((".json", ".yaml")))
        ['config.yaml', 'seed_0.json', 'seed_1.json', 'summary.json']
        >>> _ = run_experiment(dataclasses.replace(config, resume=True), echo=lines.append)  # nothing to redo
        >>> [line.split(" (")[0] for line in lines if "already finished" in line]
        ['seed 0: already finished', 'seed 1: already finished']
        >>> import shutil
        >>> shutil.rmtree(folder)  # the example's files
    """
    prepared = prepare_run(config, echo)
    try:
        for seed, record in zip(prepared.todo, _run_seeds(prepared.config, prepared.todo, prepared.run_dir,
                                                          callbacks, echo)):
            prepared.record(seed, record, echo)
    except BaseException:
        prepared.clean_up_failed()
        raise
    return summarize_run(prepared, echo)


def run_experiments(configs: Sequence[ExperimentConfig], echo=print, callbacks: Sequence = ()) -> list[dict]:
    """Several configurations, each as :func:`run_experiment` runs it (same files, same results up to
    rounding), with the seeds of all of them stacked into shared inner solves where they can be:
    same data set, inner problem and hypergradient settings, local executor, ``stack_seeds`` not
    ``off`` (methods, structures, regularisers and outer settings may differ). Returns the summaries.

    Args:
        configs: the runs' configurations (resolved here), each with its own output folder.
        echo: where the runs' lines go.
        callbacks: added to every seed's outer loop.

    Returns:
        One summary per configuration, in order, as :func:`run_experiment` returns it.

    Raises:
        ~dgl_bilevel.errors.ConfigError: as :func:`run_experiment`, for any of the configurations.

    Example:
        >>> import os, tempfile
        >>> import dgl, torch
        >>> folder = tempfile.mkdtemp()
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])))
        >>> graph.ndata["feat"] = torch.eye(8)
        >>> graph.ndata["label"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> for split, nodes in {"train": [0, 7], "val": [1, 2, 5, 6], "test": [3, 4]}.items():
        ...     graph.ndata[f"{split}_mask"] = torch.isin(torch.arange(8), torch.tensor(nodes))
        >>> path = os.path.join(folder, "path.bin")
        >>> dgl.save_graphs(path, [graph])  # a graph file is a data set: --dataset path.bin
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", laplacian_loss="mse", seeds=2,
        ...                           outer_steps=2, out=folder, progress=False, save_graph=False)
        >>> observed = dataclasses.replace(config, method="a_obs", seeds=1)  # the observed-graph baseline
        >>> summaries = run_experiments([config, observed], echo=lambda line: None)
        >>> [(s["run"], len(s["per_seed"]), s["aggregate"]["test_acc"]["mean"]) for s in summaries]
        [('path-laplacian-bo', 2, 1.0), ('path-laplacian-a_obs', 1, 1.0)]
        >>> import shutil
        >>> shutil.rmtree(folder)  # the example's files
    """
    prepared = [prepare_run(config, echo) for config in configs]
    known_unstackable: list = []  # runs whose seeds were just found not to stack: no second try
    try:
        pooled = [run for run in prepared if run.config.learns_graph and run.config.executor == "local"
                  and run.config.stack_seeds != "off" and not run.config.cross_fit and run.todo]
        if len(pooled) > 1 or (pooled and len(pooled[0].todo) > 1):
            from .stacked import run_tasks_stacked  # noqa: PLC0415 -- only pooled runs need it

            tasks = [SeedTask(run.config, seed, run.run_dir) for run in pooled for seed in run.todo]
            if max(run.config.workers for run in pooled) > 1:  # each worker stacks its share, or runs it seed by seed
                records = executor_for(tasks).map(run_seed, tasks, callbacks, echo=echo,
                                                  progress=any(run.config.progress for run in pooled),
                                                  description=", ".join(run.config.run_name for run in pooled))
            else:
                # not strict: a pool that does not stack as a whole may still stack config by config below,
                # where --stack-seeds on refuses what does not
                records = run_tasks_stacked(tasks, callbacks, echo, strict=False)
            if records is not None:  # the seeds that shared with none stay to do, run alone below
                for task, record in zip(tasks, records):
                    if record is not None:
                        run = next(r for r in pooled if r.run_dir == task.run_dir)
                        run.record(task.seed, record, echo)
                        run.todo.remove(task.seed)
                # (under --stack-seeds on, below refuses what does not stack)
                known_unstackable = [run for run in pooled if run.todo and run.config.stack_seeds == "auto"]
            elif len(pooled) == 1 and pooled[0].config.stack_seeds == "auto":
                known_unstackable = [pooled[0]]
        for run in prepared:
            for seed, record in zip(run.todo, _run_seeds(run.config, run.todo, run.run_dir, callbacks, echo,
                                                         try_stacking=all(run is not known for known in known_unstackable))):
                run.record(seed, record, echo)
    except BaseException:
        for run in prepared:
            run.clean_up_failed()
        raise
    return [summarize_run(run, echo) for run in prepared]


def versions() -> dict:
    """The versions of the software and platform a result comes from (every ``summary.json`` keeps them).

    Returns:
        ``{"dgl_bilevel", "torch", "dgl", "torchopt", "python", "machine"}`` -> version string.

    Example:
        >>> import dgl_bilevel
        >>> found = versions()
        >>> sorted(found)
        ['dgl', 'dgl_bilevel', 'machine', 'python', 'torch', 'torchopt']
        >>> found["dgl_bilevel"] == dgl_bilevel.__version__
        True
    """
    import torchopt

    return {
        "dgl_bilevel": __version__,
        "torch": torch.__version__,
        "dgl": dgl.__version__,
        "torchopt": torchopt.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
