"""Token credit for the study of issue 25: an oracle that knows the mistakes, and a label-free gate.

Same batch as :mod:`ktae.core.advantages` (``responses`` [B, L], ``response_mask`` [B, L], ``scores`` [B],
``group`` [B]). ``A_i`` is the rollout-level advantage of ``config.rollout``; a rollout is correct when its score
is ``> config.threshold``; a rollout whose mask is all zero is no member of its group (as in KTAE). A group is
*mixed* when it has both a correct and a wrong member.

* :func:`oracle_advantages` — a measuring instrument, not a method: it reads labels of the wrong steps that only
  a task that generates its own solutions can give (the word problems), to show what token-level credit that
  knows the mistakes can do on a testbed (a positive control).
* :func:`gate_advantages` — the project's own label-free approximation of the blame form of the oracle
  (``grpo-ktae-gate`` in the study): from the same presence counts as KTAE, a token shared by right and wrong
  rollouts carries little of ``A_i``, a token only one side wrote carries all of it.
"""
from __future__ import annotations

from typing import Any

import torch

from ktae.core.advantages import (
    _check_batch, _check_scores, _count_rows, group_totals, group_index, rollout_advantages,
)
from ktae.core.config import KTAEConfig

__all__ = ["mixed_members", "oracle_advantages", "specificity_gate", "gate_values", "gate_advantages"]


