"""Time-limited answer grading in a pool of persistent worker processes.

``math-verify`` bounds its own work with ``signal.alarm``, which only works in
the main thread and cannot interrupt a long computation inside C code (a huge
integer power, say). Here every comparison runs in a worker process that is
started once and reused; the caller waits at most ``timeout`` seconds for each
verdict, and a worker that overruns is killed (SIGKILL), replaced, and its
answer counted as wrong. Workers are plain ``python _worker.py`` subprocesses
(not ``multiprocessing``), so user scripts need no ``__main__`` guard and the
workers import only ``math-verify`` (about a second, once per worker).

Cheap cases never reach a worker: no box (wrong), an over-long box (wrong), a
spelling identical to a reference after trivial canonicalisation (right), a
word answer (compared as text).
"""
from __future__ import annotations

import atexit
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any, Sequence

from ktae.rewards.answers import (
    canonical_string,
    extract_boxed,
    reference_answers,
    text_answer,
    text_matches,
)

__all__ = ["GraderConfig", "MathGrader", "GradingStats", "get_grader", "shutdown_grader"]


@dataclass(frozen=True)
class GraderConfig:
    """Settings of a :class:`MathGrader`."""

    workers: int = field(
        default=1,
        metadata={"help": "worker processes grading in parallel; 0 grades in this process (signal timeouts, main thread only)"},
    )
    timeout: float = field(
        default=5.0, metadata={"help": "seconds one answer may take; an answer that runs out counts as wrong"}
    )
    memory_limit_mb: int | None = field(
        default=4096, metadata={"help": "extra address space (MiB) a worker may map beyond its start size; None: no cap"}
    )
    max_answer_chars: int = field(
        default=20_000, metadata={"help": "boxed answers longer than this are wrong without being parsed"}
    )
    float_rounding: int = field(default=6, metadata={"help": "decimal places math-verify rounds floats to"})
    numeric_precision: int = field(default=15, metadata={"help": "significant digits for math-verify's numeric comparison"})
    startup_timeout: float = field(
        default=120.0, metadata={"help": "seconds a new worker may take to import math-verify before it is given up"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {self.workers!r}")
        if not isinstance(self.timeout, (int, float)) or isinstance(self.timeout, bool) or not self.timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")
        if self.memory_limit_mb is not None and (not isinstance(self.memory_limit_mb, int) or self.memory_limit_mb <= 0):
            raise ValueError(f"memory_limit_mb must be a positive int or None, got {self.memory_limit_mb!r}")
        if not isinstance(self.max_answer_chars, int) or self.max_answer_chars <= 0:
            raise ValueError(f"max_answer_chars must be a positive int, got {self.max_answer_chars!r}")
        if not self.startup_timeout > 0:
            raise ValueError(f"startup_timeout must be > 0, got {self.startup_timeout!r}")


@dataclass
class GradingStats:
    """Counters of one grader (cumulative)."""

    graded: int = 0
    fast_path: int = 0
    timeouts: int = 0
    worker_crashes: int = 0
    workers_started: int = 0


_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")


class _Worker:
    """One worker process and the parent's end of its socket."""

    __slots__ = ("proc", "conn", "state", "task", "deadline")

    def __init__(self, config: GraderConfig):
        parent_sock, child_sock = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    _WORKER_SCRIPT,
                    str(child_sock.fileno()),
                    str(config.memory_limit_mb or 0),
                    str(config.float_rounding),
                    str(config.numeric_precision),
                ],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.state = "starting"
        self.task = -1
        self.deadline = time.monotonic() + config.startup_timeout

    def kill(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # pragma: no cover
            pass
        try:
            self.conn.close()
        except Exception:  # pragma: no cover
            pass
        self.state = "dead"

    def stop(self) -> None:
        if self.state != "dead":
            try:
                self.conn.send(None)
                self.proc.wait(timeout=1)
            except Exception:
                pass
        self.kill()


def _can_start_processes() -> bool:
    # Worker sockets are handed over with pass_fds, which needs a POSIX system.
    return os.name == "posix"


#: a plain integer after canonicalisation: compared without math-verify
_INTEGER = re.compile(r"-?\d{1,30}")


class MathGrader:
    """Grades responses against references with a hard per-answer deadline.

    ``MathGrader(workers=4, timeout=5.0)`` keeps four worker processes alive
    until :meth:`close` (or the end of a ``with`` block, or interpreter exit).
    Thread-safe: concurrent calls are served one batch at a time.
    """

    def __init__(self, config: GraderConfig | None = None, **overrides: Any):
        config = config or GraderConfig()
        if overrides:
            config = replace(config, **overrides)
        self.config = config
        self.stats = GradingStats()
        self._workers: list[_Worker] = []
        self._spare: _Worker | None = None
        self._want_spare = False
        self._lock = threading.RLock()
        self._closed = False
        self._inline = config.workers == 0 or not _can_start_processes()

    # ------------------------------------------------------------------ public API
    def grade(self, response: str, reference: Any, *, timeout: float | None = None) -> bool:
        """Whether the last boxed answer of ``response`` matches ``reference`` (see ``grade_math``)."""
        return self.grade_batch([response], [reference], timeout=timeout, progress=False)[0]

    def grade_batch(
        self,
        responses: Sequence[str],
        references: Sequence[Any],
        *,
        timeout: float | None = None,
        progress: bool | None = None,
        desc: str = "grading",
    ) -> list[bool]:
        """Grade ``responses[i]`` against ``references[i]`` for every ``i``, in parallel.

        ``progress=None`` shows a tqdm bar for 1000 or more responses.
        """
        if isinstance(responses, str) or not isinstance(responses, Sequence):
            raise TypeError(f"responses must be a sequence of str, got {type(responses).__name__}")
        if isinstance(references, str) or not hasattr(references, "__len__"):
            raise TypeError(f"references must be a sequence (one reference per response), got {type(references).__name__}")
        if len(responses) != len(references):
            raise ValueError(
                f"responses and references must have the same length, got {len(responses)} and {len(references)}"
            )
        timeout = self.config.timeout if timeout is None else float(timeout)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        n = len(responses)
        results: list[bool | None] = [None] * n
        tasks: list[tuple[int, str, tuple[str, ...]]] = []
        for i, (response, reference) in enumerate(zip(responses, references)):
            if not isinstance(response, str):
                raise TypeError(f"responses[{i}] must be a str, got {type(response).__name__}")
            refs = tuple(reference_answers(reference))
            verdict, answer = self._fast_verdict(response, refs)
            if verdict is None:
                tasks.append((i, answer, refs))
            else:
                results[i] = verdict
        show = (n >= 1000) if progress is None else bool(progress)
        bar = None
        if show:
            from ktae.progress import progress_bar

            bar = progress_bar(total=n, desc=desc, unit="ans", dynamic_ncols=True)
            bar.update(n - len(tasks))
        try:
            with self._lock:
                if self._closed:
                    raise RuntimeError("this MathGrader is closed")
                if tasks:
                    if self._inline:
                        self._grade_inline(tasks, results, timeout, bar)
                    else:
                        self._grade_in_workers(tasks, results, timeout, bar)
                self.stats.graded += n
                self.stats.fast_path += n - len(tasks)
        finally:
            if bar is not None:
                bar.close()
        return [bool(r) for r in results]

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        with self._lock:
            self._closed = True
            for worker in self._workers:
                worker.stop()
            self._workers = []
            if self._spare is not None:
                self._spare.stop()
                self._spare = None

    @property
    def num_workers(self) -> int:
        return self.config.workers

    def ensure_workers(self, workers: int) -> None:
        """Grow the pool to at least ``workers`` processes (used by the shared grader)."""
        with self._lock:
            if workers > self.config.workers:
                self.config = replace(self.config, workers=workers)
                if self._inline and workers > 0 and _can_start_processes():
                    self._inline = False

    def __enter__(self) -> "MathGrader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ internals
    def _fast_verdict(self, response: str, refs: tuple[str, ...]) -> tuple[bool | None, str]:
        """``(verdict, boxed answer)``; the verdict is ``None`` when a worker must decide."""
        answer = extract_boxed(response)
        if answer is None:
            return False, ""
        if len(answer) > self.config.max_answer_chars:
            return False, answer
        canon = canonical_string(answer)
        symbolic = False
        for ref in refs:
            key = text_answer(ref)
            if key is not None:
                if text_matches(answer, key):
                    return True, answer
                continue
            ref_canon = canonical_string(ref)
            if canon and canon == ref_canon:
                return True, answer
            if _INTEGER.fullmatch(canon) and _INTEGER.fullmatch(ref_canon):
                if int(canon) == int(ref_canon):  # 007 and 7
                    return True, answer
                continue  # two different plain integers: no maths needed to say no
            symbolic = True
        return (None if symbolic else False), answer

    def _grade_inline(self, tasks, results, timeout, bar) -> None:
        from ktae.rewards.verify import verify_answer

        in_main = threading.current_thread() is threading.main_thread()
        seconds = max(1, math.ceil(timeout)) if in_main else None
        for i, answer, refs in tasks:
            try:
                results[i] = verify_answer(
                    answer,
                    refs,
                    float_rounding=self.config.float_rounding,
                    numeric_precision=self.config.numeric_precision,
                    timeout=seconds,
                )
            except Exception:
                results[i] = False
            if bar is not None:
                bar.update(1)

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and put the standby worker (or a new one) in its place.

        After the first kill the grader keeps one spare process with
        math-verify imported, started once the replacement is ready (so the two
        do not compete for the CPU), and later timeouts cost no start-up delay.
        """
        worker.kill()
        index = self._workers.index(worker)
        spare, self._spare = self._spare, None
        if spare is not None and spare.proc.poll() is None and not spare.conn.closed:
            spare.deadline = time.monotonic() + self.config.startup_timeout  # its "ready" is waiting or coming
            self._workers[index] = spare
        else:
            if spare is not None:
                spare.kill()
            self._workers[index] = _Worker(self.config)
            self.stats.workers_started += 1
        self._want_spare = True

    def _start_spare_if_wanted(self) -> None:
        if self._want_spare and self._spare is None and not self._closed:
            self._spare = _Worker(self.config)
            self.stats.workers_started += 1

    def _grade_in_workers(self, tasks, results, timeout, bar) -> None:
        while len(self._workers) < self.config.workers:
            self._workers.append(_Worker(self.config))
            self.stats.workers_started += 1
        queue = deque(tasks)
        remaining = len(tasks)
        failed_starts = 0
        while remaining:
            now = time.monotonic()
            for worker in self._workers:
                if worker.state == "idle" and queue and worker.proc.poll() is not None:
                    self.stats.worker_crashes += 1  # died while idle (killed from outside)
                    self._replace(worker)
                    continue
                if worker.state == "idle" and queue:
                    i, answer, refs = queue.popleft()
                    try:
                        worker.conn.send((i, answer, refs))
                    except (OSError, EOFError):
                        queue.appendleft((i, answer, refs))
                        self.stats.worker_crashes += 1
                        self._replace(worker)
                        continue
                    worker.state, worker.task, worker.deadline = "busy", i, now + timeout
            active = [w for w in self._workers if w.state in ("busy", "starting")]
            if not active:  # pragma: no cover - every worker idle but tasks left: cannot happen
                raise RuntimeError("grading pool has no active worker")
            by_conn = {w.conn: w for w in active}
            wait_for = max(0.0, min(w.deadline for w in active) - now)
            ready = wait(list(by_conn), timeout=wait_for)
            for conn in ready:
                worker = by_conn[conn]
                try:
                    message = conn.recv()
                except (EOFError, OSError):  # the worker died (crash, out of memory)
                    if worker.state == "busy":
                        results[worker.task] = False
                        remaining -= 1
                        if bar is not None:
                            bar.update(1)
                        self.stats.worker_crashes += 1
                    else:
                        failed_starts += 1
                    self._replace(worker)
                    continue
                if worker.state == "starting":
                    worker.state = "idle"
                    failed_starts = 0
                    self._start_spare_if_wanted()
                    continue
                task_id, verdict = message
                if task_id == worker.task:
                    results[task_id] = bool(verdict)
                    remaining -= 1
                    if bar is not None:
                        bar.update(1)
                worker.state = "idle"
            now = time.monotonic()
            for worker in active:
                if worker.state == "busy" and now >= worker.deadline:
                    results[worker.task] = False
                    remaining -= 1
                    self.stats.timeouts += 1
                    if bar is not None:
                        bar.update(1)
                    self._replace(worker)
                elif worker.state == "starting" and now >= worker.deadline:
                    failed_starts += 1
                    self._replace(worker)
            if failed_starts >= 3 * max(1, self.config.workers):
                raise RuntimeError(
                    "grading worker processes fail to start (is math-verify importable by "
                    f"{sys.executable}?); "
                    "pass workers=0 to grade in this process"
                )


_shared_lock = threading.Lock()
_shared: MathGrader | None = None


def get_grader(workers: int = 1) -> MathGrader:
    """The process-wide grader used by ``grade_math``/``grade_batch``, grown to ``workers`` processes."""
    global _shared
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    with _shared_lock:
        if _shared is None or _shared._closed:
            _shared = MathGrader(workers=max(1, workers) if workers else 0)
        else:
            _shared.ensure_workers(workers)
        return _shared


def shutdown_grader() -> None:
    """Stop the shared grader's workers (also done automatically at exit)."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None


atexit.register(shutdown_grader)


def default_workers() -> int:
    """Worker processes used by ``grade_batch`` when none is given: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))
