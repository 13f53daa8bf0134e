"""What a vLLM engine needs decided before it starts, for ``ktae train`` and ``ktae eval`` alike.

vLLM says some things only late or not at all: its CPU attention takes a fixed list of head sizes and says so at
the first ``generate``; on a CPU it reserves its memory share of the whole machine's RAM for the KV cache (and
refuses to start when that much is not free). :func:`engine_checks` refuses an unsupported head size before the
engine starts and sizes a CPU KV cache for what the run needs. vLLM is imported only inside
:func:`platform_head_sizes`.
"""
from __future__ import annotations

import os

#: a CPU KV cache holds this many sequences of max_model_len tokens, within a quarter of the free memory
CACHE_SEQUENCES = 256
_MiB = 2**20


def head_size(config) -> int:
    """The attention head size of a Hugging Face model ``config`` (``head_dim``, else width / heads)."""
    explicit = getattr(config, "head_dim", None)
    return int(explicit) if explicit else config.hidden_size // config.num_attention_heads


def check_head_size(config, supported: list[int] | None, fix: str = "--backend hf") -> None:
    """Raise a ValueError naming ``fix`` when ``supported`` (``None``: any size) lacks the model's head size."""
    size = head_size(config)
    if supported is not None and size not in supported:
        raise ValueError(f"--backend vllm: the model's attention head size is {size}, and vLLM's attention on this "
                         f"platform takes head sizes {supported} only; use {fix}")


def kv_cache_bytes(config, max_len: int, dtype_bytes: int, free_bytes: int) -> int:
    """Bytes of a KV cache for :data:`CACHE_SEQUENCES` sequences of ``max_len`` tokens.

    At most a quarter of ``free_bytes``, at least one sequence of ``max_len`` tokens and 64 MiB.
    """
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * kv_heads * head_size(config) * dtype_bytes
    wanted = min(per_token * max_len * CACHE_SEQUENCES, free_bytes // 4)
    return max(wanted, per_token * max_len, 64 * _MiB)


def platform_head_sizes() -> tuple[bool, list[int] | None]:
    """``(on a CPU, the head sizes its attention takes)``; on other platforms ``(False, None)`` (vLLM decides)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False, None
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    return True, list(CPUAttentionBackend.get_supported_head_sizes())


def engine_checks(config, max_len: int, dtype_bytes: int, fix: str = "--backend hf") -> dict:
    """Check the head size before starting an engine; the ``vllm.LLM`` keyword arguments the platform needs.

    On a CPU without ``VLLM_CPU_KVCACHE_SPACE`` (GiB, vLLM's own setting), ``kv_cache_memory_bytes`` from
    :func:`kv_cache_bytes`; otherwise nothing.
    """
    on_cpu, supported = platform_head_sizes()
    check_head_size(config, supported, fix)
    if not on_cpu or os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return {}
    import psutil  # a dependency of vLLM

    return {"kv_cache_memory_bytes": kv_cache_bytes(config, max_len, dtype_bytes, psutil.virtual_memory().available)}
