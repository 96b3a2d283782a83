"""Classic propagation rules as energy layers (each equality is checked in tests/test_energy_special.py).

* APPNP (Klicpera et al.): ``Y <- (1 - alpha) S Y + alpha F`` is one gradient step of size
  ``alpha / 2`` on ``||Y - F||^2 + lam tr(Y^T (I - S) Y)`` with ``lam = (1 - alpha) / alpha``;
  on a graph without self-loops it is also the full Jacobi step (``step_rule="preconditioned"``,
  step 1), since the Hessian's diagonal is then ``2 (1 + lam) I``.
* Label propagation (Zhou et al.): ``F = (1 - alpha) (I - alpha S)^-1 Y0`` is the minimiser of the
  same energy with target ``Y0`` and ``lam = alpha / (1 - alpha)``; its iteration
  ``F <- alpha S F + (1 - alpha) Y0`` is the gradient step of size ``(1 - alpha) / 2``.

``S = D^-1/2 W_s D^-1/2`` over ``W_s = (W + W^T) / 2`` in both, as in
:class:`~dgl_bilevel.inner.LabelPropagation` (``dgl.nn.APPNPConv`` normalises ``W`` by out- and
in-degrees: the same on symmetric graphs).
"""
from __future__ import annotations

from ..errors import ConfigError
from .layers import EnergyLayer


def _check(alpha: float, name: str) -> float:
    if not 0 < alpha < 1:
        raise ConfigError(f"{name} must be in (0, 1), got {alpha}")
    return float(alpha)


def appnp_layer(k: int = 10, alpha: float = 0.1, step_rule: str = "gradient") -> EnergyLayer:
    """``dgl.nn.APPNPConv(k, alpha)`` as ``k`` steps on the normalised quadratic energy.

    ``step_rule="preconditioned"`` gives the same result on graphs without self-loops.

    Args:
        k: the number of propagation steps.
        alpha: the teleport probability, in ``(0, 1)``; ``lam = (1 - alpha) / alpha``.
        step_rule: ``"gradient"`` (step ``alpha / 2``) or ``"preconditioned"`` (step 1).

    Returns:
        The :class:`~.layers.EnergyLayer`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``alpha`` outside ``(0, 1)`` or another ``step_rule``.

    Example:
        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import appnp_layer
        >>> feat = torch.arange(8.0).reshape(4, 2)
        >>> layer = appnp_layer(k=10, alpha=0.1)
        >>> torch.allclose(layer(graph, feat), dgl.nn.APPNPConv(10, 0.1)(graph, feat), atol=1e-5)
        True
        >>> round(layer.energy.lam, 6)
        9.0
    """
    alpha = _check(alpha, "alpha (the teleport probability)")
    if step_rule not in ("gradient", "preconditioned"):
        raise ConfigError(f"appnp_layer: step_rule must be 'gradient' or 'preconditioned', got {step_rule!r}")
    step = alpha / 2 if step_rule == "gradient" else 1.0
    return EnergyLayer(k, step_rule, lam=(1 - alpha) / alpha, normalize="sym", step=step)


def label_propagation_layer(steps: int = 50, alpha: float = 0.9) -> EnergyLayer:
    """``steps`` iterations of label propagation ``F <- alpha S F + (1 - alpha) Y0`` from ``F = Y0``.

    Args:
        steps: the number of iterations.
        alpha: the propagation weight, in ``(0, 1)``.

    Returns:
        The :class:`~.layers.EnergyLayer` (apply it to the one-hot seed labels ``Y0``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``alpha`` outside ``(0, 1)``.

    Example:
        Enough iterations reach the closed form, the energy's minimiser:

        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import label_propagation_lam, label_propagation_layer, minimize_quadratic
        >>> seeds = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
        >>> propagated = label_propagation_layer(steps=40, alpha=0.5)(graph, seeds)
        >>> exact = minimize_quadratic(graph, seeds, lam=label_propagation_lam(0.5))
        >>> torch.allclose(propagated, exact, atol=1e-6)
        True
        >>> propagated.argmax(1).tolist()
        [0, 0, 1, 1]
    """
    alpha = _check(alpha, "alpha (the propagation weight)")
    return EnergyLayer(steps, "gradient", lam=alpha / (1 - alpha), normalize="sym", step=(1 - alpha) / 2)


def label_propagation_lam(alpha: float) -> float:
    """The energy's ``lam`` whose minimiser is label propagation's solution: ``alpha / (1 - alpha)``.

    Args:
        alpha: the propagation weight, in ``(0, 1)``.

    Returns:
        ``lam``, a float.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``alpha`` outside ``(0, 1)``.

    Example:
        >>> from dgl_bilevel.energy import label_propagation_lam
        >>> label_propagation_lam(0.5), round(label_propagation_lam(0.9), 6)
        (1.0, 9.0)
        >>> label_propagation_lam(1.0)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: alpha (the propagation weight) must be in (0, 1), got 1.0
    """
    alpha = _check(alpha, "alpha (the propagation weight)")
    return alpha / (1 - alpha)
