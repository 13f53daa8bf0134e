"""Label-free token credit (issue 30): rules that guess where a wrong rollout went wrong from its group alone.

Same batch as :mod:`ktae.core.advantages` (``responses`` [B, L], ``response_mask`` [B, L], ``scores`` [B], ``group``
[B]). ``A_i`` is the rollout-level advantage of ``config.rollout``; a rollout is correct when its score is
``> config.threshold``; a rollout whose mask is all zero is no member of its group; a group is *mixed* when it has
a correct and a wrong member, and ``W_i`` says "rollout i is a wrong member of a mixed group". Every rule but
:func:`tree_advantages` and the additive unit KTAE (which change every rollout of a mixed group) gives the rollouts
that are not ``W_i`` their rollout advantage ``A_i`` on every token; every rule gives 0 at masked positions.

A rule reads a response as its *sequence*: its unmasked tokens in order (for a right-padded batch, the first
``length_i`` tokens; a masked position inside a response is skipped, not a break). A *line* is a run of tokens
up to and including a newline token (one of ``newline_ids``) or up to the end of the sequence, compared as token
ids (the same text tokenized differently is a different line).

* :func:`prefix_advantages` (``grpo+prefix``): the longest prefix a wrong rollout shares with a correct one gets 0;
* :func:`line_advantages` (``grpo+line``): a line a correct rollout of the group also wrote gets 0;
* :func:`first_novel_advantages` (``grpo+first-novel``, the project's own): 0 before the first line that no correct
  rollout wrote, ``A_i`` from it on;
* :func:`unit_ktae_advantages` (``grpo+line-ktae``, ``grpo+ngram-ktae`` and their ``-blame`` forms): KTAE's own
  statistics over the presence of lines or token n-grams instead of single tokens;
* :func:`tree_advantages` (``grpo+tree``): the value of each prefix in the group's prefix tree, after TreeRL.

:func:`label_free_advantages` picks one by its name (:data:`LABEL_FREE_CREDITS`). Everything is computed for the
whole batch at once: pairs of rollouts of a group are compared as ``[pairs, L]`` tensors (in blocks of about
:data:`PAIR_BLOCK` elements), lines and n-grams become dense ids with one ``torch.unique``; no Python loop over
tokens, rollouts or groups.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch

from ktae.core.advantages import _check_batch, key_token_values, rollout_advantages
from ktae.core.config import KTAEConfig
from ktae.core.credit import mixed_members

__all__ = ["prefix_advantages", "line_advantages", "first_novel_advantages", "unit_key_values",
           "unit_ktae_advantages", "tree_advantages", "label_free_advantages", "LABEL_FREE_CREDITS",
           "NEWLINE_CREDITS", "UNITS", "PAIR_BLOCK"]

#: the label-free token credits, as written after ``+`` in an estimator name (``grpo+prefix``)
LABEL_FREE_CREDITS = ("prefix", "line", "first-novel", "line-ktae", "line-ktae-blame", "ngram-ktae",
                      "ngram-ktae-blame", "tree")
#: the credits that cut responses into lines: they need the newline token ids of the tokenizer
NEWLINE_CREDITS = ("line", "first-novel", "line-ktae", "line-ktae-blame")
#: the units of the step-level KTAE
UNITS = ("line", "ngram")
#: elements of one block of compared pairs of rollouts ([pairs, L]): a few MB of working set
PAIR_BLOCK = 1 << 22


class _Sides(NamedTuple):
    """A checked batch with the sides of its rollouts."""

    responses: torch.Tensor   # [B, L] int64
    mask: torch.Tensor        # [B, L] bool
    ids: torch.Tensor         # [B] dense group ids
    rollout: torch.Tensor     # [B] float32 A_i
    correct: torch.Tensor     # [B] bool: a correct member of its group
    member: torch.Tensor      # [B] bool: some unmasked token
    wrong: torch.Tensor       # [B] bool: W_i, a wrong member of a mixed group


def _sides(responses: Any, response_mask: Any, scores: Any, group: Any, config: KTAEConfig) -> _Sides:
    responses, mask, scores, ids, _ = _check_batch(responses, response_mask, scores, group)
    rollout = rollout_advantages(scores, ids, config).to(responses.device)
    member = mask.any(dim=1)
    correct = scores > config.threshold
    wrong = ~correct & mixed_members(correct, member, ids)
    return _Sides(responses, mask, ids, rollout, correct & member, member, wrong)


def _sequences(responses: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each response's sequence at the front of its row: ``(tokens, kept, order)``, [B, L] each.

    ``tokens[i, k]`` is the k-th unmasked token of row i (-1 past its end), ``kept`` marks the real ones, and
    ``order[i, k]`` is the position in ``responses`` it came from (:func:`_to_positions` puts values back).
    """
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    kept = mask.gather(1, order)
    tokens = responses.gather(1, order).masked_fill(~kept, -1)
    return tokens, kept, order


