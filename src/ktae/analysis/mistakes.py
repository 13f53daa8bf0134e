"""Does K point at the mistakes? Scores of token-level advantages against labelled wrong steps.

Given, for the tokens of a batch of rollouts, a score (e.g. ``-K``: the more negative the key-token value,
the more a token is blamed) and a label (the token lies in a wrong step), these functions measure how well
the score ranks the wrong-step tokens first:

* :func:`auroc`: the probability that a random wrong-step token scores above a random other token (ties
  count one half); 0.5 is a score that knows nothing, such as random marking or a constant;
* :func:`share_in_top`: the share of wrong-step tokens among the ``fraction`` of tokens with the highest
  score, ties at the cut shared out evenly (a constant score gets the base rate);
* :func:`mistake_metrics`: both, pooled over the wrong rollouts and averaged within each wrong rollout, for
  several scores side by side (K, GRPO's flat rollout advantage, KTAE's whole advantage) and random marking.

Pure functions on 1-D tensors; the labelling of tokens comes from the task (e.g.
:func:`ktae.recipes.word_problems.token_labels`).
"""
from __future__ import annotations

import torch

__all__ = ["auroc", "share_in_top", "mistake_metrics"]


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """``[N]`` float64 ranks 1..N of ``values``, ties given the mean of their ranks."""
    order = torch.argsort(values, stable=True)
    sorted_vals = values[order]
    new_run = torch.ones_like(sorted_vals, dtype=torch.bool)
    new_run[1:] = sorted_vals[1:] != sorted_vals[:-1]
    run_id = torch.cumsum(new_run.long(), 0) - 1
    positions = torch.arange(1, len(values) + 1, dtype=torch.float64)
    run_sum = torch.zeros(int(run_id[-1]) + 1, dtype=torch.float64).index_add_(0, run_id, positions)
    run_len = torch.zeros_like(run_sum).index_add_(0, run_id, torch.ones_like(positions))
    ranks = torch.empty_like(positions)
    ranks[order] = (run_sum / run_len)[run_id]
    return ranks


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` [N] for the positives ``labels`` [N] (bool), ties counted 1/2.

    Equals the Mann-Whitney statistic ``P(score_pos > score_neg) + P(tie)/2``. NaN when one class is empty.
    """
    scores, labels = scores.reshape(-1).double(), labels.reshape(-1).bool()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels must have the same size, got {scores.numel()} and {labels.numel()}")
    pos = int(labels.sum())
    neg = labels.numel() - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def share_in_top(scores: torch.Tensor, labels: torch.Tensor, fraction: float) -> float:
    """Share of positives among the ``fraction`` of items with the highest score (ties at the cut: their mean).

    ``fraction`` in (0, 1]; the cut takes ``fraction * N`` items (fractional items allowed), so a constant
    score gives exactly the base rate ``labels.mean()``. NaN for no items.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    scores, labels = scores.reshape(-1).double(), labels.reshape(-1).double()
    n = scores.numel()
    if n == 0:
        return float("nan")
    take = fraction * n
    values, inverse = torch.unique(scores, return_inverse=True)          # ascending
    count = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(labels))
    hits = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, labels)
    count, hits = count.flip(0), hits.flip(0)                             # highest score first
    before = torch.cumsum(count, 0) - count
    taken = (take - before).clamp(min=0).minimum(count)
    return float((hits / count * taken).sum() / take)


def mistake_metrics(scores: dict[str, torch.Tensor], mistake: torch.Tensor, rollout: torch.Tensor,
                    fraction: float = 0.1) -> dict[str, dict[str, float]]:
    """How well each score ranks wrong-step tokens first, over the tokens of wrong rollouts.

    Args:
        scores: name -> ``[N]`` score of each token (higher = blamed more, e.g. ``-K``).
        mistake: ``[N]`` bool, the token lies in a wrong step.
        rollout: ``[N]`` int, the rollout each token belongs to (for the within-rollout averages).
        fraction: the top share of tokens for :func:`share_in_top`.

    Returns:
        name -> ``{"auroc", "auroc_within", "share_top", "rollouts_within"}``, plus ``"random"`` (AUROC 0.5,
        share = base rate) and ``"tokens"`` / ``"mistake_tokens"`` / ``"base_rate"`` counts under ``"data"``.
        ``auroc_within`` is the mean AUROC over the rollouts that have both kinds of token.
    """
    mistake, rollout = mistake.reshape(-1).bool(), rollout.reshape(-1)
    ids, inverse = torch.unique(rollout, return_inverse=True)
    rows = [torch.nonzero(inverse == r).flatten() for r in range(len(ids))]     # token positions of each rollout
    mixed = [pos for pos in rows if 0 < int(mistake[pos].sum()) < len(pos)]     # rollouts with both kinds
    base = float(mistake.double().mean()) if mistake.numel() else float("nan")
    out: dict[str, dict[str, float]] = {}
    for name, score in scores.items():
        score = score.reshape(-1)
        within = [auroc(score[pos], mistake[pos]) for pos in mixed]
        out[name] = {"auroc": auroc(score, mistake),
                     "auroc_within": sum(within) / len(within) if within else float("nan"),
                     "share_top": share_in_top(score, mistake, fraction),
                     "rollouts_within": float(len(within))}
    out["random"] = {"auroc": 0.5, "auroc_within": 0.5, "share_top": base, "rollouts_within": float(len(mixed))}
    out["data"] = {"tokens": float(mistake.numel()), "mistake_tokens": float(mistake.sum()), "base_rate": base,
                   "rollouts": float(len(ids))}
    return out
