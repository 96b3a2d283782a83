"""Seeds split among local worker processes (``--workers N``), each group stacked as one computation.

One Cora seed's inner solve is bound by memory traffic, not by the number of threads: a stack of
14 GNN seeds runs about as fast on one thread as on two (docs/benchmarks.md). Two processes with one
thread each therefore do nearly twice the work of one process with two. :func:`run_tasks_in_workers`
deals the seeds out to ``N`` spawned processes with ``cpus / N`` torch threads each; every worker
stacks each group of its share that can share inner solves
(:func:`~dgl_bilevel.experiment.stacked.run_tasks_stacked`: a pool of GNN and Laplacian seeds runs as
two stacks), runs the rest seed by seed, and writes the same files a single process would -- results,
checkpoints, learned graphs -- so ``--resume`` works across worker counts. Results equal a single
process's up to floating-point rounding (another stack size and thread count sum in another order).

Each seed's logger (``--logger``) is built from its configuration inside the worker that runs it
(:func:`~dgl_bilevel.outer.loggers.seed_loggers`, through ``build_loop`` or ``run_seed``); callbacks
given in Python travel by pickle. Progress from every worker flows into one bar in this process; a worker's error stops the others
and is raised here with the worker's traceback; Ctrl-C reaches every worker, which checkpoints as a
single process would. A worker whose parent is gone -- killed by a signal that does not reach the
workers, SIGTERM or SIGKILL to the parent alone -- stops as on Ctrl-C instead of running on
unattended (:func:`_stop_with_parent`).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue as queue_module
import signal
import threading
import time
import traceback
import _thread
from typing import Callable, Sequence

from ..errors import ConfigError, RunInterrupted

#: seconds a worker may take to write its checkpoints after Ctrl-C before it is terminated
INTERRUPT_GRACE_SECONDS = 60.0


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def deal(tasks: Sequence, workers: int) -> list[list[int]]:
    """The indices of ``tasks`` dealt round-robin to ``workers`` groups (no empty group): each worker
    gets a share of every configuration, so configurations that cost more per seed (G2G's outer
    network) do not all land on one worker; the rotation runs on across configurations, so a worker
    dealt one seed fewer of the GNN's is dealt one more of the Laplacian's after it."""
    workers = max(1, min(workers, len(tasks)))
    return [list(range(first, len(tasks), workers)) for first in range(workers)]


class _QueueProgress:
    """A fit callback that reports each finished outer iteration of a seed to the parent."""

    def __init__(self, messages) -> None:
        self.messages = messages

    def __call__(self, state) -> None:
        self.messages.put(("progress", 1))


def run_tasks_in_workers(tasks: Sequence, workers: int, run_one: Callable[..., dict], callbacks: Sequence = (),
                         echo: Callable = print, progress: bool = True, description: str = "seeds") -> list[dict]:
    """Run ``tasks`` (:class:`~dgl_bilevel.experiment.stacked.SeedTask`) in ``workers`` spawned
    processes; their records in task order. Seeds of a share that stack with none of it run alone through
    ``run_one(config=, seed=, run_dir=, callbacks=)`` (a module-level function: it travels by name).
    ``callbacks`` run inside the workers, so they must pickle."""
    from tqdm.auto import tqdm

    shares = deal(tasks, workers)
    groups = [[tasks[i] for i in share] for share in shares]
    threads = max(1, available_cpus() // len(groups))
    context = multiprocessing.get_context("spawn")  # not fork: torch's thread pools do not survive a fork
    messages = context.Queue()
    try:
        processes = [context.Process(target=_worker, args=(index, group, threads, run_one, list(callbacks), messages,
                                                           os.getpid()),
                                     name=f"dgl-bilevel-worker-{index}", daemon=True)
                     for index, group in enumerate(groups)]
    except Exception as exc:  # noqa: BLE001 -- say which input could not travel
        raise ConfigError(f"--workers: the run could not be sent to worker processes ({exc})") from exc
    total = sum(task.config.outer_steps for task in tasks)
    echo(f"{len(tasks)} seeds in {len(groups)} worker processes, {threads} torch thread(s) each "
         f"({', '.join(str(len(g)) for g in groups)} seeds)")
    results: dict[int, list] = {}
    failed: set[int] = set()
    bar = tqdm(total=total, disable=not progress, desc=description, unit="it", dynamic_ncols=True)
    try:
        for process in processes:
            process.start()
        while len(results) < len(groups):
            try:
                kind, *payload = messages.get(timeout=1.0)
            except queue_module.Empty:
                dead = [p for i, p in enumerate(processes) if i not in results and not p.is_alive()]
                if dead:
                    raise RuntimeError(f"worker {dead[0].name} stopped (exit code {dead[0].exitcode}) before "
                                       "reporting; its seeds keep their checkpoints: rerun with --resume")
                continue
            if kind == "progress":
                bar.update(payload[0])
            elif kind == "echo":
                (bar.write if progress else echo)(payload[0])
            elif kind == "done":
                results[payload[0]] = payload[1]
            elif kind == "interrupted":  # a worker got Ctrl-C alone: stop the run as a single process would
                raise KeyboardInterrupt
            else:  # "error"
                index, text = payload
                failed.add(index)
                raise RuntimeError(f"worker {index} failed:\n{text}")
    except BaseException as exc:
        running = [p for i, p in enumerate(processes) if i not in results and i not in failed]
        interrupted = isinstance(exc, KeyboardInterrupt)
        _stop(processes, running, already_interrupted=interrupted)
        if interrupted:
            raise _where_to_resume(messages) from exc
        raise
    finally:
        bar.close()
    for process in processes:
        process.join()
    records: list = [None] * len(tasks)
    for index, share in enumerate(shares):
        for position, record in zip(share, results[index]):
            records[position] = record
    return records


def _where_to_resume(messages) -> RunInterrupted:
    """The workers' reports after Ctrl-C as one :class:`RunInterrupted`: a checkpoint written and the
    earliest outer iteration every interrupted seed has kept."""
    reports = []
    while True:
        try:
            kind, *payload = messages.get(timeout=0.1)
        except (queue_module.Empty, OSError, EOFError):
            break
        if kind == "interrupted":
            reports.append(payload)
    saved = [(checkpoint, iteration) for _, checkpoint, iteration in reports if checkpoint is not None]
    if not saved:
        return RunInterrupted(None, -1)
    return RunInterrupted(saved[0][0], min(iteration for _, iteration in saved))


def _stop(processes, running, already_interrupted: bool) -> None:
    """Stop the workers as Ctrl-C stops a single process: each writes its checkpoints and exits.

    A Ctrl-C at the terminal reaches every process of the group; workers it did not reach (the
    parent alone was signalled, or another worker failed) get SIGINT here -- only those still
    ``running``, not the ones that reported and are exiting. Whatever is still alive after
    :data:`INTERRUPT_GRACE_SECONDS` is terminated.
    """
    if already_interrupted:
        deadline = time.monotonic() + 2.0
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in running:
        if process.is_alive() and process.pid is not None:
            try:
                os.kill(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
    for process in processes:
        if process.pid is None:  # never started
            continue
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.terminate()
            process.join()


def _stop_with_parent(parent: int, poll_seconds: float = 0.5) -> threading.Thread:
    """Watch ``parent`` from a daemon thread; once this process has another parent (``parent`` died
    and the worker was handed to init), raise KeyboardInterrupt in the main thread -- the worker
    checkpoints and exits as on Ctrl-C, losing at most the iteration in flight -- and end the
    process after :data:`INTERRUPT_GRACE_SECONDS` if it has not ended by then."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        _thread.interrupt_main()
        time.sleep(INTERRUPT_GRACE_SECONDS)
        os._exit(1)

    watcher = threading.Thread(target=watch, name="dgl-bilevel-parent-watch", daemon=True)
    watcher.start()
    return watcher


