"""Generalised edge refinement: learn weights on the support of A^r (all pairs within r hops).

A smaller diameter puts fewer edges beyond the reach of the labelled nodes' hypergradient.
The support is built sparsely; above --power-budget directed edges it refuses with the count.

    python recipes/power_refinement.py --dataset cheaters --power 2 --seeds 5
"""
from __future__ import annotations

from common import parser, run_cell


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--power", type=int, default=2)
    p.add_argument("--power-budget", type=int, default=5_000_000)
    args = p.parse_args()
    run_cell(args.dataset, args.inner, "bo+power", args.seeds, args.out, outer_steps=args.outer_steps,
             power=args.power, power_budget=args.power_budget, data_root=args.data_root, resume=args.resume,
             progress=not args.no_progress)


if __name__ == "__main__":
    main()
