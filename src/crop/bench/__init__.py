"""The benchmark runner behind ``crop bench`` and its crash-safe result store.

(The package is not called ``evaluate`` so that it never shadows the :func:`crop.evaluate` function.)
"""

from crop.bench.runner import BenchSpec, evaluate_unit, load_results, run_bench
from crop.bench.store import ResultStore

__all__ = ["BenchSpec", "ResultStore", "evaluate_unit", "load_results", "run_bench"]