def _worker(index: int, tasks: list, threads: int, run_one: Callable[..., dict], callbacks: list, messages,
            parent: int) -> None:
    """One worker: ``threads`` torch threads, its tasks stacked (or one by one), records back to the parent."""
    _stop_with_parent(parent)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        from .stacked import SeedTask, run_tasks_stacked

        quiet = [SeedTask(dataclasses.replace(t.config, progress=False), t.seed, t.run_dir) for t in tasks]
        hooks = [*callbacks, _QueueProgress(messages)]

        def echo(line: str) -> None:
            messages.put(("echo", f"[worker {index}] {line}"))

        records = None
        if len(quiet) > 1 and all(t.config.stack_seeds != "off" and t.config.learns_graph for t in quiet):
            records = run_tasks_stacked(quiet, hooks, echo, strict=False)  # each group that shares, stacked
        records = records or [None] * len(quiet)
        records = [record if record is not None else run_one(config=t.config, seed=t.seed, run_dir=t.run_dir, callbacks=hooks)
                   for t, record in zip(quiet, records)]
        messages.put(("done", index, records))
    except KeyboardInterrupt as exc:  # RunInterrupted when the seeds kept checkpoints
        checkpoint = getattr(exc, "checkpoint", None)
        messages.put(("interrupted", index, None if checkpoint is None else str(checkpoint),
                      getattr(exc, "iteration", -1)))
    except BaseException:  # noqa: BLE001 -- reported to the parent, which raises it
        messages.put(("error", index, traceback.format_exc()))
