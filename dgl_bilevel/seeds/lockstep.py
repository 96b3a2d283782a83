"""Several outer loops in lockstep: one stacked inner solve and one backward pass per outer iteration.

Each seed keeps everything a separate run has -- its own split, structure, outer optimizer,
generator, best-validation selection, callbacks, history and checkpoint file -- and goes through
the same phases of :meth:`~dgl_bilevel.outer.OuterLoop.step`; only the inner solve, the
hypergradient and the per-call overhead that dominates Cora-sized problems are shared. Seeds
that stop (non-finite hypergradient) or finish leave the stack; the others go on.
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import ContextManager, Optional, Sequence

import torch

from ..errors import ConfigError
from ..hypergrad import HypergradMethod
from ..outer.driver import SeparateGenerators, SingleLoop, drive
from ..outer.loop import OuterLoop, PendingIteration
from ..outer.result import FitResult
from ..outer.selection import BestInnerIterate
from .problems import StackedProblem, stack_problems, why_not_stackable


def why_not_lockstep(loops: Sequence[OuterLoop]) -> Optional[str]:
    """Why these loops cannot run in lockstep; ``None`` when they can.

    Loops share their inner solves when they use the same hypergradient method (without a warm
    start, which keeps per-run state) and inner problems that stack (:func:`why_not_stackable`:
    same problem class and settings on the same graph; the splits and seeds may differ).

    Args:
        loops: built :class:`~dgl_bilevel.outer.OuterLoop` objects.

    Returns:
        A sentence saying what stands in the way, or ``None``.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> from dgl_bilevel.outer import OuterLoop
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> splits = [data, data.with_splits(v_in=[1, 4], v_out=[0, 5])]  # two seeds' splits
        >>> def loop(split, seed, hypergrad="unrolled", lam=1.0):
        ...     inner = dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30, lam=lam)
        ...     return OuterLoop(split, dbl.EdgeWeights(graph, init="constant"), inner, hypergrad,
        ...                      outer_steps=3, seed=seed)
        >>> print(why_not_lockstep([loop(split, seed) for seed, split in enumerate(splits)]))
        None
        >>> why_not_lockstep([loop(splits[0], 0), loop(splits[1], 1, hypergrad="truncated")])
        "the loops' hypergradient methods differ"
        >>> why_not_lockstep([loop(splits[0], 0), loop(splits[1], 1, lam=2.0)])
        "the seeds' inner settings differ"
        >>> why_not_lockstep([loop(split, seed, hypergrad="adjoint") for seed, split in enumerate(splits)])
        'a warm-started solve (implicit or adjoint) keeps per-run state between outer iterations'
    """
    if len(loops) < 1:
        return "no loops"
    first = loops[0]
    if any(loop.method.describe() != first.method.describe() for loop in loops):
        return "the loops' hypergradient methods differ"
    if first.method.warm_start:
        return "a warm-started solve (implicit or adjoint) keeps per-run state between outer iterations"
    return why_not_stackable([loop.inner for loop in loops])


class _StackMonitor:
    """Scores every inner iterate of the stack for the seeds that select their inner iterate by validation."""

    def __init__(self, problem: StackedProblem, weights: torch.Tensor, pendings: Sequence[PendingIteration]) -> None:
        self.problem, self.weights = problem, weights.detach()
        self.monitors = [p.monitor for p in pendings]

    def __call__(self, params) -> None:
        with torch.no_grad():
            outputs = self.problem.split_outputs(self.problem.predict(params, self.weights))
        for monitor, out in zip(self.monitors, outputs):
            if monitor is not None:
                monitor.observe(out)


class SeedProgress:
    """One progress bar over every seed's outer iterations (with a ``write`` for log lines), opened
    when the run starts (after a resume: counting the iterations already done)."""

    def __init__(self, description: str, enabled: bool) -> None:
        self.description, self.enabled = description, enabled
        self.loops: Sequence[OuterLoop] = ()
        self.bar = None

    def start(self, loops: Sequence[OuterLoop]) -> None:
        from tqdm.auto import tqdm

        self.loops = loops
        self.bar = tqdm(total=sum(loop.outer_steps for loop in loops),
                        initial=sum(min(loop.state.next_iteration, loop.outer_steps) for loop in loops),
                        disable=not self.enabled, desc=self.description or f"{len(loops)} seeds", unit="it",
                        dynamic_ncols=True, leave=True)

    def update(self, n: int) -> None:
        scores = [loop.selection.score for loop in self.loops if loop.selection.iteration >= 0]
        self.bar.update(n)
        if scores:
            self.bar.set_postfix(best_val_mean=f"{sum(scores) / len(scores):.4f}", refresh=False)

    def write(self, line: str) -> None:
        self.bar.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Lockstep:
    """Drives ``loops`` one stacked outer iteration at a time (:meth:`step`): the stepper of many loops
    that :func:`~dgl_bilevel.outer.driver.drive` runs for :func:`fit_seeds`.

    Each :meth:`step` solves the inner problems of every loop not yet done as one stacked problem,
    takes one backward pass through the sum of their outer losses, and finishes each loop's
    iteration (selection, callbacks, optimizer step) as its own :meth:`~dgl_bilevel.outer.OuterLoop.step`
    would.

    Args:
        loops: the loops to drive (:func:`why_not_lockstep` must find nothing against them).
        rng_states: torch's global generator state of each loop (e.g. from its checkpoint);
            default: as each loop was built.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if the loops cannot share their inner solves.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> from dgl_bilevel.outer import OuterLoop
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> splits = [data, data.with_splits(v_in=[1, 4], v_out=[0, 5])]  # two seeds' splits
        >>> def loop(split, seed, hypergrad="unrolled", lam=1.0):
        ...     inner = dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30, lam=lam)
        ...     return OuterLoop(split, dbl.EdgeWeights(graph, init="constant"), inner, hypergrad,
        ...                      outer_steps=3, seed=seed)
        >>> loops = [loop(split, seed) for seed, split in enumerate(splits)]
        >>> stepper = Lockstep(loops)
        >>> len(stepper.step()), [each.state.next_iteration for each in loops], stepper.done
        (2, [1, 1], False)
        >>> while not stepper.done:
        ...     _ = stepper.step()
        >>> [len(each.state.history) for each in loops], stepper.step()
        ([3, 3], [])
        >>> Lockstep([loop(splits[0], 0), loop(splits[1], 1, hypergrad="truncated")])
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: these runs cannot share their inner solves: the loops' hypergradient ...
    """

    def __init__(self, loops: Sequence[OuterLoop], rng_states: Optional[Sequence[torch.Tensor]] = None) -> None:
        reason = why_not_lockstep(loops)
        if reason is not None:
            raise ConfigError(f"these runs cannot share their inner solves: {reason}")
        self.loops = list(loops)
        self.method: HypergradMethod = copy.deepcopy(loops[0].method)
        self._stacks: dict = {}
        # torch's global generator (G2G's dropout draws from it) as each run alone would have it:
        # as the run was built, or as a checkpoint left it
        self._generators = SeparateGenerators(self.loops, rng_states)

    def own_rng(self, loop: OuterLoop) -> ContextManager[None]:
        """Inside the block torch's global generator is ``loop``'s own (and its draws are kept)."""
        return self._generators.own(loop)

    def _stack(self, loops: Sequence[OuterLoop]) -> StackedProblem:
        key = tuple(self.loops.index(loop) for loop in loops)  # which of this driver's loops take the step
        if key not in self._stacks:
            self._stacks = {key: stack_problems([loop.inner for loop in loops])}  # keep only the current one
        return self._stacks[key]

    @property
    def done(self) -> bool:
        return all(loop.done for loop in self.loops)

    def step(self) -> list[OuterLoop]:
        """One outer iteration of every loop not yet done; returns the loops that took it."""
        active = [loop for loop in self.loops if not loop.done]
        if not active:
            return []
        started = time.perf_counter()
        pendings = []
        for loop in active:
            with self.own_rng(loop):
                pendings.append(loop.begin_iteration())
        starts = [loop.inner.starting_params(loop.generator) for loop in active]
        self._solve_and_finish(active, pendings, starts, started)
        return active

    def _solve_and_finish(self, loops, pendings, starts, started: float) -> None:
        problem = self._stack(loops)
        weights = problem.stack.edge_weights([p.weights for p in pendings])
        needs_monitor = any(p.monitor is not None for p in pendings)
        monitor = _StackMonitor(problem, weights, pendings) if needs_monitor else None
        solution = self.method.solve(problem, weights, problem.stack_params(starts), monitor=monitor)
        objectives = problem.per_seed_objective
        objectives = [float(v) for v in objectives] if objectives is not None else [solution.inner_objective] * len(loops)
        outputs = problem.predict(solution.params, weights)
        for loop, pending, out in zip(loops, pendings, problem.split_outputs(outputs)):
            loop.score_iteration(pending, out)
        if not all(p.finite for p in pendings) and len(loops) > 1:
            # a non-finite seed stops alone: finish it, and redo the others without it (a joint linear
            # solve would otherwise carry its NaN into every seed's hypergradient)
            keep = [i for i, p in enumerate(pendings) if p.finite]
            for i, (loop, pending) in enumerate(zip(loops, pendings)):
                if i not in keep:
                    loop.finish_iteration(pending, problem.split_params(solution.params)[i], objectives[i],
                                          solution.info, _timing(started, len(loops)))
            if keep:
                for i in keep:  # no backward pass has used the weights' graph yet: solve again from the same start
                    if pendings[i].monitor is not None:
                        pendings[i].monitor = BestInnerIterate(loops[i].inner, pendings[i].weights, loops[i].data)
                self._solve_and_finish([loops[i] for i in keep], [pendings[i] for i in keep],
                                       [starts[i] for i in keep], started)
            return
        finite = [p.total for p in pendings if p.finite]
        if finite:
            torch.stack(finite).sum().backward()
        per_seed = problem.split_params(solution.params)
        timing = _timing(started, len(loops))
        for loop, pending, params, value in zip(loops, pendings, per_seed, objectives):
            loop.finish_iteration(pending, params, value, solution.info, timing)


def _timing(started: float, seeds: int) -> dict:
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed / seeds, "stacked_seconds": elapsed, "stacked_seeds": seeds}


def fit_seeds(
    loops: Sequence[OuterLoop],
    *,
    checkpoints_at: "Sequence[str | os.PathLike | None] | None" = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    progress: bool = True,
    description: str = "",
) -> list[FitResult]:
    """Run ``loops`` (one per seed, built as :func:`~dgl_bilevel.fit` builds one) to the end in
    lockstep; returns their results in order, as separate :func:`~dgl_bilevel.fit` calls would.

    Args:
        loops: :class:`~dgl_bilevel.outer.OuterLoop` objects of the same inner problem settings
            and hypergradient method (:func:`why_not_lockstep` says why others cannot share).
        checkpoints_at: a checkpoint file per loop (or None), written every ``checkpoint_every``
            of its iterations, at the end and on Ctrl-C; with ``resume=True`` existing ones are
            continued (loops may then stand at different iterations).
        checkpoint_every: iterations between checkpoints.
        resume: continue from the checkpoints that exist.
        progress: one progress bar over every loop's iterations.
        description: the progress bar's label; default: ``"<n> seeds"``.

    A single loop steps alone, by its own :meth:`~dgl_bilevel.outer.OuterLoop.step` (with its own
    torch generator): the same numbers, history and checkpoints as :func:`~dgl_bilevel.outer.fit_loop`.

    Returns:
        One :class:`~dgl_bilevel.outer.FitResult` per loop, in the order of ``loops``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``checkpoints_at`` has not one entry per loop, the loops
            cannot share their inner solves, or a checkpoint to resume cannot be used.
        ~dgl_bilevel.errors.RunInterrupted: on Ctrl-C, after writing the checkpoints.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> from dgl_bilevel.outer import OuterLoop
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> splits = [data, data.with_splits(v_in=[1, 4], v_out=[0, 5])]  # two seeds' splits
        >>> def loop(split, seed, hypergrad="unrolled", lam=1.0):
        ...     inner = dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30, lam=lam)
        ...     return OuterLoop(split, dbl.EdgeWeights(graph, init="constant"), inner, hypergrad,
        ...                      outer_steps=3, seed=seed)
        >>> results = fit_seeds([loop(split, seed) for seed, split in enumerate(splits)], progress=False)
        >>> [len(result.history) for result in results]
        [3, 3]
        >>> alone = [dbl.outer.fit_loop(loop(split, seed)) for seed, split in enumerate(splits)]
        >>> all(torch.allclose(a.final_weights, b.final_weights) for a, b in zip(results, alone))  # as separate runs
        True
    """
    paths = [None if c is None else Path(c) for c in (checkpoints_at or [None] * len(loops))]
    if len(paths) != len(loops):
        raise ConfigError(f"{len(paths)} checkpoint paths for {len(loops)} loops")
    # a single loop steps alone (a stack of one would round differently): the numerics of fit
    stepper = SingleLoop(loops[0], separate_rng=True) if len(loops) == 1 else Lockstep(loops)
    return drive(stepper, paths, checkpoint_every=checkpoint_every, resume=resume,
                 progress=SeedProgress(description, progress))
