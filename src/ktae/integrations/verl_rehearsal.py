"""Rehearsal models for ``ktae verl --cpu --rehearse``: your model's architecture family, shrunk and random, with
your tokenizer and chat template, so that a verl job's data, prompts, reward function, KTAE options, dumps and
checkpoints run on a CPU in minutes before the GPU job starts.

:func:`tiny_model` reads the model's ``config.json`` and tokenizer (a local folder or a Hub name, as verl does),
keeps the architecture (``model_type``, vocabulary, special token ids, rope settings) and sets the sizes to
:data:`TINY`; the model is built with a fixed seed and saved with the tokenizer (chat template included) and the
generation config under ``$KTAE_CACHE/verl-rehearsal/<key>`` (or ``~/.cache/ktae``), keyed by the source config,
the tokenizer files and :data:`BUILD_VERSION`: built once, reused afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ktae.recipes.tiny_model import cache_root

#: bump when the recipe changes so that old rehearsal models are not reused
BUILD_VERSION = 1
#: the sizes of a rehearsal model (config attribute -> value), where the architecture has the attribute
TINY: dict[str, int] = {
    "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "moe_intermediate_size": 64, "shared_expert_intermediate_size": 64,
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "first_k_dense_replace": 1, "kv_lora_rank": 16, "q_lora_rank": 16, "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8, "v_head_dim": 16,
}


def _shrink(config: Any) -> Any:
    """The same config with the sizes of :data:`TINY` (only the attributes it has), layer lists cut to fit."""
    for name, value in TINY.items():
        if getattr(config, name, None) is not None:
            setattr(config, name, value)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[: config.num_hidden_layers]
    if getattr(config, "max_window_layers", None) is not None:
        config.max_window_layers = min(config.max_window_layers, config.num_hidden_layers)
    return config


def _key(config: Any, tokenizer: Any) -> str:
    with tempfile.TemporaryDirectory() as folder:
        files = tokenizer.save_pretrained(folder)
        digest = hashlib.sha256()
        for name in sorted(files):
            if os.path.isfile(name):
                digest.update(Path(name).name.encode() + Path(name).read_bytes())
    payload = json.dumps({"version": BUILD_VERSION, "config": config.to_dict(), "tokenizer": digest.hexdigest(),
                          "tiny": TINY}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def tiny_model(path: str, tokenizer_path: str | None = None, trust_remote_code: bool = False,
               cache: str | os.PathLike | None = None) -> tuple[str, str]:
    """The folder of the rehearsal model for ``path`` (built on the first call, then reused).

    Args:
        path: ``actor_rollout_ref.model.path``: a local folder or a Hub name.
        tokenizer_path: ``actor_rollout_ref.model.tokenizer_path`` when set (default: ``path``).
        trust_remote_code: as ``actor_rollout_ref.model.trust_remote_code``.
        cache: where rehearsal models live (default ``$KTAE_CACHE/verl-rehearsal`` or ``~/.cache/ktae/...``).

    Returns:
        (folder, a one-line description for the console).

    Raises:
        OSError: the config or the tokenizer of ``path`` cannot be read.
        ValueError: transformers cannot build a causal LM of that architecture.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise OSError(f"--rehearse: cannot read the config and tokenizer of actor_rollout_ref.model.path={path!r} "
                      f"({err})") from err
    root = Path(cache) if cache is not None else cache_root() / "verl-rehearsal"
    folder = root / _key(config, tokenizer)
    source = f"{config.model_type} like {path}, {TINY['num_hidden_layers']} layers of width {TINY['hidden_size']}"
    if (folder / "config.json").exists():
        return str(folder), f"{source}, random; cached"
    import torch

    tiny = _shrink(config)
    try:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(tiny, trust_remote_code=trust_remote_code)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"--rehearse: transformers cannot build a causal LM like {path!r} ({err})") from err
    try:
        model.generation_config = GenerationConfig.from_pretrained(path)
    except (OSError, ValueError):
        pass  # no generation_config.json: transformers' defaults from the config
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, folder)  # whole or not at all; a concurrent build of the same key wins the same
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "config.json").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    params = sum(p.numel() for p in model.parameters())
    return str(folder), f"{source}, random, {params / 1e6:.2f} M parameters; built now"
