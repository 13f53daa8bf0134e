"""Pieces shared by the framework adapters: special-token ids of a tokenizer and KTAE batch statistics for logs."""
from __future__ import annotations

from typing import Any

import torch

from ktae.monitoring import mixed_groups


def key_token_stats(
    values: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor, group: Any, threshold: float
) -> dict[str, float]:
    """Summary of the key-token values of one batch, for the training logs.

    Args:
        values: [B, L] key-token values K (0 at masked positions).
        mask: [B, L] 0/1 response mask.
        scores: [B] outcome rewards.
        group: [B] prompt ids (tensor or sequence of hashables).
        threshold: a rollout is correct when its score is > threshold.

    Returns:
        Plain floats: ``abs_mean``, ``mean``, ``max``, ``min`` of K over unmasked tokens; ``positive_fraction`` and
        ``nonzero_fraction`` of unmasked tokens; ``mean_in_correct`` / ``mean_in_wrong`` (mean K over the tokens of
        correct / wrong rollouts); ``mixed_group_fraction`` (groups with both correct and wrong rollouts, the only
        ones where K can be non-zero, among the groups with a rollout that is not fully masked).
    """
    m = mask.to(device=values.device) != 0
    k = values.detach().to(torch.float64)[m]
    scores = torch.as_tensor(scores).detach().to(device=values.device, dtype=torch.float64)
    correct = scores > threshold
    out: dict[str, float] = {}
    if k.numel():
        out.update(
            abs_mean=float(k.abs().mean()),
            mean=float(k.mean()),
            max=float(k.max()),
            min=float(k.min()),
            positive_fraction=float((k > 0).double().mean()),
            nonzero_fraction=float((k != 0).double().mean()),
        )
    for name, rows in (("mean_in_correct", correct), ("mean_in_wrong", ~correct)):
        sel = m & rows.unsqueeze(1)
        if bool(sel.any()):
            out[name] = float(values.detach().to(torch.float64)[sel].mean())
    if scores.numel():
        mixed, groups = mixed_groups(scores, group, threshold, mask)
        out["mixed_group_fraction"] = mixed / groups if groups else 0.0
    return out
