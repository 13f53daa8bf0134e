"""The short ``--help`` of ``ktae eval``, ``ktae compare`` and ``ktae analyze`` (as ``ktae train`` has): the common
options, the rest by section, everything with ``--help all``."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from ktae import cli
from ktae.options import help_topic, make_parser, option, option_view, parse, topic_help_parser

COMMANDS = {
    "eval": "ktae.eval.cli",
    "compare": "ktae.experiments.compare",
    "analyze": "ktae.analysis.cli",
}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """The options of ``parser`` by their first spelling (help and positionals left out)."""
    return {a.option_strings[0] for a in parser._actions if a.option_strings and a.option_strings[0] != "-h"}


def _help_parser(name: str):
    import importlib

    return importlib.import_module(COMMANDS[name]).help_parser


@pytest.mark.parametrize("name", COMMANDS)
def test_short_help_lists_the_common_options_and_the_sections(name, capsys):
    assert cli.main([name, "--help"]) == 0
    text = capsys.readouterr().out
    common = _options(_help_parser(name)())
    everything = _options(cli.command_parser(name))
    assert common < everything and len(common) <= 10
    assert all(spelling in text for spelling in common)
    assert f"more options, by section (ktae {name} --help SECTION)" in text
    assert text.count("\n") < 60


@pytest.mark.parametrize("name", COMMANDS)
def test_the_sections_together_list_every_option(name, capsys):
    everything = _options(cli.command_parser(name))
    topics = [line.split()[0] for line in _help_parser(name)().epilog.splitlines()[1:]]
    assert topics[-1] == "all"
    shown = set()
    for topic in topics[:-1]:
        assert cli.main([name, "--help", topic]) == 0
        text = capsys.readouterr().out
        section = _options(_help_parser(name)(topic))
        assert section and all(spelling in text for spelling in section)
        shown |= section
    assert shown == everything
    assert cli.main([name, "--help=all"]) == 0
    text = capsys.readouterr().out
    assert all(spelling in text for spelling in everything)


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_help_topic_is_named(name, capsys):
    assert cli.main([name, "--help", "nope"]) == 2
    err = capsys.readouterr().err
    assert f"ktae {name}: error: --help: expected a section or 'all'" in err and "got 'nope'" in err


def test_help_topic_reads_the_forms_of_help():
    assert help_topic(["--model", "m"]) is False
    assert help_topic(["--model", "m", "--help"]) is None
    assert help_topic(["-h", "--model"]) is None
    assert help_topic(["--help", "grading"]) == "grading"
    assert help_topic(["--help=grading"]) == "grading"


@dataclass
class _First:
    _argument_group_name = "first"
    needed: str = option("x", "a text")
    count: int = option(3, "a count")


@dataclass
class _Second:
    _argument_group_name = "second"
    names: list[str] = option(["a"], "some names")


def test_option_view_keeps_spellings_defaults_and_help():
    view = option_view([_First, _Second], ["names", "count"], "Common options")
    parser = make_parser([view], prog="demo")
    (values,) = parse(parser, ["--count", "5"])
    assert values.count == 5 and values.names == ["a"]
    assert "a count (default: 3)" in " ".join(parser.format_help().split())
    assert [g.title for g in parser._action_groups if g._group_actions][-1] == "Common options"
    with pytest.raises(ValueError, match=r"names: \['missing'\] are no options"):
        option_view([_First], ["missing"], "x")


def test_topic_help_parser_picks_the_topic():
    sections = {"one": ("First things", ["needed", "count"]), "two": ("Second things", ["names"])}

    def build(topic):
        return topic_help_parser([_First, _Second], topic, prog="demo", common=["count"], sections=sections,
                                 full=lambda: make_parser([_First, _Second], prog="demo"), usage="demo [--key value]")

    assert _options(build(None)) == {"--count"} and "  two  Second things" in build(None).epilog
    assert _options(build("two")) == {"--names"}
    assert _options(build("all")) == {"--needed", "--count", "--names"}
    with pytest.raises(ValueError, match=r"expected a section or 'all' \(one, two, all\), got 'three'"):
        build("three")
