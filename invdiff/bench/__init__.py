"""The benchmark harness: suites in (TOML), rows, tables, figures and a manifest out.

    from invdiff.bench import load_suite, run_suite
    run_suite(load_suite("benchmarks/quick.toml"), "runs/bench/quick")

or ``invdiff bench benchmarks/quick.toml``; see ``invdiff.bench.suite`` for the file format.
"""

from invdiff.bench.runner import prepare
from invdiff.bench.runner import run as run_suite
from invdiff.bench.stats import mean_ci
from invdiff.bench.suite import Suite, SuiteError
from invdiff.bench.suite import load as load_suite

__all__ = ["Suite", "SuiteError", "load_suite", "mean_ci", "prepare", "run_suite"]
