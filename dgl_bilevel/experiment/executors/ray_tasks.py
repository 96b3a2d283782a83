"""Seeds as Ray tasks (``--executor ray``): on this machine, or on a cluster (``--ray-address``).

Each seed is one task with ``cpus_per_task`` CPUs and as many torch threads (seeds are not
stacked: a task holds one seed). Results and checkpoints go to the run folder, which every
worker must see. Progress from every task flows into one bar through a counter actor. A seed's
logger (``--logger``) is built inside its task by ``run_seed``.

The death properties come from Ray: (a) a task belongs to the job of the process that submitted
it, and Ray ends a job's tasks when that process dies (on this machine Ray's own processes die
with it too); (b) a task whose worker dies is retried, up to :data:`MAX_RETRIES` times, and
resumes from its seed's last checkpoint, so nothing is lost or done twice. An exception inside a
task is not retried: it is raised here.

Ray is an optional extra (``pip install dgl_bilevel[distributed]``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

from ...errors import ConfigError
from ...outer.callbacks import Callback
from .base import MAX_RETRIES, Executor, RunOne, progress_bar, quiet, total_iterations

if TYPE_CHECKING:
    from ..stacked import SeedTask


@contextmanager
def ray_session(address: Optional[str], local_cpus: Optional[int] = None) -> Iterator[Any]:
    """The ``ray`` module, initialised: joined at ``address``, or started on this machine (with
    ``local_cpus`` CPUs, Ray's count if None); left as it was if this process already runs Ray,
    else shut down on leaving.

    Example:
        >>> from dgl_bilevel.experiment.executors import ray_session
        >>> callable(ray_session)  # ``with ray_session(None) as ray:`` starts Ray (seconds)
        True
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install 'dgl_bilevel[distributed]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        options = {"address": address} if address else {"include_dashboard": False}
        if not address and local_cpus is not None:
            options["num_cpus"] = local_cpus
        ray.init(log_to_driver=False, **options)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


class ProgressCounter:
    """How many outer iterations each task has done (a Ray actor): a retried task's redone
    iterations overwrite its count instead of adding to it.

    Example:
        >>> counter = ProgressCounter()
        >>> counter.set(0, 3), counter.set(1, 2), counter.set(0, 2)  # task 0 retried from iteration 2
        (None, None, None)
        >>> counter.value()
        4
    """

    def __init__(self) -> None:
        self.done: dict[int, int] = {}

    def set(self, task: int, iterations: int) -> None:
        self.done[task] = iterations

    def value(self) -> int:
        return sum(self.done.values())


class _CountIterations(Callback):
    """A fit callback that tells the progress counter how far its task is: where a resumed or
    retried seed starts, then after each outer iteration."""

    def __init__(self, counter: Any, task: int) -> None:
        self.counter, self.task = counter, task

    def on_fit_start(self, loop) -> None:
        self.counter.set.remote(self.task, loop.state.next_iteration)

    def on_iteration(self, state) -> None:
        self.counter.set.remote(self.task, state.iteration + 1)


class RayExecutor(Executor):
    """Every seed as a Ray task with ``cpus_per_task`` CPUs, on a cluster at ``address`` or on this machine.

    ``stacking`` and ``echo`` are not used: a task holds one seed, and its lines stay in Ray's logs.
    The bar counts each seed's iterations once, a retried task's from its checkpoint.

    Example:
        >>> from dgl_bilevel.experiment.executors import RayExecutor
        >>> executor = RayExecutor(address=None, cpus_per_task=2)
        >>> executor.name, executor.separate_workers, executor.cpus_per_task
        ('ray', True, 2)
    """

    name = "ray"

    def __init__(self, address: Optional[str] = None, cpus_per_task: int = 1) -> None:
        self.address = address
        self.cpus_per_task = cpus_per_task

    def map(self, run_one: RunOne, tasks: Sequence[SeedTask], callbacks: Sequence = (), *, progress: bool = True,
            description: str = "seeds", echo: Callable[[str], None] = print, stacking: str = "auto") -> list[dict]:
        with ray_session(self.address, local_cpus=os.cpu_count()) as ray:
            counter = ray.remote(ProgressCounter).remote()
            remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=MAX_RETRIES,
                                retry_exceptions=False)(_in_worker)
            pending = {remote.remote(run_one, quiet(task), self.cpus_per_task,
                                     [*callbacks, _CountIterations(counter, index)]): index
                       for index, task in enumerate(tasks)}
            results: dict[int, dict] = {}
            bar = progress_bar(tasks, progress, description)
            try:
                while pending:
                    done, _ = ray.wait(list(pending), timeout=1.0)
                    for ref in done:
                        index = pending.pop(ref)
                        results[index] = ray.get(ref)
                        # a finished task counts whole (a seed read back finished, or stopped early)
                        ray.get(counter.set.remote(index, total_iterations([tasks[index]])))
                    bar.n = ray.get(counter.value.remote())
                    bar.refresh()
            finally:
                bar.close()
            return [results[index] for index in range(len(tasks))]


def _in_worker(run_one: RunOne, task: SeedTask, threads: int, callbacks: list) -> dict:
    """A seed inside a Ray worker: one torch thread per CPU it was given, no progress bar of its own."""
    import torch

    torch.set_num_threads(int(threads))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return run_one(config=task.config, seed=task.seed, run_dir=task.run_dir, callbacks=callbacks)
