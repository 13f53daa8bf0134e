"""Advantages: rollout-level estimators (GRPO, Dr. GRPO, RLOO) and key-token values (KTAE, spec §1–5).

All functions take one RL batch:

    responses      [B, L] integer token ids, right-padded
    response_mask  [B, L] 0/1 (bool or numeric): 1 on real response tokens
    scores         [B] float: outcome reward of each rollout
    group          [B] prompt ids: an integer tensor, or any sequence of hashables (e.g. string uids)

Groups may be interleaved, of different sizes, of size one. A row whose mask is all zero is left out of its
group's key-token counts (it is not an empty correct or wrong member); the rollout-level estimators still see
its score, as GRPO's do. Everything is computed for the whole batch at
once: one stable sort of the unmasked ``(group, token)`` keys gives every count, and the table statistics are
computed once per distinct ``(nT, nF, a, b)``. There is no Python loop over tokens or groups, no dense
``[B, vocab]`` tensor, and a handful of host synchronisations per batch (tensor sizes), none per group.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch

from ktae.core.config import KTAEConfig
from ktae.core.stats import (
    arcsine_distance,
    fisher_exact_pvalues,
    information_gain,
    _term_frequency_ratio,
)

# ---------------------------------------------------------------------------------------------------------------
# input checking and group indexing
# ---------------------------------------------------------------------------------------------------------------


def _check_scores(scores: Any, batch: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        try:
            scores = torch.as_tensor(scores)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"scores must be a 1-D tensor or sequence of numbers, got {type(scores).__name__}") from err
    if scores.dtype == torch.bool or scores.dtype.is_complex:
        raise TypeError(f"scores must be real numbers, got dtype {scores.dtype}")
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D [B], got shape {tuple(scores.shape)}")
    if batch is not None and scores.shape[0] != batch:
        raise ValueError(f"scores has {scores.shape[0]} entries, expected B={batch} (one per row of responses)")
    scores = scores.to(dtype=torch.float64, device=device if device is not None else scores.device)
    if scores.numel() and not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite; got NaN or infinite values")
    return scores


def group_index(group: Any, batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[Any]]:
    """Dense group ids in first-appearance order.

    Args:
        group: [B] integer tensor / numpy array, or any sequence of B hashables (verl passes string uids).
        batch: expected length B.
        device: where to put the ids.

    Returns:
        (ids, keys): ids [B] int64 in [0, G) with ids[i] the index of rollout i's group, and keys the G original
        group keys in order of first appearance.
    """
    if isinstance(group, torch.Tensor) or (hasattr(group, "dtype") and hasattr(group, "shape") and group.dtype != object):
        tensor = group if isinstance(group, torch.Tensor) else torch.as_tensor(group)
        if tensor.dim() != 1:
            raise ValueError(f"group must be 1-D [B], got shape {tuple(tensor.shape)}")
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
            raise TypeError(f"group must hold integer ids or hashables, got dtype {tensor.dtype}")
        if tensor.shape[0] != batch:
            raise ValueError(f"group has {tensor.shape[0]} entries, expected B={batch} (one per row of responses)")
        tensor = tensor.to(device=device, dtype=torch.int64)
        if batch == 0:
            return tensor, []
        uniq, inverse = torch.unique(tensor, return_inverse=True)
        first = torch.full((len(uniq),), batch, dtype=torch.int64, device=tensor.device)
        first.scatter_reduce_(0, inverse, torch.arange(batch, device=tensor.device), reduce="amin")
        order = torch.argsort(first)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=tensor.device)
        return rank[inverse], uniq[order].tolist()
    if isinstance(group, (str, bytes)) or not isinstance(group, (Sequence,)) and not hasattr(group, "__len__"):
        raise TypeError(f"group must be a 1-D tensor or a sequence of hashables, got {type(group).__name__}")
    items = list(group)
    if len(items) != batch:
        raise ValueError(f"group has {len(items)} entries, expected B={batch} (one per row of responses)")
    mapping: dict[Any, int] = {}
    try:
        ids = [mapping.setdefault(item, len(mapping)) for item in items]
    except TypeError as err:
        raise TypeError(f"group entries must be hashable: {err}") from err
    return torch.tensor(ids, dtype=torch.int64, device=device), list(mapping)


def _check_batch(
    responses: Any, response_mask: Any, scores: Any, group: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[Any]]:
    if not isinstance(responses, torch.Tensor):
        if hasattr(responses, "__array__"):
            responses = torch.as_tensor(responses)
        else:
            raise TypeError(f"responses must be a [B, L] integer tensor, got {type(responses).__name__}")
    if responses.dtype.is_floating_point or responses.dtype.is_complex or responses.dtype == torch.bool:
        raise TypeError(f"responses must hold integer token ids, got dtype {responses.dtype}")
    if responses.dim() != 2:
        raise ValueError(f"responses must be 2-D [B, L], got shape {tuple(responses.shape)}")
    batch = responses.shape[0]
    if not isinstance(response_mask, torch.Tensor):
        if hasattr(response_mask, "__array__"):
            response_mask = torch.as_tensor(response_mask)
        else:
            raise TypeError(f"response_mask must be a [B, L] tensor of 0/1, got {type(response_mask).__name__}")
    if response_mask.shape != responses.shape:
        raise ValueError(
            f"response_mask has shape {tuple(response_mask.shape)}, expected {tuple(responses.shape)} like responses"
        )
    if response_mask.dtype.is_complex:
        raise TypeError(f"response_mask must hold 0/1 or booleans, got dtype {response_mask.dtype}")
    mask = response_mask.to(responses.device)
    if mask.dtype != torch.bool:
        if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("response_mask must contain only 0/1 (or True/False)")
        mask = mask != 0
    scores = _check_scores(scores, batch, responses.device)
    ids, keys = group_index(group, batch, responses.device)
    if responses.numel() and int(responses.min()) < 0 and bool(((responses < 0) & mask).any()):
        raise ValueError("responses has negative token ids at unmasked positions; token ids must be >= 0")
    return responses.to(torch.int64), mask, scores, ids, keys


# ---------------------------------------------------------------------------------------------------------------
# rollout-level estimators: [B] scores -> [B] advantages
# ---------------------------------------------------------------------------------------------------------------


def _group_moments(scores: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-rollout group size, group mean and unbiased group std (std 0 for groups of one). float64 [B] each."""
    num_groups = int(ids.max()) + 1 if ids.numel() else 0
    size = torch.zeros(num_groups, dtype=torch.float64, device=scores.device).index_add_(0, ids, torch.ones_like(scores))
    total = torch.zeros_like(size).index_add_(0, ids, scores)
    mean = total / size
    squares = torch.zeros_like(size).index_add_(0, ids, (scores - mean[ids]) ** 2)
    std = torch.where(size > 1, torch.sqrt(squares / (size - 1).clamp(min=1)), torch.zeros_like(size))
    return size[ids], mean[ids], std[ids]