def _to_positions(values: torch.Tensor, order: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Values on the sequences ([B, L], see :func:`_sequences`) back at the response positions; 0 where masked."""
    out = torch.zeros_like(values).scatter_(1, order, values)
    return out.masked_fill_(~mask, 0)


def _check_newlines(newline_ids: Any) -> tuple[int, ...]:
    try:
        ids = tuple(int(i) for i in newline_ids)
    except (TypeError, ValueError):
        raise ValueError(f"newline_ids must be a sequence of token ids, got {newline_ids!r}") from None
    if any(i < 0 for i in ids):
        raise ValueError(f"newline_ids must be non-negative token ids, got {ids!r}")
    return ids


# ---------------------------------------------------------------------------------------------------------------
# shared prefixes
# ---------------------------------------------------------------------------------------------------------------


def _prefix_sums(tokens: torch.Tensor, kept: torch.Tensor, ids: torch.Tensor, left: torch.Tensor,
                 right: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sums over the rollouts that share a prefix: float64 [B, L, K].

    ``out[i, t] = sum of weights[j]`` over the rollouts j in ``right`` of i's group (i itself included when it is
    in ``right``) whose sequence starts with the first ``t + 1`` tokens of i's, for the rows i in ``left``; 0
    elsewhere. ``tokens``/``kept``: the sequences of :func:`_sequences`. ``weights``: [B, K].
    """
    batch, length = tokens.shape
    out = torch.zeros(batch, length, weights.shape[1], dtype=torch.float64, device=tokens.device)
    rows, others = left.nonzero().squeeze(1), right.nonzero().squeeze(1)
    if rows.numel() == 0 or others.numel() == 0 or length == 0:
        return out
    others = others[torch.argsort(ids[others], stable=True)]
    count = torch.bincount(ids[others], minlength=int(ids.max()) + 1)
    start = torch.cumsum(count, 0) - count
    per_row = count[ids[rows]]
    pair_i = torch.repeat_interleave(rows, per_row)
    offset = torch.arange(pair_i.numel(), device=tokens.device) - torch.repeat_interleave(
        torch.cumsum(per_row, 0) - per_row, per_row)
    pair_j = others[start[ids[pair_i]] + offset]
    weights = weights.to(torch.float64)
    step = max(1, PAIR_BLOCK // length)
    for lo in range(0, pair_i.numel(), step):
        i, j = pair_i[lo:lo + step], pair_j[lo:lo + step]
        same = (tokens[i] == tokens[j]) & kept[i] & kept[j]
        shared = torch.cumprod(same.to(torch.int8), dim=1).to(torch.float64)        # [P, L]
        out.index_add_(0, i, shared.unsqueeze(2) * weights[j].unsqueeze(1))
    return out


def prefix_advantages(responses: Any, response_mask: Any, scores: Any, group: Any,
                      config: KTAEConfig | None = None) -> torch.Tensor:
    """The prefix rule (``grpo+prefix``): a wrong rollout's steps that a correct rollout also took get no blame.

    ``adv[i, t] = A_i * mask[i, t]``, except in a wrong member i of a mixed group (``W_i``): its token t gets 0 when
    some correct member j of the group starts with the same first ``t + 1`` tokens (token for token, as ids) as
    i's sequence, and ``A_i`` from the first token at which i has left every correct member of its group.

    Ties: the longest prefix shared with *any* correct member counts (several correct members sharing it change
    nothing). A wrong rollout that equals a correct one, or is a prefix of one (truncated early), gets 0 on every
    token; a correct rollout that is a prefix of a wrong one leaves the wrong one's tokens after its end at
    ``A_i``. Padding (masked positions) is skipped and gets 0; an empty response (mask all 0) is no member and
    gets 0 everywhere. A group without a correct member (or without a wrong one) is plain GRPO: ``A_i`` on every
    token. Correct rollouts are plain GRPO too. ``config.ignore_token_ids`` are ordinary tokens here.

    Args:
        responses: [B, L] int token ids. response_mask: [B, L] 0/1. scores: [B]. group: [B] prompt ids.
        config: rollout estimator and threshold.

    Returns:
        [B, L] float32 on the device of ``responses``.
    """
    config = config or KTAEConfig()
    b = _sides(responses, response_mask, scores, group, config)
    tokens, kept, order = _sequences(b.responses, b.mask)
    ones = torch.ones(b.ids.numel(), 1, device=tokens.device)
    followed = _prefix_sums(tokens, kept, b.ids, b.wrong, b.correct, ones)[..., 0] > 0   # [B, L] on sequences
    gate = _to_positions((~followed).to(torch.float32), order, b.mask)
    return b.rollout.unsqueeze(1) * gate


def tree_advantages(responses: Any, response_mask: Any, scores: Any, group: Any,
                    config: KTAEConfig | None = None) -> torch.Tensor:
    """A prefix-tree value rule (``grpo+tree``) after TreeRL's process supervision (Hou et al. 2025, arXiv
    2506.11902, section 3): the group's sequences form a prefix tree, and a token is worth what the rollouts
    below it are worth, relative to the whole group and to the node above it.

    With ``V(p)`` the mean of ``A_j`` over the members j of the group whose sequence starts with the prefix ``p``
    (``V`` of the empty prefix: the mean of ``A_j`` over all members), token t of a member i gets

        ``adv[i, t] = (V(p_t) - V(root)) + (V(p_t) - V(p_{t-1}))``

    with ``p_t`` the first ``t + 1`` tokens of i's sequence: TreeRL's global advantage (against the root) plus its
    local one (against the parent node). Where i shares its prefix with no other member, ``V(p_t) = A_i`` and the
    token gets ``A_i - V(root)`` (``A_i`` for GRPO, whose ``A`` sum to 0 over a group of members); tokens every
    member wrote get 0 (no choice was made there); the token where a rollout branches off carries the change of
    value. Every rollout is treated alike, correct or wrong, in mixed groups or not (in a group whose members all
    scored the same every ``A_j`` is the same and the rule gives ``A_i - V(root)``, 0 for GRPO).

    How it differs from TreeRL: the tree is the prefix tree of rollouts sampled independently (TreeRL branches its
    own tree, EPTree, at high-entropy tokens), so its nodes are single tokens (a chain of tokens with the same
    rollouts below has one value, as a segment does there); ``V`` averages the normalised rollout advantages
    ``A_j`` (for GRPO: the group's scores less their mean, over their std) where TreeRL averages the leaves'
    correctness; and the values are not divided by the square root of the number of leaves below the node, as
    TreeRL's reweighting does. Empty responses are no members and get 0; padding gets 0.

    Returns:
        [B, L] float32 on the device of ``responses``.
    """
    config = config or KTAEConfig()
    b = _sides(responses, response_mask, scores, group, config)
    tokens, kept, order = _sequences(b.responses, b.mask)
    advantage = b.rollout.to(torch.float64)
    weights = torch.stack([torch.ones_like(advantage), advantage], dim=1)
    sums = _prefix_sums(tokens, kept, b.ids, b.member, b.member, weights)       # [B, L, 2]
    value = sums[..., 1] / sums[..., 0].clamp(min=1)                            # V(p_t)
    num_groups = int(b.ids.max()) + 1 if b.ids.numel() else 0
    member = b.member.to(torch.float64)
    totals = torch.zeros(num_groups, 2, dtype=torch.float64, device=tokens.device).index_add_(
        0, b.ids, torch.stack([member, member * advantage], dim=1))
    root = (totals[:, 1] / totals[:, 0].clamp(min=1))[b.ids].unsqueeze(1)       # [B, 1]
    parent = torch.cat([root, value[:, :-1]], dim=1)                            # V(p_{t-1})
    tree = (2 * value - root - parent).to(torch.float32).masked_fill_(~kept, 0)
    return _to_positions(tree, order, b.mask)


# ---------------------------------------------------------------------------------------------------------------
# units: lines and n-grams
# ---------------------------------------------------------------------------------------------------------------


class _Units(NamedTuple):
    """The units of each sequence: ``unit[i, k]`` of row i's k-th unit, ``present`` which exist, and ``at[i, t]``
    the index k of the unit of the sequence's token t (0 past the sequence's end)."""

    unit: torch.Tensor      # [B, U] int64 dense unit ids (the same token tuple, the same id, across the batch)
    present: torch.Tensor   # [B, U] bool
    at: torch.Tensor        # [B, L] int64


def _row_ids(rows: torch.Tensor) -> torch.Tensor:
    """Dense ids of the rows of an int64 matrix [N, W] of values >= -1: equal rows, equal ids. [N] int64.

    Rows that fit one int64 as digits of base ``max + 2`` (n-grams of short n) are packed into one key first: a
    1-D unique is several times faster than a unique over rows."""
    if rows.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=rows.device)
    base = int(rows.max()) + 2
    if base ** rows.shape[1] < 2**62:
        digits = base ** torch.arange(rows.shape[1], device=rows.device)
        return torch.unique(((rows + 1) * digits).sum(dim=1), return_inverse=True)[1]
    return torch.unique(rows, dim=0, return_inverse=True)[1]


def _line_units(tokens: torch.Tensor, kept: torch.Tensor, newline_ids: tuple[int, ...]) -> _Units:
    """Lines as units: a line is its token ids up to and including a newline token, or to the sequence's end."""
    batch, length = tokens.shape
    newline = torch.isin(tokens, torch.tensor(newline_ids, dtype=tokens.dtype, device=tokens.device)) & kept
    before = newline.to(torch.int64)
    line = (torch.cumsum(before, dim=1) - before).masked_fill_(~kept, 0)          # [B, L] line of each token
    position = torch.arange(length, device=tokens.device).expand(batch, length)
    starts = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=tokens.device), newline[:, :-1]], dim=1)
    column = position - torch.cummax(torch.where(starts, position, 0), dim=1).values   # place in its line
    rows, cols = kept.nonzero(as_tuple=True)
    slot = rows * length + line[rows, cols]                                    # (row, line) of each token
    slots, which = torch.unique(slot, return_inverse=True)
    width = int(column[rows, cols].max()) + 1 if rows.numel() else 1
    spelled = torch.full((slots.numel(), width), -1, dtype=torch.int64, device=tokens.device)
    spelled[which, column[rows, cols]] = tokens[rows, cols]
    lines = int(line.max()) + 1 if line.numel() else 0
    unit = torch.zeros(batch, max(lines, 1), dtype=torch.int64, device=tokens.device)
    present = torch.zeros_like(unit, dtype=torch.bool)
    slot_row, slot_line = torch.div(slots, length, rounding_mode="floor"), slots % length
    unit[slot_row, slot_line] = _row_ids(spelled)
    present[slot_row, slot_line] = True
    return _Units(unit, present, line)


