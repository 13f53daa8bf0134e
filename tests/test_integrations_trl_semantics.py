"""KTAE inside TRL keeps TRL's meaning: sequence-level decisions read A_i, correctness is what the user says,
masked completions are not group members, and a run where K stays 0 is reported."""
from __future__ import annotations

import warnings

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

import ktae
from ktae.integrations.trl import ROLLOUT_ADVANTAGES, KTAEGRPOConfig, KTAEGRPOTrainer
from ktae.monitoring import NoMixedGroupsWarning
from test_integrations_trl import RecordingTrainer, tiny_model, tiny_tokenizer, trl_rollout_advantages

PROMPTS = ["12+3=", "4-1=", "5+5=", "9-2=", "7+a=", "b-3="]


def even_digits(completions, **kwargs):
    return [float(sum(ch.isdigit() for ch in text) % 2 == 0) for text in completions]


def common_args(tmp_path, **extra):
    args = dict(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=2, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=8, logging_steps=1, save_strategy="no", learning_rate=1e-2,
        seed=0, disable_tqdm=True, temperature=1.0, beta=0.0,
    )
    args.update(extra)
    return args


def train_params(trainer_cls, args, reward_funcs=even_digits):
    tokenizer = tiny_tokenizer()
    trainer = trainer_cls(model=tiny_model(tokenizer), reward_funcs=reward_funcs, args=args,
                          train_dataset=Dataset.from_dict({"prompt": PROMPTS}), processing_class=tokenizer)
    if isinstance(trainer, RecordingTrainer):
        trainer.records = []
    trainer.train()
    return trainer, [p.detach().clone() for p in trainer.model.parameters()]


OPTIONS = {
    # off-policy sequence mask: threshold -1 drops every negative-advantage sequence (its KL is >= 0 > -1)
    "off_policy_mask": dict(loss_type="dapo", off_policy_mask_threshold=-1.0),
    "vespo": dict(loss_type="vespo", num_iterations=2),
    "sapo": dict(loss_type="sapo", num_iterations=2),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_top_to_zero_equals_plain_grpo_trainer(tmp_path, name):
    options = OPTIONS[name]
    _, plain = train_params(GRPOTrainer, GRPOConfig(**common_args(tmp_path / "plain", **options)))
    args = KTAEGRPOConfig(**common_args(tmp_path / "ktae", **options), ktae_top=1e-12)
    _, ours = train_params(KTAEGRPOTrainer, args)
    for a, b in zip(plain, ours):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def loss_inputs(trainer, seed=0, batch=6, prompt=4, length=7):
    """A batch as TRL hands it to the loss: old log-probs off the current ones, so that w != 1."""
    g = torch.Generator().manual_seed(seed)
    vocab = trainer.model.config.vocab_size
    prompt_ids = torch.randint(3, vocab, (batch, prompt), generator=g)
    completion_ids = torch.randint(3, vocab, (batch, length), generator=g)
    lengths = torch.tensor([7, 5, 7, 3, 6, 7])
    completion_mask = (torch.arange(length)[None] < lengths[:, None]).long()
    with torch.no_grad():
        logps, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([prompt_ids, completion_ids], 1),
            torch.cat([torch.ones_like(prompt_ids), completion_mask], 1), length,
        )[:2]
    old = logps + 0.05 * torch.randn(logps.shape, generator=g)
    rollout = torch.tensor([0.9, -0.4, 0.2, -1.1, 0.05, -0.05])
    return dict(prompt_ids=prompt_ids, prompt_mask=torch.ones_like(prompt_ids), completion_ids=completion_ids,
                completion_mask=completion_mask, old_per_token_logps=old, sampling_per_token_logps=old,
                num_items_in_batch=completion_mask.sum().float()), rollout, completion_mask


def opposing_values(mask, rollout, seed):
    """K of size 2 with the sign opposite to A_i on about half the tokens: A_i + K flips sign there."""
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(mask.shape, generator=g) < 0.5
    return torch.where(flip, -2.0 * torch.sign(rollout)[:, None], 0.3 * torch.ones(mask.shape)) * mask


