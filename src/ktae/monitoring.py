"""Run-time checks shared by ``ktae train`` and the verl and TRL adapters: is KTAE doing anything at all?

K is non-zero only in groups that have both correct and wrong rollouts ("mixed" groups). When the rewards make
every rollout "correct" (a format or length reward in [0, 1], several reward functions summed, a threshold set
too low) or every rollout "wrong", K is zero everywhere and training silently falls back to the rollout-level
estimator. :class:`MixedGroupWatch` notices it after a few steps and says why and what to set.

    watch = MixedGroupWatch(patience=5, advice="set --ktae_threshold ...")
    for step in ...:
        mixed, groups = mixed_groups(scores, group, threshold, response_mask)
        message = watch.update(mixed, groups, step)   # also issued as a NoMixedGroupsWarning
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from ktae.frontend.outcomes import mixed_groups  # noqa: F401 - the count the watch is fed with

__all__ = ["MixedGroupWatch", "NoMixedGroupsWarning", "mixed_groups"]


class NoMixedGroupsWarning(UserWarning):
    """K has been zero for several consecutive steps: no group had both correct and wrong rollouts."""


@dataclass
class MixedGroupWatch:
    """Warns when ``patience`` consecutive steps had no mixed group (so every K was 0).

    Fires once when a streak reaches ``patience`` steps, then again each time the streak doubles (2x, 4x, ...
    ``patience``); a step with a mixed group ends the streak. ``patience=0`` switches the watch off.

    Args:
        patience: consecutive steps without a mixed group before warning.
        correctness: how this framework decides a rollout is correct, for the message
            (e.g. "its reward is > 0.0").
        advice: what the user can set, for the message (framework-specific option names).
        warn: also issue the message with ``warnings.warn`` (False: only return it, for a caller that prints it).
        metric: the name under which this framework logs the share of mixed groups, for the message.
    """

    patience: int = 5
    correctness: str = "its reward is > 0.0"
    advice: str = "set the correctness threshold between the rewards of wrong and right rollouts"
    warn: bool = True
    metric: str = "ktae/mixed_group_fraction"
    streak: int = 0
    _next_warning: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (0: never warn), got {self.patience!r}")
        self._next_warning = self.patience

    def update(self, mixed: int, groups: int, step: int | None = None) -> str | None:
        """Record one step: ``mixed`` of ``groups`` groups had both correct and wrong rollouts.

        Returns:
            The warning text when it fires (also issued with ``warnings.warn`` as a
            :class:`NoMixedGroupsWarning` when ``warn``), else None.
        """
        if mixed < 0 or groups < 0 or mixed > groups:
            raise ValueError(f"need 0 <= mixed <= groups, got mixed={mixed}, groups={groups}")
        if mixed > 0:
            self.streak, self._next_warning = 0, self.patience
            return None
        self.streak += 1
        if not self.patience or self.streak < self._next_warning:
            return None
        self._next_warning *= 2
        where = f" (step {step})" if step is not None else ""
        message = (
            f"KTAE: no group had both correct and wrong rollouts in the last {self.streak} steps{where} "
            f"({self.metric} = 0), so every key-token value K is 0 and the update uses only the "
            f"rollout-level advantage. A rollout counts as correct when {self.correctness}: if all rollouts pass "
            f"(e.g. rewards that are all positive, several rewards summed) or all fail, {self.advice}."
        )
        if self.warn:
            warnings.warn(message, NoMixedGroupsWarning, stacklevel=2)
        return message
