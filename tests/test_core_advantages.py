import math

import numpy as np
import pytest
import torch

import ktae
from ktae import KTAEConfig
from reference_ktae import reference_grpo, reference_values, table_stats


def random_batch(seed, groups=6, batch=36, length=24, vocab=20, reward="binary"):
    g = torch.Generator().manual_seed(seed)
    responses = torch.randint(0, vocab, (batch, length), generator=g)
    lengths = torch.randint(0, length + 1, (batch,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    group = torch.randint(0, groups, (batch,), generator=g)  # interleaved, uneven, maybe size one
    if reward == "binary":
        scores = torch.randint(0, 2, (batch,), generator=g).float()
    else:  # DAPO: +1 / -1 plus an overlong penalty in [-1, 0]
        scores = torch.randint(0, 2, (batch,), generator=g).float() * 2 - 1
        scores = scores - torch.rand(batch, generator=g) * (torch.rand(batch, generator=g) < 0.3)
    return responses, mask, scores, group


def check_against_reference(responses, mask, scores, group, **options):
    config = KTAEConfig(**options)
    values = ktae.key_token_values(responses, mask, scores, group, config)
    expected = reference_values(responses.tolist(), mask.tolist(), scores.tolist(), [int(x) for x in group], **options)
    np.testing.assert_allclose(values.numpy(), np.array(expected), rtol=0, atol=1e-5)
    return values


@pytest.mark.parametrize("seed", range(8))
def test_random_batches_match_reference(seed):
    check_against_reference(*random_batch(seed, groups=1 + seed, batch=8 + 6 * seed))


@pytest.mark.parametrize(
    "options",
    [
        {"alpha": 0.0},  # w/o Fisher
        {"beta": 0.0},  # w/o IG
        {"gamma": 0.0},  # w/o tf
        {"alpha": 0.5, "beta": 2.0, "gamma": 0.3, "top": 2.0},
        {"fisher_at_one": "zero"},
        {"threshold": 0.5},
        {"ignore_token_ids": (0, 3)},
    ],
)
def test_options_match_reference(options):
    for seed in range(3):
        check_against_reference(*random_batch(100 + seed), **options)


def test_dapo_rewards_with_overlong_penalty_match_reference():
    for seed in range(3):
        values = check_against_reference(*random_batch(200 + seed, reward="dapo"))
        assert values.abs().max() > 0


def test_string_group_ids_and_numpy_object_arrays():
    responses, mask, scores, group = random_batch(7)
    uids = np.array([f"uid-{int(g)}" for g in group], dtype=object)
    by_int = ktae.key_token_values(responses, mask, scores, group)
    assert torch.equal(ktae.key_token_values(responses, mask, scores, uids), by_int)
    assert torch.equal(ktae.key_token_values(responses, mask, scores, list(uids)), by_int)
    assert torch.equal(ktae.key_token_values(responses, mask, scores, group.numpy()), by_int)


def test_large_ids_take_the_int64_key_path():
    responses, mask, scores, group = random_batch(3)
    big = responses * 1_000_003 + 2**30  # keys no longer fit in int32
    check_against_reference(big, mask, scores, group)


def test_hand_checked_group():
    # one group: rollouts 0, 1 correct, 2, 3 wrong. Token 7 only in correct ones, token 9 everywhere,
    # token 5 only in wrong ones; token 4 sits only under the mask.
    responses = torch.tensor([[7, 9, 0], [7, 9, 9], [9, 5, 4], [9, 5, 5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]])
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0])
    values = ktae.key_token_values(responses, mask, scores, [0, 0, 0, 0])
    # token 7: a=2, b=0 of nT=nF=2 -> p = 1/3, IG = 1 bit, h = pi/2
    nt_tokens, nf_tokens = 5, 5
    tf_t = 2 / nt_tokens * 3 / (2 / nt_tokens + 2 * (1 - 0.5 + 0.5 * nt_tokens / 5))
    s = (math.exp(-2 / 3) + 1.0) * (math.pi / 2 + tf_t / 1e-5) / 2
    assert values[0, 0].item() == pytest.approx(2 / (1 + math.exp(-s)) - 1, abs=1e-6)
    assert values[0, 0].item() > 0.99 and values[2, 1].item() < -0.99
    # token 9 is in every rollout: p = 1, IG = 0, h = 0, only the tf part remains (3 of 5 vs 2 of 5 tokens)
    ref = table_stats(2, 2, 2, 2)
    assert ref["p_value"] == pytest.approx(1.0) and ref["info_gain"] == 0.0
    assert values[0, 1].item() == values[1, 1].item() == values[2, 0].item() == values[3, 0].item() > 0
    # masked positions are 0 even for tokens counted elsewhere
    assert values[0, 2].item() == 0.0 and values[2, 2].item() == 0.0
    # "zero" mode: p = 1 gives F = 0, so with IG = 0 the everywhere-token gets exactly 0
    zero = ktae.key_token_values(responses, mask, scores, [0] * 4, KTAEConfig(fisher_at_one="zero"))
    assert zero[0, 1].item() == 0.0 and zero[0, 0].item() == values[0, 0].item()


