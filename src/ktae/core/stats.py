"""Statistics of 2x2 contingency tables and term frequencies, vectorised over batches (spec §3).

A table describes one token in one prompt group::

                    correct rollouts   wrong rollouts
    token present          a                 b
    token absent           c                 d

Every function takes tensors of equal shape (any shape, one table per element) and returns a float64 tensor
of that shape. They are pure, deterministic and run on any device.
"""
from __future__ import annotations

import torch

#: relative tolerance when comparing hypergeometric probabilities in the two-sided Fisher test, so that
#: tables whose probabilities are equal in exact arithmetic are not split by rounding (R's fisher.test value).
FISHER_RTOL = 1e-7

#: upper bound on the number of float64 cells of one probability grid chunk in `fisher_exact_pvalues`.
_GRID_BUDGET = 1 << 24


def _as_counts(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of counts, got dtype {x.dtype}")
    return x.to(torch.int64)


def _check_tables(**counts: torch.Tensor) -> list[torch.Tensor]:
    tensors = [_as_counts(name, value) for name, value in counts.items()]
    shape = tensors[0].shape
    for (name, _), t in zip(counts.items(), tensors):
        if t.shape != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)} like the other counts")
    if tensors[0].numel() and any(bool((t < 0).any()) for t in tensors):
        bad = [name for (name, _), t in zip(counts.items(), tensors) if bool((t < 0).any())]
        raise ValueError(f"table counts must be non-negative; negative values in {', '.join(bad)}")
    return tensors


