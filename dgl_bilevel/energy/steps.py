"""Descent steps on a bound energy; unfolding ``K`` of them is a message-passing layer.

Notation: ``g = grad E_smooth(Y)``, ``L`` a bound on the curvature of every majoriser
(:meth:`~.energy.BoundEnergy.lipschitz_bound`; quadratic energy: ``2 (1 + lam lambda_max(L))``),
``P0`` the fixed Jacobi diagonal (:meth:`~.energy.BoundEnergy.fixed_diagonal`), ``P(Y)`` the
Jacobi diagonal of the majoriser at ``Y``, ``prox`` the prox of ``h`` in the step's metric.
The step size ``step`` multiplies ``g`` itself (``E`` has no 1/2: ``g = 2 (Y - F) + 2 lam L Y``).

=============  ==========================================  =====================================
rule           update                                      monotone when (``auto`` step)
=============  ==========================================  =====================================
gradient       ``Y <- prox(Y - step g)``                    ``E`` decreases for step < 2 / L
                                                            (``1 / L``)
proximal       the same, for an energy with ``h``           ``E`` decreases for step < 2 / L
preconditioned ``Y <- prox(Y - step g / P0)``               ``E`` decreases for step <= 1 (``1``)
irls           ``Y <- prox(Y - step g / P(Y))``, weights     ``E`` decreases for step <= 1 (``1``);
               ``gamma_e = a_e rho'(u_e)`` recomputed        step 1 = one Jacobi sweep on the
               every step                                    reweighted problem (TWIRLS)
momentum       ``Y+ = prox(Y - step g + beta (Y - Y-))``     ``E(Y) + beta/(2 step) |Y - Y-|^2``
               (heavy ball; iPiano with ``h``)               decreases for step <= 2 (1 - beta) / L
                                                            (``(1 - beta) / L``)
nesterov       ``Z = Y + beta (Y - Y-)``,                    convex ``E``: ``E(Y) + |Y - Y-|^2 /
               ``Y+ = prox(Z - step grad E(Z))``             (2 step)`` decreases for step <= 1 / L
                                                            (``1 / L``)
=============  ==========================================  =====================================

Why. Gradient and proximal steps: the majoriser ``Q`` at ``Y`` has ``grad Q(Y) = g`` and
Hessian ``<= L``, so ``E(Y+) <= Q(Y+) <= Q(Y) - (1/step - L/2) |Y+ - Y|^2`` (the prox step's
optimality adds ``h``). Jacobi steps: with ``H = P - N`` the majoriser's Hessian, ``2P - H =
P + N`` is ``2 (C + lam |L|)`` with ``|L|`` a signless Laplacian (PSD) and ``C > 0`` the fidelity
weights, so ``H < 2P`` and every step ``<= 1`` decreases ``Q`` in the metric ``P``; and
``P0 >= P(Y)`` entrywise, so ``2 P0 - H > 0`` too. Momentum: the classic Lyapunov
argument for heavy ball (Polyak; Ochs et al.'s iPiano with a prox); Nesterov with constant
``beta``: convexity gives ``f(Y+) + |Y+ - Y|^2/(2 step) <= f(Y) + beta^2 |Y - Y-|^2/(2 step)``.
The energy itself need not decrease under momentum. The preconditioned momentum variants
(``preconditioned=True``) use the metric ``P0``, in which the curvature is below 2, so their
``auto`` steps are ``1 - beta`` (heavy ball) and ``1/2`` (Nesterov).
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..errors import ConfigError
from ..registry import STEP_RULES, Registry  # noqa: F401
from .energy import BoundEnergy, Energy



def _safe(diagonal: torch.Tensor) -> torch.Tensor:
    """A Jacobi diagonal with zeros (nodes with no curvature and no gradient) replaced by 1."""
    return torch.where(diagonal > 0, diagonal, torch.ones_like(diagonal))


class StepRule:
    """One descent step on a :class:`~.energy.BoundEnergy`, repeated by :meth:`iterate`.

    A subclass gives :meth:`auto_step` (the safe step size on a bound energy) and
    :meth:`iterate`; :meth:`validate` rejects energies it cannot descend. Register it in
    :data:`STEP_RULES` to reach it by name, or pass an instance to
    :class:`~.layers.EnergyLayer`.

    Args:
        step: the step size, or ``"auto"`` (:meth:`auto_step`).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``step`` is neither ``"auto"`` nor a positive number.

    Example:
        A rule taking half the safe gradient step:

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy, EnergyLayer, StepRule
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> class HalfGradientStep(StepRule):
        ...     name = "half_gradient"
        ...     def auto_step(self, energy):
        ...         return 0.5 / energy.lipschitz_bound()
        ...     def iterate(self, energy, y0, steps):
        ...         y, eta = y0, self.step_size(energy)
        ...         for _ in range(steps):
        ...             y = y - eta * energy.gradient(y)
        ...             yield y
        >>> layer = EnergyLayer(steps=1, step_rule=HalfGradientStep(), lam=1.0, normalize="none")
        >>> [round(v, 4) for v in layer(graph, target).flatten().tolist()]  # F - 0.05 * 2 L F
        [0.9, 0.1, -0.1, -0.9]
        >>> StepRule(step=0)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: step must be 'auto' or a positive number, got 0
    """

    name = "rule"
    needs_prox = False

    def __init__(self, step: "float | str" = "auto") -> None:
        if step != "auto" and not (isinstance(step, (int, float)) and step > 0):
            raise ConfigError(f"step must be 'auto' or a positive number, got {step!r}")
        self.step = step

    def validate(self, energy: Energy) -> None:
        """Raise :class:`ConfigError` if this rule cannot run on ``energy``."""

    def auto_step(self, energy: BoundEnergy):
        raise NotImplementedError

    def step_size(self, energy: BoundEnergy):
        return self.auto_step(energy) if self.step == "auto" else float(self.step)

    def iterate(self, energy: BoundEnergy, y0: torch.Tensor, steps: int) -> Iterator[torch.Tensor]:
        """Yield ``Y_1, ..., Y_steps``."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"step_rule": self.name, "step": self.step}