def test_uniform_groups_and_single_rollouts_get_zero():
    responses = torch.tensor([[1, 2], [1, 3], [4, 5], [4, 6], [7, 8]])
    mask = torch.ones_like(responses)
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])  # group a all correct, b all wrong, c a single rollout
    values = ktae.key_token_values(responses, mask, scores, ["a", "a", "b", "b", "c"])
    assert torch.equal(values, torch.zeros_like(values))
    adv, ret = ktae.ktae_advantages(responses, mask, scores, ["a", "a", "b", "b", "c"])
    # uniform groups: GRPO advantage 0; a group of one: mean 0, std 1
    assert torch.allclose(adv[:4], torch.zeros(4, 2))
    assert torch.allclose(adv[4], torch.full((2,), 1 / (1 + 1e-6)))
    assert torch.equal(adv, ret)


def test_ktae_advantages_compose_rollout_estimator_and_values():
    responses, mask, scores, group = random_batch(11, reward="dapo")
    for rollout in ("grpo", "dr_grpo", "rloo"):
        config = KTAEConfig(rollout=rollout)
        adv, ret = ktae.ktae_advantages(responses, mask, scores, group, config)
        base = ktae.rollout_advantages(scores, group, config)
        values = ktae.key_token_values(responses, mask, scores, group, config)
        expected = (base[:, None] + values) * mask
        assert torch.allclose(adv, expected, atol=1e-6)
        assert torch.equal(adv, ret) and adv.dtype == torch.float32
        assert torch.all(adv[mask == 0] == 0)


def test_rollout_estimators_against_reference():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.5, -1.0])
    group = [0, 0, 1, 0, 1, 2, 1]
    np.testing.assert_allclose(ktae.grpo_advantages(scores, group).numpy(), reference_grpo(scores.tolist(), group),
                               atol=1e-6)
    dr = ktae.dr_grpo_advantages(scores, group)
    assert dr.tolist() == pytest.approx([1 / 3, -2 / 3, 0.0, 1 / 3, 1.0, 0.5, -1.0], abs=1e-6)
    rloo = ktae.rloo_advantages(scores, group)
    # score minus the mean of the other members; a single rollout keeps its score
    assert rloo.tolist() == pytest.approx([0.5, -1.0, 0.0, 0.5, 1.5, 0.5, -1.5], abs=1e-6)


def test_explain_agrees_with_values_and_reference():
    responses, mask, scores, group = random_batch(5)
    table = ktae.explain(responses, mask, scores, group)
    values = ktae.key_token_values(responses, mask, scores, group)
    assert table.group_keys == list(dict.fromkeys(group.tolist()))
    lookup = {(table.group_keys[g], t): v for g, t, v in zip(table.group.tolist(), table.token.tolist(),
                                                             table.value.tolist())}
    for i in range(responses.shape[0]):
        for t in range(responses.shape[1]):
            if mask[i, t]:
                assert values[i, t].item() == pytest.approx(lookup[(group[i].item(), responses[i, t].item())],
                                                            abs=1e-6)
    for record in table.records()[:50]:
        ref = table_stats(record["a"], record["b"], record["n_correct"], record["n_wrong"])
        if record["n_correct"] and record["n_wrong"]:
            assert record["p_value"] == pytest.approx(ref["p_value"], abs=1e-9)
            assert record["info_gain"] == pytest.approx(ref["info_gain"], abs=1e-12)
    positive, negative = table.strongest(0, 3)
    assert all(r["value"] > 0 for r in positive) and all(r["value"] < 0 for r in negative)
    assert [r["value"] for r in positive] == sorted((r["value"] for r in positive), reverse=True)


