"""How one worker runs its share of seeds: the seeds that can share inner solves as stacks, the rest one by one.

Stacking is not an executor of its own but a way of running tasks inside one worker: the
sequential executor runs all seeds as one share in the caller's process, each process worker its
dealt share (:mod:`~dgl_bilevel.experiment.stacked` builds and runs the stacks).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from .base import RunOne

if TYPE_CHECKING:
    from ..stacked import SeedTask


def stackable(tasks: Sequence[SeedTask]) -> bool:
    """Whether the share is worth trying to stack: several seeds, each learning a graph, none with
    ``stack_seeds`` off or cross-fitting (its folds run one after the other)."""
    return len(tasks) > 1 and all(task.config.stack_seeds != "off" and task.config.learns_graph
                                  and not task.config.cross_fit for task in tasks)


def run_share(tasks: Sequence[SeedTask], run_one: RunOne, callbacks: Sequence = (), echo: Callable[[str], None] = print,
              stacking: str = "auto") -> list[dict]:
    """Records of ``tasks`` in order: stacked where they share inner solves (``stacking="on"``: a
    ``ConfigError`` unless all do), each of the others through ``run_one``.

    Example:
        >>> from pathlib import Path
        >>> from dgl_bilevel.config import ExperimentConfig
        >>> from dgl_bilevel.experiment.stacked import SeedTask
        >>> from dgl_bilevel.experiment.executors.share import run_share
        >>> config = ExperimentConfig(dataset="cheaters", method="a_obs")
        >>> def record(config, seed, run_dir, callbacks):
        ...     return {"seed": seed}
        >>> run_share([SeedTask(config, s, Path(".")) for s in (0, 1)], record, stacking="off")
        [{'seed': 0}, {'seed': 1}]
    """
    records = None
    if stacking != "off" and stackable(tasks):
        from ..stacked import run_tasks_stacked  # noqa: PLC0415 -- only shares that may stack need it

        # None for a seed that shares with no other (it runs alone below), or None for all
        records = run_tasks_stacked(tasks, callbacks, echo, strict=stacking == "on")
    records = records or [None] * len(tasks)
    return [record if record is not None else
            run_one(config=task.config, seed=task.seed, run_dir=task.run_dir, callbacks=callbacks)
            for task, record in zip(tasks, records)]
