"""The policy update of a step (PPO epochs over mini-batches) and the held-out evaluation.

:func:`ppo_update` takes the step's :class:`~ktae.train.rollouts.Rollouts` and token advantages ``[B, L]``;
the losses come from :mod:`ktae.core.losses` (clipped policy loss, KL to the reference, entropy).
"""
from __future__ import annotations

import contextlib
import math

import torch

from ktae.core.batching import length_buckets
from ktae.decoding import keep_logits, new_cache
from ktae.core.losses import aggregate_loss, entropy_from_log_probs, high_entropy_mask, kl_loss, policy_loss
from ktae.rewards import grade_batch
from ktae.train.config import TrainConfig
from ktae.train.rollouts import Rollouts, build_prompts, pad


def response_log_probs(model, prompt_ids: list[list[int]], responses: torch.Tensor, response_mask: torch.Tensor,
                       pad_id: int, temperature: float, entropy: bool = False, entropy_grad: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities ``[b, L]`` of the response tokens (logits / temperature), and optionally the entropy.

    Prompts are left-padded and responses right-padded; position ids count real tokens only,
    as in generation, so the log-probs match the sampling distribution. The entropy ``[b, L]``
    carries a gradient only with ``entropy_grad`` (an entropy bonus).
    """
    logits = response_logits(model, prompt_ids, responses, response_mask, pad_id)     # [b, L, V]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # half -> float32
    log_p = torch.log_softmax(logits, dim=-1)                                            # [b, L, V]
    log_probs = log_p.gather(-1, responses.to(logits.device).unsqueeze(-1)).squeeze(-1)
    ent = None
    if entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            ent = entropy_from_log_probs(log_p if entropy_grad else log_p.detach(), chunk_size=4096)
    return log_probs, ent


def response_logits(model, prompt_ids: list[list[int]], responses: torch.Tensor, response_mask: torch.Tensor,
                    pad_id: int) -> torch.Tensor:
    """``[b, L, V]``: the logits that predict each response token, computing each distinct prompt once.

    Rollouts of one prompt share it: the prompts run once (left-padded, ``[U, P]``), their key-value cache is
    repeated to the rows that have them, then the responses (but their last token, whose prediction no token
    needs) run on it. The same numbers as one forward pass over ``[prompt | response]`` rows, for a fraction of
    the prompt tokens' cost (gradients reach the prompt's keys and values through the repeat). A model with
    gradient checkpointing (which runs without a cache) takes the one forward pass.
    """
    device = next(model.parameters()).device
    unique: dict[tuple[int, ...], int] = {}
    owner = torch.tensor([unique.setdefault(tuple(ids), len(unique)) for ids in prompt_ids], device=device)
    prompt, prompt_mask = (t.to(device) for t in pad([list(ids) for ids in unique], pad_id, left=True))
    responses, response_mask = responses.to(device), response_mask.to(device).long()
    length = responses.shape[1]
    if getattr(model, "is_gradient_checkpointing", False):
        attention = torch.cat([prompt_mask[owner], response_mask], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=torch.cat([prompt[owner], responses], dim=1), attention_mask=attention,
                    position_ids=positions, use_cache=False, **keep_logits(model, length + 1))
        return out.logits[:, -(length + 1):-1, :]
    cache = new_cache()
    first = model(input_ids=prompt, attention_mask=prompt_mask, position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0),
                  past_key_values=cache, use_cache=True, **keep_logits(model, 1)).logits[:, -1:, :]   # [U, 1, V]
    if length == 1:
        return first[owner]
    cache.batch_select_indices(owner)
    attention = torch.cat([prompt_mask[owner], response_mask[:, :-1]], dim=1)
    positions = prompt_mask.sum(-1)[owner].unsqueeze(1) + torch.arange(length - 1, device=device)
    rest = model(input_ids=responses[:, :-1], attention_mask=attention, position_ids=positions,
                 past_key_values=cache, use_cache=True).logits                                 # [b, L - 1, V]
    return torch.cat([first[owner], rest], dim=1)


def chunks(indices: torch.Tensor, size: int) -> list[torch.Tensor]:
    return [indices[i : i + size] for i in range(0, len(indices), size)] if len(indices) else []


def micro_batches(indices: torch.Tensor, batch: Rollouts, size: int, tokens: int = 0) -> list[torch.Tensor]:
    """``indices`` in micro-batches of at most ``size`` rollouts (0: no limit) and ``tokens`` padded tokens (0: no
    limit) of similar length (prompt + response): :func:`ktae.core.batching.length_buckets`. A forward pass then pads
    its rows to little more than their own length and keeps its activations small; rollouts of one prompt that land
    in one micro-batch share its pass (:func:`response_logits`). Neither limit: ``indices`` as they are."""
    if not tokens and (not size or size >= len(indices)):
        return [indices] if len(indices) else []
    lengths = torch.tensor([len(batch.prompt_ids[i]) for i in indices.tolist()]) + batch.response_mask[indices].sum(-1)
    return [indices[rows] for rows in length_buckets(lengths, size, tokens)]


@torch.no_grad()
def forward_log_probs(model, batch: Rollouts, cfg: TrainConfig, pad_id: int, micro: int,
                      amp=contextlib.nullcontext) -> torch.Tensor:
    """``[B, L]`` log-probs of every rollout under ``model`` (no gradient), micro-batch by micro-batch."""
    weights = next(model.parameters()).dtype
    out = torch.zeros(batch.responses.shape, dtype=torch.promote_types(weights, torch.float32))
    for idx in micro_batches(torch.arange(len(batch.prompt_ids)), batch, micro, cfg.ppo.micro_batch_tokens):
        width = max(int(batch.response_mask[idx].sum(-1).max()), 1)
        with amp():
            lp, _ = response_log_probs(model, [batch.prompt_ids[i] for i in idx], batch.responses[idx, :width],
                                       batch.response_mask[idx, :width], pad_id, cfg.rollout.temperature)
        out[idx, :width] = lp.to(out.dtype).cpu()
    return out


def normaliser(mask: torch.Tensor, mode: str) -> float:
    """What ``aggregate_loss(mode)`` divides by over ``mask`` (tokens, non-empty rows, or rows)."""
    if mode == "token-mean":
        return float(mask.sum())
    if mode == "seq-mean-token-sum-norm":
        return float(mask.shape[0])
    return float((mask.sum(-1) > 0).sum())


class Averages:
    """Weighted running means of an update's metrics."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, name: str, value: float, weight: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value * weight
        self.weights[name] = self.weights.get(name, 0.0) + weight

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.weights[k] for k in self.sums if self.weights[k] > 0}