def grpo_advantages(scores: Any, group: Any, eps: float = 1e-6) -> torch.Tensor:
    """GRPO outcome advantage ``(score - group mean) / (group std + eps)`` (std unbiased).

    A group of one rollout uses mean 0 and std 1 (verl's convention).

    Args:
        scores: [B] outcome rewards. group: [B] prompt ids (tensor or sequence of hashables).
        eps: added to the std.

    Returns:
        [B] float32 advantages on the device of ``scores``.
    """
    scores = _check_scores(scores)
    ids, _ = group_index(group, scores.shape[0], scores.device)
    size, mean, std = _group_moments(scores, ids)
    single = size == 1
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)
    return ((scores - mean) / (std + eps)).to(torch.float32)


def dr_grpo_advantages(scores: Any, group: Any) -> torch.Tensor:
    """Dr. GRPO outcome advantage ``score - group mean`` (no std division; a group of one uses mean 0).

    Returns:
        [B] float32.
    """
    scores = _check_scores(scores)
    ids, _ = group_index(group, scores.shape[0], scores.device)
    size, mean, _ = _group_moments(scores, ids)
    mean = torch.where(size == 1, torch.zeros_like(mean), mean)
    return (scores - mean).to(torch.float32)


def rloo_advantages(scores: Any, group: Any) -> torch.Tensor:
    """RLOO advantage: score minus the mean of the *other* rollouts of the group (a group of one: the score).

    Returns:
        [B] float32.
    """
    scores = _check_scores(scores)
    ids, _ = group_index(group, scores.shape[0], scores.device)
    size, mean, _ = _group_moments(scores, ids)
    leave_one_out = torch.where(size > 1, (scores - mean) * size / (size - 1).clamp(min=1), scores)
    return leave_one_out.to(torch.float32)


