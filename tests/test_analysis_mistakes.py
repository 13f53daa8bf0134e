"""Scores of token-level advantages against labelled wrong steps: hand-made examples and scipy."""
import math
import random

import pytest
import torch

from ktae.analysis.mistakes import auroc, mistake_metrics, share_in_top


def test_auroc_by_hand():
    labels = torch.tensor([1, 0, 1, 0, 0], dtype=torch.bool)
    assert auroc(torch.tensor([5.0, 1, 4, 2, 3]), labels) == 1.0             # every mistake above every other
    assert auroc(torch.tensor([1.0, 5, 2, 4, 3]), labels) == 0.0
    assert auroc(torch.zeros(5), labels) == 0.5                              # a constant knows nothing
    # pairs (mistake, other): (3 > 1), (3 > 2)... 3 vs {1, 3, 2}: 1 + 0.5 + 1; 2 vs {1, 3, 2}: 1 + 0 + 0.5
    assert auroc(torch.tensor([3.0, 1, 2, 3, 2]), labels) == pytest.approx((2.5 + 1.5) / 6)
    assert math.isnan(auroc(torch.ones(3), torch.ones(3, dtype=torch.bool)))


def test_auroc_equals_mann_whitney():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(100):
        n = rng.randint(2, 60)
        s = torch.tensor([float(rng.randint(0, 6)) for _ in range(n)])
        y = torch.tensor([rng.random() < 0.3 for _ in range(n)])
        if y.all() or not y.any():
            continue
        u = stats.mannwhitneyu(s[y].numpy(), s[~y].numpy()).statistic
        assert auroc(s, y) == pytest.approx(u / (int(y.sum()) * int((~y).sum())), abs=1e-12)


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


def test_mistake_metrics_pooled_within_and_random():
    # two wrong rollouts; K is most negative exactly on the wrong-step tokens of rollout 0, flat in rollout 1
    k = torch.tensor([-0.9, 0.1, 0.2, 0.0, 0.0, 0.0])
    mistake = torch.tensor([1, 0, 0, 1, 0, 0], dtype=torch.bool)
    rollout = torch.tensor([0, 0, 0, 1, 1, 1])
    a = torch.tensor([-1.0, -1, -1, -0.5, -0.5, -0.5])
    out = mistake_metrics({"-K": -k, "-A": -a}, mistake, rollout, fraction=1 / 6)
    assert out["-K"]["auroc_within"] == pytest.approx((1.0 + 0.5) / 2)
    assert out["-A"]["auroc_within"] == 0.5                     # a flat advantage cannot tell tokens apart
    assert out["-K"]["share_top"] == 1.0 and out["-K"]["rollouts_within"] == 2
    assert out["random"]["share_top"] == pytest.approx(2 / 6) and out["data"]["mistake_tokens"] == 2
    # pooled: -K ranks the first mistake top, the second ties with four others at 0
    assert out["-K"]["auroc"] == pytest.approx(auroc(-k, mistake))
