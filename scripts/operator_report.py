"""Print, for every registered operator, its numerical self-checks on its ``example()``.

    python3 scripts/operator_report.py

Columns: capability class, dot-test (adjointness) error for linear operators, the largest SVD
error (orthogonality of U and V, transposes, reconstruction of the dense matrix) for SVD
operators, and the vjp-vs-finite-difference error for all operators; then the largest
adjointness error over all linear operators.
"""

from __future__ import annotations

import torch

import invdiff  # noqa: F401  (registers the operators)
from invdiff.operators import checks
from invdiff.operators.base import LinearOperator, SVDOperator
from invdiff.registry import OPERATORS


def main() -> None:
    torch.set_num_threads(2)
    worst = 0.0
    print(f"{'operator':24s} {'class':15s} {'adjoint':>10s} {'svd':>10s} {'vjp':>10s}")
    for name in OPERATORS.names():
        op = OPERATORS.entry(name).example()
        g = torch.Generator().manual_seed(0)
        kind = (
            "SVDOperator"
            if isinstance(op, SVDOperator)
            else "LinearOperator"
            if isinstance(op, LinearOperator)
            else "Operator"
        )
        adj = svd = "-"
        if isinstance(op, LinearOperator):
            e = checks.adjointness_error(op, g)
            worst = max(worst, e)
            adj = f"{e:.1e}"
        if isinstance(op, SVDOperator):
            svd = f"{max(checks.svd_errors(op).values()):.1e}"
        vjp = f"{checks.vjp_error(op, g):.1e}"
        print(f"{name:24s} {kind:15s} {adj:>10s} {svd:>10s} {vjp:>10s}")
    print(f"largest adjointness error over all linear operators (float64): {worst:.2e}")


if __name__ == "__main__":
    main()
