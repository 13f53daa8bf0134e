"""Key-token dumps from verl's driver: ``+algorithm.ktae.dump_every=N +algorithm.ktae.dump_dir=DIR`` writes, every
N steps, the step's rollouts with their token ids, rewards, groups and exact K values to DIR
(:mod:`ktae.frontend.records`, in a background thread) for ``ktae analyze DIR``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ktae.integrations.verl.state import Batch

__all__ = ["legacy_dump_inputs", "v1_dump_inputs", "dump"]


def legacy_dump_inputs(batch: Batch, data: Any) -> None:
    """The step, prompts and references of a legacy trainer's ``DataProto``, for the dump."""
    batch.step = batch.state.global_step()
    batch.prompts = data.batch["prompts"] if "prompts" in data.batch.keys() else None
    batch.references = data.non_tensor_batch.get("reward_model")


def v1_dump_inputs(batch: Batch, trainer: Any, tq: Any, meta: Any) -> None:
    """The step of a v1 trainer and, when a dump is due, the prompts and references from its TransferQueue."""
    batch.step = getattr(trainer, "global_steps", None)
    dumper = batch.state.dumper(trainer.config.algorithm, batch.tokenizer)
    if dumper is None or not dumper.due(batch.step):
        return
    for name in ("prompts", "reward_model"):
        try:
            value = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id, select_fields=[name])[name]
        except (KeyError, ValueError, RuntimeError):
            continue  # the dump goes without prompt texts / references
        if name == "prompts":
            batch.prompts = [row.tolist() for row in value.unbind()] if getattr(value, "is_nested", False) else value
        else:
            batch.references = value


def dump(batch: Batch, algorithm_config: Any, tokenizer: Any) -> None:
    """Queue the rollouts of this advantage computation with their K values, when a dump is due."""
    dumper = batch.state.dumper(algorithm_config, tokenizer)
    if dumper is None or batch.dump is None or not dumper.due(batch.step):
        return
    ids, mask, scores, index, cfg, values = batch.dump   # values: the K inside the advantages
    prompts = batch.prompts.tolist() if torch.is_tensor(batch.prompts) else batch.prompts
    references = None
    if batch.references is not None:
        items = batch.references.tolist() if hasattr(batch.references, "tolist") else list(batch.references)
        references = [item.get("ground_truth") if isinstance(item, Mapping) else item for item in items]
    dumper.submit(batch.step, ids, mask, scores, [str(i) for i in index], values, cfg, prompts, references)