def rollout_advantages(scores: Any, group: Any, config: KTAEConfig | None = None) -> torch.Tensor:
    """The rollout-level advantage selected by ``config.rollout`` (grpo, dr_grpo or rloo). [B] float32."""
    config = config or KTAEConfig()
    if config.rollout == "grpo":
        return grpo_advantages(scores, group, eps=config.eps)
    if config.rollout == "dr_grpo":
        return dr_grpo_advantages(scores, group)
    return rloo_advantages(scores, group)


# ---------------------------------------------------------------------------------------------------------------
# key-token values
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Rows:
    """One row per (group, distinct token present in the group), in the order of the sorted keys."""

    group: torch.Tensor  # [M] int64 dense group id
    token: torch.Tensor  # [M] int64
    a: torch.Tensor  # [M] correct rollouts containing the token
    b: torch.Tensor  # [M] wrong rollouts containing the token
    count_correct: torch.Tensor  # [M] occurrences in correct rollouts
    count_wrong: torch.Tensor  # [M] occurrences in wrong rollouts
    shape: tuple[int, int]  # [B, L] of the batch
    positions: torch.Tensor  # [N] flat positions (i * L + t) that were counted, row-major
    order: torch.Tensor  # [N] sorted slot -> index into positions

    def scatter(self, row_values: torch.Tensor) -> torch.Tensor:
        """Spread per-row values [M] to a [B, L] tensor: each counted position gets its row's value, others 0."""
        per_slot = torch.repeat_interleave(row_values, self.count_correct + self.count_wrong)
        compact = torch.empty_like(per_slot)
        compact[self.order] = per_slot
        out = torch.zeros(self.shape[0] * self.shape[1], dtype=row_values.dtype, device=row_values.device)
        return out.index_copy_(0, self.positions, compact).view(self.shape)


def _count_rows(
    responses: torch.Tensor,
    selected: torch.Tensor,
    selected_per_rollout: torch.Tensor,
    correct: torch.Tensor,
    ids: torch.Tensor,
    num_groups: int,
) -> _Rows:
    """Counts of every (group, token) present at the selected positions, from one sort of packed keys.

    Each position gets the key ``(((group * V + token) * 2 + correct) << s) + rank``, where ``rank`` is the
    rollout's index among the rollouts of its group with the same correctness (``s`` bits). After one sort, a
    (group, token) row is a contiguous run of keys, a change of key inside it is a new rollout, and the
    correctness bit is read off the key, so no per-position gather is needed.
    """
    device = responses.device
    batch = ids.numel()
    # rank of each rollout among the rollouts of its (group, correctness) class
    cls = ids * 2 + correct.to(torch.int64)
    by_class = torch.argsort(cls, stable=True)
    class_size = torch.bincount(cls, minlength=2 * num_groups)
    class_start = torch.cumsum(class_size, 0) - class_size
    rank = torch.empty(batch, dtype=torch.int64, device=device)
    rank[by_class] = torch.arange(batch, device=device) - class_start[cls[by_class]]
    shift = (int(class_size.max()) - 1).bit_length() if batch else 0
    vocab = int(responses.max()) + 1 if responses.numel() else 1
    # int32 keys sort faster and fit for typical batches (e.g. 128 groups x 16 rollouts, 152k vocabulary)
    key_dtype = torch.int32 if (2 * num_groups * vocab) << shift < 2**31 else torch.int64
    row_base = ((ids * vocab * 2 + correct.to(torch.int64)) << shift) + rank
    # positions are row-major, so each row's base repeats over its selected positions
    positions = selected.view(-1).nonzero().squeeze(1)
    keys = responses.reshape(-1).index_select(0, positions).to(key_dtype)
    keys <<= shift + 1
    keys += torch.repeat_interleave(row_base.to(key_dtype), selected_per_rollout)
    keys, order = torch.sort(keys)
    n = keys.numel()
    # runs of equal keys are one token in one rollout; look only at the first slot of each such run
    new_rollout = torch.ones(n, dtype=torch.bool, device=device)
    torch.ne(keys[1:], keys[:-1], out=new_rollout[1:])
    rollout_start = new_rollout.nonzero().squeeze(1)  # [R]
    del new_rollout
    rollout_key = keys[rollout_start]
    occurrences = torch.diff(rollout_start, append=torch.full((1,), n, dtype=rollout_start.dtype, device=device))
    is_correct = (rollout_key >> shift) & 1
    row_of_rollout = rollout_key >> (shift + 1)  # group * V + token
    new_row = torch.ones(row_of_rollout.numel(), dtype=torch.bool, device=device)
    torch.ne(row_of_rollout[1:], row_of_rollout[:-1], out=new_row[1:])
    row_start = new_row.nonzero().squeeze(1)  # [M] index of each row's first rollout run
    bounds = torch.cat([row_start, torch.full((1,), row_start.numel() and len(new_row), dtype=row_start.dtype,
                                              device=device)])

    def run_sums(values: torch.Tensor) -> torch.Tensor:
        # rows are contiguous runs of rollout runs: sums are differences of prefix sums at the run bounds
        prefix = torch.zeros(values.numel() + 1, dtype=torch.int64, device=device)
        torch.cumsum(values, 0, out=prefix[1:])
        at = prefix[bounds]
        return at[1:] - at[:-1]

    row_key = row_of_rollout[row_start].to(torch.int64)
    a = run_sums(is_correct)
    count_correct = run_sums(occurrences * is_correct)
    count_all = run_sums(occurrences)
    return _Rows(
        group=torch.div(row_key, vocab, rounding_mode="floor"),
        token=row_key % vocab,
        a=a,
        b=bounds[1:] - bounds[:-1] - a,
        count_correct=count_correct,
        count_wrong=count_all - count_correct,
        shape=tuple(selected.shape),
        positions=positions,
        order=order,
    )


