"""The ``ktae`` command: one sub-command per job, each living in its own package.

Sub-commands are imported lazily so that ``ktae eval`` does not pay for the
trainer's imports and the optional extras are only touched by their own jobs.
"""
from __future__ import annotations

import importlib
import os
import sys

#: sub-command -> (module with a ``main(argv)`` function, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ktae.train.cli", "train a policy with GRPO/DAPO, with or without KTAE (default: embedded CPU task)"),
    "compare": ("ktae.experiments.compare", "run GRPO vs GRPO+KTAE over several seeds and write a figure and a table"),
    "plot": ("ktae.experiments.plot", "plot accuracy, response length and entropy of one or more run folders"),
    "eval": ("ktae.eval.cli", "evaluate a model on the five math benchmarks, or re-grade saved generations"),
    "analyze": ("ktae.analysis.cli", "show which tokens KTAE rewards or punishes in a file of rollouts"),
    "targeting": ("ktae.targeting.cli", "score token-credit rules against labelled mistakes on frozen rollouts"),
    "verl": ("ktae.integrations.verl_launch", "verl's main_ppo with the KTAE plug-in and options checked first"),
    "doctor": ("ktae.integrations.doctor", "check that KTAE loads in verl (and its Ray workers) and TRL"),
}

#: sub-command -> ``"module:function"`` returning its argparse parser (the CLI reference and the docs' tests read
#: it); ``ktae verl`` has none: it passes verl's Hydra arguments to ``verl.trainer.main_ppo``
PARSERS: dict[str, str] = {
    "train": "ktae.train.config:parser",
    "compare": "ktae.experiments.compare:parser",
    "plot": "ktae.experiments.plot:build_parser",
    "eval": "ktae.eval.cli:build_parser",
    "analyze": "ktae.analysis.cli:build_parser",
    "targeting": "ktae.targeting.cli:build_parser",
    "doctor": "ktae.integrations.doctor:build_parser",
}


def command_parser(name: str):
    """The argparse parser of ``ktae NAME`` (imports its module); ``KeyError`` for a command without one."""
    module, _, function = PARSERS[name].partition(":")
    return getattr(importlib.import_module(module), function)()


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: ktae <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'ktae <command> --help' for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ktae: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        result = module.main(rest)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
