"""The verl trainer functions the plug-in wraps so that the response token ids reach the KTAE estimators, and the
``ktae/*`` metrics and key-token dumps leave them. Each patch holds one :class:`TrainerState` in its wrappers.

- v1 trainer (default, ``trainer.use_v1=true``): ``PPOTrainer._compute_advantage`` also fetches ``responses``
  from the TransferQueue (``kv_batch_get(..., select_fields=["responses"])``) and logs the metrics;
- legacy trainer (``trainer.use_v1=false``): ``ray_trainer.compute_advantage`` hands ``data.batch["responses"]``
  to the estimator, and ``compute_data_metrics`` adds the metrics to the step's.

Every wrapper acts only when the configured estimator is a KTAE one; the private names are checked (presence and
signature) before anything is wrapped, and a mismatch raises ``UnsupportedVerlError``.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch

from ktae.integrations.verl.dumps import dump, legacy_dump_inputs, v1_dump_inputs
from ktae.integrations.verl.options import is_ktae_estimator
from ktae.integrations.verl.state import CURRENT_BATCH, Batch, TrainerState
from ktae.integrations.verl.version import WRAPPED, params, require

__all__ = ["RAY_TRAINER", "V1_TRAINER", "check_ray_trainer", "patch_ray_trainer", "check_v1_trainer",
           "patch_v1_trainer", "state_of"]

RAY_TRAINER = "verl.trainer.ppo.ray_trainer"
V1_TRAINER = "verl.trainer.ppo.v1.trainer_base"


def _wrap(owner: Any, name: str, wrapper: Any, state: TrainerState) -> None:
    """Put ``wrapper`` in place of ``owner.name``, marked with the original and the patch's state."""
    original = getattr(owner, name)
    setattr(wrapper, WRAPPED, original)
    wrapper.__ktae_state__ = state
    wrapper.__doc__ = original.__doc__
    setattr(owner, name, wrapper)


def state_of(function: Any) -> TrainerState | None:
    """The :class:`TrainerState` a wrapped verl function holds (None for a function the plug-in did not wrap)."""
    return getattr(function, "__ktae_state__", None)


def _padded(tensor: torch.Tensor) -> torch.Tensor:
    """A regular [B, L] tensor from a (possibly jagged nested) [B, *] one, padding with 0."""
    return tensor.to_padded_tensor(0) if getattr(tensor, "is_nested", False) else tensor


def check_ray_trainer(module: Any) -> None:
    require({
        f"{RAY_TRAINER}.compute_advantage(data, adv_estimator, ...)":
            params(getattr(module, "compute_advantage", None))[:2] == ["data", "adv_estimator"],
        f"{RAY_TRAINER}.RayPPOTrainer.__init__": callable(getattr(getattr(module, "RayPPOTrainer", None), "__init__",
                                                                  None)),
    })


def patch_ray_trainer(module: Any) -> None:
    """Wrap the legacy trainer's module-level ``compute_advantage`` and ``compute_data_metrics``, and record the
    trainer (tokenizer, step) when it is made."""
    check_ray_trainer(module)
    if hasattr(module.compute_advantage, WRAPPED):
        return
    state = TrainerState()
    original = module.compute_advantage

    def compute_advantage(data: Any, adv_estimator: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_ktae_estimator(adv_estimator) or "responses" not in data.batch.keys():
            return original(data, adv_estimator, *args, **kwargs)
        outer = CURRENT_BATCH.get()
        batch = Batch(state, responses=data.batch["responses"], tokenizer=outer.tokenizer if outer else None)
        legacy_dump_inputs(batch, data)
        token = CURRENT_BATCH.set(batch)
        try:
            result = original(data, adv_estimator, *args, **kwargs)
        finally:
            CURRENT_BATCH.reset(token)
        # the v1 trainer's wrapper logs them itself; the legacy trainer, through compute_data_metrics below
        (outer.metrics if outer is not None else state.pending_metrics).update(batch.metrics)
        config = kwargs.get("config", args[4] if len(args) > 4 else None)  # verl: (..., norm_adv..., config)
        dump(batch, config, batch.tokenizer if batch.tokenizer is not None else state.tokenizer)
        return result

    _wrap(module, "compute_advantage", compute_advantage, state)
    init = module.RayPPOTrainer.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        state.tokenizer = getattr(self, "tokenizer", None)
        state.trainer = weakref.ref(self)

    _wrap(module.RayPPOTrainer, "__init__", __init__, state)
    data_metrics = getattr(module, "compute_data_metrics", None)
    if data_metrics is not None:

        def compute_data_metrics(*args: Any, **kwargs: Any) -> dict:
            out = data_metrics(*args, **kwargs)
            out.update(state.pending_metrics)  # the ktae/* metrics of this step's advantage computation
            state.pending_metrics.clear()
            return out

        _wrap(module, "compute_data_metrics", compute_data_metrics, state)


def check_v1_trainer(module: Any) -> None:
    require({
        f"{V1_TRAINER}.PPOTrainer._compute_advantage(self, batch, metrics)":
            params(getattr(getattr(module, "PPOTrainer", None), "_compute_advantage", None))
            == ["self", "batch", "metrics"],
        f"{V1_TRAINER}.tq.kv_batch_get(keys, partition_id, select_fields)":
            {"keys", "partition_id", "select_fields"} <= set(params(getattr(getattr(module, "tq", None),
                                                                            "kv_batch_get", None))),
    })


def _responses(tq: Any, meta: Any, name: Any) -> torch.Tensor:
    try:
        data = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id, select_fields=["responses"])
        return _padded(data["responses"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"adv_estimator={getattr(name, 'value', name)!r} needs the 'responses' field of the batch, but the "
            f"TransferQueue did not return it ({err}); KTAE only works with rollouts that store their response "
            "token ids"
        ) from err


def patch_v1_trainer(module: Any) -> None:
    """Wrap v1 ``PPOTrainer._compute_advantage`` to fetch the response ids from the TransferQueue."""
    check_v1_trainer(module)
    trainer_cls = module.PPOTrainer
    original = trainer_cls._compute_advantage
    if hasattr(original, WRAPPED):
        return
    state = TrainerState()

    def _compute_advantage(self: Any, meta: Any, metrics: dict) -> Any:
        name = self.config.algorithm.adv_estimator
        if not is_ktae_estimator(name):
            return original(self, meta, metrics)
        batch = Batch(state, responses=_responses(module.tq, meta, name), tokenizer=getattr(self, "tokenizer", None))
        v1_dump_inputs(batch, self, module.tq, meta)
        token = CURRENT_BATCH.set(batch)
        try:
            result = original(self, meta, metrics)
        finally:
            CURRENT_BATCH.reset(token)
        metrics.update(batch.metrics)
        dump(batch, self.config.algorithm, batch.tokenizer)
        return result

    _wrap(trainer_cls, "_compute_advantage", _compute_advantage, state)
