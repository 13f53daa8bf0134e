"""Command-line options from dataclasses: one way for every ``ktae`` command.

Each command declares its options as a dataclass whose fields carry a one-line help
(:func:`option`); :func:`make_parser` turns the dataclasses into a
``transformers.HfArgumentParser`` (types, ``--flag`` / ``--flag false`` booleans,
``--a_b`` and ``--a-b`` spellings, defaults in ``--help``; switches and repeatable options
where a positional argument may follow), and :func:`parse` reads a command line into the
dataclasses, raising ``ValueError`` with argparse's message (which names the option)
instead of exiting.

>>> from dataclasses import dataclass
>>> @dataclass
... class Options:
...     steps: int = option(10, "RL steps")
>>> parse(make_parser([Options], prog="demo"), ["--steps", "3"])
(Options(steps=3),)
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import typing
from dataclasses import MISSING, field
from typing import Any, Callable, Mapping, Sequence

__all__ = ["option", "make_parser", "add_field", "parse", "HelpFormatter", "help_topic", "answer_help", "option_view",
           "topic_help_parser"]


def option(default: Any, help: str, *, aliases: Sequence[str] = (), metavar: str | None = None,
           action: str | None = None) -> Any:
    """A dataclass field with its help text, extra option strings (e.g. ``("--ktae.alpha",)``) and the
    value's name in ``--help`` (``metavar``; not for booleans, whose ``--no_x`` complement takes no value).

    ``default`` may be ``dataclasses.MISSING``: a required option (put such fields first). A list default is
    copied per instance. ``action`` replaces the argparse action that ``HfArgumentParser`` derives from the
    type, where that one would swallow a positional argument that follows:

    * ``"store_true"``: a ``bool`` switch that takes no value (``--quiet FILE`` leaves FILE to the positional);
    * ``"append"``: a ``list`` option given once per value (``--config a --config b``, not ``--config a b``).
    """
    metadata: dict[str, Any] = {"help": help}
    if aliases:
        metadata["aliases"] = list(aliases)
    if metavar:
        metadata["metavar"] = metavar
    if action is not None:
        if action not in ("store_true", "append"):
            raise ValueError(f"action: expected 'store_true' or 'append', got {action!r}")
        metadata["action"] = action
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _add_action_field(parser, dataclass_field) -> None:
    """Add a field declared with ``option(..., action=...)``: spelled like the others, with that argparse action."""
    name = dataclass_field.name
    strings = dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}", *dataclass_field.metadata.get("aliases", ())])
    action = dataclass_field.metadata["action"]
    kwargs: dict[str, Any] = {"type": typing.get_args(dataclass_field.type)[0]} if action == "append" else {}
    default = (dataclass_field.default_factory() if dataclass_field.default_factory is not MISSING
               else dataclass_field.default)
    parser.add_argument(*strings, action=action, default=default, help=dataclass_field.metadata["help"], **kwargs)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help (not after a required one's, nor an empty one); the description and epilog printed as
    written; an option's spellings on one line with its value named once (``--a_b, --a-b INT``)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in ("", []):  # nothing to show: the help says what empty means
            return action.help
        return super()._get_help_string(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = ", ".join(action.option_strings)
        if action.nargs == 0:
            return names
        return f"{names} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


@functools.cache
def _parser_class() -> type:
    """``HfArgumentParser``, except that a field declared with ``option(..., action=...)`` gets that action
    (transformers is imported here, when a parser is first made)."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, dataclass_field) -> None:
            if "action" in dataclass_field.metadata:
                _add_action_field(parser, dataclass_field)
            else:
                HfArgumentParser._parse_dataclass_field(parser, dataclass_field)

    return Parser


def make_parser(dataclass_types: Sequence[type], prog: str, description: str = "", epilog: str | None = None,
                add_help: bool = True, usage: str | None = None):
    """An ``HfArgumentParser`` for ``dataclass_types`` that never abbreviates options and never exits on errors
    (except argparse's own: ``--help``, and a missing required argument)."""
    parser = _parser_class()(list(dataclass_types), prog=prog, description=description, epilog=epilog, usage=usage,
                             formatter_class=HelpFormatter, allow_abbrev=False, exit_on_error=False,
                             add_help=add_help)
    for action in parser._actions:  # help texts are plain text ("top 20%"), not argparse format strings
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = action.help.replace("%", "%%")
    return parser


def add_field(parser, dataclass_field, name: str, kind: Any, aliases: Sequence[str] = (),
              metavar: str | None = None) -> None:
    """Add ``dataclass_field`` to ``parser`` (or one of its argument groups) as :func:`make_parser` adds the
    fields of its dataclasses, but as the option ``--name`` whose value is stored under ``name`` (``ppo.lr``:
    a field of a nested dataclass), of type ``kind``, with the other names ``aliases`` (each spelled ``--a_b``
    and ``--a-b``; a ``True`` boolean's ``--no_<alias>`` works too, not shown in ``--help``)."""
    spellings = [f"--{s}" for alias in aliases for s in dict.fromkeys([alias, alias.replace("_", "-")])]
    metadata = {**dataclass_field.metadata, "help": dataclass_field.metadata.get("help", "").replace("%", "%%"),
                "aliases": [*dataclass_field.metadata.get("aliases", ()), *spellings]}
    if metavar and not (kind is bool and dataclass_field.default is True):  # the --no_ complement takes no metavar
        metadata["metavar"] = metavar
    renamed = field(default=dataclass_field.default, default_factory=dataclass_field.default_factory,
                    metadata=metadata)
    renamed.name, renamed.type = name, kind
    _parser_class()._parse_dataclass_field(parser, renamed)
    if kind is bool and dataclass_field.default is True:
        for alias in aliases:
            parser.add_argument(*dict.fromkeys([f"--no_{alias}", f"--no-{alias.replace('_', '-')}"]),
                                action="store_false", dest=name, help=argparse.SUPPRESS)


