"""ktae.core.label_free: each label-free rule against a slow per-group Python reference written from its docstring,
and small batches worked by hand."""
import numpy as np
import pytest
import torch

import ktae
from ktae import KTAEConfig
from ktae.core import label_free
from ktae.core.label_free import (LABEL_FREE_CREDITS, first_novel_advantages, label_free_advantages, line_advantages,
                                  prefix_advantages, tree_advantages, unit_key_values, unit_ktae_advantages)
from reference_ktae import reference_grpo, reference_values
from test_core_credit import reference_sides

NEWLINE = 0   # the newline token of the random batches


# ------------------------------------------------------------------------------------------------ random batches
def grouped_batch(seed, groups=5, size=6, length=14, vocab=6, holes=False):
    """Groups whose rollouts copy one of two group templates up to a random point, then go their own way: shared
    prefixes and repeated lines, as sampled solutions have. Some rollouts are empty, some groups all right or all
    wrong, some rollouts repeat another one with the other score (ties); with ``holes`` the masks have gaps."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape, high=vocab: torch.randint(0, high, shape, generator=g)  # noqa: E731
    rows, scores, group = [], [], []
    for k in range(groups):
        templates = rand(2, length)
        templates[templates % 3 == 0] = NEWLINE                        # lines of a few tokens
        kind = int(rand(1, high=4))                                    # 0: all wrong, 1: all right, else mixed
        for _ in range(size):
            row = templates[int(rand(1, high=2))].clone()
            cut = int(rand(1, high=length + 1))
            row[cut:] = rand(length - cut)
            rows.append(row)
            scores.append(float(kind == 1) if kind < 2 else float(rand(1, high=2)))
            group.append(k)
        rows.append(rows[-1].clone())                                  # a tie: the same tokens, the other score
        scores.append(1.0 - scores[-1])
        group.append(k)
    responses = torch.stack(rows)
    lengths = rand(len(rows), high=length + 1)
    lengths[::7] = 0                                                   # empty responses
    mask = torch.arange(length)[None] < lengths[:, None]
    if holes:
        mask &= torch.rand(mask.shape, generator=g) > 0.15
    order = torch.randperm(len(rows), generator=g)                     # groups interleaved
    return responses[order], mask[order].long(), torch.tensor(scores)[order], torch.tensor(group)[order]


def as_lists(responses, mask, scores, group):
    return responses.tolist(), mask.tolist(), scores.tolist(), group.tolist()


# ------------------------------------------------------------------------------------------------ references
def sequence(row, mask_row):
    return [t for t, m in zip(row, mask_row) if m]


def spread(values, mask_row):
    """Values of a sequence back at the unmasked positions of its row; 0 elsewhere."""
    it = iter(values)
    return [next(it) if m else 0.0 for m in mask_row]


def lines_of(seq):
    """The lines of a sequence (tuples, newline included) and the line index of each token."""
    lines, at, current = [], [], []
    for t in seq:
        at.append(len(lines))
        current.append(t)
        if t == NEWLINE:
            lines.append(tuple(current))
            current = []
    if current:
        lines.append(tuple(current))
    return lines, at


def common_prefix(a, b):
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def reference_rule(responses, mask, scores, group, rule, threshold=0.0):
    """Prefix, line and first-novel rules, one rollout at a time from their definitions."""
    correct, member, mixed = reference_sides(mask, scores, group, threshold)
    base = reference_grpo(scores, group)
    seqs = [sequence(r, m) for r, m in zip(responses, mask)]
    out = []
    for i, seq in enumerate(seqs):
        if not (mixed[i] and not correct[i]):
            out.append(spread([base[i]] * len(seq), mask[i]))
            continue
        right = [j for j in range(len(seqs)) if group[j] == group[i] and member[j] and correct[j]]
        if rule == "prefix":
            longest = max(common_prefix(seq, seqs[j]) for j in right)
            values = [0.0 if t < longest else base[i] for t in range(len(seq))]
        else:
            written = {line for j in right for line in lines_of(seqs[j])[0]}
            lines, at = lines_of(seq)
            if rule == "line":
                values = [0.0 if lines[at[t]] in written else base[i] for t in range(len(seq))]
            else:  # first-novel
                first = next((k for k, line in enumerate(lines) if line not in written), len(lines))
                values = [base[i] if at[t] >= first else 0.0 for t in range(len(seq))]
        out.append(spread(values, mask[i]))
    return out


def units_of(seq, unit, n):
    """The unit of each token: its line, or the n-gram ending at it (shorter at the start)."""
    if unit == "line":
        lines, at = lines_of(seq)
        return lines, [lines[k] for k in at]
    grams = [tuple(seq[max(0, t - n + 1): t + 1]) for t in range(len(seq))]
    return grams, grams


def reference_unit_values(responses, mask, scores, group, unit, n=3, ignore_token_ids=(), **options):
    """K of each token's unit: the reference KTAE run on the sequences of units (as ints), spread to tokens."""
    names = {}
    seqs = [sequence(r, m) for r, m in zip(responses, mask)]
    unit_rows, token_units = [], []
    for seq in seqs:
        units, per_token = units_of(seq, unit, n)
        unit_rows.append([names.setdefault(u, len(names)) for u in units])
        token_units.append([names[u] for u in per_token])
    values = reference_values(unit_rows, [[1] * len(r) for r in unit_rows], scores, group, **options)
    out = []
    for row, vals, seq, per_token, m in zip(unit_rows, values, seqs, token_units, mask):
        lookup = dict(zip(row, vals))
        out.append(spread([0.0 if t in ignore_token_ids else lookup[u] for t, u in zip(seq, per_token)], m))
    return out


