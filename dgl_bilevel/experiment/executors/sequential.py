"""Seeds in the caller's process, one share: stacked where they share inner solves, else one after the other."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Sequence

from .base import Executor, RunOne
from .share import run_share

if TYPE_CHECKING:
    from ..stacked import SeedTask


class SequentialExecutor(Executor):
    """Every seed in this process (``--executor local --workers 1``).

    Each seed (or stack of seeds) shows its own bar while it runs, so one bar is on screen at a
    time. The death properties do not apply: there is no worker apart from the caller to outlive
    it or to die alone. A run that dies stops with its process, and ``--resume`` continues every
    seed from its checkpoint bit for bit.

    Example:
        >>> from pathlib import Path
        >>> from dgl_bilevel.config import ExperimentConfig
        >>> from dgl_bilevel.experiment.stacked import SeedTask
        >>> from dgl_bilevel.experiment.executors import SequentialExecutor
        >>> def record(config, seed, run_dir, callbacks):
        ...     return {"seed": seed}
        >>> tasks = [SeedTask(ExperimentConfig(dataset="cheaters", method="a_obs"), s, Path(".")) for s in (3, 4)]
        >>> SequentialExecutor().map(record, tasks, progress=False)
        [{'seed': 3}, {'seed': 4}]
    """

    name = "sequential"
    separate_workers = False

    def map(self, run_one: RunOne, tasks: Sequence[SeedTask], callbacks: Sequence = (), *, progress: bool = True,
            description: str = "seeds", echo: Callable[[str], None] = print, stacking: str = "auto") -> list[dict]:
        tasks = [task if task.config.progress == progress else
                 dataclasses.replace(task, config=dataclasses.replace(task.config, progress=progress))
                 for task in tasks]
        return run_share(tasks, run_one, callbacks, echo, stacking)
