"""Bilevel edge refinement (BO) against the inner model on the observed graph (A_obs).

    python recipes/edge_refinement.py --dataset cora --inner gnn --seeds 5
"""
from __future__ import annotations

from common import parser, run_cell


def main() -> None:
    args = parser(__doc__).parse_args()
    for method in ("a_obs", "bo"):
        run_cell(args.dataset, args.inner, method, args.seeds, args.out, outer_steps=args.outer_steps,
                 data_root=args.data_root, resume=args.resume, progress=not args.no_progress)


if __name__ == "__main__":
    main()
