"""The KTAE paper's evaluation: five math benchmarks, greedy decoding, last-\\boxed{} grading.

From Python::

    from ktae.eval import EvalConfig, run_benchmarks, format_tables
    summary = run_benchmarks(EvalConfig(model="Qwen/Qwen2.5-Math-7B", data="evaluation_suite", output="eval/q7b"))
    print(format_tables(summary, "Qwen2.5-Math-7B"))

From the shell: ``ktae eval --model PATH_OR_ID`` (see ``ktae eval --help``).
"""
from ktae.eval.benchmarks import BENCHMARKS, Example, benchmark_names, load_benchmark
from ktae.eval.metrics import format_tables, pass_at_k, summarize
from ktae.eval.runner import EvalConfig, RegradeResult, run_benchmarks, read_generations, regrade

__all__ = [
    "BENCHMARKS",
    "Example",
    "benchmark_names",
    "load_benchmark",
    "EvalConfig",
    "run_benchmarks",
    "regrade",
    "RegradeResult",
    "read_generations",
    "summarize",
    "format_tables",
    "pass_at_k",
]