def _ngram_units(tokens: torch.Tensor, kept: torch.Tensor, n: int) -> _Units:
    """Token n-grams as units: token t's unit is the n-gram ending at t (the sequence's first n - 1 tokens take the
    shorter gram from its start, which differs from the same tokens later in a sequence)."""
    batch, length = tokens.shape
    padded = torch.nn.functional.pad(tokens, (n - 1, 0), value=-1)
    grams = padded.unfold(1, n, 1) if length else tokens.new_empty(batch, 0, n)      # [B, L, n]
    unit = torch.zeros(batch, length, dtype=torch.int64, device=tokens.device)
    unit[kept] = _row_ids(grams[kept])
    return _Units(unit, kept, torch.arange(length, device=tokens.device).expand(batch, length))


def _units(tokens: torch.Tensor, kept: torch.Tensor, unit: str, newline_ids: Any, n: int) -> _Units:
    if unit == "line":
        return _line_units(tokens, kept, _check_newlines(newline_ids))
    if unit == "ngram":
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1 (the length of the n-grams), got {n!r}")
        return _ngram_units(tokens, kept, n)
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")


def _written_by_correct(units: _Units, b: _Sides) -> torch.Tensor:
    """[B, L] bool on the sequences: token t's unit was also written, anywhere, by a correct member of the group."""
    span = int(units.unit.max()) + 1 if units.unit.numel() else 1
    keyed = b.ids.unsqueeze(1) * span + units.unit                              # (group, unit)
    theirs = keyed[b.correct.unsqueeze(1) & units.present]
    return torch.isin(keyed, theirs).gather(1, units.at)


