"""Load a causal LM and its tokenizer from what ``--model`` names: a local folder, a local GGUF file or a Hub id.

One layer below ``ktae train`` and ``ktae eval`` (both load through here), above nothing of the package but
:mod:`ktae.model_source`. A GGUF file is dequantised by ``transformers`` (``gguf_file=``) and then rebuilt as a
plain model of the same architecture (``from_config`` + ``load_state_dict``), so that it trains and saves like
any other model.

    tokenizer = load_tokenizer("runs/x/final")
    model = load_hf_model("runs/x/final", torch.float32)
"""
from __future__ import annotations

import torch

from ktae.model_source import resolve_model_source

__all__ = ["split_gguf", "load_tokenizer", "load_hf_model", "align_eos"]


def split_gguf(model: str, gguf_file: str = "") -> tuple[str, str]:
    """(folder or repo id, gguf file name or ''): a ``.gguf`` path in ``model`` is split in two; a path that
    is not there is reported (:func:`ktae.model_source.resolve_model_source`)."""
    source = resolve_model_source(model, gguf_file)
    return source.name, source.gguf_file


def load_tokenizer(model: str, *, gguf_file: str = "", tokenizer: str = "", trust_remote_code: bool = False):
    """The tokenizer of ``model`` (of ``tokenizer`` when given), with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    source, gguf = split_gguf(model, gguf_file)
    name = tokenizer or source
    kwargs = {"trust_remote_code": trust_remote_code}
    if gguf and not tokenizer:
        kwargs["gguf_file"] = gguf
    tok = AutoTokenizer.from_pretrained(name, **kwargs)
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"tokenizer of {name!r} has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok


def load_hf_model(model: str, dtype: torch.dtype, *, gguf_file: str = "", trust_remote_code: bool = False):
    """A trainable ``AutoModelForCausalLM`` from a Hub id, a folder or a GGUF file, its parameters in ``dtype``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source, gguf = split_gguf(model, gguf_file)
    kwargs = {"trust_remote_code": trust_remote_code, "dtype": dtype}
    if not gguf:
        return AutoModelForCausalLM.from_pretrained(source, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, **kwargs)
    # Rebuild as an ordinary model: a GGUF-loaded model carries loading state that stops training/saving.
    config = AutoConfig.from_pretrained(source, gguf_file=gguf, trust_remote_code=trust_remote_code)
    rebuilt = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    missing, unexpected = rebuilt.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(rebuilt, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"--model {model}: GGUF weights do not fit {type(rebuilt).__name__}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(rebuilt.config, "tie_word_embeddings", False):
        rebuilt.tie_weights()
    del loaded
    return rebuilt


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
