"""What a learned graph did to its candidate edges: which kinds it kept, and were they right?

Diagnostics only: the same-class rates read the labels of *every* node (ground truth), which no
choice of the run ever sees. For a learned weight or probability ``w`` per candidate edge:

* ``mean_w_observed`` / ``mean_w_added``: mean weight of the observed edges and of the candidates
  the observed graph lacks (k-NN ones); ``kept_added``: share of added candidates with ``w > 0.5``;
* ``same_class_observed``, ``same_class_added``: the share of edges joining nodes of one class, and
  ``same_class_weighted``: the same share weighted by ``w`` (above the unweighted rate of the
  support: the learned graph favours same-class edges);
* with the data's ``extras["spurious"]`` mask (noisy data sets), among the *observed* edges:
  ``mean_w_spurious``, ``mean_w_true``, and the ROC AUC of ``w`` as a detector of the true ones
  (0.5: chance; added candidates are neither).
"""
from __future__ import annotations

from typing import Optional

import torch


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half).

    Args:
        scores: one score per item.
        positive: boolean mask of the positive items.

    Returns:
        The ROC AUC in [0, 1]; NaN if either class is empty.

    Example:
        >>> import torch
        >>> from dgl_bilevel.diagnostics import roc_auc
        >>> positive = torch.tensor([True, True, False, False])
        >>> roc_auc(torch.tensor([0.9, 0.8, 0.1, 0.2]), positive)
        1.0
        >>> roc_auc(torch.tensor([0.9, 0.1, 0.1, 0.2]), positive)  # one tie: it counts half
        0.625
    """
    pos, neg = scores[positive].double(), scores[~positive].double()
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    order = torch.cat([pos, neg]).argsort()
    ranks = torch.empty(order.numel(), dtype=torch.float64)
    ranks[order] = torch.arange(1, order.numel() + 1, dtype=torch.float64)
    values = torch.cat([pos, neg])
    for value in values.unique():  # mid-ranks for ties
        tied = values == value
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    return float((ranks[: pos.numel()].sum() - pos.numel() * (pos.numel() + 1) / 2) / (pos.numel() * neg.numel()))


def _mean(x: torch.Tensor) -> float:
    return float(x.double().mean()) if x.numel() else float("nan")


def edge_statistics(graph, weights: torch.Tensor, labels: torch.Tensor,
                    spurious: Optional[torch.Tensor] = None) -> dict:
    """The statistics of the module docstring for ``weights`` on ``graph``'s edges (classification labels).

    Args:
        graph: the candidate graph; ``edata["observed"]`` (if present) marks the observed edges.
        weights: one learned weight (or probability) per edge.
        labels: ``[N]`` classes of every node (ground truth).
        spurious: optional ``[E]`` mask of the observed edges known to be noise.

    Returns:
        A dict of floats named as in the module docstring; the ``*_added`` keys only when the
        graph has candidates outside the observed graph, the spurious ones only with ``spurious``.

    Example:
        Edges 0->1 and 2->3 join one class, 1->2 does not; the learned weights favour the former.

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.diagnostics import edge_statistics
        >>> graph = dgl.graph(([0, 1, 2], [1, 2, 3]))
        >>> labels = torch.tensor([0, 0, 1, 1])
        >>> stats = edge_statistics(graph, torch.tensor([0.9, 0.1, 0.8]), labels)
        >>> round(stats["same_class_support"], 4), round(stats["same_class_weighted"], 4)
        (0.6667, 0.9444)
    """
    w = weights.detach().double()
    src, dst = graph.edges()
    same = labels[src] == labels[dst]
    observed = graph.edata["observed"] > 0.5 if "observed" in graph.edata else torch.ones_like(same)
    stats = {
        "mean_w_observed": _mean(w[observed]),
        "same_class_observed": _mean(same[observed]),
        "same_class_weighted": float((w * same).sum() / w.sum()) if float(w.sum()) > 0 else float("nan"),
        "same_class_support": _mean(same),
    }
    if (~observed).any():
        added = ~observed
        stats.update(mean_w_added=_mean(w[added]), kept_added=_mean(w[added] > 0.5),
                     same_class_added=_mean(same[added]))
    if spurious is not None and spurious.numel() == w.numel():  # among the observed edges: true vs spurious ones
        true = observed & ~spurious
        fake = observed & spurious
        stats.update(mean_w_spurious=_mean(w[fake]), mean_w_true=_mean(w[true]),
                     true_edge_auc=roc_auc(w[observed], true[observed]))
    return stats
