"""What every executor promises: seed tasks in, their records out in task order.

A seed is a pure function of its configuration and number that writes its own files
(``seed_<s>.json``, ``checkpoint_seed<s>.pt``, ``graph_seed<s>.bin``) into its run folder, so seeds
are independent tasks an executor may run anywhere. Every executor

* runs ``run_one(config=, seed=, run_dir=, callbacks=)`` (a module-level function, so that it
  travels by name) for each task, or runs tasks that share inner solves as one stack
  (:func:`~dgl_bilevel.experiment.executors.share.run_share`);
* passes ``callbacks`` to every seed's outer loop (executors with workers send them by pickle);
* shows one progress bar (``progress``) titled ``description``;
* lets a seed continue from its checkpoint, so a run that stopped resumes bit for bit;
* where seeds run in workers apart from the caller (:attr:`Executor.separate_workers`): (a) the
  workers stop when the caller dies, and (b) a worker that dies is replaced and its seeds resume
  from their checkpoints, up to :data:`MAX_RETRIES` times.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # the stacked module (and the lockstep machinery behind it) loads only when seeds stack
    from ..stacked import SeedTask

#: a dead worker's seeds are run again this many times (each time from their checkpoints)
MAX_RETRIES = 3

#: ``run_one(config=, seed=, run_dir=, callbacks=)``: one seed, its record back
RunOne = Callable[..., dict]


class Executor(ABC):
    """Runs seed tasks (:class:`~dgl_bilevel.experiment.stacked.SeedTask`) and returns their records in task order.

    Example:
        >>> from dgl_bilevel.experiment.executors import Executor, SequentialExecutor
        >>> isinstance(SequentialExecutor(), Executor), SequentialExecutor.separate_workers
        (True, False)
    """

    #: a short name for messages and tests
    name: str = ""
    #: whether seeds run in workers apart from the caller (then the two death properties hold)
    separate_workers: bool = True

    @abstractmethod
    def map(self, run_one: RunOne, tasks: Sequence[SeedTask], callbacks: Sequence = (), *, progress: bool = True,
            description: str = "seeds", echo: Callable[[str], None] = print, stacking: str = "auto") -> list[dict]:
        """Run every task; their records in task order.

        ``stacking``: ``auto`` stacks the seeds of a worker's share that can share inner solves,
        ``on`` refuses a share that cannot (where the executor says it enforces it), ``off`` runs
        them one by one. ``echo`` takes the lines a run prints.
        """


def total_iterations(tasks: Sequence[SeedTask]) -> int:
    """Outer iterations of every task that learns a graph (what one progress bar counts)."""
    return sum(task.config.outer_steps for task in tasks if task.config.learns_graph)


def progress_bar(tasks: Sequence[SeedTask], progress: bool, description: str):
    """The one bar over every task's outer iterations."""
    from tqdm.auto import tqdm

    return tqdm(total=total_iterations(tasks), disable=not progress, desc=description, unit="it", dynamic_ncols=True)


def quiet(task: SeedTask) -> SeedTask:
    """``task`` without a progress bar of its own (its worker reports to the one bar instead)."""
    return dataclasses.replace(task, config=dataclasses.replace(task.config, progress=False))
