"""Moved to :mod:`ktae.recipes.smollm2`; kept so that ``python -m ktae.train.smollm2 ...`` still works."""
import sys

from ktae.recipes.smollm2 import *  # noqa: F401,F403
from ktae.recipes.smollm2 import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
