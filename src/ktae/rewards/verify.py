"""The symbolic comparison, done with Hugging Face's ``math-verify``.

This module runs inside the grading worker processes (see
:mod:`ktae.rewards.grader`), where a stuck comparison can be killed. Calling
:func:`verify_answer` directly in your own process has no time limit unless
``timeout`` is given and you are in the main thread (``math-verify`` then uses
``signal.alarm``).
"""
from __future__ import annotations

import logging
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from ktae.rewards.answers import normalize_answer, reference_variants, text_answer, text_matches

__all__ = ["verify_answer"]

# math-verify warns once when its own (signal based) timeouts are disabled; ours is the worker deadline.
logging.getLogger("math_verify").setLevel(logging.ERROR)
logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)

_EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


def _parse(latex: str, timeout: int | None):
    return parse(latex, list(_EXTRACTION), parsing_timeout=timeout)


def _parse_answer(answer: str, timeout: int | None) -> list:
    """Parse the boxed content; math-verify reads some boxes (``\\boxed{50\\%}``) only in ``$...$``."""
    parsed = _parse(f"\\boxed{{{answer}}}", timeout)
    if not any(not isinstance(p, str) for p in parsed):
        inline = _parse(f"${answer}$", timeout)
        if any(not isinstance(p, str) for p in inline):
            return inline
    return parsed


@lru_cache(maxsize=4096)
def _parse_reference(reference: str, timeout: int | None) -> tuple:
    return tuple(_parse(f"${reference}$", timeout))


def verify_answer(
    answer: str,
    references: tuple[str, ...] | list[str],
    *,
    float_rounding: int = 6,
    numeric_precision: int = 15,
    timeout: int | None = None,
) -> bool:
    """Whether the extracted final ``answer`` (the content of the last box) equals any reference.

    ``references`` are acceptable answers as returned by
    :func:`ktae.rewards.answers.reference_answers`. Word answers are compared as
    text; everything else is parsed by ``math-verify`` (reference as ``$...$``,
    answer as ``\\boxed{...}``) and compared with ``math_verify.verify`` (gold
    first, as it is not symmetric). ``timeout`` is passed to ``math-verify``'s own
    ``signal.alarm`` timeouts (main thread only); ``None`` disables them.
    """
    answer = normalize_answer(answer)
    if not answer:
        return False
    predicted = None
    for reference in references:
        key = text_answer(reference)
        if key is not None:
            if text_matches(answer, key):
                return True
            continue
        if predicted is None:
            predicted = _parse_answer(answer, timeout)
            if not predicted:
                return False
        for variant in reference_variants(reference):
            gold = list(_parse_reference(variant, timeout))
            if gold and verify(
                gold,
                predicted,
                float_rounding=float_rounding,
                numeric_precision=numeric_precision,
                allow_set_relation_comp=True,  # "k \\geq 2" answers "[2, \\infty)"
                timeout_seconds=timeout,
            ):
                return True
    return False
