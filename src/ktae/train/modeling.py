"""Load the policy: the embedded tiny model, or any Hugging Face causal LM or local GGUF file
(:mod:`ktae.loading`), on the run's device and dtype, ready to train."""
from __future__ import annotations

import torch


def parameter_dtype(compute: torch.dtype) -> torch.dtype:
    """The dtype of the trained weights: float32 (bf16/fp16 compute runs under autocast), float64 for float64."""
    return torch.float64 if compute == torch.float64 else torch.float32


def disable_dropout(model) -> None:
    """Switch dropout off everywhere: PPO compares log-probs of the same policy, which must be deterministic."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("attention_dropout", "dropout", "attn_dropout", "resid_dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)


def load_policy(cfg, device: torch.device, dtype: torch.dtype, progress: bool = True):
    """``(model, tokenizer, source)`` for the run; ``source`` names where the weights came from.

    A model other than the embedded one comes from the one loader (:func:`ktae.loading.load_model`), its
    ``--model`` resolved once here. ``dtype`` is the dtype of the parameters (the trainer keeps float32 and
    computes in bf16 under autocast on a GPU). Dropout is switched off.
    """
    if cfg.model.path == "embedded":
        from ktae.train.data import EMBEDDED_EVAL_POOL, EMBEDDED_EVAL_SEED, embedded_task
        from ktae.recipes.tiny_model import load_embedded_model

        task = embedded_task(cfg.task)
        held_out = frozenset(r["problem"] for r in task.problems(EMBEDDED_EVAL_POOL, seed=EMBEDDED_EVAL_SEED))
        model, tokenizer, folder = load_embedded_model(task, cfg.tiny, exclude=held_out, progress=progress,
                                                       cache_dir=cfg.model.cache_dir or None, dtype=dtype)
        source = str(folder) if folder else "embedded (not cached)"
    else:
        from ktae.loading import load_model
        from ktae.model_source import resolve_model_source

        m = cfg.model
        resolved = resolve_model_source(m.path, m.gguf_file)  # a mistyped path: no such folder
        model, tokenizer = load_model(resolved, dtype=dtype, device=str(device), tokenizer=m.tokenizer,
                                      trust_remote_code=m.trust_remote_code)
        source = m.path
    model.to(device=device, dtype=dtype)
    disable_dropout(model)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tokenizer, source
