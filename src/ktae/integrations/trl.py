"""KTAE inside TRL (``pip install "ktae[trl]"``, trl >= 1.16, < 2): drop-in GRPO config and trainer.

    from ktae.integrations.trl import KTAEGRPOConfig, KTAEGRPOTrainer

    args = KTAEGRPOConfig(output_dir="out", num_generations=16, ktae_alpha=1.0)   # every GRPOConfig option
    trainer = KTAEGRPOTrainer(model=..., reward_funcs=..., args=args, train_dataset=...)
    trainer.train()

``KTAEGRPOTrainer`` lets TRL generate, score and compute its per-completion advantage exactly as
``GRPOTrainer`` does (``scale_rewards``, ``multi_objective_aggregation``, unscorable completions, ...), then adds
the key-token value ``K`` of every completion token (``ktae.key_token_values``) and hands TRL's loss a ``[B, T]``
advantage ``(A_i + K(token)) * mask``. Every ``loss_type`` and ``num_iterations`` works, since TRL's loss takes
``[B, T]`` advantages. A prompt's completions may be spread over processes, so the token ids and masks of the
whole generation batch are gathered, ``K`` is computed on whole groups, and each process keeps its own rows.

Sequence-level decisions stay sequence-level: TRL options that read a completion's advantage to decide something
about the whole sequence (the off-policy sequence mask, VESPO's k/lambda, SAPO's temperature) read the rollout
advantage ``A_i``; K only enters where the loss multiplies by the advantage.

Correctness: a completion is correct when its correctness score is > ``ktae_threshold``; the score is the value of
the reward function named by ``ktae_correctness_reward``, or else the weighted sum of all rewards. A completion that
``mask_truncated_completions`` masks out is left out of its group's counts. After ``ktae_warn_after`` generation
batches in a row without a group holding both correct and wrong completions, a ``NoMixedGroupsWarning`` says
that K is 0 and what to set.

A plain ``GRPOConfig`` works too (KTAE with the paper's settings). Statistics of ``K`` are logged with TRL's
metrics under ``ktae/`` (see :mod:`ktae.frontend.metrics`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

#: the TRL releases this adapter is made for (checked at import)
SUPPORTED_TRL = ">=1.16,<2"

try:
    import trl
    from trl import GRPOConfig, GRPOTrainer
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"ktae.integrations.trl needs TRL: pip install \"ktae[trl]\" (trl{SUPPORTED_TRL})") from err


def _check_trl(version: str, trainer: type) -> None:
    """Refuse a TRL outside the supported range, or one whose GRPOTrainer lacks a method this adapter overrides."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        supported = Version(version) in SpecifierSet(SUPPORTED_TRL)
    except InvalidVersion:
        supported = False
    hooks = ("_calculate_rewards", "_generate_and_score_completions", "_compute_loss", "get_off_policy_mask",
             "get_gamma_weights")
    missing = [name for name in hooks if not callable(getattr(trainer, name, None))]
    if not supported:
        raise ImportError(f"ktae.integrations.trl supports trl{SUPPORTED_TRL}, but trl {version} is installed: "
                          f"pip install \"trl{SUPPORTED_TRL}\"")
    if missing:
        raise ImportError(f"ktae.integrations.trl cannot extend the GRPOTrainer of trl {version}: it has no "
                          f"{', '.join(missing)} (made for trl{SUPPORTED_TRL} as released)")


_check_trl(trl.__version__, GRPOTrainer)

from ktae.core.advantages import key_token_values
from ktae.core.config import KTAEConfig
from ktae.frontend.metrics import key_token_metrics
from ktae.frontend.options import ktae_config, ktae_fields
from ktae.frontend.outcomes import mixed_groups
from ktae.frontend.records import DUMP_FOLDER, KeyTokenDumper
from ktae.monitoring import MixedGroupWatch
from ktae.special_tokens import special_token_ids

__all__ = ["ROLLOUT_ADVANTAGES", "SUPPORTED_TRL", "KTAEGRPOConfig", "KTAEGRPOTrainer", "local_key_token_values"]

#: the KTAEConfig fields TRL has no use for: it computes the rollout-level advantage A_i itself
_TRL_OWNS = ("rollout", "eps")
_PREFIX = "ktae_"
_HELP = {"threshold": "a completion is correct when its correctness reward (see ktae_correctness_reward) is > this",
         "ignore_token_ids": "token ids with K = 0; default (None): the tokenizer's pad id and the model's EOS ids"}


