"""``ktae train``: parse the options, run :func:`ktae.train.train`, report where the run went."""
from __future__ import annotations

import sys

from ktae.options import answer_help
from ktae.train.config import help_parser, make_config, parse_command


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    answered = answer_help(argv, help_parser, "train")
    if answered is not None:
        return answered
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
