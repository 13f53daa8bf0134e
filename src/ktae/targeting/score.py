"""Scoring credit rules on a labelled corpus: the token table and the targeting measures of ``ktae targeting``.

Every rule runs on each batch of the corpus (one trainer step) as the trainer would call it. The measures read the
tokens of the members of mixed groups (pad and EOS, ``config.ignore_token_ids``, left out); the *targets* are the
tokens of the wrong rollouts with ``A_i < 0``, where a rule's blame is ``-adv[i, t] / |A_i|``
(:func:`ktae.core.targeting.blame`). Per rule (:func:`rule_measures`):

* ``auroc_pooled`` / ``auroc_within``: AUROC of the blame at picking out the labelled wrong-step tokens, over all
  targets pooled / within each wrong rollout (mean over the rollouts that have both kinds of token);
* ``auroc_from_first`` / ``auroc_from_first_within``: the same for the tokens from the rollout's first wrong step on;
* ``blame_share``: the share of the push-down that lands on wrong-step tokens, ``sum(max(blame, 0) * mistake) /
  sum(max(blame, 0))`` over the targets (GRPO: the base rate; the blame oracle: 1);
* ``blame_mistakes`` / ``blame_others``: the mean blame of wrong-step tokens and of the other targets;
* ``share_top``: the wrong-step share of the ``fraction`` most blamed targets;
* ``removed_shared``: the share of ``A_i`` a rule takes off the target tokens that a correct rollout of the group
  also wrote at the same position, mean of ``1 - blame`` (GRPO: 0);
* ``kept_correct``: the share of ``A_i`` a rule leaves on the tokens of the correct rollouts, mean of
  ``adv / A_i`` (GRPO and the oracles: 1);
* ``oracle_corr`` / ``oracle_mad``: agreement with the blame oracle's token advantages over every token of the
  mixed groups: Pearson correlation and mean absolute difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from ktae.core.advantages import group_index, rollout_advantages
from ktae.core.credit import mixed_members
from ktae.core.targeting import auroc, blame, from_first, grouped_auroc, share_in_top, shared_with_correct
from ktae.targeting.corpus import Corpus, LabelledRollout
from ktae.targeting.rules import REFERENCE_RULE, RULES, Batch, Context, Rule

__all__ = ["MEASURES", "TokenTable", "token_table", "rule_measures", "corpus_counts", "score"]

#: the measures of :func:`rule_measures`, in the order tables show them
MEASURES = ("auroc_pooled", "auroc_within", "auroc_from_first", "auroc_from_first_within", "blame_share",
            "blame_mistakes", "blame_others", "share_top", "removed_shared", "kept_correct", "oracle_corr",
            "oracle_mad")


@dataclass
class TokenTable:
    """Flat columns [N] over the tokens of the mixed groups' members (ignored ids left out), and the per-batch
    counts. ``advantages``: rule -> [N] float64 token advantages; ``batch`` indexes ``batches`` (their names)."""

    batches: list[str]
    batch: torch.Tensor
    rollout: torch.Tensor
    correct: torch.Tensor
    rollout_advantage: torch.Tensor
    mistake: torch.Tensor
    derailed: torch.Tensor
    shared: torch.Tensor
    advantages: dict[str, torch.Tensor]
    counts: list[dict[str, int]] = field(default_factory=list)


def _pad(rollouts: list[LabelledRollout]) -> tuple[Batch, torch.Tensor]:
    """The :class:`Batch` of some rollouts (right-padded with id 0) and their labels [B, L]."""
    length = max([len(r.token_ids) for r in rollouts] + [1])
    responses = torch.zeros(len(rollouts), length, dtype=torch.int64)
    mistake = torch.zeros(len(rollouts), length, dtype=torch.bool)
    mask = torch.zeros(len(rollouts), length, dtype=torch.bool)
    for i, r in enumerate(rollouts):
        n = len(r.token_ids)
        responses[i, :n] = torch.tensor(r.token_ids, dtype=torch.int64)
        mistake[i, :n] = torch.tensor(r.mistake, dtype=torch.bool)
        mask[i, :n] = True
    scores = torch.tensor([r.reward for r in rollouts], dtype=torch.float64)
    return Batch(responses, mask, scores, [r.group for r in rollouts]), mistake


def token_table(corpus: Corpus, rules: dict[str, Rule], seed: int = 0,
                progress: Callable[[Iterable], Iterable] = iter) -> TokenTable:
    """Run every rule (and the blame oracle, the reference) on each batch of ``corpus``; the tokens they are scored on.

    ``seed`` seeds the rules that draw at random (``seed + batch number``); ``progress`` wraps the batches.
    """
    rules = {**rules, REFERENCE_RULE: RULES[REFERENCE_RULE]}
    by_batch: dict[str, list[LabelledRollout]] = {}
    for r in corpus.rollouts:
        by_batch.setdefault(r.batch, []).append(r)
    ignored = torch.tensor(sorted(corpus.config.ignore_token_ids or ()), dtype=torch.int64)
    newline_ids = corpus.newline_ids()
    columns: dict[str, list[torch.Tensor]] = {k: [] for k in ("batch", "rollout", "correct", "rollout_advantage",
                                                             "mistake", "derailed", "shared")}
    advantages: dict[str, list[torch.Tensor]] = {name: [] for name in rules}
    counts, offset = [], 0
    for number, name in enumerate(progress(list(by_batch))):
        batch, mistake = _pad(by_batch[name])
        context = Context(corpus.config, corpus.token_texts, newline_ids, mistake, seed + number)
        ids, _ = group_index(batch.group, len(batch.group))
        correct = batch.scores > corpus.config.threshold
        mixed = mixed_members(correct, batch.response_mask.any(dim=1), ids)
        keep = batch.response_mask & mixed.unsqueeze(1) & ~torch.isin(batch.responses, ignored)
        rows = keep.nonzero()[:, 0]
        a = rollout_advantages(batch.scores, batch.group, corpus.config).to(torch.float64)
        columns["batch"].append(torch.full((len(rows),), number))
        columns["rollout"].append(rows + offset)
        columns["correct"].append(correct[rows])
        columns["rollout_advantage"].append(a[rows])
        columns["mistake"].append(mistake[keep])
        columns["derailed"].append(from_first(mistake, batch.response_mask)[keep])
        columns["shared"].append(shared_with_correct(batch.responses, batch.response_mask, correct, ids)[keep])
        for rule_name, rule in rules.items():
            advantages[rule_name].append(rule(batch, context).to(torch.float64)[keep])
        wrong = mixed & ~correct
        counts.append({"rollouts": len(batch.group), "groups": int(ids.max()) + 1 if len(ids) else 0,
                       "mixed_groups": len(set(ids[mixed].tolist())), "correct_rollouts": int(correct.sum()),
                       "wrong_rollouts_of_mixed_groups": int(wrong.sum()),
                       "wrong_rollouts_with_a_wrong_step": int((wrong & (mistake & keep).any(dim=1)).sum())})
        offset += len(batch.group)
    return TokenTable(list(by_batch), *(torch.cat(columns[k]) for k in columns),
                      {name: torch.cat(values) for name, values in advantages.items()}, counts)


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")


def _within(scores: torch.Tensor, labels: torch.Tensor, rollout: torch.Tensor) -> tuple[float, int]:
    """Mean within-rollout AUROC over the rollouts with both kinds of token, and how many they are."""
    _, dense = torch.unique(rollout, return_inverse=True)
    per_rollout = grouped_auroc(scores, labels, dense)
    defined = per_rollout[~per_rollout.isnan()]
    return _mean(defined), int(defined.numel())


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    scale = float((x.square().sum() * y.square().sum()).sqrt()) if x.numel() else 0.0
    return float((x * y).sum()) / scale if scale > 0 else float("nan")


def rule_measures(table: TokenTable, rule: str, keep: torch.Tensor, fraction: float = 0.1) -> dict[str, float]:
    """The measures of ``rule`` (see the module docstring) over the tokens ``keep`` [N] of ``table``."""
    adv, a = table.advantages[rule], table.rollout_advantage
    target = keep & ~table.correct & (a < 0)
    b = blame(adv[target].unsqueeze(1), a[target]).squeeze(1)
    m, d, rollout = table.mistake[target], table.derailed[target], table.rollout[target]
    within, rollouts_within = _within(b, m, rollout)
    from_first_within, _ = _within(b, d, rollout)
    pushed = b.clamp(min=0)
    right = keep & table.correct & (a > 0)
    reference = table.advantages[REFERENCE_RULE]
    return {"auroc_pooled": auroc(b, m), "auroc_within": within, "auroc_from_first": auroc(b, d),
            "auroc_from_first_within": from_first_within,
            "blame_share": float((pushed * m).sum() / pushed.sum()) if float(pushed.sum()) > 0 else float("nan"),
            "blame_mistakes": _mean(b[m]), "blame_others": _mean(b[~m]),
            "share_top": share_in_top(b, m, fraction) if b.numel() else float("nan"),
            "removed_shared": _mean(1 - b[table.shared[target]]),
            "kept_correct": _mean(adv[right] / a[right]),
            "oracle_corr": _pearson(adv[keep], reference[keep]),
            "oracle_mad": _mean((adv[keep] - reference[keep]).abs()),
            "rollouts_within": float(rollouts_within)}


def corpus_counts(table: TokenTable, keep: torch.Tensor, batches: Iterable[int]) -> dict[str, float]:
    """Counts of the batches ``batches`` and of the tokens ``keep``: groups, mixed groups, rollouts, target tokens,
    wrong-step tokens and their share (the base rate)."""
    out: dict[str, float] = {"batches": 0}
    for number in batches:
        out["batches"] += 1
        for key, value in table.counts[number].items():
            out[key] = out.get(key, 0) + value
    target = keep & ~table.correct & (table.rollout_advantage < 0)
    out["target_tokens"] = int(target.sum())
    out["wrong_step_tokens"] = int((target & table.mistake).sum())
    out["from_first_tokens"] = int((target & table.derailed).sum())
    out["shared_tokens"] = int((target & table.shared).sum())
    out["base_rate"] = out["wrong_step_tokens"] / out["target_tokens"] if out["target_tokens"] else math.nan
    out["mixed_group_share"] = out["mixed_groups"] / out["groups"] if out.get("groups") else math.nan
    return out


def score(table: TokenTable, rules: Iterable[str], keep: torch.Tensor | None = None,
          batches: Iterable[int] | None = None, fraction: float = 0.1) -> dict:
    """``{"rules": {rule: measures}, "corpus": counts}`` over the tokens ``keep`` of the batches ``batches``
    (default: all)."""
    keep = torch.ones(len(table.batch), dtype=torch.bool) if keep is None else keep
    batches = range(len(table.batches)) if batches is None else batches
    return {"rules": {rule: rule_measures(table, rule, keep, fraction) for rule in rules},
            "corpus": corpus_counts(table, keep, batches)}