def test_explain_counts_occurrences_and_presence():
    responses = torch.tensor([[3, 3, 3], [3, 1, 0], [2, 2, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0]])
    table = ktae.explain(responses, mask, [1.0, 0.0, 0.0], ["q", "q", "q"])
    rec = {r["token"]: r for r in table.records()}
    assert set(rec) == {1, 2, 3}
    assert (rec[3]["a"], rec[3]["b"], rec[3]["count_correct"], rec[3]["count_wrong"]) == (1, 1, 3, 1)
    assert (rec[2]["a"], rec[2]["b"], rec[2]["count_wrong"]) == (0, 1, 2)
    assert rec[3]["n_correct"] == 1 and rec[3]["n_wrong"] == 2


def test_empty_batch_and_fully_masked():
    empty = torch.zeros((0, 5), dtype=torch.long)
    values = ktae.key_token_values(empty, empty, torch.zeros(0), [])
    assert values.shape == (0, 5)
    adv, ret = ktae.ktae_advantages(empty, empty, torch.zeros(0), [])
    assert adv.shape == ret.shape == (0, 5)
    responses = torch.ones((2, 3), dtype=torch.long)
    values = ktae.key_token_values(responses, torch.zeros_like(responses), [1.0, 0.0], [0, 0])
    assert torch.equal(values, torch.zeros(2, 3))
    assert len(ktae.explain(empty, empty, torch.zeros(0), [])) == 0


def test_deterministic_bit_for_bit():
    batch = random_batch(9, groups=20, batch=200, length=64, vocab=300)
    first = ktae.ktae_advantages(*batch)[0]
    for _ in range(3):
        assert torch.equal(ktae.ktae_advantages(*batch)[0], first)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda r, m, s, g: (r.float(), m, s, g), TypeError, "responses.*integer"),
        (lambda r, m, s, g: (r[0], m, s, g), ValueError, "responses.*2-D"),
        (lambda r, m, s, g: (r, m[:, :-1], s, g), ValueError, "response_mask.*shape"),
        (lambda r, m, s, g: (r, m * 2, s, g), ValueError, "response_mask.*0/1"),
        (lambda r, m, s, g: (r, m, s[:-1], g), ValueError, "scores.*B="),
        (lambda r, m, s, g: (r, m, torch.full_like(s, float("nan")), g), ValueError, "scores.*finite"),
        (lambda r, m, s, g: (r, m, s.clone().fill_(float("inf")), g), ValueError, "scores.*finite"),
        (lambda r, m, s, g: (r, m, s, g[:-1]), ValueError, "group.*B="),
        (lambda r, m, s, g: (r, m, s, g.float()), TypeError, "group"),
        (lambda r, m, s, g: (r - 100, torch.ones_like(m), s, g), ValueError, "negative token ids"),
        (lambda r, m, s, g: (r.tolist(), m, s, g), TypeError, "responses"),
    ],
)
def test_bad_input_names_the_argument(change, error, match):
    with pytest.raises(error, match=match):
        ktae.key_token_values(*change(*random_batch(0)))


def test_negative_ids_under_the_mask_are_ignored():
    responses, mask, scores, group = random_batch(4)
    padded = torch.where(mask.bool(), responses, torch.full_like(responses, -100))
    assert torch.equal(ktae.key_token_values(padded, mask, scores, group),
                       ktae.key_token_values(responses, mask, scores, group))


