"""ktae.options: dataclass options over transformers.HfArgumentParser (switches, repeatable options, errors)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from ktae.options import make_parser, option, parse


@dataclass
class Demo:
    """Options of a demo command."""

    name: str = option(dataclasses.MISSING, "required name")
    max_steps: int = option(3, "steps", aliases=("-s",))
    verbose: bool = option(False, "a switch", action="store_true")
    include: list[str] = option([], "repeatable", action="append")
    dry_run: bool = option(False, "a value-taking boolean")


def _parser():
    parser = make_parser([Demo], prog="demo")
    parser.add_argument("files", nargs="*")
    return parser


def test_switch_and_repeatable_option_leave_the_positionals_alone():
    demo, rest = parse(_parser(), ["--verbose", "a", "b", "--include", "x", "--include=y", "--name", "n"])
    assert demo == Demo(name="n", verbose=True, include=["x", "y"]) and rest.files == ["a", "b"]
    demo, rest = parse(_parser(), ["--name", "n", "--max-steps", "4", "--dry-run"])
    assert (demo.max_steps, demo.dry_run, demo.verbose, demo.include, rest.files) == (4, True, False, [], [])
    demo, _ = parse(_parser(), ["--name", "n", "-s", "5", "--max_steps", "6", "--dry_run", "false"])
    assert (demo.max_steps, demo.dry_run) == (6, False)
    assert Demo(name="n").include is not Demo(name="n").include


def test_errors_name_the_option():
    with pytest.raises(ValueError, match=r"argument --max_steps/--max-steps/-s: invalid int value: 'x'"):
        parse(_parser(), ["--name", "n", "--max-steps", "x"])
    with pytest.raises(ValueError, match="unrecognized arguments: --other=1 --more"):
        parse(_parser(), ["--name", "n", "--other=1", "--more"])
    demo, rest, remaining = parse(_parser(), ["--name", "n", "--other=1"], remaining=True)
    assert demo == Demo(name="n") and remaining == ["--other=1"]
    with pytest.raises(ValueError, match="action"):
        option(False, "help", action="count")


def test_help_shows_defaults_except_for_required_and_empty_options(capsys):
    with pytest.raises(SystemExit):
        parse(_parser(), ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--name NAME required name --max_steps" in text
    assert "--max_steps, --max-steps, -s MAX_STEPS steps (default: 3)" in text
    assert "--verbose a switch (default: False)" in text
    assert "repeatable --" in text or text.endswith("repeatable"), "an empty default is not shown"
