"""ktae.core.credit: the oracle and the gate against slow per-group Python references written from their docstrings."""
from collections import defaultdict

import numpy as np
import pytest
import torch

from ktae import KTAEConfig
from ktae.core.credit import gate_advantages, gate_values, mixed_members, oracle_advantages, specificity_gate
from reference_ktae import reference_grpo
from test_core_advantages import random_batch


def reference_sides(mask, scores, group, threshold=0.0):
    """Per rollout: (correct, member, mixed) from per-group loops."""
    member = [any(row) for row in mask]
    correct = [s > threshold for s in scores]
    sides = defaultdict(set)
    for i, g in enumerate(group):
        if member[i]:
            sides[g].add(correct[i])
    mixed = [member[i] and len(sides[g]) == 2 for i, g in enumerate(group)]
    return correct, member, mixed


def reference_gate(responses, mask, scores, group, threshold=0.0):
    correct, member, mixed = reference_sides(mask, scores, group, threshold)
    present = [{t for t, m in zip(row, mrow) if m} for row, mrow in zip(responses, mask)]
    out = []
    for i, (row, mrow) in enumerate(zip(responses, mask)):
        others = [j for j, g in enumerate(group) if g == group[i] and member[j] and correct[j] != correct[i]]
        gates = []
        for t, m in zip(row, mrow):
            if not m:
                gates.append(0.0)
            elif not mixed[i]:
                gates.append(1.0)
            else:
                gates.append(1.0 - sum(t in present[j] for j in others) / len(others))
        out.append(gates)
    return out


def reference_oracle(mask, scores, group, mistake, top=1.0, blame_only=False):
    correct, _, mixed = reference_sides(mask, scores, group)
    base = reference_grpo(scores, group)
    out = []
    for i, (mrow, wrow) in enumerate(zip(mask, mistake)):
        wrong_mixed = mixed[i] and not correct[i]
        row = []
        for m, w in zip(mrow, wrow):
            if not m:
                row.append(0.0)
            elif wrong_mixed and blame_only:
                row.append(base[i] if w else 0.0)
            elif wrong_mixed:
                row.append(base[i] - top * w)
            else:
                row.append(base[i])
        out.append(row)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_gate_matches_reference(seed):
    responses, mask, scores, group = random_batch(300 + seed, groups=1 + seed, batch=10 + 5 * seed, vocab=8)
    gate = gate_values(responses, mask, scores, group)
    expected = reference_gate(responses.tolist(), mask.tolist(), scores.tolist(), group.tolist())
    np.testing.assert_allclose(gate.numpy(), np.array(expected), rtol=0, atol=1e-6)
    assert 0 < float(gate[mask.bool()].mean()) <= 1
    advantages = gate_advantages(responses, mask, scores, group)
    base = np.array(reference_grpo(scores.tolist(), group.tolist()))
    np.testing.assert_allclose(advantages.numpy(), base[:, None] * np.array(expected), rtol=0, atol=1e-5)


def test_gate_with_dapo_rewards_and_threshold():
    responses, mask, scores, group = random_batch(320, reward="dapo", vocab=8)
    gate = gate_values(responses, mask, scores, group, KTAEConfig(threshold=-0.5))
    expected = reference_gate(responses.tolist(), mask.tolist(), scores.tolist(), group.tolist(), threshold=-0.5)
    np.testing.assert_allclose(gate.numpy(), np.array(expected), rtol=0, atol=1e-6)


def test_gate_by_hand():
    # one group: two right rollouts [5, 6] and [5, 7], one wrong [5, 8]; token 5 is common, 8 only wrong
    responses = torch.tensor([[5, 6], [5, 7], [5, 8]])
    mask = torch.ones_like(responses)
    gate = gate_values(responses, mask, torch.tensor([1.0, 1.0, 0.0]), [0, 0, 0])
    assert gate.tolist() == [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    in_correct, in_wrong = specificity_gate(torch.tensor([2, 1]), torch.tensor([1, 0]), torch.tensor([2, 2]),
                                            torch.tensor([1, 1]))
    assert in_correct.tolist() == [0.0, 1.0] and in_wrong.tolist() == [0.0, 0.5]


def test_gate_is_grpo_without_mixed_groups():
    responses, mask, scores, group = random_batch(330)
    scores = torch.ones_like(scores)
    assert torch.equal(gate_values(responses, mask, scores, group), mask.float())


def random_mistakes(mask, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(mask.shape, generator=g) < 0.3) & mask.bool()


@pytest.mark.parametrize("blame_only", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_oracle_matches_reference(seed, blame_only):
    responses, mask, scores, group = random_batch(400 + seed, groups=2 + seed)
    mistake = random_mistakes(mask, seed)
    top = 1.0 if seed % 2 else 0.5
    adv = oracle_advantages(mask, scores, group, mistake, KTAEConfig(top=top), blame_only=blame_only)
    expected = reference_oracle(mask.tolist(), scores.tolist(), group.tolist(), mistake.tolist(), top, blame_only)
    np.testing.assert_allclose(adv.numpy(), np.array(expected), rtol=0, atol=1e-5)
    correct, _, mixed = reference_sides(mask.tolist(), scores.tolist(), group.tolist())
    touched = [m and not c for m, c in zip(mixed, correct)]
    assert any(touched) and not torch.equal(adv, torch.tensor(reference_oracle(
        mask.tolist(), scores.tolist(), group.tolist(), torch.zeros_like(mistake).tolist())).float())


def test_oracle_checks_its_inputs():
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="mistake has shape"):
        oracle_advantages(mask, [1.0, 0.0], [0, 0], torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="response_mask must be 2-D"):
        oracle_advantages(torch.ones(3), [1.0, 0.0], [0, 0], torch.ones(3, dtype=torch.bool))


def test_mixed_members_leaves_out_empty_rollouts():
    correct = torch.tensor([True, False, True, False])
    member = torch.tensor([True, True, True, False])
    ids = torch.tensor([0, 0, 1, 1])
    assert mixed_members(correct, member, ids).tolist() == [True, True, False, False]
