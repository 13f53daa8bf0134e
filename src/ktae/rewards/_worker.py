"""One grading worker process (see :mod:`ktae.rewards.grader`).

Started as a script, ``python _worker.py FD MEMORY_MB FLOAT_ROUNDING NUMERIC_PRECISION``,
talking to its parent through the socket ``FD`` with ``multiprocessing``
connections. Running as a script (rather than through ``multiprocessing``)
means the caller's ``__main__`` is never re-imported, no ``if __name__ ==
"__main__"`` guard is needed in user scripts, and the worker does not pay for
importing the rest of ``ktae`` (torch): only ``math-verify`` is loaded.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent process is gone (checked every second, in a thread)."""

    def run() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=run, daemon=True, name="ktae-grader-watchdog").start()


def _limit_memory(extra_mb: int | None) -> None:
    """Cap the address space at what is mapped now plus ``extra_mb`` MiB.

    A pathological answer (``9^{9^{9^9}}`` evaluated exactly) then fails with a
    ``MemoryError`` inside the worker instead of exhausting the machine's memory
    before the deadline kills it.
    """
    if not extra_mb:
        return
    try:
        import resource

        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        current = pages * os.sysconf("SC_PAGE_SIZE")
        limit = current + int(extra_mb) * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except Exception:  # pragma: no cover - not Linux, or not permitted
        pass


def worker_main(conn, memory_limit_mb: int | None, float_rounding: int, numeric_precision: int) -> None:
    """Serve ``(task_id, answer, references)`` requests on ``conn`` until ``None`` or EOF.

    Replies ``("ready", pid)`` once ``math-verify`` is imported, then one
    ``(task_id, verdict)`` per request. Any exception counts as a wrong answer.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    _watch_parent(os.getppid())
    from ktae.rewards.verify import verify_answer

    # The first parse builds math-verify's LaTeX parser and regexes (hundreds of ms); do it before
    # reporting ready so that no answer's deadline pays for it.
    try:
        verify_answer(r"\frac{1}{2}", ("0.5",), float_rounding=float_rounding, numeric_precision=numeric_precision)
        verify_answer(r"(1, 2] \cup \{3\}", (r"x = 2\sqrt{2}",), float_rounding=float_rounding,
                      numeric_precision=numeric_precision)
    except Exception:  # pragma: no cover - a broken install shows up on the first real answer
        pass
    _limit_memory(memory_limit_mb)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, answer, references = message
        try:
            verdict = bool(
                verify_answer(
                    answer,
                    references,
                    float_rounding=float_rounding,
                    numeric_precision=numeric_precision,
                )
            )
        except BaseException:  # noqa: BLE001 - MemoryError, RecursionError, sympy internals...
            verdict = False
        try:
            conn.send((task_id, verdict))
        except (EOFError, OSError):
            return


def _bootstrap() -> None:
    """Script entry point: make ``ktae.rewards`` importable without running ``ktae/__init__``."""
    import types
    from multiprocessing.connection import Connection

    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        del sys.path[0]  # the package folder itself must not shadow top-level modules
    for name, path in (("ktae", os.path.dirname(here)), ("ktae.rewards", here)):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [path]
            sys.modules[name] = package
    fd, memory_mb, float_rounding, numeric_precision = sys.argv[1:5]
    conn = Connection(int(fd))
    worker_main(conn, int(memory_mb) or None, int(float_rounding), int(numeric_precision))


if __name__ == "__main__":
    _bootstrap()
