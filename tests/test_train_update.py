"""ktae.train.update: response log-probs with each prompt run once, and micro-batches that keep a prompt's rollouts
together, against one forward pass over whole [prompt | response] rows computed here."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ktae.train.rollouts import Rollouts, pad
from ktae.train.update import micro_batches, response_log_probs


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    return LlamaForCausalLM(config).double()


def joint_log_probs(model, prompt_ids, responses, response_mask, temperature):
    """The plain way: one forward pass over left-padded prompt + right-padded response per row."""
    prompt, prompt_mask = pad(prompt_ids, 0, left=True)
    ids = torch.cat([prompt, responses], dim=1)
    attention = torch.cat([prompt_mask, response_mask], dim=1)
    logits = model(input_ids=ids, attention_mask=attention, position_ids=(attention.cumsum(-1) - 1).clamp(min=0),
                   use_cache=False).logits[:, prompt.shape[1] - 1:-1] / temperature
    return -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), responses.reshape(-1),
                            reduction="none").view(responses.shape)


def batch_of(seed: int = 0, groups: int = 3, n: int = 4, width: int = 7):
    gen = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(1, 50, (int(torch.randint(2, 9, (1,), generator=gen)),), generator=gen).tolist()
               for _ in range(groups)]
    lengths = torch.randint(1, width + 1, (groups * n,), generator=gen)
    mask = (torch.arange(width) < lengths[:, None]).long()
    responses = torch.randint(1, 50, (groups * n, width), generator=gen) * mask
    return [prompts[i // n] for i in range(groups * n)], responses, mask


def test_each_prompt_once_gives_the_joint_log_probs_and_gradients():
    model = tiny_llama()
    prompt_ids, responses, mask = batch_of()
    shared, _ = response_log_probs(model, prompt_ids, responses, mask, 0, 0.7)
    (shared * mask).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    joint = joint_log_probs(model, prompt_ids, responses, mask, 0.7)
    (joint * mask).sum().backward()
    assert torch.allclose(shared * mask, joint * mask, atol=1e-10)
    for g, p in zip(grads, model.parameters()):   # float64, but transformers' RMSNorm computes in float32
        assert float((g - p.grad).norm()) <= 1e-5 * float(p.grad.norm())


def test_one_token_responses_and_gradient_checkpointing_take_their_own_paths():
    model = tiny_llama(1)
    prompt_ids, responses, mask = batch_of(1, width=1)
    with torch.no_grad():
        assert torch.allclose(response_log_probs(model, prompt_ids, responses, mask, 0, 1.0)[0],
                              joint_log_probs(model, prompt_ids, responses, mask, 1.0), atol=1e-10)
        prompt_ids, responses, mask = batch_of(2)
        model.gradient_checkpointing_enable()
        assert torch.allclose(response_log_probs(model, prompt_ids, responses, mask, 0, 1.0)[0] * mask,
                              joint_log_probs(model, prompt_ids, responses, mask, 1.0) * mask, atol=1e-10)


def test_micro_batches_hold_rollouts_of_similar_length_shortest_first():
    prompt_ids, responses, mask = batch_of(3, groups=4, n=3)
    group = torch.arange(4).repeat_interleave(3)
    batch = Rollouts(prompt_ids, responses, mask, group, torch.zeros(12), torch.zeros(12, dtype=torch.bool),
                     torch.ones(12, dtype=torch.bool), [""] * 12, [""] * 12, [""] * 12)
    lengths = {i: len(prompt_ids[i]) + int(mask[i].sum()) for i in range(12)}
    for size, tokens in ((5, 0), (0, 30), (4, 30)):
        chunks = micro_batches(torch.arange(12), batch, size, tokens)
        order = torch.cat(chunks).tolist()
        assert sorted(order) == list(range(12))
        assert [lengths[i] for i in order] == sorted(lengths.values())
        assert all(len(c) <= (size or 12) for c in chunks)
        assert all(len(c) == 1 or len(c) * max(lengths[i] for i in c.tolist()) <= tokens for c in chunks if tokens)
    assert [c.tolist() for c in micro_batches(torch.arange(12), batch, 0, 0)] == [list(range(12))]
    assert [c.tolist() for c in micro_batches(torch.arange(12), batch, 12, 0)] == [list(range(12))]


def test_the_warm_starts_micro_batches_give_the_whole_batchs_loss_and_gradient():
    from ktae.recipes.tiny_model import causal_lm_loss, sft_backward

    model = tiny_llama(3)
    gen = torch.Generator().manual_seed(3)
    lengths = torch.randint(3, 12, (10,), generator=gen)
    mask = (torch.arange(12) < lengths[:, None]).long()
    ids = torch.randint(1, 50, (10, 12), generator=gen) * mask
    labels = torch.where((torch.arange(12) >= 2) & (mask == 1), ids, torch.full_like(ids, -100))
    loss = sft_backward(model, ids, mask, labels, max_tokens=20)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    whole = causal_lm_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
    whole.backward()
    assert abs(loss - float(whole)) < 1e-10
    for g, p in zip(grads, model.parameters()):   # float64, but transformers' RMSNorm computes in float32
        assert float((g - p.grad).norm()) <= 1e-5 * float(p.grad.norm())
