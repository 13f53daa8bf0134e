"""Token-by-token decoding of a transformers causal LM that drops finished rows from the batch.

transformers' ``generate`` keeps every row of a batch in the forward pass until the last one stops: with rollouts
of 20 to 96 tokens, a third or more of its work goes to rows that already emitted EOS. :func:`decode` runs the same
forward passes (the model's own ``forward`` with transformers' ``DynamicCache``), each distinct prompt once, and,
once few enough rows are left, keeps only the unfinished ones (the cache too).

Greedy decoding takes the ``argmax``, as ``generate`` does: the same tokens. Sampling applies transformers' own
temperature and top-p warpers, then draws each row's token from ``softmax`` by one uniform number per row and step
(the inverse of the cumulative distribution), drawn for every row of the batch whether it is still computed or not:
the tokens do not depend on when the batch shrinks, and they follow the distribution ``generate`` samples from, but
not its draws (``torch.multinomial``), so a seed gives other rollouts than ``generate`` (``tests/test_decoding.py``
checks both statements against ``generate``).

``draw="race"`` draws as ``torch.multinomial`` does (what ``generate`` and study 3's code sampled with): one
exponential number ``E_v`` per row and vocabulary entry, the token ``argmax_v p_v / E_v``, drawn for every row of the
batch at every step. Both draws follow ``softmax``; they differ in how two runs on one seed whose policies differ a
little share tokens: the race keeps the token unless the change reorders the winning ratio, while the inverse of the
cumulative distribution moves a token's interval whenever the probability of any token before it in the vocabulary
changes (``tests/test_decoding.py`` measures both).
"""
from __future__ import annotations

import torch

__all__ = ["decode", "DRAWS", "SHRINK_BELOW", "new_cache", "keep_logits", "takes_logits_to_keep"]

#: drop the finished rows once at most this share of the batch's rows is still unfinished
SHRINK_BELOW = 0.75
#: how a sampled token is drawn: the inverse of the cumulative distribution at one uniform number per row, or a race
#: of one exponential number per row and vocabulary entry (torch.multinomial's way)
DRAWS = ("inverse", "race")


@torch.inference_mode()
def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
           stop_ids: list[int], pad_id: int, temperature: float = 0.0, top_p: float = 1.0,
           shrink_below: float = SHRINK_BELOW, draw: str = "inverse") -> list[list[int]]:
    """The new tokens of each row: up to and including its first stop token, at most ``max_new_tokens``.

    Args:
        model: a transformers causal LM (its ``forward`` takes ``past_key_values``, ``position_ids``).
        input_ids: [B, P] left-padded prompt ids. attention_mask: [B, P], 1 on prompt tokens.
        max_new_tokens: longest response. stop_ids: token ids that end a response (EOS and the like).
        pad_id: the id written after a row's stop token while it is still in the batch (never returned).
        temperature: 0 = greedy; > 0 samples from ``softmax(logits / temperature)``, cut to ``top_p``.
        shrink_below: keep only the unfinished rows once they are at most this share of the rows computed
            (0 = never: every row stays until the last one stops, as in ``generate``; the tokens are the same).
        draw: ``inverse`` or ``race`` (:data:`DRAWS`): how a sampled token is drawn.

    Returns:
        B lists of token ids, in the rows' order.
    """
    if draw not in DRAWS:
        raise ValueError(f"draw: expected one of {DRAWS}, got {draw!r}")
    device = input_ids.device
    batch, width = input_ids.shape
    warp = _warpers(temperature, top_p)
    stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    positions = attention_mask.long().cumsum(-1) - 1
    positions.masked_fill_(attention_mask == 0, 1)
    logits, cache = _prefill(model, input_ids, attention_mask, positions)
    mask = torch.cat([attention_mask, attention_mask.new_ones((batch, max_new_tokens))], dim=1)
    next_position = positions[:, -1:] + 1
    rows = torch.arange(batch, device=device)                 # the input row of each row computed
    live = torch.ones(batch, dtype=torch.bool, device=device)
    new = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        noise = _noise(draw, batch, logits.shape[-1], device)[rows] if temperature > 0 else None  # per input row
        tokens = _pick(warp(logits), noise)                   # [b]
        tokens = torch.where(live, tokens, torch.full_like(tokens, pad_id))
        new[rows, t] = tokens
        ended = live & torch.isin(tokens, stop)
        lengths[rows[ended]] = t + 1
        live &= ~ended
        left = int(live.sum())
        if left == 0 or t + 1 == max_new_tokens:
            break
        if left <= shrink_below * len(rows):
            keep = live.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, live, tokens, mask, next_position = rows[keep], live[keep], tokens[keep], mask[keep], \
                next_position[keep]
        logits = _last_logits(model(input_ids=tokens[:, None], attention_mask=mask[:, : width + t + 1],
                                    position_ids=next_position, past_key_values=cache, use_cache=True))
        next_position = next_position + 1
    return [new[i, : lengths[i]].tolist() for i in range(batch)]


