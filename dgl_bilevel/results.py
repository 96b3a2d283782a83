"""Aggregating per-seed results (mean and unbiased std) and printing them as tables."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from .splits import SPLIT_LABELS


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and unbiased (n - 1) standard deviation; NaNs skipped; the std of a single value is
    undefined (NaN, printed as "n/a", null in JSON), not 0."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return float("nan"), float("nan")
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, float("nan")
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def aggregate(per_seed: Sequence[dict], keys: Sequence[str]) -> dict:
    """``{key: {"mean": m, "std": s}}`` over the seeds' values of each key."""
    out = {}
    for key in keys:
        m, s = mean_std(r.get(key) for r in per_seed)
        out[key] = {"mean": m, "std": s}
    return out


def format_value(value: float, percent: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}" if percent else f"{value:.4g}"


def format_mean_std(mean: float, std: float, percent: bool, digits: int = 1) -> str:
    """``mean ± std``; a single seed (std undefined) gives ``mean ± n/a``."""
    scale = 100.0 if percent else 1.0
    if mean is None or mean != mean:
        return "-"
    spread = "n/a" if std is None or std != std else f"{scale * std:.{digits}f}" if percent else f"{std:.4g}"
    value = f"{scale * mean:.{digits}f}" if percent else f"{mean:.4g}"
    return f"{value} ± {spread}"


def results_table(per_seed: Sequence[dict], metric: str, title: str = "", trained: Sequence[str] = ("v_in",)) -> str:
    """A plain-text table: one row per seed, then mean +- std; accuracies shown in percent.

    ``trained``: the splits the inner model was trained on; those other than ``v_in`` are headed
    ``(train)`` (``a_obs+v_out``: its V_out score is a training score).
    """
    percent = metric == "acc"
    cols = [f"{s}_{metric}" for s in SPLIT_LABELS]
    header = ["seed"] + [f"{SPLIT_LABELS[s]}{'(train)' if s in trained and s != 'v_in' else ''} {metric}"
                         + (" %" if percent else "") for s in SPLIT_LABELS] + ["best iter", "s/iter"]
    rows = []
    for r in per_seed:
        rows.append(
            [str(r.get("seed"))]
            + [format_value(r.get(c), percent) for c in cols]
            + [str(r.get("best_iteration", "-")), format_value(r.get("median_seconds_per_iteration"), False)]
        )
    agg = aggregate(per_seed, cols + ["median_seconds_per_iteration"])
    rows.append(
        ["mean+-std"]
        + [format_mean_std(agg[c]["mean"], agg[c]["std"], percent).replace("±", "+-") for c in cols]
        + ["", format_value(agg["median_seconds_per_iteration"]["mean"], False)]
    )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    sep = "-" * len(line(header))
    parts = ([title] if title else []) + [sep, line(header), sep] + [line(r) for r in rows[:-1]] + [sep, line(rows[-1]), sep]
    return "\n".join(parts)


def refit_lines(per_seed: Sequence[dict], metric: str) -> list[str]:
    """What ``--refit`` and ``--cross-fit`` decided, in words: the test score of the model retrained on
    every label on the learned graph, of the same model on the observed graph (the honest baseline),
    and of the one the validation gate kept, with how often it kept the learned graph. Empty where
    the seeds made no refit.

    Example:
        >>> seeds = [{"refit_gate": g, "refit_test_acc": a, "refit_observed_test_acc": 0.80,
        ...           "refit_gated_test_acc": c} for g, a, c in (("observed", 0.78, 0.80), ("learned", 0.84, 0.84))]
        >>> print("\\n".join(refit_lines(seeds, "acc")))
        refit on V_in ∪ V_out, test acc %: learned graph 81.0 ± 4.2; observed graph 80.0 ± 0.0 (the honest baseline)
        handed over (the graph validation chose, dgl_bilevel.experiment.handed_over_graph): 82.0 ± 2.8, the learned graph in 1 of 2 seeds
    """
    chosen = [r["refit_gate"] for r in per_seed if "refit_gate" in r]
    if not chosen:
        return []
    percent = metric == "acc"
    agg = aggregate(per_seed, [f"refit_{w}test_{metric}" for w in ("", "observed_", "gated_")])

    def score(which: str) -> str:
        entry = agg[f"refit_{which}test_{metric}"]
        return format_mean_std(entry["mean"], entry["std"], percent)

    learned = sum(choice != "observed" for choice in chosen)
    unit = f"test {metric}" + (" %" if percent else "")
    return [f"refit on V_in ∪ V_out, {unit}: learned graph {score('')}; observed graph {score('observed_')} "
            "(the honest baseline)",
            f"handed over (the graph validation chose, dgl_bilevel.experiment.handed_over_graph): {score('gated_')}, "
            f"the learned graph in {learned} of {len(chosen)} seeds"]


def write_json(path: "str | os.PathLike", payload: dict) -> None:
    """Write JSON atomically (NaN becomes null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _clean(obj):
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj
