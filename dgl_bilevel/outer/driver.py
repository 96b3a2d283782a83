"""The one lifecycle of outer runs: resume, step, checkpoint, Ctrl-C, callbacks, results.

:func:`drive` runs outer loops to the end through a *stepper*, whatever advances them: a single
loop steps itself (:class:`SingleLoop`); :class:`~dgl_bilevel.seeds.Lockstep` steps many with one
shared inner solve. :func:`~dgl_bilevel.fit`, :func:`~dgl_bilevel.outer.fit_loop` and
:func:`~dgl_bilevel.seeds.fit_seeds` are front ends of it, so every run resumes, saves and stops alike.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterator, Optional, Protocol, Sequence

import torch

from ..errors import RunInterrupted
from . import checkpoint as checkpoints
from .callbacks import Callback
from .interrupts import deferred_interrupt
from .result import FitResult
from .state import LoopView

logger = logging.getLogger("dgl_bilevel")


class DrivenLoop(LoopView, Protocol):
    """What the driver uses of an outer loop (:class:`~dgl_bilevel.outer.OuterLoop` has it all)."""

    callbacks: list[Callback]
    initial_rng_state: torch.Tensor

    @property
    def done(self) -> bool: ...

    def step(self) -> Any: ...

    def result(self) -> FitResult: ...


class Stepper(Protocol):
    """What advances :attr:`loops`: one outer iteration of each loop not yet done per :meth:`step`."""

    @property
    def loops(self) -> Sequence[DrivenLoop]: ...

    @property
    def done(self) -> bool: ...

    def step(self) -> list[DrivenLoop]:
        """One outer iteration of every loop not yet done; returns the loops that took it."""

    def own_rng(self, loop: DrivenLoop) -> ContextManager[None]:
        """A block in which torch's global generator is the one ``loop`` draws from."""


class StepProgress(Protocol):
    """A progress display over every loop of a :func:`drive` (one bar for many seeds)."""

    def start(self, loops: Sequence[DrivenLoop]) -> None: ...

    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


class SeparateGenerators:
    """torch's global generator kept apart per loop (G2G's dropout draws from it), as each run alone has it."""

    def __init__(self, loops: Sequence[DrivenLoop], states: Optional[Sequence[torch.Tensor]] = None) -> None:
        self.loops = list(loops)
        # as each loop was built, unless given (as a checkpoint left it)
        self.states = list(states) if states is not None else [loop.initial_rng_state for loop in loops]

    @contextmanager
    def own(self, loop: DrivenLoop) -> Iterator[None]:
        """Inside the block torch's global generator is ``loop``'s own (and its draws are kept)."""
        i = self.loops.index(loop)
        outside = torch.get_rng_state()
        torch.set_rng_state(self.states[i])
        try:
            yield
        finally:
            self.states[i] = torch.get_rng_state()
            torch.set_rng_state(outside)


class SingleLoop:
    """Steps one loop by its own :meth:`~dgl_bilevel.outer.OuterLoop.step`: the numerics of a run alone
    (a stack of one would round differently).

    ``separate_rng``: the loop draws from a global generator of its own and leaves the caller's as it
    was (as :func:`~dgl_bilevel.seeds.fit_seeds` runs each loop); otherwise it uses torch's own, as
    :func:`~dgl_bilevel.fit` does.
    """

    def __init__(self, loop: DrivenLoop, separate_rng: bool = False) -> None:
        self.loops = [loop]
        self._generators = SeparateGenerators(self.loops) if separate_rng else None

    @property
    def done(self) -> bool:
        return self.loops[0].done

    def own_rng(self, loop: DrivenLoop) -> ContextManager[None]:
        return self._generators.own(loop) if self._generators is not None else nullcontext()

    def step(self) -> list[DrivenLoop]:
        loop = self.loops[0]
        if loop.done:
            return []
        with self.own_rng(loop):
            loop.step()
        return [loop]


def drive(
    stepper: Stepper,
    checkpoints_at: Sequence[Optional[Path]],
    *,
    checkpoint_every: int = 10,
    resume: bool = False,
    progress: Optional[StepProgress] = None,
) -> list[FitResult]:
    """Run ``stepper.loops`` to the end; their results in order.

    A loop with a checkpoint file (``checkpoints_at``, one per loop or None) continues it when
    ``resume`` is set, keeps a snapshot of its last completed iteration, writes it every
    ``checkpoint_every`` of its iterations and at the end, and on Ctrl-C writes it and raises
    :class:`~dgl_bilevel.errors.RunInterrupted`. Callbacks get ``on_fit_start`` before the first
    step, ``close`` however the run ends and ``on_fit_end`` with each result.
    """
    loops = stepper.loops
    paths = list(checkpoints_at)
    for loop, path in zip(loops, paths):
        if resume and path is not None and path.is_file():
            with stepper.own_rng(loop):
                checkpoints.restore(loop, path)
            logger.info("resumed from %s at outer iteration %d", path, loop.state.next_iteration)

    def snapshot(loop: DrivenLoop) -> dict:
        with stepper.own_rng(loop):
            return checkpoints.snapshot(loop)

    saved = [snapshot(loop) if path is not None else None for loop, path in zip(loops, paths)]
    if progress is not None:
        progress.start(loops)
    try:
        for loop in loops:
            for callback in loop.callbacks:
                callback.on_fit_start(loop)
        while not stepper.done:
            stepped = stepper.step()
            if progress is not None:
                progress.update(len(stepped))
            for loop in stepped:
                i = loops.index(loop)
                if paths[i] is None:
                    continue
                with deferred_interrupt():
                    saved[i] = snapshot(loop)
                if checkpoint_every and loop.state.next_iteration % checkpoint_every == 0:
                    checkpoints.write(paths[i], saved[i])
    except KeyboardInterrupt as exc:
        if isinstance(exc, RunInterrupted):
            raise
        _write_and_raise(loops, paths, saved, exc)
    finally:
        if progress is not None:
            progress.close()
        for loop in loops:
            for callback in loop.callbacks:
                callback.close()
    results = []
    for loop, path in zip(loops, paths):
        if path is not None:
            checkpoints.write(path, snapshot(loop))
        with stepper.own_rng(loop):
            result = loop.result()
        for callback in loop.callbacks:
            callback.on_fit_end(loop, result)
        results.append(result)
    return results


def _write_and_raise(loops: Sequence[DrivenLoop], paths: Sequence[Optional[Path]], saved: Sequence[Optional[dict]],
                     exc: KeyboardInterrupt) -> None:
    """Ctrl-C: write every loop's last completed iteration, then raise :class:`RunInterrupted` saying where."""
    written = [(path, payload) for path, payload in zip(paths, saved) if path is not None and payload is not None]
    for path, payload in written:
        checkpoints.write(path, payload)
    if not written:
        raise RunInterrupted(None, min(loop.state.next_iteration for loop in loops) - 1) from exc
    iteration = min(payload["next_iteration"] for _, payload in written) - 1
    if len(loops) == 1:
        logger.error("interrupted: checkpoint of outer iteration %d written to %s (continue with resume)",
                     iteration, written[0][0])
    else:
        logger.error("interrupted: checkpoints of %d seeds written (continue with resume)", len(written))
    raise RunInterrupted(written[0][0], iteration) from exc
