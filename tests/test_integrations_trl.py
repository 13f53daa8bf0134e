"""The TRL adapter on CPU: two real training steps of a tiny model, advantages checked against the core."""
from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import GRPOConfig

import ktae
from ktae.integrations.trl import KTAEGRPOConfig, KTAEGRPOTrainer, local_key_token_values

CHARS = list("0123456789+-=ab ")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<unk>", *CHARS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def trl_rollout_advantages(rewards: torch.Tensor, groups: int, scale_rewards: str) -> torch.Tensor:
    """TRL's per-completion advantage (sum_then_normalize), written out independently."""
    grouped = rewards.view(groups, -1)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).flatten()
    if scale_rewards == "group":
        return centred / (grouped.std(dim=1).repeat_interleave(grouped.shape[1]) + 1e-4)
    if scale_rewards == "batch":
        return centred / (rewards.std() + 1e-4)
    return centred


class RecordingTrainer(KTAEGRPOTrainer):
    """Keeps what each generation produced, to check it against the core."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.records.append({k: output[k].detach().clone() for k in ("completion_ids", "completion_mask", "advantages")})
        return output


@pytest.mark.parametrize(
    "ktae_args, loss_type, scale_rewards, num_iterations",
    [
        ({"ktae_alpha": 0.5, "ktae_gamma": 0.0}, "dapo", "group", 1),
        (None, "grpo", "none", 2),  # a plain GRPOConfig gives KTAE with the paper's settings
    ],
)
def test_two_training_steps_match_the_core(tmp_path, ktae_args, loss_type, scale_rewards, num_iterations):
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    seen_rewards: list[torch.Tensor] = []

    def even_digits(completions, **kwargs):
        rewards = [float(sum(ch.isdigit() for ch in text) % 2 == 0) for text in completions]
        seen_rewards.append(torch.tensor(rewards))
        return rewards

    common = dict(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=2, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=8, logging_steps=1, save_strategy="no", learning_rate=1e-2,
        seed=0, disable_tqdm=True, loss_type=loss_type, scale_rewards=scale_rewards, num_iterations=num_iterations,
        temperature=1.0,
    )
    args = KTAEGRPOConfig(**common, **ktae_args) if ktae_args is not None else GRPOConfig(**common)
    dataset = Dataset.from_dict({"prompt": ["12+3=", "4-1=", "5+5=", "9-2=", "7+a=", "b-3="]})
    trainer = RecordingTrainer(
        model=model, reward_funcs=even_digits, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.records = []
    trainer.train()

    special = (tokenizer.pad_token_id, tokenizer.eos_token_id)
    extra = {"alpha": 0.5, "gamma": 0.0} if ktae_args else {}
    cfg = ktae.KTAEConfig(ignore_token_ids=special, **extra)
    assert len(trainer.records) == (2 if num_iterations == 1 else 1) and len(seen_rewards) == len(trainer.records)
    nonzero = 0
    for record, rewards in zip(trainer.records, seen_rewards):
        ids, mask, advantages = record["completion_ids"], record["completion_mask"], record["advantages"]
        assert advantages.shape == ids.shape
        group = torch.arange(len(rewards)) // 4
        values = ktae.key_token_values(ids, mask, rewards, group, cfg)
        rollout = trl_rollout_advantages(rewards, len(rewards) // 4, scale_rewards)
        expected = (rollout.unsqueeze(1) + values) * mask
        torch.testing.assert_close(advantages, expected, rtol=1e-5, atol=1e-5)
        nonzero += int((values != 0).sum())
    assert nonzero > 0, "no mixed group: the check above would not test K"
    logged = [entry for entry in trainer.state.log_history if "ktae/abs_mean" in entry]
    assert logged and all(entry["ktae/abs_mean"] >= 0 for entry in logged)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_groups_split_over_processes_see_the_whole_group():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 12, (12, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[:, 5:] = 0
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1])
    cfg = ktae.KTAEConfig(ignore_token_ids=(0,))
    whole = ktae.key_token_values(ids, mask, rewards, torch.arange(12) // 4, cfg)
    for rank in range(2):  # two processes of 6 rows: the second group straddles them
        _, local = local_key_token_values(ids, mask, rewards, 4, 6 * rank, 6, 7, cfg)
        torch.testing.assert_close(local, whole[6 * rank : 6 * rank + 6])
    _, narrow = local_key_token_values(ids, mask, rewards, 4, 6, 6, 5, cfg)
    torch.testing.assert_close(narrow, whole[6:12, :5])
    # an unscorable completion (NaN reward) gets K = 0 and leaves its group's statistics
    rewards[2] = torch.nan
    values, _ = local_key_token_values(ids, mask, rewards, 4, 0, 6, 7, cfg)
    keep = torch.arange(12) != 2
    expected = ktae.key_token_values(ids[keep], mask[keep], rewards[keep], (torch.arange(12) // 4)[keep], cfg)
    assert bool((values[2] == 0).all())
    torch.testing.assert_close(values[keep], expected)
    with pytest.raises(ValueError, match="whole groups"):
        local_key_token_values(ids[:10], mask[:10], rewards[:10], 4, 0, 5, 7, cfg)


def test_config_validates_ktae_options(tmp_path):
    with pytest.raises(ValueError, match="ktae_"):
        KTAEGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", ktae_alpha=-1.0)
    args = KTAEGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", ktae_ignore_token_ids=[5])
    assert args.ktae_config((0, 1)).ignore_token_ids == (5,)
    assert KTAEGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none").ktae_config((0, 1)).ignore_token_ids == (0, 1)


WORKER = '''
import sys, torch
sys.path.insert(0, {tests!r})
from datasets import Dataset
from test_integrations_trl import RecordingTrainer, tiny_model, tiny_tokenizer
from ktae.integrations.trl import KTAEGRPOConfig

tokenizer = tiny_tokenizer()
seen = []

def even_digits(completions, **kwargs):
    rewards = [float(sum(ch.isdigit() for ch in text) % 2 == 0) for text in completions]
    seen.append(rewards)
    return rewards

args = KTAEGRPOConfig(output_dir={out!r}, use_cpu=True, report_to="none", max_steps=1, per_device_train_batch_size=6,
                      num_generations=4, max_completion_length=8, logging_steps=1, save_strategy="no", seed=0,
                      disable_tqdm=True)
trainer = RecordingTrainer(model=tiny_model(tokenizer), reward_funcs=even_digits, args=args, processing_class=tokenizer,
                           train_dataset=Dataset.from_dict({{"prompt": ["12+3=", "4-1=", "5+5=", "9-2=", "7+a=", "b-3="]}}))
trainer.records = []
trainer.train()
torch.save({{"records": trainer.records, "rewards": seen}}, {out!r} + f"/rank{{trainer.accelerator.process_index}}.pt")
'''


def test_two_processes_see_whole_groups(tmp_path):
    """Two real processes (gloo), one step: 12 completions, 6 per process, so one group straddles them."""
    import os
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=os.path.dirname(os.path.abspath(__file__)), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    cfg = ktae.KTAEConfig(ignore_token_ids=(0, 1))  # <pad>, <eos>
    straddling = 0
    for step in range(1):
        parts = [rank["records"][step] for rank in ranks]
        width = max(p["completion_ids"].shape[1] for p in parts)

        def cat(key):
            return torch.cat([torch.nn.functional.pad(p[key], (0, width - p[key].shape[1])) for p in parts])

        ids, mask, advantages = cat("completion_ids"), cat("completion_mask"), cat("advantages")
        rewards = torch.tensor(ranks[0]["rewards"][step] + ranks[1]["rewards"][step])
        values = ktae.key_token_values(ids, mask, rewards, torch.arange(12) // 4, cfg)
        expected = (trl_rollout_advantages(rewards, 3, "group").unsqueeze(1) + values) * mask
        torch.testing.assert_close(advantages, expected, rtol=1e-5, atol=1e-5)
        straddling += int((values[4:8] != 0).sum())
    assert straddling > 0, "the group split over the two processes had no key tokens: nothing was tested"