def _table_statistics(n_true: torch.Tensor, n_false: torch.Tensor, config: KTAEConfig) -> dict[str, torch.Tensor]:
    """Fisher p, F, IG and arcsine distance of every possible table of the given column totals.

    Args:
        n_true, n_false: [P] int64, distinct (nT, nF) pairs of the batch's groups.

    Returns:
        dict of float64 tensors of length sum((nT + 1)(nF + 1)) (entry for pair i, counts a, b at
        ``offset[i] + a (nF + 1) + b``), plus "offset" [P] int64.
    """
    sizes = (n_true + 1) * (n_false + 1)
    offset = torch.cumsum(sizes, 0) - sizes
    pair = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)
    local = torch.arange(pair.numel(), device=sizes.device) - offset[pair]
    nt, nf = n_true[pair], n_false[pair]
    a = torch.div(local, nf + 1, rounding_mode="floor")
    b = local % (nf + 1)
    p_value = fisher_exact_pvalues(a, b, nt - a, nf - b)
    fisher = torch.exp(-2.0 * p_value)
    if config.fisher_at_one == "zero":
        fisher = torch.where((1.0 - p_value).abs() <= 1e-7, torch.zeros_like(fisher), fisher)
    return {
        "offset": offset,
        "p_value": p_value,
        "fisher": fisher,
        "info_gain": information_gain(a, b, nt - a, nf - b),
        "arcsine": arcsine_distance(a, b, nt, nf),
    }


