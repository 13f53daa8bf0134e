"""The key-token metrics, one set of names for every front-end: ``ktae train``'s ``metrics.jsonl`` and console,
the verl plug-in's and the TRL trainer's logs all carry ``ktae/<name>`` for each entry of :data:`KEY_TOKEN_METRICS`
plus ``ktae/mixed_group_fraction``.

A metric is one function of a :class:`KeyTokenBatch`; adding one to :data:`KEY_TOKEN_METRICS` adds it to every
front-end. Runs written before the names were shared used others (``ktae_abs_mean``, ``mixed_groups``, ...):
:func:`upgrade_record` renames them, and whatever reads a run's metrics reads them through it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ktae.frontend.outcomes import is_correct, mixed_groups

__all__ = ["KeyTokenBatch", "KEY_TOKEN_METRICS", "MIXED_GROUP_FRACTION", "PREFIX", "OLD_NAMES",
           "key_token_metrics", "upgrade_record"]

PREFIX = "ktae/"
#: the share of groups with both correct and wrong rollouts by KTAE's rule (score > ``KTAEConfig.threshold``, not a
#: grader's verdict): the only groups where K can be non-zero; ``MixedGroupWatch`` warns when it stays 0
MIXED_GROUP_FRACTION = PREFIX + "mixed_group_fraction"


@dataclass(frozen=True)
class KeyTokenBatch:
    """The key-token values of one batch as the metrics see them.

    ``values``: [N] float64 K at the batch's unmasked tokens; ``in_correct``: [N] bool, the token belongs to a
    correct rollout.
    """

    values: torch.Tensor
    in_correct: torch.Tensor


def _share(selected: torch.Tensor) -> float:
    return float(selected.double().mean())


def _mean_where(batch: KeyTokenBatch, rows: torch.Tensor) -> float | None:
    return float(batch.values[rows].mean()) if bool(rows.any()) else None


#: short name -> the metric of a batch with at least one unmasked token (None: not defined for this batch)
KEY_TOKEN_METRICS: dict[str, Callable[[KeyTokenBatch], float | None]] = {
    "abs_mean": lambda b: float(b.values.abs().mean()),
    "mean": lambda b: float(b.values.mean()),
    "max": lambda b: float(b.values.max()),
    "min": lambda b: float(b.values.min()),
    "positive_fraction": lambda b: _share(b.values > 0),
    "negative_fraction": lambda b: _share(b.values < 0),
    "nonzero_fraction": lambda b: _share(b.values != 0),
    "mean_in_correct": lambda b: _mean_where(b, b.in_correct),
    "mean_in_wrong": lambda b: _mean_where(b, ~b.in_correct),
}

#: names the trainer logged before the front-ends shared theirs -> the shared name
OLD_NAMES = {
    "ktae_abs_mean": PREFIX + "abs_mean",
    "ktae_pos_frac": PREFIX + "positive_fraction",
    "ktae_neg_frac": PREFIX + "negative_fraction",
    "mixed_groups": MIXED_GROUP_FRACTION,
}


def key_token_metrics(
    values: torch.Tensor | None, mask: torch.Tensor, scores: Any, group: Any, threshold: float
) -> dict[str, float]:
    """The ``ktae/*`` metrics of one batch, as plain floats.

    Args:
        values: [B, L] key-token values K (0 at masked positions), or None when the estimator has no K (then only
            the mixed-group fraction).
        mask: [B, L] 0/1 response mask.
        scores: [B] outcome scores; group: [B] prompt ids; threshold: correct when score > threshold.

    Returns:
        ``ktae/<name>`` for each :data:`KEY_TOKEN_METRICS` entry defined on the batch (none without unmasked
        tokens), and ``ktae/mixed_group_fraction`` (0.0 for an empty batch): mixed groups among the groups with a
        rollout that is not fully masked.
    """
    out: dict[str, float] = {}
    if values is not None:
        keep = mask.to(device=values.device) != 0
        correct = is_correct(scores, threshold).to(values.device)
        batch = KeyTokenBatch(values.detach().to(torch.float64)[keep], correct.unsqueeze(1).expand_as(keep)[keep])
        if batch.values.numel():
            for name, metric in KEY_TOKEN_METRICS.items():
                value = metric(batch)
                if value is not None:
                    out[PREFIX + name] = value
    mixed, groups = mixed_groups(scores, group, threshold, mask)
    out[MIXED_GROUP_FRACTION] = mixed / groups if groups else 0.0
    return out


def upgrade_record(record: dict) -> dict:
    """A metrics record with the names of older runs (:data:`OLD_NAMES`) replaced by the shared ones (a name
    logged under both keeps the shared one's value)."""
    if not any(old in record for old in OLD_NAMES):
        return record
    out = {key: value for key, value in record.items() if key not in OLD_NAMES}
    for old, new in OLD_NAMES.items():
        if old in record:
            out.setdefault(new, record[old])
    return out