def line_advantages(responses: Any, response_mask: Any, scores: Any, group: Any, newline_ids: Any,
                    config: KTAEConfig | None = None) -> torch.Tensor:
    """The line rule (``grpo+line``): a wrong rollout's lines that a correct rollout of its group also wrote get 0.

    ``adv[i, t] = A_i * mask[i, t]``, except in a wrong member i of a mixed group: its token t gets 0 when the line
    holding t (the same token ids, the newline token included) is also a line of some correct member of the
    group, at any place; ``A_i`` otherwise. A response without a newline token is one line. Padding gets 0,
    empty responses are no members; groups without a correct (or a wrong) member and correct rollouts: GRPO.

    Args:
        newline_ids: the token ids that end a line (a tokenizer's tokens whose text holds a newline).

    Returns:
        [B, L] float32 on the device of ``responses``.
    """
    config = config or KTAEConfig()
    b = _sides(responses, response_mask, scores, group, config)
    tokens, kept, order = _sequences(b.responses, b.mask)
    shared = _written_by_correct(_line_units(tokens, kept, _check_newlines(newline_ids)), b)
    blamed = ~(b.wrong.unsqueeze(1) & shared)
    return b.rollout.unsqueeze(1) * _to_positions(blamed.to(torch.float32), order, b.mask)


