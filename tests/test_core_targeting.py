"""The pure measures of ktae targeting (ktae.core.targeting): hand-made examples, plain per-item references, scipy."""
import math
import random

import pytest
import torch

from ktae.core.targeting import auroc, blame, from_first, grouped_auroc, share_in_top, shared_with_correct


def pairwise_auroc(scores, labels):
    """Reference from the definition: over (positive, negative) pairs, 1 when the positive scores higher, 1/2 on a
    tie."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return float("nan")
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


def test_auroc_by_hand():
    labels = torch.tensor([1, 0, 1, 0, 0], dtype=torch.bool)
    assert auroc(torch.tensor([5.0, 1, 4, 2, 3]), labels) == 1.0             # every mistake above every other
    assert auroc(torch.tensor([1.0, 5, 2, 4, 3]), labels) == 0.0
    assert auroc(torch.zeros(5), labels) == 0.5                              # a constant knows nothing
    # pairs (mistake, other): 3 vs {1, 3, 2}: 1 + 0.5 + 1; 2 vs {1, 3, 2}: 1 + 0 + 0.5
    assert auroc(torch.tensor([3.0, 1, 2, 3, 2]), labels) == pytest.approx((2.5 + 1.5) / 6)
    assert math.isnan(auroc(torch.ones(3), torch.ones(3, dtype=torch.bool)))
    assert math.isnan(auroc(torch.ones(0), torch.ones(0, dtype=torch.bool)))


def test_grouped_auroc_matches_the_pairwise_definition_in_every_group():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 80)
        scores = torch.tensor([float(rng.randint(0, 5)) for _ in range(n)])
        labels = torch.tensor([rng.random() < 0.35 for _ in range(n)])
        groups = torch.tensor([rng.randint(0, 6) for _ in range(n)])
        got = grouped_auroc(scores, labels, groups)
        assert len(got) == int(groups.max()) + 1
        for g in range(len(got)):
            member = groups == g
            want = pairwise_auroc(scores[member].tolist(), labels[member].tolist())
            assert (math.isnan(want) and math.isnan(got[g])) or got[g] == pytest.approx(want, abs=1e-12)


def test_auroc_equals_mann_whitney():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    for _ in range(100):
        n = rng.randint(2, 60)
        s = torch.tensor([float(rng.randint(0, 6)) for _ in range(n)])
        y = torch.tensor([rng.random() < 0.3 for _ in range(n)])
        if y.all() or not y.any():
            continue
        u = stats.mannwhitneyu(s[y].numpy(), s[~y].numpy()).statistic
        assert auroc(s, y) == pytest.approx(u / (int(y.sum()) * int((~y).sum())), abs=1e-12)


def test_grouped_auroc_refuses_sizes_that_differ():
    with pytest.raises(ValueError, match="same size"):
        grouped_auroc(torch.ones(3), torch.ones(2, dtype=torch.bool), torch.zeros(3, dtype=torch.int64))


def test_share_in_top_by_hand():
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)
    assert share_in_top(torch.arange(10.0), labels, 0.2) == 1.0
    assert share_in_top(-torch.arange(10.0), labels, 0.2) == 0.0
    assert share_in_top(torch.zeros(10), labels, 0.1) == pytest.approx(0.2)   # ties: the base rate
    # top 30% = 3 items: 9 (hit), then a tie of {8 (hit), 7, 6} at score 1 taking 2 of 3 places
    scores = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2.0])
    assert share_in_top(scores, labels, 0.3) == pytest.approx((1 + 2 * (1 / 3)) / 3)
    with pytest.raises(ValueError, match="fraction"):
        share_in_top(scores, labels, 0.0)


def test_blame_is_the_share_of_the_negative_advantage():
    advantages = torch.tensor([[-2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [1.0, -1.0, 3.0]])
    rollout = torch.tensor([-2.0, 0.5, 0.0])
    assert blame(advantages, rollout).tolist() == [[1.0, 0.0, 0.5], [-1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]


def test_from_first_marks_every_token_from_the_first_label_on():
    labels = torch.tensor([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    assert from_first(labels, mask).int().tolist() == [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]]


def test_shared_with_correct_against_a_loop():
    rng = random.Random(2)
    for _ in range(20):
        b, length = rng.randint(1, 9), rng.randint(1, 7)
        responses = torch.tensor([[rng.randint(0, 3) for _ in range(length)] for _ in range(b)])
        lengths = [rng.randint(0, length) for _ in range(b)]
        mask = torch.tensor([[t < n for t in range(length)] for n in lengths])
        correct = torch.tensor([rng.random() < 0.5 for _ in range(b)])
        group = torch.tensor([rng.randint(0, 2) for _ in range(b)])
        got = shared_with_correct(responses, mask, correct, group)
        for i in range(b):
            for t in range(length):
                want = bool(mask[i, t]) and any(
                    j != i and correct[j] and group[j] == group[i] and mask[j, t] and responses[j, t] == responses[i, t]
                    for j in range(b))
                assert bool(got[i, t]) == want
