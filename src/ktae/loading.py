"""The one model loader: a causal LM and its tokenizer from a resolved ``--model`` (a local folder, a local GGUF
file or a Hub id), for ``ktae train`` and ``ktae eval`` alike.

The caller resolves what ``--model`` names once (:func:`ktae.model_source.resolve_model_source`) and hands the
:class:`~ktae.model_source.ModelSource` here; dtype and device names are mapped to torch here only
(:func:`resolve_dtype`, :func:`resolve_device`). A GGUF file is dequantised by ``transformers`` (``gguf_file=``)
and then rebuilt as a plain model of the same architecture (``from_config`` + ``load_state_dict``), so that it
trains and saves like any other model; its tokenizer's EOS is aligned with the model's (:func:`align_eos`).

    source = resolve_model_source("runs/x/final")
    model, tokenizer = load_model(source, dtype="float32", device="cpu")
    llm, tokenizer = load_model(source, backend="vllm")      # a vllm.LLM (pip install 'ktae[vllm]')
"""
from __future__ import annotations

from typing import Any

import torch

from ktae.generation import BACKENDS
from ktae.model_source import ModelSource, explain_load_error

__all__ = ["DTYPES", "resolve_dtype", "resolve_device", "load_model", "load_tokenizer", "align_eos"]

#: model dtype names a command accepts; ``auto`` is bfloat16 on a GPU and float32 on a CPU; ``float64`` is slow, but
#: a short run then gives the same rollouts on CPUs with different SIMD kernels (docs/reproducing.md)
DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
                 "float64": torch.float64}


def resolve_device(name: str | None) -> torch.device:
    """The torch device a ``--device`` value names: ``auto`` (or None) is CUDA when available, else the CPU.

    Raises:
        ValueError: not a device name, or CUDA asked for on a machine without it.
    """
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The torch dtype a ``--dtype`` name (one of :data:`DTYPES`) means on ``device``; a torch dtype as it is.

    Raises:
        ValueError: ``name`` is not one of :data:`DTYPES`.
    """
    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _TORCH_DTYPES:
        raise ValueError(f"--dtype: expected one of {DTYPES}, got {name!r}")
    return _TORCH_DTYPES[name]


def load_tokenizer(source: ModelSource, *, tokenizer: str = "", trust_remote_code: bool = False):
    """The tokenizer of ``source`` (of the folder or Hub id ``tokenizer`` when given), with a pad token (EOS when
    it has none).

    Raises:
        ValueError: the tokenizer has neither a pad nor an EOS token.
    """
    from transformers import AutoTokenizer

    name = tokenizer or source.name
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if source.gguf_file and not tokenizer:
        kwargs["gguf_file"] = source.gguf_file
    loaded = AutoTokenizer.from_pretrained(name, **kwargs)
    if loaded.pad_token is None:
        if loaded.eos_token is None:
            raise ValueError(f"--tokenizer: the tokenizer of {name!r} has neither a pad nor an EOS token")
        loaded.pad_token = loaded.eos_token
    return loaded


def _load_weights(source: ModelSource, dtype: torch.dtype, trust_remote_code: bool):
    """An ``AutoModelForCausalLM`` of ``source`` with parameters in ``dtype``; a GGUF file rebuilt as a plain model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {"trust_remote_code": trust_remote_code, "dtype": dtype}
    if not source.gguf_file:
        return AutoModelForCausalLM.from_pretrained(source.name, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(source.name, gguf_file=source.gguf_file, **kwargs)
    # Rebuild as an ordinary model: a GGUF-loaded model carries loading state that stops training/saving.
    config = AutoConfig.from_pretrained(source.name, gguf_file=source.gguf_file, trust_remote_code=trust_remote_code)
    rebuilt = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    missing, unexpected = rebuilt.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(rebuilt, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"--model {source.given}: GGUF weights do not fit {type(rebuilt).__name__}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(rebuilt.config, "tie_word_embeddings", False):
        rebuilt.tie_weights()
    del loaded
    return rebuilt


def _load_vllm(source: ModelSource, dtype: str, tokenizer: str, trust_remote_code: bool, max_model_len: int | None,
               vllm_kwargs: dict | None):
    """``(vllm.LLM, its tokenizer)`` for a folder or Hub id; the head size is checked before the engine starts."""
    if source.kind == "gguf":
        raise ValueError(f"--model {source.given!r}: a GGUF file needs --backend hf (the vLLM backend takes a "
                         "model folder or a Hub id)")
    try:
        from vllm import LLM
    except ImportError as exc:
        raise ImportError("--backend vllm needs vLLM: pip install 'ktae[vllm]'") from exc
    from transformers import AutoConfig

    from ktae.vllm_setup import engine_checks

    try:
        config = AutoConfig.from_pretrained(source.name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise explain_load_error(source, err) from err
    length = max_model_len or getattr(config, "max_position_embeddings", None) or 4096
    kwargs = dict(model=source.name, tokenizer=tokenizer or None, dtype=dtype, trust_remote_code=trust_remote_code)
    kwargs.update(engine_checks(config, length, 4))   # head size refused before the engine starts; CPU KV cache
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    kwargs.update(vllm_kwargs or {})
    llm = LLM(**kwargs)
    return llm, llm.get_tokenizer()


def load_model(source: ModelSource, *, backend: str = "hf", dtype: str | torch.dtype = "auto",
               device: str | None = "auto", tokenizer: str = "", trust_remote_code: bool = False, max_model_len: int | None = None,
               vllm_kwargs: dict | None = None):
    """``(model, tokenizer)`` of a resolved ``--model``: the one loader of ``ktae train`` and ``ktae eval``.

    Args:
        source: what ``--model`` names, resolved once by the caller (:func:`ktae.model_source.resolve_model_source`).
        backend: ``hf`` (an ``AutoModelForCausalLM`` on ``device``, in eval mode) or ``vllm`` (a ``vllm.LLM``;
            folders and Hub ids only).
        dtype: one of :data:`DTYPES` or a torch dtype (``hf``: the parameters' dtype, :func:`resolve_dtype`;
            ``vllm``: the name passed on, ``auto`` being vLLM's own choice).
        device: ``auto``/None (CUDA when available), ``cpu``, ``cuda:N`` (``hf`` only).
        tokenizer: a folder or Hub id of another tokenizer ('' for the model's own).
        max_model_len: the vLLM engine's length (None: the model's positions).
        vllm_kwargs: more keyword arguments of ``vllm.LLM``.

    Raises:
        ValueError: a bad ``backend`` or ``dtype``, or a model that cannot be loaded (the message says what was
            tried: :func:`ktae.model_source.explain_load_error`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend: expected one of {BACKENDS}, got {backend!r}")
    if not isinstance(dtype, torch.dtype) and dtype not in DTYPES:
        raise ValueError(f"--dtype: expected one of {DTYPES}, got {dtype!r}")
    if backend == "vllm":
        name = str(dtype).removeprefix("torch.")
        return _load_vllm(source, name, tokenizer, trust_remote_code, max_model_len, vllm_kwargs)
    torch_device = resolve_device(device)
    try:
        loaded_tokenizer = load_tokenizer(source, tokenizer=tokenizer, trust_remote_code=trust_remote_code)
        model = _load_weights(source, resolve_dtype(dtype, torch_device), trust_remote_code)
    except OSError as err:  # e.g. a Hub id that does not exist: say it was tried as one
        raise explain_load_error(source, err) from err
    if source.gguf_file:
        align_eos(model, loaded_tokenizer)
    model.to(torch_device)
    model.eval()
    return model, loaded_tokenizer


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
