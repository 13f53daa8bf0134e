"""Grading math answers and outcome rewards for RL (GRPO 1/0, DAPO +1/-1 with overlong shaping).

>>> from ktae.rewards import grade_math
>>> grade_math("... so the answer is $\\boxed{\\frac{23}{7}}$.", "23/7")
True

Comparison is done by Hugging Face's ``math-verify`` in worker processes with a
hard per-answer deadline (see :mod:`ktae.rewards.grader`).
"""
from ktae.rewards.answers import extract_boxed, reference_answers
from ktae.rewards.functions import (
    dapo_reward,
    dapo_rewards,
    grade_batch,
    grade_math,
    math_reward,
    math_rewards,
    overlong_penalty,
)
from ktae.rewards.grader import GraderConfig, MathGrader, get_grader, shutdown_grader

__all__ = [
    "grade_math",
    "grade_batch",
    "math_reward",
    "math_rewards",
    "dapo_reward",
    "dapo_rewards",
    "overlong_penalty",
    "extract_boxed",
    "reference_answers",
    "MathGrader",
    "GraderConfig",
    "get_grader",
    "shutdown_grader",
]
