"""Headless Chromium for the tests that look at a rendered page (the HTML report, the docs site)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def chromium() -> str:
    """The browser's path; skips the test when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")


def run_browser(browser: str, profile: str, *args: str) -> subprocess.CompletedProcess:
    """One headless run with a fresh profile folder (``--screenshot=...``, ``--dump-dom``, a URL)."""
    return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)
