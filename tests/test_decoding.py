"""ktae.decoding.decode against transformers' generate on the same model, prompts and seeds."""
from __future__ import annotations

import contextlib

import pytest
import torch

from ktae.decoding import decode
from ktae.loading import load_model
from ktae.model_source import resolve_model_source
from test_generation import build_tiny_lm

PROMPTS = ["a", "bb", "a much longer prompt", "mid size", "x y z", "?"] * 4
SAMPLED_EOS = 2.0   # EOS logit bias that makes sampled rows stop after 1 to 30 tokens
GREEDY_EOS = 0.4    # ... and greedy rows after 1, 10 or 30 tokens, depending on the prompt


@contextlib.contextmanager
def eos_bias(model, tokenizer, value):
    head = model.get_output_embeddings()
    saved = float(head.bias.data[tokenizer.eos_token_id])
    head.bias.data[tokenizer.eos_token_id] = value
    try:
        yield
    finally:
        head.bias.data[tokenizer.eos_token_id] = saved


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny Qwen2 of test_generation with EOS made likely (+2 on its logit): sampled rows stop after 1 to 30
    tokens."""
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny_decoding"))
    model, tokenizer = load_model(resolve_model_source(str(path)), device="cpu")
    bias = torch.zeros(model.config.vocab_size)
    bias[tokenizer.eos_token_id] = SAMPLED_EOS
    model.get_output_embeddings().bias = torch.nn.Parameter(bias)
    return model, tokenizer


def prompts_batch(tokenizer):
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer([p for p in PROMPTS], add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "right"
    return batch["input_ids"], batch["attention_mask"]


def with_generate(model, tokenizer, ids, mask, max_new, temperature, top_p, seed):
    """transformers' generate, each row cut after its first EOS (as ktae.generation does)."""
    from transformers import GenerationConfig

    sampling = temperature > 0
    config = GenerationConfig(do_sample=sampling, temperature=temperature if sampling else 1.0,
                              top_p=top_p if sampling else 1.0, top_k=0 if sampling else 50, repetition_penalty=1.0,
                              num_beams=1, max_new_tokens=max_new, eos_token_id=[tokenizer.eos_token_id],
                              pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, ids.shape[1]:]
    rows = []
    for row in out.tolist():
        end = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
        rows.append(row[:end])
    return rows


def with_decode(model, tokenizer, ids, mask, max_new, temperature, top_p, seed, shrink_below):
    torch.manual_seed(seed)
    return decode(model, ids, mask, max_new_tokens=max_new, stop_ids=[tokenizer.eos_token_id],
                  pad_id=tokenizer.pad_token_id, temperature=temperature, top_p=top_p, shrink_below=shrink_below)


@pytest.mark.parametrize("shrink_below", [0.0, 0.5, 0.75, 1.0])
def test_greedy_tokens_are_generates(tiny, shrink_below):
    model, tokenizer = tiny
    ids, mask = prompts_batch(tokenizer)
    with eos_bias(model, tokenizer, GREEDY_EOS):
        expected = with_generate(model, tokenizer, ids, mask, 30, 0.0, 1.0, 0)
        got = with_decode(model, tokenizer, ids, mask, 30, 0.0, 1.0, 0, shrink_below)
    assert got == expected
    assert len({len(row) for row in got}) >= 3            # rows stop at different steps


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_sampled_tokens_do_not_depend_on_shrinking(tiny, temperature, top_p):
    model, tokenizer = tiny
    ids, mask = prompts_batch(tokenizer)
    runs = [with_decode(model, tokenizer, ids, mask, 30, temperature, top_p, 4, shrink) for shrink in (0.0, 0.75, 1.0)]
    assert runs[0] == runs[1] == runs[2]
    assert len({len(row) for row in runs[0]}) > 3


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_sampling_follows_generates_distribution(tiny, temperature, top_p):
    """Other draws than generate's on the same seed, from the same distribution: the mean response length over 24
    seeds x 24 rows is within 4 standard errors of generate's, and so is the share of each first token."""
    model, tokenizer = tiny
    ids, mask = prompts_batch(tokenizer)
    ours = [r for s in range(24) for r in with_decode(model, tokenizer, ids, mask, 30, temperature, top_p, s, 0.75)]
    theirs = [r for s in range(24) for r in with_generate(model, tokenizer, ids, mask, 30, temperature, top_p, 100 + s)]
    for measure in (len, lambda row: row[0] == tokenizer.eos_token_id):
        a, b = [float(measure(r)) for r in ours], [float(measure(r)) for r in theirs]
        var = sum((x - sum(b) / len(b)) ** 2 for x in b) / (len(b) - 1)
        assert abs(sum(a) / len(a) - sum(b) / len(b)) < 4 * (2 * var / len(a)) ** 0.5
    assert ours[:24] != with_generate(model, tokenizer, ids, mask, 30, temperature, top_p, 0)   # not its draws


