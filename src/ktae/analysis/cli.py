"""``ktae analyze``: which tokens does KTAE reward or punish in a file of rollouts?"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any, Literal

from ktae.core.config import KTAEConfig
from ktae.frontend.options import ktae_config, parse_estimator
from ktae.options import answer_help, make_parser, option, parse, topic_help_parser

_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(KTAEConfig)}


def _config_help() -> str:
    return "; ".join(f"{name}: {f.metadata.get('help', '')} (default {f.default!r})" for name, f in _CONFIG_FIELDS.items())


def _options_file(path: str) -> dict[str, Any]:
    """The KTAE options of a YAML file: KTAEConfig fields at the top, or a run's ``config.yaml`` (its ``ktae``
    section, and the rollout estimator of its ``algorithm.estimator``)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of KTAE options")
    if isinstance(data.get("ktae"), dict):  # a trainer's run config.yaml
        algorithm = data.get("algorithm") if isinstance(data.get("algorithm"), dict) else {}
        rollout = parse_estimator(algorithm["estimator"])[0] if algorithm.get("estimator") else None
        data = {**({"rollout": rollout} if rollout else {}), **data["ktae"]}
    return data


def parse_config(items: list[str], tokenizer_ignore: tuple[int, ...], base: dict | None = None) -> KTAEConfig:
    """KTAEConfig from ``KEY=VALUE`` items and/or YAML files (see :func:`_options_file`).

    ``ignore_token_ids`` defaults to the tokenizer's pad and EOS ids; ``base`` (the options a trainer's dump
    recorded) replaces those defaults and the items override it.
    """
    values: dict[str, Any] = dict(base) if base is not None else {"ignore_token_ids": tokenizer_ignore}
    for item in items:
        if "=" in item and not os.path.isfile(item):
            key, _, raw = item.partition("=")
            values[key.strip().replace("-", "_")] = raw.strip()
        elif os.path.isfile(item):
            values.update(_options_file(item))
        else:
            raise ValueError(f"--config: {item!r} is neither KEY=VALUE nor an existing YAML file")
    return ktae_config(values, where="--config")


@dataclass
class AnalyzeOptions:
    """Options of ``ktae analyze`` (the rollouts file or folder is its positional argument)."""

    tokenizer: str = option("", "Hugging Face tokenizer name or folder with tokenizer files (default: the one the "
                            "trainer's dump records, or the run folder's model)")
    steps: str | None = option(None, "only these training steps of a folder or file, e.g. '10,20,100-120' "
                               "(None: all)")
    html: str | None = option(None, "write the HTML report here")
    png: str | None = option(None, "write one PNG figure per rollout into this folder")
    num_tokens: int = option(20, "key tokens listed per prompt and sign", aliases=("--top",))
    config: list[str] = option([], "KTAE option KEY=VALUE or a YAML file of options (repeatable). " + _config_help(),
                               action="append")
    label: Literal["reward", "correct"] = option(
        "reward", "what splits correct from wrong: the reward (> threshold, as in training) or the 'correct' field "
        "as 1/0 (falls back to the other when missing)")
    page_size: int = option(10, "prompts per HTML page")
    page_tokens: int = option(200_000, "most tokens per HTML page; larger reports are split into pages")
    png_limit: int = option(50, "at most this many PNG figures, 0 for all")
    vmax: float | None = option(None, "|K| shown in full colour (None: the bound of K, config 'top')")
    print_groups: int = option(20, "prompts whose tables are printed, 0 for all")
    quiet: bool = option(False, "no progress bars", action="store_true")

    def __post_init__(self) -> None:
        for name in ("num_tokens", "page_size", "page_tokens", "png_limit", "print_groups"):
            low = 1 if name.startswith("page") else 0
            if getattr(self, name) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)!r}")
        if self.vmax is not None and not self.vmax > 0:
            raise ValueError(f"--vmax must be > 0, got {self.vmax!r}")


#: what ``ktae analyze --help`` shows (with the rollouts); the rest is one ``--help SECTION`` away
COMMON_OPTIONS = ("tokenizer", "steps", "num_tokens", "html", "png", "quiet")
#: ``ktae analyze --help SECTION``: topic -> (title, options)
HELP_SECTIONS = {
    "input": ("Input (tokenizer, steps, what is correct, KTAE options)", ("tokenizer", "steps", "label", "config")),
    "tables": ("Terminal tables", ("num_tokens", "print_groups", "quiet")),
    "html": ("HTML report", ("html", "page_size", "page_tokens", "vmax")),
    "png": ("PNG figures", ("png", "png_limit", "vmax")),
}
_USAGE = ("ktae analyze RUN_DIR|ROLLOUTS [--key value ...]\n"
          "       ktae analyze --help [SECTION | all]")
