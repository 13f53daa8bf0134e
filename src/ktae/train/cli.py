"""``ktae train``: parse the options, run :func:`ktae.train.train`, report where the run went."""
from __future__ import annotations

import sys

from ktae.train.config import help_text, parse_args, split_argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(help_text())
        return 0
    from ktae.train.loop import train

    try:
        values = split_argv(argv)
        if "resume" in values:
            run_dir = values.pop("resume")
            train(resume=run_dir, **values)
        else:
            train(parse_args(argv))
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, ImportError) as exc:
        print(f"ktae train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