@pytest.mark.parametrize("name, static", [("off_policy_mask", "get_off_policy_mask"), ("vespo", "get_gamma_weights")])
def test_sequence_decisions_do_not_depend_on_k(tmp_path, monkeypatch, name, static):
    options = dict(OPTIONS[name], num_iterations=1)
    tokenizer = tiny_tokenizer()
    trainer = KTAEGRPOTrainer(model=tiny_model(tokenizer), reward_funcs=even_digits,
                              args=KTAEGRPOConfig(**common_args(tmp_path, **options)),
                              train_dataset=Dataset.from_dict({"prompt": PROMPTS}), processing_class=tokenizer)
    trainer.model.eval()
    original = getattr(GRPOTrainer, static)
    seen = []

    def spy(advantages, *args, **kwargs):
        out = original(advantages, *args, **kwargs)
        seen.append((advantages.detach().clone(), out.detach().clone(), kwargs))
        return out

    monkeypatch.setattr(GRPOTrainer, static, staticmethod(spy))
    inputs, rollout, mask = loss_inputs(trainer)
    for seed in (1, 2):
        values = opposing_values(mask, rollout, seed) if seed == 2 else torch.zeros(mask.shape)
        trainer._compute_loss(trainer.model, {**inputs, "advantages": (rollout[:, None] + values) * mask,
                                              ROLLOUT_ADVANTAGES: rollout})
    (adv_zero, out_zero, _), (adv_k, out_k, kwargs) = seen
    assert adv_zero.shape == adv_k.shape == (6, 1)
    assert torch.equal(adv_zero, rollout[:, None]) and torch.equal(adv_k, rollout[:, None])
    torch.testing.assert_close(out_zero, out_k)
    # TRL's own function, handed the token-level advantage, would decide otherwise: the check above has teeth
    per_token = original((rollout[:, None] + opposing_values(mask, rollout, 2)) * mask, **kwargs)
    assert not torch.allclose(per_token.expand(6, mask.shape[1]) * mask, out_k.expand(6, mask.shape[1]) * mask)


def test_sapo_temperature_follows_the_sign_of_the_rollout_advantage(tmp_path):
    tokenizer = tiny_tokenizer()
    args = KTAEGRPOConfig(**common_args(tmp_path, loss_type="sapo"))
    trainer = KTAEGRPOTrainer(model=tiny_model(tokenizer), reward_funcs=even_digits, args=args,
                              train_dataset=Dataset.from_dict({"prompt": PROMPTS}), processing_class=tokenizer)
    trainer.model.eval()
    inputs, rollout, mask = loss_inputs(trainer)
    del inputs["old_per_token_logps"]  # ratio 1: SAPO's per-token loss is -(4 sigmoid(0) / tau) A = -(2 / tau) A
    advantages = (rollout[:, None] + opposing_values(mask, rollout, 3)) * mask
    loss = trainer._compute_loss(trainer.model, {**inputs, "advantages": advantages, ROLLOUT_ADVANTAGES: rollout})
    tau = torch.where(rollout > 0, args.sapo_temperature_pos, args.sapo_temperature_neg)[:, None]
    expected = ((-(2.0 / tau) * advantages * mask).sum(1) / mask.sum(1)).mean()
    torch.testing.assert_close(loss, expected)
    tau_per_token = torch.where(advantages > 0, args.sapo_temperature_pos, args.sapo_temperature_neg)
    assert not torch.isclose(loss, ((-(2.0 / tau_per_token) * advantages * mask).sum(1) / mask.sum(1)).mean())
    assert args.sapo_temperature_pos == 1.0 and isinstance(args.sapo_temperature_neg, float)  # restored


def length_bonus(completions, **kwargs):  # always positive: with a summed reward every completion is "correct"
    return [0.5 + 0.01 * len(text) for text in completions]