def reference_unit_ktae(responses, mask, scores, group, unit, blame, n=3, **options):
    values = reference_unit_values(responses, mask, scores, group, unit, n, **options)
    correct, _, mixed = reference_sides(mask, scores, group, options.get("threshold", 0.0))
    base = reference_grpo(scores, group)
    out = []
    for i, (vals, m) in enumerate(zip(values, mask)):
        if blame:
            wrong = mixed[i] and not correct[i]
            out.append([base[i] if mk and (not wrong or v < 0) else 0.0 for v, mk in zip(vals, m)])
        else:
            out.append([base[i] + v if mk else 0.0 for v, mk in zip(vals, m)])
    return out


def reference_tree(responses, mask, scores, group):
    _, member, _ = reference_sides(mask, scores, group)
    base = reference_grpo(scores, group)
    seqs = [sequence(r, m) for r, m in zip(responses, mask)]
    out = []
    for i, seq in enumerate(seqs):
        others = [j for j in range(len(seqs)) if group[j] == group[i] and member[j]]
        root = sum(base[j] for j in others) / len(others) if others else 0.0

        def value(prefix):
            below = [base[j] for j in others if seqs[j][:len(prefix)] == prefix]
            return sum(below) / len(below)

        values, parent = [], root
        for t in range(len(seq)):
            v = value(seq[:t + 1])
            values.append((v - root) + (v - parent))
            parent = v
        out.append(spread(values, mask[i]))
    return out


def check(actual, expected, atol=1e-5):
    assert actual.dtype == torch.float32
    np.testing.assert_allclose(actual.numpy(), np.array(expected, dtype=np.float64), rtol=0, atol=atol)


# ------------------------------------------------------------------------------------------------ against references
@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_prefix_line_and_first_novel_match_references(seed, holes):
    batch = grouped_batch(seed, groups=2 + seed, holes=holes)
    check(prefix_advantages(*batch), reference_rule(*as_lists(*batch), "prefix"))
    check(line_advantages(*batch, [NEWLINE]), reference_rule(*as_lists(*batch), "line"))
    check(first_novel_advantages(*batch, [NEWLINE]), reference_rule(*as_lists(*batch), "first-novel"))


def test_the_random_batches_exercise_every_case():
    """The reference tests above are only as good as their batches: each rule changes some wrong rollouts, leaves
    others at A_i, and the batches hold empty rows, ties, and groups that are all right or all wrong."""
    responses, mask, scores, group = grouped_batch(3, groups=5)
    correct, member, mixed = reference_sides(mask.tolist(), scores.tolist(), group.tolist())
    assert not all(member) and any(mixed) and not all(m for m, b in zip(mixed, member) if b)
    base = ktae.grpo_advantages(scores, group)[:, None] * mask
    wrong = torch.tensor([m and not c for m, c in zip(mixed, correct)])
    for rule in (prefix_advantages(responses, mask, scores, group),
                 line_advantages(responses, mask, scores, group, [NEWLINE]),
                 first_novel_advantages(responses, mask, scores, group, [NEWLINE])):
        changed = (rule != base).any(dim=1)
        assert changed[wrong].any() and not changed[~wrong].any()
        zeroed = ((rule == 0) & mask.bool()).sum(dim=1)
        assert (zeroed[wrong] < mask.sum(dim=1)[wrong]).any()      # some wrong rollouts keep A_i somewhere