@STEP_RULES.register("gradient", help="plain gradient step Y - step * grad E (prox of h if any)")
class GradientStep(StepRule):
    """``Y <- prox(Y - step g)``; ``auto`` step ``1 / L_hat`` (the energy decreases for steps below ``2 / L_hat``).

    Args:
        step: the step size, or ``"auto"``.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy, GradientStep
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> bound = Energy(lam=1.0, normalize="none").bind(graph, target)  # E(F) = 2
        >>> rule = GradientStep()
        >>> round(float(rule.step_size(bound)), 6)  # 1 / (2 + 2 * max 2 d_i)
        0.1
        >>> [round(bound.value(y).item(), 4) for y in rule.iterate(bound, target, 3)]
        [1.04, 0.9376, 0.8946]
    """

    name = "gradient"

    def auto_step(self, energy):
        return 1.0 / energy.lipschitz_bound()

    def iterate(self, energy, y0, steps):
        eta, y = self.step_size(energy), y0
        descend = energy.descent(eta)
        for _ in range(steps):
            y = energy.prox(descend(y), eta)
            yield y


@STEP_RULES.register("proximal", help="proximal gradient: a gradient step, then the prox of h (ReLU, soft-threshold)")
class ProximalStep(GradientStep):
    """The gradient step followed by the prox of ``h`` (ReLU for ``nonneg``, soft-threshold for
    ``l1``); the same update as :class:`GradientStep`, but it insists on an energy with ``h``.

    Args:
        step: the step size, or ``"auto"`` (``1 / L_hat``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: from :meth:`validate`, on an energy without a non-smooth term.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy, ProximalStep
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> bound = Energy(lam=1.0, regularizer="nonneg", normalize="none").bind(graph, target)
        >>> rule = ProximalStep()
        >>> *_, y = rule.iterate(bound, target, 20)
        >>> [round(v, 4) for v in y.flatten().tolist()]  # non-negative
        [0.6158, 0.2311, 0.0771, 0.0]
        >>> rule.validate(Energy())
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: step_rule='proximal' needs a non-smooth term: ...
    """

    name = "proximal"

    def validate(self, energy):
        if energy.regularizer.is_zero:
            raise ConfigError("step_rule='proximal' needs a non-smooth term: set regularizer='nonneg' (prox = ReLU) "
                              "or 'l1' (prox = soft-threshold), or use step_rule='gradient'")


