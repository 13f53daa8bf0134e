"""``ktae analyze``: which tokens does KTAE reward or punish in a file of rollouts?"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from ktae.core.config import KTAEConfig

_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(KTAEConfig)}


def _config_help() -> str:
    return "; ".join(f"{name}: {f.metadata.get('help', '')} (default {f.default!r})" for name, f in _CONFIG_FIELDS.items())


def _convert(name: str, raw: Any) -> Any:
    default = _CONFIG_FIELDS[name].default
    if name == "ignore_token_ids":
        if isinstance(raw, str):
            return tuple(int(x) for x in raw.replace(",", " ").split())
        return tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)
    if isinstance(default, float) and isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"--config {name} must be a number, got {raw!r}") from None
    return raw


def parse_config(items: list[str], tokenizer_ignore: tuple[int, ...], base: dict | None = None) -> KTAEConfig:
    """KTAEConfig from ``KEY=VALUE`` items and/or YAML files (KTAEConfig fields at the top or under ``ktae:``).

    ``ignore_token_ids`` defaults to the tokenizer's pad and EOS ids; ``base`` (the options a trainer's dump
    recorded) replaces those defaults and the items override it.
    """
    values: dict[str, Any] = dict(base) if base is not None else {"ignore_token_ids": tokenizer_ignore}
    for item in items:
        if "=" in item and not os.path.isfile(item):
            key, _, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if key not in _CONFIG_FIELDS:
                raise ValueError(f"--config: unknown option {key!r}; known: {', '.join(_CONFIG_FIELDS)}")
            values[key] = _convert(key, raw.strip())
            continue
        if not os.path.isfile(item):
            raise ValueError(f"--config: {item!r} is neither KEY=VALUE nor an existing YAML file")
        import yaml

        with open(item, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        if isinstance(data, dict) and isinstance(data.get("ktae"), dict):
            data = data["ktae"]
        if not isinstance(data, dict):
            raise ValueError(f"--config {item}: expected a mapping of KTAE options")
        unknown = sorted(set(data) - set(_CONFIG_FIELDS))
        if unknown:
            raise ValueError(f"--config {item}: unknown option(s) {unknown}; known: {', '.join(_CONFIG_FIELDS)}")
        values.update({key: _convert(key, value) for key, value in data.items()})
    return KTAEConfig(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktae analyze",
        description=(
            "Group rollouts by prompt, compute KTAE key-token values with the core, print the top positive and "
            "negative tokens of each prompt, and optionally write an HTML heat-map report and PNG figures."
        ),
    )
    parser.add_argument("rollouts", help="a rollouts file or a folder of step files: ktae's own jsonl (group/prompt, "
                        "response or token_ids, reward or correct, optional reference; the verl/TRL dump options), "
                        "or verl's trainer.rollout_data_dir / validation_data_dir files, recognised without flags")
    parser.add_argument("--steps", default=None, metavar="LIST",
                        help="only these training steps of a folder or file, e.g. '10,20,100-120' (default: all)")
    parser.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer name or folder with tokenizer files")
    parser.add_argument("--html", metavar="PATH", help="write the HTML report here")
    parser.add_argument("--png", metavar="DIR", help="write one PNG figure per rollout into this folder")
    parser.add_argument("--top", type=int, default=20, help="key tokens listed per prompt and sign (default 20)")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE|YAML",
                        help="KTAE option (repeatable) or a YAML file of options. " + _config_help())
    parser.add_argument("--label", choices=("reward", "correct"), default="reward",
                        help="what splits correct from wrong: the reward (> threshold, as in training) or the "
                        "'correct' field as 1/0 (default reward; falls back to the other when missing)")
    parser.add_argument("--page-size", type=int, default=10, help="prompts per HTML page (default 10)")
    parser.add_argument("--page-tokens", type=int, default=200_000,
                        help="most tokens per HTML page; larger reports are split into pages (default 200000)")
    parser.add_argument("--png-limit", type=int, default=50, help="at most this many PNG figures, 0 for all (default 50)")
    parser.add_argument("--vmax", type=float, default=None,
                        help="|K| shown in full colour (default: the bound of K, config 'top')")
    parser.add_argument("--print-groups", type=int, default=20,
                        help="prompts whose tables are printed, 0 for all (default 20)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("top", "page_size", "page_tokens", "png_limit", "print_groups"):
        low = 1 if name.startswith("page") else 0
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}")
    if args.vmax is not None and not args.vmax > 0:
        parser.error("--vmax must be > 0")

    from ktae.analysis.compute import analyze, config_from_rollouts, load_tokenizer
    from ktae.special_tokens import special_token_ids
    from ktae.analysis.html import write_html
    from ktae.analysis.report import format_dump_check, format_group_tables, format_steps, write_pngs
    from ktae.analysis.sources import load_source

    progress = not args.quiet
    try:
        source = load_source(args.rollouts, prefer=args.label, steps=args.steps)
        tokenizer = load_tokenizer(args.tokenizer)
        config = parse_config(args.config, special_token_ids(tokenizer), config_from_rollouts(source.rollouts))
    except (OSError, ValueError, TypeError) as err:
        print(f"ktae analyze: error: {err}", file=sys.stderr)
        return 2
    analysis = analyze(source.rollouts, tokenizer, config, top=args.top, progress=progress, notes=source.notes)
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