def test_threshold_and_dapo_rewards():
    responses, mask, scores, group = grouped_batch(11)
    scores = scores * 2 - 1 - 0.3 * (torch.arange(len(scores)) % 3 == 0)       # +1 / -1 with overlong penalties
    config = KTAEConfig(threshold=0.5)
    lists = as_lists(responses, mask, scores, group)
    check(prefix_advantages(responses, mask, scores, group, config), reference_rule(*lists, "prefix", 0.5))
    check(line_advantages(responses, mask, scores, group, [NEWLINE], config), reference_rule(*lists, "line", 0.5))


@pytest.mark.parametrize("unit, n", [("line", 3), ("ngram", 1), ("ngram", 2), ("ngram", 3), ("ngram", 4)])
@pytest.mark.parametrize("seed", range(3))
def test_unit_key_values_match_reference(seed, unit, n):
    batch = grouped_batch(20 + seed, groups=3 + seed, holes=seed == 2)
    values = unit_key_values(*batch, unit, newline_ids=[NEWLINE], n=n)
    check(values, reference_unit_values(*as_lists(*batch), unit, n))
    assert values.abs().max() > 0


def test_unit_key_values_with_options_and_ignored_ids():
    batch = grouped_batch(30, groups=4)
    options = {"alpha": 0.5, "beta": 2.0, "gamma": 0.3, "top": 2.0, "fisher_at_one": "zero"}
    for unit in ("line", "ngram"):
        values = unit_key_values(*batch, unit, newline_ids=[NEWLINE], n=2,
                                 config=KTAEConfig(ignore_token_ids=(1, 4), **options))
        check(values, reference_unit_values(*as_lists(*batch), unit, 2, ignore_token_ids=(1, 4), **options))


def test_unigrams_are_ktae_itself():
    responses, mask, scores, group = grouped_batch(31, groups=4, holes=True)
    assert torch.allclose(unit_key_values(responses, mask, scores, group, "ngram", n=1),
                          ktae.key_token_values(responses, mask, scores, group), atol=1e-6)


@pytest.mark.parametrize("blame", [False, True])
@pytest.mark.parametrize("unit", ["line", "ngram"])
def test_unit_ktae_advantages_match_reference(unit, blame):
    for seed in range(3):
        batch = grouped_batch(40 + seed, groups=4)
        advantages = unit_ktae_advantages(*batch, unit, newline_ids=[NEWLINE], n=3, blame=blame)
        check(advantages, reference_unit_ktae(*as_lists(*batch), unit, blame, 3))


@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_tree_matches_reference(seed, holes):
    batch = grouped_batch(50 + seed, groups=2 + seed, holes=holes)
    check(tree_advantages(*batch), reference_tree(*as_lists(*batch)))


def test_small_pair_blocks_give_the_same_result(monkeypatch):
    batch = grouped_batch(60, groups=4)
    whole = (prefix_advantages(*batch), tree_advantages(*batch))
    monkeypatch.setattr(label_free, "PAIR_BLOCK", 20)                    # one or two pairs per block
    assert torch.equal(prefix_advantages(*batch), whole[0]) and torch.equal(tree_advantages(*batch), whole[1])


def test_every_credit_by_name():
    batch = grouped_batch(70, groups=4)
    direct = {
        "prefix": prefix_advantages(*batch),
        "line": line_advantages(*batch, [NEWLINE]),
        "first-novel": first_novel_advantages(*batch, [NEWLINE]),
        "line-ktae": unit_ktae_advantages(*batch, "line", newline_ids=[NEWLINE]),
        "line-ktae-blame": unit_ktae_advantages(*batch, "line", newline_ids=[NEWLINE], blame=True),
        "ngram-ktae": unit_ktae_advantages(*batch, "ngram", n=2),
        "ngram-ktae-blame": unit_ktae_advantages(*batch, "ngram", n=2, blame=True),
        "tree": tree_advantages(*batch),
    }
    assert set(direct) == set(LABEL_FREE_CREDITS)
    for credit, expected in direct.items():
        assert torch.equal(label_free_advantages(credit, *batch, newline_ids=[NEWLINE], n=2), expected), credit


