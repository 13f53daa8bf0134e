"""Outcomes of rollouts, the same for every front-end: is a rollout correct, how many groups are mixed, and
verdicts (``true``/``1``/``yes``...) read back from files.

>>> is_correct(torch.tensor([1.0, 0.0]), 0.0).tolist()
[True, False]
>>> as_verdict("yes"), as_verdict(0), as_verdict("maybe")
(True, False, None)
"""
from __future__ import annotations

from typing import Any

import torch

from ktae.core.advantages import group_index, group_totals

__all__ = ["is_correct", "as_verdict", "require_verdict", "mixed_groups"]

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def is_correct(scores: Any, threshold: float) -> torch.Tensor:
    """[B] bool: a rollout is correct when its outcome score is > ``threshold`` (``KTAEConfig.threshold``).

    Args:
        scores: [B] outcome scores (tensor, array or sequence of numbers).
    """
    return torch.as_tensor(scores).detach().to(torch.float64).reshape(-1) > threshold


def as_verdict(value: Any) -> bool | None:
    """A recorded verdict as a bool: ``True``/``False``, ``1``/``0`` (``-1``: wrong, as some graders write),
    or the strings true/false, 1/0, yes/no in any case; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1, -1):
        return value == 1
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return None


def require_verdict(value: Any, where: str, name: str) -> bool:
    """:func:`as_verdict`, raising ``ValueError`` naming the field ``name`` at ``where`` when it is not one."""
    verdict = as_verdict(value)
    if verdict is None:
        raise ValueError(f"{where}: field {name!r} must be a boolean (or 0/1), got {value!r}")
    return verdict


def mixed_groups(
    scores: Any, group: Any, threshold: float = 0.0, response_mask: torch.Tensor | None = None
) -> tuple[int, int]:
    """Count the groups KTAE can learn from, with the core's rules (``ktae.core.advantages.group_totals``).

    Args:
        scores: [B] outcome rewards (correct: :func:`is_correct`).
        group: [B] prompt ids (tensor, numpy array or sequence of hashables).
        threshold: the correctness threshold (``KTAEConfig.threshold``).
        response_mask: optional [B, L] 0/1; rows with no unmasked token are not members of their group.

    Returns:
        (mixed, groups): groups with at least one correct and one wrong member, and groups with any member.
    """
    correct = is_correct(scores, threshold)
    if correct.numel() == 0:
        return 0, 0
    ids, keys = group_index(group, correct.shape[0], correct.device)
    lengths = torch.ones(correct.shape[0], dtype=torch.int64)
    if response_mask is not None:
        lengths = torch.as_tensor(response_mask).reshape(correct.shape[0], -1).ne(0).sum(dim=1).to(torch.int64)
    n_true, n_false, _, _ = group_totals(lengths.to(ids.device), correct.to(ids.device), ids, len(keys))
    return int(((n_true > 0) & (n_false > 0)).sum()), int(((n_true + n_false) > 0).sum())
