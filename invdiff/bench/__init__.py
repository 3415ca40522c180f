"""The benchmark harness: suites in (TOML), rows, tables, figures and a manifest out.

    from invdiff.bench import load_suite, run_suite
    run_suite(load_suite("benchmarks/quick.toml"), "runs/bench/quick")

or ``invdiff bench benchmarks/quick.toml``; see ``invdiff.bench.suite`` for the file format.
A run is a plan (``plan``: every pairing checked, the work items), a store (``store``: the run
folder), a loop (``loop``) and a report (``report``, from the store); ``runner`` joins them.
"""

from invdiff.bench.plan import Plan
from invdiff.bench.runner import prepare
from invdiff.bench.runner import run as run_suite
from invdiff.bench.stats import mean_ci
from invdiff.bench.store import RunStore
from invdiff.bench.suite import Suite, SuiteError
from invdiff.bench.suite import load as load_suite

__all__ = [
    "Plan",
    "RunStore",
    "Suite",
    "SuiteError",
    "load_suite",
    "mean_ci",
    "prepare",
    "run_suite",
]