# ------------------------------------------------------------------------------------------------ by hand
# One group of four (newline token 0): rollouts 0 and 1 right, 2 and 3 wrong; GRPO gives A = +0.866 to the right
# ones and -0.866 to the wrong ones (scores 1, 1, 0, 0: mean 0.5, std 0.577). Then a group of one, all right.
HAND = torch.tensor([[5, 6, 0, 7, 8, 0],     # right: lines (5 6 0) (7 8 0)
                     [5, 6, 0, 9, 8, 0],     # right: lines (5 6 0) (9 8 0)
                     [5, 6, 0, 7, 4, 0],     # wrong: (5 6 0) as both right ones, then (7 4 0), nobody's
                     [7, 8, 0, 5, 6, 0],     # wrong: the first right one's lines, in the other order
                     [5, 6, 0, 0, 0, 0]])    # a group of one, its last three tokens padding
HAND_MASK = torch.tensor([[1] * 6] * 4 + [[1, 1, 1, 0, 0, 0]])
HAND_SCORES = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
HAND_GROUP = [0, 0, 0, 0, 1]
A = 0.5 / (3 ** -0.5 + 1e-6)


def hand(rule, *args):
    return rule(HAND, HAND_MASK, HAND_SCORES, HAND_GROUP, *args)


def expect(*rows):
    """The expected advantages, each row given in units of A (the lone rollout gets 1, GRPO's group of one)."""
    out = torch.tensor(rows, dtype=torch.float64)
    out[:4] *= A
    return out.float()


def test_prefix_by_hand():
    # rollout 2 follows rollout 0 for 4 tokens (5 6 0 7): those get 0, its last two A_i; rollout 3 leaves every
    # right rollout at its first token: A_i everywhere
    assert torch.allclose(hand(prefix_advantages), expect(
        [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, -1, -1], [-1] * 6, [1, 1, 1, 0, 0, 0]))


def test_line_and_first_novel_by_hand():
    # rollout 2: line (5 6 0) was written by a right rollout, (7 4 0) by none; rollout 3: both its lines were
    # written by rollout 0, at other places: the line rule clears it, and it has no novel line
    line = expect([1] * 6, [1] * 6, [0, 0, 0, -1, -1, -1], [0] * 6, [1, 1, 1, 0, 0, 0])
    assert torch.allclose(hand(line_advantages, [0]), line)
    assert torch.allclose(hand(first_novel_advantages, [0]), line)
    # a novel line first, then a line the right rollouts wrote: first-novel keeps A_i on both, the line rule not
    responses = HAND.clone()
    responses[2] = torch.tensor([7, 4, 0, 5, 6, 0])
    assert torch.allclose(first_novel_advantages(responses, HAND_MASK, HAND_SCORES, HAND_GROUP, [0])[2],
                          expect(*[[-1] * 6] * 5)[2])
    assert torch.allclose(line_advantages(responses, HAND_MASK, HAND_SCORES, HAND_GROUP, [0])[2],
                          expect(*[[-1, -1, -1, 0, 0, 0]] * 5)[2])


def test_without_newlines_a_response_is_one_line():
    # no newline id: each response is one line, and no wrong one equals a right one
    assert torch.allclose(hand(line_advantages, []), expect([1] * 6, [1] * 6, [-1] * 6, [-1] * 6, [1, 1, 1, 0, 0, 0]))


def test_tree_by_hand():
    # root value 0 (A sums to 0). Rollout 0: (5) is shared by 0, 1, 2 (V = A/3), (5 6 0) too, (5 6 0 7) by 0 and 2
    # (V = 0), then alone (V = A). Rollout 3 is alone from its first token (V = -A).
    third = 1 / 3
    expected = expect([2 * third, third, third, -third, 2, 1],
                      [2 * third, third, third, 1 + 2 * third, 1, 1],
                      [2 * third, third, third, -third, -2, -1],
                      [-2, -1, -1, -1, -1, -1],
                      [0, 0, 0, 0, 0, 0])
    assert torch.allclose(hand(tree_advantages), expected, atol=1e-6)


