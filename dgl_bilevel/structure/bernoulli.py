"""A probabilistic graph: one Bernoulli probability per candidate edge (LDS, Franceschi et al. 2019).

LDS learns ``theta_ij in [0, 1]`` for every pair of nodes (dense, N x N); here the candidates are
the edges of a sparse support -- the observed graph, a k-NN graph of the features, or both
(``support="observed+knn"``) -- so memory grows with the candidate edges, not with N^2. The
inner model trains on graphs drawn from ``theta`` and predicts by averaging over drawn graphs
(:mod:`~dgl_bilevel.structure.sampling`); ``theta`` is projected back onto ``[0, 1]`` after each
outer step, as LDS does.

``forward()`` returns ``theta`` itself: the *expected graph* (``E[A] = theta``). The outer loop
hands the inner problem to :class:`~dgl_bilevel.inner.graph_sampling.SampledGraphs` because this
structure declares a :attr:`sampler`.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .._dgl import dgl
from ..errors import ConfigError, DataError
from ..registry import STRUCTURES
from .base import GraphStructure
from .edge_weights import mean_over_pairs, undirected_pair_index
from .sampling import GraphSampler


@STRUCTURES.register("bernoulli", help="one Bernoulli probability per candidate edge; the inner model trains on "
                                       "sampled graphs and predicts by averaging over them (LDS; --graph-samples, "
                                       "--resample, --eval-samples, --sample-estimator)")
class BernoulliEdges(GraphStructure):
    """Edge probabilities ``theta`` in ``[0, 1]`` on the edges of ``graph`` (see the module docstring).

    Args:
        graph: the candidate edges. Edges with ``edata["observed"] == 1`` (supports built by
            :mod:`~dgl_bilevel.structure.support`) or every edge (a graph without that key) count
            as observed.
        init: the initial probabilities: ``"observed"`` -- ``observed_value`` on observed edges and
            ``candidate_value`` on the others (LDS starts from the observed graph); a float -- that
            value on every edge; a tensor -- one probability per edge.
        observed_value, candidate_value: see ``init``.
        sampler: how graphs are drawn; default: one graph per inner step (LDS), 16 per prediction,
            straight-through.
        tie_undirected: one probability per unordered pair, both directions drawn together (an
            undirected sampled graph; LDS's graphs are symmetric).
        frozen: keep ``theta`` at its initial value (the frozen-graph control: the same sampling,
            training and evaluation, nothing learned).
        similarity: a score per candidate edge (e.g. the cosine similarity of its endpoints'
            features) that a *shared* term reads: the probability becomes
            ``clamp(theta_e + a_g * z_e, 0, 1)`` with ``z_e`` the score standardised within the
            edge's group ``g`` (observed / added) and one learned scale ``a_g`` per group, starting
            at 0. Every edge's hypergradient reaches ``a_g``, so an edge far from the labelled
            nodes -- whose own ``theta_e`` gets no hypergradient (gradient scarcity) -- still moves
            with what was learned near them.
        dtype: of the parameters.

    Raises:
        ~dgl_bilevel.errors.DataError: on a graph without edges, or ``init``/``similarity`` tensors of the wrong shape.
        ~dgl_bilevel.errors.ConfigError: on initial probabilities outside [0, 1] or an unknown ``init``.

    Example:
        Observed edges start at probability 1, the k-NN candidates at 0.5 (one per pair):

        >>> import dgl
        >>> import torch
        >>> path = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> features = torch.tensor([[0.0], [1.1], [2.3], [3.6], [5.0], [0.4]])  # node 5 sits by 0 and 1
        >>> from dgl_bilevel.structure import BernoulliEdges, observed_knn_support
        >>> candidates = observed_knn_support(path, features, k=1)
        >>> structure = BernoulliEdges(candidates)
        >>> sorted(set(structure().tolist())), structure.theta.numel()
        ([0.5, 1.0], 7)
        >>> graph = structure.sampler.draw(structure(), count=1)[0]  # a 0/1 draw, seeded
        >>> bool((graph[structure.observed_mask()] == 1).all())
        True
    """

    def __init__(
        self,
        graph: "dgl.DGLGraph",
        init: Union[str, float, torch.Tensor] = "observed",
        *,
        observed_value: float = 1.0,
        candidate_value: float = 0.5,
        sampler: Optional[GraphSampler] = None,
        tie_undirected: bool = True,
        frozen: bool = False,
        similarity: Optional[torch.Tensor] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if graph.num_edges() == 0:
            raise DataError("graph has no edges: there are no candidate edges to learn probabilities for")
        for name, value in (("observed_value", observed_value), ("candidate_value", candidate_value)):
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name} is an initial edge probability and must lie in [0, 1], got {value}")
        self.graph = graph
        self.sampler = sampler if sampler is not None else GraphSampler()
        self.tie_undirected = bool(tie_undirected)
        self.frozen = bool(frozen)
        if self.tie_undirected:
            pair_index, num_params = undirected_pair_index(graph)
            self.register_buffer("pair_index", pair_index, persistent=False)
        else:
            self.pair_index, num_params = None, graph.num_edges()
        self.sampler.pair_index = self.pair_index  # one coin per unordered pair when tied
        per_edge = self._initial_probabilities(init, observed_value, candidate_value, dtype)
        theta = per_edge if self.pair_index is None else mean_over_pairs(per_edge, self.pair_index)
        self.theta = nn.Parameter(theta, requires_grad=not self.frozen)
        if similarity is not None:
            self.register_buffer("similarity_basis", self._similarity_basis(similarity, dtype))
            self.shared_scale = nn.Parameter(torch.zeros(2, dtype=dtype), requires_grad=not self.frozen)
        else:
            self.similarity_basis, self.shared_scale = None, None
        self.project_()

    def _similarity_basis(self, similarity: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``(params, 2)``: the score standardised within observed / added edges, zero outside its group."""
        if similarity.shape != (self.graph.num_edges(),) or not torch.isfinite(similarity).all():
            raise DataError(f"similarity must be one finite score per candidate edge ({self.graph.num_edges()},), "
                            f"got shape {tuple(similarity.shape)}")
        observed = self.observed_mask()
        basis = torch.zeros(self.graph.num_edges(), 2, dtype=dtype)
        for column, group in enumerate((observed, ~observed)):
            if int(group.sum()) > 1:
                values = similarity[group].to(dtype)
                basis[group, column] = (values - values.mean()) / values.std().clamp_min(1e-12)
        if self.pair_index is None:
            return basis
        return torch.stack([mean_over_pairs(basis[:, k], self.pair_index) for k in range(2)], dim=1)

    def _initial_probabilities(self, init, observed_value, candidate_value, dtype) -> torch.Tensor:
        num_edges = self.graph.num_edges()
        if isinstance(init, torch.Tensor):
            if init.shape != (num_edges,):
                raise DataError(f"initial probabilities have shape {tuple(init.shape)}, expected ({num_edges},)")
            if not torch.isfinite(init).all() or (init < 0).any() or (init > 1).any():
                raise ConfigError("initial edge probabilities must lie in [0, 1]")
            return init.to(dtype).clone()
        if isinstance(init, (int, float)) and not isinstance(init, bool):
            if not 0.0 <= float(init) <= 1.0:
                raise ConfigError(f"an initial edge probability must lie in [0, 1], got {init}")
            return torch.full((num_edges,), float(init), dtype=dtype)
        if init == "observed":
            observed = self.observed_mask()
            return torch.where(observed, torch.tensor(float(observed_value), dtype=dtype),
                               torch.tensor(float(candidate_value), dtype=dtype))
        raise ConfigError(f"unknown init {init!r} for edge probabilities; choose 'observed', a probability in "
                          "[0, 1], or a tensor of them")

    def observed_mask(self) -> torch.Tensor:
        """Which candidate edges are in the observed graph (every edge when the support does not say)."""
        if "observed" in self.graph.edata:
            return self.graph.edata["observed"] > 0.5
        return torch.ones(self.graph.num_edges(), dtype=torch.bool)

    @classmethod
    def from_config(cls, config, data, support, generator: Optional[torch.Generator] = None) -> "BernoulliEdges":
        """The structure an experiment configuration describes, on ``support``."""
        sampler_generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator))
                                                          if generator is not None else 0)
        sampler = GraphSampler(samples=config.graph_samples, resample=config.resample,
                               eval_samples=config.eval_samples, estimator=config.estimator,
                               generator=sampler_generator)
        similarity = feature_cosine(support, data.features) if config.theta_shared == "cosine" else None
        return cls(support, init="observed", observed_value=config.theta_observed,
                   candidate_value=config.theta_candidate, sampler=sampler, tie_undirected=True,
                   frozen=config.freeze_structure, similarity=similarity, dtype=data.features.dtype)

    def forward(self) -> torch.Tensor:
        """Edge probabilities, one per support edge (the expected graph), differentiable in ``theta``
        (and the shared scales)."""
        theta = self.probabilities()
        return theta if self.pair_index is None else theta[self.pair_index]

    def probabilities(self) -> torch.Tensor:
        """One probability per parameter (pair, when tied): ``theta``, plus the shared similarity term."""
        if self.similarity_basis is None:
            return self.theta
        return (self.theta + self.similarity_basis @ self.shared_scale).clamp(0.0, 1.0)

    @torch.no_grad()
    def project_(self) -> None:
        """Back onto ``[0, 1]`` (LDS's projection after each outer step)."""
        self.theta.clamp_(0.0, 1.0)

    def get_extra_state(self) -> dict:
        return {"sampler": self.sampler.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def extra_repr(self) -> str:
        return (f"num_edges={self.graph.num_edges()}, params={self.theta.numel()}, "
                f"shared_similarity={self.similarity_basis is not None}, "
                f"tie_undirected={self.tie_undirected}, frozen={self.frozen}, {self.sampler.describe()}")


def feature_cosine(graph: "dgl.DGLGraph", features: torch.Tensor) -> torch.Tensor:
    """The cosine similarity of each edge's endpoint features (0 where a feature vector is zero)."""
    x = features.to(torch.float64)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    src, dst = graph.edges()
    return (x[src.long()] * x[dst.long()]).sum(1).to(features.dtype)
