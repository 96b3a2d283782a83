"""Where seeds run, behind one interface: :class:`Executor` ``.map(run_one, tasks, callbacks, ...)``.

* :class:`SequentialExecutor` -- in this process, stacked where seeds share inner solves
  (``--executor local``, ``--workers 1``);
* :class:`ProcessExecutor` -- dealt to local worker processes, each stacking its share
  (``--workers N``);
* :class:`RayExecutor` -- one Ray task a seed, on this machine or a cluster (``--executor ray``,
  ``--ray-address``, ``--cpus-per-task``).

:func:`executor_for` picks one from the configuration. Every executor returns the records in task
order, passes the callbacks to every seed, shows one progress bar, and lets seeds resume from
their checkpoints; the ones with workers apart from the caller also stop them when the caller
dies and run a dead worker's seeds again from their checkpoints (:mod:`dgl_bilevel.experiment.executors.base`).
"""
from .base import MAX_RETRIES, Executor, total_iterations
from .processes import ProcessExecutor, available_cpus, deal
from .ray_tasks import RayExecutor, ray_session
from .resolve import executor_for
from .sequential import SequentialExecutor
from .share import run_share

__all__ = ["Executor", "SequentialExecutor", "ProcessExecutor", "RayExecutor", "executor_for", "run_share",
           "ray_session", "available_cpus", "deal", "total_iterations", "MAX_RETRIES"]
