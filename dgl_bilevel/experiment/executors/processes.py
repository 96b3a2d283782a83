"""Seeds split among local worker processes (``--workers N``), each share stacked as one computation.

One Cora seed's inner solve is bound by memory traffic, not by the number of threads: a stack of
14 GNN seeds runs about as fast on one thread as on two (docs/benchmarks.md). Two processes with one
thread each therefore do nearly twice the work of one process with two. :class:`ProcessExecutor`
deals the seeds out to ``N`` spawned processes with ``cpus / N`` torch threads each; every worker
runs its share as the sequential executor runs all seeds
(:func:`~dgl_bilevel.experiment.executors.share.run_share`: a pool of GNN and Laplacian seeds runs
as two stacks, a seed that shares with none alone) and writes the same files a single process
would -- results, checkpoints, learned graphs -- so ``--resume`` works across worker counts.
Results equal a single process's up to floating-point rounding (another stack size and thread
count sum in another order).

Each seed's logger (``--logger``) is built from its configuration inside the worker that runs it;
callbacks given in Python travel by pickle. Each worker reports through a pipe of its own
(progress into one bar here, log lines, its records). A worker's error stops the others and is
raised here with the worker's traceback; Ctrl-C reaches every worker, which checkpoints as a single
process would. The death properties: (a) a worker whose parent is gone -- killed by a signal that
does not reach the workers, SIGTERM or SIGKILL to the parent alone -- stops as on Ctrl-C instead of
running on unattended (:func:`_stop_with_parent`); (b) a worker that dies without reporting (a
signal, the OOM killer) is started again on its share, up to
:data:`~dgl_bilevel.experiment.executors.base.MAX_RETRIES` times, and its seeds continue from their
checkpoints with the same share and threads, so their records are an uninterrupted run's, bit for bit.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
import _thread
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from ...errors import ConfigError, RunInterrupted
from ...outer.callbacks import Callback
from .base import MAX_RETRIES, Executor, RunOne, progress_bar, quiet, total_iterations

if TYPE_CHECKING:
    from ..stacked import SeedTask

#: seconds a worker may take to write its checkpoints after Ctrl-C before it is terminated
INTERRUPT_GRACE_SECONDS = 60.0


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one).

    Example:
        >>> from dgl_bilevel.experiment.executors.processes import available_cpus
        >>> available_cpus() >= 1
        True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def deal(tasks: Sequence, workers: int) -> list[list[int]]:
    """The indices of ``tasks`` dealt round-robin to ``workers`` groups (no empty group): each worker
    gets a share of every configuration, so configurations that cost more per seed (G2G's outer
    network) do not all land on one worker; the rotation runs on across configurations, so a worker
    dealt one seed fewer of the GNN's is dealt one more of the Laplacian's after it.

    Example:
        >>> from dgl_bilevel.experiment.executors.processes import deal
        >>> deal("abcde", 2)
        [[0, 2, 4], [1, 3]]
    """
    workers = max(1, min(workers, len(tasks)))
    return [list(range(first, len(tasks), workers)) for first in range(workers)]


def _send(channel, message: tuple) -> None:
    """Send ``message`` to the parent; if the parent is gone, drop it (the parent watch stops this worker)."""
    try:
        channel.send(message)
    except OSError:
        pass


class _PipeProgress(Callback):
    """A fit callback that reports a seed's outer iterations to the parent: those a resumed seed
    already has when it starts, then each one it finishes."""

    def __init__(self, channel) -> None:
        self.channel = channel

    def on_fit_start(self, loop) -> None:
        if loop.state.next_iteration:
            _send(self.channel, ("progress", loop.state.next_iteration))

    def on_iteration(self, state) -> None:
        _send(self.channel, ("progress", 1))


@dataclasses.dataclass
class _Worker:
    """One worker's share and its current process, with what it has reported."""

    index: int
    tasks: list
    process: Any = None
    channel: Any = None  # this process's end of the worker's pipe
    starts: int = 0
    records: Optional[list] = None
    interrupted: Optional[tuple] = None  # (checkpoint, iteration) once it reported Ctrl-C
    failed: bool = False
    unreadable: bool = False  # a message arrived cut short: nothing more is read from this process
    counted: int = 0  # outer iterations this worker's current process put on the bar

    @property
    def name(self) -> str:
        return f"dgl-bilevel-worker-{self.index}"

    def receive(self) -> list[tuple]:
        """Every message waiting in the pipe (none more once the worker has closed its end)."""
        messages = []
        try:
            while not self.unreadable and self.channel.poll():
                messages.append(self.channel.recv())
        except (EOFError, OSError):  # the worker exited (or was closed here)
            pass
        except Exception:  # noqa: BLE001 -- a message cut short (interrupted while sending): the rest is unreadable
            self.unreadable = True
        return messages