def test_line_ktae_by_hand():
    # units are lines: L1 = (5 6 0) is in both right rollouts and both wrong ones, L2 = (7 8 0) in one of each
    # (as often, by unit occurrences too): K = 0 exactly; L3 = (9 8 0) only in a right one: K > 0; L4 = (7 4 0)
    # only in a wrong one: K = -K(L3). The blame form keeps A_i on L4 only, in the wrong rollouts.
    values = unit_key_values(HAND, HAND_MASK, HAND_SCORES, HAND_GROUP, "line", newline_ids=[0])
    k3 = float(values[1, 3])
    assert k3 > 0.1
    zero = torch.zeros(3)
    assert torch.equal(values[0], torch.tensor([0.0, 0, 0, 0, 0, 0])) and torch.equal(values[3], torch.zeros(6))
    assert torch.allclose(values[1, 3:], torch.full((3,), k3)) and torch.allclose(values[2, 3:], torch.full((3,), -k3))
    assert torch.equal(values[1, :3], zero) and torch.equal(values[2, :3], zero)
    assert (values[4] == 0).all()                                           # a group of one has no table
    blame = unit_ktae_advantages(HAND, HAND_MASK, HAND_SCORES, HAND_GROUP, "line", newline_ids=[0], blame=True)
    assert torch.allclose(blame, expect([1] * 6, [1] * 6, [0, 0, 0, -1, -1, -1], [0] * 6, [1, 1, 1, 0, 0, 0]))
    additive = unit_ktae_advantages(HAND, HAND_MASK, HAND_SCORES, HAND_GROUP, "line", newline_ids=[0])
    assert torch.allclose(additive, expect([1] * 6, [1] * 6, [-1] * 6, [-1] * 6, [1, 1, 1, 0, 0, 0]) + values)


def test_ngram_units_by_hand():
    # bigrams: (5 6) starts rollouts 0-2 and sits inside rollout 3; the first token of a sequence is its own
    # shorter unit, so (5) at the start of rollouts 0-2 is not (7) at the start of rollout 3
    values = unit_key_values(HAND, HAND_MASK, HAND_SCORES, HAND_GROUP, "ngram", n=2)
    assert values[0, 0] == values[1, 0] == values[2, 0] and values[0, 1] == values[3, 4]
    assert values[3, 0] < 0 < values[0, 0]


def test_groups_that_are_not_mixed_are_grpo():
    responses, mask, scores, group = grouped_batch(80)
    scores = torch.ones_like(scores)
    grpo = ktae.grpo_advantages(scores, group)[:, None] * mask
    for credit in LABEL_FREE_CREDITS:
        assert torch.equal(label_free_advantages(credit, responses, mask, scores, group, newline_ids=[0]),
                           grpo.float()), credit


# ------------------------------------------------------------------------------------------------ inputs
def test_bad_inputs_are_named():
    batch = grouped_batch(90)
    with pytest.raises(ValueError, match="newline_ids must be a sequence of token ids"):
        line_advantages(*batch, "x")
    with pytest.raises(ValueError, match="newline_ids must be non-negative"):
        first_novel_advantages(*batch, [-1])
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        unit_key_values(*batch, "ngram", n=0)
    with pytest.raises(ValueError, match="unit must be one of"):
        unit_key_values(*batch, "word")
    with pytest.raises(ValueError, match="credit must be one of"):
        label_free_advantages("oracle", *batch)
    with pytest.raises(ValueError, match="response_mask has shape"):
        prefix_advantages(batch[0], batch[1][:, :3], batch[2], batch[3])


def test_empty_batches_and_empty_responses():
    for credit in LABEL_FREE_CREDITS:
        empty = label_free_advantages(credit, torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 0),
                                      [1.0, 0.0, 0.0], [0, 0, 0], newline_ids=[0])
        assert empty.shape == (3, 0)
        none = label_free_advantages(credit, torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4), [], [],
                                     newline_ids=[0])
        assert none.shape == (0, 4)
