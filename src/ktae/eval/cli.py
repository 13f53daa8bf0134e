"""``ktae eval``: the paper's evaluation of a model, or re-grading of saved generations.

    ktae eval --model Qwen/Qwen2.5-Math-7B --data path/to/evaluation_suite --output eval/qwen7b
    ktae eval --from-generations eval/qwen7b/generations.jsonl
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, NamedTuple

from ktae.eval.metrics import format_tables
from ktae.eval.runner import GENERATIONS_FILE, SUMMARY_FILE, EvalConfig, regrade, run_benchmarks
from ktae.generation import BACKENDS
from ktae.loading import DTYPES
from ktae.options import answer_help, make_parser, option, parse, topic_help_parser

__all__ = ["main", "build_parser", "help_parser", "COMMON_OPTIONS", "EvalArgs", "SourceOptions", "GenerationOptions",
           "GradingOptions", "RegradeOptions", "ReportOptions"]


def _like(name: str) -> Any:
    """An option with the default and the help of ``EvalConfig.<name>`` (a tuple default as a list)."""
    spec = EvalConfig.__dataclass_fields__[name]
    default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
    return option(default, spec.metadata["help"])


@dataclass
class SourceOptions:
    """What to evaluate: a model on the benchmarks, or a generations file to re-grade."""

    _argument_group_name = "what to evaluate"
    model: str | None = _like("model")
    from_generations: str | None = option(None, "re-grade a generations file (jsonl or json list) instead of "
                                          "running a model")
    benchmarks: list[str] = _like("benchmarks")
    data: str | None = _like("data")
    limit: int | None = _like("limit")
    output: str | None = option(None, "output folder (None: eval_out/<model name>); with --from-generations: "
                                "a jsonl file for the re-graded records")

    def check(self) -> "SourceOptions":
        """Exactly one of ``--model`` and ``--from-generations`` (ValueError naming them otherwise)."""
        if self.from_generations and self.model:
            raise ValueError("give either --model or --from-generations, not both")
        if not self.from_generations and not self.model:
            raise ValueError("give --model PATH_OR_ID to evaluate, or --from-generations FILE to re-grade")
        return self


@dataclass
class GenerationOptions:
    """How the model generates (and which data fields hold the problem and the answer)."""

    _argument_group_name = "generation"
    template: str = _like("template")
    max_new_tokens: int = _like("max_new_tokens")
    temperature: float = _like("temperature")
    top_p: float = _like("top_p")
    n: int = _like("n")
    batch_size: int = _like("batch_size")
    backend: Literal[BACKENDS] = _like("backend")
    vllm_enforce_eager: bool = _like("vllm_enforce_eager")
    dtype: Literal[DTYPES] = _like("dtype")
    device: str | None = _like("device")
    seed: int = _like("seed")
    skip_long_prompts: bool = _like("skip_long_prompts")
    problem_field: str | None = option(None, "problem field of the benchmark data or generations file (None: auto)")
    answer_field: str | None = _like("answer_field")


@dataclass
class GradingOptions:
    """How answers are graded."""

    _argument_group_name = "grading"
    grading_workers: int | None = _like("grading_workers")
    grading_timeout: float = _like("grading_timeout")


@dataclass
class RegradeOptions:
    """Fields of a generations file to re-grade (None: recognised from its layout)."""

    _argument_group_name = "re-grading (--from-generations)"
    response_field: str | None = option(None, "response field, a text or a list of n texts (None: recognised from "
                                        "the layout: ktae, understand-r1-zero, qwen2.5-math, verl; else "
                                        "response/output/completion...)")
    reference_field: str | None = option(None, "reference field (None: reference/answer/...)")
    benchmark_field: str | None = option(None, "benchmark field (None: benchmark/data_source)")
    verdict_field: str | None = option(None, "earlier verdict field to compare with, one or a list per record "
                                       "(None: correct, or the layout's reward/score/acc)")
    tokens_field: str | None = option(None, "response length field (None: tokens/num_tokens)")
    show_disagreements: int = option(20, "print at most this many records whose verdict changed")


@dataclass
class ReportOptions:
    """What is printed."""

    _argument_group_name = "output"
    label: str | None = option(None, "row label in the tables (None: the model's folder name)")
    show_paper: bool = option(False, "add the KTAE paper's reported rows to the tables")
    no_progress: bool = option(False, "do not show progress bars")


class EvalArgs(NamedTuple):
    """The parsed command line of ``ktae eval``, one dataclass per option group."""

    source: SourceOptions
    generation: GenerationOptions
    grading: GradingOptions
    regrade: RegradeOptions
    report: ReportOptions


_GROUPS = {"source": "SourceOptions", "generation": "GenerationOptions", "grading": "GradingOptions",
           "regrade": "RegradeOptions", "report": "ReportOptions"}
#: what ``ktae eval --help`` shows; the rest is one ``--help SECTION`` away
COMMON_OPTIONS = ("model", "from_generations", "benchmarks", "data", "limit", "output", "backend", "max_new_tokens",
                  "skip_long_prompts")
_USAGE = ("ktae eval --model PATH_OR_ID [--benchmarks NAME ...] [--key value ...]\n"
          "       ktae eval --from_generations FILE [--key value ...]\n"
          "       ktae eval --help [SECTION | all]")
_DESCRIPTION = ("Evaluate a causal LM on the KTAE paper's five math benchmarks (greedy, qwen_math prompt, 3000 new "
                "tokens by\ndefault) and print the paper's two tables, or re-grade saved generations.")


def build_parser():
    """The command-line parser of ``ktae eval``: the fields of :class:`EvalArgs`' dataclasses."""
    return make_parser([SourceOptions, GenerationOptions, GradingOptions, RegradeOptions, ReportOptions],
                       prog="ktae eval", usage=_USAGE, description=_DESCRIPTION)


def help_parser(topic: str | None = None):
    """The parser whose ``--help`` is ``ktae eval --help [TOPIC]``: :data:`COMMON_OPTIONS` and the sections, one
    section (``source``, ``generation``, ``grading``, ``regrade``, ``report``), or ``all``.

    Raises:
        ValueError: ``topic`` is not a section nor ``all``.
    """
    groups = [globals()[name] for name in _GROUPS.values()]
    sections = {topic_name: (group._argument_group_name, [f.name for f in fields(group)])
                for topic_name, group in zip(_GROUPS, groups)}
    return topic_help_parser(groups, topic, prog="ktae eval", common=COMMON_OPTIONS, sections=sections,
                             full=build_parser, usage=_USAGE, description=_DESCRIPTION)


def _regrade(args: EvalArgs) -> int:
    """Re-grade ``--from-generations`` and print the tables and the verdicts that changed."""
    path, regr = args.source.from_generations, args.regrade
    result = regrade(
        path,
        response_field=regr.response_field,
        reference_field=regr.reference_field or args.generation.answer_field,
        problem_field=args.generation.problem_field,
        benchmark_field=regr.benchmark_field,
        verdict_field=regr.verdict_field,
        tokens_field=regr.tokens_field,
        workers=args.grading.grading_workers,
        timeout=args.grading.grading_timeout,
        output=args.source.output,
        progress=not args.report.no_progress,
    )
    label = args.report.label or os.path.basename(os.path.dirname(os.path.abspath(path))) or "generations"
    layout = "" if result.layout == "ktae" else f" (layout: {result.layout})"
    per_record = f" in {len(result.records)} records" if result.samples != len(result.records) else ""
    print(format_tables(result.summary, label, show_paper=args.report.show_paper,
                        note=f"Re-graded {result.samples} responses{per_record} from {path}{layout}"))
    if result.compared:
        print(f"\nAgreement with the saved verdicts: {result.agreement:.1f}% "
              f"({result.agreed}/{result.compared}); {len(result.disagreements)} disagree")
        for d in result.disagreements[: max(0, regr.show_disagreements)]:
            print(f"  record {d['record']} [{d['benchmark']}]: answer {d['answer']!r}, "
                  f"reference {d['reference']!r}: was {d['previous']}, now {d['now']}")
        if len(result.disagreements) > regr.show_disagreements:
            print(f"  ... {len(result.disagreements) - regr.show_disagreements} more")
    else:
        print("\n(no earlier verdicts in the file: nothing to compare with)")
    if args.source.output:
        print(f"\nwrote {args.source.output}")
    return 0


def _evaluate(args: EvalArgs) -> int:
    """Run ``--model`` on the benchmarks (resuming its output folder) and print the tables."""
    model = args.source.model
    output = args.source.output or os.path.join("eval_out", os.path.basename(os.path.normpath(model)))
    names = {f.name for f in fields(EvalConfig)}
    values = {k: v for group in (args.source, args.generation, args.grading) for k, v in asdict(group).items()
              if k in names}
    summary = run_benchmarks(EvalConfig(**{**values, "output": output, "progress": not args.report.no_progress}))
    note = f"(first {args.source.limit} problems of each benchmark)" if args.source.limit else None
    print()
    print(format_tables(summary, args.report.label or os.path.basename(os.path.normpath(model)),
                        show_paper=args.report.show_paper, note=note))
    print(f"\ngenerations: {os.path.join(output, GENERATIONS_FILE)}\nsummary:     {os.path.join(output, SUMMARY_FILE)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ktae eval``: 0 when done, 2 (a message on stderr) on bad input, 130 when interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    answered = answer_help(argv, help_parser, "eval")
    if answered is not None:
        return answered
    parser = build_parser()
    try:
        args = EvalArgs(*parse(parser, argv))
        args.source.check()
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return _regrade(args) if args.source.from_generations else _evaluate(args)
    except KeyboardInterrupt:
        print("\ninterrupted: what was generated is saved; run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as exc:  # bad input, missing model/data, missing extra
        print(f"ktae eval: error: {exc}", file=sys.stderr)
        return 2