def ppo_update(model, ref_model, optimizer, batch: Rollouts, advantages: torch.Tensor, cfg: TrainConfig,
               pad_id: int, log, amp=contextlib.nullcontext) -> dict[str, float]:
    """PPO epochs over mini-batches; one optimizer step per mini-batch; non-finite steps are skipped.

    ``advantages`` is ``[B, L]``. ``amp`` makes the context of the forward passes (``torch.autocast`` for bf16
    on a GPU). Returns the mean loss, entropy, KL, clip fraction, approximate KL and gradient norm, and the
    counts of optimizer steps taken and skipped.
    """
    ppo, n = cfg.ppo, cfg.rollout.rollouts_per_prompt
    size = len(batch.prompt_ids)
    mini = (ppo.mini_batch_prompts * n) if ppo.mini_batch_prompts else size
    micro = ppo.micro_batch_size or mini
    params = [p for p in model.parameters() if p.requires_grad]
    on_policy = ppo.epochs == 1 and mini >= size  # old log-probs = the current ones, no extra forward
    old_log_probs = None if on_policy else forward_log_probs(model, batch, cfg, pad_id, micro, amp)
    ref_log_probs = forward_log_probs(ref_model, batch, cfg, pad_id, micro, amp) if ppo.kl_coef > 0 else None
    stats = Averages()
    skipped = steps = 0
    model.train()
    for _ in range(ppo.epochs):
        for mb in chunks(torch.arange(size), mini):
            optimizer.zero_grad(set_to_none=True)
            total = max(normaliser(batch.response_mask[mb], ppo.loss_agg_mode), 1.0)
            finite = all(micro_batch_backward(model, batch, advantages, idx, old_log_probs, ref_log_probs, total,
                                              cfg, pad_id, stats, amp) for idx in micro_batches(mb, batch, micro, ppo.micro_batch_tokens))
            grad_norm = float("nan")
            if finite:
                max_norm = ppo.grad_clip if ppo.grad_clip > 0 else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
                finite = math.isfinite(grad_norm)
            if finite:
                optimizer.step()
                steps += 1
                stats.add("grad_norm", grad_norm, 1.0)
            else:
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                log(f"warning: non-finite loss or gradient (grad norm {grad_norm}); this update was skipped")
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return {**stats.means(), "optimizer_steps": steps, "skipped_updates": skipped}


