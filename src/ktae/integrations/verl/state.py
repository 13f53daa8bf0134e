"""What the plug-in keeps per patched trainer (:class:`TrainerState`), and what one wrapped advantage computation
hands to the estimator it calls (:class:`Batch`, through a context variable: verl does not pass it)."""
from __future__ import annotations

import contextvars
import dataclasses
from typing import Any

import torch

from ktae.frontend.records import KeyTokenDumper
from ktae.integrations.verl.options import dump_options
from ktae.monitoring import MixedGroupWatch

__all__ = ["TrainerState", "Batch", "CURRENT_BATCH"]


@dataclasses.dataclass
class TrainerState:
    """The plug-in's state for one trainer: its tokenizer, its mixed-group watches, its dump writers and the
    metrics of the last advantage computation not yet logged (the legacy trainer logs them later)."""

    tokenizer: Any = None
    trainer: Any = None  # weakref to the legacy RayPPOTrainer, for its global step
    pending_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    watches: dict[tuple[float, int], MixedGroupWatch] = dataclasses.field(default_factory=dict)
    dumpers: dict[tuple[str, int], KeyTokenDumper] = dataclasses.field(default_factory=dict)

    def watch(self, threshold: float, patience: int) -> MixedGroupWatch:
        """The watch of this trainer for these options (made on first use)."""
        key = (threshold, patience)
        if key not in self.watches:
            self.watches[key] = MixedGroupWatch(
                patience=patience,
                correctness=f"its score (the sum of its token_level_rewards: the reward function's 'score') is > "
                f"{threshold}",
                advice="set +algorithm.ktae.threshold between the scores of wrong and right responses (e.g. 0.5 for "
                "a reward in [0, 1] that is 1 only for a right answer), or make the reward function's 'score' say "
                "whether the answer is right",
            )
        return self.watches[key]

    def dumper(self, algorithm_config: Any, tokenizer: Any = None) -> KeyTokenDumper | None:
        """The dump writer ``algorithm.ktae.dump_every`` / ``dump_dir`` ask for (one per folder), or None."""
        every, folder = dump_options(algorithm_config)
        if not every:
            return None
        key = (folder, every)
        if key not in self.dumpers:
            self.dumpers[key] = KeyTokenDumper(folder, every, tokenizer)
        return self.dumpers[key]

    def global_step(self) -> int | None:
        trainer = self.trainer() if self.trainer is not None else None
        return getattr(trainer, "global_steps", None)


@dataclasses.dataclass
class Batch:
    """What a wrapped trainer function hands to the estimator it calls (one advantage computation)."""

    state: TrainerState
    responses: torch.Tensor | None = None
    tokenizer: Any = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    step: int | None = None  # the trainer's global step, for the key-token dump
    prompts: Any = None  # [B] prompt ids (tensor or lists), for the dump
    references: Any = None  # [B] verl reward_model dicts, for the dump
    dump: tuple | None = None  # (ids, mask, scores, index, config, values) of the last advantage computation


#: the batch of the advantage computation running in this context (None outside the trainer wrappers)
CURRENT_BATCH: contextvars.ContextVar[Batch | None] = contextvars.ContextVar("ktae_verl_batch", default=None)