class ProcessExecutor(Executor):
    """Seeds dealt round-robin to ``workers`` spawned processes, each stacking its share.

    ``stacking="on"`` is not enforced inside a worker (a share that does not stack runs seed by
    seed): only the sequential executor refuses, as ``--workers`` runs always have. The bar counts
    each seed's iterations once: a restarted worker's count starts again from its checkpoints, and
    a worker that finishes fills in its share (seeds already finished or stopped early).

    Example:
        >>> from dgl_bilevel.experiment.executors import ProcessExecutor
        >>> executor = ProcessExecutor(workers=3)
        >>> executor.name, executor.separate_workers, executor.workers
        ('processes', True, 3)
    """

    name = "processes"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, run_one: RunOne, tasks: Sequence[SeedTask], callbacks: Sequence = (), *, progress: bool = True,
            description: str = "seeds", echo: Callable[[str], None] = print, stacking: str = "auto") -> list[dict]:
        shares = deal(tasks, self.workers)
        workers = [_Worker(index, [quiet(tasks[i]) for i in share]) for index, share in enumerate(shares)]
        threads = max(1, available_cpus() // len(workers))
        context = multiprocessing.get_context("spawn")  # not fork: torch's thread pools do not survive a fork
        share_stacking = "off" if stacking == "off" else "auto"
        start_args = (threads, run_one, list(callbacks), share_stacking, os.getpid())
        echo(f"{len(tasks)} seeds in {len(workers)} worker processes, {threads} torch thread(s) each "
             f"({', '.join(str(len(w.tasks)) for w in workers)} seeds)")
        bar = progress_bar(tasks, progress, description)
        try:
            for worker in workers:
                _start(context, worker, *start_args)
            while any(worker.records is None for worker in workers):
                running = [worker for worker in workers if worker.records is None]
                wait([w.channel for w in running] + [w.process.sentinel for w in running], timeout=1.0)
                for worker in running:
                    alive = worker.process.is_alive()  # before reading: a worker dead now has sent all it will
                    for kind, *payload in worker.receive():
                        if kind == "progress":
                            bar.update(payload[0])
                            worker.counted += payload[0]
                        elif kind == "echo":
                            (bar.write if progress else echo)(payload[0])
                        elif kind == "done":
                            worker.records = payload[0]
                            share = total_iterations(worker.tasks)  # seeds read back finished or stopped early too
                            bar.update(share - worker.counted)
                            worker.counted = share
                        elif kind == "interrupted":  # a worker got Ctrl-C alone: stop the run as a single process would
                            worker.interrupted = tuple(payload)
                            raise KeyboardInterrupt
                        else:  # "error"
                            worker.failed = True
                            raise RuntimeError(f"worker {worker.index} failed:\n{payload[0]}")
                    if worker.records is None and not alive:
                        _restart_or_raise(context, worker, start_args, echo)
                        bar.update(-worker.counted)  # the new process reports its seeds from their checkpoints
                        worker.counted = 0
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            _stop(workers, already_interrupted=interrupted)
            if interrupted:
                raise _where_to_resume(workers) from exc
            raise
        finally:
            bar.close()
        for worker in workers:
            worker.process.join()
            worker.channel.close()
        records: list = [None] * len(tasks)
        for worker, share in zip(workers, shares):
            for position, record in zip(share, worker.records):
                records[position] = record
        return records


def _start(context, worker: _Worker, threads: int, run_one: RunOne, callbacks: list, stacking: str,
           parent: int) -> None:
    """Start (or start again) ``worker``'s process on its share, with a fresh pipe."""
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=_work, args=(worker.index, worker.tasks, threads, run_one, callbacks, stacking,
                                                  sending, parent), name=worker.name, daemon=True)
    try:
        process.start()
    except (pickle.PicklingError, AttributeError, TypeError) as exc:  # say which input could not travel
        receiving.close()
        raise ConfigError(f"--workers: the run could not be sent to worker processes ({exc})") from exc
    finally:
        sending.close()  # the worker holds the sending end now: its exit closes the pipe
    worker.process, worker.channel = process, receiving
    worker.starts += 1


