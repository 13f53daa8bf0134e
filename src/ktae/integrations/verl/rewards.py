"""verl reward functions for math: ``reward.custom_reward_function.path=pkg://ktae.integrations.verl``
with ``reward.custom_reward_function.name=math_score`` (or ``dapo_score``)."""
from __future__ import annotations

from typing import Any

__all__ = ["math_score", "dapo_score"]


def _score(solution_str: str, ground_truth: Any, correct: float, wrong: float) -> dict[str, float]:
    from ktae.rewards import grade_math

    ok = grade_math(solution_str, ground_truth)
    return {"score": correct if ok else wrong, "acc": 1.0 if ok else 0.0}


def math_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """verl reward function (GRPO, paper): score 1 for a correct last ``\\boxed{}`` answer, else 0; ``acc`` 1/0."""
    return _score(solution_str, ground_truth, 1.0, 0.0)


def dapo_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """verl reward function (DAPO, paper): score +1 correct / -1 wrong, ``acc`` 1/0; use it with verl's ``dapo``
    reward manager, which adds the overlong penalty."""
    return _score(solution_str, ground_truth, 1.0, -1.0)
