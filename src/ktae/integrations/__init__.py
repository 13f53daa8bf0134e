"""Adapters that switch KTAE on inside other RL frameworks.

- ``ktae.integrations.verl``: advantage estimators ``ktae``, ``grpo_ktae``, ``dr_grpo_ktae`` and ``rloo_ktae`` for
  verl (``pip install "ktae[verl]"``; loaded automatically through verl's ``verl.plugins`` entry point).
- ``ktae.integrations.verl_launch`` (``ktae verl``) and ``ktae.integrations.doctor`` (``ktae doctor``): run verl
  with the plug-in checked first, and report whether verl, its Ray workers and TRL see KTAE.
- ``ktae.integrations.trl``: ``KTAEGRPOConfig`` / ``KTAEGRPOTrainer``, drop-in replacements for TRL's GRPO
  classes (``pip install "ktae[trl]"``).

This package imports nothing itself: each adapter imports its framework only when it is imported.
"""
