"""Micro-batches of sequences of similar length: the one grouping rule of the trainer's update and the embedded
model's warm start."""
from __future__ import annotations

import torch

__all__ = ["length_buckets"]


def length_buckets(lengths: torch.Tensor, max_rows: int = 0, max_tokens: int = 0) -> list[torch.Tensor]:
    """Row indices in micro-batches of similar length, shortest first.

    Args:
        lengths: [N] int, each sequence's length in tokens.
        max_rows: most rows in a micro-batch (0: no limit).
        max_tokens: most tokens in a micro-batch padded to its longest row, rows x longest (0: no limit); a row
            longer than that gets a micro-batch of its own.

    Returns:
        Index tensors [n_k] into ``lengths``, every row once, in order of length (stable: ties keep their order).
        With neither limit, one micro-batch of every row in their own order.
    """
    n = len(lengths)
    if n == 0:
        return []
    if not max_rows and not max_tokens:
        return [torch.arange(n)]
    order = torch.argsort(lengths, stable=True)
    sorted_lengths = lengths[order].tolist()
    buckets, start = [], 0
    for k in range(1, n + 1):        # sorted: a micro-batch's longest row is its last
        full = (max_rows and k - start == max_rows) or \
               (max_tokens and k < n and (k + 1 - start) * sorted_lengths[k] > max_tokens)
        if k == n or full:
            buckets.append(order[start:k])
            start = k
    return buckets
