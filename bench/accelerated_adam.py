"""The library's flat Adam (dgl_bilevel/inner/flat_adam.py) against torchopt's own accelerated Adam
(``torchopt.adam(..., use_accelerated_op=True)``): availability, values, derivatives and speed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/accelerated_adam.py

On parameters shaped like Cora's paper GNN (SumAggGNN 1433 -> 16 -> 7: 46,103 numbers in 4 tensors),
with the library's settings (lr 1e-2, betas 0.9 / 0.999, eps 1e-6, eps_root 1e-16):

1. whether torchopt's compiled kernels load (``torchopt.accelerated_op.is_available()``); without them
   ``AdamOp`` runs its Python fallback (``torchopt/accelerated_op/_src/adam_op.py``);
2. whether 30 updates (gradients with exact zeros) equal plain torchopt Adam's, bit for bit;
3. the VJP of one update (what an unrolled hypergradient pulls back through it) against autograd
   through plain torchopt Adam, on the coordinates with a gradient and on those without;
4. seconds per update: plain torchopt Adam per tensor, accelerated per tensor, the flat form; and
   per update + VJP: autograd through the accelerated op against the flat form's written-out VJP.
"""
from __future__ import annotations

import statistics
import time

import torch
import torchopt

from dgl_bilevel.inner.optimizers import ADAM_BETAS, ADAM_EPS, ADAM_EPS_ROOT, InnerOptimizer

LR = 1e-2
SHAPES = [(1433, 32), (16,), (16, 14), (7,)]


def _adam(accelerated: bool):
    return torchopt.adam(LR, betas=ADAM_BETAS, eps=ADAM_EPS, eps_root=ADAM_EPS_ROOT, use_accelerated_op=accelerated)


def _grads(gen, dtype, scale=1.0):
    grads = [torch.randn(s, generator=gen, dtype=dtype) * scale for s in SHAPES]
    grads[0][:700] = 0.0  # feature rows no training node reads: exactly zero gradient
    return grads


def bitwise(dtype) -> int:
    """Steps (of 30) whose updates or moments differ from plain torchopt Adam's in any bit."""
    plain, fast = _adam(False), _adam(True)
    gen = torch.Generator().manual_seed(0)
    zeros = tuple(torch.zeros(s, dtype=dtype) for s in SHAPES)
    s_plain, s_fast = plain.init(zeros), fast.init(zeros)
    differing = 0
    for step in range(30):
        g = _grads(gen, dtype, 10.0 ** (-step % 5))
        u_plain, s_plain = plain.update(tuple(x.clone() for x in g), s_plain, inplace=False)
        u_fast, s_fast = fast.update(tuple(x.clone() for x in g), s_fast, inplace=False)
        leaves_plain = list(u_plain) + torchopt.pytree.tree_flatten(s_plain)[0]
        leaves_fast = list(u_fast) + torchopt.pytree.tree_flatten(s_fast)[0]
        differing += not all(torch.equal(a, b) for a, b in zip(leaves_plain, leaves_fast))
    return differing


def vjp_errors() -> dict:
    """Relative error of the accelerated op's VJP (autograd through it) against autograd through
    plain Adam, float64, after 5 steps: on the gradient's coordinates that have one, and on those
    that have none (first moment exactly 0)."""
    gen = torch.Generator().manual_seed(1)
    shape = (1000,)
    out = {}
    for name, accelerated in (("plain", False), ("accelerated", True)):
        adam = _adam(accelerated)
        gen.manual_seed(1)
        state = adam.init((torch.zeros(shape, dtype=torch.float64),))
        for _ in range(5):
            g = torch.randn(shape, generator=gen, dtype=torch.float64)
            g[:300] = 0.0
            _, state = adam.update((g,), state, inplace=False)
        g = torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_(True)
        with torch.no_grad():
            g[:300] = 0.0
        cotangent = torch.randn(shape, generator=gen, dtype=torch.float64)
        (update,), _ = adam.update((g,), state, inplace=False)
        (out[name],) = torch.autograd.grad(update, g, cotangent)
    plain, fast = out["plain"], out["accelerated"]

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    return {"with gradient": rel(fast[300:], plain[300:]), "without gradient": rel(fast[:300], plain[:300])}


def _time(fn, reps=300) -> float:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - started) / reps)
    return statistics.median(samples)


def speeds() -> dict:
    gen = torch.Generator().manual_seed(2)
    grads = tuple(_grads(gen, torch.float32))
    results = {}
    for name, accelerated in (("torchopt adam, per tensor", False), ("torchopt accelerated adam, per tensor", True)):
        adam = _adam(accelerated)
        state = adam.init(grads)

        def step(adam=adam, holder=[state]):
            _, holder[0] = adam.update(tuple(g.clone() for g in grads), holder[0], inplace=True)

        results[name] = _time(step)
    inner = InnerOptimizer.adam(LR)
    flat_grads = torch.cat([g.reshape(-1) for g in grads])
    flat_state = inner.init((torch.zeros_like(flat_grads),))

    def flat_step(holder=[flat_state]):
        _, holder[0], _ = inner.accelerated.update(flat_grads, holder[0])

    results["flat form (dgl_bilevel), one vector"] = _time(flat_step)
    # update and its VJP, as an unroll's backward pass needs them
    fast = _adam(True)
    state = fast.init((flat_grads,))
    _, state = fast.update((flat_grads.clone(),), state, inplace=False)
    cotangent = torch.randn(flat_grads.shape, generator=gen)

    def accelerated_vjp():
        g = flat_grads.clone().requires_grad_(True)
        (update,), _ = fast.update((g,), state, inplace=False)
        torch.autograd.grad(update, g, cotangent)

    flat_state = inner.init((flat_grads,))
    _, flat_state, _ = inner.accelerated.update(flat_grads, flat_state)

    def flat_vjp():
        _, after, root = inner.accelerated.update(flat_grads, flat_state)
        inner.accelerated.vjp(flat_grads, flat_state, cotangent, [None, None, None], after, root)

    results["update + VJP: autograd through the accelerated op"] = _time(accelerated_vjp, 100)
    results["update + VJP: flat form, written out"] = _time(flat_vjp, 100)
    return results


def main() -> None:
    torch.set_num_threads(1)
    print(f"torchopt {torchopt.__version__}, torch {torch.__version__}")
    print(f"compiled accelerated kernels load: {torchopt.accelerated_op.is_available()}")
    for dtype in (torch.float32, torch.float64):
        print(f"{dtype}: steps of 30 whose values differ from plain torchopt Adam: {bitwise(dtype)}")
    for where, error in vjp_errors().items():
        print(f"VJP of one update, relative error against autograd through plain Adam, {where}: {error:.2e}")
    for name, seconds in speeds().items():
        print(f"{name:55s} {seconds * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