def parse(parser, argv: Sequence[str], *, remaining: bool = False) -> tuple:
    """``parser``'s dataclasses filled from ``argv`` (then the unparsed strings if ``remaining``).

    Positional arguments added to the parser come in a ``Namespace`` after the dataclasses. Unknown
    options are an error unless ``remaining``; every argparse error becomes a ``ValueError`` whose message
    names the option.
    """
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(list(argv), return_remaining_strings=True,
                                                           look_for_args_file=False)
    except argparse.ArgumentError as exc:
        raise ValueError(str(exc)) from None
    if remaining:
        return (*parsed, rest)
    if rest:
        raise ValueError(f"unrecognized arguments: {' '.join(rest)}")
    return tuple(parsed)


def help_topic(argv: Sequence[str]) -> str | None | bool:
    """What ``argv`` asks help for: ``False`` (no help), ``None`` (``--help``), or the topic of
    ``--help TOPIC`` / ``--help=TOPIC`` / ``-h TOPIC``."""
    for i, arg in enumerate(argv):
        if arg.startswith("--help="):
            return arg.partition("=")[2]
        if arg in ("-h", "--help"):
            following = argv[i + 1] if i + 1 < len(argv) else ""
            return following if following and not following.startswith("-") else None
    return False


def answer_help(argv: Sequence[str], help_parser: Callable[[str | None], Any], command: str) -> int | None:
    """Print the help ``argv`` asks for (``--help [SECTION]``) with ``help_parser(topic)``; the exit code (0, or 2
    with a message naming ``command`` for an unknown section), or ``None`` when ``argv`` asks no help."""
    topic = help_topic(argv)
    if topic is False:
        return None
    try:
        help_parser(topic).print_help()
    except ValueError as exc:
        print(f"ktae {command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _copy_field(spec: dataclasses.Field) -> Any:
    """A new field with the default (or default factory, or none) and the metadata of ``spec``."""
    if spec.default_factory is not MISSING:
        return field(default_factory=spec.default_factory, metadata=spec.metadata)
    if spec.default is not MISSING:
        return field(default=spec.default, metadata=spec.metadata)
    return field(metadata=spec.metadata)


def option_view(dataclass_types: Sequence[type], names: Sequence[str], title: str) -> type:
    """A dataclass of the fields ``names`` (in that order) of ``dataclass_types``, shown in ``--help`` as one group
    titled ``title``: the same spellings, types, defaults and help as the originals.

    Raises:
        ValueError: a name that is no field of ``dataclass_types``.
    """
    found: dict[str, tuple[Any, dataclasses.Field]] = {}
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            found.setdefault(spec.name, (hints[spec.name], spec))
    unknown = [name for name in names if name not in found]
    if unknown:
        raise ValueError(f"names: {unknown} are no options of {[cls.__name__ for cls in dataclass_types]}")
    specs = [(name, found[name][0], _copy_field(found[name][1])) for name in names]
    view = dataclasses.make_dataclass("OptionView", specs, kw_only=True)
    view._argument_group_name = title
    return view


def topic_help_parser(dataclass_types: Sequence[type], topic: str | None, *, prog: str, common: Sequence[str],
                      sections: Mapping[str, tuple[str, Sequence[str]]], full: Callable[[], Any], usage: str,
                      description: str = ""):
    """The parser whose ``--help`` is ``PROG --help [TOPIC]``: a short help and the rest one topic away.

    Args:
        dataclass_types: the command's option dataclasses.
        topic: None (the ``common`` options, then the list of ``sections``), a name of ``sections`` (its
            options), or ``all`` (``full()``: the command's own parser, every option).
        common: the options shown by a plain ``--help``.
        sections: topic name -> (title, option names); together they should hold every option.
        full: builds the command's complete parser.
        usage, description: the help's first lines.

    Raises:
        ValueError: ``topic`` is neither a section nor ``all`` (the message lists them).
    """
    if topic == "all":
        return full()
    if topic is None:
        topics = {**{name: title for name, (title, _) in sections.items()}, "all": "every option"}
        width = max(len(name) for name in topics)
        listing = "\n".join(f"  {name:<{width}}  {title}" for name, title in topics.items())
        epilog = f"more options, by section ({prog} --help SECTION):\n{listing}"
        return make_parser([option_view(dataclass_types, common, "Common options")], prog=prog, usage=usage,
                           description=description, epilog=epilog)
    if topic not in sections:
        raise ValueError(f"--help: expected a section or 'all' ({', '.join([*sections, 'all'])}), got {topic!r}")
    title, names = sections[topic]
    return make_parser([option_view(dataclass_types, names, title)], prog=prog, usage=usage, add_help=False)