def _with_ktae_fields(cls: type) -> type:
    """Add a ``ktae_<name>`` field for each KTAEConfig field (but :data:`_TRL_OWNS`), before ``@dataclass``."""
    for name, kind, default in ktae_fields(_PREFIX, skip=_TRL_OWNS, help_of=_HELP):
        cls.__annotations__[name] = kind
        setattr(cls, name, default)
    return cls


@dataclass
@_with_ktae_fields
class KTAEGRPOConfig(GRPOConfig):
    """TRL's ``GRPOConfig`` plus the KTAE options: ``ktae_<name>`` for each field of :class:`ktae.KTAEConfig`
    (but ``rollout`` and ``eps``: TRL computes the rollout-level advantage), and the options of this adapter."""

    use_ktae: bool = field(
        default=True, metadata={"help": "add key-token values to the advantages (False: plain TRL GRPO)"}
    )
    ktae_correctness_reward: str | None = field(
        default=None,
        metadata={
            "help": "name of the reward function whose (unweighted) value decides correctness, e.g. 'accuracy'; "
            "None: the weighted sum of all rewards"
        },
    )
    ktae_warn_after: int = field(
        default=5,
        metadata={"help": "warn after this many consecutive generation batches without a group that has both "
                  "correct and wrong completions (K is then 0); 0: never"},
    )
    ktae_dump_every: int = field(
        default=0,
        metadata={"help": "every N steps write the generation batch with its token ids, rewards, groups and K values "
                  "to ktae_dump_dir (for `ktae analyze`); 0: never"},
    )
    ktae_dump_dir: str | None = field(
        default=None, metadata={"help": f"folder of the key-token dumps (default: <output_dir>/{DUMP_FOLDER})"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ktae_config(())
        if isinstance(self.ktae_warn_after, bool) or not isinstance(self.ktae_warn_after, int) or self.ktae_warn_after < 0:
            raise ValueError(f"KTAEGRPOConfig.ktae_warn_after must be an integer >= 0, got {self.ktae_warn_after!r}")
        if self.ktae_correctness_reward is not None and not (
            isinstance(self.ktae_correctness_reward, str) and self.ktae_correctness_reward
        ):
            raise ValueError(
                "KTAEGRPOConfig.ktae_correctness_reward must be the name of a reward function or None, got "
                f"{self.ktae_correctness_reward!r}"
            )

    def ktae_config(self, default_ignore_token_ids: tuple[int, ...]) -> KTAEConfig:
        """The :class:`KTAEConfig` of the ``ktae_*`` fields; ``default_ignore_token_ids`` apply when
        ``ktae_ignore_token_ids`` is None."""
        names = [name[len(_PREFIX):] for name, _, _ in ktae_fields(_PREFIX, skip=_TRL_OWNS)]
        return ktae_config({name: getattr(self, _PREFIX + name) for name in names},
                           where="KTAEGRPOConfig (ktae_* fields)",
                           defaults={"ignore_token_ids": tuple(default_ignore_token_ids)})


def _make_dumper(args: Any, tokenizer: Any) -> Any:
    """The `KeyTokenDumper` that ``ktae_dump_every`` / ``ktae_dump_dir`` ask for, or None."""
    every = getattr(args, "ktae_dump_every", 0)
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"KTAEGRPOConfig.ktae_dump_every must be an integer >= 0 (0: no dumps), got {every!r}")
    if not every:
        return None
    folder = getattr(args, "ktae_dump_dir", None) or os.path.join(args.output_dir, DUMP_FOLDER)
    return KeyTokenDumper(folder, every, tokenizer)


def _prompt_text(prompt: Any) -> Any:
    """A dataset prompt for the dump: a string as is, a conversation as its last user message (else JSON)."""
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
        users = [m.get("content") for m in prompt if m.get("role") == "user" and isinstance(m.get("content"), str)]
        return users[-1] if users else json.dumps(prompt, ensure_ascii=False)
    return prompt


def _reference(example: dict) -> Any:
    for name in ("answer", "reference", "ground_truth", "solution", "gt"):
        if example.get(name) is not None:
            return example[name]
    return None


def local_key_token_values(
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    rewards: torch.Tensor,
    num_generations: int,
    start: int,
    local_size: int,
    local_length: int,
    config: KTAEConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Key-token values of the whole generation batch, and this process's slice of them.

    Args:
        completion_ids: [N, T] token ids of all processes' completions, in TRL's gathered order (groups are runs of
            ``num_generations`` consecutive rows).
        completion_mask: [N, T] 0/1 (completion mask times tool mask).
        rewards: [N] summed weighted reward of each completion; NaN for unscorable ones (they get K = 0 and are left
            out of their group's statistics).
        num_generations: completions per prompt.
        start: first row of this process (its rows are ``start:start + local_size``).
        local_size: number of rows of this process.
        local_length: this process's own padded completion length.
        config: KTAE options.

    Returns:
        (all_values [N, T], local_values [local_size, local_length]), float32.
    """
    n = completion_ids.shape[0]
    if num_generations < 1 or n % num_generations:
        raise ValueError(f"the batch of {n} completions is not made of whole groups of num_generations={num_generations}")
    group = torch.arange(n, device=completion_ids.device) // num_generations
    keep = ~torch.isnan(rewards)
    values = torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)
    if bool(keep.any()):
        values[keep] = key_token_values(
            completion_ids[keep], completion_mask[keep], rewards[keep], group[keep], config
        ).to(values.device)
    local = values[start : start + local_size, :local_length]
    if local.shape[1] < local_length:  # this process padded further than the gathered batch
        local = torch.nn.functional.pad(local, (0, local_length - local.shape[1]))
    return values, local


#: key under which the rollout-level advantage A_i [B] travels with TRL's inputs to the loss
ROLLOUT_ADVANTAGES = "ktae_rollout_advantages"


class KTAEGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with KTAE token-level advantages; takes the same arguments.

    ``args`` may be a :class:`KTAEGRPOConfig` (KTAE options) or a plain ``GRPOConfig`` (paper defaults).

    K enters only where TRL's loss multiplies by the advantage. TRL's sequence-level decisions read the
    rollout-level advantage ``A_i``, as in plain ``GRPOTrainer``: the off-policy sequence mask
    (``off_policy_mask_threshold``), VESPO's choice of k/lambda and SAPO's choice of temperature by the sign of
    the advantage.
    """

    def __init__(self, model: Any, reward_funcs: Any = None, args: GRPOConfig | None = None, *pos: Any, **kw: Any):
        if args is None:
            name = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", "")
            args = KTAEGRPOConfig(f"{(name or 'model').split('/')[-1]}-KTAE-GRPO")
        if not isinstance(args, GRPOConfig):
            raise TypeError(f"args must be a KTAEGRPOConfig or a GRPOConfig, got {type(args).__name__}")
        super().__init__(model, reward_funcs, args, *pos, **kw)
        self._ktae_dumper = _make_dumper(args, self._tokenizer)
        self.use_ktae = bool(getattr(args, "use_ktae", True))
        default_ids = tuple(sorted(set(special_token_ids(self._tokenizer)) | {int(i) for i in self.eos_token_ids}))
        if isinstance(args, KTAEGRPOConfig):
            self.ktae_config = args.ktae_config(default_ids)
        else:
            self.ktae_config = KTAEConfig(ignore_token_ids=default_ids)
        self._ktae_correctness_index = self._correctness_index(getattr(args, "ktae_correctness_reward", None))
        self._ktae_watch = MixedGroupWatch(
            patience=int(getattr(args, "ktae_warn_after", 5)),
            correctness=self._correctness_text(),
            advice="set ktae_correctness_reward to the reward function that says whether the answer is right "
            "and/or ktae_threshold between its values for wrong and right completions",
        )
        self._ktae_rewards: torch.Tensor | None = None

    def _correctness_index(self, name: str | None) -> int | None:
        if name is None:
            return None
        if name not in self.reward_func_names:
            raise ValueError(
                f"ktae_correctness_reward={name!r} is not one of the reward functions {self.reward_func_names}"
            )
        return self.reward_func_names.index(name)

    def _correctness_text(self) -> str:
        threshold = self.ktae_config.threshold
        if self._ktae_correctness_index is not None:
            return f"reward function {self.reward_func_names[self._ktae_correctness_index]!r} gives it > {threshold}"
        if len(self.reward_func_names) > 1:
            return f"the weighted sum of its {len(self.reward_func_names)} rewards is > {threshold}"
        return f"its reward is > {threshold}"

    def _correctness_scores(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """[N] scores whose comparison with ``ktae_threshold`` decides correctness; NaN for unscorable rows."""
        if self._ktae_correctness_index is not None:
            return rewards_per_func[:, self._ktae_correctness_index].clone()
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return rewards

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: D401 - TRL hook
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._ktae_rewards = rewards_per_func  # gathered over processes, [N, num_reward_funcs]
        return rewards_per_func

    def _ktae_dump(self, inputs, all_ids, all_mask, scores, all_values, num_generations: int) -> None:
        """Every ``ktae_dump_every`` steps: the main process queues the whole generation batch (gathered ids,
        scores, K) with its prompts and references for writing in the background (`ktae.frontend.records`)."""
        dumper, step = self._ktae_dumper, self.state.global_step
        if dumper is None or not self.model.training or not dumper.due(step):
            return
        from accelerate.utils import gather_object

        prompts = gather_object([_prompt_text(x.get("prompt")) for x in inputs])
        references = gather_object([_reference(x) for x in inputs])
        if not self.accelerator.is_main_process:
            dumper.skip(step)
            return
        keep = ~torch.isnan(scores)
        rows = keep.nonzero().flatten().tolist()
        group = [f"step{step}-{i // num_generations}" for i in rows]
        dumper.submit(step, all_ids[keep], all_mask[keep], scores[keep], group, all_values[keep], self.ktae_config,
                      prompts=[prompts[i] for i in rows], references=[references[i] for i in rows])

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._ktae_rewards = None
        output = super()._generate_and_score_completions(inputs)
        if not self.use_ktae:
            return output
        rewards_per_func, self._ktae_rewards = self._ktae_rewards, None
        if rewards_per_func is None:
            raise RuntimeError("KTAEGRPOTrainer: TRL did not compute rewards through _calculate_rewards")
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval

        completion_ids = output["completion_ids"]
        mask = output["completion_mask"]  # mask_truncated_completions: a masked row is left out of its group
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        local_size, local_length = completion_ids.shape
        acc = self.accelerator
        all_ids = acc.gather(acc.pad_across_processes(completion_ids, dim=1, pad_index=self._tokenizer.pad_token_id))
        all_mask = acc.gather(acc.pad_across_processes(mask, dim=1, pad_index=0))

        scores = self._correctness_scores(rewards_per_func)
        if scores.shape[0] != all_ids.shape[0]:
            raise RuntimeError(
                f"KTAEGRPOTrainer: {scores.shape[0]} rewards for {all_ids.shape[0]} gathered completions"
            )
        all_values, values = local_key_token_values(
            all_ids, all_mask, scores, num_generations, acc.process_index * local_size, local_size, local_length,
            self.ktae_config,
        )
        rollout = output["advantages"]
        self._ktae_dump(inputs, all_ids, all_mask, scores, all_values, num_generations)  # every ktae_dump_every steps
        values = values.to(device=rollout.device, dtype=rollout.dtype)
        output[ROLLOUT_ADVANTAGES] = rollout
        output["advantages"] = (rollout.unsqueeze(1) + values) * mask.to(rollout.dtype)

        keep = ~torch.isnan(scores)
        group = torch.arange(scores.shape[0], device=scores.device) // num_generations
        if bool(keep.any()):
            metrics = key_token_metrics(
                all_values[keep], all_mask[keep], scores[keep], group[keep], self.ktae_config.threshold
            )
            for key, value in metrics.items():
                self._metrics[mode][key].append(value)
        if mode == "train":
            mixed, groups = mixed_groups(scores[keep], group[keep], self.ktae_config.threshold, all_mask[keep])
            self._ktae_watch.update(mixed, groups, self.state.global_step)
        return output

    # ---- TRL's sequence-level decisions read A_i, never A_i + K -------------------------------------------------

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        rollout = inputs.get(ROLLOUT_ADVANTAGES)
        if rollout is None:
            return super()._compute_loss(model, inputs)
        sequence = rollout.unsqueeze(1)  # [B, 1]
        args = self.args
        temperatures = (args.sapo_temperature_pos, args.sapo_temperature_neg)
        # TRL calls its static get_off_policy_mask / get_gamma_weights through ``self``: for this call only, an
        # instance attribute hands them A_i; the class keeps TRL's own static methods (called as TRL's tests do)
        for name in _SEQUENCE_DECISIONS:
            setattr(self, name, _reading_rollout_advantages(getattr(type(self), name), sequence))
        try:
            if self.loss_type == "sapo":  # TRL picks the temperature by the sign: make it that of A_i
                chosen = torch.where(sequence > 0, temperatures[0], temperatures[1]).to(sequence.dtype)
                args.sapo_temperature_pos = args.sapo_temperature_neg = chosen
            return super()._compute_loss(model, inputs)
        finally:
            args.sapo_temperature_pos, args.sapo_temperature_neg = temperatures
            for name in _SEQUENCE_DECISIONS:
                self.__dict__.pop(name, None)


#: TRL's static methods that decide per sequence from the sign of the advantage
_SEQUENCE_DECISIONS = ("get_off_policy_mask", "get_gamma_weights")


def _reading_rollout_advantages(method: Any, sequence: torch.Tensor) -> Any:
    """TRL's static ``method`` with its ``advantages`` argument ([B, T], A_i + K) replaced by ``sequence``
    ([B, 1], A_i); every other argument passes through as TRL gives it."""

    def call(advantages: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return method(sequence.to(device=advantages.device, dtype=advantages.dtype), *args, **kwargs)

    return call