@STEP_RULES.register("preconditioned", help="Jacobi-preconditioned gradient step Y - step * grad E / P0 (HALO, APPNP)")
class PreconditionedStep(StepRule):
    """``Y <- prox(Y - step g / P0)`` with the fixed Jacobi diagonal ``P0``; ``auto`` step 1
    (the energy decreases for steps up to 1). APPNP and HALO's step.

    Args:
        step: the step size, or ``"auto"`` (1).

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy, PreconditionedStep
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> bound = Energy(lam=1.0, normalize="none").bind(graph, target)  # E(F) = 2
        >>> bound.fixed_diagonal().flatten().tolist()  # P0 = 2 (1 + lam * 2 d_i / 2)
        [4.0, 6.0, 6.0, 4.0]
        >>> [round(bound.value(y).item(), 4) for y in PreconditionedStep().iterate(bound, target, 3)]
        [1.2222, 0.9877, 0.905]
    """

    name = "preconditioned"

    def auto_step(self, energy):
        return 1.0

    def iterate(self, energy, y0, steps):
        eta, y = self.step_size(energy), y0
        scale = eta / _safe(energy.fixed_diagonal())
        descend = energy.descent(scale)
        for _ in range(steps):
            y = energy.prox(descend(y), scale)
            yield y


@STEP_RULES.register("irls", help="IRLS / majorise-minimise: edge weights a_e rho'(u_e) recomputed each step, Jacobi step (TWIRLS attention)")
class IRLSStep(StepRule):
    """``Y <- prox(Y - step g / P(Y))``, the edge weights ``a_e rho'(u_e)`` and the Jacobi diagonal
    ``P(Y)`` recomputed at every step (majorise-minimise; TWIRLS' attention). ``auto`` step 1.

    Args:
        step: the step size, or ``"auto"`` (1).

    Example:
        On a robust energy it descends faster than the gradient step:

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy, GradientStep, IRLSStep, make_penalty
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> huber = make_penalty("huber", delta=0.5)
        >>> bound = Energy(lam=1.0, penalty=huber, normalize="none").bind(graph, target)
        >>> bound.value(target).item()  # two edges at distance 1: 2 * (2 * 0.5 * 1 - 0.25)
        1.5
        >>> [round(bound.value(y).item(), 4) for y in IRLSStep().iterate(bound, target, 3)]
        [0.8978, 0.8602, 0.8574]
        >>> [round(bound.value(y).item(), 4) for y in GradientStep().iterate(bound, target, 3)]
        [1.18, 1.0424, 0.9651]
    """

    name = "irls"

    def auto_step(self, energy):
        return 1.0

    def iterate(self, energy, y0, steps):
        eta, y = self.step_size(energy), y0
        for _ in range(steps):
            surrogate = energy.surrogate(y)
            scale = eta / _safe(energy.hessian_diagonal(surrogate))
            y = energy.prox(y - scale * energy.gradient(y, surrogate), scale)
            yield y


class _MomentumBase(StepRule):
    def __init__(self, step: "float | str" = "auto", beta: float = 0.5, preconditioned: bool = False) -> None:
        super().__init__(step)
        if not 0 <= beta < 1:
            raise ConfigError(f"{self.name}: beta (the momentum) must be in [0, 1), got {beta}")
        self.beta, self.preconditioned = float(beta), bool(preconditioned)

    def _metric(self, energy):
        return _safe(energy.fixed_diagonal()) if self.preconditioned else 1.0

    def describe(self):
        return {**super().describe(), "beta": self.beta, "preconditioned": self.preconditioned}


