"""Progress bars off a terminal: a few time-spaced lines instead of hundreds of refreshes."""
from __future__ import annotations

import io
import time

import pytest

from ktae.progress import log_interval, progress_bar, stderr_is_terminal


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_log_gets_few_whole_lines(monkeypatch):
    monkeypatch.setenv("KTAE_PROGRESS_INTERVAL", "3600")
    stream = io.StringIO()
    bar = progress_bar(range(800), desc="warm start (supervised)", file=stream, leave=False, dynamic_ncols=True)
    for step in bar:
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")  # what the warm start does every step
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 3, lines  # the start and the end of the phase, not 800 refreshes
    assert "\r" not in stream.getvalue() and "\x1b[" not in stream.getvalue()
    assert lines[-1].startswith("warm start (supervised): 100%") and "800/800" in lines[-1] and "loss=" in lines[-1]


def test_log_interval_spaces_the_lines(monkeypatch):
    monkeypatch.setenv("KTAE_PROGRESS_INTERVAL", "0.05")
    stream = io.StringIO()
    bar = progress_bar(total=4, desc="grading", file=stream)
    for _ in range(4):
        time.sleep(0.15)
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4 and lines[-1].startswith("grading: 100%")  # one line per interval that passed


def test_terminal_keeps_the_live_bar():
    stream = FakeTerminal()
    assert stderr_is_terminal(stream)
    for _ in progress_bar(range(50), desc="x", file=stream, mininterval=0):
        pass
    assert "\r" in stream.getvalue()


def test_interval_setting(monkeypatch):
    monkeypatch.delenv("KTAE_PROGRESS_INTERVAL", raising=False)
    assert log_interval() == 30.0
    monkeypatch.setenv("KTAE_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match="KTAE_PROGRESS_INTERVAL must be a number"):
        log_interval()
    assert not stderr_is_terminal(io.StringIO())
