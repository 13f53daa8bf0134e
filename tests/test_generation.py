"""ktae.generation (HF backend) and ktae.prompts on a tiny random-weight model built here."""
from __future__ import annotations

import string

import pytest
import torch

from ktae.generation import (Generation, _hf_batches, eos_token_ids, fit_prompts, generate, model_positions,
                             too_long_message)
from ktae.loading import load_model
from ktae.model_source import resolve_model_source
from ktae.prompts import BOXED_INSTRUCTION, format_prompt, template_names


def build_tiny_lm(path, seed: int = 0, positions: int = 8192):
    """A 2-layer Qwen2 with a character-level tokenizer and Qwen's special tokens, saved to ``path``; it takes
    ``positions`` tokens (prompt + response)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(string.printable)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=positions,
        eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"], tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))
    model, tokenizer = load_model(resolve_model_source(str(path)), device="cpu")
    return model, tokenizer


def test_prompt_templates():
    assert template_names() == ["qwen_math", "r1", "chat"]
    p = format_prompt("What is $1+1$?", "qwen_math")
    assert p == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\nWhat is $1+1$?<|im_end|>\n<|im_start|>assistant\n"
    )
    r1 = format_prompt("What is 2?", "r1")
    assert r1.endswith("User: What is 2?\nAssistant: <think>") and "<answer>" in r1 and "\\boxed{}" in r1
    assert format_prompt("P", "Q: {problem}\nA:") == "Q: P\nA:"


def test_chat_template(tiny):
    _, tokenizer = tiny
    p = format_prompt("What is 2?", "chat", tokenizer)
    assert p == f"<|im_start|>user\nWhat is 2?\n{BOXED_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(ValueError, match="tokenizer"):
        format_prompt("x", "chat")
    with pytest.raises(ValueError, match="template"):
        format_prompt("x", "nonsense")
    with pytest.raises(TypeError, match="problem"):
        format_prompt(3, "r1")


def test_greedy_batched_equals_one_by_one(tiny):
    model, tokenizer = tiny
    prompts = [format_prompt(p, "qwen_math") for p in ("short", "a much longer problem statement " * 5, "mid size one")]
    batched = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=3, progress=False)
    single = [generate(model, tokenizer, [p], max_new_tokens=12, progress=False)[0] for p in prompts]
    assert [g.prompt_index for g in batched] == [0, 1, 2]
    for b, s in zip(batched, single):
        assert isinstance(b, Generation)
        assert b.token_ids == s.token_ids
        assert b.num_tokens == len(b.token_ids) <= 12
        assert b.text == s.text
    assert tokenizer.padding_side == "right"  # restored


def test_eos_stops_and_is_counted(tiny):
    model, tokenizer = tiny
    eos = tokenizer.eos_token_id
    assert eos_token_ids(model, tokenizer) == [eos]
    # Make EOS overwhelmingly likely: every response is exactly [EOS].
    with torch.no_grad():
        bias = torch.zeros(model.config.vocab_size)
        bias[eos] = 1e4
        head = model.get_output_embeddings()
        old_bias = head.bias
        head.bias = torch.nn.Parameter(bias)
    try:
        gens = generate(model, tokenizer, ["a", "bb"], max_new_tokens=5, progress=False)
    finally:
        head.bias = old_bias
    for g in gens:
        assert g.finished and g.token_ids == [eos] and g.num_tokens == 1 and g.text == ""


def test_sampling_n_samples_and_seed(tiny):
    model, tokenizer = tiny
    seen = []
    gens = generate(model, tokenizer, ["x", "yy"], max_new_tokens=6, temperature=1.0, n=3, batch_size=4,
                    seed=1, progress=False, on_batch=seen.append)
    assert [(g.prompt_index, g.sample_index) for g in gens] == [(p, s) for p in range(2) for s in range(3)]
    assert sum(len(b) for b in seen) == 6 and len(seen) == 2
    again = generate(model, tokenizer, ["x", "yy"], max_new_tokens=6, temperature=1.0, n=3, batch_size=4,
                     seed=1, progress=False)
    assert [g.token_ids for g in gens] == [g.token_ids for g in again]
    assert len({tuple(g.token_ids) for g in gens[:3]}) > 1  # samples differ


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=4, temperature=-1), "temperature"),
        (dict(max_new_tokens=4, top_p=0), "top_p"),
        (dict(max_new_tokens=4, n=2), "temperature > 0"),
        (dict(max_new_tokens=4, batch_size=0), "batch_size"),
        (dict(max_new_tokens=4, backend="tgi"), "backend"),
    ],
)
def test_generate_rejects_bad_arguments(tiny, kwargs, match):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match=match):
        generate(model, tokenizer, ["x"], **kwargs)


def test_generate_rejects_non_list_prompts(tiny):
    model, tokenizer = tiny
    with pytest.raises(TypeError, match="prompts"):
        generate(model, tokenizer, "x", max_new_tokens=2)


def test_model_generation_defaults_do_not_leak(tiny):
    """An instruct model's generation_config (sampling, repetition penalty) must not change greedy decoding."""
    model, tokenizer = tiny
    prompts = ["abc", "hello there"]
    plain = generate(model, tokenizer, prompts, max_new_tokens=8, progress=False)
    gc = model.generation_config
    saved = (gc.do_sample, gc.temperature, gc.top_k, gc.repetition_penalty)
    gc.do_sample, gc.temperature, gc.top_k, gc.repetition_penalty = True, 0.3, 3, 3.0
    try:
        again = generate(model, tokenizer, prompts, max_new_tokens=8, progress=False)
    finally:
        gc.do_sample, gc.temperature, gc.top_k, gc.repetition_penalty = saved
    assert [g.token_ids for g in again] == [g.token_ids for g in plain]