_DESCRIPTION = ("Group rollouts by prompt, compute KTAE key-token values with the core, print the top positive and "
                "negative\ntokens of each prompt, and optionally write an HTML heat-map report and PNG figures.")


def _add_rollouts(parser) -> None:
    """The positional argument: the rollouts file or folder, or a run folder."""
    parser.add_argument("rollouts", help="a rollouts file, a folder of step files or a run folder (its key_tokens "
                        "dumps): ktae's own jsonl (group/prompt, "
                        "response or token_ids, reward or correct, optional reference; the verl/TRL dump options), "
                        "or verl's trainer.rollout_data_dir / validation_data_dir files, recognised without flags")


def build_parser():
    """The command-line parser of ``ktae analyze``: :class:`AnalyzeOptions` and the rollouts."""
    parser = make_parser([AnalyzeOptions], prog="ktae analyze", usage=_USAGE, description=_DESCRIPTION)
    _add_rollouts(parser)
    return parser


def help_parser(topic: str | None = None):
    """The parser whose ``--help`` is ``ktae analyze --help [TOPIC]``: the rollouts, :data:`COMMON_OPTIONS` and
    the sections, one of :data:`HELP_SECTIONS`, or ``all``.

    Raises:
        ValueError: ``topic`` is not a section nor ``all``.
    """
    parser = topic_help_parser([AnalyzeOptions], topic, prog="ktae analyze", common=COMMON_OPTIONS,
                               sections=HELP_SECTIONS, full=build_parser, usage=_USAGE, description=_DESCRIPTION)
    if topic is None:
        _add_rollouts(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``ktae analyze``: 0 when done, 2 (a message on stderr) when the input is bad."""
    argv = list(sys.argv[1:] if argv is None else argv)
    answered = answer_help(argv, help_parser, "analyze")
    if answered is not None:
        return answered
    parser = build_parser()
    try:
        args, positional = parse(parser, argv)
    except ValueError as exc:
        parser.error(str(exc))

    from ktae.analysis.compute import analyze, config_from_rollouts, load_tokenizer
    from ktae.special_tokens import special_token_ids
    from ktae.analysis.html import write_html
    from ktae.analysis.report import format_dump_check, format_group_tables, format_steps, write_pngs
    from ktae.analysis.sources import load_source

    progress = not args.quiet
    try:
        source = load_source(positional.rollouts, prefer=args.label, steps=args.steps)
        if not (args.tokenizer or source.tokenizer):
            raise ValueError(f"{positional.rollouts}: the rollouts do not say which tokenizer made them; give "
                             "--tokenizer NAME_OR_FOLDER")
        tokenizer = load_tokenizer(args.tokenizer or source.tokenizer)
        config = parse_config(args.config, special_token_ids(tokenizer), config_from_rollouts(source.rollouts))
    except (OSError, ValueError, TypeError) as err:
        print(f"ktae analyze: error: {err}", file=sys.stderr)
        return 2
    analysis = analyze(source.rollouts, tokenizer, config, num_tokens=args.num_tokens, progress=progress, notes=source.notes)
    for note in analysis.notes:
        print(f"note: {note}")
    if len(source.steps) > 1:
        print(format_steps(analysis))
    if analysis.dump_check is not None:
        print(format_dump_check(analysis.dump_check))
    print(format_group_tables(analysis, max_groups=args.print_groups or None))
    if args.html:
        files = write_html(
            analysis, args.html, page_size=args.page_size, page_tokens=args.page_tokens, vmax=args.vmax,
            progress=progress,
        )
        extra = f" (+ {len(files) - 1} pages in {os.path.dirname(files[1])})" if len(files) > 1 else ""
        print(f"HTML report: {files[0]}{extra}")
    if args.png:
        files = write_pngs(analysis, args.png, limit=args.png_limit or None, vmax=args.vmax, progress=progress)
        print(f"{len(files)} figure(s) in {args.png}")
    return 0