def test_config_validation():
    with pytest.raises(ValueError, match="alpha \\+ beta"):
        KTAEConfig(alpha=0.0, beta=0.0)
    with pytest.raises(ValueError, match="top"):
        KTAEConfig(top=0.0)
    with pytest.raises(ValueError, match="fisher_at_one"):
        KTAEConfig(fisher_at_one="one")
    with pytest.raises(ValueError, match="rollout"):
        KTAEConfig(rollout="ppo")
    with pytest.raises(ValueError, match="alpha"):
        KTAEConfig(alpha=float("nan"))
    with pytest.raises(ValueError, match="ignore_token_ids"):
        KTAEConfig(ignore_token_ids=(-1,))
    assert KTAEConfig(ignore_token_ids=[5, 6]).ignore_token_ids == (5, 6)
    assert KTAEConfig(ignore_token_ids=7).ignore_token_ids == (7,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    batch = random_batch(12, groups=30, batch=300, length=128, vocab=5000)
    cpu = ktae.ktae_advantages(*batch)[0]
    gpu = ktae.ktae_advantages(*(t.cuda() for t in batch))[0]
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-6, rtol=0)


def test_blocks_of_groups_give_the_same_values(monkeypatch):
    import ktae.core.advantages as advantages

    batch = random_batch(21, groups=12, batch=90, length=40, vocab=30)
    whole = ktae.key_token_values(*batch)
    monkeypatch.setattr(advantages, "CPU_BLOCK_TOKENS", 64)  # a block of a few groups at a time
    blocked = ktae.key_token_values(*batch)
    assert torch.equal(blocked, whole)
    check_against_reference(*batch)


def test_fully_masked_rollouts_are_not_group_members():
    # a completion masked out (truncated, filtered) must not count as an empty correct or wrong member
    responses = torch.tensor([[7, 9, 2], [7, 9, 9], [9, 5, 4], [9, 5, 5], [3, 3, 3]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 0], [0, 0, 0]])
    group = [0, 0, 0, 0, 0]
    base = ktae.key_token_values(responses[:4], mask[:4], torch.tensor([1.0, 1.0, 0.0, 0.0]), group[:4])
    for label in (0.0, 1.0):  # the masked row, labelled wrong or correct, changes nothing
        scores = torch.tensor([1.0, 1.0, 0.0, 0.0, label])
        values = ktae.key_token_values(responses, mask, scores, group)
        assert torch.equal(values[:4], base)
        assert torch.equal(values[4], torch.zeros(3))
        table = ktae.explain(responses, mask, scores, group)
        assert set(table.n_correct.tolist()) == {2} and set(table.n_wrong.tolist()) == {2}
    # the only wrong rollout is masked out: the group is all correct, so K = 0 everywhere
    scores = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    assert torch.count_nonzero(ktae.key_token_values(responses, mask, scores, group)) == 0


@pytest.mark.parametrize("seed", range(4))
def test_batches_with_many_masked_rows_match_reference(seed):
    responses, mask, scores, group = random_batch(300 + seed, groups=3, batch=24)
    dropped = torch.rand(mask.shape[0], generator=torch.Generator().manual_seed(seed)) < 0.35
    mask = mask * (~dropped).long().unsqueeze(1)
    check_against_reference(responses, mask, scores, group)
    check_against_reference(responses, mask, scores, group, fisher_at_one="zero", threshold=0.5)


def test_ktae_parts_are_the_advantages_pieces():
    g = torch.Generator().manual_seed(7)
    responses = torch.randint(0, 30, (12, 9), generator=g)
    mask = (torch.rand(12, 9, generator=g) > 0.2).long()
    scores = torch.randint(0, 2, (12,), generator=g).float()
    group = torch.arange(12) // 4
    for rollout in ("grpo", "dr_grpo", "rloo"):
        config = ktae.KTAEConfig(rollout=rollout)
        parts = ktae.ktae_parts(responses, mask, scores, group, config)
        advantages, returns = ktae.ktae_advantages(responses, mask, scores, group, config)
        assert torch.equal(parts.advantages, advantages) and returns is advantages
        assert torch.equal(parts.rollout, ktae.rollout_advantages(scores, group, config))
        assert torch.equal(parts.key_values, ktae.key_token_values(responses, mask, scores, group, config))
        assert torch.equal(parts.advantages, (parts.rollout[:, None] + parts.key_values) * mask)
