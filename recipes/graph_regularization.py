"""Graph regularisation: add -gamma * mean_i log(d_i) (weighted degrees) to the outer loss.

The regulariser gives every edge a gradient, whatever its distance to the labelled nodes.

    python recipes/graph_regularization.py --dataset cora --inner gnn --gamma 1 --seeds 5
"""
from __future__ import annotations

from common import parser, run_cell


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--gamma", type=float, default=1.0)
    args = p.parse_args()
    run_cell(args.dataset, args.inner, "bo+reg", args.seeds, args.out, outer_steps=args.outer_steps,
             reg_gamma=args.gamma, data_root=args.data_root, resume=args.resume, progress=not args.no_progress)


if __name__ == "__main__":
    main()
