"""Where seeds run: in this process one after the other (``local``), or as Ray tasks (``ray``).

A seed is a pure function of the configuration and its number that writes its own files
(``seed_<s>.json``, ``checkpoint_seed<s>.pt``, ``graph_seed<s>.bin``) into the run folder, so
seeds are independent tasks. With Ray each seed is a task with ``cpus_per_task`` CPUs and as
many torch threads; results and checkpoints go to the shared output folder; a task whose worker
dies is retried by Ray and resumes from its seed's last checkpoint (checkpoint resume is bit
for bit), so nothing is lost or done twice. Progress from every task flows into one bar. A seed's logger (``--logger``) is built inside
its task by ``run_seed`` and writes to the shared output folder as the results do.

Ray is an optional extra (``pip install dgl_bilevel[distributed]``). Without ``ray_address``
Ray starts on this machine; with one it joins that cluster (whose workers must have this
package installed and see the output folder).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import ConfigError

#: Ray retries a task whose worker died this many times (each retry resumes from the checkpoint).
MAX_RETRIES = 3


class ProgressCounter:
    """Counts outer iterations done by every task (a Ray actor when distributed)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int = 1) -> None:
        self.count += n

    def value(self) -> int:
        return self.count


class _CountIterations:
    """A fit callback that forwards each finished outer iteration to the progress counter."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter

    def __call__(self, state) -> None:
        self.counter.add.remote(1)


def run_seeds_local(task: Callable[..., dict], seeds: Sequence[int], **kwargs: Any) -> list[dict]:
    """Run ``task(seed=s, **kwargs)`` for every seed in this process, in order."""
    return [task(seed=seed, **kwargs) for seed in seeds]


def run_seeds_ray(task: Callable[..., dict], seeds: Sequence[int], *, address: Optional[str], cpus_per_task: int,
                  total_iterations: int, progress: bool, description: str, callbacks: Sequence = (),
                  **kwargs: Any) -> list[dict]:
    """Run ``task(seed=s, **kwargs)`` for every seed as a Ray task; results in seed order."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install 'dgl_bilevel[distributed]'") from exc
    from tqdm.auto import tqdm

    started_here = not ray.is_initialized()
    if started_here:
        options = {"address": address} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
        ray.init(log_to_driver=False, **options)
    try:
        counter = ray.remote(ProgressCounter).remote()
        remote = ray.remote(num_cpus=cpus_per_task, max_retries=MAX_RETRIES, retry_exceptions=False)(_in_worker)
        env = {"threads": cpus_per_task, "callbacks": [*callbacks, _CountIterations(counter)]}
        pending = {remote.remote(task, seed, env, kwargs): seed for seed in seeds}
        results: dict[int, dict] = {}
        bar = tqdm(total=total_iterations, disable=not progress, desc=description, unit="it", dynamic_ncols=True)
        try:
            while pending:
                done, _ = ray.wait(list(pending), timeout=1.0)
                for ref in done:
                    results[pending.pop(ref)] = ray.get(ref)
                bar.n = ray.get(counter.value.remote())
                bar.refresh()
        finally:
            bar.close()
        return [results[seed] for seed in seeds]
    finally:
        if started_here:
            ray.shutdown()


def _in_worker(task: Callable[..., dict], seed: int, env: dict, kwargs: dict) -> dict:
    """A seed inside a Ray worker: one torch thread per CPU it was given, no progress bar of its own."""
    import torch

    torch.set_num_threads(int(env["threads"]))
    os.environ["OMP_NUM_THREADS"] = str(env["threads"])
    return task(seed=seed, callbacks=env["callbacks"], **kwargs)


def clear_stale_checkpoints(run_dir: Path, seeds: Sequence[int]) -> None:
    """A run that does not resume starts every seed afresh: remove the checkpoints a previous run
    left for these seeds (they would be overwritten anyway), so that a retried task resumes only
    from checkpoints of this run."""
    for seed in seeds:
        path = run_dir / f"checkpoint_seed{seed}.pt"
        if path.is_file():
            path.unlink()