@STEP_RULES.register("momentum", help="heavy-ball momentum: Y - step * grad E + beta (Y - Y_prev)")
class MomentumStep(_MomentumBase):
    """Heavy ball: ``Y+ = prox(Y - step g + beta (Y - Y-))`` (iPiano with ``h``); ``auto`` step
    ``(1 - beta) / L_hat``, or ``1 - beta`` with ``preconditioned=True`` (metric ``P0``).

    Args:
        step: the step size, or ``"auto"``.
        beta: the momentum, in ``[0, 1)``.
        preconditioned: take the steps in the metric ``P0``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``beta`` outside ``[0, 1)``, or a bad ``step``.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy, MomentumStep
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> bound = Energy(lam=1.0, normalize="none").bind(graph, target)  # E(F) = 2
        >>> rule = MomentumStep(beta=0.5)
        >>> round(float(rule.step_size(bound)), 6)  # (1 - beta) / L_hat
        0.05
        >>> [round(bound.value(y).item(), 4) for y in rule.iterate(bound, target, 3)]
        [1.36, 1.0096, 0.9489]
    """

    name = "momentum"

    def auto_step(self, energy):
        return (1.0 - self.beta) if self.preconditioned else (1.0 - self.beta) / energy.lipschitz_bound()

    def iterate(self, energy, y0, steps):
        scale = self.step_size(energy) / self._metric(energy)
        descend = energy.descent(scale)
        y, previous = y0, y0
        for _ in range(steps):
            y, previous = energy.prox(descend(y) + self.beta * (y - previous), scale), y
            yield y


@STEP_RULES.register("nesterov", help="Nesterov: gradient step at Y + beta (Y - Y_prev)")
class NesterovStep(_MomentumBase):
    """Nesterov: ``Z = Y + beta (Y - Y-)``, ``Y+ = prox(Z - step grad E(Z))``; ``auto`` step
    ``1 / L_hat``, or ``1/2`` with ``preconditioned=True`` (metric ``P0``).

    Args:
        step: the step size, or ``"auto"``.
        beta: the momentum, in ``[0, 1)``.
        preconditioned: take the steps in the metric ``P0``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``beta`` outside ``[0, 1)``, or a bad ``step``.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy, NesterovStep
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> bound = Energy(lam=1.0, normalize="none").bind(graph, target)  # E(F) = 2
        >>> rule = NesterovStep(beta=0.5)
        >>> [round(bound.value(y).item(), 4) for y in rule.iterate(bound, target, 3)]  # gradient: 0.8946
        [1.04, 0.9056, 0.8639]
        >>> NesterovStep(beta=1.0)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: nesterov: beta (the momentum) must be in [0, 1), got 1.0
    """

    name = "nesterov"

    def auto_step(self, energy):
        return 0.5 if self.preconditioned else 1.0 / energy.lipschitz_bound()

    def iterate(self, energy, y0, steps):
        scale = self.step_size(energy) / self._metric(energy)
        descend = energy.descent(scale)
        y, previous = y0, y0
        for _ in range(steps):
            z = y + self.beta * (y - previous)
            y, previous = energy.prox(descend(z), scale), y
            yield y


def make_step_rule(spec: "str | StepRule" = "preconditioned", **options) -> StepRule:
    """A step rule by name (see :data:`STEP_RULES`) with its options (``step``, ``beta``,
    ``preconditioned``), or a ready :class:`StepRule`.

    Args:
        spec: a name (``gradient``, ``proximal``, ``preconditioned``, ``irls``, ``momentum``,
            ``nesterov``) or a :class:`StepRule` (returned as it is).
        **options: the rule's constructor options.

    Returns:
        The :class:`StepRule`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown name, options the rule does not take, options given with a
            ready-made rule, or a ``spec`` of another type.

    Example:
        >>> from dgl_bilevel.energy import make_step_rule
        >>> make_step_rule("momentum", beta=0.9).describe()
        {'step_rule': 'momentum', 'step': 'auto', 'beta': 0.9, 'preconditioned': False}
        >>> make_step_rule("gradient", beta=0.9)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: step rule 'gradient' does not take options ['beta'] ...
    """
    if isinstance(spec, StepRule):
        if options:
            raise ConfigError(f"step-rule options {sorted(options)} given with a ready-made rule {spec.name!r}")
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"step_rule must be a name or a StepRule, got {type(spec).__name__}")
    cls = STEP_RULES[spec]
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"step rule {spec!r} does not take options {sorted(options)} ({exc})") from None