def _log_binomial(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """log C(n, k) for 0 <= k <= n (float64); other cells are garbage and must be masked by the caller."""
    n = n.to(torch.float64)
    k = k.to(torch.float64)
    return torch.lgamma(n + 1) - torch.lgamma(k.clamp(min=0) + 1) - torch.lgamma((n - k).clamp(min=0) + 1)


def _pvalue_grid(n_true: torch.Tensor, n_false: torch.Tensor) -> torch.Tensor:
    """Two-sided Fisher p-values of every table with the given column totals.

    Args:
        n_true: [P] int64, rollouts in the first column (correct), nT.
        n_false: [P] int64, rollouts in the second column (wrong), nF.

    Returns:
        [P, R, K] float64 with R = max(nT + nF) + 1 and K = max(nT) + 1: entry [i, r, a] is the p-value of the
        table with a = a, b = r - a (row total r), for column totals (nT[i], nF[i]); cells outside the
        support hold 0 and must not be read.
    """
    device = n_true.device
    n = n_true + n_false
    rows = int(n.max()) + 1
    cols = int(n_true.max()) + 1
    nt = n_true.view(-1, 1, 1)
    nf = n_false.view(-1, 1, 1)
    r = torch.arange(rows, device=device).view(1, -1, 1)
    a = torch.arange(cols, device=device).view(1, 1, -1)
    b = r - a
    valid = (a <= nt) & (b >= 0) & (b <= nf) & (r <= (nt + nf))
    log_pmf = _log_binomial(nt, a) + _log_binomial(nf, b) - _log_binomial(nt + nf, r)
    pmf = torch.where(valid, torch.exp(log_pmf), torch.zeros((), dtype=torch.float64, device=device))
    ascending, _ = torch.sort(pmf, dim=-1)
    cumulative = torch.cumsum(ascending, dim=-1)
    # number of support points whose probability is <= P(a) (within the tolerance); their sum is the p-value
    at_most = torch.searchsorted(ascending.contiguous(), (pmf * (1.0 + FISHER_RTOL)).contiguous(), right=True)
    pvalue = torch.gather(cumulative, -1, (at_most - 1).clamp(min=0))
    return torch.where(valid, pvalue.clamp(max=1.0), torch.zeros((), dtype=torch.float64, device=device))


def fisher_exact_pvalues(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Two-sided Fisher exact test p-values of a batch of 2x2 tables ``[[a, b], [c, d]]``.

    With margins fixed, ``p = sum of P(k) over the tables k with P(k) <= P(a) * (1 + 1e-7)``, where ``P`` is the
    hypergeometric probability (the definition of ``scipy.stats.fisher_exact(..., alternative="two-sided")``
    and R's ``fisher.test``). Probabilities come from log-gamma in float64; each distinct pair of column totals
    ``(a + c, b + d)`` is computed once for all its tables, so a batch of millions of tables from groups of a few
    sizes costs a few small sorts.

    Args:
        a: integer tensor, non-negative counts: the tables' top-left cells (token present, correct).
        b: the same shape: top-right cells (present, wrong).
        c: the same shape: bottom-left cells (absent, correct).
        d: the same shape: bottom-right cells (absent, wrong).

    Returns:
        float64 tensor of that shape, p-values in [0, 1].
    """
    a, b, c, d = _check_tables(a=a, b=b, c=c, d=d)
    shape = a.shape
    a, b, c, d = a.reshape(-1), b.reshape(-1), c.reshape(-1), d.reshape(-1)
    out = torch.zeros(a.shape, dtype=torch.float64, device=a.device)
    if a.numel() == 0:
        return out.reshape(shape)
    n_true, n_false = a + c, b + d
    pairs, inverse = torch.unique(torch.stack([n_true, n_false], dim=1), dim=0, return_inverse=True)
    row = a + b
    # chunks of column-total pairs, each grid at most _GRID_BUDGET cells (one chunk in all usual batches);
    # the chunk bounds are planned on the host from one copy of the (few) pairs
    host_pairs = pairs.tolist()
    start = 0
    while start < len(host_pairs):
        stop, rows, cols = start, 0, 0
        while stop < len(host_pairs):
            rows_next = max(rows, sum(host_pairs[stop]) + 1)
            cols_next = max(cols, host_pairs[stop][0] + 1)
            if stop > start and (stop + 1 - start) * rows_next * cols_next > _GRID_BUDGET:
                break
            stop, rows, cols = stop + 1, rows_next, cols_next
        grid = _pvalue_grid(pairs[start:stop, 0], pairs[start:stop, 1])
        if start == 0 and stop == len(host_pairs):
            out = grid[inverse, row, a]
        else:
            sel = (inverse >= start) & (inverse < stop)
            out[sel] = grid[inverse[sel] - start, row[sel], a[sel]]
        start = stop
    return out.reshape(shape)


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) in bits with 0 log 0 = 0; p float64 in [0, 1]."""
    q = 1.0 - p
    return -(torch.xlogy(p, p) + torch.xlogy(q, q)) / torch.log(torch.tensor(2.0, dtype=torch.float64))


def information_gain(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Mutual information in bits between correctness (columns) and token presence (rows) of 2x2 tables.

    ``IG = H(Y) - [(a+b)/n H(a/(a+b)) + (c+d)/n H(c/(c+d))]`` with ``n = a+b+c+d``, ``0 log 0 = 0``, an empty row
    contributing 0 and ``IG = 0`` when ``n = 0``.

    Args:
        a: integer tensor, non-negative counts: the tables' top-left cells (token present, correct).
        b: the same shape: top-right cells (present, wrong).
        c: the same shape: bottom-left cells (absent, correct).
        d: the same shape: bottom-right cells (absent, wrong).

    Returns:
        float64 tensor of that shape, in [0, 1].
    """
    a, b, c, d = (t.to(torch.float64) for t in _check_tables(a=a, b=b, c=c, d=d))
    n = a + b + c + d
    safe = lambda num, den: torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))  # noqa: E731
    h_y = _binary_entropy(safe(a + c, n))
    present, absent = a + b, c + d
    h_cond = safe(present, n) * _binary_entropy(safe(a, present)) + safe(absent, n) * _binary_entropy(
        safe(c, absent)
    )
    return (h_y - h_cond).clamp(min=0.0)


def arcsine_distance(a: torch.Tensor, b: torch.Tensor, n_true: torch.Tensor, n_false: torch.Tensor) -> torch.Tensor:
    """Difference of arcsine-transformed presence rates, ``asin(sqrt(a/nT)) - asin(sqrt(b/nF))`` (half Cohen's h).

    Rates are clamped to [0, 1]; an empty column counts as rate 0.

    Args:
        a: rollouts with the token among the correct ones (integer tensor).
        b: rollouts with the token among the wrong ones (integer tensor, same shape).
        n_true: number of correct rollouts (integer tensor, same shape).
        n_false: number of wrong rollouts (integer tensor, same shape).

    Returns:
        float64 tensor in [-pi/2, pi/2]: positive when the token is more frequent in correct rollouts.
    """
    a, b, n_true, n_false = (
        t.to(torch.float64) for t in _check_tables(a=a, b=b, n_true=n_true, n_false=n_false)
    )
    rate_true = torch.where(n_true > 0, a / n_true.clamp(min=1), torch.zeros_like(a)).clamp(0.0, 1.0)
    rate_false = torch.where(n_false > 0, b / n_false.clamp(min=1), torch.zeros_like(b)).clamp(0.0, 1.0)
    return torch.asin(torch.sqrt(rate_true)) - torch.asin(torch.sqrt(rate_false))


def _length_norm(length: torch.Tensor, average_length: torch.Tensor, k1: float, b: float) -> torch.Tensor:
    return k1 * (1.0 - b + b * length / average_length)


def _saturate(frequency: torch.Tensor, length_norm: torch.Tensor, k1: float) -> torch.Tensor:
    return frequency * (k1 + 1.0) / (frequency + length_norm)


def bm25_saturation(
    frequency: torch.Tensor, length: torch.Tensor, average_length: torch.Tensor, k1: float = 2.0, b: float = 0.5
) -> torch.Tensor:
    """BM25 term-frequency saturation ``f (k1 + 1) / (f + k1 (1 - b + b length / average_length))``.

    Args:
        frequency: float tensor, relative frequency of the token in a document (here: all correct or all wrong
            rollouts of a group, concatenated).
        length: that document's length in tokens.
        average_length: the mean document length (> 0).
        k1: BM25 saturation constant (the released code uses 2.0).
        b: BM25 length normalisation (the released code uses 0.5).

    Returns:
        float64 tensor of the broadcast shape.
    """
    frequency = torch.as_tensor(frequency, dtype=torch.float64)
    length = torch.as_tensor(length, dtype=torch.float64, device=frequency.device)
    average_length = torch.as_tensor(average_length, dtype=torch.float64, device=frequency.device)
    return _saturate(frequency, _length_norm(length, average_length, k1, b), k1)


def term_frequency_ratio(
    count_true: torch.Tensor,
    count_false: torch.Tensor,
    tokens_true: torch.Tensor,
    tokens_false: torch.Tensor,
    k1: float = 2.0,
    b: float = 0.5,
    smoothing: float = 1e-5,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Term-frequency part ``r`` of the direction score (spec §3).

    ``fT = count_true / tokens_true`` (0 when there are no such tokens), ``fF`` likewise,
    ``tfT = bm25_saturation(fT, tokens_true, avg)``, ``tfF`` likewise with ``avg = (tokens_true + tokens_false) / 2``,
    ``r = tfT / (tfF + smoothing) - tfF / (tfT + smoothing)``.

    Args:
        count_true: [M] occurrences of the token in the correct rollouts of its group.
        count_false: [M] occurrences of the token in the wrong rollouts of its group.
        tokens_true: unmasked tokens in the correct rollouts of the group (NT): [M], or one entry per group [G]
            together with ``index``.
        tokens_false: the same for the wrong rollouts (NF).
        k1: BM25 saturation constant.
        b: BM25 length normalisation.
        smoothing: added to the denominators of the ratio.
        index: optional [M] group of each row, so that the per-group constants are computed once per group.

    Returns:
        float64 [M]: positive when the token is relatively more frequent in correct rollouts.
    """
    count_true, count_false = _check_tables(count_true=count_true, count_false=count_false)
    tokens_true, tokens_false = _check_tables(tokens_true=tokens_true, tokens_false=tokens_false)
    if index is None and tokens_true.shape != count_true.shape:
        raise ValueError(
            f"tokens_true has shape {tuple(tokens_true.shape)}, expected {tuple(count_true.shape)} like count_true "
            "(or pass index to map rows to per-group totals)"
        )
    return _term_frequency_ratio(count_true, count_false, tokens_true, tokens_false, k1, b, smoothing, index)


def _term_frequency_ratio(count_true, count_false, tokens_true, tokens_false, k1, b, smoothing, index=None):
    # unchecked core of `term_frequency_ratio`: per-group constants first, then few passes over the rows
    tokens_true = tokens_true.to(torch.float64)
    tokens_false = tokens_false.to(torch.float64)
    average = ((tokens_true + tokens_false) * 0.5).clamp(min=1e-12)
    per_token_true = 1.0 / tokens_true.clamp(min=1.0)  # the count is 0 whenever the token total is 0
    per_token_false = 1.0 / tokens_false.clamp(min=1.0)
    norm_true = _length_norm(tokens_true, average, k1, b)
    norm_false = _length_norm(tokens_false, average, k1, b)
    if index is not None:
        per_token_true, per_token_false = per_token_true[index], per_token_false[index]
        norm_true, norm_false = norm_true[index], norm_false[index]
    freq_true = count_true * per_token_true
    freq_false = count_false * per_token_false
    tf_true = _saturate(freq_true, norm_true, k1)
    tf_false = _saturate(freq_false, norm_false, k1)
    return tf_true / (tf_false + smoothing) - tf_false / (tf_true + smoothing)
