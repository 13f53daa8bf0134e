"""A slow, obviously-correct KTAE written straight from the spec (per-group Python loops, float64, scipy).

Used by the tests as the ground truth for the vectorised estimator.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict

from scipy.stats import fisher_exact


def entropy_bits(p: float) -> float:
    return -sum(x * math.log2(x) for x in (p, 1 - p) if x > 0)


def table_stats(a: int, b: int, n_true: int, n_false: int, fisher_at_one: str = "exp") -> dict:
    c, d = n_true - a, n_false - b
    n = n_true + n_false
    p = fisher_exact([[a, b], [c, d]], alternative="two-sided").pvalue
    fisher = math.exp(-2 * p)
    if fisher_at_one == "zero" and abs(p - 1.0) <= 1e-7:
        fisher = 0.0
    h_y = entropy_bits(n_true / n) if n else 0.0
    cond = 0.0
    if a + b:
        cond += (a + b) / n * entropy_bits(a / (a + b))
    if c + d:
        cond += (c + d) / n * entropy_bits(c / (c + d))
    ig = h_y - cond if n else 0.0
    p_t = min(max(a / n_true, 0.0), 1.0) if n_true else 0.0
    p_f = min(max(b / n_false, 0.0), 1.0) if n_false else 0.0
    arcsine = math.asin(math.sqrt(p_t)) - math.asin(math.sqrt(p_f))
    return {"p_value": p, "fisher": fisher, "info_gain": ig, "arcsine": arcsine}


def sigmoid(s: float) -> float:
    if s >= 0:
        return 1 / (1 + math.exp(-s))
    return math.exp(s) / (1 + math.exp(s))


def bm25(freq: float, length: float, avg: float, k1: float = 2.0, b: float = 0.5) -> float:
    return freq * (k1 + 1) / (freq + k1 * (1 - b + b * length / avg))


def reference_values(responses, mask, scores, group, alpha=1.0, beta=1.0, gamma=1.0, top=1.0, threshold=0.0,
                     fisher_at_one="exp", ignore_token_ids=()):
    """K per position as nested lists, computed group by group and token by token.

    A rollout with no unmasked token is not a member of its group (it counts in neither nT nor nF).
    """
    responses = [list(map(int, r)) for r in responses]
    mask = [list(map(int, m)) for m in mask]
    scores = [float(s) for s in scores]
    group = list(group)
    out = [[0.0] * len(r) for r in responses]
    members = defaultdict(list)
    for i, g in enumerate(group):
        members[g].append(i)
    for g, rows in members.items():
        rows = [i for i in rows if any(mask[i])]  # a rollout with no unmasked token is not a member
        correct = [i for i in rows if scores[i] > threshold]
        wrong = [i for i in rows if scores[i] <= threshold]
        if not correct or not wrong:
            continue
        tokens_of = {i: [t for t, m in zip(responses[i], mask[i]) if m] for i in rows}
        n_tokens_true = sum(len(tokens_of[i]) for i in correct)
        n_tokens_false = sum(len(tokens_of[i]) for i in wrong)
        avg = (n_tokens_true + n_tokens_false) / 2
        count_true = Counter(t for i in correct for t in tokens_of[i])
        count_false = Counter(t for i in wrong for t in tokens_of[i])
        value = {}
        for v in set(count_true) | set(count_false):
            a = sum(v in set(tokens_of[i]) for i in correct)
            b = sum(v in set(tokens_of[i]) for i in wrong)
            st = table_stats(a, b, len(correct), len(wrong), fisher_at_one)
            f_t = count_true[v] / n_tokens_true if n_tokens_true else 0.0
            f_f = count_false[v] / n_tokens_false if n_tokens_false else 0.0
            tf_t = bm25(f_t, n_tokens_true, avg)
            tf_f = bm25(f_f, n_tokens_false, avg)
            r = tf_t / (tf_f + 1e-5) - tf_f / (tf_t + 1e-5)
            x = st["arcsine"] + gamma * r
            s = (alpha * st["fisher"] + beta * st["info_gain"]) * x / (alpha + beta)
            value[v] = 0.0 if v in ignore_token_ids else top * (2 * sigmoid(s) - 1)
        for i in rows:
            for t, (tok, m) in enumerate(zip(responses[i], mask[i])):
                if m:
                    out[i][t] = value[tok]
    return out


def reference_grpo(scores, group, eps=1e-6):
    members = defaultdict(list)
    for i, g in enumerate(group):
        members[g].append(i)
    out = [0.0] * len(scores)
    for rows in members.values():
        vals = [float(scores[i]) for i in rows]
        if len(vals) == 1:
            mean, std = 0.0, 1.0
        else:
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
        for i in rows:
            out[i] = (float(scores[i]) - mean) / (std + eps)
    return out
