"""The two timed units the benchmarks compare: one outer iteration as ``fit`` runs it, and one
plain training run of the same inner model (no hypergradient)."""
from __future__ import annotations

import time


def timed_outer_iteration(method, inner, structure, data, optimizer, generator) -> float:
    """Seconds of one outer iteration: inner solve, outer loss on ``v_out``, hypergradient, outer step."""
    from dgl_bilevel.losses import task_loss

    started = time.perf_counter()
    w = structure()
    solution = method.solve(inner, w, inner.starting_params(generator))
    loss = task_loss(inner.predict(solution.params, w), data.labels, data.v_out, data.task)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


def timed_plain_training(inner, structure, generator) -> float:
    """Seconds of the same inner model fitted once on the current weights, without any hypergradient."""
    import torch

    from dgl_bilevel.hypergrad import optimize

    started = time.perf_counter()
    w = structure().detach()
    params, _, _ = optimize(inner, w, inner.starting_params(generator), inner.steps, differentiable=False)
    with torch.no_grad():
        inner.predict(params, w)
    return time.perf_counter() - started
