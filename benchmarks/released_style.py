"""A per-group, per-token KTAE in the style of the authors' released code, as the speed baseline.

One group at a time; the presence counts come from a Python loop over the group's distinct tokens (a boolean
scan of the group per token), each 2x2 table is written as a small tensor into a dense ``[vocab, 4]`` table,
and the statistics are computed in float32 over that dense table, as the released estimator does. Only used by
`bench_estimator.py`; the product never imports it.
"""
from __future__ import annotations

import torch


def _presence(tokens: torch.Tensor, mask: torch.Tensor) -> dict[int, int]:
    rows = torch.arange(tokens.shape[0])[:, None].expand_as(tokens)
    values, owners = tokens[mask.bool()], rows[mask.bool()]
    distinct, inverse = torch.unique(values, return_inverse=True)
    return {tok: len(torch.unique(owners[inverse == i])) for i, tok in enumerate(distinct.tolist())}


def _fisher_float32(table: torch.Tensor) -> torch.Tensor:
    a, b, c, d = table.unbind(1)
    r1, c1, n = a + b, a + c, a + b + c + d
    k_min = torch.clamp(r1 + c1 - n, min=0)
    k_max = torch.minimum(r1, c1)
    k = torch.arange(int(k_max.max()) + 1, dtype=torch.float32)[None, :].expand(len(a), -1)
    valid = (k >= k_min[:, None]) & (k <= k_max[:, None])

    def log_comb(nn, kk):
        return torch.lgamma(nn + 1) - torch.lgamma(kk + 1) - torch.lgamma(nn - kk + 1)

    log_p = log_comb(c1[:, None], k) + log_comb((n - c1)[:, None], r1[:, None] - k) - log_comb(n[:, None], r1[:, None])
    p_k = torch.exp(log_p) * valid
    p_obs = torch.exp(log_comb(c1, a) + log_comb(n - c1, r1 - a) - log_comb(n, r1))
    return torch.where((p_k <= p_obs[:, None]) & valid, p_k, torch.zeros_like(p_k)).sum(1)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return torch.where(p > 0, -p * torch.log2(p.clamp(min=1e-30)), torch.zeros_like(p))


def group_values(tokens: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor, vocab: int) -> torch.Tensor:
    """Key-token value per vocabulary id ([vocab] float32) for one group."""
    correct, wrong = scores > 0, scores <= 0
    out = torch.zeros(vocab, dtype=torch.float32)
    if not correct.any() or not wrong.any():
        return out
    n_true, n_false = int(correct.sum()), int(wrong.sum())
    present_true = _presence(tokens[correct], mask[correct])
    present_false = _presence(tokens[wrong], mask[wrong])
    table = torch.zeros(vocab, 4, dtype=torch.float32)
    for token in set(tokens.flatten().tolist()):
        a, b = present_true.get(token, 0), present_false.get(token, 0)
        if a + b:
            table[token] = torch.tensor([a, b, n_true - a, n_false - b], dtype=torch.float32)
    a, b, c, d = table.unbind(1)
    n = a + b + c + d
    safe = lambda x, y: torch.where(y > 0, x / y.clamp(min=1e-30), torch.zeros_like(x))  # noqa: E731
    h_y = _entropy(safe(a + c, n)) + _entropy(safe(b + d, n))
    h_yx = safe(a + b, n) * (_entropy(safe(a, a + b)) + _entropy(safe(b, a + b))) + safe(c + d, n) * (
        _entropy(safe(c, c + d)) + _entropy(safe(d, c + d))
    )
    info_gain = torch.where(n > 0, h_y - h_yx, torch.zeros_like(n))
    p = _fisher_float32(table)
    fisher = torch.where(p != 1.0, torch.exp(-2 * p), torch.zeros_like(p))
    true_tokens, false_tokens = tokens[correct][mask[correct].bool()], tokens[wrong][mask[wrong].bool()]
    avg = (true_tokens.numel() + false_tokens.numel()) / 2
    k_true = 2.0 * (1 - 0.5 + 0.5 * true_tokens.numel() / avg)
    k_false = 2.0 * (1 - 0.5 + 0.5 * false_tokens.numel() / avg)
    f_true = torch.bincount(true_tokens, minlength=vocab).float() / max(true_tokens.numel(), 1)
    f_false = torch.bincount(false_tokens, minlength=vocab).float() / max(false_tokens.numel(), 1)
    tf_true, tf_false = f_true * 3.0 / (f_true + k_true), f_false * 3.0 / (f_false + k_false)
    h = torch.asin(torch.sqrt((a / (a + c + 1e-10)).clamp(0, 1))) - torch.asin(torch.sqrt((b / (b + d + 1e-10)).clamp(0, 1)))
    x = h + tf_true / (tf_false + 1e-5) - tf_false / (tf_true + 1e-5)
    s = (fisher + info_gain) * x / 2.0
    return (torch.sigmoid(s) - 0.5) * 2.0


def key_token_values(responses: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor, group: torch.Tensor,
                     groups: int | None = None) -> torch.Tensor:
    """[B, L] key-token values, one group at a time (the first ``groups`` groups only, if given)."""
    vocab = int(responses.max()) + 1
    out = torch.zeros(responses.shape, dtype=torch.float32)
    for index, g in enumerate(torch.unique(group).tolist()):
        if groups is not None and index >= groups:
            break
        rows = (group == g).nonzero().squeeze(1)
        values = group_values(responses[rows], mask[rows], scores[rows], vocab)
        out[rows] = values[responses[rows]] * mask[rows]
    return out