def test_a_draw_follows_the_probabilities_and_skips_impossible_tokens():
    from ktae.decoding import _pick

    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    scores = probs.log().expand(20000, -1)
    uniform = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(_pick(scores, uniform), minlength=6).double() / 20000
    assert counts[probs == 0].sum() == 0
    assert torch.allclose(counts, probs.double(), atol=0.015)
    assert _pick(scores[:2], None).tolist() == [1, 1]


def test_distinct_prompts_in_any_order_are_generates(tiny):
    """Every prompt distinct, not in sorted order: the prompts' pass runs them sorted and must hand each row its own
    keys and values back."""
    model, tokenizer = tiny
    ids, mask = prompts_batch(tokenizer)
    distinct = [5, 0, 3, 1, 2, 4]              # PROMPTS[:6] are distinct; this order is not torch.unique's
    ids, mask = ids[distinct], mask[distinct]
    with eos_bias(model, tokenizer, GREEDY_EOS):
        assert with_decode(model, tokenizer, ids, mask, 30, 0.0, 1.0, 0, 0.75) == \
            with_generate(model, tokenizer, ids, mask, 30, 0.0, 1.0, 0)


def test_a_row_that_never_stops_runs_to_the_limit(tiny):
    model, tokenizer = tiny
    ids, mask = prompts_batch(tokenizer)
    rows = decode(model, ids, mask, max_new_tokens=5, stop_ids=[len(tokenizer) + 7], pad_id=tokenizer.pad_token_id)
    assert all(len(row) == 5 for row in rows)


def test_a_race_follows_the_probabilities_and_skips_impossible_tokens():
    from ktae.decoding import _noise, _pick

    torch.manual_seed(0)
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    scores = probs.log().expand(20000, -1)
    noise = _noise("race", 20000, 6, "cpu")
    assert noise.shape == (20000, 6) and bool((noise > 0).all())
    counts = torch.bincount(_pick(scores, noise), minlength=6).double() / 20000
    assert counts[probs == 0].sum() == 0
    assert torch.allclose(counts, probs.double(), atol=0.015)
    noise = torch.ones(2, 6)
    noise[:, 2] = 0.0                             # an exponential number of 0 on a token of probability 0: 0 / 0
    assert _pick(scores[:2], noise).tolist() == [2, 2]                                   # NaN wins the argmax ...
    assert _pick(scores[:2], noise.clamp_min(torch.finfo(torch.float32).tiny)).tolist() == [1, 1]   # ... not here


def test_a_race_keeps_more_tokens_than_the_inverse_when_the_policy_moves_a_little():
    """Two policies a little apart (logits + N(0, 0.1)), one draw each way on the same random numbers: the race picks
    the same token in 95% of 20,000 rows (the most any coupling can: 1 - total variation, 96.5%), the inverse of the
    cumulative distribution in 82%."""
    from ktae.decoding import _pick

    generator = torch.Generator().manual_seed(0)
    before = torch.randn(20000, 50, generator=generator) * 2
    after = before + 0.1 * torch.randn(20000, 50, generator=generator)
    uniform = torch.rand(20000, generator=generator)
    exponential = torch.empty(20000, 50).exponential_(generator=generator)
    same_inverse = float((_pick(before, uniform) == _pick(after, uniform)).float().mean())
    same_race = float((_pick(before, exponential) == _pick(after, exponential)).float().mean())
    overlap = float((1 - 0.5 * (before.softmax(-1) - after.softmax(-1)).abs().sum(-1)).mean())
    assert same_inverse < 0.9 < same_race <= overlap + 0.01


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_raced_tokens_do_not_depend_on_shrinking_and_follow_generates_distribution(tiny, temperature, top_p):
    model, tokenizer = tiny
    ids, mask = prompts_batch(tokenizer)

    def raced(seed, shrink):
        torch.manual_seed(seed)
        return decode(model, ids, mask, max_new_tokens=30, stop_ids=[tokenizer.eos_token_id],
                      pad_id=tokenizer.pad_token_id, temperature=temperature, top_p=top_p, shrink_below=shrink,
                      draw="race")

    assert raced(4, 0.0) == raced(4, 0.75) == raced(4, 1.0)
    ours = [r for s in range(24) for r in raced(s, 0.75)]
    theirs = [r for s in range(24) for r in with_generate(model, tokenizer, ids, mask, 30, temperature, top_p, 100 + s)]
    a, b = [float(len(r)) for r in ours], [float(len(r)) for r in theirs]
    var = sum((x - sum(b) / len(b)) ** 2 for x in b) / (len(b) - 1)
    assert abs(sum(a) / len(a) - sum(b) / len(b)) < 4 * (2 * var / len(a)) ** 0.5
    with pytest.raises(ValueError, match="draw"):
        decode(model, ids, mask, max_new_tokens=4, stop_ids=[1], pad_id=0, temperature=1.0, draw="gumbel")
