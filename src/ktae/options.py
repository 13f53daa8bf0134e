"""Command-line options from dataclasses: one way for every ``ktae`` command.

Each command declares its options as a dataclass whose fields carry a one-line help
(:func:`option`); :func:`make_parser` turns the dataclasses into a
``transformers.HfArgumentParser`` (types, ``--flag`` / ``--flag false`` booleans,
``--a_b`` and ``--a-b`` spellings, defaults in ``--help``), and :func:`parse` reads a
command line into the dataclasses, raising ``ValueError`` with argparse's message
(which names the option) instead of exiting.

>>> from dataclasses import dataclass
>>> @dataclass
... class Options:
...     steps: int = option(10, "RL steps")
>>> parse(make_parser([Options], prog="demo"), ["--steps", "3"])
(Options(steps=3),)
"""
from __future__ import annotations

import argparse
from dataclasses import field
from typing import Any, Sequence

__all__ = ["option", "make_parser", "parse", "HelpFormatter"]


def option(default: Any, help: str, *, aliases: Sequence[str] = (), metavar: str | None = None) -> Any:
    """A dataclass field with its help text (extra option strings, e.g. ``("--ktae.alpha",)``, and the
    value's name in ``--help``; not for booleans, whose ``--no_x`` complement takes no value).

    A list default is copied per instance; only ``help`` and ``aliases`` go into the
    metadata because ``HfArgumentParser`` passes the metadata on to ``add_argument``.
    """
    metadata: dict[str, Any] = {"help": help}
    if aliases:
        metadata["aliases"] = list(aliases)
    if metavar:
        metadata["metavar"] = metavar
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help; the description and epilog printed as written."""


def make_parser(dataclass_types: Sequence[type], prog: str, description: str = "", epilog: str | None = None,
                add_help: bool = True, usage: str | None = None):
    """An ``HfArgumentParser`` for ``dataclass_types`` that never abbreviates options and never exits on errors."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(list(dataclass_types), prog=prog, description=description, epilog=epilog,
                              usage=usage, formatter_class=HelpFormatter, allow_abbrev=False, exit_on_error=False,
                              add_help=add_help)
    for action in parser._actions:  # help texts are plain text ("top 20%"), not argparse format strings
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = action.help.replace("%", "%%")
    return parser


def parse(parser, argv: Sequence[str], *, remaining: bool = False) -> tuple:
    """``parser``'s dataclasses filled from ``argv`` (then the unparsed strings if ``remaining``).

    Unknown options are an error unless ``remaining``; every argparse error becomes a
    ``ValueError`` whose message names the option.
    """
    try:
        return parser.parse_args_into_dataclasses(list(argv), return_remaining_strings=remaining,
                                                  look_for_args_file=False)
    except argparse.ArgumentError as exc:
        raise ValueError(str(exc)) from None