def _row_statistics(rows: _Rows, n_true: torch.Tensor, n_false: torch.Tensor, tokens_true: torch.Tensor,
                    tokens_false: torch.Tensor, config: KTAEConfig, details: bool) -> dict[str, torch.Tensor]:
    """Key-token value of each row (float64 [M]), and with ``details`` every intermediate statistic.

    ``n_true``/``n_false``/``tokens_true``/``tokens_false`` are per group ([G]). The table statistics depend only
    on (nT, nF, a, b): they are computed once for every possible table of each distinct (nT, nF) and gathered.
    Rows of groups that are all correct or all wrong, and of ignored tokens, get value 0.
    """
    pairs, group_pair = torch.unique(torch.stack([n_true, n_false], dim=1), dim=0, return_inverse=True)
    tables = _table_statistics(pairs[:, 0], pairs[:, 1], config)
    strength = (config.alpha * tables["fisher"] + config.beta * tables["info_gain"]) / (config.alpha + config.beta)
    g = rows.group
    # per group: where its tables start in the lookup, and the row stride (nF + 1)
    group_offset = tables["offset"][group_pair]
    stride = n_false + 1
    lookup = group_offset[g] + rows.a * stride[g] + rows.b
    tf_ratio = _term_frequency_ratio(
        rows.count_correct, rows.count_wrong, tokens_true, tokens_false, k1=2.0, b=0.5, smoothing=1e-5, index=g
    )
    direction = tables["arcsine"][lookup] + config.gamma * tf_ratio
    score = strength[lookup] * direction
    value = torch.sigmoid(score).mul_(2.0).sub_(1.0).mul_(config.top)
    keep = None
    if details:
        keep = (n_true[g] > 0) & (n_false[g] > 0)
    if config.ignore_token_ids:
        ignored = torch.tensor(config.ignore_token_ids, dtype=torch.int64, device=value.device)
        keep = ~torch.isin(rows.token, ignored) if keep is None else keep & ~torch.isin(rows.token, ignored)
    if keep is not None:
        value = torch.where(keep, value, torch.zeros_like(value))
    out = {"value": value}
    if details:
        out.update(
            n_correct=n_true[g],
            n_wrong=n_false[g],
            p_value=tables["p_value"][lookup],
            fisher=tables["fisher"][lookup],
            info_gain=tables["info_gain"][lookup],
            arcsine=tables["arcsine"][lookup],
            tf_ratio=tf_ratio,
            direction=direction,
            score=score,
        )
    return out


