"""Progress bars that stay quiet in logs.

On a terminal `progress_bar` is an ordinary tqdm bar. When stderr is not a terminal (CI, ``nohup``, a redirected
log file) tqdm would write every refresh into the log, hundreds of carriage-return updates per phase; here the
bar instead writes one plain line at most every ``KTAE_PROGRESS_INTERVAL`` seconds (default 30) and one final line
when the phase ends.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Iterable, TextIO

from tqdm import tqdm as plain_tqdm
from tqdm.auto import tqdm

__all__ = ["progress_bar", "stderr_is_terminal", "log_interval"]

#: Seconds between two progress lines written to a log (not a terminal), unless KTAE_PROGRESS_INTERVAL says otherwise.
DEFAULT_LOG_INTERVAL = 30.0
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def stderr_is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced by an object without isatty
        return False


def log_interval() -> float:
    """Seconds between progress lines in a log: ``KTAE_PROGRESS_INTERVAL`` or 30."""
    raw = os.environ.get("KTAE_PROGRESS_INTERVAL")
    if raw is None or not raw.strip():
        return DEFAULT_LOG_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"KTAE_PROGRESS_INTERVAL must be a number of seconds, got {raw!r}") from None
    if not value >= 0:
        raise ValueError(f"KTAE_PROGRESS_INTERVAL must be >= 0 seconds, got {raw!r}")
    return value


class _LogLines:
    """A file for tqdm that turns its carriage-return refreshes into whole lines and drops blank ones."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        for part in _ESCAPES.sub("", text).replace("\r", "\n").split("\n"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(plain_tqdm):
    """A tqdm bar whose postfix and description changes wait for the next timed refresh instead of forcing one
    (a ``set_postfix`` per step would otherwise write a line per step)."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def progress_bar(iterable: Iterable | None = None, *, file: TextIO | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar (same arguments) that writes few, time-spaced lines when its stream is not a terminal.

    Args:
        iterable: what to iterate over, as for tqdm (or None with ``total=``).
        file: where to write (default ``sys.stderr``).
        kwargs: tqdm's options (``desc``, ``total``, ``unit``, ``disable``, ``leave``...). Off a terminal
            ``mininterval`` becomes the log interval, ``dynamic_ncols`` is dropped, ``set_postfix`` /
            ``set_description`` wait for the next timed line, and the bar always leaves its final line (one line
            per phase).

    Returns:
        The tqdm object (use it as usual: ``update``, ``set_postfix``, ``close``, iteration).
    """
    stream = sys.stderr if file is None else file
    if stderr_is_terminal(stream):
        return tqdm(iterable, file=stream, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    interval = log_interval()
    kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.1)), interval)
    kwargs["maxinterval"] = max(float(kwargs.get("maxinterval", 10.0)), interval)
    kwargs["leave"] = True
    kwargs.setdefault("ncols", 100)
    return _LogBar(iterable, file=_LogLines(stream), **kwargs)
