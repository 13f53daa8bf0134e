"""``ktae eval``: the paper's evaluation of a model, or re-grading of saved generations.

    ktae eval --model Qwen/Qwen2.5-Math-7B --data path/to/evaluation_suite --output eval/qwen7b
    ktae eval --from-generations eval/qwen7b/generations.jsonl
"""
from __future__ import annotations

import argparse
import os
import sys

from ktae.eval.metrics import format_tables
from ktae.eval.runner import GENERATIONS_FILE, SUMMARY_FILE, EvalConfig, evaluate, regrade

__all__ = ["main", "build_parser"]


def _help(name: str) -> str:
    return EvalConfig.__dataclass_fields__[name].metadata["help"]


def build_parser() -> argparse.ArgumentParser:
    d = EvalConfig()
    p = argparse.ArgumentParser(
        prog="ktae eval",
        description="Evaluate a causal LM on the KTAE paper's five math benchmarks (greedy, qwen_math prompt, "
        "3000 new tokens by default) and print the paper's two tables, or re-grade saved generations.",
    )
    src = p.add_argument_group("what to evaluate")
    src.add_argument("--model", default=None, help=_help("model"))
    src.add_argument("--from-generations", metavar="FILE", default=None,
                     help="re-grade a generations file (jsonl or json list) instead of running a model")
    src.add_argument("--benchmarks", nargs="+", default=list(d.benchmarks), metavar="NAME",
                     help=f"{_help('benchmarks')}; default: all")
    src.add_argument("--data", default=None, help=_help("data"))
    src.add_argument("--limit", type=int, default=None, help=_help("limit"))
    src.add_argument("--output", default=None,
                     help="output folder (default: eval_out/<model name>); with --from-generations: "
                     "a jsonl file for the re-graded records")
    gen = p.add_argument_group("generation")
    gen.add_argument("--template", default=d.template, help=_help("template"))
    gen.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help=_help("max_new_tokens"))
    gen.add_argument("--temperature", type=float, default=d.temperature, help=_help("temperature"))
    gen.add_argument("--top-p", type=float, default=d.top_p, help=_help("top_p"))
    gen.add_argument("--n", type=int, default=d.n, help=_help("n"))
    gen.add_argument("--batch-size", type=int, default=d.batch_size, help=_help("batch_size"))
    gen.add_argument("--backend", choices=["hf", "vllm"], default=d.backend, help=_help("backend"))
    gen.add_argument("--dtype", default=d.dtype, choices=["auto", "bfloat16", "float16", "float32"], help=_help("dtype"))
    gen.add_argument("--device", default=None, help=_help("device"))
    gen.add_argument("--seed", type=int, default=d.seed, help=_help("seed"))
    gen.add_argument("--problem-field", default=None, help="problem field of the benchmark data or generations file (default: auto)")
    gen.add_argument("--answer-field", default=None, help=_help("answer_field"))
    grade = p.add_argument_group("grading")
    grade.add_argument("--grading-workers", type=int, default=None, help=_help("grading_workers"))
    grade.add_argument("--grading-timeout", type=float, default=d.grading_timeout, help=_help("grading_timeout"))
    regr = p.add_argument_group("re-grading (--from-generations)")
    regr.add_argument("--response-field", default=None,
                      help="response field, a text or a list of n texts (default: recognised from the layout: ktae, "
                      "understand-r1-zero, qwen2.5-math, verl; else response/output/completion...)")
    regr.add_argument("--reference-field", default=None, help="reference field (default: reference/answer/...)")
    regr.add_argument("--benchmark-field", default=None, help="benchmark field (default: benchmark/data_source)")
    regr.add_argument("--verdict-field", default=None, help="earlier verdict field to compare with, one or a list per record "
                      "(default: correct, or the layout's reward/score/acc)")
    regr.add_argument("--tokens-field", default=None, help="response length field (default: tokens/num_tokens)")
    regr.add_argument("--show-disagreements", type=int, default=20, metavar="N",
                      help="print at most N records whose verdict changed")
    out = p.add_argument_group("output")
    out.add_argument("--label", default=None, help="row label in the tables (default: the model's folder name)")
    out.add_argument("--show-paper", action="store_true", help="add the KTAE paper's reported rows to the tables")
    out.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    return p


def _regrade(args) -> int:
    result = regrade(
        args.from_generations,
        response_field=args.response_field,
        reference_field=args.reference_field or args.answer_field,
        problem_field=args.problem_field,
        benchmark_field=args.benchmark_field,
        verdict_field=args.verdict_field,
        tokens_field=args.tokens_field,
        workers=args.grading_workers,
        timeout=args.grading_timeout,
        output=args.output,
        progress=not args.no_progress,
    )
    label = args.label or os.path.basename(os.path.dirname(os.path.abspath(args.from_generations))) or "generations"
    layout = "" if result.layout == "ktae" else f" (layout: {result.layout})"
    per_record = f" in {len(result.records)} records" if result.samples != len(result.records) else ""
    print(format_tables(result.summary, label, show_paper=args.show_paper,
                        note=f"Re-graded {result.samples} responses{per_record} from {args.from_generations}{layout}"))
    if result.compared:
        print(f"\nAgreement with the saved verdicts: {result.agreement:.1f}% "
              f"({result.agreed}/{result.compared}); {len(result.disagreements)} disagree")
        for d in result.disagreements[: max(0, args.show_disagreements)]:
            print(f"  record {d['record']} [{d['benchmark']}]: answer {d['answer']!r}, "
                  f"reference {d['reference']!r}: was {d['previous']}, now {d['now']}")
        if len(result.disagreements) > args.show_disagreements:
            print(f"  ... {len(result.disagreements) - args.show_disagreements} more")
    else:
        print("\n(no earlier verdicts in the file: nothing to compare with)")
    if args.output:
        print(f"\nwrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_generations and args.model:
        parser.error("give either --model or --from-generations, not both")
    if not args.from_generations and not args.model:
        parser.error("give --model PATH_OR_ID to evaluate, or --from-generations FILE to re-grade")
    try:
        if args.from_generations:
            return _regrade(args)
        output = args.output or os.path.join("eval_out", os.path.basename(os.path.normpath(args.model)))
        config = EvalConfig(
            model=args.model, benchmarks=tuple(args.benchmarks), data=args.data, limit=args.limit,
            output=output, template=args.template, max_new_tokens=args.max_new_tokens,
            temperature=args.temperature, top_p=args.top_p, n=args.n, batch_size=args.batch_size,
            backend=args.backend, dtype=args.dtype, device=args.device, seed=args.seed,
            grading_workers=args.grading_workers, grading_timeout=args.grading_timeout,
            problem_field=args.problem_field, answer_field=args.answer_field, progress=not args.no_progress,
        )
        summary = evaluate(config)
    except KeyboardInterrupt:
        print("\ninterrupted: what was generated is saved; run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as exc:  # bad input, missing model/data, missing extra
        print(f"ktae eval: error: {exc}", file=sys.stderr)
        return 2
    note = None
    if args.limit:
        note = f"(first {args.limit} problems of each benchmark)"
    print()
    print(format_tables(summary, args.label or os.path.basename(os.path.normpath(args.model)),
                        show_paper=args.show_paper, note=note))
    print(f"\ngenerations: {os.path.join(output, GENERATIONS_FILE)}\nsummary:     {os.path.join(output, SUMMARY_FILE)}")
    return 0