def _prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor):
    """The prompts' pass: ``(logits [B, V] of each row's last position, the cache of all B rows)``, each distinct
    row (rollouts of one prompt) computed once and its keys and values repeated to the rows that have it."""
    distinct, owner = torch.unique(torch.cat([input_ids, attention_mask.long()], dim=1), dim=0, return_inverse=True)
    first = owner.new_full((len(distinct),), input_ids.shape[0]).scatter_reduce_(
        0, owner, torch.arange(input_ids.shape[0], device=owner.device), "amin")      # a row of each distinct one
    cache = new_cache()
    out = model(input_ids=input_ids[first], attention_mask=attention_mask[first], position_ids=positions[first],
                past_key_values=cache, use_cache=True, **keep_logits(model, 1))
    if not torch.equal(owner, torch.arange(len(owner), device=owner.device)):   # distinct rows come sorted
        cache.batch_select_indices(owner)
    return _last_logits(out)[owner], cache


def _noise(draw: str, rows: int, vocab: int, device) -> torch.Tensor:
    """One step's random numbers of ``rows`` rows: ``[rows]`` uniform in [0, 1) (``inverse``), or ``[rows, vocab]``
    exponential (``race``)."""
    if draw == "race":   # never 0: a token of probability 0 must lose (0 / 0 would be NaN, which argmax picks)
        return torch.empty((rows, vocab), device=device).exponential_().clamp_min_(torch.finfo(torch.float32).tiny)
    return torch.rand(rows, device=device)


def _pick(scores: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """[b] token ids from [b, V] float32 scores: the argmax (``noise`` None: greedy); with ``noise`` [b] (uniform
    numbers in [0, 1)), the token whose interval of the cumulative ``softmax(scores)`` holds it; with ``noise``
    [b, V] (exponential numbers), ``argmax_v softmax(scores)_v / noise_v``. Either is a draw from
    ``softmax(scores)`` that never picks a token of probability 0."""
    if noise is None:
        return scores.argmax(dim=-1)
    probs = torch.softmax(scores, dim=-1)
    if noise.dim() == 2:
        return (probs / noise).argmax(dim=-1)
    cumulative = probs.cumsum(dim=-1)
    point = (noise * cumulative[:, -1]).unsqueeze(1)
    return torch.searchsorted(cumulative, point, right=True).squeeze(1).clamp_(max=scores.shape[-1] - 1)


def _warpers(temperature: float, top_p: float):
    """transformers' temperature and top-p warpers, as ``generate`` applies them (none when greedy, or at 1.0)."""
    from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                        TopPLogitsWarper)

    warpers = LogitsProcessorList()
    if temperature > 0 and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if temperature > 0 and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return lambda scores: warpers(None, scores) if warpers else scores


def _last_logits(output) -> torch.Tensor:
    return output.logits[:, -1, :].to(dtype=torch.float32, copy=True)


def new_cache():
    """An empty transformers ``DynamicCache`` (keys and values of the positions run so far, grown per step)."""
    from transformers import DynamicCache

    return DynamicCache()


def keep_logits(model, last: int) -> dict:
    """``{"logits_to_keep": last}`` where the model takes it (computes the logits of the last positions only)."""
    return {"logits_to_keep": last} if takes_logits_to_keep(model) else {}


def takes_logits_to_keep(model) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (computes the logits of the last positions only)."""
    import inspect

    forward = type(model).forward
    if forward not in _LOGITS_TO_KEEP:
        _LOGITS_TO_KEEP[forward] = "logits_to_keep" in inspect.signature(forward).parameters
    return _LOGITS_TO_KEEP[forward]


_LOGITS_TO_KEEP: dict = {}
