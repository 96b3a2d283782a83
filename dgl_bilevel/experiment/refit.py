"""After a graph is learned: score it the ways a user would use it.

* :func:`graph_readings` -- a probabilistic structure's best ``theta`` read deterministically:
  as edge weights (the expected graph) and thresholded at 0.5 (a plain 0/1 graph), each with the
  inner model trained on ``v_in`` as in the bilevel run. Reported beside the sampled prediction.
* :func:`refit` -- the final model trained on ``v_in ∪ v_out`` (every label the bilevel run used)
  on the learned graph (``refit_*``), on the observed graph (``refit_observed_*``: the same model
  and seed as ``--method a_obs+v_out``), and the bilevel run's own model re-solved on the learned
  graph with its training labels (``refit_learned_v_in_*``). ``refit_gated_*`` is the one
  :func:`~dgl_bilevel.outer.gate.validation_gate` keeps: the observed graph unless a learned
  candidate beats it in a paired test on validation (``refit_gate`` names it,
  ``refit_gate_p_<candidate>`` gives the p-value of each learned candidate's advantage) -- the model a user should keep,
  chosen without test. For a probabilistic structure the learned-graph models train on graphs
  sampled from ``theta`` and predict by averaging, as the bilevel run did.

Both are one inner solve each, under the same protocol as the ``a_obs`` baselines (no selection
beyond what those make), so their numbers compare with the baselines' directly.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch

from ..config import ExperimentConfig
from ..data.bilevel_data import BilevelData
from ..errors import ConfigError
from ..inner.graph_sampling import SampledGraphs
from ..outer import FitResult, solve_on_graph
from ..outer.gate import validation_gate
from ..diagnostics.edge_stats import edge_statistics
from ..structure.sampling import GraphSampler
from .build import build_hypergrad, build_inner


def train_and_score(config: ExperimentConfig, data: BilevelData, graph, weights: torch.Tensor, seed: int,
                    sampler: Optional[GraphSampler] = None) -> dict:
    """One inner solve of ``config``'s inner problem on ``graph`` with fixed ``weights`` (on graphs
    sampled from them with ``sampler``); the metrics of every split."""
    return train_and_predict(config, data, graph, weights, seed, sampler)[0]


def train_and_predict(config: ExperimentConfig, data: BilevelData, graph, weights: torch.Tensor, seed: int,
                      sampler: Optional[GraphSampler] = None) -> tuple[dict, torch.Tensor]:
    """:func:`train_and_score` with the model's outputs on every node as well."""
    inner = build_inner(config, data)
    if sampler is not None:
        inner = SampledGraphs(inner, sampler)
    method = build_hypergrad(config, inner) if sampler is None or not sampler.stochastic_objective else None
    return solve_on_graph(data, inner, weights, graph=graph, hypergrad=method, seed=seed,
                          inner_select=config.inner_select)


def fresh_sampler(sampler: GraphSampler, seed: int) -> GraphSampler:
    """A copy of ``sampler`` with its own generator, so scoring draws do not move the run's stream."""
    fresh = copy.copy(sampler)
    fresh.generator = torch.Generator().manual_seed(20_000 + seed)
    fresh.baseline = None
    return fresh


def graph_readings(config: ExperimentConfig, data: BilevelData, result: FitResult, seed: int) -> dict:
    """The best ``theta`` as weights (``expected_*``) and thresholded at 0.5 (``thresholded_*``)."""
    theta = result.best_weights
    metric = data.metric.name
    out = {}
    for name, weights in (("expected", theta), ("thresholded", (theta > 0.5).to(theta.dtype))):
        metrics = train_and_score(config, data, result.support, weights, seed)
        out.update({f"{name}_{split}_{metric}": value for split, value in metrics.items()})
    out["thresholded_edges"] = int((theta > 0.5).sum())
    return out


def refit(config: ExperimentConfig, data: BilevelData, result: FitResult, seed: int,
          sampler: Optional[GraphSampler] = None) -> dict:
    """The inner model trained on ``v_in ∪ v_out`` on the learned graph; ``refit_<split>_<metric>``.

    ``sampler``: the structure's (a probabilistic structure): train on sampled graphs and average.
    """
    if data.outer_on_validation:
        raise ConfigError("--refit trains on V_in ∪ V_out; under --protocol lds V_out is the validation set that "
                          "selects, so the refit would be scored on its own training labels: use --protocol paper")
    fresh = (lambda: fresh_sampler(sampler, seed)) if sampler is not None else (lambda: None)
    candidates = {
        **all_label_candidates(config, data, result.support, result.best_weights, seed, fresh()),
        "learned_v_in": train_and_predict(config, data, result.support, result.best_weights, seed, fresh()),
    }
    return {**{f"refit_{split}_{data.metric.name}": value for split, value in candidates["learned"][0].items()},
            **{f"refit_observed_{split}_{data.metric.name}": value
               for split, value in candidates["observed"][0].items()},
            **{f"refit_learned_v_in_{split}_{data.metric.name}": value
               for split, value in candidates["learned_v_in"][0].items()},
            **gated(candidates, data, seed)}


def all_label_candidates(config: ExperimentConfig, data: BilevelData, graph, weights: torch.Tensor, seed: int,
                         sampler: Optional[GraphSampler] = None) -> dict:
    """The inner model trained on ``v_in ∪ v_out`` on the observed graph (``"observed"``) and on the
    learned ``weights`` (``"learned"``): name -> (metrics, outputs), what :func:`gated` chooses from."""
    training = data.with_v_out_in_training()
    return {"observed": train_and_predict(config, training, data.graph, data.observed_weights(), seed),
            "learned": train_and_predict(config, training, graph, weights, seed, sampler)}


def gated(candidates: dict, data: BilevelData, seed: int) -> dict:
    """``refit_gated_*``: the scores of the candidate (name -> (metrics, outputs)) the validation gate
    keeps, ``"observed"`` being the baseline; ``refit_gate`` names it, ``refit_gate_p_*`` say why."""
    decision = validation_gate({name: outputs for name, (_, outputs) in candidates.items()}, "observed",
                               data.labels, data.val, data.metric, seed=seed)
    return {**{f"refit_gated_{split}_{data.metric.name}": value
               for split, value in candidates[decision.choice][0].items()},
            "refit_gate": decision.choice,
            **{f"refit_gate_p_{name}": p for name, p in decision.p_values.items()}}


def after_fit(config: ExperimentConfig, data: BilevelData, structure, result: FitResult, seed: int) -> dict:
    """What is scored once a graph is learned: a probabilistic structure read deterministically, and
    the refit on every label the run used (``--refit``); extra fields of the seed's record."""
    extra: dict = {}
    if data.task == "classification":
        spurious = data.extras.get("spurious") if result.support is data.graph else _spurious_on(result.support, data)
        extra.update(edge_statistics(result.support, result.best_weights, data.labels, spurious))
    if structure.sampler is not None:
        extra.update(graph_readings(config, data, result, seed))
    if config.refit:
        extra.update(refit(config, data, result, seed, structure.sampler))
    return extra


def _spurious_on(support, data: BilevelData) -> Optional[torch.Tensor]:
    """The data's spurious-edge mask carried over to a support that contains the observed graph (by
    endpoint pairs); None when the data marks no spurious edges."""
    spurious = data.extras.get("spurious")
    if spurious is None:
        return None
    n = data.num_nodes
    src, dst = data.graph.edges()
    s, d = support.edges()
    return torch.isin(s.long() * n + d.long(), src[spurious].long() * n + dst[spurious].long())