def micro_batch_backward(model, batch: Rollouts, advantages: torch.Tensor, idx: torch.Tensor,
                         old_log_probs: torch.Tensor | None, ref_log_probs: torch.Tensor | None, total: float,
                         cfg: TrainConfig, pad_id: int, stats: Averages, amp) -> bool:
    """Loss of the rollouts ``idx`` [b] (their share of the mini-batch's normaliser ``total``), backward.

    The loss is the clipped policy loss of ``advantages`` (restricted to the highest-entropy tokens when
    ``top_entropy_quantile`` < 1), plus ``kl_coef`` times the KL to the reference, minus ``entropy_coef`` times
    the entropy. Returns False, without a backward pass, when the loss is not finite.
    """
    ppo, scale = cfg.ppo, cfg.rollout.max_new_tokens   # scale: the constant of seq-mean-token-sum-norm
    device = next(model.parameters()).device
    width = max(int(batch.response_mask[idx].sum(-1).max()), 1)
    mask = batch.response_mask[idx, :width].to(device)
    with amp():
        log_prob, entropy = response_log_probs(
            model, [batch.prompt_ids[i] for i in idx], batch.responses[idx, :width], mask, pad_id,
            cfg.rollout.temperature, entropy=True, entropy_grad=ppo.entropy_coef != 0)
    old = log_prob.detach() if old_log_probs is None else old_log_probs[idx, :width].to(device)
    adv = advantages[idx, :width].to(device)
    if ppo.top_entropy_quantile < 1:  # a zero advantage gives a token no policy loss or gradient
        adv = adv * high_entropy_mask(entropy.detach(), mask, ppo.top_entropy_quantile)
    loss, pg_metrics = policy_loss(log_prob, old, adv, mask, clip_low=ppo.clip_low, clip_high=ppo.clip_high,
                                   dual_clip=ppo.dual_clip or None, loss_agg_mode=ppo.loss_agg_mode,
                                   loss_scale_factor=scale)
    tokens = float(mask.sum())
    if ref_log_probs is not None:
        kl, kl_metrics = kl_loss(log_prob, ref_log_probs[idx, :width].to(device), mask, ppo.kl_kind,
                                 ppo.loss_agg_mode, loss_scale_factor=scale)
        loss = loss + ppo.kl_coef * kl
        stats.add("kl", kl_metrics["kl_mean"], tokens)
    if ppo.entropy_coef:
        loss = loss - ppo.entropy_coef * aggregate_loss(entropy, mask, ppo.loss_agg_mode, loss_scale_factor=scale)
    share = normaliser(mask, ppo.loss_agg_mode) / total
    if not torch.isfinite(loss):
        return False
    (loss * share).backward()
    stats.add("loss", float(loss.detach()), share)
    stats.add("entropy", float((entropy.detach() * mask).sum()) / max(tokens, 1.0), tokens)
    for key in ("clip_fraction", "approx_kl"):
        stats.add(key, pg_metrics[key], tokens)
    return True


@torch.no_grad()
def greedy_accuracy(model, tokenizer, problems: list[dict], cfg: TrainConfig, engine=None) -> dict[str, float]:
    """Greedy held-out accuracy and response length (``eval_*`` metrics)."""
    from ktae.generation import generate

    if not problems:
        return {}
    prompts = build_prompts(problems, cfg.data, tokenizer)
    max_new = cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens
    if engine is not None:
        gens = engine.generate(prompts, n=1, greedy=True, max_new_tokens=max_new)
    else:
        gens = generate(model, tokenizer, prompts, max_new_tokens=max_new, temperature=0.0, n=1,
                        batch_size=cfg.eval.batch_size, backend="hf", progress=False)
    correct = grade_batch([g.text for g in gens], [p["answer"] for p in problems],
                          workers=cfg.algorithm.grader_workers, progress=False)
    return {
        "eval_accuracy": sum(correct) / len(correct),
        "eval_response_length": sum(g.num_tokens for g in gens) / len(gens),
        "eval_clipped_fraction": sum(not g.finished for g in gens) / len(gens),
        "eval_problems": len(problems),
    }
