"""KTAEGRPOTrainer honours TRL's ``top_entropy_quantile`` (Wang et al. 2025) with token-level advantages: the loss
is the policy gradient of ``A_i + K`` on the highest-entropy tokens only, as TRL's own mask selects them."""
from __future__ import annotations

import torch
from datasets import Dataset

from ktae.integrations.trl import ROLLOUT_ADVANTAGES, KTAEGRPOConfig, KTAEGRPOTrainer
from test_integrations_trl import tiny_model, tiny_tokenizer


class EntropyRecorder(KTAEGRPOTrainer):
    """Keeps TRL's high-entropy mask, the loss inputs and the loss of every loss computation."""

    def get_high_entropy_mask(self, entropies, mask, threshold):
        chosen = super().get_high_entropy_mask(entropies, mask, threshold)
        self.calls.append({"entropy_mask": chosen.detach().clone(), "threshold": threshold})
        return chosen

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        self.calls[-1].update(advantages=inputs["advantages"].detach().clone(),
                              rollout=inputs[ROLLOUT_ADVANTAGES].detach().clone(),
                              mask=inputs["completion_mask"].detach().clone(), loss=loss.detach().clone())
        return loss


def even_digits(completions, **kwargs):
    return [float(sum(ch.isdigit() for ch in text) % 2 == 0) for text in completions]


def test_top_entropy_quantile_keeps_the_token_level_advantages_of_the_top_tokens(tmp_path):
    tokenizer = tiny_tokenizer()
    args = KTAEGRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=2, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=8, logging_steps=1, save_strategy="no", learning_rate=1e-2,
        seed=0, disable_tqdm=True, loss_type="bnpo", num_iterations=1, beta=0.0, temperature=1.0,
        top_entropy_quantile=0.2,
    )
    dataset = Dataset.from_dict({"prompt": ["12+3=", "4-1=", "5+5=", "9-2=", "7+a=", "b-3="]})
    trainer = EntropyRecorder(model=tiny_model(tokenizer), reward_funcs=even_digits, args=args,
                              train_dataset=dataset, processing_class=tokenizer)
    trainer.calls = []
    trainer.train()
    assert len(trainer.calls) == 2
    token_level = 0
    for call in trainer.calls:
        assert call["threshold"] == 1 - 0.2
        mask, chosen, advantages = call["mask"].bool(), call["entropy_mask"], call["advantages"]
        assert advantages.shape == mask.shape                           # [B, T]: A_i + K, not [B]
        assert not (chosen & ~mask).any() and 0 < int(chosen.sum()) <= 0.5 * int(mask.sum())
        # bnpo, one iteration (ratio 1), no KL: the loss is -sum(adv * entropy mask) / tokens
        expected = -(advantages * chosen).sum() / mask.sum()
        torch.testing.assert_close(call["loss"], expected, rtol=1e-5, atol=1e-6)
        flat = -(call["rollout"].unsqueeze(1) * mask * chosen).sum() / mask.sum()
        token_level += int(not torch.isclose(expected, flat))
    assert token_level > 0, "K was 0 on every kept token: the check would not tell A_i + K from A_i"
