"""What a vLLM engine decides before it starts (no vLLM needed): head size, max_model_len, CPU KV cache size."""
from types import SimpleNamespace

import pytest

from ktae.recipes.tiny_model import TinyModelConfig
from ktae.train.engines import embedded_fix, engine_max_len
from ktae.vllm_setup import check_head_size, head_size, kv_cache_bytes

CPU_SIZES = [32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512]


def llama(hidden=64, heads=2, kv_heads=None, layers=2, head_dim=None):
    return SimpleNamespace(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
                           num_hidden_layers=layers, head_dim=head_dim)


def test_head_size_is_explicit_or_width_over_heads():
    assert head_size(llama(64, 4)) == 16
    assert head_size(llama(64, 4, head_dim=32)) == 32


def test_the_default_embedded_model_fits_vllm_cpu_attention():
    tiny = TinyModelConfig()
    check_head_size(llama(tiny.hidden_size, tiny.num_heads), CPU_SIZES)


def test_an_unsupported_head_size_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match=r"head size is 16.*--tiny_heads 2 \(head size 32\) or --backend hf"):
        check_head_size(llama(64, 4), CPU_SIZES, embedded_fix(64, CPU_SIZES))
    assert "--tiny_hidden_size of 32 or more" in embedded_fix(16, CPU_SIZES)
    with pytest.raises(ValueError, match=r"head size is 48.*use --backend hf"):
        check_head_size(llama(96, 2), CPU_SIZES)
    check_head_size(llama(64, 4), None)     # a platform without a list (GPU) takes any


def test_max_model_len_is_capped_at_the_models_positions_and_says_so():
    assert engine_max_len(1088, 4096, 500) == (1088, None)
    assert engine_max_len(1088, None, 500) == (1088, None)
    length, note = engine_max_len(1088, 128, 20)
    assert length == 128 and "max_model_len 128" in note and "1088" in note


def test_a_prompt_that_leaves_no_room_is_a_clear_error():
    with pytest.raises(ValueError, match=r"--max_prompt_tokens: the longest prompt has 128 tokens"):
        engine_max_len(1088, 128, 128)
    engine_max_len(1088, 128, 127)


def test_cpu_kv_cache_holds_256_sequences_within_a_quarter_of_free_memory():
    config = llama(64, 2, layers=4)
    per_token = 2 * 4 * 2 * 32 * 4
    free = 16 * 2**30
    assert kv_cache_bytes(config, 128, 4, free) == 64 * 2**20                   # the floor for a tiny model
    assert kv_cache_bytes(config, 2048, 4, free) == per_token * 2048 * 256      # 1 GiB
    assert kv_cache_bytes(config, 8192, 4, free) == free // 4                   # capped
    smollm2 = llama(576, 9, kv_heads=3, layers=30)
    assert kv_cache_bytes(smollm2, 8192, 4, 2**20) == 2 * 30 * 3 * 64 * 4 * 8192   # one sequence at least
