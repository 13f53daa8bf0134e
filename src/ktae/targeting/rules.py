"""The credit rules ``ktae targeting`` scores: one registry, name -> function(batch, context) -> token advantages.

A rule takes a :class:`Batch` (the trainer's batch of one step: ``responses`` [B, L], ``response_mask`` [B, L],
``scores`` [B], ``group`` [B]) and a :class:`Context` (the run's KTAE options, the token texts, the labels for the
oracles, a seed) and returns the token advantages ``[B, L]`` it would train with (0 at masked positions). Adding a
rule is one entry in :data:`RULES`::

    RULES["my-rule"] = lambda batch, context: my_advantages(
        batch.responses, batch.response_mask, batch.scores, batch.group, context.config)

The label-free rules of :mod:`ktae.core.label_free` (``prefix``, ``line``, ``first-novel``, ``line-ktae``, ...)
are registered under their estimator names, with the trainer's n-gram size (3).

A label-free rule must not read ``context.mistake``: only the oracles (the ceiling) do.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ktae.core.advantages import ktae_advantages, rollout_advantages
from ktae.core.config import KTAEConfig
from ktae.core.credit import gate_advantages, oracle_advantages
from ktae.core.label_free import LABEL_FREE_CREDITS, label_free_advantages

__all__ = ["Batch", "Context", "Rule", "RULES", "SANITY_RULES", "REFERENCE_RULE", "PAPER", "TUNED", "label_free"]


@dataclass(frozen=True)
class Batch:
    """One step's rollouts: ``responses`` [B, L] int64 (0 at masked positions), ``response_mask`` [B, L] bool,
    ``scores`` [B] float (correct when ``> config.threshold``), ``group`` [B] prompt ids."""

    responses: torch.Tensor
    response_mask: torch.Tensor
    scores: torch.Tensor
    group: list[str]


@dataclass(frozen=True)
class Context:
    """What a rule may read besides the batch.

    ``config``: the run's KTAE options (threshold, rollout estimator, the ignored pad/EOS ids; a KTAE rule sets its
    own alpha, beta, gamma, top). ``token_texts``: token id -> text. ``newline_ids``: the ids whose text holds a
    line break. ``mistake``: [B, L] bool, the labelled wrong-step tokens (the oracles only). ``seed``: for rules
    that draw at random.
    """

    config: KTAEConfig
    token_texts: dict[int, str]
    newline_ids: frozenset[int]
    mistake: torch.Tensor
    seed: int = 0


Rule = Callable[[Batch, Context], torch.Tensor]

#: KTAE's own settings in the paper (the KTAEConfig defaults) and the tuned point of study 3 (top 0.5, beta 0)
PAPER: dict[str, Any] = {name: KTAEConfig.__dataclass_fields__[name].default
                         for name in ("alpha", "beta", "gamma", "top", "fisher_at_one")}
TUNED: dict[str, Any] = {**PAPER, "top": 0.5, "beta": 0.0}


def _rollout(batch: Batch, context: Context) -> torch.Tensor:
    return rollout_advantages(batch.scores, batch.group, context.config)


def random_marking(batch: Batch, context: Context) -> torch.Tensor:
    """The floor: ``A_i * u[i, t]`` with ``u`` uniform in [0, 1), drawn from ``context.seed``."""
    noise = torch.rand(batch.responses.shape, generator=torch.Generator().manual_seed(context.seed))
    return _rollout(batch, context).unsqueeze(1) * noise * batch.response_mask


def grpo(batch: Batch, context: Context) -> torch.Tensor:
    """GRPO: ``A_i`` on every token."""
    return _rollout(batch, context).unsqueeze(1) * batch.response_mask


def ktae_with(settings: dict[str, Any]) -> Rule:
    """KTAE (``A_i + K``) with ``settings`` in place of the run's alpha, beta, gamma, top, fisher_at_one."""
    def rule(batch: Batch, context: Context) -> torch.Tensor:
        config = dataclasses.replace(context.config, **settings)
        return ktae_advantages(batch.responses, batch.response_mask, batch.scores, batch.group, config)[0]

    rule.__doc__ = f"KTAE, A_i + K, with {settings}"
    return rule


def gate(batch: Batch, context: Context) -> torch.Tensor:
    """The project's label-free gate (:func:`ktae.core.credit.gate_advantages`)."""
    return gate_advantages(batch.responses, batch.response_mask, batch.scores, batch.group, context.config)


def oracle_with(blame_only: bool) -> Rule:
    """The oracle that reads the labels (:func:`ktae.core.credit.oracle_advantages`), additive or blame form."""
    def rule(batch: Batch, context: Context) -> torch.Tensor:
        return oracle_advantages(batch.response_mask, batch.scores, batch.group, context.mistake, context.config,
                                 blame_only=blame_only)

    rule.__doc__ = ("the blame oracle: in wrong rollouts of mixed groups A_i on the labelled tokens only" if blame_only
                    else "the additive oracle: A_i - 1 on the labelled tokens of wrong rollouts of mixed groups")
    return rule


def label_free(credit: str) -> Rule:
    """The label-free credit ``credit`` of :mod:`ktae.core.label_free`, as ``ktae train --estimator grpo+CREDIT``
    trains with it (the run's KTAE options, the n-gram size's default)."""
    def rule(batch: Batch, context: Context) -> torch.Tensor:
        return label_free_advantages(credit, batch.responses, batch.response_mask, batch.scores, batch.group,
                                     context.config, newline_ids=sorted(context.newline_ids))

    rule.__doc__ = f"the label-free credit {credit!r} (ktae.core.label_free)"
    return rule


#: name -> rule; ``ktae targeting --rules`` picks from these (all by default), in this order
RULES: dict[str, Rule] = {
    "random": random_marking,
    "grpo": grpo,
    "ktae": ktae_with(PAPER),
    "ktae-tuned": ktae_with(TUNED),
    "gate": gate,
    **{credit: label_free(credit) for credit in LABEL_FREE_CREDITS},
    "oracle": oracle_with(blame_only=False),
    "oracle-blame": oracle_with(blame_only=True),
}
#: the floor and the ceiling every report should show
SANITY_RULES = ("random", "oracle-blame")
#: the rule whose token advantages the others are compared with (agreement measures)
REFERENCE_RULE = "oracle-blame"
