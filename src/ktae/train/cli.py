"""``ktae train``: parse the options, run :func:`ktae.train.train`, report where the run went."""
from __future__ import annotations

import sys

from ktae.train.config import help_parser, make_config, parse_command


def help_topic(argv: list[str]) -> str | None | bool:
    """What ``argv`` asks help for: ``False`` (no help), ``None`` (``--help``), or the topic of
    ``--help TOPIC`` / ``--help=TOPIC`` / ``-h TOPIC``."""
    for i, arg in enumerate(argv):
        if arg.startswith("--help="):
            return arg.partition("=")[2]
        if arg in ("-h", "--help"):
            following = argv[i + 1] if i + 1 < len(argv) else ""
            return following if following and not following.startswith("-") else None
    return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    topic = help_topic(argv)
    if topic is not False:
        try:
            help_parser(topic).print_help()
        except ValueError as exc:
            print(f"ktae train: error: {exc}", file=sys.stderr)
            return 2
        return 0
    from ktae.train.loop import train

    try:
        launch, options = parse_command(argv)
        if launch.resume:
            train(resume=launch.resume, **options)
        else:
            train(make_config(launch.preset or None, launch.config or None, **options))
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, ImportError) as exc:
        print(f"ktae train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