def first_novel_advantages(responses: Any, response_mask: Any, scores: Any, group: Any, newline_ids: Any,
                           config: KTAEConfig | None = None) -> torch.Tensor:
    """From the first novel line on (``grpo+first-novel``; the project's own rule, issue 30).

    ``adv[i, t] = A_i * mask[i, t]``, except in a wrong member i of a mixed group: its tokens before its first
    *novel* line (a line, as token ids, that no correct member of the group wrote anywhere) get 0, and every
    token from the start of that line to the end of the response gets ``A_i``. A wrong rollout without a novel
    line (each of its lines written by some correct member: the same steps, reordered, or cut short) gets 0
    everywhere. Padding, empty responses, groups that are not mixed, correct rollouts: as :func:`line_advantages`.

    Why: the outcome of a wrong rollout is decided from its first mistake on: what follows a wrong step builds on
    it (study 3 measured the key-token values ranking the tokens "from the first wrong step on" better, AUROC
    0.59-0.60, than the wrong steps alone, 0.53). Where right steps are written the same way in every rollout, a
    step that no correct rollout wrote is the first candidate for the mistake. The prefix rule finds the same point
    as the place where a rollout leaves every correct rollout, but leaves too early when the right steps come in
    another order, or the text differs without a mistake; matching whole lines anywhere instead of prefixes
    forgives a reordering and starts the blame at a line's start, where the task's labels start.

    Returns:
        [B, L] float32 on the device of ``responses``.
    """
    config = config or KTAEConfig()
    b = _sides(responses, response_mask, scores, group, config)
    tokens, kept, order = _sequences(b.responses, b.mask)
    novel = ~_written_by_correct(_line_units(tokens, kept, _check_newlines(newline_ids)), b) & kept
    onward = torch.cummax(novel.to(torch.int8), dim=1).values.bool()
    blamed = onward | ~b.wrong.unsqueeze(1)
    return b.rollout.unsqueeze(1) * _to_positions(blamed.to(torch.float32), order, b.mask)


# ---------------------------------------------------------------------------------------------------------------
# step-level KTAE
# ---------------------------------------------------------------------------------------------------------------