# ---------------------------------------------------------------------------- prompts longer than the model takes
def test_fit_prompts_leaves_room_for_one_token_and_caps_the_rest():
    fit = fit_prompts([3, 6, 9, 10, 12], positions=10, max_new_tokens=4)
    assert fit.too_long == (3, 4)                 # 10 and 12 tokens leave no room in 10 positions
    assert fit.limits == (4, 4, 1, 0, 0)          # min(max_new_tokens, positions - prompt tokens)
    assert fit.capped == (2,)
    unknown = fit_prompts([5000, 1], positions=None, max_new_tokens=4)
    assert unknown.too_long == () and unknown.limits == (4, 4) and unknown.capped == ()
    assert fit_prompts([], positions=10, max_new_tokens=4).limits == ()


@pytest.mark.parametrize("args, named", [
    (([1], 10, 0), "max_new_tokens"), (([1], 0, 4), "positions"), (([1], True, 4), "positions"),
    (([-1], 10, 4), r"lengths\[0\]"), (([1, 2.5], 10, 4), r"lengths\[1\]"),
])
def test_fit_prompts_names_a_bad_argument(args, named):
    with pytest.raises(ValueError, match=named):
        fit_prompts(*args)


def test_too_long_message_and_model_positions(tiny):
    from types import SimpleNamespace

    assert too_long_message(3, 10, 128, "problems") == ("3 of 10 problems have more than 127 tokens, which leaves no "
                                                        "room for a response in the model's 128 positions")
    model, _ = tiny
    assert model_positions(model) == 8192
    engine = SimpleNamespace(llm_engine=SimpleNamespace(model_config=SimpleNamespace(max_model_len=96)))
    assert model_positions(engine) == 96                # a vllm.LLM: the engine's max_model_len
    assert model_positions(SimpleNamespace(config=SimpleNamespace())) is None


def test_hf_batches_hold_prompts_of_one_response_limit():
    jobs = [(p, s) for p in range(4) for s in range(2)]
    assert _hf_batches(jobs, [4, 4, 1, 1], batch_size=3) == [[(0, 0), (0, 1), (1, 0)], [(1, 1)],
                                                             [(2, 0), (2, 1), (3, 0)], [(3, 1)]]
    assert _hf_batches(jobs[:4], [4, 2, 4, 4], batch_size=8) == [[(0, 0), (0, 1)], [(1, 0), (1, 1)]]


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """The tiny model taking 24 positions."""
    path = build_tiny_lm(tmp_path_factory.mktemp("short_lm"), positions=24)
    return load_model(resolve_model_source(str(path)), device="cpu")


def test_generate_stops_responses_at_the_positions(short):
    model, tokenizer = short
    prompts = ["a" * 10, "b" * 20, "c" * 23]               # one token per character
    gens = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=3, progress=False)
    assert [g.num_tokens for g in gens] == [8, 4, 1]       # 8 asked; 24 - 20 and 24 - 23 positions left
    assert [g.finished for g in gens] == [False, False, False]
    for prompt, gen in zip(prompts, gens):                  # batched as each prompt alone
        alone = generate(model, tokenizer, [prompt], max_new_tokens=gen.num_tokens, progress=False)[0]
        assert alone.token_ids == gen.token_ids


def test_generate_refuses_a_prompt_without_room(short):
    model, tokenizer = short
    with pytest.raises(ValueError, match=r"1 of 2 prompts have more than 23 tokens.*indices \[1\]"):
        generate(model, tokenizer, ["a" * 5, "b" * 24], max_new_tokens=4, progress=False)


def test_prompt_token_ids_are_the_tokenizers_own(tiny):
    """The fast tokenizer's batch encoder gives the ids of tokenizer(text), for the char-level test tokenizer and the
    word task's byte-level BPE (special tokens in the text included)."""
    from ktae.generation import prompt_token_ids
    from ktae.recipes.word_problems import WordProblemTask

    _, char_level = tiny
    word = WordProblemTask().build_tokenizer()
    texts = ["short", "<|im_start|>user\nhi<|im_end|>\n", "Mia has 3 boxes of 4 pens.\n", "", "ünïcode ✓"]
    for tokenizer in (char_level, word):
        expected = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        assert prompt_token_ids(tokenizer, texts) == expected
