"""``dgl-bilevel run --seeds S`` with the seeds' inner problems solved as one (``--stack-seeds``).

Each seed is built as :func:`~dgl_bilevel.experiment.run.run_seed` builds it (by
:func:`~dgl_bilevel.experiment.build.build_loop`: its split, structure, inner problem, hypergradient
method; and its checkpoint file) and writes the same files; the seeds then run in lockstep
(:func:`dgl_bilevel.seeds.fit_seeds`), as many at a time as :func:`seeds_per_stack` estimates to fit
in half the available memory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..config import ExperimentConfig
from ..errors import ConfigError
from ..hypergrad import Truncated, Unrolled
from ..outer import OuterLoop
from ..seeds import fit_seeds, why_not_lockstep
from .build import build_loop
from ..outer.fit_check import warn_if_at_chance
from .refit import after_fit
from .seed_files import checkpoint_path, write_learned_seed


def available_memory() -> int:
    """Bytes the OS reports available (``MemAvailable``); 4 GiB where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def stack_bytes_per_seed(loop: OuterLoop) -> int:
    """A deliberately generous estimate of what one more seed adds to a stacked solve.

    Parameters, their gradient and two optimizer moments for every stored inner step (unrolled
    and truncated methods keep the trajectory; the others one step), and eight prediction-sized
    activations per step kept on torch's graph (every step without checkpoints, else one).
    """
    with torch.random.fork_rng(devices=[]):  # a draw for its shapes only: leave torch's generator as it was
        params = loop.inner.initial_params(None)
    element = params[0].element_size()
    numel = sum(p.numel() for p in params)
    method, steps = loop.method, loop.inner.steps
    stored = steps if isinstance(method, Unrolled) else min(method.k, steps) if isinstance(method, Truncated) else 0
    on_graph = stored if stored and method.reverse == "autograd" else 1  # stored > 0: Unrolled or Truncated
    nodes, width = loop.data.num_nodes, max(loop.data.out_dim, 16)
    return element * (4 * numel * (stored + 1) + 8 * nodes * width * on_graph)


def seeds_per_stack(loop: OuterLoop, budget: Optional[int] = None) -> int:
    """How many seeds like ``loop``'s one stack takes within ``budget`` bytes (default: half the available memory)."""
    budget = available_memory() // 2 if budget is None else budget
    return max(1, int(budget // max(1, stack_bytes_per_seed(loop))))


@dataclass(frozen=True)
class SeedTask:
    """One seed of one configuration, written into ``run_dir``."""

    config: ExperimentConfig
    seed: int
    run_dir: Path


def run_seeds_stacked(config: ExperimentConfig, seeds: Sequence[int], run_dir: Path, callbacks: Sequence = (),
                      echo=print) -> Optional[list]:
    """Run ``seeds`` of ``config`` in stacks; their records in seed order (None for a seed that shares
    with no other), or None (``stack_seeds="auto"``) when no two can share their inner solves (then run
    them apart)."""
    return run_tasks_stacked([SeedTask(config, seed, run_dir) for seed in seeds], callbacks, echo,
                             strict=config.stack_seeds == "on")


def lockstep_groups(loops: Sequence[OuterLoop]) -> list[list[int]]:
    """The indices of ``loops`` in groups that can run in lockstep, first fit in order (a loop joins the
    first group whose first loop it can share inner solves with: every check compares with the first)."""
    groups: list[list[int]] = []
    for index, loop in enumerate(loops):
        for group in groups:
            if why_not_lockstep([loops[group[0]], loop]) is None:
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def run_tasks_stacked(tasks: Sequence[SeedTask], callbacks: Sequence = (), echo=print,
                      strict: bool = False) -> Optional[list]:
    """Run ``tasks`` (seeds of one or more configurations) in stacks: the tasks that can share their
    inner solves (:func:`lockstep_groups`: e.g. the GNN seeds and the Laplacian seeds of a pool), each
    group as many at a time as :func:`seeds_per_stack` allows. Their records in task order, ``None``
    for a task that shares with no other (the caller runs it alone); ``None`` when no two tasks share.
    ``strict``: a ``ConfigError`` unless all tasks share."""
    loops = [build_loop(task.config, task.seed, callbacks=callbacks, run_dir=task.run_dir,
                        log_every=task.config.log_every) for task in tasks]
    groups = lockstep_groups(loops)
    if len(groups) > 1:
        reason = why_not_lockstep(loops)
        if strict:
            raise ConfigError(f"--stack-seeds on: the seeds cannot be stacked ({reason}); use --stack-seeds off")
        alone = sum(len(group) == 1 for group in groups)
        stacks = len(groups) - alone
        parts = [f"{stacks} stack{'s' if stacks > 1 else ''}"] + ([f"{alone} alone"] if alone else [])
        echo(f"seeds run one after the other: {reason}" if not stacks else
             f"seeds in {' and '.join(parts)}: not all can share inner solves ({reason})")
    groups = [group for group in groups if len(group) > 1]
    if not groups:
        return None
    records: list = [None] * len(tasks)
    for group in groups:
        size = seeds_per_stack(loops[group[0]])
        for first in range(0, len(group), size):
            chunk = group[first:first + size]
            chunk_loops, chunk_tasks = [loops[i] for i in chunk], [tasks[i] for i in chunk]
            names = _describe(chunk_tasks)
            echo(f"{names}: inner problems stacked (--stack-seeds off to run them apart)")
            started = time.perf_counter()
            results = fit_seeds(chunk_loops, checkpoints_at=[checkpoint_path(t.run_dir, t.seed) for t in chunk_tasks],
                                checkpoint_every=chunk_tasks[0].config.checkpoint_every, resume=True,
                                progress=chunk_tasks[0].config.progress, description=names)
            share = (time.perf_counter() - started) / len(chunk)
            for i, t, result in zip(chunk, chunk_tasks, results):
                loop = loops[i]
                warn_if_at_chance(loop.data, result.best_metrics.get("v_in", float("nan")), t.config.inner,
                                  f"seed {t.seed}: ")
                extra = after_fit(t.config, loop.data, loop.structure, result, t.seed)
                records[i] = write_learned_seed(t.config, t.seed, t.run_dir, result, share, stacked_seeds=len(chunk),
                                                **extra)
    return records


def _describe(tasks: Sequence[SeedTask]) -> str:
    """``run seeds 0, 1, 2`` per run name, in order."""
    runs: dict = {}
    for task in tasks:
        runs.setdefault(task.config.run_name, []).append(str(task.seed))
    return "; ".join(f"{name} seeds {', '.join(seeds)}" for name, seeds in runs.items())