def unit_key_values(responses: Any, response_mask: Any, scores: Any, group: Any, unit: str, *,
                    newline_ids: Any = (), n: int = 3, config: KTAEConfig | None = None) -> torch.Tensor:
    """KTAE's key-token value of each token's *unit* (a line or an n-gram) instead of the token's own.

    Each response becomes a sequence of units (``unit="line"``: its lines, one entry per line; ``unit="ngram"``: the
    n-gram ending at each token, the first ``n - 1`` tokens taking the shorter gram from the start), the units get
    dense ids (equal token tuples, equal ids) and :func:`~ktae.core.advantages.key_token_values` runs on those
    sequences unchanged: presence tables, Fisher, information gain, direction and the BM25 part over unit
    occurrences (a line counts once per time it is written, not once per token). Each token takes the value K of
    its unit. ``config.ignore_token_ids`` (pad, EOS) stay in the units they end (the last line holds the EOS) and
    their own tokens get K = 0, as in KTAE.

    Args:
        unit: "line" or "ngram". newline_ids: the ids that end a line (for lines). n: the n of the n-grams (>= 1;
            n = 1 is KTAE itself, but for the ignored ids counted in the tables).
        config: KTAE's options (alpha, beta, gamma, top, threshold, fisher_at_one).

    Returns:
        [B, L] float32 on the device of ``responses``: K of the unit of each token, 0 at masked positions.
    """
    config = config or KTAEConfig()
    responses, mask, scores, ids, _ = _check_batch(responses, response_mask, scores, group)
    tokens, kept, order = _sequences(responses, mask)
    units = _units(tokens, kept, unit, newline_ids, n)
    per_unit = key_token_values(units.unit, units.present, scores, ids,
                                dataclasses.replace(config, ignore_token_ids=()))       # [B, U]
    values = per_unit.gather(1, units.at).masked_fill_(~kept, 0)
    if config.ignore_token_ids:
        ignored = torch.tensor(config.ignore_token_ids, dtype=tokens.dtype, device=tokens.device)
        values.masked_fill_(torch.isin(tokens, ignored), 0)
    return _to_positions(values, order, mask)


def unit_ktae_advantages(responses: Any, response_mask: Any, scores: Any, group: Any, unit: str, *,
                         newline_ids: Any = (), n: int = 3, blame: bool = False,
                         config: KTAEConfig | None = None) -> torch.Tensor:
    """Step-level KTAE (``grpo+line-ktae``, ``grpo+ngram-ktae``, ``-blame``): KTAE over lines or n-grams.

    With ``K`` the :func:`unit_key_values` of each token:

    * additive form (``blame=False``): ``adv[i, t] = (A_i + K[i, t]) * mask[i, t]``, as KTAE with units for tokens;
    * blame form (``blame=True``): in a wrong member i of a mixed group, ``A_i`` on the tokens whose unit leans to
      the wrong rollouts (``K < 0``: KTAE's direction says the unit is rarer, or less frequent, in the correct
      rollouts; a unit only wrong rollouts wrote is the clearest case) and 0 on the others (ignored ids
      included); every other rollout ``A_i`` on every token.

    Returns:
        [B, L] float32 on the device of ``responses``.
    """
    config = config or KTAEConfig()
    values = unit_key_values(responses, response_mask, scores, group, unit, newline_ids=newline_ids, n=n,
                             config=config)
    b = _sides(responses, response_mask, scores, group, config)
    base = b.rollout.unsqueeze(1) * b.mask
    if not blame:
        return (base + values).masked_fill_(~b.mask, 0.0)
    return torch.where(b.wrong.unsqueeze(1) & (values >= 0), torch.zeros_like(base), base)


def label_free_advantages(credit: str, responses: Any, response_mask: Any, scores: Any, group: Any,
                          config: KTAEConfig | None = None, *, newline_ids: Any = (), n: int = 3) -> torch.Tensor:
    """The token advantages [B, L] float32 of the label-free credit ``credit`` (one of :data:`LABEL_FREE_CREDITS`).

    ``newline_ids`` is read by the credits of :data:`NEWLINE_CREDITS`, ``n`` by the n-gram KTAE.

    Raises:
        ValueError: an unknown credit, or bad ``newline_ids`` / ``n``.
    """
    batch = (responses, response_mask, scores, group)
    if credit == "prefix":
        return prefix_advantages(*batch, config)
    if credit == "line":
        return line_advantages(*batch, newline_ids, config)
    if credit == "first-novel":
        return first_novel_advantages(*batch, newline_ids, config)
    if credit == "tree":
        return tree_advantages(*batch, config)
    unit, _, form = credit.partition("-ktae")
    if unit in UNITS and form in ("", "-blame"):
        return unit_ktae_advantages(*batch, unit, newline_ids=newline_ids, n=n, blame=form == "-blame",
                                    config=config)
    raise ValueError(f"credit must be one of {LABEL_FREE_CREDITS}, got {credit!r}")
