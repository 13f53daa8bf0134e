"""What the vLLM engine decides before it starts (no vLLM needed): head size, max_model_len, KV cache size."""
from types import SimpleNamespace

import pytest

from ktae.recipes.tiny_model import TinyModelConfig
from ktae.train.engines import check_head_size, engine_max_len, head_size, kv_cache_bytes

CPU_SIZES = [32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512]


def llama(hidden=64, heads=2, kv_heads=None, layers=2, head_dim=None):
    return SimpleNamespace(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
                           num_hidden_layers=layers, head_dim=head_dim)


def test_head_size_is_explicit_or_width_over_heads():
    assert head_size(llama(64, 4)) == 16
    assert head_size(llama(64, 4, head_dim=32)) == 32


def test_the_default_embedded_model_fits_vllm_cpu_attention():
    tiny = TinyModelConfig()
    check_head_size(llama(tiny.hidden_size, tiny.num_heads), CPU_SIZES, embedded=True)


def test_an_unsupported_head_size_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match=r"head size is 16.*--tiny_heads 2 \(head size 32\)"):
        check_head_size(llama(64, 4), CPU_SIZES, embedded=True)
    with pytest.raises(ValueError, match=r"--tiny_hidden_size of 32 or more"):
        check_head_size(llama(16, 1), CPU_SIZES, embedded=True)
    with pytest.raises(ValueError, match=r"head size is 48.*use --backend hf"):
        check_head_size(llama(96, 2), CPU_SIZES, embedded=False)
    check_head_size(llama(64, 4), None, embedded=True)     # a platform without a list (GPU) takes any


def test_max_model_len_is_capped_at_the_models_positions_and_says_so():
    assert engine_max_len(1088, 4096, 500) == (1088, None)
    assert engine_max_len(1088, None, 500) == (1088, None)
    length, note = engine_max_len(1088, 128, 20)
    assert length == 128 and "max_model_len 128" in note and "1088" in note


def test_a_prompt_that_leaves_no_room_is_a_clear_error():
    with pytest.raises(ValueError, match=r"--max_prompt_tokens: the longest prompt has 128 tokens"):
        engine_max_len(1088, 128, 128)
    engine_max_len(1088, 128, 127)


def test_kv_cache_holds_the_sequences_of_a_step():
    config = llama(64, 2, layers=4)
    per_token = 2 * 4 * 2 * 32 * 4
    assert kv_cache_bytes(config, 128, 4) == 64 * 2**20                     # the floor for a tiny model
    assert kv_cache_bytes(config, 4096, 4) == per_token * 4096 * 256
