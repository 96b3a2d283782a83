"""From the configuration (``executor``, ``workers``, ``ray_address``, ``cpus_per_task``) to the executor
that runs its seeds."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ...errors import ConfigError
from .base import Executor
from .processes import ProcessExecutor
from .ray_tasks import RayExecutor
from .sequential import SequentialExecutor

if TYPE_CHECKING:
    from ..stacked import SeedTask


def executor_for(tasks: Sequence[SeedTask]) -> Executor:
    """The executor the tasks' configurations name.

    ``--executor ray``: :class:`RayExecutor` (at ``ray_address``, ``cpus_per_task`` CPUs a seed).
    ``--executor local`` with ``--workers N`` (the largest ``N`` of the tasks' configurations):
    :class:`ProcessExecutor` when there are several tasks and every one learns a graph (a seed on a
    fixed graph costs less than starting a process); otherwise, and for no tasks at all,
    :class:`SequentialExecutor`.

    Example:
        >>> from pathlib import Path
        >>> from dgl_bilevel.config import ExperimentConfig
        >>> from dgl_bilevel.experiment.stacked import SeedTask
        >>> from dgl_bilevel.experiment.executors import executor_for
        >>> config = ExperimentConfig(dataset="cheaters", workers=2)
        >>> executor_for([SeedTask(config, s, Path(".")) for s in (0, 1)]).name
        'processes'
        >>> executor_for([SeedTask(config, 0, Path("."))]).name
        'sequential'
    """
    if not tasks:
        return SequentialExecutor()
    configs = [task.config for task in tasks]
    kinds = sorted({config.executor for config in configs})
    if len(kinds) > 1:
        raise ConfigError(f"seeds of one pool name different executors ({', '.join(kinds)}): run them apart")
    if kinds == ["ray"]:
        return RayExecutor(configs[0].ray_address, configs[0].cpus_per_task)
    workers = max(config.workers for config in configs)
    if workers > 1 and len(tasks) > 1 and all(config.learns_graph for config in configs):
        return ProcessExecutor(workers)
    return SequentialExecutor()
