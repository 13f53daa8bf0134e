"""Files a user keeps: written whole or not at all, and updated by one process at a time.

- :func:`atomic_write`: open a temporary file beside ``path``, move it into place only when the block ends
  without an error (a crash or Ctrl-C leaves the old file whole and no temporary file behind).
- :func:`exclusive`: hold a lock beside ``path`` (``path.lock``) for a read-modify-write that processes share,
  e.g. two ``ktae compare`` runs adding their curves to one CSV.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from filelock import FileLock

__all__ = ["atomic_write", "exclusive"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, *, newline: str | None = None) -> Iterator[IO[str]]:
    """A text handle (UTF-8) whose contents replace ``path`` when the block ends without an error.

    The temporary file lies in ``path``'s folder (created if missing), so the final move is atomic; it gets the
    permissions a new file would get (``0o666`` less the umask). ``newline`` as for :func:`open` (``""`` for
    :mod:`csv`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold the lock file ``<path>.lock`` (waiting for another process that holds it) for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield
