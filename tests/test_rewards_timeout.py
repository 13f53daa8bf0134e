"""The grading deadline: pathological answers never stall the caller."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ktae.rewards import MathGrader, grade_math

LIMIT = 1.0
SLACK = 1.5  # scheduling + killing + pipe latency on a loaded 2-core CI machine


@pytest.fixture(scope="module")
def grader():
    with MathGrader(workers=1, timeout=LIMIT) as g:
        assert g.grade(r"\boxed{1}", "1")  # fast path, no worker needed
        assert g.grade(r"\boxed{0.5}", r"\frac12")  # starts the worker (not counted below)
        yield g


def _timed(g, response, reference="3"):
    start = time.monotonic()
    verdict = g.grade(response, reference)
    return verdict, time.monotonic() - start


@pytest.mark.parametrize(
    "response",
    [
        r"\boxed{9^{9^{9^{9}}}}",
        r"\boxed{10^{10^{10^{10}}} - 10^{10^{10^{10}}} + 3}",
        r"\boxed{" + r"\frac{1}{" * 1000 + "2" + "}" * 1000 + "}",
    ],
    ids=["power tower", "tower difference", "1000 nested fractions"],
)
def test_pathological_answers_hit_the_deadline(grader, response):
    before = grader.stats.timeouts
    verdict, elapsed = _timed(grader, response)
    assert verdict is False
    assert elapsed < LIMIT + SLACK, f"took {elapsed:.2f}s with a {LIMIT}s limit"
    assert grader.stats.timeouts == before + 1
    # the killed worker was replaced: grading goes on and is right
    assert grader.grade(r"\boxed{\frac{6}{4}}", "1.5") is True


def test_megabytes_of_text(grader):
    long_response = "Let me think. " * 300_000 + r"So the answer is \boxed{\frac{7}{2}}."
    assert len(long_response) > 4_000_000
    verdict, elapsed = _timed(grader, long_response, "3.5")
    assert verdict is True and elapsed < LIMIT + SLACK
    huge_box = r"\boxed{" + "1+" * 500_000 + "1}"
    verdict, elapsed = _timed(grader, huge_box, "500001")
    assert verdict is False and elapsed < LIMIT + SLACK


def test_deadline_holds_from_a_thread(grader):
    # math-verify's own signal.alarm timeouts cannot work here; the worker deadline does
    out = {}

    def run():
        start = time.monotonic()
        out["slow"] = grader.grade(r"\boxed{9^{9^{9^{9}}}}", "3")
        out["elapsed"] = time.monotonic() - start
        out["fast"] = grader.grade(r"\boxed{2\sqrt{2}}", r"\sqrt{8}")

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    assert out["slow"] is False and out["elapsed"] < LIMIT + SLACK and out["fast"] is True


def test_batch_with_pathological_items_keeps_the_rest():
    with MathGrader(workers=2, timeout=LIMIT) as g:
        g.grade(r"\boxed{0.5}", r"\frac12")
        responses = [r"\boxed{9^{9^{9^{9}}}}", r"\boxed{\frac{1}{2}}", r"\boxed{9^{9^{9^{9}}}}", r"\boxed{(1,2)}"]
        references = ["3", "0.5", "3", "(1,2)"]
        start = time.monotonic()
        verdicts = g.grade_batch(responses, references)
        elapsed = time.monotonic() - start
        assert verdicts == [False, True, False, True]
        # 2 timeouts on 2 workers: one round of the limit, plus restarting workers
        assert elapsed < 2 * LIMIT + 2 * SLACK
        assert g.stats.timeouts == 2


def test_worker_killed_from_outside_is_replaced(grader):
    grader.grade(r"\boxed{0.25}", r"\frac14")
    for worker in grader._workers:
        if worker.proc.poll() is None:
            os.kill(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait()
    assert grader.grade(r"\boxed{0.25}", r"\frac14") is True


def test_grade_math_default_function_has_the_limit():
    grade_math(r"\boxed{0.5}", r"\frac12")  # warm the shared worker
    start = time.monotonic()
    assert grade_math(r"\boxed{9^{9^{9^{9}}}}", "3", timeout=LIMIT) is False
    assert time.monotonic() - start < LIMIT + SLACK


def test_inline_mode_without_workers():
    with MathGrader(workers=0, timeout=2.0) as g:
        assert g.grade(r"\boxed{0.5}", r"\frac12") is True
        assert g.grade(r"\boxed{3}", "4") is False
        assert g._workers == []
