"""``ktae train``: parse the options, run :func:`ktae.train.train`, report where the run went."""
from __future__ import annotations

import sys

from ktae.train.config import make_config, parse_command, parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        parser().print_help()
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