def group_totals(
    lengths: torch.Tensor, correct: torch.Tensor, ids: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group [G] int64: correct rollouts nT, wrong rollouts nF, unmasked tokens in correct (NT) / wrong (NF).

    Args:
        lengths: [B] int64 unmasked tokens of each rollout. correct: [B] bool. ids: [B] dense group ids.

    A rollout with no unmasked token (``lengths == 0``: a completion masked out as truncated or filtered) is
    not a member of its group: it counts in neither nT nor nF.
    """
    member = (lengths > 0).to(torch.int64)
    correct = correct.to(torch.int64)
    zeros = torch.zeros(num_groups, dtype=torch.int64, device=ids.device)
    n_true = zeros.clone().index_add_(0, ids, correct * member)
    n_false = zeros.clone().index_add_(0, ids, (1 - correct) * member)
    tokens_true = zeros.clone().index_add_(0, ids, lengths * correct)
    tokens_false = zeros.clone().index_add_(0, ids, lengths * (1 - correct))
    return n_true, n_false, tokens_true, tokens_false


#: selected tokens per block of groups in `key_token_values` on a CPU: a block's sort, random scatter and
#: temporaries stay cache-sized (1M tokens: about 15 MB of working set). GPUs take the batch in one block.
CPU_BLOCK_TOKENS = 1 << 20


def _group_blocks(tokens_per_group: torch.Tensor, budget: int | None) -> list[tuple[int, int]]:
    """Consecutive ranges [g0, g1) of groups holding about ``budget`` tokens each (one range if budget is None)."""
    num_groups = tokens_per_group.numel()
    if budget is None or num_groups == 0:
        return [(0, num_groups)]
    block = torch.div(torch.cumsum(tokens_per_group, 0) - tokens_per_group, budget, rounding_mode="floor")
    starts = (torch.nonzero(torch.diff(block, prepend=block[:1] - 1)).squeeze(1)).tolist()
    return list(zip(starts, starts[1:] + [num_groups]))


def _prepare(responses, response_mask, scores, group, config: KTAEConfig):
    responses, mask, scores, ids, keys = _check_batch(responses, response_mask, scores, group)
    correct = scores > config.threshold
    lengths = mask.sum(dim=1, dtype=torch.int32).to(torch.int64)
    totals = group_totals(lengths, correct, ids, len(keys))
    return responses, mask, ids, keys, correct, lengths, totals


def key_token_values(
    responses: torch.Tensor,
    response_mask: torch.Tensor,
    scores: Any,
    group: Any,
    config: KTAEConfig | None = None,
) -> torch.Tensor:
    """Key-token value K of the token at every position (spec §2–4).

    For each group, rollouts with ``score > config.threshold`` are correct, the others wrong. For each token
    present in the group, its 2x2 presence table gives Fisher's p (F = exp(-2p)), the information gain and the
    arcsine distance; its occurrence counts give the BM25 term-frequency ratio. Then
    ``s = (alpha F + beta IG)(h + gamma r) / (alpha + beta)`` and ``K = top (2 sigmoid(s) - 1)``.
    Groups that are all correct or all wrong get K = 0. A rollout whose mask is all zero (e.g. a completion
    masked out because it was truncated) is not a member of its group: it counts in neither nT nor nF, so it
    cannot make a group mixed nor dilute the presence rates.

    Args:
        responses: [B, L] integer token ids. response_mask: [B, L] 0/1. scores: [B] outcome rewards.
        group: [B] prompt ids. config: KTAEConfig (defaults: the paper's effective settings).

    Returns:
        [B, L] float32 on the device of ``responses``: K of the token at each unmasked position, 0 at masked
        positions and for ``config.ignore_token_ids``.
    """
    config = config or KTAEConfig()
    responses, mask, ids, keys, correct, lengths, totals = _prepare(responses, response_mask, scores, group, config)
    n_true, n_false = totals[0], totals[1]
    mixed = (n_true > 0) & (n_false > 0)  # only these groups have non-zero values
    out = torch.zeros(responses.shape, dtype=torch.float32, device=responses.device)
    tokens_per_group = torch.where(mixed, totals[2] + totals[3], torch.zeros_like(n_true))
    budget = CPU_BLOCK_TOKENS if responses.device.type == "cpu" else None
    for g0, g1 in _group_blocks(tokens_per_group, budget):
        members = (mixed[ids] & (ids >= g0) & (ids < g1)).nonzero().squeeze(1)
        if members.numel() == 0:
            continue
        whole = members.numel() == responses.shape[0]
        take = (lambda t: t) if whole else (lambda t: t[members])  # noqa: E731
        rows = _count_rows(take(responses), take(mask), take(lengths), take(correct), take(ids) - g0, g1 - g0)
        stats = _row_statistics(rows, *(t[g0:g1] for t in totals), config, details=False)
        values = rows.scatter(stats["value"].to(torch.float32))
        if whole:
            return values
        out[members] = values
    return out


class KTAEParts(NamedTuple):
    """The parts of the KTAE token advantage, computed together by :func:`ktae_parts`."""

    advantages: torch.Tensor   # [B, L] float32: (rollout[i] + key_values[i, t]) * mask[i, t]
    rollout: torch.Tensor      # [B] float32: the rollout-level advantage A_i (config.rollout)
    key_values: torch.Tensor   # [B, L] float32: K of the token at each position (0 where masked)


def ktae_parts(
    responses: torch.Tensor,
    response_mask: torch.Tensor,
    scores: Any,
    group: Any,
    config: KTAEConfig | None = None,
) -> KTAEParts:
    """The token advantages of KTAE with their two parts, in one pass: ``A_i``, ``K`` and ``(A_i + K) * mask``.

    For callers that need the parts too (a trainer logging the key-token values, a sequence-level decision
    that must read ``A_i``); :func:`ktae_advantages` gives the advantages alone, as verl's estimators do.

    Returns:
        :class:`KTAEParts` ``(advantages [B, L], rollout [B], key_values [B, L])``, float32, on the device of
        ``responses``; ``advantages`` is a new tensor (``key_values`` is not changed).
    """
    config = config or KTAEConfig()
    values = key_token_values(responses, response_mask, scores, group, config)
    rollout = rollout_advantages(_check_scores(scores, values.shape[0], values.device), group, config)
    mask = torch.as_tensor(response_mask, device=values.device)
    unmasked = mask if mask.dtype == torch.bool else mask != 0
    advantages = (values + rollout.unsqueeze(1)).masked_fill_(~unmasked, 0.0)
    return KTAEParts(advantages, rollout, values)


def ktae_advantages(
    responses: torch.Tensor,
    response_mask: torch.Tensor,
    scores: Any,
    group: Any,
    config: KTAEConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level KTAE advantages: ``(A_i + K(responses[i, t])) * response_mask[i, t]`` (spec §5).

    ``A_i`` is the rollout-level advantage chosen by ``config.rollout``; ``K`` is `key_token_values`
    (:func:`ktae_parts` gives both parts as well). Returns equal the advantages (outcome-only setting); as
    verl's estimators do, the same tensor is returned twice, so clone one before changing it in place.

    Returns:
        (advantages, returns): [B, L] float32 each, on the device of ``responses``.
    """
    advantages = ktae_parts(responses, response_mask, scores, group, config).advantages
    return advantages, advantages


# ---------------------------------------------------------------------------------------------------------------
# inspection
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class KeyTokenTable:
    """Statistics of every (group, distinct token) of a batch: 1-D tensors of length M, one entry per row.

    ``group`` indexes ``group_keys`` (the original prompt ids in first-appearance order). Counts are int64,
    statistics float64. Rows are ordered by group, then token id.
    """

    group_keys: list[Any]
    group: torch.Tensor
    token: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    n_correct: torch.Tensor
    n_wrong: torch.Tensor
    count_correct: torch.Tensor
    count_wrong: torch.Tensor
    p_value: torch.Tensor
    fisher: torch.Tensor
    info_gain: torch.Tensor
    arcsine: torch.Tensor
    tf_ratio: torch.Tensor
    direction: torch.Tensor
    score: torch.Tensor
    value: torch.Tensor

    _COLUMNS = (
        "group", "token", "a", "b", "n_correct", "n_wrong", "count_correct", "count_wrong",
        "p_value", "fisher", "info_gain", "arcsine", "tf_ratio", "direction", "score", "value",
    )

    def __len__(self) -> int:
        return int(self.token.numel())

    def records(self, rows: torch.Tensor | None = None) -> list[dict[str, Any]]:
        """Rows as plain dicts (Python ints and floats), with ``group_key`` added; all rows or the given ones."""
        columns = {name: getattr(self, name) for name in self._COLUMNS}
        if rows is not None:
            columns = {name: col[rows] for name, col in columns.items()}
        lists = {name: col.tolist() for name, col in columns.items()}
        out = []
        for i in range(len(lists["token"])):
            record = {name: lists[name][i] for name in self._COLUMNS}
            record["group_key"] = self.group_keys[record["group"]]
            out.append(record)
        return out

    def strongest(self, group_index: int, k: int = 10) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The k most positive and the k most negative tokens of one group, as records.

        Ranked by the score ``s`` (K is monotone in it but saturates at +-top, where ranking by K would tie).
        """
        if not 0 <= group_index < len(self.group_keys):
            raise ValueError(f"group_index must be in [0, {len(self.group_keys)}), got {group_index}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        # rows are sorted by group: the group's rows are one slice
        lo, hi = torch.searchsorted(self.group, torch.tensor([group_index, group_index + 1])).tolist()
        rows = torch.arange(lo, hi)
        value, score = self.value[lo:hi], self.score[lo:hi]
        positive, negative = rows[value > 0], rows[value < 0]
        positive = positive[torch.argsort(score[value > 0], descending=True, stable=True)][:k]
        negative = negative[torch.argsort(score[value < 0], stable=True)][:k]
        return self.records(positive), self.records(negative)


def explain(
    responses: torch.Tensor,
    response_mask: torch.Tensor,
    scores: Any,
    group: Any,
    config: KTAEConfig | None = None,
) -> KeyTokenTable:
    """Every intermediate quantity of KTAE, per group and distinct token, for reports and debugging.

    Same inputs as `key_token_values`; all groups are listed (uniform groups have K = 0 but their counts are
    still reported).

    Returns:
        A `KeyTokenTable` (CPU tensors).
    """
    config = config or KTAEConfig()
    responses, mask, ids, keys, correct, lengths, totals = _prepare(responses, response_mask, scores, group, config)
    rows = _count_rows(responses, mask, lengths, correct, ids, len(keys))
    stats = _row_statistics(rows, *totals, config, details=True)
    columns = {
        "group": rows.group,
        "token": rows.token,
        "a": rows.a,
        "b": rows.b,
        "count_correct": rows.count_correct,
        "count_wrong": rows.count_wrong,
        **stats,
    }
    names = {f.name for f in fields(KeyTokenTable)} - {"group_keys"}
    return KeyTokenTable(group_keys=keys, **{name: columns[name].cpu() for name in names})
