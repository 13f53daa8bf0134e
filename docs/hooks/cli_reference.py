"""MkDocs hook: writes ``reference/cli.md`` at build time from the commands' own argparse parsers.

The parsers are the ones the commands run (``ktae.cli.PARSERS``: built from each command's option dataclasses by
``ktae.options.make_parser``), so the page lists every option with its spellings, default and help as
``ktae <command> --help`` does; nothing here is a copy of an option.
"""
from __future__ import annotations

import argparse
import html
import inspect

from mkdocs.structure.files import File

PAGE = "reference/cli.md"


def _cell(text: object) -> str:
    """Plain text for a Markdown table cell (no HTML, emphasis or links by accident)."""
    text = html.escape(str(text), quote=False)
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def _default(action: argparse.Action) -> str:
    default = action.default
    if action.required or default in (None, "", [], argparse.SUPPRESS):
        return ""
    return f"`{default}`"


def _value(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """What the option takes, as ``--help`` names it (booleans: an optional true/false)."""
    if action.nargs == 0:
        return ""
    if getattr(action.type, "__name__", "") == "string_to_bool":
        return "`[true/false]`"
    formatter = parser._get_formatter()
    if not action.option_strings:
        return f"`{formatter._format_args(action, action.dest)}`"
    return f"`{formatter._format_args(action, formatter._get_default_metavar_for_optional(action))}`"


def _group_table(parser: argparse.ArgumentParser, group) -> list[str]:
    actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
    if not actions:
        return []
    title = group.title or "options"
    lines = [f"### {title[:1].upper()}{title[1:]}", "",
             "| option | value | default | meaning |", "| --- | --- | --- | --- |"]
    for action in actions:
        names = "<br>".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}` (positional)"
        meaning = (action.help or "").replace("%%", "%")
        lines.append(f"| {names} | {_value(parser, action)} | {_default(action)} | {_cell(meaning)} |")
    return lines + [""]


def command_section(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    """The Markdown of one command: summary, usage, description, one table per option group, epilog."""
    lines = [f"## ktae {name}", "", summary[:1].upper() + summary[1:] + ".", "", "```text",
             parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += [" ".join(parser.description.split()), ""]
    for group in parser._action_groups:
        lines += _group_table(parser, group)
    if parser.epilog:
        lines += ["```text", parser.epilog.strip(), "```", ""]
    return lines


def cli_reference() -> str:
    """The whole page: ``ktae`` and each sub-command in ``ktae.cli.COMMANDS`` order."""
    from ktae import cli
    from ktae.integrations import verl_launch

    lines = ["# Command line", "",
             "Generated when the site is built, from the parsers the commands run (each built from the command's "
             "option dataclasses), so every option is here with its spellings, default and help. "
             "`ktae <command> --help` prints the same; `ktae train --help` prints the common options and the list "
             "of sections, `ktae train --help SECTION` one section and `ktae train --help all` everything.", "",
             "| command | what it does |", "| --- | --- |"]
    lines += [f"| [`ktae {name}`](#ktae-{name}) | {_cell(help_)} |" for name, (_, help_) in cli.COMMANDS.items()]
    lines.append("")
    for name, (_, summary) in cli.COMMANDS.items():
        if name in cli.PARSERS:
            lines += command_section(name, cli.command_parser(name), summary)
        else:  # ktae verl: verl's own Hydra arguments, documented by the launcher
            lines += [f"## ktae {name}", "", summary[:1].upper() + summary[1:] + ".", "", "```text",
                      inspect.cleandoc(verl_launch.__doc__), "```", ""]
    return "\n".join(lines)


def on_files(files, config):
    """Add the generated page to the site's files (MkDocs ``on_files`` event)."""
    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files
