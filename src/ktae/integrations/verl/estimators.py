"""The KTAE advantage estimators of verl (``algorithm.adv_estimator=ktae`` / ``grpo_ktae`` / ...):
``ktae.ktae_parts`` on one verl batch, registered in ``verl.trainer.ppo.core_algos``."""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from verl.trainer.ppo import core_algos

from ktae.core.advantages import ktae_parts
from ktae.frontend.metrics import key_token_metrics
from ktae.frontend.outcomes import mixed_groups
from ktae.integrations.verl.options import ESTIMATORS, is_ktae_estimator, ktae_config_from_verl, section, warn_after
from ktae.integrations.verl.state import CURRENT_BATCH
from ktae.integrations.verl.version import params, require

__all__ = ["compute_ktae_advantage", "register_estimators", "check_core_algos"]

_MISSING_IDS = (
    "adv_estimator={name!r} needs the response token ids, and verl's compute_advantage does not pass them. "
    "ktae.integrations.verl supplies them when it is imported before the trainer runs: install ktae with the "
    "verl extra (pip install \"ktae[verl]\") so verl loads it through its 'verl.plugins' entry point (and do not "
    "set VERL_USE_EXTERNAL_PLUGINS=none), or add actor_rollout_ref.model.external_lib=ktae.integrations.verl. "
    "When calling the estimator yourself, pass responses=[B, L] token ids."
)


def _tokenizer_or_warning(tokenizer: Any, algorithm_config: Any) -> Any:
    if tokenizer is None and section(algorithm_config).get("ignore_token_ids") is None:
        warnings.warn(  # once per process: Python's default filter shows a warning once per place
            "KTAE: no tokenizer is known here and algorithm.ktae.ignore_token_ids is not set, so no token id "
            "(pad, EOS) is excluded from the key-token values; set +algorithm.ktae.ignore_token_ids=[...] to "
            "choose them",
            stacklevel=4,
        )
    return tokenizer


def compute_ktae_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    config: Any = None,
    *,
    responses: torch.Tensor | None = None,
    estimator: str = "ktae",
    tokenizer: Any = None,
    norm_adv_by_std_in_grpo: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl advantage estimator: ``ktae.ktae_advantages`` on one verl batch.

    Args:
        token_level_rewards: [B, L] float; the outcome score of a rollout is its sum (as in verl's GRPO).
        response_mask: [B, L] 0/1.
        index: [B] prompt ids (verl's ``uid`` numpy object array of strings).
        config: verl's ``algorithm`` section; options from ``algorithm.ktae.*``.
        responses: [B, L] response token ids; taken from the trainer wrappers of this plug-in when None.
        estimator: which of :data:`ESTIMATORS`.
        tokenizer: gives the default ignored ids (pad, EOS); the trainer's tokenizer when None.
        norm_adv_by_std_in_grpo: see :func:`ktae_config_from_verl`.

    Returns:
        (advantages [B, L], returns [B, L]); returns equal the advantages, as for verl's GRPO.
    """
    batch = CURRENT_BATCH.get()
    if responses is None and batch is not None:
        responses = batch.responses
    if responses is None:
        raise ValueError(_MISSING_IDS.format(name=estimator))
    if responses.shape != response_mask.shape:
        raise ValueError(
            f"response ids have shape {tuple(responses.shape)} but response_mask has {tuple(response_mask.shape)}; "
            "KTAE needs one token id per response position"
        )
    if tokenizer is None and batch is not None:
        tokenizer = batch.tokenizer if batch.tokenizer is not None else batch.state.tokenizer
    cfg = ktae_config_from_verl(config, estimator, _tokenizer_or_warning(tokenizer, config), norm_adv_by_std_in_grpo)
    device = token_level_rewards.device
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        ids = responses.to(device)
        advantages, _, values = ktae_parts(ids, response_mask, scores, index, cfg)
        if batch is not None:
            batch.dump = (ids, response_mask, scores, index, cfg, values)
            batch.metrics.update(key_token_metrics(values, response_mask, scores, index, cfg.threshold))
            mixed, groups = mixed_groups(scores, index, cfg.threshold, response_mask)
            batch.state.watch(cfg.threshold, warn_after(config)).update(mixed, groups)
    return advantages.to(device), advantages.to(device)


def _make_estimator(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    def estimator(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: Any = None,
        config: Any = None,
        responses: torch.Tensor | None = None,
        norm_adv_by_std_in_grpo: bool | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return compute_ktae_advantage(token_level_rewards, response_mask, index, config, responses=responses,
                                      estimator=name, norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo)

    estimator.__name__ = f"compute_{name}_advantage"
    estimator.__qualname__ = estimator.__name__
    estimator.__doc__ = f"verl advantage estimator {name!r}: see ktae.integrations.verl.compute_ktae_advantage."
    estimator.__ktae_estimator__ = name  # type: ignore[attr-defined]
    return estimator


def check_core_algos(module: Any = core_algos) -> None:
    """Raise ``UnsupportedVerlError`` unless verl's estimator registry is what the plug-in registers into."""
    require({
        "core_algos.register_adv_est(name)": len(params(getattr(module, "register_adv_est", None))) == 1,
        "core_algos.ADV_ESTIMATOR_REGISTRY": isinstance(getattr(module, "ADV_ESTIMATOR_REGISTRY", None), dict),
        "core_algos.get_adv_estimator_fn(name)": callable(getattr(module, "get_adv_estimator_fn", None)),
    })


def register_estimators() -> None:
    """Register :data:`ESTIMATORS` with verl (those already ours are left as they are)."""
    for name in ESTIMATORS:
        current = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
        if current is not None:
            if getattr(current, "__ktae_estimator__", None) == name:
                continue  # already ours (module imported twice, e.g. entry point + external_lib)
            raise ValueError(
                f"verl already has an advantage estimator named {name!r} ({current!r}); ktae cannot register its own"
            )
        core_algos.register_adv_est(name)(_make_estimator(name))


def installed_estimators() -> list[str]:
    """The KTAE names in verl's estimator registry."""
    return sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if is_ktae_estimator(n))
