"""Load the policy: the embedded tiny model, any Hugging Face causal LM, or a local GGUF file.

A GGUF file is dequantised by ``transformers`` (``gguf_file=``) and then rebuilt as a
plain model of the same architecture (``from_config`` + ``load_state_dict``), so that
it trains and saves like any other model.
"""
from __future__ import annotations

import torch

from ktae.train.config import ModelConfig


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
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def split_gguf(model: str, gguf_file: str) -> tuple[str, str]:
    """(folder or repo id, gguf file name or ''): a ``.gguf`` path in ``--model`` is split in two; a path that
    is not there is reported (`ktae.model_source.resolve_model_source`, shared with ``ktae eval``)."""
    from ktae.model_source import resolve_model_source

    source = resolve_model_source(model, gguf_file)
    return source.name, source.gguf_file


def load_tokenizer(model: ModelConfig):
    """The tokenizer of ``model`` (``--tokenizer`` when set), with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    source, gguf = split_gguf(model.path, model.gguf_file)
    name = model.tokenizer or source
    kwargs = {"trust_remote_code": model.trust_remote_code}
    if gguf and not model.tokenizer:
        kwargs["gguf_file"] = gguf
    tok = AutoTokenizer.from_pretrained(name, **kwargs)
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"tokenizer of {name!r} has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok


def load_hf_model(model_config: ModelConfig, dtype: torch.dtype):
    """A trainable ``AutoModelForCausalLM`` from a Hub id, a folder or a GGUF file."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source, gguf = split_gguf(model_config.path, model_config.gguf_file)
    kwargs = {"trust_remote_code": model_config.trust_remote_code, "dtype": dtype}
    if not gguf:
        return AutoModelForCausalLM.from_pretrained(source, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, **kwargs)
    # Rebuild as an ordinary model: a GGUF-loaded model carries loading state that stops training/saving.
    config = AutoConfig.from_pretrained(source, gguf_file=gguf, trust_remote_code=model_config.trust_remote_code)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=model_config.trust_remote_code)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"--model {model_config.path}: GGUF weights do not fit {type(model).__name__}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    del loaded
    return model


def align_eos(model, tokenizer) -> bool:
    """Make the tokenizer's EOS the one the model's generation config stops at (GGUF chat models).

    transformers may read a GGUF tokenizer with a different EOS (e.g. ChatML's ``<|im_start|>``)
    than the generation config's (``<|im_end|>``); rollouts end at the latter, so the trainer's
    EOS (response masks, KTAE's ignored ids) must be the same token. The pad token moves too when
    it was the old EOS. Returns True when something changed.
    """
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    if eos is None or eos == tokenizer.eos_token_id:
        return False
    old = tokenizer.eos_token
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(int(eos))
    if tokenizer.pad_token is None or tokenizer.pad_token == old:
        vocab = tokenizer.get_vocab()
        tokenizer.pad_token = "<|endoftext|>" if "<|endoftext|>" in vocab else tokenizer.eos_token
    return True


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
                                                       cache_dir=cfg.model.cache_dir or None)
        source = str(folder) if folder else "embedded (not cached)"
    else:
        from ktae.model_source import explain_load_error, resolve_model_source

        resolved = resolve_model_source(cfg.model.path, cfg.model.gguf_file)  # a mistyped path: no such folder
        try:
            tokenizer = load_tokenizer(cfg.model)
            model = load_hf_model(cfg.model, dtype)
        except OSError as err:  # e.g. a Hub id that does not exist: say it was tried as one
            raise explain_load_error(resolved, err) from err
        source = cfg.model.path
        if split_gguf(cfg.model.path, cfg.model.gguf_file)[1]:
            align_eos(model, tokenizer)
    model.to(device=device, dtype=dtype)
    disable_dropout(model)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tokenizer, source