def mixed_members(correct: torch.Tensor, member: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Which rollouts are members of a mixed group.

    Args:
        correct: [B] bool, the rollout is correct. member: [B] bool, the rollout counts in its group (some unmasked
            token). ids: [B] int64 dense group ids in [0, G).

    Returns:
        [B] bool: ``member[i]`` and rollout i's group has at least one correct and one wrong member.
    """
    num_groups = int(ids.max()) + 1 if ids.numel() else 0
    n_true, n_false, _, _ = group_totals(member.to(torch.int64), correct, ids, num_groups)   # KTAE's own counts
    return member & (n_true[ids] > 0) & (n_false[ids] > 0)


def oracle_advantages(
    response_mask: torch.Tensor,
    scores: Any,
    group: Any,
    mistake: torch.Tensor,
    config: KTAEConfig | None = None,
    blame_only: bool = False,
) -> torch.Tensor:
    """Token advantages that know the labelled wrong steps (a positive control, not a method for users).

    With ``W_i`` = "rollout i is a wrong member of a mixed group" and ``c = config.top`` (1 by default: the bound
    of KTAE's key-token value):

    * penalty form (``blame_only=False``): ``adv[i, t] = (A_i - c * W_i * mistake[i, t]) * mask[i, t]`` — the
      tokens of wrong steps of those rollouts get ``A_i - c``, every other token ``A_i`` as in GRPO;
    * blame form (``blame_only=True``): ``adv[i, t] = A_i * (mistake[i, t] if W_i else 1) * mask[i, t]`` — in
      those rollouts only the tokens of wrong steps carry ``A_i``, the others get 0 (a wrong rollout of a mixed
      group without a labelled wrong step gets 0 everywhere); every other rollout as in GRPO.

    Args:
        response_mask: [B, L] 0/1. scores: [B] outcome rewards. group: [B] prompt ids.
        mistake: [B, L] bool (or 0/1): the token at (i, t) lies in a labelled wrong step of rollout i.
        config: rollout estimator, threshold and ``top`` (= c). blame_only: the blame form.

    Returns:
        [B, L] float32 on the device of ``response_mask``.
    """
    config = config or KTAEConfig()
    mask = torch.as_tensor(response_mask)
    if mask.dim() != 2:
        raise ValueError(f"response_mask must be 2-D [B, L], got shape {tuple(mask.shape)}")
    mistake = torch.as_tensor(mistake, device=mask.device)
    if mistake.shape != mask.shape:
        raise ValueError(f"mistake has shape {tuple(mistake.shape)}, expected {tuple(mask.shape)} like response_mask")
    if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("response_mask must contain only 0/1 (or True/False)")
    mask = mask != 0
    scores = _check_scores(scores, mask.shape[0], mask.device)
    ids, _ = group_index(group, mask.shape[0], mask.device)
    mistake = (mistake != 0) & mask
    rollout = rollout_advantages(scores, ids, config).to(mask.device)        # [B]
    correct = scores > config.threshold
    wrong = ~correct & mixed_members(correct, mask.any(dim=1), ids)
    advantages = rollout.unsqueeze(1).expand(mask.shape).clone()
    if blame_only:
        advantages = torch.where(wrong.unsqueeze(1) & ~mistake, torch.zeros_like(advantages), advantages)
    else:
        advantages = advantages - config.top * (wrong.unsqueeze(1) & mistake).to(advantages.dtype)
    return advantages.masked_fill_(~mask, 0.0)


def specificity_gate(a: torch.Tensor, b: torch.Tensor, n_true: torch.Tensor, n_false: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """How specific a token is to each side of a mixed group, from its presence counts (spec §2's table).

    Args:
        a: [M] correct rollouts containing the token. b: [M] wrong rollouts containing it.
        n_true: [M] correct members of its group (> 0). n_false: [M] wrong members of its group (> 0).

    Returns:
        ``(in_correct, in_wrong)``, float64 [M] each, in [0, 1]: the gate of the token where a correct rollout
        has it, ``1 - b / n_false`` (the share of wrong rollouts that lack it), and where a wrong rollout has it,
        ``1 - a / n_true`` (the share of correct rollouts that lack it). A token every rollout of the other side
        wrote gets 0, a token none of them wrote gets 1.
    """
    in_correct = 1.0 - b.to(torch.float64) / n_false.clamp(min=1).to(torch.float64)
    in_wrong = 1.0 - a.to(torch.float64) / n_true.clamp(min=1).to(torch.float64)
    return in_correct.clamp(0.0, 1.0), in_wrong.clamp(0.0, 1.0)


def gate_values(
    responses: torch.Tensor, response_mask: torch.Tensor, scores: Any, group: Any, config: KTAEConfig | None = None
) -> torch.Tensor:
    """The gate of the token at every position: :func:`specificity_gate` of the rollout's side in mixed groups.

    Returns:
        [B, L] float32 on the device of ``responses``: for a rollout of a mixed group, the gate of its side for
        the token at each unmasked position (``1 - b/nF`` in a correct rollout, ``1 - a/nT`` in a wrong one, with
        ``a, b, nT, nF`` counted as KTAE counts them, presence not occurrences); 1 for the rollouts of other
        groups; 0 at masked positions. ``config.ignore_token_ids`` are not special-cased.
    """
    config = config or KTAEConfig()
    responses, mask, scores, ids, keys = _check_batch(responses, response_mask, scores, group)
    correct = scores > config.threshold
    lengths = mask.sum(dim=1, dtype=torch.int32).to(torch.int64)
    n_true, n_false, _, _ = group_totals(lengths, correct, ids, len(keys))
    mixed = mixed_members(correct, lengths > 0, ids)
    out = mask.to(torch.float32)
    members = mixed.nonzero().squeeze(1)
    if members.numel() == 0:
        return out
    rows = _count_rows(responses[members], mask[members], lengths[members], correct[members], ids[members], len(keys))
    in_correct, in_wrong = specificity_gate(rows.a, rows.b, n_true[rows.group], n_false[rows.group])
    gate = torch.where(correct[members].unsqueeze(1), rows.scatter(in_correct.to(torch.float32)),
                       rows.scatter(in_wrong.to(torch.float32)))
    out[members] = gate
    return out


def gate_advantages(
    responses: torch.Tensor, response_mask: torch.Tensor, scores: Any, group: Any, config: KTAEConfig | None = None
) -> torch.Tensor:
    """Label-free blame (``grpo-ktae-gate``): ``adv[i, t] = A_i * gate[i, t] * mask[i, t]``.

    ``gate`` is :func:`gate_values`: in a mixed group, a token that the rollouts of the other side also wrote
    carries little of the rollout advantage (none if they all wrote it), a token specific to the rollout's side
    carries all of it; rollouts of other groups keep ``A_i`` on every token, as in GRPO. The project's own idea,
    not the KTAE paper's.

    Returns:
        [B, L] float32 on the device of ``responses``.
    """
    config = config or KTAEConfig()
    gate = gate_values(responses, response_mask, scores, group, config)
    rollout = rollout_advantages(scores, group, config).to(gate.device)
    return rollout.unsqueeze(1) * gate
