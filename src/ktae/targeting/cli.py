"""``ktae targeting``: how well does each credit rule put a wrong rollout's blame on its labelled mistakes?"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass

from ktae.options import make_parser, option, parse

_USAGE = "ktae targeting RUN_DIR_OR_CORPUS [RUN_DIR_OR_CORPUS ...] [--rules a,b] [--json OUT] [--by_step] [--png OUT]"
_DESCRIPTION = (
    "Score token-credit rules on frozen rollouts with token labels, in seconds. Over the tokens of the wrong\n"
    "rollouts of mixed groups, a token's blame under a rule is -adv[i, t] / |A_i|; the table gives, per rule, the\n"
    "AUROC of the blame at picking out the labelled wrong-step tokens (pooled and within a rollout), the same for\n"
    "the tokens from the first wrong step on, the share of the blame on wrong-step tokens, the share of A_i taken off\n"
    "tokens a correct rollout also wrote at the same position, the share of A_i kept on correct rollouts, and the\n"
    "agreement with the blame oracle. random (the floor, ~0.5) and oracle-blame (the ceiling, 1) are sanity rows.\n"
    "Inputs: word-task run folders made with --dump_key_tokens_every N, or corpus files (docs/data/targeting/);\n"
    "several inputs are pooled, and reported one by one in the JSON (with the mean and 95% CI over them).")
#: the columns of the terminal table: measure -> heading
COLUMNS = {"auroc_pooled": "AUROC pooled", "auroc_within": "AUROC within", "auroc_from_first": "from-first pooled",
           "auroc_from_first_within": "from-first within", "blame_share": "blame share",
           "removed_shared": "A_i off shared", "kept_correct": "A_i kept right", "oracle_corr": "corr oracle",
           "oracle_mad": "abs diff oracle"}


@dataclass
class TargetingOptions:
    """Options of ``ktae targeting`` (the run folders or corpus files are its positional arguments)."""

    rules: str = option("", "the rules to score, comma-separated (default: every registered rule: "
                        "random, grpo, ktae, ktae-tuned, gate, oracle, oracle-blame)")
    json: str | None = option(None, "write every measure, the counts and the environment to this JSON file")
    by_step: bool = option(False, "also print one table per dumped step", action="store_true")
    png: str | None = option(None, "write ROC curves of the rules' blame (pooled) to this PNG file")
    fraction: float = option(0.1, "share_top: the wrong-step share of this fraction of the most blamed tokens")
    seed: int = option(0, "seed of the random rule")
    quiet: bool = option(False, "no progress bar", action="store_true")

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"--fraction must be in (0, 1], got {self.fraction!r}")

    def rule_names(self) -> list[str]:
        from ktae.targeting.rules import RULES

        names = [n.strip() for n in self.rules.split(",") if n.strip()] or list(RULES)
        unknown = [n for n in names if n not in RULES]
        if unknown:
            raise ValueError(f"--rules: unknown rule(s) {unknown}; expected some of {', '.join(RULES)}")
        return names


def build_parser():
    """The command-line parser of ``ktae targeting``."""
    parser = make_parser([TargetingOptions], prog="ktae targeting", usage=_USAGE, description=_DESCRIPTION)
    parser.add_argument("inputs", nargs="+", help="word-task run folders (--dump_key_tokens_every N) or targeting "
                        "corpus files (.jsonl.gz)")
    return parser


def _cell(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def format_table(result: dict, title: str) -> str:
    """A Markdown table of :data:`COLUMNS` per rule, with the counts above it."""
    c = result["corpus"]
    lines = [f"{title}: {c['batches']} batches, {c['groups']} groups ({c['mixed_groups']} mixed, "
             f"{_cell(c['mixed_group_share'])}), {c['wrong_rollouts_of_mixed_groups']} wrong rollouts of mixed groups, "
             f"{c['target_tokens']} of their tokens ({c['wrong_step_tokens']} in wrong steps, base rate "
             f"{_cell(c['base_rate'])}; {c['from_first_tokens']} from the first wrong step on)", "",
             "| rule | " + " | ".join(COLUMNS.values()) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for rule, measures in result["rules"].items():
        lines.append(f"| {rule} | " + " | ".join(_cell(measures[k]) for k in COLUMNS) + " |")
    return "\n".join(lines)


def _across(parts: list[dict], rules: list[str]) -> dict:
    """Rule -> measure -> ``{"mean", "ci95"}`` over several results (Student t; NaN values left out)."""
    from ktae.experiments.compare import mean_ci
    from ktae.targeting.score import MEASURES

    return {rule: {m: dict(zip(("mean", "ci95"), mean_ci([p["rules"][rule][m] for p in parts]))) for m in MEASURES}
            for rule in rules}


def analyse(inputs: list[str], rules: list[str], fraction: float = 0.1, seed: int = 0, progress: bool = False):
    """``(result, table)``: the JSON-ready result of ``ktae targeting`` over the corpora or run folders ``inputs``
    (see :mod:`ktae.targeting.score`; ``by_step``: per dumped step; with several inputs ``by_source``, and the mean
    and 95% CI over the inputs in ``across_sources`` and, per step, ``across_sources_by_step``), and the token table
    it was computed from."""
    import torch

    from ktae.progress import progress_bar
    from ktae.targeting.corpus import Corpus, load_input
    from ktae.targeting.rules import RULES
    from ktae.targeting.score import score, token_table

    corpora = [load_input(path) for path in inputs]
    if len({json.dumps(c.config.__dict__, sort_keys=True, default=list) for c in corpora}) > 1:
        raise ValueError("the inputs carry different KTAE options (threshold, rollout estimator, ignored ids): "
                         "score them one at a time")
    source_of = {}
    for path, corpus in zip(inputs, corpora):
        for r in corpus.rollouts:
            r.batch = f"{path}::{r.batch}" if len(corpora) > 1 else r.batch
            source_of[r.batch] = (path, r.step)
    merged = Corpus("+".join(c.name for c in corpora), [r for c in corpora for r in c.rollouts], corpora[0].config,
                    {k: v for c in corpora for k, v in c.token_texts.items()})
    wrap = (lambda batches: progress_bar(batches, desc="scoring batches", unit="batch")) if progress else iter
    table = token_table(merged, {name: RULES[name] for name in rules}, seed, wrap)

    def part(select) -> dict:
        numbers = [i for i, name in enumerate(table.batches) if select(*source_of[name])]
        return score(table, rules, torch.isin(table.batch, torch.tensor(numbers, dtype=torch.int64)), numbers,
                     fraction)

    result = score(table, rules, fraction=fraction)
    steps = sorted({step for _, step in source_of.values() if step is not None})
    result["by_step"] = {str(s): part(lambda _, step, s=s: step == s) for s in steps}
    if len(corpora) > 1:
        result["by_source"] = {p: part(lambda path, _, p=p: path == p) for p in inputs}
        result["across_sources"] = _across(list(result["by_source"].values()), rules)
        result["across_sources_by_step"] = {
            str(s): _across([part(lambda path, step, p=p, s=s: path == p and step == s) for p in inputs], rules)
            for s in steps}
    result["inputs"] = [{"path": p, "name": c.name, "description": c.description, "labels": c.labels,
                         "command": c.command} for p, c in zip(inputs, corpora)]
    return result, table


def format_across(across: dict, title: str) -> str:
    """A Markdown table of mean ± 95% CI over the inputs, per rule, of :data:`COLUMNS`."""
    lines = [title, "", "| rule | " + " | ".join(COLUMNS.values()) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for rule, cells in across.items():
        lines.append(f"| {rule} | " + " | ".join(f"{_cell(cells[k]['mean'])} ± {_cell(cells[k]['ci95'])}"
                                                 for k in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``ktae targeting``: 0 when done, 2 (a message on stderr) when the input is bad."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, positional = parse(parser, argv)
        rules = args.rule_names()
    except ValueError as exc:
        parser.error(str(exc))
    import torch

    from ktae.environment import describe_environment

    torch.set_num_threads(1)   # small tensors: one thread is the fastest, and leaves the other cores alone
    try:
        result, table = analyse(positional.inputs, rules, args.fraction, args.seed,
                                progress=not args.quiet)
    except (OSError, ValueError) as exc:
        print(f"ktae targeting: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result, ", ".join(positional.inputs)))
    if "across_sources" in result:
        print("\n" + format_across(result["across_sources"], f"Over the {len(positional.inputs)} inputs (mean ± 95% "
                                    "CI, Student t):"))
    if args.by_step:
        for step, part in result["by_step"].items():
            print("\n" + format_table(part, f"step {step}"))
            if "across_sources_by_step" in result:
                print("\n" + format_across(result["across_sources_by_step"][step], f"step {step}, over the inputs:"))
    if args.png:
        from ktae.targeting.figure import roc_figure

        roc_figure(table, rules, args.png, ", ".join(positional.inputs))
        print(f"written: {args.png}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({**result, "environment": describe_environment()}, handle, indent=1)
        print(f"written: {args.json}")
    return 0
