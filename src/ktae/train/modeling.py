"""Load the policy: the embedded tiny model, or any Hugging Face causal LM or local GGUF file
(:mod:`ktae.loading`), on the run's device and dtype, ready to train."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype: ``auto`` is bfloat16 on a GPU and float32 on a CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}[name]


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

    ``dtype`` is the dtype of the parameters (the trainer keeps float32 and computes in bf16 under
    autocast on a GPU). Dropout is switched off.
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
        from ktae.model_source import explain_load_error, resolve_model_source

        from ktae.loading import align_eos, load_hf_model, load_tokenizer

        m = cfg.model
        resolved = resolve_model_source(m.path, m.gguf_file)  # a mistyped path: no such folder
        try:
            tokenizer = load_tokenizer(m.path, gguf_file=m.gguf_file, tokenizer=m.tokenizer,
                                       trust_remote_code=m.trust_remote_code)
            model = load_hf_model(m.path, dtype, gguf_file=m.gguf_file, trust_remote_code=m.trust_remote_code)
        except OSError as err:  # e.g. a Hub id that does not exist: say it was tried as one
            raise explain_load_error(resolved, err) from err
        source = m.path
        if resolved.gguf_file:
            align_eos(model, tokenizer)
    model.to(device=device, dtype=dtype)
    disable_dropout(model)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tokenizer, source
