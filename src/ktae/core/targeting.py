"""How well token advantages target labelled mistakes: the pure measures behind ``ktae targeting``.

Same batch as :mod:`ktae.core.advantages` (``responses`` [B, L], ``response_mask`` [B, L], ``scores`` [B], ``group``
[B]); ``A_i`` is the rollout advantage and a group is *mixed* when it has a correct and a wrong member.

* :func:`blame` — how much of a rollout's negative advantage a rule puts on each token: ``-adv[i, t] / |A_i|``
  (1 everywhere for GRPO, 0 where a rule takes the push-down away, above 1 where it adds to it).
* :func:`grouped_auroc` / :func:`auroc` — the area under the ROC curve of a score at picking out labelled tokens,
  within each group of tokens (each rollout) or pooled; :func:`share_in_top` — the labelled share of the most
  blamed tokens.
* :func:`from_first` — the tokens from a rollout's first labelled token on; :func:`shared_with_correct` — the tokens
  that a correct rollout of the same group also wrote, at the same position.
"""
from __future__ import annotations

import torch

__all__ = ["blame", "grouped_auroc", "auroc", "share_in_top", "from_first", "shared_with_correct"]


def blame(advantages: torch.Tensor, rollout: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` float64: ``-advantages[i, t] / |rollout[i]|``, 0 in a row whose ``rollout[i]`` is 0.

    Args:
        advantages: [B, L] token advantages of a rule. rollout: [B] the rollout advantages ``A_i``.
    """
    scale = rollout.to(torch.float64).abs().unsqueeze(1)
    out = -advantages.to(torch.float64) / scale.clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(scale > 0, out, torch.zeros_like(out))


def grouped_auroc(scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Per group of items, the AUROC of ``scores`` for the positives ``labels`` (ties count one half).

    Args:
        scores: [N] float. labels: [N] bool. groups: [N] int64 in [0, G).

    Returns:
        [G] float64: ``P(score of a positive > score of a negative) + P(tie) / 2`` within each group (the
        Mann-Whitney statistic over positives x negatives); NaN for a group without both kinds of item.
    """
    scores, labels = scores.reshape(-1).to(torch.float64), labels.reshape(-1).bool()
    groups = groups.reshape(-1).to(torch.int64)
    if not scores.shape == labels.shape == groups.shape:
        raise ValueError(f"scores, labels and groups must have the same size, got {scores.numel()}, "
                         f"{labels.numel()} and {groups.numel()}")
    num = int(groups.max()) + 1 if groups.numel() else 0
    by_score = torch.argsort(scores, stable=True)
    order = by_score[torch.argsort(groups[by_score], stable=True)]         # by group, then by score
    g, s = groups[order], scores[order]
    sizes = torch.zeros(num, dtype=torch.int64).index_add_(0, g, torch.ones_like(g))
    before = torch.cumsum(sizes, 0) - sizes                                 # items of the groups before each group
    position = torch.arange(1, len(g) + 1, dtype=torch.float64) - before[g].double()     # 1-based rank in its group
    new_run = torch.ones(len(g), dtype=torch.bool)
    new_run[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    run = torch.cumsum(new_run.long(), 0) - 1
    runs = int(run[-1]) + 1 if len(run) else 0
    mean_rank = (torch.zeros(runs, dtype=torch.float64).index_add_(0, run, position)
                 / torch.zeros(runs, dtype=torch.float64).index_add_(0, run, torch.ones_like(position)))[run]
    positive = labels[order].double()
    pos = torch.zeros(num, dtype=torch.float64).index_add_(0, g, positive)
    neg = torch.zeros(num, dtype=torch.float64).index_add_(0, g, 1 - positive)
    rank_sum = torch.zeros(num, dtype=torch.float64).index_add_(0, g, mean_rank * positive)
    out = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    return torch.where((pos > 0) & (neg > 0), out, torch.full_like(out, float("nan")))


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The AUROC of ``scores`` [N] for the positives ``labels`` [N] over all items; NaN when a class is empty."""
    scores = scores.reshape(-1)
    return float(grouped_auroc(scores, labels, torch.zeros(scores.numel(), dtype=torch.int64))[0]) \
        if scores.numel() else float("nan")


def share_in_top(scores: torch.Tensor, labels: torch.Tensor, fraction: float) -> float:
    """Share of positives among the ``fraction`` of items with the highest score (ties at the cut: their mean).

    ``fraction`` in (0, 1]; the cut takes ``fraction * N`` items (fractional items allowed), so a constant score
    gives exactly the base rate ``labels.mean()``. NaN for no items.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    scores, labels = scores.reshape(-1).double(), labels.reshape(-1).double()
    if scores.numel() == 0:
        return float("nan")
    take = fraction * scores.numel()
    values, inverse = torch.unique(scores, return_inverse=True)          # ascending
    count = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(labels))
    hits = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, labels)
    count, hits = count.flip(0), hits.flip(0)                             # highest score first
    before = torch.cumsum(count, 0) - count
    taken = (take - before).clamp(min=0).minimum(count)
    return float((hits / count * taken).sum() / take)


def from_first(labels: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: the unmasked tokens at or after the first labelled token of their row."""
    mask = response_mask.bool()
    return (torch.cumsum((labels.bool() & mask).long(), dim=1) > 0) & mask


def shared_with_correct(responses: torch.Tensor, response_mask: torch.Tensor, correct: torch.Tensor,
                        group: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: rollout i's token at position t is also rollout j's token at t, for some *correct* rollout
    ``j != i`` of the same group (both unmasked there).

    Args:
        responses: [B, L] token ids. response_mask: [B, L] 0/1. correct: [B] bool. group: [B] int64 group ids.
    """
    mask = response_mask.bool()
    same = (group.unsqueeze(0) == group.unsqueeze(1)) & correct.unsqueeze(0)             # [i, j]
    same.fill_diagonal_(False)
    equal = (responses.unsqueeze(1) == responses.unsqueeze(0)) & mask.unsqueeze(1) & mask.unsqueeze(0)  # [i, j, t]
    return (equal & same.unsqueeze(2)).any(dim=1) & mask