def test_correctness_reward_decides_and_the_watch_warns(tmp_path):
    seen = []

    def accuracy(completions, **kwargs):
        rewards = even_digits(completions)
        seen.append(torch.tensor(rewards))
        return rewards

    # summed rewards are all > 0: no group is mixed, K is 0, and the watch says so after 2 batches
    args = KTAEGRPOConfig(**common_args(tmp_path / "sum", max_steps=3), ktae_warn_after=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = train_params(RecordingTrainer, args, [accuracy, length_bonus])
    assert all(bool((r["advantages"] == r["advantages"][:, :1] * r["completion_mask"]).all()) for r in trainer.records)
    messages = [str(w.message) for w in caught if issubclass(w.category, NoMixedGroupsWarning)]
    assert len(messages) == 1 and "weighted sum of its 2 rewards is > 0.0" in messages[0]
    assert "ktae_correctness_reward" in messages[0]
    assert all(entry["ktae/mixed_group_fraction"] == 0 for entry in trainer.state.log_history
               if "ktae/mixed_group_fraction" in entry)

    # naming the accuracy reward: correctness is its value, K is the core's on it
    seen.clear()
    args = KTAEGRPOConfig(**common_args(tmp_path / "acc"), ktae_correctness_reward="accuracy", ktae_threshold=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoMixedGroupsWarning)
        trainer, _ = train_params(RecordingTrainer, args, [accuracy, length_bonus])
    nonzero = 0
    for record, correct in zip(trainer.records, seen):
        ids, mask, advantages = record["completion_ids"], record["completion_mask"], record["advantages"]
        group = torch.arange(len(correct)) // 4
        config = ktae.KTAEConfig(threshold=0.5, ignore_token_ids=(0, 1))  # <pad>, <eos>
        values = ktae.key_token_values(ids, mask, correct, group, config)
        assert bool(mask[:, 0].all())  # every completion has a first token: A_i = advantage[i, 0] - K[i, 0]
        rollout = advantages[:, :1] - values[:, :1]
        torch.testing.assert_close(advantages, (rollout + values) * mask, rtol=1e-5, atol=1e-5)
        nonzero += int((values != 0).sum())
    assert nonzero > 0

    with pytest.raises(ValueError, match="not one of the reward functions"):
        train_params(KTAEGRPOTrainer, KTAEGRPOConfig(**common_args(tmp_path / "bad"), ktae_correctness_reward="nope"))
    with pytest.raises(ValueError, match="ktae_warn_after"):
        KTAEGRPOConfig(**common_args(tmp_path), ktae_warn_after=-1)


def test_truncated_completions_leave_their_group(tmp_path):
    rewards_seen = []

    def reward(completions, **kwargs):
        rewards = even_digits(completions)
        rewards_seen.append(torch.tensor(rewards))
        return rewards

    args = KTAEGRPOConfig(**common_args(tmp_path, max_steps=1, max_completion_length=4, temperature=1.5),
                          mask_truncated_completions=True)
    trainer, _ = train_params(RecordingTrainer, args, reward)
    record, rewards = trainer.records[0], rewards_seen[0]
    ids, mask, advantages = record["completion_ids"], record["completion_mask"], record["advantages"]
    masked = ~mask.bool().any(dim=1)
    assert bool(masked.any()), "no completion was truncated: nothing tested"
    group = torch.arange(len(rewards)) // 4
    cfg = ktae.KTAEConfig(ignore_token_ids=(0, 1))
    values = ktae.key_token_values(ids, mask, rewards, group, cfg)
    keep = ~masked
    torch.testing.assert_close(values[keep], ktae.key_token_values(ids[keep], mask[keep], rewards[keep], group[keep],
                                                                   cfg))
    expected = (trl_rollout_advantages(rewards, len(rewards) // 4, "group").unsqueeze(1) + values) * mask
    torch.testing.assert_close(advantages, expected, rtol=1e-5, atol=1e-5)


def test_trl_version_guard():
    from ktae.integrations import doctor
    from ktae.integrations.trl import SUPPORTED_TRL, _check_trl

    assert SUPPORTED_TRL == doctor.SUPPORTED_TRL
    _check_trl("1.16.0", GRPOTrainer)
    with pytest.raises(ImportError, match=r"supports trl>=1.16,<2, but trl 0.19.1 is installed"):
        _check_trl("0.19.1", GRPOTrainer)
    with pytest.raises(ImportError, match="has no _calculate_rewards, .*get_off_policy_mask"):
        _check_trl("1.17.0", type("Renamed", (), {"_compute_loss": lambda self: None}))
