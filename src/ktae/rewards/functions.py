"""Outcome reward functions for RL on math problems (GRPO: 1/0, DAPO: +1/-1 with overlong shaping)."""
from __future__ import annotations

from typing import Any, Sequence

from ktae.rewards.grader import default_workers, get_grader

__all__ = [
    "grade_math",
    "grade_batch",
    "math_reward",
    "dapo_reward",
    "overlong_penalty",
    "math_rewards",
    "dapo_rewards",
]

DEFAULT_TIMEOUT = 5.0


def grade_math(response: str, reference: Any, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether the final answer of ``response`` equals ``reference``.

    The answer is the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``)
    of ``response``; a response without one is wrong. ``reference`` may be a
    string (LaTeX or plain), a number, a list of acceptable answers, or a
    stringified Python list (``"['9.6\\n']"``); any acceptable answer counts.
    Equivalence is decided by ``math-verify`` (fractions/decimals, intervals,
    sets, tuples, roots, degrees and percent, ``x = 5`` vs ``5``, units...).

    The comparison runs in a worker process and returns within ``timeout``
    seconds: an answer that takes longer counts as wrong (the worker is killed
    and replaced). The first call also waits for the worker to start (about a
    second, once per process).
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    return get_grader(1).grade(response, reference, timeout=timeout)


def grade_batch(
    responses: Sequence[str],
    references: Sequence[Any],
    workers: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
) -> list[bool]:
    """``[grade_math(r, ref) for r, ref in zip(responses, references)]``, graded by ``workers`` processes.

    ``workers=None`` uses the CPU count (at most 8); ``workers=0`` grades in this
    process with math-verify's own signal timeouts (main thread only, and not a
    hard guarantee). ``progress=None`` shows a progress bar from 1000 responses.
    """
    if workers is None:
        workers = default_workers()
    return get_grader(workers).grade_batch(responses, references, timeout=timeout, progress=progress)


def math_reward(response: str, reference: Any, *, timeout: float = DEFAULT_TIMEOUT) -> float:
    """GRPO outcome reward: 1.0 when ``grade_math`` says correct, else 0.0."""
    return 1.0 if grade_math(response, reference, timeout=timeout) else 0.0


def overlong_penalty(
    response_length: int, max_response_length: int, overlong_buffer: int, penalty_factor: float = 1.0
) -> float:
    """DAPO's soft overlong punishment ``min(0, (Lmax - Lbuf - l) / Lbuf) * factor`` (0 when ``Lbuf == 0``)."""
    for name, value in (
        ("response_length", response_length),
        ("max_response_length", max_response_length),
        ("overlong_buffer", overlong_buffer),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if max_response_length <= 0:
        raise ValueError(f"max_response_length must be > 0, got {max_response_length}")
    if overlong_buffer > max_response_length:
        raise ValueError(
            f"overlong_buffer ({overlong_buffer}) must not exceed max_response_length ({max_response_length})"
        )
    if not isinstance(penalty_factor, (int, float)) or isinstance(penalty_factor, bool) or penalty_factor < 0:
        raise ValueError(f"penalty_factor must be a number >= 0, got {penalty_factor!r}")
    if overlong_buffer == 0:
        return 0.0
    expected = max_response_length - overlong_buffer
    return min(0.0, (expected - response_length) / overlong_buffer) * float(penalty_factor)


def dapo_reward(
    response: str,
    reference: Any,
    response_length: int,
    max_response_length: int,
    overlong_buffer: int,
    penalty_factor: float = 1.0,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> float:
    """DAPO outcome reward: +1 correct / -1 wrong, plus :func:`overlong_penalty`.

    ``response_length`` is the response's length in tokens (EOS included, as the
    trainer counts it), ``max_response_length`` the generation limit and
    ``overlong_buffer`` the length of the soft-punishment zone before it.
    """
    penalty = overlong_penalty(response_length, max_response_length, overlong_buffer, penalty_factor)
    correct = grade_math(response, reference, timeout=timeout)
    return (1.0 if correct else -1.0) + penalty


def math_rewards(
    responses: Sequence[str],
    references: Sequence[Any],
    workers: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
) -> list[float]:
    """Batched :func:`math_reward` (graded in parallel)."""
    verdicts = grade_batch(responses, references, workers, timeout=timeout, progress=progress)
    return [1.0 if v else 0.0 for v in verdicts]


def dapo_rewards(
    responses: Sequence[str],
    references: Sequence[Any],
    response_lengths: Sequence[int],
    max_response_length: int,
    overlong_buffer: int,
    penalty_factor: float = 1.0,
    workers: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
) -> list[float]:
    """Batched :func:`dapo_reward` (graded in parallel)."""
    if len(response_lengths) != len(responses):
        raise ValueError(
            f"response_lengths must have one entry per response, got {len(response_lengths)} for {len(responses)}"
        )
    penalties = [
        overlong_penalty(int(length), max_response_length, overlong_buffer, penalty_factor)
        for length in response_lengths
    ]
    verdicts = grade_batch(responses, references, workers, timeout=timeout, progress=progress)
    return [(1.0 if v else -1.0) + p for v, p in zip(verdicts, penalties)]
