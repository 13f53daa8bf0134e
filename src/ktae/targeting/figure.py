"""The ROC curves of ``ktae targeting --png``: each rule's blame at picking out the wrong-step tokens, and the tokens
from the first wrong step on (targets of every batch pooled)."""
from __future__ import annotations

from pathlib import Path

import torch

from ktae.core.targeting import blame
from ktae.experiments.plot import save_figure
from ktae.targeting.score import TokenTable

__all__ = ["roc_points", "roc_figure"]


def roc_points(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(false positive rate, true positive rate)`` [K + 1] at every distinct threshold of ``scores`` (ties
    taken together), from (0, 0) to (1, 1)."""
    values, inverse = torch.unique(scores.double(), return_inverse=True)
    hits = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, labels.double()).flip(0)
    misses = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, 1 - labels.double()).flip(0)
    zero = torch.zeros(1, dtype=torch.float64)
    return (torch.cat([zero, misses.cumsum(0) / misses.sum().clamp(min=1)]),
            torch.cat([zero, hits.cumsum(0) / hits.sum().clamp(min=1)]))


def roc_figure(table: TokenTable, rules: list[str], path: str | Path, title: str) -> Path:
    """Two panels of ROC curves (wrong-step tokens; tokens from the first wrong step on), one curve per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = ~table.correct & (table.rollout_advantage < 0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for axis, labels, what in ((axes[0], table.mistake, "wrong-step tokens"),
                               (axes[1], table.derailed, "tokens from the first wrong step on")):
        for rule in rules:
            scores = blame(table.advantages[rule][target].unsqueeze(1), table.rollout_advantage[target]).squeeze(1)
            fpr, tpr = roc_points(scores, labels[target])
            axis.plot(fpr.numpy(), tpr.numpy(), label=rule)
        axis.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
        axis.set_xlabel("share of the other tokens blamed")
        axis.set_ylabel("share of these tokens blamed")
        axis.set_title(f"blame vs {what}", fontsize=10)
        axis.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title}: tokens of the wrong rollouts of mixed groups", fontsize=10)
    return save_figure(fig, path)
