import warnings

import numpy as np
import pytest
import torch

from ktae.frontend.metrics import key_token_metrics
from ktae.monitoring import MixedGroupWatch, NoMixedGroupsWarning, mixed_groups


def test_mixed_groups_follows_the_core_rules():
    scores = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.5])
    group = ["a", "a", "b", "b", "c", "c"]
    assert mixed_groups(scores, group) == (2, 3)  # a: 1/0, b: all right, c: 0 and 0.5 > 0
    assert mixed_groups(scores, group, threshold=0.5) == (1, 3)  # c: 0 and 0.5 are both <= 0.5
    mask = torch.ones(6, 3)
    mask[1] = 0  # the only wrong rollout of group a is masked out: a is no longer mixed
    assert mixed_groups(scores, group, response_mask=mask) == (1, 3)
    mask[0] = 0  # group a has no member left at all
    assert mixed_groups(scores, group, response_mask=mask) == (1, 2)
    assert mixed_groups(torch.zeros(0), []) == (0, 0)
    assert mixed_groups(scores.numpy(), np.array([0, 0, 1, 1, 2, 2])) == (2, 3)


def test_key_token_stats_fraction_ignores_masked_rollouts():
    values = torch.zeros(4, 2)
    mask = torch.tensor([[1, 1], [0, 0], [1, 1], [1, 0]])
    stats = key_token_metrics(values, mask, torch.tensor([1.0, 0.0, 1.0, 0.0]), [0, 0, 1, 1], 0.0)
    assert stats["ktae/mixed_group_fraction"] == 0.5


def test_watch_fires_after_patience_then_on_doubling_and_resets():
    watch = MixedGroupWatch(patience=3, correctness="its reward is > 0.0", advice="set ktae_threshold")
    fired = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(1, 14):
            fired.append(watch.update(0, 8, step) is not None)
        assert watch.update(1, 8) is None and watch.streak == 0
        for step in range(3):
            fired.append(watch.update(0, 8) is not None)
    # streak 3 and 6 and 12 fire; after the reset, streak 3 fires again
    assert [i + 1 for i, f in enumerate(fired[:13]) if f] == [3, 6, 12]
    assert fired[13:] == [False, False, True]
    messages = [str(w.message) for w in caught if issubclass(w.category, NoMixedGroupsWarning)]
    assert len(messages) == 4
    assert "last 3 steps (step 3)" in messages[0] and "K is 0" in messages[0]
    assert "its reward is > 0.0" in messages[0] and "set ktae_threshold" in messages[0]


def test_watch_off_and_bad_input():
    watch = MixedGroupWatch(patience=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(watch.update(0, 4) is None for _ in range(50))
    with pytest.raises(ValueError, match="patience"):
        MixedGroupWatch(patience=-1)
    with pytest.raises(ValueError, match="mixed"):
        MixedGroupWatch().update(3, 2)


def test_watch_can_leave_printing_to_the_caller():
    """What `ktae train` does (the lead wires it in train/loop.py): the message is returned, not warned."""
    watch = MixedGroupWatch(patience=2, warn=False, correctness="its reward is > 0.0 (--ktae_threshold)",
                            advice="set --ktae_threshold", metric="mixed_groups")
    scores, group, mask = torch.ones(8), torch.arange(4).repeat_interleave(2), torch.ones(8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        messages = [watch.update(*mixed_groups(scores, group, 0.0, mask), step) for step in (1, 2)]
    assert messages[0] is None and "--ktae_threshold" in messages[1] and "(step 2)" in messages[1]
    assert "(mixed_groups = 0)" in messages[1]
