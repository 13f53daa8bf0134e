"""KTAE inside verl (``pip install "ktae[verl]"``, verl >= 0.9, < 0.10).

Importing this package (verl does it in every process through the ``verl.plugins`` entry point that ktae
ships, or through ``actor_rollout_ref.model.external_lib=ktae.integrations.verl``):

1. checks the installed verl (:mod:`.version`);
2. registers the advantage estimators ``ktae``, ``grpo_ktae``, ``dr_grpo_ktae`` and ``rloo_ktae``
   (:mod:`.estimators`), so ``algorithm.adv_estimator=ktae`` works;
3. makes the response token ids reach them (:mod:`.patches`): verl calls an estimator with
   ``token_level_rewards``, ``response_mask``, ``index`` and ``config`` but not with the ids, so the trainers'
   advantage steps are wrapped, as soon as their module is imported, and only act for a KTAE estimator;
4. lets verl build models when a trl >= 1 is installed too (:mod:`.trl_compat`).

Options come from ``algorithm.ktae.*`` (new keys need Hydra's ``+``: ``+algorithm.ktae.alpha=1.0``); the keys are
the fields of :class:`ktae.KTAEConfig` and the plug-in's own (:mod:`.options`: ``warn_after``, ``dump_every``,
``dump_dir``). ``ignore_token_ids`` defaults to the tokenizer's pad and EOS ids. The advantages themselves are
``ktae.ktae_parts``; the metrics, dumps and mixed-group watch are :mod:`ktae.frontend`'s.

Correctness: a rollout is correct when its score (the sum of its ``token_level_rewards``) is > ``threshold``; a
rollout whose ``response_mask`` is all zero is left out of its group's counts. After ``algorithm.ktae.warn_after``
(default 5) consecutive steps without a group that has both correct and wrong rollouts, a ``NoMixedGroupsWarning``
says that K is 0 and what to set.

``ktae verl`` (:mod:`ktae.integrations.verl_launch`) runs verl's ``main_ppo`` after these checks; ``ktae doctor``
(:mod:`ktae.integrations.doctor`) reports them, in a Ray worker too. Reward functions for math (:mod:`.rewards`):
``reward.custom_reward_function.path=pkg://ktae.integrations.verl``, name ``math_score`` or ``dapo_score``.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

import wrapt

from ktae.integrations.verl.version import (WRAPPED, SUPPORTED_VERL, UnsupportedVerlError,  # noqa: I001 - first
                                            check_verl_version)
from ktae.integrations.verl.estimators import (check_core_algos, compute_ktae_advantage, installed_estimators,
                                               register_estimators)
from ktae.integrations.verl.options import ESTIMATORS, is_ktae_estimator, ktae_config_from_verl, warn_after
from ktae.integrations.verl.patches import (RAY_TRAINER, V1_TRAINER, check_ray_trainer, check_v1_trainer,
                                            patch_ray_trainer, patch_v1_trainer, state_of)
from ktae.integrations.verl.rewards import dapo_score, math_score
from ktae.integrations.verl.trl_compat import MODULE as TRL_CHECK_MODULE, patch_is_trl_available

__all__ = [
    "ESTIMATORS", "SUPPORTED_VERL", "UnsupportedVerlError", "check_verl_version", "installation_report",
    "compute_ktae_advantage", "dapo_score", "install", "is_ktae_estimator", "ktae_config_from_verl", "math_score",
    "state_of", "warn_after",
]

#: verl module -> (check, patch) of what the plug-in wraps in it
TARGETS = {RAY_TRAINER: (check_ray_trainer, patch_ray_trainer), V1_TRAINER: (check_v1_trainer, patch_v1_trainer),
           TRL_CHECK_MODULE: (lambda module: None, patch_is_trl_available)}


def installation_report() -> dict[str, Any]:
    """Import verl's two trainer modules here and say what is in place (for ``ktae doctor`` and ``ktae verl``).

    Returns:
        ``verl_version``, ``estimators`` (the KTAE names in verl's registry), ``legacy_wrapped`` and ``v1_wrapped``
        (whether ``ray_trainer.compute_advantage`` and ``PPOTrainer._compute_advantage`` carry the KTAE wrapper).

    Raises:
        UnsupportedVerlError: a wrapped verl name is missing or changed (raised while importing its module).
    """
    legacy = importlib.import_module(RAY_TRAINER)
    v1 = importlib.import_module(V1_TRAINER)
    return {
        "verl_version": check_verl_version(),
        "estimators": installed_estimators(),
        "legacy_wrapped": hasattr(legacy.compute_advantage, WRAPPED),
        "v1_wrapped": hasattr(v1.PPOTrainer._compute_advantage, WRAPPED),
    }


def install() -> None:
    """Register the KTAE estimators and arrange the wrappers (idempotent; runs on import)."""
    # every check of what is already imported runs before anything is changed: never half the wrapping
    check_core_algos()
    for name, (check, _) in TARGETS.items():
        if name in sys.modules:
            check(sys.modules[name])
    register_estimators()
    for name, (_, patch) in TARGETS.items():
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
        else:  # checked, then patched, when verl imports it; a failed check fails that import
            wrapt.register_post_import_hook(patch, name)


install()