def _restart_or_raise(context, worker: _Worker, start_args: tuple, echo: Callable[[str], None]) -> None:
    """A worker died without reporting: start it again on its share (its seeds resume from their
    checkpoints), or, after :data:`MAX_RETRIES` restarts, stop the run."""
    worker.process.join()
    worker.channel.close()
    code = worker.process.exitcode
    if worker.starts > MAX_RETRIES:
        raise RuntimeError(f"worker {worker.name} stopped (exit code {code}) before reporting, "
                           f"{worker.starts} times; its seeds keep their checkpoints: rerun with --resume")
    echo(f"worker {worker.index} stopped (exit code {code}) before reporting: started again, its seeds "
         "continue from their checkpoints")
    _start(context, worker, *start_args)


def _where_to_resume(workers: Sequence[_Worker]) -> RunInterrupted:
    """The workers' reports after Ctrl-C as one :class:`RunInterrupted`: a checkpoint written and the
    earliest outer iteration every interrupted seed has kept."""
    saved = [worker.interrupted for worker in workers
             if worker.interrupted is not None and worker.interrupted[0] is not None]
    if not saved:
        return RunInterrupted(None, -1)
    return RunInterrupted(saved[0][0], min(iteration for _, iteration in saved))


def _stop(workers: Sequence[_Worker], already_interrupted: bool) -> None:
    """Stop the workers as Ctrl-C stops a single process: each writes its checkpoints and exits.

    A Ctrl-C at the terminal reaches every process of the group; workers it did not reach (the
    parent alone was signalled, or another worker failed) get SIGINT here -- only those still
    running, not the ones that reported and are exiting. Their reports are read while they stop
    (so a full pipe never holds one up); whatever is still alive after
    :data:`INTERRUPT_GRACE_SECONDS` is terminated.
    """
    started = [worker for worker in workers if worker.process is not None]
    if already_interrupted:
        _drain_until_stopped(started, time.monotonic() + 2.0)
    for worker in started:
        if worker.records is None and not worker.failed and worker.process.is_alive():
            try:
                os.kill(worker.process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    _drain_until_stopped(started, time.monotonic() + INTERRUPT_GRACE_SECONDS)
    for worker in started:
        if worker.process.is_alive():
            worker.process.terminate()
        worker.process.join()
        worker.channel.close()


def _drain_until_stopped(workers: Sequence[_Worker], deadline: float) -> None:
    """Read the workers' reports until every one has exited or ``deadline`` passes."""
    while True:
        for worker in workers:
            for kind, *payload in worker.receive():
                if kind == "interrupted":
                    worker.interrupted = tuple(payload)
        alive = [worker for worker in workers if worker.process.is_alive()]
        if not alive or time.monotonic() >= deadline:
            return
        wait([w.channel for w in alive] + [w.process.sentinel for w in alive],
             timeout=max(0.0, min(0.5, deadline - time.monotonic())))


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


def _work(index: int, tasks: list, threads: int, run_one: RunOne, callbacks: list, stacking: str, channel,
          parent: int) -> None:
    """One worker: ``threads`` torch threads, its share run (stacked where it can be), records back to the parent."""
    _stop_with_parent(parent)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        from .share import run_share

        def echo(line: str) -> None:
            _send(channel, ("echo", f"[worker {index}] {line}"))

        records = run_share(tasks, run_one, [*callbacks, _PipeProgress(channel)], echo, stacking)
        _send(channel, ("done", records))
    except KeyboardInterrupt as exc:  # RunInterrupted when the seeds kept checkpoints
        checkpoint = getattr(exc, "checkpoint", None)
        _send(channel, ("interrupted", None if checkpoint is None else str(checkpoint), getattr(exc, "iteration", -1)))
    except BaseException:  # noqa: BLE001 -- reported to the parent, which raises it
        _send(channel, ("error", traceback.format_exc()))
    finally:
        channel.close()
